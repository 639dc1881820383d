//! The admin socket: a Unix domain socket `admin.sock` in the data directory
//! (mode 0600, so only the daemon's user can use it), serving a small JSON
//! API to the `guanxi` CLI running on the same machine: peers, outbox,
//! rejections, ping, send.
//!
//! Why a socket and not reading the store: redb allows one process to open a
//! database, and the running daemon holds it. The socket gives the CLI the
//! daemon's live view (worker state included) with filesystem permissions as
//! the access control; nothing of it is reachable over the network.

use crate::clock::now_ms;
use crate::engine::SendError;
use crate::node::Node;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guanxi_protocol::envelope::SignedEnvelope;
use guanxi_protocol::messages::Message;
use guanxi_protocol::receipt::SignedReceipt;
use guanxi_protocol::{NodeId, RecordId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// File name of the socket in the data directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// The admin routes.
pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/admin/v1/peers", get(peers))
        .route("/admin/v1/outbox", get(outbox))
        .route("/admin/v1/outbox/{peer}/{seq}", get(outbox_entry))
        .route("/admin/v1/rejected", get(rejected))
        .route("/admin/v1/ledger/verify", get(ledger_verify))
        .route("/admin/v1/verify", get(verify))
        .route("/admin/v1/backup", get(backup))
        .route("/admin/v1/invitations", post(invite))
        .route("/admin/v1/connect", post(connect))
        .route("/admin/v1/key/rotate", post(rotate_key))
        .route("/admin/v1/handover", post(hand_over))
        .route("/admin/v1/tls/rotate", post(rotate_tls))
        .route("/admin/v1/store", get(store_stats))
        .route("/admin/v1/inbox/{peer}", get(inbox_list))
        .route("/admin/v1/inbox/{peer}/{seq}", get(inbox_entry))
        .route("/admin/v1/records/{peer}/{subject}", get(record))
        .route("/admin/v1/records/{peer}/{subject}/sync", get(record_sync))
        .route("/admin/v1/send", post(send))
        .route("/admin/v1/ping", post(ping))
        .route("/admin/v1/peers/{peer}/resume", post(resume))
        .route("/admin/v1/peers/{peer}/pause", post(pause))
        .route("/admin/v1/reload", post(reload))
        .route("/metrics", get(metrics))
        .route("/admin/v1/users", get(users).post(add_user))
        .route(
            "/admin/v1/users/{name}/reset-password",
            post(reset_password),
        )
        .route("/admin/v1/users/{name}/disable", post(disable_user))
        .route("/admin/v1/tokens", get(tokens).post(create_token))
        .route("/admin/v1/tokens/{name}/revoke", post(revoke_token))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::idempotency::guard,
        ))
        .with_state(node)
}

#[derive(Deserialize)]
struct VerifyQuery {
    #[serde(default)]
    quick: bool,
}

/// `guanxi verify` on the running node: the content checks on a snapshot.
/// How the database file is used (bytes allocated, stored, metadata, free
/// inside the file).
async fn store_stats(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let store = node.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats())
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(Json(json!(stats)))
}

async fn verify(
    State(node): State<Arc<Node>>,
    axum::extract::Query(q): axum::extract::Query<VerifyQuery>,
) -> Result<Json<Value>, AdminError> {
    let depth = if q.quick {
        crate::verify::Depth::Quick
    } else {
        crate::verify::Depth::Full
    };
    let report = crate::verify::check_store(
        node.store.clone(),
        node.identity.clone(),
        node.config().peers.clone(),
        depth,
    )
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::to_value(&report).map_err(internal)?))
}

