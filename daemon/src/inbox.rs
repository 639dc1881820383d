//! The federation endpoints (SPEC §9): one envelope, a batch, the key document.
//!
//! A handler does SPEC §7 steps 1–6 itself (size, strict canonical parse,
//! sender, recipient, key, strict signature, clock) — in parallel, without the
//! store — and hands what passes to the engine for steps 7–11, which answers
//! only after the commit. Errors before the engine are plain JSON
//! `{"code","message"}` with the status of SPEC §10; nothing is stored.

use crate::clock::now_ms;
use crate::engine::{Inbound, InboundAnswer};
use crate::node::Node;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guanxi_protocol::canonical;
use guanxi_protocol::envelope::{MAX_BATCH, MAX_ENVELOPE_BYTES, Millis, SignedEnvelope};
use guanxi_protocol::messages::Message;
use guanxi_protocol::receipt::ReceiptFields;
use guanxi_protocol::{EnvelopeError, KeyId, NodeId, PublicKey, ReasonCode};
use std::sync::Arc;
use std::time::Duration;

/// Largest batch request body.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// How far ahead of our clock an envelope's `created` may be.
pub const MAX_CLOCK_SKEW_MS: Millis = 5 * 60 * 1000;

/// An answer without a receipt.
#[derive(Debug)]
pub struct FedError {
    pub code: ReasonCode,
    pub message: String,
}

impl FedError {
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        FedError {
            code,
            message: message.into(),
        }
    }

    fn json(&self) -> String {
        let body = serde_json::json!({"code": self.code.as_str(), "message": self.message});
        canonical::canonicalize(&body)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl From<EnvelopeError> for FedError {
    fn from(e: EnvelopeError) -> Self {
        FedError::new(e.reason(), e.to_string())
    }
}

fn json_response(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for FedError {
    fn into_response(self) -> Response {
        json_response(self.code.http_status(), self.json().into_bytes())
    }
}

/// How many federation requests are being read and checked, before their
/// sender is known: in all, and per client address. Bounds the memory
/// unauthenticated clients can take (SPEC §9: a busy node answers 503).
#[derive(Default)]
pub struct Admission {
    counts: std::sync::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>,
}

/// One admitted request; its place is freed when dropped.
pub struct Admitted<'a> {
    admission: &'a Admission,
    addr: std::net::IpAddr,
}

impl Admission {
    /// How many requests are admitted now.
    pub fn current(&self) -> usize {
        match self.counts.lock() {
            Ok(c) => c.0,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// Admits a request from `addr` if both limits allow it.
    pub fn enter(
        &self,
        addr: std::net::IpAddr,
        total: usize,
        per_address: usize,
    ) -> Option<Admitted<'_>> {
        let mut c = match self.counts.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let here = c.1.get(&addr).copied().unwrap_or(0);
        if c.0 >= total || here >= per_address {
            return None;
        }
        c.0 += 1;
        c.1.insert(addr, here + 1);
        Some(Admitted {
            admission: self,
            addr,
        })
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut c = match self.admission.counts.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        c.0 = c.0.saturating_sub(1);
        if let Some(n) = c.1.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.1.remove(&self.addr);
            }
        }
    }
}

fn busy() -> Response {
    let body = serde_json::json!({"code": "busy", "message": "too many requests are being read; retry later"});
    let mut r = json_response(503, body.to_string().into_bytes());
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Admits a federation request from `addr`, or `None` (answer [`busy`]).
fn admit(node: &Node, addr: std::net::SocketAddr) -> Option<Admitted<'_>> {
    let f = &node.config().federation;
    let (total, per) = (
        f.max_unchecked_requests as usize,
        f.max_unchecked_per_address as usize,
    );
    let admitted = node.fed_admission.enter(addr.ip(), total, per);
    if admitted.is_none() {
        tracing::debug!(addr = %addr.ip(), "federation request refused: too many being read");
    }
    admitted
}

