//! The admin JSON API under `/api/v1`, for scripts and other systems: the
//! same operations as the web view, with the same authorization, behind
//! bearer tokens. Tokens are created and revoked with `guanxi token`; the
//! store keeps only their SHA-256. Errors are `{"code","message"}` (plus
//! `"field"` for a bad field). `/api/v1/openapi.json` describes exactly the
//! routes in [`ROUTES`] (a test keeps the two equal).

pub mod leads;
pub mod library;
pub mod mdf;
pub mod orders;
pub mod scorecards;
pub mod service;
pub mod surveys;

use crate::accounts::{self, Role, User};
use crate::clock::now_ms;
use crate::directory::{self, Partner, PartnerForm};
use crate::engine::{Engine, EngineError};
use crate::node::Node;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guanxi_adapters::store::{Doc, Read, StoreError};
use guanxi_protocol::{Millis, Sha256Hash};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Every API route: (method, path as in OpenAPI).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/partners"),
    ("post", "/api/v1/partners"),
    ("get", "/api/v1/partners/{id}"),
    ("put", "/api/v1/partners/{id}"),
    ("post", "/api/v1/partners/{id}/users"),
    ("get", "/api/v1/leads"),
    ("post", "/api/v1/leads"),
    ("post", "/api/v1/leads/import"),
    ("get", "/api/v1/leads/export"),
    ("get", "/api/v1/leads/analysis"),
    ("get", "/api/v1/leads/{id}"),
    ("post", "/api/v1/leads/{id}/assign"),
    ("post", "/api/v1/leads/{id}/withdraw"),
    ("get", "/api/v1/lead-rules"),
    ("put", "/api/v1/lead-rules"),
    ("get", "/api/v1/registrations"),
    ("post", "/api/v1/registrations/{key}/{subject}/decision"),
    ("get", "/api/v1/offers"),
    ("post", "/api/v1/offers/{vendor}/{subject}/messages"),
    ("get", "/api/v1/deals"),
    ("post", "/api/v1/deals"),
    ("get", "/api/v1/catalog"),
    ("put", "/api/v1/catalog"),
    ("post", "/api/v1/catalog/publish"),
    ("get", "/api/v1/catalogs"),
    ("get", "/api/v1/orders"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders/revenue"),
    ("get", "/api/v1/orders/{key}/{subject}"),
    ("post", "/api/v1/orders/{key}/{subject}/messages"),
    ("get", "/api/v1/service"),
    ("post", "/api/v1/service"),
    ("get", "/api/v1/service/sla"),
    ("put", "/api/v1/service/sla"),
    ("get", "/api/v1/service/metrics"),
    ("get", "/api/v1/service/{key}/{subject}"),
    ("post", "/api/v1/service/{key}/{subject}/messages"),
    ("get", "/api/v1/claims"),
    ("post", "/api/v1/claims"),
    ("get", "/api/v1/claims/{key}/{subject}"),
    ("post", "/api/v1/claims/{key}/{subject}/messages"),
    ("post", "/api/v1/claims/{key}/{subject}/forward"),
    ("get", "/api/v1/serials"),
    ("post", "/api/v1/serials"),
    ("post", "/api/v1/attachments"),
    ("get", "/api/v1/attachments/{sha256}"),
    ("get", "/api/v1/mdf"),
    ("post", "/api/v1/mdf"),
    ("get", "/api/v1/mdf/roi"),
    ("get", "/api/v1/mdf/{key}/{subject}"),
    ("post", "/api/v1/mdf/{key}/{subject}/messages"),
    ("post", "/api/v1/mdf/{key}/{subject}/checkpoint"),
    ("get", "/api/v1/library"),
    ("get", "/api/v1/library/{key}/{subject}"),
    ("get", "/api/v1/library/{key}/{subject}/file/{sha256}"),
    ("get", "/api/v1/announcements"),
    ("get", "/api/v1/certifications"),
    ("get", "/api/v1/certifications/{id}"),
    ("get", "/api/v1/scorecard"),
    ("get", "/api/v1/scorecards"),
    ("get", "/api/v1/goals"),
    ("post", "/api/v1/goals"),
    ("get", "/api/v1/goals/{key}/{subject}"),
    ("post", "/api/v1/goals/{key}/{subject}/messages"),
    ("get", "/api/v1/surveys"),
    ("post", "/api/v1/surveys"),
    ("get", "/api/v1/surveys/own/{id}"),
    ("post", "/api/v1/surveys/{key}/{subject}/answers"),
];

