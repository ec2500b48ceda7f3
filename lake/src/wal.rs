//! The write-ahead log: one log for every kind of table, durable, group-committed,
//! replayable, and fail-stop.
//!
//! A write is acknowledged only after its record is in a WAL segment *and* `fsync`ed, so
//! `kill -9` or a power cut after the acknowledgement cannot lose it. One writer thread
//! owns the open segment. It takes every write waiting in its queue, appends them all,
//! syncs once and only then acknowledges them: under load one `fsync` covers many writes
//! (group commit, as in InfluxDB 3 and Blaze).
//!
//! Every kind of table writes through this one log ([`WalEntry`]): FHIR resource
//! versions in their own compact encoding, and the rows of any other table kind
//! ([`crate::kind::TableKind`]) as that kind encodes them. One sequence numbers them all,
//! one group `fsync` covers them all, and one recovery pass replays them all.
//!
//! ## Format
//! Segments are files named `<first sequence, 20 digits>.wal` in the WAL folder. A
//! segment starts with the 8-byte [`SEGMENT_MAGIC`]; then records, each
//! `[u32 length][u32 crc32][payload]`, little-endian. A payload is a count of entries and
//! the entries, each a tag byte and its body (see [`encode_entries`]). Segments without
//! the magic were written by an earlier medlake: their payloads are FHIR rows alone, and
//! they are still read.
//!
//! ## What a failure does
//! - A torn record at the end of the newest segment is a write that was never
//!   acknowledged: recovery cuts it off.
//! - Damage anywhere else (a bad record followed by good ones, or a bad record in an
//!   older segment) is acknowledged data at risk: recovery refuses to start, and names
//!   the segment and the byte. An operator may choose [`Recovery::TruncateAtDamage`]
//!   instead, which keeps everything before the damage and sets the rest aside.
//! - A failed write or `fsync` stops the log for good (fail-stop, as PostgreSQL does
//!   since the fsync errors of 2018: after a failed `fsync` the kernel may have dropped
//!   the dirty pages, and a retry that succeeds proves nothing). Every write waiting and
//!   every later one fails with [`LakeError::WalStopped`] until the process restarts and
//!   recovery reads what is really on disk. Rows acknowledged before the failure stay
//!   readable and still reach Delta: a rotation on a stopped log keeps every segment.
//!
//! When the lake flushes, the writer *rotates*: it closes the segment and starts a new one.
//! Once every row of the closed segments is committed to Delta, they are deleted. While
//! object storage is down no segment can be deleted, so the log grows: [`Wal::bytes`]
//! says how much it holds on disk, and the lake refuses writes past its bound
//! ([`LakeError::WalFull`]) rather than fill the disk.
//!
//! Written by hand because no maintained crate offers a small synchronous WAL with group
//! commit whose records are our own rows; the format is about a hundred lines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;

use arrow::array::RecordBatch;
use bytes::Bytes;

use crate::error::{LakeError, Result};
use crate::record::ResourceVersion;

/// The first bytes of every segment this version writes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"MLWAL\0\x02\0";

const TAG_RESOURCES: u8 = 1;
const TAG_ROWS: u8 = 2;

/// One entry of a WAL record.
#[derive(Debug, Clone)]
pub enum WalEntry {
    /// FHIR resource versions, each with its own sequence.
    Resources(Vec<ResourceVersion>),
    /// Rows of a table of another kind, under one sequence.
    Rows(TableRows),
}

/// Rows of one table of a registered [`crate::kind::TableKind`].
#[derive(Debug, Clone)]
pub struct TableRows {
    /// The table's qualified name (`device.measurements`).
    pub table: Arc<str>,
    pub seq: i64,
    /// The rows, as the kind encoded them for the log.
    pub encoded: Bytes,
    /// The rows themselves: present for a write, decoded by the lake after a replay.
    pub batch: Option<RecordBatch>,
}

impl WalEntry {
    /// The highest sequence in the entry.
    pub fn max_seq(&self) -> Option<i64> {
        match self {
            WalEntry::Resources(rows) => rows.iter().filter_map(|r| r.wal_seq).max(),
            WalEntry::Rows(t) => Some(t.seq),
        }
    }
}

