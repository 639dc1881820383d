//! The lead part of the JSON API: leads (create, import CSV, list, one,
//! assign, withdraw), distribution rules, conversion analysis, deal
//! registrations to decide; and for partners the leads offered to them
//! (answered with protocol messages: `{"kind", "body"}`) and their own deal
//! registrations. Refusals carry the protocol's reason code (`expired`,
//! `illegal_transition`, `not_allowed`, ...) and the state machine's message.

use super::{
    ApiError, MessageBody, PageQuery, internal, not_found, page_limit, refusal, strict_body as body,
};
use super::{ApiStaff, ApiUser};
use crate::leads::distribution::Rules;
use crate::leads::{self, Incoming, LeadView, RegistrationView, intake};
use crate::node::Node;
use crate::web::leads::{AnalysisQuery, analysis_params};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use guanxi_adapters::store::StoreError;
use guanxi_protocol::canonical;
use guanxi_protocol::messages::LeadRegister;
use guanxi_protocol::state::Lead;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

fn lead_record_json(l: &Lead) -> Value {
    serde_json::to_value(l).unwrap_or(Value::Null)
}

/// A lead as the API shows it (serialized straight from the stored
/// values: a page of leads builds no intermediate JSON tree).
#[derive(Serialize)]
struct LeadOut<'a> {
    id: &'a str,
    lead: &'a intake::LeadInput,
    status: &'static str,
    hold: Option<&'static str>,
    created: guanxi_protocol::Millis,
    created_by: &'a str,
    offers: Vec<OfferOut<'a>>,
    rounds: &'a [leads::Round],
}

#[derive(Serialize)]
struct OfferOut<'a> {
    partner: &'a str,
    channel: &'static str,
    subject: &'a str,
    offered_at: guanxi_protocol::Millis,
    accept_by: guanxi_protocol::Millis,
    manual: bool,
    by: &'a str,
    record: Option<&'a Lead>,
}

fn lead_out(v: &LeadView) -> LeadOut<'_> {
    LeadOut {
        id: &v.doc.id,
        lead: &v.doc.input,
        status: v.stage(),
        hold: v.doc.hold.map(|h| h.as_str()),
        created: v.doc.created,
        created_by: &v.doc.created_by,
        offers: v
            .offers
            .iter()
            .map(|(o, l)| OfferOut {
                partner: &o.partner,
                channel: if o.key.starts_with("web:") {
                    "web"
                } else {
                    "peer"
                },
                subject: &o.subject,
                offered_at: o.offered_at,
                accept_by: o.accept_by,
                manual: o.manual,
                by: &o.by,
                record: l.as_ref(),
            })
            .collect(),
        rounds: &v.doc.rounds,
    }
}

fn lead_json(v: &LeadView) -> Value {
    serde_json::to_value(lead_out(v)).unwrap_or(Value::Null)
}

fn load_view(node: &Node, id: &str) -> Result<Value, ApiError> {
    let read = node.store.read().map_err(internal)?;
    match leads::load(&read, id).map_err(internal)? {
        Some(doc) => Ok(lead_json(&LeadView::load(&read, doc))),
        None => Err(not_found()),
    }
}

/// `?stage=&after=&limit=`: a page of leads, newest first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Leads, newest first, a page at a time: `{"leads": [...], "next": id}`
/// (`next` is `null` on the last page; pass it as `after` for the next).
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    #[derive(Serialize)]
    struct Page<'a> {
        leads: Vec<LeadOut<'a>>,
        next: Option<String>,
    }
    let bytes = node
        .reading(move |read| {
            let stage = q.stage.as_deref().filter(|s| !s.is_empty());
            let (views, next) = leads::page(read, stage, q.after.as_deref(), limit)?;
            let page = Page {
                leads: views.iter().map(lead_out).collect(),
                next,
            };
            serde_json::to_vec(&page).map_err(|e| StoreError::Db(e.to_string()))
        })
        .await
        .map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// `?stage=` of an export.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    stage: Option<String>,
}

