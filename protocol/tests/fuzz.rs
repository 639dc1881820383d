//! Fuzzing on stable Rust: random and mutated inputs for everything that
//! reads bytes from outside — the strict JSON parser and canonicalizer, the
//! envelope and receipt decoders, message bodies of every kind. The property
//! is always the same: an answer (a value or a typed error), never a panic,
//! and whatever is accepted is canonical and round-trips.
//!
//! `cargo test -p guanxi-protocol --test fuzz` runs a few thousand cases;
//! `PROPTEST_CASES=1000000 cargo test --release -p guanxi-protocol --test
//! fuzz` is the long run. A failing case is saved by proptest under
//! `protocol/tests/fuzz.proptest-regressions` and replayed on every run.

use guanxi_protocol::NodeKey;
use guanxi_protocol::canonical::{canonicalize, parse_strict};
use guanxi_protocol::envelope::{EnvelopeFields, PROTOCOL_VERSION, SignedEnvelope};
use guanxi_protocol::messages::{KINDS, Message};
use guanxi_protocol::receipt::{ReceiptFields, SignedReceipt};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A valid signed envelope and a receipt for it, to mutate.
fn seeds() -> (Vec<u8>, Vec<u8>) {
    let key = NodeKey::from_seed(&[9u8; 32]);
    let envelope = EnvelopeFields {
        v: PROTOCOL_VERSION,
        id: "019ac0a0-0000-7000-8000-000000000001".into(),
        from: "acme".parse().expect("id"),
        to: "globex".parse().expect("id"),
        seq: 1,
        prev: None,
        created: 1_795_651_200_000,
        kind: "lead.accept".into(),
        subject: "lead-1".parse().expect("id"),
        body: json!({"note": "ok 好"}),
        record_version: None,
    }
    .sign(&key)
    .expect("signs");
    let receipt = ReceiptFields::for_envelope(&envelope, 1, None, 1_795_651_201_000)
        .with_record_version(Some(2))
        .sign(&key)
        .expect("signs");
    (envelope.bytes, receipt.bytes)
}

/// Applies `edits` (position, byte) to `base`: flips, inserts and cuts.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(at, byte, op) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let i = at % out.len();
        match op % 4 {
            0 => out[i] = byte,
            1 => out.insert(i, byte),
            2 => {
                out.remove(i);
            }
            _ => out.truncate(i),
        }
    }
    out
}

/// Whatever the strict parser accepts canonicalizes, and the canonical form
/// parses back to the same value and the same bytes.
fn round_trips(bytes: &[u8]) {
    if let Ok(value) = parse_strict(bytes)
        && let Ok(canonical) = canonicalize(&value)
    {
        let again = parse_strict(&canonical).expect("the canonical form parses");
        assert_eq!(again, value, "the canonical form means the same");
        assert_eq!(
            canonicalize(&again).expect("canonical"),
            canonical,
            "canonicalizing is idempotent"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        round_trips(&bytes);
        let _ = SignedEnvelope::decode(&bytes);
        let _ = SignedReceipt::decode(&bytes);
    }

    #[test]
    fn mutated_envelopes_and_receipts_are_refused_or_still_valid(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let (envelope, receipt) = seeds();
        let key = NodeKey::from_seed(&[9u8; 32]).public();
        let bytes = mutate(&envelope, &edits);
        round_trips(&bytes);
        if let Ok(e) = SignedEnvelope::decode(&bytes) {
            // Accepted bytes are their own canonical form ...
            prop_assert_eq!(&e.bytes, &bytes);
            // ... and a signature over other bytes never verifies.
            if bytes != envelope {
                prop_assert!(e.verify(&key).is_err(), "a changed envelope verified");
            }
        }
        let bytes = mutate(&receipt, &edits);
        if let Ok(r) = SignedReceipt::decode(&bytes)
            && bytes != receipt
        {
            prop_assert!(r.verify(&key).is_err(), "a changed receipt verified");
        }
    }

    #[test]
    fn message_bodies_of_every_kind_are_decoded_or_refused(
        kind in proptest::sample::select(KINDS.to_vec()),
        text in "[ -~]{0,40}",
        number in any::<i64>(),
        nested in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let candidates = [
            json!({}),
            json!({"note": text}),
            json!({"status": text, "comment": text, "attachments": [], "note": text}),
            json!({"amount": number, "currency": text, "action": "top_up", "period": text,
                   "allow_overdraw": false, "expires_on": null, "note": text}),
            json!({"lines": [{"line": number, "quantity": number, "accepted": number, "sku": text,
                   "unit_price": number, "confirmed_date": null, "reason": null, "serials": []}],
                   "note": text, "reason": text}),
            json!({"x": nested}),
            Value::Array(vec![]),
            Value::Null,
        ];
        for body in candidates {
            if let Ok(message) = Message::decode(kind, &body) {
                // What decodes writes back as a body of its kind.
                prop_assert_eq!(message.kind(), kind);
                let written = message.body().expect("writes");
                prop_assert!(Message::decode(kind, &written).is_ok());
            }
        }
    }
}
