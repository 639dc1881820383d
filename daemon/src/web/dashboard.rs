//! The home page's dashboard, one per role, from kept counts and bounded
//! index reads (never every record):
//!
//! - the company's staff (as the vendor): open leads by stage, revenue
//!   invoiced by month, service requests past their deadline, marketing
//!   funds used of allocated;
//! - a partner's users: offers waiting for their answer with deadlines,
//!   orders in flight, open warranty claims, marketing funds available.

use super::chart::{self, Chart};
use super::format::Locale;
use crate::record_index::{self as index, Side};
use guanxi_adapters::store::{Read, StoreError};
use guanxi_protocol::money::Currency;
use guanxi_protocol::state::Record;
use guanxi_protocol::state::mdf::Account;

/// Rows a list on the dashboard shows.
const SHOWN: usize = 5;

/// Stages in the order a lead moves through them.
const STAGES: [&str; 11] = [
    "unassigned",
    "offered",
    "accepted",
    "contacted",
    "qualified",
    "won",
    "lost",
    "declined",
    "expired",
    "withdrawn",
    "unknown",
];

/// One line of a dashboard list: what, where, and a detail (a deadline,
/// a status, an amount).
pub struct Line {
    pub label: String,
    pub link: String,
    pub detail: String,
}

/// A list on the dashboard, and whether more than it shows wait.
pub struct List {
    pub title: String,
    pub lines: Vec<Line>,
    pub more: bool,
    /// The page listing all of them.
    pub all: &'static str,
}

/// What the home page shows above the inbox.
#[derive(Default)]
pub struct Dashboard {
    pub charts: Vec<Chart>,
    pub lists: Vec<List>,
}

/// The vendor's dashboard.
pub fn vendor(read: &Read, loc: &Locale) -> Result<Dashboard, StoreError> {
    let t = loc.t();
    let mut charts = Vec::new();

    let counts = crate::leads::index::stage_counts(read)?;
    let stages = STAGES
        .iter()
        .filter_map(|s| counts.iter().find(|(c, _)| c == s))
        .map(|(s, n)| {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            (t.get(format!("status.{s}")), n, loc.number(n))
        })
        .collect();
    charts.push(chart::bars(t.get("dash.leads_by_stage"), stages));

    // Six months up to this one; the currency with the most revenue is
    // drawn, the others are named below it.
    let now = jiff::Timestamp::from_millisecond(crate::clock::now_ms())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(loc.tz.clone())
        .date();
    let months: Vec<String> = (0..6)
        .rev()
        .filter_map(|back| now.checked_sub(jiff::Span::new().months(back)).ok())
        .map(|d| d.strftime("%Y-%m").to_string())
        .collect();
    let first = months.first().cloned().unwrap_or_default();
    let revenue = crate::orders::revenue::by_month(read, &first, months.len())?;
    let mut totals: Vec<(String, i64)> = Vec::new();
    for per in revenue.values() {
        for (c, v) in per {
            match totals.iter_mut().find(|(k, _)| k == c) {
                Some((_, sum)) => *sum = sum.saturating_add(*v),
                None => totals.push((c.clone(), *v)),
            }
        }
    }
    totals.sort_by_key(|t| std::cmp::Reverse(t.1));
    let drawn = totals.first().map(|(c, _)| c.clone());
    let currency: Option<Currency> = drawn.as_deref().and_then(|c| c.parse().ok());
    let rows = match &currency {
        Some(c) => months
            .iter()
            .map(|m| {
                let v = revenue
                    .get(m)
                    .and_then(|per| per.get(c.as_str()))
                    .copied()
                    .unwrap_or(0);
                (m.clone(), v, loc.amount(v, c))
            })
            .collect(),
        None => Vec::new(),
    };
    let mut title = t.get("dash.revenue_by_month");
    for (c, v) in totals.iter().skip(1) {
        if let Ok(cur) = c.parse::<Currency>() {
            title.push_str(&format!(" · {}", loc.amount(*v, &cur)));
        }
    }
    charts.push(chart::bars(title, rows));

    let funds = crate::mdf::funds(read)?
        .into_iter()
        .filter_map(|(c, allocated, used)| {
            let cur: Currency = c.parse().ok()?;
            Some([
                (
                    t.fill("dash.allocated", &[("currency", &c)]),
                    allocated,
                    loc.amount(allocated, &cur),
                ),
                (
                    t.fill("dash.used", &[("currency", &c)]),
                    used,
                    loc.amount(used, &cur),
                ),
            ])
        })
        .flatten()
        .collect();
    charts.push(chart::bars(t.get("dash.mdf_used"), funds));

    let targets = crate::service::targets(read).unwrap_or_default();
    let (late, more) =
        crate::service::overdue::late(read, &targets, crate::clock::now_ms(), SHOWN)?;
    let lines = index::load(read, late)
        .into_iter()
        .map(|(key, subject, record)| Line {
            label: crate::notify::label_of(&record),
            link: format!("/service/{key}/{subject}"),
            detail: t.get("dash.late"),
        })
        .collect();
    Ok(Dashboard {
        charts,
        lists: vec![List {
            title: t.get("dash.sla_breaches"),
            lines,
            more,
            all: "/service",
        }],
    })
}

