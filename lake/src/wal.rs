//! The write-ahead log: durable, group-committed, replayable.
//!
//! A write is acknowledged only after its record is in a WAL segment *and* `fsync`ed, so
//! `kill -9` or a power cut after the acknowledgement cannot lose it. One writer thread
//! owns the open segment. It takes every write waiting in its queue, appends them all,
//! syncs once and only then acknowledges them: under load one `fsync` covers many writes
//! (group commit, as in InfluxDB 3 and Blaze).
//!
//! Segments are files named `<first sequence, 20 digits>.wal` in the WAL folder. Each
//! record is `[u32 length][u32 crc32][payload]`, little-endian, where the payload holds
//! resource versions in a small binary encoding (see [`encode_rows`]). A torn record at the
//! end of the newest segment is a write that was never acknowledged: recovery cuts it off.
//! Damage anywhere else is reported, never skipped silently.
//!
//! When the lake flushes, the writer *rotates*: it closes the segment and starts a new one.
//! Once every row of the closed segments is committed to Delta, they are deleted.
//!
//! Written by hand because no maintained crate offers a small synchronous WAL with group
//! commit whose records are our own rows; the format is about a hundred lines.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use crate::error::{LakeError, Result};
use crate::record::ResourceVersion;

/// Called on the writer thread once rows are durable, before they are acknowledged.
pub type OnDurable = Box<dyn FnMut(&[ResourceVersion]) + Send>;

enum Command {
    Append {
        rows: Vec<ResourceVersion>,
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
            Ok(Err(e)) => Err(LakeError::WriterStopped(e)),
            Err(_) => Err(LakeError::WriterStopped(
                "the WAL writer thread is gone".into(),
            )),
        }
    }
}

/// What a rotation closed.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The segments that no longer receive writes.
    pub closed: Vec<PathBuf>,
    /// The highest sequence in them (0 if none was ever written).
    pub last_seq: i64,
}

/// Handle to the WAL's writer thread.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Command>,
    dir: Arc<PathBuf>,
}

/// The records found on disk at start.
pub struct Replay {
    pub rows: Vec<ResourceVersion>,
    pub segments: Vec<PathBuf>,
    pub last_seq: i64,
}

