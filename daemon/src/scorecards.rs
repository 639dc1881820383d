//! Scorecards: a partner's figures with a vendor for a period, computed
//! from the shared records by the protocol's pure `scorecard` code, so
//! that the vendor's node and a connected partner's node compute the same
//! figures from their own copies.
//!
//! The records' parts (`scorecard::parts`) are kept summed per place, per
//! authority and per UTC day and month, changed in the same transaction
//! as the record; a scorecard reads the month cells its period covers and
//! the day cells of any partial month — never the records. Keys in the
//! `record_index` table:
//! - `scf␟<key>␟<subject>` → JSON of the [`Fact`]: how a record counted
//!   last, so a change takes exactly that away;
//! - `scd␟<key>␟<authority>␟<day start>` and `scm␟<key>␟<authority>␟<month
//!   start>` (16 digits) → JSON of the [`Tally`] of the records kept under
//!   `key` whose authority is `authority`, counted in that day or month.

use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::scorecard::{DAY_MS, Period, Scorecard, Tally, month_after, month_of};
use guanxi_protocol::state::Record;
use guanxi_protocol::{Millis, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';

/// How one record counted: its authority and its parts with their times.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Fact {
    authority: String,
    parts: Vec<(Millis, Tally)>,
}

/// A day or month cell while a transaction changes it.
struct Cell(Tally);

impl guanxi_adapters::store::Later for Cell {
    fn encode(&self) -> Result<Option<Vec<u8>>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        serde_json::to_vec(&self.0)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

fn cell_key(grain: &str, key: &str, authority: &str, start: Millis) -> String {
    format!("{grain}{SEP}{key}{SEP}{authority}{SEP}{start:016}")
}

/// After the engine saved `record` under (`key`, `subject`): moves its
/// parts from the cells it counted in to the cells it counts in now.
pub fn record_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    record: &Record,
) -> Result<(), EngineError> {
    record_counted(
        t,
        key,
        subject,
        record,
        guanxi_protocol::scorecard::parts(record),
    )
}

/// Before the engine forgets the record kept under (`key`, `subject`)
/// (handed over, SPEC §25): what it counted is taken out.
pub fn record_removed(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    record: &Record,
) -> Result<(), EngineError> {
    record_counted(t, key, subject, record, Vec::new())
}

/// Moves the kept cells from what the record counted before to `parts`.
fn record_counted(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    record: &Record,
    parts: Vec<(Millis, Tally)>,
) -> Result<(), EngineError> {
    let fact_key = format!("scf{SEP}{key}{SEP}{subject}");
    let old: Option<Fact> = t
        .doc(Doc::RecordIndex, &fact_key)?
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| EngineError::Corrupt(format!("{fact_key}: {e}")))?;
    if old.is_none() && parts.is_empty() {
        return Ok(());
    }
    let new = Fact {
        authority: record.authority().to_string(),
        parts,
    };
    if old.as_ref() == Some(&new) {
        return Ok(());
    }
    let mut deltas: BTreeMap<String, Tally> = BTreeMap::new();
    for (fact, sign) in old.iter().map(|f| (f, -1)).chain([(&new, 1)]) {
        for (at, part) in &fact.parts {
            let day = at.div_euclid(DAY_MS) * DAY_MS;
            for cell in [
                cell_key("scd", key, &fact.authority, day),
                cell_key("scm", key, &fact.authority, month_of(*at)),
            ] {
                deltas.entry(cell).or_default().apply(part, sign);
            }
        }
    }
    for (cell, delta) in deltas {
        if delta.is_empty() {
            continue;
        }
        // Kept in memory for the rest of the transaction (an import
        // changes one partner's cells thousands of times), written once.
        let kept = t.later_value(Doc::RecordIndex, &cell, |bytes| {
            Cell(
                bytes
                    .map(serde_json::from_slice)
                    .transpose()
                    .unwrap_or_else(|e| {
                        tracing::error!("scorecard cell {cell}: {e}; `guanxi reindex` rebuilds it");
                        None
                    })
                    .unwrap_or_default(),
            )
        })?;
        kept.0.apply(&delta, 1);
    }
    if new.parts.is_empty() {
        t.delete_doc(Doc::RecordIndex, &fact_key)?;
    } else {
        let json = serde_json::to_vec(&new).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        t.put_doc(Doc::RecordIndex, &fact_key, &json)?;
    }
    Ok(())
}

/// Adds the cell `cell`, if kept, to `total`.
fn add_cell(read: &Read, cell: &str, total: &mut Tally) -> Result<(), StoreError> {
    if let Some(b) = read.doc(Doc::RecordIndex, cell)? {
        match serde_json::from_slice::<Tally>(&b) {
            Ok(tally) => total.apply(&tally, 1),
            Err(e) => tracing::error!("scorecard cell {cell}: {e}"),
        }
    }
    Ok(())
}

