//! `guanxi backup` and `guanxi restore` on the daemon's side: which folders
//! of the data directory a backup carries, and the admin socket's streamed
//! backup of the running node (one read transaction; the daemon keeps
//! working). The file format, its checks and the restore are in
//! `guanxi_adapters::store::snapshot`.
//!
//! Not in a backup: the signing key and the TLS key and certificate (secrets
//! that do not change; keep them apart, see docs/OPERATIONS.md), and the
//! config file.

use crate::node::Node;
use axum::body::Bytes;
use guanxi_adapters::store::Store;
use guanxi_adapters::store::snapshot::{SnapshotError, Summary};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The data directory's folders of content-addressed files a backup
/// carries: service and warranty attachments, library files.
pub fn folders(data_dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("attachments", crate::attachments::dir(data_dir)),
        ("library", crate::library::files::dir(data_dir)),
    ]
}

/// Writes a backup of `store` (the node `node`, data in `data_dir`) to `out`.
pub fn write(
    store: &Store,
    node: &str,
    data_dir: &Path,
    out: impl std::io::Write,
) -> Result<Summary, SnapshotError> {
    let folders = folders(data_dir);
    let folders: Vec<(&str, &Path)> = folders.iter().map(|(n, p)| (*n, p.as_path())).collect();
    store.backup(node, crate::clock::now_ms(), &folders, out)
}

/// Sends what is written down a channel in chunks (a blocking writer for a
/// streamed answer); fails once the receiver is gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the backup's reader went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The running node's backup as a streamed body: written by a blocking
/// task as it is sent; a failure breaks the body (the CLI checks the file
/// it received before keeping it).
pub fn stream(node: &Arc<Node>) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let store = node.store.clone();
    let id = node.identity.id.to_string();
    let data_dir = node.config().data_dir.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter { tx: tx.clone() };
        match write(&store, &id, &data_dir, out) {
            Ok(summary) => tracing::info!(
                bytes = summary.bytes,
                sha256 = %summary.sha256,
                "backup written"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    crate::api::streamed(rx)
}
