//! Shared records by family, side and status: a secondary index the engine
//! keeps in the same transaction as every record it saves, so that the
//! inbox and the lists read the records they show, never every record.
//!
//! Keys in the `record_index` table:
//! - `s␟<family>␟<side>␟<status>␟<key>␟<subject>` → nothing, where `side`
//!   is `own` when this node is the record's authority (its vendor) and
//!   `peer` when a peer is, and `key` is where the record is kept (a peer
//!   id or `web:<partner>`);
//! - `of␟<key>␟<subject>` → `<family>␟<side>␟<status>`, what the record is
//!   listed under (so a change removes exactly the old entry);
//! - `lead␟<offer subject>␟<key>␟<subject>` → nothing: orders that name a
//!   lead's offer (set when placed, never changed);
//! - `k␟<family>␟<side>␟<key>␟<subject>` → nothing: records by where they
//!   are kept (a web partner's, a peer's), subjects in order — lead offer
//!   subjects start with a UUIDv7, so newest last.

use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order, Read, Store, StoreError, Tables};
use guanxi_protocol::state::Record;

const SEP: char = '\u{1f}';

/// Whose record it is, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This node is the authority (the vendor).
    Own,
    /// A peer is.
    Peer,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Own => "own",
            Side::Peer => "peer",
        }
    }

    /// The side of `record` kept under `key`.
    pub fn of(key: &str, record: &Record) -> Side {
        if !key.starts_with("web:") && record.authority().as_str() == key {
            Side::Peer
        } else {
            Side::Own
        }
    }
}

fn listed_key(listing: &str, key: &str, subject: &str) -> String {
    format!("s{SEP}{listing}{SEP}{key}{SEP}{subject}")
}

fn of_key(key: &str, subject: &str) -> String {
    format!("of{SEP}{key}{SEP}{subject}")
}

/// The status a record is listed under: its own, except that a shipped
/// order with lines still to invoice is `shipped_uninvoiced` (it still
/// waits for its vendor).
pub fn listed_status(record: &Record) -> String {
    match record {
        Record::Order(o)
            if o.status == guanxi_protocol::state::OrderStatus::Shipped
                && o.lines.iter().any(|l| l.shipped > l.invoiced) =>
        {
            "shipped_uninvoiced".into()
        }
        other => other.status(),
    }
}

fn listing(key: &str, record: &Record) -> String {
    format!(
        "{}{SEP}{}{SEP}{}",
        record.family(),
        Side::of(key, record).as_str(),
        listed_status(record)
    )
}

/// After the engine saved `record` under (`key`, `subject`): moves its
/// index entry when its family, side or status changed.
pub fn record_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    record: &Record,
) -> Result<(), EngineError> {
    if let Record::Order(order) = record
        && let Some(lead) = &order.lead
    {
        t.put_doc(
            Doc::RecordIndex,
            &format!("lead{SEP}{lead}{SEP}{key}{SEP}{subject}"),
            b"",
        )?;
    }
    let new = listing(key, record);
    let of = of_key(key, subject);
    let old = t
        .doc(Doc::RecordIndex, &of)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if old.as_deref() == Some(new.as_str()) {
        return Ok(());
    }
    if old.is_none() {
        // A new record: its family, side and key never change.
        t.put_doc(
            Doc::RecordIndex,
            &format!(
                "k{SEP}{}{SEP}{}{SEP}{key}{SEP}{subject}",
                record.family(),
                Side::of(key, record).as_str()
            ),
            b"",
        )?;
    }
    if let Some(old) = old {
        t.delete_doc(Doc::RecordIndex, &listed_key(&old, key, subject))?;
    }
    t.put_doc(Doc::RecordIndex, &listed_key(&new, key, subject), b"")?;
    t.put_doc(Doc::RecordIndex, &of, new.as_bytes())?;
    Ok(())
}

/// Where a listed record is kept: (key, subject).
pub type Place = (String, String);

/// Up to `limit` records of `family` on `side` with `status` (and, when
/// given, kept under `key`), in key order after `after`; and whether more
/// follow. Reads the index range, never every record.
pub fn find(
    read: &Read,
    family: &str,
    side: Side,
    status: &str,
    key: Option<&str>,
    after: Option<&Place>,
    limit: usize,
) -> Result<(Vec<Place>, bool), StoreError> {
    let mut prefix = format!("s{SEP}{family}{SEP}{}{SEP}{status}{SEP}", side.as_str());
    let base = prefix.clone();
    if let Some(k) = key {
        prefix.push_str(k);
        prefix.push(SEP);
    }
    let cursor = after.map(|(k, s)| format!("{base}{k}{SEP}{s}"));
    let page = read.docs_page(
        Doc::RecordIndex,
        &prefix,
        cursor.as_deref(),
        Order::Forward,
        limit + 1,
    )?;
    let more = page.len() > limit;
    let places = page
        .into_iter()
        .take(limit)
        .filter_map(|(k, _)| {
            let rest = k.strip_prefix(&base)?;
            let (key, subject) = rest.split_once(SEP)?;
            Some((key.to_string(), subject.to_string()))
        })
        .collect();
    Ok((places, more))
}

