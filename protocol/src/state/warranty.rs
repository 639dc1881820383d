//! The warranty claim state machine.
//!
//! ```text
//! warranty.claim → submitted ─warranty.decision→ approved (repair | replacement | credit) | rejected
//!                     ↑   └──────decision need_info→ need_info
//!                     └──────warranty.claim (amended)────┘
//! approved ─warranty.fulfil (vendor)→ fulfilled
//! ```
//! Every change is kept in the record's history, identical on both nodes.
//! The partner (sender of the first claim) claims and answers requests for
//! information by sending the amended claim; only the vendor decides.

use super::{Context, StateError, record_exists, require_sender, unknown_record};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Message, WarrantyClaim, WarrantyDecision, WarrantyOutcome};
use serde::{Deserialize, Serialize};

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyStatus {
    Submitted,
    NeedInfo,
    Approved,
    Rejected,
    Fulfilled,
}

impl WarrantyStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WarrantyStatus::Submitted => "submitted",
            WarrantyStatus::NeedInfo => "need_info",
            WarrantyStatus::Approved => "approved",
            WarrantyStatus::Rejected => "rejected",
            WarrantyStatus::Fulfilled => "fulfilled",
        }
    }
}

/// One change of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarrantyEvent {
    pub at: Millis,
    pub by: NodeId,
    pub kind: String,
    pub status: WarrantyStatus,
    pub note: String,
}

/// A warranty claim as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarrantyRecord {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub claim: WarrantyClaim,
    pub status: WarrantyStatus,
    pub decision: Option<WarrantyDecision>,
    pub submitted_at: Millis,
    pub decided_at: Option<Millis>,
    /// How many times the claim was amended after a request for information.
    pub amendments: u32,
    pub fulfilment: Option<String>,
    /// Every change, oldest first.
    pub history: Vec<WarrantyEvent>,
}

pub(super) fn apply(
    current: Option<&WarrantyRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<WarrantyRecord, StateError> {
    let kind = message.kind();
    let mut next = step(current, ctx, message)?;
    let note = match message {
        Message::WarrantyClaim(c) => c.description.clone(),
        Message::WarrantyDecision(d) => d.note.clone(),
        Message::WarrantyFulfil(f) => format!("{} {}", f.reference, f.note).trim().to_string(),
        _ => String::new(),
    };
    next.history.push(WarrantyEvent {
        at: ctx.at,
        by: ctx.from.clone(),
        kind: kind.to_string(),
        status: next.status,
        note,
    });
    Ok(next)
}

fn step(
    current: Option<&WarrantyRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<WarrantyRecord, StateError> {
    let kind = message.kind();
    match (current, message) {
        (None, Message::WarrantyClaim(claim)) => Ok(WarrantyRecord {
            vendor: ctx.to.clone(),
            partner: ctx.from.clone(),
            claim: claim.clone(),
            status: WarrantyStatus::Submitted,
            decision: None,
            submitted_at: ctx.at,
            decided_at: None,
            amendments: 0,
            fulfilment: None,
            history: Vec::new(),
        }),
        (None, _) => Err(unknown_record(kind)),
        (Some(record), Message::WarrantyClaim(claim)) => {
            if ctx.from != record.partner {
                return Err(record_exists(kind));
            }
            if record.status != WarrantyStatus::NeedInfo {
                return Err(StateError::illegal(format!(
                    "warranty.claim: the claim is {}; it can only be amended when the vendor asked for information",
                    record.status.as_str()
                )));
            }
            let mut next = record.clone();
            next.claim = claim.clone();
            next.status = WarrantyStatus::Submitted;
            next.amendments += 1;
            Ok(next)
        }
        (Some(record), Message::WarrantyDecision(decision)) => {
            require_sender(ctx, &record.vendor, "vendor", kind)?;
            if record.status != WarrantyStatus::Submitted {
                return Err(StateError::illegal(format!(
                    "warranty.decision: the claim is {}; only a submitted claim can be decided",
                    record.status.as_str()
                )));
            }
            let mut next = record.clone();
            next.status = match decision.decision {
                WarrantyOutcome::Repair
                | WarrantyOutcome::Replacement
                | WarrantyOutcome::Credit => WarrantyStatus::Approved,
                WarrantyOutcome::NeedInfo => WarrantyStatus::NeedInfo,
                WarrantyOutcome::Reject => WarrantyStatus::Rejected,
            };
            next.decision = Some(decision.clone());
            next.decided_at = Some(ctx.at);
            Ok(next)
        }
        (Some(record), Message::WarrantyFulfil(f)) => {
            require_sender(ctx, &record.vendor, "vendor", kind)?;
            if record.status != WarrantyStatus::Approved {
                return Err(StateError::illegal(format!(
                    "warranty.fulfil: the claim is {}; only an approved claim is fulfilled",
                    record.status.as_str()
                )));
            }
            let mut next = record.clone();
            next.status = WarrantyStatus::Fulfilled;
            next.fulfilment = Some(f.reference.clone());
            Ok(next)
        }
        (Some(_), _) => Err(StateError::illegal(format!(
            "{kind} does not apply to a warranty claim"
        ))),
    }
}
