//! Attachments: files for service requests and warranty claims, kept in the
//! data directory under `attachments/<sha256>` and referenced from signed
//! messages by their SHA-256. Each upload is size-limited and its content
//! type is checked against the file's first bytes; a user may download a
//! file only when a request or claim it can see references it, and may
//! reference only files its own organization uploaded or that are already on
//! the record it writes to (so a hash learnt elsewhere opens nothing).

use guanxi_protocol::Sha256Hash;
use guanxi_protocol::messages::Attachment;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest attachment, in bytes: what one `attachment.put` envelope carries.
pub const MAX_BYTES: usize = guanxi_protocol::messages::MAX_ATTACHMENT_BYTES;

/// Content types accepted, with how their files begin (text: valid UTF-8).
const TYPES: &[(&str, &[u8])] = &[
    ("application/pdf", b"%PDF-"),
    ("image/jpeg", b"\xFF\xD8\xFF"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("text/plain", b""),
];

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("the file is {size} bytes; attachments may be at most {MAX_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("content type {0:?} is not accepted; use PDF, JPEG, PNG or plain text")]
    RefusedType(String),
    #[error("the file's content does not match its content type {0}")]
    Mismatch(String),
    #[error("the file name must be 1 to 200 characters without '/' or control characters")]
    BadName,
    #[error("cannot store the file: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("attachments")
}

/// Checks and stores an upload; returns the reference to put in a message.
/// Storing is idempotent (content-addressed) and atomic (temp file, fsync,
/// rename).
pub fn store(
    data_dir: &Path,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Result<Attachment, AttachmentError> {
    if bytes.len() > MAX_BYTES {
        return Err(AttachmentError::TooLarge { size: bytes.len() });
    }
    let content_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((_, magic)) = TYPES.iter().find(|(t, _)| *t == content_type) else {
        return Err(AttachmentError::RefusedType(content_type));
    };
    let fits = if content_type == "text/plain" {
        std::str::from_utf8(bytes).is_ok()
    } else {
        bytes.starts_with(magic)
    };
    if !fits {
        return Err(AttachmentError::Mismatch(content_type));
    }
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > 200
        || name.chars().any(|c| c == '/' || c.is_control())
    {
        return Err(AttachmentError::BadName);
    }
    let sha = keep(data_dir, bytes)?;
    Ok(Attachment {
        sha256: sha,
        name: name.to_string(),
        content_type,
        size: bytes.len() as i64,
    })
}

/// Stores `bytes` under their SHA-256 (idempotent; temp file, fsync,
/// rename; mode 0600) and returns the hash.
pub fn keep(data_dir: &Path, bytes: &[u8]) -> Result<String, std::io::Error> {
    let sha = Sha256Hash::of(bytes).to_string();
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&sha);
    if !path.exists() {
        let tmp = dir.join(format!("{sha}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(sha)
}

/// The bytes of attachment `sha256`, if stored here.
pub fn load(data_dir: &Path, sha256: &str) -> Option<Vec<u8>> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    std::fs::read(dir(data_dir).join(sha256)).ok()
}

/// The organization a user uploads for: this company's staff as one, each
/// partner organization on its own.
pub fn owner_of(user: &crate::accounts::User) -> String {
    match (&user.role, &user.partner) {
        (crate::accounts::Role::Partner, Some(org)) => format!("partner:{org}"),
        (crate::accounts::Role::Partner, None) => "partner:".to_string(),
        _ => "staff".to_string(),
    }
}

/// Checks and stores a file `user` uploads (web form or API alike) and
/// notes that their organization uploaded it: the reference to put in a
/// message, or why the file was refused.
pub async fn accept(
    node: &crate::node::Node,
    user: &crate::accounts::User,
    name: String,
    content_type: String,
    bytes: Vec<u8>,
) -> Result<Result<Attachment, AttachmentError>, crate::engine::EngineError> {
    let data_dir = node.config().data_dir.clone();
    let stored =
        tokio::task::spawn_blocking(move || store(&data_dir, &name, &content_type, &bytes))
            .await
            .map_err(|e| crate::engine::EngineError::Failed(e.to_string()))?;
    match stored {
        Ok(a) => {
            record_upload(&node.engine, a.sha256.clone(), owner_of(user)).await?;
            Ok(Ok(a))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Notes that `owner` uploaded the file `sha256`.
pub async fn record_upload(
    engine: &crate::engine::Engine,
    sha256: String,
    owner: String,
) -> Result<(), crate::engine::EngineError> {
    use guanxi_adapters::store::Doc;
    engine
        .local(move |t| {
            let mut owners: Vec<String> = t
                .doc(Doc::Upload, &sha256)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if !owners.contains(&owner) {
                owners.push(owner.clone());
                let json = serde_json::to_vec(&owners)
                    .map_err(|e| crate::engine::EngineError::Corrupt(e.to_string()))?;
                t.put_doc(Doc::Upload, &sha256, &json)?;
            }
            Ok(())
        })
        .await
}

/// Whether `owner` uploaded the file `sha256`.
pub fn uploaded_by(
    read: &guanxi_adapters::store::Read,
    sha256: &str,
    owner: &str,
) -> Result<bool, guanxi_adapters::store::StoreError> {
    Ok(read
        .doc(guanxi_adapters::store::Doc::Upload, sha256)?
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .is_some_and(|owners| owners.iter().any(|o| o == owner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_checked_and_content_addressed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = store(
            dir.path(),
            "note.txt",
            "text/plain; charset=utf-8",
            "主軸異音".as_bytes(),
        )
        .expect("stored");
        assert_eq!((a.content_type.as_str(), a.size), ("text/plain", 12));
        assert_eq!(
            load(dir.path(), &a.sha256).as_deref(),
            Some("主軸異音".as_bytes())
        );
        let again =
            store(dir.path(), "copy.txt", "text/plain", "主軸異音".as_bytes()).expect("again");
        assert_eq!(again.sha256, a.sha256);
        assert!(matches!(
            store(dir.path(), "x.exe", "application/x-msdownload", b"MZ"),
            Err(AttachmentError::RefusedType(_))
        ));
        assert!(matches!(
            store(dir.path(), "fake.png", "image/png", b"GIF89a"),
            Err(AttachmentError::Mismatch(_))
        ));
        assert!(matches!(
            store(
                dir.path(),
                "big.txt",
                "text/plain",
                &vec![b'a'; MAX_BYTES + 1]
            ),
            Err(AttachmentError::TooLarge { .. })
        ));
        assert!(matches!(
            store(dir.path(), "../x", "text/plain", b"a"),
            Err(AttachmentError::BadName)
        ));
        assert!(load(dir.path(), "../../etc/passwd").is_none());
    }
}
