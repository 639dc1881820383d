//! Where shared records are kept and who may see them. A record with a
//! peer daemon is kept under the peer's id; one with a partner that has no
//! daemon under `web:<partner id>`. Staff see the records this node shares
//! as vendor (either kind) and those it holds as partner with other
//! daemons; a partner user sees only its organization's `web:` records.

use crate::accounts::{Role, User};
use guanxi_protocol::NodeId;
use guanxi_protocol::state::Record;

/// The record key of a partner without a daemon.
pub fn web_key(partner: &str) -> String {
    format!("web:{partner}")
}

/// A stored record, or `None` (logged) when it cannot be read.
pub fn parse_record(key: &str, subject: &str, bytes: &[u8]) -> Option<Record> {
    match serde_json::from_slice(bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("record ({key}, {subject}) is unreadable: {e}");
            None
        }
    }
}

/// Whether `user` may see the record kept under `key` between `vendor` and
/// `partner`, this node being `me`.
pub fn visible(user: &User, me: &NodeId, key: &str, vendor: &NodeId, partner: &NodeId) -> bool {
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) => key == web_key(org),
        (Role::Partner, None) => false,
        _ => vendor == me || (partner == me && !key.starts_with("web:")),
    }
}
