//! Named filters, kept in the store's `settings` table under `filter.saved.<name>`.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

const KEY_PREFIX: &str = "filter.saved.";
/// Maximum length of a filter name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A filter query the user named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFilter {
    pub name: String,
    pub query: String,
}

/// Lists saved filters by name.
pub fn list(connection: &Connection) -> Result<Vec<SavedFilter>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT substr(key, length(?1) + 1), value FROM settings
         WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
    )?;
    let rows = statement.query_map([KEY_PREFIX], |row| {
        Ok(SavedFilter {
            name: row.get(0)?,
            query: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Saves `filter`, replacing one of the same name.
pub fn save(connection: &Connection, filter: &SavedFilter) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![
            format!("{KEY_PREFIX}{}", filter.name),
            filter.query
        ])?;
    Ok(())
}

/// Deletes the saved filter called `name`, if there is one.
pub fn delete(connection: &Connection, name: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached("DELETE FROM settings WHERE key = ?1")?
        .execute([format!("{KEY_PREFIX}{name}")])?;
    Ok(())
}
