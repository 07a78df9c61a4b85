//! The alert store in the data directory: the SQLite database `alerts.db` with the alerts
//! and the delivery log, and the `journal` directory with deliveries not yet applied to it.
//!
//! # Durability
//! Every delivery is first appended to the [`journal`] by one thread, which writes
//! concurrent deliveries together (group commit): one disk flush serves a whole batch, and
//! each delivery gets its response only after its batch is on disk. The [`writer`] thread
//! then applies the journal to `alerts.db` (WAL mode) in large batches, off the response
//! path. A journal segment is deleted only after a checkpoint has made its application
//! durable, so a crash or power loss loses no acknowledged delivery.
//!
//! # Concurrency
//! Readers open their own connections ([`Store::open_reader`]); WAL lets them read while
//! the writer commits, so the CLI works while the app or `serve` is running. A reader
//! first waits until the deliveries acknowledged before it opened are applied.

pub mod deliveries;
pub mod facet_index;
mod facet_pairs;
pub mod journal;
pub mod outages;
pub mod query;
pub mod schema;
pub mod triage;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use query::{AlertFilter, AlertSummary, Condition, Field, TriageStatus};
pub use writer::{AlertEvent, AlertEventKind, Outcome, WriterHandle};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "alerts.db";

/// Largest part of the database a reader maps into memory.
const READER_MMAP_BYTES: i64 = 4 * 1024 * 1024 * 1024;
/// Page cache of a reader, in KiB when negative (SQLite's convention).
const READER_CACHE_KIB: i64 = -16 * 1024;

/// How long a new reader waits for the writer to apply acknowledged deliveries, counted
/// from the writer's last progress.
const READER_PATIENCE: Duration = Duration::from_secs(2);

/// How long a connection waits for a lock held by another before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is a file, not a directory; choose another directory with --data-dir or ALERT_INBOX_DATA_DIR")]
    NotADirectory(PathBuf),
    #[error("failed to open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "data directory {path} is not writable ({source}); make it writable for this user, \
         or choose another directory with --data-dir or ALERT_INBOX_DATA_DIR"
    )]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not an SQLite database or is damaged; move it out of the data directory to \
         start a new store there, or choose another data directory"
    )]
    NotADatabase(PathBuf),
    #[error("no database at {0}; start `alert-inbox serve` or the app once, or pass the right --data-dir")]
    Missing(PathBuf),
    #[error("database schema version {found} is newer than this build supports ({supported}); update Alert Inbox")]
    NewerSchema { found: u32, supported: u32 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store writer has stopped")]
    WriterStopped,
    #[error("alert {0:?} not found")]
    NotFound(String),
    #[error("failed to write or read the intake journal at {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Returns whether the failure is the disk's (full, read-only, I/O), so a retry can succeed later.
    pub fn is_storage_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.code,
                DiskFull | ReadOnly | SystemIoFailure | CannotOpen | DatabaseBusy | DatabaseLocked
            ),
            // A journal error is an I/O error on its files, such as a full or read-only disk.
            Self::Journal { .. } | Self::WriterStopped => true,
            _ => false,
        }
    }
}