/// `guanxi backup`: the running node's backup, streamed (see [`crate::backup`]).
async fn backup(State(node): State<Arc<Node>>) -> Response {
    let mut response = Response::new(crate::backup::stream(&node));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

#[derive(Deserialize)]
struct InviteRequest {
    #[serde(default)]
    partner: Option<String>,
    expires_ms: i64,
}

/// `guanxi invite`: a one-time invitation code.
async fn invite(
    State(node): State<Arc<Node>>,
    Json(req): Json<InviteRequest>,
) -> Result<Json<Value>, AdminError> {
    let (code, expires) = crate::invitations::create(&node, req.partner, req.expires_ms)
        .await
        .map_err(invite_error)?;
    Ok(Json(json!({"code": code, "expires": expires})))
}

#[derive(Deserialize)]
struct ConnectRequest {
    code: String,
}

/// `guanxi connect CODE`: connects to the node that made the code.
async fn connect(
    State(node): State<Arc<Node>>,
    Json(req): Json<ConnectRequest>,
) -> Result<Json<Value>, AdminError> {
    let (peer, url) = crate::invitations::connect(&node, &req.code)
        .await
        .map_err(invite_error)?;
    Ok(Json(json!({"peer": peer, "url": url})))
}

#[derive(Deserialize)]
struct RotateRequest {
    /// How long the old key stays valid after the announcement (0: revoked).
    retire_after_ms: i64,
}

/// `guanxi key rotate`: a new signing key announced to every peer.
async fn rotate_key(
    State(node): State<Arc<Node>>,
    Json(req): Json<RotateRequest>,
) -> Result<Json<Value>, AdminError> {
    if !(0..=90 * 86_400_000).contains(&req.retire_after_ms) {
        return Err(bad_request(
            "bad_request",
            "the old key may stay valid for 0 to 90 days",
        ));
    }
    match crate::keys::rotate(&node, req.retire_after_ms).await {
        Ok(done) => Ok(Json(json!(done))),
        Err(e) => Err(AdminError(
            StatusCode::CONFLICT,
            "not_rotated".into(),
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct HandoverRequest {
    partner: String,
    peer: Option<String>,
}

/// `guanxi handover PARTNER`: a web partner's records to its node.
async fn hand_over(
    State(node): State<Arc<Node>>,
    Json(req): Json<HandoverRequest>,
) -> Result<Json<Value>, AdminError> {
    let peer = match req.peer.as_deref().map(str::parse) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            return Err(bad_request("bad_request", "--peer is not a node id"));
        }
    };
    match crate::handover::run(&node, &req.partner, peer).await {
        Ok(done) => Ok(Json(json!(done))),
        Err(e) => Err(AdminError(
            StatusCode::CONFLICT,
            "not_handed_over".into(),
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct TlsRotateRequest {
    /// How long to wait for every peer's receipt of the announcement.
    wait_ms: u64,
}

/// `guanxi tls rotate`: a new certificate announced, then presented.
async fn rotate_tls(
    State(node): State<Arc<Node>>,
    Json(req): Json<TlsRotateRequest>,
) -> Result<Json<Value>, AdminError> {
    let wait = Duration::from_millis(req.wait_ms.min(3_600_000));
    match crate::keys::rotate_tls(&node, wait).await {
        Ok(done) => Ok(Json(json!(done))),
        Err(e) => Err(AdminError(
            StatusCode::CONFLICT,
            "not_rotated".into(),
            e.to_string(),
        )),
    }
}

fn invite_error(e: crate::invitations::InviteError) -> AdminError {
    let status = match e.status() {
        503 => StatusCode::UNPROCESSABLE_ENTITY,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
    };
    AdminError(status, e.code().into(), e.to_string())
}

/// An error answer: `{"code","message"}`.
pub struct AdminError(StatusCode, String, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal".into(),
        e.to_string(),
    )
}

fn bad_request(code: &str, message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, code.into(), message.into())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

async fn peers(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let config = node.config();
    let alert_ms = i64::from(config.federation.alert_after_seconds) * 1000;
    let now = now_ms();
    let mut out = Vec::new();
    for p in &config.peers {
        let id = p.id.as_str();
        let delivery = read.delivery(id).map_err(internal)?;
        let queued = read.out_stream(id).map_err(internal)?.seq;
        let received = read.in_stream(id).map_err(internal)?.seq;
        out.push(json!({
            "id": id,
            "url": p.url,
            "enabled": p.enabled,
            "last_delivered_seq": delivery.delivered_seq,
            "last_queued_seq": queued,
            "backlog": queued - delivery.delivered_seq.min(queued),
            "last_received_seq": received,
            "attempts": delivery.attempts,
            "last_error": delivery.last_error,
            "next_retry_at": (delivery.next_attempt_at > now).then_some(delivery.next_attempt_at),
            "failing_since": delivery.failing_since,
            "failing_too_long": delivery.failing_since.is_some_and(|s| now - s > alert_ms),
            "halted": delivery.halted,
            "paused": delivery.paused,
        }));
    }
    Ok(Json(
        json!({"node": node.identity.id.as_str(), "now": now, "peers": out, "healing": node.healing.status()}),
    ))
}

/// The node's metrics (see [`crate::metrics`]).
pub async fn metrics(State(node): State<Arc<Node>>) -> Result<Response, AdminError> {
    let text = crate::metrics::render(&node).map_err(internal)?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(response)
}

/// The routes of the optional plain-HTTP metrics listener: `/metrics`,
/// `/healthz` and `/readyz`, nothing else (it is reachable over the
/// network, unlike the admin socket).
pub fn metrics_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::server::healthz))
        .route("/readyz", get(crate::server::readyz))
        .with_state(node)
}

#[derive(Deserialize)]
struct OutboxQuery {
    peer: Option<String>,
    limit: Option<usize>,
}

fn summary(bytes: &[u8]) -> Value {
    match SignedEnvelope::decode(bytes) {
        Ok(e) => {
            let f = e.fields();
            json!({"id": f.id, "seq": f.seq, "kind": f.kind, "subject": f.subject.as_str(), "created": f.created, "to": f.to.as_str(), "from": f.from.as_str()})
        }
        Err(err) => json!({"error": err.to_string()}),
    }
}

async fn outbox(
    State(node): State<Arc<Node>>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let config = node.config();
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut out = Vec::new();
    for p in config
        .peers
        .iter()
        .filter(|p| q.peer.as_deref().is_none_or(|w| w == p.id.as_str()))
    {
        let delivery = read.delivery(p.id.as_str()).map_err(internal)?;
        for (_, bytes) in read
            .out_envelopes(p.id.as_str(), delivery.delivered_seq + 1, limit)
            .map_err(internal)?
        {
            out.push(summary(&bytes));
        }
    }
    Ok(Json(json!({"pending": out})))
}

async fn outbox_entry(
    State(node): State<Arc<Node>>,
    Path((peer, seq)): Path<(String, u64)>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let Some(entry) = read.out_entry(&peer, seq).map_err(internal)? else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("no outgoing envelope {peer}/{seq}"),
        ));
    };
    Ok(Json(json!({
        "envelope": json_of(&entry.envelope),
        "receipt": entry.receipt.as_deref().map(json_of),
        "rejected": entry.rejected,
    })))
}

