//! Two (real, separate-process) daemons exchanging signed requests over real
//! TLS on loopback: in both directions, with one of them down, with the
//! receiver SIGKILLed mid-stream, and across a configuration reload.

use guanxi_protocol::receipt::{ReceiptStatus, SignedReceipt};
use guanxi_protocol::{PublicKey, Sha256Hash, canonical};
use guanxi_tests::NodeSetup;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn bin() -> &'static Path {
    Path::new(BIN)
}

/// Two nodes, acme and globex, set up with `init`, each a peer of the other.
fn pair(dir: &Path) -> (NodeSetup, NodeSetup) {
    let a_dir = dir.join("acme");
    let b_dir = dir.join("globex");
    std::fs::create_dir_all(&a_dir).expect("mkdir");
    std::fs::create_dir_all(&b_dir).expect("mkdir");
    let a = NodeSetup::init(bin(), &a_dir, "acme").expect("init acme");
    let b = NodeSetup::init(bin(), &b_dir, "globex").expect("init globex");
    a.append_config(&b.peer_block(true)).expect("peer");
    b.append_config(&a.peer_block(true)).expect("peer");
    (a, b)
}

async fn send(node: &NodeSetup, peer: &str, kind: &str, subject: &str, body: Value) -> u64 {
    let (status, v) = node
        .admin(
            "POST",
            "/admin/v1/send",
            Some(json!({"peer": peer, "kind": kind, "subject": subject, "body": body})),
        )
        .await;
    assert_eq!(status, 200, "send {kind}: {v}");
    v["seq"].as_u64().expect("seq")
}

