//! The service request state machine.
//!
//! ```text
//! service.open → open → in_progress ⇄ waiting_on_partner → resolved → closed
//!                                                             └── reopened → open
//! ```
//! The partner (sender of `service.open`) opens, answers (`in_progress` from
//! `waiting_on_partner`) and reopens; the vendor moves the work along; either
//! side closes a resolved request. A comment without a status change is
//! allowed in every state but closed. Every update is kept in the record's
//! events (comments and attachments included), identical on both nodes.

use super::{Context, StateError, record_exists, unknown_record};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Message, ServiceChange, ServiceOpen};
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};

/// Where a service request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Open,
    InProgress,
    WaitingOnPartner,
    Resolved,
    Closed,
}

impl ServiceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Open => "open",
            ServiceStatus::InProgress => "in_progress",
            ServiceStatus::WaitingOnPartner => "waiting_on_partner",
            ServiceStatus::Resolved => "resolved",
            ServiceStatus::Closed => "closed",
        }
    }
}

/// One update of a request: who, when, the status after it, the comment
/// and its attachments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub at: Millis,
    pub by: NodeId,
    pub status: ServiceStatus,
    pub comment: String,
    pub attachments: Vec<crate::messages::Attachment>,
    /// Library resources cited (their subjects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<crate::ids::RecordId>,
}

/// A service request as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub request: ServiceOpen,
    pub status: ServiceStatus,
    pub opened_at: Millis,
    /// The vendor's first update: the end of the first-response clock.
    pub first_response_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub comments: u32,
    /// Every update, oldest first (the opening included).
    pub events: Vec<ServiceEvent>,
}

pub(super) fn apply(
    current: Option<&ServiceRequest>,
    ctx: &Context,
    message: &Message,
) -> Result<ServiceRequest, StateError> {
    let kind = message.kind();
    let (request, update) = match (current, message) {
        (None, Message::ServiceOpen(open)) => {
            return Ok(ServiceRequest {
                vendor: ctx.to.clone(),
                partner: ctx.from.clone(),
                request: open.clone(),
                status: ServiceStatus::Open,
                opened_at: ctx.at,
                first_response_at: None,
                resolved_at: None,
                closed_at: None,
                comments: 0,
                events: vec![ServiceEvent {
                    at: ctx.at,
                    by: ctx.from.clone(),
                    status: ServiceStatus::Open,
                    comment: open.problem.clone(),
                    attachments: open.attachments.clone(),
                    resources: open.resources.clone(),
                }],
            });
        }
        (None, _) => return Err(unknown_record(kind)),
        (Some(_), Message::ServiceOpen(_)) => return Err(record_exists(kind)),
        (Some(r), Message::ServiceUpdate(u)) => (r, u),
        (Some(_), _) => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to a service request"
            )));
        }
    };
    let by_vendor = ctx.from == request.vendor;
    if !by_vendor && ctx.from != request.partner {
        return Err(StateError::new(
            ReasonCode::NotAllowed,
            "service.update from a node that is not a party",
        ));
    }
    let mut next = request.clone();
    use ServiceChange as C;
    use ServiceStatus as S;
    if let Some(change) = update.status {
        let from = request.status;
        let to = match (change, from, by_vendor) {
            (C::InProgress, S::Open | S::WaitingOnPartner, true) => S::InProgress,
            (C::InProgress, S::WaitingOnPartner, false) => S::InProgress,
            (C::WaitingOnPartner, S::Open | S::InProgress, true) => S::WaitingOnPartner,
            (C::Resolved, S::Open | S::InProgress | S::WaitingOnPartner, true) => S::Resolved,
            (C::Closed, S::Resolved, _) => S::Closed,
            (C::Reopened, S::Resolved | S::Closed, false) => S::Open,
            _ => {
                let who = if by_vendor { "vendor" } else { "partner" };
                return Err(StateError::illegal(format!(
                    "service.update: the {who} cannot change a {from:?} request with {change:?}"
                )));
            }
        };
        next.status = to;
        match to {
            S::Resolved => next.resolved_at = Some(ctx.at),
            S::Closed => next.closed_at = Some(ctx.at),
            S::Open => {
                next.resolved_at = None;
                next.closed_at = None;
            }
            _ => {}
        }
    } else if request.status == S::Closed {
        return Err(StateError::illegal(
            "service.update: a closed request takes no comments; reopen it first",
        ));
    }
    if !update.comment.trim().is_empty() {
        next.comments += 1;
    }
    if by_vendor && next.first_response_at.is_none() {
        next.first_response_at = Some(ctx.at);
    }
    next.events.push(ServiceEvent {
        at: ctx.at,
        by: ctx.from.clone(),
        status: next.status,
        comment: update.comment.clone(),
        attachments: update.attachments.clone(),
        resources: update.resources.clone(),
    });
    Ok(next)
}
