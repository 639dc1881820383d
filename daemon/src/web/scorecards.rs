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
    Query(q): Query<crate::api::library::ScorecardQuery>,
    m: Member,
) -> Page {
    let (period, compare) = match crate::api::library::periods(&q, crate::clock::now_ms()) {
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
            let a = crate::scorecards::compute(r, &me, &s.vendor, &s.keys, &pp)?;
            let b = crate::scorecards::compute(r, &me, &s.vendor, &s.keys, &cc)?;
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
    Query(q): Query<crate::api::library::ScorecardQuery>,
    m: Member,
) -> Page {
    let me = node.identity.id.clone();
    let vendors: Vec<String> = if m.staff() {
        node.enabled_peers()
    } else {
        Vec::new()
    };
    let (period, compare) = match crate::api::library::periods(&q, crate::clock::now_ms()) {
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
            };
            return Ok(m.page(StatusCode::UNPROCESSABLE_ENTITY, page.render()));
        }
    };
    let chosen = m.user.partner.is_some() || q.partner.is_some() || q.vendor.is_some();
    let (user, p, v) = (m.user.clone(), q.partner.clone(), q.vendor.clone());
    let (pp, cc) = (period.clone(), compare.clone());
    let found = if chosen {
        node.reading(move |r| {
            let Some(s) = crate::scorecards::subject(r, &me, &user, p.as_deref(), v.as_deref())?
            else {
                return Ok(None);
            };
            let a = crate::scorecards::compute(r, &me, &s.vendor, &s.keys, &pp)?;
            let b = crate::scorecards::compute(r, &me, &s.vendor, &s.keys, &cc)?;
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
            Ok(Some((s, a, b, shared, peer, score)))
        })
        .await?
    } else {
        None
    };
    if chosen && found.is_none() {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    }
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
        can_share: m.staff() && found.as_ref().is_some_and(|(.., peer, _)| peer.is_some()),
        shared,
        score: found.as_ref().and_then(|(.., score)| score.clone()),
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
