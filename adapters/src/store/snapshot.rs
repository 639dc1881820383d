//! Backups: a consistent snapshot of the database (every row of every table,
//! read in one read transaction while the daemon keeps writing) and of the
//! content-addressed files kept beside it, in one file with a manifest and
//! a SHA-256 checksum; and the restore, which checks the whole file before
//! it writes anything and builds the new data directory aside, moving it
//! into place only when it is complete.
//!
//! The file, in order (integers big-endian):
//!
//! ```text
//! "GUANXI-BACKUP 1\n"
//! u32 length, manifest JSON            (format, schema, store id, node, time)
//! frames:
//!   'R' u8 length, table name, u32 length, key, u32 length, value
//!   'F' u8 length, folder, u8 length, file name (its SHA-256), u64 length, bytes
//!   'E' u64 rows, u64 files
//! 32 bytes: SHA-256 of everything before them
//! ```
//!
//! Keys and values are redb's own bytes for each table's types, so a backup
//! is read by a build of the same schema version (or a newer one, which
//! migrates the restored database forward when it opens it).

use super::{SCHEMA_VERSION, Store, StoreError, TableVisitor, visit_tables};
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"GUANXI-BACKUP 1\n";
const FORMAT: u32 = 1;
/// Largest manifest accepted (it is a few hundred bytes).
const MAX_MANIFEST: u32 = 64 * 1024;
/// Rows written per transaction of a restore (the new directory is not in
/// use, so a restore commits in steps to keep its memory small).
const RESTORE_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The database's schema version.
    pub schema: u64,
    /// The database's id (`meta`), kept by the restore.
    pub store_id: u64,
    /// The node it was taken from.
    pub node: String,
    /// When it was taken (UTC, milliseconds since the Unix epoch).
    pub taken_at_ms: i64,
}

/// What a backup holds, counted while it was written or checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub manifest: Manifest,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    /// Files per folder.
    pub files: BTreeMap<String, u64>,
    /// Size of the backup file.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// Why a backup could not be written, checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a Guanxi backup (it does not begin like one)")]
    NotABackup(String),
    #[error("the backup is damaged at byte {at}: {what}. Nothing was restored; use another backup")]
    Damaged { at: u64, what: String },
    #[error(
        "the backup is of schema version {found}, newer than this build's {SCHEMA_VERSION}; \
         restore it with that guanxi version or a newer one"
    )]
    Newer { found: u64 },
    #[error("cannot restore into {path}: {why}. Nothing was written")]
    Target { path: PathBuf, why: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name that is a lowercase hex SHA-256.
fn is_sha256_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A folder name a backup may carry (one plain word: never a path).
fn is_folder_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase())
}

/// Writes through to `inner`, hashing and counting every byte.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes every row of one table as frames (the visitor of a backup).
struct Export<'a, W: Write> {
    txn: &'a redb::ReadTransaction,
    out: &'a mut Hashing<W>,
    tables: BTreeMap<String, u64>,
    visited: Vec<String>,
    failed: Option<std::io::Error>,
}

impl<W: Write> TableVisitor for Export<'_, W> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        use redb::TableHandle;
        let name = table.name().to_string();
        self.visited.push(name.clone());
        let open = match self.txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut n = 0u64;
        for row in redb::ReadableTable::iter(&open)? {
            let (k, v) = row?;
            let (k, v) = (k.value(), v.value());
            let key = K::as_bytes(&k);
            let value = V::as_bytes(&v);
            if let Err(e) = write_row(self.out, &name, key.as_ref(), value.as_ref()) {
                self.failed = Some(e);
                return Err(StoreError::Io("writing the backup".into()));
            }
            n += 1;
        }
        if n > 0 {
            self.tables.insert(name, n);
        }
        Ok(())
    }
}

fn write_row(out: &mut impl Write, table: &str, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    let too_big = || std::io::Error::other("a row is larger than a backup frame holds");
    out.write_all(b"R")?;
    out.write_all(&[u8::try_from(table.len()).map_err(|_| too_big())?])?;
    out.write_all(table.as_bytes())?;
    out.write_all(
        &u32::try_from(key.len())
            .map_err(|_| too_big())?
            .to_be_bytes(),
    )?;
    out.write_all(key)?;
    out.write_all(
        &u32::try_from(value.len())
            .map_err(|_| too_big())?
            .to_be_bytes(),
    )?;
    out.write_all(value)
}