/// Called on the writer thread once entries are durable, before they are acknowledged.
pub type OnDurable = Box<dyn FnMut(&[WalEntry]) + Send>;
/// Called on the writer thread, in log order, for entries that will never be durable.
pub type OnFailed = Box<dyn FnMut(&[WalEntry]) + Send>;

/// What recovery does with damage that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Refuse to start, naming the segment and the byte.
    #[default]
    Strict,
    /// Keep the log up to the damage; move the damaged segment's rest and every later
    /// segment aside (`*.wal.damaged`). Acknowledged writes after the damage are lost:
    /// an operator's explicit choice.
    TruncateAtDamage,
}

/// Faults to inject, for tests of the fail-stop behaviour. Each counter fails that many
/// of the next operations of its kind.
#[derive(Debug, Default)]
pub struct WalFaults {
    pub fail_writes: AtomicU32,
    pub fail_syncs: AtomicU32,
}

impl WalFaults {
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

enum Command {
    Append {
        entries: Vec<WalEntry>,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    Rotate {
        done: tokio::sync::oneshot::Sender<Result<Rotation, String>>,
    },
}

/// A queued append.
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
}

impl Pending {
    /// Wait until the append is durable and readable.
    pub async fn wait(self) -> Result<()> {
        match self.rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LakeError::WalStopped(e)),
            Err(_) => Err(LakeError::WalStopped(
                "the WAL writer thread is gone".into(),
            )),
        }
    }
}

/// What a rotation closed.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The segments that no longer receive writes, and whose rows are all durable.
    pub closed: Vec<PathBuf>,
    /// The highest acknowledged sequence (0 if none was ever written).
    pub last_seq: i64,
}

/// Handle to the WAL's writer thread.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Command>,
    dir: Arc<PathBuf>,
    faults: Arc<WalFaults>,
    /// Bytes of every segment on disk, synced ones only.
    bytes: Arc<AtomicU64>,
}

/// The records found on disk at start.
pub struct Replay {
    pub entries: Vec<WalEntry>,
    pub segments: Vec<PathBuf>,
    pub last_seq: i64,
}

