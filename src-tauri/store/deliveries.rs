//! The delivery log: one row for every request that reached the webhook path.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::writer::{Delivery, Outcome, Retention};
use super::{now_ms, StoreError};

/// One row of the delivery log, as the CLI and the window show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    pub id: i64,
    pub received_ms: i64,
    pub remote_addr: String,
    pub via: String,
    pub method: String,
    pub path: String,
    pub outcome: String,
    pub status: u16,
    pub reason: String,
    pub body_size: i64,
    pub body_sha256: String,
    pub alert_id: Option<String>,
    /// Request headers without credentials, as a JSON object; authenticated requests only.
    pub headers: Option<serde_json::Value>,
    /// The raw body as text, when it was authenticated and is valid UTF-8.
    pub body: Option<String>,
}

/// Inserts one log row and returns its id. Without `keep_body` the body is not written,
/// because the alert's `payload` is the same bytes.
pub(super) fn insert(
    connection: &Connection,
    delivery: &Delivery,
    outcome: Outcome,
    status: u16,
    reason: &str,
    alert_id: Option<&str>,
    keep_body: bool,
) -> Result<i64, StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO deliveries (received_ms, remote_addr, via, method, path, outcome,
                 status, reason, body_size, body_sha256, alert_id, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            delivery.received_ms,
            delivery.remote_addr,
            delivery.via.as_str(),
            delivery.method,
            delivery.path,
            outcome.as_str(),
            status,
            reason,
            delivery.body_size as i64,
            delivery.body_sha256,
            alert_id,
            delivery.headers,
            delivery.body.as_deref().filter(|_| keep_body),
        ])?;
    Ok(connection.last_insert_rowid())
}

/// Removes rows older than the retention age and beyond the row limit; returns the count.
pub(super) fn prune(connection: &Connection, retention: Retention) -> Result<usize, StoreError> {
    let cutoff = now_ms() - retention.max_age.as_millis() as i64;
    let mut removed = connection
        .prepare_cached("DELETE FROM deliveries WHERE received_ms < ?1")?
        .execute([cutoff])?;
    removed += connection
        .prepare_cached(
            "DELETE FROM deliveries WHERE id <= (
                 SELECT id FROM deliveries ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        )?
        .execute([retention.max_rows as i64])?;
    Ok(removed)
}

/// Lists the newest deliveries first, optionally those of one alert only. An alert's
/// history is the ids its row keeps, so it covers its latest deliveries still retained.
pub fn list(
    connection: &Connection,
    alert_id: Option<&str>,
    limit: usize,
) -> Result<Vec<DeliveryRow>, StoreError> {
    const COLUMNS: &str = "d.id, d.received_ms, d.remote_addr, d.via, d.method, d.path,
        d.outcome, d.status, d.reason, d.body_size, d.body_sha256, d.alert_id, d.headers,
        CAST(coalesce(d.body, a.payload) AS BLOB)";
    const JOIN: &str = "LEFT JOIN alerts a ON a.id = d.alert_id AND a.payload_delivery_id = d.id";

    let (sql, ids) = match alert_id {
        None => (
            format!("SELECT {COLUMNS} FROM deliveries d {JOIN} ORDER BY d.id DESC LIMIT ?2"),
            String::from("[]"),
        ),
        Some(alert_id) => {
            let ids: Option<String> = connection
                .prepare_cached("SELECT delivery_ids FROM alerts WHERE id = ?1")?
                .query_row([alert_id], |row| row.get(0))
                .optional()?;
            let ids: Vec<&str> = ids
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            (
                format!(
                    "SELECT {COLUMNS} FROM deliveries d {JOIN}
                     WHERE d.id IN (SELECT value FROM json_each(?1)) ORDER BY d.id DESC LIMIT ?2"
                ),
                format!("[{}]", ids.join(",")),
            )
        }
    };
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![ids, limit as i64], |row| {
        let headers: Option<String> = row.get(12)?;
        let body: Option<Vec<u8>> = row.get(13)?;
        Ok(DeliveryRow {
            id: row.get(0)?,
            received_ms: row.get(1)?,
            remote_addr: row.get(2)?,
            via: row.get(3)?,
            method: row.get(4)?,
            path: row.get(5)?,
            outcome: row.get(6)?,
            status: row.get(7)?,
            reason: row.get(8)?,
            body_size: row.get(9)?,
            body_sha256: row.get(10)?,
            alert_id: row.get(11)?,
            headers: headers.and_then(|text| serde_json::from_str(&text).ok()),
            body: body.and_then(|bytes| String::from_utf8(bytes).ok()),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counts deliveries by outcome, most frequent first.
pub fn count_by_outcome(connection: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT outcome, count(*) FROM deliveries GROUP BY outcome ORDER BY count(*) DESC",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
