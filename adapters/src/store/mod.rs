//! The redb store: one file, `guanxi.redb`, in the data directory.
//!
//! Every table is defined here and nowhere else, with typed keys. The `meta`
//! table records the schema version; opening a database written by another
//! schema version is a clear error, never a silent reinterpretation of bytes.
//!
//! Envelopes and receipts, in and out, are kept verbatim: they are the legal
//! record of what two companies said to each other. Records (leads, orders,
//! ...) are stored as JSON of `guanxi_protocol::state::Record`.
//!
//! redb has one writer at a time; the daemon's engine owns writing and groups
//! many messages into one durable commit ([`Store::write`]).

pub mod snapshot;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 4;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "guanxi.redb";

/// Written next to the database once it exists, holding the database's id:
/// a data directory with this file has been used, so a missing or empty
/// database there is damage, never a new node.
pub const STORE_MARKER: &str = "store-id";

/// redb's page cache when the caller does not say: small-server sized
/// (redb's own default is 1 GiB, which a large database fills and keeps).
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The `meta` key of the database's id (the one in [`STORE_MARKER`]).
const STORE_ID_KEY: &str = "store_id";
/// The `meta` key set (to 1) while the database is behind its peers: made
/// by a restore or a recovery, cleared when healing ends (SPEC §22).
const HEALING_KEY: &str = "healing";

/// One step of the store's layout, from schema `from` to `from + 1`: a
/// small function run in one write transaction (which also records the
/// new version). Tested one by one (`migrations_*` tests).
pub struct Migration {
    pub from: u64,
    /// What it changes, for the log.
    pub what: &'static str,
    pub run: fn(&redb::WriteTransaction) -> Result<(), StoreError>,
}

/// Every step this build can take, oldest first. Schema 4 is the oldest
/// layout whose stores are kept (`tests/fixtures/schema4`); no step has
/// been needed since (additions such as the `healing` mark need none).
pub const MIGRATIONS: &[Migration] = &[];

/// `meta`: schema version and other single values, by name.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Per sending peer: the incoming stream's high-water seq and last hash.
const IN_STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("in_streams");
/// Incoming envelope id → (peer, seq, hash) of where it was consumed.
const IN_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("in_ids");
/// (peer, seq) → the incoming envelope's exact bytes.
const IN_ENVELOPES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("in_envelopes");
/// (peer, seq) → the exact bytes of the receipt we signed for it.
const IN_RECEIPTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("in_receipts");
/// (peer, seq) → reason code, for incoming envelopes we rejected.
const IN_REJECTED: TableDefinition<(&str, u64), &str> = TableDefinition::new("in_rejected");
/// (peer, subject) → JSON of the shared record.
const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
/// Per receiving peer: the outgoing stream's last seq and hash.
/// (peer, subject) → JSON of the record's authority bookkeeping: its version
/// and, at a follower, what is unsettled (protocol `state::authority`).
const RECORD_SYNC: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("record_sync");
/// (peer, seq) → subject of an outgoing request whose answer the record's
/// authority still owes (SPEC §12.1): receipts of other envelopes need no
/// look at the record.
const OUT_PENDING: TableDefinition<(&str, u64), &str> = TableDefinition::new("out_pending");
const OUT_STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("out_streams");
/// (peer, seq) → the outgoing envelope's exact bytes (signed once).
const OUT_ENVELOPES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("out_envelopes");
/// (peer, seq) → the exact bytes of the peer's verified receipt.
const OUT_RECEIPTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("out_receipts");
/// (peer, seq) → reason code, for outgoing envelopes the peer rejected.
const OUT_REJECTED: TableDefinition<(&str, u64), &str> = TableDefinition::new("out_rejected");
/// Per receiving peer: JSON of [`Delivery`].
const DELIVERY: TableDefinition<&str, &[u8]> = TableDefinition::new("delivery");
/// Local documents (JSON, not shared with peers), one table per [`Doc`] kind.
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const PARTNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("partners");
const THROTTLE: TableDefinition<&str, &[u8]> = TableDefinition::new("throttle");
const API_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");
const LEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("leads");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const LEAD_INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("lead_index");
const RECORD_INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("record_index");
const SERIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("serials");
const PARTNER_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("partner_users");
const NOTICES: TableDefinition<&str, &[u8]> = TableDefinition::new("notices");
const MAIL: TableDefinition<&str, &[u8]> = TableDefinition::new("mail");
const LIBRARY: TableDefinition<&str, &[u8]> = TableDefinition::new("library");
const IDEMPOTENCY_EXPIRY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency_expiry");

/// How the database file is used ([`Store::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub allocated_bytes: u64,
    pub stored_bytes: u64,
    pub metadata_bytes: u64,
    pub fragmented_bytes: u64,
}

/// Kinds of local JSON documents, each in its own table keyed by a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// username → account
    User,
    /// SHA-256 of the session token → session
    Session,
    /// partner organization id → directory entry
    Partner,
    /// "user:NAME" or "addr:IP" → failed-login counter
    Throttle,
    /// SHA-256 of an API token → its name, user and state
    ApiToken,
    /// lead id → the vendor's lead (customer, consent, offers, rule trace)
    Lead,
    /// setting name → value (distribution rules and their round-robin state)
    Setting,
    /// SHA-256 of an uploaded file → the organizations that uploaded it
    Upload,
    /// "scope␟key" of an API or admin call's `Idempotency-Key` → the
    /// request's hash and, once answered, the answer
    Idempotency,
    /// "time␟scope␟key" (time zero-padded, so keys sort by time) → nothing:
    /// which idempotency keys expire first
    IdempotencyExpiry,
    /// "stage␟STAGE␟LEAD ID" → nothing, "of␟LEAD ID" → its stage: the
    /// vendor's leads by stage (kept with the lead and its offer records)
    LeadIndex,
    /// "s␟FAMILY␟SIDE␟STATUS␟KEY␟SUBJECT" → nothing, "of␟KEY␟SUBJECT" →
    /// what it is listed under: shared records by family, side and status
    RecordIndex,
    /// serial number → a staff registration of a serial sold outside this
    /// node's orders (SKU, date the warranty runs from, partner)
    Serial,
    /// "PARTNER␟USERNAME" → `1` (enabled) or `0` (disabled): each partner
    /// organization's users ("␟USERNAME" for the company's own staff)
    PartnerUser,
    /// "n␟USERNAME␟TIME␟ID" → a notification, "u␟USERNAME" → how many are
    /// unread: each user's notifications, newest last
    Notice,
    /// "q␟DUE␟ID" → a mail to send, "d␟USERNAME␟TIME␟ID" → a notification
    /// waiting for its digest, "dq␟USERNAME" → the digest's queued job,
    /// "f␟TIME␟ID" → a mail given up on, "failed" → their count and the
    /// last error: the durable mail queue
    Mail,
    /// The shared library and announcements: this node's own resources
    /// and announcements ("r␟ID", "a␟ID") and their indexes (who they
    /// target, search words, what waits to be fetched) — `library/`
    Library,
}

/// Every kind of local document.
const DOCS: [Doc; 17] = [
    Doc::User,
    Doc::Session,
    Doc::Partner,
    Doc::Throttle,
    Doc::ApiToken,
    Doc::Lead,
    Doc::Setting,
    Doc::Upload,
    Doc::Idempotency,
    Doc::IdempotencyExpiry,
    Doc::LeadIndex,
    Doc::RecordIndex,
    Doc::Serial,
    Doc::PartnerUser,
    Doc::Notice,
    Doc::Mail,
    Doc::Library,
];

