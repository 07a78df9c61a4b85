//! Counts of alerts per pair of facet values, such as level `High` together with cluster
//! `prod`, kept by triggers in the table `facet_pairs`.
//!
//! With them, the facet counts of a filter on one field are sums of a few counters instead
//! of a scan of every matching alert. For `cluster=prod` they give the counts of each
//! level, state and so on among the alerts of `prod`, and `cluster!=prod` subtracts those
//! from the totals in `facet_counts`. A scan costs about 0.5 µs per alert, so on a million
//! alerts a filter matching most of them took several hundred milliseconds.
//!
//! Each pair is stored once, its fields in the order of [`TEXT_FIELDS`], then the triage
//! states of [`STATUSES`]. A triage state is counted only for the alerts in it (an unread
//! alert adds its pairs with `unread`, a read one adds none), and not with other triage
//! states. A new alert adds 15 pairs of text fields and 6 per triage state it is in.

use rusqlite::{Connection, Transaction};
use rustc_hash::FxHashMap;

use super::StoreError;

/// Text facet fields: their name in `facet_counts` and `facet_pairs`, and their column.
/// They repeat the names and columns of `query::Field`, so that migration 4 creates the
/// same triggers whatever later changes to `Field`.
const TEXT_FIELDS: [(&str, &str); 6] = [
    ("level", "level"),
    ("category", "category"),
    ("cluster", "cluster"),
    ("namespace", "namespace"),
    ("state", "state"),
    ("objectType", "object_type"),
];

/// Triage states counted in pairs: the value under the field `status`, the column, and
/// the SQL test of the column that is true for alerts in that state.
const STATUSES: [(&str, &str, &str); 3] = [
    ("unread", "read_ms", "IS NULL"),
    ("acknowledged", "acknowledged_ms", "IS NOT NULL"),
    ("archived", "archived_ms", "IS NOT NULL"),
];

/// One pair: field and value, then the other field and value.
pub(super) type PairKey = (String, String, String, String);

/// Returns the SQL of the migration that adds `facet_pairs` and its triggers. The backfill
/// of existing alerts is [`backfill`].
pub(super) fn migration_sql() -> String {
    let text_columns = |row: &str| {
        let columns: Vec<String> = TEXT_FIELDS
            .iter()
            .map(|(_, column)| format!("{row}.{column}"))
            .collect();
        format!("({})", columns.join(", "))
    };
    let upsert = "INSERT INTO facet_pairs (field, value, other_field, other_value, count)";
    let on_conflict = "WHERE true ON CONFLICT DO UPDATE SET count = count + excluded.count;";

    let mut sql = String::from(
        "CREATE TABLE facet_pairs (
            field       TEXT NOT NULL,
            value       TEXT NOT NULL,
            other_field TEXT NOT NULL,
            other_value TEXT NOT NULL,
            count       INTEGER NOT NULL,
            PRIMARY KEY (field, value, other_field, other_value)
        ) WITHOUT ROWID;\n",
    );

    sql += &format!(
        "CREATE TRIGGER facet_pairs_insert AFTER INSERT ON alerts BEGIN
            {upsert} {} {on_conflict}
        END;\n",
        pairs_select("new", 1)
    );
    sql += &format!(
        "CREATE TRIGGER facet_pairs_delete AFTER DELETE ON alerts BEGIN
            {upsert} {} {on_conflict}
        END;\n",
        pairs_select("old", -1)
    );

    // A change of any text field moves every pair of the alert. The triggers per triage
    // state below then do nothing, so no pair is moved twice.
    let fields: Vec<&str> = TEXT_FIELDS.iter().map(|(_, column)| *column).collect();
    sql += &format!(
        "CREATE TRIGGER facet_pairs_update AFTER UPDATE OF {} ON alerts
        WHEN {} IS NOT {} BEGIN
            {upsert} {} {on_conflict}
            {upsert} {} {on_conflict}
        END;\n",
        fields.join(", "),
        text_columns("old"),
        text_columns("new"),
        pairs_select("old", -1),
        pairs_select("new", 1)
    );

    // A change of a triage state moves the alert's pairs with that state only.
    for (status, column, test) in STATUSES {
        sql += &format!(
            "CREATE TRIGGER facet_pairs_{status} AFTER UPDATE OF {column} ON alerts
            WHEN {} IS {} AND (old.{column} {test}) IS NOT (new.{column} {test}) BEGIN
                {upsert} SELECT * FROM ({}) {on_conflict}
            END;\n",
            text_columns("old"),
            text_columns("new"),
            status_pairs(
                "new",
                status,
                &format!("CASE WHEN new.{column} {test} THEN 1 ELSE -1 END")
            ),
        );
    }
    sql
}

/// Builds a `SELECT` of the pairs of each text field of `row` (`new` or `old`) with the
/// triage state `status`, each counted `count` (an SQL expression).
fn status_pairs(row: &str, status: &str, count: &str) -> String {
    let rows: Vec<String> = TEXT_FIELDS
        .iter()
        .map(|(field, column)| {
            format!("('{field}', {row}.{column}, 'status', '{status}', {count})")
        })
        .collect();
    format!("SELECT * FROM (VALUES {})", rows.join(", "))
}

