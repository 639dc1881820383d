//! The vendor's leads, indexed in the same transaction as what they index,
//! so that lists, the distribution's capacity check and the expiry sweeper
//! read what they need, never every lead.
//!
//! Keys in the `lead_index` table:
//! - `stage␟<stage>␟<lead id>` → nothing: leads by stage (the list filter);
//! - `due␟<time, 20 digits>␟<lead id>` → nothing: leads the sweeper must
//!   look at from that time on (an offer's deadline plus grace; a declined
//!   or expired offer at once);
//! - `hold␟<lead id>` → nothing: leads held back (nobody eligible, no
//!   consent), which wait for a person;
//! - `open␟<partner>` → how many leads hold an open offer (offered or in
//!   progress) with that partner (capacity);
//! - `of␟<lead id>` → JSON of what the lead is listed under, so that a
//!   change removes exactly the old entries;
//! - `count␟<stage>` → how many leads are at that stage (the dashboard);
//! - `camp␟<campaign>␟<lead id>` → nothing: leads by campaign (MDF return
//!   on investment);
//! - `cust␟<match key>␟<lead id>` → nothing: leads by end customer
//!   ([`super::conflicts::match_keys`]), for deal registration conflicts
//!   (never removed: a stale entry is checked again and left out).
//!
//! A lead's stage is its last offer's record status (`unassigned` without
//! one); it changes when the lead document changes (an offer made, withdrawn,
//! expired) and when the offer's record changes (the partner's answers), and
//! both paths call [`refresh`]. Lead ids are UUIDv7, so key order within a
//! stage is creation order.

use super::{EXPIRY_GRACE_MS, LeadDoc};
use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::state::{Lead, LeadStatus, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';

fn stage_key(stage: &str, id: &str) -> String {
    format!("stage{SEP}{stage}{SEP}{id}")
}

fn due_key(at: Millis, id: &str) -> String {
    format!("due{SEP}{:020}{SEP}{id}", at.max(0))
}

fn hold_key(id: &str) -> String {
    format!("hold{SEP}{id}")
}

fn open_key(partner: &str) -> String {
    format!("open{SEP}{partner}")
}

fn of_key(id: &str) -> String {
    format!("of{SEP}{id}")
}

/// What one lead is listed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Listed {
    stage: String,
    /// The partner holding an open offer of it.
    open_with: Option<String>,
    /// When the sweeper must look at it.
    due: Option<Millis>,
    /// Held back (nobody eligible, or no consent).
    #[serde(default)]
    held: bool,
}

/// How the analysis counts `offer` of `doc` now (`None` before its record
/// exists).
/// The record of `offer`, as the tables hold it now.
fn offer_record(t: &Tables<'_>, offer: &super::OfferRef) -> Result<Option<Lead>, EngineError> {
    let Some(bytes) = t.record(&offer.key, &offer.subject)? else {
        return Ok(None);
    };
    Ok(
        match crate::records::parse_record(&offer.key, &offer.subject, &bytes) {
            Some(Record::Lead(l)) => Some(l),
            _ => None,
        },
    )
}

/// What the analysis counts of `offer` of `doc`, whose record is `l`.
pub(super) fn offer_fact(
    doc: &LeadDoc,
    offer: &super::OfferRef,
    l: &Lead,
) -> super::analysis::OfferFact {
    super::analysis::OfferFact {
        partner: offer.partner.clone(),
        source: doc.input.source.clone(),
        campaign: doc.input.campaign.clone(),
        offered_at: l.offered_at,
        accepted_at: l.accepted_at,
        status: l.status,
        won_value: l.won_value.clone(),
    }
}