async fn inbox_entry(
    State(node): State<Arc<Node>>,
    Path((peer, seq)): Path<(String, u64)>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let Some((envelope, receipt)) = read.in_entry(&peer, seq).map_err(internal)? else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("no incoming envelope {peer}/{seq}"),
        ));
    };
    Ok(Json(
        json!({"envelope": json_of(&envelope), "receipt": json_of(&receipt)}),
    ))
}

/// Every envelope received from `peer`, in seq order, with its hash.
async fn inbox_list(
    State(node): State<Arc<Node>>,
    Path(peer): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let list: Vec<Value> = read
        .in_envelopes(&peer)
        .map_err(internal)?
        .iter()
        .map(|(_, bytes)| {
            let mut s = summary(bytes);
            s["hash"] = json!(guanxi_protocol::Sha256Hash::of(bytes).to_string());
            s["prev"] = json_of(bytes)["prev"].clone();
            s
        })
        .collect();
    Ok(Json(json!({"received": list})))
}

/// The shared record `subject` between this node and `peer`.
async fn record(
    State(node): State<Arc<Node>>,
    Path((peer, subject)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    match read.record(&peer, &subject).map_err(internal)? {
        Some(json) => Ok(Json(json_of(&json))),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("no record {subject} with {peer}"),
        )),
    }
}

