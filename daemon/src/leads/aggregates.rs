//! The conversion analysis kept up to date: one [`Cell`] of counts per
//! dimension (partner, source, campaign, total), period (all time, month,
//! day) and value, changed in the same transaction as the offer it counts,
//! so that the analysis page reads a few cells instead of every lead.
//!
//! Keys in the `lead_index` table:
//! - `agg␟<dimension>␟<period>␟<value>` → JSON of the [`Cell`];
//! - `fact␟<offer subject>` → JSON of the [`OfferFact`] as last counted, so
//!   that a change takes exactly the old counts away before adding the new.
//!
//! [`check`] recomputes every cell from the leads and their offers and
//! names each that differs (a test, and `guanxi ledger verify`).

use super::analysis::{self, Cell, GroupBy, OfferFact, Row, TooLarge};
use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';

fn cell_key(cell: &str) -> String {
    format!("agg{SEP}{cell}")
}

fn fact_key(subject: &str) -> String {
    format!("fact{SEP}{subject}")
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(e.to_string())
}

/// A cell is stored as JSON, and not at all once it counts nothing.
impl guanxi_adapters::store::Later for Cell {
    fn encode(&self) -> Result<Option<Vec<u8>>, String> {
        if self.is_empty() {
            Ok(None)
        } else {
            serde_json::to_vec(self)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

/// After an offer's record or its lead changed: counts the offer as it now
/// is (`None`: not at all), taking its previous counts away.
pub fn offer_saved(
    t: &mut Tables<'_>,
    subject: &str,
    now: Option<OfferFact>,
) -> Result<(), EngineError> {
    let key = fact_key(subject);
    let before: Option<OfferFact> = t
        .doc(Doc::LeadIndex, &key)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    if before == now {
        return Ok(());
    }
    // Cells are changed in memory and written once per transaction (an
    // import touches the same few cells thousands of times).
    for (fact, sign) in [(&before, -1), (&now, 1)] {
        let Some(fact) = fact else { continue };
        for k in analysis::cells_of(fact) {
            let cell = t.later_value(Doc::LeadIndex, &cell_key(&k), |bytes| {
                bytes
                    .and_then(|b| serde_json::from_slice::<Cell>(b).ok())
                    .unwrap_or_default()
            })?;
            // A sum beyond the exact range is refused by the analysis when
            // shown; the count itself is kept.
            if let Err(e) = cell.apply(fact, sign) {
                tracing::warn!("lead analysis: {e}");
            }
        }
    }
    match now {
        Some(f) => t.put_doc(
            Doc::LeadIndex,
            &key,
            &serde_json::to_vec(&f).map_err(corrupt)?,
        )?,
        None => {
            t.delete_doc(Doc::LeadIndex, &key)?;
        }
    }
    Ok(())
}

/// Every kept cell with its prefix `p` (`agg␟…`).
fn cells_with(read: &Read, p: &str, mut each: impl FnMut(&str, Cell)) -> Result<(), StoreError> {
    read.each_with_prefix(Doc::LeadIndex, &cell_key(p), |rest, v| {
        if let Ok(cell) = serde_json::from_slice(v) {
            each(rest, cell);
        }
    })
}

/// The periods (whole months, edge days) covering [`from`, `to`) within
/// the days that have data: the first and last keys under `day_prefix`
/// (`…d:YYYY-MM-DD…`) in table `kind`. A range of centuries reads the same
/// few periods as the data's own; a bound beyond the calendar is no bound.
pub(crate) fn periods_within(
    read: &Read,
    kind: Doc,
    day_prefix: &str,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<Vec<String>, StoreError> {
    let edge = |order| -> Result<Option<String>, StoreError> {
        Ok(read
            .docs_page(kind, day_prefix, None, order, 1)?
            .into_iter()
            .next()
            .and_then(|(k, _)| {
                k.strip_prefix(day_prefix)
                    .and_then(|r| r.split(SEP).next())
                    .map(str::to_string)
            }))
    };
    let day = |at: Millis| Some(analysis::day_of(at)).filter(|d| !d.is_empty());
    let first = edge(Order::Forward)?.map(|d| from.and_then(day).map_or(d.clone(), |f| f.max(d)));
    let last =
        edge(Order::Backward)?.map(|d| to.and_then(|t| day(t - 1)).map_or(d.clone(), |l| l.min(d)));
    Ok(match (first, last) {
        (Some(f), Some(l)) => periods(&f, &l),
        _ => Vec::new(),
    })
}

/// The periods covering the days [`first`, `last`]: whole months where a
/// month is covered, single days at the edges.
pub(crate) fn periods(first: &str, last: &str) -> Vec<String> {
    let (Ok(mut day), Ok(last)) = (
        first.parse::<jiff::civil::Date>(),
        last.parse::<jiff::civil::Date>(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while day <= last {
        let month_end = day.last_of_month();
        if day.day() == 1 && month_end <= last {
            out.push(format!("m:{}", day.strftime("%Y-%m")));
            match month_end.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        } else {
            out.push(format!("d:{day}"));
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
    }
    out
}

/// The analysis of offers made in [`from`, `to`) grouped by `group`, from
/// the kept cells: the work is the groups times the periods (whole months
/// and edge days), never the offers.
pub fn query(
    read: &Read,
    group: GroupBy,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<Result<(Vec<Row>, Row), TooLarge>, StoreError> {
    let periods = if from.is_none() && to.is_none() && group != GroupBy::Month {
        vec!["all".to_string()]
    } else {
        periods_within(
            read,
            Doc::LeadIndex,
            &cell_key(&format!("total{SEP}d:")),
            from,
            to,
        )?
    };
    let dim = analysis::dimension(group);
    let mut rows: BTreeMap<String, Cell> = BTreeMap::new();
    let mut total = Cell::default();
    let mut too_large = None;
    for period in &periods {
        cells_with(read, &format!("{dim}{SEP}{period}{SEP}"), |value, cell| {
            let key = if group == GroupBy::Month {
                period
                    .trim_start_matches("m:")
                    .trim_start_matches("d:")
                    .chars()
                    .take(7)
                    .collect()
            } else {
                value.to_string()
            };
            if let Err(e) = rows.entry(key).or_default().merge(&cell) {
                too_large = Some(e);
            }
        })?;
        if let Some(cell) = read
            .doc(
                Doc::LeadIndex,
                &cell_key(&format!("total{SEP}{period}{SEP}")),
            )?
            .and_then(|b| serde_json::from_slice::<Cell>(&b).ok())
            && let Err(e) = total.merge(&cell)
        {
            too_large = Some(e);
        }
    }
    if let Some(e) = too_large {
        return Ok(Err(e));
    }
    Ok(Ok((
        rows.into_iter().map(|(k, c)| c.row(k)).collect(),
        total.row("total".into()),
    )))
}

/// Recomputes every cell from the leads and their offers (reading every
/// lead: a verification, never a page) and names each kept cell that
/// differs; empty when the kept analysis is exact.
pub fn check(read: &Read) -> Result<Vec<String>, StoreError> {
    let facts = super::offer_facts(read)?;
    let expected = match analysis::recompute(&facts) {
        Ok(c) => c,
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let mut kept: BTreeMap<String, Cell> = BTreeMap::new();
    cells_with(read, "", |k, cell| {
        kept.insert(k.to_string(), cell);
    })?;
    let mut problems = Vec::new();
    for (k, cell) in &expected {
        match kept.get(k) {
            Some(c) if c == cell => {}
            Some(c) => problems.push(format!(
                "{}: kept {c:?}, recomputed {cell:?}",
                k.replace(SEP, "/")
            )),
            None => problems.push(format!("{}: missing", k.replace(SEP, "/"))),
        }
    }
    for k in kept.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!(
            "{}: kept but no offer counts in it",
            k.replace(SEP, "/")
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::periods;

    #[test]
    fn periods_are_whole_months_and_edge_days() {
        assert_eq!(
            periods("2026-10-30", "2026-12-01"),
            vec!["d:2026-10-30", "d:2026-10-31", "m:2026-11", "d:2026-12-01"]
        );
        assert_eq!(periods("2026-11-01", "2026-11-30"), vec!["m:2026-11"]);
        assert!(periods("2026-12-02", "2026-12-01").is_empty());
    }
}
