//! The signed receipt: the receiver's proof that it got exactly one envelope,
//! and what it did with it.
//!
//! A receipt names the envelope by id and by the SHA-256 of the exact bytes
//! received, signature included. It is signed by the receiver over
//! [`Domain::Receipt`]'s prefix followed by the canonical JSON of the receipt
//! without its `sig` member, and travels as the canonical JSON of all of it.

use crate::canonical::{self, CanonicalError};
use crate::crypto::{Domain, NodeKey, PublicKey, Sha256Hash};
use crate::envelope::{EnvelopeError, Millis, PROTOCOL_VERSION, Sig, SignedEnvelope};
use crate::ids::NodeId;
use crate::reason::ReasonCode;
use crate::signed;
use serde::{Deserialize, Serialize};

/// What the receiver did with the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Stored and applied.
    Accepted,
    /// Not applied; `reason` says why.
    Rejected,
}

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// Machine-readable code.
    pub code: ReasonCode,
    /// Human-readable explanation, English.
    pub message: String,
    /// For `seq_gap` and `chain_broken`: the seq the receiver expects next.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub expected_seq: Option<u64>,
}

/// Everything in a receipt but its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptFields {
    /// Protocol version, 1.
    pub v: u32,
    /// The receiver, who signs the receipt.
    pub from: NodeId,
    /// The envelope's sender.
    pub to: NodeId,
    /// The envelope's id.
    pub envelope: String,
    /// SHA-256 of the exact envelope bytes received.
    pub hash: Sha256Hash,
    /// The envelope's seq.
    pub seq: u64,
    /// Highest seq from this sender the receiver has consumed, after this one.
    pub high_water: u64,
    pub status: ReceiptStatus,
    /// Null when accepted, the rejection otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub reason: Option<Rejection>,
    /// When the receiver processed the envelope, UTC milliseconds.
    pub received: Millis,
    /// When the receiver is the authority of the envelope's record (§12.1)
    /// and accepted it: the record's version it produced. Null otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub record_version: Option<u64>,
}

/// A complete receipt as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub fields: ReceiptFields,
    pub sig: Sig,
}

/// A receipt with its exact canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub bytes: Vec<u8>,
    /// The bytes the signature covers (canonical JSON without `sig`).
    unsigned: Vec<u8>,
}

/// Why a receipt does not prove what its holder thinks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptMismatch {
    #[error("receipt is for envelope {got}, expected {expected}")]
    Id { expected: String, got: String },
    #[error("receipt hash {got} differs from the sent envelope's hash {expected}")]
    Hash {
        expected: Sha256Hash,
        got: Sha256Hash,
    },
    #[error("receipt seq {got} differs from the envelope's seq {expected}")]
    Seq { expected: u64, got: u64 },
    #[error("receipt parties ({from} → {to}) do not match the envelope")]
    Parties { from: NodeId, to: NodeId },
}

impl ReceiptFields {
    /// A receipt for `envelope`, accepted when `reason` is `None`.
    pub fn for_envelope(
        envelope: &SignedEnvelope,
        high_water: u64,
        reason: Option<Rejection>,
        received: Millis,
    ) -> Self {
        let f = envelope.fields();
        ReceiptFields {
            v: PROTOCOL_VERSION,
            from: f.to.clone(),
            to: f.from.clone(),
            envelope: f.id.clone(),
            hash: envelope.hash,
            seq: f.seq,
            high_water,
            status: if reason.is_some() {
                ReceiptStatus::Rejected
            } else {
                ReceiptStatus::Accepted
            },
            reason,
            received,
            record_version: None,
        }
    }

    /// The same receipt, naming the record version the envelope produced.
    pub fn with_record_version(mut self, version: Option<u64>) -> Self {
        self.record_version = version;
        self
    }

    fn validate(&self) -> Result<(), EnvelopeError> {
        if self.v != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        let consistent = matches!(
            (self.status, &self.reason),
            (ReceiptStatus::Accepted, None) | (ReceiptStatus::Rejected, Some(_))
        );
        if self.record_version.is_some() && self.status != ReceiptStatus::Accepted {
            return Err(EnvelopeError::Field {
                field: "record_version",
                message: "must be null when status is rejected".into(),
            });
        }
        if !consistent {
            return Err(EnvelopeError::Field {
                field: "reason",
                message: "must be null exactly when status is accepted".into(),
            });
        }
        Ok(())
    }

    /// Signs the receipt with the receiver's key.
    pub fn sign(self, key: &NodeKey) -> Result<SignedReceipt, EnvelopeError> {
        self.validate()?;
        let (sig, bytes, unsigned) = signed::sign(&self, key, Domain::Receipt)?;
        Ok(SignedReceipt {
            receipt: Receipt { fields: self, sig },
            bytes,
            unsigned,
        })
    }
}

impl Receipt {
    /// The JSON value of the whole receipt, `sig` included.
    pub fn to_value(&self) -> Result<serde_json::Value, CanonicalError> {
        signed::with_sig(&self.fields, &self.sig)
    }
}

impl SignedReceipt {
    /// Parses receipt bytes strictly; they must be canonical. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::from_decoded(bytes.to_vec(), signed::decode::<ReceiptFields>(bytes)?)
    }

    /// [`SignedReceipt::decode`] for a value already parsed strictly, whose
    /// canonical form the caller computed as `bytes` (a batch result).
    pub fn decode_parsed(bytes: Vec<u8>, value: serde_json::Value) -> Result<Self, EnvelopeError> {
        Self::from_decoded(bytes, signed::decode_canonical::<ReceiptFields>(value)?)
    }

    fn from_decoded(
        bytes: Vec<u8>,
        decoded: signed::Decoded<ReceiptFields>,
    ) -> Result<Self, EnvelopeError> {
        decoded.fields.validate()?;
        Ok(SignedReceipt {
            receipt: Receipt {
                fields: decoded.fields,
                sig: decoded.sig,
            },
            bytes,
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies the receiver's signature (strict Ed25519).
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        signed::verify_bytes(&self.unsigned, &self.receipt.sig, key, Domain::Receipt)
    }

    /// Checks that this receipt is about exactly `sent`.
    pub fn matches(&self, sent: &SignedEnvelope) -> Result<(), ReceiptMismatch> {
        let e = sent.fields();
        if self.receipt.fields.envelope != e.id {
            return Err(ReceiptMismatch::Id {
                expected: e.id.clone(),
                got: self.receipt.fields.envelope.clone(),
            });
        }
        self.matches_sent(&sent.hash, e.seq, &e.from, &e.to)
    }

    /// Checks that this receipt is about the envelope with hash `sent_hash`
    /// and seq `seq` sent by `sender` to `receiver`. The hash names the exact
    /// bytes, id included, so the sender need not parse its own envelope.
    pub fn matches_sent(
        &self,
        sent_hash: &Sha256Hash,
        seq: u64,
        sender: &NodeId,
        receiver: &NodeId,
    ) -> Result<(), ReceiptMismatch> {
        let r = &self.receipt.fields;
        if &r.hash != sent_hash {
            return Err(ReceiptMismatch::Hash {
                expected: *sent_hash,
                got: r.hash,
            });
        }
        if r.seq != seq {
            return Err(ReceiptMismatch::Seq {
                expected: seq,
                got: r.seq,
            });
        }
        if &r.from != receiver || &r.to != sender {
            return Err(ReceiptMismatch::Parties {
                from: r.from.clone(),
                to: r.to.clone(),
            });
        }
        Ok(())
    }
}
