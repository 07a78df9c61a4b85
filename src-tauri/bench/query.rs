//! The query benchmark: the inbox's queries on a store of synthetic alerts.
//!
//! The alerts spread over 20 clusters, 60 namespaces, four levels (weighted towards Low),
//! five states, six categories, eight object kinds and a year of receive times; a tenth
//! are read, a twentieth acknowledged and a fiftieth archived. The store is filled once
//! per data directory and reused by later runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alert_inbox::model::Level;
use alert_inbox::store::facet_index::FacetIndex;
use alert_inbox::store::query::{self, AlertFilter, Condition, Field};
use alert_inbox::store::triage::{self, TriageAction};
use alert_inbox::store::{now_ms, Store};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::params;

use super::stats::{ms, percentile};

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Alerts in the store; missing ones are generated first
    #[arg(long, default_value_t = 1_000_000)]
    alerts: usize,
    /// Directory of the store, kept between runs [default: a new temporary directory]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Timed runs of each query (after one untimed run)
    #[arg(long, default_value_t = 9)]
    runs: usize,
}

const LEVELS: [(&str, u32); 4] = [("Low", 50), ("Medium", 30), ("High", 15), ("Critical", 5)];
const STATES: [&str; 5] = ["New", "Active", "Postponed", "Resolved", "Expired"];
const CATEGORIES: [&str; 6] = [
    "Health",
    "Capacity",
    "Cost",
    "Security",
    "Configuration",
    "Reliability",
];
const KINDS: [&str; 8] = [
    "Pod",
    "Node",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "Namespace",
    "Cluster",
];
/// Full-text searches timed, from common words to a word that matches nothing.
const SEARCHES: [&str; 5] = [
    "memory",
    "certificate expiring",
    "crashloop image pull",
    "zzzz-no-such-word",
    "pressure cluster-07",
];