/// The authority bookkeeping of a shared record (SPEC §12.1): its version,
/// what this node shows and what the authority confirmed, and what is still
/// pending or waiting for an earlier version.
async fn record_sync(
    State(node): State<Arc<Node>>,
    Path((peer, subject)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let shown = read.record(&peer, &subject).map_err(internal)?;
    let sync = read.record_sync(&peer, &subject).map_err(internal)?;
    if shown.is_none() && sync.is_none() {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("no record {subject} with {peer}"),
        ));
    }
    let sync = sync.map(|b| json_of(&b)).unwrap_or(Value::Null);
    let shown = shown.map(|b| json_of(&b)).unwrap_or(Value::Null);
    let follow = &sync["follow"];
    let confirmed = if follow.is_null() {
        shown.clone()
    } else {
        follow["confirmed"].clone()
    };
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    Ok(Json(json!({
        "version": sync["version"].as_u64().unwrap_or(0),
        "record": shown,
        "confirmed": confirmed,
        "pending": count(&follow["pending"]),
        "early": count(&follow["early"]),
        "refused": follow["refused"].clone(),
    })))
}

fn rejection_of(receipt: Option<&[u8]>) -> Value {
    receipt
        .and_then(|r| SignedReceipt::decode(r).ok())
        .and_then(|r| r.receipt.fields.reason)
        .map(|r| json!({"code": r.code.as_str(), "message": r.message}))
        .unwrap_or(Value::Null)
}

/// Recomputes every MDF balance from its entries and the kept lead
/// analysis from the leads; 409 naming each difference.
async fn ledger_verify(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let checked = node
        .reading(|read| {
            let (budgets, problems) = crate::mdf::verify(read)?;
            let mut analysis = crate::leads::aggregates::check(read)?;
            analysis.extend(crate::orders::revenue::check(read)?);
            analysis.extend(crate::service::aggregates::check(read)?);
            Ok((budgets, problems, analysis))
        })
        .await
        .map_err(internal)?;
    let (budgets, problems, analysis) = checked;
    if problems.is_empty() && analysis.is_empty() {
        return Ok(Json(
            json!({"budgets": budgets, "problems": [], "analysis": []}),
        ));
    }
    let text = problems
        .iter()
        .map(|(k, s, p)| format!("{k}/{s}: {}", p.join("; ")))
        .chain(analysis.iter().map(|p| format!("lead analysis {p}")))
        .collect::<Vec<_>>()
        .join(" | ");
    Err(AdminError(
        StatusCode::CONFLICT,
        "ledger_differs".into(),
        format!("ledger differences: {text}"),
    ))
}

async fn rejected(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let mut outgoing = Vec::new();
    for (peer, seq, _) in read.out_rejected().map_err(internal)? {
        if let Some(entry) = read.out_entry(&peer, seq).map_err(internal)? {
            let mut s = summary(&entry.envelope);
            s["reason"] = rejection_of(entry.receipt.as_deref());
            outgoing.push(s);
        }
    }
    let mut incoming = Vec::new();
    for (peer, seq, _) in read.in_rejected().map_err(internal)? {
        if let Some((envelope, receipt)) = read.in_entry(&peer, seq).map_err(internal)? {
            let mut s = summary(&envelope);
            s["reason"] = rejection_of(Some(&receipt));
            incoming.push(s);
        }
    }
    Ok(Json(json!({"outgoing": outgoing, "incoming": incoming})))
}

#[derive(Deserialize)]
struct SendRequest {
    peer: String,
    subject: String,
    kind: String,
    body: Value,
}

