//! The library's files: kept in the data directory under
//! `library/<sha256>` (mode 0600, written to a temporary file, synced and
//! renamed), received from a browser as a stream (hashed as it arrives,
//! never held in memory, at most 200 MiB), served whole or by `Range`, and
//! fetched from publishers (SPEC §17): the federation endpoint
//! `GET /fed/v1/files/<sha256>` answers a peer's signed fetch request, and
//! the fetcher brings the files of received resources, resuming an
//! interrupted download with `Range` and keeping the bytes only when their
//! SHA-256 and size are the signed message's.

use super::SEP;
use crate::inbox::FedError;
use crate::node::Node;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guanxi_adapters::store::{Doc, Order};
use guanxi_protocol::ReasonCode;
use guanxi_protocol::fetch::{FetchFields, HEADER, SignedFetch};
use guanxi_protocol::messages::MAX_RESOURCE_BYTES;
use sha2::Digest;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Why a file could not be received or kept.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than {MAX_RESOURCE_BYTES} bytes")]
    TooLarge,
    #[error("the file is empty")]
    Empty,
    #[error("cannot store the file: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("library")
}

fn valid_sha(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where the file `sha256` is kept (whether or not it is there yet).
pub fn path(data_dir: &FsPath, sha256: &str) -> Option<PathBuf> {
    valid_sha(sha256).then(|| dir(data_dir).join(sha256))
}

/// Whether this node holds the file `sha256`.
pub fn has(data_dir: &FsPath, sha256: &str) -> bool {
    path(data_dir, sha256).is_some_and(|p| p.is_file())
}

async fn create_0600(path: &FsPath, append: bool) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// A file being received: written to a temporary file and hashed as its
/// bytes arrive.
pub struct Incoming {
    tmp: PathBuf,
    dir: PathBuf,
    file: Option<tokio::fs::File>,
    hasher: sha2::Sha256,
    size: u64,
}

impl Incoming {
    /// Starts receiving a file into the library of `data_dir`.
    pub async fn start(data_dir: &FsPath) -> Result<Incoming, FileError> {
        let dir = dir(data_dir);
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!("incoming-{}.part", uuid::Uuid::now_v7().simple()));
        let file = create_0600(&tmp, false).await?;
        Ok(Incoming {
            tmp,
            dir,
            file: Some(file),
            hasher: sha2::Sha256::new(),
            size: 0,
        })
    }

    /// Adds the next bytes.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        self.size += chunk.len() as u64;
        if self.size > MAX_RESOURCE_BYTES as u64 {
            return Err(FileError::TooLarge);
        }
        self.hasher.update(chunk);
        if let Some(f) = self.file.as_mut() {
            f.write_all(chunk).await?;
        }
        Ok(())
    }

    /// Keeps the file under its SHA-256: (hash, size).
    pub async fn finish(mut self) -> Result<(String, u64), FileError> {
        if self.size == 0 {
            return Err(FileError::Empty);
        }
        let Some(mut f) = self.file.take() else {
            return Err(FileError::Empty);
        };
        f.flush().await?;
        f.sync_all().await?;
        drop(f);
        let sha = hex(&std::mem::take(&mut self.hasher).finalize());
        tokio::fs::rename(&self.tmp, self.dir.join(&sha)).await?;
        Ok((sha, self.size))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Not finished: the partial file goes.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A byte range asked for: `bytes=N-` or `bytes=N-M` (one range only).
fn range_of(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?;
    let spec = text.strip_prefix("bytes=").ok_or(())?;
    let (start, end) = spec.split_once('-').ok_or(())?;
    let start: u64 = start.trim().parse().map_err(|_| ())?;
    let end: u64 = match end.trim() {
        "" => len.saturating_sub(1),
        e => e.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1)),
    };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The file `sha256` as an answer: whole (`200`) or the range asked for
/// (`206`; `416` outside the file), streamed from disk, as a download
/// named `name`, never sniffed.
pub async fn serve(path: PathBuf, content_type: &str, name: &str, headers: &HeaderMap) -> Response {
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(len) = file.metadata().await.map(|m| m.len()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (status, start, end) = match range_of(headers, len) {
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let count = if len == 0 { 0 } else { end - start + 1 };
    // 256 KiB reads: a large file goes out in few, full TLS records.
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), 256 * 1024);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // The name as RFC 6266 wants it: ASCII fallback and UTF-8.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn fed_error(code: ReasonCode, message: impl Into<String>) -> Response {
    FedError {
        code,
        message: message.into(),
    }
    .into_response()
}