/// Builds a `SELECT` of every pair of `row`, each counted `count`. The rows are written
/// out as `VALUES` because a join of the fields with themselves took 2.7 times as long.
fn pairs_select(row: &str, count: i64) -> String {
    let mut rows = Vec::new();
    for (index, (field, column)) in TEXT_FIELDS.iter().enumerate() {
        for (other_field, other_column) in &TEXT_FIELDS[index + 1..] {
            rows.push(format!(
                "('{field}', {row}.{column}, '{other_field}', {row}.{other_column}, {count})"
            ));
        }
    }
    let mut select = format!("SELECT * FROM (VALUES {})", rows.join(", "));
    for (status, column, test) in STATUSES {
        select += &format!(
            " UNION ALL {} WHERE {row}.{column} {test}",
            status_pairs(row, status, &count.to_string())
        );
    }
    format!("SELECT * FROM ({select})")
}

/// Counts every pair of the alerts in one pass over them.
pub(super) fn recount(connection: &Connection) -> Result<FxHashMap<PairKey, i64>, StoreError> {
    let columns: Vec<&str> = TEXT_FIELDS.iter().map(|(_, column)| *column).collect();
    let tests: Vec<String> = STATUSES
        .iter()
        .map(|(_, column, test)| format!("{column} {test}"))
        .collect();
    let sql = format!(
        "SELECT {}, {} FROM alerts",
        columns.join(", "),
        tests.join(", ")
    );

    // Values are numbered as they first appear, so each alert's pairs are counted under
    // two numbers instead of four strings. The triage states are numbers 0 to 2.
    let mut names: Vec<(&str, String)> = STATUSES
        .iter()
        .map(|(status, _, _)| ("status", (*status).to_owned()))
        .collect();
    let mut numbers: [FxHashMap<String, u32>; TEXT_FIELDS.len()] = Default::default();
    let mut counts: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    let mut statement = connection.prepare(&sql)?;
    let mut rows = statement.query([])?;
    let mut alert = Vec::with_capacity(TEXT_FIELDS.len() + STATUSES.len());
    while let Some(row) = rows.next()? {
        alert.clear();
        for (index, (field, _)) in TEXT_FIELDS.iter().enumerate() {
            let value = row
                .get_ref(index)?
                .as_str()
                .map_err(rusqlite::Error::from)?;
            let number = match numbers[index].get(value) {
                Some(number) => *number,
                None => {
                    let number = names.len() as u32;
                    names.push((field, value.to_owned()));
                    numbers[index].insert(value.to_owned(), number);
                    number
                }
            };
            alert.push(number);
        }
        for status in 0..STATUSES.len() {
            if row.get::<_, bool>(TEXT_FIELDS.len() + status)? {
                alert.push(status as u32);
            }
        }
        for (index, first) in alert.iter().enumerate().take(TEXT_FIELDS.len()) {
            for second in &alert[index + 1..] {
                *counts.entry((*first, *second)).or_default() += 1;
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|((first, second), count)| {
            let (field, value) = &names[first as usize];
            let (other_field, other_value) = &names[second as usize];
            let key = (
                (*field).to_owned(),
                value.clone(),
                (*other_field).to_owned(),
                other_value.clone(),
            );
            (key, count)
        })
        .collect())
}

/// Fills `facet_pairs` from the alerts already stored.
pub(super) fn backfill(transaction: &Transaction) -> Result<(), StoreError> {
    let counts = recount(transaction)?;
    let mut insert = transaction.prepare(
        "INSERT INTO facet_pairs (field, value, other_field, other_value, count)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for ((field, value, other_field, other_value), count) in counts {
        insert.execute(rusqlite::params![
            field,
            value,
            other_field,
            other_value,
            count
        ])?;
    }
    Ok(())
}

/// Returns the pairs with a positive count that have one side in `field` with one of
/// `values`, each as (other field, other value, count).
pub(super) fn pairs_of(
    connection: &Connection,
    field: &str,
    values: &[String],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    // The first half seeks by the primary key. The second half reads the whole table,
    // which contains 3,543 rows for the million alerts of the query benchmark.
    // NOTE: a store with thousands of namespaces has about 30 rows per namespace here.
    // The time of that scan was not measured on such a store.
    let mut statement = connection.prepare_cached(
        "SELECT other_field, other_value, count FROM facet_pairs
         WHERE field = ?1 AND value IN (SELECT value FROM json_each(?2)) AND count > 0
         UNION ALL
         SELECT field, value, count FROM facet_pairs
         WHERE other_field = ?1 AND other_value IN (SELECT value FROM json_each(?2))
             AND count > 0",
    )?;
    let values = serde_json::to_string(values).unwrap_or_default();
    let pairs = statement
        .query_map(rusqlite::params![field, values], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(pairs)
}
