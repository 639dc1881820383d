//! Invitations (SPEC §21): how two companies connect without copying keys
//! by hand. The inviting node prints a code carrying its id, URL, TLS
//! certificate fingerprint, public key, an expiry and a one-time secret;
//! the invited node sends an introduction signed with its own key and
//! carrying the secret, over HTTPS pinned to that fingerprint; the inviting
//! node answers with its own signed introduction. Each side thereby proves
//! possession of its key, and the secret proves that the invited node was
//! given the code. Introductions are signed objects over the domain prefix
//! `guanxi/v1/introduction\0`, so they can never pass for anything else.

use crate::canonical;
use crate::crypto::{Domain, NodeKey, PublicKey, Sha256Hash};
use crate::envelope::{EnvelopeError, Millis, Sig};
use crate::ids::NodeId;
use crate::signed;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How a code begins.
pub const CODE_PREFIX: &str = "guanxi-invite-1.";
/// Largest introduction accepted (bytes).
pub const MAX_INTRODUCTION_BYTES: usize = 8 * 1024;
/// Bytes of the secret.
pub const SECRET_BYTES: usize = 32;

/// What an invitation code carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// Always 1.
    pub v: u32,
    /// The inviting node.
    pub node: NodeId,
    /// Its display name.
    pub name: String,
    /// Its HTTPS URL.
    pub url: String,
    /// SHA-256 of its TLS certificate (DER), lowercase hex: the invited node
    /// pins it for the introduction.
    pub tls_cert_sha256: String,
    /// Whether peers keep pinning that certificate (a self-signed one); when
    /// false the certificate is from a CA and peers trust the web PKI, so
    /// its renewal breaks nothing.
    pub pinned: bool,
    /// Its Ed25519 public key (unpadded base64url).
    pub public_key: String,
    /// The one-time secret (unpadded base64url of [`SECRET_BYTES`]).
    pub secret: String,
    /// When the code stops working (UTC milliseconds).
    pub expires: Millis,
}

/// Why a code could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("it is not a Guanxi invitation code (it must begin with {CODE_PREFIX})")]
    NotACode,
    #[error("the code was changed or mistyped (its check digits do not match); ask for it again")]
    Altered,
    #[error("the code is damaged: {0}")]
    Damaged(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The check of a code's body: the first 4 bytes of its SHA-256.
fn check_of(body: &[u8]) -> String {
    b64().encode(&Sha256Hash::of(body).0[..4])
}

impl Invitation {
    /// The code to give to the other company's admin:
    /// `guanxi-invite-1.<base64url of canonical JSON>.<check>`.
    pub fn code(&self) -> Result<String, EnvelopeError> {
        let body = canonical::to_canonical(self)?;
        Ok(format!(
            "{CODE_PREFIX}{}.{}",
            b64().encode(&body),
            check_of(&body)
        ))
    }

    /// Reads a code (whitespace around and inside it, as a mail client
    /// may wrap it, is ignored).
    pub fn from_code(code: &str) -> Result<Invitation, CodeError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = code.strip_prefix(CODE_PREFIX).ok_or(CodeError::NotACode)?;
        let (body, check) = rest.split_once('.').ok_or(CodeError::Altered)?;
        let body = b64().decode(body).map_err(|_| CodeError::Altered)?;
        if check_of(&body) != check {
            return Err(CodeError::Altered);
        }
        let value =
            canonical::parse_strict(&body).map_err(|e| CodeError::Damaged(e.to_string()))?;
        let invitation: Invitation =
            canonical::from_value(value).map_err(|e| CodeError::Damaged(e.to_string()))?;
        if invitation.v != 1 {
            return Err(CodeError::Damaged("version must be 1".into()));
        }
        invitation
            .public_key
            .parse::<PublicKey>()
            .map_err(|e| CodeError::Damaged(format!("public_key: {e}")))?;
        invitation
            .tls_cert_sha256
            .parse::<Sha256Hash>()
            .map_err(|e| CodeError::Damaged(format!("tls_cert_sha256: {e}")))?;
        Ok(invitation)
    }

    /// The SHA-256 of the secret, lowercase hex: what the inviting node
    /// keeps (never the secret itself).
    pub fn secret_sha256(secret: &str) -> String {
        Sha256Hash::of(secret.as_bytes()).to_string()
    }
}

