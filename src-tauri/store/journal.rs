//! The intake journal: `journal.db`, a second SQLite file beside `alerts.db`.
//!
//! Every request to the webhook path is appended here and committed (`synchronous = FULL`)
//! before the receiver responds. Appending touches only the last pages of one table, so a
//! delivery costs a fraction of a page write instead of the five or so that the indexed
//! `alerts` table needs. The store writer then moves journaled deliveries into `alerts.db`
//! in large batches and records, in the same transaction, the sequence number it reached
//! (`settings.journal_applied_seq`). After a crash the writer resumes after that number.
//! Because the number is committed with the deliveries it covers, none is applied twice.
//!
//! Applied rows are deleted from the journal, so it contains only the backlog.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::writer::{Delivery, Outcome, Verdict, Via};
use super::StoreError;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "journal.db";

/// Key in the `settings` table of `alerts.db` that contains the last applied journal seq.
const APPLIED_KEY: &str = "journal_applied_seq";

/// Page cache of the appending connection, in KiB when negative (SQLite's convention).
const APPENDER_CACHE_KIB: i64 = -16 * 1024;
/// Page size of a new journal file.
const JOURNAL_PAGE_BYTES: i64 = 16 * 1024;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS journal (
        -- The newest row is never deleted, so a new row's seq is always above every seq
        -- handed out before (without the cost of AUTOINCREMENT's counter page).
        seq         INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        remote_addr TEXT NOT NULL,
        via         TEXT NOT NULL,
        method      TEXT NOT NULL,
        path        TEXT NOT NULL,
        body_size   INTEGER NOT NULL,
        body_sha256 TEXT NOT NULL,
        headers     TEXT,
        body        BLOB,
        -- NULL for an authenticated alert, which the writer parses again from `body`;
        -- otherwise the rejection that the receiver responded with.
        outcome     TEXT,
        status      INTEGER,
        reason      TEXT
    );";

/// Opens (creating if needed) the journal for appending.
/// The journal has no page limit of its own: the writer's backlog bounds it.
pub(super) fn open(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(JOURNAL_FILE);
    let connection = Connection::open(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    super::configure(&connection, None)?;
    // Larger pages than the default 4 KiB: a commit of a few deliveries then writes one or
    // two WAL frames, each a header and a page, instead of one frame per 4 KiB.
    connection.pragma_update(None, "page_size", JOURNAL_PAGE_BYTES)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

/// Opens the journal for the thread that appends to it and deletes applied rows.
pub(super) fn open_appender(data_dir: &Path) -> Result<Connection, StoreError> {
    let connection = open(data_dir)?;
    // Applied rows are deleted while their pages are still cached, instead of being read
    // back from disk for the delete.
    connection.pragma_update(None, "cache_size", APPENDER_CACHE_KIB)?;
    Ok(connection)
}

/// Opens the journal read-only; `None` when the data directory has none yet.
fn open_reader(data_dir: &Path) -> Result<Option<Connection>, StoreError> {
    let path = data_dir.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(None);
    }
    super::open_read_only(&path).map(Some)
}

/// Appends `delivery`; the caller commits.
pub(super) fn append(connection: &Connection, delivery: &Delivery) -> Result<(), StoreError> {
    let (outcome, status, reason) = match &delivery.verdict {
        Verdict::Alert(_) => (None, None, None),
        Verdict::Rejected {
            outcome,
            status,
            reason,
        } => (Some(outcome.as_str()), Some(*status), Some(reason.as_str())),
    };
    connection
        .prepare_cached(
            "INSERT INTO journal (received_ms, remote_addr, via, method, path, body_size,
                 body_sha256, headers, body, outcome, status, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            delivery.received_ms,
            delivery.remote_addr,
            delivery.via.as_str(),
            delivery.method,
            delivery.path,
            delivery.body_size as i64,
            delivery.body_sha256,
            delivery.headers,
            delivery.body.as_deref(),
            outcome,
            status,
            reason,
        ])?;
    Ok(())
}

/// Returns the highest seq ever appended, 0 for an empty journal.
pub(super) fn head(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection
        .prepare_cached("SELECT ifnull(max(seq), 0) FROM journal")?
        .query_row([], |row| row.get(0))?)
}

/// Deletes the rows up to and including `seq`, except the newest row, which keeps the
/// seqs rising; returns how many.
pub(super) fn remove_through(connection: &Connection, seq: i64) -> Result<usize, StoreError> {
    Ok(connection
        .prepare_cached(
            "DELETE FROM journal WHERE seq <= min(?1, (SELECT max(seq) FROM journal) - 1)",
        )?
        .execute([seq])?)
}

