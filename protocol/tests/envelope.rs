//! Envelope and receipt encoding: what a receiver accepts and what it refuses
//! before any business logic, each with its reason code.

use guanxi_protocol::canonical;
use guanxi_protocol::envelope::{
    EnvelopeFields, MAX_ENVELOPE_BYTES, PROTOCOL_VERSION, SignedEnvelope,
};
use guanxi_protocol::receipt::{ReceiptFields, ReceiptMismatch, Rejection, SignedReceipt};
use guanxi_protocol::{NodeKey, ReasonCode, Sha256Hash};
use serde_json::{Value, json};

fn fields(seq: u64, prev: Option<Sha256Hash>) -> EnvelopeFields {
    EnvelopeFields {
        v: PROTOCOL_VERSION,
        id: "019ac0a0-0000-7000-8000-0000000000aa".into(),
        from: "acme".parse().expect("node"),
        to: "globex".parse().expect("node"),
        seq,
        prev,
        created: 1_795_651_200_000,
        kind: "ping".into(),
        subject: "p-1".parse().expect("record"),
        body: json!({"note": "hi"}),
        record_version: None,
    }
}

fn key() -> NodeKey {
    NodeKey::from_seed(&[5u8; 32])
}

/// Re-signs an edited envelope value so only the edit can be refused.
fn resign(mut value: Value, key: &NodeKey) -> Vec<u8> {
    let map = value.as_object_mut().expect("object");
    map.remove("sig");
    let unsigned = canonical::canonicalize(&Value::Object(map.clone())).expect("canonical");
    let sig = key.sign(guanxi_protocol::crypto::Domain::Envelope, &unsigned);
    map.insert(
        "sig".into(),
        json!({"alg": "ed25519", "kid": key.kid().0, "value": sig.to_string()}),
    );
    canonical::canonicalize(&value).expect("canonical")
}

fn reason(bytes: &[u8]) -> ReasonCode {
    match SignedEnvelope::decode(bytes).and_then(|e| e.verify(&key().public()).map(|()| e)) {
        Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(bytes)),
        Err(e) => e.reason(),
    }
}

#[test]
fn signed_envelope_decodes_and_verifies() {
    let signed = fields(1, None).sign(&key()).expect("signs");
    let decoded = SignedEnvelope::decode(&signed.bytes).expect("decodes");
    assert_eq!(decoded, signed);
    decoded.verify(&key().public()).expect("verifies");
    assert!(
        decoded
            .verify(&NodeKey::from_seed(&[6u8; 32]).public())
            .is_err()
    );
}

#[test]
fn malformed_envelopes_are_refused_with_their_reason() {
    let k = key();
    let good: Value =
        serde_json::from_slice(&fields(1, None).sign(&k).expect("signs").bytes).expect("json");
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v = good.clone();
        f(v.as_object_mut().expect("object"));
        resign(v, &k)
    };
    assert_eq!(
        reason(&edit(&|m| {
            m.remove("prev");
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("extra".into(), json!(1));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("seq".into(), json!(0));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("prev".into(), json!(Sha256Hash::of(b"x").to_string()));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("id".into(), json!("019AC0A0-0000-7000-8000-0000000000AA"));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("id".into(), json!("019ac0a0-0000-4000-8000-0000000000aa"));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("v".into(), json!(2));
        })),
        ReasonCode::UnsupportedVersion
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("to".into(), json!("acme"));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("body".into(), json!([]));
        })),
        ReasonCode::BadEnvelope
    );
    assert_eq!(
        reason(&edit(&|m| {
            m.insert("from".into(), json!("Acme Corp"));
        })),
        ReasonCode::BadEnvelope
    );

    let mut wrong_alg = good.clone();
    wrong_alg["sig"]["alg"] = json!("rsa");
    assert_eq!(
        reason(&canonical::canonicalize(&wrong_alg).expect("canonical")),
        ReasonCode::BadSignature
    );
    let mut tampered = good.clone();
    tampered["body"]["note"] = json!("HI");
    assert_eq!(
        reason(&canonical::canonicalize(&tampered).expect("canonical")),
        ReasonCode::BadSignature
    );

    let text = String::from_utf8(canonical::canonicalize(&good).expect("canonical")).expect("utf8");
    assert_eq!(
        reason(format!(" {text}").as_bytes()),
        ReasonCode::NotCanonical
    );
    assert_eq!(
        reason(text.replacen("\"v\":1", "\"v\":1.0", 1).as_bytes()),
        ReasonCode::NotCanonical
    );
    assert_eq!(
        reason(text.replacen("\"v\":1", "\"v\":1.5", 1).as_bytes()),
        ReasonCode::NotAnInteger
    );
    assert_eq!(
        reason(
            text.replacen("{\"body\"", "{\"v\":1,\"body\"", 1)
                .as_bytes()
        ),
        ReasonCode::DuplicateKey
    );
    assert_eq!(reason(b"not json"), ReasonCode::BadJson);
    assert_eq!(
        reason(&vec![b' '; MAX_ENVELOPE_BYTES + 1]),
        ReasonCode::TooLarge
    );
}

