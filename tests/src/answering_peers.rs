//! A load generator that answers for many peer nodes at once, speaking the
//! real federation protocol: one HTTPS listener (a self-signed certificate
//! every peer entry pins) where peer `i` lives under the path `/<id>`, so
//! its URL is `https://127.0.0.1:<port>/<id>` and the sender posts to
//! `/<id>/fed/v1/envelope` or `/<id>/fed/v1/batch`.
//!
//! Each envelope is decoded and checked as a node would before its
//! business logic: strict canonical form, addressed to that peer, signed by
//! the sender's key, the next seq of the stream and chained to the previous
//! envelope's hash. The answer is a receipt signed with that peer's own key
//! (accepted, or `seq_gap` / `chain_broken` with the seq expected, answered
//! 409 as a node does). What the messages say is not applied: this stands
//! in for 2,000 daemons in benchmarks of the sender, not for their stores.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use guanxi_protocol::canonical;
use guanxi_protocol::crypto::{NodeKey, PublicKey, Sha256Hash, b64url};
use guanxi_protocol::envelope::SignedEnvelope;
use guanxi_protocol::reason::ReasonCode;
use guanxi_protocol::receipt::{ReceiptFields, Rejection};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One simulated peer: its key and where its stream from the sender stands.
struct Peer {
    key: NodeKey,
    stream: Mutex<Stream>,
}

/// The receiving end of the sender→peer stream.
#[derive(Default)]
struct Stream {
    /// Highest seq consumed.
    seq: u64,
    /// Hash of the envelope at `seq`.
    last: Option<Sha256Hash>,
}

struct Shared {
    sender: PublicKey,
    peers: HashMap<String, Peer>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// The running load generator.
pub struct AnsweringPeers {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// SHA-256 of its certificate, as the sender's `tls_cert_sha256`.
    pub cert_sha256: String,
    shared: Arc<Shared>,
}

impl AnsweringPeers {
    /// Starts answering for `count` peers named `h0000`, `h0001`, … whose
    /// keys come from [`peer_key`], accepting envelopes signed by `sender`.
    /// Certificate files go into `dir`.
    pub async fn start(
        dir: &Path,
        count: usize,
        sender: PublicKey,
    ) -> Result<AnsweringPeers, String> {
        guanxi::tls::install_crypto_provider();
        let (cert, key) = (dir.join("peers-cert.pem"), dir.join("peers-key.pem"));
        guanxi::tls::generate_self_signed(&cert, &key, &["127.0.0.1".to_string()])
            .map_err(|e| e.to_string())?;
        let tls = guanxi::tls::server_config(&cert, &key).map_err(|e| e.to_string())?;
        let cert_sha256 = guanxi::tls::fingerprint(&cert)
            .map_err(|e| e.to_string())?
            .to_string();
        let peers = (0..count)
            .map(|i| {
                (
                    peer_id(i),
                    Peer {
                        key: peer_key(i),
                        stream: Mutex::new(Stream::default()),
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            sender,
            peers,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/{peer}/fed/v1/envelope", post(envelope))
            .route("/{peer}/fed/v1/batch", post(batch))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )
        .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                eprintln!("answering peers stopped: {e}");
            }
        });
        Ok(AnsweringPeers {
            port,
            cert_sha256,
            shared,
        })
    }

    /// The `[[peers]]` block the sender needs for peer `i`.
    pub fn peer_block(&self, i: usize) -> String {
        format!(
            "\n[[peers]]\nid = \"{id}\"\nurl = \"https://127.0.0.1:{port}/{id}\"\nenabled = true\ntls_cert_sha256 = \"{cert}\"\n[[peers.keys]]\npublic_key = \"{key}\"\n",
            id = peer_id(i),
            port = self.port,
            cert = self.cert_sha256,
            key = b64url(&peer_key(i).public().to_bytes()),
        )
    }