impl Wal {
    /// Read what the WAL folder holds, repairing a torn tail. Call before [`Wal::start`].
    pub fn replay(dir: &Path, recovery: Recovery) -> Result<Replay> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LakeError::io(format!("could not create WAL folder {}", dir.display()), e)
        })?;
        let mut segments = list_segments(dir)?;
        let mut entries = Vec::new();
        let mut last_seq = 0;
        let mut cut_at = None;
        for (i, seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let outcome = read_segment(seg, is_last, recovery, &mut |e| {
                if let Some(s) = e.max_seq() {
                    last_seq = last_seq.max(s);
                }
                entries.push(e);
            })?;
            if outcome == SegmentEnd::Truncated {
                cut_at = Some(i);
                break;
            }
        }
        if let Some(i) = cut_at {
            for later in segments.drain(i + 1..) {
                set_aside(&later)?;
            }
        }
        Ok(Replay {
            entries,
            segments,
            last_seq,
        })
    }

    /// Start the writer thread. New writes go to a fresh segment after `last_seq`.
    pub fn start(
        dir: &Path,
        last_seq: i64,
        on_durable: OnDurable,
        on_failed: OnFailed,
    ) -> Result<Wal> {
        let (tx, rx) = mpsc::channel();
        let faults = Arc::new(WalFaults::default());
        let mut writer = Writer::open(dir.to_path_buf(), last_seq, faults.clone())?;
        let bytes = writer.bytes.clone();
        let mut callbacks = (on_durable, on_failed);
        std::thread::Builder::new()
            .name("medlake-wal".into())
            .spawn(move || writer.run(rx, &mut callbacks))
            .map_err(|e| LakeError::io("could not start the WAL writer thread", e))?;
        Ok(Wal {
            tx,
            dir: Arc::new(dir.to_path_buf()),
            faults,
            bytes,
        })
    }

    /// Queue `entries` now; [`Pending::wait`] resolves once they are durable. Queue order
    /// is file order, so callers that assign sequences call this under the same lock.
    pub fn submit(&self, entries: Vec<WalEntry>) -> Result<Pending> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Append { entries, done })
            .map_err(|_| LakeError::WalStopped("the WAL writer thread is gone".into()))?;
        Ok(Pending { rx })
    }

    /// Make `entries` durable. Resolves once they are synced and handed to `on_durable`.
    pub async fn append(&self, entries: Vec<WalEntry>) -> Result<()> {
        self.submit(entries)?.wait().await
    }

    /// Close the current segment and start a new one.
    pub async fn rotate(&self) -> Result<Rotation> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Rotate { done })
            .map_err(|_| LakeError::WalStopped("the WAL writer thread is gone".into()))?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(LakeError::WalStopped(e)),
            Err(_) => Err(LakeError::WalStopped(
                "the WAL writer thread is gone".into(),
            )),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the log's segments hold on disk: closed segments waiting for a flush to reach
    /// Delta, and the open one.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Delete closed segments whose rows are all in Delta.
    pub fn remove_segments(&self, segments: &[PathBuf]) -> Result<()> {
        for s in segments {
            let len = std::fs::metadata(s).map_or(0, |m| m.len());
            match std::fs::remove_file(s) {
                Ok(()) => {
                    let _ = self
                        .bytes
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some(b.saturating_sub(len))
                        });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(LakeError::io(
                        format!("could not remove {}", s.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fault switches of this log, for tests.
    #[doc(hidden)]
    pub fn faults(&self) -> &WalFaults {
        &self.faults
    }
}

/// Take the WAL folder for this process. Two writers on one WAL would interleave and
/// corrupt it, so a second process is refused with advice instead.
pub fn lock_dir(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LakeError::io(format!("could not create WAL folder {}", dir.display()), e))?;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LakeError::io(format!("could not open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LakeError::WalLocked {
            dir: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(LakeError::io(
            format!("could not lock {}", path.display()),
            e,
        )),
    }
}

type Waiting = Vec<(
    Vec<WalEntry>,
    tokio::sync::oneshot::Sender<Result<(), String>>,
)>;

struct Writer {
    dir: PathBuf,
    file: File,
    /// Records of the current group, written to the file only when it is synced, so a
    /// stopped log leaves nothing unacknowledged behind in a buffer to reach the file later.
    buf: Vec<u8>,
    /// The file's length after its last successful sync.
    durable_len: u64,
    path: PathBuf,
    /// Segments closed by earlier rotations or found at start, not yet handed out.
    closed: Vec<PathBuf>,
    /// The highest sequence written to the file.
    last_seq: i64,
    /// The highest sequence synced and acknowledged.
    durable_seq: i64,
    /// Why the log stopped, once a write or a sync failed.
    stopped: Option<String>,
    faults: Arc<WalFaults>,
    /// Shared with [`Wal::bytes`].
    bytes: Arc<AtomicU64>,
}

impl Writer {
    fn open(dir: PathBuf, last_seq: i64, faults: Arc<WalFaults>) -> Result<Writer> {
        let path = dir.join(segment_name(last_seq + 1));
        // The segment this writer appends to may already be on disk: a rotation opened it
        // and the process died before a whole record reached it. It is not closed: handed
        // out by a rotation that finds nothing written since, it would be deleted by the
        // next flush while acknowledged writes go into it.
        let closed: Vec<PathBuf> = list_segments(&dir)?
            .into_iter()
            .filter(|p| *p != path)
            .collect();
        let file = open_segment(&path)?;
        let durable_len = segment_len(&file, &path)?;
        let closed_bytes: u64 = closed
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(Writer {
            dir,
            file,
            buf: Vec::with_capacity(1 << 20),
            durable_len,
            path,
            closed,
            last_seq,
            durable_seq: last_seq,
            stopped: None,
            faults,
            bytes: Arc::new(AtomicU64::new(closed_bytes + durable_len)),
        })
    }

    fn run(&mut self, rx: mpsc::Receiver<Command>, callbacks: &mut (OnDurable, OnFailed)) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
                if group.len() >= 4096 {
                    break;
                }
            }
            self.handle_group(group, callbacks);
        }
    }

    fn handle_group(&mut self, group: Vec<Command>, callbacks: &mut (OnDurable, OnFailed)) {
        let mut waiting: Waiting = Vec::new();
        for cmd in group {
            match cmd {
                Command::Append { entries, done } => {
                    if self.stopped.is_none() {
                        if let Err(e) = self.write_record(&entries) {
                            self.stop(e);
                        }
                    }
                    waiting.push((entries, done));
                }
                Command::Rotate { done } => {
                    // Everything before the rotation must be durable and visible first.
                    self.sync(&mut waiting, callbacks);
                    let _ = done.send(self.rotate());
                }
            }
        }
        self.sync(&mut waiting, callbacks);
    }

    fn stop(&mut self, reason: String) {
        // Best effort: what was not acknowledged should not come back at recovery.
        self.buf.clear();
        let _ = self.file.set_len(self.durable_len);
        tracing::error!(
            "{reason}. The write-ahead log is stopped: no write is acknowledged until \
             medlake restarts and recovers from what is on disk"
        );
        self.stopped = Some(reason);
    }

    /// Sync what was written, then acknowledge it, or fail it all if the log stopped.
    fn sync(&mut self, waiting: &mut Waiting, (on_durable, on_failed): &mut (OnDurable, OnFailed)) {
        if waiting.is_empty() {
            return;
        }
        if self.stopped.is_none() {
            crate::crash::torn_write("wal-mid-group", &mut self.file, &self.buf);
            let synced = self.file.write_all(&self.buf).and_then(|()| {
                if WalFaults::take(&self.faults.fail_syncs) {
                    Err(std::io::Error::other("injected fsync failure"))
                } else {
                    self.file.sync_data()
                }
            });
            match synced {
                Ok(()) => {
                    self.durable_len += self.buf.len() as u64;
                    self.bytes
                        .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                    self.buf.clear();
                }
                Err(e) => self.stop(format!(
                    "could not sync the WAL {}: {e}",
                    self.path.display()
                )),
            }
        }
        match &self.stopped {
            None => {
                for (entries, done) in waiting.drain(..) {
                    if let Some(s) = entries.iter().filter_map(WalEntry::max_seq).max() {
                        self.durable_seq = self.durable_seq.max(s);
                    }
                    on_durable(&entries);
                    let _ = done.send(Ok(()));
                }
            }
            Some(reason) => {
                for (entries, done) in waiting.drain(..) {
                    on_failed(&entries);
                    let _ = done.send(Err(reason.clone()));
                }
            }
        }
    }

    fn write_record(&mut self, entries: &[WalEntry]) -> Result<(), String> {
        if WalFaults::take(&self.faults.fail_writes) {
            return Err(format!(
                "could not write the WAL {}: injected write failure",
                self.path.display()
            ));
        }
        // Encode in place behind a header that is filled in afterwards.
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 8]);
        encode_entries(entries, &mut self.buf);
        let payload = &self.buf[start + 8..];
        let crc = crc32fast::hash(payload);
        let Ok(len) = u32::try_from(payload.len()) else {
            self.buf.truncate(start);
            return Err("a single write is larger than 4 GiB".to_string());
        };
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        if let Some(s) = entries.iter().filter_map(WalEntry::max_seq).max() {
            self.last_seq = self.last_seq.max(s);
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<Rotation, String> {
        if self.stopped.is_some() {
            // Nothing may be deleted or trusted beyond what was acknowledged: hand out no
            // segment, so recovery will read them all again.
            return Ok(Rotation {
                closed: Vec::new(),
                last_seq: self.durable_seq,
            });
        }
        let next = self.dir.join(segment_name(self.last_seq + 1));
        let mut closed = std::mem::take(&mut self.closed);
        if next != self.path {
            let file = open_segment(&next).map_err(|e| e.to_string())?;
            self.durable_len = segment_len(&file, &next).map_err(|e| e.to_string())?;
            self.bytes.fetch_add(self.durable_len, Ordering::Relaxed);
            let old = std::mem::replace(&mut self.path, next);
            self.file = file;
            closed.push(old);
        }
        Ok(Rotation {
            closed,
            last_seq: self.durable_seq,
        })
    }
}

/// Open a segment for appending; a new one gets the magic, durably, before any record.
fn open_segment(path: &Path) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LakeError::io(format!("could not open WAL segment {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| LakeError::io(format!("could not open WAL segment {}", path.display()), e))?
        .len();
    if len == 0 {
        file.write_all(SEGMENT_MAGIC)
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                LakeError::io(format!("could not start WAL segment {}", path.display()), e)
            })?;
        if let Some(dir) = path.parent() {
            sync_dir(dir);
        }
    }
    Ok(file)
}

