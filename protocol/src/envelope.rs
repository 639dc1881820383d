//! The signed envelope: what one node sends another, and the checks a receiver
//! makes on its bytes before any business logic sees it.
//!
//! An envelope travels as the canonical JSON of all its fields, `sig`
//! included. The signature covers [`Domain::Envelope`]'s prefix followed by the
//! canonical JSON of the envelope *without* its `sig` member. Its SHA-256 (of
//! the exact bytes sent, signature included) is what the next envelope's `prev`
//! and the receiver's receipt name.

use crate::canonical::{self, CanonicalError, DecodeError, MAX_SAFE_INTEGER};
use crate::crypto::{
    ALG_ED25519, CryptoError, Domain, KeyId, NodeKey, PublicKey, Sha256Hash, SignatureBytes,
};
use crate::ids::{NodeId, RecordId};
use crate::reason::ReasonCode;
use crate::signed;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest envelope accepted, in bytes of its canonical form.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Most envelopes in one batch request.
pub const MAX_BATCH: usize = 100;

/// Milliseconds since 1970-01-01T00:00:00Z (UTC), as on the wire.
pub type Millis = i64;

/// The signature member of an envelope or receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sig {
    /// Always `"ed25519"` in version 1.
    pub alg: String,
    /// Id of the signer's key.
    pub kid: KeyId,
    /// The signature, unpadded base64url of 64 bytes.
    pub value: SignatureBytes,
}

impl Sig {
    /// Checks the algorithm and the key id's form (22 base64url characters).
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.alg != ALG_ED25519 {
            return Err(EnvelopeError::Alg(self.alg.clone()));
        }
        if crate::crypto::b64url_fixed::<16>(&self.kid.0).is_err() {
            return Err(EnvelopeError::Field {
                field: "sig.kid",
                message: "must be 16 bytes as unpadded base64url (22 characters)".into(),
            });
        }
        Ok(())
    }
}

/// Everything in an envelope but its signature: what a sender fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeFields {
    /// Protocol version, 1.
    pub v: u32,
    /// Globally unique id: a lowercase hyphenated UUIDv7.
    pub id: String,
    /// Sender node id.
    pub from: NodeId,
    /// Recipient node id.
    pub to: NodeId,
    /// Position in the sender→recipient stream, from 1, no gaps.
    pub seq: u64,
    /// SHA-256 of the previous envelope in this stream; null when `seq` is 1.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub prev: Option<Sha256Hash>,
    /// Creation time, UTC milliseconds.
    pub created: Millis,
    /// Message kind, like `lead.offer`.
    pub kind: String,
    /// Id of the record the message is about.
    pub subject: RecordId,
    /// The kind's body: always a JSON object.
    pub body: Value,
    /// For a message from a record's authority (§12.1): the record's version
    /// after this message. Null for every other message.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub record_version: Option<u64>,
}

/// A complete envelope as it travels: the fields plus a `sig` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub fields: EnvelopeFields,
    pub sig: Sig,
}

impl Envelope {
    /// The JSON value of the whole envelope, `sig` included.
    pub fn to_value(&self) -> Result<Value, CanonicalError> {
        signed::with_sig(&self.fields, &self.sig)
    }
}

/// An envelope together with its exact canonical bytes and their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnvelope {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
    pub hash: Sha256Hash,
    /// The bytes the signature covers (canonical JSON without `sig`).
    unsigned: Vec<u8>,
}

/// Why envelope bytes were refused. [`EnvelopeError::reason`] gives the
/// machine-readable code of SPEC.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {size} bytes, over the limit of {MAX_ENVELOPE_BYTES}")]
    TooLarge { size: usize },
    #[error("envelope is not strict JSON: {0}")]
    Json(DecodeError),
    #[error("envelope bytes are not in canonical form (RFC 8785)")]
    NotCanonical,
    #[error("envelope field {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("unsupported protocol version {0}")]
    Version(u32),
    #[error("signature algorithm {0:?} is not supported")]
    Alg(String),
    #[error("signature: {0}")]
    Signature(CryptoError),
    #[error("envelope cannot be written canonically: {0}")]
    Canonical(#[from] CanonicalError),
}

