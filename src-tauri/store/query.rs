//! Reading alerts: filters, pages, facet counts and the full JSON of one alert.
//!
//! Pages are newest first by `last_received_ms`, and the next page starts after a
//! [`Cursor`] rather than at an offset, so the millionth row costs what the first does.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now_ms, StoreError};
use crate::model::{format_time, safe_console_url, Level};

/// A field that conditions can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    fn build(filter: &AlertFilter, skip: Option<Field>, text: TextPlan) -> Self {
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
            clause.sql.push(
                match text {
                    TextPlan::FewMatches => {
                        "seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)"
                    }
                    // `+seq` keeps SQLite from driving the query by the matches' rowids.
                    TextPlan::ManyMatches => {
                        "+seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)"
                    }
                }
                .to_owned(),
            );
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

/// How a free-text condition is evaluated. With few matches, SQLite looks up each match
/// and sorts them; with many, it walks the alerts newest first and checks each against the
/// set of matches, stopping once the page is full. Either plan alone is slow in the other
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextPlan {
    FewMatches,
    ManyMatches,
}

/// Matches above which walking the alerts newest first beats collecting every match.
const MANY_TEXT_MATCHES: i64 = 20_000;

fn text_plan(connection: &Connection, filter: &AlertFilter) -> Result<TextPlan, StoreError> {
    let Some(query) = fts_query(&filter.text) else {
        return Ok(TextPlan::FewMatches);
    };
    let matches: i64 = connection
        .prepare_cached(
            "SELECT count(*) FROM (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?1 LIMIT ?2)",
        )?
        .query_row(params![query, MANY_TEXT_MATCHES], |row| row.get(0))?;
    Ok(if matches >= MANY_TEXT_MATCHES {
        TextPlan::ManyMatches
    } else {
        TextPlan::FewMatches
    })
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
/// Words are also split at NUL, because FTS5 reads a NUL as the end of the query and then
/// fails with "unterminated string".
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|word| !word.is_empty())
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
    list_with_plan(
        connection,
        filter,
        after,
        limit,
        text_plan(connection, filter)?,
    )
}

fn list_with_plan(
    connection: &Connection,
    filter: &AlertFilter,
    after: Option<Cursor>,
    limit: usize,
    text: TextPlan,
) -> Result<Vec<AlertSummary>, StoreError> {
    let mut clause = Clause::build(filter, None, text);
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
    let clause = Clause::build(filter, None, TextPlan::FewMatches);
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
    // Fields the filter constrains are counted without their own condition, one query
    // each; every other field comes from one pass over the alerts the whole filter matches.
    let constrained: Vec<Field> = Field::FACETS
        .into_iter()
        .filter(|field| {
            filter
                .conditions
                .iter()
                .any(|condition| condition.field == *field && !condition.values.is_empty())
        })
        .collect();
    let mut counts = FacetCounts::default();
    count_pass(
        connection,
        &Clause::build(filter, None, TextPlan::FewMatches),
        &mut counts,
        |field| !constrained.contains(&field),
    )?;
    let mut from_counters = Vec::new();
    for field in &constrained {
        let mut others = filter.clone();
        others
            .conditions
            .retain(|condition| condition.field != *field);
        if others == AlertFilter::default() {
            // Without its own condition the filter is empty, so the counters give the counts.
            from_counters.push(*field);
            continue;
        }
        let clause = Clause::build(filter, Some(*field), TextPlan::FewMatches);
        count_pass(connection, &clause, &mut counts, |other| other == *field)?;
    }

    let mut facets = counts.into_facets();
    if !from_counters.is_empty() {
        let unfiltered = unfiltered_facets(connection)?;
        for facet in &mut facets {
            if from_counters.contains(&facet.field) {
                if let Some(counted) = unfiltered.iter().find(|f| f.field == facet.field) {
                    facet.values = counted.values.clone();
                }
            }
        }
    }
    Ok(facets)
}

/// Counts per field and value, filled by [`count_pass`].
#[derive(Default)]
struct FacetCounts {
    values: std::collections::HashMap<Field, std::collections::HashMap<String, i64>>,
}

impl FacetCounts {
    fn add(&mut self, field: Field, value: &str) {
        let values = self.values.entry(field).or_default();
        match values.get_mut(value) {
            Some(count) => *count += 1,
            None => {
                values.insert(value.to_owned(), 1);
            }
        }
    }

    fn into_facets(mut self) -> Vec<Facet> {
        Field::FACETS
            .into_iter()
            .map(|field| {
                let counted = self.values.remove(&field).unwrap_or_default();
                let values = if field == Field::Status {
                    TriageStatus::ALL
                        .iter()
                        .map(|status| {
                            let count = counted.get(status.as_str()).copied().unwrap_or(0);
                            (status.as_str().to_owned(), count)
                        })
                        .collect()
                } else {
                    let mut values: Vec<(String, i64)> = counted.into_iter().collect();
                    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    values.truncate(200);
                    values
                };
                Facet { field, values }
            })
            .collect()
    }
}

