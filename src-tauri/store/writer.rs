//! The threads that write deliveries: the journal thread, which responds, and the writer
//! thread, which applies.
//!
//! Handlers send a [`Delivery`] over a bounded channel and wait for the result. The
//! journal thread takes everything queued (up to [`MAX_BATCH`]), appends it to the
//! journal (see [`super::journal`]) with one write, flushes it to disk, and only then
//! replies to each waiting handler with [`Outcome::Accepted`]. When the write or the flush
//! fails, every delivery of the batch gets the error.
//!
//! The writer thread reads the journal in batches of up to [`APPLY_BATCH`], applies each
//! batch to `alerts.db` in one transaction (new alerts, newer versions, the delivery log)
//! and broadcasts an [`AlertEvent`] per stored alert after the commit. It also fills the
//! full-text index and prunes the delivery log.
//!
//! Nothing queues without bound: the channel makes handlers wait when the journal's disk
//! falls behind, and the journal thread waits when more than [`MAX_BACKLOG`] deliveries
//! are not yet applied. While the writer cannot apply (a full disk), the journal rejects
//! new deliveries, so senders get 503 and retry.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{journal, Store, StoreError};
use crate::model::{AlertRecord, Level};

/// Most deliveries appended to the journal in one write.
pub const MAX_BATCH: usize = 1024;
/// Most journaled deliveries applied to `alerts.db` in one transaction. A batch holds the
/// database's write lock for tens of milliseconds, which a triage update may wait for.
pub const APPLY_BATCH: usize = 1024;
/// A pause in deliveries after which the writer applies a partial batch.
const APPLY_PAUSE: Duration = Duration::from_millis(2);
/// Maximum time the writer collects deliveries for a batch before applying it.
const APPLY_DELAY: Duration = Duration::from_millis(200);
/// Journaled deliveries not yet applied before the journal thread waits for the writer.
const MAX_BACKLOG: i64 = 100_000;
/// Nice value of the writer thread (0 is the default, 19 the lowest priority).
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = 10;
/// Steps of SQLite's virtual machine between the writer's offers of its core to other
/// threads; see [`yield_while_applying`].
const YIELD_STEPS: std::ffi::c_int = 1000;
/// Deliveries that may wait for the writer before handlers block.
const QUEUE_CAPACITY: usize = 4096;
/// How often old delivery-log rows are removed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How often queued alerts are added to the full-text index; search lags by at most this
/// much plus the time to index a backlog.
const FTS_INTERVAL: Duration = Duration::from_millis(100);
/// How often the checkpoint thread copies committed pages into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(2000);
/// Deliveries journaled within one [`CHECKPOINT_INTERVAL`] (500 a second) that make it a
/// storm, during which checkpoints wait.
const STORM_DELIVERIES: i64 = 1_000;
/// Maximum time checkpoints wait for a storm to pass.
const CHECKPOINT_MAX_DELAY: Duration = Duration::from_secs(10);
/// Maximum time the writer keeps applying the journal after the receiver stopped.
const SHUTDOWN_APPLY_LIMIT: Duration = Duration::from_secs(5);
/// How often the writer retries a batch it failed to apply, such as on a full disk.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
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
    /// Journaled and acknowledged; the writer decides one of the outcomes above when it
    /// applies the delivery, and the delivery log records that one.
    Accepted,
    /// Acknowledged, but applying it to the store failed although the disk takes writes;
    /// the delivery log keeps its body and the error.
    Failed,
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
            Self::Accepted => "accepted",
            Self::Failed => "failed",
        }
    }

    /// Returns the outcome named `name`, as [`Outcome::as_str`] spells it.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Stored,
            Self::Duplicate,
            Self::Outdated,
            Self::Unauthorized,
            Self::BadSignature,
            Self::Malformed,
            Self::TooLarge,
            Self::Unsupported,
            Self::MethodNotAllowed,
            Self::Stale,
            Self::Timeout,
            Self::Accepted,
            Self::Failed,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == name)
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

    /// Returns the listener named `name`, as [`Via::as_str`] spells it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Loopback, Self::Tunnel]
            .into_iter()
            .find(|via| via.as_str() == name)
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

