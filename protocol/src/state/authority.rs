//! One authority per shared record, and how the other node's copy follows it
//! (SPEC §12.1).
//!
//! Every shared record has one **authority**: its vendor. The authority
//! applies messages in the order it makes or receives them and numbers every
//! applied message with the record's **version** (1, 2, 3, ...). Its own
//! messages carry the version they produce (`record_version` in the
//! envelope); its receipt for the other node's accepted message carries the
//! version at which that message landed. Whatever the other node sends is a
//! request: the authority applies it where it arrives, or refuses it.
//!
//! The other node, the **follower**, keeps the authority's confirmed record at
//! a known version, plus its own requests that have no answer yet. What its
//! users see is the confirmed record with those requests applied on top (the
//! *projection*). A message the authority placed at version `v` is applied to
//! the confirmed record only after every version before it, so the confirmed
//! record goes through exactly the authority's sequence of states; a refused
//! request simply drops out of the projection. Both nodes therefore end with
//! the same record, whatever order the two streams were read in.
//!
//! A [`Slot`] is what one node keeps about one record shared with one peer;
//! the daemon stores it, the simulation keeps it in memory, and both change it
//! only through the functions here.

use super::{Context, Record, StateError, apply, order};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::Message;
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One applied or requested message, kept so it can be applied again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub from: NodeId,
    pub to: NodeId,
    pub at: Millis,
    pub kind: String,
    pub body: Value,
}

impl Step {
    /// The step of `message` sent in `ctx`.
    pub fn of(ctx: &Context, message: &Message) -> Result<Step, StateError> {
        Ok(Step {
            from: ctx.from.clone(),
            to: ctx.to.clone(),
            at: ctx.at,
            kind: message.kind().to_string(),
            body: message.body().map_err(|e| {
                StateError::new(ReasonCode::BadBody, format!("body not writable: {e}"))
            })?,
        })
    }

    fn context(&self) -> Context {
        Context {
            from: self.from.clone(),
            to: self.to.clone(),
            at: self.at,
        }
    }

    fn apply_to(&self, record: Option<&Record>) -> Result<Option<Record>, StateError> {
        let message = Message::decode(&self.kind, &self.body)
            .map_err(|e| StateError::new(ReasonCode::BadBody, e.to_string()))?;
        apply(record, &self.context(), &message)
    }
}

/// One of this node's requests that the authority has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its seq in the stream to the authority.
    pub seq: u64,
    pub step: Step,
}

/// What a follower keeps while anything about the record is unsettled.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Follow {
    /// The authority's record at the slot's version.
    pub confirmed: Option<Record>,
    /// This node's requests without an answer, in the order they were sent.
    pub pending: Vec<Pending>,
    /// Steps the authority placed after a version this node has not learnt
    /// yet (its receipt for one of our requests is still on the way), by
    /// version, ascending.
    pub early: Vec<(u64, Step)>,
    /// Set when the authority refused the request that opened the record:
    /// it holds no record, and this node keeps its own copy only to show it
    /// (`order.place` becomes `refused`).
    pub refused: Option<String>,
}

impl Follow {
    fn settled(&self) -> bool {
        self.pending.is_empty() && self.early.is_empty() && self.refused.is_none()
    }
}

/// What one node keeps about one record shared with one peer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Slot {
    /// The record as this node shows it: at the authority the record itself,
    /// at a follower the projection.
    pub record: Option<Record>,
    /// The authority's version of the record: at a follower, the version of
    /// the confirmed record.
    pub version: u64,
    /// A follower's bookkeeping while anything is unsettled; `None` when the
    /// record is the confirmed one.
    pub follow: Option<Follow>,
}

/// A message the authority placed that could not be applied at the follower
/// in its turn: the two copies differ (or a checkpoint found a difference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub version: u64,
    pub kind: String,
    pub error: StateError,
}