/// Reads every alert `clause` matches once and counts the fields `wanted` selects.
fn count_pass(
    connection: &Connection,
    clause: &Clause,
    counts: &mut FacetCounts,
    wanted: impl Fn(Field) -> bool,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT level, category, cluster, namespace, state, object_type, read_ms IS NULL,
             acknowledged_ms IS NOT NULL, archived_ms IS NOT NULL,
             coalesce(snoozed_until_ms > ?, 0)
         FROM alerts {}",
        clause.where_sql()
    );
    let mut params = vec![Value::Integer(now_ms())];
    params.extend(clause.params.iter().cloned());
    let text_fields = [
        Field::Level,
        Field::Category,
        Field::Cluster,
        Field::Namespace,
        Field::State,
        Field::ObjectType,
    ];
    let count_status = wanted(Field::Status);
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        for (index, field) in text_fields.iter().enumerate() {
            if wanted(*field) {
                let value = row.get_ref(index)?.as_str().unwrap_or_default();
                counts.add(*field, value);
            }
        }
        if count_status {
            let flag =
                |index: usize| -> rusqlite::Result<bool> { Ok(row.get::<_, i64>(index)? != 0) };
            counts.add(Field::Status, if flag(6)? { "unread" } else { "read" });
            if flag(7)? {
                counts.add(Field::Status, "acknowledged");
            }
            if flag(8)? {
                counts.add(Field::Status, "archived");
            }
            if flag(9)? {
                counts.add(Field::Status, "snoozed");
            }
        }
    }
    Ok(())
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
    let mut clause = Clause::build(filter, None, text_plan(connection, filter)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_with_nul_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (_, connection) = crate::store::Store::open(dir.path()).unwrap();
        let filter = AlertFilter {
            text: "st@a\0\0\0\u{f}a".to_owned(),
            ..AlertFilter::default()
        };
        assert_eq!(count(&connection, &filter).unwrap(), 0);
        assert!(list(&connection, &filter, None, 10).unwrap().is_empty());
    }

    /// Creates a store with `count` alerts whose titles alternate between two words.
    fn store_with_alerts(count: i64) -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        for index in 0..count {
            let word = if index % 2 == 0 { "memory" } else { "disk" };
            connection
                .execute(
                    "INSERT INTO alerts (id, key, title, message, details, level, level_rank,
                         category, state, object_type, object_name, cluster, namespace,
                         domain_name, console_url, payload, first_received_ms, last_received_ms)
                     VALUES (?1, '', ?2, '', '', 'High', 3, '', '', '', '', 'c', 'n', '', '',
                         '{}', ?3, ?3)",
                    params![
                        format!("a{index}"),
                        format!("{word} pressure"),
                        1_000 + index
                    ],
                )
                .unwrap();
        }
        crate::store::writer::index_all_pending(&mut connection);
        connection
    }

    #[test]
    fn text_plans_return_same_page() {
        let connection = store_with_alerts(300);
        let filter = AlertFilter {
            text: "mem".to_owned(),
            ..AlertFilter::default()
        };
        let few = list_with_plan(&connection, &filter, None, 50, TextPlan::FewMatches).unwrap();
        let many = list_with_plan(&connection, &filter, None, 50, TextPlan::ManyMatches).unwrap();
        assert_eq!(few.len(), 50);
        assert_eq!(few, many);
        assert!(few.iter().all(|alert| alert.title.starts_with("memory")));
        assert_eq!(few[0].id, "a298");
    }

    #[test]
    fn filtered_facets_exclude_own_condition() {
        let connection = store_with_alerts(10);
        connection
            .execute(
                "UPDATE alerts SET level = 'Low', level_rank = 1 WHERE id IN ('a1', 'a2')",
                [],
            )
            .unwrap();
        let filter = AlertFilter {
            conditions: vec![Condition {
                field: Field::Level,
                negate: false,
                values: vec!["Low".to_owned()],
            }],
            ..AlertFilter::default()
        };
        let facets = facets(&connection, &filter).unwrap();
        let level = facets.iter().find(|f| f.field == Field::Level).unwrap();
        assert_eq!(
            level.values,
            [("High".to_owned(), 8), ("Low".to_owned(), 2)]
        );
        let cluster = facets.iter().find(|f| f.field == Field::Cluster).unwrap();
        assert_eq!(cluster.values, [("c".to_owned(), 2)]);
        let status = facets.iter().find(|f| f.field == Field::Status).unwrap();
        assert!(
            status.values.contains(&("unread".to_owned(), 2)),
            "{status:?}"
        );
    }
}
