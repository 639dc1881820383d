//! The lead state machine.
//!
//! ```text
//! lead.offer → offered ─lead.accept (created ≤ accept_by)→ accepted ─lead.update→ contacted → qualified → won | lost
//!                 ├─lead.decline→ declined
//!                 └─lead.expire (vendor, created > accept_by)→ expired
//! lead.withdraw (vendor): any state but expired/withdrawn → withdrawn
//! ```
//! Progress moves forward only (steps may be skipped); won and lost are final
//! for the partner. The vendor is the sender of `lead.offer`, `lead.expire`
//! and `lead.withdraw`; only the partner it was offered to may accept, decline
//! or report progress.
//!
//! The vendor is the lead's authority (SPEC §12.1): a partner's answer that
//! crossed the vendor's expiry or withdrawal is refused where the vendor
//! applies it, and drops out of the partner's copy.

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
    Expired,
    Withdrawn,
    Contacted,
    Qualified,
    Won,
    Lost,
}

impl LeadStatus {
    /// Every status, in display order.
    pub const ALL: [LeadStatus; 9] = [
        LeadStatus::Offered,
        LeadStatus::Accepted,
        LeadStatus::Contacted,
        LeadStatus::Qualified,
        LeadStatus::Won,
        LeadStatus::Lost,
        LeadStatus::Declined,
        LeadStatus::Expired,
        LeadStatus::Withdrawn,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Offered => "offered",
            LeadStatus::Accepted => "accepted",
            LeadStatus::Declined => "declined",
            LeadStatus::Expired => "expired",
            LeadStatus::Withdrawn => "withdrawn",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Won => "won",
            LeadStatus::Lost => "lost",
        }
    }

    /// Position on the progress path; `None` off it.
    fn rank(self) -> Option<u8> {
        match self {
            LeadStatus::Accepted => Some(0),
            LeadStatus::Contacted => Some(1),
            LeadStatus::Qualified => Some(2),
            LeadStatus::Won | LeadStatus::Lost => Some(3),
            LeadStatus::Offered
            | LeadStatus::Declined
            | LeadStatus::Expired
            | LeadStatus::Withdrawn => None,
        }
    }

    /// Whether the partner holds the lead and is working it (accepted and
    /// not yet won or lost).
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            LeadStatus::Accepted | LeadStatus::Contacted | LeadStatus::Qualified
        )
    }

    /// Whether the lead is still with the partner: offered or in progress.
    pub fn is_open(self) -> bool {
        self == LeadStatus::Offered || self.is_in_progress()
    }
}

/// One change of a lead, as both nodes recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadEvent {
    /// The envelope's `created` time.
    pub at: Millis,
    /// The node that sent the message.
    pub by: NodeId,
    /// The message kind.
    pub kind: String,
    /// The status after the change.
    pub status: LeadStatus,
    /// The message's note, reason or lost reason.
    pub note: String,
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
    /// Every change, oldest first, the offer included.
    pub history: Vec<LeadEvent>,
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
                    history: vec![LeadEvent {
                        at: ctx.at,
                        by: ctx.from.clone(),
                        kind: kind.to_string(),
                        status: LeadStatus::Offered,
                        note: offer.notes.clone(),
                    }],
                })
            }
            _ => Err(unknown_record(kind)),
        };
    };
    let mut next = lead.clone();
    next.updated_at = ctx.at;
    let closed_by_vendor = |what: &str| {
        StateError::new(
            ReasonCode::Expired,
            format!(
                "{kind}: the lead is {}; the vendor took it back, {what}",
                lead.status.as_str()
            ),
        )
    };
    let note = match message {
        Message::LeadOffer(_) => return Err(record_exists(kind)),
        Message::LeadAccept(a) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            if matches!(lead.status, LeadStatus::Expired | LeadStatus::Withdrawn) {
                return Err(closed_by_vendor("it can no longer be accepted"));
            }
            if lead.status != LeadStatus::Offered {
                return Err(StateError::illegal(format!(
                    "lead.accept: the lead is {}, only an offered lead can be accepted",
                    lead.status.as_str()
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
            a.note.clone()
        }
        Message::LeadDecline(d) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            if matches!(lead.status, LeadStatus::Expired | LeadStatus::Withdrawn) {
                return Err(closed_by_vendor("there is nothing left to decline"));
            }
            if lead.status != LeadStatus::Offered {
                return Err(StateError::illegal(format!(
                    "lead.decline: the lead is {}, only an offered lead can be declined",
                    lead.status.as_str()
                )));
            }
            next.status = LeadStatus::Declined;
            next.decline_reason = Some(d.reason);
            d.note.clone()
        }
        Message::LeadUpdate(u) => {
            require_sender(ctx, &lead.partner, "partner", kind)?;
            if matches!(lead.status, LeadStatus::Expired | LeadStatus::Withdrawn) {
                return Err(closed_by_vendor("progress can no longer be reported"));
            }
            let to = match u.status {
                LeadProgress::Contacted => LeadStatus::Contacted,
                LeadProgress::Qualified => LeadStatus::Qualified,
                LeadProgress::Won => LeadStatus::Won,
                LeadProgress::Lost => LeadStatus::Lost,
            };
            let Some(from_rank) = lead.status.rank() else {
                return Err(StateError::illegal(format!(
                    "lead.update: the lead is {}; progress can only be reported on an accepted lead",
                    lead.status.as_str()
                )));
            };
            let to_rank = to.rank().unwrap_or(0);
            if from_rank >= 3 || to_rank <= from_rank {
                return Err(StateError::illegal(format!(
                    "lead.update: cannot move from {} to {} (progress moves forward only; won and lost are final)",
                    lead.status.as_str(),
                    to.as_str()
                )));
            }
            next.status = to;
            next.won_value = u.won_value.clone();
            next.won_on = u.won_on.clone();
            next.lost_reason = u.lost_reason.clone();
            match &u.lost_reason {
                Some(r) if u.note.is_empty() => r.clone(),
                Some(r) => format!("{r}: {}", u.note),
                None => u.note.clone(),
            }
        }
        Message::LeadExpire(e) => {
            require_sender(ctx, &lead.vendor, "vendor", kind)?;
            if lead.status != LeadStatus::Offered {
                return Err(StateError::illegal(format!(
                    "lead.expire: only an offered lead expires; this one is {}",
                    lead.status.as_str()
                )));
            }
            if ctx.at <= lead.offer.accept_by {
                return Err(StateError::illegal(
                    "lead.expire: the offer's acceptance deadline has not passed yet",
                ));
            }
            next.status = LeadStatus::Expired;
            e.note.clone()
        }
        Message::LeadWithdraw(w) => {
            require_sender(ctx, &lead.vendor, "vendor", kind)?;
            if matches!(lead.status, LeadStatus::Expired | LeadStatus::Withdrawn) {
                return Err(StateError::illegal(format!(
                    "lead.withdraw: the lead is already {}",
                    lead.status.as_str()
                )));
            }
            next.status = LeadStatus::Withdrawn;
            if w.note.is_empty() {
                w.reason.clone()
            } else {
                format!("{}: {}", w.reason, w.note)
            }
        }
        _ => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to a lead"
            )));
        }
    };
    next.history.push(LeadEvent {
        at: ctx.at,
        by: ctx.from.clone(),
        kind: kind.to_string(),
        status: next.status,
        note,
    });
    Ok(next)
}
