//! The intake journal: an append-only log in the `journal` directory beside `alerts.db`.
//!
//! Every request to the webhook path is appended here before the receiver responds. The
//! journal thread writes a whole batch of deliveries with one `write` and makes it durable
//! with one `fdatasync`. Nothing else touches the disk on the response path. The store
//! writer then moves journaled deliveries into `alerts.db` in large batches and records, in
//! the same transaction, the sequence number it reached (`settings.journal_applied_seq`).
//! After a crash the writer resumes after that number. Because the number is committed
//! with the deliveries it covers, none is applied twice.
//!
//! # Format
//! The log is a series of segment files named after the seq of their first record, each
//! up to [`SEGMENT_BYTES`] long. A record is a 16-byte header (payload length and CRC-32,
//! both `u32`, then the seq as `u64`, all little-endian) and a payload: the length of a
//! JSON object with the delivery's metadata (`u32`), the object, then the raw body. The
//! checksum covers the seq and the payload, so a record torn by a power loss is found and
//! cut off when the journal opens.
//!
//! A segment is deleted once every record in it is applied and a checkpoint has made that
//! application durable.
//!
//! # Spare segments
//! A new segment is a spare file renamed, when there is one, rather than a new file.
//! Writing over blocks that a file already has lets `fdatasync` flush the data alone:
//! appending to a new file also changes its size and block map, which makes every flush
//! commit the file system's own journal too. When the journal has been quiet for
//! [`SPARE_FILL_QUIET`], the checkpoint thread writes spares (`*.spare`) full of zeros
//! until there are [`SPARE_SEGMENTS`] ([`add_spare`]). A spare contains only zeros, and
//! a header of zeros fails its checksum, so the zeros after a segment's records read
//! as its end. Spares are deleted when the disk runs short of space
//! ([`remove_spares_without_room`]).
//!
//! No maintained crate offers this narrow log: append a batch, flush once, read back in
//! order, drop whole files. A SQLite table costs several times the system calls per commit,
//! so the journal is written here on top of `crc32fast` and `serde_json`.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::writer::{Delivery, Outcome, Verdict, Via};
use super::StoreError;

/// Name of the journal's directory inside the data directory.
const JOURNAL_DIR: &str = "journal";

/// File of the SQLite journal that earlier versions kept; applied and removed at start.
const LEGACY_FILE: &str = "journal.db";

/// Size past which the journal thread starts a new segment.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Length of a record's header: payload length, checksum, seq.
const HEADER_BYTES: usize = 16;

/// Largest payload a record may claim; a larger length is a torn or damaged header. The
/// receiver's body limit (`config::MAX_BODY_LIMIT`, 64 MiB) is far below it.
const MAX_PAYLOAD_BYTES: u32 = 256 * 1024 * 1024;
const _: () = assert!(MAX_PAYLOAD_BYTES as usize > 2 * crate::config::MAX_BODY_LIMIT);

/// Extension of a segment file.
const SEGMENT_EXTENSION: &str = "log";

/// Extension of a spare segment.
const SPARE_EXTENSION: &str = "spare";

/// Disk kept for spare segments: by estimate, a storm of about 60,000 deliveries the size
/// of RealTheory's documented example (about 2 KiB each).
const SPARE_BYTES: u64 = 128 * 1024 * 1024;

/// Number of spare segments written.
pub const SPARE_SEGMENTS: usize = (SPARE_BYTES / SEGMENT_BYTES) as usize;

/// Free disk space below which the journal writes no spares and deletes those it has, so
/// that they do not take the space that `alerts.db` and new deliveries need.
const SPARE_MIN_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// Time without new deliveries after which zero-filled spares are written.
pub const SPARE_FILL_QUIET: Duration = Duration::from_secs(30);

/// File in which a zero-filled spare is written before it is renamed. A file left behind by
/// a crash is overwritten by the next spare.
const FILLING_FILE: &str = "spare.filling";

/// Key in the `settings` table of `alerts.db` that contains the last applied journal seq.
const APPLIED_KEY: &str = "journal_applied_seq";

/// A delivery's fields other than the body, as a record stores them.
#[derive(Serialize, Deserialize)]
struct Meta<'a> {
    received_ms: i64,
    #[serde(borrow)]
    remote_addr: Cow<'a, str>,
    #[serde(borrow)]
    via: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    body_size: u64,
    #[serde(borrow)]
    body_sha256: Cow<'a, str>,
    #[serde(borrow)]
    headers: Option<Cow<'a, str>>,
    has_body: bool,
    /// The rejection the receiver responded with; `None` for an authenticated alert,
    /// which the writer parses again from the body.
    #[serde(borrow)]
    rejected: Option<Rejection<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Rejection<'a> {
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    status: u16,
    #[serde(borrow)]
    reason: Cow<'a, str>,
}

/// Returns the journal directory of `data_dir`.
fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_DIR)
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Journal {
        path: path.to_owned(),
        source,
    }
}

