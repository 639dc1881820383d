//! Conversion analysis: per partner, source, campaign or month, how many
//! offers were made, accepted, declined, expired, won and lost, the win rate,
//! the won value per currency and the median time to accept. Pure: it counts
//! the facts it is given, into [`Cell`]s that can be added and taken away
//! (the store keeps them up to date per offer, see `aggregates.rs`). Integers
//! only: the win rate is in per mille (won ÷ (won + lost)), money in minor
//! units per currency, and times to accept are counted in buckets about 6 %
//! wide, so the median is the middle of its bucket (exact to within 3 %).

use guanxi_protocol::Millis;
use guanxi_protocol::money::{self, Money};
use guanxi_protocol::state::LeadStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One offer of a lead to a partner, as analysis counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferFact {
    pub partner: String,
    pub source: String,
    pub campaign: String,
    pub offered_at: Millis,
    pub accepted_at: Option<Millis>,
    pub status: LeadStatus,
    pub won_value: Option<Money>,
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Partner,
    Source,
    Campaign,
    Month,
}

impl GroupBy {
    /// Reads `partner`, `source`, `campaign` or `month`.
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "partner" => Some(GroupBy::Partner),
            "source" => Some(GroupBy::Source),
            "campaign" => Some(GroupBy::Campaign),
            "month" => Some(GroupBy::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Partner => "partner",
            GroupBy::Source => "source",
            GroupBy::Campaign => "campaign",
            GroupBy::Month => "month",
        }
    }
}

/// One row of the analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub key: String,
    pub offered: u64,
    pub accepted: u64,
    pub declined: u64,
    pub expired: u64,
    pub won: u64,
    pub lost: u64,
    /// won ÷ (won + lost) in per mille; `None` before anything is decided.
    pub win_rate_permille: Option<u64>,
    /// Won value per currency code, minor units.
    pub won_value: BTreeMap<String, i64>,
    /// Median of (accepted − offered) over accepted offers, milliseconds.
    pub median_accept_ms: Option<i64>,
}

/// Why the analysis cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the won value in {currency} exceeds the exact integer range")]
pub struct TooLarge {
    pub currency: String,
}

/// The calendar month (UTC) of a time, `YYYY-MM`.
pub fn month_of(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%Y-%m").to_string())
        .unwrap_or_default()
}

/// Bucket boundaries of times to accept (milliseconds): 1 s wide up to
/// 16 s, then 1/16 of the start (about 6 %), up to ten years.
fn boundaries() -> &'static [i64] {
    static B: std::sync::OnceLock<Vec<i64>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut b = vec![0, 1000];
        while let Some(&last) = b.last()
            && last < 315_360_000_000
        {
            b.push(last + (last / 16).max(1000));
        }
        b
    })
}

/// The bucket of a time to accept.
pub fn bucket(ms: i64) -> u16 {
    let b = boundaries();
    let i = b.partition_point(|&x| x <= ms.max(0)).saturating_sub(1);
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// The middle of a bucket, milliseconds.
fn bucket_value(i: u16) -> i64 {
    let b = boundaries();
    let i = usize::from(i).min(b.len() - 1);
    let low = b[i];
    let high = b.get(i + 1).copied().unwrap_or(low);
    low + (high - low) / 2
}

/// The median of counts per bucket ([`bucket`]): the middle of the bucket
/// holding the lower middle value; `None` when nothing is counted.
pub fn median_of(buckets: &BTreeMap<u16, i64>) -> Option<i64> {
    let n: i64 = buckets.values().sum();
    if n <= 0 {
        return None;
    }
    let middle = (n - 1) / 2;
    let mut seen = 0;
    for (b, count) in buckets {
        seen += count;
        if seen > middle {
            return Some(bucket_value(*b));
        }
    }
    None
}

/// Counts that can be added and taken away: one group of offers in one
/// period (`aggregates.rs` keeps one per group and period in the store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub offered: i64,
    pub accepted: i64,
    pub declined: i64,
    pub expired: i64,
    pub won: i64,
    pub lost: i64,
    /// Won value per currency code, minor units.
    pub won_value: BTreeMap<String, i64>,
    /// Accepted offers per bucket of time to accept ([`bucket`]).
    pub accept: BTreeMap<u16, i64>,
}