fn segment_len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| LakeError::io(format!("could not read WAL segment {}", path.display()), e))
}

/// Make a new file's directory entry durable too.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn segment_name(first_seq: i64) -> String {
    format!("{first_seq:020}.wal")
}

fn list_segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LakeError::io(format!("could not list WAL folder {}", dir.display()), e))?;
    for e in entries {
        let e = e.map_err(|e| LakeError::io("could not list the WAL folder", e))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "wal") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn set_aside(path: &Path) -> Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    tracing::warn!(
        "setting WAL segment {} aside as {:?}",
        path.display(),
        aside
    );
    std::fs::rename(path, &aside)
        .map_err(|e| LakeError::io(format!("could not set {} aside", path.display()), e))
}

#[derive(Debug, PartialEq, Eq)]
enum SegmentEnd {
    Whole,
    Truncated,
}

/// How a segment's records are laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// Written by an earlier medlake: no magic, payloads of FHIR rows.
    Legacy,
    Tagged,
}

fn decode_payload(layout: Layout, payload: &[u8]) -> Option<Vec<WalEntry>> {
    match layout {
        Layout::Legacy => decode_rows(payload).map(|rows| vec![WalEntry::Resources(rows)]),
        Layout::Tagged => decode_entries(payload),
    }
}

/// Whether a whole, valid record starts at `pos`.
fn record_at(bytes: &[u8], pos: usize, layout: Layout) -> Option<(usize, Vec<WalEntry>)> {
    let header = bytes.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let payload = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    decode_payload(layout, payload).map(|entries| (8 + len, entries))
}