impl Store {
    /// Writes a backup of this store to `out` while the store stays in use:
    /// every table read in one read transaction, then every file named by
    /// its SHA-256 in each of `folders` (`(name, path)`; content-addressed
    /// files never change, and one written after the snapshot began is
    /// harmless extra). `node` and `taken_at_ms` go into the manifest.
    pub fn backup(
        &self,
        node: &str,
        taken_at_ms: i64,
        folders: &[(&str, &Path)],
        out: impl Write,
    ) -> Result<Summary, SnapshotError> {
        let txn = self.db()?.begin_read().map_err(StoreError::from)?;
        let (schema, store_id) = {
            let meta = txn.open_table(super::META).map_err(StoreError::from)?;
            let get = |key: &str| -> Result<u64, StoreError> {
                Ok(redb::ReadableTable::get(&meta, key)?
                    .map(|v| v.value())
                    .unwrap_or(0))
            };
            (get(super::SCHEMA_KEY)?, get(super::STORE_ID_KEY)?)
        };
        let manifest = Manifest {
            format: FORMAT,
            schema,
            store_id,
            node: node.to_string(),
            taken_at_ms,
        };
        let mut out = Hashing {
            inner: BufWriter::with_capacity(1 << 20, out),
            hash: Sha256::new(),
            count: 0,
        };
        let w = io("writing the backup");
        let json = serde_json::to_vec(&manifest).map_err(|e| StoreError::Db(e.to_string()))?;
        out.write_all(MAGIC).map_err(io("writing the backup"))?;
        out.write_all(&(json.len() as u32).to_be_bytes())
            .map_err(io("writing the backup"))?;
        out.write_all(&json).map_err(io("writing the backup"))?;
        let mut export = Export {
            txn: &txn,
            out: &mut out,
            tables: BTreeMap::new(),
            visited: Vec::new(),
            failed: None,
        };
        if let Err(e) = visit_tables(&mut export) {
            return Err(match export.failed.take() {
                Some(source) => SnapshotError::Io {
                    what: "writing the backup".into(),
                    source,
                },
                None => e.into(),
            });
        }
        // A table missing from the list would be lost silently: refuse.
        for table in txn.list_tables().map_err(StoreError::from)? {
            use redb::TableHandle;
            if !export.visited.iter().any(|v| v == table.name()) {
                return Err(StoreError::Db(format!(
                    "table {} is not in the backup's list of tables (a defect in this build)",
                    table.name()
                ))
                .into());
            }
        }
        let tables = export.tables;
        drop(txn);
        let mut files = BTreeMap::new();
        for (folder, path) in folders {
            if !is_folder_name(folder) {
                return Err(SnapshotError::Io {
                    what: format!("folder name {folder:?}"),
                    source: std::io::Error::other("a folder is one lowercase word"),
                });
            }
            let entries = match std::fs::read_dir(path) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
            };
            let mut names: Vec<String> = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io(format!("reading {}", path.display())))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_sha256_name(&name) && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                let file_path = path.join(&name);
                let mut file = std::fs::File::open(&file_path)
                    .map_err(io(format!("reading {}", file_path.display())))?;
                let len = file
                    .metadata()
                    .map_err(io(format!("reading {}", file_path.display())))?
                    .len();
                out.write_all(b"F").map_err(io("writing the backup"))?;
                out.write_all(&[folder.len() as u8])
                    .map_err(io("writing the backup"))?;
                out.write_all(folder.as_bytes())
                    .map_err(io("writing the backup"))?;
                out.write_all(&[name.len() as u8])
                    .map_err(io("writing the backup"))?;
                out.write_all(name.as_bytes())
                    .map_err(io("writing the backup"))?;
                out.write_all(&len.to_be_bytes())
                    .map_err(io("writing the backup"))?;
                let copied = std::io::copy(&mut (&mut file).take(len), &mut out)
                    .map_err(io(format!("reading {}", file_path.display())))?;
                if copied != len {
                    return Err(SnapshotError::Io {
                        what: format!("reading {}", file_path.display()),
                        source: std::io::Error::other("the file became shorter while it was read"),
                    });
                }
                *files.entry(folder.to_string()).or_insert(0) += 1;
            }
        }
        let rows: u64 = tables.values().sum();
        let count: u64 = files.values().sum();
        out.write_all(b"E").map_err(io("writing the backup"))?;
        out.write_all(&rows.to_be_bytes())
            .map_err(io("writing the backup"))?;
        out.write_all(&count.to_be_bytes())
            .map_err(io("writing the backup"))?;
        let digest = out.hash.clone().finalize();
        let bytes = out.count + 32;
        let mut inner = out.inner;
        inner.write_all(&digest).map_err(io("writing the backup"))?;
        inner.flush().map_err(w)?;
        Ok(Summary {
            manifest,
            tables,
            files,
            bytes,
            sha256: hex(&digest),
        })
    }
}