/// Waits until `node` holds a receipt for its envelope `seq` to `peer`; returns
/// (envelope bytes, receipt bytes), recovered exactly by canonicalization.
async fn receipt_for(
    node: &NodeSetup,
    peer: &str,
    seq: u64,
    timeout: Duration,
) -> (Vec<u8>, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, v) = node
            .admin("GET", &format!("/admin/v1/outbox/{peer}/{seq}"), None)
            .await;
        if status == 200 && v["receipt"].is_object() {
            let envelope = canonical::canonicalize(&v["envelope"]).expect("canonical");
            let receipt = canonical::canonicalize(&v["receipt"]).expect("canonical");
            return (envelope, receipt);
        }
        assert!(
            Instant::now() < deadline,
            "no receipt for {peer}/{seq} in {timeout:?}: {v}; peers: {}",
            node.peer_status(peer).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn verify_receipt(receiver: &NodeSetup, envelope: &[u8], receipt: &[u8]) -> SignedReceipt {
    let key: PublicKey = receiver.public_key.parse().expect("receiver key");
    let r = SignedReceipt::decode(receipt).expect("receipt decodes");
    r.verify(&key)
        .expect("receipt verifies with the receiver's key");
    assert_eq!(
        r.receipt.fields.hash,
        Sha256Hash::of(envelope),
        "receipt names the hash of what was sent"
    );
    r
}

fn customer() -> Value {
    json!({"company": "Contoso 台灣", "contact": "Lin", "email": "lin@contoso.example", "phone": ""})
}

fn lead_offer() -> Value {
    json!({"customer": customer(), "country": "TW", "region": "Taipei", "product_lines": ["cnc"],
           "estimated_value": {"amount": 1_250_000, "currency": "TWD"}, "source": "web", "campaign": "",
           "notes": "", "accept_by": 4_102_444_800_000i64})
}

/// (Orders are checked against the vendor's catalog; `tests/orders.rs`
/// exchanges them with catalogs set up. Here: a service request.)
fn service_open() -> Value {
    json!({"customer": customer(), "sku": "CNC-5X", "serial": "SN-1", "problem": "spindle noise", "priority": "high", "attachments": []})
}

fn warranty_claim() -> Value {
    json!({"sku": "CNC-5X", "serial": "SN-1", "purchase_date": "2026-01-10", "description": "spindle noise", "customer": customer(), "attachments": [], "forwarded": null})
}

async fn record(node: &NodeSetup, peer: &str, subject: &str) -> Value {
    node.admin("GET", &format!("/admin/v1/records/{peer}/{subject}"), None)
        .await
        .1
}

#[tokio::test]
async fn two_daemons_exchange_requests_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    let db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    let t = Duration::from_secs(30);

    // Acme → Globex: ping, lead.offer.
    let s1 = send(&a, "globex", "ping", "p-1", json!({"note": "hello"})).await;
    let s2 = send(&a, "globex", "lead.offer", "lead-1", lead_offer()).await;
    // Globex → Acme: ping, lead.accept, service.open, warranty.claim.
    let r1 = send(&b, "acme", "ping", "p-2", json!({"note": "hi"})).await;
    let (e, r) = receipt_for(&a, "globex", s2, t).await;
    verify_receipt(&b, &e, &r);
    let r2 = send(
        &b,
        "acme",
        "lead.accept",
        "lead-1",
        json!({"note": "on it"}),
    )
    .await;
    let r3 = send(&b, "acme", "service.open", "req-1", service_open()).await;
    let r4 = send(&b, "acme", "warranty.claim", "claim-1", warranty_claim()).await;
    assert_eq!((s1, s2, r1, r2, r3, r4), (1, 2, 1, 2, 3, 4));

    for seq in [s1, s2] {
        let (e, r) = receipt_for(&a, "globex", seq, t).await;
        let receipt = verify_receipt(&b, &e, &r);
        assert_eq!(
            receipt.receipt.fields.status,
            ReceiptStatus::Accepted,
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
    for seq in [r1, r2, r3, r4] {
        let (e, r) = receipt_for(&b, "acme", seq, t).await;
        let receipt = verify_receipt(&a, &e, &r);
        assert_eq!(
            receipt.receipt.fields.status,
            ReceiptStatus::Accepted,
            "{}",
            String::from_utf8_lossy(&r)
        );
        assert_eq!(receipt.receipt.fields.seq, seq);
    }

    // The relationship is symmetric: acme also asks globex for service, claims
    // warranty there, and globex offers acme a lead.
    let s3 = send(&a, "globex", "service.open", "req-2", service_open()).await;
    let s4 = send(&a, "globex", "warranty.claim", "claim-2", warranty_claim()).await;
    let r5 = send(&b, "acme", "lead.offer", "lead-2", lead_offer()).await;
    for (node, peer, receiver, seq) in [
        (&a, "globex", &b, s3),
        (&a, "globex", &b, s4),
        (&b, "acme", &a, r5),
    ] {
        let (e, r) = receipt_for(node, peer, seq, t).await;
        let receipt = verify_receipt(receiver, &e, &r);
        assert_eq!(
            receipt.receipt.fields.status,
            ReceiptStatus::Accepted,
            "{}",
            String::from_utf8_lossy(&r)
        );
    }

    // Both daemons computed the same records.
    for (subject, status) in [
        ("lead-1", "accepted"),
        ("req-1", "open"),
        ("claim-1", "submitted"),
        ("req-2", "open"),
        ("claim-2", "submitted"),
        ("lead-2", "offered"),
    ] {
        let at_a = record(&a, "globex", subject).await;
        let at_b = record(&b, "acme", subject).await;
        assert_eq!(at_a["status"], status, "{subject} at acme: {at_a}");
        assert_eq!(at_a, at_b, "{subject} differs between the two daemons");
    }

    // An illegal transition is refused locally and nothing is queued.
    let (status, v) = a
        .admin("POST", "/admin/v1/send", Some(json!({"peer": "globex", "kind": "lead.accept", "subject": "lead-1", "body": {"note": ""}})))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("not_allowed")),
        "{v}"
    );
    assert_eq!(a.peer_status("globex").await["last_queued_seq"], 4);

    // The CLI's ping prints the verified receipt.
    let (code, out, err) = guanxi_tests::run(
        bin(),
        &a.dir,
        &["ping", "globex", "--config", "guanxi.toml"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("\"verified_with\"") && out.contains("\"status\": \"accepted\""),
        "{out}"
    );
    let (code, out, _) = guanxi_tests::run(bin(), &a.dir, &["peers", "--config", "guanxi.toml"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.starts_with("globex") && l.contains(" ok")),
        "{out}"
    );

    for d in [da, db] {
        let (status, _) = d.terminate(Duration::from_secs(20)).expect("stops");
        assert!(status.success());
    }
}

#[tokio::test]
async fn messages_wait_for_a_peer_that_is_down_and_survive_a_sender_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let config = std::fs::read_to_string(a.config_file()).expect("read");
    std::fs::write(
        a.config_file(),
        config.replace("alert_after_seconds = 3600", "alert_after_seconds = 1"),
    )
    .expect("write");
    let da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    for i in 1..=5 {
        send(
            &a,
            "globex",
            "ping",
            &format!("p-{i}"),
            json!({"note": format!("n{i}")}),
        )
        .await;
    }
    // Globex is down: the messages wait, and the failure is visible.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = a.peer_status("globex").await;
        if p["last_error"].is_string() && p["attempts"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(p["backlog"], 5, "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "no failure recorded: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Failing longer than alert_after_seconds: flagged in peers and metrics.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.peer_status("globex").await["failing_too_long"] != true {
        assert!(
            Instant::now() < deadline,
            "never flagged as failing too long"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = a.admin("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or("");
    assert!(
        metrics.contains("guanxi_peer_backlog{peer=\"globex\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("guanxi_peer_failing{peer=\"globex\"} 1"),
        "{metrics}"
    );
    // The oldest waiting envelope is as old as the failure at least.
    let age: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("guanxi_peer_backlog_age_seconds{peer=\"globex\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backlog age: {metrics}"));
    assert!(age >= 1, "{metrics}");
    let (code, out, _) = guanxi_tests::run(bin(), &a.dir, &["peers", "--config", "guanxi.toml"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.starts_with("globex") && l.contains("FAILING")),
        "{out}"
    );
    let (code, out, _) = guanxi_tests::run(bin(), &a.dir, &["outbox", "--config", "guanxi.toml"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("5 envelope(s) waiting"), "{out}");

    // The sender restarts meanwhile: nothing is lost, backoff is kept.
    let (status, _) = da.terminate(Duration::from_secs(20)).expect("stops");
    assert!(status.success());
    let da = a.start_for(bin(), &[&b]).await.expect("acme restarts");
    assert_eq!(a.peer_status("globex").await["backlog"], 5);

    // Globex comes up and says something: that wakes acme's worker at once.
    let db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    send(&b, "acme", "ping", "wake-up", json!({"note": "I am back"})).await;
    let started = Instant::now();
    for seq in 1..=5 {
        receipt_for(&a, "globex", seq, Duration::from_secs(30)).await;
    }
    let waited = started.elapsed();
    let (_, received) = b.admin("GET", "/admin/v1/inbox/acme", None).await;
    let notes: Vec<u64> = received["received"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(notes, vec![1, 2, 3, 4, 5], "in order, exactly once");
    assert!(
        waited < Duration::from_secs(20),
        "delivery after wake-up took {waited:?}"
    );
    let p = a.peer_status("globex").await;
    assert_eq!(
        (p["backlog"].as_u64(), p["last_error"].is_null()),
        (Some(0), true),
        "{p}"
    );
    drop((da, db));
}

#[tokio::test]
async fn a_receiver_killed_mid_stream_ends_with_every_message_exactly_once_in_order() {
    const N: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    // Small batches make the stream long enough to kill the receiver inside it.
    let config = std::fs::read_to_string(a.config_file()).expect("read");
    assert!(config.contains("max_batch = 100"));
    std::fs::write(
        a.config_file(),
        config.replace("max_batch = 100", "max_batch = 5"),
    )
    .expect("write");
    let _da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    // Queue everything while globex is down, concurrently (group commit).
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..10u64 {
        let a = a.clone();
        tasks.spawn(async move {
            for i in 0..N / 10 {
                send(
                    &a,
                    "globex",
                    "ping",
                    &format!("p-{chunk}-{i}"),
                    json!({"note": ""}),
                )
                .await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("sender task");
    }
    assert_eq!(a.peer_status("globex").await["last_queued_seq"], N);

    let db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    send(&b, "acme", "ping", "wake", json!({"note": ""})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let received = b.peer_status("acme").await["last_received_seq"]
            .as_u64()
            .unwrap_or(0);
        if received >= 100 {
            break received;
        }
        assert!(Instant::now() < deadline, "globex received nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    db.kill();
    assert!(
        at_kill < N,
        "the stream finished before the kill ({at_kill}); the test needs a longer stream"
    );

    let _db = b.start_for(bin(), &[&a]).await.expect("globex restarts");
    send(&b, "acme", "ping", "wake-again", json!({"note": ""})).await;
    receipt_for(&a, "globex", N, Duration::from_secs(120)).await;

    // Every message that got a receipt is stored exactly once, in order, on an unbroken chain.
    let (_, inbox) = b.admin("GET", "/admin/v1/inbox/acme", None).await;
    let received = inbox["received"].as_array().expect("list");
    assert_eq!(received.len() as u64, N);
    let mut prev = Value::Null;
    let mut ids = std::collections::HashSet::new();
    for (i, e) in received.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
        assert_eq!(e["prev"], prev, "chain broken at seq {}", i + 1);
        assert!(
            ids.insert(e["id"].as_str().expect("id").to_string()),
            "id stored twice"
        );
        prev = e["hash"].clone();
    }
    for seq in [1, at_kill, at_kill + 1, N] {
        let (envelope, receipt) = receipt_for(&a, "globex", seq, Duration::from_secs(5)).await;
        let r = verify_receipt(&b, &envelope, &receipt);
        assert_eq!(
            json!(r.receipt.fields.hash.to_string()),
            received[seq as usize - 1]["hash"]
        );
    }
}

#[tokio::test]
async fn sighup_reloads_peers_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    // Acme starts with globex disabled.
    let config = std::fs::read_to_string(a.config_file()).expect("read");
    std::fs::write(
        a.config_file(),
        config.replace(
            "enabled = true\ntls_cert_sha256",
            "enabled = false\ntls_cert_sha256",
        ),
    )
    .expect("write");
    let da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    let _db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    send(&b, "acme", "ping", "p-1", json!({"note": ""})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = b.peer_status("acme").await;
        if p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("sender_disabled"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "expected sender_disabled: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file is refused; the old configuration stays.
    let good = std::fs::read_to_string(a.config_file()).expect("read");
    std::fs::write(a.config_file(), format!("{good}\nthis is not toml")).expect("write");
    da.hangup().expect("hup");
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.contains("configuration refused") && !log.contains("keeping the configuration") {
        assert!(Instant::now() < deadline, "no refusal logged: {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.push_str(&da.stderr_lines().join("\n"));
    }
    assert_eq!(a.peer_status("globex").await["enabled"], false);

    // Enabling the peer takes effect without a restart.
    std::fs::write(
        a.config_file(),
        good.replace(
            "enabled = false\ntls_cert_sha256",
            "enabled = true\ntls_cert_sha256",
        ),
    )
    .expect("write");
    da.hangup().expect("hup");
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.peer_status("globex").await["enabled"] != true {
        assert!(Instant::now() < deadline, "reload did not enable the peer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&a, "globex", "ping", "p-2", json!({"note": ""})).await;
    let (e, r) = receipt_for(&b, "acme", 1, Duration::from_secs(30)).await;
    verify_receipt(&a, &e, &r);
}

#[tokio::test]
async fn a_pinned_certificate_that_does_not_match_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let config = std::fs::read_to_string(a.config_file()).expect("read");
    std::fs::write(
        a.config_file(),
        config.replace(&b.cert_sha256, &"ab".repeat(32)),
    )
    .expect("write");
    let _da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    let _db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    send(&a, "globex", "ping", "p-1", json!({"note": ""})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = a.peer_status("globex").await;
        if let Some(e) = p["last_error"].as_str() {
            assert!(e.contains("does not match the pinned"), "{e}");
            assert_eq!(p["backlog"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "no TLS failure recorded: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, inbox) = b.admin("GET", "/admin/v1/inbox/acme", None).await;
    assert_eq!(inbox["received"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_receiver_that_lost_its_data_halts_the_stream_instead_of_skipping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let _da = a.start_for(bin(), &[&b]).await.expect("acme starts");
    let db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    // A backup of globex's database from before seq 1.
    let (status, _) = db.terminate(Duration::from_secs(20)).expect("stops");
    assert!(status.success());
    let file = b.data_dir().join("guanxi.redb");
    let backup = std::fs::read(&file).expect("backup");
    let db = b.start_for(bin(), &[&a]).await.expect("globex starts");
    send(&a, "globex", "ping", "p-1", json!({"note": ""})).await;
    receipt_for(&a, "globex", 1, Duration::from_secs(30)).await;
    // Globex loses its data: restored from the backup that predates seq 1.
    let (status, _) = db.terminate(Duration::from_secs(20)).expect("stops");
    assert!(status.success());
    std::fs::write(&file, &backup).expect("restore the backup");
    let _db = b
        .start_for(bin(), &[&a])
        .await
        .expect("globex restarts from the old backup");
    send(&a, "globex", "ping", "p-2", json!({"note": ""})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = a.peer_status("globex").await;
        if let Some(why) = p["halted"].as_str() {
            assert!(why.contains("seq_gap") && why.contains("Some(1)"), "{why}");
            assert_eq!(
                (p["last_delivered_seq"].as_u64(), p["backlog"].as_u64()),
                (Some(1), Some(1)),
                "{p}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "stream never halted: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, _) = guanxi_tests::run(bin(), &a.dir, &["peers", "--config", "guanxi.toml"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.starts_with("globex") && l.contains("HALTED")),
        "{out}"
    );
    // Resuming retries at once; the receiver still has the gap, so it halts again.
    let (code, out, err) = guanxi_tests::run(
        bin(),
        &a.dir,
        &["resume", "globex", "--config", "guanxi.toml"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("seq_gap"), "{out}");
    let (_, inbox) = b.admin("GET", "/admin/v1/inbox/acme", None).await;
    assert_eq!(
        inbox["received"].as_array().map(Vec::len),
        Some(0),
        "nothing skipped into the new database"
    );
}

/// A hub with many peers (simulated by the benchmarks' load generator,
/// which checks every envelope as a node does and signs receipts with each
/// peer's own key): a catalog published to a partner behind each peer
/// reaches every one, in order, and the hub stores every verified receipt.
#[tokio::test]
async fn a_hub_delivers_a_catalog_to_many_answering_peers() {
    use guanxi_tests::answering_peers::AnsweringPeers;
    const PEERS: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(bin(), dir.path(), "hub").expect("init");
    let sender: PublicKey = node.public_key.parse().expect("key");
    let answering = AnsweringPeers::start(dir.path(), PEERS, sender)
        .await
        .expect("peers");
    let blocks: String = (0..PEERS).map(|i| answering.peer_block(i)).collect();
    node.append_config(&blocks).expect("config");
    let daemon = node.start(bin()).expect("start");
    let api = guanxi_tests::Api::of(&node, &daemon);
    let token = node.token(bin(), "hub-admin", "admin");
    for i in 0..PEERS {
        let partner = json!({"id": format!("p{i:02}"), "name": format!("P{i}"), "type": "reseller", "tier": "gold",
            "country": "TW", "region": "", "stage": "active", "peer": format!("h{i:04}")});
        guanxi_tests::expect(
            &api,
            "post",
            "/api/v1/partners",
            &token,
            Some(&partner.to_string()),
            201,
        )
        .await;
    }
    let catalog = json!({
        "products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
        "price_lists": []});
    guanxi_tests::expect(
        &api,
        "put",
        "/api/v1/catalog",
        &token,
        Some(&catalog.to_string()),
        200,
    )
    .await;
    // Two more to one peer: its stream goes on in order.
    send(&node, "h0000", "ping", "p-1", json!({"note": "one"})).await;
    send(&node, "h0000", "ping", "p-2", json!({"note": "two"})).await;
    guanxi_tests::eventually("every peer has its envelopes", || async {
        let (_, v) = node.admin("GET", "/admin/v1/peers", None).await;
        let peers = v["peers"].as_array().cloned().unwrap_or_default();
        let done = peers.len() == PEERS
            && peers
                .iter()
                .all(|p| p["backlog"] == 0 && p["last_delivered_seq"].as_u64() >= Some(1));
        (done && answering.accepted() == PEERS as u64 + 2).then_some(())
    })
    .await;
    assert_eq!(answering.refused(), 0);
    assert_eq!(node.peer_status("h0000").await["last_delivered_seq"], 3);
    assert_eq!(node.peer_status("h0019").await["last_delivered_seq"], 1);
}

/// A peer of a release that reads only another protocol version (the test
/// build plays one): its key document lists what it reads, the sender
/// keeps the envelope and says in `guanxi peers` that the two share no
/// version, and once the peer runs a release that reads version 1 again
/// the stream resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_protocol_version_is_named_and_the_stream_resumes_after_its_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let _acme = a.start(bin()).expect("acme starts");
    let globex = b
        .start_after(bin(), "export GUANXI_TEST_READS_VERSIONS=2")
        .expect("globex starts");
    a.point_at(&b).await;
    b.point_at(&a).await;
    let doc = b.key_document().await;
    assert_eq!(doc["versions"], json!([2]), "{doc}");

    let seq = send(&a, "globex", "ping", "ping-versions", json!({"note": "v1"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let p = a.peer_status("globex").await;
        if p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("reads protocol versions [2]"))
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no version error: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = status["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("this node writes version 1") && error.contains("upgraded"),
        "{error}"
    );
    assert_eq!(status["backlog"], 1, "{status}");
    assert!(status["halted"].is_null(), "not halted: {status}");

    // globex runs a release that reads version 1 again: the ping arrives.
    drop(globex);
    let _globex = b.start_for(bin(), &[&a]).await.expect("globex restarts");
    receipt_for(&a, "globex", seq, Duration::from_secs(30)).await;
}
