//! The deal registration state machine.
//!
//! ```text
//! lead.register (partner) → submitted ─lead.registration (vendor)→ approved | rejected
//! ```
//! The vendor's signed decision names the registration's `created` time, so
//! the partner holds proof of when it registered and what was granted.

use super::{Context, StateError, record_exists, require_sender, unknown_record};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{LeadRegister, Message, RegistrationDecision};
use crate::money::Date;
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    Submitted,
    Approved,
    Rejected,
}

impl RegistrationStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Submitted => "submitted",
            RegistrationStatus::Approved => "approved",
            RegistrationStatus::Rejected => "rejected",
        }
    }
}

/// A deal registration as both nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub deal: LeadRegister,
    pub status: RegistrationStatus,
    /// The `lead.register` envelope's `created` time.
    pub registered_at: Millis,
    pub decided_at: Option<Millis>,
    pub exclusive_until: Option<Date>,
    pub reason: Option<String>,
    pub note: String,
}

pub(super) fn apply(
    current: Option<&Registration>,
    ctx: &Context,
    message: &Message,
) -> Result<Registration, StateError> {
    let kind = message.kind();
    let Some(reg) = current else {
        return match message {
            Message::LeadRegister(deal) => Ok(Registration {
                vendor: ctx.to.clone(),
                partner: ctx.from.clone(),
                deal: deal.clone(),
                status: RegistrationStatus::Submitted,
                registered_at: ctx.at,
                decided_at: None,
                exclusive_until: None,
                reason: None,
                note: String::new(),
            }),
            _ => Err(unknown_record(kind)),
        };
    };
    match message {
        Message::LeadRegister(_) => Err(record_exists(kind)),
        Message::LeadRegistration(d) => {
            require_sender(ctx, &reg.vendor, "vendor", kind)?;
            if reg.status != RegistrationStatus::Submitted {
                return Err(StateError::illegal(format!(
                    "lead.registration: the registration is already {}",
                    reg.status.as_str()
                )));
            }
            if d.registered_at != reg.registered_at {
                return Err(StateError::new(
                    ReasonCode::BadBody,
                    format!(
                        "lead.registration: registered_at {} is not the registration's time {}",
                        d.registered_at, reg.registered_at
                    ),
                ));
            }
            let mut next = reg.clone();
            next.status = match d.decision {
                RegistrationDecision::Approved => RegistrationStatus::Approved,
                RegistrationDecision::Rejected => RegistrationStatus::Rejected,
            };
            next.decided_at = Some(ctx.at);
            next.exclusive_until = d.exclusive_until.clone();
            next.reason = d.reason.clone();
            next.note = d.note.clone();
            Ok(next)
        }
        _ => Err(StateError::illegal(format!(
            "{kind} does not apply to a deal registration"
        ))),
    }
}
