//! The one thread that writes deliveries, with group commit.
//!
//! Handlers send a [`Delivery`] over a bounded channel and wait for its [`Outcome`]. The
//! thread takes everything queued (up to [`MAX_BATCH`]), writes it in one transaction,
//! commits, and only then replies to each waiting handler and broadcasts an [`AlertEvent`]
//! per stored alert. When the commit fails, every delivery of the batch gets the error and
//! nothing of the batch is kept. The bounded channel makes handlers wait when the disk
//! falls behind, so memory stays flat during a storm.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::StoreError;
use crate::model::{AlertRecord, Level};

/// Most deliveries committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Deliveries that may wait for the writer before handlers block.
const QUEUE_CAPACITY: usize = 4096;
/// How often old delivery-log rows are removed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How often queued alerts are added to the full-text index; search lags by at most this
/// much plus the time to index a backlog.
const FTS_INTERVAL: Duration = Duration::from_millis(100);
/// How often the checkpoint thread copies committed pages into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(2000);
/// Most alerts indexed in one transaction, so indexing never holds up deliveries for long.
const FTS_BATCH: i64 = 5_000;

/// The result of one request to the webhook path, as stored in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new alert, or a newer version of a known one.
    Stored,
    /// The same version of a known alert again.
    Duplicate,
    /// An older version than the one stored; counted, not applied.
    Outdated,
    Unauthorized,
    BadSignature,
    Malformed,
    TooLarge,
    Unsupported,
    MethodNotAllowed,
    /// The payload's `timestamp` was outside the accepted age.
    Stale,
    /// The body did not arrive in time.
    Timeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Outdated => "outdated",
            Self::Unauthorized => "unauthorized",
            Self::BadSignature => "bad_signature",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Unsupported => "unsupported",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Stale => "stale",
            Self::Timeout => "timeout",
        }
    }
}

/// The listener a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Loopback,
    Tunnel,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Tunnel => "tunnel",
        }
    }
}

/// One request to the webhook path, as the delivery log records it.
#[derive(Debug)]
pub struct Delivery {
    pub received_ms: i64,
    pub remote_addr: String,
    pub via: Via,
    pub method: String,
    pub path: String,
    pub body_size: usize,
    pub body_sha256: String,
    /// Request headers as JSON, without credentials; only for authenticated requests.
    pub headers: Option<String>,
    /// The raw body; only for authenticated requests.
    pub body: Option<bytes::Bytes>,
    pub verdict: Verdict,
}

/// The receiver's decision before storage.
#[derive(Debug)]
pub enum Verdict {
    /// Authenticated and parsed: store the alert; the writer decides the outcome.
    Alert(Box<AlertRecord>),
    /// Rejected before storage: only the log row is written.
    Rejected {
        outcome: Outcome,
        status: u16,
        reason: String,
    },
}

/// A change to a stored alert, for the window, tray and notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventKind {
    New,
    Updated,
    Repeated,
}

/// Sent after the commit that stored an alert delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub kind: AlertEventKind,
    pub id: String,
    pub title: String,
    pub level: String,
    /// The level before this delivery, for updates.
    pub previous_level: Option<String>,
    pub cluster: String,
    pub namespace: String,
    pub object_type: String,
    pub object_name: String,
    /// `consoleUrl` when it is a safe http(s) URL.
    pub console_url: Option<String>,
}

struct Job {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Outcome, Arc<StoreError>>>,
}

/// Sends deliveries to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    sender: mpsc::Sender<Job>,
    events: broadcast::Sender<AlertEvent>,
}

/// Settings of the delivery log's retention.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
}

impl WriterHandle {
    /// Starts the writer thread on `connection`. The thread ends when every handle is gone.
    ///
    /// With a `checkpointer` connection, WAL checkpoints run on a thread of their own
    /// instead of inside the commit that crosses SQLite's threshold, so copying pages into
    /// the database file does not hold up deliveries.
    pub fn spawn(
        connection: Connection,
        checkpointer: Option<Connection>,
        retention: Retention,
    ) -> (Self, thread::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (events, _) = broadcast::channel(1024);
        let thread_events = events.clone();

        let stop_checkpoints = checkpointer.map(|checkpointer| {
            if let Err(error) = connection.pragma_update(None, "wal_autocheckpoint", 0) {
                tracing::warn!(%error, "failed to turn off automatic checkpoints");
            }
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            thread::Builder::new()
                .name("store-checkpoint".to_owned())
                .spawn(move || checkpoint_until_stopped(&checkpointer, &stopped))
                .expect("failed to spawn the checkpoint thread");
            stop
        });

        let join = thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || {
                run(connection, receiver, thread_events, retention);
                // Dropping the sender ends the checkpoint thread after a last checkpoint.
                drop(stop_checkpoints);
            })
            .expect("failed to spawn the store writer thread");
        (Self { sender, events }, join)
    }

    /// Writes `delivery` and returns its outcome once it is committed.
    pub async fn submit(&self, delivery: Delivery) -> Result<Outcome, Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job { delivery, reply })
            .await
            .map_err(|_| Arc::new(StoreError::WriterStopped))?;
        answer
            .await
            .map_err(|_| Arc::new(StoreError::WriterStopped))?
    }

    /// Subscribes to events for alerts stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }
}

