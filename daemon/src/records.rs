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

/// One page of a list and where the next begins (`None`: the last page).
pub type Page<T> = (Vec<T>, Option<crate::record_index::Cursor>);

/// Which of a family's records a staff list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Those this node decides as the vendor (from web partners and peers).
    #[default]
    Received,
    /// Those this node sent to other vendors' daemons.
    Placed,
}

impl Direction {
    /// Reads `received` or `placed`.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "received" => Some(Direction::Received),
            "placed" => Some(Direction::Placed),
            _ => None,
        }
    }
}

/// One page of the `family` records the user may see, newest first
/// (staff: in `direction`; a partner user: its organization's), and where
/// the next page starts. Reads one range of the record index and the
/// records on the page, never the whole family.
pub fn page(
    read: &guanxi_adapters::store::Read,
    user: &User,
    family: &str,
    direction: Direction,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<Page<(String, String, Record)>, guanxi_adapters::store::StoreError> {
    use crate::record_index::{self as index, Scope, Side};
    let scope = match (&user.role, &user.partner, direction) {
        (Role::Partner, Some(org), _) => Scope::Key(web_key(org)),
        (Role::Partner, None, _) => return Ok((Vec::new(), None)),
        (_, _, Direction::Received) => Scope::Side(Side::Own),
        (_, _, Direction::Placed) => Scope::Side(Side::Peer),
    };
    let (places, next) = index::newest(read, family, &scope, before, limit)?;
    Ok((index::load(read, places), next))
}

/// The record kept at (`key`, `subject`), parsed; `None` when there is
/// none or it is unreadable (logged).
pub fn read_one(
    read: &guanxi_adapters::store::Read,
    key: &str,
    subject: &str,
) -> Result<Option<Record>, guanxi_adapters::store::StoreError> {
    Ok(read
        .record(key, subject)?
        .and_then(|bytes| parse_record(key, subject, &bytes)))
}
