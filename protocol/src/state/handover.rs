//! Handing a web partner's records to its own node (SPEC §25).
//!
//! A partner without a daemon works with its vendor in the vendor's web
//! view; the vendor keeps those records with the partner's directory id as
//! the partner's node id. When the partner installs its own node, the
//! vendor (each record's authority) sends every such record into the new
//! stream as `record.handover`, with the partner's old id replaced by the
//! new node's id. Both nodes then hold the record at version 1 and go on
//! from there as with any shared record.

use super::{Context, Record, StateError, require_sender};
use crate::ids::NodeId;
use crate::messages::RecordHandover;
use crate::reason::ReasonCode;

/// The node on the other side of `record` from its authority: the partner
/// (for resources, announcements and surveys the recipient, for a quiz
/// attempt the learner).
pub fn counterpart(record: &Record) -> &NodeId {
    match record {
        Record::Lead(r) => &r.partner,
        Record::Registration(r) => &r.partner,
        Record::Order(r) => &r.partner,
        Record::Catalog(r) => &r.partner,
        Record::Mdf(r) => &r.partner,
        Record::Warranty(r) => &r.partner,
        Record::Service(r) => &r.partner,
        Record::Resource(r) => &r.recipient,
        Record::Announcement(r) => &r.recipient,
        Record::Quiz(r) => &r.learner,
        Record::Scorecard(r) => &r.partner,
        Record::Goal(r) => &r.partner,
        Record::Survey(r) => &r.recipient,
    }
}

/// `record` with the partner's old id `was` replaced by `now` wherever it
/// names the partner: as the counterpart and as the author of history
/// steps. Nothing else changes.
pub fn handed_over(record: &Record, was: &NodeId, now: &NodeId) -> Record {
    let swap = |id: &mut NodeId| {
        if id == was {
            *id = now.clone();
        }
    };
    let mut r = record.clone();
    match &mut r {
        Record::Lead(l) => {
            swap(&mut l.partner);
            l.history.iter_mut().for_each(|e| swap(&mut e.by));
        }
        Record::Registration(g) => swap(&mut g.partner),
        Record::Order(o) => swap(&mut o.partner),
        Record::Catalog(c) => swap(&mut c.partner),
        Record::Mdf(b) => swap(&mut b.partner),
        Record::Warranty(w) => {
            swap(&mut w.partner);
            w.history.iter_mut().for_each(|e| swap(&mut e.by));
        }
        Record::Service(s) => {
            swap(&mut s.partner);
            s.events.iter_mut().for_each(|e| swap(&mut e.by));
        }
        Record::Resource(x) => swap(&mut x.recipient),
        Record::Announcement(a) => swap(&mut a.recipient),
        Record::Quiz(q) => swap(&mut q.learner),
        Record::Scorecard(c) => swap(&mut c.partner),
        Record::Goal(g) => {
            swap(&mut g.partner);
            swap(&mut g.proposed_by);
            g.history.iter_mut().for_each(|e| swap(&mut e.by));
        }
        Record::Survey(s) => swap(&mut s.recipient),
    }
    r
}

/// Applies `record.handover`: it opens the record between the two nodes
/// exactly as carried. Only the record's authority may send it, only to
/// the record's counterpart, and only for a subject that names no record
/// between them yet.
pub(crate) fn apply(
    current: Option<&Record>,
    ctx: &Context,
    handover: &RecordHandover,
) -> Result<Record, StateError> {
    if current.is_some() {
        return Err(super::record_exists("record.handover"));
    }
    let record = &handover.record;
    require_sender(ctx, record.authority(), "authority", "record.handover")?;
    if counterpart(record) != &ctx.to {
        return Err(StateError::new(
            ReasonCode::NotAllowed,
            format!(
                "record.handover carries a record with {}, not with its recipient {}",
                counterpart(record),
                ctx.to
            ),
        ));
    }
    if &handover.was == counterpart(record) || &handover.was == record.authority() {
        return Err(StateError::new(
            ReasonCode::BadBody,
            "record.handover must name the partner's former id in `was`, not a party of the record",
        ));
    }
    Ok(record.clone())
}