impl Doc {
    /// Its place in `DOCS`.
    fn index(self) -> usize {
        DOCS.iter().position(|d| *d == self).unwrap_or(0)
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Doc::User => "users",
            Doc::Session => "sessions",
            Doc::Partner => "partners",
            Doc::Throttle => "throttle",
            Doc::ApiToken => "api_tokens",
            Doc::Lead => "leads",
            Doc::Setting => "settings",
            Doc::Upload => "uploads",
            Doc::Idempotency => "idempotency",
            Doc::IdempotencyExpiry => "idempotency_expiry",
            Doc::LeadIndex => "lead_index",
            Doc::RecordIndex => "record_index",
            Doc::Serial => "serials",
            Doc::PartnerUser => "partner_users",
            Doc::Notice => "notices",
            Doc::Mail => "mail",
            Doc::Library => "library",
        }
    }

    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Doc::User => USERS,
            Doc::Session => SESSIONS,
            Doc::Partner => PARTNERS,
            Doc::Throttle => THROTTLE,
            Doc::ApiToken => API_TOKENS,
            Doc::Lead => LEADS,
            Doc::Setting => SETTINGS,
            Doc::Upload => UPLOADS,
            Doc::Idempotency => IDEMPOTENCY,
            Doc::IdempotencyExpiry => IDEMPOTENCY_EXPIRY,
            Doc::LeadIndex => LEAD_INDEX,
            Doc::RecordIndex => RECORD_INDEX,
            Doc::Serial => SERIALS,
            Doc::PartnerUser => PARTNER_USERS,
            Doc::Notice => NOTICES,
            Doc::Mail => MAIL,
            Doc::Library => LIBRARY,
        }
    }
}

/// Something done with every table of the schema, typed: the backup writes
/// each table's rows, the restore finds the table of a row.
pub(crate) trait TableVisitor {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError>;
}

/// Calls `visitor` with every table defined above, in this order (a test
/// checks that a database holds no table missing here).
pub(crate) fn visit_tables(visitor: &mut impl TableVisitor) -> Result<(), StoreError> {
    visitor.visit(META)?;
    visitor.visit(IN_STREAMS)?;
    visitor.visit(IN_IDS)?;
    visitor.visit(IN_ENVELOPES)?;
    visitor.visit(IN_RECEIPTS)?;
    visitor.visit(IN_REJECTED)?;
    visitor.visit(RECORDS)?;
    visitor.visit(RECORD_SYNC)?;
    visitor.visit(OUT_PENDING)?;
    visitor.visit(OUT_STREAMS)?;
    visitor.visit(OUT_ENVELOPES)?;
    visitor.visit(OUT_RECEIPTS)?;
    visitor.visit(OUT_REJECTED)?;
    visitor.visit(DELIVERY)?;
    for doc in DOCS {
        visitor.visit(doc.table())?;
    }
    Ok(())
}

const SCHEMA_KEY: &str = "schema_version";

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path} is in use by another process (is another guanxi running on this data directory?)"
    )]
    InUse { path: PathBuf },
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// The database file is damaged, missing or not this directory's: the
    /// node must not start on it.
    #[error(
        "database {path} is damaged: {message}. Nothing was changed. Stop here and restore the \
         data directory from a backup (put the backup's {DB_FILE} in place of this one); \
         `guanxi verify` checks a database without starting the node"
    )]
    Damaged { path: PathBuf, message: String },
    #[error(
        "database {path} has schema version {found}, this build uses {expected}: {}",
        if found > expected {
            "a newer build made it; run that build (or a newer one), this one never reads a newer layout"
        } else {
            "this build has no migration from that version; upgrade through a build that does"
        }
    )]
    SchemaMismatch {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("database error: {0}")]
    Db(String),
    /// The file could not be read or written (a full disk, an I/O error),
    /// or an earlier such failure left the open database refusing writes
    /// until it is reopened ([`Store::reopen`]).
    #[error("the database file cannot be written or read: {0}")]
    Io(String),
    /// The database is being reopened after an I/O failure.
    #[error("the database is being reopened after an I/O failure")]
    Reopening,
    #[error("corrupt value in table {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

impl StoreError {
    /// True for failures of the file itself (see [`StoreError::Io`]): the
    /// node's data is intact, but nothing can be written until the disk has
    /// room again and the database is reopened.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Reopening)
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Io(_)
            | redb::StorageError::PreviousIo
            | redb::StorageError::DatabaseClosed => StoreError::Io(e.to_string()),
            other => StoreError::Db(other.to_string()),
        }
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        match e {
            redb::TransactionError::Storage(s) => s.into(),
            other => StoreError::Db(other.to_string()),
        }
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        match e {
            redb::TableError::Storage(s) => s.into(),
            other => StoreError::Db(other.to_string()),
        }
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        match e {
            redb::CommitError::Storage(s) => s.into(),
            other => StoreError::Db(other.to_string()),
        }
    }
}

/// Where one stream (one direction between two nodes) stands: the last seq
/// and the hash of that envelope (seq 0, no hash: nothing yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    pub seq: u64,
    pub hash: Option<[u8; 32]>,
    /// The `created` of the last envelope (0 when none): a stream's times
    /// never go back (SPEC §7 step 8).
    pub created: i64,
}

impl StreamState {
    fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        if let Some(h) = self.hash {
            out[8..40].copy_from_slice(&h);
        }
        out[40..].copy_from_slice(&self.created.to_be_bytes());
        out
    }

    fn decode(table: &'static str, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt {
            table,
            message: format!("stream state of {} bytes, expected 48", bytes.len()),
        };
        let seq = u64::from_be_bytes(
            bytes
                .get(..8)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?,
        );
        let hash: [u8; 32] = bytes
            .get(8..40)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        let created = i64::from_be_bytes(
            bytes
                .get(40..48)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?,
        );
        Ok(StreamState {
            seq,
            hash: if seq == 0 { None } else { Some(hash) },
            created,
        })
    }
}

/// Where an incoming envelope id was consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenId {
    pub peer: String,
    pub seq: u64,
    pub hash: [u8; 32],
}

impl SeenId {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.peer.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(self.peer.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |message: &str| StoreError::Corrupt {
            table: "in_ids",
            message: message.into(),
        };
        if bytes.len() < 40 {
            return Err(corrupt("entry shorter than 40 bytes"));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[8..40]);
        let peer =
            std::str::from_utf8(&bytes[40..]).map_err(|_| corrupt("peer id is not UTF-8"))?;
        Ok(SeenId {
            peer: peer.to_string(),
            seq: u64::from_be_bytes(seq),
            hash,
        })
    }
}

/// Delivery state of the outgoing stream to one peer; persisted so that a
/// restart neither resets nor stampedes the backoff.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// Highest seq for which the peer's receipt is stored.
    pub delivered_seq: u64,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// Earliest time of the next attempt (UTC ms); 0 = now.
    pub next_attempt_at: i64,
    /// The last failure, for admins.
    pub last_error: Option<String>,
    /// When the current run of failures started (UTC ms).
    pub failing_since: Option<i64>,
    /// Set when an admin paused delivery to the peer (`guanxi pause`):
    /// nothing is sent until `guanxi resume`.
    #[serde(default)]
    pub paused: bool,
    /// Set when the peer reported a broken stream (seq_gap, chain_broken):
    /// delivery stops until an admin intervenes.
    pub halted: Option<String>,
}