/// What an introduction says: who sends it, how to reach it, its key,
/// whom it introduces itself to, and the invitation's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntroductionFields {
    /// Always 1.
    pub v: u32,
    pub from: NodeId,
    pub name: String,
    pub url: String,
    pub tls_cert_sha256: String,
    /// As in [`Invitation::pinned`].
    pub pinned: bool,
    pub public_key: String,
    pub to: NodeId,
    pub secret: String,
    /// When it was made (UTC milliseconds).
    pub at: Millis,
}

/// A signed introduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIntroduction {
    pub fields: IntroductionFields,
    pub sig: Sig,
    /// The whole object, canonical JSON.
    pub bytes: Vec<u8>,
    unsigned: Vec<u8>,
}

impl IntroductionFields {
    /// Signs it with the sender's key (the one named in `public_key`).
    pub fn sign(self, key: &NodeKey) -> Result<SignedIntroduction, EnvelopeError> {
        let (sig, bytes, unsigned) = signed::sign(&self, key, Domain::Introduction)?;
        Ok(SignedIntroduction {
            fields: self,
            sig,
            bytes,
            unsigned,
        })
    }
}

impl SignedIntroduction {
    /// Reads one: strict canonical JSON, every member and no other, a
    /// well-formed signature and key. Does not verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_INTRODUCTION_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let decoded = signed::decode::<IntroductionFields>(bytes)?;
        if decoded.fields.v != 1 {
            return Err(EnvelopeError::Json(canonical::DecodeError::Field {
                path: "$.v".into(),
                message: "v must be 1".into(),
            }));
        }
        Ok(SignedIntroduction {
            fields: decoded.fields,
            sig: decoded.sig,
            bytes: bytes.to_vec(),
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies that it is signed by the key it carries (proof that the
    /// sender holds that key) and returns the key.
    pub fn verify_self(&self) -> Result<PublicKey, EnvelopeError> {
        let key: PublicKey = self
            .fields
            .public_key
            .parse()
            .map_err(EnvelopeError::Signature)?;
        signed::verify_bytes(&self.unsigned, &self.sig, &key, Domain::Introduction)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> NodeKey {
        NodeKey::from_seed(&[seed; 32])
    }

    fn invitation() -> Invitation {
        Invitation {
            v: 1,
            node: "acme".parse().expect("id"),
            name: "Acme 製造".into(),
            url: "https://acme.example".into(),
            tls_cert_sha256: Sha256Hash::of(b"cert").to_string(),
            pinned: true,
            public_key: key(1).public().to_string(),
            secret: b64().encode([9u8; SECRET_BYTES]),
            expires: 1_800_000_000_000,
        }
    }

    #[test]
    fn a_code_reads_back_and_a_changed_one_is_refused() {
        let code = invitation().code().expect("code");
        assert_eq!(Invitation::from_code(&code), Ok(invitation()));
        // Wrapped by a mail client: still read.
        let wrapped = format!("  {}\n{}  ", &code[..40], &code[40..]);
        assert_eq!(Invitation::from_code(&wrapped), Ok(invitation()));
        // Any one character changed is caught by the check.
        let at = CODE_PREFIX.len() + 30;
        let mut altered: Vec<char> = code.chars().collect();
        altered[at] = if altered[at] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        assert_eq!(Invitation::from_code(&altered), Err(CodeError::Altered));
        assert_eq!(Invitation::from_code("hello"), Err(CodeError::NotACode));
    }

    #[test]
    fn an_introduction_proves_its_key_and_a_changed_one_fails() {
        let fields = IntroductionFields {
            v: 1,
            from: "globex".parse().expect("id"),
            name: "Globex".into(),
            url: "https://globex.example".into(),
            tls_cert_sha256: Sha256Hash::of(b"globex cert").to_string(),
            pinned: false,
            public_key: key(2).public().to_string(),
            to: "acme".parse().expect("id"),
            secret: invitation().secret,
            at: 1_700_000_000_000,
        };
        let signed = fields.clone().sign(&key(2)).expect("sign");
        let read = SignedIntroduction::decode(&signed.bytes).expect("decode");
        assert_eq!(read.verify_self().expect("verifies"), key(2).public());
        // Signed by another key than the one it names: refused.
        let forged = fields.clone().sign(&key(3)).expect("sign");
        assert!(
            SignedIntroduction::decode(&forged.bytes)
                .expect("decode")
                .verify_self()
                .is_err()
        );
        // A member changed after signing: refused.
        let text = String::from_utf8(signed.bytes.clone()).expect("utf8");
        let changed = text.replace("globex.example", "evil.example");
        assert!(
            SignedIntroduction::decode(changed.as_bytes())
                .expect("decode")
                .verify_self()
                .is_err()
        );
    }
}
