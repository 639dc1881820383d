//! The service part of the JSON API: service requests (with their service
//! level clocks, most urgent first), targets and metrics; warranty claims
//! (with the vendor's view of validity), forwarding up the chain, and serial
//! registrations. Actions are protocol messages `{"kind", "body"}`.

use super::{
    ApiError, MessageBody, PageQuery, authenticate, internal, not_found, page_json, page_limit,
    read_json, refusal, strict_body as body, with_unconfirmed,
};
use super::{ApiStaff, ApiUser};
use crate::clock::now_ms;
use crate::node::Node;
use crate::service::{self, ClaimView, RequestView, SerialRegistration, sla};
use crate::web::leads::{AnalysisQuery, analysis_params};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use guanxi_protocol::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// A service request as the API shows it, serialized straight from the record.
#[derive(Serialize)]
struct RequestOut<'a> {
    key: &'a str,
    subject: &'a str,
    partner: String,
    status: &'static str,
    request: &'a guanxi_protocol::state::ServiceRequest,
    sla: &'a crate::service::sla::Clock,
}

fn request_out(v: &RequestView) -> RequestOut<'_> {
    RequestOut {
        key: &v.key,
        subject: &v.subject,
        partner: v.partner(),
        status: v.request.status.as_str(),
        request: &v.request,
        sla: &v.clock,
    }
}

fn request_json(v: &RequestView) -> Value {
    serde_json::to_value(request_out(v)).unwrap_or(Value::Null)
}

/// A claim as the API shows it; staff of the vendor also see its validity.
#[derive(Serialize)]
struct ClaimOut<'a> {
    key: &'a str,
    subject: &'a str,
    partner: String,
    status: &'static str,
    claim: &'a guanxi_protocol::state::WarrantyRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    validity: Option<service::Validity>,
}

fn claim_out<'a>(
    read: &guanxi_adapters::store::Read,
    me: &guanxi_protocol::NodeId,
    user: &crate::accounts::User,
    v: &'a ClaimView,
) -> ClaimOut<'a> {
    let validity = if &v.claim.vendor == me && user.role != crate::accounts::Role::Partner {
        crate::orders::day_of(v.claim.submitted_at)
            .and_then(|day| service::validity(read, &v.claim.claim, &day).ok())
    } else {
        None
    };
    ClaimOut {
        key: &v.key,
        subject: &v.subject,
        partner: v.partner(),
        status: v.claim.status.as_str(),
        claim: &v.claim,
        validity,
    }
}

fn claim_json(
    read: &guanxi_adapters::store::Read,
    me: &guanxi_protocol::NodeId,
    user: &crate::accounts::User,
    v: &ClaimView,
) -> Value {
    serde_json::to_value(claim_out(read, me, user, v)).unwrap_or(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    vendor: String,
    body: Value,
}

async fn open(
    node: &Node,
    headers: &HeaderMap,
    bytes: &[u8],
    kind: &str,
) -> Result<(String, String), ApiError> {
    let user = authenticate(node, headers)?;
    let b: OpenBody = body(bytes)?;
    let message = MessageBody {
        kind: kind.to_string(),
        body: b.body,
    }
    .message()?;
    service::open(node, &user, b.vendor.trim(), message)
        .await
        .map_err(internal)?
        .map_err(refusal)
}

/// `GET /api/v1/service?direction=&after=&limit=`: one page, newest first.
pub async fn requests(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (direction, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (list, next) =
            service::requests_page(r, &user, &me, now_ms(), direction, after.as_ref(), limit)?;
        let out: Vec<RequestOut<'_>> = list.iter().map(request_out).collect();
        page_json("requests", &out, next.map(|c| c.text()))
    })
    .await
}

pub async fn open_request(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (key, subject) = open(&node, &headers, &bytes, "service.open").await?;
    let user = authenticate(&node, &headers)?;
    let read = node.store.read().map_err(internal)?;
    let v = service::request(&read, &user, &node.identity.id, &key, &subject, now_ms())
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(request_json(&v))).into_response())
}

pub async fn request(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let read = node.store.read().map_err(internal)?;
    match service::request(&read, &user, &node.identity.id, &key, &subject, now_ms())
        .map_err(internal)?
    {
        Some(v) => Ok(Json(with_unconfirmed(
            &node,
            &key,
            &subject,
            request_json(&v),
        ))),
        None => Err(not_found()),
    }
}

async fn act(
    node: &Node,
    headers: &HeaderMap,
    key: &str,
    subject: &str,
    bytes: &[u8],
) -> Result<(), ApiError> {
    let user = authenticate(node, headers)?;
    let b: MessageBody = body(bytes)?;
    let message: Message = b.message()?;
    service::act(node, &user, key, subject, message)
        .await
        .map_err(internal)?
        .map_err(refusal)
}

