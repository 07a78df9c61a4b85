//! Reading alerts: filters, pages, facet counts and the full JSON of one alert.
//!
//! Pages are newest first by `last_received_ms`, and the next page starts after a
//! [`Cursor`] rather than at an offset, so the millionth row costs what the first does.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use rustc_hash::FxHashMap;
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

    /// Returns the field's name in `facet_counts`, or `None` if it has no counters.
    fn counter_name(self) -> Option<&'static str> {
        match self {
            Self::Level => Some("level"),
            Self::Category => Some("category"),
            Self::Cluster => Some("cluster"),
            Self::Namespace => Some("namespace"),
            Self::State => Some("state"),
            Self::ObjectType => Some("objectType"),
            Self::Status => Some("status"),
            Self::ObjectName | Self::Key => None,
        }
    }

    /// Returns whether the field's index carries every column that filters and facet
    /// counts read (migrations 2, 3 and 5), so rows found through it are checked on index
    /// entries.
    fn has_covering_index(self) -> bool {
        matches!(
            self,
            Self::Level
                | Self::Cluster
                | Self::Namespace
                | Self::State
                | Self::Category
                | Self::ObjectType
        )
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
    /// Builds the clause for `filter` without the conditions on `skip`. `ordered` is true
    /// when the query reads its rows newest first and stops at a page, as a list does.
    fn build(
        connection: &Connection,
        filter: &AlertFilter,
        skip: Option<Field>,
        text: &TextPlan,
        ordered: bool,
    ) -> Result<Self, StoreError> {
        let mut clause = Clause {
            sql: Vec::new(),
            params: Vec::new(),
        };
        let conditions: Vec<&Condition> = filter
            .conditions
            .iter()
            .filter(|condition| Some(condition.field) != skip && !condition.values.is_empty())
            .collect();
        let driver = driving_condition(connection, &conditions, ordered)?;
        for (index, condition) in conditions.iter().enumerate() {
            clause.push_condition(condition, driver.is_none_or(|driver| driver == index));
        }
        if let Some(level) = filter.min_level {
            clause.sql.push("level_rank >= ?".to_owned());
            clause.params.push(Value::Integer(level as i64 + 1));
        }
        if let Some(query) = fts_query(&filter.text) {
            match text {
                TextPlan::FewMatches => {
                    clause.sql.push(
                        "seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)".to_owned(),
                    );
                    clause.params.push(Value::Text(query));
                }
                TextPlan::Listed(rowids) => {
                    clause
                        .sql
                        .push("seq IN (SELECT value FROM json_each(?))".to_owned());
                    clause.params.push(Value::Text(rowids.clone()));
                }
                // `+seq` keeps SQLite from driving the query by the matches' rowids.
                TextPlan::ManyMatches => {
                    clause.sql.push(
                        "+seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)"
                            .to_owned(),
                    );
                    clause.params.push(Value::Text(query));
                }
            }
        }
        if let Some(since) = filter.since_ms {
            clause.sql.push("last_received_ms >= ?".to_owned());
            clause.params.push(Value::Integer(since));
        }
        if let Some(until) = filter.until_ms {
            clause.sql.push("last_received_ms < ?".to_owned());
            clause.params.push(Value::Integer(until));
        }
        Ok(clause)
    }

    /// Adds `condition`. Unless `indexed`, its column is written as `+column`, which keeps
    /// SQLite from using an index for it.
    fn push_condition(&mut self, condition: &Condition, indexed: bool) {
        let plus = if indexed { "" } else { "+" };
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
                alternatives.push(format!("{plus}{}", status.predicate()));
            }
        } else {
            let column = condition.field.column();
            for value in &condition.values {
                let value = match condition.field {
                    Field::Level => canonical_level(value),
                    _ => value.clone(),
                };
                alternatives.push(format!("{plus}{column} = ?"));
                self.params.push(Value::Text(value));
            }
        }
        let any = format!("({})", alternatives.join(" OR "));
        self.sql.push(if condition.negate {
            // A snooze time of NULL makes `snoozed_until_ms > ?` NULL, and its negation too.
            // An alert that was never snoozed is not snoozed.
            format!("NOT coalesce({any}, 0)")
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

/// How much more a row found through an index without the filter columns costs than one
/// found through a covering index. The first reads the alert row (about 2.5 KiB, a page of
/// its own), the second only the index entry. On the 1,000,000-alert benchmark store
/// (docs/benchmarks.md), checking three more conditions took 18 ms for the 16,700 alerts
/// of one namespace and 3.4 ms for 50,000 entries of the covering level index.
const ROW_READ_COST: i64 = 10;

/// Returns whether the index that `condition` can use carries every column that filters
/// and facet counts read. Of the triage states, only acknowledged and archived alerts have
/// such an index (migration 5).
fn is_covered(condition: &Condition) -> bool {
    if condition.field != Field::Status {
        return condition.field.has_covering_index();
    }
    condition.values.iter().all(|value| {
        matches!(
            TriageStatus::parse(value),
            Some(TriageStatus::Acknowledged | TriageStatus::Archived)
        )
    })
}

/// Chooses the one condition whose index drives the query, the one with the lowest cost:
/// its matching alerts (from `facet_counts`, or for object names and keys through their
/// index), times [`ROW_READ_COST`] unless its index is covering. SQLite chooses by the statistics of `ANALYZE`, which the app never runs, and
/// on the analyzed benchmark store it drove a four-condition filter by the namespace index
/// and read 16,700 alert rows where the covering level index needed none.
///
/// When `ordered`, only a condition with one value can drive: its index returns the alerts
/// newest first, so the query stops at a full page, while the alerts of several values
/// must all be read and sorted. Returns `None`, leaving the choice to SQLite, when fewer
/// than two conditions can use an index or none of them can drive.
fn driving_condition(
    connection: &Connection,
    conditions: &[&Condition],
    ordered: bool,
) -> Result<Option<usize>, StoreError> {
    let indexable: Vec<usize> = (0..conditions.len())
        .filter(|&index| is_indexable(conditions[index]))
        .collect();
    if indexable.len() < 2 {
        return Ok(None);
    }
    let candidates: Vec<usize> = indexable
        .into_iter()
        .filter(|&index| !ordered || conditions[index].values.len() == 1)
        .collect();
    if candidates.len() < 2 {
        return Ok(candidates.first().copied());
    }
    let mut lookup = connection
        .prepare_cached("SELECT count FROM facet_counts WHERE field = ?1 AND value = ?2")?;
    let mut best: Option<(i64, usize)> = None;
    for index in candidates {
        let condition = conditions[index];
        let matches = match condition.field.counter_name() {
            Some(field_name) => {
                let mut matches = 0i64;
                for value in &condition.values {
                    let value = match condition.field {
                        Field::Level => canonical_level(value),
                        Field::Status => TriageStatus::parse(value)
                            .map_or_else(String::new, |status| status.as_str().to_owned()),
                        _ => value.clone(),
                    };
                    let count: Option<i64> = lookup
                        .query_row(params![field_name, value], |row| row.get(0))
                        .optional()?;
                    matches += count.unwrap_or(0);
                }
                matches
            }
            None => matches_without_counter(connection, condition)?,
        };
        let cost = if is_covered(condition) {
            matches
        } else {
            matches.saturating_mul(ROW_READ_COST)
        };
        if best.is_none_or(|(best_cost, _)| cost < best_cost) {
            best = Some((cost, index));
        }
    }
    Ok(best.map(|(_, index)| index))
}

/// The maximum number of alerts [`matches_without_counter`] counts per value.
const UNCOUNTED_LIMIT: i64 = 10_000;

/// Counts the alerts of each value of `condition`, a field without counters (object name or
/// key), through its index, up to [`UNCOUNTED_LIMIT`] per value.
fn matches_without_counter(
    connection: &Connection,
    condition: &Condition,
) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM alerts WHERE {} = ?1 LIMIT ?2)",
        condition.field.column()
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let mut matches = 0;
    for value in &condition.values {
        matches +=
            statement.query_row(params![value, UNCOUNTED_LIMIT], |row| row.get::<_, i64>(0))?;
    }
    Ok(matches)
}

/// Returns whether an index can find the alerts `condition` matches: a field with its own
/// index, or a triage status with a partial index, and not negated.
fn is_indexable(condition: &Condition) -> bool {
    if condition.negate {
        return false;
    }
    match condition.field {
        Field::Level
        | Field::Category
        | Field::Cluster
        | Field::Namespace
        | Field::State
        | Field::ObjectType
        | Field::ObjectName
        | Field::Key => true,
        Field::Status => condition.values.iter().all(|value| {
            matches!(
                TriageStatus::parse(value),
                Some(TriageStatus::Unread | TriageStatus::Acknowledged | TriageStatus::Archived)
            )
        }),
    }
}

/// How a free-text condition is evaluated. With few matches, SQLite looks up each match
/// and sorts them; with many, it walks the alerts newest first and checks each against the
/// set of matches, stopping once the page is full. Either plan alone is slow in the other
/// case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TextPlan {
    /// SQLite reads the matches from the full-text index itself.
    FewMatches,
    /// The matches' rowids, read from the full-text index beforehand, as a JSON array.
    /// Reading them once serves both the choice of plan and the query, where
    /// [`TextPlan::FewMatches`] would evaluate the full-text query a second time.
    Listed(String),
    ManyMatches,
}

