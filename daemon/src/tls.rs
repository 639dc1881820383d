//! TLS for the HTTPS server: the rustls crypto provider, self-signed
//! certificates for first start, loading the certificate and key, and the
//! certificate fingerprint peers pin.

use guanxi_protocol::Sha256Hash;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the certificate {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("cannot read the TLS private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("certificate and key do not work together: {0}")]
    Config(String),
}

/// Installs aws-lc-rs as the process's rustls crypto provider. Call first:
/// with two providers linked and none installed, rustls cannot choose.
pub fn install_crypto_provider() {
    // An error means one is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Generates a self-signed certificate for `names` (DNS names or IP
/// addresses) and writes it and its key as PEM; the key file gets mode 0600.
pub fn generate_self_signed(
    cert_file: &Path,
    key_file: &Path,
    names: &[String],
) -> Result<(), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_file(
        key_file,
        certified.signing_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(cert_file, certified.cert.pem().as_bytes(), false)
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

/// The certificate chain in `cert_file` (PEM).
pub fn load_certs(cert_file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Cert {
        path: cert_file.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The rustls server configuration for `cert_file` and `key_file`.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        path: key_file.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 of the leaf certificate (DER): what a peer pins in its TOML.
pub fn fingerprint(cert_file: &Path) -> Result<Sha256Hash, TlsError> {
    let certs = load_certs(cert_file)?;
    Ok(Sha256Hash::of(certs[0].as_ref()))
}