fn run(
    mut connection: Connection,
    mut receiver: mpsc::Receiver<Job>,
    events: broadcast::Sender<AlertEvent>,
    retention: Retention,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_prune = Instant::now() - PRUNE_INTERVAL;
    let mut last_index = Instant::now();
    // Alerts from before a restart may still wait for the full-text index.
    let mut index_due = true;
    let mut failing = false;
    let mut index_failing = false;
    // Only for waiting on the channel with a timeout; the thread does no other async work.
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("failed to build the store writer's timer");

    loop {
        let job = if index_due {
            let wait = FTS_INTERVAL.saturating_sub(last_index.elapsed());
            match waiter.block_on(async { tokio::time::timeout(wait, receiver.recv()).await }) {
                Ok(Some(job)) => Some(job),
                Ok(None) => break,
                Err(_) => None,
            }
        } else {
            match receiver.blocking_recv() {
                Some(job) => Some(job),
                None => break,
            }
        };

        if let Some(job) = job {
            batch.push(job);
            drain(&mut receiver, &mut batch);
            finish_batch(&mut connection, &mut batch, &events, &mut failing);
            index_due = true;
        }

        if index_due && last_index.elapsed() >= FTS_INTERVAL {
            index_due = match try_index_pending(&mut connection) {
                Ok(more) => {
                    index_failing = false;
                    more
                }
                Err(error) => {
                    // Logged once per failing period, so a full disk does not flood the log.
                    if !index_failing {
                        tracing::warn!(%error, "failed to update the full-text index; retrying later");
                        index_failing = true;
                    }
                    false
                }
            };
            last_index = Instant::now();
        }
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            last_prune = Instant::now();
            match super::deliveries::prune(&connection, retention) {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "pruned delivery log"),
                Err(error) => tracing::warn!(%error, "failed to prune delivery log"),
            }
        }
    }
    // Index what is still queued, so a search right after shutdown finds every alert, and
    // apply the retention once more, so a short run also leaves a bounded log.
    index_all_pending(&mut connection);
    if let Err(error) = super::deliveries::prune(&connection, retention) {
        tracing::warn!(%error, "failed to prune delivery log");
    }
    tracing::debug!("store writer stopped");
}

/// Runs a passive checkpoint every [`CHECKPOINT_INTERVAL`] until `stopped` disconnects,
/// then a final one that also truncates the WAL file.
fn checkpoint_until_stopped(connection: &Connection, stopped: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let mode = match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) | Ok(()) => "PASSIVE",
            Err(RecvTimeoutError::Disconnected) => "TRUNCATE",
        };
        let result =
            connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
        if let Err(error) = result {
            tracing::warn!(%error, mode, "WAL checkpoint failed");
        }
        if mode == "TRUNCATE" {
            return;
        }
    }
}

/// Moves every queued job into `batch`, up to [`MAX_BATCH`].
fn drain(receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Commits `batch`, then replies to each job and publishes its event.
fn finish_batch(
    connection: &mut Connection,
    batch: &mut Vec<Job>,
    events: &broadcast::Sender<AlertEvent>,
    failing: &mut bool,
) {
    match write_batch(connection, batch) {
        Ok(results) => {
            if *failing {
                tracing::info!("store writes succeed again");
                *failing = false;
            }
            for (job, (outcome, event)) in batch.drain(..).zip(results) {
                if let Some(event) = event {
                    // No subscriber is fine: the headless receiver has none.
                    let _ = events.send(event);
                }
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            // Logged once per failing period, so a full disk does not flood the log.
            if !*failing {
                tracing::error!(%error, deliveries = batch.len(), "failed to commit deliveries; responding 503 until writes succeed");
                *failing = true;
            }
            let error = Arc::new(error);
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(Arc::clone(&error)));
            }
        }
    }
}

/// Indexes every queued alert, for tools that fill the store without the writer.
pub fn index_all_pending(connection: &mut Connection) {
    while index_pending(connection) {}
}

