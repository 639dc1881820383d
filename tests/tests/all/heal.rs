//! Healing after a restore (SPEC §22), with three real daemons: globex and
//! initech work with acme; acme's backup is taken, 1,000 messages later
//! acme loses its disk, the backup is restored, and acme heals from both
//! peers — every stream resumes where the peers have it, every shared
//! record is the same on both sides, nothing is halted or duplicated, and
//! what acme sent after the backup that no peer received never happened.
//! Then acme loses everything but its keys and recovers from the peers.

use guanxi_tests::{NodeSetup, chain_of_three, eventually, run};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

/// A lead offer open for a month.
fn offer(n: usize) -> Value {
    let accept_by = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64)
        + 30 * 24 * 3_600_000;
    json!({
        "accept_by": accept_by, "campaign": "", "country": "TW",
        "customer": {"company": format!("客戶 {n}"), "contact": "林小姐", "email": "lin@example.com.tw", "phone": "+886 2 1234 5678"},
        "estimated_value": {"amount": 100_000 + n as i64, "currency": "TWD"},
        "notes": "", "product_lines": ["cnc"], "region": "", "source": "heal-test",
    })
}

async fn send(from: &NodeSetup, to: &str, kind: &str, subject: &str, body: Value) {
    let (status, v) = from
        .admin(
            "POST",
            "/admin/v1/send",
            Some(json!({"peer": to, "kind": kind, "subject": subject, "body": body})),
        )
        .await;
    assert_eq!(status, 200, "{} → {to}: {kind} {subject}: {v}", from.id);
}

/// (last queued, last delivered, last received, halted) of `node`'s link to `peer`.
async fn link(node: &NodeSetup, peer: &str) -> (u64, u64, u64, Value) {
    let s = node.peer_status(peer).await;
    let n = |k: &str| s[k].as_u64().unwrap_or(u64::MAX);
    (
        n("last_queued_seq"),
        n("last_delivered_seq"),
        n("last_received_seq"),
        s["halted"].clone(),
    )
}

/// Waits until both directions between `a` and `b` are delivered whole and
/// each side's view of each stream is the other's.
async fn settled(a: &NodeSetup, b: &NodeSetup) {
    eventually(&format!("{} and {} settled", a.id, b.id), || async {
        let (aq, ad, ar, ah) = link(a, &b.id).await;
        let (bq, bd, br, bh) = link(b, &a.id).await;
        (aq == ad && bq == bd && ar == bq && br == aq && ah.is_null() && bh.is_null()).then_some(())
    })
    .await;
}

/// The record `subject` as `node` holds it with `peer`, settled (nothing
/// pending), as canonical JSON; `None` when it does not exist.
async fn record(node: &NodeSetup, peer: &str, subject: &str) -> Option<(u64, String)> {
    let (status, v) = node
        .admin(
            "GET",
            &format!("/admin/v1/records/{peer}/{subject}/sync"),
            None,
        )
        .await;
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{}: {subject}: {v}", node.id);
    assert_eq!(v["pending"], 0, "{}: {subject} is settled: {v}", node.id);
    let version = v["version"].as_u64().expect("version");
    Some((version, v["record"].to_string()))
}

/// Every subject in `subjects` is the same record on acme and on `peer`.
async fn same_records(acme: &NodeSetup, peer: &NodeSetup, subjects: &[String]) {
    for subject in subjects {
        let mine = record(acme, &peer.id, subject).await;
        let theirs = record(peer, "acme", subject).await;
        assert!(mine.is_some(), "acme holds {subject} with {}", peer.id);
        assert_eq!(mine, theirs, "{subject}: acme and {} agree", peer.id);
    }
}

/// The subjects offered so far to one partner, and how many it accepted.
struct Offers {
    prefix: &'static str,
    made: usize,
    accepted: usize,
}

impl Offers {
    fn subjects(&self) -> Vec<String> {
        (0..self.made)
            .map(|i| format!("{}{i}", self.prefix))
            .collect()
    }
}

