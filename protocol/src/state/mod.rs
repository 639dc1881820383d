//! State machines for shared records: leads, orders, warranty claims,
//! service requests, MDF budgets, library resources and announcements, and
//! the hand-over of a web partner's records to its own node.
//!
//! Both nodes of a relationship run the same function on the same messages, so
//! they compute the same state. [`apply`] takes the record as it is (or `None`
//! when the subject is new between the two nodes), the message's context (who
//! sent it to whom, and when, from the envelope) and the typed message, and
//! returns the record as it becomes, or a [`StateError`] whose code travels in
//! a signed rejection. Nothing here reads a clock: "now" is the envelope's
//! `created` time.
//!
//! Between two nodes a subject names exactly one record, whatever its family.

pub mod announcement;
pub mod authority;
mod catalog;
pub mod goal;
pub mod handover;
mod lead;
pub mod mdf;
mod order;
pub mod quiz;
mod registration;
pub mod resource;
pub mod scorecard;
mod service;
pub mod survey;
mod warranty;

pub use catalog::CatalogRecord;
pub use lead::{Lead, LeadEvent, LeadStatus};
pub use order::{Invoice, Order, OrderLineState, OrderStatus, Shipment, refused as order_refused};
pub use registration::{Registration, RegistrationStatus};
pub use service::{ServiceEvent, ServiceRequest, ServiceStatus};
pub use warranty::{WarrantyEvent, WarrantyRecord, WarrantyStatus};

use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::Message;
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};

/// Who sent a message to whom, and when (the envelope's `created`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub from: NodeId,
    pub to: NodeId,
    pub at: Millis,
}

/// Why a message cannot be applied to a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StateError {
    pub code: ReasonCode,
    pub message: String,
}

impl StateError {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        StateError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn illegal(message: impl Into<String>) -> Self {
        Self::new(ReasonCode::IllegalTransition, message)
    }
}

/// A shared record, in the state both nodes agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Record {
    Lead(Lead),
    Registration(Registration),
    Order(Order),
    Catalog(CatalogRecord),
    Mdf(mdf::MdfBudgetRecord),
    Warranty(WarrantyRecord),
    Service(ServiceRequest),
    Resource(resource::ResourceRecord),
    Announcement(announcement::AnnouncementRecord),
    Quiz(quiz::QuizAttempt),
    Scorecard(scorecard::ScorecardRecord),
    Goal(goal::GoalRecord),
    Survey(survey::SurveyRecord),
}

