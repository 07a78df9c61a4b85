//! Reading alerts: filters, pages, facet counts and the full JSON of one alert.
//!
//! Pages are newest first by `last_received_ms`, and the next page starts after a
//! [`Cursor`] rather than at an offset, so the millionth row costs what the first does.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now_ms, StoreError};
use crate::model::{format_time, safe_console_url, Level};

/// A field that conditions can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    Level,
    Category,
    Cluster,
    Namespace,
    State,
    ObjectType,
    ObjectName,
    Key,
    /// The user's triage: `unread`, `read`, `acknowledged`, `snoozed`, `archived`.
    Status,
}

impl Field {
    /// Fields that have facet counts, in display order.
    pub const FACETS: [Field; 7] = [
        Field::Level,
        Field::Category,
        Field::Cluster,
        Field::Namespace,
        Field::State,
        Field::ObjectType,
        Field::Status,
    ];

    fn column(self) -> &'static str {
        match self {
            Self::Level => "level",
            Self::Category => "category",
            Self::Cluster => "cluster",
            Self::Namespace => "namespace",
            Self::State => "state",
            Self::ObjectType => "object_type",
            Self::ObjectName => "object_name",
            Self::Key => "key",
            Self::Status => "status",
        }
    }
}

/// The user's triage states that [`Field::Status`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TriageStatus {
    Unread,
    Read,
    Acknowledged,
    Snoozed,
    Archived,
}

impl TriageStatus {
    pub const ALL: [TriageStatus; 5] = [
        Self::Unread,
        Self::Read,
        Self::Acknowledged,
        Self::Snoozed,
        Self::Archived,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "unread" | "new" => Some(Self::Unread),
            "read" | "seen" => Some(Self::Read),
            "acknowledged" | "ack" | "acked" => Some(Self::Acknowledged),
            "snoozed" => Some(Self::Snoozed),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unread => "unread",
            Self::Read => "read",
            Self::Acknowledged => "acknowledged",
            Self::Snoozed => "snoozed",
            Self::Archived => "archived",
        }
    }

    /// Returns the SQL predicate, in which `?` is the current time in milliseconds.
    fn predicate(self) -> &'static str {
        match self {
            Self::Unread => "read_ms IS NULL",
            Self::Read => "read_ms IS NOT NULL",
            Self::Acknowledged => "acknowledged_ms IS NOT NULL",
            Self::Snoozed => "snoozed_until_ms > ?",
            Self::Archived => "archived_ms IS NOT NULL",
        }
    }
}

/// `field = any of values`, or with `negate`, `field = none of values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: Field,
    #[serde(default)]
    pub negate: bool,
    pub values: Vec<String>,
}

/// Position after the last row of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub last_received_ms: i64,
    pub seq: i64,
}

/// A filter on the alert list. Every part must hold, and an empty filter lists everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AlertFilter {
    pub conditions: Vec<Condition>,
    /// Lowest level rank (see [`Level::rank`]) to include.
    pub min_level: Option<Level>,
    /// Free text, matched by prefix against title, message, details and object names.
    pub text: String,
    /// Only alerts last received at or after this time, in milliseconds.
    pub since_ms: Option<i64>,
    /// Only alerts last received before this time, in milliseconds.
    pub until_ms: Option<i64>,
}

/// The columns the inbox list shows, without the raw payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSummary {
    pub seq: i64,
    pub id: String,
    pub title: String,
    pub level: String,
    pub category: String,
    pub state: String,
    pub object_type: String,
    pub object_name: String,
    pub cluster: String,
    pub namespace: String,
    pub console_url: Option<String>,
    pub delivery_count: i64,
    pub first_received_ms: i64,
    pub last_received_ms: i64,
    pub read: bool,
    pub acknowledged: bool,
    pub snoozed_until_ms: Option<i64>,
    pub archived: bool,
    pub note: String,
}

const SUMMARY_COLUMNS: &str = "seq, id, title, level, category, state, object_type, object_name,
    cluster, namespace, console_url, delivery_count, first_received_ms, last_received_ms,
    read_ms, acknowledged_ms, snoozed_until_ms, archived_ms, note";

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<AlertSummary> {
    let console_url: String = row.get(10)?;
    Ok(AlertSummary {
        seq: row.get(0)?,
        id: row.get(1)?,
        title: row.get(2)?,
        level: row.get(3)?,
        category: row.get(4)?,
        state: row.get(5)?,
        object_type: row.get(6)?,
        object_name: row.get(7)?,
        cluster: row.get(8)?,
        namespace: row.get(9)?,
        console_url: safe_console_url(&console_url).map(str::to_owned),
        delivery_count: row.get(11)?,
        first_received_ms: row.get(12)?,
        last_received_ms: row.get(13)?,
        read: row.get::<_, Option<i64>>(14)?.is_some(),
        acknowledged: row.get::<_, Option<i64>>(15)?.is_some(),
        snoozed_until_ms: row.get(16)?,
        archived: row.get::<_, Option<i64>>(17)?.is_some(),
        note: row.get(18)?,
    })
}

