//! Service metrics kept up to date: one cell of counts per partner and
//! period (all time, month, day), changed in the same transaction as the
//! request it counts, so that the metrics read a few cells and the late
//! running clocks (`overdue.rs`), never every request.
//!
//! Keys in the `record_index` table:
//! - `svc␟<period>␟<partner>` → JSON of the [`Cell`];
//! - `svcf␟<key>␟<subject>` → JSON of the [`Fact`] last counted for a
//!   request (so a change takes exactly the old counts away).
//!
//! A first response or a resolution is judged late once, when it is
//! recorded, against the targets in force then; a later change of targets
//! does not rewrite history. Clocks still running are judged at "now" from
//! the deadline index.

use super::Metrics;
use super::sla::Targets;
use crate::engine::EngineError;
use crate::leads::analysis::{bucket, median_of};
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::state::{ServiceRequest, ServiceStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';

/// How one request counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub partner: String,
    pub opened_at: Millis,
    /// Time to the first response, once there was one.
    pub first_response_ms: Option<i64>,
    /// Time to resolution, once resolved.
    pub resolution_ms: Option<i64>,
    pub first_response_late: bool,
    pub resolution_late: bool,
}

/// Counts that can be added and taken away.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub requests: i64,
    pub first_response: BTreeMap<u16, i64>,
    pub resolution: BTreeMap<u16, i64>,
    pub first_response_late: i64,
    pub resolution_late: i64,
}

impl Cell {
    fn apply(&mut self, f: &Fact, sign: i64) {
        self.requests += sign;
        if let Some(ms) = f.first_response_ms {
            *self.first_response.entry(bucket(ms)).or_insert(0) += sign;
        }
        if let Some(ms) = f.resolution_ms {
            *self.resolution.entry(bucket(ms)).or_insert(0) += sign;
        }
        self.first_response_late += sign * i64::from(f.first_response_late);
        self.resolution_late += sign * i64::from(f.resolution_late);
        self.first_response.retain(|_, n| *n != 0);
        self.resolution.retain(|_, n| *n != 0);
    }

    fn merge(&mut self, o: &Cell) {
        self.requests += o.requests;
        for (b, n) in &o.first_response {
            *self.first_response.entry(*b).or_insert(0) += n;
        }
        for (b, n) in &o.resolution {
            *self.resolution.entry(*b).or_insert(0) += n;
        }
        self.first_response_late += o.first_response_late;
        self.resolution_late += o.resolution_late;
    }

    fn is_empty(&self) -> bool {
        *self == Cell::default()
    }
}

/// The partner of a request kept under `key` by its vendor: the web
/// partner's id, or the peer.
pub fn partner_of(key: &str) -> String {
    key.strip_prefix("web:").unwrap_or(key).to_string()
}

/// How `request` counts now; `before` keeps a judgement already made.
pub fn fact_of(
    key: &str,
    request: &ServiceRequest,
    targets: &Targets,
    before: Option<&Fact>,
) -> Fact {
    let t = targets.for_priority(request.request.priority);
    let first_response_ms = request.first_response_at.map(|at| at - request.opened_at);
    let resolved = match request.status {
        ServiceStatus::Resolved | ServiceStatus::Closed => {
            request.resolved_at.or(request.closed_at)
        }
        _ => None,
    };
    let resolution_ms = resolved.map(|at| at - request.opened_at);
    let judged = |ms: Option<i64>, minutes: i64, kept: Option<(Option<i64>, bool)>| match (ms, kept)
    {
        (None, _) => false,
        // Judged when recorded; unchanged since.
        (Some(ms), Some((Some(was), late))) if was == ms => late,
        (Some(ms), _) => ms > minutes * 60_000,
    };
    Fact {
        partner: partner_of(key),
        opened_at: request.opened_at,
        first_response_ms,
        resolution_ms,
        first_response_late: judged(
            first_response_ms,
            t.first_response_minutes,
            before.map(|b| (b.first_response_ms, b.first_response_late)),
        ),
        resolution_late: judged(
            resolution_ms,
            t.resolution_minutes,
            before.map(|b| (b.resolution_ms, b.resolution_late)),
        ),
    }
}

fn cells_of(f: &Fact) -> [String; 3] {
    let day = crate::leads::analysis::day_of(f.opened_at);
    let month = day.get(..7).unwrap_or("").to_string();
    [
        format!("svc{SEP}all{SEP}{}", f.partner),
        format!("svc{SEP}m:{month}{SEP}{}", f.partner),
        format!("svc{SEP}d:{day}{SEP}{}", f.partner),
    ]
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(e.to_string())
}