/// One outgoing envelope as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEntry {
    pub peer: String,
    pub seq: u64,
    pub envelope: Vec<u8>,
    pub receipt: Option<Vec<u8>>,
    pub rejected: Option<String>,
}

/// An incoming envelope and the receipt this node signed for it (exact bytes).
pub type InEntry = (Vec<u8>, Vec<u8>);

/// The open database.
pub struct Store {
    /// `None` only while [`Store::reopen`] closes and opens the file.
    db: std::sync::RwLock<Option<std::sync::Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    /// What opening it migrated (empty for a current store).
    migrated: Vec<String>,
}

impl Store {
    /// Opens (creating when absent) the database in `data_dir`, and checks or
    /// records its schema version.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes`.
    pub fn open_with(data_dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        Self::open_migrating(data_dir, cache_bytes, MIGRATIONS)
    }

    /// What opening this store migrated, in words (empty for a current one).
    pub fn migrated(&self) -> &[String] {
        &self.migrated
    }

    /// [`Store::open_with`], bringing an older schema forward with `steps`.
    pub fn open_migrating(
        data_dir: &Path,
        cache_bytes: usize,
        steps: &[Migration],
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let marker = data_dir.join(STORE_MARKER);
        let damaged = |message: String| StoreError::Damaged {
            path: path.clone(),
            message,
        };
        let used_before = marker.exists();
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == 0 => {
                return Err(damaged(
                    "the file is empty (0 bytes); a database file is never empty once created"
                        .into(),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && used_before => {
                return Err(damaged(format!(
                    "the file is missing, but this data directory has been used ({} exists); \
                     a new, empty node is not started over it",
                    marker.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(damaged(format!("cannot read the file: {e}"))),
        }
        // Every open checks the checksum of every page (a file changed
        // outside redb fails here instead of being served), and a panic
        // inside redb on a damaged file is caught and reported.
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_check_integrity_on_open(true)
                .set_cache_size(cache_bytes)
                .create(&path)
        });
        let db = match opened {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(damaged(format!("opening it failed inside redb ({what})")));
            }
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StoreError::InUse { path: path.clone() });
            }
            Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)))) => {
                return Err(damaged(format!("the integrity check failed ({m})")));
            }
            Ok(Err(other)) => {
                return Err(StoreError::Open {
                    path: path.clone(),
                    message: other.to_string(),
                });
            }
            Ok(Ok(db)) => db,
        };
        let mut store = Store {
            db: std::sync::RwLock::new(Some(std::sync::Arc::new(db))),
            path: path.clone(),
            cache_bytes,
            migrated: Vec::new(),
        };
        store.migrated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.migrate(steps)))
                .map_err(|_| damaged("migrating its schema failed inside redb".into()))??;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.check_schema()))
            .map_err(|_| damaged("reading its tables failed inside redb".into()))??;
        let id = store.store_id()?;
        match std::fs::read_to_string(&marker) {
            Ok(text) if text.trim() == id.to_string() => {}
            Ok(text) => {
                return Err(damaged(format!(
                    "it is not this data directory's database (its id is {id}, {} says {})",
                    marker.display(),
                    text.trim()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_marker(&marker, id).map_err(|e| StoreError::DataDir {
                    path: marker.clone(),
                    source: e,
                })?;
            }
            Err(e) => {
                return Err(StoreError::DataDir {
                    path: marker.clone(),
                    source: e,
                });
            }
        }
        Ok(store)
    }

    /// The database's id (made at its creation, kept in `meta`).
    fn store_id(&self) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_write()?;
        let id = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(STORE_ID_KEY)?.map(|v| v.value());
            match found {
                Some(id) => id,
                None => {
                    use std::hash::{BuildHasher, Hasher};
                    // Randomly keyed per process: unique enough for an id.
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_u128(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0),
                    );
                    let id = h.finish() >> 1;
                    meta.insert(STORE_ID_KEY, id)?;
                    id
                }
            }
        };
        txn.commit()?;
        Ok(id)
    }

    /// Brings an older schema forward (SPEC of the store: [`MIGRATIONS`]):
    /// the database file is first copied to `guanxi.redb.schema<N>.bak`
    /// beside it, then each step runs in its own transaction that also
    /// records the version it reached, so a stop midway resumes at the
    /// next step. Answers what was done.
    fn migrate(&mut self, steps: &[Migration]) -> Result<Vec<String>, StoreError> {
        let found = {
            let txn = self.db()?.begin_read()?;
            match txn.open_table(META) {
                // A new database: nothing to migrate.
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                other => other?.get(SCHEMA_KEY)?.map(|v| v.value()),
            }
        };
        let Some(found) = found.filter(|v| *v < SCHEMA_VERSION) else {
            return Ok(Vec::new());
        };
        let mut chain = Vec::new();
        for version in found..SCHEMA_VERSION {
            match steps.iter().find(|s| s.from == version) {
                Some(step) => chain.push(step),
                None => {
                    return Err(StoreError::SchemaMismatch {
                        path: self.path.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        // The copy is taken with the database closed: nothing writes it.
        let copy = self.path.with_extension(format!("redb.schema{found}.bak"));
        {
            let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
            *slot = None;
        }
        std::fs::copy(&self.path, &copy).map_err(|e| StoreError::DataDir {
            path: copy.clone(),
            source: e,
        })?;
        self.reopen()?;
        let mut done = vec![format!(
            "schema {found} copied to {} before migrating",
            copy.display()
        )];
        for step in chain {
            let txn = self.db()?.begin_write()?;
            (step.run)(&txn)?;
            txn.open_table(META)?.insert(SCHEMA_KEY, step.from + 1)?;
            txn.commit()?;
            done.push(format!(
                "schema {} → {}: {}",
                step.from,
                step.from + 1,
                step.what
            ));
        }
        Ok(done)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(found) => {
                    return Err(StoreError::SchemaMismatch {
                        path: self.path.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            // Create every table, so that readers never meet a missing one.
            txn.open_table(IN_STREAMS)?;
            txn.open_table(IN_IDS)?;
            txn.open_table(IN_ENVELOPES)?;
            txn.open_table(IN_RECEIPTS)?;
            txn.open_table(IN_REJECTED)?;
            txn.open_table(RECORDS)?;
            txn.open_table(RECORD_SYNC)?;
            txn.open_table(OUT_PENDING)?;
            txn.open_table(OUT_STREAMS)?;
            txn.open_table(OUT_ENVELOPES)?;
            txn.open_table(OUT_RECEIPTS)?;
            txn.open_table(OUT_REJECTED)?;
            txn.open_table(DELIVERY)?;
            for doc in DOCS {
                txn.open_table(doc.table())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(SCHEMA_KEY)?.map(|v| v.value()))
    }

    /// Whether the database is behind its peers and must heal before it
    /// sends or accepts anything (SPEC §22).
    pub fn healing(&self) -> Result<bool, StoreError> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(HEALING_KEY)?.is_some_and(|v| v.value() != 0))
    }

    /// Marks the database as behind its peers (after a restore, or as the
    /// empty store of a recovery).
    pub fn mark_healing(&self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        txn.open_table(META)?.insert(HEALING_KEY, 1)?;
        txn.commit()?;
        Ok(())
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Test and repair hook: overwrite the recorded schema version.
    #[doc(hidden)]
    pub fn force_schema_version(&self, version: u64) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        txn.open_table(META)?.insert(SCHEMA_KEY, version)?;
        txn.commit()?;
        Ok(())
    }

    /// Runs `work` in one write transaction and commits it (durably: fsync)
    /// when `work` succeeds; when it fails, nothing it wrote remains.
    pub fn transact<R, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Tables<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let txn = self.db()?.begin_write().map_err(StoreError::from)?;
        let result = {
            let mut tables = Tables::open(&txn)?;
            let result = work(&mut tables)?;
            tables.flush()?;
            result
        };
        txn.commit().map_err(StoreError::from)?;
        Ok(result)
    }

    /// How the database file is used: bytes in pages, bytes of keys and
    /// values, of redb's own metadata, and free inside the file. Takes the
    /// write lock for a moment (waits for a running write) and writes
    /// nothing.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db()?.begin_write().map_err(StoreError::from)?;
        let s = txn.stats().map_err(StoreError::from)?;
        let stats = StoreStats {
            allocated_bytes: s.allocated_pages() * s.page_size() as u64,
            stored_bytes: s.stored_bytes(),
            metadata_bytes: s.metadata_bytes(),
            fragmented_bytes: s.fragmented_bytes(),
        };
        txn.abort().map_err(StoreError::from)?;
        Ok(stats)
    }

    /// Starts a read transaction: a consistent snapshot.
    pub fn read(&self) -> Result<Read, StoreError> {
        Ok(Read {
            txn: self.db()?.begin_read()?,
        })
    }

    /// The open database (a transaction started from it outlives the
    /// handle).
    fn db(&self) -> Result<std::sync::Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Reopening)
    }

    /// Closes and opens the database file again: after an I/O failure
    /// (a full disk) redb refuses every write until then. Opening runs
    /// redb's recovery; what was committed before the failure is intact.
    /// Call it from the only writer, with no write transaction open.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            // Read transactions still open lose the file (their reads fail);
            // a reader that holds the handle for a moment delays the close.
            match std::sync::Arc::try_unwrap(old) {
                Ok(db) => {
                    let _ = db.close();
                }
                Err(shared) => drop(shared),
            }
        }
        let mut last = None;
        for _ in 0..50 {
            match Database::builder()
                .set_cache_size(self.cache_bytes)
                .create(&self.path)
            {
                Ok(db) => {
                    *slot = Some(std::sync::Arc::new(db));
                    return Ok(());
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    last = Some("still held by a reader".to_string());
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(redb::DatabaseError::Storage(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(StoreError::Open {
                        path: self.path.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Err(StoreError::Io(format!(
            "cannot reopen {}: {}",
            self.path.display(),
            last.unwrap_or_default()
        )))
    }
}

/// Writes the data directory's marker atomically (temporary file, rename).
fn write_marker(marker: &Path, id: u64) -> std::io::Result<()> {
    let tmp = marker.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, marker)
}

/// Every table, opened once in one write transaction: typed access for the
/// engine, which runs a whole group of jobs against one `Tables`.
pub struct Tables<'t> {
    in_streams: redb::Table<'t, &'static str, &'static [u8]>,
    in_ids: redb::Table<'t, &'static str, &'static [u8]>,
    in_envelopes: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    in_receipts: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    in_rejected: redb::Table<'t, (&'static str, u64), &'static str>,
    records: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    record_sync: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    out_pending: redb::Table<'t, (&'static str, u64), &'static str>,
    out_streams: redb::Table<'t, &'static str, &'static [u8]>,
    out_envelopes: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    out_receipts: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    out_rejected: redb::Table<'t, (&'static str, u64), &'static str>,
    delivery: redb::Table<'t, &'static str, &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
    /// The `healing` mark as the transaction began (read once: the engine
    /// asks on every send and inbound envelope).
    healing: bool,
    /// The local document tables, held open for the transaction (in the
    /// order of `DOCS`): opening a table per read or write is not free.
    docs: Vec<redb::Table<'t, &'static str, &'static [u8]>>,
    /// Documents written through [`Tables::put_doc_later`]: kept here and
    /// written once, when the transaction's work is done (counters that
    /// many changes in one transaction touch).
    later: std::collections::BTreeMap<(usize, String), Option<Vec<u8>>>,
    /// Documents changed in memory through [`Tables::later_value`], as
    /// typed values: encoded and written once, when the work is done.
    later_values: std::collections::BTreeMap<(usize, String), Box<dyn Later>>,
}

/// A document kept as a typed value for the rest of a write transaction
/// ([`Tables::later_value`]) and encoded once, when its work is done.
pub trait Later: std::any::Any + Send {
    /// The bytes to store, or `None` to delete the document; an error
    /// fails the transaction.
    fn encode(&self) -> Result<Option<Vec<u8>>, String>;
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        let meta = txn.open_table(META)?;
        let healing = meta.get(HEALING_KEY)?.is_some_and(|v| v.value() != 0);
        Ok(Tables {
            in_streams: txn.open_table(IN_STREAMS)?,
            in_ids: txn.open_table(IN_IDS)?,
            in_envelopes: txn.open_table(IN_ENVELOPES)?,
            in_receipts: txn.open_table(IN_RECEIPTS)?,
            in_rejected: txn.open_table(IN_REJECTED)?,
            records: txn.open_table(RECORDS)?,
            record_sync: txn.open_table(RECORD_SYNC)?,
            out_pending: txn.open_table(OUT_PENDING)?,
            out_streams: txn.open_table(OUT_STREAMS)?,
            meta,
            healing,
            out_envelopes: txn.open_table(OUT_ENVELOPES)?,
            out_receipts: txn.open_table(OUT_RECEIPTS)?,
            out_rejected: txn.open_table(OUT_REJECTED)?,
            delivery: txn.open_table(DELIVERY)?,
            docs: DOCS
                .iter()
                .map(|d| txn.open_table(d.table()))
                .collect::<Result<_, _>>()?,
            later: std::collections::BTreeMap::new(),
            later_values: std::collections::BTreeMap::new(),
        })
    }

    /// Writes what [`Tables::put_doc_later`] and [`Tables::later_value`] kept.
    fn flush(&mut self) -> Result<(), StoreError> {
        for ((i, key), value) in std::mem::take(&mut self.later_values) {
            let bytes = value
                .encode()
                .map_err(|e| StoreError::Db(format!("{key}: {e}")))?;
            self.later.insert((i, key), bytes);
        }
        for ((i, key), value) in std::mem::take(&mut self.later) {
            let table = &mut self.docs[i];
            match value {
                Some(v) => {
                    table.insert(key.as_str(), v.as_slice())?;
                }
                None => {
                    table.remove(key.as_str())?;
                }
            }
        }
        Ok(())
    }
}

