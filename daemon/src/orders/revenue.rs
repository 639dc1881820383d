//! Invoiced revenue per partner and currency, kept up to date: the engine
//! counts each order it saves as vendor (in the same transaction), taking
//! the order's previous count away, so that a revenue read is one entry per
//! partner and currency, never every order.
//!
//! Keys in the `record_index` table:
//! - `rev␟<partner>␟<currency>` → the sum, minor units (decimal text, 128
//!   bits so that no intermediate sum overflows);
//! - `revm␟<YYYY-MM>␟<currency>` → the sum invoiced in that month (by
//!   the invoices' issue dates), for the dashboard's chart;
//! - `revc␟<key>␟<subject>` → JSON of what the order was last counted as.

use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::state::{Order, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';

/// What one order adds to its partner's revenue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Counted {
    partner: String,
    currency: String,
    invoiced: i64,
    /// Invoiced per month of issue (`YYYY-MM`).
    #[serde(default)]
    months: BTreeMap<String, i64>,
}

fn counted_of(key: &str, order: &Order) -> Counted {
    Counted {
        partner: key
            .strip_prefix("web:")
            .map_or_else(|| order.partner.to_string(), str::to_string),
        currency: order.currency.to_string(),
        // Each invoice total is within the exact range; the sum is checked
        // where it is read.
        invoiced: order
            .invoices
            .iter()
            .fold(0i64, |sum, i| sum.saturating_add(i.totals.total)),
        months: order.invoices.iter().fold(BTreeMap::new(), |mut m, i| {
            let month: String = i.issued_on.to_string().chars().take(7).collect();
            let sum: &mut i64 = m.entry(month).or_default();
            *sum = sum.saturating_add(i.totals.total);
            m
        }),
    }
}

fn add_to(t: &mut Tables<'_>, key: &str, delta: i128) -> Result<(), EngineError> {
    let now: i128 = t
        .doc(Doc::RecordIndex, key)?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or(0);
    // Written once per transaction, however many orders it counts.
    t.put_doc_later(
        Doc::RecordIndex,
        key,
        Some((now + delta).to_string().into_bytes()),
    );
    Ok(())
}

fn sum_key(partner: &str, currency: &str) -> String {
    format!("rev{SEP}{partner}{SEP}{currency}")
}

fn add(t: &mut Tables<'_>, c: &Counted, sign: i128) -> Result<(), EngineError> {
    add_to(
        t,
        &sum_key(&c.partner, &c.currency),
        sign * i128::from(c.invoiced),
    )?;
    for (month, sum) in &c.months {
        add_to(
            t,
            &format!("revm{SEP}{month}{SEP}{}", c.currency),
            sign * i128::from(*sum),
        )?;
    }
    Ok(())
}

/// Invoiced revenue by month (`YYYY-MM`, from `from` on, at most `months`
/// of them) and currency: one index range, never every order.
pub fn by_month(
    read: &Read,
    from: &str,
    months: usize,
) -> Result<BTreeMap<String, BTreeMap<String, i64>>, StoreError> {
    let prefix = format!("revm{SEP}");
    let start = format!("{prefix}{from}");
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    // Each month has an entry per currency: read a bounded page.
    for (k, v) in read.docs_page(
        Doc::RecordIndex,
        &prefix,
        Some(&start),
        guanxi_adapters::store::Order::Forward,
        months * 8,
    )? {
        let Some((month, currency)) = k.strip_prefix(&prefix).and_then(|r| r.split_once(SEP))
        else {
            continue;
        };
        let sum: i128 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
        if let Ok(sum) = i64::try_from(sum) {
            out.entry(month.to_string())
                .or_default()
                .insert(currency.to_string(), sum);
        }
        if out.len() > months {
            out.pop_last();
            break;
        }
    }
    Ok(out)
}

