//! Healing after a restore (SPEC §22): the signed request a healing node
//! sends each peer, the peer's answer (the envelopes and receipts it holds
//! of both streams, exact bytes), and the order in which the healing node
//! replays them. The checks that need the node's configuration and store
//! (whose keys, where each stream stands) are the daemon's.

use crate::canonical::{self, parse_strict};
use crate::crypto::{Domain, NodeKey, PublicKey};
use crate::envelope::{EnvelopeError, Millis, Sig, SignedEnvelope};
use crate::ids::NodeId;
use crate::receipt::SignedReceipt;
use crate::signed;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest heal request accepted (bytes).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Most items of one list in one answer.
pub const MAX_ITEMS: usize = 1000;
/// An answer stops taking items once it is this large (but always holds
/// one when there is one).
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Largest answer a healing node reads: the limit, one more item (an
/// envelope of at most 1 MiB and its receipt) and the frame.
pub const MAX_ANSWER_READ: usize = MAX_ANSWER_BYTES + 2 * 1024 * 1024;
/// How far `at` may be from the peer's clock, either way (ms).
pub const WINDOW_MS: Millis = crate::fetch::WINDOW_MS;

/// What a heal request says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealRequestFields {
    /// Always 1.
    pub v: u32,
    /// The healing node.
    pub from: NodeId,
    /// The peer asked.
    pub to: NodeId,
    /// The highest seq of `from`→`to` whose receipt `from` holds.
    pub sent_after: u64,
    /// The highest seq of `to`→`from` that `from` has consumed.
    pub received_after: u64,
    /// When the request was made (UTC ms).
    pub at: Millis,
}

/// A signed heal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHealRequest {
    pub fields: HealRequestFields,
    pub sig: Sig,
    /// The whole object, canonical JSON: the request body.
    pub bytes: Vec<u8>,
    unsigned: Vec<u8>,
}

/// Why an answer or an item of it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealError {
    #[error("the answer is not what SPEC §22 describes: {0}")]
    Malformed(String),
    #[error("{list} item {index}: {what}")]
    Item {
        list: &'static str,
        index: usize,
        what: String,
    },
}

impl HealRequestFields {
    /// Signs the request with the healing node's key.
    pub fn sign(self, key: &NodeKey) -> Result<SignedHealRequest, EnvelopeError> {
        let (sig, bytes, unsigned) = signed::sign(&self, key, Domain::Heal)?;
        Ok(SignedHealRequest {
            fields: self,
            sig,
            bytes,
            unsigned,
        })
    }
}

