//! The database schema, as an append-only list of migrations keyed by `user_version`.
//!
//! Migration `n` (counting from 1) moves a database from `user_version = n - 1` to `n`.
//! Released migrations never change: a new column or index is a new entry at the end.
//! All pending migrations run in one exclusive transaction, so a crash mid-way leaves the
//! database at its old version.
//!
//! Time columns carry their unit: `*_ns` are the sender's timestamps in nanoseconds since
//! the Unix epoch (RealTheory sends seven fractional digits), `*_ms` are local times in
//! milliseconds.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::{facet_pairs, StoreError};

/// One step of the schema.
enum Migration {
    Sql(&'static str),
    /// A step in Rust, which builds its SQL from constants or fills what it adds from the
    /// data already stored.
    Built(fn(&Transaction) -> Result<(), StoreError>),
}

const MIGRATIONS: &[Migration] = &[
    // 1: alerts with the user's triage, the delivery log, and full-text search.
    Migration::Sql(
        r#"
    CREATE TABLE alerts (
        seq                 INTEGER PRIMARY KEY,
        id                  TEXT NOT NULL UNIQUE,
        key                 TEXT NOT NULL,
        title               TEXT NOT NULL,
        message             TEXT NOT NULL,
        details             TEXT NOT NULL,
        level               TEXT NOT NULL,
        level_rank          INTEGER NOT NULL,
        category            TEXT NOT NULL,
        state               TEXT NOT NULL,
        object_type         TEXT NOT NULL,
        object_name         TEXT NOT NULL,
        cluster             TEXT NOT NULL,
        namespace           TEXT NOT NULL,
        domain_name         TEXT NOT NULL,
        console_url         TEXT NOT NULL,
        created_ns          INTEGER,
        updated_ns          INTEGER,
        expires_ns          INTEGER,
        postponed_until_ns  INTEGER,
        payload             TEXT NOT NULL,
        -- The delivery-log row whose body `payload` is; that row stores no copy of it.
        payload_delivery_id INTEGER,
        -- Ids of this alert's latest delivery-log rows, oldest first and space-separated.
        -- An index on deliveries.alert_id would cost a random page write per delivery.
        delivery_ids        TEXT NOT NULL DEFAULT '',
        delivery_count      INTEGER NOT NULL DEFAULT 1,
        first_received_ms   INTEGER NOT NULL,
        last_received_ms    INTEGER NOT NULL,
        -- The user's triage. Deliveries from RealTheory never write these columns.
        read_ms             INTEGER,
        acknowledged_ms     INTEGER,
        snoozed_until_ms    INTEGER,
        archived_ms         INTEGER,
        note                TEXT NOT NULL DEFAULT ''
    );

    CREATE INDEX alerts_by_received ON alerts (last_received_ms DESC);
    CREATE INDEX alerts_by_level ON alerts (level, last_received_ms DESC);
    CREATE INDEX alerts_by_cluster ON alerts (cluster, last_received_ms DESC);
    CREATE INDEX alerts_by_namespace ON alerts (namespace, last_received_ms DESC);
    CREATE INDEX alerts_by_state ON alerts (state, last_received_ms DESC);
    CREATE INDEX alerts_by_category ON alerts (category, last_received_ms DESC);
    CREATE INDEX alerts_by_object_type ON alerts (object_type, last_received_ms DESC);
    CREATE INDEX alerts_unread ON alerts (last_received_ms DESC) WHERE read_ms IS NULL;
    CREATE INDEX alerts_acknowledged ON alerts (last_received_ms DESC)
        WHERE acknowledged_ms IS NOT NULL;
    CREATE INDEX alerts_archived ON alerts (last_received_ms DESC) WHERE archived_ms IS NOT NULL;
    CREATE INDEX alerts_snoozed ON alerts (snoozed_until_ms) WHERE snoozed_until_ms IS NOT NULL;

    -- Alerts per value of each facet field, kept by triggers so the unfiltered counts cost
    -- a read of a few rows instead of a scan of every alert. `status` counts the triage
    -- states that do not depend on the clock (snoozed does, and has its own index).
    CREATE TABLE facet_counts (
        field   TEXT NOT NULL,
        value   TEXT NOT NULL,
        count   INTEGER NOT NULL,
        PRIMARY KEY (field, value)
    ) WITHOUT ROWID;
    CREATE TRIGGER facet_counts_insert AFTER INSERT ON alerts BEGIN
        INSERT INTO facet_counts (field, value, count)
        SELECT facet.field, facet.value, 1 FROM (
            SELECT 'level' AS field, new.level AS value
            UNION ALL SELECT 'category', new.category
            UNION ALL SELECT 'cluster', new.cluster
            UNION ALL SELECT 'namespace', new.namespace
            UNION ALL SELECT 'state', new.state
            UNION ALL SELECT 'objectType', new.object_type
            UNION ALL SELECT 'status', CASE WHEN new.read_ms IS NULL THEN 'unread' ELSE 'read' END
            UNION ALL SELECT 'status', CASE WHEN new.acknowledged_ms IS NOT NULL THEN 'acknowledged' END
            UNION ALL SELECT 'status', CASE WHEN new.archived_ms IS NOT NULL THEN 'archived' END
        ) AS facet
        WHERE facet.value IS NOT NULL
        ON CONFLICT (field, value) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER facet_counts_update
    AFTER UPDATE OF level, category, cluster, namespace, state, object_type, read_ms,
        acknowledged_ms, archived_ms ON alerts BEGIN
        UPDATE facet_counts SET count = count - 1 WHERE (field, value) IN (VALUES
            ('level', old.level), ('category', old.category), ('cluster', old.cluster),
            ('namespace', old.namespace), ('state', old.state),
            ('objectType', old.object_type),
            ('status', CASE WHEN old.read_ms IS NULL THEN 'unread' ELSE 'read' END),
            ('status', CASE WHEN old.acknowledged_ms IS NOT NULL THEN 'acknowledged' END),
            ('status', CASE WHEN old.archived_ms IS NOT NULL THEN 'archived' END));
        INSERT INTO facet_counts (field, value, count)
        SELECT facet.field, facet.value, 1 FROM (
            SELECT 'level' AS field, new.level AS value
            UNION ALL SELECT 'category', new.category
            UNION ALL SELECT 'cluster', new.cluster
            UNION ALL SELECT 'namespace', new.namespace
            UNION ALL SELECT 'state', new.state
            UNION ALL SELECT 'objectType', new.object_type
            UNION ALL SELECT 'status', CASE WHEN new.read_ms IS NULL THEN 'unread' ELSE 'read' END
            UNION ALL SELECT 'status', CASE WHEN new.acknowledged_ms IS NOT NULL THEN 'acknowledged' END
            UNION ALL SELECT 'status', CASE WHEN new.archived_ms IS NOT NULL THEN 'archived' END
        ) AS facet
        WHERE facet.value IS NOT NULL
        ON CONFLICT (field, value) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER facet_counts_delete AFTER DELETE ON alerts BEGIN
        UPDATE facet_counts SET count = count - 1 WHERE (field, value) IN (VALUES
            ('level', old.level), ('category', old.category), ('cluster', old.cluster),
            ('namespace', old.namespace), ('state', old.state),
            ('objectType', old.object_type),
            ('status', CASE WHEN old.read_ms IS NULL THEN 'unread' ELSE 'read' END),
            ('status', CASE WHEN old.acknowledged_ms IS NOT NULL THEN 'acknowledged' END),
            ('status', CASE WHEN old.archived_ms IS NOT NULL THEN 'archived' END));
    END;

    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        received_ms     INTEGER NOT NULL,
        remote_addr     TEXT NOT NULL,
        via             TEXT NOT NULL,
        method          TEXT NOT NULL,
        path            TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        status          INTEGER NOT NULL,
        reason          TEXT NOT NULL DEFAULT '',
        body_size       INTEGER NOT NULL,
        body_sha256     TEXT NOT NULL,
        alert_id        TEXT,
        headers         TEXT,
        -- NULL when the body is the payload of the alert that names this row as its
        -- `payload_delivery_id`, so a stored delivery is written once.
        body            BLOB
    );
    CREATE INDEX deliveries_by_received ON deliveries (received_ms);

    -- Gaps in reception, such as time the public tunnel was down.
    CREATE TABLE outages (
        id          INTEGER PRIMARY KEY,
        started_ms  INTEGER NOT NULL,
        ended_ms    INTEGER,
        reason      TEXT NOT NULL
    );

    -- Small named values, such as the public URL RealTheory was last given.
    CREATE TABLE settings (
        key     TEXT PRIMARY KEY NOT NULL,
        value   TEXT NOT NULL
    );

    -- Full-text index of the alerts' text. It is contentless, so a row can be deleted by
    -- rowid alone, and it is filled in batches by the writer from `alerts_fts_pending`
    -- rather than in each ingest transaction: per-commit FTS segments and their merges
    -- were most of the write cost of a delivery.
    CREATE VIRTUAL TABLE alerts_fts USING fts5 (
        title, message, details, object_name, cluster, namespace,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    -- Alerts waiting to be indexed; `replace` is 1 when the index holds an old version.
    CREATE TABLE alerts_fts_pending (
        seq     INTEGER PRIMARY KEY,
        replace INTEGER NOT NULL
    );
    CREATE TRIGGER alerts_fts_insert AFTER INSERT ON alerts BEGIN
        INSERT OR IGNORE INTO alerts_fts_pending (seq, replace) VALUES (new.seq, 0);
    END;
    -- Only changes to indexed text queue a row, so triage updates stay cheap. A row still
    -- queued from its insert keeps `replace = 0`: the index has no old version of it.
    CREATE TRIGGER alerts_fts_update
    AFTER UPDATE OF title, message, details, object_name, cluster, namespace ON alerts BEGIN
        INSERT OR IGNORE INTO alerts_fts_pending (seq, replace) VALUES (new.seq, 1);
    END;
    CREATE TRIGGER alerts_fts_delete AFTER DELETE ON alerts BEGIN
        DELETE FROM alerts_fts WHERE rowid = old.seq;
        DELETE FROM alerts_fts_pending WHERE seq = old.seq;
    END;
    "#,
    ),
    // 2: the level and cluster indexes also carry every column that filters and facet
    // counts read. A scan of the alerts of one level or cluster then reads index entries
    // of about 80 bytes instead of alert rows of about 2.5 KiB, and the other conditions
    // of a filter are checked on those entries. The key (value, then newest first) is
    // unchanged, so new alerts still land on a few leaf pages per index.
    Migration::Sql(
        r#"
    DROP INDEX alerts_by_level;
    DROP INDEX alerts_by_cluster;
    CREATE INDEX alerts_by_level_facets ON alerts (
        level, last_received_ms DESC, cluster, namespace, category, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    CREATE INDEX alerts_by_cluster_facets ON alerts (
        cluster, last_received_ms DESC, level, namespace, category, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    "#,
    ),
    // 3: the same for state, category and object type, whose values each cover a large
    // share of the alerts, so their facet counts read many entries.
    Migration::Sql(
        r#"
    DROP INDEX alerts_by_state;
    DROP INDEX alerts_by_category;
    DROP INDEX alerts_by_object_type;
    CREATE INDEX alerts_by_state_facets ON alerts (
        state, last_received_ms DESC, level, cluster, namespace, category, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    CREATE INDEX alerts_by_category_facets ON alerts (
        category, last_received_ms DESC, level, cluster, namespace, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    CREATE INDEX alerts_by_object_type_facets ON alerts (
        object_type, last_received_ms DESC, level, cluster, namespace, category, state,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    "#,
    ),
    // 4: counts of alerts per pair of facet values, so that the facet counts of a filter
    // on one field are read instead of counted (see `facet_pairs`).
    Migration::Built(|transaction| {
        transaction.execute_batch(&facet_pairs::migration_sql())?;
        facet_pairs::backfill(transaction)
    }),
    // 5: the indexes of namespaces and of acknowledged and archived alerts carry the same
    // columns as those of migrations 2 and 3. A filter driven by one of them then checks
    // its other conditions on index entries instead of reading an alert row per alert.
    // The two partial indexes hold only the few alerts in those states.
    Migration::Sql(
        r#"
    DROP INDEX alerts_by_namespace;
    CREATE INDEX alerts_by_namespace_facets ON alerts (
        namespace, last_received_ms DESC, level, cluster, category, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    );
    DROP INDEX alerts_acknowledged;
    CREATE INDEX alerts_acknowledged_facets ON alerts (
        last_received_ms DESC, level, cluster, namespace, category, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    ) WHERE acknowledged_ms IS NOT NULL;
    DROP INDEX alerts_archived;
    CREATE INDEX alerts_archived_facets ON alerts (
        last_received_ms DESC, level, cluster, namespace, category, state, object_type,
        level_rank, read_ms, acknowledged_ms, archived_ms, snoozed_until_ms
    ) WHERE archived_ms IS NOT NULL;
    "#,
    ),
    // 6: a log of the alerts whose facet fields, triage or receive time changed, or that
    // were deleted, so an in-memory copy of those columns (`facet_index`) catches up by
    // reading the entries after its last one. New alerts need no entry: their `seq` is
    // above every alert the copy has seen. The log keeps its newest 16,384 entries; a
    // copy that fell further behind reads everything again.
    //
    // Also indexes of object names and alert keys. A filter on one object or key matches a
    // few alerts, which without them took a scan of every alert row.
    Migration::Sql(
        r#"
    CREATE INDEX alerts_by_object_name ON alerts (object_name, last_received_ms DESC);
    CREATE INDEX alerts_by_key ON alerts (key, last_received_ms DESC);
    CREATE TABLE alert_changes (
        id  INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL
    );
    CREATE TRIGGER alert_changes_update
    AFTER UPDATE OF level, level_rank, category, cluster, namespace, state, object_type,
        last_received_ms, read_ms, acknowledged_ms, snoozed_until_ms, archived_ms ON alerts
    BEGIN
        INSERT INTO alert_changes (seq) VALUES (new.seq);
    END;
    CREATE TRIGGER alert_changes_delete AFTER DELETE ON alerts BEGIN
        INSERT INTO alert_changes (seq) VALUES (old.seq);
    END;
    CREATE TRIGGER alert_changes_trim AFTER INSERT ON alert_changes
    WHEN new.id % 1024 = 0 BEGIN
        DELETE FROM alert_changes WHERE id <= new.id - 16384;
    END;
    "#,
    ),
];

/// Returns the schema version this build creates.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema up to date; returns the version before and after.
pub fn migrate(connection: &mut Connection) -> Result<(u32, u32), StoreError> {
    migrate_to(connection, latest_version())
}

/// Applies the migrations up to version `latest`; returns the version before and after.
fn migrate_to(connection: &mut Connection, latest: u32) -> Result<(u32, u32), StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let current: u32 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > latest_version() {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: latest_version(),
        });
    }

    if current > 0 && current < latest {
        // Rebuilding indexes takes seconds on a store of a million alerts.
        tracing::info!(
            from = current,
            to = latest,
            "upgrading the database schema; this can take a few seconds on a large store"
        );
    }
    let steps = MIGRATIONS.iter().take(latest as usize);
    for (index, migration) in steps.enumerate().skip(current as usize) {
        match migration {
            Migration::Sql(sql) => transaction.execute_batch(sql)?,
            Migration::Built(step) => step(&transaction)?,
        }
        transaction.pragma_update(None, "user_version", index as u32 + 1)?;
    }
    transaction.commit()?;
    Ok((current, latest))
}

/// Creates the database of a store at schema `version`, as an older build left it.
#[cfg(test)]
pub(crate) fn create_at_version(path: &std::path::Path, version: u32) {
    let mut connection = Connection::open(path).unwrap();
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .unwrap();
    migrate_to(&mut connection, version).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_reach_latest_once() {
        let mut connection = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut connection).unwrap(),
            (0, MIGRATIONS.len() as u32)
        );
        assert_eq!(
            migrate(&mut connection).unwrap(),
            (MIGRATIONS.len() as u32, MIGRATIONS.len() as u32)
        );
    }

    #[test]
    fn newer_database_refused() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        let error = migrate(&mut connection).unwrap_err().to_string();
        assert!(error.contains("99"), "{error}");
    }
}