/// State the journal thread and the writer thread share.
struct Shared {
    /// The last journal seq flushed to disk.
    head: AtomicI64,
    /// The last journal seq applied to `alerts.db`.
    applied: AtomicI64,
    /// The last journal seq whose application is on disk. The writer commits with
    /// `synchronous = NORMAL`; a checkpoint makes its commits durable, and only records up
    /// to this seq are deleted from the journal.
    durable: AtomicI64,
    /// The error that stops the writer from applying deliveries, while it lasts. The
    /// journal rejects new deliveries meanwhile, so senders retry instead of filling a backlog that the full
    /// or read-only store cannot take.
    failure: Mutex<Option<Arc<StoreError>>>,
}

impl Shared {
    fn failure(&self) -> Option<Arc<StoreError>> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_failure(&self, failure: Option<Arc<StoreError>>) {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = failure;
    }
}

/// Sends deliveries to the journal. Cheap to clone.
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
    /// Starts the journal thread, the writer thread on `connection`, and a checkpoint
    /// thread. The threads end when every handle is gone and the journal is applied; the
    /// returned handle joins them.
    ///
    /// Checkpoints of `alerts.db` run on a thread of their own instead of inside the
    /// commit that crosses SQLite's threshold, so copying pages into the database file
    /// does not hold up the writer.
    pub fn spawn(
        store: &Store,
        mut connection: Connection,
        retention: Retention,
    ) -> Result<(Self, thread::JoinHandle<()>), StoreError> {
        let data_dir = store.data_dir().to_owned();
        apply_legacy_journal(&data_dir, &mut connection)?;
        let applied = journal::applied(&connection)?;
        let appender = journal::Appender::open(&data_dir, applied)?;
        let journal_reader = journal::Reader::new(&data_dir, applied);
        let checkpointer = store.open_connection()?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        // The journal keeps every delivery until a checkpoint has made its application
        // durable, so the writer's commits need no flush of their own.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        let shared = Arc::new(Shared {
            head: AtomicI64::new(appender.head()),
            applied: AtomicI64::new(applied),
            // Nothing is known to be on disk until the first checkpoint.
            durable: AtomicI64::new(0),
            failure: Mutex::new(None),
        });

        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (events, _) = broadcast::channel(1024);
        let thread_events = events.clone();
        let (doorbell, rung) = std::sync::mpsc::sync_channel(1);

        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let checkpoint_shared = Arc::clone(&shared);
        let checkpoint_dir = data_dir.clone();
        let checkpoint_thread = thread::Builder::new()
            .name("store-checkpoint".to_owned())
            .spawn(move || {
                checkpoint_until_stopped(
                    &checkpointer,
                    &checkpoint_dir,
                    &stopped,
                    &checkpoint_shared,
                    journal::SPARE_FILL_QUIET,
                );
            })
            .expect("failed to spawn the checkpoint thread");

        let journal_shared = Arc::clone(&shared);
        let journal_thread = thread::Builder::new()
            .name("store-journal".to_owned())
            .spawn(move || run_journal(appender, receiver, doorbell, &journal_shared))
            .expect("failed to spawn the store journal thread");

        let join = thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || {
                lower_priority();
                let writer = Writer {
                    connection,
                    journal: journal_reader,
                    events: thread_events,
                    shared,
                };
                // Dropping the sender ends the checkpoint thread after a last checkpoint,
                // which makes everything applied durable and removes the journal
                // segments that are no longer needed.
                writer.run(rung, retention);
                drop(stop_checkpoints);
                let _ = checkpoint_thread.join();
                let _ = journal_thread.join();
            })
            .expect("failed to spawn the store writer thread");
        Ok((Self { sender, events }, join))
    }

    /// Journals `delivery` and returns [`Outcome::Accepted`] once it is flushed to disk.
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

/// Gives the calling thread a lower CPU priority than the receiver's threads.
///
/// During a storm the receiver's threads and the writer compete for the same cores. The
/// receiver responds once a delivery is journaled, so it goes first. The writer applies the
/// backlog with the CPU left over, and at once when the machine is idle.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), WRITER_NICE)
    {
        tracing::debug!(%error, "failed to lower the store writer's priority");
    }
}