/// Reads up to `limit` deliveries after `after`, oldest first.
///
/// An alert's body is parsed again here. The receiver parsed the same bytes before it
/// responded, so a parse error means the parser changed in between. Such a delivery is
/// logged as malformed rather than dropped.
pub(super) fn read_after(
    connection: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, Delivery)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, received_ms, remote_addr, via, method, path, body_size, body_sha256,
             headers, body, outcome, status, reason
         FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = statement.query_map(params![after, limit as i64], |row| {
        let body: Option<Vec<u8>> = row.get(9)?;
        let outcome: Option<String> = row.get(10)?;
        let status: Option<u16> = row.get(11)?;
        let reason: Option<String> = row.get(12)?;
        let verdict = match outcome {
            None => match crate::model::parse(body.as_deref().unwrap_or_default()) {
                Ok(alert) => Verdict::Alert(Box::new(alert)),
                Err(error) => Verdict::Rejected {
                    outcome: Outcome::Malformed,
                    status: 400,
                    reason: error.to_string(),
                },
            },
            Some(outcome) => Verdict::Rejected {
                outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Malformed),
                status: status.unwrap_or(400),
                reason: reason.unwrap_or_default(),
            },
        };
        let via: String = row.get(3)?;
        let delivery = Delivery {
            received_ms: row.get(1)?,
            remote_addr: row.get(2)?,
            via: Via::parse(&via).unwrap_or(Via::Loopback),
            method: row.get(4)?,
            path: row.get(5)?,
            body_size: row.get::<_, i64>(6)? as usize,
            body_sha256: row.get(7)?,
            headers: row.get(8)?,
            body: body.map(bytes::Bytes::from),
            verdict,
        };
        Ok((row.get(0)?, delivery))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Returns the last journal seq applied to `alerts.db`, as `connection` reads it.
pub(super) fn applied(connection: &Connection) -> Result<i64, StoreError> {
    let value: Option<String> = connection
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([APPLIED_KEY], |row| row.get(0))
        .optional()?;
    Ok(value.and_then(|value| value.parse().ok()).unwrap_or(0))
}

/// Records `seq` as applied; the caller commits with the applied deliveries.
pub(super) fn set_applied(connection: &Connection, seq: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![APPLIED_KEY, seq.to_string()])?;
    Ok(())
}

/// Counts the deliveries journaled but not yet applied to the `alerts.db` that `reader`
/// reads.
pub(super) fn pending(data_dir: &Path, reader: &Connection) -> Result<i64, StoreError> {
    let Some(journal) = open_reader(data_dir)? else {
        return Ok(0);
    };
    Ok((head(&journal)? - applied(reader)?).max(0))
}

