//! The HTTPS server: routes, and running them over rustls until shutdown.
//!
//! `run` takes an already-bound listener and a shutdown future, so tests and
//! the daemon alike bind first (port 0 works) and decide when to stop.

use crate::inbox;
use crate::node::Node;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum_server::accept::Accept;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every route of the daemon.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(inbox::routes())
        .merge(crate::web::routes())
        .merge(crate::api::routes().layer(middleware::from_fn_with_state(
            node.clone(),
            crate::idempotency::guard,
        )))
        .route_layer(middleware::from_fn(crate::metrics::track))
        .with_state(node)
        .layer(middleware::from_fn(security_headers))
}

/// The security headers of every response, whatever answered it (pages,
/// errors, redirects, the stylesheet, the API, federation): HSTS, no
/// sniffing, no referrer, no powerful features, no framing; a strict CSP and
/// `no-store` unless the handler chose its own (pages set theirs; the
/// stylesheet may be cached).
async fn security_headers(request: Request, next: Next) -> Response {
    let cacheable = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let fixed = [
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
        ),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !cacheable && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether the node can take work: 503 naming the reason while the
/// database cannot be written (a full disk); the node recovers by itself.
pub async fn readyz(axum::extract::State(node): axum::extract::State<Arc<Node>>) -> Response {
    use axum::response::IntoResponse;
    if !node.engine.running() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "engine": "stopped"})),
        )
            .into_response();
    }
    if let Some(healing) = node.healing.status() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "healing": healing})),
        )
            .into_response();
    }
    if let Some(damage) = node.damage() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "damage": damage})),
        )
            .into_response();
    }
    match node.engine.storage_fault() {
        None => "ready\n".into_response(),
        Some(fault) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "ready": false,
                "storage": fault.message,
                "since": fault.since,
            })),
        )
            .into_response(),
    }
}

/// How the server treats its connections.
pub struct Limits {
    /// After shutdown, how long open requests may take to finish.
    pub grace: Duration,
    /// How long a client may take to send a request's headers (the TLS
    /// handshake has its own 10 s limit), and a new connection its first
    /// request.
    pub header_read_timeout: Duration,
    /// Where the open connections are counted, against the cap set with
    /// [`Connections::set_cap`] (see [`connection_cap`]): one more is closed
    /// as soon as it is accepted, so descriptors stay free for the store,
    /// the admin socket and deliveries to peers.
    pub connections: Arc<Connections>,
}

/// Descriptors kept free below the process's limit whatever the
/// configuration says: the store, log, attachments being read or written,
/// admin socket clients, the metrics listener.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// The connection cap actually used: the configured one, lowered when the
/// process's open-file limit (`soft_limit`, when known) would not leave
/// [`RESERVED_DESCRIPTORS`] plus two per outgoing peer connection free.
/// Never below 16.
pub fn connection_cap(configured: u32, soft_limit: Option<u64>, outgoing: u64) -> usize {
    let configured = u64::from(configured);
    let cap = match soft_limit {
        Some(limit) => configured.min(limit.saturating_sub(RESERVED_DESCRIPTORS + 2 * outgoing)),
        None => configured,
    };
    usize::try_from(cap.max(16)).unwrap_or(usize::MAX)
}

/// The process's soft limit on open files, when the system says.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The server's open connections against its cap (shared with `/metrics`).
pub struct Connections {
    permits: Arc<Semaphore>,
    cap: std::sync::atomic::AtomicUsize,
    refused: AtomicU64,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            permits: Arc::new(Semaphore::new(0)),
            cap: Default::default(),
            refused: Default::default(),
        }
    }
}

impl Connections {
    /// Allows `cap` connections at once (called once, before serving).
    pub fn set_cap(&self, cap: usize) {
        let before = self.cap.swap(cap, Ordering::SeqCst);
        if cap > before {
            self.permits.add_permits(cap - before);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap
            .load(Ordering::Relaxed)
            .saturating_sub(self.permits.available_permits())
    }

    /// The cap in force (0 before the server runs).
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Counts open connections and refuses those over the cap (the inner
/// acceptor, before TLS: a refused connection costs no handshake).
#[derive(Clone)]
struct Capped {
    connections: Arc<Connections>,
}

/// A connection holding its place under the cap until it closes.
struct Held {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl<S> Accept<TcpStream, S> for Capped {
    type Stream = Held;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Held, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(match self.connections.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Held {
                    stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                self.connections.refused.fetch_add(1, Ordering::Relaxed);
                Err(std::io::Error::other("connection cap reached"))
            }
        })
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets
/// open requests finish for up to `limits.grace`.
pub async fn run(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let grace = limits.grace;
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    let connections = limits.connections.clone();
    let mut server = axum_server::from_tcp_rustls(listener, tls)?
        .map(|tls| tls.acceptor(Capped { connections }))
        .first_request_timeout(limits.header_read_timeout);
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    server
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}
