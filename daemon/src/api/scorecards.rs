//! Scorecards in the JSON API (SPEC §18): one partner's scorecard as the
//! web page shows it (staff of the vendor, staff of the partner, or the
//! partner's own users), and the ranking of every partner (staff).

use super::{ApiError, ApiUser, internal, not_found, page_limit, read_json};
use crate::node::Node;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use guanxi_protocol::Millis;
use serde::Deserialize;
use std::sync::Arc;

/// `?period=&compare=&partner=&vendor=` of a scorecard.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorecardQuery {
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub compare: Option<String>,
    #[serde(default)]
    pub partner: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    /// A figure to follow over the twelve months up to the period's end.
    #[serde(default)]
    pub trend: Option<String>,
}

/// The period and the one to compare with (default: the one before).
pub fn periods(
    q: &ScorecardQuery,
    now: Millis,
) -> Result<
    (
        guanxi_protocol::scorecard::Period,
        guanxi_protocol::scorecard::Period,
    ),
    String,
> {
    use guanxi_protocol::scorecard::Period;
    let period = match q.period.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(p) => Period::parse(p).map_err(|e| format!("period: {e}"))?,
        None => {
            let month = jiff::Timestamp::from_millisecond(now)
                .map(|t| t.strftime("%Y-%m").to_string())
                .unwrap_or_else(|_| "1970-01".into());
            Period::parse(&month).map_err(|e| format!("period: {e}"))?
        }
    };
    let compare = match q
        .compare
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(p) => Period::parse(p).map_err(|e| format!("compare: {e}"))?,
        None => period.previous(),
    };
    Ok((period, compare))
}

/// `GET /api/v1/scorecard`: a partner's scorecard for a period and the one
/// it is compared with (staff: `partner=<id>` as its vendor, or
/// `vendor=<peer>` as that vendor's partner; a partner user: its own).
pub async fn scorecard(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<ScorecardQuery>,
) -> Result<Response, ApiError> {
    let (period, compare) = periods(&q, crate::clock::now_ms()).map_err(|e| {
        let field = if e.starts_with("compare") {
            "compare"
        } else {
            "period"
        };
        super::bad_field(field, e)
    })?;
    let trend_figure = q.trend.clone().filter(|t| !t.trim().is_empty());
    if let Some(figure) = &trend_figure {
        guanxi_protocol::scorecard::check_figure(figure)
            .map_err(|e| super::bad_field("trend", e))?;
    }
    let me = node.identity.id.clone();
    let m = me.clone();
    let s = node
        .reading(move |r| {
            crate::scorecards::subject(r, &m, &user, q.partner.as_deref(), q.vendor.as_deref())
        })
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    read_json(&node, move |r| {
        let card = crate::scorecards::compute(r, &s.vendor, &s.keys, &period)?;
        let before = crate::scorecards::compute(r, &s.vendor, &s.keys, &compare)?;
        let mut trend = Vec::new();
        if let Some(figure) = &trend_figure {
            for month in crate::scorecards::twelve_months(&period) {
                let card = crate::scorecards::compute(r, &s.vendor, &s.keys, &month)?;
                trend.push(serde_json::json!({"month": month.name, "value": card.value(figure)}));
            }
        }
        serde_json::to_vec(&serde_json::json!({
            "vendor": s.vendor, "partner": s.partner,
            "period": period, "scorecard": card,
            "compare": compare, "compared": before,
            "trend": trend,
        }))
        .map_err(|e| guanxi_adapters::store::StoreError::Db(e.to_string()))
    })
    .await
}

/// `?period=&compare=&sort=&tier=&offset=&limit=` of the ranking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingQuery {
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub compare: Option<String>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The figure a ranking is ordered by: the one asked for, else the score
/// when weights are set, else leads won.
pub fn sort_of(asked: Option<&str>, weighted: bool) -> Result<String, String> {
    match asked.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => crate::scorecards::check_sort(s).map(|_| s.to_string()),
        None if weighted => Ok("score".into()),
        None => Ok("leads_won".into()),
    }
}

/// `GET /api/v1/scorecards`: the ranking (staff).
pub async fn ranking(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<RankingQuery>,
) -> Result<Response, ApiError> {
    super::staff(&user)?;
    let limit = page_limit(q.limit)?;
    let offset = q.offset.unwrap_or(0);
    let asked = ScorecardQuery {
        period: q.period.clone(),
        compare: q.compare.clone(),
        partner: None,
        vendor: None,
        trend: None,
    };
    let (period, compare) = periods(&asked, crate::clock::now_ms()).map_err(|e| {
        let field = if e.starts_with("compare") {
            "compare"
        } else {
            "period"
        };
        super::bad_field(field, e)
    })?;
    let weighted = !node
        .reading(crate::scorecards::weights)
        .await
        .map_err(internal)?
        .is_empty();
    let sort = sort_of(q.sort.as_deref(), weighted).map_err(|e| super::bad_field("sort", e))?;
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let all = crate::scorecards::ranking(r, &me, &period, &compare, q.tier.as_deref(), &sort)?;
        let rows: Vec<serde_json::Value> = all
            .iter()
            .enumerate()
            .skip(offset)
            .take(limit)
            .map(|(i, x)| {
                serde_json::json!({
                    "rank": i + 1, "partner": x.partner.id, "tier": x.partner.tier,
                    "value": x.value, "value_compared": x.value_before,
                    "score": x.score, "score_compared": x.score_before,
                    "scorecard": x.now, "compared": x.before,
                })
            })
            .collect();
        let next = (offset + limit < all.len()).then(|| (offset + limit).to_string());
        serde_json::to_vec(&serde_json::json!({
            "period": period, "compare": compare, "sort": sort,
            "partners": rows, "total": all.len(), "next": next,
        }))
        .map_err(|e| guanxi_adapters::store::StoreError::Db(e.to_string()))
    })
    .await
}