pub async fn update_request(
    State(node): State<Arc<Node>>,
    caller: ApiUser,
    Path((key, subject)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    act(&node, &headers, &key, &subject, &bytes).await?;
    request(State(node), caller, Path((key, subject))).await
}

pub async fn get_sla(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
) -> Result<Json<Value>, ApiError> {
    let t = node
        .store
        .read()
        .and_then(|r| service::targets(&r))
        .map_err(internal)?;
    Ok(Json(json!(t)))
}

pub async fn put_sla(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let t: sla::Targets = body(&bytes)?;
    if let Some((field, message)) = t.check().into_iter().next() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("{field}: {message}"),
        ));
    }
    service::save_targets(&node, t).await.map_err(internal)?;
    Ok(Json(json!(t)))
}

pub async fn metrics(
    State(node): State<Arc<Node>>,
    ApiStaff(user): ApiStaff,
    Query(q): Query<AnalysisQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, from, to) = analysis_params(&q).map_err(|(field, message)| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("{field}: {message}"),
        )
    })?;
    let m = node
        .reading(move |read| service::metrics(read, &user, now_ms(), from, to))
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "partners": m })))
}

/// `GET /api/v1/claims?direction=&after=&limit=`: one page, newest first;
/// the vendor sees each claim's validity.
pub async fn claims(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (direction, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (list, next) = service::claims_page(r, &user, &me, direction, after.as_ref(), limit)?;
        let out: Vec<ClaimOut<'_>> = list.iter().map(|c| claim_out(r, &me, &user, c)).collect();
        page_json("claims", &out, next.map(|c| c.text()))
    })
    .await
}

fn find_claim(
    node: &Node,
    headers: &HeaderMap,
    key: &str,
    subject: &str,
) -> Result<Value, ApiError> {
    let user = authenticate(node, headers)?;
    let read = node.store.read().map_err(internal)?;
    let found = service::claim(&read, &user, &node.identity.id, key, subject)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let json = claim_json(&read, &node.identity.id, &user, &found);
    drop(read);
    Ok(with_unconfirmed(node, key, subject, json))
}

pub async fn file_claim(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (key, subject) = open(&node, &headers, &bytes, "warranty.claim").await?;
    Ok((
        StatusCode::CREATED,
        Json(find_claim(&node, &headers, &key, &subject)?),
    )
        .into_response())
}

pub async fn claim(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find_claim(&node, &headers, &key, &subject)?))
}

pub async fn act_on_claim(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    act(&node, &headers, &key, &subject, &bytes).await?;
    Ok(Json(find_claim(&node, &headers, &key, &subject)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardBody {
    upstream: String,
}

pub async fn forward(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Path((key, subject)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: ForwardBody = body(&bytes)?;
    let up = service::forward(&node, &key, &subject, b.upstream.trim())
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(json!({"upstream": b.upstream.trim(), "subject": up})))
}

/// `?after=&limit=` of the registered serials.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialsQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/serials`: registered serials in serial order, a page at a time.
pub async fn serials(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Query(q): Query<SerialsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit)?;
    let (list, next) = node
        .reading(move |r| crate::serials::registered_page(r, q.after.as_deref(), limit))
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "serials": list, "next": next })))
}

pub async fn register_serials(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<SerialRegistration> = body(&bytes)?;
    if let Some((i, _)) = list
        .iter()
        .enumerate()
        .find(|(_, r)| r.serial.trim().is_empty() || r.sku.trim().is_empty())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!("[{i}]: serial and sku must not be empty"),
        ));
    }
    let n = service::register_serials(&node, list)
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "registered": n })))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// Stores an uploaded file (raw body, its `Content-Type`, `?name=`) and
/// answers the attachment reference to put in a message.
pub async fn upload(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let stored = crate::attachments::accept(
        &node,
        &user,
        q.name.unwrap_or_default(),
        content_type.to_string(),
        bytes.to_vec(),
    )
    .await
    .map_err(internal)?;
    use crate::attachments::AttachmentError as E;
    match stored {
        Ok(a) => Ok((StatusCode::CREATED, Json(json!(a))).into_response()),
        Err(e @ E::TooLarge { .. }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            e.to_string(),
        )),
        Err(e @ (E::RefusedType(_) | E::Mismatch(_))) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "refused_type",
            e.to_string(),
        )),
        Err(e @ E::BadName) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            e.to_string(),
        )),
        Err(e @ E::Io(_)) => Err(internal(e)),
    }
}

/// Downloads an attachment referenced by a request or claim the user may see.
pub async fn download(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    let read = node.store.read().map_err(internal)?;
    let meta = service::attachment_for(&read, &user, &node.identity.id, &sha).map_err(internal)?;
    let meta = meta.ok_or_else(not_found)?;
    let bytes = crate::attachments::load(&node.config().data_dir, &sha).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_here",
            "the file is referenced but its bytes are not on this node",
        )
    })?;
    Ok(crate::web::service::file_response(
        &meta.content_type,
        bytes,
    ))
}