    /// Envelopes accepted so far (each once: a resend is answered again but
    /// not counted).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Envelopes refused so far (bad form, signature, address or order).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

/// The node id of simulated peer `i`.
pub fn peer_id(i: usize) -> String {
    format!("h{i:04}")
}

/// The key of simulated peer `i` (fixed by `i`, so configs can be written
/// before the generator runs).
pub fn peer_key(i: usize) -> NodeKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    NodeKey::from_seed(&seed)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn refuse(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({"code": "bad_request", "message": message});
    (status, body.to_string()).into_response()
}

fn receipt_response(status: StatusCode, receipt: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        receipt,
    )
        .into_response()
}

/// Checks one envelope for `peer` and signs its receipt: (HTTP status the
/// single-envelope endpoint answers, receipt bytes), or why none can be made.
fn answer(shared: &Shared, peer: &str, bytes: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    let Some(p) = shared.peers.get(peer) else {
        return Err(format!("no simulated peer {peer}"));
    };
    let envelope = SignedEnvelope::decode(bytes).map_err(|e| e.to_string())?;
    if envelope.fields().to.as_str() != peer {
        return Err(format!(
            "envelope for {}, posted to {peer}",
            envelope.fields().to
        ));
    }
    envelope.verify(&shared.sender).map_err(|e| e.to_string())?;
    let seq = envelope.fields().seq;
    let mut stream = p.stream.lock().map_err(|_| "stream lock poisoned")?;
    let rejection = if seq <= stream.seq {
        // A resend of something consumed: answered again, not applied again.
        None
    } else if seq != stream.seq + 1 {
        Some(Rejection {
            code: ReasonCode::SeqGap,
            message: format!("expected seq {}", stream.seq + 1),
            expected_seq: Some(stream.seq + 1),
        })
    } else if envelope.fields().prev != stream.last {
        Some(Rejection {
            code: ReasonCode::ChainBroken,
            message: "prev does not name the previous envelope".into(),
            expected_seq: Some(stream.seq + 1),
        })
    } else {
        stream.seq = seq;
        stream.last = Some(envelope.hash);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        None
    };
    let status = if rejection.is_some() {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let receipt = ReceiptFields::for_envelope(&envelope, stream.seq, rejection, now_ms())
        .sign(&p.key)
        .map_err(|e| e.to_string())?;
    Ok((status, receipt.bytes))
}

async fn envelope(
    State(shared): State<Arc<Shared>>,
    UrlPath(peer): UrlPath<String>,
    body: Bytes,
) -> Response {
    match answer(&shared, &peer, &body) {
        Ok((status, receipt)) => receipt_response(status, receipt),
        Err(message) => {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            refuse(StatusCode::BAD_REQUEST, message)
        }
    }
}

/// A batch: one result per envelope, `{"results": [{"receipt": …} | {"error": …}]}`.
async fn batch(
    State(shared): State<Arc<Shared>>,
    UrlPath(peer): UrlPath<String>,
    body: Bytes,
) -> Response {
    let items = match canonical::parse_strict(&body) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => return refuse(StatusCode::BAD_REQUEST, "a batch is a JSON array".into()),
    };
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        let result = canonical::canonicalize(item)
            .map_err(|e| e.to_string())
            .and_then(|bytes| answer(&shared, &peer, &bytes));
        results.push(match result {
            Ok((_, receipt)) => match serde_json::from_slice::<serde_json::Value>(&receipt) {
                Ok(r) => serde_json::json!({"receipt": r}),
                Err(e) => {
                    serde_json::json!({"error": {"code": "internal", "message": e.to_string()}})
                }
            },
            Err(message) => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                serde_json::json!({"error": {"code": "bad_request", "message": message}})
            }
        });
    }
    let body = serde_json::json!({ "results": results });
    match canonical::canonicalize(&body) {
        Ok(bytes) => receipt_response(StatusCode::OK, bytes),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