impl Cell {
    /// Counts `f` once (`sign` 1) or takes it away (`sign` −1).
    pub fn apply(&mut self, f: &OfferFact, sign: i64) -> Result<(), TooLarge> {
        self.offered += sign;
        if let Some(at) = f.accepted_at {
            self.accepted += sign;
            *self.accept.entry(bucket(at - f.offered_at)).or_insert(0) += sign;
        }
        match f.status {
            LeadStatus::Declined => self.declined += sign,
            LeadStatus::Expired => self.expired += sign,
            LeadStatus::Won => self.won += sign,
            LeadStatus::Lost => self.lost += sign,
            _ => {}
        }
        if let (LeadStatus::Won, Some(v)) = (f.status, &f.won_value) {
            let sum = self.won_value.entry(v.currency.to_string()).or_insert(0);
            *sum = money::add(*sum, sign * v.amount).map_err(|_| TooLarge {
                currency: v.currency.to_string(),
            })?;
        }
        self.tidy();
        Ok(())
    }

    /// Adds `other` into this cell.
    pub fn merge(&mut self, other: &Cell) -> Result<(), TooLarge> {
        self.offered += other.offered;
        self.accepted += other.accepted;
        self.declined += other.declined;
        self.expired += other.expired;
        self.won += other.won;
        self.lost += other.lost;
        for (c, v) in &other.won_value {
            let sum = self.won_value.entry(c.clone()).or_insert(0);
            *sum = money::add(*sum, *v).map_err(|_| TooLarge {
                currency: c.clone(),
            })?;
        }
        for (b, n) in &other.accept {
            *self.accept.entry(*b).or_insert(0) += n;
        }
        Ok(())
    }

    fn tidy(&mut self) {
        self.accept.retain(|_, n| *n != 0);
        self.won_value.retain(|_, v| *v != 0);
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        *self == Cell::default()
    }

    /// The row this cell shows as.
    pub fn row(&self, key: String) -> Row {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let decided = n(self.won) + n(self.lost);
        let median = median_of(&self.accept);
        Row {
            key,
            offered: n(self.offered),
            accepted: n(self.accepted),
            declined: n(self.declined),
            expired: n(self.expired),
            won: n(self.won),
            lost: n(self.lost),
            win_rate_permille: (decided > 0).then(|| n(self.won) * 1000 / decided),
            won_value: self.won_value.clone(),
            median_accept_ms: median,
        }
    }
}

const SEP: char = '\u{1f}';

/// The day (UTC) of a time, `YYYY-MM-DD`.
pub fn day_of(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The cells a fact counts in: by partner, source, campaign and in total
/// (`dimension␟period␟value`), for all time (`all`), its month (`m:…`) and
/// its day (`d:…`).
pub fn cells_of(f: &OfferFact) -> Vec<String> {
    let periods = [
        "all".to_string(),
        format!("m:{}", month_of(f.offered_at)),
        format!("d:{}", day_of(f.offered_at)),
    ];
    let dims = [
        ("partner", f.partner.as_str()),
        ("source", f.source.as_str()),
        ("campaign", f.campaign.as_str()),
        ("total", ""),
    ];
    let mut out = Vec::with_capacity(12);
    for (dim, value) in dims {
        for p in &periods {
            out.push(format!("{dim}{SEP}{p}{SEP}{value}"));
        }
    }
    out
}

/// Every cell of `facts`, as the store should hold them (the check that
/// the kept aggregates equal a recomputation compares with this).
pub fn recompute(facts: &[OfferFact]) -> Result<BTreeMap<String, Cell>, TooLarge> {
    let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
    for f in facts {
        for k in cells_of(f) {
            cells.entry(k).or_default().apply(f, 1)?;
        }
    }
    cells.retain(|_, c| !c.is_empty());
    Ok(cells)
}

/// The dimension a grouping reads (months read the totals by period).
pub fn dimension(group: GroupBy) -> &'static str {
    match group {
        GroupBy::Partner => "partner",
        GroupBy::Source => "source",
        GroupBy::Campaign => "campaign",
        GroupBy::Month => "total",
    }
}

