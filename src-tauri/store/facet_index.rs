//! An in-memory copy of the columns that facet counts read, so that the window counts the
//! facets of any filter in one pass over compact arrays.
//!
//! Counting through SQLite reads an index entry or an alert row per matching alert, about
//! 0.5 µs each, and the pair counters of [`facet_pairs`](super::facet_pairs) serve only
//! filters of one condition. Here an alert takes about 41 bytes in a few arrays: its `seq`,
//! a code for each facet value, its receive time and its triage flags. A count reads every
//! alert, or only the matches of a full-text search, at a few nanoseconds each.
//!
//! The copy follows the database without help from the code that writes it. New alerts
//! have a `seq` above the copy's last one, and the table `alert_changes` (schema 6) lists
//! the alerts changed or deleted since. [`FacetIndex::summary`] reads both before it
//! counts, in the read transaction that also reads the full-text matches.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use rustc_hash::FxHashMap;

use super::query::{self, AlertFilter, Facet, FacetSummary, Field, TriageStatus};
use super::{now_ms, StoreError};
use crate::model::Level;

/// The text fields of [`Field::FACETS`], which come first in it.
const TEXT_FIELDS: usize = query::TEXT_FACETS;
/// The position of [`Field::Status`] in [`Field::FACETS`].
const STATUS: usize = TEXT_FIELDS;

/// Flags of an alert in [`FacetIndex::flags`].
const LIVE: u8 = 1;
const READ: u8 = 2;
const ACKNOWLEDGED: u8 = 4;
const ARCHIVED: u8 = 8;
/// The alert has a snooze time, in [`FacetIndex::snoozed_until_ms`].
const SNOOZE_TIME: u8 = 16;

/// The columns of one alert, in the order [`FacetIndex::entry`] reads them. The text
/// fields follow `seq` in the order of [`Field::FACETS`].
const COLUMNS: &str = "seq, level, category, cluster, namespace, state, object_type,
    last_received_ms, read_ms IS NOT NULL, acknowledged_ms IS NOT NULL,
    archived_ms IS NOT NULL, snoozed_until_ms, level_rank";

/// The distinct values of one text field, each with a code: its position in `names`.
/// Values are bytes, as SQLite compares them, so two values that are not valid UTF-8
/// stay apart.
#[derive(Default)]
struct Values {
    names: Vec<Vec<u8>>,
    codes: FxHashMap<Vec<u8>, u32>,
}

impl Values {
    fn code_of(&mut self, name: &[u8]) -> u32 {
        if let Some(&code) = self.codes.get(name) {
            return code;
        }
        let code = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.codes.insert(name.to_owned(), code);
        code
    }
}

/// One alert's columns, as read from its row.
struct Entry {
    seq: i64,
    codes: [u32; TEXT_FIELDS],
    received_ms: i64,
    flags: u8,
    snoozed_until_ms: Option<i64>,
}

/// The facet fields, receive times and triage of every alert, by ascending `seq`.
pub struct FacetIndex {
    /// The database file the copy was read from.
    database: String,
    /// The last entry of `alert_changes` applied.
    last_change: i64,
    values: [Values; TEXT_FIELDS],
    /// The rank of each level, by code.
    level_ranks: Vec<i64>,
    seqs: Vec<i64>,
    codes: Vec<[u32; TEXT_FIELDS]>,
    received_ms: Vec<i64>,
    flags: Vec<u8>,
    /// Snooze times by position, for the few alerts that have one.
    snoozed_until_ms: FxHashMap<usize, i64>,
    /// Set when the copy can no longer catch up and must be read again.
    stale: bool,
    /// Set when a row has a value of a type that the app never writes, such as a BLOB in a
    /// text field, which SQLite compares by rules the copy does not follow. Also set when
    /// `seq` reached its maximum, after which SQLite picks new values at random. The copy
    /// then declines every filter.
    unusual: bool,
}

