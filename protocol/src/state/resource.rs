//! The resource record: one item of the shared library (a file, a link or
//! an article) as its publisher offers it to one peer.
//!
//! ```text
//! resource.publish (publisher) → published ─resource.publish (higher version)→ published
//!                                 published ─resource.withdraw→ withdrawn
//!                                 withdrawn ─resource.publish (higher version)→ published
//! ```
//! The first publication fixes the publisher (its sender), who is the
//! record's authority; later messages must come from it. A new version
//! replaces the content for the recipient; the versions before it are kept
//! as history (the newest [`MAX_HISTORY`]).

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Attachment, Message, ResourcePublish};
use serde::{Deserialize, Serialize};

/// Most earlier versions a record keeps.
pub const MAX_HISTORY: usize = 20;

/// An earlier version of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVersion {
    pub version: i64,
    pub title: String,
    pub published_at: Millis,
    pub file: Option<Attachment>,
}

/// Adds `earlier` to `history`, keeping the newest [`MAX_HISTORY`].
pub fn keep_version(history: &mut Vec<ResourceVersion>, earlier: ResourceVersion) {
    history.push(earlier);
    if history.len() > MAX_HISTORY {
        history.remove(0);
    }
}

/// A resource as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub publisher: NodeId,
    pub recipient: NodeId,
    /// The current version.
    pub resource: ResourcePublish,
    /// When the first version was published.
    pub first_published: Millis,
    /// When the current version was published.
    pub published_at: Millis,
    /// Earlier versions, oldest first.
    pub history: Vec<ResourceVersion>,
    /// When it was withdrawn, if it is; and the publisher's note.
    pub withdrawn: Option<Millis>,
    pub withdraw_note: String,
}

pub(super) fn apply(
    current: Option<&ResourceRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<ResourceRecord, StateError> {
    match (message, current) {
        (Message::ResourcePublish(p), None) => Ok(ResourceRecord {
            publisher: ctx.from.clone(),
            recipient: ctx.to.clone(),
            resource: p.clone(),
            first_published: ctx.at,
            published_at: ctx.at,
            history: Vec::new(),
            withdrawn: None,
            withdraw_note: String::new(),
        }),
        (Message::ResourcePublish(p), Some(r)) => {
            require_sender(ctx, &r.publisher, "publisher", message.kind())?;
            if p.version <= r.resource.version {
                return Err(StateError::illegal(format!(
                    "resource.publish: version {} is not newer than the version held, {}",
                    p.version, r.resource.version
                )));
            }
            let mut next = r.clone();
            keep_version(
                &mut next.history,
                ResourceVersion {
                    version: r.resource.version,
                    title: r.resource.title.clone(),
                    published_at: r.published_at,
                    file: r.resource.file.clone(),
                },
            );
            next.resource = p.clone();
            next.published_at = ctx.at;
            next.withdrawn = None;
            next.withdraw_note.clear();
            Ok(next)
        }
        (Message::ResourceWithdraw(_), None) => Err(super::unknown_record(message.kind())),
        (Message::ResourceWithdraw(w), Some(r)) => {
            require_sender(ctx, &r.publisher, "publisher", message.kind())?;
            if r.withdrawn.is_some() {
                return Err(StateError::illegal("the resource is already withdrawn"));
            }
            let mut next = r.clone();
            next.withdrawn = Some(ctx.at);
            next.withdraw_note = w.note.clone();
            Ok(next)
        }
        _ => Err(StateError::illegal(format!(
            "{} does not apply to a resource",
            message.kind()
        ))),
    }
}