/// What `doc` is to be listed under, given the record of its last offer.
fn listing(doc: &LeadDoc, last: Option<&Lead>) -> Listed {
    let held = matches!(doc.hold, Some(super::Hold::Nobody | super::Hold::NoConsent));
    let Some(offer) = doc.offers.last() else {
        return Listed {
            stage: "unassigned".into(),
            open_with: None,
            due: None,
            held,
        };
    };
    let Some(lead) = last else {
        return Listed {
            stage: "unknown".into(),
            open_with: None,
            due: None,
            held,
        };
    };
    let due = if doc.hold.is_some() {
        None
    } else {
        match lead.status {
            LeadStatus::Offered => Some(lead.offer.accept_by.saturating_add(EXPIRY_GRACE_MS)),
            LeadStatus::Declined | LeadStatus::Expired => Some(0),
            _ => None,
        }
    };
    Listed {
        stage: lead.status.as_str().to_string(),
        open_with: lead.status.is_open().then(|| offer.partner.clone()),
        due,
        held,
    }
}

/// Adds `delta` to the count of leads at `stage` (written once per
/// transaction, however many leads change).
fn add_count(t: &mut Tables<'_>, stage: &str, delta: i64) -> Result<(), EngineError> {
    let key = format!("count{SEP}{stage}");
    let now: i64 = t
        .doc(Doc::LeadIndex, &key)?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or(0);
    let next = (now + delta).max(0);
    t.put_doc_later(Doc::LeadIndex, &key, Some(next.to_string().into_bytes()));
    Ok(())
}

/// How many leads are at each stage (one entry per stage, never every
/// lead), stages with none left out.
pub fn stage_counts(read: &Read) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    read.each_with_prefix(Doc::LeadIndex, &format!("count{SEP}"), |stage, n| {
        let n: u64 = String::from_utf8_lossy(n).parse().unwrap_or(0);
        if n > 0 {
            out.push((stage.to_string(), n));
        }
    })?;
    Ok(out)
}

fn add_open(t: &mut Tables<'_>, partner: &str, delta: i64) -> Result<(), EngineError> {
    let key = open_key(partner);
    let now: i64 = t
        .doc(Doc::LeadIndex, &key)?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or(0);
    let next = (now + delta).max(0);
    if next == 0 {
        t.delete_doc(Doc::LeadIndex, &key)?;
    } else {
        t.put_doc(Doc::LeadIndex, &key, next.to_string().as_bytes())?;
    }
    Ok(())
}

/// Brings the index entries of lead `id` up to date (removes them when the
/// lead is gone).
pub fn refresh(t: &mut Tables<'_>, id: &str) -> Result<(), EngineError> {
    let doc: Option<LeadDoc> = match t.doc(Doc::Lead, id)? {
        Some(bytes) => Some(super::decode("lead", &bytes)?),
        None => None,
    };
    refresh_doc(t, id, doc.as_ref())
}

/// [`refresh`] with the lead's document as just saved (`None`: gone), so
/// that it is not read back.
pub fn refresh_doc(t: &mut Tables<'_>, id: &str, doc: Option<&LeadDoc>) -> Result<(), EngineError> {
    let mut last = None;
    if let Some(d) = doc {
        for offer in &d.offers {
            let record = offer_record(t, offer)?;
            let fact = record.as_ref().map(|l| offer_fact(d, offer, l));
            super::aggregates::offer_saved(t, &offer.subject, fact)?;
            last = record;
        }
        if !d.input.campaign.is_empty() {
            let entry = format!("camp{SEP}{}{SEP}{id}", d.input.campaign);
            if t.doc(Doc::LeadIndex, &entry)?.is_none() {
                t.put_doc(Doc::LeadIndex, &entry, b"")?;
            }
        }
        for k in super::conflicts::match_keys(&d.input.customer) {
            let entry = format!("cust{SEP}{k}{SEP}{id}");
            if t.doc(Doc::LeadIndex, &entry)?.is_none() {
                t.put_doc(Doc::LeadIndex, &entry, b"")?;
            }
        }
    }
    let new = doc.map(|d| listing(d, last.as_ref()));
    let old: Option<Listed> = match t.doc(Doc::LeadIndex, &of_key(id))? {
        Some(bytes) => serde_json::from_slice(&bytes).ok(),
        None => None,
    };
    if old == new {
        return Ok(());
    }
    if let Some(old) = &old {
        add_count(t, &old.stage, -1)?;
        t.delete_doc(Doc::LeadIndex, &stage_key(&old.stage, id))?;
        if let Some(at) = old.due {
            t.delete_doc(Doc::LeadIndex, &due_key(at, id))?;
        }
        if let Some(p) = &old.open_with {
            add_open(t, p, -1)?;
        }
        if old.held {
            t.delete_doc(Doc::LeadIndex, &hold_key(id))?;
        }
    }
    match &new {
        Some(new) => {
            add_count(t, &new.stage, 1)?;
            t.put_doc(Doc::LeadIndex, &stage_key(&new.stage, id), b"")?;
            if let Some(at) = new.due {
                t.put_doc(Doc::LeadIndex, &due_key(at, id), b"")?;
            }
            if let Some(p) = &new.open_with {
                add_open(t, p, 1)?;
            }
            if new.held {
                t.put_doc(Doc::LeadIndex, &hold_key(id), b"")?;
            }
            let json = serde_json::to_vec(new).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            t.put_doc(Doc::LeadIndex, &of_key(id), &json)?;
        }
        None => {
            t.delete_doc(Doc::LeadIndex, &of_key(id))?;
        }
    }
    Ok(())
}

