//! Scorecards: a partner's figures for a period, computed from the shared
//! records between a vendor and that partner. Both nodes hold the same
//! records (SPEC §12.1), so both compute the same scorecard with this code
//! and can compare it figure by figure (SPEC §18). Pure: the daemon gives
//! it the records; it never reads a clock.
//!
//! A record counts in the period its opening falls in (`Record::opened_at`:
//! an offer, an order placed, a request opened, ...); MDF ledger entries
//! and announcement reads count by their own times. Integers only: rates
//! in per mille, money in minor units per currency, times in milliseconds
//! (medians of the exact values).

use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::state::LeadStatus;
use crate::state::Record;
use crate::state::mdf::Account;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A period `[from, to)` in UTC milliseconds, and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub name: String,
    pub from: Millis,
    pub to: Millis,
}

const DAY: Millis = 86_400_000;

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01, `YYYY-MM-DD`.
fn civil(days: i64) -> String {
    let (y, m, d) = ymd(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The civil year, month and day of a day count from 1970-01-01.
fn ymd(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn month_start(y: i64, m: i64) -> Millis {
    let (y, m) = if m > 12 { (y + 1, m - 12) } else { (y, m) };
    days_from_civil(y, m, 1) * DAY
}

fn date(text: &str) -> Option<Millis> {
    let mut p = text.splitn(3, '-');
    let (y, m, d) = (p.next()?, p.next()?, p.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let start = days_from_civil(y, m, d);
    // Reject 2026-02-31 and the like: the day must stay in its month.
    (start < days_from_civil(y, m, 1) + (month_start(y, m + 1) / DAY - month_start(y, m) / DAY))
        .then_some(start * DAY)
}

impl Period {
    /// Reads `YYYY`, `YYYY-Hn`, `YYYY-Qn`, `YYYY-MM`, or `YYYY-MM-DD..YYYY-MM-DD`
    /// (both days included), in UTC.
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || {
            format!(
                "{text:?} is not a period: 2026, 2026-H1, 2026-Q3, 2026-07 or 2026-01-01..2026-06-30"
            )
        };
        let text = text.trim();
        let (from, to) = if let Some((a, b)) = text.split_once("..") {
            let (from, last) = (date(a).ok_or_else(bad)?, date(b).ok_or_else(bad)?);
            if last < from {
                return Err(format!("{text:?}: the period ends before it begins"));
            }
            (from, last + DAY)
        } else {
            let year: i64 = text
                .get(..4)
                .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|y| y.parse().ok())
                .ok_or_else(bad)?;
            match &text[4..] {
                "" => (month_start(year, 1), month_start(year, 13)),
                "-H1" => (month_start(year, 1), month_start(year, 7)),
                "-H2" => (month_start(year, 7), month_start(year, 13)),
                q if q.starts_with("-Q") && q.len() == 3 => {
                    let n: i64 = q[2..].parse().map_err(|_| bad())?;
                    if !(1..=4).contains(&n) {
                        return Err(bad());
                    }
                    (month_start(year, 3 * n - 2), month_start(year, 3 * n + 1))
                }
                m if m.len() == 3 && m.starts_with('-') => {
                    let n: i64 = m[1..].parse().map_err(|_| bad())?;
                    if !(1..=12).contains(&n) {
                        return Err(bad());
                    }
                    (month_start(year, n), month_start(year, n + 1))
                }
                _ => return Err(bad()),
            }
        };
        Ok(Period {
            name: text.to_string(),
            from,
            to,
        })
    }

    /// The period of the same length just before this one (a month before
    /// a month, a quarter before a quarter, ...).
    pub fn previous(&self) -> Period {
        let text = &self.name;
        let year: Option<i64> = text.get(..4).and_then(|y| y.parse().ok());
        let named = match (year, text.get(4..)) {
            (Some(y), Some("")) => Some(format!("{}", y - 1)),
            (Some(y), Some("-H1")) => Some(format!("{}-H2", y - 1)),
            (Some(y), Some("-H2")) => Some(format!("{y}-H1")),
            (Some(y), Some(q)) if q.starts_with("-Q") => match q[2..].parse::<i64>() {
                Ok(1) => Some(format!("{}-Q4", y - 1)),
                Ok(n) => Some(format!("{y}-Q{}", n - 1)),
                Err(_) => None,
            },
            (Some(y), Some(m)) if m.len() == 3 => match m[1..].parse::<i64>() {
                Ok(1) => Some(format!("{}-12", y - 1)),
                Ok(n) => Some(format!("{y}-{:02}", n - 1)),
                Err(_) => None,
            },
            _ => None,
        };
        match named.and_then(|n| Period::parse(&n).ok()) {
            Some(p) => p,
            None => {
                let (from, to) = (self.from - (self.to - self.from), self.from);
                Period {
                    name: format!(
                        "{}..{}",
                        civil(from.div_euclid(DAY)),
                        civil((to - 1).div_euclid(DAY))
                    ),
                    from,
                    to,
                }
            }
        }
    }

    /// Whether `at` falls in the period.
    pub fn holds(&self, at: Millis) -> bool {
        self.from <= at && at < self.to
    }
}

/// A partner's scorecard with one vendor for one period. Every member is
/// a count, a sum or a median of the records both nodes hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scorecard {
    pub leads_offered: u64,
    pub leads_accepted: u64,
    pub leads_declined: u64,
    pub leads_expired: u64,
    pub leads_won: u64,
    pub leads_lost: u64,
    /// Won ÷ (won + lost), per mille; `None` before any lead closed.
    pub win_rate_permille: Option<i64>,
    /// Median time from offer to acceptance.
    pub accept_median_ms: Option<i64>,
    pub won_value: BTreeMap<String, i64>,
    pub registrations: u64,
    pub registrations_approved: u64,
    pub orders: u64,
    /// The invoiced totals of the orders placed in the period.
    pub invoiced: BTreeMap<String, i64>,
    pub service_requests: u64,
    pub service_resolved: u64,
    pub first_response_median_ms: Option<i64>,
    pub resolution_median_ms: Option<i64>,
    pub warranty_claims: u64,
    pub warranty_approved: u64,
    /// Marketing funds by ledger entries in the period, per currency.
    pub mdf_allocated: BTreeMap<String, i64>,
    pub mdf_claimed: BTreeMap<String, i64>,
    pub mdf_paid: BTreeMap<String, i64>,
    pub announcements: u64,
    pub announcements_acknowledged: u64,
    pub acknowledge_median_ms: Option<i64>,
    pub quiz_attempts: u64,
    pub quiz_passed: u64,
    /// People who answered the vendor's surveys, by answer time.
    pub survey_answers: u64,
    /// Net promoter score of their NPS answers, −100 to 100 (promoters 9–10
    /// minus detractors 0–6, per hundred answers, toward zero); `None`
    /// without an NPS answer.
    pub nps: Option<i64>,
}

impl Scorecard {
    /// Checks a scorecard received in a message: no negative sum or time,
    /// currencies as three capital letters, a win rate within 0–1000.
    pub fn validate(&self) -> Result<(), String> {
        let maps = [
            ("won_value", &self.won_value),
            ("invoiced", &self.invoiced),
            ("mdf_allocated", &self.mdf_allocated),
            ("mdf_claimed", &self.mdf_claimed),
            ("mdf_paid", &self.mdf_paid),
        ];
        for (name, map) in maps {
            for (currency, v) in map {
                if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(format!("{name}: {currency:?} is not a currency code"));
                }
                if *v < 0 {
                    return Err(format!("{name}: a sum is negative"));
                }
            }
        }
        let times = [
            self.accept_median_ms,
            self.first_response_median_ms,
            self.resolution_median_ms,
            self.acknowledge_median_ms,
        ];
        if times.iter().flatten().any(|t| *t < 0) {
            return Err("a median time is negative".into());
        }
        if self
            .win_rate_permille
            .is_some_and(|r| !(0..=1000).contains(&r))
        {
            return Err("win_rate_permille must be 0 to 1000".into());
        }
        if self.nps.is_some_and(|n| !(-100..=100).contains(&n)) {
            return Err("nps must be -100 to 100".into());
        }
        Ok(())
    }

    /// The first figure (in SPEC §18's order) where `self` and `other`
    /// differ: its name and both values as JSON text.
    pub fn first_difference(&self, other: &Scorecard) -> Option<(String, String, String)> {
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(other).ok()?;
        for name in FIGURES {
            if a.get(name) != b.get(name) {
                let show = |v: &serde_json::Value, n: &str| {
                    v.get(n).map(|x| x.to_string()).unwrap_or_default()
                };
                return Some((name.to_string(), show(&a, name), show(&b, name)));
            }
        }
        None
    }
}

