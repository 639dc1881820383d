//! Joint goals (SPEC §19): a target for a scorecard figure over a period
//! that a vendor and a partner negotiate with signed `goal.*` messages —
//! between two daemons over the stream, with a web partner through the
//! same state machine under `web:<partner>`. Progress is the figure's
//! value in the goal's period computed from the scorecard cells
//! (`crate::scorecards`) with the protocol's `scorecard::progress`, so
//! both nodes show the same.
//!
//! Subjects are `goal.<UUIDv7>.<proposer>`: the proposer (a node id or a
//! web partner's id) keeps two sides' new goals apart, the UUIDv7 keeps
//! them in time order.

use crate::accounts::User;
use crate::engine::EngineError;
use crate::node::Node;
use crate::record_index::Side;
use crate::scorecards::Subject;
use guanxi_adapters::store::{Read, StoreError};
use guanxi_protocol::messages::GoalPropose;
use guanxi_protocol::scorecard::Progress;
use guanxi_protocol::state::goal::GoalRecord;
use guanxi_protocol::state::{Record, StateError};
use guanxi_protocol::{Message, Millis, NodeId, ReasonCode};

/// How this node's reader takes part in a goal: who acts (this node, or
/// the web partner whose user acts), who the other side is, and where the
/// record is kept.
#[derive(Debug, Clone)]
pub struct Party {
    pub key: String,
    pub actor: NodeId,
    pub other: NodeId,
    /// The other side runs a daemon: messages go over the stream.
    pub peer: bool,
}

fn refuse<T>(
    code: ReasonCode,
    message: impl Into<String>,
) -> Result<Result<T, StateError>, EngineError> {
    Ok(Err(StateError {
        code,
        message: message.into(),
    }))
}

/// The party `user` is in the relationship `s` (found by
/// `scorecards::subject`): a partner user acts for its organization on
/// its web records; staff act for this node, towards a partner's daemon
/// when it has one.
pub fn party_of(
    read: &Read,
    me: &NodeId,
    user: &User,
    s: &Subject,
) -> Result<Option<Party>, StoreError> {
    let web = |partner: &str| partner.parse::<NodeId>().ok();
    if let Some(org) = &user.partner {
        return Ok(web(org).map(|p| Party {
            key: crate::records::web_key(org),
            actor: p,
            other: me.clone(),
            peer: false,
        }));
    }
    if &s.vendor != me {
        // Staff of a partner node, with its vendor's daemon.
        return Ok(Some(Party {
            key: s.vendor.to_string(),
            actor: me.clone(),
            other: s.vendor.clone(),
            peer: true,
        }));
    }
    let Some(p) = crate::directory::load(read, &s.partner)? else {
        return Ok(None);
    };
    Ok(match p.peer {
        Some(peer) => peer.parse::<NodeId>().ok().map(|other| Party {
            key: peer,
            actor: me.clone(),
            other,
            peer: true,
        }),
        None => web(&p.id).map(|other| Party {
            key: crate::records::web_key(&p.id),
            actor: me.clone(),
            other,
            peer: false,
        }),
    })
}

/// The party `user` is on the goal kept under `key` (`None`: not theirs).
pub fn party_at(me: &NodeId, user: &User, key: &str) -> Option<Party> {
    match (&user.partner, key.strip_prefix("web:")) {
        (Some(org), Some(p)) if org == p => Some(Party {
            key: key.to_string(),
            actor: p.parse().ok()?,
            other: me.clone(),
            peer: false,
        }),
        (Some(_), _) => None,
        (None, Some(p)) => Some(Party {
            key: key.to_string(),
            actor: me.clone(),
            other: p.parse().ok()?,
            peer: false,
        }),
        (None, None) => Some(Party {
            key: key.to_string(),
            actor: me.clone(),
            other: key.parse().ok()?,
            peer: true,
        }),
    }
}

