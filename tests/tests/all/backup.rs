//! Backups of a running node (`guanxi backup`): taken while messages flow,
//! checked whole, restored (`guanxi restore`) into a new data directory
//! that `guanxi verify` finds sound and that holds exactly the messages
//! sent before the snapshot; taken again from a stopped node's store; a
//! damaged backup or a used directory restores nothing.

use guanxi_tests::{eventually, run, two_nodes};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
/// Pings sent after the backup finished (the stream keeps going).
const PINGS_AFTER: u64 = 20;

/// The envelope count of a `guanxi verify` that found no damage.
fn verified_envelopes(dir: &Path, config: &str) -> u64 {
    let (code, out, err) = run(Path::new(BIN), dir, &["verify", "--config", config]);
    assert_eq!(code, Some(0), "verify {config}: {out}{err}");
    assert!(out.contains("no damage"), "{out}");
    out.lines()
        .find_map(|l| l.split(" envelope(s)").next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no envelope count in {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_messages_flow_restores_a_sound_store() {
    let mut pair = two_nodes(Path::new(BIN)).await;
    let dir = pair.vendor.dir.clone();
    let socket = pair.vendor.data_dir().join(guanxi::admin::SOCKET_FILE);
    let sent = Arc::new(AtomicU64::new(0));
    let backed_up = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = sent.clone();
        let backed_up = backed_up.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let done_at = backed_up.load(Ordering::SeqCst);
                if done_at > 0 && i >= done_at + PINGS_AFTER {
                    return i;
                }
                let body = json!({"peer": "globex", "kind": "ping", "subject": format!("p-{i}"), "body": {"note": ""}});
                let (status, v) =
                    guanxi::admin::request(&socket, "POST", "/admin/v1/send", Some(body))
                        .await
                        .expect("send");
                assert_eq!(status, 200, "{v}");
                i += 1;
                sent.store(i, Ordering::SeqCst);
            }
        })
    };
    eventually("some pings sent", || async {
        (sent.load(Ordering::SeqCst) >= 30).then_some(())
    })
    .await;
    let before = sent.load(Ordering::SeqCst);
    let backup = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            run(
                Path::new(BIN),
                &dir,
                &["backup", "live.gxb", "--config", "guanxi.toml"],
            )
        })
        .await
        .expect("backup runs")
    };
    let after = sent.load(Ordering::SeqCst);
    backed_up.store(after.max(1), Ordering::SeqCst);
    assert_eq!(backup.0, Some(0), "backup: {}{}", backup.1, backup.2);
    assert!(backup.1.contains("sha256"), "{}", backup.1);
    let pings = sender.await.expect("every ping sent");

    // A second backup to the same name is refused; the first is untouched.
    let (code, out, err) = run(
        Path::new(BIN),
        &dir,
        &["backup", "live.gxb", "--config", "guanxi.toml"],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("never overwrites"), "{err}");

    let (code, out, err) = run(
        Path::new(BIN),
        &dir,
        &["restore", "live.gxb", "--dir", "restored"],
    );
    assert_eq!(code, Some(0), "restore: {out}{err}");
    let config = std::fs::read_to_string(dir.join("guanxi.toml")).expect("config");
    let restored_config = config.replace("data_dir = \"guanxi-data\"", "data_dir = \"restored\"");
    assert_ne!(restored_config, config);
    std::fs::write(dir.join("restored.toml"), restored_config).expect("write");

    // The live store, with every ping: what came before them is `base`.
    let all = verified_envelopes(&dir, "guanxi.toml");
    let base = all - pings;
    let restored = verified_envelopes(&dir, "restored.toml");
    assert!(
        (base + before..=base + after).contains(&restored),
        "the restored store holds the pings sent before the snapshot: {restored} not in {}..={}",
        base + before,
        base + after
    );

    // From a stopped node's store, the same command works without a daemon.
    pair.vendor_daemon
        .stop(Duration::from_secs(10))
        .expect("the vendor stops");
    let (code, out, err) = run(
        Path::new(BIN),
        &dir,
        &["backup", "stopped.gxb", "--config", "guanxi.toml"],
    );
    assert_eq!(code, Some(0), "offline backup: {out}{err}");
    let (code, out, err) = run(
        Path::new(BIN),
        &dir,
        &["restore", "stopped.gxb", "--dir", "again"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    std::fs::write(
        dir.join("again.toml"),
        config.replace("data_dir = \"guanxi-data\"", "data_dir = \"again\""),
    )
    .expect("write");
    assert_eq!(verified_envelopes(&dir, "again.toml"), all);

    // Into a used directory, or from a damaged file: refused, nothing written.
    let (code, _, err) = run(
        Path::new(BIN),
        &dir,
        &["restore", "stopped.gxb", "--dir", "restored"],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("not empty"), "{err}");
    let mut bytes = std::fs::read(dir.join("stopped.gxb")).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(dir.join("damaged.gxb"), bytes).expect("write");
    let (code, _, err) = run(
        Path::new(BIN),
        &dir,
        &["restore", "damaged.gxb", "--dir", "never"],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("damaged at byte"), "{err}");
    assert!(!dir.join("never").exists());
}

/// Globex's public key in the schema-4 fixture.
const FIXTURE_GLOBEX_KEY: &str = "k-WuyrLDffr59lUrna6nj0LL_yyStjZdB6AMrx7GRmI";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_by_schema_4_restores_verifies_and_serves() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema4");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = guanxi_tests::NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    // The fixture node's own key, kept apart from its backup as it should be.
    let key = dir.path().join("guanxi-data/node.key");
    std::fs::copy(fixture.join("acme.key"), &key).expect("key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("0600");
    }
    let (code, out, err) = run(
        Path::new(BIN),
        dir.path(),
        &[
            "restore",
            fixture.join("acme.gxb").to_str().expect("path"),
            "--dir",
            "restored",
        ],
    );
    assert_eq!(code, Some(0), "restore: {out}{err}");
    assert!(out.contains("schema    4"), "{out}");
    let config = std::fs::read_to_string(node.config_file()).expect("config");
    let peer = format!(
        "\n[[peers]]\nid = \"globex\"\nurl = \"https://127.0.0.1:9\"\nenabled = false\ntls_cert_sha256 = \"{}\"\n[[peers.keys]]\npublic_key = \"{FIXTURE_GLOBEX_KEY}\"\n",
        "ab".repeat(32)
    );
    let config =
        config.replace("data_dir = \"guanxi-data\"", "data_dir = \"restored\"") + peer.as_str();
    std::fs::write(node.config_file(), config).expect("config");
    // Every envelope and receipt verifies with both companies' keys.
    assert!(verified_envelopes(dir.path(), "guanxi.toml") >= 3);
    // The daemon serves it: the lead globex accepted is there.
    let daemon = node.start(Path::new(BIN)).expect("serves the old store");
    let socket = dir.path().join("restored").join(guanxi::admin::SOCKET_FILE);
    let (status, lead) =
        guanxi::admin::request(&socket, "GET", "/admin/v1/records/globex/lead-1", None)
            .await
            .expect("admin socket");
    assert_eq!(status, 200, "{lead}");
    let text = lead.to_string();
    assert!(text.contains("Contoso"), "{text}");
    assert!(text.contains("accepted"), "{text}");
    drop(daemon);
}