/// A partner user's dashboard: the records kept under `key`
/// (`web:<partner>`).
pub fn partner(read: &Read, loc: &Locale, key: &str) -> Result<Dashboard, StoreError> {
    let t = loc.t();
    let mut lists = Vec::new();
    let mut list = |title: &str,
                    family: &str,
                    statuses: &[&str],
                    all: &'static str,
                    line: &dyn Fn(&str, &str, &Record) -> Line|
     -> Result<(), StoreError> {
        let mut places = Vec::new();
        let mut more = false;
        for status in statuses {
            let (found, m) = index::find(read, family, Side::Own, status, Some(key), None, SHOWN)?;
            places.extend(found);
            more |= m;
        }
        more |= places.len() > SHOWN;
        places.truncate(SHOWN);
        let lines = index::load(read, places)
            .iter()
            .map(|(k, s, r)| line(k, s, r))
            .collect();
        lists.push(List {
            title: t.get(title),
            lines,
            more,
            all,
        });
        Ok(())
    };
    list(
        "dash.offers_waiting",
        "lead",
        &["offered"],
        "/offers",
        &|_, s, r| {
            let (label, deadline) = match r {
                Record::Lead(l) => (
                    l.offer.customer.company.clone(),
                    loc.when(l.offer.accept_by),
                ),
                _ => (String::new(), String::new()),
            };
            let vendor = key_vendor(r);
            Line {
                label,
                link: format!("/offers/{vendor}/{s}"),
                detail: t.fill("dash.answer_by", &[("when", &deadline)]),
            }
        },
    )?;
    list(
        "dash.orders_in_flight",
        "order",
        &["placed", "acknowledged", "partially_shipped"],
        "/orders",
        &|k, s, r| Line {
            label: crate::notify::label_of(r),
            link: format!("/orders/{k}/{s}"),
            detail: t.get(format!("status.{}", r.status())),
        },
    )?;
    list(
        "dash.open_claims",
        "warranty",
        &["submitted", "need_info"],
        "/claims",
        &|k, s, r| Line {
            label: crate::notify::label_of(r),
            link: format!("/claims/{k}/{s}"),
            detail: t.get(format!("cstatus.{}", r.status())),
        },
    )?;
    let (budgets, more) = index::newest(
        read,
        "mdf",
        &index::Scope::Key(key.to_string()),
        None,
        SHOWN,
    )?;
    let lines = index::load(read, budgets)
        .into_iter()
        .filter_map(|(k, s, r)| match r {
            Record::Mdf(b) => Some(Line {
                label: b.period.clone(),
                link: format!("/mdf/{k}/{s}"),
                detail: t.fill(
                    "dash.available",
                    &[(
                        "amount",
                        &loc.amount(b.balance(Account::Available), &b.currency),
                    )],
                ),
            }),
            _ => None,
        })
        .collect();
    lists.push(List {
        title: t.get("dash.mdf_available"),
        lines,
        more: more.is_some(),
        all: "/mdf",
    });
    Ok(Dashboard {
        charts: Vec::new(),
        lists,
    })
}

fn key_vendor(r: &Record) -> String {
    match r {
        Record::Lead(l) => l.vendor.to_string(),
        _ => String::new(),
    }
}