impl SignedHealRequest {
    /// Reads a request body: strict canonical JSON with every member and no
    /// other, `v` 1. Does not verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let decoded = signed::decode::<HealRequestFields>(bytes)?;
        if decoded.fields.v != 1 {
            return Err(EnvelopeError::Version(decoded.fields.v));
        }
        Ok(SignedHealRequest {
            fields: decoded.fields,
            sig: decoded.sig,
            bytes: bytes.to_vec(),
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies the signature with the key `sig.kid` names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        signed::verify_bytes(&self.unsigned, &self.sig, key, Domain::Heal)
    }

    /// Whether `at` is within [`WINDOW_MS`] of `now`, either way.
    pub fn timely(&self, now: Millis) -> bool {
        (self.fields.at - now).abs() <= WINDOW_MS
    }
}

/// An envelope and the receipt for it, as a peer holds them.
#[derive(Debug, Clone)]
pub struct HealItem {
    pub envelope: SignedEnvelope,
    pub receipt: SignedReceipt,
}

/// A peer's answer to a heal request.
#[derive(Debug, Clone)]
pub struct HealAnswer {
    /// The healing node's envelopes the peer consumed, with its receipts.
    pub sent: Vec<HealItem>,
    /// The peer's envelopes with the healing node's receipts.
    pub received: Vec<HealItem>,
    pub sent_head: u64,
    pub received_head: u64,
}

/// Builds an answer a list at a time from exact stored bytes; the result
/// is canonical JSON because every piece is (members in canonical order:
/// `received`, `received_head`, `sent`, `sent_head`, `v`).
#[derive(Debug)]
pub struct AnswerWriter {
    sent: Vec<u8>,
    received: Vec<u8>,
    sent_items: usize,
    received_items: usize,
    max_items: usize,
}

impl Default for AnswerWriter {
    fn default() -> Self {
        AnswerWriter::with_max_items(MAX_ITEMS)
    }
}

impl AnswerWriter {
    /// A writer whose lists stop at `max_items` (at most [`MAX_ITEMS`], at
    /// least 1): a node MAY answer smaller pages.
    pub fn with_max_items(max_items: usize) -> Self {
        AnswerWriter {
            sent: Vec::new(),
            received: Vec::new(),
            sent_items: 0,
            received_items: 0,
            max_items: max_items.clamp(1, MAX_ITEMS),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.sent.len() + self.received.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.sent_items + self.received_items == 0
    }

    /// Whether the list (`sent` when `sent`, else `received`) may take
    /// another item: under [`MAX_ITEMS`], and the answer under
    /// [`MAX_ANSWER_BYTES`] or still without an item of that list.
    pub fn room(&self, sent: bool) -> bool {
        let items = if sent {
            self.sent_items
        } else {
            self.received_items
        };
        items < self.max_items && (items == 0 || self.len() < MAX_ANSWER_BYTES)
    }

    /// Adds an envelope and its receipt (their exact, canonical bytes).
    pub fn push(&mut self, sent: bool, envelope: &[u8], receipt: &[u8]) {
        let (list, items) = if sent {
            (&mut self.sent, &mut self.sent_items)
        } else {
            (&mut self.received, &mut self.received_items)
        };
        if *items > 0 {
            list.push(b',');
        }
        list.extend_from_slice(b"{\"envelope\":");
        list.extend_from_slice(envelope);
        list.extend_from_slice(b",\"receipt\":");
        list.extend_from_slice(receipt);
        list.push(b'}');
        *items += 1;
    }

    /// The answer's bytes.
    pub fn finish(self, sent_head: u64, received_head: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 96);
        out.extend_from_slice(b"{\"received\":[");
        out.extend_from_slice(&self.received);
        out.extend_from_slice(format!("],\"received_head\":{received_head},\"sent\":[").as_bytes());
        out.extend_from_slice(&self.sent);
        out.extend_from_slice(format!("],\"sent_head\":{sent_head},\"v\":1}}").as_bytes());
        out
    }
}

impl HealAnswer {
    /// Reads an answer: strict canonical JSON of exactly the members of
    /// SPEC §22, each item an envelope and a receipt that parse (neither is
    /// verified here: the caller knows the keys).
    pub fn decode(bytes: &[u8]) -> Result<HealAnswer, HealError> {
        let malformed = |m: &str| HealError::Malformed(m.to_string());
        let value = parse_strict(bytes).map_err(|e| HealError::Malformed(e.to_string()))?;
        let canonical = canonical::canonicalize(&value).map_err(|e| malformed(&e.to_string()))?;
        if canonical != bytes {
            return Err(malformed("not canonical JSON"));
        }
        let Value::Object(mut map) = value else {
            return Err(malformed("not an object"));
        };
        let mut names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        if names != ["received", "received_head", "sent", "sent_head", "v"] {
            return Err(malformed(
                "members must be received, received_head, sent, sent_head and v",
            ));
        }
        if map.get("v").and_then(Value::as_u64) != Some(1) {
            return Err(malformed("v must be 1"));
        }
        let head = |name: &str| {
            map.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| HealError::Malformed(format!("{name} must be an integer ≥ 0")))
        };
        let (sent_head, received_head) = (head("sent_head")?, head("received_head")?);
        let sent = items("sent", map.remove("sent"))?;
        let received = items("received", map.remove("received"))?;
        Ok(HealAnswer {
            sent,
            received,
            sent_head,
            received_head,
        })
    }
}