/// Reads from `inner`, hashing and counting every byte.
struct Reading<R> {
    inner: R,
    hash: Sha256,
    at: u64,
}

impl<R: Read> Reading<R> {
    fn damaged(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Damaged {
            at: self.at,
            what: what.into(),
        }
    }

    /// Exactly `buf.len()` bytes, hashed; the end of the file is damage.
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.hash.update(&*buf);
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.damaged("the file ends early (it was cut short)"))
            }
            Err(e) => Err(io("reading the backup")(e)),
        }
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// `len` bytes into a new buffer, read in steps so that a damaged
    /// length never allocates more than the file holds.
    fn bytes(&mut self, len: u64) -> Result<Vec<u8>, SnapshotError> {
        let mut out = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(0));
        let mut left = len;
        let mut chunk = [0u8; 64 * 1024];
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            self.exact(&mut chunk[..n])?;
            out.extend_from_slice(&chunk[..n]);
            left -= n as u64;
        }
        Ok(out)
    }

    fn name(&mut self) -> Result<String, SnapshotError> {
        let len = self.u8()?;
        let raw = self.bytes(u64::from(len))?;
        String::from_utf8(raw).map_err(|_| self.damaged("a name is not UTF-8"))
    }
}

/// What a walk through a backup hands on: a row, or a file's bytes in
/// pieces (`start` once, then `piece` for each chunk, then `end`).
trait Sink {
    fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotError>;
    fn file_start(&mut self, folder: &str, name: &str) -> Result<(), SnapshotError>;
    fn file_piece(&mut self, bytes: &[u8]) -> Result<(), SnapshotError>;
    fn file_end(&mut self) -> Result<(), SnapshotError>;
}