/// A read-only snapshot with typed access.
pub struct Read {
    txn: redb::ReadTransaction,
}

/// Whole-table reads since start, by table: the scale work keeps pages and
/// engine checks off them (tests assert none happen where they must not).
static FULL_SCANS: std::sync::Mutex<Vec<(&'static str, u64)>> = std::sync::Mutex::new(Vec::new());

fn count_full_scan(table: &'static str) {
    let mut scans = FULL_SCANS.lock().unwrap_or_else(|p| p.into_inner());
    match scans.iter_mut().find(|(t, _)| *t == table) {
        Some((_, n)) => *n += 1,
        None => scans.push((table, 1)),
    }
}

/// Whole-table reads since the process started, by table name (for
/// `/metrics`).
pub fn full_scans() -> Vec<(&'static str, u64)> {
    FULL_SCANS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Which way a page of documents runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Keys ascending, from just after the cursor.
    Forward,
    /// Keys descending, from just before the cursor.
    Backward,
}

/// One page of documents whose keys start with `prefix`, in `order`,
/// continuing past `cursor` (a key of the previous page's last entry), at
/// most `limit`: a bounded read, never the whole table.
/// Calls `each` with every document whose key starts with `prefix`, in key
/// order: the key without the prefix, and the bytes. A bounded read (the
/// prefix's range), never counted as a whole-table read.
fn each_with_prefix(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<(), StoreError> {
    let end = format!("{prefix}\u{10FFFF}");
    for entry in table.range::<&str>(prefix..end.as_str())? {
        let (k, v) = entry?;
        if let Some(rest) = k.value().strip_prefix(prefix) {
            each(rest, v.value());
        }
    }
    Ok(())
}

fn docs_page(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    cursor: Option<&str>,
    order: Order,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    use std::ops::Bound::{Excluded, Included};
    // Keys with the prefix lie in [prefix, prefix + U+10FFFF).
    let end = format!("{prefix}\u{10FFFF}");
    let (lower, upper) = match (order, cursor) {
        (Order::Forward, Some(c)) => (Excluded(c), Excluded(end.as_str())),
        (Order::Backward, Some(c)) => (Included(prefix), Excluded(c)),
        (_, None) => (Included(prefix), Excluded(end.as_str())),
    };
    let range = table.range::<&str>((lower, upper))?;
    let mut out = Vec::new();
    let mut push = |entry: Result<
        (
            redb::AccessGuard<'_, &'static str>,
            redb::AccessGuard<'_, &'static [u8]>,
        ),
        redb::StorageError,
    >|
     -> Result<bool, StoreError> {
        let (k, v) = entry?;
        let key = k.value();
        if !key.starts_with(prefix) {
            return Ok(true);
        }
        out.push((key.to_string(), v.value().to_vec()));
        Ok(out.len() < limit)
    };
    match order {
        Order::Forward => {
            for entry in range {
                if !push(entry)? {
                    break;
                }
            }
        }
        Order::Backward => {
            for entry in range.rev() {
                if !push(entry)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn all_docs(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn all_records(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (peer, subject) = k.value();
        out.push((peer.to_string(), subject.to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn stream_of(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    peer: &str,
) -> Result<StreamState, StoreError> {
    match table.get(peer)? {
        Some(v) => StreamState::decode(name, v.value()),
        None => Ok(StreamState::default()),
    }
}

fn delivery_of(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    peer: &str,
) -> Result<Delivery, StoreError> {
    match table.get(peer)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            table: "delivery",
            message: e.to_string(),
        }),
        None => Ok(Delivery::default()),
    }
}

/// A rejected envelope: (peer, seq, reason code).
pub type Rejected = (String, u64, String);

fn rejections(
    table: &impl ReadableTable<(&'static str, u64), &'static str>,
) -> Result<Vec<Rejected>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (peer, seq) = k.value();
        out.push((peer.to_string(), seq, v.value().to_string()));
    }
    Ok(out)
}

fn bytes_at(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    peer: &str,
    seq: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table.get((peer, seq))?.map(|v| v.value().to_vec()))
}

impl Tables<'_> {
    fn table(&self, kind: Doc) -> &redb::Table<'_, &'static str, &'static [u8]> {
        &self.docs[kind.index()]
    }

    /// A local document, as JSON bytes (as [`Tables::put_doc_later`] left
    /// it, if it did).
    pub fn doc(&self, kind: Doc, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let at = (kind.index(), key.to_string());
        if let Some(v) = self.later_values.get(&at) {
            return v
                .encode()
                .map_err(|e| StoreError::Db(format!("{key}: {e}")));
        }
        if let Some(v) = self.later.get(&at) {
            return Ok(v.clone());
        }
        Ok(self.table(kind).get(key)?.map(|v| v.value().to_vec()))
    }

    /// Stores (`Some`) or deletes (`None`) a document when this
    /// transaction's work is done, not now: for documents that many changes
    /// in one transaction rewrite (kept counts). [`Tables::doc`] sees the
    /// value at once; ranges ([`Tables::docs_page`]) see it after commit.
    pub fn put_doc_later(&mut self, kind: Doc, key: &str, json: Option<Vec<u8>>) {
        let at = (kind.index(), key.to_string());
        self.later_values.remove(&at);
        self.later.insert(at, json);
    }

    /// The document `key` as a typed value to change in memory: made by
    /// `decode` from its stored bytes (or `None`) the first time in this
    /// transaction, then the same value each time; encoded and written
    /// once when the transaction's work is done ([`Later::encode`]). For
    /// counters that many changes in one transaction touch: no bytes are
    /// parsed or written per change. [`Tables::doc`] sees the value at once;
    /// ranges see it after commit. A value of another type under the same
    /// key is an error.
    pub fn later_value<T: Later>(
        &mut self,
        kind: Doc,
        key: &str,
        decode: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<&mut T, StoreError> {
        let at = (kind.index(), key.to_string());
        if !self.later_values.contains_key(&at) {
            let bytes = self.doc(kind, key)?;
            self.later.remove(&at);
            self.later_values
                .insert(at.clone(), Box::new(decode(bytes.as_deref())));
        }
        let value: Option<&mut dyn std::any::Any> = self
            .later_values
            .get_mut(&at)
            .map(|v| v.as_mut() as &mut dyn std::any::Any);
        value.and_then(|v| v.downcast_mut::<T>()).ok_or_else(|| {
            StoreError::Db(format!("{key}: kept as another type in this transaction"))
        })
    }

    /// Every local document of a kind, in key order.
    pub fn docs(&self, kind: Doc) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        count_full_scan(kind.name());
        all_docs(self.table(kind))
    }

    /// One page of documents of a kind (see [`docs_page`]).
    pub fn docs_page(
        &self,
        kind: Doc,
        prefix: &str,
        cursor: Option<&str>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        docs_page(self.table(kind), prefix, cursor, order, limit)
    }

    /// Every document of a kind under `prefix` (see [`each_with_prefix`]).
    pub fn each_with_prefix(
        &self,
        kind: Doc,
        prefix: &str,
        each: impl FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        each_with_prefix(self.table(kind), prefix, each)
    }

    /// Every shared record as (peer or `web:<partner>`, subject, JSON).
    pub fn records(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        count_full_scan("records");
        all_records(&self.records)
    }

    /// Up to `limit` shared records after (`key`, `subject`) in key order
    /// (a migration walks them a page per transaction).
    pub fn records_page(
        &self,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = match after {
            Some((k, s)) => Excluded((k.as_str(), s.as_str())),
            None => Unbounded,
        };
        let mut out = Vec::new();
        for entry in self
            .records
            .range::<(&str, &str)>((lower, Unbounded))?
            .take(limit)
        {
            let (k, v) = entry?;
            let (key, subject) = k.value();
            out.push((key.to_string(), subject.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The first `limit` documents of a kind whose keys sort before `end`,
    /// in key order (a bounded read, never the whole table).
    pub fn docs_before(
        &self,
        kind: Doc,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.table(kind).range(..end)?.take(limit) {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores a local document.
    pub fn put_doc(&mut self, kind: Doc, key: &str, json: &[u8]) -> Result<(), StoreError> {
        let at = (kind.index(), key.to_string());
        self.later_values.remove(&at);
        self.later.remove(&at);
        self.docs[kind.index()].insert(key, json)?;
        Ok(())
    }

    /// Deletes a local document; true when it existed.
    pub fn delete_doc(&mut self, kind: Doc, key: &str) -> Result<bool, StoreError> {
        let at = (kind.index(), key.to_string());
        let typed = self
            .later_values
            .remove(&at)
            .is_some_and(|v| matches!(v.encode(), Ok(Some(_))));
        let later = self.later.remove(&at);
        let was = self.docs[kind.index()].remove(key)?.is_some();
        Ok(was || matches!(later, Some(Some(_))) || typed)
    }

    /// The incoming stream from `peer`.
    pub fn in_stream(&self, peer: &str) -> Result<StreamState, StoreError> {
        stream_of(&self.in_streams, "in_streams", peer)
    }

    /// Where an incoming envelope id was consumed, if it was.
    pub fn seen_id(&self, id: &str) -> Result<Option<SeenId>, StoreError> {
        match self.in_ids.get(id)? {
            Some(v) => Ok(Some(SeenId::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The receipt we signed for (peer, seq).
    pub fn in_receipt(&self, peer: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        bytes_at(&self.in_receipts, peer, seq)
    }

    /// Consumes an incoming envelope: its bytes, its receipt, its id, the
    /// stream's new position, and (when rejected) the reason code.
    pub fn put_in(
        &mut self,
        id: &str,
        seen: &SeenId,
        envelope: &[u8],
        receipt: &[u8],
        rejected: Option<&str>,
        created: i64,
    ) -> Result<(), StoreError> {
        let key = (seen.peer.as_str(), seen.seq);
        self.in_envelopes.insert(key, envelope)?;
        self.in_receipts.insert(key, receipt)?;
        self.in_ids.insert(id, seen.encode().as_slice())?;
        let state = StreamState {
            seq: seen.seq,
            hash: Some(seen.hash),
            created,
        };
        self.in_streams
            .insert(seen.peer.as_str(), state.encode().as_slice())?;
        if let Some(code) = rejected {
            self.in_rejected.insert(key, code)?;
        }
        Ok(())
    }

    /// The envelope `seq` received from `peer`, as its exact bytes.
    pub fn in_envelope(&self, peer: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        bytes_at(&self.in_envelopes, peer, seq)
    }

    /// The shared record `subject` between this node and `peer`, as JSON.
    pub fn record(&self, peer: &str, subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .records
            .get((peer, subject))?
            .map(|v| v.value().to_vec()))
    }

    /// Stores the shared record `subject` between this node and `peer`.
    pub fn put_record(&mut self, peer: &str, subject: &str, json: &[u8]) -> Result<(), StoreError> {
        self.records.insert((peer, subject), json)?;
        Ok(())
    }

    /// Removes the shared record `subject` between this node and `peer`.
    pub fn delete_record(&mut self, peer: &str, subject: &str) -> Result<(), StoreError> {
        self.records.remove((peer, subject))?;
        Ok(())
    }

    /// The authority bookkeeping of the record `subject` shared with `peer`.
    pub fn record_sync(&self, peer: &str, subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .record_sync
            .get((peer, subject))?
            .map(|v| v.value().to_vec()))
    }

    /// Notes that the outgoing envelope `seq` to `peer` is a request about
    /// `subject` whose placement the peer's receipt will tell.
    pub fn put_out_pending(
        &mut self,
        peer: &str,
        seq: u64,
        subject: &str,
    ) -> Result<(), StoreError> {
        self.out_pending.insert((peer, seq), subject)?;
        Ok(())
    }

    /// Takes the note of [`Tables::put_out_pending`], if any: the subject.
    pub fn take_out_pending(&mut self, peer: &str, seq: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .out_pending
            .remove((peer, seq))?
            .map(|v| v.value().to_string()))
    }

    /// Stores the authority bookkeeping of a record.
    pub fn put_record_sync(
        &mut self,
        peer: &str,
        subject: &str,
        json: &[u8],
    ) -> Result<(), StoreError> {
        self.record_sync.insert((peer, subject), json)?;
        Ok(())
    }

    /// The outgoing stream to `peer`.
    pub fn out_stream(&self, peer: &str) -> Result<StreamState, StoreError> {
        stream_of(&self.out_streams, "out_streams", peer)
    }

    /// Queues an outgoing envelope (exact bytes) and advances the stream.
    pub fn put_out(
        &mut self,
        peer: &str,
        seq: u64,
        hash: [u8; 32],
        envelope: &[u8],
        created: i64,
    ) -> Result<(), StoreError> {
        self.out_envelopes.insert((peer, seq), envelope)?;
        let state = StreamState {
            seq,
            hash: Some(hash),
            created,
        };
        self.out_streams.insert(peer, state.encode().as_slice())?;
        Ok(())
    }

    /// Stores the peer's verified receipt for an outgoing envelope.
    pub fn put_out_receipt(
        &mut self,
        peer: &str,
        seq: u64,
        receipt: &[u8],
        rejected: Option<&str>,
    ) -> Result<(), StoreError> {
        self.out_receipts.insert((peer, seq), receipt)?;
        if let Some(code) = rejected {
            self.out_rejected.insert((peer, seq), code)?;
        }
        Ok(())
    }

    /// The exact bytes of outgoing envelope `seq` to `peer`.
    pub fn out_envelope(&self, peer: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        bytes_at(&self.out_envelopes, peer, seq)
    }

    /// The delivery state of the stream to `peer`.
    pub fn delivery(&self, peer: &str) -> Result<Delivery, StoreError> {
        delivery_of(&self.delivery, peer)
    }

    /// Whether the database is still healing (see [`Store::healing`]).
    pub fn healing(&self) -> Result<bool, StoreError> {
        Ok(self.healing)
    }

    /// Ends the healing (SPEC §22), with the transaction that completes it.
    pub fn end_healing(&mut self) -> Result<(), StoreError> {
        self.meta.remove(HEALING_KEY)?;
        self.healing = false;
        Ok(())
    }

    /// Stores the delivery state of the stream to `peer`.
    pub fn put_delivery(&mut self, peer: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let json = serde_json::to_vec(delivery).map_err(|e| StoreError::Db(e.to_string()))?;
        self.delivery.insert(peer, json.as_slice())?;
        Ok(())
    }
}

/// What became of an envelope, as far as this node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipted {
    Accepted,
    Rejected,
    /// Outgoing, no receipt yet.
    Waiting,
}

/// A recent envelope: (seq, exact bytes, status).
pub type Recent = (u64, Vec<u8>, Receipted);

/// The newest `n` envelopes of `peer` in `envelopes`, newest first. Without a
/// receipts table, every envelope not rejected counts as accepted.
fn recent(
    envelopes: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    rejected: &impl ReadableTable<(&'static str, u64), &'static str>,
    receipts: Option<&redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>>,
    peer: &str,
    n: usize,
) -> Result<Vec<Recent>, StoreError> {
    let mut out = Vec::new();
    for entry in envelopes.range((peer, 0)..=(peer, u64::MAX))?.rev().take(n) {
        let (k, v) = entry?;
        let seq = k.value().1;
        let status = if rejected.get((peer, seq))?.is_some() {
            Receipted::Rejected
        } else if let Some(receipts) = receipts
            && receipts.get((peer, seq))?.is_none()
        {
            Receipted::Waiting
        } else {
            Receipted::Accepted
        };
        out.push((seq, v.value().to_vec(), status));
    }
    Ok(out)
}

impl Read {
    /// Every peer with an incoming or an outgoing stream, in order.
    pub fn stream_peers(&self) -> Result<Vec<String>, StoreError> {
        let mut peers = std::collections::BTreeSet::new();
        for def in [IN_STREAMS, OUT_STREAMS] {
            for entry in self.txn.open_table(def)?.iter()? {
                let (k, _) = entry?;
                peers.insert(k.value().to_string());
            }
        }
        Ok(peers.into_iter().collect())
    }

    /// Where an incoming envelope id was consumed (its peer, seq, hash).
    pub fn seen_id(&self, id: &str) -> Result<Option<SeenId>, StoreError> {
        match self.txn.open_table(IN_IDS)?.get(id)? {
            Some(v) => SeenId::decode(v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The newest `n` envelopes sent to `peer` (newest first), with their status.
    pub fn out_recent(&self, peer: &str, n: usize) -> Result<Vec<Recent>, StoreError> {
        let receipts = self.txn.open_table(OUT_RECEIPTS)?;
        recent(
            &self.txn.open_table(OUT_ENVELOPES)?,
            &self.txn.open_table(OUT_REJECTED)?,
            Some(&receipts),
            peer,
            n,
        )
    }

    /// The newest `n` envelopes received from `peer` (newest first), with
    /// their status (every stored incoming envelope has our receipt).
    pub fn in_recent(&self, peer: &str, n: usize) -> Result<Vec<Recent>, StoreError> {
        recent(
            &self.txn.open_table(IN_ENVELOPES)?,
            &self.txn.open_table(IN_REJECTED)?,
            None,
            peer,
            n,
        )
    }

    /// A local document, as JSON bytes.
    pub fn doc(&self, kind: Doc, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .txn
            .open_table(kind.table())?
            .get(key)?
            .map(|v| v.value().to_vec()))
    }

    /// Every local document of a kind, in key order.
    pub fn docs(&self, kind: Doc) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        count_full_scan(kind.name());
        all_docs(&self.txn.open_table(kind.table())?)
    }

    /// One page of documents of a kind (see [`docs_page`]).
    pub fn docs_page(
        &self,
        kind: Doc,
        prefix: &str,
        cursor: Option<&str>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        docs_page(
            &self.txn.open_table(kind.table())?,
            prefix,
            cursor,
            order,
            limit,
        )
    }

    /// Every document of a kind under `prefix` (see [`each_with_prefix`]).
    pub fn each_with_prefix(
        &self,
        kind: Doc,
        prefix: &str,
        each: impl FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        each_with_prefix(&self.txn.open_table(kind.table())?, prefix, each)
    }

    /// Every shared record as (peer or `web:<partner>`, subject, JSON).
    pub fn records(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        count_full_scan("records");
        all_records(&self.txn.open_table(RECORDS)?)
    }

    /// The incoming stream from `peer`.
    pub fn in_stream(&self, peer: &str) -> Result<StreamState, StoreError> {
        stream_of(&self.txn.open_table(IN_STREAMS)?, "in_streams", peer)
    }

    /// The outgoing stream to `peer`.
    pub fn out_stream(&self, peer: &str) -> Result<StreamState, StoreError> {
        stream_of(&self.txn.open_table(OUT_STREAMS)?, "out_streams", peer)
    }

    /// The delivery state of the stream to `peer`.
    pub fn delivery(&self, peer: &str) -> Result<Delivery, StoreError> {
        delivery_of(&self.txn.open_table(DELIVERY)?, peer)
    }

    /// Up to `limit` outgoing envelopes to `peer` from `from_seq` on, in seq order.
    pub fn out_envelopes(
        &self,
        peer: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let table = self.txn.open_table(OUT_ENVELOPES)?;
        let mut out = Vec::new();
        for entry in table
            .range((peer, from_seq)..=(peer, u64::MAX))?
            .take(limit)
        {
            let (k, v) = entry?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    /// One outgoing envelope with its receipt and rejection, if any.
    pub fn out_entry(&self, peer: &str, seq: u64) -> Result<Option<OutEntry>, StoreError> {
        let Some(envelope) = bytes_at(&self.txn.open_table(OUT_ENVELOPES)?, peer, seq)? else {
            return Ok(None);
        };
        Ok(Some(OutEntry {
            peer: peer.to_string(),
            seq,
            envelope,
            receipt: bytes_at(&self.txn.open_table(OUT_RECEIPTS)?, peer, seq)?,
            rejected: self
                .txn
                .open_table(OUT_REJECTED)?
                .get((peer, seq))?
                .map(|v| v.value().to_string()),
        }))
    }

    /// Outgoing envelopes the peers rejected: (peer, seq, reason code).
    pub fn out_rejected(&self) -> Result<Vec<Rejected>, StoreError> {
        rejections(&self.txn.open_table(OUT_REJECTED)?)
    }

    /// Incoming envelopes this node rejected: (peer, seq, reason code).
    pub fn in_rejected(&self) -> Result<Vec<Rejected>, StoreError> {
        rejections(&self.txn.open_table(IN_REJECTED)?)
    }

    /// The incoming envelope (peer, seq) and our receipt for it.
    pub fn in_entry(&self, peer: &str, seq: u64) -> Result<Option<InEntry>, StoreError> {
        let envelope = bytes_at(&self.txn.open_table(IN_ENVELOPES)?, peer, seq)?;
        let receipt = bytes_at(&self.txn.open_table(IN_RECEIPTS)?, peer, seq)?;
        Ok(envelope.zip(receipt))
    }

    /// Every incoming envelope from `peer` in seq order (for checks and tests).
    pub fn in_envelopes(&self, peer: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let table = self.txn.open_table(IN_ENVELOPES)?;
        let mut out = Vec::new();
        for entry in table.range((peer, 0)..=(peer, u64::MAX))? {
            let (k, v) = entry?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Whether any shared record is kept under `key` (one lookup).
    pub fn any_record_under(&self, key: &str) -> Result<bool, StoreError> {
        let table = self.txn.open_table(RECORDS)?;
        let first = table
            .range::<(&str, &str)>((key, "")..)?
            .next()
            .transpose()?;
        Ok(first.is_some_and(|(k, _)| k.value().0 == key))
    }

    /// The shared record `subject` between this node and `peer`, as JSON.
    pub fn record(&self, peer: &str, subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .txn
            .open_table(RECORDS)?
            .get((peer, subject))?
            .map(|v| v.value().to_vec()))
    }

    /// The authority bookkeeping of the record `subject` shared with `peer`.
    pub fn record_sync(&self, peer: &str, subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .txn
            .open_table(RECORD_SYNC)?
            .get((peer, subject))?
            .map(|v| v.value().to_vec()))
    }

    /// How many envelopes were ever received (all peers).
    pub fn in_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(IN_ENVELOPES)?.len()?)
    }

    /// How many documents of a kind are stored (without reading them).
    pub fn doc_count(&self, kind: Doc) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(kind.table())?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter kept as a typed value: deleted when it reaches zero.
    struct Count(i64);

    impl Later for Count {
        fn encode(&self) -> Result<Option<Vec<u8>>, String> {
            Ok((self.0 != 0).then(|| self.0.to_string().into_bytes()))
        }
    }

    fn count(bytes: Option<&[u8]>) -> Count {
        Count(
            bytes
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        )
    }

    #[test]
    fn a_later_value_is_seen_at_once_and_written_once_at_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .transact(|t| -> Result<(), StoreError> {
                t.put_doc(Doc::Setting, "n", b"5")?;
                Ok(())
            })
            .expect("seed");
        store
            .transact(|t| -> Result<(), StoreError> {
                for _ in 0..3 {
                    t.later_value(Doc::Setting, "n", count)?.0 += 1;
                }
                assert_eq!(t.doc(Doc::Setting, "n")?, Some(b"8".to_vec()));
                // Another type under the same key is refused, not confused.
                assert!(t.later_value(Doc::Setting, "n", |_| Flag).is_err());
                t.later_value(Doc::Setting, "gone", count)?.0 += 0;
                Ok(())
            })
            .expect("count");
        let read = store.read().expect("read");
        assert_eq!(
            read.doc(Doc::Setting, "n").expect("doc"),
            Some(b"8".to_vec())
        );
        assert_eq!(read.doc(Doc::Setting, "gone").expect("doc"), None);
        drop(read);
        // A plain write replaces a kept value; a value back to zero is deleted.
        store
            .transact(|t| -> Result<(), StoreError> {
                t.later_value(Doc::Setting, "n", count)?.0 += 1;
                t.put_doc(Doc::Setting, "n", b"2")?;
                t.later_value(Doc::Setting, "n", count)?.0 -= 2;
                Ok(())
            })
            .expect("reset");
        let read = store.read().expect("read");
        assert_eq!(read.doc(Doc::Setting, "n").expect("doc"), None);
    }

    /// Another type implementing [`Later`], to check the type is checked.
    struct Flag;

    impl Later for Flag {
        fn encode(&self) -> Result<Option<Vec<u8>>, String> {
            Ok(Some(b"flag".to_vec()))
        }
    }

    fn mark_migrated(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(Doc::Setting.table())?
            .insert("migrated", b"yes".as_slice())?;
        Ok(())
    }

    fn fail(_: &redb::WriteTransaction) -> Result<(), StoreError> {
        Err(StoreError::Db("this step fails".into()))
    }

    /// A store one schema behind: opened with a step, it is copied first,
    /// then brought forward; a failing step leaves it as it was; without a
    /// step it is refused, saying so.
    #[test]
    fn migrations_bring_an_older_store_forward_after_copying_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = SCHEMA_VERSION - 1;
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .transact(|t| t.put_doc(Doc::Setting, "kept", b"1"))
                .expect("write");
            store.force_schema_version(old).expect("force");
        }
        let step = |run| {
            [Migration {
                from: old,
                what: "marks the store",
                run,
            }]
        };
        let err = Store::open(dir.path()).err().expect("no step: refused");
        assert!(
            err.to_string().contains("no migration from that version"),
            "{err}"
        );
        let err = Store::open_migrating(dir.path(), CACHE_BYTES, &step(fail))
            .err()
            .expect("a failing step");
        assert!(err.to_string().contains("this step fails"), "{err}");
        {
            let store = Store::open_migrating(dir.path(), CACHE_BYTES, &step(mark_migrated))
                .expect("migrates");
            assert_eq!(store.schema_version().expect("v"), Some(SCHEMA_VERSION));
            assert!(
                store
                    .migrated()
                    .iter()
                    .any(|l| l.contains("marks the store")),
                "{:?}",
                store.migrated()
            );
            let read = store.read().expect("read");
            assert_eq!(
                read.doc(Doc::Setting, "migrated").expect("doc").as_deref(),
                Some(b"yes".as_slice())
            );
            assert_eq!(
                read.doc(Doc::Setting, "kept").expect("doc").as_deref(),
                Some(b"1".as_slice())
            );
        }
        // The copy is the store as it was, before the step.
        let copy = dir.path().join(format!("{DB_FILE}.schema{old}.bak"));
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&copy, elsewhere.path().join(DB_FILE)).expect("copy");
        let db = redb::Database::create(elsewhere.path().join(DB_FILE)).expect("the copy opens");
        let txn = db.begin_read().expect("read");
        let meta = txn.open_table(META).expect("meta");
        assert_eq!(
            meta.get(SCHEMA_KEY).expect("get").map(|v| v.value()),
            Some(old)
        );
        // Opened again, a current store migrates nothing.
        let again = Store::open(dir.path()).expect("open");
        assert!(again.migrated().is_empty());
    }

    #[test]
    fn schema_version_is_recorded_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.schema_version().expect("read"), Some(SCHEMA_VERSION));
            store
                .force_schema_version(SCHEMA_VERSION + 1)
                .expect("force");
        }
        match Store::open(dir.path()) {
            Err(e @ StoreError::SchemaMismatch { .. }) => {
                assert!(e.to_string().contains("a newer build made it"), "{e}");
                let StoreError::SchemaMismatch {
                    found, expected, ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!((found, expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            Err(e) => panic!("expected a schema mismatch, got {e}"),
            Ok(_) => panic!("expected a schema mismatch, the store opened"),
        }
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::InUse { .. })
        ));
    }

    #[test]
    fn streams_ids_and_envelopes_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = SeenId {
            peer: "globex".into(),
            seq: 1,
            hash: [7u8; 32],
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .transact(|w| {
                    assert_eq!(w.in_stream("globex")?, StreamState::default());
                    w.put_in("id-1", &seen, b"env", b"rcpt", Some("bad_body"), 5)?;
                    w.put_out("globex", 1, [9u8; 32], b"out-1", 1)?;
                    w.put_out("globex", 2, [8u8; 32], b"out-2", 2)?;
                    let delivery = Delivery {
                        delivered_seq: 1,
                        ..Delivery::default()
                    };
                    w.put_delivery("globex", &delivery)?;
                    Ok::<(), StoreError>(())
                })
                .expect("commit");
            // A failed transaction leaves no trace.
            let failed = store.transact(|w| {
                w.put_out("globex", 3, [1u8; 32], b"out-3", 3)?;
                Err::<(), StoreError>(StoreError::Db("abandoned".into()))
            });
            assert!(failed.is_err());
        }
        let store = Store::open(dir.path()).expect("reopen");
        let r = store.read().expect("read");
        assert_eq!(
            r.in_stream("globex").expect("stream"),
            StreamState {
                seq: 1,
                hash: Some([7u8; 32]),
                created: 5,
            }
        );
        assert_eq!(r.out_stream("globex").expect("stream").seq, 2);
        assert_eq!(
            r.out_envelopes("globex", 2, 10).expect("range"),
            vec![(2, b"out-2".to_vec())]
        );
        assert_eq!(
            r.in_rejected().expect("rejected"),
            vec![("globex".to_string(), 1, "bad_body".to_string())]
        );
        assert_eq!(
            r.in_entry("globex", 1).expect("entry"),
            Some((b"env".to_vec(), b"rcpt".to_vec()))
        );
        assert_eq!(r.delivery("globex").expect("delivery").delivered_seq, 1);
        store
            .transact(|w| w.put_out_receipt("globex", 1, b"rcpt-1", None))
            .expect("receipt");
        let r = store.read().expect("read");
        let statuses: Vec<(u64, Receipted)> = r
            .out_recent("globex", 10)
            .expect("recent")
            .into_iter()
            .map(|(s, _, st)| (s, st))
            .collect();
        assert_eq!(
            statuses,
            vec![(2, Receipted::Waiting), (1, Receipted::Accepted)]
        );
        assert_eq!(
            r.out_recent("globex", 1).expect("recent").len(),
            1,
            "newest first, limited"
        );
        let incoming: Vec<Receipted> = r
            .in_recent("globex", 10)
            .expect("recent")
            .into_iter()
            .map(|(_, _, st)| st)
            .collect();
        assert_eq!(incoming, vec![Receipted::Rejected]);
        let seen_again = store.transact(|w| w.seen_id("id-1")).expect("read");
        assert_eq!(seen_again, Some(seen));
    }
}