/// Records of `family` on `side` kept under keys starting with
/// `key_prefix` (a whole key ends with `␟`, see [`key_of`]), last first,
/// continuing before `before`; and whether more follow.
pub fn by_key(
    read: &Read,
    family: &str,
    side: Side,
    key_prefix: &str,
    before: Option<&Place>,
    limit: usize,
) -> Result<(Vec<Place>, bool), StoreError> {
    let base = format!("k{SEP}{family}{SEP}{}{SEP}", side.as_str());
    let prefix = format!("{base}{key_prefix}");
    let cursor = before.map(|(k, s)| format!("{base}{k}{SEP}{s}"));
    let page = read.docs_page(
        Doc::RecordIndex,
        &prefix,
        cursor.as_deref(),
        Order::Backward,
        limit + 1,
    )?;
    let more = page.len() > limit;
    Ok((
        page.into_iter()
            .take(limit)
            .filter_map(|(k, _)| {
                let (key, subject) = k.strip_prefix(&base)?.split_once(SEP)?;
                Some((key.to_string(), subject.to_string()))
            })
            .collect(),
        more,
    ))
}

/// A whole key as a prefix for [`by_key`].
pub fn key_of(key: &str) -> String {
    format!("{key}{SEP}")
}

/// Where the orders naming the lead offer `offer_subject` are kept.
pub fn orders_for_offer(read: &Read, offer_subject: &str) -> Result<Vec<Place>, StoreError> {
    let prefix = format!("lead{SEP}{offer_subject}{SEP}");
    Ok(read
        .docs_page(Doc::RecordIndex, &prefix, None, Order::Forward, 1000)?
        .into_iter()
        .filter_map(|(k, _)| {
            let (key, subject) = k.strip_prefix(&prefix)?.split_once(SEP)?;
            Some((key.to_string(), subject.to_string()))
        })
        .collect())
}

/// The records at `places`, parsed (one that is gone or unreadable is left
/// out).
pub fn load(read: &Read, places: Vec<Place>) -> Vec<(String, String, Record)> {
    places
        .into_iter()
        .filter_map(|(key, subject)| {
            let bytes = read.record(&key, &subject).ok()??;
            let record = crate::records::parse_record(&key, &subject, &bytes)?;
            Some((key, subject, record))
        })
        .collect()
}

/// Names for the inbox: the first few, and "…" when more wait.
pub fn shown(names: Vec<String>, more: bool) -> String {
    let mut text = names.join(", ");
    if more {
        text.push_str(", …");
    }
    text
}

/// How many names an inbox item shows.
pub const SHOWN: usize = 10;

/// The `settings` key saying the index is built, and its version.
const BUILT_KEY: &str = "index:records";
const VERSION: &[u8] = b"3";

/// Builds the index when this store has none yet (a store from before it);
/// answers how many records were indexed. Runs before the engine starts.
pub fn ensure_built(store: &Store) -> Result<usize, EngineError> {
    if store.read()?.doc(Doc::Setting, BUILT_KEY)?.as_deref() == Some(VERSION) {
        return Ok(0);
    }
    rebuild(store)
}

/// Rebuilds the index from every record, a thousand per transaction.
pub fn rebuild(store: &Store) -> Result<usize, EngineError> {
    store.transact(|t| -> Result<(), EngineError> {
        loop {
            let old = t.docs_before(Doc::RecordIndex, "\u{10FFFF}", 1000)?;
            if old.is_empty() {
                return Ok(());
            }
            for (k, _) in old {
                t.delete_doc(Doc::RecordIndex, &k)?;
            }
        }
    })?;
    let mut after: Option<(String, String)> = None;
    let mut done = 0;
    loop {
        let (next, n) = store.transact(|t| -> Result<_, EngineError> {
            let page = t.records_page(after.as_ref(), 1000)?;
            for (key, subject, bytes) in &page {
                if let Some(record) = crate::records::parse_record(key, subject, bytes) {
                    record_saved(t, key, subject, &record)?;
                }
            }
            let next = (page.len() == 1000)
                .then(|| page.last().map(|(k, s, _)| (k.clone(), s.clone())))
                .flatten();
            if next.is_none() {
                t.put_doc(Doc::Setting, BUILT_KEY, VERSION)?;
            }
            Ok((next, page.len()))
        })?;
        done += n;
        match next {
            Some(n) => after = Some(n),
            None => return Ok(done),
        }
    }
}