/// Indexes up to [`FTS_BATCH`] queued alerts; returns whether more are queued. A failure
/// is logged as a warning and returns `false`.
fn index_pending(connection: &mut Connection) -> bool {
    try_index_pending(connection).unwrap_or_else(|error| {
        tracing::warn!(%error, "failed to update the full-text index; retrying later");
        false
    })
}

/// Indexes up to [`FTS_BATCH`] queued alerts; returns whether more are queued.
fn try_index_pending(connection: &mut Connection) -> Result<bool, StoreError> {
    (|| -> Result<bool, StoreError> {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction
            .prepare_cached(
                "CREATE TEMP TABLE IF NOT EXISTS fts_batch (seq INTEGER PRIMARY KEY, replace INTEGER)",
            )?
            .execute([])?;
        transaction
            .prepare_cached("DELETE FROM temp.fts_batch")?
            .execute([])?;
        let queued = transaction
            .prepare_cached(
                "INSERT INTO temp.fts_batch SELECT seq, replace FROM alerts_fts_pending
                 ORDER BY seq LIMIT ?1",
            )?
            .execute([FTS_BATCH])?;
        if queued == 0 {
            return Ok(false);
        }
        transaction
            .prepare_cached(
                "DELETE FROM alerts_fts WHERE rowid IN (SELECT seq FROM temp.fts_batch WHERE replace)",
            )?
            .execute([])?;
        transaction
            .prepare_cached(
                "INSERT INTO alerts_fts (rowid, title, message, details, object_name, cluster, namespace)
                 SELECT a.seq, a.title, a.message, a.details, a.object_name, a.cluster, a.namespace
                 FROM temp.fts_batch b JOIN alerts a ON a.seq = b.seq",
            )?
            .execute([])?;
        transaction
            .prepare_cached(
                "DELETE FROM alerts_fts_pending WHERE seq IN (SELECT seq FROM temp.fts_batch)",
            )?
            .execute([])?;
        transaction.commit()?;
        Ok(queued as i64 == FTS_BATCH)
    })()
}

type JobResult = (Outcome, Option<AlertEvent>);

fn write_batch(connection: &mut Connection, batch: &[Job]) -> Result<Vec<JobResult>, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let delivery = &job.delivery;
        let result = match &delivery.verdict {
            Verdict::Alert(alert) => store_alert(&transaction, delivery, alert)?,
            Verdict::Rejected {
                outcome,
                status,
                reason,
            } => {
                super::deliveries::insert(
                    &transaction,
                    delivery,
                    *outcome,
                    *status,
                    reason,
                    None,
                    true,
                )?;
                (*outcome, None)
            }
        };
        results.push(result);
    }
    transaction.commit()?;
    Ok(results)
}

