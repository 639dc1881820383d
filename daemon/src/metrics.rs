//! The node's Prometheus metrics (prometheus-client): what is measured as
//! it happens (delivery round trips per peer, group commits, HTTP requests
//! by route and status), kept in one process-wide set, and what is read
//! from the store and the node at each scrape (per-peer stream state and
//! backlog age, connections, timers, whole-table reads). Served by the
//! metrics listener and the admin socket at `/metrics`.

use crate::node::Node;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds from 1 ms to about 33 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What is measured as it happens.
struct Live {
    delivery_seconds: Histograms,
    commit_seconds: Histogram,
    commit_jobs: Histogram,
    http_requests: Family<Labels, Counter>,
    http_seconds: Histograms,
}

static LIVE: LazyLock<Live> = LazyLock::new(|| Live {
    delivery_seconds: Family::new_with_constructor(seconds),
    commit_seconds: seconds(),
    commit_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
    http_requests: Family::default(),
    http_seconds: Family::new_with_constructor(seconds),
});

/// One delivery request to `peer` answered after `took`.
pub fn delivery(peer: &str, took: Duration) {
    LIVE.delivery_seconds
        .get_or_create(&vec![("peer".into(), peer.into())])
        .observe(took.as_secs_f64());
}

/// One group commit of `jobs` jobs that took `took`.
pub fn group_commit(jobs: usize, took: Duration) {
    LIVE.commit_seconds.observe(took.as_secs_f64());
    LIVE.commit_jobs.observe(jobs as f64);
}

/// One HTTP request answered: its route pattern (`/leads/{id}`, never the
/// path itself, so the label set stays small), method and status.
pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    LIVE.http_requests
        .get_or_create(&vec![
            ("route".into(), route.into()),
            ("method".into(), method.into()),
            ("status".into(), status.to_string()),
        ])
        .inc();
    LIVE.http_seconds
        .get_or_create(&vec![("route".into(), route.into())])
        .observe(took.as_secs_f64());
}

/// Counts every request of a router by route, method and status.
pub async fn track(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn gauge_family() -> Family<Labels, Gauge> {
    Family::default()
}

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

/// The metrics text (OpenMetrics) of `node` now.
pub fn render(node: &Node) -> Result<String, guanxi_adapters::store::StoreError> {
    let read = node.store.read()?;
    let config = node.config();
    let alert_ms = i64::from(config.federation.alert_after_seconds) * 1000;
    let now = crate::clock::now_ms();
    let mut registry = Registry::default();

    let peers: [(&str, &str, Family<Labels, Gauge>); 8] = [
        (
            "guanxi_peer_enabled",
            "1 when the peer is enabled",
            gauge_family(),
        ),
        (
            "guanxi_peer_backlog",
            "outgoing envelopes not yet receipted",
            gauge_family(),
        ),
        (
            "guanxi_peer_delivered_seq",
            "last outgoing seq with a stored receipt",
            gauge_family(),
        ),
        (
            "guanxi_peer_received_seq",
            "last incoming seq consumed",
            gauge_family(),
        ),
        (
            "guanxi_peer_delivery_attempts",
            "consecutive failed delivery attempts",
            gauge_family(),
        ),
        (
            "guanxi_peer_failing",
            "1 when deliveries have failed longer than alert_after_seconds",
            gauge_family(),
        ),
        (
            "guanxi_peer_halted",
            "1 when the peer reported a broken stream",
            gauge_family(),
        ),
        (
            "guanxi_peer_backlog_age_seconds",
            "age of the oldest outgoing envelope not yet receipted (0 when none)",
            gauge_family(),
        ),
    ];
    for p in &config.peers {
        let id = p.id.as_str();
        let d = read.delivery(id)?;
        let queued = read.out_stream(id)?.seq;
        let oldest = if queued > d.delivered_seq {
            read.out_envelopes(id, d.delivered_seq + 1, 1)?
                .first()
                .and_then(|(_, bytes)| {
                    guanxi_protocol::envelope::SignedEnvelope::decode(bytes).ok()
                })
                .map(|e| ((now - e.envelope.fields.created).max(0)) / 1000)
                .unwrap_or(0)
        } else {
            0
        };
        let values = [
            i64::from(p.enabled),
            (queued.saturating_sub(d.delivered_seq)) as i64,
            d.delivered_seq as i64,
            read.in_stream(id)?.seq as i64,
            i64::from(d.attempts),
            i64::from(d.failing_since.is_some_and(|s| now - s > alert_ms)),
            i64::from(d.halted.is_some()),
            oldest,
        ];
        for ((_, _, family), v) in peers.iter().zip(values) {
            family.get_or_create(&label("peer", id)).set(v);
        }
    }
    for (name, help, family) in peers {
        registry.register(name, help, family);
    }

    let single = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    single(
        &mut registry,
        "guanxi_inbox_envelopes",
        "envelopes received and stored",
        read.in_count()? as i64,
    );
    single(
        &mut registry,
        "guanxi_fed_unchecked_requests",
        "federation requests being read before their sender is known",
        node.fed_admission.current() as i64,
    );
    let c = &node.connections;
    single(
        &mut registry,
        "guanxi_connections_open",
        "HTTPS connections open",
        c.open() as i64,
    );
    single(
        &mut registry,
        "guanxi_connections_cap",
        "HTTPS connections allowed at once",
        c.cap() as i64,
    );
    let refused: Counter = Counter::default();
    refused.inc_by(c.refused());
    registry.register(
        "guanxi_connections_refused",
        "connections closed at once because the cap was reached",
        refused,
    );
    let scans: Family<Labels, Counter> = Family::default();
    for (table, n) in guanxi_adapters::store::full_scans() {
        scans.get_or_create(&label("table", table)).inc_by(n);
    }
    registry.register(
        "guanxi_store_full_scans",
        "whole-table reads since start (pages and engine checks avoid them)",
        scans,
    );
    let timers: Family<Labels, Counter> = Family::default();
    for (timer, n) in node.ticks.all() {
        timers.get_or_create(&label("timer", timer)).inc_by(n);
    }
    registry.register(
        "guanxi_timer_rounds",
        "rounds each timer has finished",
        timers,
    );

    let live = &*LIVE;
    registry.register(
        "guanxi_delivery_seconds",
        "round trip of each delivery request to a peer (envelopes sent, receipts back)",
        live.delivery_seconds.clone(),
    );
    registry.register(
        "guanxi_group_commit_seconds",
        "time of each group of store writes, commit included",
        live.commit_seconds.clone(),
    );
    registry.register(
        "guanxi_group_commit_jobs",
        "jobs written in each group commit",
        live.commit_jobs.clone(),
    );
    registry.register(
        "guanxi_http_requests",
        "HTTP requests answered, by route, method and status",
        live.http_requests.clone(),
    );
    registry.register(
        "guanxi_http_request_seconds",
        "time to answer HTTP requests, by route",
        live.http_seconds.clone(),
    );

    let mut out = String::new();
    encode(&mut out, &registry)
        .map_err(|e| guanxi_adapters::store::StoreError::Db(e.to_string()))?;
    Ok(out)
}
