//! The node's identity: its signing key (generated from the OS's randomness
//! when first needed) and the key document it publishes to peers.

use guanxi_config::keyfile::{self, KeyFileError};
use guanxi_protocol::canonical::{self, CanonicalError};
use guanxi_protocol::crypto::ALG_ED25519;
use guanxi_protocol::envelope::PROTOCOL_VERSION;
use guanxi_protocol::{NodeId, NodeKey, Sha256Hash};
use serde::Serialize;
use std::path::Path;

/// Creates the data directory `dir` (and parents) when missing, private to the
/// daemon's user (mode 0700): it holds the signing key and partners' data.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// A fresh signing key from the operating system's random source.
pub fn generate_key() -> Result<NodeKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(NodeKey::from_seed(&seed))
}

/// Reads the key at `path`; when it does not exist and `create` is set,
/// generates one and writes it with mode 0600. Returns the key and whether it
/// was created now.
pub fn load_or_create_key(path: &Path, create: bool) -> Result<(NodeKey, bool), KeyFileError> {
    match keyfile::read_node_key(path) {
        Ok(key) => Ok((key, false)),
        Err(KeyFileError::Missing { .. }) if create => {
            let key = generate_key().map_err(|e| KeyFileError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
            keyfile::write_node_key(path, &key)?;
            Ok((key, true))
        }
        Err(e) => Err(e),
    }
}

/// One key in the key document.
#[derive(Debug, Serialize)]
struct KeyEntry {
    alg: &'static str,
    kid: String,
    public_key: String,
}

/// The envelope versions this node reads, ascending (SPEC §9 `versions`).
static READS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// The envelope versions this node reads: `[1]`.
pub fn reads_versions() -> &'static [u32] {
    READS.get().map_or(&[PROTOCOL_VERSION], Vec::as_slice)
}

/// Makes this process read `versions` instead (once, before serving): the
/// test build plays a node of another release this way, to check that a
/// mixed network says what is wrong.
pub fn set_reads_versions(mut versions: Vec<u32>) {
    versions.sort_unstable();
    versions.dedup();
    let _ = READS.set(versions);
}

/// `GET /fed/v1/keys`: who this node is and which keys it signs with. Peers'
/// admins copy the key into their TOML; trust never comes from this document.
#[derive(Debug, Serialize)]
struct KeyDocument<'a> {
    v: u32,
    /// The envelope versions this node reads.
    versions: &'static [u32],
    node: &'a str,
    name: &'a str,
    public_url: &'a str,
    keys: Vec<KeyEntry>,
    tls_cert_sha256: String,
}

/// The canonical bytes of this node's key document.
pub fn key_document(
    node: &NodeId,
    name: &str,
    public_url: &str,
    key: &NodeKey,
    tls_cert_sha256: &Sha256Hash,
) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&KeyDocument {
        v: PROTOCOL_VERSION,
        versions: reads_versions(),
        node: node.as_str(),
        name,
        public_url,
        keys: vec![KeyEntry {
            alg: ALG_ED25519,
            kid: key.kid().0,
            public_key: key.public().to_string(),
        }],
        tls_cert_sha256: tls_cert_sha256.to_string(),
    })
}
