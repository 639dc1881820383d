//! The catalog record: the vendor's published catalog as a partner holds it.
//!
//! ```text
//! catalog.publish (vendor) → published ─catalog.publish (higher version)→ published
//! ```
//! The first publication fixes the vendor (its sender); later ones must come
//! from it and carry a higher version. Each replaces the whole catalog. By
//! convention the subject is `catalog.<vendor node id>`.

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{CatalogPublish, Message};
use serde::{Deserialize, Serialize};

/// A published catalog, as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRecord {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub catalog: CatalogPublish,
    pub published_at: Millis,
}

pub(super) fn apply(
    current: Option<&CatalogRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<CatalogRecord, StateError> {
    let Message::CatalogPublish(publish) = message else {
        return Err(StateError::illegal(format!(
            "{} does not apply to a catalog",
            message.kind()
        )));
    };
    if let Some(current) = current {
        require_sender(ctx, &current.vendor, "vendor", message.kind())?;
        if publish.version <= current.catalog.version {
            return Err(StateError::illegal(format!(
                "catalog.publish: version {} is not newer than the version held, {}",
                publish.version, current.catalog.version
            )));
        }
    }
    Ok(CatalogRecord {
        vendor: ctx.from.clone(),
        partner: ctx.to.clone(),
        catalog: publish.clone(),
        published_at: ctx.at,
    })
}
