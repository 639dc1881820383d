//! The warranty claim state machine.
//!
//! ```text
//! warranty.claim → submitted ─warranty.decision→ approved (repair | replacement | credit) | rejected
//!                     ↑   └──────decision need_info→ need_info
//!                     └──────warranty.claim (amended)────┘
//! ```
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
}

pub(super) fn apply(
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
        }),
        (None, _) => Err(unknown_record(kind)),
        (Some(record), Message::WarrantyClaim(claim)) => {
            if ctx.from != record.partner {
                return Err(record_exists(kind));
            }
            if record.status != WarrantyStatus::NeedInfo {
                return Err(StateError::illegal(format!(
                    "warranty.claim: the claim is {:?}; it can only be amended when the vendor asked for information",
                    record.status
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
                    "warranty.decision: the claim is {:?}; only a submitted claim can be decided",
                    record.status
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
        (Some(_), _) => Err(StateError::illegal(format!(
            "{kind} does not apply to a warranty claim"
        ))),
    }
}