/// `GET /api/v1/leads/export?stage=`: every lead (of a stage) as CSV,
/// newest first, streamed a page at a time: memory stays bounded whatever
/// the number of leads. Each page is read in its own snapshot; leads
/// created while the export runs are not in it.
pub async fn export(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let stage = q.stage.filter(|s| !s.is_empty());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if tx.send(Ok(leads::export::header().into())).await.is_err() {
            return;
        }
        let mut after: Option<String> = None;
        loop {
            let (stage, from) = (stage.clone(), after.clone());
            let page = node
                .reading(move |r| {
                    let (views, next) =
                        leads::page(r, stage.as_deref(), from.as_deref(), leads::export::PAGE)?;
                    Ok((leads::export::rows(&views), next))
                })
                .await;
            match page {
                Ok((bytes, next)) => {
                    // The client went away: stop reading.
                    if tx.send(Ok(bytes.into())).await.is_err() {
                        return;
                    }
                    match next {
                        Some(n) => after = Some(n),
                        None => return,
                    }
                }
                Err(e) => {
                    // The answer ends broken, never silently short.
                    tracing::error!("lead export: {e}");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"leads.csv\"",
            ),
        ],
        super::streamed(rx),
    )
        .into_response())
}

pub async fn create(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: intake::LeadInput = body(&bytes)?;
    if let Some(e) = input.check().into_iter().next() {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("{}: {}", e.field, e.detail),
        );
        err.field = Some(e.field);
        return Err(err);
    }
    let ids = leads::create(&node, vec![input], &user.username)
        .await
        .map_err(internal)?;
    let id = ids.first().cloned().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(load_view(&node, &id)?)).into_response())
}

pub async fn import(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let inputs = match intake::parse_csv(&bytes) {
        Ok(i) => i,
        Err(rows) => {
            let first = rows
                .first()
                .map(|r| format!("row {}: {} {}", r.row, r.field, r.detail))
                .unwrap_or_default();
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "code": "bad_csv",
                    "message": format!("nothing was imported; {} problem(s), first: {first}", rows.len()),
                    "rows": rows.iter().map(|r| json!({"row": r.row, "field": r.field, "message": r.detail})).collect::<Vec<_>>(),
                })),
            )
                .into_response());
        }
    };
    let ids = leads::create(&node, inputs, &user.username)
        .await
        .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response())
}

pub async fn one(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(load_view(&node, &id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    partner: String,
}

pub async fn assign(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AssignBody = body(&bytes)?;
    leads::assign(&node, &id, b.partner.trim(), &user.username)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(load_view(&node, &id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    reason: String,
}

pub async fn withdraw(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: WithdrawBody = body(&bytes)?;
    leads::withdraw(&node, &id, &b.reason, &user.username)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(load_view(&node, &id)?))
}

pub async fn get_rules(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
) -> Result<Json<Value>, ApiError> {
    let rules = node
        .store
        .read()
        .and_then(|r| leads::rules(&r))
        .map_err(internal)?;
    Ok(Json(json!(rules)))
}

pub async fn put_rules(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let rules: Rules = body(&bytes)?;
    if let Some((field, message)) = rules.check().into_iter().next() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("{field}: {message}"),
        ));
    }
    leads::save_rules(&node, rules.clone())
        .await
        .map_err(internal)?;
    Ok(Json(json!(rules)))
}

pub async fn analysis(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Query(q): Query<AnalysisQuery>,
) -> Result<Json<Value>, ApiError> {
    let (group, from, to) = analysis_params(&q).map_err(|(field, message)| {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("{field}: {message}"),
        );
        e.field = Some(field);
        e
    })?;
    let (rows, total) = node
        .reading(move |r| leads::aggregates::query(r, group, from, to))
        .await
        .map_err(internal)?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_amount",
                e.to_string(),
            )
        })?;
    Ok(Json(
        json!({"group": group.as_str(), "from": from, "to": to, "rows": rows, "total": total}),
    ))
}

fn registration_json(
    v: &RegistrationView,
    conflicts: Option<Vec<leads::conflicts::Conflict>>,
) -> Value {
    let mut j = json!({
        "key": v.key, "subject": v.subject, "vendor": v.reg.vendor, "partner": v.reg.partner,
        "status": v.reg.status.as_str(), "deal": v.reg.deal, "registered_at": v.reg.registered_at,
        "decided_at": v.reg.decided_at, "exclusive_until": v.reg.exclusive_until,
        "reason": v.reg.reason, "note": v.reg.note,
    });
    if let Some(c) = conflicts {
        j["conflicts"] = json!(c);
    }
    j
}

