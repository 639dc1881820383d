//! The scorecard page: a partner's figures with a vendor for a period
//! beside the period it is compared with (staff: any partner of this node,
//! or this node's own with a vendor; a partner user: its own), computed
//! from the shared records (`crate::scorecards`, SPEC §18).

use super::Frame;
use super::access::{Member, Page};
use super::format::Locale;
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use guanxi_protocol::money::Currency;
use guanxi_protocol::scorecard::Scorecard;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The scorecard routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/scorecard", get(page))
        .route("/scorecard/share", axum::routing::post(share))
        .route("/scorecard/weights", get(weights_form).post(save_weights))
        .route("/scorecard.csv", get(csv_export))
        .route("/scorecard/ranking", get(ranking))
}

/// One figure in both periods.
pub struct Line {
    pub key: String,
    pub now: String,
    pub before: String,
}

fn money(loc: &Locale, map: &BTreeMap<String, i64>) -> String {
    if map.is_empty() {
        return "–".into();
    }
    map.iter()
        .map(|(c, v)| match c.parse::<Currency>() {
            Ok(currency) => loc.amount(*v, &currency),
            Err(_) => format!("{v} {c}"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A figure's value for a spreadsheet: the number, a money sum per
/// currency as `TWD 1200000` (several joined by `; `), empty when none.
fn cell(card: &Scorecard, figure: &str) -> String {
    let Ok(v) = serde_json::to_value(card) else {
        return String::new();
    };
    match v.get(figure) {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join("; "),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `GET /scorecard.csv`: the scorecard table (figure, the period, the
/// period compared with) as CSV, the figures by their SPEC §18 names.
async fn csv_export(
    State(node): State<Arc<Node>>,
    Query(q): Query<crate::api::scorecards::ScorecardQuery>,
    m: Member,
) -> Page {
    let (period, compare) = match crate::api::scorecards::periods(&q, crate::clock::now_ms()) {
        Ok(p) => p,
        Err(_) => return Err(m.error(StatusCode::UNPROCESSABLE_ENTITY, "error.not_found")),
    };
    let me = node.identity.id.clone();
    let user = m.user.clone();
    let (pp, cc) = (period.clone(), compare.clone());
    let found = node
        .reading(move |r| {
            let Some(s) = crate::scorecards::subject(
                r,
                &me,
                &user,
                q.partner.as_deref(),
                q.vendor.as_deref(),
            )?
            else {
                return Ok(None);
            };
            let a = crate::scorecards::compute(r, &s.vendor, &s.keys, &pp)?;
            let b = crate::scorecards::compute(r, &s.vendor, &s.keys, &cc)?;
            Ok(Some((s.partner, a, b)))
        })
        .await?;
    let (partner, a, b) = m.found(found)?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let rows = std::iter::once([
        "figure".to_string(),
        period.name.clone(),
        compare.name.clone(),
    ])
    .chain(
        guanxi_protocol::scorecard::FIGURES
            .iter()
            .map(|f| [f.to_string(), cell(&a, f), cell(&b, f)]),
    );
    for row in rows {
        if let Err(e) = out.write_record(&row) {
            tracing::error!("scorecard csv: {e}");
            return Err(m.error(StatusCode::INTERNAL_SERVER_ERROR, "error.not_found"));
        }
    }
    let bytes = out.into_inner().unwrap_or_default();
    let name = format!("scorecard-{partner}-{}.csv", period.name.replace("..", "_"));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// A figure that differs: its label's catalog key, the vendor's value and
/// ours (JSON text).
type Difference = (String, String, String);

/// A figure's value for people: a count grouped, a time in words, a rate
/// as a percentage, money per currency; "–" when there is none.
fn shown(loc: &Locale, figure: &str, value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::Object(map)) => {
            let sums: BTreeMap<String, i64> = map
                .iter()
                .filter_map(|(c, v)| Some((c.clone(), v.as_i64()?)))
                .collect();
            money(loc, &sums)
        }
        Some(v) => match v.as_i64() {
            Some(n) if figure.ends_with("_ms") => loc.duration(n),
            Some(n) if figure.ends_with("_permille") => loc.permille(n),
            Some(n) => loc.number(n),
            None => "–".into(),
        },
        None => "–".into(),
    }
}

/// A value of `figure` (`score`, a figure, or money as `won_value:TWD`)
/// for people.
pub fn value_text(loc: &Locale, figure: &str, v: Option<i64>) -> String {
    match figure.split_once(':') {
        Some((_, currency)) => match (v, currency.parse::<Currency>()) {
            (Some(n), Ok(c)) => loc.amount(n, &c),
            _ => "–".into(),
        },
        None => shown(loc, figure, v.map(serde_json::Value::from).as_ref()),
    }
}

/// The figures in the order people read them (SPEC §18), labelled
/// `score.<figure>`.
fn lines(loc: &Locale, a: &Scorecard, b: &Scorecard) -> Vec<Line> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    guanxi_protocol::scorecard::FIGURES
        .iter()
        .map(|f| Line {
            key: format!("score.{f}"),
            now: shown(loc, f, va.get(f)),
            before: shown(loc, f, vb.get(f)),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "scorecard.html")]
struct ScorecardPage {
    f: Frame,
    /// Who and with whom, once chosen.
    partner: String,
    vendor: String,
    period: String,
    compare: String,
    lines: Vec<Line>,
    /// Staff: the vendors this node is a partner of (peer ids).
    vendors: Vec<String>,
    error: String,
    /// Staff as the vendor of a partner with a daemon: it can be sent.
    can_share: bool,
    /// The vendor's shared figures for this period, compared with ours:
    /// (when shared, `None` when they agree or the differing figure's
    /// catalog key with the vendor's and our value).
    shared: Option<(String, Option<Difference>)>,
    /// As the vendor: the weighted score of each period (0–100) and the
    /// recommendation for the partner's tier.
    score: Option<(String, String, &'static str)>,
    /// The same table as CSV.
    csv: String,
    /// The figure followed month by month, the choices, and its line.
    trend_figure: String,
    trends: Vec<(String, String)>,
    trend: Option<super::chart::Trend>,
    /// The relationship's joint goals, and whether the reader may propose.
    goals: Vec<super::goals::GoalRow>,
    can_propose: bool,
    /// Staff: the relationship a proposal is for (`partner` or `vendor`
    /// and its id).
    propose_with: Option<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "score_weights.html")]
struct WeightsPage {
    f: Frame,
    text: String,
}

async fn weights_form(State(node): State<Arc<Node>>, s: super::access::Staff) -> Page {
    let list = node.reading(crate::scorecards::weights).await?;
    let text = list
        .iter()
        .map(|w| format!("{} {} {} {}", w.tier, w.figure, w.weight, w.target))
        .collect::<Vec<_>>()
        .join("\n");
    let page = WeightsPage { f: s.frame(), text };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn save_weights(
    State(node): State<Arc<Node>>,
    s: super::access::Staff,
    axum::extract::Form(f): axum::extract::Form<super::form::Fields>,
) -> Page {
    use super::form::field;
    s.csrf(field(&f, "csrf"))?;
    let back = "/scorecard/weights".to_string();
    match guanxi_protocol::scorecard::parse_weights(field(&f, "weights")) {
        Ok(list) => {
            crate::scorecards::set_weights(&node, list).await?;
            Ok(super::redirect_with_flash(&back, "done.weights_saved"))
        }
        Err(e) => Ok(s.refused(
            &guanxi_protocol::state::StateError {
                code: guanxi_protocol::ReasonCode::BadBody,
                message: format!("weights: {e}"),
            },
            back,
        )),
    }
}

async fn share(
    State(node): State<Arc<Node>>,
    s: super::access::Staff,
    axum::extract::Form(f): axum::extract::Form<super::form::Fields>,
) -> Page {
    use super::form::field;
    s.csrf(field(&f, "csrf"))?;
    let partner = field(&f, "partner").to_string();
    let back = format!(
        "/scorecard?partner={partner}&period={}",
        field(&f, "period")
    );
    let period = match guanxi_protocol::scorecard::Period::parse(field(&f, "period")) {
        Ok(p) => p,
        Err(e) => {
            return Ok(s.refused(
                &guanxi_protocol::state::StateError {
                    code: guanxi_protocol::ReasonCode::BadBody,
                    message: format!("period: {e}"),
                },
                back,
            ));
        }
    };
    let result = crate::scorecards::share(&node, &partner, period).await;
    s.outcome(result, back, "done.scorecard_shared")
}

async fn page(
    State(node): State<Arc<Node>>,
    Query(q): Query<crate::api::scorecards::ScorecardQuery>,
    m: Member,
) -> Page {
    let me = node.identity.id.clone();
    let vendors: Vec<String> = if m.staff() {
        node.enabled_peers()
    } else {
        Vec::new()
    };
    let (period, compare) = match crate::api::scorecards::periods(&q, crate::clock::now_ms()) {
        Ok(p) => p,
        Err(e) => {
            let page = ScorecardPage {
                f: m.frame(),
                partner: q.partner.clone().unwrap_or_default(),
                vendor: q.vendor.clone().unwrap_or_default(),
                period: q.period.clone().unwrap_or_default(),
                compare: q.compare.clone().unwrap_or_default(),
                lines: Vec::new(),
                vendors,
                error: e,
                can_share: false,
                shared: None,
                score: None,
                csv: String::new(),
                trend_figure: String::new(),
                trends: Vec::new(),
                trend: None,
                goals: Vec::new(),
                can_propose: false,
                propose_with: None,
            };
            return Ok(m.page(StatusCode::UNPROCESSABLE_ENTITY, page.render()));
        }
    };
    let chosen = m.user.partner.is_some() || q.partner.is_some() || q.vendor.is_some();
    // The figure to follow: the one asked for when it is one, else leads won.
    let trend_figure = q
        .trend
        .clone()
        .filter(|t| guanxi_protocol::scorecard::check_figure(t).is_ok())
        .unwrap_or_else(|| "leads_won".into());
    let tf = trend_figure.clone();
    let (user, p, v) = (m.user.clone(), q.partner.clone(), q.vendor.clone());
    let (pp, cc) = (period.clone(), compare.clone());
    let found = if chosen {
        node.reading(move |r| {
            let Some(s) = crate::scorecards::subject(r, &me, &user, p.as_deref(), v.as_deref())?
            else {
                return Ok(None);
            };
            let a = crate::scorecards::compute(r, &s.vendor, &s.keys, &pp)?;
            let b = crate::scorecards::compute(r, &s.vendor, &s.keys, &cc)?;
            let shared = if s.vendor != me {
                crate::scorecards::received(r, &s.vendor, &pp)?
            } else {
                None
            };
            let partner = if s.vendor == me {
                crate::directory::load(r, &s.partner)?
            } else {
                None
            };
            let score = match &partner {
                Some(p) => {
                    let weights = crate::scorecards::weights(r)?;
                    let mut orgs = vec![p.id.as_str()];
                    orgs.extend(p.peer.as_deref());
                    let (progress, _) =
                        crate::courses::standing(r, &p.tier, &orgs, crate::clock::now_ms())?;
                    let met = progress
                        .iter()
                        .all(|x| x.holders.len() >= x.requirement.people as usize);
                    match (a.score(&weights, &p.tier), b.score(&weights, &p.tier)) {
                        (Some(now), before) => Some((
                            now.to_string(),
                            before.map(|x| x.to_string()).unwrap_or_default(),
                            crate::scorecards::recommendation(now, met),
                        )),
                        _ => None,
                    }
                }
                None => None,
            };
            let peer = partner.and_then(|p| p.peer);
            let mut months = Vec::new();
            for month in crate::scorecards::twelve_months(&pp) {
                let card = crate::scorecards::compute(r, &s.vendor, &s.keys, &month)?;
                months.push((month.name, card.value(&tf)));
            }
            // The relationship's joint goals, with their progress now.
            let goals = match crate::goals::party_of(r, &me, &user, &s)? {
                Some(party) => {
                    let list = crate::goals::list(r, &me, &s, &party, crate::clock::now_ms(), 20)?;
                    Some((party, list))
                }
                None => None,
            };
            Ok(Some(((s, a, b, shared, peer, score, months), goals)))
        })
        .await?
    } else {
        None
    };
    if chosen && found.is_none() {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    }
    let (found, goals) = match found {
        Some((found, goals)) => (Some(found), goals),
        None => (None, None),
    };
    let shared = found.as_ref().and_then(|(_, ours, _, shared, ..)| {
        shared.as_ref().map(|r| {
            let diff = r
                .share
                .figures
                .first_difference(ours)
                .map(|(name, theirs, ours)| (format!("score.{name}"), theirs, ours));
            (m.loc().when(r.shared_at), diff)
        })
    });
    let page = ScorecardPage {
        f: m.frame(),
        partner: found
            .as_ref()
            .map(|(s, ..)| s.partner.clone())
            .unwrap_or_default(),
        vendor: found
            .as_ref()
            .map(|(s, ..)| s.vendor.to_string())
            .unwrap_or_default(),
        period: period.name.clone(),
        compare: compare.name.clone(),
        lines: found
            .as_ref()
            .map(|(_, a, b, ..)| lines(m.loc(), a, b))
            .unwrap_or_default(),
        vendors,
        error: String::new(),
        can_share: m.staff()
            && found
                .as_ref()
                .is_some_and(|(.., peer, _, _)| peer.is_some()),
        shared,
        score: found.as_ref().and_then(|(.., score, _)| score.clone()),
        trends: {
            let cards: Vec<&Scorecard> = found.iter().map(|(_, a, ..)| a).collect();
            sort_choices(&cards).into_iter().skip(1).collect()
        },
        trend: found.as_ref().map(|(.., months)| {
            let loc = m.loc();
            let title = loc.t().get(format!(
                "score.{}",
                trend_figure.split(':').next().unwrap_or("")
            ));
            super::chart::trend(
                title,
                months
                    .iter()
                    .map(|(name, v)| {
                        (
                            name.clone(),
                            v.unwrap_or(0),
                            value_text(loc, &trend_figure, *v),
                        )
                    })
                    .collect(),
            )
        }),
        trend_figure: trend_figure.clone(),
        can_propose: goals.is_some(),
        propose_with: match &found {
            Some((s, ..)) if m.staff() && s.vendor == node.identity.id => {
                Some(("partner", s.partner.clone()))
            }
            Some((s, ..)) if m.staff() => Some(("vendor", s.vendor.to_string())),
            _ => None,
        },
        goals: goals
            .iter()
            .flat_map(|(_, list)| list.iter().map(|g| super::goals::GoalRow::of(m.loc(), g)))
            .collect(),
        csv: {
            let mut url = url::form_urlencoded::Serializer::new(String::new());
            if let Some(p) = &q.partner {
                url.append_pair("partner", p);
            }
            if let Some(v) = &q.vendor {
                url.append_pair("vendor", v);
            }
            url.append_pair("period", &period.name);
            url.append_pair("compare", &compare.name);
            format!("/scorecard.csv?{}", url.finish())
        },
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// A partner's row in the ranking page.
pub struct RankRow {
    pub rank: usize,
    pub id: String,
    pub tier: String,
    pub now: String,
    pub before: String,
    pub score: String,
    pub advice: &'static str,
    pub link: String,
}

#[derive(Template)]
#[template(path = "score_ranking.html")]
struct RankingPage {
    f: Frame,
    period: String,
    compare: String,
    sort: String,
    tier: String,
    /// The figures a ranking may follow: (value, catalog key).
    sorts: Vec<(String, String)>,
    rows: Vec<RankRow>,
    total: usize,
    chart: Option<super::chart::Chart>,
    error: String,
    previous: Option<String>,
    next: Option<String>,
}

/// Rows per ranking page.
const RANK_PAGE: usize = 50;

/// The choices of what to rank by: the score, then every figure (money
/// figures in the currencies `cards` use).
fn sort_choices(cards: &[&Scorecard]) -> Vec<(String, String)> {
    let mut out = vec![("score".to_string(), "score.score".to_string())];
    for f in guanxi_protocol::scorecard::FIGURES {
        let label = format!("score.{f}");
        let currencies: std::collections::BTreeSet<String> = cards
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|v| v.get(f).and_then(|m| m.as_object().cloned()))
            .flat_map(|m| m.keys().cloned().collect::<Vec<_>>())
            .collect();
        if guanxi_protocol::scorecard::check_figure(f).is_ok() {
            out.push((f.to_string(), label));
        } else {
            out.extend(
                currencies
                    .into_iter()
                    .map(|c| (format!("{f}:{c}"), label.clone())),
            );
        }
    }
    out
}

/// `GET /scorecard/ranking`: every partner ranked by the score or a
/// figure for a period, with the period compared, the suggestion for its
/// tier, and a chart of the first ten.
async fn ranking(
    State(node): State<Arc<Node>>,
    Query(q): Query<crate::api::scorecards::RankingQuery>,
    s: super::access::Staff,
) -> Page {
    let mut page = RankingPage {
        f: s.frame(),
        period: q.period.clone().unwrap_or_default(),
        compare: q.compare.clone().unwrap_or_default(),
        sort: q.sort.clone().unwrap_or_default(),
        tier: q.tier.clone().unwrap_or_default(),
        sorts: sort_choices(&[]),
        rows: Vec::new(),
        total: 0,
        chart: None,
        error: String::new(),
        previous: None,
        next: None,
    };
    let asked = crate::api::scorecards::ScorecardQuery {
        period: q.period.clone(),
        compare: q.compare.clone(),
        partner: None,
        vendor: None,
        trend: None,
    };
    let weighted = !node.reading(crate::scorecards::weights).await?.is_empty();
    let chosen = crate::api::scorecards::periods(&asked, crate::clock::now_ms()).and_then(|p| {
        crate::api::scorecards::sort_of(q.sort.as_deref(), weighted).map(|sort| (p, sort))
    });
    let ((period, compare), sort) = match chosen {
        Ok(c) => c,
        Err(e) => {
            page.error = e;
            return Ok(s.page(StatusCode::UNPROCESSABLE_ENTITY, page.render()));
        }
    };
    let offset = q.offset.unwrap_or(0);
    let me = node.identity.id.clone();
    let (pp, cc, ss, tier) = (
        period.clone(),
        compare.clone(),
        sort.clone(),
        q.tier.clone(),
    );
    let now = crate::clock::now_ms();
    let (all, visible) = node
        .reading(move |r| {
            let all = crate::scorecards::ranking(r, &me, &pp, &cc, tier.as_deref(), &ss)?;
            // The suggestion needs each shown partner's training standing.
            let mut visible = Vec::new();
            for (i, x) in all.iter().enumerate().skip(offset).take(RANK_PAGE) {
                let mut orgs = vec![x.partner.id.as_str()];
                orgs.extend(x.partner.peer.as_deref());
                let (progress, _) = crate::courses::standing(r, &x.partner.tier, &orgs, now)?;
                let met = progress
                    .iter()
                    .all(|p| p.holders.len() >= p.requirement.people as usize);
                visible.push((i, met));
            }
            Ok((all, visible))
        })
        .await?;
    let loc = s.loc();
    let show = |v: Option<i64>| value_text(loc, &sort, v);
    page.rows = visible
        .iter()
        .map(|(i, met)| {
            let x = &all[*i];
            let mut link = url::form_urlencoded::Serializer::new(String::new());
            link.append_pair("partner", &x.partner.id);
            link.append_pair("period", &period.name);
            link.append_pair("compare", &compare.name);
            RankRow {
                rank: i + 1,
                id: x.partner.id.clone(),
                tier: x.partner.tier.clone(),
                now: show(x.value),
                before: show(x.value_before),
                score: match (x.score, x.score_before) {
                    (Some(a), Some(b)) => format!("{a} ({b})"),
                    (Some(a), None) => a.to_string(),
                    _ => "–".into(),
                },
                advice: x
                    .score
                    .map(|sc| crate::scorecards::recommendation(sc, *met))
                    .unwrap_or(""),
                link: format!("/scorecard?{}", link.finish()),
            }
        })
        .collect();
    page.chart = Some(super::chart::bars(
        loc.t()
            .get(format!("score.{}", sort.split(':').next().unwrap_or(""))),
        all.iter()
            .take(10)
            .map(|x| (x.partner.id.clone(), x.value.unwrap_or(0), show(x.value)))
            .collect(),
    ));
    let cards: Vec<&Scorecard> = all.iter().map(|x| &x.now).collect();
    page.sorts = sort_choices(&cards);
    page.total = all.len();
    let at = |offset: usize| {
        let mut u = url::form_urlencoded::Serializer::new(String::new());
        u.append_pair("period", &period.name);
        u.append_pair("compare", &compare.name);
        u.append_pair("sort", &sort);
        if let Some(t) = &q.tier {
            u.append_pair("tier", t);
        }
        u.append_pair("offset", &offset.to_string());
        format!("/scorecard/ranking?{}", u.finish())
    };
    page.previous = (offset > 0).then(|| at(offset.saturating_sub(RANK_PAGE)));
    page.next = (offset + RANK_PAGE < all.len()).then(|| at(offset + RANK_PAGE));
    page.period = period.name;
    page.compare = compare.name;
    page.sort = sort;
    Ok(s.page(StatusCode::OK, page.render()))
}
