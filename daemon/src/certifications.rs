//! Certifications a vendor's node issues when a person passes a course,
//! and checking one offline (`guanxi cert verify`): the document is
//! verified with the issuer's public key, given directly or as the
//! issuer's key document (`/fed/v1/keys`), and judged at a time (expired
//! ones no longer count). The format is SPEC §16.

use guanxi_protocol::certification::{SignedCertification, Standing};
use guanxi_protocol::{Millis, PublicKey};

/// Where the issuer's public key comes from.
pub enum IssuerKey {
    /// The key itself (unpadded base64url).
    Key(String),
    /// The issuer's key document, as `/fed/v1/keys` serves it.
    Document(Vec<u8>),
}

/// What the check found.
#[derive(Debug)]
pub struct Verified {
    pub certification: SignedCertification,
    pub standing: Standing,
}

/// Verifies `bytes` (a certification document) with the issuer's key at
/// `at`: `Err` says why it is not a valid certification of that issuer.
pub fn verify(bytes: &[u8], issuer: &IssuerKey, at: Millis) -> Result<Verified, String> {
    let cert = SignedCertification::decode(bytes.trim_ascii_end())
        .map_err(|e| format!("not a certification document: {e}"))?;
    let key: PublicKey = match issuer {
        IssuerKey::Key(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("the issuer's key: {e}"))?,
        IssuerKey::Document(doc) => key_from_document(doc, &cert)?,
    };
    if key.kid() != cert.sig.kid {
        return Err(format!(
            "signed with key {}, not with the issuer's key {}",
            cert.sig.kid,
            key.kid()
        ));
    }
    cert.verify(&key)
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    let standing = cert.standing(at);
    Ok(Verified {
        certification: cert,
        standing,
    })
}

/// The key of the issuer's key document that signed `cert`; the document
/// must be the issuer's own.
fn key_from_document(doc: &[u8], cert: &SignedCertification) -> Result<PublicKey, String> {
    let value: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("the key document is not JSON: {e}"))?;
    if value["node"].as_str() != Some(cert.fields.issuer.as_str()) {
        return Err(format!(
            "the key document is {:?}'s, but the certification names {} as its issuer",
            value["node"].as_str().unwrap_or(""),
            cert.fields.issuer
        ));
    }
    value["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"].as_str() == Some(cert.sig.kid.0.as_str()))
        .and_then(|k| k["public_key"].as_str())
        .ok_or_else(|| format!("the key document has no key {}", cert.sig.kid))?
        .parse()
        .map_err(|e| format!("the key document's key: {e}"))
}