/// Reads a whole backup, checking its structure, every file against its
/// SHA-256 name and, at the end, the checksum; `sink` sees each part as it
/// is read (a restore must not keep what it wrote unless this succeeds).
fn walk(input: impl Read, label: &str, sink: &mut impl Sink) -> Result<Summary, SnapshotError> {
    let mut r = Reading {
        inner: BufReader::with_capacity(1 << 20, input),
        hash: Sha256::new(),
        at: 0,
    };
    let mut magic = [0u8; MAGIC.len()];
    if r.exact(&mut magic).is_err() || magic != MAGIC {
        return Err(SnapshotError::NotABackup(label.to_string()));
    }
    let len = r.u32()?;
    if len > MAX_MANIFEST {
        return Err(r.damaged("the manifest's length is not plausible"));
    }
    let json = r.bytes(u64::from(len))?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| r.damaged(format!("the manifest is not valid ({e})")))?;
    if manifest.format != FORMAT {
        return Err(r.damaged(format!(
            "backup format {} is not one this build reads ({FORMAT})",
            manifest.format
        )));
    }
    if manifest.schema > SCHEMA_VERSION {
        return Err(SnapshotError::Newer {
            found: manifest.schema,
        });
    }
    let mut tables: BTreeMap<String, u64> = BTreeMap::new();
    let mut files: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        match r.u8()? {
            b'R' => {
                let table = r.name()?;
                let key_len = r.u32()?;
                let key = r.bytes(u64::from(key_len))?;
                let value_len = r.u32()?;
                let value = r.bytes(u64::from(value_len))?;
                sink.row(&table, &key, &value)?;
                *tables.entry(table).or_insert(0) += 1;
            }
            b'F' => {
                let folder = r.name()?;
                let name = r.name()?;
                if !is_folder_name(&folder) || !is_sha256_name(&name) {
                    return Err(r.damaged(format!("a file is named {folder}/{name}")));
                }
                let len = r.u64()?;
                sink.file_start(&folder, &name)?;
                let mut hash = Sha256::new();
                let mut left = len;
                let mut chunk = vec![0u8; 1 << 20];
                while left > 0 {
                    let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
                    r.exact(&mut chunk[..n])?;
                    hash.update(&chunk[..n]);
                    sink.file_piece(&chunk[..n])?;
                    left -= n as u64;
                }
                if hex(&hash.finalize()) != name {
                    return Err(
                        r.damaged(format!("file {folder}/{name} does not match its SHA-256"))
                    );
                }
                sink.file_end()?;
                *files.entry(folder).or_insert(0) += 1;
            }
            b'E' => {
                let rows = r.u64()?;
                let count = r.u64()?;
                if rows != tables.values().sum::<u64>() || count != files.values().sum::<u64>() {
                    return Err(r.damaged("the counts at the end do not match what it holds"));
                }
                let digest = r.hash.clone().finalize();
                let mut stored = [0u8; 32];
                if r.inner.read_exact(&mut stored).is_err() || stored[..] != digest[..] {
                    return Err(r.damaged("its checksum does not match its content"));
                }
                let mut extra = [0u8; 1];
                if r.inner.read(&mut extra).map_err(io("reading the backup"))? != 0 {
                    return Err(r.damaged("bytes follow its end"));
                }
                return Ok(Summary {
                    manifest,
                    tables,
                    files,
                    bytes: r.at + 32,
                    sha256: hex(&digest),
                });
            }
            other => return Err(r.damaged(format!("unknown frame {other:#04x}"))),
        }
    }
}

/// A sink that keeps nothing: the check.
struct Discard;

impl Sink for Discard {
    fn row(&mut self, _: &str, _: &[u8], _: &[u8]) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn file_start(&mut self, _: &str, _: &str) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn file_piece(&mut self, _: &[u8]) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn file_end(&mut self) -> Result<(), SnapshotError> {
        Ok(())
    }
}

/// Reads the whole backup `file` and checks it (structure, files, checksum)
/// without writing anything.
pub fn check(file: &Path) -> Result<Summary, SnapshotError> {
    let input = std::fs::File::open(file).map_err(io(format!("opening {}", file.display())))?;
    walk(input, &file.display().to_string(), &mut Discard)
}

/// Inserts the buffered rows of one table (the visitor of a restore).
struct Import<'a> {
    txn: &'a redb::WriteTransaction,
    table: &'a str,
    rows: &'a [(Vec<u8>, Vec<u8>)],
    found: bool,
}

impl TableVisitor for Import<'_> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        use redb::TableHandle;
        if self.found || table.name() != self.table {
            return Ok(());
        }
        self.found = true;
        let mut open = self.txn.open_table(table)?;
        for (k, v) in self.rows {
            open.insert(K::from_bytes(k), V::from_bytes(v))?;
        }
        Ok(())
    }
}

/// Writes what a walk reads into a new data directory.
struct Restore {
    db: redb::Database,
    dir: PathBuf,
    table: String,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    buffered: usize,
    file: Option<(BufWriter<std::fs::File>, PathBuf)>,
}

impl Restore {
    fn flush_rows(&mut self) -> Result<(), SnapshotError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let mut import = Import {
            txn: &txn,
            table: &self.table,
            rows: &self.rows,
            found: false,
        };
        // redb reads keys and values of a table's types from their bytes
        // and panics on bytes that are not; the checksum matched, but the
        // file may still have been made by hand.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            visit_tables(&mut import).map(|()| import.found)
        }));
        match done {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(SnapshotError::Damaged {
                    at: 0,
                    what: format!("it holds a table {} this build does not have", self.table),
                });
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(SnapshotError::Damaged {
                    at: 0,
                    what: format!("rows of table {} are not of its types", self.table),
                });
            }
        }
        txn.commit().map_err(StoreError::from)?;
        self.rows.clear();
        self.buffered = 0;
        Ok(())
    }
}