impl EnvelopeError {
    /// The reason code a receiver reports for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            EnvelopeError::TooLarge { .. } => ReasonCode::TooLarge,
            EnvelopeError::Json(DecodeError::Syntax(e)) => ReasonCode::from_parse_error(&e.kind),
            EnvelopeError::Json(DecodeError::Field { .. }) | EnvelopeError::Field { .. } => {
                ReasonCode::BadEnvelope
            }
            EnvelopeError::NotCanonical => ReasonCode::NotCanonical,
            EnvelopeError::Version(_) => ReasonCode::UnsupportedVersion,
            EnvelopeError::Alg(_) | EnvelopeError::Signature(_) => ReasonCode::BadSignature,
            EnvelopeError::Canonical(_) => ReasonCode::BadEnvelope,
        }
    }
}

/// Checks that `id` is a lowercase hyphenated UUID of version 7.
pub fn check_uuid_v7(id: &str) -> Result<(), String> {
    let parsed = uuid::Uuid::try_parse(id).map_err(|e| format!("not a UUID: {e}"))?;
    if parsed.hyphenated().to_string() != id {
        return Err("UUID must be lowercase and hyphenated".into());
    }
    if parsed.get_version_num() != 7 {
        return Err(format!(
            "UUID version is {}, must be 7",
            parsed.get_version_num()
        ));
    }
    Ok(())
}

impl EnvelopeFields {
    /// Checks every field's own rules (those that need no outside state).
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.v != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        check_uuid_v7(&self.id).map_err(|message| EnvelopeError::Field {
            field: "id",
            message,
        })?;
        let field = |field, message: &str| EnvelopeError::Field {
            field,
            message: message.to_string(),
        };
        if self.seq == 0 || self.seq > MAX_SAFE_INTEGER as u64 {
            return Err(field("seq", "must be between 1 and 2^53-1"));
        }
        match (self.seq, &self.prev) {
            (1, Some(_)) => return Err(field("prev", "must be null when seq is 1")),
            (s, None) if s > 1 => {
                return Err(field(
                    "prev",
                    "must be the previous envelope's hash when seq > 1",
                ));
            }
            _ => {}
        }
        if self.created < 0 {
            return Err(field(
                "created",
                "must be a non-negative UTC millisecond count",
            ));
        }
        if self.from == self.to {
            return Err(field("to", "must differ from `from`"));
        }
        if !self.body.is_object() {
            return Err(field("body", "must be a JSON object"));
        }
        if let Some(v) = self.record_version
            && (v == 0 || v > MAX_SAFE_INTEGER as u64)
        {
            return Err(field(
                "record_version",
                "must be null or between 1 and 2^53-1",
            ));
        }
        if self.kind.is_empty() || self.kind.len() > 64 {
            return Err(field("kind", "must be 1 to 64 characters"));
        }
        Ok(())
    }

    /// Signs these fields with `key`, producing the envelope's exact bytes.
    pub fn sign(self, key: &NodeKey) -> Result<SignedEnvelope, EnvelopeError> {
        self.validate()?;
        let (sig, bytes, unsigned) = signed::sign(&self, key, Domain::Envelope)?;
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let hash = Sha256Hash::of(&bytes);
        Ok(SignedEnvelope {
            envelope: Envelope { fields: self, sig },
            bytes,
            hash,
            unsigned,
        })
    }
}

impl SignedEnvelope {
    /// Parses received bytes: size limit, strict JSON, canonical form, every
    /// field present and well formed. Does not check the signature (the
    /// receiver must first find the sender's key: see [`SignedEnvelope::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        Self::from_decoded(bytes.to_vec(), signed::decode::<EnvelopeFields>(bytes)?)
    }

    /// [`SignedEnvelope::decode`] for a value already parsed strictly, whose
    /// canonical form the caller computed as `bytes` (a batch element).
    pub fn decode_parsed(bytes: Vec<u8>, value: Value) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let decoded = signed::decode_canonical::<EnvelopeFields>(value)?;
        Self::from_decoded(bytes, decoded)
    }

    fn from_decoded(
        bytes: Vec<u8>,
        decoded: signed::Decoded<EnvelopeFields>,
    ) -> Result<Self, EnvelopeError> {
        decoded.fields.validate()?;
        Ok(SignedEnvelope {
            envelope: Envelope {
                fields: decoded.fields,
                sig: decoded.sig,
            },
            hash: Sha256Hash::of(&bytes),
            bytes,
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies the signature with the sender's key (strict Ed25519). The
    /// `sig.kid` must be that key's id: the kid lies outside the signed bytes,
    /// so binding it to the key is what keeps it from being altered.
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        signed::verify_bytes(&self.unsigned, &self.envelope.sig, key, Domain::Envelope)
    }

    /// Shorthand for the envelope's fields.
    pub fn fields(&self) -> &EnvelopeFields {
        &self.envelope.fields
    }
}
