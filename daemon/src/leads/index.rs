//! The vendor's leads by stage: a secondary index kept in the same
//! transaction as what it indexes, so that the leads list (filtered or not)
//! reads one page, never every lead.
//!
//! Keys in the `lead_index` table: `stage␟<stage>␟<lead id>` → nothing,
//! and `of␟<lead id>` → the stage it is listed under. A lead's stage is its
//! last offer's record status (`unassigned` without one); it changes when
//! the lead document changes (an offer made, withdrawn, expired) and when
//! the offer's record changes (the partner's answers), and both paths call
//! [`refresh`]. Lead ids are UUIDv7, so key order within a stage is
//! creation order.

use super::LeadDoc;
use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::state::Record;

const SEP: char = '\u{1f}';

fn stage_key(stage: &str, id: &str) -> String {
    format!("stage{SEP}{stage}{SEP}{id}")
}

fn of_key(id: &str) -> String {
    format!("of{SEP}{id}")
}

/// The stage of `doc` as the tables hold it now.
fn stage_in(t: &Tables<'_>, doc: &LeadDoc) -> Result<String, EngineError> {
    let Some(offer) = doc.offers.last() else {
        return Ok("unassigned".into());
    };
    Ok(match t.record(&offer.key, &offer.subject)? {
        Some(bytes) => match crate::records::parse_record(&offer.key, &offer.subject, &bytes) {
            Some(Record::Lead(l)) => l.status.as_str().to_string(),
            _ => "unknown".into(),
        },
        None => "unknown".into(),
    })
}

/// Brings the index entry of lead `id` up to date (removes it when the lead
/// is gone).
pub fn refresh(t: &mut Tables<'_>, id: &str) -> Result<(), EngineError> {
    let doc: Option<LeadDoc> = match t.doc(Doc::Lead, id)? {
        Some(bytes) => Some(super::decode("lead", &bytes)?),
        None => None,
    };
    let stage = match &doc {
        Some(d) => Some(stage_in(t, d)?),
        None => None,
    };
    let old = t
        .doc(Doc::LeadIndex, &of_key(id))?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if old == stage {
        return Ok(());
    }
    if let Some(old) = old {
        t.delete_doc(Doc::LeadIndex, &stage_key(&old, id))?;
    }
    match stage {
        Some(stage) => {
            t.put_doc(Doc::LeadIndex, &stage_key(&stage, id), b"")?;
            t.put_doc(Doc::LeadIndex, &of_key(id), stage.as_bytes())?;
        }
        None => {
            t.delete_doc(Doc::LeadIndex, &of_key(id))?;
        }
    }
    Ok(())
}

/// After the engine saved a shared record: when it is the offer record of
/// one of this node's leads, the lead's stage may have changed.
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
const VERSION: &[u8] = b"1";

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
