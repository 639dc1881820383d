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
//!   subjects start with a UUIDv7, so newest last;
//! - `cust␟<match key>␟<key>␟<subject>` → nothing: deal registrations by
//!   end customer (`leads::conflicts::match_keys`), for conflicts;
//! - `att␟<sha256>␟<key>␟<subject>` → nothing: requests and claims that
//!   reference a file (who may download it);
//! - `runf␟…`, `runr␟…`: running service clocks by deadline
//!   (`service/overdue.rs`);
//! - `svc␟…`, `svcf␟…`: service metrics per partner and period
//!   (`service/aggregates.rs`);
//! - `rev␟…`, `revm␟…`, `revc␟…`: invoiced revenue per partner and
//!   currency, and per month (`orders/revenue.rs`);
//! - `mdfs␟…`, `mdfc␟…`: marketing funds allocated and used per currency
//!   (`mdf.rs`);
//! - `scf␟…`, `scd␟…`, `scm␟…`: scorecard parts per record, day and
//!   month (`scorecards.rs`);
//! - `ser␟<serial>` → where and when this node last shipped it as vendor
//!   (`serials.rs`);
//! - `d␟<family>␟<side>␟<time>␟<key>␟<subject>` and
//!   `dk␟<family>␟<key>␟<time>␟<subject>` → nothing: records by when they
//!   began ([`Record::opened_at`], 16 digits), across keys and per key —
//!   the lists, newest first (not for leads and catalogs, listed otherwise).

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

fn lead_entry(lead: &str, key: &str, subject: &str) -> String {
    format!("lead{SEP}{lead}{SEP}{key}{SEP}{subject}")
}

fn customer_entry(match_key: &str, key: &str, subject: &str) -> String {
    format!("cust{SEP}{match_key}{SEP}{key}{SEP}{subject}")
}

fn attachment_entry(sha256: &str, key: &str, subject: &str) -> String {
    format!("att{SEP}{sha256}{SEP}{key}{SEP}{subject}")
}

fn family_entry(family: &str, side: &str, key: &str, subject: &str) -> String {
    format!("k{SEP}{family}{SEP}{side}{SEP}{key}{SEP}{subject}")
}

fn dated_entry(family: &str, side: &str, time: &str, key: &str, subject: &str) -> String {
    format!("d{SEP}{family}{SEP}{side}{SEP}{time}{SEP}{key}{SEP}{subject}")
}