/// Appends `delivery` as the record `seq` to `buffer`.
fn encode(buffer: &mut Vec<u8>, seq: u64, delivery: &Delivery) {
    let rejected = match &delivery.verdict {
        Verdict::Alert(_) => None,
        Verdict::Rejected {
            outcome,
            status,
            reason,
        } => Some(Rejection {
            outcome: Cow::Borrowed(outcome.as_str()),
            status: *status,
            reason: Cow::Borrowed(reason),
        }),
    };
    let meta = Meta {
        received_ms: delivery.received_ms,
        remote_addr: Cow::Borrowed(&delivery.remote_addr),
        via: Cow::Borrowed(delivery.via.as_str()),
        method: Cow::Borrowed(&delivery.method),
        path: Cow::Borrowed(&delivery.path),
        body_size: delivery.body_size as u64,
        body_sha256: Cow::Borrowed(&delivery.body_sha256),
        headers: delivery.headers.as_deref().map(Cow::Borrowed),
        has_body: delivery.body.is_some(),
        rejected,
    };
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER_BYTES + 4]);
    serde_json::to_writer(&mut *buffer, &meta).expect("a delivery's metadata serializes");
    let meta_len = buffer.len() - start - HEADER_BYTES - 4;
    if let Some(body) = &delivery.body {
        buffer.extend_from_slice(body);
    }
    let payload_len = buffer.len() - start - HEADER_BYTES;
    buffer[start + HEADER_BYTES..start + HEADER_BYTES + 4]
        .copy_from_slice(&(meta_len as u32).to_le_bytes());
    buffer[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&buffer[start + 8..]);
    buffer[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Rebuilds a delivery from a record's payload; `None` when the payload is damaged.
fn decode(payload: &[u8]) -> Option<Delivery> {
    let meta_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let meta_bytes = payload.get(4..4 + meta_len)?;
    let body = &payload[4 + meta_len..];
    let meta: Meta = serde_json::from_slice(meta_bytes).ok()?;
    let body = meta.has_body.then(|| bytes::Bytes::copy_from_slice(body));
    let rejected = meta.rejected.map(|rejection| {
        (
            rejection.outcome.into_owned(),
            rejection.status,
            rejection.reason.into_owned(),
        )
    });
    let verdict = verdict(body.as_deref(), rejected);
    Some(Delivery {
        received_ms: meta.received_ms,
        remote_addr: meta.remote_addr.into_owned(),
        via: Via::parse(&meta.via).unwrap_or(Via::Loopback),
        method: meta.method.into_owned(),
        path: meta.path.into_owned(),
        body_size: meta.body_size as usize,
        body_sha256: meta.body_sha256.into_owned(),
        headers: meta.headers.map(Cow::into_owned),
        body,
        verdict,
    })
}

/// Returns the verdict of a journaled delivery: the rejection the receiver responded with,
/// or the alert parsed again from `body`.
///
/// The receiver parsed the same bytes before it responded, so a parse error here means the
/// parser changed in between. Such a delivery is logged as malformed rather than dropped.
fn verdict(body: Option<&[u8]>, rejected: Option<(String, u16, String)>) -> Verdict {
    match rejected {
        None => match crate::model::parse(body.unwrap_or_default()) {
            Ok(alert) => Verdict::Alert(Box::new(alert)),
            Err(error) => Verdict::Rejected {
                outcome: Outcome::Malformed,
                status: 400,
                reason: error.to_string(),
            },
        },
        Some((outcome, status, reason)) => Verdict::Rejected {
            outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Malformed),
            status,
            reason,
        },
    }
}

/// Reads the record at the reader's position: `Ok(None)` at the end of the segment or at
/// a torn or damaged record, otherwise the seq, the payload and the record's length.
fn read_record(reader: &mut impl Read) -> std::io::Result<Option<(u64, Vec<u8>, u64)>> {
    let mut header = [0; HEADER_BYTES];
    if !read_full(reader, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("four bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("four bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("eight bytes"));
    if len > MAX_PAYLOAD_BYTES {
        return Ok(None);
    }
    let mut payload = vec![0; len as usize];
    if !read_full(reader, &mut payload)? {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..16]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((seq, payload, (HEADER_BYTES + len as usize) as u64)))
}

/// Fills `buffer`; returns `false` when the file ends first.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    match reader.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// Lists the segments of the journal as (first seq, path), oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    files(dir, SEGMENT_EXTENSION)
}

/// Lists the spare segments of the journal, as [`segments`] does.
fn spares(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    files(dir, SPARE_EXTENSION)
}