impl Wal {
    /// Read what the WAL folder holds, repairing a torn tail. Call before [`Wal::start`].
    pub fn replay(dir: &Path) -> Result<Replay> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LakeError::io(format!("could not create WAL folder {}", dir.display()), e)
        })?;
        let segments = list_segments(dir)?;
        let mut rows = Vec::new();
        let mut last_seq = 0;
        for (i, seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            read_segment(seg, is_last, &mut |r| {
                if let Some(s) = r.wal_seq {
                    last_seq = last_seq.max(s);
                }
                rows.push(r);
            })?;
        }
        Ok(Replay {
            rows,
            segments,
            last_seq,
        })
    }

    /// Start the writer thread. New writes go to a fresh segment after `last_seq`.
    pub fn start(dir: &Path, last_seq: i64, on_durable: OnDurable) -> Result<Wal> {
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer::open(dir.to_path_buf(), last_seq)?;
        let mut on_durable = on_durable;
        std::thread::Builder::new()
            .name("medlake-wal".into())
            .spawn(move || writer.run(rx, &mut on_durable))
            .map_err(|e| LakeError::io("could not start the WAL writer thread", e))?;
        Ok(Wal {
            tx,
            dir: Arc::new(dir.to_path_buf()),
        })
    }

    /// Make `rows` durable. Resolves once they are synced and handed to `on_durable`.
    /// The caller must send rows in sequence order.
    pub async fn append(&self, rows: Vec<ResourceVersion>) -> Result<()> {
        self.submit(rows)?.wait().await
    }

    /// Queue `rows` now; [`Pending::wait`] resolves once they are durable. Queue order is
    /// file order, so callers that assign sequences call this under the same lock.
    pub fn submit(&self, rows: Vec<ResourceVersion>) -> Result<Pending> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Append { rows, done })
            .map_err(|_| LakeError::WriterStopped("the WAL writer thread is gone".into()))?;
        Ok(Pending { rx })
    }

    /// Close the current segment and start a new one.
    pub async fn rotate(&self) -> Result<Rotation> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Rotate { done })
            .map_err(|_| LakeError::WriterStopped("the WAL writer thread is gone".into()))?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(LakeError::WriterStopped(e)),
            Err(_) => Err(LakeError::WriterStopped(
                "the WAL writer thread is gone".into(),
            )),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        Err(std::fs::TryLockError::WouldBlock) => Err(LakeError::WriterStopped(format!(
            "another medlake process is writing to this workspace (its WAL {} is locked). \
             Stop it first, or send the data to that server's /ingest endpoint",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(LakeError::io(
            format!("could not lock {}", path.display()),
            e,
        )),
    }
}

/// Delete segments whose rows are all in Delta.
pub fn remove_segments(segments: &[PathBuf]) -> Result<()> {
    for s in segments {
        match std::fs::remove_file(s) {
            Ok(()) => {}
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

struct Writer {
    dir: PathBuf,
    file: BufWriter<File>,
    path: PathBuf,
    /// Segments closed by earlier rotations or found at start, not yet handed out.
    closed: Vec<PathBuf>,
    last_seq: i64,
    scratch: Vec<u8>,
}

impl Writer {
    fn open(dir: PathBuf, last_seq: i64) -> Result<Writer> {
        let closed = list_segments(&dir)?;
        let path = dir.join(segment_name(last_seq + 1));
        let file = open_segment(&path)?;
        sync_dir(&dir);
        Ok(Writer {
            dir,
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            closed,
            last_seq,
            scratch: Vec::new(),
        })
    }

    fn run(&mut self, rx: mpsc::Receiver<Command>, on_durable: &mut OnDurable) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
                if group.len() >= 4096 {
                    break;
                }
            }
            self.handle_group(group, on_durable);
        }
    }

    fn handle_group(&mut self, group: Vec<Command>, on_durable: &mut OnDurable) {
        let mut appended: Vec<(Vec<ResourceVersion>, _)> = Vec::new();
        let mut write_error: Option<String> = None;
        for cmd in group {
            match cmd {
                Command::Append { rows, done } => {
                    if write_error.is_none() {
                        if let Err(e) = self.write_record(&rows) {
                            write_error = Some(e);
                        }
                    }
                    appended.push((rows, done));
                }
                Command::Rotate { done } => {
                    // Everything before the rotation must be durable and visible first.
                    let r = self.sync(&mut appended, &mut write_error, on_durable);
                    let res = r.and_then(|()| self.rotate().map_err(|e| e.to_string()));
                    let _ = done.send(res);
                }
            }
        }
        let _ = self.sync(&mut appended, &mut write_error, on_durable);
    }

    fn sync(
        &mut self,
        appended: &mut Vec<(
            Vec<ResourceVersion>,
            tokio::sync::oneshot::Sender<Result<(), String>>,
        )>,
        write_error: &mut Option<String>,
        on_durable: &mut OnDurable,
    ) -> Result<(), String> {
        if appended.is_empty() {
            return match write_error.take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        let synced = match write_error.take() {
            Some(e) => Err(e),
            None => self
                .file
                .flush()
                .and_then(|()| self.file.get_ref().sync_data())
                .map_err(|e| format!("could not sync the WAL {}: {e}", self.path.display())),
        };
        for (rows, done) in appended.drain(..) {
            match &synced {
                Ok(()) => {
                    on_durable(&rows);
                    let _ = done.send(Ok(()));
                }
                Err(e) => {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
        if let Err(e) = &synced {
            // A failed fsync leaves the page cache in an unknown state: never ack on this
            // file again. Start a new segment; recovery reads what made it to disk.
            tracing::error!("{e}; switching to a new WAL segment");
            let _ = self.rotate();
        }
        synced
    }

    fn write_record(&mut self, rows: &[ResourceVersion]) -> Result<(), String> {
        self.scratch.clear();
        encode_rows(rows, &mut self.scratch);
        let crc = crc32fast::hash(&self.scratch);
        let len = u32::try_from(self.scratch.len())
            .map_err(|_| "a single write is larger than 4 GiB".to_string())?;
        let io =
            |e: std::io::Error| format!("could not write the WAL {}: {e}", self.path.display());
        self.file.write_all(&len.to_le_bytes()).map_err(io)?;
        self.file.write_all(&crc.to_le_bytes()).map_err(io)?;
        self.file.write_all(&self.scratch).map_err(io)?;
        if let Some(s) = rows.iter().filter_map(|r| r.wal_seq).max() {
            self.last_seq = self.last_seq.max(s);
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<Rotation> {
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_data())
            .map_err(|e| LakeError::io(format!("could not sync {}", self.path.display()), e))?;
        let next = self.dir.join(segment_name(self.last_seq + 1));
        let mut closed = std::mem::take(&mut self.closed);
        if next != self.path {
            let file = open_segment(&next)?;
            sync_dir(&self.dir);
            let old = std::mem::replace(&mut self.path, next);
            self.file = BufWriter::with_capacity(1 << 20, file);
            closed.push(old);
        }
        Ok(Rotation {
            closed,
            last_seq: self.last_seq,
        })
    }
}

fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LakeError::io(format!("could not open WAL segment {}", path.display()), e))
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

fn read_segment(path: &Path, is_last: bool, emit: &mut dyn FnMut(ResourceVersion)) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| LakeError::io(format!("could not read WAL segment {}", path.display()), e))?;
    let mut pos = 0usize;
    let corrupt = |offset: usize, reason: &str| LakeError::WalCorrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    while pos < bytes.len() {
        let bad = if bytes.len() - pos < 8 {
            Some("a record header is cut short")
        } else {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or([0; 4]));
            if bytes.len() - pos - 8 < len {
                Some("a record is cut short")
            } else {
                let payload = &bytes[pos + 8..pos + 8 + len];
                if crc32fast::hash(payload) != crc {
                    Some("a record's checksum does not match")
                } else {
                    let rows = decode_rows(payload)
                        .ok_or_else(|| corrupt(pos, "a record cannot be decoded"))?;
                    rows.into_iter().for_each(&mut *emit);
                    pos += 8 + len;
                    None
                }
            }
        };
        if let Some(reason) = bad {
            if !is_last {
                return Err(corrupt(pos, reason));
            }
            // The torn tail of the newest segment: a write that was never acknowledged.
            tracing::warn!(
                "WAL {}: {reason} at byte {pos}; dropping the unacknowledged tail",
                path.display()
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| LakeError::io(format!("could not repair {}", path.display()), e))?;
            f.set_len(pos as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| LakeError::io(format!("could not repair {}", path.display()), e))?;
            break;
        }
    }
    Ok(())
}

/// Encode rows as: count, then per row: type, id, version, last_updated, deleted, seq,
/// resource. Strings are u32-length-prefixed UTF-8, integers little-endian.
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

/// Decode what [`encode_rows`] wrote; `None` if it is malformed.
pub fn decode_rows(mut b: &[u8]) -> Option<Vec<ResourceVersion>> {
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
    b.is_empty().then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> ResourceVersion {
        ResourceVersion {
            resource_type: "Patient".into(),
            id: format!("p{seq}"),
            version_id: 1,
            last_updated: 1_700_000_000_000_000 + seq,
            deleted: false,
            resource: Arc::from(format!(
                "{{\"resourceType\":\"Patient\",\"id\":\"p{seq}\"}}"
            )),
            wal_seq: Some(seq),
            search: Arc::from(""),
        }
    }

    #[test]
    fn encoding_round_trips() {
        let rows = vec![row(1), row(2)];
        let mut b = Vec::new();
        encode_rows(&rows, &mut b);
        assert_eq!(decode_rows(&b).unwrap(), rows);
        assert!(decode_rows(&b[..b.len() - 1]).is_none());
    }

    #[tokio::test]
    async fn acknowledged_rows_replay_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(0usize));
        let s2 = seen.clone();
        let wal = Wal::start(
            dir.path(),
            0,
            Box::new(move |rows| *s2.lock().unwrap() += rows.len()),
        )
        .unwrap();
        for i in 1..=10 {
            wal.append(vec![row(i)]).await.unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), 10);
        let rot = wal.rotate().await.unwrap();
        assert_eq!(rot.last_seq, 10);
        wal.append(vec![row(11)]).await.unwrap();
        drop(wal);
        // Tear the newest segment's last record in half.
        let segs = list_segments(dir.path()).unwrap();
        let newest = segs.last().unwrap();
        let len = std::fs::metadata(newest).unwrap().len();
        let f = OpenOptions::new().write(true).open(newest).unwrap();
        f.set_len(len - 3).unwrap();
        let replay = Wal::replay(dir.path()).unwrap();
        assert_eq!(replay.rows.len(), 10);
        assert_eq!(replay.last_seq, 10);
        // The repaired file now ends at a record boundary.
        assert_eq!(Wal::replay(dir.path()).unwrap().rows.len(), 10);
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(1)), b"\x05\x00\x00\x00garbage").unwrap();
        std::fs::write(dir.path().join(segment_name(9)), b"").unwrap();
        let err = Wal::replay(dir.path()).err().unwrap().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
