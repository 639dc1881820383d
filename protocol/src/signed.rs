//! What envelopes and receipts share: a JSON object with a `sig` member,
//! signed over a domain prefix and the canonical JSON of the object without
//! `sig`, travelling as the canonical JSON of the whole object (SPEC §4).

use crate::canonical::{self, CanonicalError, DecodeError};
use crate::crypto::{ALG_ED25519, CryptoError, Domain, NodeKey, PublicKey};
use crate::envelope::{EnvelopeError, Sig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Signs `fields` for `domain`: the signature member, the exact bytes of the
/// whole signed object, and the signed (unsigned-object) bytes.
pub(crate) fn sign<T: Serialize>(
    fields: &T,
    key: &NodeKey,
    domain: Domain,
) -> Result<(Sig, Vec<u8>, Vec<u8>), EnvelopeError> {
    let unsigned = canonical::to_canonical(fields)?;
    let sig = Sig {
        alg: ALG_ED25519.to_string(),
        kid: key.kid(),
        value: key.sign(domain, &unsigned),
    };
    let bytes = canonical::canonicalize(&with_sig(fields, &sig)?)?;
    Ok((sig, bytes, unsigned))
}

/// Parses signed-object bytes: strict JSON, canonical form, every member
/// present and no other, and a well-formed `sig`. Does not verify the
/// signature.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Decoded<T>, EnvelopeError> {
    let value = canonical::parse_strict(bytes).map_err(|e| EnvelopeError::Json(e.into()))?;
    if canonical::canonicalize(&value)? != bytes {
        return Err(EnvelopeError::NotCanonical);
    }
    decode_canonical(value)
}

/// [`decode`] for a value already parsed strictly from bytes that are its
/// canonical form (the caller has checked that).
pub(crate) fn decode_canonical<T: DeserializeOwned>(
    mut value: Value,
) -> Result<Decoded<T>, EnvelopeError> {
    let Some(sig) = value.as_object_mut().and_then(|m| m.remove("sig")) else {
        return Err(EnvelopeError::Json(DecodeError::Field {
            path: "$".into(),
            message: "missing field `sig`".into(),
        }));
    };
    // The canonical bytes without `sig` are the signed bytes.
    let unsigned = canonical::canonicalize(&value)?;
    // Every member is required (optional ones as null, via
    // `required_nullable`) and unknown ones are refused, so a value that
    // decodes has exactly the members of `T`.
    let fields: T = canonical::from_value_ref(&value).map_err(EnvelopeError::Json)?;
    let sig: Sig = canonical::from_value(sig).map_err(|e| {
        EnvelopeError::Json(match e {
            DecodeError::Field { path, message } => DecodeError::Field {
                path: path.replacen('$', "$.sig", 1),
                message,
            },
            other => other,
        })
    })?;
    sig.validate()?;
    Ok(Decoded {
        fields,
        sig,
        unsigned,
    })
}

/// A decoded signed object: its fields, its signature, and the exact bytes
/// the signature covers (after the domain prefix).
pub(crate) struct Decoded<T> {
    pub fields: T,
    pub sig: Sig,
    pub unsigned: Vec<u8>,
}

/// Verifies `sig` over the canonical `unsigned` bytes for `domain` with
/// `key`, strictly; the signature's kid must be the key's id.
pub(crate) fn verify_bytes(
    unsigned: &[u8],
    sig: &Sig,
    key: &PublicKey,
    domain: Domain,
) -> Result<(), EnvelopeError> {
    if sig.kid != key.kid() {
        return Err(EnvelopeError::Signature(CryptoError::BadSignature));
    }
    key.verify(domain, unsigned, &sig.value)
        .map_err(EnvelopeError::Signature)
}

/// Adds a `sig` member to the JSON object of `fields`.
pub(crate) fn with_sig<T: Serialize>(fields: &T, sig: &Sig) -> Result<Value, CanonicalError> {
    let mut value =
        serde_json::to_value(fields).map_err(|e| CanonicalError::Unrepresentable(e.to_string()))?;
    let sig =
        serde_json::to_value(sig).map_err(|e| CanonicalError::Unrepresentable(e.to_string()))?;
    match value.as_object_mut() {
        Some(map) => {
            map.insert("sig".into(), sig);
            Ok(value)
        }
        None => Err(CanonicalError::Unrepresentable(
            "signed value is not an object".into(),
        )),
    }
}