/// Lists the regular files named `<seq>.<extension>` in `dir` as (seq, path), lowest seq
/// first.
fn files(dir: &Path, extension: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(dir, error)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(dir, error))?;
        let path = entry.path();
        if path.extension().and_then(|found| found.to_str()) != Some(extension) {
            continue;
        }
        // Anything else by that name, such as a directory, was not written by the journal.
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        if let Some(first) = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse().ok())
        {
            found.push((first, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEGMENT_EXTENSION}"))
}

/// The result of [`scan`] on a segment.
#[derive(Debug, PartialEq, Eq)]
struct Scanned {
    /// Seq of the last intact record.
    last: Option<u64>,
    /// Length of the records up to and including `last`.
    intact: u64,
    /// Whether the zeros of a spare follow the records, rather than the end of the file or
    /// a torn or damaged record.
    spare_tail: bool,
}

/// Reads a segment to its last intact record.
fn scan(path: &Path) -> Result<Scanned, StoreError> {
    let file = File::open(path).map_err(|error| io_error(path, error))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut last = None;
    let mut intact = 0;
    while let Some((seq, _, len)) =
        read_record(&mut reader).map_err(|error| io_error(path, error))?
    {
        last = Some(seq);
        intact += len;
    }
    let spare_tail = zeros_at(&mut reader, intact).map_err(|error| io_error(path, error))?;
    Ok(Scanned {
        last,
        intact,
        spare_tail,
    })
}

/// Returns whether a record header's worth of zeros starts at `offset` in `reader`.
fn zeros_at(reader: &mut (impl Read + Seek), offset: u64) -> std::io::Result<bool> {
    let mut header = [0xff; HEADER_BYTES];
    reader.seek(SeekFrom::Start(offset))?;
    let read = read_full(reader, &mut header)?;
    Ok(read && header == [0; HEADER_BYTES])
}

/// Returns the seq of the newest intact record, 0 for an empty journal.
fn head(dir: &Path) -> Result<u64, StoreError> {
    for (_, path) in segments(dir)?.iter().rev() {
        if let Some(last) = scan(path)?.last {
            return Ok(last);
        }
    }
    Ok(0)
}

/// Appends deliveries to the journal; owned by the journal thread.
pub(super) struct Appender {
    dir: PathBuf,
    /// The segment being appended to; `None` before the first append and after a failure
    /// that left the segment's end unknown.
    segment: Option<Segment>,
    next_seq: u64,
    buffer: Vec<u8>,
    /// Size past which a new segment starts; [`SEGMENT_BYTES`] but in tests.
    segment_bytes: u64,
}

/// The segment an [`Appender`] appends to.
struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Appender {
    /// Opens the journal in `data_dir` for appending, creating the directory if needed.
    ///
    /// A record torn by a crash is cut off the last segment. New seqs continue above the
    /// newest record, the seqs before the last segment's first, and `applied`, the last
    /// seq applied to `alerts.db`, so they stay above every seq handed out before even when
    /// every segment has been deleted.
    pub(super) fn open(data_dir: &Path, applied: i64) -> Result<Self, StoreError> {
        let dir = dir(data_dir);
        fs::create_dir_all(&dir).map_err(|error| io_error(&dir, error))?;
        let mut newest = 0;
        if let Some((first, path)) = segments(&dir)?.last() {
            let Scanned {
                last,
                intact,
                spare_tail,
            } = scan(path)?;
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|error| io_error(path, error))?;
            let len = file
                .metadata()
                .map_err(|error| io_error(path, error))?
                .len();
            if len > intact {
                if spare_tail {
                    tracing::debug!(path = %path.display(), "cutting the unused end of a spare segment");
                } else {
                    tracing::warn!(
                        path = %path.display(),
                        cut = len - intact,
                        "cutting a torn record off the end of the journal"
                    );
                }
                file.set_len(intact)
                    .map_err(|error| io_error(path, error))?;
                file.sync_data().map_err(|error| io_error(path, error))?;
            }
            // A segment without records of its own, left by a crash right after it was
            // created, still took the seqs below its first from the segments before it.
            newest = last.unwrap_or(first.saturating_sub(1));
        }
        Ok(Self {
            dir,
            segment: None,
            next_seq: newest.max(applied.max(0) as u64) + 1,
            buffer: Vec::new(),
            segment_bytes: SEGMENT_BYTES,
        })
    }

    /// Returns the seq of the newest record appended.
    pub(super) fn head(&self) -> i64 {
        self.next_seq as i64 - 1
    }

    /// Appends `deliveries` with one write and flushes them to disk with one
    /// `fdatasync`; returns the seq of the last one.
    ///
    /// When this fails, the deliveries get an error, and their records are cut off when
    /// possible. A record that outlives the failure on disk is applied after
    /// a restart, and the sender's retry is then logged as a duplicate.
    pub(super) fn append<'a>(
        &mut self,
        deliveries: impl IntoIterator<Item = &'a Delivery>,
    ) -> Result<i64, StoreError> {
        self.buffer.clear();
        let mut seq = self.next_seq;
        for delivery in deliveries {
            encode(&mut self.buffer, seq, delivery);
            seq += 1;
        }
        if seq == self.next_seq {
            return Ok(self.head());
        }

        let full = self
            .segment
            .as_ref()
            .is_none_or(|segment| segment.len >= self.segment_bytes);
        if full {
            self.segment = None;
            self.segment = Some(self.create_segment()?);
        }

        // The seqs are used up even when the write fails: a reader may have seen the
        // failed records, so their seqs never name other deliveries.
        self.next_seq = seq;
        let segment = self.segment.as_mut().expect("a segment is open");
        let written = segment
            .file
            .write_all(&self.buffer)
            .and_then(|()| segment.file.sync_data());
        if let Err(error) = written {
            let error = io_error(&segment.path, error);
            // Cut off what this batch wrote, so the next batch follows the last intact
            // record. If even that fails, the next batch starts a new segment, and readers
            // stop reading this one where the next begins.
            let len = segment.len;
            let cut = segment
                .file
                .set_len(len)
                .and_then(|()| segment.file.seek(SeekFrom::Start(len)));
            if cut.is_err() {
                self.segment = None;
            }
            return Err(error);
        }
        segment.len += self.buffer.len() as u64;
        Ok(self.head())
    }

    /// Creates the segment that starts at the next seq, from a spare when there is one, and
    /// makes its name durable.
    fn create_segment(&self) -> Result<Segment, StoreError> {
        let path = segment_path(&self.dir, self.next_seq);
        let reused = self.reuse_spare(&path);
        let open = |reuse: bool| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(!reuse)
                .open(&path)
        };
        let file = match open(reused) {
            Err(error) if reused => {
                // A spare that cannot be written, such as a read-only file, is dropped.
                tracing::debug!(%error, path = %path.display(), "failed to open a spare journal segment");
                let _ = fs::remove_file(&path);
                open(false)
            }
            opened => opened,
        }
        .map_err(|error| io_error(&path, error))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error(&self.dir, error))?;
        Ok(Segment { file, path, len: 0 })
    }

    /// Renames a spare segment to `path`; returns whether there was one to rename.
    ///
    /// A spare that cannot be taken is only a lost chance to save a flush, so the failure
    /// is logged and a new file is created instead.
    fn reuse_spare(&self, path: &Path) -> bool {
        let spare = match spares(&self.dir) {
            Ok(mut spares) => spares.pop(),
            Err(error) => {
                tracing::debug!(%error, "failed to list spare journal segments");
                None
            }
        };
        let Some((_, spare)) = spare else {
            return false;
        };
        match fs::rename(&spare, path) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, spare = %spare.display(), "failed to reuse a spare journal segment");
                false
            }
        }
    }
}

/// Reads journaled deliveries in seq order; owned by the writer thread.
pub(super) struct Reader {
    dir: PathBuf,
    /// The next seq to return.
    next_seq: u64,
    segment: Option<ReadSegment>,
}

/// The segment a [`Reader`] is in.
struct ReadSegment {
    first: u64,
    reader: BufReader<File>,
    /// Position of the next record to read.
    offset: u64,
    /// First seq of the following segment, if one exists: records at or above it are
    /// left over from a write that failed and are not part of this segment.
    end: Option<u64>,
}