/// The API routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/me", get(me))
        .route("/api/v1/partners", get(list_partners).post(create_partner))
        .route(
            "/api/v1/partners/{id}",
            get(get_partner).put(update_partner),
        )
        .route(
            "/api/v1/partners/{id}/users",
            axum::routing::post(add_partner_user),
        )
        .route("/api/v1/leads", get(leads::list).post(leads::create))
        .route("/api/v1/leads/import", post(leads::import))
        .route("/api/v1/leads/export", get(leads::export))
        .route("/api/v1/leads/analysis", get(leads::analysis))
        .route("/api/v1/leads/{id}", get(leads::one))
        .route("/api/v1/leads/{id}/assign", post(leads::assign))
        .route("/api/v1/leads/{id}/withdraw", post(leads::withdraw))
        .route(
            "/api/v1/lead-rules",
            get(leads::get_rules).put(leads::put_rules),
        )
        .route("/api/v1/registrations", get(leads::registrations))
        .route(
            "/api/v1/registrations/{key}/{subject}/decision",
            post(leads::decide),
        )
        .route("/api/v1/offers", get(leads::offers))
        .route(
            "/api/v1/offers/{vendor}/{subject}/messages",
            post(leads::answer),
        )
        .route("/api/v1/deals", get(leads::deals).post(leads::register))
        .route(
            "/api/v1/catalog",
            get(orders::get_catalog).put(orders::put_catalog),
        )
        .route("/api/v1/catalog/publish", post(orders::publish))
        .route("/api/v1/catalogs", get(orders::catalogs))
        .route("/api/v1/orders", get(orders::list).post(orders::place))
        .route("/api/v1/orders/revenue", get(orders::revenue))
        .route("/api/v1/orders/{key}/{subject}", get(orders::one))
        .route("/api/v1/orders/{key}/{subject}/messages", post(orders::act))
        .route(
            "/api/v1/service",
            get(service::requests).post(service::open_request),
        )
        .route(
            "/api/v1/service/sla",
            get(service::get_sla).put(service::put_sla),
        )
        .route("/api/v1/service/metrics", get(service::metrics))
        .route("/api/v1/service/{key}/{subject}", get(service::request))
        .route(
            "/api/v1/service/{key}/{subject}/messages",
            post(service::update_request),
        )
        .route(
            "/api/v1/claims",
            get(service::claims).post(service::file_claim),
        )
        .route("/api/v1/claims/{key}/{subject}", get(service::claim))
        .route(
            "/api/v1/claims/{key}/{subject}/messages",
            post(service::act_on_claim),
        )
        .route(
            "/api/v1/claims/{key}/{subject}/forward",
            post(service::forward),
        )
        .route(
            "/api/v1/serials",
            get(service::serials).post(service::register_serials),
        )
        .route(
            "/api/v1/attachments",
            post(service::upload).layer(axum::extract::DefaultBodyLimit::max(
                crate::attachments::MAX_BYTES + 64 * 1024,
            )),
        )
        .route("/api/v1/attachments/{sha256}", get(service::download))
        .route("/api/v1/mdf", get(mdf::list).post(mdf::budget))
        .route("/api/v1/mdf/roi", get(mdf::roi))
        .route("/api/v1/mdf/{key}/{subject}", get(mdf::one))
        .route("/api/v1/mdf/{key}/{subject}/messages", post(mdf::act))
        .route(
            "/api/v1/mdf/{key}/{subject}/checkpoint",
            post(mdf::checkpoint),
        )
        .route("/api/v1/library", get(library::list))
        .route("/api/v1/library/{key}/{subject}", get(library::one))
        .route(
            "/api/v1/library/{key}/{subject}/file/{sha256}",
            get(library::file),
        )
        .route("/api/v1/announcements", get(library::announcements))
        .route("/api/v1/certifications", get(library::certifications))
        .route("/api/v1/certifications/{id}", get(library::certification))
        .route("/api/v1/scorecard", get(scorecards::scorecard))
        .route("/api/v1/scorecards", get(scorecards::ranking))
        .route(
            "/api/v1/goals",
            get(scorecards::goals).post(scorecards::propose),
        )
        .route("/api/v1/goals/{key}/{subject}", get(scorecards::goal))
        .route("/api/v1/surveys", get(surveys::list).post(surveys::send))
        .route("/api/v1/surveys/own/{id}", get(surveys::results))
        .route(
            "/api/v1/surveys/{key}/{subject}/answers",
            post(surveys::answer),
        )
        .route(
            "/api/v1/goals/{key}/{subject}/messages",
            post(scorecards::answer),
        )
}

/// A stored API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub username: String,
    pub created: Millis,
    pub revoked: bool,
}

/// Creates a token for `username`; returns the secret (shown once).
pub async fn create_token(
    engine: &Engine,
    name: &str,
    username: &str,
    now: Millis,
) -> Result<Result<String, String>, EngineError> {
    let secret = format!(
        "gxt_{}",
        accounts::random_token(32).map_err(|e| EngineError::Failed(e.to_string()))?
    );
    let key = Sha256Hash::of(secret.as_bytes()).to_string();
    let token = ApiToken {
        name: name.to_string(),
        username: username.to_string(),
        created: now,
        revoked: false,
    };
    let user = username.to_string();
    let done = engine
        .local(move |t| {
            if t.doc(Doc::User, &user)?.is_none() {
                return Ok(Err(format!("no user {user}")));
            }
            let json =
                serde_json::to_vec(&token).map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::ApiToken, &key, &json)?;
            Ok(Ok(()))
        })
        .await?;
    Ok(done.map(|()| secret))
}

/// Every token (without secrets): (storage key, token).
pub fn list_tokens(read: &Read) -> Result<Vec<(String, ApiToken)>, StoreError> {
    Ok(read
        .docs(Doc::ApiToken)?
        .into_iter()
        .filter_map(|(k, b)| serde_json::from_slice(&b).ok().map(|t| (k, t)))
        .collect())
}

/// Revokes every token named `name`; returns how many.
pub async fn revoke_token(engine: &Engine, read: &Read, name: &str) -> Result<usize, EngineError> {
    let keys: Vec<(String, ApiToken)> = list_tokens(read)?
        .into_iter()
        .filter(|(_, t)| t.name == name && !t.revoked)
        .collect();
    let count = keys.len();
    engine
        .local(move |t| {
            for (key, mut token) in keys.clone() {
                token.revoked = true;
                let json =
                    serde_json::to_vec(&token).map_err(|e| EngineError::Failed(e.to_string()))?;
                t.put_doc(Doc::ApiToken, &key, &json)?;
            }
            Ok(())
        })
        .await?;
    Ok(count)
}

