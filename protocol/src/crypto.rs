//! Keys, key ids, signatures and hashes, and their text encodings.
//!
//! Public keys and signatures travel as unpadded base64url; SHA-256 digests as
//! 64 lowercase hex digits. A key id is derived from the key itself, so two
//! different keys never share an id. Verification is `verify_strict` only, and
//! weak (small-order) public keys are refused when they are decoded, so no
//! weak key can ever reach a verifier. Every signature covers a domain prefix
//! (see [`Domain`]) so that an envelope signature can never be passed off as a
//! receipt signature or the reverse.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The only signature algorithm of protocol version 1.
pub const ALG_ED25519: &str = "ed25519";

/// What a signature is for: its prefix is part of the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Envelope,
    Receipt,
    Certification,
    Fetch,
    Introduction,
    Heal,
    Key,
}

impl Domain {
    /// The bytes signed before the canonical JSON (ASCII, NUL-terminated).
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Envelope => b"guanxi/v1/envelope\0",
            Domain::Receipt => b"guanxi/v1/receipt\0",
            Domain::Certification => b"guanxi/v1/certification\0",
            Domain::Fetch => b"guanxi/v1/fetch\0",
            Domain::Introduction => b"guanxi/v1/introduction\0",
            Domain::Heal => b"guanxi/v1/heal\0",
            Domain::Key => b"guanxi/v1/key\0",
        }
    }

    /// The full signing input: prefix followed by the canonical bytes.
    pub fn signing_input(self, canonical: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(self.prefix().len() + canonical.len());
        input.extend_from_slice(self.prefix());
        input.extend_from_slice(canonical);
        input
    }
}

/// Why a key, signature or hash could not be decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not unpadded base64url")]
    Base64,
    #[error("expected {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not a valid Ed25519 public key (not a curve point)")]
    InvalidKey,
    #[error("weak Ed25519 public key (small order) refused")]
    WeakKey,
    #[error("not 64 lowercase hex digits")]
    Hex,
    #[error("signature does not verify")]
    BadSignature,
}

/// Encodes bytes as unpadded base64url.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url of any length.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::Base64)
}

/// Decodes unpadded base64url into exactly `N` bytes. Padding, other alphabets
/// and non-zero trailing bits are refused, so each value has one spelling.
pub fn b64url_fixed<const N: usize>(text: &str) -> Result<[u8; N], CryptoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::Base64)?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| CryptoError::Length { expected: N, got })
}

/// A SHA-256 digest; text form is 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hash(pub [u8; 32]);

impl Sha256Hash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Hash(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hash({self})")
    }
}

impl FromStr for Sha256Hash {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(CryptoError::Hex);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = hex_digit(pair[0])?;
            let lo = hex_digit(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Sha256Hash(out))
    }
}

fn hex_digit(c: u8) -> Result<u8, CryptoError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(CryptoError::Hex),
    }
}

/// A key id: unpadded base64url of the first 16 bytes of SHA-256 over
/// `"guanxi/v1/kid\0"` followed by the 32 public-key bytes (22 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified-usable Ed25519 public key: a valid point, not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Decodes 32 raw bytes, refusing invalid and weak keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidKey)?;
        if key.is_weak() {
            return Err(CryptoError::WeakKey);
        }
        Ok(PublicKey(key))
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key's derived id.
    pub fn kid(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update(b"guanxi/v1/kid\0");
        h.update(self.0.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        KeyId(b64url(&digest[..16]))
    }

    /// Verifies `sig` over `domain`'s prefix followed by `canonical`, strictly.
    pub fn verify(
        &self,
        domain: Domain,
        canonical: &[u8],
        sig: &SignatureBytes,
    ) -> Result<(), CryptoError> {
        let signature = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0
            .verify_strict(&domain.signing_input(canonical), &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b64url(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_bytes(&b64url_fixed::<32>(s)?)
    }
}

/// A 64-byte Ed25519 signature; text form is unpadded base64url.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Display for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b64url(&self.0))
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({self})")
    }
}

impl FromStr for SignatureBytes {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SignatureBytes(b64url_fixed::<64>(s)?))
    }
}

/// A node's signing key, made from a 32-byte seed the caller supplies (the
/// protocol crate reads no randomness). Its Debug form never shows the seed.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// The key for this 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        NodeKey(SigningKey::from_bytes(seed))
    }

    /// The seed, for writing the key file. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half. A freshly derived key is never weak.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The public key's id.
    pub fn kid(&self) -> KeyId {
        self.public().kid()
    }

    /// Signs `domain`'s prefix followed by `canonical`.
    pub fn sign(&self, domain: Domain, canonical: &[u8]) -> SignatureBytes {
        SignatureBytes(self.0.sign(&domain.signing_input(canonical)).to_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey {{ kid: {}, seed: <redacted> }}", self.kid())
    }
}

macro_rules! serde_via_str {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse()
                    .map_err(|e: CryptoError| serde::de::Error::custom(format!("{}: {e}", $what)))
            }
        }
    };
}

serde_via_str!(Sha256Hash, "SHA-256 hash");
serde_via_str!(PublicKey, "Ed25519 public key");
serde_via_str!(SignatureBytes, "Ed25519 signature");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_text_round_trips_and_refuses_uppercase() {
        let h = Sha256Hash::of(b"abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string().parse::<Sha256Hash>(), Ok(h));
        assert_eq!(
            h.to_string().to_uppercase().parse::<Sha256Hash>(),
            Err(CryptoError::Hex)
        );
    }

    #[test]
    fn weak_and_short_keys_are_refused() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(CryptoError::WeakKey));
        assert_eq!(
            b64url(&[7u8; 31]).parse::<PublicKey>(),
            Err(CryptoError::Length {
                expected: 32,
                got: 31
            })
        );
        assert_eq!("not base64!".parse::<PublicKey>(), Err(CryptoError::Base64));
    }

    #[test]
    fn signature_domains_do_not_cross() {
        let key = NodeKey::from_seed(&[9u8; 32]);
        let sig = key.sign(Domain::Envelope, b"{}");
        assert_eq!(key.public().verify(Domain::Envelope, b"{}", &sig), Ok(()));
        assert_eq!(
            key.public().verify(Domain::Receipt, b"{}", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn key_ids_differ_for_different_keys() {
        let a = NodeKey::from_seed(&[1u8; 32]).kid();
        let b = NodeKey::from_seed(&[2u8; 32]).kid();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 22);
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let key = NodeKey::from_seed(&[3u8; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&b64url(&[3u8; 32])));
        assert!(shown.contains("redacted"));
    }
}
