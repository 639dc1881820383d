//! Bad input on a real daemon's inbox: each case gets the answer SPEC.md
//! documents, and the store is unchanged — or, for business rejections,
//! changed only by the signed rejection, which consumes the seq.

use guanxi_protocol::crypto::Domain;
use guanxi_protocol::envelope::{EnvelopeFields, PROTOCOL_VERSION, SignedEnvelope};
use guanxi_protocol::receipt::{ReceiptStatus, SignedReceipt};
use guanxi_protocol::{NodeKey, Sha256Hash, canonical};
use guanxi_tests::{NodeSetup, client_trusting};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

struct Sender {
    id: &'static str,
    key: NodeKey,
    seq: u64,
    prev: Option<Sha256Hash>,
    n: u64,
}

impl Sender {
    fn new(id: &'static str, seed: u8) -> Sender {
        Sender {
            id,
            key: NodeKey::from_seed(&[seed; 32]),
            seq: 0,
            prev: None,
            n: 0,
        }
    }

    fn fields(&mut self, kind: &str, subject: &str, body: Value) -> EnvelopeFields {
        self.n += 1;
        EnvelopeFields {
            v: PROTOCOL_VERSION,
            id: format!(
                "019ac0a0-0000-7000-8000-{:012x}",
                u64::from(self.key.seed()[0]) << 32 | self.n
            ),
            from: self.id.parse().expect("node id"),
            to: "acme".parse().expect("node id"),
            seq: self.seq + 1,
            prev: self.prev,
            created: guanxi::clock::now_ms(),
            kind: kind.into(),
            subject: subject.parse().expect("subject"),
            body,
            record_version: None,
        }
    }

    /// The next envelope of the stream (the stream advances when `commit` is called).
    fn next(&mut self, kind: &str, subject: &str, body: Value) -> SignedEnvelope {
        let f = self.fields(kind, subject, body);
        f.sign(&self.key).expect("signs")
    }

    fn commit(&mut self, e: &SignedEnvelope) {
        self.seq = e.fields().seq;
        self.prev = Some(e.hash);
    }
}

fn resign(value: &Value, key: &NodeKey) -> Vec<u8> {
    let mut v = value.clone();
    let map = v.as_object_mut().expect("object");
    map.remove("sig");
    let unsigned = canonical::canonicalize(&Value::Object(map.clone())).expect("canonical");
    let sig = key.sign(Domain::Envelope, &unsigned);
    map.insert(
        "sig".into(),
        json!({"alg": "ed25519", "kid": key.kid().0, "value": sig.to_string()}),
    );
    canonical::canonicalize(&v).expect("canonical")
}

struct Target {
    client: reqwest::Client,
    url: String,
    node: NodeSetup,
}

impl Target {
    async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        // A server that refuses an oversized body answers before reading it
        // all and closes; the client may then see the reset instead of the
        // answer. Retry a few times: the answer itself is what is checked.
        let mut last_error = String::new();
        for _ in 0..5 {
            match self
                .client
                .post(format!("{}{path}", self.url))
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    match r.bytes().await {
                        Ok(b) => return (status, b.to_vec()),
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        panic!("no answer after 5 tries: {last_error}");
    }

    async fn received(&self, peer: &str) -> usize {
        let (_, v) = self
            .node
            .admin("GET", &format!("/admin/v1/inbox/{peer}"), None)
            .await;
        v["received"].as_array().map_or(0, Vec::len)
    }
}

fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["code"]
        .as_str()
        .or_else(|| v["reason"]["code"].as_str())
        .unwrap_or("")
        .to_string()
}

fn peer_block(id: &str, key: &NodeKey, enabled: bool) -> String {
    format!(
        "\n[[peers]]\nid = \"{id}\"\nurl = \"https://127.0.0.1:9\"\nenabled = {enabled}\n[[peers.keys]]\npublic_key = \"{}\"\n",
        key.public()
    )
}