/// Logs the delivery and inserts a new alert or applies a newer version; returns the
/// outcome and the event. A stored version's body lives in `alerts.payload` only.
fn store_alert(
    connection: &Connection,
    delivery: &Delivery,
    alert: &AlertRecord,
) -> Result<JobResult, StoreError> {
    let existing: Option<(Option<i64>, String, String)> = connection
        .prepare_cached("SELECT updated_ns, level, delivery_ids FROM alerts WHERE id = ?1")?
        .query_row([&alert.id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;

    // A missing `updated` sorts below any present one.
    let outcome = match &existing {
        None => Outcome::Stored,
        Some((stored_updated, _, _)) => match alert.updated.cmp(stored_updated) {
            std::cmp::Ordering::Greater => Outcome::Stored,
            std::cmp::Ordering::Equal => Outcome::Duplicate,
            std::cmp::Ordering::Less => Outcome::Outdated,
        },
    };
    let keep_body = outcome != Outcome::Stored;
    let delivery_id = super::deliveries::insert(
        connection,
        delivery,
        outcome,
        200,
        "",
        Some(&alert.id),
        keep_body,
    )?;
    let received_ms = delivery.received_ms;

    let Some((_, stored_level, delivery_ids)) = existing else {
        insert_alert(connection, alert, received_ms, delivery_id)?;
        return Ok((outcome, Some(event(AlertEventKind::New, alert, None))));
    };
    if outcome == Outcome::Stored {
        // The replaced payload moves to the delivery row it came from, so it is kept.
        connection
            .prepare_cached(
                "UPDATE deliveries SET body = (SELECT payload FROM alerts WHERE id = ?1)
                 WHERE id = (SELECT payload_delivery_id FROM alerts WHERE id = ?1) AND body IS NULL",
            )?
            .execute([&alert.id])?;
        let delivery_ids = append_delivery_id(&delivery_ids, delivery_id);
        update_alert(connection, alert, received_ms, delivery_id, &delivery_ids)?;
        let event = event(AlertEventKind::Updated, alert, Some(stored_level));
        return Ok((outcome, Some(event)));
    }

    connection
        .prepare_cached(
            "UPDATE alerts SET delivery_count = delivery_count + 1,
                 last_received_ms = max(last_received_ms, ?2), delivery_ids = ?3
             WHERE id = ?1",
        )?
        .execute(params![
            alert.id,
            received_ms,
            append_delivery_id(&delivery_ids, delivery_id)
        ])?;
    let event = event(AlertEventKind::Repeated, alert, Some(stored_level));
    Ok((outcome, Some(event)))
}

/// Delivery-log ids kept per alert; older ones drop off the alert's history.
const MAX_DELIVERY_IDS: usize = 100;

/// Appends `id` to a space-separated id list, keeping the newest [`MAX_DELIVERY_IDS`].
fn append_delivery_id(ids: &str, id: i64) -> String {
    let mut kept: Vec<&str> = ids.split_whitespace().collect();
    let excess = (kept.len() + 1).saturating_sub(MAX_DELIVERY_IDS);
    kept.drain(..excess);
    let id = id.to_string();
    kept.push(&id);
    kept.join(" ")
}

fn insert_alert(
    connection: &Connection,
    alert: &AlertRecord,
    received_ms: i64,
    delivery_id: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO alerts (id, key, title, message, details, level, level_rank, category,
                 state, object_type, object_name, cluster, namespace, domain_name, console_url,
                 created_ns, updated_ns, expires_ns, postponed_until_ns, payload,
                 payload_delivery_id, delivery_ids, first_received_ms, last_received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19, ?20, ?22, CAST(?22 AS TEXT), ?21, ?21)",
        )?
        .execute(params![
            alert.id,
            alert.key,
            alert.title,
            alert.message,
            alert.details,
            alert.level,
            Level::rank(&alert.level),
            alert.category,
            alert.state,
            alert.object_type,
            alert.object_name,
            alert.cluster,
            alert.namespace,
            alert.domain_name,
            alert.console_url,
            alert.created,
            alert.updated,
            alert.expires,
            alert.postponed_until,
            alert.payload,
            received_ms,
            delivery_id,
        ])?;
    Ok(())
}

/// Replaces the sender's fields; the triage columns are left as they are.
fn update_alert(
    connection: &Connection,
    alert: &AlertRecord,
    received_ms: i64,
    delivery_id: i64,
    delivery_ids: &str,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE alerts SET key = ?2, title = ?3, message = ?4, details = ?5, level = ?6,
                 level_rank = ?7, category = ?8, state = ?9, object_type = ?10,
                 object_name = ?11, cluster = ?12, namespace = ?13, domain_name = ?14,
                 console_url = ?15, created_ns = ?16, updated_ns = ?17, expires_ns = ?18,
                 postponed_until_ns = ?19, payload = ?20, payload_delivery_id = ?22,
                 delivery_ids = ?23,
                 delivery_count = delivery_count + 1,
                 last_received_ms = max(last_received_ms, ?21)
             WHERE id = ?1",
        )?
        .execute(params![
            alert.id,
            alert.key,
            alert.title,
            alert.message,
            alert.details,
            alert.level,
            Level::rank(&alert.level),
            alert.category,
            alert.state,
            alert.object_type,
            alert.object_name,
            alert.cluster,
            alert.namespace,
            alert.domain_name,
            alert.console_url,
            alert.created,
            alert.updated,
            alert.expires,
            alert.postponed_until,
            alert.payload,
            received_ms,
            delivery_id,
            delivery_ids,
        ])?;
    Ok(())
}

fn event(kind: AlertEventKind, alert: &AlertRecord, previous_level: Option<String>) -> AlertEvent {
    AlertEvent {
        kind,
        id: alert.id.clone(),
        title: alert.title.clone(),
        level: alert.level.clone(),
        previous_level,
        cluster: alert.cluster.clone(),
        namespace: alert.namespace.clone(),
        object_type: alert.object_type.clone(),
        object_name: alert.object_name.clone(),
        console_url: crate::model::safe_console_url(&alert.console_url).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_keep_newest() {
        assert_eq!(append_delivery_id("", 7), "7");
        assert_eq!(append_delivery_id("1 2", 3), "1 2 3");
        let full: Vec<String> = (1..=MAX_DELIVERY_IDS as i64)
            .map(|id| id.to_string())
            .collect();
        let appended = append_delivery_id(&full.join(" "), 101);
        let kept: Vec<&str> = appended.split(' ').collect();
        assert_eq!(kept.len(), MAX_DELIVERY_IDS);
        assert_eq!(kept[0], "2");
        assert_eq!(kept[MAX_DELIVERY_IDS - 1], "101");
    }
}