impl FacetIndex {
    /// Reads the columns of every alert. On a million alerts this takes 0.6–0.8 s (see
    /// docs/benchmarks.md), so the app does it off the window's connection.
    pub fn build(connection: &Connection) -> Result<Self, StoreError> {
        let transaction = connection.unchecked_transaction()?;
        let mut index = Self {
            database: connection.path().unwrap_or_default().to_owned(),
            last_change: transaction.query_row(
                "SELECT coalesce(max(id), 0) FROM alert_changes",
                [],
                |row| row.get(0),
            )?,
            values: Default::default(),
            level_ranks: Vec::new(),
            seqs: Vec::new(),
            codes: Vec::new(),
            received_ms: Vec::new(),
            flags: Vec::new(),
            snoozed_until_ms: FxHashMap::default(),
            stale: false,
            unusual: false,
        };

        // A covering index has every column read, in about a tenth of the pages of the alert
        // rows, which SQLite would otherwise scan. Its order is not by `seq`.
        let mut statement = transaction.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts INDEXED BY alerts_by_level_facets"
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let entry = index.entry(row)?;
            index.push(entry);
        }
        index.sort_by_seq();
        index.seqs.shrink_to_fit();
        index.codes.shrink_to_fit();
        index.received_ms.shrink_to_fit();
        index.flags.shrink_to_fit();
        Ok(index)
    }

    /// Returns whether the copy was read from the database `connection` has open.
    pub fn matches_database(&self, connection: &Connection) -> bool {
        connection.path().unwrap_or_default() == self.database
    }

    /// Returns whether the copy fell too far behind the database to catch up, so that
    /// [`FacetIndex::summary`] declines every filter until it is built again.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Returns the number of alerts in the copy.
    pub fn len(&self) -> usize {
        self.flags
            .iter()
            .filter(|flags| **flags & LIVE != 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns an estimate of the bytes the copy takes on the heap.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self
            .values
            .iter()
            .flat_map(|values| &values.names)
            .map(|name| 2 * name.len() + 64)
            .sum();
        self.seqs.capacity() * 8
            + self.codes.capacity() * std::mem::size_of::<[u32; TEXT_FIELDS]>()
            + self.received_ms.capacity() * 8
            + self.flags.capacity()
            + self.snoozed_until_ms.capacity() * 24
            + names
    }

    /// Counts the facets of `filter` and the alerts it matches, as
    /// [`query::facet_summary`] does, after catching up with the database.
    ///
    /// Returns `None` when the filter tests a field that is not in the copy (object name or
    /// key), or when the copy is stale or has unusual values. The caller then counts
    /// through SQLite.
    pub fn summary(
        &mut self,
        connection: &Connection,
        filter: &AlertFilter,
    ) -> Result<Option<FacetSummary>, StoreError> {
        let in_copy = |field: Field| Field::FACETS.contains(&field);
        let tests_other_fields = filter
            .conditions
            .iter()
            .any(|condition| !condition.values.is_empty() && !in_copy(condition.field));
        if tests_other_fields || self.stale || self.unusual {
            return Ok(None);
        }
        let transaction = connection.unchecked_transaction()?;
        match self.catch_up(&transaction) {
            Ok(true) => {}
            Ok(false) => {
                self.stale = true;
                return Ok(None);
            }
            Err(error) => {
                // Part of the changes may be applied, so only a new copy is certain to be right.
                self.stale = true;
                return Err(error);
            }
        }
        let matches = match query::fts_query(&filter.text) {
            Some(search) => {
                let mut statement = transaction
                    .prepare_cached("SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?1")?;
                let rowids = statement
                    .query_map([search], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Some(rowids)
            }
            None => None,
        };
        drop(transaction);
        if self.unusual {
            return Ok(None);
        }
        Ok(Some(self.count(filter, matches.as_deref(), now_ms())))
    }

    /// Applies the changes logged since the last one applied and appends new alerts.
    /// Returns `false` when the log no longer contains every change since then.
    fn catch_up(&mut self, connection: &Connection) -> Result<bool, StoreError> {
        let oldest: Option<i64> =
            connection.query_row("SELECT min(id) FROM alert_changes", [], |row| row.get(0))?;
        if oldest.is_some_and(|oldest| oldest > self.last_change + 1) {
            return Ok(false);
        }

        let mut changed = Vec::new();
        {
            let mut statement = connection
                .prepare_cached("SELECT id, seq FROM alert_changes WHERE id > ?1 ORDER BY id")?;
            let mut rows = statement.query([self.last_change])?;
            while let Some(row) = rows.next()? {
                self.last_change = row.get(0)?;
                changed.push(row.get::<_, i64>(1)?);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        // Alerts above the copy's last one are read below with the other new alerts.
        let last_seq = self.seqs.last().copied().unwrap_or(i64::MIN);
        changed.retain(|seq| *seq <= last_seq);
        if !changed.is_empty() {
            let mut statement = connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE seq = ?1"))?;
            for seq in changed {
                let mut rows = statement.query([seq])?;
                let entry = match rows.next()? {
                    Some(row) => Some(self.entry(row)?),
                    None => None,
                };
                match entry {
                    Some(entry) => {
                        if !self.replace(entry) {
                            return Ok(false);
                        }
                    }
                    None => self.remove(seq),
                }
            }
            // SQLite gives a new alert the highest `seq` plus one, so the `seq` of a deleted
            // last alert comes back, and it must then read as new.
            while self.flags.last().is_some_and(|flags| flags & LIVE == 0) {
                self.pop();
            }
        }

        let last_seq = self.seqs.last().copied().unwrap_or(i64::MIN);
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE seq > ?1 ORDER BY seq"
        ))?;
        let mut rows = statement.query([last_seq])?;
        while let Some(row) = rows.next()? {
            let entry = self.entry(row)?;
            self.push(entry);
        }
        if self.seqs.last() == Some(&i64::MAX) {
            self.unusual = true;
        }
        Ok(true)
    }

    /// Reads one row of [`COLUMNS`], coding its text values. A value of another type than
    /// the app writes marks the copy [`FacetIndex::unusual`].
    fn entry(&mut self, row: &Row<'_>) -> rusqlite::Result<Entry> {
        let mut codes = [0; TEXT_FIELDS];
        for (slot, code) in codes.iter_mut().enumerate() {
            let bytes = match row.get_ref(slot + 1)? {
                ValueRef::Text(bytes) => bytes,
                _ => {
                    self.unusual = true;
                    &[]
                }
            };
            *code = self.values[slot].code_of(bytes);
        }

        let mut flags = LIVE;
        for (column, flag) in [(8, READ), (9, ACKNOWLEDGED), (10, ARCHIVED)] {
            if row.get::<_, bool>(column)? {
                flags |= flag;
            }
        }
        // Filters on the lowest level test `level_rank`, which the copy derives from the
        // level as the writer does.
        let rank = self.level_rank(codes[0]);
        if self.integer(row.get_ref(12)?) != Some(rank) {
            self.unusual = true;
        }
        let received_ms = self.integer(row.get_ref(7)?).unwrap_or_default();
        let snoozed_until_ms = self.integer(row.get_ref(11)?);
        if snoozed_until_ms.is_some() {
            flags |= SNOOZE_TIME;
        }
        Ok(Entry {
            seq: row.get(0)?,
            codes,
            received_ms,
            flags,
            snoozed_until_ms,
        })
    }

    /// Returns the rank of the level with `code`, as [`Level::rank`] gives it.
    fn level_rank(&mut self, code: u32) -> i64 {
        let levels = &self.values[0].names;
        while self.level_ranks.len() < levels.len() {
            let name = String::from_utf8_lossy(&levels[self.level_ranks.len()]);
            self.level_ranks.push(Level::rank(&name));
        }
        self.level_ranks[code as usize]
    }

    /// Returns an integer column's value, `None` for NULL. Any other type marks the copy
    /// [`FacetIndex::unusual`].
    fn integer(&mut self, value: ValueRef<'_>) -> Option<i64> {
        match value {
            ValueRef::Integer(value) => Some(value),
            ValueRef::Null => None,
            _ => {
                self.unusual = true;
                None
            }
        }
    }

    /// Puts the alerts in order of `seq`, one array at a time, so the build needs little
    /// more memory than the copy.
    fn sort_by_seq(&mut self) {
        if self.seqs.is_sorted() {
            return;
        }
        let mut order: Vec<usize> = (0..self.seqs.len()).collect();
        order.sort_unstable_by_key(|&position| self.seqs[position]);
        fn reorder<T: Copy>(values: &mut Vec<T>, order: &[usize]) {
            *values = order.iter().map(|&position| values[position]).collect();
        }
        reorder(&mut self.seqs, &order);
        reorder(&mut self.codes, &order);
        reorder(&mut self.received_ms, &order);
        reorder(&mut self.flags, &order);
        let snoozed = std::mem::take(&mut self.snoozed_until_ms);
        for (position, old) in order.iter().enumerate() {
            if let Some(until) = snoozed.get(old) {
                self.snoozed_until_ms.insert(position, *until);
            }
        }
    }

    fn push(&mut self, entry: Entry) {
        let position = self.seqs.len();
        self.seqs.push(entry.seq);
        self.codes.push(entry.codes);
        self.received_ms.push(entry.received_ms);
        self.flags.push(entry.flags);
        if let Some(until) = entry.snoozed_until_ms {
            self.snoozed_until_ms.insert(position, until);
        }
    }

    fn pop(&mut self) {
        self.seqs.pop();
        self.codes.pop();
        self.received_ms.pop();
        self.flags.pop();
        self.snoozed_until_ms.remove(&self.seqs.len());
    }

    /// Overwrites the alert with `entry.seq`. Returns `false` if the copy has no such
    /// alert, which only a `seq` chosen out of order could cause.
    fn replace(&mut self, entry: Entry) -> bool {
        let Ok(position) = self.seqs.binary_search(&entry.seq) else {
            return false;
        };
        self.codes[position] = entry.codes;
        self.received_ms[position] = entry.received_ms;
        self.flags[position] = entry.flags;
        match entry.snoozed_until_ms {
            Some(until) => self.snoozed_until_ms.insert(position, until),
            None => self.snoozed_until_ms.remove(&position),
        };
        true
    }

    fn remove(&mut self, seq: i64) {
        if let Ok(position) = self.seqs.binary_search(&seq) {
            self.flags[position] = 0;
            self.snoozed_until_ms.remove(&position);
        }
    }

    fn has_status(&self, position: usize, status: TriageStatus, now: i64) -> bool {
        let flags = self.flags[position];
        match status {
            TriageStatus::Unread => flags & READ == 0,
            TriageStatus::Read => flags & READ != 0,
            TriageStatus::Acknowledged => flags & ACKNOWLEDGED != 0,
            TriageStatus::Archived => flags & ARCHIVED != 0,
            TriageStatus::Snoozed => {
                flags & SNOOZE_TIME != 0
                    && self
                        .snoozed_until_ms
                        .get(&position)
                        .is_some_and(|until| *until > now)
            }
        }
    }

    /// Turns `filter` into tests on the copy's columns, those that belong to no facet
    /// first. Free text is not among them: the caller visits only its matches.
    fn tests(&self, filter: &AlertFilter, now: i64) -> Vec<Test> {
        let mut tests = Vec::new();
        if let Some(lowest) = filter.min_level {
            let allowed = self
                .level_ranks
                .iter()
                .map(|rank| *rank > lowest as i64)
                .collect();
            tests.push(Test {
                own: None,
                kind: TestKind::Value { slot: 0, allowed },
            });
        }
        if let Some(since) = filter.since_ms {
            tests.push(Test {
                own: None,
                kind: TestKind::Since(since),
            });
        }
        if let Some(until) = filter.until_ms {
            tests.push(Test {
                own: None,
                kind: TestKind::Until(until),
            });
        }
        for condition in &filter.conditions {
            if condition.values.is_empty() {
                continue;
            }
            let Some(own) = Field::FACETS.iter().position(|f| *f == condition.field) else {
                continue;
            };
            let kind = if own == STATUS {
                TestKind::Status {
                    any_of: condition
                        .values
                        .iter()
                        .map(|value| TriageStatus::parse(value))
                        .collect(),
                    negate: condition.negate,
                    now,
                }
            } else {
                let values = &self.values[own];
                let mut allowed = vec![condition.negate; values.names.len()];
                for value in &condition.values {
                    let value = match condition.field {
                        Field::Level => query::canonical_level(value),
                        _ => value.clone(),
                    };
                    if let Some(&code) = values.codes.get(value.as_bytes()) {
                        allowed[code as usize] = !condition.negate;
                    }
                }
                TestKind::Value { slot: own, allowed }
            };
            tests.push(Test {
                own: Some(own),
                kind,
            });
        }
        tests
    }

    /// Counts the facets of `filter` over the alerts at `matches` (every alert if `None`).
    /// An alert counts for every facet when it passes all tests, and for one facet when
    /// the only tests it fails are of that facet's own field.
    fn count(&self, filter: &AlertFilter, matches: Option<&[i64]>, now: i64) -> FacetSummary {
        let tests = self.tests(filter, now);
        let mut counts: [Vec<i64>; TEXT_FIELDS] =
            std::array::from_fn(|slot| vec![0; self.values[slot].names.len()]);
        let mut statuses = [0i64; TriageStatus::ALL.len()];
        let mut total = 0;

        let mut visit = |position: usize| {
            if self.flags[position] & LIVE == 0 {
                return;
            }
            let mut failed_own: Option<usize> = None;
            for test in &tests {
                if test.passes(self, position) {
                    continue;
                }
                match (test.own, failed_own) {
                    (Some(own), None) => failed_own = Some(own),
                    (Some(own), Some(failed)) if own == failed => {}
                    _ => return,
                }
            }
            let codes = &self.codes[position];
            let mut add = |facet: usize| {
                if facet == STATUS {
                    for status in TriageStatus::ALL {
                        if self.has_status(position, status, now) {
                            statuses[status as usize] += 1;
                        }
                    }
                } else {
                    counts[facet][codes[facet] as usize] += 1;
                }
            };
            match failed_own {
                Some(facet) => add(facet),
                None => {
                    total += 1;
                    (0..Field::FACETS.len()).for_each(&mut add);
                }
            }
        };
        match matches {
            Some(seqs) => {
                // Both lists ascend, so each search starts after the last position found.
                let mut from = 0;
                for seq in seqs {
                    match self.seqs[from..].binary_search(seq) {
                        Ok(offset) => {
                            visit(from + offset);
                            from += offset + 1;
                        }
                        Err(offset) => from += offset,
                    }
                }
            }
            None => (0..self.seqs.len()).for_each(visit),
        }

        let facets = Field::FACETS
            .into_iter()
            .enumerate()
            .map(|(facet, field)| {
                let values = if facet == STATUS {
                    TriageStatus::ALL
                        .iter()
                        .map(|status| (status.as_str().to_owned(), statuses[*status as usize]))
                        .collect()
                } else {
                    let mut values: Vec<(String, i64)> = counts[facet]
                        .iter()
                        .enumerate()
                        .filter(|(_, count)| **count > 0)
                        .map(|(code, count)| {
                            let name = &self.values[facet].names[code];
                            (String::from_utf8_lossy(name).into_owned(), *count)
                        })
                        .collect();
                    query::sort_facet_values(&mut values);
                    values
                };
                Facet { field, values }
            })
            .collect();
        FacetSummary { total, facets }
    }
}

/// One part of a filter, tested on one alert of the copy.
struct Test {
    /// The facet whose own condition this is, by position in [`Field::FACETS`].
    own: Option<usize>,
    kind: TestKind,
}

enum TestKind {
    /// The alert's code in a text field is one of those `allowed`.
    Value {
        slot: usize,
        allowed: Vec<bool>,
    },
    /// The alert has any of the triage states, or with `negate`, none. An unknown name
    /// (`None`) matches no alert.
    Status {
        any_of: Vec<Option<TriageStatus>>,
        negate: bool,
        now: i64,
    },
    Since(i64),
    Until(i64),
}

impl Test {
    fn passes(&self, index: &FacetIndex, position: usize) -> bool {
        match &self.kind {
            TestKind::Value { slot, allowed } => allowed[index.codes[position][*slot] as usize],
            TestKind::Status {
                any_of,
                negate,
                now,
            } => {
                let any = any_of.iter().any(|status| {
                    status.is_some_and(|status| index.has_status(position, status, *now))
                });
                any != *negate
            }
            TestKind::Since(since) => index.received_ms[position] >= *since,
            TestKind::Until(until) => index.received_ms[position] < *until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::tests::{
        combined_filters, condition, fill_varied, random_filters, MIXED_CHANGES,
    };

    fn varied_store(count: usize) -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut connection).unwrap();
        fill_varied(&mut connection, count);
        connection
    }

    /// Filters of the query tests, with and without free text.
    fn filters() -> Vec<AlertFilter> {
        let mut filters = combined_filters();
        filters.extend(random_filters(200, 5));
        for text in ["memory", "pres mem", "cert", "zzzz", "  "] {
            filters.push(AlertFilter {
                text: text.to_owned(),
                ..AlertFilter::default()
            });
            filters.push(AlertFilter {
                text: text.to_owned(),
                conditions: vec![
                    condition(Field::Cluster, false, &["cluster-1"]),
                    condition(Field::Status, true, &["read"]),
                ],
                ..AlertFilter::default()
            });
        }
        filters
    }

    /// Compares the copy's counts of every filter with those counted through SQLite. The
    /// copy declines only filters on object names or keys.
    fn assert_same_as_sql(index: &mut FacetIndex, connection: &Connection) {
        let mut matched = 0;
        for filter in filters() {
            let holds_every_field = filter
                .conditions
                .iter()
                .all(|condition| !matches!(condition.field, Field::ObjectName | Field::Key));
            let Some(counted) = index.summary(connection, &filter).unwrap() else {
                assert!(!holds_every_field, "the copy declined {filter:?}");
                continue;
            };
            assert!(holds_every_field, "{filter:?}");
            let expected = query::facet_summary(connection, &filter).unwrap();
            assert_eq!(counted, expected, "{filter:?}");
            matched += usize::from(counted.total > 0);
        }
        assert!(matched > 100, "only {matched} filters matched alerts");
    }

    #[test]
    fn counts_as_sql_does() {
        let connection = varied_store(2_000);
        let mut index = FacetIndex::build(&connection).unwrap();
        assert_eq!(index.len(), 2_000);
        assert_same_as_sql(&mut index, &connection);
    }

    #[test]
    fn catches_up_with_changes() {
        let connection = varied_store(2_000);
        let mut index = FacetIndex::build(&connection).unwrap();
        connection.execute_batch(MIXED_CHANGES).unwrap();
        assert_same_as_sql(&mut index, &connection);

        // New alerts, one of them in a category no alert had.
        connection
            .execute_batch(
                "INSERT INTO alerts (id, key, title, message, details, level, level_rank,
                     category, state, object_type, object_name, cluster, namespace,
                     domain_name, console_url, payload, first_received_ms, last_received_ms)
                 SELECT 'copy-' || id, key, title, message, details, level, level_rank,
                     CASE WHEN seq = 10 THEN 'Security' ELSE category END, state,
                     object_type, object_name, cluster, namespace, domain_name, console_url,
                     payload, first_received_ms, last_received_ms
                 FROM alerts WHERE seq % 10 = 0;",
            )
            .unwrap();
        assert_same_as_sql(&mut index, &connection);
        let security = AlertFilter {
            conditions: vec![condition(Field::Category, false, &["Security"])],
            ..AlertFilter::default()
        };
        assert_eq!(
            index
                .summary(&connection, &security)
                .unwrap()
                .unwrap()
                .total,
            1
        );
    }

    /// SQLite gives a new alert the `seq` of a deleted last alert again. The copy counts the
    /// new alert whether it catches up before or after the insert.
    #[test]
    fn counts_new_alert_with_seq_of_deleted_one() {
        let connection = varied_store(50);
        let mut index = FacetIndex::build(&connection).unwrap();
        let copy_last = "INSERT INTO alerts (id, key, title, message, details, level, level_rank,
                 category, state, object_type, object_name, cluster, namespace, domain_name,
                 console_url, payload, first_received_ms, last_received_ms)
             SELECT ?1, key, title, message, details, 'Fresh', 0, category, state,
                 object_type, object_name, cluster, namespace, domain_name, console_url,
                 payload, first_received_ms, last_received_ms
             FROM alerts WHERE seq = 1";
        let fresh = AlertFilter {
            conditions: vec![condition(Field::Level, false, &["Fresh"])],
            ..AlertFilter::default()
        };

        connection
            .execute("DELETE FROM alerts WHERE seq = 50", [])
            .unwrap();
        connection.execute(copy_last, ["new-1"]).unwrap();
        let seq: i64 = connection
            .query_row("SELECT seq FROM alerts WHERE id = 'new-1'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(seq, 50);
        assert_eq!(
            index.summary(&connection, &fresh).unwrap().unwrap().total,
            1
        );

        connection
            .execute("DELETE FROM alerts WHERE seq = 50", [])
            .unwrap();
        assert_eq!(
            index.summary(&connection, &fresh).unwrap().unwrap().total,
            0
        );
        connection.execute(copy_last, ["new-2"]).unwrap();
        assert_eq!(
            index.summary(&connection, &fresh).unwrap().unwrap().total,
            1
        );
        assert_same_as_sql(&mut index, &connection);
    }

    #[test]
    fn stale_once_log_trimmed_past_it() {
        let connection = varied_store(2_000);
        let mut index = FacetIndex::build(&connection).unwrap();
        // Ten updates of every alert: 20,000 entries, more than the log keeps.
        for round in 0..10 {
            connection
                .execute("UPDATE alerts SET read_ms = ?1", [round])
                .unwrap();
        }
        let logged: i64 = connection
            .query_row("SELECT count(*) FROM alert_changes", [], |row| row.get(0))
            .unwrap();
        assert!((16_384..=16_384 + 1_024).contains(&logged), "{logged}");

        let filter = AlertFilter::default();
        assert_eq!(index.summary(&connection, &filter).unwrap(), None);
        assert!(index.is_stale());
        let mut rebuilt = FacetIndex::build(&connection).unwrap();
        assert!(!rebuilt.is_stale());
        assert_same_as_sql(&mut rebuilt, &connection);
    }

    #[test]
    fn declines_fields_outside_copy() {
        let connection = varied_store(10);
        let mut index = FacetIndex::build(&connection).unwrap();
        for field in [Field::ObjectName, Field::Key] {
            let filter = AlertFilter {
                conditions: vec![condition(field, false, &["x"])],
                ..AlertFilter::default()
            };
            assert_eq!(index.summary(&connection, &filter).unwrap(), None);
        }
        // A condition without values tests nothing.
        let empty = AlertFilter {
            conditions: vec![condition(Field::ObjectName, false, &[])],
            ..AlertFilter::default()
        };
        assert!(index.summary(&connection, &empty).unwrap().is_some());
    }

    #[test]
    fn keeps_invalid_utf8_values_apart() {
        let connection = varied_store(200);
        connection
            .execute_batch(
                "UPDATE alerts SET category = CAST(X'FF' AS TEXT) WHERE seq % 3 = 0;
                 UPDATE alerts SET category = CAST(X'FE' AS TEXT) WHERE seq % 3 = 1;",
            )
            .unwrap();
        let mut index = FacetIndex::build(&connection).unwrap();
        // SQLite reads the counters as text, which fails on these values, so the filter is
        // one that SQLite counts alert by alert.
        let filter = AlertFilter {
            conditions: vec![condition(Field::Level, false, &["Low", "High"])],
            text: "memory".to_owned(),
            ..AlertFilter::default()
        };
        let counted = index.summary(&connection, &filter).unwrap().unwrap();
        let category = &counted.facets[1];
        assert_eq!(category.field, Field::Category);
        let replaced = category
            .values
            .iter()
            .filter(|(value, _)| value == "\u{FFFD}")
            .count();
        assert_eq!(replaced, 2, "{category:?}");
        assert_eq!(counted, query::facet_summary(&connection, &filter).unwrap());
    }

    /// Values of types the app never writes, and a `seq` at its maximum, after which
    /// SQLite picks new ones at random, make the copy decline every filter. (A number
    /// written to a text column is stored as text.)
    #[test]
    fn declines_unusual_stores() {
        let filter = AlertFilter {
            conditions: vec![
                condition(Field::Level, false, &["Low"]),
                condition(Field::State, false, &["New"]),
            ],
            ..AlertFilter::default()
        };
        for change in [
            "UPDATE alerts SET cluster = X'41' WHERE seq = 3",
            "UPDATE alerts SET last_received_ms = 1.5 WHERE seq = 3",
            "UPDATE alerts SET snoozed_until_ms = 'later' WHERE seq = 3",
            "UPDATE alerts SET level_rank = 9 WHERE seq = 3",
            "UPDATE alerts SET seq = 9223372036854775807 WHERE seq = 3",
        ] {
            let connection = varied_store(20);
            let mut index = FacetIndex::build(&connection).unwrap();
            assert!(index.summary(&connection, &filter).unwrap().is_some());
            connection.execute_batch(change).unwrap();
            assert_eq!(
                index.summary(&connection, &filter).unwrap(),
                None,
                "{change}"
            );
            assert!(!index.is_stale(), "{change}");
            let mut rebuilt = FacetIndex::build(&connection).unwrap();
            assert_eq!(
                rebuilt.summary(&connection, &filter).unwrap(),
                None,
                "{change}"
            );
        }
    }

    #[test]
    fn change_log_names_each_column() {
        let connection = varied_store(5);
        let columns = [
            "level = 'Other'",
            "level_rank = 0",
            "category = 'Other'",
            "cluster = 'Other'",
            "namespace = 'Other'",
            "state = 'Other'",
            "object_type = 'Other'",
            "last_received_ms = 1",
            "read_ms = 1",
            "acknowledged_ms = 1",
            "snoozed_until_ms = 1",
            "archived_ms = 1",
        ];
        let logged = |seq: i64| -> i64 {
            connection
                .query_row(
                    "SELECT count(*) FROM alert_changes WHERE seq = ?1",
                    [seq],
                    |row| row.get(0),
                )
                .unwrap()
        };
        for assignment in columns {
            let before = logged(2);
            connection
                .execute(&format!("UPDATE alerts SET {assignment} WHERE seq = 2"), [])
                .unwrap();
            assert_eq!(logged(2), before + 1, "{assignment}");
        }
        // A note and text outside the copy write no entry.
        connection
            .execute(
                "UPDATE alerts SET note = 'n', title = 't' WHERE seq = 3",
                [],
            )
            .unwrap();
        assert_eq!(logged(3), 0);
        connection
            .execute("DELETE FROM alerts WHERE seq = 3", [])
            .unwrap();
        assert_eq!(logged(3), 1);
    }

    #[test]
    fn matches_only_its_database() {
        let dir = tempfile::tempdir().unwrap();
        let (store, connection) = crate::store::Store::open(dir.path()).unwrap();
        let index = FacetIndex::build(&connection).unwrap();
        assert!(index.matches_database(&store.open_inbox_connection().unwrap()));
        let other = tempfile::tempdir().unwrap();
        let (_, elsewhere) = crate::store::Store::open(other.path()).unwrap();
        assert!(!index.matches_database(&elsewhere));
    }
}