fn parse_peer(node: &Node, peer: &str) -> Result<NodeId, AdminError> {
    let id: NodeId = peer
        .parse()
        .map_err(|e| bad_request("bad_peer", format!("{e}")))?;
    if node.peer(&id).is_none() {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "unknown_peer".into(),
            format!("{id} is not a configured peer"),
        ));
    }
    Ok(id)
}

async fn send_message(
    node: &Node,
    peer: NodeId,
    subject: RecordId,
    message: Message,
) -> Result<Value, AdminError> {
    match node.engine.send(peer.clone(), subject, message).await {
        Ok(sent) => {
            node.wake(&peer);
            Ok(
                json!({"id": sent.id, "seq": sent.seq, "hash": sent.hash.to_string(), "peer": peer.as_str()}),
            )
        }
        Err(SendError::Refused(e)) => Err(AdminError(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code.as_str().into(),
            e.message,
        )),
        Err(SendError::Engine(e)) => Err(internal(e)),
    }
}

async fn send(
    State(node): State<Arc<Node>>,
    Json(req): Json<SendRequest>,
) -> Result<Json<Value>, AdminError> {
    let peer = parse_peer(&node, &req.peer)?;
    let subject: RecordId = req
        .subject
        .parse()
        .map_err(|e| bad_request("bad_subject", format!("{e}")))?;
    let body = guanxi_protocol::canonical::canonicalize(&req.body)
        .map_err(|e| bad_request("bad_body", e.to_string()))
        .and_then(|b| {
            guanxi_protocol::canonical::parse_strict(&b)
                .map_err(|e| bad_request("bad_body", e.to_string()))
        })?;
    let message =
        Message::decode(&req.kind, &body).map_err(|e| bad_request("bad_body", e.to_string()))?;
    Ok(Json(send_message(&node, peer, subject, message).await?))
}

/// Clears a halted or paused stream (after an admin fixed what broke it)
/// and retries now. The worker does it on its own state (which is newer than
/// the store's: receipts commit behind it) and stores the result; the answer
/// comes once it has.
async fn resume(
    State(node): State<Arc<Node>>,
    Path(peer): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let peer = parse_peer(&node, &peer)?;
    let was = node
        .store
        .read()
        .and_then(|r| r.delivery(peer.as_str()))
        .map_err(internal)?;
    tell_worker(&node, &peer, false).await;
    tracing::warn!(%peer, "delivery resumed by an admin (was halted: {})", was.halted.as_deref().unwrap_or("no"));
    Ok(Json(
        json!({"peer": peer.as_str(), "was_halted": was.halted, "was_paused": was.paused}),
    ))
}

/// Re-reads the config file (as SIGHUP does); 422 with the reason when the
/// file is refused (the old configuration stays).
async fn reload(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    match node.reloader.get().map(|r| r()) {
        Some(Ok(what)) => {
            tracing::info!("reload: {what}");
            Ok(Json(json!({"reloaded": true, "message": what})))
        }
        Some(Err(e)) => Err(AdminError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config_refused".into(),
            e,
        )),
        None => Err(AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready".into(),
            "the daemon is still starting".into(),
        )),
    }
}

/// Pauses delivery to a peer until `resume` (maintenance, or a test that
/// cuts a link): what is queued stays queued; what the peer sends still
/// arrives.
async fn pause(
    State(node): State<Arc<Node>>,
    Path(peer): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let peer = parse_peer(&node, &peer)?;
    tell_worker(&node, &peer, true).await;
    tracing::warn!(%peer, "delivery paused by an admin");
    Ok(Json(json!({"peer": peer.as_str(), "paused": true})))
}

/// Asks the peer's delivery worker to pause or resume and waits (up to 10 s)
/// until it stored its new state. Without a running worker (a disabled
/// peer) the request waits for it.
async fn tell_worker(node: &Node, peer: &NodeId, pause: bool) {
    let signal = node.waker(peer);
    // Registered before asking, so the worker's answer cannot be missed.
    let done = signal.acknowledged.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    if pause {
        node.pause(peer);
    } else {
        node.resume(peer);
    }
    if node.peer(peer).is_some_and(|p| p.config.enabled)
        && tokio::time::timeout(std::time::Duration::from_secs(10), done)
            .await
            .is_err()
    {
        tracing::warn!(%peer, "the delivery worker did not confirm in time");
    }
}