/// Waits until `alerts.db` contains every delivery journaled before the call, or until
/// `patience` passes without the writer applying any; returns how many are still pending.
///
/// The receiver responds once a delivery is journaled, and the writer applies it a moment
/// later, so a reader that starts right after a response waits here for that moment.
pub(super) fn wait_until_applied(
    data_dir: &Path,
    reader: &Connection,
    patience: Duration,
) -> Result<i64, StoreError> {
    let Some(journal) = open_reader(data_dir)? else {
        return Ok(0);
    };
    let target = head(&journal)?;
    let mut last = applied(reader)?;
    let mut progress_at = Instant::now();
    while last < target {
        if progress_at.elapsed() >= patience {
            return Ok(target - last);
        }
        std::thread::sleep(Duration::from_millis(2));
        let now = applied(reader)?;
        if now > last {
            last = now;
            progress_at = Instant::now();
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::{Retention, WriterHandle};
    use crate::store::Store;

    const EXAMPLE: &[u8] = include_bytes!("../../tests/data/documented-example.json");

    fn alert_delivery(body: &[u8]) -> Delivery {
        Delivery {
            received_ms: crate::store::now_ms(),
            remote_addr: "127.0.0.1:9".to_owned(),
            via: Via::Loopback,
            method: "POST".to_owned(),
            path: "/webhook".to_owned(),
            body_size: body.len(),
            body_sha256: String::new(),
            headers: Some("{}".to_owned()),
            body: Some(bytes::Bytes::copy_from_slice(body)),
            verdict: Verdict::Alert(Box::new(crate::model::parse(body).unwrap())),
        }
    }

    fn retention() -> Retention {
        Retention {
            max_age: Duration::from_secs(86_400),
            max_rows: 1_000,
        }
    }

    /// Starts a writer on `data_dir`, lets it apply the journal's rows, and stops it.
    fn run_writer(data_dir: &Path) {
        let (store, connection) = Store::open(data_dir).unwrap();
        let (handle, thread) = WriterHandle::spawn(&store, connection, retention()).unwrap();
        drop(handle);
        thread.join().unwrap();
    }

    fn count(data_dir: &Path, sql: &str) -> i64 {
        let reader = Connection::open(data_dir.join(super::super::DATABASE_FILE)).unwrap();
        reader.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn journaled_deliveries_are_applied_at_start() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        // Deliveries acknowledged by a process that stopped before applying them.
        let journal = open(dir.path()).unwrap();
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        let rejected = Delivery {
            body: None,
            verdict: Verdict::Rejected {
                outcome: Outcome::BadSignature,
                status: 401,
                reason: "signature does not match".to_owned(),
            },
            ..alert_delivery(EXAMPLE)
        };
        append(&journal, &rejected).unwrap();
        drop(journal);

        run_writer(dir.path());
        assert_eq!(count(dir.path(), "SELECT count(*) FROM alerts"), 1);
        assert_eq!(
            count(dir.path(), "SELECT delivery_count FROM alerts"),
            2,
            "the redelivery is counted"
        );
        let reader = Connection::open(dir.path().join(super::super::DATABASE_FILE)).unwrap();
        let outcomes: Vec<String> = reader
            .prepare("SELECT outcome FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(outcomes, ["stored", "duplicate", "bad_signature"]);
        assert_eq!(applied(&reader).unwrap(), 3);
        assert_eq!(Store::pending(dir.path()).unwrap(), 0);
    }

    #[test]
    fn applied_deliveries_are_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let journal = open(dir.path()).unwrap();
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        drop(journal);
        run_writer(dir.path());

        // The journal rows stay until a checkpoint proves them durable; a writer that
        // starts again must skip them by the recorded seq.
        let journal = open(dir.path()).unwrap();
        journal
            .execute(
                "INSERT INTO journal (seq, received_ms, remote_addr, via, method, path,
                     body_size, body_sha256, body)
                 VALUES (1, 0, '', 'loopback', 'POST', '/webhook', 0, '', ?1)
                 ON CONFLICT (seq) DO NOTHING",
                [EXAMPLE],
            )
            .unwrap();
        drop(journal);
        run_writer(dir.path());
        assert_eq!(count(dir.path(), "SELECT delivery_count FROM alerts"), 1);
        assert_eq!(count(dir.path(), "SELECT count(*) FROM deliveries"), 1);
    }

    #[test]
    fn applied_rows_leave_the_journal_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let journal = open(dir.path()).unwrap();
        for _ in 0..3 {
            append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        }
        run_writer(dir.path());
        let left: i64 = journal
            .query_row("SELECT count(*) FROM journal", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 1, "only the newest row stays");
        assert_eq!(head(&journal).unwrap(), 3);
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        assert_eq!(head(&journal).unwrap(), 4, "a seq is never reused");
    }

    #[test]
    fn failing_delivery_logged_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (_, connection) = Store::open(dir.path()).unwrap();
        // A trigger that rejects one alert is a stand-in for any error that only one
        // delivery causes while the disk takes writes.
        connection
            .execute_batch(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON alerts WHEN new.id = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
            )
            .unwrap();
        drop(connection);
        let with_id = |id: &str| {
            let mut value: serde_json::Value = serde_json::from_slice(EXAMPLE).unwrap();
            value["content"]["id"] = id.into();
            serde_json::to_vec(&value).unwrap()
        };
        let journal = open(dir.path()).unwrap();
        for id in ["before", "poison", "after"] {
            append(&journal, &alert_delivery(&with_id(id))).unwrap();
        }
        drop(journal);

        run_writer(dir.path());
        let reader = Connection::open(dir.path().join(super::super::DATABASE_FILE)).unwrap();
        let rows: Vec<(Option<String>, String, String)> = reader
            .prepare("SELECT alert_id, outcome, reason FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].1, "stored");
        assert_eq!(rows[1].0.as_deref(), Some("poison"));
        assert_eq!(rows[1].1, "failed");
        assert!(rows[1].2.contains("refused by a test trigger"), "{rows:?}");
        assert_eq!(rows[2].1, "stored");
        assert_eq!(count(dir.path(), "SELECT count(*) FROM alerts"), 2);
        let body: Option<Vec<u8>> = reader
            .query_row(
                "SELECT body FROM deliveries WHERE alert_id = 'poison'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(body.unwrap(), with_id("poison"), "the body is kept");
        assert_eq!(Store::pending(dir.path()).unwrap(), 0);
    }

    #[test]
    fn pending_counts_unapplied_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        assert_eq!(Store::pending(dir.path()).unwrap(), 0, "no journal yet");
        let journal = open(dir.path()).unwrap();
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        append(&journal, &alert_delivery(EXAMPLE)).unwrap();
        assert_eq!(Store::pending(dir.path()).unwrap(), 2);
        let reader = Connection::open(dir.path().join(super::super::DATABASE_FILE)).unwrap();
        let waited = wait_until_applied(dir.path(), &reader, Duration::from_millis(50)).unwrap();
        assert_eq!(waited, 2, "no writer runs, so both are still pending");
    }
}