/// After the engine saved `order` (this node its vendor) under `key`.
pub fn order_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    order: &Order,
) -> Result<(), EngineError> {
    let entry = format!("revc{SEP}{key}{SEP}{subject}");
    let before: Option<Counted> = t
        .doc(Doc::RecordIndex, &entry)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let now = counted_of(key, order);
    if before.as_ref() == Some(&now) {
        return Ok(());
    }
    if let Some(b) = &before {
        add(t, b, -1)?;
    }
    add(t, &now, 1)?;
    let json = serde_json::to_vec(&now).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    t.put_doc(Doc::RecordIndex, &entry, &json)?;
    Ok(())
}

/// Before the engine forgets the order kept under (`key`, `subject`): what
/// it counted is taken out (a hand-over to a partner's node, SPEC §25).
pub fn order_removed(t: &mut Tables<'_>, key: &str, subject: &str) -> Result<(), EngineError> {
    let entry = format!("revc{SEP}{key}{SEP}{subject}");
    let before: Option<Counted> = t
        .doc(Doc::RecordIndex, &entry)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(b) = &before {
        add(t, b, -1)?;
        t.delete_doc(Doc::RecordIndex, &entry)?;
    }
    Ok(())
}

/// Revenue per partner, then per currency code, in minor units.
pub type Revenue = BTreeMap<String, BTreeMap<String, i64>>;

/// Invoiced revenue per partner and currency of the orders this node
/// received as vendor, from the kept sums (one entry per partner and
/// currency). A sum beyond ±(2^53−1) is an error naming the partner and
/// currency.
pub fn revenue(read: &Read) -> Result<Result<Revenue, String>, StoreError> {
    let mut out: Revenue = BTreeMap::new();
    let mut too_large = None;
    read.each_with_prefix(Doc::RecordIndex, &format!("rev{SEP}"), |rest, v| {
        let Some((partner, currency)) = rest.split_once(SEP) else {
            return;
        };
        let sum: i128 = String::from_utf8_lossy(v).parse().unwrap_or(0);
        match i64::try_from(sum)
            .ok()
            .filter(|s| s.abs() <= guanxi_protocol::canonical::MAX_SAFE_INTEGER)
        {
            Some(s) => {
                out.entry(partner.to_string())
                    .or_default()
                    .insert(currency.to_string(), s);
            }
            None => {
                too_large.get_or_insert(format!(
                    "revenue of {partner} in {currency}: beyond the exact integer range"
                ));
            }
        }
    })?;
    Ok(match too_large {
        Some(e) => Err(e),
        None => Ok(out),
    })
}

/// Recomputes revenue from every order this node received as vendor (a
/// verification, never a page) and names each kept sum that differs.
pub fn check(read: &Read) -> Result<Vec<String>, StoreError> {
    use crate::record_index::{self as index, Side};
    let mut expected: BTreeMap<(String, String), i128> = BTreeMap::new();
    for (key, _, record) in index::load(read, index::every(read, "order", Side::Own)?) {
        if let Record::Order(order) = record {
            let c = counted_of(&key, &order);
            *expected.entry((c.partner, c.currency)).or_insert(0) += i128::from(c.invoiced);
        }
    }
    let kept = match revenue(read)? {
        Ok(r) => r,
        Err(e) => return Ok(vec![e]),
    };
    let mut problems = Vec::new();
    for ((partner, currency), sum) in &expected {
        let have = kept.get(partner).and_then(|m| m.get(currency)).copied();
        if have.map(i128::from) != Some(*sum) {
            problems.push(format!(
                "revenue of {partner} in {currency}: kept {have:?}, recomputed {sum}"
            ));
        }
    }
    for (partner, m) in &kept {
        for (currency, sum) in m {
            if !expected.contains_key(&(partner.clone(), currency.clone())) && *sum != 0 {
                problems.push(format!(
                    "revenue of {partner} in {currency}: kept {sum}, no order counts in it"
                ));
            }
        }
    }
    Ok(problems)
}
