//! Certifications: a small document the vendor's node signs when a person
//! passes a course (SPEC §16) — who holds it, for which organization,
//! which course and level, when it was issued and until when it counts.
//! Anyone with the vendor's public key verifies it offline, without the
//! vendor's portal: the document is a signed object like an envelope
//! (canonical JSON, a `sig` member, Ed25519 over the domain prefix
//! `guanxi/v1/certification\0`), so a certification signature can never
//! pass for an envelope's or a receipt's.

use crate::canonical;
use crate::crypto::{Domain, NodeKey, PublicKey};
use crate::envelope::{EnvelopeError, Millis, Sig};
use crate::ids::NodeId;
use crate::signed;
use serde::{Deserialize, Serialize};

/// Largest certification document accepted (bytes).
pub const MAX_CERTIFICATION_BYTES: usize = 16 * 1024;

/// What a certification says (every member present; `expires` may be null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificationFields {
    /// Always 1.
    pub v: u32,
    /// The issuer's id for this certification (unique per issuer).
    pub id: String,
    /// The vendor node that issued and signed it.
    pub issuer: NodeId,
    /// The person certified, as the issuer knows them (name).
    pub holder: String,
    /// The organization the person belongs to (the partner's id).
    pub organization: String,
    /// The course passed (the issuer's id) and its title.
    pub course: String,
    pub title: String,
    /// The level reached (`basic`, `advanced`, ...; the issuer's words).
    pub level: String,
    /// When it was issued (UTC milliseconds).
    pub issued: Millis,
    /// When it stops counting; `null`: it does not expire.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub expires: Option<Millis>,
}

/// A signed certification: its fields, signature and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertification {
    pub fields: CertificationFields,
    pub sig: Sig,
    /// The whole document, canonical JSON.
    pub bytes: Vec<u8>,
    unsigned: Vec<u8>,
}

/// Whether a certification counts at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Issued, not expired.
    Valid,
    /// Its expiry has passed: it no longer counts.
    Expired,
    /// Issued after the time asked about.
    NotYetIssued,
}

impl CertificationFields {
    fn validate(&self) -> Result<(), EnvelopeError> {
        let bad = |message: &str| {
            Err(EnvelopeError::Json(canonical::DecodeError::Field {
                path: "$".into(),
                message: message.into(),
            }))
        };
        if self.v != 1 {
            return bad("v must be 1");
        }
        if self.id.is_empty() || self.holder.is_empty() || self.course.is_empty() {
            return bad("id, holder and course must not be empty");
        }
        if self.expires.is_some_and(|e| e <= self.issued) {
            return bad("expires must be after issued");
        }
        Ok(())
    }

    /// Signs the certification with the issuer's key.
    pub fn sign(self, key: &NodeKey) -> Result<SignedCertification, EnvelopeError> {
        self.validate()?;
        let (sig, bytes, unsigned) = signed::sign(&self, key, Domain::Certification)?;
        Ok(SignedCertification {
            fields: self,
            sig,
            bytes,
            unsigned,
        })
    }
}

impl SignedCertification {
    /// Reads a certification: strict canonical JSON, every member present
    /// and no other, a well-formed signature. Does not verify it.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_CERTIFICATION_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        let decoded = signed::decode::<CertificationFields>(bytes)?;
        decoded.fields.validate()?;
        Ok(SignedCertification {
            fields: decoded.fields,
            sig: decoded.sig,
            bytes: bytes.to_vec(),
            unsigned: decoded.unsigned,
        })
    }

    /// Verifies the signature with the issuer's public key (the one whose
    /// key id the signature names).
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        signed::verify_bytes(&self.unsigned, &self.sig, key, Domain::Certification)
    }

    /// Whether it counts at `at` (UTC milliseconds).
    pub fn standing(&self, at: Millis) -> Standing {
        if at < self.fields.issued {
            Standing::NotYetIssued
        } else if self.fields.expires.is_some_and(|e| at >= e) {
            Standing::Expired
        } else {
            Standing::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> CertificationFields {
        CertificationFields {
            v: 1,
            id: "cert-1".into(),
            issuer: "acme".parse().expect("id"),
            holder: "Mei Lin".into(),
            organization: "globex".into(),
            course: "cnc-basics".into(),
            title: "CNC basics".into(),
            level: "basic".into(),
            issued: 1_795_000_000_000,
            expires: Some(1_826_536_000_000),
        }
    }

    #[test]
    fn a_certification_verifies_with_its_issuers_key_only() {
        let key = NodeKey::from_seed(&[7u8; 32]);
        let signed = fields().sign(&key).expect("signs");
        let read = SignedCertification::decode(&signed.bytes).expect("decodes");
        assert_eq!(read, signed);
        read.verify(&key.public()).expect("verifies");
        let other = NodeKey::from_seed(&[8u8; 32]);
        assert!(read.verify(&other.public()).is_err());
        // One changed letter: not canonical any more, or not signed.
        let tampered = String::from_utf8(signed.bytes.clone())
            .expect("utf-8")
            .replace("Mei Lin", "Mei Lim");
        let tampered = SignedCertification::decode(tampered.as_bytes()).expect("still well formed");
        assert!(tampered.verify(&key.public()).is_err());
        // A certification signature is not an envelope signature.
        assert!(
            signed::verify_bytes(
                &signed.unsigned,
                &signed.sig,
                &key.public(),
                Domain::Envelope
            )
            .is_err()
        );
    }

    #[test]
    fn it_counts_from_issue_until_expiry() {
        let signed = fields()
            .sign(&NodeKey::from_seed(&[7u8; 32]))
            .expect("signs");
        assert_eq!(signed.standing(1_794_999_999_999), Standing::NotYetIssued);
        assert_eq!(signed.standing(1_795_000_000_000), Standing::Valid);
        assert_eq!(signed.standing(1_826_536_000_000), Standing::Expired);
        let mut bad = fields();
        bad.expires = Some(bad.issued);
        assert!(bad.sign(&NodeKey::from_seed(&[7u8; 32])).is_err());
    }
}