/// Matches above which walking the alerts newest first beats collecting every match.
const MANY_TEXT_MATCHES: usize = 20_000;

fn text_plan(connection: &Connection, filter: &AlertFilter) -> Result<TextPlan, StoreError> {
    let Some(query) = fts_query(&filter.text) else {
        return Ok(TextPlan::FewMatches);
    };
    let mut statement = connection
        .prepare_cached("SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?1 LIMIT ?2")?;
    let rowids: Vec<i64> = statement
        .query_map(params![query, MANY_TEXT_MATCHES as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if rowids.len() >= MANY_TEXT_MATCHES {
        return Ok(TextPlan::ManyMatches);
    }
    let json = serde_json::to_string(&rowids).expect("a list of integers serializes");
    Ok(TextPlan::Listed(json))
}

/// Spells a level as RealTheory does, so `high` finds `High`.
pub(super) fn canonical_level(value: &str) -> String {
    Level::parse(value).map_or_else(|| value.to_owned(), |level| level.name().to_owned())
}

/// Turns free text into an FTS5 query: each word a quoted prefix term, all required.
/// Words are also split at NUL, because FTS5 reads a NUL as the end of the query and then
/// fails with "unterminated string".
pub(super) fn fts_query(text: &str) -> Option<String> {
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
    let mut clause = Clause::build(connection, filter, None, &text, true)?;
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
    let clause = Clause::build(connection, filter, None, &TextPlan::FewMatches, false)?;
    let sql = format!("SELECT count(*) FROM alerts {}", clause.where_sql());
    let count = connection
        .prepare_cached(&sql)?
        .query_row(params_from_iter(clause.params), |row| row.get(0))?;
    Ok(count)
}

/// Counts the unread alerts that are not archived, for the tray. It subtracts the unread
/// archived alerts, which are few, from the unread counter, and so reads no alert rows.
pub fn unread_in_inbox(connection: &Connection) -> Result<i64, StoreError> {
    let unread: i64 = connection
        .prepare_cached(
            "SELECT coalesce(sum(count), 0) FROM facet_counts
             WHERE field = 'status' AND value = 'unread'",
        )?
        .query_row([], |row| row.get(0))?;
    let archived: i64 = connection
        .prepare_cached(
            "SELECT count(*) FROM alerts INDEXED BY alerts_archived_facets
             WHERE archived_ms IS NOT NULL AND read_ms IS NULL",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(unread - archived)
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
    if is_unfiltered(filter) {
        return unfiltered_facets(connection);
    }
    // A reader may open a store that the app has not yet migrated to schema 4.
    let has_pairs = connection
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'facet_pairs'",
        )?
        .exists([])?;
    let selection_of = |filter: &AlertFilter| {
        if has_pairs {
            Selection::of(connection, filter)
        } else {
            Ok(None)
        }
    };
    if let Some((selection, own)) = selection_of(filter)? {
        return selection.facets(connection, filter, own);
    }
    // Fields the filter constrains are counted without their own condition, one query
    // each; every other field comes from one pass over the alerts the whole filter matches.
    let constrained: Vec<Field> = Field::FACETS
        .into_iter()
        .filter(|field| constrains(filter, *field))
        .collect();
    let mut counts = FacetCounts::default();
    let unconstrained = |field| !constrained.contains(&field);
    // Counts of single conditions, which the passes below may read more than once.
    let mut counted_before = Vec::new();
    if !(has_pairs
        && count_by_exclusion(
            connection,
            filter,
            &mut counts,
            unconstrained,
            &mut counted_before,
        )?)
    {
        count_pass(
            connection,
            &Clause::build(connection, filter, None, &TextPlan::FewMatches, false)?,
            &mut counts,
            unconstrained,
        )?;
    }
    let mut from_counters = Vec::new();
    let mut from_pairs = Vec::new();
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
        if let Some((selection, own)) = selection_of(&others)? {
            // Without its own condition the filter is one condition: the pair counters give
            // this field's counts.
            let counted = selection.facets(connection, &others, own)?;
            if let Some(facet) = counted.into_iter().find(|facet| facet.field == *field) {
                from_pairs.push(facet);
            }
            continue;
        }
        let only_this = |other| other == *field;
        if has_pairs
            && count_by_exclusion(
                connection,
                &others,
                &mut counts,
                only_this,
                &mut counted_before,
            )?
        {
            continue;
        }
        let clause = Clause::build(
            connection,
            filter,
            Some(*field),
            &TextPlan::FewMatches,
            false,
        )?;
        count_pass(connection, &clause, &mut counts, only_this)?;
    }

    let mut facets = counts.into_facets();
    for counted in from_pairs {
        if let Some(facet) = facets.iter_mut().find(|facet| facet.field == counted.field) {
            *facet = counted;
        }
    }
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

/// Returns whether `filter` matches every alert: no part, or text of spaces only.
fn is_unfiltered(filter: &AlertFilter) -> bool {
    filter.text.trim().is_empty()
        && AlertFilter {
            text: String::new(),
            ..filter.clone()
        } == AlertFilter::default()
}

/// Returns whether the facet counts of `filter` are read from counters rather than
/// counted: no filter, one condition, or only a lowest level. Reading them took under
/// 0.5 ms on the million-alert benchmark store.
pub fn reads_counters(filter: &AlertFilter) -> bool {
    match CounterPart::of(filter) {
        _ if is_unfiltered(filter) => true,
        Some(CounterPart::Condition(condition)) => Selection::of_condition(condition).is_some(),
        Some(CounterPart::Lowest(_)) => true,
        None => false,
    }
}

/// The one part of a filter whose facet counts the counters of `facet_pairs` can give.
enum CounterPart<'a> {
    Condition(&'a Condition),
    Lowest(Level),
}

impl<'a> CounterPart<'a> {
    /// Returns the part when `filter` is one condition with values, or only a lowest
    /// level, without text or receive times.
    fn of(filter: &'a AlertFilter) -> Option<Self> {
        if !filter.text.trim().is_empty() || filter.since_ms.is_some() || filter.until_ms.is_some()
        {
            return None;
        }
        let mut conditions = filter
            .conditions
            .iter()
            .filter(|condition| !condition.values.is_empty());
        match (conditions.next(), conditions.next(), filter.min_level) {
            (Some(condition), None, None) => Some(Self::Condition(condition)),
            (None, _, Some(lowest)) => Some(Self::Lowest(lowest)),
            _ => None,
        }
    }
}

/// Returns whether `filter` has a condition with values on `field`.
fn constrains(filter: &AlertFilter, field: Field) -> bool {
    filter
        .conditions
        .iter()
        .any(|condition| condition.field == field && !condition.values.is_empty())
}

/// Facet counts of a filter, and how many alerts it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacetSummary {
    pub total: i64,
    pub facets: Vec<Facet>,
}

/// Counts alerts per facet value as [`facets`] does, and the alerts `filter` matches.
///
/// The total is the sum of the counts of a field that the filter leaves free, which costs
/// nothing more than the facets. Only a filter on every such field is counted again.
pub fn facet_summary(
    connection: &Connection,
    filter: &AlertFilter,
) -> Result<FacetSummary, StoreError> {
    let facets = facets(connection, filter)?;
    let total = match total_of(filter, &facets) {
        Some(total) => total,
        None => count(connection, filter)?,
    };
    Ok(FacetSummary { total, facets })
}

/// Sums the facet of a field that `filter` does not constrain: its read and unread alerts,
/// or the values of a field with one value per alert when none was cut off. Every alert
/// the filter matches is in exactly one of those values. `None` when no field qualifies.
fn total_of(filter: &AlertFilter, facets: &[Facet]) -> Option<i64> {
    let read_or_unread = [TriageStatus::Unread.as_str(), TriageStatus::Read.as_str()];
    facets
        .iter()
        .filter(|facet| !constrains(filter, facet.field))
        .find_map(|facet| {
            if facet.field == Field::Status {
                let sum = facet
                    .values
                    .iter()
                    .filter(|(value, _)| read_or_unread.contains(&value.as_str()))
                    .map(|(_, count)| count)
                    .sum();
                Some(sum)
            } else if facet.values.len() < FACET_VALUES {
                Some(facet.values.iter().map(|(_, count)| count).sum())
            } else {
                None
            }
        })
}

/// The status value of a [`Selection`] of the snoozed alerts. Snoozing ends with the
/// clock, so no trigger can keep counters for it: those alerts are counted instead.
const SNOOZED: &str = "snoozed";

/// A set of alerts whose facet counts are sums of pair counters (see
/// [`facet_pairs`](super::facet_pairs)): those with any of `values` in `field`, or with
/// `complement`, all others.
struct Selection {
    /// The field's name in `facet_counts`, where triage states are under `status`.
    field: &'static str,
    values: Vec<String>,
    complement: bool,
}

impl Selection {
    /// Returns the selection `filter` makes, and the facet field whose own condition it
    /// is, or `None` unless the filter is one condition or only a lowest level.
    fn of(
        connection: &Connection,
        filter: &AlertFilter,
    ) -> Result<Option<(Self, Option<Field>)>, StoreError> {
        match CounterPart::of(filter) {
            None => Ok(None),
            Some(CounterPart::Condition(condition)) => {
                Ok(Self::of_condition(condition).map(|s| (s, Some(condition.field))))
            }
            Some(CounterPart::Lowest(lowest)) => {
                // The levels at or above `lowest`, as `level_rank` ranks what is stored.
                let mut statement = connection.prepare_cached(
                    "SELECT value FROM facet_counts WHERE field = 'level' AND count > 0",
                )?;
                let values = statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .filter(|value| {
                        value
                            .as_ref()
                            .map_or(true, |value| Level::rank(value) > lowest as i64)
                    })
                    .collect::<Result<_, _>>()?;
                let selection = Self {
                    field: "level",
                    values,
                    complement: false,
                };
                Ok(Some((selection, None)))
            }
        }
    }

    /// Returns the selection of every alert: no level named, and its complement taken.
    fn all() -> Self {
        Self {
            field: "level",
            values: Vec::new(),
            complement: true,
        }
    }

    fn of_condition(condition: &Condition) -> Option<Self> {
        if condition.field == Field::Status {
            let [value] = condition.values.as_slice() else {
                return None;
            };
            let (status, complement) = match TriageStatus::parse(value)? {
                TriageStatus::Unread => ("unread", false),
                TriageStatus::Read => ("unread", true),
                TriageStatus::Acknowledged => ("acknowledged", false),
                TriageStatus::Archived => ("archived", false),
                // `!is:snoozed`: the snoozed alerts are counted and subtracted.
                TriageStatus::Snoozed if condition.negate => (SNOOZED, true),
                // Few alerts are snoozed, so counting them costs little.
                TriageStatus::Snoozed => return None,
            };
            if status == SNOOZED {
                return Some(Self {
                    field: "status",
                    values: vec![SNOOZED.to_owned()],
                    complement: true,
                });
            }
            return Some(Self {
                field: "status",
                values: vec![status.to_owned()],
                complement: complement != condition.negate,
            });
        }
        let field = condition.field.counter_name()?;
        let mut values: Vec<String> = condition
            .values
            .iter()
            .map(|value| match condition.field {
                Field::Level => canonical_level(value),
                _ => value.clone(),
            })
            .collect();
        // Each value's alerts are added once, however often it is named.
        values.sort_unstable();
        values.dedup();
        Some(Self {
            field,
            values,
            complement: condition.negate,
        })
    }

    /// Counts the selected alerts per value of every facet field from the counters, except
    /// snoozed. The triage states are left out when the selection is one of them.
    fn count(&self, connection: &Connection) -> Result<ValueCounts, StoreError> {
        let mut statement = connection
            .prepare_cached("SELECT field, value, count FROM facet_counts WHERE count > 0")?;
        let totals: FxHashMap<(String, String), i64> = statement
            .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let total = |field: &str, value: &str| {
            totals
                .get(&(field.to_owned(), value.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let all: i64 = totals
            .iter()
            .filter(|((field, _), _)| field == "level")
            .map(|(_, count)| count)
            .sum();
        let named: i64 = self
            .values
            .iter()
            .map(|value| total(self.field, value))
            .sum();
        let selected = if self.complement { all - named } else { named };

        // Alerts of the named values, per value of every other field.
        let mut together: FxHashMap<(String, String), i64> = FxHashMap::default();
        if self.values == [SNOOZED] {
            let snoozed = AlertFilter {
                conditions: vec![Condition {
                    field: Field::Status,
                    negate: false,
                    values: vec![SNOOZED.to_owned()],
                }],
                ..AlertFilter::default()
            };
            let clause = Clause::build(connection, &snoozed, None, &TextPlan::FewMatches, false)?;
            let mut counts = FacetCounts::default();
            count_pass(connection, &clause, &mut counts, |field| {
                field != Field::Status
            })?;
            together = counts.by_name();
        } else {
            for (other_field, other_value, count) in
                super::facet_pairs::pairs_of(connection, self.field, &self.values)?
            {
                *together.entry((other_field, other_value)).or_default() += count;
            }
        }
        let count_of = |field: &str, value: &str| {
            let named = if field == self.field {
                if self.values.iter().any(|v| v == value) {
                    total(field, value)
                } else {
                    0
                }
            } else {
                together
                    .get(&(field.to_owned(), value.to_owned()))
                    .copied()
                    .unwrap_or(0)
            };
            if self.complement {
                total(field, value) - named
            } else {
                named
            }
        };

        let mut values: FxHashMap<(String, String), i64> = totals
            .keys()
            .filter(|(field, _)| field != "status")
            .map(|(field, value)| ((field.clone(), value.clone()), count_of(field, value)))
            .collect();
        if self.field != "status" {
            let unread = count_of("status", "unread");
            for (status, count) in [
                (TriageStatus::Unread, unread),
                (TriageStatus::Read, selected - unread),
                (
                    TriageStatus::Acknowledged,
                    count_of("status", "acknowledged"),
                ),
                (TriageStatus::Archived, count_of("status", "archived")),
            ] {
                values.insert(("status".to_owned(), status.as_str().to_owned()), count);
            }
        }
        Ok(ValueCounts { selected, values })
    }

    /// Counts the selected alerts per value of each facet field from the counters. The
    /// field `own` gets the counts of every alert, because its own condition is left out.
    fn facets(
        &self,
        connection: &Connection,
        filter: &AlertFilter,
        own: Option<Field>,
    ) -> Result<Vec<Facet>, StoreError> {
        let counted = self.count(connection)?;
        let unfiltered = if own.is_some() {
            unfiltered_facets(connection)?
        } else {
            Vec::new()
        };
        let mut facets = Vec::with_capacity(Field::FACETS.len());
        for field in Field::FACETS {
            if Some(field) == own {
                if let Some(facet) = unfiltered.iter().find(|facet| facet.field == field) {
                    facets.push(facet.clone());
                }
                continue;
            }
            let values = if field == Field::Status {
                TriageStatus::ALL
                    .iter()
                    .map(|status| {
                        let count = match status {
                            TriageStatus::Snoozed => snoozed_count(connection, filter)?,
                            other => counted.get("status", other.as_str()),
                        };
                        Ok((status.as_str().to_owned(), count))
                    })
                    .collect::<Result<_, StoreError>>()?
            } else {
                counted.listed(field)
            };
            facets.push(Facet { field, values });
        }
        Ok(facets)
    }
}

/// Counts of alerts keyed by a field's name in `facet_counts` and a value.
type CountsByName = FxHashMap<(String, String), i64>;

/// Returns the count of `value` in `field`, or 0 if it has none.
fn count_in(counts: &CountsByName, field: &str, value: &str) -> i64 {
    counts
        .get(&(field.to_owned(), value.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// Counts of a selection's alerts per facet value, before they are sorted and cut to a
/// list.
#[derive(Clone)]
struct ValueCounts {
    /// The number of alerts counted.
    selected: i64,
    values: CountsByName,
}

impl ValueCounts {
    fn get(&self, field: &str, value: &str) -> i64 {
        count_in(&self.values, field, value)
    }

    /// Returns the positive counts of `field`, most first, at most [`FACET_VALUES`].
    fn listed(&self, field: Field) -> Vec<(String, i64)> {
        let name = field.counter_name().unwrap_or_default();
        let mut values: Vec<(String, i64)> = self
            .values
            .iter()
            .filter(|((counted, _), count)| counted == name && **count > 0)
            .map(|((_, value), count)| (value.clone(), *count))
            .collect();
        sort_facet_values(&mut values);
        values
    }
}

/// Sorts facet values by count, most first, then by value, and keeps the first
/// [`FACET_VALUES`].
pub(super) fn sort_facet_values(values: &mut Vec<(String, i64)>) {
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(FACET_VALUES);
}

/// A part of a filter that can be negated: a condition, or a bound of the receive time.
#[derive(Clone, Copy)]
enum Part<'a> {
    Condition(&'a Condition),
    Since(i64),
    Until(i64),
}

/// Builds the filter of `parts`, each negated where its flag is true.
fn filter_of(parts: &[(Part, bool)]) -> AlertFilter {
    let mut filter = AlertFilter::default();
    for (part, negated) in parts {
        match (part, negated) {
            (Part::Condition(condition), negated) => filter.conditions.push(Condition {
                negate: condition.negate != *negated,
                ..(*condition).clone()
            }),
            (Part::Since(time), false) | (Part::Until(time), true) => {
                filter.since_ms = Some(filter.since_ms.map_or(*time, |since| since.max(*time)));
            }
            (Part::Until(time), false) | (Part::Since(time), true) => {
                filter.until_ms = Some(filter.until_ms.map_or(*time, |until| until.min(*time)));
            }
        }
    }
    filter
}

/// Counts the fields `wanted` selects over the alerts of `filter`, whose parts (conditions
/// and receive times) together keep more than half the alerts of a first part, or of all
/// alerts. The counts are then those of the first part, or the totals, from the counters,
/// minus passes over the alerts the other parts exclude: for each later part, the alerts
/// that every part before it keeps and it excludes. Together those passes return fewer
/// alerts than a pass over the alerts `filter` matches. Returns `false`, counting nothing,
/// when no first part makes that so, or `filter` has free text or a lowest level.
fn count_by_exclusion(
    connection: &Connection,
    filter: &AlertFilter,
    counts: &mut FacetCounts,
    wanted: impl Fn(Field) -> bool,
    counted_before: &mut Vec<(Option<Condition>, ValueCounts)>,
) -> Result<bool, StoreError> {
    if !filter.text.trim().is_empty() || filter.min_level.is_some() {
        return Ok(false);
    }
    let mut parts: Vec<Part> = filter
        .conditions
        .iter()
        .filter(|condition| !condition.values.is_empty())
        .map(Part::Condition)
        .collect();
    parts.extend(filter.since_ms.map(Part::Since));
    parts.extend(filter.until_ms.map(Part::Until));
    if parts.is_empty() {
        return Ok(false);
    }
    let mut selections = Vec::with_capacity(parts.len());
    for part in &parts {
        let selection = match part {
            // `is:snoozed` and several triage states in one condition have no counters.
            Part::Condition(condition) => match Selection::of_condition(condition) {
                Some(selection) => Some(selection),
                // Object names and keys have no counters either. A negated name or key
                // excludes the few alerts of those values, so the estimate below takes the
                // share it keeps as 1.
                None if condition.negate
                    && matches!(condition.field, Field::ObjectName | Field::Key) =>
                {
                    None
                }
                None => return Ok(false),
            },
            Part::Since(_) | Part::Until(_) => None,
        };
        selections.push(selection);
    }
    // The share of the alerts a time bound keeps, as if receive times were spread evenly.
    let (oldest, newest): (Option<i64>, Option<i64>) =
        if filter.since_ms.is_some() || filter.until_ms.is_some() {
            connection
                // Each in its own query, so that each reads one end of the receive time index.
                .prepare_cached(
                    "SELECT (SELECT min(last_received_ms) FROM alerts),
                     (SELECT max(last_received_ms) FROM alerts)",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?
        } else {
            (None, None)
        };
    let time_share = |part: &Part| -> f64 {
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            return 1.0;
        };
        // In floating point, because a bound may lie anywhere in the range of i64.
        let span = newest as f64 - oldest as f64 + 1.0;
        let share = match part {
            Part::Since(time) => (newest as f64 - *time as f64 + 1.0) / span,
            Part::Until(time) => (*time as f64 - oldest as f64) / span,
            Part::Condition(_) => 1.0,
        };
        share.clamp(0.0, 1.0)
    };

    // The first part is the one whose alerts the others exclude least of, or all alerts.
    // The share each condition keeps is exact from the pairs. The shares are multiplied as
    // if the parts were independent, which only guides this choice.
    let all = Selection::all();
    let mut best: Option<(f64, Option<usize>, ValueCounts)> = None;
    for first in std::iter::once(None).chain((0..parts.len()).map(Some)) {
        let (selection, key) = match first {
            None => (&all, None),
            Some(index) => match (&selections[index], parts[index]) {
                (Some(selection), Part::Condition(condition)) if selection.values != [SNOOZED] => {
                    (selection, Some(condition.clone()))
                }
                _ => continue,
            },
        };
        let counted = match counted_before.iter().find(|(k, _)| *k == key) {
            Some((_, counted)) => counted.clone(),
            None => {
                let counted = selection.count(connection)?;
                counted_before.push((key, counted.clone()));
                counted
            }
        };
        if counted.selected == 0 {
            continue;
        }
        let mut matched_estimate = counted.selected as f64;
        for (other, part) in parts.iter().enumerate() {
            if Some(other) == first {
                continue;
            }
            let Some(other_selection) = &selections[other] else {
                matched_estimate *= time_share(part);
                continue;
            };
            let known = other_selection.values != [SNOOZED]
                && !(selection.field == "status" && other_selection.field == "status");
            if !known {
                continue;
            }
            let named: i64 = other_selection
                .values
                .iter()
                .map(|value| counted.get(other_selection.field, value))
                .sum();
            let matched = if other_selection.complement {
                counted.selected - named
            } else {
                named
            };
            matched_estimate *= matched as f64 / counted.selected as f64;
        }
        let excluded = counted.selected as f64 - matched_estimate;
        if excluded < matched_estimate && best.as_ref().is_none_or(|(least, ..)| excluded < *least)
        {
            best = Some((excluded, first, counted));
        }
    }
    let Some((_, first, counted)) = best else {
        return Ok(false);
    };

    // One pass per later part, over the alerts that every part before it keeps and it
    // excludes. Each pass may be driven by the index of any condition it keeps.
    let mut before: Vec<(Part, bool)> = first
        .map(|index| (parts[index], false))
        .into_iter()
        .collect();
    let mut excluded = FacetCounts::default();
    for (index, part) in parts.iter().enumerate() {
        if Some(index) == first {
            continue;
        }
        let mut outside = before.clone();
        outside.push((*part, true));
        let clause = Clause::build(
            connection,
            &filter_of(&outside),
            None,
            &TextPlan::FewMatches,
            false,
        )?;
        count_pass(connection, &clause, &mut excluded, &wanted)?;
        before.push((*part, false));
    }

    let excluded = excluded.by_name();

    for (slot, field) in Field::FACETS.into_iter().take(TEXT_FACETS).enumerate() {
        if !wanted(field) {
            continue;
        }
        let name = field.counter_name().unwrap_or_default();
        for ((counted_field, value), count) in &counted.values {
            let count = count - count_in(&excluded, counted_field, value);
            if counted_field == name && count > 0 {
                counts.text[slot].insert(value.as_bytes().to_vec(), count);
            }
        }
    }
    if wanted(Field::Status) {
        for status in TriageStatus::ALL {
            counts.status[status as usize] = match status {
                TriageStatus::Snoozed => snoozed_count(connection, filter)?,
                other => {
                    counted.get("status", other.as_str())
                        - count_in(&excluded, "status", other.as_str())
                }
            };
        }
    }
    Ok(true)
}

/// Counts the alerts `filter` matches that are snoozed now, through the index of snoozed
/// alerts, which are few.
fn snoozed_count(connection: &Connection, filter: &AlertFilter) -> Result<i64, StoreError> {
    let clause = Clause::build(connection, filter, None, &TextPlan::FewMatches, false)?;
    let mut sql = "SELECT count(*) FROM alerts INDEXED BY alerts_snoozed
         WHERE snoozed_until_ms > ?"
        .to_owned();
    for condition in &clause.sql {
        sql += " AND ";
        sql += condition;
    }
    let mut params = vec![Value::Integer(now_ms())];
    params.extend(clause.params.iter().cloned());
    let count = connection
        .prepare_cached(&sql)?
        .query_row(params_from_iter(params), |row| row.get(0))?;
    Ok(count)
}

/// The maximum number of values a facet lists.
const FACET_VALUES: usize = 200;

/// The columns of [`Field::FACETS`] that hold text, in that order, which is also the
/// order of the first columns [`count_pass`] selects.
pub(super) const TEXT_FACETS: usize = 6;

/// Counts per field and value, filled by [`count_pass`]. Text values are kept as bytes,
/// which spares a UTF-8 check per alert and value. The columns hold UTF-8 text, which
/// [`FacetCounts::into_facets`] converts to `String` once per distinct value.
#[derive(Default)]
struct FacetCounts {
    /// Per text field, in the order of [`Field::FACETS`].
    text: [FxHashMap<Vec<u8>, i64>; TEXT_FACETS],
    /// Per triage status, in the order of [`TriageStatus::ALL`].
    status: [i64; TriageStatus::ALL.len()],
}

impl FacetCounts {
    fn add_text(&mut self, slot: usize, value: &[u8]) {
        let values = &mut self.text[slot];
        match values.get_mut(value) {
            Some(count) => *count += 1,
            None => {
                values.insert(value.to_owned(), 1);
            }
        }
    }

    fn add_status(&mut self, status: TriageStatus) {
        self.status[status as usize] += 1;
    }

    /// Returns the counts keyed by field name and value.
    fn by_name(self) -> CountsByName {
        let mut values = FxHashMap::default();
        for (field, counted) in Field::FACETS.into_iter().zip(self.text) {
            let name = field.counter_name().unwrap_or_default();
            for (value, count) in counted {
                let value = String::from_utf8_lossy(&value).into_owned();
                values.insert((name.to_owned(), value), count);
            }
        }
        for status in TriageStatus::ALL {
            let count = self.status[status as usize];
            values.insert(("status".to_owned(), status.as_str().to_owned()), count);
        }
        values
    }

    fn into_facets(self) -> Vec<Facet> {
        let mut text = self.text.into_iter();
        Field::FACETS
            .into_iter()
            .map(|field| {
                let values = if field == Field::Status {
                    TriageStatus::ALL
                        .iter()
                        .map(|status| (status.as_str().to_owned(), self.status[*status as usize]))
                        .collect()
                } else {
                    let counted = text.next().unwrap_or_default();
                    let mut values: Vec<(String, i64)> = counted
                        .into_iter()
                        .map(|(value, count)| (String::from_utf8_lossy(&value).into_owned(), count))
                        .collect();
                    sort_facet_values(&mut values);
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
    let text_slots: Vec<usize> = (0..TEXT_FACETS)
        .filter(|&slot| wanted(Field::FACETS[slot]))
        .collect();
    let count_status = wanted(Field::Status);
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        for &slot in &text_slots {
            let value = row.get_ref(slot)?.as_bytes().unwrap_or_default();
            counts.add_text(slot, value);
        }
        if count_status {
            let flag =
                |index: usize| -> rusqlite::Result<bool> { Ok(row.get::<_, i64>(index)? != 0) };
            counts.add_status(if flag(6)? {
                TriageStatus::Unread
            } else {
                TriageStatus::Read
            });
            if flag(7)? {
                counts.add_status(TriageStatus::Acknowledged);
            }
            if flag(8)? {
                counts.add_status(TriageStatus::Archived);
            }
            if flag(9)? {
                counts.add_status(TriageStatus::Snoozed);
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
            .take(FACET_VALUES)
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
    let text = text_plan(connection, filter)?;
    let mut clause = Clause::build(connection, filter, None, &text, true)?;
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
pub(crate) mod tests {
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
        let planned = text_plan(&connection, &filter).unwrap();
        assert!(matches!(planned, TextPlan::Listed(_)), "{planned:?}");
        let listed = list_with_plan(&connection, &filter, None, 50, planned).unwrap();
        assert_eq!(few.len(), 50);
        assert_eq!(few, many);
        assert_eq!(few, listed);
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

    /// The columns a filter tests, read back for checking results in Rust.
    #[derive(Debug, Clone)]
    struct Stored {
        seq: i64,
        object_name: String,
        key: String,
        level: String,
        category: String,
        cluster: String,
        namespace: String,
        state: String,
        object_type: String,
        last_received_ms: i64,
        read: bool,
        acknowledged: bool,
        archived: bool,
        snoozed: bool,
    }

    impl Stored {
        fn text(&self, field: Field) -> &str {
            match field {
                Field::Level => &self.level,
                Field::Category => &self.category,
                Field::Cluster => &self.cluster,
                Field::Namespace => &self.namespace,
                Field::State => &self.state,
                Field::ObjectType => &self.object_type,
                Field::ObjectName => &self.object_name,
                Field::Key => &self.key,
                Field::Status => panic!("invalid text field: status"),
            }
        }

        fn has_status(&self, status: TriageStatus) -> bool {
            match status {
                TriageStatus::Unread => !self.read,
                TriageStatus::Read => self.read,
                TriageStatus::Acknowledged => self.acknowledged,
                TriageStatus::Snoozed => self.snoozed,
                TriageStatus::Archived => self.archived,
            }
        }

        fn meets(&self, condition: &Condition) -> bool {
            let any = condition.values.iter().any(|value| match condition.field {
                Field::Status => TriageStatus::parse(value).is_some_and(|s| self.has_status(s)),
                Field::Level => self.level == canonical_level(value),
                field => self.text(field) == value,
            });
            any != condition.negate
        }

        /// Returns whether the alert matches `filter` with the conditions on `skip` left out.
        fn matches(&self, filter: &AlertFilter, skip: Option<Field>) -> bool {
            filter
                .conditions
                .iter()
                .filter(|c| Some(c.field) != skip && !c.values.is_empty())
                .all(|c| self.meets(c))
                && filter
                    .min_level
                    .is_none_or(|level| Level::rank(&self.level) > level as i64)
                && filter
                    .since_ms
                    .is_none_or(|since| self.last_received_ms >= since)
                && filter
                    .until_ms
                    .is_none_or(|until| self.last_received_ms < until)
        }
    }

    /// Inserts `count` alerts whose facet fields vary independently, a fifth of them read
    /// and some acknowledged, archived or snoozed, and indexes their text. Receive times
    /// repeat, so pages also depend on the `seq` tie-break.
    pub(crate) fn fill_varied(connection: &mut Connection, count: usize) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let now = now_ms();
        for index in 0..count {
            let level = ["Low", "Medium", "High", "Critical"][rng.random_range(0..4)];
            let word = ["memory", "disk", "certificate"][rng.random_range(0..3)];
            let received = 1_000 + rng.random_range(0..400i64);
            let triage = rng.random_range(0..20);
            let snoozed_until = match triage {
                10 => Some(now + 3_600_000),
                11 => Some(now - 3_600_000),
                _ => None,
            };
            connection
                .execute(
                    "INSERT INTO alerts (id, key, title, message, details, level, level_rank,
                         category, state, object_type, object_name, cluster, namespace,
                         domain_name, console_url, payload, first_received_ms,
                         last_received_ms, read_ms, acknowledged_ms, archived_ms,
                         snoozed_until_ms)
                     VALUES (?1, ?15, ?2, '', '', ?3, ?4, ?5, ?6, ?7, ?16, ?8, ?9, '', '', '{}',
                         ?10, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        format!("v{index}"),
                        format!("{word} pressure"),
                        level,
                        Level::rank(level),
                        ["Health", "Cost"][rng.random_range(0..2)],
                        ["New", "Active", "Resolved"][rng.random_range(0..3)],
                        ["Pod", "Node"][rng.random_range(0..2)],
                        format!("cluster-{}", rng.random_range(0..3)),
                        format!("ns-{}", rng.random_range(0..5)),
                        received,
                        (triage < 4).then_some(received + 1),
                        (triage < 2).then_some(received + 2),
                        (triage == 0).then_some(received + 3),
                        snoozed_until,
                        format!("key-{}", index % 101),
                        format!("obj-{}", index % 37),
                    ],
                )
                .unwrap();
        }
        crate::store::writer::index_all_pending(connection);
    }

    fn stored_alerts(connection: &Connection) -> Vec<Stored> {
        let now = now_ms();
        let mut statement = connection
            .prepare(
                "SELECT seq, level, category, cluster, namespace, state, object_type,
                     last_received_ms, read_ms IS NOT NULL, acknowledged_ms IS NOT NULL,
                     archived_ms IS NOT NULL, coalesce(snoozed_until_ms > ?1, 0), object_name,
                     key
                 FROM alerts",
            )
            .unwrap();
        statement
            .query_map([now], |row| {
                Ok(Stored {
                    seq: row.get(0)?,
                    object_name: row.get(12)?,
                    key: row.get(13)?,
                    level: row.get(1)?,
                    category: row.get(2)?,
                    cluster: row.get(3)?,
                    namespace: row.get(4)?,
                    state: row.get(5)?,
                    object_type: row.get(6)?,
                    last_received_ms: row.get(7)?,
                    read: row.get(8)?,
                    acknowledged: row.get(9)?,
                    archived: row.get(10)?,
                    snoozed: row.get(11)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Returns the seqs of every alert `filter` matches, newest first, computed in Rust.
    fn expected_seqs(alerts: &[Stored], filter: &AlertFilter) -> Vec<i64> {
        let mut matching: Vec<&Stored> =
            alerts.iter().filter(|a| a.matches(filter, None)).collect();
        matching.sort_by_key(|alert| std::cmp::Reverse((alert.last_received_ms, alert.seq)));
        matching.iter().map(|alert| alert.seq).collect()
    }

    /// Returns the facet counts of `filter`, computed in Rust as [`facets`] defines them.
    fn expected_facets(alerts: &[Stored], filter: &AlertFilter) -> Vec<Facet> {
        Field::FACETS
            .into_iter()
            .map(|field| {
                let others: Vec<&Stored> = alerts
                    .iter()
                    .filter(|a| a.matches(filter, Some(field)))
                    .collect();
                let values = if field == Field::Status {
                    TriageStatus::ALL
                        .iter()
                        .map(|status| {
                            let count = others.iter().filter(|a| a.has_status(*status)).count();
                            (status.as_str().to_owned(), count as i64)
                        })
                        .collect()
                } else {
                    let mut counted = std::collections::BTreeMap::<String, i64>::new();
                    for alert in &others {
                        *counted.entry(alert.text(field).to_owned()).or_default() += 1;
                    }
                    let mut values: Vec<(String, i64)> = counted.into_iter().collect();
                    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    values
                };
                Facet { field, values }
            })
            .collect()
    }

    pub(crate) fn condition(field: Field, negate: bool, values: &[&str]) -> Condition {
        Condition {
            field,
            negate,
            values: values.iter().map(|value| value.to_string()).collect(),
        }
    }

    /// Filters of one condition, whose facet counts come from pair counters, and filters
    /// of several conditions, where the driving index and exclusion are chosen. They
    /// include negated snoozing, which compares with a time that may be NULL, and receive
    /// times.
    pub(crate) fn combined_filters() -> Vec<AlertFilter> {
        use Field::*;
        let filters = [
            vec![condition(Level, false, &["Low"])],
            vec![condition(Level, false, &["high", "High", "Critical"])],
            vec![condition(Level, true, &["Medium", "High"])],
            vec![condition(Level, false, &["No-such-level"])],
            vec![condition(Category, true, &["Cost"])],
            vec![condition(Cluster, false, &["cluster-1", "cluster-2"])],
            vec![condition(Namespace, true, &["ns-0"])],
            vec![condition(State, false, &["Active"])],
            vec![condition(ObjectType, false, &["Node"])],
            vec![condition(Status, false, &["unread"])],
            vec![condition(Status, false, &["read"])],
            vec![condition(Status, true, &["unread"])],
            vec![condition(Status, true, &["read"])],
            vec![condition(Status, false, &["acknowledged"])],
            vec![condition(Status, true, &["archived"])],
            vec![condition(Status, false, &["snoozed"])],
            vec![condition(Status, true, &["snoozed"])],
            vec![condition(Status, false, &["read", "archived"])],
            vec![
                condition(Level, false, &["Critical"]),
                condition(Cluster, false, &["cluster-1"]),
                condition(Namespace, false, &["ns-2"]),
                condition(Status, false, &["unread"]),
            ],
            vec![
                condition(Level, false, &["high"]),
                condition(Cluster, false, &["cluster-0"]),
            ],
            vec![
                condition(Level, false, &["Low", "Critical"]),
                condition(Namespace, false, &["ns-1"]),
                condition(State, false, &["Active"]),
            ],
            vec![
                condition(Cluster, true, &["cluster-2"]),
                condition(Level, false, &["High"]),
                condition(Status, false, &["acknowledged"]),
            ],
            vec![
                condition(Status, false, &["archived"]),
                condition(Category, false, &["Cost"]),
                condition(ObjectType, false, &["Node"]),
            ],
            // Object names and keys have indexes but no counters.
            vec![condition(ObjectName, false, &["obj-3"])],
            vec![
                condition(ObjectName, false, &["obj-3", "obj-5"]),
                condition(Level, false, &["Low"]),
            ],
            vec![condition(ObjectName, true, &["obj-3"])],
            vec![
                condition(ObjectName, true, &["obj-3", "obj-4"]),
                condition(Level, false, &["High"]),
                condition(Status, false, &["unread"]),
            ],
            vec![
                condition(Key, false, &["key-7"]),
                condition(Status, false, &["unread"]),
            ],
            vec![
                condition(Key, true, &["key-7"]),
                condition(Cluster, false, &["cluster-1"]),
            ],
            vec![
                condition(Namespace, false, &["ns-3"]),
                condition(Status, false, &["unread", "acknowledged"]),
                condition(Cluster, false, &["cluster-0", "cluster-2"]),
            ],
            vec![
                condition(Level, false, &["No-such-level"]),
                condition(Cluster, false, &["cluster-0"]),
            ],
            vec![
                condition(Status, false, &["snoozed"]),
                condition(Level, false, &["Low"]),
                condition(Namespace, true, &["ns-0"]),
            ],
            vec![
                condition(Cluster, false, &["cluster-1"]),
                condition(Namespace, false, &["ns-0"]),
                condition(Status, false, &["read"]),
            ],
            vec![
                condition(Status, true, &["snoozed"]),
                condition(Level, false, &["High"]),
            ],
            vec![
                condition(Level, false, &["Low"]),
                condition(Status, false, &["unread"]),
            ],
            vec![
                condition(Status, true, &["archived"]),
                condition(Cluster, false, &["cluster-0", "cluster-1"]),
            ],
            vec![
                condition(Category, true, &["Cost"]),
                condition(State, false, &["Active"]),
            ],
            vec![
                condition(Namespace, true, &["ns-0"]),
                condition(Level, true, &["Low"]),
            ],
            vec![
                condition(Level, true, &["Low"]),
                condition(Level, true, &["Medium"]),
            ],
            vec![
                condition(Level, true, &["Critical"]),
                condition(Status, false, &["unread"]),
                condition(Status, true, &["archived"]),
            ],
            vec![
                condition(Category, true, &["Cost"]),
                condition(State, true, &["New"]),
                condition(Status, true, &["archived"]),
                condition(Status, true, &["snoozed"]),
            ],
            vec![
                condition(Level, false, &["Low", "Medium", "High"]),
                condition(Status, false, &["unread"]),
                condition(Namespace, true, &["ns-0"]),
            ],
        ];
        let mut filters: Vec<AlertFilter> = filters
            .into_iter()
            .map(|conditions| AlertFilter {
                conditions,
                ..AlertFilter::default()
            })
            .collect();
        filters.push(AlertFilter {
            conditions: vec![
                condition(Cluster, false, &["cluster-1"]),
                condition(Namespace, false, &["ns-0"]),
            ],
            min_level: Some(crate::model::Level::High),
            ..AlertFilter::default()
        });
        for lowest in [crate::model::Level::Medium, crate::model::Level::Critical] {
            filters.push(AlertFilter {
                min_level: Some(lowest),
                ..AlertFilter::default()
            });
        }
        filters.push(AlertFilter {
            conditions: vec![condition(Level, false, &["Low"])],
            min_level: Some(crate::model::Level::Medium),
            ..AlertFilter::default()
        });
        // Receive times in `fill_varied` run from 1,000 to 1,399.
        let times = [
            (vec![condition(State, false, &["New"])], Some(1_200), None),
            (Vec::new(), Some(1_050), None),
            (Vec::new(), None, Some(1_350)),
            (Vec::new(), Some(1_050), Some(1_380)),
            (Vec::new(), Some(i64::MIN), Some(i64::MAX)),
            (
                vec![condition(Status, false, &["unread"])],
                None,
                Some(1_390),
            ),
            (vec![condition(Level, true, &["Low"])], Some(1_010), None),
            (
                vec![
                    condition(Cluster, true, &["cluster-0"]),
                    condition(Status, true, &["archived"]),
                ],
                Some(1_020),
                Some(1_395),
            ),
        ];
        for (conditions, since_ms, until_ms) in times {
            filters.push(AlertFilter {
                conditions,
                since_ms,
                until_ms,
                ..AlertFilter::default()
            });
        }
        filters
    }

    /// Checks list, count and facets of every combined filter against the results
    /// computed in Rust, and returns them for comparison with another schema version.
    fn check_combined_filters(connection: &Connection) -> Vec<(Vec<i64>, i64, Vec<Facet>)> {
        let alerts = stored_alerts(connection);
        let mut results = Vec::new();
        for filter in combined_filters() {
            let expected = expected_seqs(&alerts, &filter);
            let listed: Vec<i64> = list(connection, &filter, None, 100_000)
                .unwrap()
                .iter()
                .map(|alert| alert.seq)
                .collect();
            assert_eq!(listed, expected, "list of {filter:?}");

            // Pages of 7 continue after each other's cursor.
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = list(connection, &filter, after, 7).unwrap();
                let Some(last) = page.last() else { break };
                after = Some(Cursor {
                    last_received_ms: last.last_received_ms,
                    seq: last.seq,
                });
                paged.extend(page.iter().map(|alert| alert.seq));
            }
            assert_eq!(paged, expected, "pages of {filter:?}");

            let counted = count(connection, &filter).unwrap();
            assert_eq!(counted, expected.len() as i64, "count of {filter:?}");

            let summary = facet_summary(connection, &filter).unwrap();
            assert_eq!(
                summary.facets,
                expected_facets(&alerts, &filter),
                "facets of {filter:?}"
            );
            assert_eq!(summary.total, counted, "total of {filter:?}");
            results.push((listed, counted, summary.facets));
        }
        results
    }

    #[test]
    fn total_from_each_free_field() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 1_000);
        let alerts = stored_alerts(&connection);
        let every_field = [
            condition(Field::Level, false, &["Low", "High"]),
            condition(Field::Category, false, &["Health"]),
            condition(Field::Cluster, true, &["cluster-1"]),
            condition(Field::Namespace, true, &["ns-2"]),
            condition(Field::State, false, &["New", "Active"]),
            condition(Field::ObjectType, false, &["Pod"]),
            condition(Field::Status, false, &["unread"]),
        ];
        // One field left free, then none: the total is counted again.
        let free_fields = Field::FACETS.into_iter().map(Some).chain([None]);
        for free in free_fields {
            let filter = AlertFilter {
                conditions: every_field
                    .iter()
                    .filter(|condition| Some(condition.field) != free)
                    .cloned()
                    .collect(),
                ..AlertFilter::default()
            };
            let summary = facet_summary(&connection, &filter).unwrap();
            let summed = total_of(&filter, &summary.facets);
            assert_eq!(summed.is_some(), free.is_some(), "{free:?}");
            let expected = expected_seqs(&alerts, &filter).len() as i64;
            assert!(
                expected > 0,
                "the filter without {free:?} should match alerts"
            );
            assert_eq!(summary.total, expected, "total without {free:?}");
        }
    }

    #[test]
    fn reads_counters_predicts_counter_use() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 300);
        let mut filters = combined_filters();
        filters.extend(random_filters(200, 3));
        for text in ["", " ", "memory"] {
            filters.push(AlertFilter {
                text: text.to_owned(),
                ..AlertFilter::default()
            });
        }
        filters.push(AlertFilter {
            conditions: vec![condition(Field::Level, false, &[])],
            ..AlertFilter::default()
        });
        filters.push(AlertFilter {
            min_level: Some(Level::High),
            ..AlertFilter::default()
        });
        let before: Vec<Vec<Facet>> = filters
            .iter()
            .map(|filter| facets(&connection, filter).unwrap())
            .collect();

        // Counters that disagree with the alerts show in every count read from them.
        connection
            .execute_batch(
                "UPDATE facet_counts SET count = count + 1000;
                 UPDATE facet_pairs SET count = count + 1000;",
            )
            .unwrap();
        let mut read = 0;
        for (filter, before) in filters.iter().zip(&before) {
            if reads_counters(filter) {
                assert_ne!(&facets(&connection, filter).unwrap(), before, "{filter:?}");
                read += 1;
            }
        }
        assert!(read > 10, "only {read} filters read the counters");
        for text in [" ", ""] {
            let blank = AlertFilter {
                text: text.to_owned(),
                ..AlertFilter::default()
            };
            assert!(reads_counters(&blank), "{text:?}");
        }
        let two = AlertFilter {
            conditions: vec![
                condition(Field::Level, false, &["Low"]),
                condition(Field::Cluster, false, &["cluster-1"]),
            ],
            ..AlertFilter::default()
        };
        assert!(!reads_counters(&two));
    }

    #[test]
    fn unread_in_inbox_matches_filter_count() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        assert_eq!(unread_in_inbox(&connection).unwrap(), 0);
        fill_varied(&mut connection, 1_000);
        let inbox = AlertFilter {
            conditions: vec![
                condition(Field::Status, false, &["unread"]),
                condition(Field::Status, true, &["archived"]),
            ],
            ..AlertFilter::default()
        };
        for update in [
            "",
            "UPDATE alerts SET archived_ms = 9, read_ms = NULL WHERE seq % 7 = 0",
            "UPDATE alerts SET read_ms = 9 WHERE seq % 3 = 0",
        ] {
            connection.execute_batch(update).unwrap();
            let expected = count(&connection, &inbox).unwrap();
            assert!(expected > 100, "{expected}");
            assert_eq!(unread_in_inbox(&connection).unwrap(), expected, "{update}");
        }
    }

    #[test]
    fn total_skips_facets_cut_off() {
        let many = Facet {
            field: Field::Level,
            values: (0..FACET_VALUES as i64)
                .map(|n| (format!("level-{n}"), 1))
                .collect(),
        };
        let few = Facet {
            field: Field::Category,
            values: vec![("Health".to_owned(), 3), ("Cost".to_owned(), 4)],
        };
        let filter = AlertFilter::default();
        assert_eq!(total_of(&filter, &[many.clone(), few]), Some(7));
        assert_eq!(total_of(&filter, &[many]), None);
    }

    #[test]
    fn combined_filters_match_rust_check() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 3_000);
        let results = check_combined_filters(&connection);
        assert!(
            results.iter().any(|(rows, _, _)| rows.len() > 20),
            "the filters should match more than a few alerts"
        );
        assert!(results.iter().any(|(rows, _, _)| rows.is_empty()));
    }

    /// Returns `count` filters of up to three conditions on the values [`fill_varied`]
    /// writes, some negated, some with receive times or a lowest level.
    pub(crate) fn random_filters(count: usize, seed: u64) -> Vec<AlertFilter> {
        use rand::{Rng, SeedableRng};
        let pool: [(Field, &[&str]); 7] = [
            (Field::Level, &["Low", "Medium", "High", "Critical", "None"]),
            (Field::Category, &["Health", "Cost"]),
            (Field::Cluster, &["cluster-0", "cluster-1", "cluster-2"]),
            (Field::Namespace, &["ns-0", "ns-1", "ns-2", "ns-3", "ns-4"]),
            (Field::State, &["New", "Active", "Resolved"]),
            (Field::ObjectType, &["Pod", "Node"]),
            (
                Field::Status,
                &["unread", "read", "acknowledged", "snoozed", "archived"],
            ),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut filters = Vec::with_capacity(count);
        for _ in 0..count {
            let mut filter = AlertFilter::default();
            for _ in 0..rng.random_range(0..4) {
                let (field, values) = pool[rng.random_range(0..pool.len())];
                let mut chosen: Vec<&str> = values
                    .iter()
                    .copied()
                    .filter(|_| rng.random_range(0..3) == 0)
                    .collect();
                if chosen.is_empty() {
                    chosen.push(values[rng.random_range(0..values.len())]);
                }
                filter
                    .conditions
                    .push(condition(field, rng.random_range(0..3) == 0, &chosen));
            }
            if rng.random_range(0..4) == 0 {
                filter.since_ms = Some(1_000 + rng.random_range(0..400));
            }
            if rng.random_range(0..4) == 0 {
                filter.until_ms = Some(1_000 + rng.random_range(0..400));
            }
            if rng.random_range(0..6) == 0 {
                filter.min_level = Some(crate::model::Level::Medium);
            }
            filters.push(filter);
        }
        filters
    }

    #[test]
    fn random_filters_match_rust_check() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 2_000);
        let alerts = stored_alerts(&connection);
        for filter in random_filters(300, 11) {
            let summary = facet_summary(&connection, &filter).unwrap();
            assert_eq!(
                summary.facets,
                expected_facets(&alerts, &filter),
                "facets of {filter:?}"
            );
            let expected_total = expected_seqs(&alerts, &filter).len() as i64;
            assert_eq!(summary.total, expected_total, "total of {filter:?}");
            assert_eq!(
                count(&connection, &filter).unwrap(),
                expected_total,
                "count of {filter:?}"
            );
        }
    }

    /// Returns the pages of free-text searches, one per search, through [`list`].
    fn search_pages(connection: &Connection) -> Vec<Vec<AlertSummary>> {
        ["memory", "pres mem", "cert", "disk pressure", "zzzz"]
            .iter()
            .map(|text| {
                let filter = AlertFilter {
                    text: (*text).to_owned(),
                    conditions: vec![condition(Field::Cluster, false, &["cluster-1"])],
                    ..AlertFilter::default()
                };
                let unfiltered = AlertFilter {
                    conditions: Vec::new(),
                    ..filter.clone()
                };
                let mut page = list(connection, &filter, None, 50).unwrap();
                page.extend(list(connection, &unfiltered, None, 50).unwrap());
                page
            })
            .collect()
    }

    /// Indexes of schema 1 that later migrations replace.
    const SCHEMA_1_INDEXES: &str = "
        CREATE INDEX alerts_by_level ON alerts (level, last_received_ms DESC);
        CREATE INDEX alerts_by_cluster ON alerts (cluster, last_received_ms DESC);";
    /// Indexes of schemas 1 and 2 that migration 3 replaces.
    const SCHEMA_2_INDEXES: &str = "
        CREATE INDEX alerts_by_state ON alerts (state, last_received_ms DESC);
        CREATE INDEX alerts_by_category ON alerts (category, last_received_ms DESC);
        CREATE INDEX alerts_by_object_type ON alerts (object_type, last_received_ms DESC);";

    /// Indexes of schemas 1 to 4 that migration 5 replaces.
    const SCHEMA_4_INDEXES: &str = "
        DROP INDEX alerts_by_namespace_facets;
        DROP INDEX alerts_acknowledged_facets;
        DROP INDEX alerts_archived_facets;
        CREATE INDEX alerts_by_namespace ON alerts (namespace, last_received_ms DESC);
        CREATE INDEX alerts_acknowledged ON alerts (last_received_ms DESC)
            WHERE acknowledged_ms IS NOT NULL;
        CREATE INDEX alerts_archived ON alerts (last_received_ms DESC)
            WHERE archived_ms IS NOT NULL;";
    /// Indexes that migration 5 replaces.
    const SCHEMA_4_REPLACED: [&str; 3] = [
        "alerts_by_namespace",
        "alerts_acknowledged",
        "alerts_archived",
    ];

    /// Removes what migration 4 adds.
    const SCHEMA_4_PAIRS_DROPPED: &str = "
        DROP TRIGGER facet_pairs_insert;
        DROP TRIGGER facet_pairs_delete;
        DROP TRIGGER facet_pairs_update;
        DROP TRIGGER facet_pairs_unread;
        DROP TRIGGER facet_pairs_acknowledged;
        DROP TRIGGER facet_pairs_archived;
        DROP TABLE facet_pairs;";

    /// Removes what migration 6 adds, which every downgrade below starts with.
    const SCHEMA_6_DROPPED: &str = "
        DROP INDEX alerts_by_object_name;
        DROP INDEX alerts_by_key;
        DROP TRIGGER alert_changes_update;
        DROP TRIGGER alert_changes_delete;
        DROP TRIGGER alert_changes_trim;
        DROP TABLE alert_changes;";

    /// Fills a store whose indexes are those of schema `from`, created by `downgrade`,
    /// migrates it, and checks that filters, searches and facet counts give the same
    /// results, and that the indexes in `replaced` are gone.
    fn check_migration_keeps_results(downgrade: &str, from: u32, replaced: &[&str]) {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        connection.execute_batch(SCHEMA_6_DROPPED).unwrap();
        connection.execute_batch(downgrade).unwrap();
        connection
            .pragma_update(None, "user_version", from)
            .unwrap();
        fill_varied(&mut connection, 3_000);
        let before = check_combined_filters(&connection);
        let searches_before = search_pages(&connection);
        let unfiltered_before = facets(&connection, &AlertFilter::default()).unwrap();

        let latest = crate::store::schema::latest_version();
        assert_eq!(
            crate::store::schema::migrate(&mut connection).unwrap(),
            (from, latest)
        );
        let indexes: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'alerts_%'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for name in replaced {
            assert!(!indexes.contains(&(*name).to_owned()), "{indexes:?}");
            assert!(indexes.contains(&format!("{name}_facets")), "{indexes:?}");
        }

        assert_eq!(check_combined_filters(&connection), before);
        let searches_after = search_pages(&connection);
        assert!(searches_after.iter().any(|page| page.len() == 100));
        assert_eq!(searches_after, searches_before);
        assert_eq!(
            facets(&connection, &AlertFilter::default()).unwrap(),
            unfiltered_before
        );
    }

    #[test]
    fn migration_2_keeps_results() {
        // The indexes of a store created by a release with only migration 1.
        let downgrade = format!(
            "DROP INDEX alerts_by_level_facets;
             DROP INDEX alerts_by_cluster_facets;
             DROP INDEX alerts_by_state_facets;
             DROP INDEX alerts_by_category_facets;
             DROP INDEX alerts_by_object_type_facets;
             {SCHEMA_1_INDEXES}
             {SCHEMA_2_INDEXES}
             {SCHEMA_4_INDEXES}
             {SCHEMA_4_PAIRS_DROPPED}"
        );
        check_migration_keeps_results(
            &downgrade,
            1,
            &[
                "alerts_by_level",
                "alerts_by_cluster",
                "alerts_by_state",
                "alerts_by_category",
                "alerts_by_object_type",
                "alerts_by_namespace",
                "alerts_acknowledged",
                "alerts_archived",
            ],
        );
    }

    #[test]
    fn migration_3_keeps_results() {
        let downgrade = format!(
            "DROP INDEX alerts_by_state_facets;
             DROP INDEX alerts_by_category_facets;
             DROP INDEX alerts_by_object_type_facets;
             {SCHEMA_2_INDEXES}
             {SCHEMA_4_INDEXES}
             {SCHEMA_4_PAIRS_DROPPED}"
        );
        check_migration_keeps_results(
            &downgrade,
            2,
            &[
                "alerts_by_state",
                "alerts_by_category",
                "alerts_by_object_type",
                "alerts_by_namespace",
                "alerts_acknowledged",
                "alerts_archived",
            ],
        );
    }

    #[test]
    fn migration_4_keeps_results() {
        let downgrade = format!("{SCHEMA_4_INDEXES} {SCHEMA_4_PAIRS_DROPPED}");
        check_migration_keeps_results(&downgrade, 3, &SCHEMA_4_REPLACED);
    }

    #[test]
    fn migration_5_keeps_results() {
        check_migration_keeps_results(SCHEMA_4_INDEXES, 4, &SCHEMA_4_REPLACED);
    }

    #[test]
    fn migration_6_keeps_results() {
        check_migration_keeps_results("", 5, &[]);
    }

    /// Returns the pair counters in the table, without those counted down to zero.
    fn stored_pairs(connection: &Connection) -> FxHashMap<crate::store::facet_pairs::PairKey, i64> {
        connection
            .prepare(
                "SELECT field, value, other_field, other_value, count FROM facet_pairs
                 WHERE count <> 0",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?),
                    row.get(4)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Updates of every facet field, triage state and receive time, some that change
    /// nothing, and deletes, of alerts that [`fill_varied`] wrote.
    pub(crate) const MIXED_CHANGES: &str = "
        UPDATE alerts SET read_ms = NULL WHERE seq % 7 = 0;
        UPDATE alerts SET read_ms = 5 WHERE seq % 5 = 0;
        UPDATE alerts SET acknowledged_ms = 6, archived_ms = NULL WHERE seq % 9 = 0;
        UPDATE alerts SET level = 'Critical', level_rank = 4 WHERE seq % 11 = 0;
        UPDATE alerts SET state = 'Resolved', archived_ms = 7, read_ms = NULL
            WHERE seq % 13 = 0;
        UPDATE alerts SET cluster = cluster, namespace = 'ns-9', last_received_ms = 1390
            WHERE seq % 3 = 0;
        UPDATE alerts SET level = level, read_ms = read_ms WHERE seq % 4 = 0;
        UPDATE alerts SET snoozed_until_ms = 9e15 WHERE seq % 19 = 0;
        UPDATE alerts SET snoozed_until_ms = NULL WHERE seq % 23 = 0;
        DELETE FROM alerts WHERE seq % 17 = 0;";

    #[test]
    fn pair_counters_follow_updates_and_deletes() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 3_000);
        let recounted = crate::store::facet_pairs::recount(&connection).unwrap();
        assert!(recounted.len() > 100, "{}", recounted.len());
        assert_eq!(stored_pairs(&connection), recounted);

        connection.execute_batch(MIXED_CHANGES).unwrap();
        assert_eq!(
            stored_pairs(&connection),
            crate::store::facet_pairs::recount(&connection).unwrap()
        );
        check_combined_filters(&connection);

        // The counts of a one-condition filter are read from the counters, not counted.
        // A two-condition filter whose second condition keeps most alerts of the first
        // reads them too, and subtracts the counts of the alerts it excludes.
        let one_condition = AlertFilter {
            conditions: vec![condition(Field::Level, false, &["Low"])],
            ..AlertFilter::default()
        };
        let two_conditions = AlertFilter {
            conditions: vec![
                condition(Field::Level, false, &["Low"]),
                condition(Field::Status, false, &["unread"]),
            ],
            ..AlertFilter::default()
        };
        let state_counts = |connection: &Connection| {
            [&one_condition, &two_conditions].map(|filter| {
                let facets = facets(connection, filter).unwrap();
                let state = facets.iter().find(|f| f.field == Field::State).unwrap();
                state.values.clone()
            })
        };
        let before = state_counts(&connection);
        connection
            .execute(
                "UPDATE facet_pairs SET count = count + 1000
                 WHERE field = 'level' AND value = 'Low' AND other_field = 'state'
                     AND other_value = 'New'",
                [],
            )
            .unwrap();
        let after = state_counts(&connection);
        for (after, before) in after.iter().zip(&before) {
            assert_ne!(after, before);
            assert!(after
                .iter()
                .any(|(value, count)| value == "New" && *count > 1000));
        }

        // A receive time that keeps most alerts takes the totals less the others' counts.
        let recent = AlertFilter {
            since_ms: Some(1_050),
            ..AlertFilter::default()
        };
        connection
            .execute(
                "UPDATE facet_counts SET count = count + 1000
                 WHERE field = 'state' AND value = 'New'",
                [],
            )
            .unwrap();
        let facets = facets(&connection, &recent).unwrap();
        let state = facets.iter().find(|f| f.field == Field::State).unwrap();
        assert!(state
            .values
            .iter()
            .any(|(value, count)| value == "New" && *count > 1000));
    }

    #[test]
    fn driving_condition_prefers_cheapest() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, 3_000);
        // All 3,000 alerts have one of the levels, on the covering level index, and about
        // 2,400 are unread, whose index leads to the alert rows: the level index costs less.
        let levels = condition(Field::Level, false, &["Low", "Medium", "High", "Critical"]);
        let unread = condition(Field::Status, false, &["unread"]);
        assert_eq!(
            driving_condition(&connection, &[&unread, &levels], false).unwrap(),
            Some(1)
        );
        // About 750 alerts are Critical and about 300 acknowledged, whose index is covering
        // too: it costs least.
        let level = condition(Field::Level, false, &["Critical"]);
        let acknowledged = condition(Field::Status, false, &["acknowledged"]);
        assert_eq!(
            driving_condition(&connection, &[&level, &acknowledged], false).unwrap(),
            Some(1)
        );

        // A value no alert has drives: its index finds nothing at once.
        let missing = condition(Field::State, false, &["No-such-state"]);
        assert_eq!(
            driving_condition(&connection, &[&level, &missing], true).unwrap(),
            Some(1)
        );

        // A negated condition cannot use an index, so one indexable condition remains.
        let not_namespace = condition(Field::Namespace, true, &["ns-2"]);
        assert_eq!(
            driving_condition(&connection, &[&not_namespace, &level], false).unwrap(),
            None
        );

        // A list reads pages newest first, which an index gives for one value only.
        let two_namespaces = condition(Field::Namespace, false, &["ns-1", "ns-2"]);
        assert_eq!(
            driving_condition(&connection, &[&two_namespaces, &level], true).unwrap(),
            Some(1)
        );
        assert_eq!(
            driving_condition(&connection, &[&two_namespaces, &missing], false).unwrap(),
            Some(1)
        );

        // An object name has no counters, so its index counts its 81 alerts. Their rows cost
        // less to read than the entries of all 3,000 levels, and more than the entries of
        // the 300 acknowledged alerts.
        let object = condition(Field::ObjectName, false, &["obj-3"]);
        assert_eq!(matches_without_counter(&connection, &object).unwrap(), 81);
        assert_eq!(
            driving_condition(&connection, &[&levels, &object], false).unwrap(),
            Some(1)
        );
        assert_eq!(
            driving_condition(&connection, &[&object, &acknowledged], false).unwrap(),
            Some(1)
        );
        let key = condition(Field::Key, false, &["key-7"]);
        assert_eq!(
            driving_condition(&connection, &[&levels, &key], false).unwrap(),
            Some(1)
        );
    }
}