/// After the engine saved `request` (this node its vendor) under `key`;
/// `None`: it is no longer kept there (handed over, SPEC §25).
pub fn request_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    request: Option<&ServiceRequest>,
) -> Result<(), EngineError> {
    let fact_key = format!("svcf{SEP}{key}{SEP}{subject}");
    let before: Option<Fact> = t
        .doc(Doc::RecordIndex, &fact_key)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let targets: Targets = t
        .doc(Doc::Setting, super::SLA_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let now = request.map(|r| fact_of(key, r, &targets, before.as_ref()));
    if before == now {
        return Ok(());
    }
    let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
    for (fact, sign) in [(before.as_ref(), -1), (now.as_ref(), 1)] {
        let Some(fact) = fact else { continue };
        for k in cells_of(fact) {
            if !cells.contains_key(&k) {
                let cell = t
                    .doc(Doc::RecordIndex, &k)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                cells.insert(k.clone(), cell);
            }
            if let Some(c) = cells.get_mut(&k) {
                c.apply(fact, sign);
            }
        }
    }
    for (k, cell) in cells {
        let value = if cell.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(&cell).map_err(corrupt)?)
        };
        t.put_doc_later(Doc::RecordIndex, &k, value);
    }
    match &now {
        Some(now) => t.put_doc(
            Doc::RecordIndex,
            &fact_key,
            &serde_json::to_vec(now).map_err(corrupt)?,
        )?,
        None => {
            t.delete_doc(Doc::RecordIndex, &fact_key)?;
        }
    }
    Ok(())
}

/// Metrics per partner of the requests opened in [`from`, `to`), from the
/// kept cells and the late running clocks.
pub fn metrics(
    read: &Read,
    targets: &Targets,
    now: Millis,
    from: Millis,
    to: Millis,
) -> Result<Vec<Metrics>, StoreError> {
    let periods = crate::leads::aggregates::periods_within(
        read,
        Doc::RecordIndex,
        &format!("svc{SEP}d:"),
        Some(from),
        Some(to),
    )?;
    let mut by: BTreeMap<String, Cell> = BTreeMap::new();
    for period in &periods {
        read.each_with_prefix(
            Doc::RecordIndex,
            &format!("svc{SEP}{period}{SEP}"),
            |partner, v| {
                if let Ok(cell) = serde_json::from_slice::<Cell>(v) {
                    by.entry(partner.to_string()).or_default().merge(&cell);
                }
            },
        )?;
    }
    // Clocks still running and late now count as breaches.
    let mut running: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (clock, key, opened) in super::overdue::every_late(read, targets, now)? {
        if opened < from || opened >= to {
            continue;
        }
        let e = running.entry(partner_of(&key)).or_default();
        match clock {
            super::overdue::Clock::FirstResponse => e.0 += 1,
            super::overdue::Clock::Resolution => e.1 += 1,
        }
    }
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(by
        .into_iter()
        .filter(|(_, c)| c.requests > 0)
        .map(|(partner, c)| {
            let (first_running, resolution_running) =
                running.get(&partner).copied().unwrap_or_default();
            Metrics {
                requests: n(c.requests),
                median_first_response_ms: median_of(&c.first_response),
                median_resolution_ms: median_of(&c.resolution),
                first_response_breaches: n(c.first_response_late) + first_running,
                resolution_breaches: n(c.resolution_late) + resolution_running,
                partner,
            }
        })
        .collect())
}

/// Recomputes every request's counts from its record (judgements already
/// made kept) and every cell from them (a verification, never a page);
/// names each kept fact or cell that differs.
pub fn check(read: &Read) -> Result<Vec<String>, StoreError> {
    use crate::record_index::{self as index, Side};
    use guanxi_protocol::state::Record;
    let targets = super::targets(read)?;
    let mut problems = Vec::new();
    let mut expected: BTreeMap<String, Cell> = BTreeMap::new();
    for (key, subject, record) in index::load(read, index::every(read, "service", Side::Own)?) {
        let Record::Service(request) = record else {
            continue;
        };
        let kept: Option<Fact> = read
            .doc(Doc::RecordIndex, &format!("svcf{SEP}{key}{SEP}{subject}"))?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let fact = fact_of(&key, &request, &targets, kept.as_ref());
        if kept.as_ref() != Some(&fact) {
            problems.push(format!(
                "service {key}/{subject}: kept {kept:?}, recomputed {fact:?}"
            ));
        }
        for k in cells_of(&fact) {
            expected.entry(k).or_default().apply(&fact, 1);
        }
    }
    expected.retain(|_, c| !c.is_empty());
    let prefix = format!("svc{SEP}");
    let mut kept: BTreeMap<String, Cell> = BTreeMap::new();
    read.each_with_prefix(Doc::RecordIndex, &prefix, |rest, v| {
        if let Ok(cell) = serde_json::from_slice::<Cell>(v) {
            kept.insert(format!("{prefix}{rest}"), cell);
        }
    })?;
    for (k, cell) in &expected {
        if kept.get(k) != Some(cell) {
            problems.push(format!(
                "service metrics {}: kept {:?}, recomputed {cell:?}",
                k.replace(SEP, "/"),
                kept.get(k)
            ));
        }
    }
    for k in kept.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!(
            "service metrics {}: kept but no request counts in it",
            k.replace(SEP, "/")
        ));
    }
    Ok(problems)
}