/// One weight of the vendor's score: for partners of `tier` (`*`: any),
/// `figure` (a name of [`FIGURES`]; a money figure with its currency,
/// `won_value:TWD`) counts `weight` parts, fully at `target` (times: at or
/// under it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weight {
    pub tier: String,
    pub figure: String,
    pub weight: i64,
    pub target: i64,
}

/// Reads weights written one per line: `<tier or *> <figure> <weight>
/// <target>`; the error names the line.
pub fn parse_weights(text: &str) -> Result<Vec<Weight>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let bad = |m: &str| format!("line {}: {m}", i + 1);
        let [tier, figure, weight, target] = words[..] else {
            return Err(bad(
                "write the tier (or *), the figure, its weight and its target",
            ));
        };
        check_figure(figure).map_err(|m| bad(&m))?;
        let weight: i64 = weight
            .parse()
            .ok()
            .filter(|w| (1..=100).contains(w))
            .ok_or_else(|| bad("the weight must be 1 to 100"))?;
        let target: i64 = target
            .parse()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| bad("the target must be a whole number above 0"))?;
        out.push(Weight {
            tier: tier.to_string(),
            figure: figure.to_string(),
            weight,
            target,
        });
    }
    Ok(out)
}

/// Checks a figure as weights and goals name it: a name of [`FIGURES`],
/// a money figure with its currency (`won_value:TWD`).
pub fn check_figure(figure: &str) -> Result<(), String> {
    let (name, currency) = figure.split_once(':').unwrap_or((figure, ""));
    if !FIGURES.contains(&name) {
        return Err(format!("{name:?} is not a scorecard figure"));
    }
    let money = MONEY.contains(&name);
    if money != (currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err("a money figure names its currency (won_value:TWD), no other does".into());
    }
    Ok(())
}

