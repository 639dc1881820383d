//! `Idempotency-Key` on API and admin calls that change something: a client
//! whose call was cut (a timeout, a restart) retries with the same key and
//! gets the first call's answer instead of a second order, lead or message.
//!
//! How it holds: the layer ([`guard`]) gives the handler a claim; the first
//! engine job the handler runs takes it, and the engine writes the key into
//! the store **in that job's transaction** (`claim`), so the key is used if
//! and only if the change committed. After the handler answers, the layer
//! stores the answer under the key. A retry finds the key: with its answer,
//! it gets that answer again (`Idempotent-Replayed: true`); without one
//! (the node stopped between the commit and storing the answer) it gets 409
//! `idempotency_answer_lost` — the change happened once and is not redone.
//! The same key with another request (method, path, body) is refused (422);
//! two calls with the same key at once: the second gets 409
//! `idempotency_in_progress`. Keys are scoped by caller (the API token, or
//! the admin socket) and kept [`KEEP_MS`].

use crate::engine::{Engine, EngineError};
use crate::node::Node;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guanxi_adapters::store::{Doc, Tables};
use guanxi_protocol::{Millis, Sha256Hash};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// How long a key and its answer are kept.
pub const KEEP_MS: Millis = 24 * 3600 * 1000;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Request bodies hashed at most (larger calls are refused by their
/// handlers' own limits long before).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Answers stored at most; a larger answer is not kept (a retry then gets
/// `idempotency_answer_lost`).
const MAX_ANSWER: usize = 1024 * 1024;

/// The header clients send, and the one replays carry.
pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";

/// A key as the engine writes it: `scope␟key`, and the request's hash.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub request: String,
}

/// What is stored under a key.
#[derive(Serialize, Deserialize)]
struct Entry {
    request: String,
    at: Millis,
    answer: Option<Answer>,
    /// The answer held a secret (a one-time password, a token) and was not
    /// kept: secrets are never stored in clear.
    #[serde(default)]
    withheld: bool,
}

/// Marks an answer that holds a secret: it is never stored, and a retry is
/// told the call was done (`idempotency_answer_withheld`).
#[derive(Clone, Copy)]
pub struct SecretAnswer;

/// `response`, marked as holding a secret (see [`SecretAnswer`]).
pub fn holds_secret(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(SecretAnswer);
    response
}

#[derive(Serialize, Deserialize)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// The claim of the call being handled, and what became of it.
enum Slot {
    Free(Claim),
    Taken,
    Committed,
    Replayed,
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<Slot>>;
}

/// The claim for the engine job about to be queued, if the call carries a
/// key that no job of it has used yet.
pub fn take_claim() -> Option<Claim> {
    CURRENT
        .try_with(|slot| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Free(claim) => Some(claim),
                other => {
                    *slot = other;
                    None
                }
            }
        })
        .ok()
        .flatten()
}

/// Records what became of the job that took the claim: committed, replayed
/// (the key was used before), or failed (the claim is free again).
pub fn settle<T>(result: &Result<T, EngineError>) {
    let _ = CURRENT.try_with(|slot| {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*slot, Slot::Taken) {
            return;
        }
        *slot = match result {
            Ok(_) => Slot::Committed,
            Err(EngineError::Replayed) => Slot::Replayed,
            Err(_) => match PENDING.try_with(|c| c.clone()) {
                Ok(claim) => Slot::Free(claim),
                Err(_) => Slot::Replayed,
            },
        };
    });
}

tokio::task_local! {
    /// The call's claim, to free it again after a failed job.
    static PENDING: Claim;
}

/// In the engine's transaction: uses the key of `claim` for this job, or
/// answers false when a committed job used it already.
pub fn claim(w: &mut Tables<'_>, claim: &Claim, now: Millis) -> Result<bool, EngineError> {
    if w.doc(Doc::Idempotency, &claim.id)?.is_some() {
        return Ok(false);
    }
    let entry = Entry {
        request: claim.request.clone(),
        at: now,
        answer: None,
        withheld: false,
    };
    let json = serde_json::to_vec(&entry).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    w.put_doc(Doc::Idempotency, &claim.id, &json)?;
    w.put_doc(Doc::IdempotencyExpiry, &expiry_key(now, &claim.id), b"")?;
    Ok(true)
}

fn expiry_key(at: Millis, id: &str) -> String {
    format!("{:020}\u{1f}{id}", at.max(0))
}

/// Deletes keys older than [`KEEP_MS`], at most `limit` per call; answers
/// how many went.
pub async fn purge(engine: &Engine, now: Millis, limit: usize) -> Result<usize, EngineError> {
    let end = expiry_key(now - KEEP_MS, "");
    engine
        .local(move |t| {
            let due = t.docs_before(Doc::IdempotencyExpiry, &end, limit)?;
            for (key, _) in &due {
                if let Some((_, id)) = key.split_once('\u{1f}') {
                    t.delete_doc(Doc::Idempotency, id)?;
                }
                t.delete_doc(Doc::IdempotencyExpiry, key)?;
            }
            Ok(due.len())
        })
        .await
}

