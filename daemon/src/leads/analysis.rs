//! Conversion analysis: per partner, source, campaign or month, how many
//! offers were made, accepted, declined, expired, won and lost, the win rate,
//! the won value per currency and the median time to accept. Pure: it counts
//! the facts it is given. Integers only: the win rate is in per mille
//! (won ÷ (won + lost)), money in minor units per currency.

use guanxi_protocol::Millis;
use guanxi_protocol::money::{self, Currency, Money};
use guanxi_protocol::state::LeadStatus;
use serde::Serialize;
use std::collections::BTreeMap;

/// One offer of a lead to a partner, as analysis counts it.
#[derive(Debug, Clone)]
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

/// Counts `facts` whose offer falls in [`from`, `to`) by `group`; returns
/// the rows in key order and the total.
pub fn analyse(
    facts: &[OfferFact],
    group: GroupBy,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<(Vec<Row>, Row), TooLarge> {
    let mut rows: BTreeMap<String, (Row, Vec<i64>)> = BTreeMap::new();
    let mut total = (Row::default(), Vec::new());
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
        let entry = rows.entry(key.clone()).or_insert_with(|| {
            (
                Row {
                    key,
                    ..Row::default()
                },
                Vec::new(),
            )
        });
        for (row, times) in [(&mut entry.0, &mut entry.1), (&mut total.0, &mut total.1)] {
            count(row, times, f)?;
        }
    }
    let finish = |(mut row, mut times): (Row, Vec<i64>)| {
        let decided = row.won + row.lost;
        row.win_rate_permille = (decided > 0).then(|| row.won * 1000 / decided);
        times.sort_unstable();
        row.median_accept_ms = median(&times);
        row
    };
    total.0.key = "total".into();
    Ok((rows.into_values().map(finish).collect(), finish(total)))
}

fn count(row: &mut Row, times: &mut Vec<i64>, f: &OfferFact) -> Result<(), TooLarge> {
    row.offered += 1;
    if let Some(at) = f.accepted_at {
        row.accepted += 1;
        times.push(at - f.offered_at);
    }
    match f.status {
        LeadStatus::Declined => row.declined += 1,
        LeadStatus::Expired => row.expired += 1,
        LeadStatus::Won => row.won += 1,
        LeadStatus::Lost => row.lost += 1,
        _ => {}
    }
    if let (LeadStatus::Won, Some(v)) = (f.status, &f.won_value) {
        let sum = row.won_value.entry(v.currency.to_string()).or_insert(0);
        *sum = money::add(*sum, v.amount).map_err(|_| TooLarge {
            currency: v.currency.to_string(),
        })?;
    }
    Ok(())
}

/// The median of sorted values (the lower middle for an even count, so it
/// is always an observed value).
fn median(sorted: &[i64]) -> Option<i64> {
    if sorted.is_empty() {
        None
    } else {
        Some(sorted[(sorted.len() - 1) / 2])
    }
}

/// A won value map rendered like `TWD 1250.00, EUR 10.00`.
pub fn format_values(values: &BTreeMap<String, i64>) -> String {
    values
        .iter()
        .filter_map(|(c, a)| {
            c.parse::<Currency>().ok().map(|currency| {
                Money {
                    amount: *a,
                    currency,
                }
                .to_string()
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        assert_eq!(a.median_accept_ms, Some(2 * h));
        assert_eq!(total.offered, 5);
        assert_eq!(rows[1].win_rate_permille, None);
        let overflow = vec![
            fact("a", 0, Some(1), LeadStatus::Won, 9_007_199_254_740_991),
            fact("a", 0, Some(1), LeadStatus::Won, 1),
        ];
        assert!(analyse(&overflow, GroupBy::Partner, None, None).is_err());
        assert_eq!(month_of(1_795_651_200_000), "2026-11");
    }
}
