//! The user's triage of an alert: read, acknowledged, snoozed, archived, and a note.
//!
//! These columns belong to the user. Deliveries never write them, so an update from
//! RealTheory keeps them as they are.

use rusqlite::{params_from_iter, types::Value, Connection};
use serde::{Deserialize, Serialize};

use super::{now_ms, StoreError};

/// One change to the triage of one or more alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TriageAction {
    MarkRead,
    MarkUnread,
    Acknowledge,
    Unacknowledge,
    /// Hides the alert from the active inbox until `untilMs` (milliseconds since the epoch).
    #[serde(rename_all = "camelCase")]
    Snooze {
        until_ms: i64,
    },
    Unsnooze,
    Archive,
    Unarchive,
    SetNote {
        note: String,
    },
}

/// Maximum note length kept, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// Applies `action` to every alert in `ids` in one transaction; returns how many changed.
///
/// An id that matches no alert is an error, and then nothing changes.
pub fn apply(
    connection: &mut Connection,
    ids: &[String],
    action: &TriageAction,
) -> Result<usize, StoreError> {
    let now = now_ms();
    // `?1` is the new value and `?2` the alert id.
    let (assignment, value): (&str, Value) = match action {
        TriageAction::MarkRead => ("read_ms = coalesce(read_ms, ?1)", Value::Integer(now)),
        TriageAction::MarkUnread => ("read_ms = ?1", Value::Null),
        // Acknowledging an alert also marks it read.
        TriageAction::Acknowledge => (
            "acknowledged_ms = coalesce(acknowledged_ms, ?1), read_ms = coalesce(read_ms, ?1)",
            Value::Integer(now),
        ),
        TriageAction::Unacknowledge => ("acknowledged_ms = ?1", Value::Null),
        TriageAction::Snooze { until_ms } => ("snoozed_until_ms = ?1", Value::Integer(*until_ms)),
        TriageAction::Unsnooze => ("snoozed_until_ms = ?1", Value::Null),
        TriageAction::Archive => (
            "archived_ms = coalesce(archived_ms, ?1)",
            Value::Integer(now),
        ),
        TriageAction::Unarchive => ("archived_ms = ?1", Value::Null),
        TriageAction::SetNote { note } => (
            "note = ?1",
            Value::Text(note.chars().take(MAX_NOTE_CHARS).collect()),
        ),
    };
    let sql = format!("UPDATE alerts SET {assignment} WHERE id = ?2");

    let transaction = connection.transaction()?;
    let mut changed = 0;
    {
        let mut statement = transaction.prepare_cached(&sql)?;
        for id in ids {
            let updated =
                statement.execute(params_from_iter([value.clone(), Value::Text(id.clone())]))?;
            if updated == 0 {
                return Err(StoreError::NotFound(id.clone()));
            }
            changed += updated;
        }
    }
    transaction.commit()?;
    Ok(changed)
}