/// A WHERE clause and its parameters.
struct Clause {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Clause {
    fn build(filter: &AlertFilter, skip: Option<Field>) -> Self {
        let mut clause = Clause {
            sql: Vec::new(),
            params: Vec::new(),
        };
        for condition in &filter.conditions {
            if Some(condition.field) == skip || condition.values.is_empty() {
                continue;
            }
            clause.push_condition(condition);
        }
        if let Some(level) = filter.min_level {
            clause.sql.push("level_rank >= ?".to_owned());
            clause.params.push(Value::Integer(level as i64 + 1));
        }
        if let Some(query) = fts_query(&filter.text) {
            clause
                .sql
                .push("seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)".to_owned());
            clause.params.push(Value::Text(query));
        }
        if let Some(since) = filter.since_ms {
            clause.sql.push("last_received_ms >= ?".to_owned());
            clause.params.push(Value::Integer(since));
        }
        if let Some(until) = filter.until_ms {
            clause.sql.push("last_received_ms < ?".to_owned());
            clause.params.push(Value::Integer(until));
        }
        clause
    }

    fn push_condition(&mut self, condition: &Condition) {
        let mut alternatives = Vec::new();
        if condition.field == Field::Status {
            for value in &condition.values {
                // An unknown status matches nothing rather than everything.
                let Some(status) = TriageStatus::parse(value) else {
                    alternatives.push("0".to_owned());
                    continue;
                };
                if status == TriageStatus::Snoozed {
                    self.params.push(Value::Integer(now_ms()));
                }
                alternatives.push(status.predicate().to_owned());
            }
        } else {
            let column = condition.field.column();
            for value in &condition.values {
                let value = match condition.field {
                    Field::Level => canonical_level(value),
                    _ => value.clone(),
                };
                alternatives.push(format!("{column} = ?"));
                self.params.push(Value::Text(value));
            }
        }
        let any = format!("({})", alternatives.join(" OR "));
        self.sql.push(if condition.negate {
            format!("NOT {any}")
        } else {
            any
        });
    }

