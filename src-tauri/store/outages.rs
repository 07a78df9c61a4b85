//! Periods when alerts could not reach the app, and the public URL history.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{now_ms, StoreError};

const GIVEN_URL: &str = "tunnel.given_url";
const CURRENT_URL: &str = "tunnel.current_url";

/// A period without a public tunnel; alerts sent then may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outage {
    pub started_ms: i64,
    /// `None` while the outage lasts.
    pub ended_ms: Option<i64>,
    pub reason: String,
}

/// Opens an outage unless one is already open.
pub fn begin(connection: &Connection, reason: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO outages (started_ms, reason)
             SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM outages WHERE ended_ms IS NULL)",
        )?
        .execute(params![now_ms(), reason])?;
    Ok(())
}

/// Closes the open outage, if any.
pub fn end(connection: &Connection) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE outages SET ended_ms = ?1 WHERE ended_ms IS NULL")?
        .execute([now_ms()])?;
    Ok(())
}

/// Lists outages that ended after `since_ms` or are still open, newest first.
pub fn list(connection: &Connection, since_ms: i64) -> Result<Vec<Outage>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT started_ms, ended_ms, reason FROM outages
         WHERE ended_ms IS NULL OR ended_ms >= ?1 ORDER BY started_ms DESC LIMIT 100",
    )?;
    let rows = statement.query_map([since_ms], |row| {
        Ok(Outage {
            started_ms: row.get(0)?,
            ended_ms: row.get(1)?,
            reason: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn get(connection: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

fn set(connection: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([key, value])?;
    Ok(())
}

/// Returns the public URL the user last gave RealTheory.
pub fn given_url(connection: &Connection) -> Result<Option<String>, StoreError> {
    get(connection, GIVEN_URL)
}

pub fn set_given_url(connection: &Connection, url: &str) -> Result<(), StoreError> {
    set(connection, GIVEN_URL, url)
}

/// Returns the public URL of the current or last tunnel session.
pub fn current_url(connection: &Connection) -> Result<Option<String>, StoreError> {
    get(connection, CURRENT_URL)
}

pub fn set_current_url(connection: &Connection, url: &str) -> Result<(), StoreError> {
    set(connection, CURRENT_URL, url)
}