/// Figures that are sums of money per currency.
const MONEY: [&str; 5] = [
    "won_value",
    "invoiced",
    "mdf_allocated",
    "mdf_claimed",
    "mdf_paid",
];

impl Scorecard {
    /// A figure's value (`won_value:TWD` for money; `None` when it has none,
    /// as a median of nothing).
    pub fn value(&self, figure: &str) -> Option<i64> {
        let v = serde_json::to_value(self).ok()?;
        match figure.split_once(':') {
            Some((name, currency)) => Some(
                v.get(name)?
                    .get(currency)
                    .and_then(|x| x.as_i64())
                    .unwrap_or(0),
            ),
            None => v.get(figure)?.as_i64(),
        }
    }

    /// The weighted score 0–100 for a partner of `tier` (weights of that
    /// tier, or `*` when it has none); `None` without weights. A figure
    /// counts fully at its target; a time (`…_ms`) counts fully at or under
    /// it and in proportion over it; a time not measured counts nothing.
    pub fn score(&self, weights: &[Weight], tier: &str) -> Option<i64> {
        let own: Vec<&Weight> = weights
            .iter()
            .filter(|w| w.tier.eq_ignore_ascii_case(tier.trim()))
            .collect();
        let used: Vec<&Weight> = if own.is_empty() {
            weights.iter().filter(|w| w.tier == "*").collect()
        } else {
            own
        };
        let total: i64 = used.iter().map(|w| w.weight).sum();
        if total == 0 {
            return None;
        }
        let mut parts: i128 = 0;
        for w in &used {
            let earned = match (self.value(&w.figure), w.figure.ends_with("_ms")) {
                (None, _) => 0,
                (Some(v), true) if v <= w.target => 1_000_000,
                (Some(v), true) => (w.target as i128 * 1_000_000 / v.max(1) as i128) as i64,
                (Some(v), false) => {
                    (v.clamp(0, w.target) as i128 * 1_000_000 / w.target as i128) as i64
                }
            };
            parts += w.weight as i128 * earned as i128;
        }
        Some((parts * 100 / (total as i128 * 1_000_000)) as i64)
    }
}

