//! The HTTPS server: routes, and running them over rustls until shutdown.
//!
//! `run` takes an already-bound listener and a shutdown future, so tests and
//! the daemon alike bind first (port 0 works) and decide when to stop.

use crate::inbox;
use crate::node::Node;
use axum::Router;
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
}

async fn healthz() -> &'static str {
    "ok\n"
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
    .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
    .await
}