/// The federation routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/fed/v1/envelope", post(post_envelope))
        .route("/fed/v1/batch", post(post_batch))
        .route("/fed/v1/keys", get(keys))
        .route("/fed/v1/introduce", post(introduce))
        .route("/fed/v1/heal", post(crate::heal::answer))
        .route("/fed/v1/files/{sha}", get(crate::library::files::fed_fetch))
}

async fn keys(State(node): State<Arc<Node>>) -> Response {
    json_response(200, node.key_document().to_vec())
}

/// An introduction from a node holding one of this node's invitations
/// (see [`crate::invitations`]): answered with this node's own.
async fn introduce(State(node): State<Arc<Node>>, body: axum::body::Bytes) -> Response {
    match crate::invitations::introduced(&node, &body).await {
        Ok(answer) => json_response(200, answer),
        Err(e) => {
            tracing::info!(error = %e, "an introduction was refused");
            let body = serde_json::json!({"code": e.code(), "message": e.to_string()});
            json_response(e.status(), body.to_string().into_bytes())
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("inbox: {e}");
    let body = serde_json::json!({"code": "internal", "message": "the node could not store the envelope; retry later"});
    json_response(503, body.to_string().into_bytes())
}

/// A refused body of up to this size is read and dropped before the answer
/// goes out: closing a connection with unread data resets it, and the
/// client would lose the answer that says what was wrong.
const DRAIN_MAX: usize = 4 * 1024 * 1024;

/// Reads and drops what is left of `body`, up to [`DRAIN_MAX`] bytes and
/// for at most two seconds (a client that sends slowly gets its answer
/// without holding the connection).
async fn drain<B>(mut body: B)
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let all = async {
        let mut read = 0;
        while read < DRAIN_MAX {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read += data.len();
                    }
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
}

/// Reads a request body of at most `limit` bytes, frame by frame; as soon
/// as its first two bytes are in, `looks_right` judges them, so a body that
/// is visibly not what the endpoint takes is refused without reading on
/// (what is left is drained, see [`DRAIN_MAX`]).
async fn read_body(
    body: Body,
    limit: usize,
    looks_right: fn(&[u8]) -> Result<(), FedError>,
) -> Result<Vec<u8>, FedError> {
    use http_body_util::BodyExt;
    let too_large = |detail: String| {
        FedError::new(
            ReasonCode::TooLarge,
            format!("request body over {limit} bytes, or unreadable: {detail}"),
        )
    };
    let mut body = http_body_util::Limited::new(body, limit);
    let mut bytes = Vec::new();
    let mut judged = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| too_large(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
        if !judged && bytes.len() >= 2 {
            if let Err(e) = looks_right(&bytes[..2]) {
                drain(body).await;
                return Err(e);
            }
            judged = true;
        }
    }
    if !judged {
        looks_right(&bytes)?;
    }
    Ok(bytes)
}

/// An envelope is a JSON object in canonical form: it starts with `{"`.
fn looks_like_envelope(start: &[u8]) -> Result<(), FedError> {
    if b"{\"".starts_with(start) && !start.is_empty() {
        Ok(())
    } else {
        Err(FedError::new(
            ReasonCode::BadJson,
            "an envelope is a canonical JSON object",
        ))
    }
}

/// A batch is a canonical JSON array of objects: it starts with `[{`
/// (`[]` is let through to be refused as an empty batch).
fn looks_like_batch(start: &[u8]) -> Result<(), FedError> {
    let plausible = matches!(start, [b'['] | [b'[', b'{'] | [b'[', b']']);
    if plausible {
        Ok(())
    } else {
        Err(FedError::new(
            ReasonCode::BadJson,
            "a batch is a JSON array of envelopes",
        ))
    }
}

fn request_timeout(node: &Node) -> Duration {
    Duration::from_secs(node.config().federation.request_timeout_seconds.into())
}

async fn post_envelope(
    State(node): State<Arc<Node>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = declared_too_large(&headers, MAX_ENVELOPE_BYTES, "an envelope") {
        drain(body).await;
        return refusal;
    }
    let Some(_admitted) = admit(&node, addr) else {
        return busy();
    };
    let timeout = request_timeout(&node);
    match tokio::time::timeout(timeout, one_envelope(node.clone(), body)).await {
        Ok(response) => response,
        Err(_) => internal("request timed out"),
    }
}

async fn one_envelope(node: Arc<Node>, body: Body) -> Response {
    let bytes = match read_body(body, MAX_ENVELOPE_BYTES, looks_like_envelope).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if node.healing.active() {
        return crate::heal::refusal();
    }
    let item = match check(&node, &bytes, now_ms()) {
        Ok(item) => item,
        Err(e) => return e.into_response(),
    };
    let peer = item.envelope.fields().from.clone();
    let _permit = acquire(&node, &peer).await;
    match node.engine.inbound(vec![item]).await {
        Ok(answers) => match answers.into_iter().next() {
            Some(InboundAnswer {
                http_status,
                receipt,
            }) => json_response(http_status, receipt),
            None => internal("engine gave no answer"),
        },
        Err(e) => internal(e),
    }
}

async fn acquire(node: &Node, peer: &NodeId) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match node.peer(peer) {
        Some(rt) => rt.permits.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// SPEC §7 steps 1–6: everything that needs no store.
pub fn check(node: &Node, bytes: &[u8], now: Millis) -> Result<Inbound, FedError> {
    check_decoded(node, SignedEnvelope::decode(bytes)?, now)
}

/// Refuses every envelope when this node does not read the version it is
/// written in (only a test build plays such a node; SPEC §9).
fn check_version() -> Result<(), FedError> {
    let reads = crate::identity::reads_versions();
    if reads.contains(&guanxi_protocol::envelope::PROTOCOL_VERSION) {
        return Ok(());
    }
    Err(FedError::new(
        ReasonCode::UnsupportedVersion,
        format!(
            "this node reads protocol versions {reads:?}, not {}",
            guanxi_protocol::envelope::PROTOCOL_VERSION
        ),
    ))
}

/// The key that must have signed something `from` sent to `to`, created
/// at `at` with key `kid` (SPEC §7 steps 2–4): `from` is an enabled peer,
/// `to` is this node, and `kid` is one of the peer's keys valid at `at`.
/// Envelopes and signed file fetches (SPEC §17) are checked alike.
pub fn sender_key(
    node: &Node,
    from: &NodeId,
    to: &NodeId,
    kid: &KeyId,
    at: Millis,
) -> Result<PublicKey, FedError> {
    let Some(peer) = node.peer(from) else {
        return Err(FedError::new(
            ReasonCode::UnknownSender,
            format!("{from} is not a configured peer of this node"),
        ));
    };
    if !peer.config.enabled {
        return Err(FedError::new(
            ReasonCode::SenderDisabled,
            format!("peer {from} is disabled here"),
        ));
    }
    if to != &node.identity.id {
        return Err(FedError::new(
            ReasonCode::WrongRecipient,
            format!("it is for {to}, this node is {}", node.identity.id),
        ));
    }
    let Some(key) = peer.config.keys.iter().find(|k| &k.kid == kid) else {
        return Err(FedError::new(
            ReasonCode::UnknownKey,
            format!("key {kid} is not configured for peer {from}"),
        ));
    };
    if !key.valid_at(at) {
        return Err(FedError::new(
            ReasonCode::KeyNotValid,
            format!("key {kid} of peer {from} is not valid at the time it was signed"),
        ));
    }
    Ok(key.public_key)
}

/// SPEC §7 steps 2–5 for an envelope given back while healing (§22),
/// with its body decoded; nothing is signed.
pub fn verified(node: &Node, envelope: SignedEnvelope) -> Result<Inbound, FedError> {
    let f = envelope.fields();
    let key = sender_key(node, &f.from, &f.to, &envelope.envelope.sig.kid, f.created)?;
    envelope.verify(&key)?;
    let message = Message::decode(&f.kind, &f.body);
    Ok(Inbound {
        envelope,
        message,
        presigned: None,
        decided: None,
    })
}

/// [`check`] after step 1 (the envelope is decoded).
fn check_decoded(node: &Node, envelope: SignedEnvelope, now: Millis) -> Result<Inbound, FedError> {
    check_version()?;
    let f = envelope.fields();
    let key = sender_key(node, &f.from, &f.to, &envelope.envelope.sig.kid, f.created)?;
    envelope.verify(&key)?;
    if f.created > now + MAX_CLOCK_SKEW_MS {
        return Err(FedError::new(
            ReasonCode::FromTheFuture,
            format!(
                "created is {} ms ahead of this node's clock (at most {MAX_CLOCK_SKEW_MS} allowed)",
                f.created - now
            ),
        ));
    }
    // A valid request shows the peer is alive: deliver what waits for it now.
    node.heard_from(&f.from);
    let message = Message::decode(&f.kind, &f.body);
    // Sign the common answer here, in parallel; the engine decides whether it fits.
    let presigned = ReceiptFields::for_envelope(&envelope, f.seq, None, now)
        .sign(&node.identity.key())
        .ok();
    Ok(Inbound {
        envelope,
        message,
        presigned,
        decided: None,
    })
}

async fn post_batch(
    State(node): State<Arc<Node>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = declared_too_large(&headers, MAX_BATCH_BYTES, "a batch request") {
        // Far over: not worth reading (the client learns from the reset).
        return refusal;
    }
    let Some(_admitted) = admit(&node, addr) else {
        return busy();
    };
    let timeout = request_timeout(&node);
    match tokio::time::timeout(timeout, batch(node.clone(), body)).await {
        Ok(response) => response,
        Err(_) => internal("request timed out"),
    }
}

/// A request whose declared length is over `limit`: refused before a byte
/// of it is read.
fn declared_too_large(
    headers: &axum::http::HeaderMap,
    limit: usize,
    what: &str,
) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    declared.filter(|n| *n > limit).map(|_| {
        FedError::new(
            ReasonCode::TooLarge,
            format!("{what} may be at most {limit} bytes"),
        )
        .into_response()
    })
}

async fn batch(node: Arc<Node>, body: Body) -> Response {
    let bytes = match read_body(body, MAX_BATCH_BYTES, looks_like_batch).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if node.healing.active() {
        return crate::heal::refusal();
    }
    // Parsing up to 16 MiB is CPU work: off the async threads.
    let elements = match tokio::task::spawn_blocking(move || split_batch(&bytes)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return internal(e),
    };
    let count = elements.len();
    let (items, first_error) = match check_all(&node, elements).await {
        Ok(checked) => checked,
        Err(e) => return internal(e),
    };
    let checked = items.len();
    let answers = if items.is_empty() {
        Vec::new()
    } else {
        let peer = items[0].envelope.fields().from.clone();
        let _permit = acquire(&node, &peer).await;
        match node.engine.inbound(items).await {
            Ok(a) => a,
            Err(e) => return internal(e),
        }
    };
    let stopped_early = answers.len() < checked || answers.last().is_some_and(|a| !a.continues());
    let mut results: Vec<Vec<u8>> = Vec::with_capacity(count);
    for a in &answers {
        let mut r = b"{\"receipt\":".to_vec();
        r.extend_from_slice(&a.receipt);
        r.push(b'}');
        results.push(r);
    }
    if !stopped_early && let Some(e) = first_error {
        results.push(format!("{{\"error\":{}}}", e.json()).into_bytes());
    }
    while results.len() < count {
        let e = FedError::new(
            ReasonCode::NotProcessed,
            "not processed: an earlier envelope of the batch failed",
        );
        results.push(format!("{{\"error\":{}}}", e.json()).into_bytes());
    }
    let mut body = b"{\"results\":[".to_vec();
    body.extend_from_slice(&results.join(&b","[..]));
    body.extend_from_slice(b"]}");
    json_response(200, body)
}

/// Checks batch elements (SPEC §7 steps 1–6) on two blocking threads, since
/// signature checks dominate; returns the checked prefix and the error that
/// ended it, if any.
async fn check_all(
    node: &Arc<Node>,
    elements: Vec<Element>,
) -> Result<(Vec<Inbound>, Option<FedError>), tokio::task::JoinError> {
    let now = now_ms();
    let mut first = elements;
    let second = first.split_off(first.len() / 2);
    let mut halves = Vec::new();
    for half in [first, second] {
        let node = node.clone();
        halves.push(tokio::task::spawn_blocking(move || {
            half.into_iter()
                .map(|(bytes, value)| {
                    let envelope = SignedEnvelope::decode_parsed(bytes, value)?;
                    check_decoded(&node, envelope, now)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut items = Vec::new();
    for half in halves {
        for checked in half.await? {
            match checked {
                Ok(item) => items.push(item),
                Err(e) => return Ok((items, Some(e))),
            }
        }
    }
    Ok((items, None))
}

/// One batch element: its exact (canonical) bytes and its parsed value.
type Element = (Vec<u8>, serde_json::Value);

/// Splits a batch body (the canonical JSON array of 1–100 envelopes) into
/// each envelope's exact bytes and parsed value.
fn split_batch(bytes: &[u8]) -> Result<Vec<Element>, FedError> {
    let value = canonical::parse_strict(bytes)
        .map_err(|e| FedError::new(ReasonCode::from_parse_error(&e.kind), e.to_string()))?;
    let serde_json::Value::Array(array) = value else {
        return Err(FedError::new(
            ReasonCode::BadJson,
            "a batch is a JSON array of envelopes",
        ));
    };
    if array.is_empty() || array.len() > MAX_BATCH {
        return Err(FedError::new(
            ReasonCode::BatchTooLarge,
            format!(
                "a batch holds 1 to {MAX_BATCH} envelopes, this one {}",
                array.len()
            ),
        ));
    }
    // The canonical form of an array is its elements' canonical forms,
    // comma-separated in brackets: compare piece by piece.
    let count = array.len();
    let mut elements = Vec::with_capacity(count);
    let mut at = 1;
    if bytes.first() != Some(&b'[') {
        return Err(FedError::new(
            ReasonCode::NotCanonical,
            "the batch body is not the canonical form of the array",
        ));
    }
    for (i, element) in array.into_iter().enumerate() {
        if !element.is_object() {
            return Err(FedError::new(
                ReasonCode::BadJson,
                format!("batch element {i} is not a JSON object: a batch is an array of envelopes"),
            ));
        }
        let canonical = canonical::canonicalize(&element)
            .map_err(|err| FedError::new(ReasonCode::BadJson, err.to_string()))?;
        let end = at + canonical.len();
        let separator = if i + 1 == count { b']' } else { b',' };
        if bytes.get(at..end) != Some(canonical.as_slice()) || bytes.get(end) != Some(&separator) {
            return Err(FedError::new(
                ReasonCode::NotCanonical,
                "the batch body is not the canonical form of the array",
            ));
        }
        at = end + 1;
        elements.push((canonical, element));
    }
    if at != bytes.len() {
        return Err(FedError::new(
            ReasonCode::NotCanonical,
            "the batch body is not the canonical form of the array",
        ));
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Any request body is split into envelopes or refused, never a panic.
        #[test]
        fn any_batch_body_is_split_or_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            elements in proptest::collection::vec("[{}\\[\\],:\"a-z0-9 ]{0,20}", 0..5),
        ) {
            let _ = split_batch(&bytes);
            let _ = split_batch(format!("[{}]", elements.join(",")).as_bytes());
        }
    }

    #[test]
    fn a_batch_of_non_objects_is_bad_json_as_a_whole() {
        for body in [&b"[1]"[..], b"[\"x\"]", b"[null]", b"[[]]"] {
            let err = split_batch(body).expect_err("refused");
            assert_eq!(
                err.code,
                ReasonCode::BadJson,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