/// An error with its own status: `404 unknown_record` (nothing shared names
/// the file) or `503 internal`, which SPEC §9 statuses do not give.
fn fetch_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message});
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /fed/v1/files/<sha256>`: a peer's signed fetch of a file this node
/// publishes to it (SPEC §17).
pub async fn fed_fetch(
    State(node): State<Arc<Node>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(value) = headers.get(HEADER).and_then(|v| v.to_str().ok()) else {
        return fed_error(
            ReasonCode::BadEnvelope,
            "the Guanxi-Fetch header is missing",
        );
    };
    let fetch = match SignedFetch::decode(value) {
        Ok(f) => f,
        Err(e) => return FedError::from(e).into_response(),
    };
    let f = &fetch.fields;
    let key = match crate::inbox::sender_key(&node, &f.from, &f.to, &fetch.sig.kid, f.at) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = fetch.verify(&key) {
        return FedError::from(e).into_response();
    }
    if !fetch.timely(crate::clock::now_ms()) {
        return fed_error(
            ReasonCode::BadSignature,
            "the fetch request is more than 5 minutes from this node's clock",
        );
    }
    if f.sha256 != sha {
        return fed_error(ReasonCode::BadEnvelope, "sha256 differs from the path's");
    }
    let (me, from) = (node.identity.id.clone(), f.from.to_string());
    let sha_ = sha.clone();
    let allowed = node
        .reading(move |r| super::may_fetch(r, &me, &from, &sha_))
        .await;
    let data_dir = node.config().data_dir.clone();
    match (allowed, path(&data_dir, &sha)) {
        (Ok(true), Some(p)) if p.is_file() => {
            serve(p, "application/octet-stream", &sha, &headers).await
        }
        (Err(e), _) => {
            tracing::error!("file fetch: {e}");
            fetch_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal",
                "the store could not be read",
            )
        }
        _ => fetch_error(
            StatusCode::NOT_FOUND,
            "unknown_record",
            "nothing this node shares with you names that file",
        ),
    }
}

/// How long one download may take before it is cut (and resumed).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Brings one file from `peer`: resumes a partial download, checks the
/// hash and size, keeps it. `Ok(false)`: the publisher refused (logged).
async fn fetch_one(node: &Node, peer: &str, sha: &str, size: i64) -> Result<bool, String> {
    let data_dir = node.config().data_dir.clone();
    let Some(target) = path(&data_dir, sha) else {
        return Ok(false);
    };
    if target.is_file() {
        return Ok(true);
    }
    let peer_id: guanxi_protocol::NodeId = peer.parse().map_err(|e| format!("{e}"))?;
    let Some(runtime) = node.peer(&peer_id) else {
        return Err(format!("{peer} is no longer a configured peer"));
    };
    let partial = dir(&data_dir).join(format!("{sha}.part"));
    tokio::fs::create_dir_all(dir(&data_dir))
        .await
        .map_err(|e| e.to_string())?;
    let have = tokio::fs::metadata(&partial).await.map_or(0, |m| m.len());
    let header = FetchFields {
        v: 1,
        from: node.identity.id.clone(),
        to: peer_id,
        sha256: sha.to_string(),
        at: crate::clock::now_ms(),
    }
    .sign(&node.identity.key())
    .map_err(|e| e.to_string())?;
    let mut headers = vec![(HEADER.to_string(), header)];
    if have > 0 {
        headers.push(("range".to_string(), format!("bytes={have}-")));
    }
    let file = create_0600(&partial, have > 0)
        .await
        .map_err(|e| e.to_string())?;
    // A fresh download is hashed as it is written (a resumed one is read
    // again whole at the end); writes go out 1 MiB at a time.
    let mut hasher = (have == 0).then(sha2::Sha256::new);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let writer = async move {
        let mut file = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
        let mut written = 0u64;
        while let Some(chunk) = rx.recv().await {
            written += chunk.len() as u64;
            if have + written > size.max(0) as u64 {
                return Err("the publisher sent more bytes than the file has".to_string());
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        file.flush().await.map_err(|e| e.to_string())?;
        file.get_ref().sync_all().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(hasher.map(|h| hex(&h.finalize())))
    };
    let path = format!("/fed/v1/files/{sha}");
    let download = runtime
        .client
        .download(&path, &headers, DOWNLOAD_TIMEOUT, tx);
    let (answer, written) = tokio::join!(download, writer);
    let answer = answer.map_err(|e| e.to_string())?;
    match answer.status {
        200 | 206 => {}
        416 => {
            // The partial file is wrong: start again next time.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err("the publisher refused the range; starting again".into());
        }
        status => {
            return Err(format!(
                "the publisher answered {status}: {}",
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
    let streamed = match written {
        Ok(digest) => digest,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    if answer.status == 200 && have > 0 {
        // The publisher sent everything again from the start: our partial
        // bytes were appended before them. Start over.
        let _ = tokio::fs::remove_file(&partial).await;
        return Err("the publisher ignored the range; starting again".into());
    }
    let len = tokio::fs::metadata(&partial)
        .await
        .map_err(|e| e.to_string())?
        .len();
    if len < size.max(0) as u64 {
        return Err(format!("{len} of {size} bytes so far; resuming"));
    }
    let digest = if let (Some(d), true) = (streamed, len == size.max(0) as u64) {
        d
    } else {
        let mut f = tokio::fs::File::open(&partial)
            .await
            .map_err(|e| e.to_string())?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hex(&hasher.finalize())
    };
    if digest != sha {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(format!(
            "the bytes' SHA-256 is {digest}, not the signed {sha}; discarded"
        ));
    }
    tokio::fs::rename(&partial, &target)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Files of received resources still to fetch: (peer, subject, sha256, size).
fn wanted(node: &Node, limit: usize) -> Vec<(String, String, String, i64)> {
    let prefix = format!("need{SEP}");
    let Ok(read) = node.store.read() else {
        return Vec::new();
    };
    let Ok(entries) = read.docs_page(Doc::Library, &prefix, None, Order::Forward, limit) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some((peer, subject)) = k.strip_prefix(&prefix).and_then(|r| r.split_once(SEP)) else {
            continue;
        };
        let sha = String::from_utf8_lossy(&v).into_owned();
        let size = super::shared(&read, peer, subject)
            .ok()
            .flatten()
            .and_then(|r| r.resource.file)
            .filter(|f| f.sha256 == sha)
            .map_or(0, |f| f.size);
        out.push((peer.to_string(), subject.to_string(), sha, size));
    }
    out
}

async fn fetched(node: &Node, peer: &str, subject: &str, sha: &str) {
    let key = format!("need{SEP}{peer}{SEP}{subject}");
    let sha = sha.to_string();
    let done = node
        .engine
        .act(move |a| {
            // Only if it still names this file (a newer version may not).
            if a.tables.doc(Doc::Library, &key)?.as_deref() == Some(sha.as_bytes()) {
                a.tables.delete_doc(Doc::Library, &key)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = done {
        tracing::warn!("library: noting a fetched file: {e}");
    }
}

/// Fetches the files of received resources until the node stops: after
/// every change to a resource, and every few seconds while some wait (a
/// failed one waits 5 s, doubling to 10 min, between tries).
pub async fn run_fetcher(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let mut backoff: std::collections::HashMap<String, (Duration, tokio::time::Instant)> =
        std::collections::HashMap::new();
    let mut seen = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        node.ticks
            .library_fetch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = node.engine.records_version("resource");
        let due = backoff
            .values()
            .any(|(_, at)| *at <= tokio::time::Instant::now());
        if seen == Some(version) && !due {
            continue;
        }
        seen = Some(version);
        for (peer, subject, sha, size) in wanted(&node, 100) {
            let now = tokio::time::Instant::now();
            if backoff.get(&sha).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = fetch_one(&node, &peer, &sha, size) => r,
            };
            match result {
                Ok(true) => {
                    backoff.remove(&sha);
                    tracing::info!(%peer, %subject, "library: file fetched");
                    fetched(&node, &peer, &subject, &sha).await;
                }
                Ok(false) => {}
                Err(e) => {
                    let wait = backoff.get(&sha).map_or(Duration::from_secs(5), |(w, _)| {
                        (*w * 2).min(Duration::from_secs(600))
                    });
                    tracing::warn!(%peer, %subject, "library: fetching the file: {e}");
                    backoff.insert(sha.clone(), (wait, now + wait));
                }
            }
        }
    }
}