/// The figures of a scorecard in the order people read them.
pub const FIGURES: [&str; 29] = [
    "leads_offered",
    "leads_accepted",
    "accept_median_ms",
    "leads_declined",
    "leads_expired",
    "leads_won",
    "leads_lost",
    "win_rate_permille",
    "won_value",
    "registrations",
    "registrations_approved",
    "orders",
    "invoiced",
    "service_requests",
    "service_resolved",
    "first_response_median_ms",
    "resolution_median_ms",
    "warranty_claims",
    "warranty_approved",
    "mdf_allocated",
    "mdf_claimed",
    "mdf_paid",
    "announcements",
    "announcements_acknowledged",
    "acknowledge_median_ms",
    "quiz_attempts",
    "quiz_passed",
    "survey_answers",
    "nps",
];

/// A scorecard's raw parts, which add and take away: counts and sums by
/// figure (`won_value:TWD` for money), and the exact times behind the
/// median figures (value → how many). The daemon keeps one per partner
/// and day and per partner and month, so a scorecard of any period reads
/// a few of them instead of every record (SPEC §18).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub times: BTreeMap<String, BTreeMap<i64, i64>>,
}

impl Tally {
    fn count(&mut self, figure: &str, n: i64) {
        let sum = self.sums.entry(figure.to_string()).or_insert(0);
        *sum = sum.saturating_add(n);
    }

    fn money(&mut self, figure: &str, currency: &str, amount: i64) {
        self.count(&format!("{figure}:{currency}"), amount);
    }

    fn time(&mut self, figure: &str, ms: i64) {
        *self
            .times
            .entry(figure.to_string())
            .or_default()
            .entry(ms)
            .or_insert(0) += 1;
    }

    /// Adds `other` (`sign` 1) or takes it away (`sign` -1); entries that
    /// come to zero are dropped, so a tally of nothing is empty.
    pub fn apply(&mut self, other: &Tally, sign: i64) {
        for (figure, n) in &other.sums {
            self.count(figure, sign.saturating_mul(*n));
        }
        for (figure, values) in &other.times {
            let mine = self.times.entry(figure.clone()).or_default();
            for (v, n) in values {
                *mine.entry(*v).or_insert(0) += sign * n;
            }
            mine.retain(|_, n| *n != 0);
        }
        self.sums.retain(|_, n| *n != 0);
        self.times.retain(|_, m| !m.is_empty());
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty() && self.times.is_empty()
    }

