//! The redb store: one file, `guanxi.redb`, in the data directory.
//!
//! Every table is defined here and nowhere else. The `meta` table records the
//! schema version; opening a database written by another schema version is a
//! clear error, never a silent reinterpretation of bytes.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "guanxi.redb";

/// `meta`: schema version and other single values, by name.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

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
    #[error(
        "database {path} has schema version {found}, this build uses {expected}; \
         use a matching guanxi version (no automatic migration exists yet)"
    )]
    SchemaMismatch {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("database error: {0}")]
    Db(String),
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The open database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when absent) the database in `data_dir`, and checks or
    /// records its schema version.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            other => StoreError::Open {
                path: path.clone(),
                message: other.to_string(),
            },
        })?;
        let store = Store { db, path };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
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
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(SCHEMA_KEY)?.map(|v| v.value()))
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Test and repair hook: overwrite the recorded schema version.
    #[doc(hidden)]
    pub fn force_schema_version(&self, version: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(SCHEMA_KEY, version)?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(StoreError::SchemaMismatch {
                found, expected, ..
            }) => {
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
}
