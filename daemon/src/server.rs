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
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Every route of the daemon.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(inbox::routes())
        .merge(crate::web::routes())
        .merge(crate::api::routes())
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

async fn healthz() -> &'static str {
    "ok\n"
}

/// How the server treats its connections.
pub struct Limits {
    /// After shutdown, how long open requests may take to finish.
    pub grace: Duration,
    /// How long a client may take to send a request's headers (the TLS
    /// handshake has its own 10 s limit).
    pub header_read_timeout: Duration,
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets
/// open requests finish for up to `limits.grace`.
pub async fn run(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
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
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?;
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    server
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}