#[test]
fn field_errors_name_the_field() {
    let k = key();
    let mut v: Value =
        serde_json::from_slice(&fields(1, None).sign(&k).expect("signs").bytes).expect("json");
    v["sig"]["value"] = json!("short");
    let err = SignedEnvelope::decode(&canonical::canonicalize(&v).expect("canonical"))
        .expect_err("bad sig value");
    assert!(err.to_string().contains("$.sig.value"), "{err}");
}

#[test]
fn oversized_envelope_cannot_be_signed() {
    let mut f = fields(1, None);
    f.body = json!({"note": "x".repeat(MAX_ENVELOPE_BYTES)});
    assert_eq!(
        f.sign(&key()).expect_err("too large").reason(),
        ReasonCode::TooLarge
    );
}

#[test]
fn receipts_sign_decode_verify_and_match() {
    let sender = key();
    let receiver = NodeKey::from_seed(&[8u8; 32]);
    let first = fields(1, None).sign(&sender).expect("signs");
    let second = EnvelopeFields {
        id: "019ac0a0-0000-7000-8000-0000000000bb".into(),
        ..fields(2, Some(first.hash))
    }
    .sign(&sender)
    .expect("signs");
    let rejection = Rejection {
        code: ReasonCode::SeqGap,
        message: "expected seq 1".into(),
        expected_seq: Some(1),
    };
    let receipt = ReceiptFields::for_envelope(&second, 0, Some(rejection), 1_795_651_201_000)
        .sign(&receiver)
        .expect("signs");
    let decoded = SignedReceipt::decode(&receipt.bytes).expect("decodes");
    assert_eq!(decoded, receipt);
    decoded.verify(&receiver.public()).expect("verifies");
    assert!(decoded.verify(&sender.public()).is_err());
    decoded
        .matches(&second)
        .expect("matches the second envelope");
    assert!(matches!(
        decoded.matches(&first),
        Err(ReceiptMismatch::Id { .. })
    ));
    // An accepted receipt with a reason is inconsistent and cannot be made.
    let mut bad = ReceiptFields::for_envelope(&first, 1, None, 0);
    bad.reason = Some(Rejection {
        code: ReasonCode::BadBody,
        message: String::new(),
        expected_seq: None,
    });
    assert!(bad.sign(&receiver).is_err());
}

#[test]
fn a_float_or_duplicate_key_in_a_body_names_its_place() {
    let good = String::from_utf8(fields(1, None).sign(&key()).expect("signs").bytes).expect("utf8");
    let float = good.replacen("{\"note\":\"hi\"}", "{\"amount\":12.5,\"note\":\"hi\"}", 1);
    let err = SignedEnvelope::decode(float.as_bytes()).expect_err("float");
    assert_eq!(err.reason(), ReasonCode::NotAnInteger);
    assert!(
        err.to_string().contains("path $.body.amount") && err.to_string().contains("column 19"),
        "{err}"
    );
    let dup = good.replacen("{\"note\":\"hi\"}", "{\"note\":\"hi\",\"note\":\"ho\"}", 1);
    let err = SignedEnvelope::decode(dup.as_bytes()).expect_err("duplicate");
    assert_eq!(err.reason(), ReasonCode::DuplicateKey);
    assert!(
        err.to_string().contains("\"note\"") && err.to_string().contains("path $.body"),
        "{err}"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Mutating any byte of a valid envelope never panics the decoder,
        /// and a mutated envelope that still decodes never verifies.
        #[test]
        fn mutated_envelopes_never_panic_or_verify(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let signed = fields(1, None).sign(&key()).expect("signs");
            let mut bytes = signed.bytes.clone();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(decoded) = SignedEnvelope::decode(&bytes) {
                prop_assert!(decoded.verify(&key().public()).is_err());
            }
        }
    }
}