impl Record {
    /// The family name, as in kinds (`lead`, `order`, `warranty`, `service`).
    pub fn family(&self) -> &'static str {
        match self {
            Record::Lead(_) => "lead",
            Record::Registration(_) => "registration",
            Record::Order(_) => "order",
            Record::Catalog(_) => "catalog",
            Record::Mdf(_) => "mdf",
            Record::Warranty(_) => "warranty",
            Record::Service(_) => "service",
            Record::Resource(_) => "resource",
            Record::Announcement(_) => "announcement",
            Record::Quiz(_) => "quiz",
            Record::Scorecard(_) => "scorecard",
            Record::Goal(_) => "goal",
            Record::Survey(_) => "survey",
        }
    }

    /// The node that owns the record's order (§12.1): its vendor (for
    /// resources and announcements: their publisher).
    pub fn authority(&self) -> &NodeId {
        match self {
            Record::Lead(r) => &r.vendor,
            Record::Registration(r) => &r.vendor,
            Record::Order(r) => &r.vendor,
            Record::Catalog(r) => &r.vendor,
            Record::Mdf(r) => &r.vendor,
            Record::Warranty(r) => &r.vendor,
            Record::Service(r) => &r.vendor,
            Record::Resource(r) => &r.publisher,
            Record::Announcement(r) => &r.publisher,
            Record::Quiz(r) => &r.publisher,
            Record::Scorecard(r) => &r.vendor,
            Record::Goal(r) => &r.vendor,
            Record::Survey(r) => &r.surveyor,
        }
    }

    /// When the record began (offered, registered, placed, submitted,
    /// opened), from the message that created it; `None` for families
    /// without such a time (catalogs, MDF budgets).
    pub fn opened_at(&self) -> Option<Millis> {
        match self {
            Record::Lead(r) => Some(r.offered_at),
            Record::Registration(r) => Some(r.registered_at),
            Record::Order(r) => Some(r.placed_at),
            Record::Warranty(r) => Some(r.submitted_at),
            Record::Service(r) => Some(r.opened_at),
            Record::Resource(r) => Some(r.first_published),
            Record::Announcement(r) => Some(r.posted_at),
            Record::Quiz(r) => Some(r.submitted_at),
            Record::Goal(r) => Some(r.opened_at),
            Record::Survey(r) => Some(r.sent_at),
            Record::Catalog(_) | Record::Mdf(_) | Record::Scorecard(_) => None,
        }
    }

    /// The record's status as its wire name.
    pub fn status(&self) -> String {
        let value = match self {
            Record::Lead(r) => serde_json::to_value(r.status),
            Record::Registration(r) => serde_json::to_value(r.status),
            Record::Order(r) => serde_json::to_value(r.status),
            Record::Catalog(_) => Ok(serde_json::Value::String("published".into())),
            Record::Mdf(r) => Ok(serde_json::Value::String(
                if r.expired { "expired" } else { "open" }.into(),
            )),
            Record::Warranty(r) => serde_json::to_value(r.status),
            Record::Service(r) => serde_json::to_value(r.status),
            Record::Resource(r) => Ok(serde_json::Value::String(
                if r.withdrawn.is_some() {
                    "withdrawn"
                } else {
                    "published"
                }
                .into(),
            )),
            Record::Announcement(r) => Ok(serde_json::Value::String(r.status().into())),
            Record::Quiz(r) => Ok(serde_json::Value::String(r.status().into())),
            Record::Scorecard(_) => Ok(serde_json::Value::String("shared".into())),
            Record::Goal(r) => serde_json::to_value(r.status),
            Record::Survey(_) => Ok(serde_json::Value::String("sent".into())),
        };
        value
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Applies `message` to `current` (the record named by the envelope's subject
/// between the two nodes, if any). Returns the record as it now is, or `None`
/// for a message that concerns no record (`ping`).
pub fn apply(
    current: Option<&Record>,
    ctx: &Context,
    message: &Message,
) -> Result<Option<Record>, StateError> {
    let wrong_family = |record: &Record| {
        StateError::new(
            ReasonCode::IllegalTransition,
            format!(
                "subject is a {} record, not a {} record",
                record.family(),
                family_of(message)
            ),
        )
    };
    let record = match (message, current) {
        (
            Message::Ping(_)
            | Message::AttachmentPut(_)
            | Message::KeyRotate(_)
            | Message::TlsPin(_),
            _,
        ) => return Ok(None),
        (
            Message::LeadOffer(_)
            | Message::LeadAccept(_)
            | Message::LeadDecline(_)
            | Message::LeadUpdate(_)
            | Message::LeadExpire(_)
            | Message::LeadWithdraw(_),
            c,
        ) => {
            let lead = match c {
                None => None,
                Some(Record::Lead(l)) => Some(l),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Lead(lead::apply(lead, ctx, message)?)
        }
        (Message::LeadRegister(_) | Message::LeadRegistration(_), c) => {
            let reg = match c {
                None => None,
                Some(Record::Registration(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Registration(registration::apply(reg, ctx, message)?)
        }
        (
            Message::OrderPlace(_)
            | Message::OrderAck(_)
            | Message::OrderShip(_)
            | Message::OrderCancel(_)
            | Message::OrderInvoice(_),
            c,
        ) => {
            let order = match c {
                None => None,
                Some(Record::Order(o)) => Some(o),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Order(order::apply(order, ctx, message)?)
        }
        (
            Message::MdfBudget(_)
            | Message::MdfRequest(_)
            | Message::MdfDecision(_)
            | Message::MdfClaim(_)
            | Message::MdfClaimDecision(_)
            | Message::MdfPaid(_)
            | Message::MdfCheckpoint(_),
            c,
        ) => {
            let budget = match c {
                None => None,
                Some(Record::Mdf(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Mdf(mdf::apply(budget, ctx, message)?)
        }
        (Message::CatalogPublish(_), c) => {
            let catalog = match c {
                None => None,
                Some(Record::Catalog(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Catalog(catalog::apply(catalog, ctx, message)?)
        }
        (
            Message::WarrantyClaim(_) | Message::WarrantyDecision(_) | Message::WarrantyFulfil(_),
            c,
        ) => {
            let claim = match c {
                None => None,
                Some(Record::Warranty(w)) => Some(w),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Warranty(warranty::apply(claim, ctx, message)?)
        }
        (Message::ServiceOpen(_) | Message::ServiceUpdate(_), c) => {
            let request = match c {
                None => None,
                Some(Record::Service(s)) => Some(s),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Service(service::apply(request, ctx, message)?)
        }
        (Message::ResourcePublish(_) | Message::ResourceWithdraw(_), c) => {
            let resource = match c {
                None => None,
                Some(Record::Resource(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Resource(resource::apply(resource, ctx, message)?)
        }
        (Message::AnnouncementPost(_) | Message::AnnouncementAck(_), c) => {
            let announcement = match c {
                None => None,
                Some(Record::Announcement(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Announcement(announcement::apply(announcement, ctx, message)?)
        }
        (Message::QuizSubmit(_) | Message::QuizGrade(_), c) => {
            let attempt = match c {
                None => None,
                Some(Record::Quiz(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Quiz(quiz::apply(attempt, ctx, message)?)
        }
        (Message::ScorecardShare(_), c) => {
            let card = match c {
                None => None,
                Some(Record::Scorecard(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Scorecard(scorecard::apply(card, ctx, message)?)
        }
        (
            Message::GoalPropose(_)
            | Message::GoalCounter(_)
            | Message::GoalAccept(_)
            | Message::GoalDecline(_),
            c,
        ) => {
            let goal = match c {
                None => None,
                Some(Record::Goal(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Goal(goal::apply(goal, ctx, message)?)
        }
        (Message::RecordHandover(h), c) => handover::apply(c, ctx, h)?,
        (Message::SurveySend(_) | Message::SurveyAnswer(_), c) => {
            let survey = match c {
                None => None,
                Some(Record::Survey(r)) => Some(r),
                Some(other) => return Err(wrong_family(other)),
            };
            Record::Survey(survey::apply(survey, ctx, message)?)
        }
    };
    Ok(Some(record))
}

fn family_of(message: &Message) -> &'static str {
    if matches!(
        message,
        Message::LeadRegister(_) | Message::LeadRegistration(_)
    ) {
        return "registration";
    }
    message.kind().split('.').next().unwrap_or("")
}

/// The error for a follow-up message on a subject that does not exist.
pub(crate) fn unknown_record(kind: &str) -> StateError {
    StateError::new(
        ReasonCode::UnknownRecord,
        format!("{kind} refers to a record that does not exist between these nodes"),
    )
}

/// The error for an opening message on a subject that already exists.
pub(crate) fn record_exists(kind: &str) -> StateError {
    StateError::new(
        ReasonCode::RecordExists,
        format!("{kind} opens a record, but the subject already names one between these nodes"),
    )
}

/// Refuses a message from a node that may not send it for this record.
pub(crate) fn require_sender(
    ctx: &Context,
    allowed: &NodeId,
    role: &str,
    kind: &str,
) -> Result<(), StateError> {
    if &ctx.from == allowed {
        Ok(())
    } else {
        Err(StateError::new(
            ReasonCode::NotAllowed,
            format!(
                "{kind} may only be sent by the record's {role} ({allowed}), not by {}",
                ctx.from
            ),
        ))
    }
}
