//! Signed file fetches (SPEC §17): how a node asks a publisher for the bytes
//! of a resource's file without a password. The request is a small signed
//! object (canonical JSON, a `sig` member, Ed25519 over the domain prefix
//! `guanxi/v1/fetch\0`) carried base64url in the `Guanxi-Fetch` header, so a
//! fetch signature can never pass for an envelope's, a receipt's or a
//! certification's.

use crate::crypto::{Domain, NodeKey, PublicKey};
use crate::envelope::{EnvelopeError, Millis, Sig};
use crate::ids::NodeId;
use crate::signed;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The header that carries a fetch request.
pub const HEADER: &str = "guanxi-fetch";
/// Largest fetch object accepted (bytes, before base64url).
pub const MAX_FETCH_BYTES: usize = 4 * 1024;
/// How far `at` may be from the publisher's clock, either way (ms).
pub const WINDOW_MS: Millis = 5 * 60 * 1000;

/// What a fetch request says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchFields {
    /// Always 1.
    pub v: u32,
    pub from: NodeId,
    pub to: NodeId,
    /// The file asked for, lowercase hex.
    pub sha256: String,
    /// When the request was made (UTC milliseconds).
    pub at: Millis,
}

/// A signed fetch request as read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFetch {
    pub fields: FetchFields,
    pub sig: Sig,
    unsigned: Vec<u8>,
}

impl FetchFields {
    /// Signs the request and returns the header's value.
    pub fn sign(&self, key: &NodeKey) -> Result<String, EnvelopeError> {
        let (_, bytes, _) = signed::sign(self, key, Domain::Fetch)?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

impl SignedFetch {
    /// Reads a header value: base64url of strict canonical JSON with every
    /// member and no other. Does not verify the signature.
    pub fn decode(header: &str) -> Result<SignedFetch, EnvelopeError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim())
            .map_err(|_| EnvelopeError::Signature(crate::crypto::CryptoError::Base64))?;
        if bytes.len() > MAX_FETCH_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let decoded = signed::decode::<FetchFields>(&bytes)?;
        Ok(SignedFetch {
            fields: decoded.fields,
            sig: decoded.sig,
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies the signature with the sender's key (the one `sig.kid`
    /// names).
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        signed::verify_bytes(&self.unsigned, &self.sig, key, Domain::Fetch)
    }

    /// Whether `at` is within [`WINDOW_MS`] of `now`, either way.
    pub fn timely(&self, now: Millis) -> bool {
        (self.fields.at - now).abs() <= WINDOW_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_verifies_with_the_senders_key_only_and_not_as_another_domain() {
        let key = NodeKey::from_seed(&[3u8; 32]);
        let fields = FetchFields {
            v: 1,
            from: "globex".parse().expect("id"),
            to: "acme".parse().expect("id"),
            sha256: "ab".repeat(32),
            at: 1_795_000_000_000,
        };
        let header = fields.sign(&key).expect("signs");
        let read = SignedFetch::decode(&header).expect("decodes");
        assert_eq!(read.fields, fields);
        read.verify(&key.public()).expect("verifies");
        assert!(
            read.verify(&NodeKey::from_seed(&[4u8; 32]).public())
                .is_err()
        );
        assert!(
            signed::verify_bytes(&read.unsigned, &read.sig, &key.public(), Domain::Envelope)
                .is_err()
        );
        assert!(read.timely(1_795_000_000_000 + WINDOW_MS));
        assert!(!read.timely(1_795_000_000_000 + WINDOW_MS + 1));
        assert!(!read.timely(1_795_000_000_000 - WINDOW_MS - 1));
        assert!(SignedFetch::decode("not base64!").is_err());
    }
}