    /// The scorecard of these parts: rates and medians worked out.
    pub fn finish(&self) -> Scorecard {
        let mut card = Scorecard::default();
        let get = |f: &str| u64::try_from(self.sums.get(f).copied().unwrap_or(0)).unwrap_or(0);
        card.leads_offered = get("leads_offered");
        card.leads_accepted = get("leads_accepted");
        card.leads_declined = get("leads_declined");
        card.leads_expired = get("leads_expired");
        card.leads_won = get("leads_won");
        card.leads_lost = get("leads_lost");
        card.registrations = get("registrations");
        card.registrations_approved = get("registrations_approved");
        card.orders = get("orders");
        card.service_requests = get("service_requests");
        card.service_resolved = get("service_resolved");
        card.warranty_claims = get("warranty_claims");
        card.warranty_approved = get("warranty_approved");
        card.announcements = get("announcements");
        card.announcements_acknowledged = get("announcements_acknowledged");
        card.quiz_attempts = get("quiz_attempts");
        card.quiz_passed = get("quiz_passed");
        card.survey_answers = get("survey_answers");
        let asked = self.sums.get("nps_answers").copied().unwrap_or(0);
        card.nps = (asked > 0).then(|| {
            let net = self.sums.get("nps_promoters").copied().unwrap_or(0)
                - self.sums.get("nps_detractors").copied().unwrap_or(0);
            net * 100 / asked
        });
        for (key, sum) in &self.sums {
            let Some((figure, currency)) = key.split_once(':') else {
                continue;
            };
            let map = match figure {
                "won_value" => &mut card.won_value,
                "invoiced" => &mut card.invoiced,
                "mdf_allocated" => &mut card.mdf_allocated,
                "mdf_claimed" => &mut card.mdf_claimed,
                "mdf_paid" => &mut card.mdf_paid,
                _ => continue,
            };
            map.insert(currency.to_string(), *sum);
        }
        let closed = card.leads_won + card.leads_lost;
        card.win_rate_permille = (closed > 0).then(|| (card.leads_won * 1000 / closed) as i64);
        let median = |f: &str| self.times.get(f).and_then(median);
        card.accept_median_ms = median("accept_median_ms");
        card.first_response_median_ms = median("first_response_median_ms");
        card.resolution_median_ms = median("resolution_median_ms");
        card.acknowledge_median_ms = median("acknowledge_median_ms");
        card
    }
}

/// The median of a multiset (value → how many): the middle value, or the
/// mean of the two middle values rounded down.
fn median(values: &BTreeMap<i64, i64>) -> Option<i64> {
    let n: i64 = values.values().sum();
    if n <= 0 {
        return None;
    }
    // The values at 0-based positions (n-1)/2 and n/2.
    let nth = |i: i64| {
        let mut seen = 0;
        values.iter().find_map(|(v, c)| {
            seen += c;
            (seen > i).then_some(*v)
        })
    };
    let (low, high) = (nth((n - 1) / 2)?, nth(n / 2)?);
    Some(low + (high - low) / 2)
}