fn today() -> String {
    jiff::Timestamp::from_millisecond(crate::clock::now_ms())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `GET /api/v1/registrations?after=&limit=`: registrations this node
/// decides, newest first, each with its conflicts.
pub async fn registrations(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    let today = today();
    let page = node
        .reading(move |read| {
            let (list, next) =
                leads::registrations_page(read, &user, &me, true, after.as_ref(), limit)?;
            let list: Vec<Value> = list
                .iter()
                .map(|v| {
                    let c = leads::registration_conflicts(
                        read, &me, &v.key, &v.subject, &v.reg, &today,
                    )
                    .unwrap_or_default();
                    registration_json(v, Some(c))
                })
                .collect();
            Ok(json!({ "registrations": list, "next": next.map(|c| c.text()) }))
        })
        .await
        .map_err(internal)?;
    Ok(Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    #[serde(deserialize_with = "canonical::required_nullable")]
    exclusive_until: Option<String>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    reason: Option<String>,
    note: String,
}

pub async fn decide(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Path((key, subject)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: DecisionBody = body(&bytes)?;
    let approve = match b.decision.as_str() {
        "approved" => true,
        "rejected" => false,
        other => {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_field",
                format!("decision: {other:?} is not approved or rejected"),
            );
            e.field = Some("decision");
            return Err(e);
        }
    };
    leads::decide_registration(
        &node,
        &key,
        &subject,
        approve,
        b.exclusive_until,
        b.reason,
        b.note,
    )
    .await
    .map_err(internal)?
    .map_err(refusal)?;
    let read = node.store.read().map_err(internal)?;
    let found = leads::registration(&read, &user, &node.identity.id, true, &key, &subject)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(Json(registration_json(&found, None)))
}

fn incoming_json(i: &Incoming) -> Value {
    let mut j = lead_record_json(&i.lead);
    j["subject"] = json!(i.subject);
    j
}

/// `?after=&limit=` of the offers list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffersQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Leads offered to the caller's organization, a page at a time:
/// `{"offers": [...], "next": "<key>/<subject>"}`.
pub async fn offers(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<OffersQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .and_then(|a| a.rsplit_once('/'))
        .map(|(k, s)| (k.to_string(), s.to_string()));
    let store = node.store.clone();
    let me = node.identity.id.clone();
    let page = tokio::task::spawn_blocking(move || {
        let read = store.read()?;
        let (list, next) = leads::incoming_page(&read, &user, &me, after.as_ref(), limit)?;
        let offers: Vec<Value> = list.iter().map(incoming_json).collect();
        let next = next.map(|(k, s)| format!("{k}/{s}"));
        Ok::<_, guanxi_adapters::store::StoreError>(json!({ "offers": offers, "next": next }))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(Json(page))
}

pub async fn answer(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((vendor, subject)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MessageBody = body(&bytes)?;
    let message = b.message()?;
    leads::respond(&node, &user, &vendor, &subject, message)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    let read = node.store.read().map_err(internal)?;
    match leads::incoming_one(&read, &user, &node.identity.id, &vendor, &subject)
        .map_err(internal)?
    {
        Some(i) => Ok(Json(incoming_json(&i))),
        None => Err(not_found()),
    }
}

/// `GET /api/v1/deals?after=&limit=`: registrations the organization
/// filed, newest first.
pub async fn deals(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    let page = node
        .reading(move |read| {
            let (list, next) =
                leads::registrations_page(read, &user, &me, false, after.as_ref(), limit)?;
            let list: Vec<Value> = list.iter().map(|v| registration_json(v, None)).collect();
            Ok(json!({ "deals": list, "next": next.map(|c| c.text()) }))
        })
        .await
        .map_err(internal)?;
    Ok(Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DealBody {
    vendor: String,
    deal: Value,
}

pub async fn register(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: DealBody = body(&bytes)?;
    let deal: LeadRegister = match leads::message("lead.register", b.deal).map_err(refusal)? {
        guanxi_protocol::messages::Message::LeadRegister(d) => d,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                "deal",
            ));
        }
    };
    let subject = leads::register(&node, &user, b.vendor.trim(), deal)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    let key = match (&user.role, &user.partner) {
        (crate::accounts::Role::Partner, Some(org)) => crate::records::web_key(org),
        _ => b.vendor.trim().to_string(),
    };
    let read = node.store.read().map_err(internal)?;
    let found = leads::registration(&read, &user, &node.identity.id, false, &key, &subject)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(registration_json(&found, None))).into_response())
}