impl Reader {
    /// Starts reading after `applied`.
    pub(super) fn new(data_dir: &Path, applied: i64) -> Self {
        Self {
            dir: dir(data_dir),
            next_seq: applied.max(0) as u64 + 1,
            segment: None,
        }
    }

    /// Reads up to `limit` deliveries after the last one read, none after `head`.
    ///
    /// Each call reads from the file afresh instead of from bytes buffered by an earlier
    /// call, which may belong to a batch whose write failed and was cut off since.
    pub(super) fn read(
        &mut self,
        head: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Delivery)>, StoreError> {
        let listing = segments(&self.dir)?;
        if let Some(segment) = &mut self.segment {
            segment.end = following(&listing, segment.first);
            let path = segment_path(&self.dir, segment.first);
            segment
                .reader
                .seek(SeekFrom::Start(segment.offset))
                .map_err(|error| io_error(&path, error))?;
        }
        let mut rows = Vec::new();
        while rows.len() < limit && (self.next_seq as i64) <= head {
            let Some(segment) = &mut self.segment else {
                if !self.open_segment(&listing)? {
                    break;
                }
                continue;
            };
            let path = segment_path(&self.dir, segment.first);
            let record =
                read_record(&mut segment.reader).map_err(|error| io_error(&path, error))?;
            let seq = match record {
                Some((seq, payload, len)) if segment.end.is_none_or(|end| seq < end) => {
                    segment.offset += len;
                    if seq < self.next_seq {
                        continue;
                    }
                    self.skip_to(seq);
                    match decode(&payload) {
                        Some(delivery) => rows.push((seq as i64, delivery)),
                        None => {
                            tracing::error!(seq, "failed to decode a journal record; skipping it")
                        }
                    }
                    seq
                }
                _ => {
                    // The segment ends here: at the end of the file, at a torn record, at
                    // the zeros of a spare, or at a seq that the following segment took
                    // over after a failed write. Without a following segment,
                    // records up to `head` are missing only if the file was damaged after
                    // it was written.
                    let Some(end) = segment.end else {
                        tracing::error!(
                            path = %path.display(),
                            seq = self.next_seq,
                            "the journal ends before a record it acknowledged"
                        );
                        break;
                    };
                    self.segment = None;
                    self.skip_to(end);
                    continue;
                }
            };
            self.next_seq = seq + 1;
        }
        Ok(rows)
    }

    /// Moves the next seq up to `seq`, logging the seqs passed over.
    fn skip_to(&mut self, seq: u64) {
        if seq > self.next_seq {
            tracing::warn!(
                from = self.next_seq,
                to = seq - 1,
                "journal seqs not found: a failed write, or a damaged segment"
            );
            self.next_seq = seq;
        }
    }

    /// Goes back to the delivery after `applied`, for a batch that failed to apply.
    pub(super) fn rewind(&mut self, applied: i64) {
        self.next_seq = applied.max(0) as u64 + 1;
        self.segment = None;
    }

    /// Opens the segment that contains the next seq, or else the first one after it;
    /// returns `false` when there is neither.
    fn open_segment(&mut self, listing: &[(u64, PathBuf)]) -> Result<bool, StoreError> {
        let found = listing
            .iter()
            .rev()
            .find(|(first, _)| *first <= self.next_seq)
            .or_else(|| listing.first());
        let Some((first, path)) = found else {
            return Ok(false);
        };
        self.skip_to(*first);
        let file = File::open(path).map_err(|error| io_error(path, error))?;
        self.segment = Some(ReadSegment {
            first: *first,
            reader: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
            end: following(listing, *first),
        });
        Ok(true)
    }
}

/// Returns the first seq of the segment after the one that starts at `first`.
fn following(listing: &[(u64, PathBuf)], first: u64) -> Option<u64> {
    listing
        .iter()
        .map(|(other, _)| *other)
        .find(|other| *other > first)
}

/// Deletes the segments whose records are all at or below `durable`; returns how many.
/// The newest segment always stays.
///
/// A deleted segment is not kept as a spare: past its records it contains what earlier
/// deliveries wrote, which a reader of its next use could not tell from records.
pub(super) fn remove_through(data_dir: &Path, durable: i64) -> Result<usize, StoreError> {
    let segments = segments(&dir(data_dir))?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first as i64 - 1 > durable {
            break;
        }
        fs::remove_file(path).map_err(|error| io_error(path, error))?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes every spare segment when the disk of `data_dir` has no room for them
/// ([`room_for_spares`]); returns how many it deleted.
pub(super) fn remove_spares_without_room(data_dir: &Path) -> Result<usize, StoreError> {
    let dir = dir(data_dir);
    remove_spares_unless(&dir, room_for_spares(&dir))
}

/// Deletes every spare segment in the journal directory `dir` unless `room`; returns how
/// many it deleted.
fn remove_spares_unless(dir: &Path, room: bool) -> Result<usize, StoreError> {
    if room {
        return Ok(0);
    }
    let spares = spares(dir)?;
    for (_, path) in &spares {
        fs::remove_file(path).map_err(|error| io_error(path, error))?;
    }
    Ok(spares.len())
}

/// Writes one spare segment full of zeros into the journal of `data_dir`. Returns whether
/// it wrote one: not when the journal has [`SPARE_SEGMENTS`] or the disk has no room
/// ([`room_for_spares`]).
///
/// The zeros are flushed, with the file's size, before the file is named a spare, so a
/// segment made from it never needs its size or block map changed.
pub(super) fn add_spare(data_dir: &Path) -> Result<bool, StoreError> {
    let dir = dir(data_dir);
    let names_in_use: Vec<u64> = spares(&dir)?.into_iter().map(|(name, _)| name).collect();
    if names_in_use.len() >= SPARE_SEGMENTS || !room_for_spares(&dir) {
        return Ok(false);
    }

    let filling = dir.join(FILLING_FILE);
    let filled = File::create(&filling).and_then(|mut file| {
        let zeros = vec![0; 1024 * 1024];
        let mut left = SEGMENT_BYTES;
        while left > 0 {
            let chunk = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..chunk])?;
            left -= chunk as u64;
        }
        file.sync_all()
    });
    if let Err(error) = filled {
        // On a full disk the partial file would take space that deliveries need.
        let _ = fs::remove_file(&filling);
        return Err(io_error(&filling, error));
    }

    let name = (0..)
        .map(|below| u64::MAX - below)
        .find(|name| !names_in_use.contains(name))
        .expect("fewer spares than names");
    let spare = dir.join(format!("{name:020}.{SPARE_EXTENSION}"));
    fs::rename(&filling, &spare).map_err(|error| io_error(&spare, error))?;
    File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io_error(&dir, error))?;
    Ok(true)
}