const WORDS: [&str; 24] = [
    "memory",
    "pressure",
    "restarted",
    "OOMKilled",
    "throttled",
    "pending",
    "evicted",
    "disk",
    "latency",
    "certificate",
    "expiring",
    "replicas",
    "unavailable",
    "crashloop",
    "image",
    "pull",
    "quota",
    "exceeded",
    "network",
    "policy",
    "volume",
    "mount",
    "failed",
    "probe",
];

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let opened = Instant::now();
    let (store, mut connection) = Store::open(&data_dir)?;
    println!(
        "opened the store, with any migrations, in {:.1} s",
        opened.elapsed().as_secs_f64()
    );

    let existing: i64 =
        connection.query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))?;
    if (existing as usize) < args.alerts {
        let started = Instant::now();
        fill(&mut connection, existing as usize, args.alerts)?;
        alert_inbox::store::writer::index_all_pending(&mut connection);
        println!(
            "generated {} alerts in {:.1} s",
            args.alerts - existing as usize,
            started.elapsed().as_secs_f64()
        );
        connection.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
    } else if indexes_without_statistics(&connection)? > 0 {
        // A migration that replaced indexes of a filled store left them without statistics.
        let started = Instant::now();
        connection.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
        println!(
            "analyzed the migrated store in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let total: i64 = connection.query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))?;
    let size = std::fs::metadata(store.path())?.len();
    println!(
        "store: {total} alerts, {} MiB at {}",
        size / (1024 * 1024),
        store.path().display()
    );

    // The connection the window reads through; the CLI's read-only one is set up alike.
    let reader = store.open_inbox_connection()?;
    let condition = |field, values: &[&str]| Condition {
        field,
        negate: false,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    // One alert's object name and key, from the middle of the store.
    let (object_name, key): (String, String) = reader.query_row(
        "SELECT object_name, key FROM alerts
         WHERE seq >= (SELECT (min(seq) + max(seq)) / 2 FROM alerts) ORDER BY seq LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let day_ago = now_ms() - 86_400_000;
    let week_ago = now_ms() - 7 * 86_400_000;
    let cases: Vec<(&str, AlertFilter)> = vec![
        ("no filter", AlertFilter::default()),
        (
            "level=High",
            AlertFilter {
                conditions: vec![condition(Field::Level, &["High"])],
                ..Default::default()
            },
        ),
        (
            "level=Critical",
            AlertFilter {
                conditions: vec![condition(Field::Level, &["Critical"])],
                ..Default::default()
            },
        ),
        (
            "cluster=cluster-07",
            AlertFilter {
                conditions: vec![condition(Field::Cluster, &["cluster-07"])],
                ..Default::default()
            },
        ),
        (
            "namespace=ns-42",
            AlertFilter {
                conditions: vec![condition(Field::Namespace, &["ns-42"])],
                ..Default::default()
            },
        ),
        (
            "state=Postponed",
            AlertFilter {
                conditions: vec![condition(Field::State, &["Postponed"])],
                ..Default::default()
            },
        ),
        (
            "category=Security",
            AlertFilter {
                conditions: vec![condition(Field::Category, &["Security"])],
                ..Default::default()
            },
        ),
        (
            "objectType=StatefulSet",
            AlertFilter {
                conditions: vec![condition(Field::ObjectType, &["StatefulSet"])],
                ..Default::default()
            },
        ),
        (
            "is:unread",
            AlertFilter {
                conditions: vec![condition(Field::Status, &["unread"])],
                ..Default::default()
            },
        ),
        (
            "is:acknowledged",
            AlertFilter {
                conditions: vec![condition(Field::Status, &["acknowledged"])],
                ..Default::default()
            },
        ),
        (
            "is:archived",
            AlertFilter {
                conditions: vec![condition(Field::Status, &["archived"])],
                ..Default::default()
            },
        ),
        (
            "level>=High",
            AlertFilter {
                min_level: Some(Level::High),
                ..Default::default()
            },
        ),
        (
            "received in last day",
            AlertFilter {
                since_ms: Some(day_ago),
                ..Default::default()
            },
        ),
        (
            "level=Critical cluster=cluster-07",
            AlertFilter {
                conditions: vec![
                    condition(Field::Level, &["Critical"]),
                    condition(Field::Cluster, &["cluster-07"]),
                ],
                ..Default::default()
            },
        ),
        (
            "level=Critical cluster=cluster-07 ns=ns-42 is:unread",
            AlertFilter {
                conditions: vec![
                    condition(Field::Level, &["Critical"]),
                    condition(Field::Cluster, &["cluster-07"]),
                    condition(Field::Namespace, &["ns-42"]),
                    condition(Field::Status, &["unread"]),
                ],
                ..Default::default()
            },
        ),
        (
            "ns=ns-42 state=Postponed category=Security objectType=StatefulSet",
            AlertFilter {
                conditions: vec![
                    condition(Field::Namespace, &["ns-42"]),
                    condition(Field::State, &["Postponed"]),
                    condition(Field::Category, &["Security"]),
                    condition(Field::ObjectType, &["StatefulSet"]),
                ],
                ..Default::default()
            },
        ),
        (
            "cluster!=cluster-07 level=High",
            AlertFilter {
                conditions: vec![
                    Condition {
                        negate: true,
                        ..condition(Field::Cluster, &["cluster-07"])
                    },
                    condition(Field::Level, &["High"]),
                ],
                ..Default::default()
            },
        ),
        (
            "cluster!=cluster-07",
            AlertFilter {
                conditions: vec![Condition {
                    negate: true,
                    ..condition(Field::Cluster, &["cluster-07"])
                }],
                ..Default::default()
            },
        ),
        (
            "level=Low is:unread",
            AlertFilter {
                conditions: vec![
                    condition(Field::Level, &["Low"]),
                    condition(Field::Status, &["unread"]),
                ],
                ..Default::default()
            },
        ),
        (
            "received over a week ago",
            AlertFilter {
                until_ms: Some(week_ago),
                ..Default::default()
            },
        ),
        (
            "is:unread, received over a week ago",
            AlertFilter {
                conditions: vec![condition(Field::Status, &["unread"])],
                until_ms: Some(week_ago),
                ..Default::default()
            },
        ),
        (
            "level=Low is:unread !is:archived",
            AlertFilter {
                conditions: vec![
                    condition(Field::Level, &["Low"]),
                    condition(Field::Status, &["unread"]),
                    Condition {
                        negate: true,
                        ..condition(Field::Status, &["archived"])
                    },
                ],
                ..Default::default()
            },
        ),
        (
            "name=(one object name)",
            AlertFilter {
                conditions: vec![condition(Field::ObjectName, &[&object_name])],
                ..Default::default()
            },
        ),
        (
            "name=(one object name) level=Low",
            AlertFilter {
                conditions: vec![
                    condition(Field::ObjectName, &[&object_name]),
                    condition(Field::Level, &["Low"]),
                ],
                ..Default::default()
            },
        ),
        (
            "key=(one alert key)",
            AlertFilter {
                conditions: vec![condition(Field::Key, &[&key])],
                ..Default::default()
            },
        ),
        (
            "name!=(one object name)",
            AlertFilter {
                conditions: vec![Condition {
                    negate: true,
                    ..condition(Field::ObjectName, &[&object_name])
                }],
                ..Default::default()
            },
        ),
        (
            "level=Low cluster=cluster-00..cluster-09",
            AlertFilter {
                conditions: vec![
                    condition(Field::Level, &["Low"]),
                    condition(
                        Field::Cluster,
                        &[
                            "cluster-00",
                            "cluster-01",
                            "cluster-02",
                            "cluster-03",
                            "cluster-04",
                            "cluster-05",
                            "cluster-06",
                            "cluster-07",
                            "cluster-08",
                            "cluster-09",
                        ],
                    ),
                ],
                ..Default::default()
            },
        ),
    ];

    header("first page (100 rows)", "rows");
    for (name, filter) in &cases {
        let (times, rows) = time(args.runs, || {
            query::list(&reader, filter, None, 100).map(|rows| rows.len())
        })?;
        report(name, &times, rows);
    }

    header("count of matching alerts", "count");
    for (name, filter) in &cases {
        let (times, count) = time(args.runs, || {
            query::count(&reader, filter).map(|count| count as usize)
        })?;
        report(name, &times, count);
    }

    header("unread alerts not archived (the tray's count)", "count");
    let inbox = AlertFilter {
        conditions: vec![
            condition(Field::Status, &["unread"]),
            Condition {
                negate: true,
                ..condition(Field::Status, &["archived"])
            },
        ],
        ..Default::default()
    };
    let (times, count) = time(args.runs, || {
        query::count(&reader, &inbox).map(|count| count as usize)
    })?;
    report("count of is:unread !is:archived", &times, count);
    let (times, count) = time(args.runs, || {
        query::unread_in_inbox(&reader).map(|count| count as usize)
    })?;
    report("unread counter less unread archived alerts", &times, count);

    header("full-text search (first page)", "rows");
    let searches: Vec<(String, AlertFilter)> = SEARCHES
        .iter()
        .map(|text| {
            let filter = AlertFilter {
                text: (*text).to_owned(),
                ..Default::default()
            };
            (format!("\"{text}\""), filter)
        })
        .collect();
    for (name, filter) in &searches {
        let (times, rows) = time(args.runs, || {
            query::list(&reader, filter, None, 100).map(|rows| rows.len())
        })?;
        report(name, &times, rows);
    }
    header("full-text search (count of matches)", "count");
    for (name, filter) in &searches {
        let (times, count) = time(args.runs, || {
            query::count(&reader, filter).map(|count| count as usize)
        })?;
        report(name, &times, count);
    }

    header("facet counts (all fields) and total", "values");
    let facet_cases = [
        "no filter",
        "level=High",
        "level=Critical",
        "cluster=cluster-07",
        "namespace=ns-42",
        "state=Postponed",
        "category=Security",
        "objectType=StatefulSet",
        "is:unread",
        "is:acknowledged",
        "level>=High",
        "received in last day",
        "cluster!=cluster-07",
        "level=Critical cluster=cluster-07",
        "level=Critical cluster=cluster-07 ns=ns-42 is:unread",
        "level=Low is:unread",
        "level=Low is:unread !is:archived",
        "level=Low cluster=cluster-00..cluster-09",
        "name=(one object name)",
        "name=(one object name) level=Low",
        "key=(one alert key)",
        "name!=(one object name)",
        "received over a week ago",
        "is:unread, received over a week ago",
    ];
    let facet_filters = cases
        .iter()
        .filter(|(name, _)| facet_cases.contains(name))
        .map(|(name, filter)| ((*name).to_owned(), filter))
        .chain(searches.iter().map(|(name, filter)| (name.clone(), filter)));
    for (name, filter) in facet_filters {
        let (times, values) = time(args.runs, || {
            query::facet_summary(&reader, filter)
                .map(|summary| summary.facets.iter().map(|f| f.values.len()).sum())
        })?;
        report(&name, &times, values);
    }

    // The window counts facets from an in-memory copy of the facet columns.
    let built = Instant::now();
    let mut index = FacetIndex::build(&reader)?;
    println!(
        "\nbuilt the in-memory facet copy of {} alerts in {:.0} ms, {:.1} MiB",
        index.len(),
        built.elapsed().as_secs_f64() * 1000.0,
        index.heap_bytes() as f64 / (1024.0 * 1024.0)
    );
    header("facet counts and total, in-memory copy", "values");
    let facet_filters: Vec<(String, &AlertFilter)> = cases
        .iter()
        .filter(|(name, _)| facet_cases.contains(name))
        .map(|(name, filter)| ((*name).to_owned(), filter))
        .chain(searches.iter().map(|(name, filter)| (name.clone(), filter)))
        .collect();
    for (name, filter) in &facet_filters {
        let (times, summary) = time(args.runs, || index.summary(&reader, filter))?;
        let Some(summary) = summary else {
            println!("{name:<55} {:>12}", "(SQLite)");
            continue;
        };
        anyhow::ensure!(
            summary == query::facet_summary(&reader, filter)?,
            "the copy and SQLite count {name} differently"
        );
        let values = summary.facets.iter().map(|f| f.values.len()).sum();
        report(name, &times, values);
    }

    header("triage update (one alert)", "rows");
    let mut writer = store.open_connection()?;
    let id: String = reader.query_row(
        "SELECT id FROM alerts ORDER BY seq DESC LIMIT 1",
        [],
        |row| row.get(0),
    )?;
    let ids = [id];
    for (name, action) in [
        ("mark read", TriageAction::MarkRead),
        ("mark unread", TriageAction::MarkUnread),
        ("acknowledge", TriageAction::Acknowledge),
        ("archive", TriageAction::Archive),
    ] {
        let (times, rows) = time(args.runs, || triage::apply(&mut writer, &ids, &action))?;
        report(name, &times, rows);
    }
    let (times, rows) = time(args.runs, || {
        let ids: Vec<String> = query::list(&reader, &AlertFilter::default(), None, 100)?
            .into_iter()
            .map(|alert| alert.id)
            .collect();
        triage::apply(&mut writer, &ids, &TriageAction::MarkRead)
    })?;
    report("mark read, 100 alerts (bulk)", &times, rows);

    // The copy reads the changed alerts back before it counts.
    let balanced = facet_filters
        .iter()
        .find(|(name, _)| name == "level=Low cluster=cluster-00..cluster-09")
        .map(|(_, filter)| *filter)
        .ok_or_else(|| anyhow::anyhow!("the balanced filter is missing"))?;
    header("in-memory copy after triage (update and count)", "rows");
    for (name, count) in [("one alert", 1), ("100 alerts", 100)] {
        let ids: Vec<String> = query::list(&reader, &AlertFilter::default(), None, count)?
            .into_iter()
            .map(|alert| alert.id)
            .collect();
        let mut read = false;
        let (times, rows) = time(args.runs, || {
            read = !read;
            let action = if read {
                TriageAction::MarkRead
            } else {
                TriageAction::MarkUnread
            };
            let rows = triage::apply(&mut writer, &ids, &action)?;
            index.summary(&reader, balanced)?;
            Ok(rows)
        })?;
        report(name, &times, rows);
    }
    Ok(())
}

/// Counts indexes of `alerts` that `ANALYZE` has not measured, or 0 if it never ran.
fn indexes_without_statistics(connection: &rusqlite::Connection) -> anyhow::Result<i64> {
    let analyzed: bool = connection.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'sqlite_stat1'",
        [],
        |row| row.get(0),
    )?;
    if !analyzed {
        return Ok(0);
    }
    Ok(connection.query_row(
        "SELECT count(*) FROM sqlite_master AS m
         WHERE m.type = 'index' AND m.tbl_name = 'alerts'
             AND NOT EXISTS (SELECT 1 FROM sqlite_stat1 AS s WHERE s.idx = m.name)",
        [],
        |row| row.get(0),
    )?)
}

fn time<T>(
    runs: usize,
    mut action: impl FnMut() -> Result<T, alert_inbox::store::StoreError>,
) -> anyhow::Result<(Vec<Duration>, T)> {
    let mut result = action()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        result = action()?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok((times, result))
}

/// Prints the heading of a table of timings, after a blank line.
fn header(title: &str, unit: &str) {
    println!(
        "\n{:<55} {:>12} {:>12} {:>12} {:>6}",
        title, "min", "median", "max", unit
    );
}

fn report(name: &str, times: &[Duration], rows: usize) {
    println!(
        "{:<55} {:>12} {:>12} {:>12} {:>6}",
        name,
        ms(times[0]),
        ms(percentile(times, 50.0)),
        ms(times[times.len() - 1]),
        rows
    );
}

fn pick_level(rng: &mut StdRng) -> &'static str {
    let mut roll = rng.random_range(0..100);
    for (level, weight) in LEVELS {
        if roll < weight {
            return level;
        }
        roll -= weight;
    }
    "Low"
}

/// Inserts alerts `from..to` with the same columns the writer fills.
fn fill(connection: &mut rusqlite::Connection, from: usize, to: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(from as u64);
    let now = now_ms();
    let year_ms = 365 * 86_400_000i64;
    let chunk = 50_000;
    let mut start = from;
    while start < to {
        let end = (start + chunk).min(to);
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO alerts (id, key, title, message, details, level, level_rank, category,
                     state, object_type, object_name, cluster, namespace, domain_name, console_url,
                     created_ns, updated_ns, expires_ns, postponed_until_ns, payload, delivery_count,
                     first_received_ms, last_received_ms, read_ms, acknowledged_ms, archived_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, NULL, NULL, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?;
            for index in start..end {
                let id = format!("synthetic-{index:09}");
                let level = pick_level(&mut rng);
                let kind = KINDS[rng.random_range(0..KINDS.len())];
                let cluster = format!("cluster-{:02}", rng.random_range(0..20));
                let namespace = format!("ns-{:02}", rng.random_range(0..60));
                let object = format!("{}-{:05}", kind.to_lowercase(), rng.random_range(0..50_000));
                let words: Vec<&str> = (0..4)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect();
                let title = format!("{kind} {} {}", words[0], words[1]);
                let message = format!(
                    "The check found {} {} on {kind} '{object}'.",
                    words[2], words[3]
                );
                let details = format!(
                    "Observed value {} above threshold {}.",
                    rng.random_range(50..100),
                    90
                );
                let received = now - rng.random_range(0..year_ms);
                let created_ns = (received - 60_000) * 1_000_000;
                let payload = format!(
                    r#"{{"content": {{"id": "{id}", "title": "{title}", "level": "{level}", "metadata": {{"objectType": "{kind}", "objectName": "{object}", "clusterName": "{cluster}", "namespaceName": "{namespace}"}}}}}}"#
                );
                let roll = rng.random_range(0..100);
                let read = (roll < 10).then_some(received + 1000);
                let acknowledged = (roll < 5).then_some(received + 2000);
                let archived = (roll < 2).then_some(received + 3000);
                insert.execute(params![
                    id,
                    format!("{kind}Check::{object}"),
                    title,
                    message,
                    details,
                    level,
                    Level::rank(level),
                    CATEGORIES[rng.random_range(0..CATEGORIES.len())],
                    STATES[rng.random_range(0..STATES.len())],
                    kind,
                    object,
                    cluster,
                    namespace,
                    "Synthetic",
                    format!("https://portal.example/alerts/{id}"),
                    created_ns,
                    created_ns,
                    payload,
                    1,
                    received,
                    received,
                    read,
                    acknowledged,
                    archived,
                ])?;
            }
        }
        transaction.commit()?;
        start = end;
        eprint!("\rgenerating alerts: {start}/{to}");
    }
    eprintln!();
    Ok(())
}
