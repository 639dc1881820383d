//! Key rotation and revocation (SPEC §23) between two real daemons: acme
//! rotates its signing key; globex learns the new key from acme's stream
//! and writes it into its config; both directions work on with the new
//! key; everything signed before still verifies on both sides; the old key
//! is refused for envelopes made after it retired, and a revoked key at
//! once.

use guanxi_protocol::envelope::{EnvelopeFields, PROTOCOL_VERSION};
use guanxi_protocol::{NodeKey, Sha256Hash};
use guanxi_tests::{NodeSetup, cert_in, client_trusting, eventually, run, two_nodes};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The public key written in a key file's header.
fn public_key_in(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("key file");
    text.lines()
        .find_map(|l| l.strip_prefix("# Public key: "))
        .expect("public key line")
        .trim()
        .to_string()
}

async fn ping(from: &NodeSetup, to: &str, n: usize) {
    let (status, v) = from
        .admin(
            "POST",
            "/admin/v1/send",
            Some(json!({"peer": to, "kind": "ping", "subject": format!("k-{n}"), "body": {"note": ""}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

/// Waits until everything `from` queued for `to` is receipted.
async fn delivered(from: &NodeSetup, to: &str) {
    eventually(&format!("{} delivered to {to}", from.id), || async {
        let s = from.peer_status(to).await;
        (s["last_queued_seq"] == s["last_delivered_seq"] && s["halted"].is_null()).then_some(())
    })
    .await;
}

/// The answer of `to` to an envelope signed by `key` as acme, made at `created`.
async fn forged_answer(to: &NodeSetup, key: &NodeKey, created: i64) -> (u16, serde_json::Value) {
    let envelope = EnvelopeFields {
        v: PROTOCOL_VERSION,
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        from: "acme".parse().expect("id"),
        to: to.id.parse().expect("id"),
        seq: 1_000,
        prev: Some(Sha256Hash::of(b"whatever came before")),
        created,
        kind: "ping".into(),
        subject: "forged".parse().expect("subject"),
        body: json!({"note": ""}),
        record_version: None,
    }
    .sign(key)
    .expect("signs");
    let client = client_trusting(&cert_in(&to.data_dir())).expect("client");
    let answer = client
        .post(format!("{}/fed/v1/envelope", to.url()))
        .header("content-type", "application/json")
        .body(envelope.bytes)
        .send()
        .await
        .expect("answer");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

fn verify_clean(node: &NodeSetup) {
    let (code, out, err) = run(
        Path::new(BIN),
        &node.dir,
        &["verify", "--config", "guanxi.toml"],
    );
    assert_eq!(code, Some(0), "verify {}: {out}{err}", node.id);
    assert!(out.contains("no damage"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_learned_in_the_stream_and_the_old_one_retires() {
    let pair = two_nodes(Path::new(BIN)).await;
    let (acme, globex) = (&pair.vendor, &pair.partner);
    for n in 0..3 {
        ping(acme, "globex", n).await;
        ping(globex, "acme", n).await;
    }
    delivered(acme, "globex").await;
    delivered(globex, "acme").await;
    let key_file = acme.data_dir().join("node.key");
    let first_public = public_key_in(&key_file);
    let first = guanxi_config::keyfile::read_node_key(&key_file).expect("key");

    let out = acme.cli(Path::new(BIN), &["key", "rotate", "--retire-in", "1h"]);
    assert!(out.contains("announced to: globex"), "{out}");
    let second_public = public_key_in(&key_file);
    assert_ne!(
        first_public, second_public,
        "the key file holds the new key"
    );
    let retired =
        std::fs::read_to_string(acme.data_dir().join("node.key.retired")).expect("retired");
    assert!(retired.contains(&first_public), "{retired}");

    // Globex learns it from acme's stream and records it in its config.
    eventually("globex trusts the new key", || async {
        let config = std::fs::read_to_string(globex.config_file()).ok()?;
        config.contains(&second_public).then_some(())
    })
    .await;
    let config = std::fs::read_to_string(globex.config_file()).expect("config");
    assert!(
        config.contains("not_after"),
        "the old key retires: {config}"
    );
    // Both directions go on: acme's envelopes and receipts are signed with the new key.
    for n in 3..6 {
        ping(acme, "globex", n).await;
        ping(globex, "acme", n).await;
    }
    delivered(acme, "globex").await;
    delivered(globex, "acme").await;
    // What acme signs now names the new key: its last envelope to globex,
    // and its receipt for globex's last envelope; the first ones the old.
    let second_kid = guanxi_config::keyfile::read_node_key(&key_file)
        .expect("key")
        .kid()
        .0;
    let last = acme.peer_status("globex").await["last_queued_seq"]
        .as_u64()
        .expect("seq");
    let (_, out_entry) = acme
        .admin("GET", &format!("/admin/v1/outbox/globex/{last}"), None)
        .await;
    assert_eq!(out_entry["envelope"]["sig"]["kid"], second_kid.as_str());
    assert_eq!(out_entry["envelope"]["kind"], "ping");
    let (_, first_entry) = acme.admin("GET", "/admin/v1/outbox/globex/1", None).await;
    assert_eq!(
        first_entry["envelope"]["sig"]["kid"],
        first.kid().0.as_str()
    );
    let last_in = acme.peer_status("globex").await["last_received_seq"]
        .as_u64()
        .expect("seq");
    let (_, in_entry) = acme
        .admin("GET", &format!("/admin/v1/inbox/globex/{last_in}"), None)
        .await;
    assert_eq!(
        in_entry["receipt"]["sig"]["kid"],
        second_kid.as_str(),
        "{in_entry}"
    );
    // Everything signed before and after verifies, on both sides.
    verify_clean(acme);
    verify_clean(globex);

    // The first key still passes for what is made before it retires, and
    // is refused for what is made after.
    let (status, v) = forged_answer(globex, &first, now_ms()).await;
    assert_ne!(v["code"], "key_not_valid", "{status} {v}");
    globex.set_clock_offset(2 * 3_600_000);
    let (status, v) = forged_answer(globex, &first, now_ms() + 2 * 3_600_000).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (401, Some("key_not_valid")),
        "{v}"
    );
    globex.set_clock_offset(0);

    // A leaked key is revoked: refused for anything made after the announcement.
    let second = guanxi_config::keyfile::read_node_key(&key_file).expect("key");
    let out = acme.cli(Path::new(BIN), &["key", "rotate", "--revoke"]);
    assert!(out.contains("announced to: globex"), "{out}");
    let third_public = public_key_in(&key_file);
    eventually("globex trusts the third key", || async {
        let config = std::fs::read_to_string(globex.config_file()).ok()?;
        config.contains(&third_public).then_some(())
    })
    .await;
    // Once globex applies it (acme's envelopes signed with the third key
    // arrive), the revoked key is refused for anything made after.
    ping(acme, "globex", 6).await;
    ping(globex, "acme", 6).await;
    delivered(acme, "globex").await;
    delivered(globex, "acme").await;
    let (status, v) = forged_answer(globex, &second, now_ms() + 1_000).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (401, Some("key_not_valid")),
        "{v}"
    );
    verify_clean(globex);
}

/// The SHA-256 fingerprint a node's key document names.
async fn served_fingerprint(node: &NodeSetup) -> String {
    node.key_document().await["tls_cert_sha256"]
        .as_str()
        .expect("fingerprint")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_announced_before_it_is_presented_so_pinned_peers_never_break() {
    let pair = two_nodes(Path::new(BIN)).await;
    let (acme, globex) = (&pair.vendor, &pair.partner);
    let old = served_fingerprint(acme).await;
    assert_eq!(old, acme.cert_sha256);
    let config = std::fs::read_to_string(globex.config_file()).expect("config");
    assert!(
        config.contains(&old),
        "globex pins acme's certificate: {config}"
    );

    let out = acme.cli(Path::new(BIN), &["tls", "rotate", "--wait", "1m"]);
    assert!(out.contains("presenting the new certificate"), "{out}");
    // Globex was told first: it pins the new one and still accepts the old.
    let config = std::fs::read_to_string(globex.config_file()).expect("config");
    let new = served_fingerprint(acme).await;
    assert_ne!(new, old, "acme presents the new certificate");
    assert!(
        config.contains(&format!("tls_cert_sha256 = \"{new}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("tls_cert_sha256_also = \"{old}\"")),
        "{config}"
    );
    // Both directions work over the new certificate.
    for n in 10..13 {
        ping(acme, "globex", n).await;
        ping(globex, "acme", n).await;
    }
    delivered(acme, "globex").await;
    delivered(globex, "acme").await;
    let (status, v) = globex
        .admin("POST", "/admin/v1/ping", Some(json!({"peer": "acme"})))
        .await;
    assert_eq!(
        (status, &v["receipt"]["status"]),
        (200, &json!("accepted")),
        "{v}"
    );
}