impl Sink for Restore {
    fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if table != self.table || self.buffered >= RESTORE_BATCH_BYTES {
            self.flush_rows()?;
            self.table = table.to_string();
        }
        self.buffered += key.len() + value.len();
        self.rows.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
    fn file_start(&mut self, folder: &str, name: &str) -> Result<(), SnapshotError> {
        let dir = self.dir.join(folder);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join(name);
        let file = create_0600(&path)?;
        self.file = Some((BufWriter::with_capacity(1 << 20, file), path));
        Ok(())
    }
    fn file_piece(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        if let Some((file, path)) = &mut self.file {
            file.write_all(bytes)
                .map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }
    fn file_end(&mut self) -> Result<(), SnapshotError> {
        if let Some((file, path)) = self.file.take() {
            let file = file
                .into_inner()
                .map_err(|e| io(format!("writing {}", path.display()))(e.into_error()))?;
            file.sync_all()
                .map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }
}

fn create_0600(path: &Path) -> Result<std::fs::File, SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("creating {}", path.display())))
}

/// Restores the backup `file` as the data directory `dir`, which must not
/// exist or be empty. The whole file is checked first; then the directory
/// is built beside `dir` and moved into place once complete and opened
/// (redb's integrity check, the schema), so a failure leaves nothing.
pub fn restore(file: &Path, dir: &Path) -> Result<Summary, SnapshotError> {
    let target = |why: &str| SnapshotError::Target {
        path: dir.to_path_buf(),
        why: why.to_string(),
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(target("it is not empty (restore into a new directory)"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(target(&e.to_string())),
    }
    let summary = check(file)?;
    let name = dir
        .file_name()
        .ok_or_else(|| target("it has no name"))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let aside = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let result = restore_aside(file, &aside, &summary);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&aside);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| target(&e.to_string()))?;
    }
    std::fs::rename(&aside, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&aside);
        target(&e.to_string())
    })?;
    Ok(summary)
}