/// An API error answer.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A refused action, with the protocol's reason code and its HTTP status.
fn refusal(r: guanxi_protocol::state::StateError) -> ApiError {
    ApiError::new(
        crate::web::access::status_of(r.code),
        r.code.as_str(),
        r.message,
    )
}

/// A strict JSON body (duplicate keys, unknown members refused), with the
/// error naming the field.
fn strict_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = guanxi_protocol::canonical::parse_strict(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    guanxi_protocol::canonical::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", e.to_string()))
}

/// A protocol message in a request: `{"kind", "body"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    kind: String,
    body: Value,
}

impl MessageBody {
    /// The message, with the wire's checks (`bad_body` naming the field).
    fn message(self) -> Result<guanxi_protocol::Message, ApiError> {
        crate::engine::decode_message(&self.kind, &self.body).map_err(refusal)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("api: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "internal",
        "the node could not complete the request; retry later",
    )
}

/// `limit` of a paginated list: 100 when absent, at most
/// [`crate::leads::MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > crate::leads::MAX_PAGE {
        return Err(bad_field(
            "limit",
            format!("limit: 1 to {}", crate::leads::MAX_PAGE),
        ));
    }
    Ok(limit)
}

/// A page of a list as JSON, `{"<name>": [...], "next": …}`, serialized
/// straight from typed values (a page builds no intermediate JSON tree).
pub fn page_json<T: Serialize>(
    name: &str,
    items: &[T],
    next: Option<String>,
) -> Result<Vec<u8>, StoreError> {
    let err = |e: serde_json::Error| StoreError::Db(e.to_string());
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{");
    serde_json::to_writer(&mut out, name).map_err(err)?;
    out.extend_from_slice(b":");
    serde_json::to_writer(&mut out, items).map_err(err)?;
    out.extend_from_slice(b",\"next\":");
    serde_json::to_writer(&mut out, &next).map_err(err)?;
    out.extend_from_slice(b"}");
    Ok(out)
}

/// A 200 answer with JSON bytes made by [`page_json`] or `serde_json`.
pub fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Answers the JSON document `build` writes from one read of the store,
/// made on a blocking thread (a list page: the records are read and
/// serialized off the async threads, and the bytes sent as they are).
pub async fn read_json(
    node: &Node,
    build: impl FnOnce(
        &guanxi_adapters::store::Read,
    ) -> Result<Vec<u8>, guanxi_adapters::store::StoreError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let bytes = node.reading(build).await.map_err(internal)?;
    Ok(json_bytes(bytes))
}

fn bad_field(field: &'static str, message: String) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", message);
    e.field = Some(field);
    e
}

/// `?direction=&after=&limit=` of a record list: staff choose what this
/// node `received` as vendor (the default) or `placed` with other vendors;
/// `after` is the previous page's `next`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

impl PageQuery {
    fn parts(
        &self,
    ) -> Result<
        (
            crate::records::Direction,
            Option<crate::record_index::Cursor>,
            usize,
        ),
        ApiError,
    > {
        let direction = match self.direction.as_deref() {
            None => crate::records::Direction::default(),
            Some(d) => crate::records::Direction::parse(d)
                .ok_or_else(|| bad_field("direction", "direction: received or placed".into()))?,
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(a) => Some(crate::record_index::Cursor::parse(a).ok_or_else(|| {
                bad_field("after", "after: the `next` of the previous page".into())
            })?),
        };
        Ok((direction, after, page_limit(self.limit)?))
    }
}

/// A response body fed by a channel: a big answer goes out as it is
/// produced, never built whole in memory; an error ends it broken.
struct Channel(tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>);

impl hyper::body::Body for Channel {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|chunk| chunk.map(hyper::body::Frame::data)))
    }
}

/// The body of a streamed answer, from its chunks.
pub(crate) fn streamed(
    rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
) -> axum::body::Body {
    axum::body::Body::new(Channel(rx))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such record")
}

/// Anyone with a valid API token: the handler's caller, or a 401 JSON
/// error in its place.
pub struct ApiUser(pub User);

impl axum::extract::FromRequestParts<Arc<Node>> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        node: &Arc<Node>,
    ) -> Result<Self, ApiError> {
        authenticate(node, &parts.headers).map(ApiUser)
    }
}

/// The company's own staff, by API token (a partner user's token gets a
/// 403 JSON error).
pub struct ApiStaff(pub User);

impl axum::extract::FromRequestParts<Arc<Node>> for ApiStaff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        node: &Arc<Node>,
    ) -> Result<Self, ApiError> {
        let user = authenticate(node, &parts.headers)?;
        staff(&user)?;
        Ok(ApiStaff(user))
    }
}

/// The user behind the request's bearer token.
fn authenticate(node: &Node, headers: &HeaderMap) -> Result<User, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let read = node.store.read().map_err(internal)?;
    let token: ApiToken = read
        .doc(
            Doc::ApiToken,
            &Sha256Hash::of(secret.trim().as_bytes()).to_string(),
        )
        .map_err(internal)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(unauthorized)?;
    if token.revoked {
        return Err(unauthorized());
    }
    match accounts::load_user(&read, &token.username).map_err(internal)? {
        Some(user) if !user.disabled => Ok(user),
        _ => Err(unauthorized()),
    }
}

