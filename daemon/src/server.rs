//! The HTTPS server: routes, and running them over rustls until shutdown.
//!
//! `run` takes an already-bound listener and a shutdown future, so tests and
//! the daemon alike bind first (port 0 works) and decide when to stop.

use crate::inbox;
use crate::node::Node;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Every route of the daemon.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .merge(inbox::routes())
        .with_state(node)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// A minimal landing page until the web view exists.
async fn home(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let config = node.config();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Guanxi — {name}</title></head>\
         <body><h1>Guanxi</h1><p>Node <code>{id}</code> ({name}) is running.</p>\
         <p><a href=\"/fed/v1/keys\">Key document</a></p></body></html>",
        id = escape(node.identity.id.as_str()),
        name = escape(&config.node_name),
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