fn account_error(e: crate::accounts::AccountError) -> AdminError {
    use crate::accounts::AccountError as E;
    match e {
        E::NoSuchUser(_) | E::NoSuchPartner(_) => {
            AdminError(StatusCode::NOT_FOUND, "not_found".into(), e.to_string())
        }
        E::Exists(_) => AdminError(StatusCode::CONFLICT, "exists".into(), e.to_string()),
        E::BadUsername(_) | E::PartnerMismatch => bad_request("bad_request", e.to_string()),
        other => internal(other),
    }
}

async fn users(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let list: Vec<Value> = crate::accounts::list_users(&read)
        .map_err(internal)?
        .into_iter()
        .map(|u| json!({"username": u.username, "display_name": u.display_name, "role": u.role, "partner": u.partner, "disabled": u.disabled}))
        .collect();
    Ok(Json(json!({"users": list})))
}

#[derive(Deserialize)]
struct AddUser {
    username: String,
    display_name: Option<String>,
    role: String,
    partner: Option<String>,
}

async fn add_user(
    State(node): State<Arc<Node>>,
    Json(req): Json<AddUser>,
) -> Result<Response, AdminError> {
    let role = req
        .role
        .parse()
        .map_err(|e: String| bad_request("bad_role", e))?;
    let password = crate::accounts::add_user(
        &node.engine,
        &req.username,
        req.display_name.as_deref().unwrap_or(""),
        role,
        req.partner,
        now_ms(),
    )
    .await
    .map_err(account_error)?;
    Ok(crate::idempotency::holds_secret(Json(
        json!({"username": req.username, "password": password}),
    )))
}

async fn reset_password(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let password = crate::accounts::reset_password(&node.engine, &name)
        .await
        .map_err(account_error)?;
    Ok(crate::idempotency::holds_secret(Json(
        json!({"username": name, "password": password}),
    )))
}

async fn disable_user(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    crate::accounts::update_user(&node.engine, &name, |u| u.disabled = true)
        .await
        .map_err(account_error)?;
    Ok(Json(json!({"username": name, "disabled": true})))
}

async fn tokens(State(node): State<Arc<Node>>) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let list: Vec<Value> = crate::api::list_tokens(&read)
        .map_err(internal)?
        .into_iter()
        .map(|(_, t)| json!({"name": t.name, "username": t.username, "created": t.created, "revoked": t.revoked}))
        .collect();
    Ok(Json(json!({"tokens": list})))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    username: String,
}

async fn create_token(
    State(node): State<Arc<Node>>,
    Json(req): Json<NewToken>,
) -> Result<Response, AdminError> {
    if req.name.trim().is_empty() {
        return Err(bad_request("bad_name", "a token needs a name"));
    }
    match crate::api::create_token(&node.engine, req.name.trim(), &req.username, now_ms()).await {
        Ok(Ok(secret)) => Ok(crate::idempotency::holds_secret(Json(
            json!({"name": req.name.trim(), "username": req.username, "token": secret}),
        ))),
        Ok(Err(message)) => Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            message,
        )),
        Err(e) => Err(internal(e)),
    }
}

async fn revoke_token(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let read = node.store.read().map_err(internal)?;
    let count = crate::api::revoke_token(&node.engine, &read, &name)
        .await
        .map_err(internal)?;
    if count == 0 {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("no active token named {name}"),
        ));
    }
    Ok(Json(json!({"name": name, "revoked": count})))
}

#[derive(Deserialize)]
struct PingRequest {
    peer: String,
    timeout_ms: Option<u64>,
}