/// Counts `facts` whose offer falls in [`from`, `to`) by `group`; returns
/// the rows in key order and the total. (The pages read the same rows from
/// the kept cells; this is the recomputation.)
pub fn analyse(
    facts: &[OfferFact],
    group: GroupBy,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<(Vec<Row>, Row), TooLarge> {
    let mut rows: BTreeMap<String, Cell> = BTreeMap::new();
    let mut total = Cell::default();
    for f in facts {
        if from.is_some_and(|t| f.offered_at < t) || to.is_some_and(|t| f.offered_at >= t) {
            continue;
        }
        let key = match group {
            GroupBy::Partner => f.partner.clone(),
            GroupBy::Source => f.source.clone(),
            GroupBy::Campaign => f.campaign.clone(),
            GroupBy::Month => month_of(f.offered_at),
        };
        rows.entry(key).or_default().apply(f, 1)?;
        total.apply(f, 1)?;
    }
    Ok((
        rows.into_iter().map(|(k, c)| c.row(k)).collect(),
        total.row("total".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(
        partner: &str,
        offered: i64,
        accepted: Option<i64>,
        status: LeadStatus,
        won: i64,
    ) -> OfferFact {
        OfferFact {
            partner: partner.into(),
            source: "web".into(),
            campaign: "spring".into(),
            offered_at: offered,
            accepted_at: accepted,
            status,
            won_value: (status == LeadStatus::Won).then(|| Money {
                amount: won,
                currency: "TWD".parse().expect("code"),
            }),
        }
    }

    #[test]
    fn rows_count_each_outcome() {
        let h = 3_600_000;
        let facts = vec![
            fact("a", 0, Some(h), LeadStatus::Won, 500),
            fact("a", 10, Some(10 + 3 * h), LeadStatus::Lost, 0),
            fact("a", 20, Some(20 + 2 * h), LeadStatus::Won, 250),
            fact("a", 30, None, LeadStatus::Expired, 0),
            fact("b", 40, None, LeadStatus::Declined, 0),
            fact("b", 1_000_000_000_000, None, LeadStatus::Offered, 0),
        ];
        let (rows, total) = analyse(&facts, GroupBy::Partner, None, Some(1_000)).expect("fits");
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(
            (a.offered, a.accepted, a.won, a.lost, a.expired, a.declined),
            (4, 3, 2, 1, 1, 0)
        );
        assert_eq!(a.win_rate_permille, Some(666));
        assert_eq!(a.won_value.get("TWD"), Some(&750));
        // The middle of the bucket holding two hours, within 3 %.
        let m = a.median_accept_ms.expect("median");
        assert!((m - 2 * h).abs() * 100 <= 2 * h * 3, "{m}");
        assert_eq!(bucket(m), bucket(2 * h));
        assert_eq!(total.offered, 5);
        assert_eq!(rows[1].win_rate_permille, None);
        let overflow = vec![
            fact("a", 0, Some(1), LeadStatus::Won, 9_007_199_254_740_991),
            fact("a", 0, Some(1), LeadStatus::Won, 1),
        ];
        assert!(analyse(&overflow, GroupBy::Partner, None, None).is_err());
        assert_eq!(month_of(1_795_651_200_000), "2026-11");
    }

    #[test]
    fn cells_add_and_take_away_to_nothing() {
        let f = fact("a", 5, Some(65_000), LeadStatus::Won, 700);
        let mut c = Cell::default();
        c.apply(&f, 1).expect("fits");
        assert_eq!(
            (c.offered, c.won, c.won_value.get("TWD")),
            (1, 1, Some(&700))
        );
        c.apply(&f, -1).expect("fits");
        assert!(c.is_empty(), "{c:?}");
        // Buckets are ordered and cover every time.
        assert!(bucket(0) <= bucket(999) && bucket(999) < bucket(1000));
        assert!(bucket(3_600_000) < bucket(7_200_000));
        assert_eq!(cells_of(&f).len(), 12);
    }
}
