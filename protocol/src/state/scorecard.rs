//! The shared scorecard record: the figures a vendor computed for a partner
//! and one period, as it last sent them (SPEC §18.1).
//!
//! ```text
//! scorecard.share (vendor) → shared ─scorecard.share (vendor)→ shared
//! ```
//! The vendor is the authority and the only sender; each share replaces
//! the figures (the period is the subject's). The partner's node compares
//! them with its own computation; the record itself never changes there.

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Message, ScorecardShare};
use serde::{Deserialize, Serialize};

/// A shared scorecard as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScorecardRecord {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub share: ScorecardShare,
    pub shared_at: Millis,
}

pub(super) fn apply(
    current: Option<&ScorecardRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<ScorecardRecord, StateError> {
    let Message::ScorecardShare(s) = message else {
        return Err(StateError::illegal(format!(
            "{} does not apply to a scorecard",
            message.kind()
        )));
    };
    if let Some(r) = current {
        require_sender(ctx, &r.vendor, "vendor", message.kind())?;
        if r.share.period != s.period {
            return Err(StateError::illegal(
                "scorecard.share: another period than the record's",
            ));
        }
    }
    Ok(ScorecardRecord {
        vendor: ctx.from.clone(),
        partner: ctx.to.clone(),
        share: s.clone(),
        shared_at: ctx.at,
    })
}