fn items(list: &'static str, value: Option<Value>) -> Result<Vec<HealItem>, HealError> {
    let Some(Value::Array(values)) = value else {
        return Err(HealError::Malformed(format!("{list} must be an array")));
    };
    let mut out = Vec::with_capacity(values.len());
    for (index, v) in values.into_iter().enumerate() {
        let bad = |what: String| HealError::Item { list, index, what };
        let Value::Object(mut item) = v else {
            return Err(bad("not an object".into()));
        };
        if item.len() != 2 {
            return Err(bad("members must be envelope and receipt".into()));
        }
        let (Some(envelope), Some(receipt)) = (item.remove("envelope"), item.remove("receipt"))
        else {
            return Err(bad("members must be envelope and receipt".into()));
        };
        let envelope_bytes =
            canonical::canonicalize(&envelope).map_err(|e| bad(format!("envelope: {e}")))?;
        let envelope = SignedEnvelope::decode_parsed(envelope_bytes, envelope)
            .map_err(|e| bad(format!("envelope: {e}")))?;
        let receipt_bytes =
            canonical::canonicalize(&receipt).map_err(|e| bad(format!("receipt: {e}")))?;
        let receipt = SignedReceipt::decode_parsed(receipt_bytes, receipt)
            .map_err(|e| bad(format!("receipt: {e}")))?;
        out.push(HealItem { envelope, receipt });
    }
    Ok(out)
}

/// Where an item stands in the replay order (SPEC §22): the time on the
/// healing node's clock, then the record version (`null` as 0), then the
/// peer, then own envelopes before received ones. Items of one list are
/// taken in seq order; this key only chooses between the lists' heads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplayKey {
    pub time: Millis,
    pub version: u64,
    pub peer: NodeId,
    pub received: bool,
}

impl ReplayKey {
    /// The key of an own envelope sent to `peer`.
    pub fn sent(envelope: &SignedEnvelope) -> ReplayKey {
        let f = envelope.fields();
        ReplayKey {
            time: f.created,
            version: f.record_version.unwrap_or(0),
            peer: f.to.clone(),
            received: false,
        }
    }