/// The scorecard, in `period` (whole UTC days), of the records kept under
/// `keys` (a partner's peer id and `web:<id>` at its vendor; the vendor's
/// peer id at the partner) whose authority is `vendor`: the period's
/// whole months from month cells, the rest from day cells.
pub fn compute(
    read: &Read,
    vendor: &NodeId,
    keys: &[String],
    period: &Period,
) -> Result<Scorecard, StoreError> {
    let mut total = Tally::default();
    let from = period.from.div_euclid(DAY_MS) * DAY_MS;
    let to = (period.to + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
    for key in keys {
        let mut at = from;
        while at < to {
            let next = month_after(at);
            if at == month_of(at) && next <= to {
                add_cell(read, &cell_key("scm", key, vendor.as_str(), at), &mut total)?;
                at = next;
            } else {
                add_cell(read, &cell_key("scd", key, vendor.as_str(), at), &mut total)?;
                at += DAY_MS;
            }
        }
    }
    Ok(total.finish())
}

/// Whose scorecard a reader asks for: staff name a partner of this node
/// (its directory id: this node is the vendor) or a vendor this node is a
/// partner of (its peer id); a partner user always reads its own.
pub struct Subject {
    /// The records' authority.
    pub vendor: NodeId,
    /// Where the records are kept here.
    pub keys: Vec<String>,
    /// The partner, for people (a directory id or this node's id).
    pub partner: String,
}

/// The scorecard `user` may read for `partner` or `vendor` (`None`: not
/// found or not theirs).
pub fn subject(
    read: &Read,
    me: &NodeId,
    user: &crate::accounts::User,
    partner: Option<&str>,
    vendor: Option<&str>,
) -> Result<Option<Subject>, StoreError> {
    if let Some(org) = &user.partner {
        // A partner user: its organization with this node, whatever it asked.
        if partner.is_some_and(|p| p != org) || vendor.is_some() {
            return Ok(None);
        }
        return Ok(Some(Subject {
            vendor: me.clone(),
            keys: vec![crate::records::web_key(org)],
            partner: org.clone(),
        }));
    }
    match (partner, vendor) {
        (Some(id), None) => {
            let Some(p) = crate::directory::load(read, id)? else {
                return Ok(None);
            };
            Ok(Some(Subject {
                vendor: me.clone(),
                keys: keys_of(&p),
                partner: p.id,
            }))
        }
        (None, Some(peer)) => Ok(peer.parse::<NodeId>().ok().map(|v| Subject {
            keys: vec![v.to_string()],
            vendor: v,
            partner: me.to_string(),
        })),
        _ => Ok(None),
    }
}

/// The subject of the scorecard `vendor` shares for `period`.
pub fn subject_of(vendor: &NodeId, period: &Period) -> String {
    format!("scorecard.{vendor}.{}", period.name)
}

/// The scorecard `vendor` shared with this node for `period`, if any.
pub fn received(
    read: &Read,
    vendor: &NodeId,
    period: &Period,
) -> Result<Option<guanxi_protocol::state::scorecard::ScorecardRecord>, StoreError> {
    let subject = subject_of(vendor, period);
    Ok(read.record(vendor.as_str(), &subject)?.and_then(|b| {
        match crate::records::parse_record(vendor.as_str(), &subject, &b) {
            Some(guanxi_protocol::state::Record::Scorecard(s)) => Some(s),
            _ => None,
        }
    }))
}

/// Sends partner `partner` (a directory id with a daemon) its scorecard
/// for `period` as this node computes it now, signed (`scorecard.share`).
pub async fn share(
    node: &crate::node::Node,
    partner: &str,
    period: Period,
) -> Result<Result<(), guanxi_protocol::state::StateError>, crate::engine::EngineError> {
    let me = node.identity.id.clone();
    let id = partner.to_string();
    let p = period.clone();
    let found = node
        .reading(move |r| {
            let Some(partner) = crate::directory::load(r, &id)? else {
                return Ok(None);
            };
            let Some(peer) = partner.peer.clone() else {
                return Ok(Some(Err(partner.id)));
            };
            // The records its node holds too: those with its daemon.
            let keys = vec![peer.clone()];
            Ok(Some(Ok((peer, compute(r, &me, &keys, &p)?))))
        })
        .await?;
    let refuse =
        |code, message: String| Ok(Err(guanxi_protocol::state::StateError { code, message }));
    let (peer, figures) = match found {
        None => {
            return refuse(
                guanxi_protocol::ReasonCode::UnknownRecord,
                format!("there is no partner {partner}"),
            );
        }
        Some(Err(id)) => {
            return refuse(
                guanxi_protocol::ReasonCode::NotAllowed,
                format!(
                    "{id} has no Guanxi of its own: its users read their scorecard in the web view"
                ),
            );
        }
        Some(Ok(found)) => found,
    };
    let subject = subject_of(&node.identity.id, &period);
    let message =
        guanxi_protocol::Message::ScorecardShare(guanxi_protocol::messages::ScorecardShare {
            period,
            figures,
        });
    node.send_to_peer(&peer, &subject, message).await
}

const WEIGHTS_KEY: &str = "score_weights";

/// The vendor's score weights.
pub fn weights(read: &Read) -> Result<Vec<guanxi_protocol::scorecard::Weight>, StoreError> {
    Ok(read
        .doc(guanxi_adapters::store::Doc::Setting, WEIGHTS_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the score weights.
pub async fn set_weights(
    node: &crate::node::Node,
    list: Vec<guanxi_protocol::scorecard::Weight>,
) -> Result<(), crate::engine::EngineError> {
    node.engine
        .local(move |t| {
            let json = serde_json::to_vec(&list)
                .map_err(|e| crate::engine::EngineError::Failed(e.to_string()))?;
            t.put_doc(guanxi_adapters::store::Doc::Setting, WEIGHTS_KEY, &json)?;
            Ok(())
        })
        .await
}

/// What the score and the tier requirements suggest for a partner:
/// `promote` (score ≥ 85 and every requirement met), `review` (score
/// under 50, or a requirement not met), `keep` otherwise.
pub fn recommendation(score: i64, requirements_met: bool) -> &'static str {
    if !requirements_met || score < 50 {
        "review"
    } else if score >= 85 {
        "promote"
    } else {
        "keep"
    }
}

/// Where a partner's records are kept at its vendor: its web key and, once
/// it has a daemon, its peer id.
pub fn keys_of(p: &crate::directory::Partner) -> Vec<String> {
    let mut keys = vec![crate::records::web_key(&p.id)];
    keys.extend(p.peer.clone());
    keys
}

/// A partner in the ranking: its scorecards for the period and the one it
/// is compared with, their scores, and the value it is ranked by.
pub struct Ranked {
    pub partner: crate::directory::Partner,
    pub now: Scorecard,
    pub before: Scorecard,
    pub score: Option<i64>,
    pub score_before: Option<i64>,
    pub value: Option<i64>,
    pub value_before: Option<i64>,
}

/// What a ranking may be ordered by: `score` or a figure
/// (`scorecard::check_figure`).
pub fn check_sort(sort: &str) -> Result<(), String> {
    if sort == "score" {
        return Ok(());
    }
    guanxi_protocol::scorecard::check_figure(sort)
}

/// Every partner of this node (of `tier`, when named) with its scorecards
/// for `period` and `compare`, best first by `sort`: the highest score or
/// figure, the shortest time (`…_ms`); partners without a value last, ties
/// by id. Reads the directory a page at a time and, per partner, the cells
/// of the two periods — never the records.
pub fn ranking(
    read: &Read,
    me: &NodeId,
    period: &Period,
    compare: &Period,
    tier: Option<&str>,
    sort: &str,
) -> Result<Vec<Ranked>, StoreError> {
    let weights = weights(read)?;
    let value = |card: &Scorecard, score: Option<i64>| {
        if sort == "score" {
            score
        } else {
            card.value(sort)
        }
    };
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (list, next) = crate::directory::page(read, after.as_deref(), 500)?;
        for p in list {
            if tier.is_some_and(|t| !p.tier.eq_ignore_ascii_case(t.trim())) {
                continue;
            }
            let keys = keys_of(&p);
            let now = compute(read, me, &keys, period)?;
            let before = compute(read, me, &keys, compare)?;
            let (score, score_before) = (
                now.score(&weights, &p.tier),
                before.score(&weights, &p.tier),
            );
            out.push(Ranked {
                value: value(&now, score),
                value_before: value(&before, score_before),
                partner: p,
                now,
                before,
                score,
                score_before,
            });
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let shortest_first = sort.ends_with("_ms");
    out.sort_by(|a, b| {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match (a.value, b.value) {
            (Some(x), Some(y)) if shortest_first => x.cmp(&y),
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (None, None) => Equal,
        }
        .then_with(|| a.partner.id.cmp(&b.partner.id))
    });
    Ok(out)
}

/// The twelve UTC months up to the one `period` ends in, oldest first,
/// each as a period named `YYYY-MM`.
pub fn twelve_months(period: &Period) -> Vec<Period> {
    let mut months = Vec::new();
    let mut start = month_of(period.to - 1);
    for _ in 0..12 {
        let to = month_after(start);
        let name = jiff::Timestamp::from_millisecond(start)
            .map(|t| t.strftime("%Y-%m").to_string())
            .unwrap_or_default();
        months.push(Period {
            name,
            from: start,
            to,
        });
        start = month_of(start - 1);
    }
    months.reverse();
    months
}