/// The ids of the leads of `campaign`, in creation order, after `after`
/// (at most `limit`).
pub fn of_campaign(
    read: &Read,
    campaign: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let prefix = format!("camp{SEP}{campaign}{SEP}");
    let cursor = after.map(|a| format!("{prefix}{a}"));
    Ok(read
        .docs_page(
            Doc::LeadIndex,
            &prefix,
            cursor.as_deref(),
            Order::Forward,
            limit,
        )?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The ids of leads whose end customer shares a match key with
/// `customer` (at most `limit` per key).
pub fn matching(
    read: &Read,
    customer: &guanxi_protocol::messages::Customer,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut ids = std::collections::BTreeSet::new();
    for k in super::conflicts::match_keys(customer) {
        let prefix = format!("cust{SEP}{k}{SEP}");
        for (entry, _) in read.docs_page(Doc::LeadIndex, &prefix, None, Order::Forward, limit)? {
            if let Some(id) = entry.strip_prefix(&prefix) {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// After the engine saved a shared record: when it is the offer record of
/// one of this node's leads, the lead's listing may have changed.
pub fn record_saved(t: &mut Tables<'_>, subject: &str, record: &Record) -> Result<(), EngineError> {
    let Record::Lead(_) = record else {
        return Ok(());
    };
    let Some((id, _)) = subject.rsplit_once('.') else {
        return Ok(());
    };
    if t.doc(Doc::LeadIndex, &of_key(id))?.is_none() && t.doc(Doc::Lead, id)?.is_none() {
        return Ok(());
    }
    refresh(t, id)
}

/// How many leads hold an open offer with each partner (partners without
/// any are absent): one entry per partner, never every lead.
pub fn open_by_partner(t: &Tables<'_>) -> Result<BTreeMap<String, u32>, EngineError> {
    let mut out = BTreeMap::new();
    t.each_with_prefix(Doc::LeadIndex, &format!("open{SEP}"), |partner, v| {
        out.insert(
            partner.to_string(),
            String::from_utf8_lossy(v).parse().unwrap_or(0),
        );
    })?;
    Ok(out)
}

/// Up to `limit` leads held back (waiting for a person), oldest first, and
/// whether more are.
pub fn held(read: &Read, limit: usize) -> Result<(Vec<String>, bool), StoreError> {
    let prefix = format!("hold{SEP}");
    let page = read.docs_page(Doc::LeadIndex, &prefix, None, Order::Forward, limit + 1)?;
    let more = page.len() > limit;
    Ok((
        page.into_iter()
            .take(limit)
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .collect(),
        more,
    ))
}

/// Leads the sweeper must look at by `now` (at most `limit`, earliest
/// first), and when the next one falls due after those.
pub fn due(
    read: &Read,
    now: Millis,
    limit: usize,
) -> Result<(Vec<String>, Option<Millis>), StoreError> {
    let prefix = format!("due{SEP}");
    let page = read.docs_page(Doc::LeadIndex, &prefix, None, Order::Forward, limit + 1)?;
    let mut ids = Vec::new();
    for (k, _) in page {
        let Some((at, id)) = k.strip_prefix(&prefix).and_then(|r| r.split_once(SEP)) else {
            continue;
        };
        let at: Millis = at.parse().unwrap_or(0);
        if at >= now || ids.len() == limit {
            return Ok((ids, Some(at)));
        }
        ids.push(id.to_string());
    }
    Ok((ids, None))
}

/// One page of lead ids, newest first: all leads, or those at `stage`;
/// `before` is the last id of the previous page. Answers the ids and
/// whether more follow.
pub fn page(
    read: &Read,
    stage: Option<&str>,
    before: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, bool), StoreError> {
    let ids: Vec<String> = match stage {
        None => read
            .docs_page(Doc::Lead, "", before, Order::Backward, limit + 1)?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        Some(stage) => {
            let prefix = format!("stage{SEP}{stage}{SEP}");
            let cursor = before.map(|b| format!("{prefix}{b}"));
            read.docs_page(
                Doc::LeadIndex,
                &prefix,
                cursor.as_deref(),
                Order::Backward,
                limit + 1,
            )?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .collect()
        }
    };
    let more = ids.len() > limit;
    Ok((ids.into_iter().take(limit).collect(), more))
}

/// Rebuilds the whole index from the leads (a migration or `guanxi
/// reindex`): clears it and refreshes every lead, in batches the caller
/// commits. Answers the last lead id done, or `None` when all are.
pub fn rebuild_batch(
    t: &mut Tables<'_>,
    after: Option<&str>,
    batch: usize,
) -> Result<Option<String>, EngineError> {
    if after.is_none() {
        loop {
            let old = t.docs_before(Doc::LeadIndex, "\u{10FFFF}", 1000)?;
            if old.is_empty() {
                break;
            }
            for (k, _) in old {
                t.delete_doc(Doc::LeadIndex, &k)?;
            }
        }
    }
    let ids: Vec<String> = t
        .docs_page(Doc::Lead, "", after, Order::Forward, batch)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for id in &ids {
        refresh(t, id)?;
    }
    Ok(if ids.len() < batch {
        None
    } else {
        ids.last().cloned()
    })
}

/// The `settings` key saying the index is built (and in which version).
const BUILT_KEY: &str = "index:lead_stage";
/// 5: stage counts.
const VERSION: &[u8] = b"5";

/// Builds the index when this store has none yet (a store from before it,
/// or after `guanxi reindex` cleared the mark); answers how many leads were
/// indexed (0 when nothing was to do). Runs before the engine starts.
pub fn ensure_built(store: &guanxi_adapters::store::Store) -> Result<usize, EngineError> {
    let built = store.read()?.doc(Doc::Setting, BUILT_KEY)?;
    if built.as_deref() == Some(VERSION) {
        return Ok(0);
    }
    rebuild(store)
}

/// Rebuilds the index from every lead, a thousand per transaction.
pub fn rebuild(store: &guanxi_adapters::store::Store) -> Result<usize, EngineError> {
    let mut after: Option<String> = None;
    let mut done = 0;
    let mut first = true;
    loop {
        let (next, n) = store.transact(|t| -> Result<_, EngineError> {
            let cursor = if first { None } else { after.as_deref() };
            let before = t
                .docs_page(Doc::Lead, "", cursor, Order::Forward, 1000)?
                .len();
            let next = rebuild_batch(t, cursor, 1000)?;
            if next.is_none() {
                t.put_doc(Doc::Setting, BUILT_KEY, VERSION)?;
            }
            Ok((next, before))
        })?;
        first = false;
        done += n;
        match next {
            Some(id) => after = Some(id),
            None => return Ok(done),
        }
    }
}