/// Applies `message` on the goal `subject` as `party`: sent over the
/// stream to a daemon, applied in place with a web partner. A refusal
/// changes nothing.
pub async fn act(
    node: &Node,
    party: &Party,
    subject: &str,
    message: Message,
) -> Result<Result<(), StateError>, EngineError> {
    if party.peer {
        return node
            .send_to_peer(party.other.as_str(), subject, message)
            .await;
    }
    let (party, subject) = (party.clone(), subject.to_string());
    node.engine
        .act(move |a| {
            Ok(
                a.apply_local(&party.key, &subject, &party.actor, &party.other, &message)?
                    .map(|_| ()),
            )
        })
        .await
}

/// Proposes a goal as `party`; answers its subject.
pub async fn propose(
    node: &Node,
    party: &Party,
    body: GoalPropose,
) -> Result<Result<String, StateError>, EngineError> {
    let subject = format!("goal.{}.{}", uuid::Uuid::now_v7().hyphenated(), party.actor);
    if body.vendor != party.actor && body.vendor != party.other {
        return refuse(ReasonCode::BadBody, "vendor: one of the goal's two sides");
    }
    Ok(act(node, party, &subject, Message::GoalPropose(body))
        .await?
        .map(|()| subject))
}

/// One goal as a reader sees it: where it is kept, the record, and its
/// progress now.
pub struct Shown {
    pub key: String,
    pub subject: String,
    pub goal: GoalRecord,
    pub progress: Progress,
}

/// The goal's progress at `now`, from the cells of the relationship's
/// records (`keys` where they are kept here).
pub fn progress_of(
    read: &Read,
    goal: &GoalRecord,
    keys: &[String],
    now: Millis,
) -> Result<Progress, StoreError> {
    let p = &goal.proposal;
    let card = crate::scorecards::compute(read, &goal.vendor, keys, &p.period)?;
    Ok(guanxi_protocol::scorecard::progress(
        &card,
        &p.metric,
        goal.target,
        &p.period,
        now,
    ))
}

/// Up to `limit` goals of the relationship `s`, newest first, with their
/// progress; `party.key` is where they are kept.
pub fn list(
    read: &Read,
    me: &NodeId,
    s: &Subject,
    party: &Party,
    now: Millis,
    limit: usize,
) -> Result<Vec<Shown>, StoreError> {
    let side = if &s.vendor == me {
        Side::Own
    } else {
        Side::Peer
    };
    let (places, _) = crate::record_index::by_key(
        read,
        "goal",
        side,
        &crate::record_index::key_of(&party.key),
        None,
        limit,
    )?;
    let mut out = Vec::new();
    for (key, subject, record) in crate::record_index::load(read, places) {
        if let Record::Goal(goal) = record {
            let progress = progress_of(read, &goal, &s.keys, now)?;
            out.push(Shown {
                key,
                subject,
                goal,
                progress,
            });
        }
    }
    out.sort_by(|a, b| b.subject.cmp(&a.subject));
    Ok(out)
}

/// The goal `subject` kept under `key`, if `user` may see it, with its
/// progress and the reader's party.
pub fn one(
    read: &Read,
    me: &NodeId,
    user: &User,
    key: &str,
    subject: &str,
    now: Millis,
) -> Result<Option<(Shown, Party)>, StoreError> {
    let Some(party) = party_at(me, user, key) else {
        return Ok(None);
    };
    let Some(Record::Goal(goal)) = crate::records::read_one(read, key, subject)? else {
        return Ok(None);
    };
    // The relationship's records: at the vendor, the partner's places.
    let keys = if &goal.vendor == me {
        let partner = key.strip_prefix("web:").unwrap_or(goal.partner.as_str());
        match crate::directory::load(read, partner)? {
            Some(p) => crate::scorecards::keys_of(&p),
            None => vec![key.to_string()],
        }
    } else {
        vec![key.to_string()]
    };
    let progress = progress_of(read, &goal, &keys, now)?;
    Ok(Some((
        Shown {
            key: key.to_string(),
            subject: subject.to_string(),
            goal,
            progress,
        },
        party,
    )))
}

/// Whether `party` may answer `goal` now (it is proposed and the current
/// proposal is the other side's).
pub fn may_answer(goal: &GoalRecord, party: &Party) -> bool {
    goal.status == guanxi_protocol::state::goal::GoalStatus::Proposed
        && goal.proposed_by != party.actor
}