    fn where_sql(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// Spells a level as RealTheory does, so `high` finds `High`.
fn canonical_level(value: &str) -> String {
    match Level::parse(value) {
        Some(Level::Low) => "Low".to_owned(),
        Some(Level::Medium) => "Medium".to_owned(),
        Some(Level::High) => "High".to_owned(),
        Some(Level::Critical) => "Critical".to_owned(),
        None => value.to_owned(),
    }
}

/// Turns free text into an FTS5 query: each word a quoted prefix term, all required.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Lists one page of alerts matching `filter`, newest first, starting after `after`.
pub fn list(
    connection: &Connection,
    filter: &AlertFilter,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<AlertSummary>, StoreError> {
    let mut clause = Clause::build(filter, None);
    if let Some(cursor) = after {
        clause
            .sql
            .push("(last_received_ms, seq) < (?, ?)".to_owned());
        clause.params.push(Value::Integer(cursor.last_received_ms));
        clause.params.push(Value::Integer(cursor.seq));
    }
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM alerts {} ORDER BY last_received_ms DESC, seq DESC LIMIT ?",
        clause.where_sql()
    );
    clause.params.push(Value::Integer(limit as i64));
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(clause.params), summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counts alerts matching `filter`.
pub fn count(connection: &Connection, filter: &AlertFilter) -> Result<i64, StoreError> {
    let clause = Clause::build(filter, None);
    let sql = format!("SELECT count(*) FROM alerts {}", clause.where_sql());
    let count = connection
        .prepare_cached(&sql)?
        .query_row(params_from_iter(clause.params), |row| row.get(0))?;
    Ok(count)
}

/// Number of alerts per value of one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facet {
    pub field: Field,
    pub values: Vec<(String, i64)>,
}

/// Counts alerts per value of each facet field. Each field's counts apply every other
/// condition of `filter` but its own, so choosing one value still shows the others.
pub fn facets(connection: &Connection, filter: &AlertFilter) -> Result<Vec<Facet>, StoreError> {
    if *filter == AlertFilter::default() {
        return unfiltered_facets(connection);
    }
    let mut facets = Vec::with_capacity(Field::FACETS.len());
    for field in Field::FACETS {
        let mut clause = Clause::build(filter, Some(field));
        let values = if field == Field::Status {
            let mut values = Vec::new();
            for status in TriageStatus::ALL {
                let mut sql = clause.sql.clone();
                let mut params = clause.params.clone();
                if status == TriageStatus::Snoozed {
                    params.push(Value::Integer(now_ms()));
                }
                sql.push(status.predicate().to_owned());
                let query = format!("SELECT count(*) FROM alerts WHERE {}", sql.join(" AND "));
                let count: i64 = connection
                    .prepare_cached(&query)?
                    .query_row(params_from_iter(params), |row| row.get(0))?;
                values.push((status.as_str().to_owned(), count));
            }
            values
        } else {
            let column = field.column();
            let sql = format!(
                "SELECT {column}, count(*) FROM alerts {} GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT 200",
                clause.where_sql()
            );
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(
                params_from_iter(std::mem::take(&mut clause.params)),
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            rows.collect::<Result<_, _>>()?
        };
        facets.push(Facet { field, values });
    }
    Ok(facets)
}

/// Reads the counts of every alert from `facet_counts`, which triggers keep current.
fn unfiltered_facets(connection: &Connection) -> Result<Vec<Facet>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT field, value, count FROM facet_counts WHERE count > 0
         ORDER BY field, count DESC, value",
    )?;
    let rows: Vec<(String, String, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let snoozed: i64 = connection
        .prepare_cached("SELECT count(*) FROM alerts WHERE snoozed_until_ms > ?1")?
        .query_row([now_ms()], |row| row.get(0))?;

    let mut facets = Vec::with_capacity(Field::FACETS.len());
    for field in Field::FACETS {
        let name = serde_json::to_value(field)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut values: Vec<(String, i64)> = rows
            .iter()
            .filter(|(row_field, _, _)| *row_field == name)
            .map(|(_, value, count)| (value.clone(), *count))
            .take(200)
            .collect();
        if field == Field::Status {
            values = TriageStatus::ALL
                .iter()
                .map(|status| {
                    let count = match status {
                        TriageStatus::Snoozed => snoozed,
                        other => values
                            .iter()
                            .find(|(value, _)| value == other.as_str())
                            .map_or(0, |(_, count)| *count),
                    };
                    (status.as_str().to_owned(), count)
                })
                .collect();
        }
        facets.push(Facet { field, values });
    }
    Ok(facets)
}

/// Returns one alert as JSON: the SystemAlert fields of its latest payload under their own
/// names, then `consoleUrl` (only if http or https), delivery counts and the triage.
pub fn alert_json(
    connection: &Connection,
    id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM alerts WHERE id = ?1");
    let row = connection
        .prepare_cached(&sql)?
        .query_row([id], |row| {
            Ok((summary_from_row(row)?, row.get::<_, String>(19)?))
        })
        .optional()?;
    Ok(row.map(|(summary, payload)| to_json(&summary, &payload)))
}

/// Lists matching alerts as JSON objects, as [`alert_json`] builds them.
pub fn list_json(
    connection: &Connection,
    filter: &AlertFilter,
    limit: usize,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut clause = Clause::build(filter, None);
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, payload FROM alerts {} ORDER BY last_received_ms DESC, seq DESC LIMIT ?",
        clause.where_sql()
    );
    clause.params.push(Value::Integer(limit as i64));
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(clause.params), |row| {
        Ok((summary_from_row(row)?, row.get::<_, String>(19)?))
    })?;
    let mut alerts = Vec::new();
    for row in rows {
        let (summary, payload) = row?;
        alerts.push(to_json(&summary, &payload));
    }
    Ok(alerts)
}

fn to_json(summary: &AlertSummary, payload: &str) -> serde_json::Value {
    // The payload was valid JSON when stored; an unreadable one still yields the columns.
    let mut object = lenient_json(payload)
        .and_then(|mut value| value.get_mut("content").map(serde_json::Value::take))
        .and_then(|content| match content {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    object.insert("id".to_owned(), summary.id.clone().into());
    object.insert("consoleUrl".to_owned(), summary.console_url.clone().into());
    object.insert("deliveryCount".to_owned(), summary.delivery_count.into());
    object.insert(
        "firstReceived".to_owned(),
        format_ms(summary.first_received_ms).into(),
    );
    object.insert(
        "lastReceived".to_owned(),
        format_ms(summary.last_received_ms).into(),
    );
    object.insert("read".to_owned(), summary.read.into());
    object.insert("acknowledged".to_owned(), summary.acknowledged.into());
    object.insert(
        "snoozedUntil".to_owned(),
        summary.snoozed_until_ms.map(format_ms).into(),
    );
    object.insert("archived".to_owned(), summary.archived.into());
    object.insert("note".to_owned(), summary.note.clone().into());
    serde_json::Value::Object(object)
}

/// Parses stored JSON into a value. A number beyond the range of `f64` (such as `1e400`),
/// which `serde_json::Value` cannot hold, becomes a string of its source text, so the
/// members around it are still returned. `None` only for text that is not JSON.
fn lenient_json(text: &str) -> Option<serde_json::Value> {
    use serde_json::value::RawValue;
    if let Ok(value) = serde_json::from_str(text) {
        return Some(value);
    }
    if let Ok(members) =
        serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(text)
    {
        let object = members
            .into_iter()
            .map(|(key, raw)| (key, lenient_json(raw.get()).unwrap_or_default()))
            .collect();
        return Some(serde_json::Value::Object(object));
    }
    if let Ok(items) = serde_json::from_str::<Vec<Box<RawValue>>>(text) {
        let items = items
            .iter()
            .map(|raw| lenient_json(raw.get()).unwrap_or_default())
            .collect();
        return Some(serde_json::Value::Array(items));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .ok()
        .map(|_| serde_json::Value::String(text.trim().to_owned()))
}

fn format_ms(ms: i64) -> String {
    format_time(ms.saturating_mul(1_000_000))
}