/// What a node did with a message from its peer; the slot is to be kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// The version the message produced, for the receipt (this node is the
    /// record's authority).
    pub version: Option<u64>,
    /// The authority's message was in turn but does not apply here (a
    /// checkpoint that found a difference): its version is consumed, the
    /// record is unchanged, and the receipt rejects it with this reason.
    pub refused: Option<StateError>,
    /// Messages placed earlier that this one let through but that did not
    /// apply here.
    pub faults: Vec<Fault>,
}

/// What happened to a message this node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The authority applied it at this version.
    Placed(u64),
    /// The authority refused it (signed rejection) with this reason.
    Refused(String),
    /// Accepted by a node that is not the record's authority: nothing to do.
    Received,
}

fn version_conflict(message: impl Into<String>) -> StateError {
    StateError::new(ReasonCode::VersionConflict, message)
}

impl Slot {
    /// A slot holding `record` at `version`, nothing unsettled.
    pub fn settled(record: Option<Record>, version: u64) -> Slot {
        Slot {
            record,
            version,
            follow: None,
        }
    }

    /// The authority's record as this node knows it (at a follower, without
    /// its unanswered requests). Both nodes hold the same confirmed record
    /// once every message has arrived.
    pub fn confirmed(&self) -> Option<&Record> {
        match &self.follow {
            Some(f) => f.confirmed.as_ref(),
            None => self.record.as_ref(),
        }
    }

    /// Whether this node has requests without an answer on the record.
    pub fn has_pending(&self) -> bool {
        self.follow.as_ref().is_some_and(|f| !f.pending.is_empty())
    }

    /// This node sends `message` about the record (its seq in the stream is
    /// `seq`). The message must apply to the record as shown. Returns the
    /// `record_version` its envelope carries: the new version when this node
    /// is the record's authority, `None` for a request (kept as pending) and
    /// for messages that concern no record.
    pub fn send(
        &mut self,
        me: &NodeId,
        ctx: &Context,
        message: &Message,
        seq: u64,
    ) -> Result<Option<u64>, StateError> {
        if self.follow.as_ref().is_some_and(|f| f.refused.is_some()) {
            return Err(StateError::illegal(
                "the vendor refused the message that opened this record; it holds no record",
            ));
        }
        let Some(next) = apply(self.record.as_ref(), ctx, message)? else {
            return Ok(None);
        };
        if next.authority() == me {
            self.record = Some(next);
            self.version += 1;
            return Ok(Some(self.version));
        }
        let step = Step::of(ctx, message)?;
        let confirmed = self.record.clone();
        let follow = self.follow.get_or_insert_with(|| Follow {
            confirmed,
            ..Follow::default()
        });
        follow.pending.push(Pending { seq, step });
        self.record = Some(next);
        Ok(None)
    }