/// Paths and settings shared by the writer and readers of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    max_pages: Option<u64>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and applies migrations.
    pub fn open(data_dir: &Path) -> Result<(Self, Connection), StoreError> {
        Self::open_with_max_pages(data_dir, None)
    }

    /// Opens the store as [`Store::open`] does, with SQLite's `max_page_count` set on every
    /// read-write connection. A write that would grow the database past `max_pages` pages
    /// fails as a full disk does (`SQLITE_FULL`), so the receiver responds 503.
    pub fn open_with_max_pages(
        data_dir: &Path,
        max_pages: Option<u64>,
    ) -> Result<(Self, Connection), StoreError> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(StoreError::NotADirectory(data_dir.to_owned()));
        }
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        // SQLite reports a read-only directory as a failure to open or to write, without
        // the path, so the directory is tested first.
        tempfile::Builder::new()
            .prefix(".alert-inbox-write-test")
            .tempfile_in(data_dir)
            .map_err(|source| StoreError::NotWritable {
                path: data_dir.to_owned(),
                source,
            })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut connection = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let set_up = configure(&connection, max_pages)
            .and_then(|()| Ok(connection.pragma_update(None, "journal_mode", "WAL")?))
            .and_then(|()| schema::migrate(&mut connection).map(|_| ()));
        set_up.map_err(|error| name_damaged_file(&path, error))?;
        Ok((Self { path, max_pages }, connection))
    }

    /// Opens a read-only connection to an existing database.
    pub fn open_reader(data_dir: &Path) -> Result<Connection, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        let connection = open_read_only(&path)?;
        let version = set_up_for_reads(&connection)
            .and_then(|()| schema_version(&connection))
            .map_err(|error| name_damaged_file(&path, error))?;
        let supported = schema::latest_version();
        if version > supported {
            return Err(StoreError::NewerSchema {
                found: version,
                supported,
            });
        }
        let pending = journal::wait_until_applied(data_dir, &connection, READER_PATIENCE)?;
        if pending > 0 {
            tracing::warn!(
                pending,
                "acknowledged deliveries are not in the inbox yet; they are applied while \
                 `alert-inbox serve` or the app runs"
            );
        }
        Ok(connection)
    }

    /// Counts the deliveries that were acknowledged but are not yet applied to the alerts,
    /// without waiting for them as [`Store::open_reader`] does.
    pub fn pending(data_dir: &Path) -> Result<i64, StoreError> {
        let reader = open_read_only(&data_dir.join(DATABASE_FILE))?;
        journal::pending(data_dir, &reader)
    }

    /// Returns the schema versions (current, latest) when opening the store in `data_dir`
    /// will upgrade its schema, which can take seconds on a large store. `None` when the
    /// database is missing, new or up to date.
    pub fn pending_upgrade(data_dir: &Path) -> Result<Option<(u32, u32)>, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let reader = open_read_only(&path)?;
        let version = schema_version(&reader).map_err(|error| name_damaged_file(&path, error))?;
        let latest = schema::latest_version();
        Ok((version > 0 && version < latest).then_some((version, latest)))
    }

    /// Opens a read-write connection for the inbox window: it lists, counts and triages.
    /// Its reads map the file like a reader's, which makes the lookups of alert rows that
    /// searches and filters on receive time do up to 1.7 times faster on a large store.
    pub fn open_inbox_connection(&self) -> Result<Connection, StoreError> {
        let connection = self.open_connection()?;
        set_up_for_reads(&connection)?;
        Ok(connection)
    }

    /// Opens another read-write connection, for triage updates from the app.
    pub fn open_connection(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open(&self.path).map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        configure(&connection, self.max_pages)?;
        Ok(connection)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the directory that contains the database files.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Opens the database at `path` read-only, waiting up to [`BUSY_TIMEOUT`] for locks.
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

fn schema_version(connection: &Connection) -> Result<u32, StoreError> {
    Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Turns SQLite's "file is not a database" for `path` into an error that names the file.
fn name_damaged_file(path: &Path, error: StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::NotADatabase =>
        {
            StoreError::NotADatabase(path.to_owned())
        }
        other => other,
    }
}

/// Sets up `connection` for large reads. They map the file instead of copying each page
/// through a system call, which makes scans such as filtered facet counts several times
/// faster. The mapping is address space, not resident memory.
fn set_up_for_reads(connection: &Connection) -> Result<(), StoreError> {
    connection.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    connection.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
    Ok(())
}

fn configure(connection: &Connection, max_pages: Option<u64>) -> Result<(), StoreError> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals and temporary tables stay in memory. On disk they cost a write
    // per changed page of every statement that might need a partial rollback.
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // The WAL grows between checkpoints; this truncates it back once a checkpoint resets it.
    connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    if let Some(max_pages) = max_pages {
        connection.pragma_update(None, "max_page_count", max_pages)?;
    }
    Ok(())
}

/// Returns the current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_connection_maps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let pragma = |connection: &Connection, name: &str| -> i64 {
            connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };

        let inbox = store.open_inbox_connection().unwrap();
        assert!(pragma(&inbox, "mmap_size") > 0);
        assert_eq!(pragma(&inbox, "cache_size"), READER_CACHE_KIB);

        let plain = store.open_connection().unwrap();
        assert_eq!(pragma(&plain, "mmap_size"), 0);
    }

    #[test]
    fn damaged_database_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let errors = [
            Store::open(dir.path()).map(|_| ()).unwrap_err(),
            Store::open_reader(dir.path()).map(|_| ()).unwrap_err(),
            Store::pending_upgrade(dir.path()).map(|_| ()).unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(&error, StoreError::NotADatabase(named) if *named == path),
                "{error:?}"
            );
            assert!(error.to_string().contains("move it out"), "{error}");
        }
    }

    #[test]
    fn pending_upgrade_names_versions_until_opened() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Store::pending_upgrade(dir.path()).unwrap(), None);

        schema::create_at_version(&dir.path().join(DATABASE_FILE), 2);
        let latest = schema::latest_version();
        assert_eq!(
            Store::pending_upgrade(dir.path()).unwrap(),
            Some((2, latest))
        );

        Store::open(dir.path()).unwrap();
        assert_eq!(Store::pending_upgrade(dir.path()).unwrap(), None);
    }
}