/// Returns whether the file system of `dir` has room for spare segments: at least
/// [`SPARE_MIN_FREE_BYTES`] free for unprivileged users. Returns false when the free space
/// cannot be read.
pub(super) fn room_for_spares(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::statvfs(dir).is_ok_and(|stats| {
            stats.f_bavail.saturating_mul(stats.f_frsize) >= SPARE_MIN_FREE_BYTES
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

/// Counts the journal's segments and its spare segments in `data_dir`.
pub fn segment_counts(data_dir: &Path) -> Result<(usize, usize), StoreError> {
    let dir = dir(data_dir);
    Ok((segments(&dir)?.len(), spares(&dir)?.len()))
}

/// Returns the last journal seq applied to `alerts.db`, as `connection` reads it.
pub(super) fn applied(connection: &Connection) -> Result<i64, StoreError> {
    let value: Option<String> = connection
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([APPLIED_KEY], |row| row.get(0))
        .optional()?;
    Ok(value.and_then(|value| value.parse().ok()).unwrap_or(0))
}

/// Records `seq` as applied; the caller commits with the applied deliveries.
pub(super) fn set_applied(connection: &Connection, seq: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![APPLIED_KEY, seq.to_string()])?;
    Ok(())
}

/// Counts the deliveries journaled but not yet applied to the `alerts.db` that `reader`
/// reads.
pub(super) fn pending(data_dir: &Path, reader: &Connection) -> Result<i64, StoreError> {
    let head = head(&dir(data_dir))? as i64;
    Ok((head - applied(reader)?).max(0))
}

/// Waits until `alerts.db` contains every delivery journaled before the call, or until
/// `patience` passes without the writer applying any; returns how many are still pending.
///
/// The receiver responds once a delivery is journaled, and the writer applies it a moment
/// later, so a reader that starts right after a response waits here for that moment.
pub(super) fn wait_until_applied(
    data_dir: &Path,
    reader: &Connection,
    patience: Duration,
) -> Result<i64, StoreError> {
    let target = head(&dir(data_dir))? as i64;
    let mut last = applied(reader)?;
    let mut progress_at = Instant::now();
    while last < target {
        if progress_at.elapsed() >= patience {
            return Ok(target - last);
        }
        std::thread::sleep(Duration::from_millis(2));
        let now = applied(reader)?;
        if now > last {
            last = now;
            progress_at = Instant::now();
        }
    }
    Ok(0)
}

/// Reads up to `limit` deliveries above `after` from the SQLite journal of earlier
/// versions; `None` when there is no such journal.
pub(super) fn legacy_rows(
    data_dir: &Path,
    after: i64,
    limit: usize,
) -> Result<Option<Vec<(i64, Delivery)>>, StoreError> {
    let path = data_dir.join(LEGACY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let connection = Connection::open(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    let exists: bool = connection.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'journal'",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(Some(Vec::new()));
    }
    let mut statement = connection.prepare(
        "SELECT seq, received_ms, remote_addr, via, method, path, body_size, body_sha256,
             headers, body, outcome, status, reason
         FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = statement.query_map(params![after, limit as i64], |row| {
        let body: Option<Vec<u8>> = row.get(9)?;
        let outcome: Option<String> = row.get(10)?;
        let rejected = match outcome {
            None => None,
            Some(outcome) => Some((
                outcome,
                row.get::<_, Option<u16>>(11)?.unwrap_or(400),
                row.get::<_, Option<String>>(12)?.unwrap_or_default(),
            )),
        };
        let via: String = row.get(3)?;
        let delivery = Delivery {
            received_ms: row.get(1)?,
            remote_addr: row.get(2)?,
            via: Via::parse(&via).unwrap_or(Via::Loopback),
            method: row.get(4)?,
            path: row.get(5)?,
            body_size: row.get::<_, i64>(6)? as usize,
            body_sha256: row.get(7)?,
            headers: row.get(8)?,
            verdict: verdict(body.as_deref(), rejected),
            body: body.map(bytes::Bytes::from),
        };
        Ok((row.get(0)?, delivery))
    })?;
    let deliveries = rows.collect::<Result<_, _>>()?;
    Ok(Some(deliveries))
}

/// Removes the SQLite journal of earlier versions once its deliveries are applied.
pub(super) fn remove_legacy(data_dir: &Path) -> Result<(), StoreError> {
    for suffix in ["", "-wal", "-shm"] {
        let path = data_dir.join(format!("{LEGACY_FILE}{suffix}"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&path, error)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::{Retention, WriterHandle};
    use crate::store::Store;

    const EXAMPLE: &[u8] = include_bytes!("../../tests/data/documented-example.json");

    fn alert_delivery(body: &[u8]) -> Delivery {
        Delivery {
            body_size: body.len(),
            headers: Some(r#"{"user-agent":"test \"quoted\""}"#.to_owned()),
            body: Some(bytes::Bytes::copy_from_slice(body)),
            verdict: Verdict::Alert(Box::new(crate::model::parse(body).unwrap())),
            ..rejected_delivery()
        }
    }

    fn rejected_delivery() -> Delivery {
        Delivery {
            received_ms: crate::store::now_ms(),
            remote_addr: "127.0.0.1:9".to_owned(),
            via: Via::Loopback,
            method: "POST".to_owned(),
            path: "/webhook".to_owned(),
            body_size: 12,
            body_sha256: "c0ffee".to_owned(),
            headers: None,
            body: None,
            verdict: Verdict::Rejected {
                outcome: Outcome::BadSignature,
                status: 401,
                reason: "signature does not match".to_owned(),
            },
        }
    }

    fn with_id(id: &str) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(EXAMPLE).unwrap();
        value["content"]["id"] = id.into();
        serde_json::to_vec(&value).unwrap()
    }

    fn retention() -> Retention {
        Retention {
            max_age: Duration::from_secs(86_400),
            max_rows: 1_000,
        }
    }

    /// Starts a writer on `data_dir`, lets it apply the journal, and stops it.
    fn run_writer(data_dir: &Path) {
        let (store, connection) = Store::open(data_dir).unwrap();
        let (handle, thread) = WriterHandle::spawn(&store, connection, retention()).unwrap();
        drop(handle);
        thread.join().unwrap();
    }

    fn database(data_dir: &Path) -> Connection {
        Connection::open(data_dir.join(super::super::DATABASE_FILE)).unwrap()
    }

    fn count(data_dir: &Path, sql: &str) -> i64 {
        database(data_dir)
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    }

    /// Appends `deliveries` as a process that stops before applying them would.
    fn journal(data_dir: &Path, deliveries: &[Delivery]) -> i64 {
        let mut appender = Appender::open(data_dir, 0).unwrap();
        appender.append(deliveries).unwrap()
    }

    fn outcomes(data_dir: &Path) -> Vec<String> {
        database(data_dir)
            .prepare("SELECT outcome FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Returns the seqs a new reader reads from the start of the journal up to `head`.
    fn read_seqs(data_dir: &Path, head: i64) -> Vec<i64> {
        let rows = Reader::new(data_dir, 0).read(head, 100).unwrap();
        rows.into_iter().map(|(seq, _)| seq).collect()
    }

    #[test]
    fn records_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let written = [alert_delivery(EXAMPLE), rejected_delivery()];
        assert_eq!(journal(dir.path(), &written), 2);
        let read = Reader::new(dir.path(), 0).read(2, 10).unwrap();
        assert_eq!(read.len(), 2);
        for ((seq, delivery), (expected_seq, original)) in
            read.iter().zip([1, 2].iter().zip(&written))
        {
            assert_eq!(seq, expected_seq);
            assert_eq!(format!("{delivery:?}"), format!("{original:?}"));
        }
    }

    #[test]
    fn reader_stops_at_head_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let deliveries: Vec<_> = (0..5).map(|_| alert_delivery(EXAMPLE)).collect();
        journal(dir.path(), &deliveries);
        let mut reader = Reader::new(dir.path(), 1);
        let seqs =
            |rows: Vec<(i64, Delivery)>| rows.into_iter().map(|(seq, _)| seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(reader.read(3, 10).unwrap()),
            [2, 3],
            "only committed records"
        );
        assert_eq!(seqs(reader.read(5, 1).unwrap()), [4]);
        assert_eq!(seqs(reader.read(5, 10).unwrap()), [5]);
        assert!(reader.read(5, 10).unwrap().is_empty());
        reader.rewind(2);
        assert_eq!(seqs(reader.read(5, 10).unwrap()), [3, 4, 5]);
    }

    #[test]
    fn reader_follows_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        let big = alert_delivery(&with_id("big"));
        let per_batch = 400;
        let batch: Vec<_> = (0..per_batch).map(|_| alert_delivery(EXAMPLE)).collect();
        let mut head = 0;
        while segments(&super::dir(dir.path())).unwrap().len() < 3 {
            head = appender.append(&batch).unwrap();
        }
        head = appender.append([&big]).unwrap().max(head);
        let mut reader = Reader::new(dir.path(), 0);
        let mut seen = Vec::new();
        loop {
            let rows = reader.read(head, 1000).unwrap();
            if rows.is_empty() {
                break;
            }
            seen.extend(rows.into_iter().map(|(seq, _)| seq));
        }
        assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    }

    /// Reads while another thread appends and starts a new segment every few batches, as
    /// the writer does during a storm. Every seq must arrive once and in order.
    #[test]
    fn concurrent_reader_sees_every_record_once() {
        use std::sync::atomic::{AtomicI64, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let head = Arc::new(AtomicI64::new(0));
        let total = 3_000;
        let appending = {
            let data_dir = dir.path().to_owned();
            let head = Arc::clone(&head);
            std::thread::spawn(move || {
                let mut appender = Appender::open(&data_dir, 0).unwrap();
                appender.segment_bytes = 64 * 1024;
                let delivery = alert_delivery(EXAMPLE);
                let mut appended = 0;
                while appended < total {
                    let size = 1 + appended % 7;
                    let batch: Vec<&Delivery> = std::iter::repeat_n(&delivery, size).collect();
                    head.store(appender.append(batch).unwrap(), Ordering::Release);
                    appended += size;
                }
            })
        };
        let mut reader = Reader::new(dir.path(), 0);
        let mut seen = Vec::new();
        let mut idle = 0;
        while idle < 1_000 {
            let rows = reader.read(head.load(Ordering::Acquire), 50).unwrap();
            if rows.is_empty() {
                idle += 1;
                std::thread::sleep(Duration::from_millis(1));
            } else {
                idle = 0;
            }
            seen.extend(rows.into_iter().map(|(seq, _)| seq));
            if appending.is_finished() && seen.len() as i64 == head.load(Ordering::Acquire) {
                break;
            }
        }
        appending.join().unwrap();
        let head = head.load(Ordering::Acquire);
        assert!(segments(&super::dir(dir.path())).unwrap().len() > 10);
        assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    }

    #[test]
    fn failed_write_skips_its_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 1);
        // A segment opened read-only fails writes as a full or failing disk does.
        let path = appender.segment.as_ref().unwrap().path.clone();
        appender.segment.as_mut().unwrap().file = File::open(&path).unwrap();

        let error = appender
            .append([&alert_delivery(EXAMPLE)])
            .unwrap_err()
            .to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 3);
        assert_eq!(segments(&super::dir(dir.path())).unwrap().len(), 2);
        let read = Reader::new(dir.path(), 0).read(3, 10).unwrap();
        let seqs: Vec<i64> = read.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1, 3], "seq 2 was never acknowledged");
    }

    #[test]
    fn torn_record_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            &[alert_delivery(EXAMPLE), alert_delivery(EXAMPLE)],
        );
        let (_, path) = segments(&super::dir(dir.path())).unwrap().pop().unwrap();
        let intact = fs::metadata(&path).unwrap().len();
        // A power loss in the middle of the next batch leaves half a record behind.
        let mut torn = Vec::new();
        encode(&mut torn, 3, &alert_delivery(EXAMPLE));
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);
        assert_eq!(head(&super::dir(dir.path())).unwrap(), 2);

        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), intact);
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 3);
        let read = Reader::new(dir.path(), 0).read(3, 10).unwrap();
        assert_eq!(
            read.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn damaged_record_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), &[alert_delivery(EXAMPLE)]);
        let (_, path) = segments(&super::dir(dir.path())).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        assert_eq!(
            scan(&path).unwrap(),
            Scanned {
                last: None,
                intact: 0,
                spare_tail: false
            }
        );
    }

    #[test]
    fn spares_removed_without_room() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = super::dir(dir.path());
        fs::create_dir_all(&journal_dir).unwrap();
        assert!(add_spare(dir.path()).unwrap());
        assert!(add_spare(dir.path()).unwrap());
        assert_eq!(remove_spares_unless(&journal_dir, true).unwrap(), 0);
        assert_eq!(segment_counts(dir.path()).unwrap(), (0, 2));
        assert_eq!(remove_spares_unless(&journal_dir, false).unwrap(), 2);
        assert_eq!(segment_counts(dir.path()).unwrap(), (0, 0));
    }

    #[test]
    fn directory_named_as_spare_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = super::dir(dir.path());
        fs::create_dir_all(journal_dir.join("00000000000000000007.spare")).unwrap();
        fs::create_dir_all(journal_dir.join("00000000000000000009.log")).unwrap();
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 1);
        appender.segment_bytes = 0;
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 2);
        drop(appender);
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 3);
        assert_eq!(read_seqs(dir.path(), 3), [1, 2, 3]);
    }

    #[test]
    fn no_spares_where_free_space_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!room_for_spares(&dir.path().join("missing")));
    }

    #[test]
    fn seqs_continue_above_an_empty_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            &[alert_delivery(EXAMPLE), alert_delivery(EXAMPLE)],
        );
        // A crash right after the next segment was created from a spare leaves it
        // with zeros only. Seqs 3 and 4 went to a write that failed.
        let journal_dir = super::dir(dir.path());
        fs::write(segment_path(&journal_dir, 5), [0; 4096]).unwrap();

        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(appender.head(), 4);
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 5);
        assert_eq!(read_seqs(dir.path(), 5), [1, 2, 5]);
    }

    #[test]
    fn seqs_continue_above_applied() {
        let dir = tempfile::tempdir().unwrap();
        // Every segment was deleted after seq 41 was applied and made durable.
        let mut appender = Appender::open(dir.path(), 41).unwrap();
        assert_eq!(appender.head(), 41);
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 42);
        let read = Reader::new(dir.path(), 41).read(42, 10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, 42);
    }

    #[test]
    fn removal_keeps_segments_with_unapplied_records() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = super::dir(dir.path());
        for first in [1, 10, 20] {
            fs::create_dir_all(&journal_dir).unwrap();
            fs::write(segment_path(&journal_dir, first), b"").unwrap();
        }
        assert_eq!(
            remove_through(dir.path(), 8).unwrap(),
            0,
            "seq 9 is not durable yet"
        );
        assert_eq!(remove_through(dir.path(), 9).unwrap(), 1);
        assert_eq!(
            remove_through(dir.path(), 1_000).unwrap(),
            1,
            "the newest segment stays"
        );
        let left: Vec<u64> = segments(&journal_dir)
            .unwrap()
            .into_iter()
            .map(|(first, _)| first)
            .collect();
        assert_eq!(left, [20]);
    }

    #[test]
    fn zero_filled_spare_ends_at_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        let mut added = 0;
        while add_spare(dir.path()).unwrap() {
            added += 1;
        }
        assert_eq!(added, SPARE_SEGMENTS);
        assert_eq!(segment_counts(dir.path()).unwrap(), (0, SPARE_SEGMENTS));

        let two = [alert_delivery(EXAMPLE), alert_delivery(EXAMPLE)];
        assert_eq!(appender.append(&two).unwrap(), 2);
        assert_eq!(segment_counts(dir.path()).unwrap(), (1, SPARE_SEGMENTS - 1));
        let (_, path) = segments(&super::dir(dir.path())).unwrap().pop().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), SEGMENT_BYTES);
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.last, Some(2));
        assert!(scanned.spare_tail, "{scanned:?}");
        assert_eq!(read_seqs(dir.path(), 2), [1, 2]);

        drop(appender);
        let mut appender = Appender::open(dir.path(), 0).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), scanned.intact);
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 3);
    }

    #[test]
    fn journaled_deliveries_are_applied_at_start() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        journal(
            dir.path(),
            &[
                alert_delivery(EXAMPLE),
                alert_delivery(EXAMPLE),
                rejected_delivery(),
            ],
        );

        run_writer(dir.path());
        assert_eq!(count(dir.path(), "SELECT count(*) FROM alerts"), 1);
        assert_eq!(
            count(dir.path(), "SELECT delivery_count FROM alerts"),
            2,
            "the redelivery is counted"
        );
        assert_eq!(
            outcomes(dir.path()),
            ["stored", "duplicate", "bad_signature"]
        );
        assert_eq!(applied(&database(dir.path())).unwrap(), 3);
        assert_eq!(Store::pending(dir.path()).unwrap(), 0);
    }

    #[test]
    fn applied_deliveries_are_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        journal(dir.path(), &[alert_delivery(EXAMPLE)]);
        run_writer(dir.path());
        // The newest segment stays; a writer that starts again must skip its record by
        // the recorded seq.
        assert_eq!(head(&super::dir(dir.path())).unwrap(), 1);
        run_writer(dir.path());
        assert_eq!(count(dir.path(), "SELECT delivery_count FROM alerts"), 1);
        assert_eq!(count(dir.path(), "SELECT count(*) FROM deliveries"), 1);
    }

    #[test]
    fn failing_delivery_logged_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (_, connection) = Store::open(dir.path()).unwrap();
        // A trigger that rejects one alert is a stand-in for any error that only one
        // delivery causes while the disk takes writes.
        connection
            .execute_batch(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON alerts WHEN new.id = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
            )
            .unwrap();
        drop(connection);
        let deliveries: Vec<_> = ["before", "poison", "after"]
            .into_iter()
            .map(|id| alert_delivery(&with_id(id)))
            .collect();
        journal(dir.path(), &deliveries);

        run_writer(dir.path());
        let reader = database(dir.path());
        let rows: Vec<(Option<String>, String, String)> = reader
            .prepare("SELECT alert_id, outcome, reason FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].1, "stored");
        assert_eq!(rows[1].0.as_deref(), Some("poison"));
        assert_eq!(rows[1].1, "failed");
        assert!(rows[1].2.contains("refused by a test trigger"), "{rows:?}");
        assert_eq!(rows[2].1, "stored");
        assert_eq!(count(dir.path(), "SELECT count(*) FROM alerts"), 2);
        let body: Option<Vec<u8>> = reader
            .query_row(
                "SELECT body FROM deliveries WHERE alert_id = 'poison'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(body.unwrap(), with_id("poison"), "the body is kept");
        assert_eq!(Store::pending(dir.path()).unwrap(), 0);
    }

    #[test]
    fn long_backlog_is_applied_without_new_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        // Rejected deliveries leave nothing to index, so indexing does not keep the writer
        // busy between its rounds of applying.
        let rejected: Vec<_> = (0..150_000).map(|_| rejected_delivery()).collect();
        journal(dir.path(), &rejected);

        let (store, connection) = Store::open(dir.path()).unwrap();
        let (handle, thread) = WriterHandle::spawn(&store, connection, retention()).unwrap();
        // No delivery arrives to wake the writer; it goes on applying by itself.
        let left =
            wait_until_applied(dir.path(), &database(dir.path()), Duration::from_secs(10)).unwrap();
        drop(handle);
        thread.join().unwrap();
        assert_eq!(left, 0, "the writer stopped with deliveries left to apply");
    }

    #[test]
    fn pending_counts_unapplied_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        assert_eq!(Store::pending(dir.path()).unwrap(), 0, "no journal yet");
        journal(
            dir.path(),
            &[alert_delivery(EXAMPLE), alert_delivery(EXAMPLE)],
        );
        assert_eq!(Store::pending(dir.path()).unwrap(), 2);
        let waited =
            wait_until_applied(dir.path(), &database(dir.path()), Duration::from_millis(50))
                .unwrap();
        assert_eq!(waited, 2, "no writer runs, so both are still pending");
    }

    #[test]
    fn previous_sqlite_journal_is_applied_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let legacy = Connection::open(dir.path().join(LEGACY_FILE)).unwrap();
        legacy
            .execute_batch(
                "CREATE TABLE journal (seq INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
                     remote_addr TEXT NOT NULL, via TEXT NOT NULL, method TEXT NOT NULL,
                     path TEXT NOT NULL, body_size INTEGER NOT NULL, body_sha256 TEXT NOT NULL,
                     headers TEXT, body BLOB, outcome TEXT, status INTEGER, reason TEXT);",
            )
            .unwrap();
        for (seq, id) in [(7, "seven"), (8, "eight")] {
            legacy
                .execute(
                    "INSERT INTO journal (seq, received_ms, remote_addr, via, method, path,
                         body_size, body_sha256, body)
                     VALUES (?1, ?2, '127.0.0.1:9', 'loopback', 'POST', '/webhook', 0, '', ?3)",
                    params![seq, crate::store::now_ms(), with_id(id)],
                )
                .unwrap();
        }
        legacy
            .execute(
                "INSERT INTO journal (seq, received_ms, remote_addr, via, method, path,
                     body_size, body_sha256, outcome, status, reason)
                 VALUES (9, ?1, '127.0.0.1:9', 'loopback', 'POST', '/webhook', 0, '',
                     'unauthorized', 401, 'no credentials')",
                [crate::store::now_ms()],
            )
            .unwrap();
        drop(legacy);
        // Seq 7 was applied before the upgrade.
        set_applied(&database(dir.path()), 7).unwrap();

        run_writer(dir.path());
        assert_eq!(outcomes(dir.path()), ["stored", "unauthorized"]);
        assert_eq!(
            count(dir.path(), "SELECT count(*) FROM alerts WHERE id = 'eight'"),
            1
        );
        assert!(!dir.path().join(LEGACY_FILE).exists());
        let mut appender =
            Appender::open(dir.path(), applied(&database(dir.path())).unwrap()).unwrap();
        assert_eq!(appender.append([&alert_delivery(EXAMPLE)]).unwrap(), 10);
    }
}