/// `?partner=&vendor=` of the goals list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalsQuery {
    #[serde(default)]
    pub partner: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
}

fn goal_json(g: &crate::goals::Shown) -> serde_json::Value {
    serde_json::json!({
        "key": g.key, "subject": g.subject, "goal": g.goal, "progress": g.progress,
    })
}

/// `GET /api/v1/goals`: the joint goals of a relationship (as the
/// scorecard: staff name `partner` or `vendor`; a partner user its own),
/// newest first, with their progress now.
pub async fn goals(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<GoalsQuery>,
) -> Result<Response, ApiError> {
    let me = node.identity.id.clone();
    let now = crate::clock::now_ms();
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
            let Some(party) = crate::goals::party_of(r, &me, &user, &s)? else {
                return Ok(None);
            };
            let list = crate::goals::list(r, &me, &s, &party, now, 100)?;
            Ok(Some(list.iter().map(goal_json).collect::<Vec<_>>()))
        })
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(super::json_bytes(
        serde_json::to_vec(&serde_json::json!({ "goals": found })).map_err(internal)?,
    ))
}

/// A proposal as the API takes it: the relationship (`partner` or
/// `vendor`, as for the scorecard) and the terms; the target in the
/// figure's own integer (minor units, milliseconds, per mille).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalProposal {
    #[serde(default)]
    pub partner: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    pub period: String,
    pub metric: String,
    pub target: i64,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /api/v1/goals`: proposes a joint goal; 201 with the goal.
pub async fn propose(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let p: GoalProposal = super::strict_body(&bytes)?;
    let period = guanxi_protocol::scorecard::Period::parse(&p.period)
        .map_err(|e| super::bad_field("period", format!("period: {e}")))?;
    guanxi_protocol::scorecard::check_figure(&p.metric)
        .map_err(|e| super::bad_field("metric", format!("metric: {e}")))?;
    if p.target <= 0 {
        return Err(super::bad_field("target", "target: above 0".into()));
    }
    let me = node.identity.id.clone();
    let u = user.clone();
    let (partner, vendor) = (p.partner.clone(), p.vendor.clone());
    let (s, party) = node
        .reading(move |r| {
            let Some(s) =
                crate::scorecards::subject(r, &me, &u, partner.as_deref(), vendor.as_deref())?
            else {
                return Ok(None);
            };
            Ok(crate::goals::party_of(r, &me, &u, &s)?.map(|party| (s, party)))
        })
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let body = guanxi_protocol::messages::GoalPropose {
        vendor: s.vendor.clone(),
        period,
        metric: p.metric,
        target: p.target,
        owner: p.owner,
        note: p.note,
    };
    let subject = crate::goals::propose(&node, &party, body)
        .await
        .map_err(internal)?
        .map_err(super::refusal)?;
    let shown = one(&node, user, party.key, subject).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(shown)).into_response())
}

async fn one(
    node: &Node,
    user: crate::accounts::User,
    key: String,
    subject: String,
) -> Result<serde_json::Value, ApiError> {
    let me = node.identity.id.clone();
    let now = crate::clock::now_ms();
    node.reading(move |r| crate::goals::one(r, &me, &user, &key, &subject, now))
        .await
        .map_err(internal)?
        .map(|(g, _)| goal_json(&g))
        .ok_or_else(not_found)
}

/// `GET /api/v1/goals/{key}/{subject}`: one goal with its progress.
pub async fn goal(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    axum::extract::Path((key, subject)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(one(&node, user, key, subject).await?))
}

/// `POST /api/v1/goals/{key}/{subject}/messages`: `goal.accept`,
/// `goal.counter` or `goal.decline` as the reader's side.
pub async fn answer(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    axum::extract::Path((key, subject)): axum::extract::Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let b: super::MessageBody = super::strict_body(&bytes)?;
    let message = b.message()?;
    if !matches!(
        message,
        guanxi_protocol::Message::GoalAccept(_)
            | guanxi_protocol::Message::GoalCounter(_)
            | guanxi_protocol::Message::GoalDecline(_)
    ) {
        return Err(super::bad_field(
            "kind",
            "kind: goal.accept, goal.counter or goal.decline".into(),
        ));
    }
    let me = node.identity.id.clone();
    let party = crate::goals::party_at(&me, &user, &key).ok_or_else(not_found)?;
    // The goal must be there and the reader's to see.
    one(&node, user.clone(), key.clone(), subject.clone()).await?;
    crate::goals::act(&node, &party, &subject, message)
        .await
        .map_err(internal)?
        .map_err(super::refusal)?;
    Ok(axum::Json(one(&node, user, key, subject).await?))
}