/// How one record counts, whatever its vendor: its parts with the time
/// each counts at (its opening, [`Record::opened_at`]; an MDF budget's
/// ledger entries at their own times). Records of no figure have none.
pub fn parts(record: &Record) -> Vec<(Millis, Tally)> {
    if let Record::Mdf(b) = record {
        let c = b.currency.as_str();
        let mut out = Vec::new();
        for e in &b.entries {
            let figure = match (e.from, e.to) {
                (Account::Funding, Account::Available) => "mdf_allocated",
                (_, Account::Claimed) => "mdf_claimed",
                (_, Account::Paid) => "mdf_paid",
                _ => continue,
            };
            let mut t = Tally::default();
            t.money(figure, c, e.amount);
            out.push((e.at, t));
        }
        return out;
    }
    if let Record::Survey(s) = record {
        let nps: Vec<&str> = s
            .survey
            .questions
            .iter()
            .filter(|q| q.kind == "nps")
            .map(|q| q.id.as_str())
            .collect();
        return s
            .responses
            .iter()
            .map(|r| {
                let mut t = Tally::default();
                t.count("survey_answers", 1);
                for a in r
                    .answers
                    .iter()
                    .filter(|a| nps.contains(&a.question.as_str()))
                {
                    let Some(score) = a.score else { continue };
                    t.count("nps_answers", 1);
                    if score >= 9 {
                        t.count("nps_promoters", 1);
                    } else if score <= 6 {
                        t.count("nps_detractors", 1);
                    }
                }
                (r.at, t)
            })
            .collect();
    }
    let Some(at) = record.opened_at() else {
        return Vec::new();
    };
    let mut t = Tally::default();
    match record {
        Record::Lead(l) => {
            t.count("leads_offered", 1);
            if let Some(accepted) = l.accepted_at {
                t.count("leads_accepted", 1);
                t.time("accept_median_ms", accepted - l.offered_at);
            }
            match l.status {
                LeadStatus::Declined => t.count("leads_declined", 1),
                LeadStatus::Expired => t.count("leads_expired", 1),
                LeadStatus::Won => {
                    t.count("leads_won", 1);
                    if let Some(v) = &l.won_value {
                        t.money("won_value", v.currency.as_str(), v.amount);
                    }
                }
                LeadStatus::Lost => t.count("leads_lost", 1),
                _ => {}
            }
        }
        Record::Registration(r) => {
            t.count("registrations", 1);
            if r.status == crate::state::RegistrationStatus::Approved {
                t.count("registrations_approved", 1);
            }
        }
        Record::Order(o) => {
            t.count("orders", 1);
            for i in &o.invoices {
                t.money("invoiced", o.currency.as_str(), i.totals.total);
            }
        }
        Record::Service(s) => {
            t.count("service_requests", 1);
            if let Some(first) = s.first_response_at {
                t.time("first_response_median_ms", first - s.opened_at);
            }
            if let Some(resolved) = s.resolved_at {
                t.count("service_resolved", 1);
                t.time("resolution_median_ms", resolved - s.opened_at);
            }
        }
        Record::Warranty(w) => {
            t.count("warranty_claims", 1);
            if w.decision.as_ref().is_some_and(|d| {
                !matches!(
                    d.decision,
                    crate::messages::WarrantyOutcome::Reject
                        | crate::messages::WarrantyOutcome::NeedInfo
                )
            }) {
                t.count("warranty_approved", 1);
            }
        }
        Record::Announcement(a) => {
            t.count("announcements", 1);
            if let Some(seen) = &a.acknowledged {
                t.count("announcements_acknowledged", 1);
                t.time("acknowledge_median_ms", seen.at - a.posted_at);
            }
        }
        Record::Quiz(q) => {
            t.count("quiz_attempts", 1);
            if q.status() == "passed" {
                t.count("quiz_passed", 1);
            }
        }
        Record::Catalog(_)
        | Record::Mdf(_)
        | Record::Survey(_)
        | Record::Resource(_)
        | Record::Scorecard(_)
        | Record::Goal(_) => return Vec::new(),
    }
    vec![(at, t)]
}

/// Gathers a scorecard from records (any order; each record once).
#[derive(Debug, Clone)]
pub struct Builder {
    vendor: NodeId,
    period: Period,
    tally: Tally,
}

impl Builder {
    /// A scorecard of the records whose authority is `vendor`, in `period`.
    pub fn new(vendor: NodeId, period: Period) -> Builder {
        Builder {
            vendor,
            period,
            tally: Tally::default(),
        }
    }

    /// Counts one record (records of another vendor, or opened outside the
    /// period, count nothing; MDF budgets count their entries in it).
    pub fn add(&mut self, record: &Record) {
        if record.authority() != &self.vendor {
            return;
        }
        for (at, part) in parts(record) {
            if self.period.holds(at) {
                self.tally.apply(&part, 1);
            }
        }
    }

    /// The scorecard.
    pub fn finish(self) -> Scorecard {
        self.tally.finish()
    }
}

/// The first instant of the UTC month `at` falls in.
pub fn month_of(at: Millis) -> Millis {
    let (y, m, _) = ymd(at.div_euclid(DAY));
    month_start(y, m)
}

/// The first instant of the UTC month after the one `at` falls in.
pub fn month_after(at: Millis) -> Millis {
    let (y, m, _) = ymd(at.div_euclid(DAY));
    month_start(y, m + 1)
}

/// One UTC day in milliseconds.
pub const DAY_MS: Millis = DAY;