fn restore_aside(file: &Path, aside: &Path, summary: &Summary) -> Result<(), SnapshotError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(aside)
        .map_err(io(format!("creating {}", aside.display())))?;
    let db = redb::Database::builder()
        .create(aside.join(super::DB_FILE))
        .map_err(|e| StoreError::Db(e.to_string()))?;
    let mut sink = Restore {
        db,
        dir: aside.to_path_buf(),
        table: String::new(),
        rows: Vec::new(),
        buffered: 0,
        file: None,
    };
    let input = std::fs::File::open(file).map_err(io(format!("opening {}", file.display())))?;
    let again = walk(input, &file.display().to_string(), &mut sink)?;
    sink.flush_rows()?;
    if again.sha256 != summary.sha256 {
        return Err(SnapshotError::Damaged {
            at: again.bytes,
            what: "the file changed while it was restored".into(),
        });
    }
    drop(sink);
    // Opening checks every page and the schema, and writes the directory's
    // marker with the database's id. A restored database is behind its
    // peers: it heals before it sends or accepts anything (SPEC §22).
    Store::open(aside)?.mark_healing()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Doc;

    /// Every row of every table, as bytes.
    struct Dump<'a> {
        txn: &'a redb::ReadTransaction,
        rows: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    }

    impl TableVisitor for Dump<'_> {
        fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            table: TableDefinition<'static, K, V>,
        ) -> Result<(), StoreError> {
            use redb::TableHandle;
            let Ok(open) = self.txn.open_table(table) else {
                return Ok(());
            };
            for row in redb::ReadableTable::iter(&open)? {
                let (k, v) = row?;
                let (k, v) = (k.value(), v.value());
                self.rows.insert(
                    (table.name().to_string(), K::as_bytes(&k).as_ref().to_vec()),
                    V::as_bytes(&v).as_ref().to_vec(),
                );
            }
            Ok(())
        }
    }

    fn dump(store: &Store) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
        let txn = store.db().expect("db").begin_read().expect("read");
        let mut d = Dump {
            txn: &txn,
            rows: BTreeMap::new(),
        };
        visit_tables(&mut d).expect("dump");
        d.rows
    }

    /// A store with rows in several tables, and two files beside it.
    fn sample(dir: &Path) -> (Store, PathBuf) {
        let store = Store::open(dir).expect("open");
        store
            .transact(|w| {
                for seq in 1..=50u64 {
                    w.put_out(
                        "globex",
                        seq,
                        [seq as u8; 32],
                        &[seq as u8; 300],
                        seq as i64,
                    )?;
                }
                w.put_doc(Doc::User, "alice", br#"{"name":"alice"}"#)?;
                w.put_doc(Doc::Library, "r\u{241f}x", "一份資料".as_bytes())?;
                Ok::<(), StoreError>(())
            })
            .expect("write");
        let files = dir.join("attachments");
        std::fs::create_dir_all(&files).expect("dir");
        for content in [&b"first file"[..], &vec![7u8; 3 << 20][..]] {
            let name = hex(&Sha256::digest(content));
            std::fs::write(files.join(name), content).expect("file");
        }
        std::fs::write(files.join("not-a-hash.part"), b"left out").expect("file");
        (store, files)
    }

    #[test]
    fn a_backup_restores_every_row_and_file_and_a_damaged_one_restores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, files) = sample(&dir.path().join("node"));
        let file = dir.path().join("node.backup");
        let out = std::fs::File::create(&file).expect("create");
        let written = store
            .backup("acme", 1_764_633_600_000, &[("attachments", &files)], out)
            .expect("backup");
        assert_eq!(written.tables.get("out_envelopes"), Some(&50));
        assert_eq!(written.files.get("attachments"), Some(&2));
        assert_eq!(written.bytes, std::fs::metadata(&file).expect("meta").len());
        // The check reads what the backup wrote.
        let checked = check(&file).expect("check");
        assert_eq!(checked, written);

        let target = dir.path().join("restored");
        let restored = restore(&file, &target).expect("restore");
        assert_eq!(restored, written);
        let again = Store::open(&target).expect("open restored");
        // A restored store is behind its peers until it heals (SPEC §22);
        // that mark aside, it holds every row of every table.
        assert!(again.healing().expect("meta") && !store.healing().expect("meta"));
        let mut rows = dump(&again);
        assert!(
            rows.remove(&("meta".to_string(), b"healing".to_vec()))
                .is_some()
        );
        assert_eq!(rows, dump(&store), "every row of every table");
        for entry in std::fs::read_dir(&files).expect("files") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let copy = target.join("attachments").join(&name);
            if is_sha256_name(&name) {
                assert_eq!(
                    std::fs::read(copy).expect("copy"),
                    std::fs::read(entry.path()).expect("original")
                );
            } else {
                assert!(!copy.exists(), "only content-addressed files are kept");
            }
        }

        // Into a directory that is not empty: refused.
        match restore(&file, &target) {
            Err(SnapshotError::Target { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }

        // One changed byte in the middle, or a cut: refused, nothing written.
        let bytes = std::fs::read(&file).expect("read");
        let mut changed = bytes.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 0x01;
        for (name, damaged) in [
            ("changed", changed),
            ("cut", bytes[..bytes.len() - 100].to_vec()),
        ] {
            let bad = dir.path().join(name);
            std::fs::write(&bad, damaged).expect("write");
            let target = dir.path().join(format!("{name}-restored"));
            match restore(&bad, &target) {
                Err(SnapshotError::Damaged { at, what }) => {
                    assert!(at > 0, "{name}: says where");
                    assert!(!what.is_empty());
                }
                other => panic!("{name}: expected damage, got {other:?}"),
            }
            assert!(!target.exists(), "{name}: nothing was written");
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .expect("list")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
                .collect();
            assert!(leftovers.is_empty(), "{name}: no directory left aside");
        }
        std::fs::write(dir.path().join("text"), b"hello").expect("write");
        assert!(matches!(
            check(&dir.path().join("text")),
            Err(SnapshotError::NotABackup(_))
        ));
    }

    #[test]
    fn a_backup_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = sample(&dir.path().join("node"));
        store
            .force_schema_version(SCHEMA_VERSION + 1)
            .expect("force");
        let file = dir.path().join("b");
        store
            .backup(
                "acme",
                0,
                &[],
                std::fs::File::create(&file).expect("create"),
            )
            .expect("backup");
        assert!(matches!(
            restore(&file, &dir.path().join("r")),
            Err(SnapshotError::Newer { .. })
        ));
    }
}