async fn ping(
    State(node): State<Arc<Node>>,
    Json(req): Json<PingRequest>,
) -> Result<Json<Value>, AdminError> {
    let peer = parse_peer(&node, &req.peer)?;
    let subject: RecordId = format!("ping-{}", uuid::Uuid::now_v7())
        .parse()
        .map_err(|e| internal(format!("{e}")))?;
    let message = Message::Ping(guanxi_protocol::messages::Ping {
        note: "guanxi ping".into(),
    });
    let sent = send_message(&node, peer.clone(), subject, message).await?;
    let seq = sent["seq"].as_u64().unwrap_or(0);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(req.timeout_ms.unwrap_or(30_000).min(600_000));
    loop {
        // Register for the wake-up before looking, so none is missed.
        let stored = node.receipts_stored.notified();
        let entry = node
            .store
            .read()
            .and_then(|r| r.out_entry(peer.as_str(), seq))
            .map_err(internal)?;
        if let Some(receipt) = entry.and_then(|e| e.receipt) {
            // The delivery worker stored it only after verifying it.
            let decoded = SignedReceipt::decode(&receipt).map_err(internal)?;
            return Ok(Json(json!({
                "sent": sent,
                "receipt": json_of(&receipt),
                "verified_with": decoded.receipt.sig.kid.0,
            })));
        }
        if tokio::time::Instant::now() > deadline {
            let delivery = node
                .store
                .read()
                .and_then(|r| r.delivery(peer.as_str()))
                .map_err(internal)?;
            return Err(AdminError(
                StatusCode::GATEWAY_TIMEOUT,
                "no_receipt".into(),
                format!(
                    "ping queued as seq {seq} but no receipt yet; it stays queued. Last error: {}",
                    delivery.last_error.unwrap_or_else(|| "none".into())
                ),
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), stored).await;
    }
}

/// Binds the admin socket at `path` (replacing a stale one) with mode 0600.
/// It is bound under a temporary name, restricted, and only then moved to
/// `path`: no one can ever connect to it at `path` with a wider mode.
pub fn bind(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension(format!("sock.{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_file(&staging)?;
    }
    let listener = tokio::net::UnixListener::bind(&staging)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staging, path)?;
    Ok(listener)
}

/// The CLI side: one request to the admin socket. Returns the status and JSON body.
pub async fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    request_keyed(socket, method, path, body, None).await
}

/// [`request`] with an `Idempotency-Key`: a retry with the same key gets the
/// first call's answer instead of doing it again.
pub async fn request_keyed(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> Result<(u16, Value), String> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let mut sender = open_socket(socket).await?;
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "guanxi")
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        request = request.header(crate::idempotency::HEADER, key);
    }
    let request = request
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("admin request: {e}"))?;
    let status = response.status().as_u16();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("admin answer: {e}"))?;
    let bytes = collected.to_bytes();
    // JSON answers parse; the text of /metrics comes back as a string.
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// An HTTP/1 connection to the daemon's admin socket.
async fn open_socket<B>(
    socket: &std::path::Path,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!("cannot reach the daemon at {} ({e}); is `guanxi serve` running with this data directory?", socket.display())
    })?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("admin socket handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Whether a daemon answers on `socket`.
pub async fn reachable(socket: &std::path::Path) -> bool {
    tokio::net::UnixStream::connect(socket).await.is_ok()
}

/// GETs `path` from the daemon and writes the answer's body to `out` as it
/// arrives (a backup); an answer other than 200 is an error with its text.
pub async fn download(
    socket: &std::path::Path,
    path: &str,
    out: &mut std::fs::File,
) -> Result<u64, String> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use std::io::Write;
    let mut sender = open_socket::<Empty<Bytes>>(socket).await?;
    let request = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header("host", "guanxi")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("admin request: {e}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("admin answer: {e}"))?
            .to_bytes();
        return Err(format!(
            "the daemon answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the daemon broke off the answer: {e}"))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .map_err(|e| format!("writing the file: {e}"))?;
            written += data.len() as u64;
        }
    }
    Ok(written)
}