/// Calls with the same key being handled now.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<String>>);

struct Entered<'a>(&'a InFlight, String);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response()
}

/// The layer on the API and the admin socket (see the module's comment).
pub async fn guard(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_string()
        }
        _ => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            );
        }
    };
    // The caller: an API token (by its hash), or the admin socket.
    let scope = match request.headers().get(header::AUTHORIZATION) {
        Some(auth) => format!("api:{}", Sha256Hash::of(auth.as_bytes())),
        None if request.uri().path().starts_with("/admin/") => "admin".to_string(),
        // No credentials: the handler refuses it anyway.
        None => return next.run(request).await,
    };
    let id = format!("{scope}\u{1f}{key}");
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "request body too large",
            );
        }
    };
    let mut hasher = Vec::with_capacity(body.len() + 256);
    hasher.extend_from_slice(parts.method.as_str().as_bytes());
    hasher.push(b'\n');
    hasher.extend_from_slice(parts.uri.to_string().as_bytes());
    hasher.push(b'\n');
    if let Some(t) = parts.headers.get(header::CONTENT_TYPE) {
        hasher.extend_from_slice(t.as_bytes());
    }
    hasher.push(b'\n');
    hasher.extend_from_slice(&body);
    let request_hash = Sha256Hash::of(&hasher).to_string();
    drop(hasher);

    let inflight = &node.idempotency;
    if !inflight
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone())
    {
        return refusal(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a call with this Idempotency-Key is being handled; retry when it has answered",
        );
    }
    let _entered = Entered(inflight, id.clone());

    if let Some(answer) = stored(&node, &id, &request_hash) {
        return answer;
    }
    let claim = Claim {
        id: id.clone(),
        request: request_hash.clone(),
    };
    let slot = Arc::new(Mutex::new(Slot::Free(claim.clone())));
    let request = Request::from_parts(parts, Body::from(body));
    let response = CURRENT
        .scope(slot.clone(), PENDING.scope(claim, next.run(request)))
        .await;
    let outcome = std::mem::replace(
        &mut *slot.lock().unwrap_or_else(|p| p.into_inner()),
        Slot::Taken,
    );
    match outcome {
        Slot::Committed => keep(&node, id, response).await,
        Slot::Replayed => stored(&node, &id, &request_hash).unwrap_or_else(|| {
            refusal(
                StatusCode::CONFLICT,
                "idempotency_answer_lost",
                "this call was carried out before, but its answer was lost; look the result up",
            )
        }),
        // Nothing was changed under the key: the answer is the handler's.
        Slot::Free(_) | Slot::Taken => response,
    }
}

/// The answer stored under `id`, as a response, when the key was used.
fn stored(node: &Node, id: &str, request_hash: &str) -> Option<Response> {
    let bytes = match node.store.read().and_then(|r| r.doc(Doc::Idempotency, id)) {
        Ok(b) => b?,
        Err(e) => {
            return Some(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal",
                &format!("cannot read the store: {e}"),
            ));
        }
    };
    let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
        return Some(refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the stored answer of this Idempotency-Key is unreadable",
        ));
    };
    if entry.request != request_hash {
        return Some(refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request (method, path or body differ)",
        ));
    }
    if entry.withheld {
        return Some(refusal(
            StatusCode::CONFLICT,
            "idempotency_answer_withheld",
            "this call was carried out before; its answer held a secret, which is never kept: reset the password or create a new token",
        ));
    }
    let Some(answer) = entry.answer else {
        return Some(refusal(
            StatusCode::CONFLICT,
            "idempotency_answer_lost",
            "this call was carried out before, but its answer was lost; look the result up",
        ));
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    if let Some(t) = answer
        .content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Some(response)
}

/// Stores `response` under `id` (its key was used by this call's commit)
/// and returns it.
async fn keep(node: &Node, id: String, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let withheld = parts.extensions.get::<SecretAnswer>().is_some();
    let body = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(b) => b,
        Err(_) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the answer could not be read",
            );
        }
    };
    let text = if withheld {
        Some("")
    } else {
        std::str::from_utf8(&body).ok()
    };
    if let Some(text) = text {
        let answer = Answer {
            status: parts.status.as_u16(),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: text.to_string(),
        };
        let stored = node
            .engine
            .local(move |t| {
                let Some(bytes) = t.doc(Doc::Idempotency, &id)? else {
                    return Ok(());
                };
                let mut entry: Entry = serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Corrupt(e.to_string()))?;
                if withheld {
                    entry.withheld = true;
                } else {
                    entry.answer = Some(Answer {
                        status: answer.status,
                        content_type: answer.content_type.clone(),
                        body: answer.body.clone(),
                    });
                }
                let json =
                    serde_json::to_vec(&entry).map_err(|e| EngineError::Corrupt(e.to_string()))?;
                t.put_doc(Doc::Idempotency, &id, &json)?;
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!("the answer of an idempotent call was not kept: {e}");
        }
    }
    Response::from_parts(parts, Body::from(body))
}