fn read_segment(
    path: &Path,
    is_last: bool,
    recovery: Recovery,
    emit: &mut dyn FnMut(WalEntry),
) -> Result<SegmentEnd> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| LakeError::io(format!("could not read WAL segment {}", path.display()), e))?;
    let (layout, mut pos) = if bytes.starts_with(SEGMENT_MAGIC) {
        (Layout::Tagged, SEGMENT_MAGIC.len())
    } else if SEGMENT_MAGIC.starts_with(&bytes) {
        // A segment whose creation was cut short: it never held a record.
        (Layout::Tagged, bytes.len())
    } else {
        (Layout::Legacy, 0)
    };
    while pos < bytes.len() {
        if let Some((len, entries)) = record_at(&bytes, pos, layout) {
            entries.into_iter().for_each(&mut *emit);
            pos += len;
            continue;
        }
        // A bad record. Only a torn tail (nothing valid after it, in the newest segment)
        // is a write that was never acknowledged.
        let valid_after = (pos + 1..bytes.len()).find(|&p| record_at(&bytes, p, layout).is_some());
        let torn_tail = is_last && valid_after.is_none();
        if !torn_tail && recovery == Recovery::Strict {
            return Err(LakeError::WalCorrupt {
                path: path.display().to_string(),
                offset: pos as u64,
                reason: match valid_after {
                    Some(p) => format!("a damaged record, followed by valid records from byte {p}"),
                    None => "a damaged record in a segment that is not the newest".into(),
                },
            });
        }
        if torn_tail {
            tracing::warn!(
                "WAL {}: a torn record at byte {pos}; dropping the unacknowledged tail",
                path.display()
            );
        } else {
            tracing::warn!(
                "WAL {}: damaged at byte {pos}; truncating there as asked \
                 (acknowledged writes after it are lost)",
                path.display()
            );
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| LakeError::io(format!("could not repair {}", path.display()), e))?;
        f.set_len(pos as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| LakeError::io(format!("could not repair {}", path.display()), e))?;
        return Ok(if torn_tail {
            SegmentEnd::Whole
        } else {
            SegmentEnd::Truncated
        });
    }
    Ok(SegmentEnd::Whole)
}