fn staff(user: &User) -> Result<(), ApiError> {
    if user.role == Role::Partner {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "staff only",
        ))
    } else {
        Ok(())
    }
}

fn partner_json(p: &Partner, staff: bool) -> Value {
    let mut v = json!({
        "id": p.id, "name": p.name, "type": p.kind_name(), "tier": p.tier, "country": p.country,
        "region": p.region, "stage": p.stage_name(), "peer": p.peer, "time_zone": p.time_zone,
        "contacts": p.contacts.iter().map(|c| json!({"name": c.name, "email": c.email, "phone": c.phone})).collect::<Vec<_>>(),
        "created": p.created, "updated": p.updated,
    });
    if staff {
        v["notes"] = json!(p.notes);
    }
    v
}

async fn openapi() -> Json<Value> {
    Json(document())
}

async fn me(ApiUser(user): ApiUser) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"username": user.username, "display_name": user.display_name, "role": user.role, "partner": user.partner}),
    ))
}

/// `?after=&limit=` of the partner directory (ids in order).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnersQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_partners(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    axum::extract::Query(q): axum::extract::Query<PartnersQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit)?;
    let (list, next) = node
        .reading(move |r| directory::page(r, q.after.as_deref(), limit))
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({"partners": list.iter().map(|p| partner_json(p, true)).collect::<Vec<_>>(), "next": next}),
    ))
}

async fn get_partner(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // A partner user's view of another organization is "not found", like a missing one.
    if user.role == Role::Partner && user.partner.as_deref() != Some(id.as_str()) {
        return Err(not_found());
    }
    match node
        .store
        .read()
        .and_then(|r| directory::load(&r, &id))
        .map_err(internal)?
    {
        Some(p) => Ok(Json(partner_json(&p, user.role != Role::Partner))),
        None => Err(not_found()),
    }
}

/// A partner as the API takes it (`type` rather than the form's `kind`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerBody {
    id: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    tier: String,
    country: String,
    #[serde(default)]
    region: String,
    stage: String,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    contacts: Vec<ContactBody>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    time_zone: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ContactBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
}

fn parse_body(bytes: &[u8]) -> Result<PartnerBody, ApiError> {
    guanxi_protocol::canonical::parse_strict(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
        .and_then(|v| {
            guanxi_protocol::canonical::from_value::<PartnerBody>(v).map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", e.to_string())
            })
        })
}

async fn save(
    node: Arc<Node>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
    id: Option<String>,
) -> Result<Response, ApiError> {
    let user = authenticate(&node, &headers)?;
    staff(&user)?;
    let body = parse_body(&bytes)?;
    let creating = id.is_none();
    // The API takes contacts as objects; the directory's one validation
    // path takes them as lines, so a separator inside a field is refused.
    let clean = |s: &str| !s.contains([';', '\n', '\r']);
    if !body
        .contacts
        .iter()
        .all(|c| clean(&c.name) && clean(&c.email) && clean(&c.phone))
    {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            "contacts: ';' and line breaks are not allowed in contact fields",
        );
        e.field = Some("contacts");
        return Err(e);
    }
    let contacts = body
        .contacts
        .iter()
        .map(|c| format!("{}; {}; {}", c.name, c.email, c.phone))
        .collect::<Vec<_>>()
        .join("\n");
    let form = PartnerForm {
        id: id.or(body.id).unwrap_or_default(),
        name: body.name,
        kind: body.kind,
        tier: body.tier,
        country: body.country,
        region: body.region,
        stage: body.stage,
        peer: body.peer.unwrap_or_default(),
        contacts,
        notes: body.notes,
        time_zone: body.time_zone,
    };
    let partner = form.validate(&node.identity.id).map_err(|errors| {
        let first = &errors[0];
        let field = match first.field {
            "kind" => "type",
            other => other,
        };
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_field",
            format!(
                "{field}: {}",
                crate::web::i18n::catalog(crate::web::i18n::Lang::En).get(first.message)
            ),
        );
        e.field = Some(first.field);
        e
    })?;
    let id = partner.id.clone();
    match directory::save(&node.engine, partner, creating, now_ms(), &user.username)
        .await
        .map_err(internal)?
    {
        true => {
            let saved = node
                .store
                .read()
                .and_then(|r| directory::load(&r, &id))
                .map_err(internal)?;
            let status = if creating {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(saved.map(|p| partner_json(&p, true)).unwrap_or(Value::Null)),
            )
                .into_response())
        }
        false if creating => Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("partner {id} already exists"),
        )),
        false => Err(not_found()),
    }
}

async fn create_partner(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    save(node, headers, bytes, None).await
}

