//! The MDF part of the JSON API: budgets (allocate, top up, expire), the
//! messages on them (requests, decisions, claims, claim decisions, payments
//! as `{"kind", "body"}`), reconciliation checkpoints and ROI.

use super::{
    ApiError, MessageBody, PageQuery, authenticate, internal, not_found, page_json, read_json,
    refusal, strict_body as body, with_unconfirmed,
};
use super::{ApiStaff, ApiUser};
use crate::mdf::{self, BudgetView};
use crate::node::Node;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// A budget as the API shows it, serialized straight from the record.
#[derive(Serialize)]
struct BudgetOut<'a> {
    key: &'a str,
    subject: &'a str,
    partner: String,
    budget: &'a guanxi_protocol::state::mdf::MdfBudgetRecord,
    ledger_problems: Vec<String>,
}

fn budget_out(v: &BudgetView) -> BudgetOut<'_> {
    BudgetOut {
        key: &v.key,
        subject: &v.subject,
        partner: v.partner(),
        budget: &v.budget,
        ledger_problems: v.budget.verify(),
    }
}

fn budget_json(v: &BudgetView) -> Value {
    serde_json::to_value(budget_out(v)).unwrap_or(Value::Null)
}

fn find(node: &Node, headers: &HeaderMap, key: &str, subject: &str) -> Result<Value, ApiError> {
    let user = authenticate(node, headers)?;
    let read = node.store.read().map_err(internal)?;
    mdf::budget_view(&read, &user, &node.identity.id, key, subject)
        .map_err(internal)?
        .map(|v| with_unconfirmed(node, key, subject, budget_json(&v)))
        .ok_or_else(not_found)
}

/// `GET /api/v1/mdf?direction=&after=&limit=`: one page of budgets.
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (direction, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (list, next) = mdf::budgets_page(r, &user, &me, direction, after.as_ref(), limit)?;
        let out: Vec<BudgetOut<'_>> = list.iter().map(budget_out).collect();
        page_json("budgets", &out, next.map(|c| c.text()))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    partner: String,
    budget: String,
    body: Value,
}

pub async fn budget(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: BudgetBody = body(&bytes)?;
    let (key, subject) = mdf::budget(&node, b.partner.trim(), b.budget.trim(), b.body)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok((
        StatusCode::CREATED,
        Json(find(&node, &headers, &key, &subject)?),
    )
        .into_response())
}

pub async fn one(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find(&node, &headers, &key, &subject)?))
}

pub async fn act(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MessageBody = body(&bytes)?;
    let message = b.message()?;
    mdf::act(&node, &user, &key, &subject, message)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(find(&node, &headers, &key, &subject)?))
}

pub async fn checkpoint(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Path((key, subject)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    mdf::checkpoint(&node, &key, &subject)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(json!({"sent": true})))
}

/// `GET /api/v1/mdf/roi?after=&limit=`: ROI per activity of one page of
/// the budgets this node granted (`next` continues).
pub async fn roi(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    let page = node
        .reading(move |r| {
            let (budgets, next) = mdf::budgets_page(
                r,
                &user,
                &me,
                crate::records::Direction::Received,
                after.as_ref(),
                limit,
            )?;
            Ok(json!({
                "activities": mdf::roi(r, &me, &budgets)?,
                "next": next.map(|c| c.text()),
            }))
        })
        .await
        .map_err(internal)?;
    Ok(Json(page))
}