/// How a goal (SPEC §19) stands at a moment: the figure's value so far,
/// the value the period would end with at the pace so far, and a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub value: Option<i64>,
    pub forecast: Option<i64>,
    /// `not_started`, `achieved` (the target is met), `on_track` (the
    /// forecast meets it), `at_risk` (it does not), `missed` (the period
    /// ended short of it).
    pub state: &'static str,
}

/// The progress of a goal for `figure` with `target` over `period`, from
/// the period's scorecard `card`, at `now`. The pace is counted in whole
/// UTC days (both nodes agree all day long): a count or sum is forecast
/// as its value × the period's days ÷ the days begun; a time (`…_ms`)
/// keeps its value, and meets its target at or under it.
pub fn progress(
    card: &Scorecard,
    figure: &str,
    target: i64,
    period: &Period,
    now: Millis,
) -> Progress {
    let value = card.value(figure);
    let time = figure.ends_with("_ms");
    let meets = |v: Option<i64>| {
        if time {
            v.is_some_and(|v| v <= target)
        } else {
            v.unwrap_or(0) >= target
        }
    };
    if now < period.from {
        return Progress {
            value,
            forecast: None,
            state: "not_started",
        };
    }
    let days = |ms: Millis| (ms + DAY - 1).div_euclid(DAY).max(1);
    let (begun, length) = (
        days(now.min(period.to) + 1 - period.from),
        days(period.to - period.from),
    );
    let forecast = if time || now >= period.to {
        value
    } else {
        value.map(|v| (i128::from(v) * i128::from(length) / i128::from(begun)) as i64)
    };
    let state = if now >= period.to {
        if meets(value) { "achieved" } else { "missed" }
    } else if !time && meets(value) {
        "achieved"
    } else if meets(forecast) {
        "on_track"
    } else {
        "at_risk"
    };
    Progress {
        value,
        forecast,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_and_step_back() {
        let q = Period::parse("2026-Q4").expect("quarter");
        assert_eq!(q.from, 1_790_812_800_000); // 2026-10-01T00:00:00Z
        assert_eq!(q.to, 1_798_761_600_000); // 2027-01-01T00:00:00Z
        assert_eq!(q.previous().name, "2026-Q3");
        assert_eq!(
            Period::parse("2026-01").expect("m").previous().name,
            "2025-12"
        );
        assert_eq!(
            Period::parse("2026-H1").expect("h").previous().name,
            "2025-H2"
        );
        assert_eq!(Period::parse("2026").expect("y").previous().name, "2025");
        let custom = Period::parse("2026-01-01..2026-01-31").expect("custom");
        assert_eq!(custom.to - custom.from, 31 * DAY);
        assert_eq!(custom.previous().to, custom.from);
        assert_eq!(custom.previous().name, "2025-12-01..2025-12-31");
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(20_513), "2026-03-01");
        for bad in [
            "2026-Q5",
            "2026-13",
            "26",
            "2026-02-30..2026-03-01",
            "2026-03-01..2026-02-01",
            "x",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Period::parse("2024-02-29..2024-02-29").is_ok(),
            "a leap day"
        );
    }

    #[test]
    fn a_weighted_score_counts_each_figure_up_to_its_target() {
        let weights = parse_weights(
            "gold leads_won 50 4\ngold first_response_median_ms 25 3600000\ngold won_value:TWD 25 1000000\n* leads_won 1 1",
        )
        .expect("weights");
        let card = Scorecard {
            leads_won: 2,
            first_response_median_ms: Some(7_200_000),
            won_value: BTreeMap::from([("TWD".to_string(), 2_000_000)]),
            ..Default::default()
        };
        // 50 × 2/4 + 25 × 1/2 + 25 × 1 = 62.5 → 62.
        assert_eq!(card.score(&weights, "Gold"), Some(62));
        assert_eq!(card.score(&weights, "silver"), Some(100), "the * weights");
        assert_eq!(card.score(&[], "gold"), None);
        for (bad, says) in [
            ("gold leads_won 0 4", "line 1: the weight"),
            ("gold wins 10 4", "is not a scorecard figure"),
            ("\ngold won_value 10 4", "line 2: a money figure"),
            ("gold leads_won 10", "line 1: write"),
        ] {
            let e = parse_weights(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn medians_are_exact_integers() {
        let set = |v: &[i64]| {
            let mut t = Tally::default();
            for x in v {
                t.time("accept_median_ms", *x);
            }
            t.times.get("accept_median_ms").cloned().unwrap_or_default()
        };
        assert_eq!(median(&set(&[])), None);
        assert_eq!(median(&set(&[5, 1, 3])), Some(3));
        assert_eq!(median(&set(&[4, 1, 3, 2])), Some(2));
        assert_eq!(median(&set(&[7, 7, 1, 9])), Some(7));
        assert_eq!(median(&set(&[1, 4])), Some(2), "rounded down");
    }

    #[test]
    fn a_tally_takes_away_exactly_what_it_added() {
        let mut a = Tally::default();
        a.count("leads_offered", 3);
        a.money("won_value", "TWD", 500);
        a.time("accept_median_ms", 10);
        a.time("accept_median_ms", 30);
        let mut b = Tally::default();
        b.count("leads_offered", 1);
        b.time("accept_median_ms", 10);
        let mut sum = a.clone();
        sum.apply(&b, 1);
        assert_eq!(sum.finish().leads_offered, 4);
        assert_eq!(sum.finish().accept_median_ms, Some(10));
        sum.apply(&b, -1);
        assert_eq!(sum, a, "back to what it was");
        sum.apply(&a, -1);
        assert!(sum.is_empty(), "{sum:?}");
        assert_eq!(a.finish().won_value.get("TWD"), Some(&500));
    }

    #[test]
    fn months_begin_and_end_in_utc() {
        let q = Period::parse("2026-02").expect("month");
        assert_eq!(month_of(q.from + 5 * DAY), q.from);
        assert_eq!(month_after(q.from), q.to);
        assert_eq!(month_after(q.to - 1), q.to);
        assert_eq!(month_of(q.to), q.to);
    }

    #[test]
    fn progress_forecasts_at_the_pace_of_whole_days() {
        let june = Period::parse("2026-06").expect("month");
        let card = Scorecard {
            leads_won: 3,
            first_response_median_ms: Some(5_000),
            ..Default::default()
        };
        // Day 10 begun (9 days and an hour in): 3 × 30 ÷ 10 = 9.
        let now = june.from + 9 * DAY + 3_600_000;
        let p = progress(&card, "leads_won", 10, &june, now);
        assert_eq!(
            (p.value, p.forecast, p.state),
            (Some(3), Some(9), "at_risk")
        );
        let p = progress(&card, "leads_won", 9, &june, now);
        assert_eq!(p.state, "on_track");
        assert_eq!(
            progress(&card, "leads_won", 3, &june, now).state,
            "achieved"
        );
        assert_eq!(
            progress(&card, "leads_won", 4, &june, june.to).state,
            "missed"
        );
        assert_eq!(
            progress(&card, "leads_won", 4, &june, june.from - 1).state,
            "not_started"
        );
        // A time keeps its value and meets a target at or over it.
        let p = progress(&card, "first_response_median_ms", 4_000, &june, now);
        assert_eq!((p.forecast, p.state), (Some(5_000), "at_risk"));
        assert_eq!(
            progress(&card, "first_response_median_ms", 5_000, &june, now).state,
            "on_track"
        );
        assert_eq!(
            progress(
                &Scorecard::default(),
                "first_response_median_ms",
                5_000,
                &june,
                now
            )
            .state,
            "at_risk"
        );
        // Money by its currency.
        let rich = Scorecard {
            won_value: BTreeMap::from([("TWD".to_string(), 500)]),
            ..Default::default()
        };
        assert_eq!(
            progress(&rich, "won_value:TWD", 500, &june, now).state,
            "achieved"
        );
    }
}
