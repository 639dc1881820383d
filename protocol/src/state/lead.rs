//! The lead state machine.
//!
//! ```text
//! lead.offer → offered ─lead.accept (before accept_by)→ accepted ─lead.update→ contacted → qualified → won | lost
//!                 └─lead.decline→ declined
//! ```
//! Progress moves forward only (steps may be skipped); won and lost are final.
//! The vendor is the sender of `lead.offer`; only the partner it was offered
//! to may accept, decline or report progress.

use super::{Context, StateError, record_exists, require_sender, unknown_record};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{DeclineReason, LeadOffer, LeadProgress, Message};
use crate::money::{Date, Money};
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};

/// Where a lead stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    Offered,
    Accepted,
    Declined,
    Contacted,
    Qualified,
    Won,
    Lost,
}

impl LeadStatus {
    /// Position on the progress path; `None` off it.
    fn rank(self) -> Option<u8> {
        match self {
            LeadStatus::Accepted => Some(0),
            LeadStatus::Contacted => Some(1),
            LeadStatus::Qualified => Some(2),
            LeadStatus::Won | LeadStatus::Lost => Some(3),
            LeadStatus::Offered | LeadStatus::Declined => None,
        }
    }
}

/// A lead as both the vendor and the partner see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub offer: LeadOffer,
    pub status: LeadStatus,
    pub offered_at: Millis,
    pub accepted_at: Option<Millis>,
    pub decline_reason: Option<DeclineReason>,
    pub won_value: Option<Money>,
    pub won_on: Option<Date>,
    pub lost_reason: Option<String>,
    pub updated_at: Millis,
}

pub(super) fn apply(
    current: Option<&Lead>,
    ctx: &Context,
    message: &Message,
) -> Result<Lead, StateError> {
    let kind = message.kind();
    let Some(lead) = current else {
        return match message {
            Message::LeadOffer(offer) => {
                if offer.accept_by <= ctx.at {
                    return Err(StateError::new(
                        ReasonCode::Expired,
                        "lead.offer: accept_by must be later than the offer's creation time",
                    ));
                }
                Ok(Lead {
                    vendor: ctx.from.clone(),
                    partner: ctx.to.clone(),
                    offer: offer.clone(),
                    status: LeadStatus::Offered,
                    offered_at: ctx.at,
                    accepted_at: None,
                    decline_reason: None,
                    won_value: None,
                    won_on: None,
                    lost_reason: None,
                    updated_at: ctx.at,
                })
            }
            _ => Err(unknown_record(kind)),
        };
    };
    let mut next = lead.clone();
    next.updated_at = ctx.at;
    match message {
        Message::LeadOffer(_) => return Err(record_exists(kind)),
        Message::LeadAccept(_) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            if lead.status != LeadStatus::Offered {
                return Err(StateError::illegal(format!(
                    "lead.accept: the lead is {:?}, only an offered lead can be accepted",
                    lead.status
                )));
            }
            if ctx.at > lead.offer.accept_by {
                return Err(StateError::new(
                    ReasonCode::Expired,
                    "lead.accept: the offer's acceptance deadline has passed",
                ));
            }
            next.status = LeadStatus::Accepted;
            next.accepted_at = Some(ctx.at);
        }
        Message::LeadDecline(d) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            if lead.status != LeadStatus::Offered {
                return Err(StateError::illegal(format!(
                    "lead.decline: the lead is {:?}, only an offered lead can be declined",
                    lead.status
                )));
            }
            next.status = LeadStatus::Declined;
            next.decline_reason = Some(d.reason);
        }
        Message::LeadUpdate(u) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            let to = match u.status {
                LeadProgress::Contacted => LeadStatus::Contacted,
                LeadProgress::Qualified => LeadStatus::Qualified,
                LeadProgress::Won => LeadStatus::Won,
                LeadProgress::Lost => LeadStatus::Lost,
            };
            let Some(from_rank) = lead.status.rank() else {
                return Err(StateError::illegal(format!(
                    "lead.update: the lead is {:?}; progress can only be reported on an accepted lead",
                    lead.status
                )));
            };
            let to_rank = to.rank().unwrap_or(0);
            if from_rank >= 3 || to_rank <= from_rank {
                return Err(StateError::illegal(format!(
                    "lead.update: cannot move from {:?} to {:?} (progress moves forward only; won and lost are final)",
                    lead.status, to
                )));
            }
            next.status = to;
            next.won_value = u.won_value.clone();
            next.won_on = u.won_on.clone();
            next.lost_reason = u.lost_reason.clone();
        }
        _ => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to a lead"
            )));
        }
    }
    Ok(next)
}