async fn update_partner(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    save(node, headers, bytes, Some(id)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    #[serde(default)]
    display_name: String,
}

/// Staff create a partner user; the answer carries its one-time password.
async fn add_partner_user(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let value = guanxi_protocol::canonical::parse_strict(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    let body: NewUser = guanxi_protocol::canonical::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", e.to_string()))?;
    use crate::accounts::AccountError as E;
    match accounts::add_user(
        &node.engine,
        &body.username,
        &body.display_name,
        Role::Partner,
        Some(id),
        now_ms(),
    )
    .await
    {
        Ok(password) => Ok(crate::idempotency::holds_secret((
            StatusCode::CREATED,
            Json(json!({"username": body.username, "password": password})),
        ))),
        Err(E::NoSuchPartner(_)) => Err(not_found()),
        Err(e @ E::Exists(_)) => Err(ApiError::new(StatusCode::CONFLICT, "exists", e.to_string())),
        Err(e @ E::BadUsername(_)) => {
            let mut err =
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", e.to_string());
            err.field = Some("username");
            Err(err)
        }
        Err(e) => Err(internal(e)),
    }
}

/// The OpenAPI 3 document of the routes in [`ROUTES`].
pub fn document() -> Value {
    let mut doc = described();
    // Every call that changes something takes an Idempotency-Key.
    doc["components"]["parameters"] = json!({"IdempotencyKey": {
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "1–255 visible ASCII characters. A retry with the same key (within 24 hours, same method, path and body) answers the first call's answer (header Idempotent-Replayed: true) instead of doing it again; the same key with another request: 422 idempotency_key_reused; while the first call runs: 409 idempotency_in_progress; when its answer was lost in a crash or held a secret: 409 idempotency_answer_lost / idempotency_answer_withheld.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255}}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for ops in paths.values_mut() {
            for method in ["post", "put"] {
                if let Some(op) = ops.get_mut(method).and_then(Value::as_object_mut) {
                    let params = op.entry("parameters").or_insert_with(|| json!([]));
                    if let Some(list) = params.as_array_mut() {
                        list.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
                    }
                }
            }
        }
    }
    doc
}

/// The OpenAPI document as written out, before the common parameters.
fn described() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let errors = |codes: &[&str]| {
        let mut m = serde_json::Map::new();
        for c in codes {
            m.insert(
                (*c).to_string(),
                json!({"description": "error", "content": {"application/json": {"schema": error}}}),
            );
        }
        m
    };
    let partner = json!({"$ref": "#/components/schemas/Partner"});
    let partner_in = json!({"$ref": "#/components/schemas/PartnerInput"});
    let lead = json!({"$ref": "#/components/schemas/Lead"});
    let lead_in = json!({"$ref": "#/components/schemas/LeadInput"});
    let ok = |schema: Value| json!({"description": "ok", "content": {"application/json": {"schema": schema}}});
    let key_subject = json!([
        {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let id_param =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    // A record list, newest first, a page at a time.
    let paged = json!([
        {"name": "direction", "in": "query", "required": false, "description": "staff: `received` (as vendor, the default) or `placed` (with other vendors)", "schema": {"type": "string", "enum": ["received", "placed"]}},
        {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}]);
    let with = |mut base: serde_json::Map<String, Value>, code: &str, body: Value| {
        base.insert(code.to_string(), body);
        Value::Object(base)
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Guanxi admin API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
                "Partner": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "type": {"type": "string", "enum": ["reseller", "distributor", "agent", "supplier"]},
                    "tier": {"type": "string"}, "country": {"type": "string"}, "region": {"type": "string"},
                    "stage": {"type": "string", "enum": ["prospect", "onboarding", "active", "strategic", "at_risk", "dormant"]},
                    "peer": {"type": "string", "nullable": true},
                    "contacts": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "phone": {"type": "string"}}}},
                    "notes": {"type": "string"}, "time_zone": {"type": "string"}, "created": {"type": "integer"}, "updated": {"type": "integer"}}},
                "Lead": {"type": "object", "properties": {
                    "id": {"type": "string"}, "lead": lead_in.clone(), "status": {"type": "string"},
                    "hold": {"type": "string", "nullable": true}, "created": {"type": "integer"}, "created_by": {"type": "string"},
                    "offers": {"type": "array", "items": {"type": "object"}}, "rounds": {"type": "array", "items": {"type": "object"}}}},
                "LeadInput": {"type": "object", "additionalProperties": false,
                    "required": ["customer", "country", "region", "product_lines", "estimated_value", "source", "campaign", "consent", "notes"],
                    "properties": {
                        "customer": {"type": "object", "required": ["company", "contact", "email", "phone"], "properties": {"company": {"type": "string"}, "contact": {"type": "string"}, "email": {"type": "string"}, "phone": {"type": "string"}}},
                        "country": {"type": "string"}, "region": {"type": "string"},
                        "product_lines": {"type": "array", "items": {"type": "string"}},
                        "estimated_value": {"type": "object", "nullable": true, "properties": {"amount": {"type": "integer"}, "currency": {"type": "string"}}},
                        "source": {"type": "string"}, "campaign": {"type": "string"}, "consent": {"type": "boolean"}, "notes": {"type": "string"}}},
                "PartnerInput": {"type": "object", "required": ["name", "type", "country", "stage"], "additionalProperties": false, "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"}, "tier": {"type": "string"},
                    "country": {"type": "string"}, "region": {"type": "string"}, "stage": {"type": "string"},
                    "peer": {"type": "string", "nullable": true},
                    "contacts": {"type": "array", "items": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "phone": {"type": "string"}}}},
                    "notes": {"type": "string"}, "time_zone": {"type": "string", "description": "IANA time zone of the organization's users; empty: the node's"}}},
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/api/v1/me": {"get": {"summary": "The token's user", "responses": with(errors(&["401"]), "200", ok(json!({"type": "object"})))}},
            "/api/v1/partners": {
                "get": {"summary": "The partner directory (staff), by id, a page at a time", "parameters": [
                            {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object", "properties": {"partners": {"type": "array", "items": partner}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Add a partner (staff)", "requestBody": {"required": true, "content": {"application/json": {"schema": partner_in}}},
                         "responses": with(errors(&["400", "401", "403", "409", "422"]), "201", ok(partner.clone()))}
            },
            "/api/v1/partners/{id}": {
                "get": {"summary": "One partner (staff; a partner user: its own only)", "parameters": id_param, "responses": with(errors(&["401", "404"]), "200", ok(partner.clone()))},
                "put": {"summary": "Replace a partner (staff)", "parameters": id_param, "requestBody": {"required": true, "content": {"application/json": {"schema": partner_in}}},
                        "responses": with(errors(&["400", "401", "403", "404", "422"]), "200", ok(partner))}
            },
            "/api/v1/leads": {
                "get": {"summary": "Leads with their offers, records and rule trace, newest first, a page at a time (staff)",
                        "parameters": [
                            {"name": "stage", "in": "query", "required": false, "description": "only leads at this stage (unassigned, offered, accepted, declined, expired, withdrawn, won, lost)", "schema": {"type": "string"}},
                            {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "description": "leads per page", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object", "properties": {"leads": {"type": "array", "items": lead}, "next": {"type": "string", "nullable": true, "description": "pass as `after` for the next page; null on the last"}}})))},
                "post": {"summary": "Create a lead and distribute it by the rules (staff)", "requestBody": {"required": true, "content": {"application/json": {"schema": lead_in}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(lead.clone()))}
            },
            "/api/v1/leads/export": {
                "get": {"summary": "Every lead (of a stage) as CSV, newest first, streamed (staff): id, created, stage, partner, then the import's columns",
                        "parameters": [{"name": "stage", "in": "query", "required": false, "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", json!({"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}))}
            },
            "/api/v1/leads/import": {
                "post": {"summary": "Import leads from CSV (text/csv body; header row; all rows valid or nothing imported) (staff)",
                         "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}},
                         "responses": with(errors(&["401", "403", "422"]), "201", ok(json!({"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}})))}
            },
            "/api/v1/leads/analysis": {
                "get": {"summary": "Conversion analysis (staff)", "parameters": [
                    {"name": "group", "in": "query", "schema": {"type": "string", "enum": ["partner", "source", "campaign", "month"]}},
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/leads/{id}": {
                "get": {"summary": "One lead (staff)", "parameters": id_param, "responses": with(errors(&["401", "403", "404"]), "200", ok(lead.clone()))}
            },
            "/api/v1/leads/{id}/assign": {
                "post": {"summary": "Offer the lead to a partner by hand (staff)", "parameters": id_param,
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["partner"], "additionalProperties": false, "properties": {"partner": {"type": "string"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(lead.clone()))}
            },
            "/api/v1/leads/{id}/withdraw": {
                "post": {"summary": "Take the lead back from its partner, who is told (staff)", "parameters": id_param,
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {"reason": {"type": "string"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(lead))}
            },
            "/api/v1/lead-rules": {
                "get": {"summary": "The distribution rules (staff)", "responses": with(errors(&["401", "403"]), "200", ok(json!({"type": "object"})))},
                "put": {"summary": "Replace the distribution rules (staff)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["offer_hours", "rules"]}}}},
                        "responses": with(errors(&["400", "401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/registrations": {
                "get": {"summary": "Deal registrations this node decides, newest first, a page at a time, with conflicts (staff)", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object", "properties": {"registrations": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))}
            },
            "/api/v1/registrations/{key}/{subject}/decision": {
                "post": {"summary": "Approve (exclusive until a date) or reject (with a reason) a registration (staff)", "parameters": [
                    {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}}],
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["decision", "exclusive_until", "reason", "note"], "additionalProperties": false, "properties": {
                             "decision": {"type": "string", "enum": ["approved", "rejected"]}, "exclusive_until": {"type": "string", "nullable": true}, "reason": {"type": "string", "nullable": true}, "note": {"type": "string"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/offers": {
                "get": {"summary": "Leads offered to the token's organization (partner user; newest first) or to this node (staff; by vendor, newest first within), a page at a time",
                        "parameters": [
                            {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page (`<key>/<subject>`)", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"offers": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))}
            },
            "/api/v1/offers/{vendor}/{subject}/messages": {
                "post": {"summary": "Answer an offered lead with a protocol message: lead.accept, lead.decline or lead.update", "parameters": [
                    {"name": "vendor", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}}],
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"], "additionalProperties": false, "properties": {"kind": {"type": "string"}, "body": {"type": "object"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/deals": {
                "get": {"summary": "Deal registrations the organization filed, newest first, a page at a time", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"deals": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Register a deal with a vendor (body: the lead.register message body)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["vendor", "deal"], "additionalProperties": false, "properties": {"vendor": {"type": "string"}, "deal": {"type": "object"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/catalog": {
                "get": {"summary": "This node's catalog: products and every price list (staff)", "responses": with(errors(&["401", "403"]), "200", ok(json!({"type": "object"})))},
                "put": {"summary": "Replace the catalog (the version increases) and publish it to connected partners, each with its tier's price lists (staff)",
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["products", "price_lists"], "additionalProperties": false}}}},
                        "responses": with(errors(&["400", "401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/catalog/publish": {
                "post": {"summary": "Publish the catalog again to every connected partner (staff)", "responses": with(errors(&["401", "403", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/catalogs": {
                "get": {"summary": "The catalogs the token's user can order from, with the price lists of its tier", "responses": with(errors(&["401"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/orders": {
                "get": {"summary": "Orders, newest first, a page at a time: staff see those received as vendor or those placed with other vendors; a partner user its organization's", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"orders": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Place an order with a vendor; lines are checked against the price list in force (invalid_lines lists every wrong line)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false,
                             "required": ["vendor", "reference", "currency", "lines", "requested_date", "ship_to", "lead"]}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/orders/revenue": {
                "get": {"summary": "Invoiced revenue per partner and currency (staff)", "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/orders/{key}/{subject}": {
                "get": {"summary": "One order", "parameters": [
                    {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/orders/{key}/{subject}/messages": {
                "post": {"summary": "Act on an order with a protocol message: order.ack, order.ship, order.invoice (vendor) or order.cancel (partner)", "parameters": [
                    {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}}],
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"], "additionalProperties": false}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/service": {
                "get": {"summary": "Service requests the user may see, newest first, a page at a time, each with its service level clock", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"requests": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Open a service request with a vendor: {vendor, body: the service.open body}", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["vendor", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/service/sla": {
                "get": {"summary": "Service level targets per priority (staff)", "responses": with(errors(&["401", "403"]), "200", ok(json!({"type": "object"})))},
                "put": {"summary": "Replace the service level targets (staff)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                        "responses": with(errors(&["400", "401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/service/metrics": {
                "get": {"summary": "Median first response and resolution, breach counts per partner (staff), of the requests opened from `from` (default: 90 days ago) to `to`", "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/service/{key}/{subject}": {
                "get": {"summary": "One service request", "parameters": key_subject.clone(), "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/service/{key}/{subject}/messages": {
                "post": {"summary": "Update a service request with service.update", "parameters": key_subject.clone(),
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/claims": {
                "get": {"summary": "Warranty claims the user may see, newest first, a page at a time; the vendor sees each claim's validity", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"claims": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "File a warranty claim with a vendor: {vendor, body: the warranty.claim body}", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["vendor", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/claims/{key}/{subject}": {
                "get": {"summary": "One claim", "parameters": key_subject.clone(), "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/claims/{key}/{subject}/messages": {
                "post": {"summary": "Act on a claim: warranty.decision or warranty.fulfil (vendor), warranty.claim to amend (partner)", "parameters": key_subject.clone(),
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/claims/{key}/{subject}/forward": {
                "post": {"summary": "Forward a partner's claim up the chain to an enabled peer (staff); its decision is relayed back", "parameters": key_subject,
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["upstream"]}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/serials": {
                "get": {"summary": "Serial numbers registered outside orders (staff), in serial order, a page at a time", "parameters": [
                            {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object", "properties": {"serials": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Register serial numbers: [{serial, sku, date, partner}] (staff)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array"}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/attachments": {
                "post": {"summary": "Upload a file (raw body with its Content-Type: PDF, JPEG, PNG or plain text, at most 2 MiB; ?name=); answers the attachment reference to put in a message",
                         "parameters": [{"name": "name", "in": "query", "required": true, "schema": {"type": "string"}}],
                         "responses": with(errors(&["401", "413", "415", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/attachments/{sha256}": {
                "get": {"summary": "Download a file referenced by a request or claim the user may see",
                        "parameters": [{"name": "sha256", "in": "path", "required": true, "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "404"]), "200", json!({"description": "the file"}))}
            },
            "/api/v1/mdf": {
                "get": {"summary": "MDF budgets the user may see, with their ledgers and balances, a page at a time", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"budgets": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))},
                "post": {"summary": "Allocate, top up or expire a budget for a partner: {partner, budget, body: the mdf.budget body} (staff)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["partner", "budget", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/mdf/roi": {
                "get": {"summary": "Per activity of one page of budgets granted: spend against won leads and orders of its campaign (staff)", "parameters": paged.clone(),
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object", "properties": {"activities": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))}
            },
            "/api/v1/mdf/{key}/{subject}": {
                "get": {"summary": "One budget", "parameters": key_subject.clone(), "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/mdf/{key}/{subject}/messages": {
                "post": {"summary": "mdf.request or mdf.claim (partner); mdf.decision, mdf.claim_decision, mdf.paid (vendor)", "parameters": key_subject.clone(),
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"]}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/mdf/{key}/{subject}/checkpoint": {
                "post": {"summary": "Send a signed checkpoint of the budget's ledger to the peer now (staff)", "parameters": key_subject.clone(),
                         "responses": with(errors(&["401", "403", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/library": {
                "get": {"summary": "The library: this node's resources (staff: `shelf=received` for those received from peers; a partner user: what targets its organization), newest first, or those matching every word of `q`",
                        "parameters": [
                            {"name": "q", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "shelf", "in": "query", "required": false, "schema": {"type": "string", "enum": ["own", "received"]}},
                            {"name": "after", "in": "query", "required": false, "description": "the `next` of the previous page", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object", "properties": {"resources": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string", "nullable": true}}})))}
            },
            "/api/v1/library/{key}/{subject}": {
                "get": {"summary": "One resource (`key`: `own` or the peer it came from); a course without its answer key", "parameters": key_subject.clone(),
                        "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/library/{key}/{subject}/file/{sha256}": {
                "get": {"summary": "A resource's file (`Range` answered with 206)", "parameters": [
                            {"name": "key", "in": "path", "required": true, "schema": {"type": "string"}},
                            {"name": "subject", "in": "path", "required": true, "schema": {"type": "string"}},
                            {"name": "sha256", "in": "path", "required": true, "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "404"]), "200", json!({"description": "the file", "content": {"application/octet-stream": {}}}))}
            },
            "/api/v1/announcements": {
                "get": {"summary": "Announcements, newest first (staff: `shelf=received` for those from vendors; a partner user: those that target it, with its status)",
                        "parameters": [
                            {"name": "shelf", "in": "query", "required": false, "schema": {"type": "string", "enum": ["own", "received"]}},
                            {"name": "after", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/certifications": {
                "get": {"summary": "Certifications kept here (staff: all; a partner user: its organization's), newest first",
                        "parameters": [
                            {"name": "after", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/certifications/{id}": {
                "get": {"summary": "The signed certification document, byte for byte (SPEC §16)", "parameters": id_param.clone(),
                        "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/scorecard": {
                "get": {"summary": "A partner's scorecard with a vendor for a period, computed from the records both nodes hold (SPEC §18), and the period it is compared with (staff: `partner=<id>` as its vendor or `vendor=<peer>` as that vendor's partner; a partner user: its own)",
                        "parameters": [
                            {"name": "period", "in": "query", "required": false, "description": "2026, 2026-H1, 2026-Q3, 2026-07 or 2026-01-01..2026-06-30 (UTC); default: this month", "schema": {"type": "string"}},
                            {"name": "compare", "in": "query", "required": false, "description": "default: the period before", "schema": {"type": "string"}},
                            {"name": "partner", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "vendor", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "trend", "in": "query", "required": false, "description": "a figure (money with its currency, won_value:TWD) whose value per month, for the twelve months up to the period's end, the answer's `trend` lists", "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "404", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/goals": {
                "get": {"summary": "The joint goals of a relationship (SPEC §19; staff: `partner` or `vendor` as for the scorecard; a partner user: its own), newest first, each with its progress (value so far, forecast at the current pace, state)",
                        "parameters": [
                            {"name": "partner", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "vendor", "in": "query", "required": false, "schema": {"type": "string"}}],
                        "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))},
                "post": {"summary": "Proposes a joint goal (`goal.propose`); the target in the figure's own integer (minor units, milliseconds, per mille)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["period", "metric", "target"], "additionalProperties": false,
                             "properties": {"partner": {"type": "string"}, "vendor": {"type": "string"}, "period": {"type": "string"}, "metric": {"type": "string"},
                                 "target": {"type": "integer", "minimum": 1}, "owner": {"type": "string"}, "note": {"type": "string"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/surveys": {
                "get": {"summary": "Surveys this node sent (staff) and those the reader has to answer, newest first, with whether it answered (SPEC §20)",
                        "responses": with(errors(&["401"]), "200", ok(json!({"type": "object"})))},
                "post": {"summary": "Sends a survey (staff): `survey` as SPEC §20 `survey.send` and `target` as a library target (everyone, types, tiers, countries, partners)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["survey", "target"], "properties": {"survey": {"type": "object"}, "target": {"type": "object"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "422"]), "201", ok(json!({"type": "object"})))}
            },
            "/api/v1/surveys/own/{id}": {
                "get": {"summary": "A survey's results (staff): NPS, rating means, choice counts, free text, per partner and tier (an anonymous survey: groups of three answers or more), and the series' rounds", "parameters": id_param.clone(),
                        "responses": with(errors(&["401", "403", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/surveys/{key}/{subject}/answers": {
                "post": {"summary": "The reader's answers to a survey, once (`answers`: each a question id and a score, choice ids or text)", "parameters": key_subject.clone(),
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["answers"], "properties": {"answers": {"type": "array"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/goals/{key}/{subject}": {
                "get": {"summary": "One joint goal with its history and progress", "parameters": key_subject.clone(),
                        "responses": with(errors(&["401", "404"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/goals/{key}/{subject}/messages": {
                "post": {"summary": "Answers a goal as the reader's side: `goal.accept` (naming the target on the table), `goal.counter` or `goal.decline`", "parameters": key_subject.clone(),
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["kind", "body"], "properties": {"kind": {"type": "string"}, "body": {"type": "object"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/scorecards": {
                "get": {"summary": "The ranking (staff): every partner with its scorecard for a period and the one it is compared with, its scores, best first by `sort`",
                        "parameters": [
                            {"name": "period", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "compare", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "sort", "in": "query", "required": false, "description": "`score` (default when weights are set) or a figure (default leads_won); times rank shortest first", "schema": {"type": "string"}},
                            {"name": "tier", "in": "query", "required": false, "schema": {"type": "string"}},
                            {"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "default": 0}},
                            {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                        "responses": with(errors(&["401", "403", "422"]), "200", ok(json!({"type": "object"})))}
            },
            "/api/v1/partners/{id}/users": {
                "post": {"summary": "Add a user of this partner (staff); the answer carries its one-time password", "parameters": id_param,
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username"], "additionalProperties": false,
                             "properties": {"username": {"type": "string"}, "display_name": {"type": "string"}}}}}},
                         "responses": with(errors(&["400", "401", "403", "404", "409", "422"]), "201", ok(json!({"type": "object", "properties": {"username": {"type": "string"}, "password": {"type": "string"}}})))}
            }
        }
    })
}

/// `value` (one shared record's JSON) with what of it is still unconfirmed
/// by the record's authority (SPEC §12.1): `pending_requests` (this node's
/// requests without an answer yet) and `refused_by_vendor`.
pub(crate) fn with_unconfirmed(node: &Node, key: &str, subject: &str, mut value: Value) -> Value {
    let u = node
        .store
        .read()
        .map_err(crate::engine::EngineError::from)
        .and_then(|r| crate::engine::unconfirmed(&r, key, subject))
        .unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("pending_requests".into(), Value::from(u.pending_requests));
        map.insert(
            "refused_by_vendor".into(),
            u.refused.map_or(Value::Null, Value::from),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc = document();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
