//! The HTTPS server: routes, and running them over rustls until shutdown.
//!
//! `run` takes an already-bound listener and a shutdown future, so tests and
//! the daemon alike bind first (port 0 works) and decide when to stop.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What request handlers share.
pub struct AppState {
    pub node_id: String,
    pub node_name: String,
    /// Canonical bytes of the key document.
    pub key_document: Vec<u8>,
}

/// Every route of the daemon.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .route("/fed/v1/keys", get(keys))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn keys(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.key_document.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A minimal landing page until the web view exists.
async fn home(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Guanxi — {name}</title></head>\
         <body><h1>Guanxi</h1><p>Node <code>{id}</code> ({name}) is running.</p>\
         <p><a href=\"/fed/v1/keys\">Key document</a></p></body></html>",
        id = escape(&state.node_id),
        name = escape(&state.node_name),
    );
    (StatusCode::OK, Html(page))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets
/// open requests finish for up to `grace`.
pub async fn run(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    .handle(handle)
    .serve(app.into_make_service())
    .await
}