/// One round of work: acme offers `n` leads to each partner; once they
/// arrive, each partner accepts `n` of the open ones and pings acme
/// `pings` times. Returns the messages exchanged.
async fn round(
    acme: &NodeSetup,
    partners: [&NodeSetup; 2],
    offers: &mut [Offers; 2],
    n: usize,
    pings: usize,
) -> usize {
    for _ in 0..n {
        for (p, o) in partners.iter().zip(offers.iter_mut()) {
            send(
                acme,
                &p.id,
                "lead.offer",
                &format!("{}{}", o.prefix, o.made),
                offer(o.made),
            )
            .await;
            o.made += 1;
        }
    }
    for p in partners {
        settled(acme, p).await;
    }
    for (p, o) in partners.iter().zip(offers.iter_mut()) {
        for _ in 0..n.min(o.made - o.accepted) {
            let subject = format!("{}{}", o.prefix, o.accepted);
            send(p, "acme", "lead.accept", &subject, json!({"note": "on it"})).await;
            o.accepted += 1;
        }
        for i in 0..pings {
            send(
                p,
                "acme",
                "ping",
                &format!("ping-{}-{i}", o.made),
                json!({"note": ""}),
            )
            .await;
        }
    }
    for p in partners {
        settled(acme, p).await;
    }
    4 * n + 2 * pings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_old_backup_heals_from_its_peers_and_a_lost_one_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, mut daemons) =
        chain_of_three(Path::new(BIN), dir.path(), ["globex", "acme", "initech"]).await;
    let (globex, acme, initech) = (&nodes[0], &nodes[1], &nodes[2]);
    let partners = [globex, initech];
    let mut offers = [
        Offers {
            prefix: "g-",
            made: 0,
            accepted: 0,
        },
        Offers {
            prefix: "i-",
            made: 0,
            accepted: 0,
        },
    ];
    round(acme, partners, &mut offers, 10, 2).await;

    let (code, out, err) = run(
        Path::new(BIN),
        &acme.dir,
        &["backup", "acme.gxb", "--config", "guanxi.toml"],
    );
    assert_eq!(code, Some(0), "backup: {out}{err}");

    // 1,000 messages after the backup, both ways, with both partners.
    let mut exchanged = 0;
    while exchanged < 1_000 {
        exchanged += round(acme, partners, &mut offers, 60, 5).await;
    }
    assert_eq!(exchanged, 1_000);
    // What acme sends now never leaves it: lost with its disk.
    acme.cli(Path::new(BIN), &["pause", "globex"]);
    for i in 0..3 {
        send(acme, "globex", "lead.offer", &format!("lost-{i}"), offer(i)).await;
    }
    let heads_before = link(globex, "acme").await;

    // The disk is lost; the backup comes back, with the node's own keys.
    daemons.remove(1).kill();
    let out = acme.restore_backup(Path::new(BIN), "acme.gxb");
    assert!(out.contains("heals"), "{out}");
    let data = acme.data_dir();
    // Meanwhile the partners keep working: globex pings acme (queued).
    for i in 0..5 {
        send(
            globex,
            "acme",
            "ping",
            &format!("while-down-{i}"),
            json!({"note": ""}),
        )
        .await;
    }

    let daemon = acme.start_healed(Path::new(BIN), &partners).await;
    daemons.insert(1, daemon);
    for p in partners {
        settled(acme, p).await;
    }
    // Every stream stands where the peers have it: acme's envelopes to
    // globex end where globex consumed them (the three lost offers are
    // gone), and globex's pings sent while acme was down arrived once.
    let (queued, _, received, _) = link(acme, "globex").await;
    assert_eq!(
        queued, heads_before.2,
        "acme's stream to globex resumes at globex's head"
    );
    assert_eq!(
        received,
        heads_before.0 + 5,
        "globex's pings arrived, each once"
    );
    for p in partners {
        same_records(
            acme,
            p,
            &offers[if p.id == "globex" { 0 } else { 1 }].subjects(),
        )
        .await;
    }
    for i in 0..3 {
        let subject = format!("lost-{i}");
        assert_eq!(
            record(acme, "globex", &subject).await,
            None,
            "{subject} never happened at acme"
        );
        assert_eq!(
            record(globex, "acme", &subject).await,
            None,
            "{subject} never reached globex"
        );
    }
    // And the network works on: a new offer, accepted.
    send(acme, "globex", "lead.offer", "after-heal", offer(0)).await;
    settled(acme, globex).await;
    send(
        globex,
        "acme",
        "lead.accept",
        "after-heal",
        json!({"note": "yes"}),
    )
    .await;
    settled(acme, globex).await;
    same_records(acme, globex, &["after-heal".to_string()]).await;
    let accepted = record(acme, "globex", "after-heal").await.expect("record");
    assert!(accepted.1.contains("accepted"), "{accepted:?}");

    // Total loss: nothing but the key file and certificate is left.
    daemons[1]
        .stop(Duration::from_secs(10))
        .expect("acme stops");
    for f in [
        guanxi_adapters::store::DB_FILE,
        guanxi_adapters::store::STORE_MARKER,
    ] {
        std::fs::remove_file(data.join(f)).expect("the store is gone");
    }
    let recovered = acme.cli(Path::new(BIN), &["recover"]);
    assert!(
        recovered.contains("heal from every enabled peer"),
        "{recovered}"
    );
    let (code, _, again) = run(
        Path::new(BIN),
        &acme.dir,
        &["recover", "--config", "guanxi.toml"],
    );
    assert_ne!(code, Some(0));
    assert!(
        again.contains("holds a store"),
        "a second recover is refused: {again}"
    );
    daemons[1] = acme.start_healed(Path::new(BIN), &partners).await;
    for p in partners {
        settled(acme, p).await;
    }
    let mut globex_subjects = offers[0].subjects();
    globex_subjects.push("after-heal".into());
    same_records(acme, globex, &globex_subjects).await;
    same_records(acme, initech, &offers[1].subjects()).await;
    send(
        initech,
        "acme",
        "ping",
        "after-recovery",
        json!({"note": ""}),
    )
    .await;
    settled(acme, initech).await;
}