fn dated_by_key_entry(family: &str, time: &str, key: &str, subject: &str) -> String {
    format!("dk{SEP}{family}{SEP}{key}{SEP}{time}{SEP}{subject}")
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
        Record::Mdf(b) if !b.expired => match b.waiting_for() {
            Some("vendor") => "waiting_vendor".into(),
            Some(_) => "waiting_partner".into(),
            None => "open".into(),
        },
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
    if let Record::Order(order) = record {
        if let Some(lead) = &order.lead {
            t.put_doc(
                Doc::RecordIndex,
                &lead_entry(lead.as_str(), key, subject),
                b"",
            )?;
        }
        if Side::of(key, record) == Side::Own {
            crate::serials::order_saved(t, key, order)?;
            crate::orders::revenue::order_saved(t, key, subject, order)?;
        }
    }
    if let Record::Lead(lead) = record {
        // Offers this node's people answer: a web partner's, or ours from
        // a vendor's daemon.
        let ours = key.starts_with("web:") || Side::of(key, record) == Side::Peer;
        crate::notify::lead_saved(t, key, subject, lead, ours)?;
    }
    if let Record::Mdf(budget) = record
        && Side::of(key, record) == Side::Own
    {
        crate::mdf::budget_saved(t, key, subject, Some(budget))?;
    }
    if let Record::Service(request) = record
        && Side::of(key, record) == Side::Own
    {
        crate::service::overdue::request_saved(t, key, subject, request)?;
        crate::service::aggregates::request_saved(t, key, subject, Some(request))?;
    }
    if let Record::Registration(r) = record {
        for k in crate::leads::conflicts::match_keys(&r.deal.customer) {
            let entry = customer_entry(&k, key, subject);
            if t.doc(Doc::RecordIndex, &entry)?.is_none() {
                t.put_doc(Doc::RecordIndex, &entry, b"")?;
            }
        }
    }
    for sha in attachments_of(record) {
        let entry = attachment_entry(sha, key, subject);
        if t.doc(Doc::RecordIndex, &entry)?.is_none() {
            t.put_doc(Doc::RecordIndex, &entry, b"")?;
        }
    }
    crate::scorecards::record_saved(t, key, subject, record)?;
    if let Record::Survey(s) = record {
        crate::surveys::record_saved(t, key, subject, s, Side::of(key, record) == Side::Peer)?;
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
        // A new record: its family, side, key and time never change.
        let family = record.family();
        let side = Side::of(key, record).as_str();
        t.put_doc(
            Doc::RecordIndex,
            &family_entry(family, side, key, subject),
            b"",
        )?;
        if dated(family) {
            let time = time_of(record);
            t.put_doc(
                Doc::RecordIndex,
                &dated_entry(family, side, &time, key, subject),
                b"",
            )?;
            t.put_doc(
                Doc::RecordIndex,
                &dated_by_key_entry(family, &time, key, subject),
                b"",
            )?;
        }
    }
    if let Some(old) = old {
        t.delete_doc(Doc::RecordIndex, &listed_key(&old, key, subject))?;
    }
    t.put_doc(Doc::RecordIndex, &listed_key(&new, key, subject), b"")?;
    t.put_doc(Doc::RecordIndex, &of, new.as_bytes())?;
    Ok(())
}

/// Before the engine forgets `record`, kept under (`key`, `subject`) (a
/// web partner's record handed to its node, SPEC §25): every entry
/// [`record_saved`] made for it, and what it counted, are taken out.
pub fn record_removed(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    record: &Record,
) -> Result<(), EngineError> {
    let side = Side::of(key, record);
    match record {
        Record::Order(order) => {
            if let Some(lead) = &order.lead {
                t.delete_doc(Doc::RecordIndex, &lead_entry(lead.as_str(), key, subject))?;
            }
            if side == Side::Own {
                crate::serials::order_removed(t, key, order)?;
                crate::orders::revenue::order_removed(t, key, subject)?;
            }
        }
        Record::Lead(lead) => crate::notify::lead_saved(t, key, subject, lead, false)?,
        Record::Mdf(_) if side == Side::Own => crate::mdf::budget_saved(t, key, subject, None)?,
        Record::Service(request) if side == Side::Own => {
            crate::service::overdue::request_removed(t, key, subject, request)?;
            crate::service::aggregates::request_saved(t, key, subject, None)?;
        }
        Record::Registration(r) => {
            for k in crate::leads::conflicts::match_keys(&r.deal.customer) {
                t.delete_doc(Doc::RecordIndex, &customer_entry(&k, key, subject))?;
            }
        }
        Record::Survey(s) => crate::surveys::record_removed(t, key, subject, s)?,
        _ => {}
    }
    for sha in attachments_of(record) {
        t.delete_doc(Doc::RecordIndex, &attachment_entry(sha, key, subject))?;
    }
    crate::scorecards::record_removed(t, key, subject, record)?;
    let family = record.family();
    let side = side.as_str();
    t.delete_doc(Doc::RecordIndex, &family_entry(family, side, key, subject))?;
    if dated(family) {
        let time = time_of(record);
        t.delete_doc(
            Doc::RecordIndex,
            &dated_entry(family, side, &time, key, subject),
        )?;
        t.delete_doc(
            Doc::RecordIndex,
            &dated_by_key_entry(family, &time, key, subject),
        )?;
    }
    let of = of_key(key, subject);
    if let Some(old) = t.doc(Doc::RecordIndex, &of)? {
        let old = String::from_utf8_lossy(&old).into_owned();
        t.delete_doc(Doc::RecordIndex, &listed_key(&old, key, subject))?;
        t.delete_doc(Doc::RecordIndex, &of)?;
    }
    Ok(())
}