#[tokio::test]
async fn bad_input_gets_the_documented_answer_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let mut m = Sender::new("mallory", 0x31);
    let eve = Sender::new("eve", 0x32);
    node.append_config(&peer_block("mallory", &m.key, true))
        .expect("config");
    node.append_config(&peer_block("eve", &eve.key, false))
        .expect("config");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let t = Target {
        client: client_trusting(&node.data_dir().join("tls/cert.pem")).expect("client"),
        url: daemon.url(),
        node: node.clone(),
    };
    let acme_key: guanxi_protocol::PublicKey = node.public_key.parse().expect("key");

    // A good first envelope, to have a stream to break.
    let first = m.next("ping", "p-1", json!({"note": "hi"}));
    let (status, receipt) = t.post("/fed/v1/envelope", first.bytes.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&receipt));
    let r = SignedReceipt::decode(&receipt).expect("receipt");
    r.verify(&acme_key).expect("signed by acme");
    assert_eq!(
        (r.receipt.fields.status, r.receipt.fields.hash),
        (ReceiptStatus::Accepted, first.hash)
    );
    m.commit(&first);

    let good = m.next("ping", "p-2", json!({"note": "x"}));
    let good_value: Value = serde_json::from_slice(&good.bytes).expect("json");
    let text = String::from_utf8(good.bytes.clone()).expect("utf8");
    let mut float = good_value.clone();
    float["body"] = json!({"note": "x"});
    let float_text = String::from_utf8(resign(&float, &m.key))
        .expect("utf8")
        .replace("\"seq\":2", "\"seq\":2.5");
    let mut wrong_to = good_value.clone();
    wrong_to["to"] = json!("initech");
    let mut future = good_value.clone();
    future["created"] = json!(guanxi::clock::now_ms() + 10 * 60 * 1000);
    let mut tampered = good_value.clone();
    tampered["body"]["note"] = json!("y");
    let stranger = NodeKey::from_seed(&[0x99; 32]);
    let eve_env = {
        let mut e = Sender::new("eve", 0x32);
        e.next("ping", "p", json!({"note": ""})).bytes
    };
    let mut unknown = good_value.clone();
    unknown["from"] = json!("initech");

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"hello".to_vec(), 400, "bad_json"),
        (
            "duplicate key",
            text.replacen("{\"body\"", "{\"v\":1,\"body\"", 1)
                .into_bytes(),
            400,
            "duplicate_key",
        ),
        ("float", float_text.into_bytes(), 400, "not_an_integer"),
        (
            "not canonical",
            format!("{text} ").into_bytes(),
            400,
            "not_canonical",
        ),
        (
            "bad signature",
            canonical::canonicalize(&tampered).expect("c"),
            401,
            "bad_signature",
        ),
        (
            "key not configured",
            resign(&good_value, &stranger),
            401,
            "unknown_key",
        ),
        (
            "unknown sender",
            resign(&unknown, &m.key),
            403,
            "unknown_sender",
        ),
        ("disabled sender", eve_env, 403, "sender_disabled"),
        (
            "wrong recipient",
            resign(&wrong_to, &m.key),
            421,
            "wrong_recipient",
        ),
        (
            "from the future",
            resign(&future, &m.key),
            400,
            "from_the_future",
        ),
        (
            "over the limit",
            vec![b' '; 2 * 1024 * 1024],
            413,
            "too_large",
        ),
    ];
    for (name, body, want_status, want_code) in cases {
        let (status, answer) = t.post("/fed/v1/envelope", body).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (want_status, want_code),
            "{name}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(t.received("mallory").await, 1, "{name} changed the store");
    }

    // Replay: the same bytes get the very same receipt, and nothing changes.
    let (status, again) = t.post("/fed/v1/envelope", first.bytes.clone()).await;
    assert_eq!((status, &again), (200, &receipt));
    // The same id with other bytes: 409 and a signed id_conflict.
    let mut other = serde_json::from_slice::<Value>(&first.bytes).expect("json");
    other["body"]["note"] = json!("changed");
    let (status, conflict) = t.post("/fed/v1/envelope", resign(&other, &m.key)).await;
    assert_eq!((status, code(&conflict).as_str()), (409, "id_conflict"));
    SignedReceipt::decode(&conflict)
        .expect("signed")
        .verify(&acme_key)
        .expect("verifies");
    // A gap: 409 seq_gap naming the expected seq; nothing stored.
    let mut gap = m.fields("ping", "p-3", json!({"note": ""}));
    gap.seq = 5;
    gap.prev = Some(first.hash);
    let (status, answer) = t
        .post("/fed/v1/envelope", gap.sign(&m.key).expect("signs").bytes)
        .await;
    assert_eq!((status, code(&answer).as_str()), (409, "seq_gap"));
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).expect("json")["reason"]["expected_seq"],
        2
    );
    assert_eq!(t.received("mallory").await, 1);

    // Business rejections are signed and consume the seq: the stream goes on.
    let unknown_kind = m.next("lead.teleport", "x-1", json!({}));
    let (status, answer) = t.post("/fed/v1/envelope", unknown_kind.bytes.clone()).await;
    assert_eq!((status, code(&answer).as_str()), (200, "unknown_kind"));
    m.commit(&unknown_kind);
    let illegal = m.next("lead.accept", "no-such-lead", json!({"note": ""}));
    let (status, answer) = t.post("/fed/v1/envelope", illegal.bytes.clone()).await;
    assert_eq!((status, code(&answer).as_str()), (200, "unknown_record"));
    m.commit(&illegal);
    assert_eq!(t.received("mallory").await, 3);
    let (_, rejected) = node.admin("GET", "/admin/v1/rejected", None).await;
    assert_eq!(
        rejected["incoming"].as_array().map(Vec::len),
        Some(2),
        "{rejected}"
    );

    // A batch: the good envelopes get receipts, the broken one an error, the rest are not processed.
    let b1 = m.next("ping", "b-1", json!({"note": ""}));
    m.commit(&b1);
    let b2 = m.next("ping", "b-2", json!({"note": ""}));
    let mut batch = b"[".to_vec();
    batch.extend_from_slice(&b1.bytes);
    batch.push(b',');
    batch.extend_from_slice(
        &canonical::canonicalize(&{
            let mut v: Value = serde_json::from_slice(&b2.bytes).expect("json");
            v["body"]["note"] = json!("tampered");
            v
        })
        .expect("c"),
    );
    batch.push(b',');
    batch.extend_from_slice(&b2.bytes);
    batch.push(b']');
    let (status, answer) = t.post("/fed/v1/batch", batch).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(v["results"][0]["receipt"]["status"], "accepted");
    assert_eq!(v["results"][1]["error"]["code"], "bad_signature");
    assert_eq!(v["results"][2]["error"]["code"], "not_processed");
    assert_eq!(t.received("mallory").await, 4);
    let (status, answer) = t
        .post(
            "/fed/v1/batch",
            format!("[{}]", vec!["{}"; 101].join(",")).into_bytes(),
        )
        .await;
    assert_eq!((status, code(&answer).as_str()), (400, "batch_too_large"));
    drop(daemon);
}
