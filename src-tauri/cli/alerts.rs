//! `alert-inbox alerts` and `alert-inbox deliveries`: read-only views of the store.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Local, Utc};
use clap::Args;

use crate::store::{deliveries, query, AlertFilter, Condition, Field, Store};

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Directory of the alert database [default: the platform's app data dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per alert and line
    #[arg(long)]
    json: bool,
    /// Only these levels (repeat or separate with commas), such as High,Critical
    #[arg(long, value_name = "L", value_delimiter = ',')]
    level: Vec<String>,
    /// Only this cluster (repeatable)
    #[arg(long, value_name = "C", value_delimiter = ',')]
    cluster: Vec<String>,
    /// Only this namespace (repeatable)
    #[arg(long, value_name = "N", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Only this state, such as New or Postponed (repeatable)
    #[arg(long, value_name = "S", value_delimiter = ',')]
    state: Vec<String>,
    /// Only alerts whose title, message, details or object names contain these words
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Only alerts received since TIME: RFC 3339 (2024-09-05T16:20:09Z) or an age (90m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Maximum number of alerts to print
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Directory of the alert database [default: the platform's app data dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per delivery and line, with headers and body
    #[arg(long)]
    json: bool,
    /// Only deliveries of this alert id
    #[arg(long, value_name = "ID")]
    alert: Option<String>,
    /// Maximum number of deliveries to print
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
}

fn open(
    config_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<rusqlite::Connection> {
    let (mut config, _) = super::load_config(config_path)?;
    if let Some(dir) = data_dir {
        config.data_dir = Some(dir);
    }
    let dir = config.resolve_data_dir()?;
    Ok(Store::open_reader(&dir)?)
}

pub fn run_alerts(config_path: Option<PathBuf>, args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let connection = open(config_path, args.data_dir.clone())?;
    let filter = filter_from_args(&args)?;
    let mut out = BufWriter::new(io::stdout().lock());

    if args.json {
        for alert in query::list_json(&connection, &filter, args.limit)? {
            writeln!(out, "{alert}")?;
        }
    } else {
        let alerts = query::list(&connection, &filter, None, args.limit)?;
        writeln!(
            out,
            "{:<19}  {:<8}  {:<10}  {:<40}  {:>5}  TITLE",
            "LAST RECEIVED", "LEVEL", "STATE", "CLUSTER/NAMESPACE", "COUNT"
        )?;
        for alert in &alerts {
            let place = if alert.namespace.is_empty() {
                alert.cluster.clone()
            } else {
                format!("{}/{}", alert.cluster, alert.namespace)
            };
            writeln!(
                out,
                "{:<19}  {:<8}  {:<10}  {:<40}  {:>5}  {}",
                local_time(alert.last_received_ms),
                clip(&alert.level, 8),
                clip(&alert.state, 10),
                clip(&place, 40),
                alert.delivery_count,
                clip(&alert.title, 80)
            )?;
        }
        if alerts.is_empty() {
            writeln!(out, "(no alerts match)")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_deliveries(
    config_path: Option<PathBuf>,
    args: DeliveriesArgs,
) -> anyhow::Result<ExitCode> {
    let connection = open(config_path, args.data_dir)?;
    let rows = deliveries::list(&connection, args.alert.as_deref(), args.limit)?;
    let mut out = BufWriter::new(io::stdout().lock());

    if args.json {
        for row in &rows {
            writeln!(out, "{}", serde_json::to_string(row)?)?;
        }
    } else {
        writeln!(
            out,
            "{:<19}  {:<8}  {:<21}  {:>6}  {:<18}  {:<36}  REASON",
            "RECEIVED", "VIA", "REMOTE", "STATUS", "OUTCOME", "ALERT"
        )?;
        for row in &rows {
            writeln!(
                out,
                "{:<19}  {:<8}  {:<21}  {:>6}  {:<18}  {:<36}  {}",
                local_time(row.received_ms),
                row.via,
                clip(&row.remote_addr, 21),
                row.status,
                row.outcome,
                clip(row.alert_id.as_deref().unwrap_or("-"), 36),
                clip(&row.reason, 100)
            )?;
        }
        if rows.is_empty() {
            writeln!(out, "(no deliveries yet)")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn filter_from_args(args: &AlertsArgs) -> anyhow::Result<AlertFilter> {
    let mut filter = AlertFilter::default();
    for (field, values) in [
        (Field::Level, &args.level),
        (Field::Cluster, &args.cluster),
        (Field::Namespace, &args.namespace),
        (Field::State, &args.state),
    ] {
        if !values.is_empty() {
            filter.conditions.push(Condition {
                field,
                negate: false,
                values: values.clone(),
            });
        }
    }
    filter.text = args.search.clone().unwrap_or_default();
    if let Some(since) = &args.since {
        filter.since_ms = Some(parse_since(since, Utc::now())?);
    }
    Ok(filter)
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90m` counted back from `now`.
pub(crate) fn parse_since(value: &str, now: DateTime<Utc>) -> anyhow::Result<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.timestamp_millis());
    }
    let age = humantime::parse_duration(value).with_context(|| {
        format!("invalid --since {value:?}: use an RFC 3339 time such as 2024-09-05T16:20:09Z or an age such as 90m, 2h or 7d")
    })?;
    let age = chrono::Duration::from_std(age).context("--since age is too large")?;
    Ok((now - age).timestamp_millis())
}

fn local_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|time| {
            time.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// Shortens `text` to `width` characters, marking the cut with an ellipsis.
fn clip(text: &str, width: usize) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() <= width {
        single_line
    } else {
        let mut clipped: String = single_line.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_age_and_time() {
        let now = DateTime::parse_from_rfc3339("2024-09-05T16:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hour_ago = parse_since("1h", now).unwrap();
        assert_eq!(now.timestamp_millis() - hour_ago, 3_600_000);
        let fixed = parse_since("2024-09-05T15:00:00Z", now).unwrap();
        assert_eq!(fixed, hour_ago);
    }

    #[test]
    fn since_error_names_value() {
        let error = parse_since("yesterdayish", Utc::now())
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"yesterdayish\""), "{error}");
    }

    #[test]
    fn clip_marks_cut_and_drops_newlines() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\nb", 10), "a b");
    }
}
