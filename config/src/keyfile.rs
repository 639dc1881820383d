//! The node's signing key file: a small text file holding the Ed25519 seed,
//! written with mode 0600 and refused when others can read it.
//!
//! Format (comments start with `#`):
//!
//! ```text
//! # Guanxi node signing key. Keep it secret.
//! ed25519-seed:<32 bytes, unpadded base64url>
//! ```

use guanxi_protocol::NodeKey;
use guanxi_protocol::crypto::{b64url, b64url_fixed};
use std::io::Write;
use std::path::Path;

const SEED_PREFIX: &str = "ed25519-seed:";

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path} does not exist (create it with `guanxi keygen` or `guanxi init`)")]
    Missing { path: String },
    #[error("cannot access {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error("{path}:{line}: {message}")]
    Format {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path} already exists; refusing to overwrite a signing key")]
    Exists { path: String },
}

/// Reads the node key at `path`, checking its permissions and format.
pub fn read_node_key(path: &Path) -> Result<NodeKey, KeyFileError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing { path: shown });
        }
        Err(source) => {
            return Err(KeyFileError::Io {
                path: shown,
                source,
            });
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| KeyFileError::Io {
                path: shown.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: shown,
                mode: mode & 0o777,
            });
        }
    }
    let mut seed = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let format = |message: String| KeyFileError::Format {
            path: shown.clone(),
            line: i + 1,
            message,
        };
        let Some(encoded) = line.strip_prefix(SEED_PREFIX) else {
            return Err(format(format!(
                "expected a line `{SEED_PREFIX}<base64url>`"
            )));
        };
        if seed.is_some() {
            return Err(format("more than one key in the file".into()));
        }
        seed = Some(
            b64url_fixed::<32>(encoded)
                .map_err(|e| format(format!("seed: {e} (expected 32 bytes)")))?,
        );
    }
    let seed = seed.ok_or_else(|| KeyFileError::Format {
        path: shown,
        line: text.lines().count().max(1),
        message: format!("no `{SEED_PREFIX}` line"),
    })?;
    Ok(NodeKey::from_seed(&seed))
}

/// Writes `key` to a new file at `path` with mode 0600 (never overwrites).
pub fn write_node_key(path: &Path, key: &NodeKey) -> Result<(), KeyFileError> {
    let shown = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists { path: shown });
        }
        Err(e) => return Err(io(e)),
    };
    let text = format!(
        "# Guanxi node signing key (Ed25519). Keep it secret; never share this file.\n\
         # Public key: {}\n# Key id: {}\n{SEED_PREFIX}{}\n",
        key.public(),
        key.kid(),
        b64url(&key.seed())
    );
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_key_reads_back_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("node.key");
        let key = NodeKey::from_seed(&[4u8; 32]);
        write_node_key(&path, &key).expect("write");
        assert_eq!(read_node_key(&path).expect("read").seed(), key.seed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            write_node_key(&path, &key),
            Err(KeyFileError::Exists { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        write_node_key(&path, &NodeKey::from_seed(&[4u8; 32])).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_node_key(&path).expect_err("mode 0644");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn malformed_seed_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        write_node_key(&path, &NodeKey::from_seed(&[4u8; 32])).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let short = text.replace(&b64url(&[4u8; 32]), &b64url(&[4u8; 31]));
        std::fs::write(&path, short).expect("write");
        let err = read_node_key(&path).expect_err("short seed");
        assert!(err.to_string().contains(":4: seed"), "{err}");
    }
}