/// Encode a record's entries: a u32 count, then per entry a tag byte and its body.
/// [`WalEntry::Resources`]: the rows as [`encode_rows`] writes them.
/// [`WalEntry::Rows`]: the table name, the sequence, and the kind's bytes
/// (u32-length-prefixed).
pub fn encode_entries(entries: &[WalEntry], out: &mut Vec<u8>) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        match e {
            WalEntry::Resources(rows) => {
                out.push(TAG_RESOURCES);
                encode_rows(rows, out);
            }
            WalEntry::Rows(t) => {
                out.push(TAG_ROWS);
                put_str(out, &t.table);
                out.extend_from_slice(&t.seq.to_le_bytes());
                out.extend_from_slice(&(t.encoded.len() as u32).to_le_bytes());
                out.extend_from_slice(&t.encoded);
            }
        }
    }
}

/// Decode what [`encode_entries`] wrote; `None` if it is malformed.
pub fn decode_entries(mut b: &[u8]) -> Option<Vec<WalEntry>> {
    let n = u32_(&mut b)? as usize;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        match take(&mut b, 1)?[0] {
            TAG_RESOURCES => {
                let (rows, rest) = decode_rows_prefix(b)?;
                b = rest;
                out.push(WalEntry::Resources(rows));
            }
            TAG_ROWS => {
                let table: Arc<str> = Arc::from(str_(&mut b)?);
                let seq = i64_(&mut b)?;
                let len = u32_(&mut b)? as usize;
                let encoded = Bytes::copy_from_slice(take(&mut b, len)?);
                out.push(WalEntry::Rows(TableRows {
                    table,
                    seq,
                    encoded,
                    batch: None,
                }));
            }
            _ => return None,
        }
    }
    b.is_empty().then_some(out)
}

/// Encode FHIR rows as: count, then per row: type, id, version, last_updated, deleted,
/// seq, resource. Strings are u32-length-prefixed UTF-8, integers little-endian.
pub fn encode_rows(rows: &[ResourceVersion], out: &mut Vec<u8>) {
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        put_str(out, &r.resource_type);
        put_str(out, &r.id);
        out.extend_from_slice(&r.version_id.to_le_bytes());
        out.extend_from_slice(&r.last_updated.to_le_bytes());
        out.push(u8::from(r.deleted));
        out.extend_from_slice(&r.wal_seq.unwrap_or(-1).to_le_bytes());
        put_str(out, &r.resource);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn u32_(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
}

fn i64_(b: &mut &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(take(b, 8)?.try_into().ok()?))
}

fn str_<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
    let n = u32_(b)? as usize;
    std::str::from_utf8(take(b, n)?).ok()
}

/// Decode what [`encode_rows`] wrote, and nothing more; `None` if it is malformed.
pub fn decode_rows(b: &[u8]) -> Option<Vec<ResourceVersion>> {
    let (rows, rest) = decode_rows_prefix(b)?;
    rest.is_empty().then_some(rows)
}

fn decode_rows_prefix(mut b: &[u8]) -> Option<(Vec<ResourceVersion>, &[u8])> {
    let n = u32_(&mut b)? as usize;
    let mut rows = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let resource_type = str_(&mut b)?.to_string();
        let id = str_(&mut b)?.to_string();
        let version_id = i64_(&mut b)?;
        let last_updated = i64_(&mut b)?;
        let deleted = take(&mut b, 1)?[0] != 0;
        let seq = i64_(&mut b)?;
        let resource: Arc<str> = Arc::from(str_(&mut b)?);
        rows.push(ResourceVersion {
            resource_type,
            id,
            version_id,
            last_updated,
            deleted,
            resource,
            wal_seq: (seq >= 0).then_some(seq),
            // Not logged: the lake extracts it again when it replays the row.
            search: Arc::from(""),
        });
    }
    Some((rows, b))
}

#[cfg(test)]
mod tests;