/// Makes the writer offer its core to other runnable threads every [`YIELD_STEPS`] steps
/// of SQLite's virtual machine, on every statement of `connection`.
///
/// A lower priority alone does not let a receiver thread run as soon as it wakes: the
/// scheduler may first let the writer finish its time slice, which lasts milliseconds. In
/// a storm the receiver's responses would wait for those slices. When no other thread
/// wants the core, the offer costs one system call and the writer goes on.
fn yield_while_applying(connection: &Connection) {
    connection.progress_handler(
        YIELD_STEPS,
        Some(|| {
            thread::yield_now();
            // `false` lets the statement go on.
            false
        }),
    );
}

/// Appends queued deliveries to the journal, a batch per flush, and replies to each one.
fn run_journal(
    mut appender: journal::Appender,
    mut receiver: mpsc::Receiver<Job>,
    doorbell: SyncSender<()>,
    shared: &Shared,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    while let Some(job) = receiver.blocking_recv() {
        batch.push(job);
        drain(&mut receiver, &mut batch);
        if let Some(error) = shared.failure() {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(Arc::clone(&error)));
            }
            continue;
        }
        match appender.append(batch.iter().map(|job| &job.delivery)) {
            Ok(head) => {
                shared.head.fetch_max(head, Ordering::AcqRel);
                if failing {
                    tracing::info!("journal writes succeed again");
                    failing = false;
                }
                let _ = doorbell.try_send(());
                for job in batch.drain(..) {
                    let _ = job.reply.send(Ok(Outcome::Accepted));
                }
                wait_for_backlog(shared, head);
            }
            Err(error) => {
                // Logged once per failing period, so a full disk does not flood the log.
                if !failing {
                    tracing::error!(%error, deliveries = batch.len(), "failed to journal deliveries; responding 503 until writes succeed");
                    failing = true;
                }
                let error = Arc::new(error);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
    drop(appender);
    // The writer applies what is left and stops once the doorbell is gone.
    drop(doorbell);
}

/// Holds the journal thread while more than [`MAX_BACKLOG`] deliveries wait to be applied,
/// so a storm the writer cannot keep up with slows the responses instead of growing the
/// journal without bound.
fn wait_for_backlog(shared: &Shared, head: i64) {
    while head - shared.applied.load(Ordering::Acquire) > MAX_BACKLOG && shared.failure().is_none()
    {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Applies journaled deliveries to `alerts.db` and keeps its full-text index and
/// delivery log in shape.
struct Writer {
    connection: Connection,
    journal: journal::Reader,
    events: broadcast::Sender<AlertEvent>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Applies until the journal thread stops and its last deliveries are applied.
    fn run(mut self, rung: Receiver<()>, retention: Retention) {
        yield_while_applying(&self.connection);
        let mut last_prune = Instant::now() - PRUNE_INTERVAL;
        let mut last_index = Instant::now();
        // Alerts from before a restart may still wait for the full-text index.
        let mut index_due = true;
        let mut failing = false;
        let mut index_failing = false;
        let mut stopping = false;
        // Whether the last round stopped applying with deliveries left, to index them.
        let mut behind = false;

        while !stopping {
            let wait = if behind {
                Duration::ZERO
            } else if failing {
                RETRY_INTERVAL
            } else if index_due {
                FTS_INTERVAL.saturating_sub(last_index.elapsed())
            } else {
                PRUNE_INTERVAL
            };
            match rung.recv_timeout(wait) {
                Ok(()) => stopping = !failing && self.wait_for_batch(&rung),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }

            behind = false;
            loop {
                match self.apply_batch() {
                    Ok(applied) => {
                        if failing {
                            tracing::info!("store writes succeed again");
                            self.shared.set_failure(None);
                            failing = false;
                        }
                        if applied == 0 {
                            break;
                        }
                        index_due = true;
                        if applied < APPLY_BATCH {
                            break;
                        }
                    }
                    Err(error) => {
                        // Logged once per failing period, so a full disk does not flood the log.
                        if !failing {
                            tracing::error!(%error, "failed to commit deliveries; responding 503 until writes succeed");
                            failing = true;
                        }
                        self.shared.set_failure(Some(Arc::new(error)));
                        break;
                    }
                }
                // A long backlog does not hold up search for longer than a batch.
                if last_index.elapsed() >= FTS_INTERVAL * 10 {
                    behind = true;
                    break;
                }
            }

            if index_due && last_index.elapsed() >= FTS_INTERVAL {
                index_due = match try_index_pending(&mut self.connection) {
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
                match super::deliveries::prune(&self.connection, retention) {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "pruned delivery log"),
                    Err(error) => tracing::warn!(%error, "failed to prune delivery log"),
                }
            }
        }
        // The journal thread has stopped. Apply the rest for a bounded time, so a long
        // backlog does not hold up quitting.
        let deadline = Instant::now() + SHUTDOWN_APPLY_LIMIT;
        while Instant::now() < deadline && matches!(self.apply_batch(), Ok(read) if read > 0) {}
        let left =
            self.shared.head.load(Ordering::Acquire) - self.shared.applied.load(Ordering::Acquire);
        if left > 0 {
            tracing::info!(
                left,
                "journaled deliveries not applied before stopping; they are applied at the next start"
            );
        }
        // Index what is still queued, so a search right after shutdown finds every alert,
        // and apply the retention once more, so a short run also leaves a bounded log.
        index_all_pending(&mut self.connection);
        if let Err(error) = super::deliveries::prune(&self.connection, retention) {
            tracing::warn!(%error, "failed to prune delivery log");
        }
        tracing::debug!("store writer stopped");
    }

    /// Waits while deliveries keep arriving, until a whole batch is journaled, the journal
    /// pauses for [`APPLY_PAUSE`], or [`APPLY_DELAY`] passes. Returns whether the journal
    /// thread has stopped.
    ///
    /// A storm is then applied in large batches, which write fewer pages per delivery and
    /// leave the disk to the journal's flushes.
    fn wait_for_batch(&self, rung: &Receiver<()>) -> bool {
        let started = Instant::now();
        loop {
            let head = self.shared.head.load(Ordering::Acquire);
            let backlog = head - self.shared.applied.load(Ordering::Acquire);
            if backlog >= APPLY_BATCH as i64 || started.elapsed() >= APPLY_DELAY {
                return false;
            }
            match rung.recv_timeout(APPLY_PAUSE) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
    }

    /// Applies up to [`APPLY_BATCH`] journaled deliveries in one transaction, then
    /// publishes their events; returns how many it read from the journal.
    fn apply_batch(&mut self) -> Result<usize, StoreError> {
        let head = self.shared.head.load(Ordering::Acquire);
        let result = self
            .journal
            .read(head, APPLY_BATCH)
            .and_then(|rows| self.apply_read(&rows).map(|()| rows.len()));
        if result.is_err() {
            // Read again from the first delivery not applied on the next attempt.
            self.journal
                .rewind(self.shared.applied.load(Ordering::Acquire));
        }
        result
    }

    /// Applies `rows`, read from the journal, in one transaction, or one at a time when
    /// the batch fails for a reason other than the disk.
    fn apply_read(&mut self, rows: &[(i64, Delivery)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.apply_rows(rows) {
            Ok(()) => Ok(()),
            Err(error) if error.is_storage_unavailable() => Err(error),
            Err(error) => {
                // The disk takes writes, so some delivery of the batch cannot be applied.
                // Applying one at a time finds it, and the others are not held up by it.
                tracing::warn!(%error, "failed to apply a batch; applying its deliveries one at a time");
                for row in rows {
                    match self.apply_rows(std::slice::from_ref(row)) {
                        Ok(()) => {}
                        Err(error) if error.is_storage_unavailable() => return Err(error),
                        Err(error) => self.record_failure(row, &error)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// Applies `rows` in one transaction, then publishes their events.
    fn apply_rows(&mut self, rows: &[(i64, Delivery)]) -> Result<(), StoreError> {
        let (applied, events) = commit_rows(&mut self.connection, rows)?;
        self.shared.applied.store(applied, Ordering::Release);
        for event in events {
            // No subscriber is fine: the headless receiver has none.
            let _ = self.events.send(event);
        }
        Ok(())
    }

    /// Records a delivery that cannot be applied in the delivery log, with its body and the
    /// error, and moves past it.
    fn record_failure(
        &mut self,
        (seq, delivery): &(i64, Delivery),
        error: &StoreError,
    ) -> Result<(), StoreError> {
        tracing::error!(%error, seq, "failed to apply a delivery; its body is kept in the delivery log");
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = journal::applied(&transaction)?;
        if *seq > done {
            let alert_id = match &delivery.verdict {
                Verdict::Alert(alert) => Some(alert.id.as_str()),
                Verdict::Rejected { .. } => None,
            };
            let reason = format!("accepted, but storing it failed: {error}");
            super::deliveries::insert(
                &transaction,
                delivery,
                Outcome::Failed,
                200,
                &reason,
                alert_id,
                true,
            )?;
            journal::set_applied(&transaction, *seq)?;
        }
        transaction.commit()?;
        self.shared.applied.fetch_max(*seq, Ordering::AcqRel);
        Ok(())
    }
}

/// Returns whether a checkpoint runs now, with `journaled` deliveries journaled since the
/// last look and `since` the last checkpoint.
///
/// A checkpoint writes and flushes the pages that the writer changed, often tens of
/// megabytes during a storm, and a flush of the journal that comes meanwhile waits for
/// the disk to take them. During a storm the checkpoint therefore waits, for at most
/// [`CHECKPOINT_MAX_DELAY`]; the WAL grows meanwhile, and the journal keeps every delivery
/// that the checkpoint has not yet made durable in `alerts.db`.
fn checkpoint_due(journaled: i64, since: Duration) -> bool {
    journaled <= STORM_DELIVERIES || since >= CHECKPOINT_MAX_DELAY
}

/// Applies `rows`, read from the journal, in one transaction that also records the last
/// seq as applied; returns that seq and the events to publish.
fn commit_rows(
    connection: &mut Connection,
    rows: &[(i64, Delivery)],
) -> Result<(i64, Vec<AlertEvent>), StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another writer on the same data directory may have applied some already.
    let done = journal::applied(&transaction)?;
    let Some(&(last, _)) = rows.last() else {
        return Ok((done, Vec::new()));
    };
    let mut events = Vec::with_capacity(rows.len());
    for (_, delivery) in rows.iter().filter(|(seq, _)| *seq > done) {
        events.extend(apply(&transaction, delivery)?);
    }
    let applied = last.max(done);
    journal::set_applied(&transaction, applied)?;
    transaction.commit()?;
    Ok((applied, events))
}

/// Applies the deliveries left in the SQLite journal of earlier versions, then removes it.
/// Its seqs and the current journal's share one sequence, so the current journal then
/// continues above them.
fn apply_legacy_journal(data_dir: &Path, connection: &mut Connection) -> Result<(), StoreError> {
    let mut applied = 0;
    while let Some(rows) =
        journal::legacy_rows(data_dir, journal::applied(connection)?, APPLY_BATCH)?
    {
        if rows.is_empty() {
            journal::remove_legacy(data_dir)?;
            if applied > 0 {
                tracing::info!(
                    applied,
                    "applied the deliveries left in the previous journal"
                );
            }
            return Ok(());
        }
        applied += rows.len();
        commit_rows(connection, &rows)?;
    }
    Ok(())
}

/// Checkpoints `alerts.db` every [`CHECKPOINT_INTERVAL`], except during a storm (see
/// [`checkpoint_due`]), until `stopped` disconnects, then a last time, also truncating its
/// WAL. After a checkpoint that copied the whole WAL, every commit before it is on disk,
/// and with it the applied seq it recorded. The journal segments up to that seq are then
/// deleted. Once no delivery has been journaled for `spare_quiet`, it writes the journal's
/// spare segments.
fn checkpoint_until_stopped(
    connection: &Connection,
    data_dir: &Path,
    stopped: &Receiver<()>,
    shared: &Shared,
    spare_quiet: Duration,
) {
    let mut removed_through = 0;
    let mut last_head = shared.head.load(Ordering::Acquire);
    let mut last_checkpoint = Instant::now();
    let mut quiet_since = Instant::now();
    // Each failing period of these is logged once, so a full disk does not flood the log.
    let mut filling = FailingPeriod::default();
    let mut removing = FailingPeriod::default();
    let mut checkpointing = FailingPeriod::default();
    loop {
        let mode = match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) | Ok(()) => "PASSIVE",
            Err(RecvTimeoutError::Disconnected) => "TRUNCATE",
        };
        match journal::remove_spares_without_room(data_dir) {
            Ok(removed) => {
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "deleted the spare journal segments: the disk has less than 1 GiB free"
                    );
                }
                removing.succeed();
            }
            Err(error) => {
                if removing.fail() {
                    tracing::warn!(%error, "failed to delete spare journal segments");
                }
            }
        }
        let head = shared.head.load(Ordering::Acquire);
        let journaled = head - last_head;
        last_head = head;
        if journaled > 0 {
            quiet_since = Instant::now();
        } else if mode == "PASSIVE" && quiet_since.elapsed() >= spare_quiet {
            add_spares(data_dir, stopped, shared, head, &mut filling);
        }
        if mode == "PASSIVE" && !checkpoint_due(journaled, last_checkpoint.elapsed()) {
            continue;
        }
        last_checkpoint = Instant::now();
        let pragma = format!("PRAGMA wal_checkpoint({mode})");
        let result = journal::applied(connection).and_then(|applied| {
            let (busy, frames, copied): (i64, i64, i64) =
                connection.query_row(&pragma, [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            if busy == 0 && copied == frames {
                shared.durable.fetch_max(applied, Ordering::AcqRel);
            }
            Ok(())
        });
        match result {
            Err(error) => {
                if checkpointing.fail() {
                    tracing::warn!(%error, mode, "WAL checkpoint failed; retrying at the next round");
                }
            }
            Ok(()) => {
                if checkpointing.succeed() {
                    tracing::info!("WAL checkpoints succeed again");
                }
            }
        }
        let durable = shared.durable.load(Ordering::Acquire);
        if durable > removed_through {
            match journal::remove_through(data_dir, durable) {
                Ok(_) => removed_through = durable,
                Err(error) => tracing::warn!(%error, "failed to remove applied journal segments"),
            }
        }
        if mode == "TRUNCATE" {
            return;
        }
    }
}

/// Writes zero-filled spare segments until the journal has all it keeps, a delivery
/// arrives, or the checkpoint thread stops.
///
/// Each spare is 4 MiB written and flushed, so a delivery that arrives meanwhile waits for
/// one spare at most.
fn add_spares(
    data_dir: &Path,
    stopped: &Receiver<()>,
    shared: &Shared,
    head: i64,
    failures: &mut FailingPeriod,
) {
    while shared.head.load(Ordering::Acquire) == head
        && matches!(
            stopped.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        )
    {
        match journal::add_spare(data_dir) {
            Ok(true) => {
                failures.succeed();
            }
            Ok(false) => break,
            Err(error) => {
                // Without spares the journal appends to new files, which only makes its
                // flushes slower, so a warning is enough.
                if failures.fail() {
                    tracing::warn!(%error, "failed to write a spare journal segment");
                }
                break;
            }
        }
    }
}

/// State of a task that a thread retries, so that each failing period is logged once.
#[derive(Default)]
struct FailingPeriod {
    failing: bool,
}

impl FailingPeriod {
    /// Records a failure; returns whether it starts a failing period.
    fn fail(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// Records a success; returns whether it ends a failing period.
    fn succeed(&mut self) -> bool {
        std::mem::replace(&mut self.failing, false)
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

/// Applies one journaled delivery: a log row, and for an alert the new or newer version.
/// Returns the event to publish for an alert.
fn apply(connection: &Connection, delivery: &Delivery) -> Result<Option<AlertEvent>, StoreError> {
    match &delivery.verdict {
        Verdict::Alert(alert) => store_alert(connection, delivery, alert).map(Some),
        Verdict::Rejected {
            outcome,
            status,
            reason,
        } => {
            super::deliveries::insert(connection, delivery, *outcome, *status, reason, None, true)?;
            Ok(None)
        }
    }
}

/// Logs the delivery and inserts a new alert or applies a newer version; returns the
/// event. A stored version's body lives in `alerts.payload` only.
fn store_alert(
    connection: &Connection,
    delivery: &Delivery,
    alert: &AlertRecord,
) -> Result<AlertEvent, StoreError> {
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
        return Ok(event(AlertEventKind::New, alert, None));
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
        return Ok(event(AlertEventKind::Updated, alert, Some(stored_level)));
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
    Ok(event(AlertEventKind::Repeated, alert, Some(stored_level)))
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

    #[test]
    fn yielding_completes_long_statements() {
        let connection = Connection::open_in_memory().unwrap();
        yield_while_applying(&connection);
        // The query takes far more than `YIELD_STEPS` steps, so the handler runs many times,
        // and an interruption would fail it.
        let counted: i64 = connection
            .query_row(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
                 SELECT count(*) FROM n",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(counted, 100_000);
    }

    /// Collects what the checkpoint thread logs.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs the checkpoint thread on a new store until `done` returns true or 60 s pass,
    /// and returns what the thread logged.
    ///
    /// Spares are written after `spare_quiet` without deliveries. Seq 5 is recorded as
    /// applied, so the first checkpoint makes it durable. `prepare` changes the store
    /// before the thread starts.
    fn run_checkpoints(
        spare_quiet: Duration,
        prepare: impl FnOnce(&Connection),
        mut done: impl FnMut(&Path, &Shared) -> bool,
    ) -> String {
        let dir = tempfile::tempdir().unwrap();
        let (store, connection) = Store::open(dir.path()).unwrap();
        journal::Appender::open(dir.path(), 0).unwrap();
        journal::set_applied(&connection, 5).unwrap();
        prepare(&connection);

        let log = LogBuffer::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();

        let shared = Shared {
            head: AtomicI64::new(5),
            applied: AtomicI64::new(5),
            durable: AtomicI64::new(0),
            failure: Mutex::new(None),
        };
        let checkpointer = store.open_connection().unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (data_dir, shared) = (dir.path(), &shared);
        thread::scope(|scope| {
            let checkpoints = scope.spawn(move || {
                let _logging = tracing::subscriber::set_default(subscriber);
                checkpoint_until_stopped(&checkpointer, data_dir, &stopped, shared, spare_quiet);
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done(data_dir, shared) {
                assert!(
                    Instant::now() < deadline,
                    "the checkpoint thread did not get there within 60 s"
                );
                assert!(!checkpoints.is_finished());
                thread::sleep(Duration::from_millis(50));
            }
            drop(stop);
        });

        let bytes = log.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn spare_count(data_dir: &Path) -> usize {
        journal::segment_counts(data_dir).unwrap().1
    }

    #[test]
    fn quiet_journal_gets_spares() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            journal::room_for_spares(dir.path()),
            "spare segments need 1 GiB free in the temporary directory"
        );
        run_checkpoints(
            Duration::ZERO,
            |_| {},
            |data_dir, _| spare_count(data_dir) == journal::SPARE_SEGMENTS,
        );
    }

    #[test]
    fn spares_wait_for_quiet() {
        let mut spares = None;
        // A round writes the spares that are due before it checkpoints, so they would be
        // there once seq 5 is durable.
        run_checkpoints(
            Duration::from_secs(3600),
            |_| {},
            |data_dir, shared| {
                let checkpointed = shared.durable.load(Ordering::Acquire) == 5;
                if checkpointed {
                    spares = Some(spare_count(data_dir));
                }
                checkpointed
            },
        );
        assert_eq!(spares, Some(0));
    }

    #[test]
    fn failing_checkpoint_logged_once() {
        // Without the table that records the applied seq, each checkpoint round fails.
        let drop_settings = |connection: &Connection| {
            connection.execute_batch("DROP TABLE settings").unwrap();
        };
        let started = Instant::now();
        let mut restored = false;
        let log = run_checkpoints(
            Duration::from_secs(3600),
            drop_settings,
            |data_dir, shared| {
                // After about two failed rounds the table returns, and a checkpoint succeeds.
                if !restored && started.elapsed() >= CHECKPOINT_INTERVAL * 5 / 2 {
                    let connection = Connection::open(data_dir.join("alerts.db")).unwrap();
                    connection
                    .execute_batch(
                        "CREATE TABLE settings (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
                    )
                    .unwrap();
                    journal::set_applied(&connection, 5).unwrap();
                    restored = true;
                }
                shared.durable.load(Ordering::Acquire) == 5
            },
        );
        assert_eq!(log.matches("WAL checkpoint failed").count(), 1, "{log}");
        assert_eq!(log.matches("no such table: settings").count(), 1, "{log}");
        assert_eq!(
            log.matches("WAL checkpoints succeed again").count(),
            1,
            "{log}"
        );
    }

    #[test]
    fn checkpoint_wait_is_bounded() {
        assert!(checkpoint_due(0, Duration::ZERO));
        assert!(checkpoint_due(STORM_DELIVERIES, CHECKPOINT_INTERVAL));
        assert!(!checkpoint_due(STORM_DELIVERIES + 1, CHECKPOINT_INTERVAL));
        assert!(!checkpoint_due(1_000_000, CHECKPOINT_MAX_DELAY / 2));
        assert!(checkpoint_due(1_000_000, CHECKPOINT_MAX_DELAY));
    }
}
