//! The announcement record: news a publisher sends one peer, perhaps asking
//! to be acknowledged, and when the peer read and acknowledged it.
//!
//! ```text
//! announcement.post (publisher) → posted ─announcement.post (higher version)→ posted
//! posted ─announcement.ack {acknowledged: false} (recipient)→ read
//! posted | read ─announcement.ack {acknowledged: true} (recipient, if asked)→ acknowledged
//! ```
//! The publisher is the record's authority; the recipient's acks are
//! requests it places. The times are the envelopes' `created`, so both nodes
//! compute the same delivery time (read or acknowledged minus posted).

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{AnnouncementPost, Message};
use serde::{Deserialize, Serialize};

/// When, and by whom, the recipient read or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub at: Millis,
    pub by: String,
}

/// An announcement as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementRecord {
    pub publisher: NodeId,
    pub recipient: NodeId,
    pub post: AnnouncementPost,
    /// When the first version was posted, and the current one.
    pub posted_at: Millis,
    pub updated_at: Millis,
    pub read: Option<Seen>,
    pub acknowledged: Option<Seen>,
}

impl AnnouncementRecord {
    /// `posted`, `read` or `acknowledged`.
    pub fn status(&self) -> &'static str {
        if self.acknowledged.is_some() {
            "acknowledged"
        } else if self.read.is_some() {
            "read"
        } else {
            "posted"
        }
    }
}

pub(super) fn apply(
    current: Option<&AnnouncementRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<AnnouncementRecord, StateError> {
    match (message, current) {
        (Message::AnnouncementPost(p), None) => Ok(AnnouncementRecord {
            publisher: ctx.from.clone(),
            recipient: ctx.to.clone(),
            post: p.clone(),
            posted_at: ctx.at,
            updated_at: ctx.at,
            read: None,
            acknowledged: None,
        }),
        (Message::AnnouncementPost(p), Some(r)) => {
            require_sender(ctx, &r.publisher, "publisher", message.kind())?;
            if p.version <= r.post.version {
                return Err(StateError::illegal(format!(
                    "announcement.post: version {} is not newer than the version held, {}",
                    p.version, r.post.version
                )));
            }
            let mut next = r.clone();
            next.post = p.clone();
            next.updated_at = ctx.at;
            Ok(next)
        }
        (Message::AnnouncementAck(_), None) => Err(super::unknown_record(message.kind())),
        (Message::AnnouncementAck(a), Some(r)) => {
            require_sender(ctx, &r.recipient, "recipient", message.kind())?;
            let seen = Some(Seen {
                at: ctx.at,
                by: a.by.clone(),
            });
            let mut next = r.clone();
            if a.acknowledged {
                if !r.post.requires_ack {
                    return Err(StateError::illegal(
                        "the announcement does not ask to be acknowledged",
                    ));
                }
                if r.acknowledged.is_some() {
                    return Err(StateError::illegal(
                        "the announcement is already acknowledged",
                    ));
                }
                next.acknowledged = seen.clone();
                if next.read.is_none() {
                    next.read = seen;
                }
            } else {
                if r.read.is_some() {
                    return Err(StateError::illegal("the announcement is already read"));
                }
                next.read = seen;
            }
            Ok(next)
        }
        _ => Err(StateError::illegal(format!(
            "{} does not apply to an announcement",
            message.kind()
        ))),
    }
}