    /// A message from the peer about the record, with the `record_version`
    /// of its envelope. An error is a rejection that changes nothing; on
    /// success the slot is to be kept and [`Received`] says what goes into
    /// the receipt. A follower takes the authority's messages in version
    /// order: one that arrives before a version it has not learnt yet waits
    /// in the slot (accepted: it is durable), and one that is in turn but
    /// does not apply still consumes its version.
    pub fn receive(
        &mut self,
        me: &NodeId,
        ctx: &Context,
        message: &Message,
        record_version: Option<u64>,
    ) -> Result<Received, StateError> {
        let Some(version) = record_version else {
            // A request: this node must be the authority.
            if self.follow.is_some() {
                return Err(version_conflict(format!(
                    "{} about a record whose authority is {}: it must carry record_version",
                    message.kind(),
                    ctx.from
                )));
            }
            let Some(next) = apply(self.record.as_ref(), ctx, message)? else {
                return Ok(Received::default());
            };
            if next.authority() != me {
                return Err(version_conflict(format!(
                    "{} from the record's authority {} must carry record_version",
                    message.kind(),
                    ctx.from
                )));
            }
            self.record = Some(next);
            self.version += 1;
            return Ok(Received {
                version: Some(self.version),
                ..Received::default()
            });
        };
        // From the authority: placed at `version`.
        if !message.concerns_record() {
            return Err(version_conflict(format!(
                "{} concerns no record; record_version must be null",
                message.kind()
            )));
        }
        if let Some(known) = self.record.as_ref().or(self.confirmed())
            && known.authority() != &ctx.from
        {
            return Err(version_conflict(format!(
                "record_version from {}, which is not the record's authority ({})",
                ctx.from,
                known.authority()
            )));
        }
        let step = Step::of(ctx, message)?;
        let mut follow = self.follow.take().unwrap_or_else(|| Follow {
            confirmed: self.record.clone(),
            ..Follow::default()
        });
        if version <= self.version || follow.early.iter().any(|(v, _)| *v == version) {
            self.follow = Some(follow).filter(|f| !f.settled());
            return Err(version_conflict(format!(
                "record_version {version} was already placed (confirmed up to {})",
                self.version
            )));
        }
        let mut in_turn = None;
        if version == self.version + 1 {
            // Applied now, so its own error can go into the receipt.
            match step.apply_to(follow.confirmed.as_ref()) {
                Ok(Some(record)) if record.authority() != &ctx.from => {
                    in_turn = Some(version_conflict(format!(
                        "record_version from {}, which is not the record's authority",
                        ctx.from
                    )));
                }
                Ok(record) => follow.confirmed = record,
                Err(e) => in_turn = Some(e),
            }
            self.version = version;
        } else {
            let at = follow.early.partition_point(|(v, _)| *v < version);
            follow.early.insert(at, (version, step));
        }
        let faults = self.settle(follow);
        Ok(Received {
            version: None,
            refused: in_turn,
            faults,
        })
    }

    /// The peer answered this node's message `seq` about the record: where
    /// the authority placed it, or that it refused it. `at` is when the
    /// answer came (only for the display of a refused order).
    pub fn answered(&mut self, seq: u64, answer: &Answer, at: Millis) -> Vec<Fault> {
        let Some(mut follow) = self.follow.take() else {
            return Vec::new();
        };
        let Some(i) = follow.pending.iter().position(|p| p.seq == seq) else {
            self.follow = Some(follow);
            return Vec::new();
        };
        let pending = follow.pending.remove(i);
        match answer {
            Answer::Placed(version) if *version > self.version => {
                let at = follow.early.partition_point(|(v, _)| v < version);
                follow.early.insert(at, (*version, pending.step));
            }
            Answer::Placed(_) | Answer::Received => {}
            Answer::Refused(reason) => {
                let opened_nothing = follow.confirmed.is_none()
                    && follow.early.is_empty()
                    && follow.pending.is_empty();
                if opened_nothing && let Some(shown) = self.record.take() {
                    self.record = Some(match shown {
                        Record::Order(o) => Record::Order(order::refused(&o, reason, at)),
                        other => other,
                    });
                    follow.refused = Some(reason.clone());
                    self.follow = Some(follow);
                    return Vec::new();
                }
            }
        }
        self.settle(follow)
    }

    /// Applies the early steps that are now in turn, recomputes the
    /// projection and drops the bookkeeping once nothing is unsettled.
    fn settle(&mut self, mut follow: Follow) -> Vec<Fault> {
        let mut faults = Vec::new();
        while follow
            .early
            .first()
            .is_some_and(|(v, _)| *v == self.version + 1)
        {
            let (version, step) = follow.early.remove(0);
            match step.apply_to(follow.confirmed.as_ref()) {
                Ok(record) => follow.confirmed = record,
                Err(error) => faults.push(Fault {
                    version,
                    kind: step.kind.clone(),
                    error,
                }),
            }
            self.version = version;
        }
        if follow.refused.is_some() {
            self.follow = Some(follow);
            return faults;
        }
        let mut shown = follow.confirmed.clone();
        for p in &follow.pending {
            // A request that no longer applies stays pending (the authority
            // will refuse it) but is not shown.
            if let Ok(Some(next)) = p.step.apply_to(shown.as_ref()) {
                shown = Some(next);
            }
        }
        self.record = shown;
        self.follow = Some(follow).filter(|f| !f.settled());
        faults
    }
}