/// The files a service request or claim references (SHA-256, hex).
fn attachments_of(record: &Record) -> Vec<&str> {
    match record {
        Record::Service(r) => r
            .events
            .iter()
            .flat_map(|e| e.attachments.iter().map(|a| a.sha256.as_str()))
            .collect(),
        Record::Warranty(w) => w
            .claim
            .attachments
            .iter()
            .map(|a| a.sha256.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

/// Where the records referencing the file `sha256` are kept (at most
/// `limit`).
pub fn referencing(read: &Read, sha256: &str, limit: usize) -> Result<Vec<Place>, StoreError> {
    let prefix = format!("att{SEP}{sha256}{SEP}");
    Ok(read
        .docs_page(Doc::RecordIndex, &prefix, None, Order::Forward, limit)?
        .into_iter()
        .filter_map(|(k, _)| {
            let (key, subject) = k.strip_prefix(&prefix)?.split_once(SEP)?;
            Some((key.to_string(), subject.to_string()))
        })
        .collect())
}

/// Where the deal registrations whose end customer shares a match key
/// with `customer` are kept (at most `limit` per key).
pub fn registrations_matching(
    read: &Read,
    customer: &guanxi_protocol::messages::Customer,
    limit: usize,
) -> Result<Vec<Place>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    for k in crate::leads::conflicts::match_keys(customer) {
        let prefix = format!("cust{SEP}{k}{SEP}");
        for (entry, _) in read.docs_page(Doc::RecordIndex, &prefix, None, Order::Forward, limit)? {
            if let Some((key, subject)) =
                entry.strip_prefix(&prefix).and_then(|r| r.split_once(SEP))
            {
                out.insert((key.to_string(), subject.to_string()));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Where a listed record is kept: (key, subject).
pub type Place = (String, String);

/// Families listed by date (leads and catalogs are listed otherwise).
fn dated(family: &str) -> bool {
    !matches!(family, "lead" | "catalog")
}

fn time_of(record: &Record) -> String {
    format!("{:016}", record.opened_at().unwrap_or(0).max(0))
}

/// Which records a listing by date covers.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The records on one side (staff: what this node decides as the
    /// vendor, or what it sent to other vendors).
    Side(Side),
    /// The records kept under one key (a web partner's users).
    Key(String),
}

/// Where a listing by date continues: the time and place of the last
/// record shown, written `time/key/subject` in links and API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    time: String,
    key: String,
    subject: String,
}

impl Cursor {
    /// Reads a cursor as [`Cursor::text`] wrote it; `None` when malformed.
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.splitn(3, '/');
        let time = parts.next()?;
        let key = parts.next()?;
        let subject = parts.next()?;
        let ok = time.len() == 16
            && time.bytes().all(|b| b.is_ascii_digit())
            && !key.is_empty()
            && !subject.is_empty()
            && !key.contains(SEP)
            && !subject.contains(SEP);
        ok.then(|| Cursor {
            time: time.into(),
            key: key.into(),
            subject: subject.into(),
        })
    }

    /// The cursor as links and the API carry it.
    pub fn text(&self) -> String {
        format!("{}/{}/{}", self.time, self.key, self.subject)
    }
}

/// Up to `limit` records of `family` in `scope`, newest first, continuing
/// after `before`; and the cursor of the next page when more follow.
/// Reads one range of the index, never every record.
pub fn newest(
    read: &Read,
    family: &str,
    scope: &Scope,
    before: Option<&Cursor>,
    limit: usize,
) -> Result<(Vec<Place>, Option<Cursor>), StoreError> {
    let (prefix, cursor) = match scope {
        Scope::Side(side) => (
            format!("d{SEP}{family}{SEP}{}{SEP}", side.as_str()),
            before.map(|c| format!("{}{SEP}{}{SEP}{}", c.time, c.key, c.subject)),
        ),
        Scope::Key(key) => (
            format!("dk{SEP}{family}{SEP}{key}{SEP}"),
            before.map(|c| format!("{}{SEP}{}", c.time, c.subject)),
        ),
    };
    let cursor = cursor.map(|c| format!("{prefix}{c}"));
    let page = read.docs_page(
        Doc::RecordIndex,
        &prefix,
        cursor.as_deref(),
        Order::Backward,
        limit + 1,
    )?;
    let more = page.len() > limit;
    let mut places = Vec::new();
    let mut last = None;
    for (k, _) in page.into_iter().take(limit) {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let parsed = match scope {
            Scope::Side(_) => {
                let mut p = rest.splitn(3, SEP);
                match (p.next(), p.next(), p.next()) {
                    (Some(t), Some(k), Some(s)) => Some((t, k.to_string(), s)),
                    _ => None,
                }
            }
            Scope::Key(key) => rest.split_once(SEP).map(|(t, s)| (t, key.clone(), s)),
        };
        if let Some((time, key, subject)) = parsed {
            last = Some(Cursor {
                time: time.into(),
                key: key.clone(),
                subject: subject.into(),
            });
            places.push((key, subject.to_string()));
        }
    }
    Ok((places, if more { last } else { None }))
}

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

/// The entries under `prefix` (`<prefix><time, 16 digits>␟<rest>`) whose
/// time is in [`from`, `to`), oldest first: each one's `rest`. Reads the
/// window's entries only (the work is the records in the window, not the
/// family).
fn in_window(read: &Read, prefix: &str, from: i64, to: i64) -> Result<Vec<String>, StoreError> {
    let end = format!("{:016}", to.max(0));
    // Just before the first key of `from` (its time then a separator).
    let mut cursor = format!("{prefix}{:016}", from.max(0));
    let mut out = Vec::new();
    loop {
        let page = read.docs_page(
            Doc::RecordIndex,
            prefix,
            Some(&cursor),
            Order::Forward,
            1000,
        )?;
        let full = page.len() == 1000;
        for (k, _) in page {
            let Some((time, rest)) = k.strip_prefix(prefix).and_then(|r| r.split_once(SEP)) else {
                continue;
            };
            if time >= end.as_str() {
                return Ok(out);
            }
            out.push(rest.to_string());
            cursor = k.clone();
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The subjects of the records of `family` kept under `key` that began in
/// [`from`, `to`), oldest first (the per-key date index; families listed
/// otherwise — leads, catalogs — are not in it).
pub fn opened_between_for(
    read: &Read,
    family: &str,
    key: &str,
    from: i64,
    to: i64,
) -> Result<Vec<String>, StoreError> {
    in_window(read, &format!("dk{SEP}{family}{SEP}{key}{SEP}"), from, to)
}

/// Where every record of `family` on `side` is kept — for whole-family
/// work that is meant to be whole (verification, reconciliation rounds),
/// reading that family's index entries, never the other records.
pub fn every(read: &Read, family: &str, side: Side) -> Result<Vec<Place>, StoreError> {
    let mut out = Vec::new();
    let mut before: Option<Place> = None;
    loop {
        let (page, more) = by_key(read, family, side, "", before.as_ref(), 1000)?;
        before = page.last().cloned();
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
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
            let record = crate::records::read_one(read, &key, &subject).ok()??;
            Some((key, subject, record))
        })
        .collect()
}

/// How many names an inbox item shows.
pub const SHOWN: usize = 10;

/// The `settings` key saying the index is built, and its version.
const BUILT_KEY: &str = "index:records";
/// 6: revenue per month, MDF sums, offers to remind of; 7: scorecard cells.
const VERSION: &[u8] = b"7";

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