    /// The key of a peer's envelope, by this node's receipt for it.
    pub fn received(item: &HealItem) -> ReplayKey {
        let f = &item.receipt.receipt.fields;
        ReplayKey {
            time: f.received,
            version: f.record_version.unwrap_or(0),
            peer: item.envelope.fields().from.clone(),
            received: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{EnvelopeFields, PROTOCOL_VERSION};
    use crate::receipt::ReceiptFields;

    fn envelope(key: &NodeKey, from: &str, to: &str, seq: u64) -> SignedEnvelope {
        EnvelopeFields {
            v: PROTOCOL_VERSION,
            id: format!("0190a000-0000-7000-8000-{seq:012}"),
            from: from.parse().expect("id"),
            to: to.parse().expect("id"),
            seq,
            prev: (seq > 1).then(|| crate::Sha256Hash::of(b"the one before")),
            created: 1_795_000_000_000 + seq as i64,
            kind: "ping".into(),
            subject: format!("p-{seq}").parse().expect("subject"),
            body: serde_json::json!({"note": "héllo"}),
            record_version: None,
        }
        .sign(key)
        .expect("signs")
    }

    #[test]
    fn a_request_verifies_with_its_key_only_and_not_as_another_domain() {
        let key = NodeKey::from_seed(&[5u8; 32]);
        let request = HealRequestFields {
            v: 1,
            from: "acme".parse().expect("id"),
            to: "globex".parse().expect("id"),
            sent_after: 12,
            received_after: 0,
            at: 1_795_000_000_000,
        }
        .sign(&key)
        .expect("signs");
        let read = SignedHealRequest::decode(&request.bytes).expect("decodes");
        assert_eq!(read.fields, request.fields);
        read.verify(&key.public()).expect("verifies");
        assert!(
            read.verify(&NodeKey::from_seed(&[6u8; 32]).public())
                .is_err()
        );
        assert!(
            signed::verify_bytes(&read.unsigned, &read.sig, &key.public(), Domain::Fetch).is_err()
        );
        assert!(read.timely(1_795_000_000_000 - WINDOW_MS));
        assert!(!read.timely(1_795_000_000_000 + WINDOW_MS + 1));
        let changed = String::from_utf8(request.bytes.clone())
            .expect("utf8")
            .replace("\"sent_after\":12", "\"sent_after\":2");
        let forged = SignedHealRequest::decode(changed.as_bytes()).expect("still decodes");
        assert!(forged.verify(&key.public()).is_err());
    }

    #[test]
    fn an_answer_is_canonical_and_gives_back_the_exact_bytes() {
        let (a, g) = (
            NodeKey::from_seed(&[1u8; 32]),
            NodeKey::from_seed(&[2u8; 32]),
        );
        let mut w = AnswerWriter::default();
        assert!(w.is_empty() && w.room(true) && w.room(false));
        let mut pairs = Vec::new();
        for seq in 1..=3 {
            let e = envelope(&a, "acme", "globex", seq);
            let r = ReceiptFields::for_envelope(&e, seq, None, 1_795_000_000_100)
                .sign(&g)
                .expect("signs");
            w.push(true, &e.bytes, &r.bytes);
            pairs.push((e.bytes.clone(), r.bytes.clone()));
        }
        let e = envelope(&g, "globex", "acme", 1);
        let r = ReceiptFields::for_envelope(&e, 1, None, 1_795_000_000_200)
            .with_record_version(Some(4))
            .sign(&a)
            .expect("signs");
        w.push(false, &e.bytes, &r.bytes);
        let bytes = w.finish(3, 7);
        let value = parse_strict(&bytes).expect("strict JSON");
        assert_eq!(canonical::canonicalize(&value).expect("canonical"), bytes);
        let answer = HealAnswer::decode(&bytes).expect("decodes");
        assert_eq!((answer.sent_head, answer.received_head), (3, 7));
        assert_eq!(answer.sent.len(), 3);
        for (item, (e, r)) in answer.sent.iter().zip(&pairs) {
            assert_eq!((&item.envelope.bytes, &item.receipt.bytes), (e, r));
        }
        assert_eq!(answer.received[0].envelope.bytes, e.bytes);
        let key = ReplayKey::received(&answer.received[0]);
        assert_eq!(
            (key.time, key.version, key.received),
            (1_795_000_000_200, 4, true)
        );
        assert!(ReplayKey::sent(&answer.sent[0].envelope) < key);

        let empty = AnswerWriter::default().finish(0, 0);
        let none = HealAnswer::decode(&empty).expect("an empty answer");
        assert!(none.sent.is_empty() && none.received.is_empty());
        let extra = String::from_utf8(empty)
            .expect("utf8")
            .replace("\"v\":1", "\"v\":1,\"x\":1");
        assert!(HealAnswer::decode(extra.as_bytes()).is_err());
    }

    #[test]
    fn an_answer_stops_taking_items_at_its_limits_but_always_takes_one() {
        let mut w = AnswerWriter::default();
        let big = vec![b'x'; MAX_ANSWER_BYTES];
        assert!(w.room(true));
        w.push(true, &big, b"{}");
        assert!(!w.room(true), "the answer is full");
        assert!(w.room(false), "the other list still gets its first item");
        let mut w = AnswerWriter::default();
        for _ in 0..MAX_ITEMS {
            assert!(w.room(false));
            w.push(false, b"{}", b"{}");
        }
        assert!(!w.room(false));
    }
}
