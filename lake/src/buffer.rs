//! The in-memory tail: durable writes that are not in Delta yet.
//!
//! Every row here is already in the WAL. Reads union these rows with the Delta snapshot;
//! a flush commits them to Delta and then drops exactly the rows up to the flushed WAL
//! sequence, under the same lock that readers take, so a reader sees each row once:
//! either here or in the snapshot, never both and never neither.
//!
//! Rows are kept in chunks of [`CHUNK_ROWS`]. A full chunk is sealed and never changes
//! again, so its Arrow batch is built once, by the first scan that needs it, and shared
//! by every later one. What a scan takes under the lake's lock ([`TypeBuffer::snapshot`])
//! is only a pointer per sealed chunk and the rows of the one open chunk; it builds the
//! batches after the lock is released. The WAL writer takes that same lock to make each
//! acknowledged write readable, so a SQL scan of a large tail never holds up a write's
//! acknowledgement for the time it takes to build Arrow arrays.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{BooleanArray, RecordBatch};
use roaring::RoaringTreemap;

use crate::error::Result;
use crate::record::{ResourceVersion, versions_to_batch};

/// Rows per sealed chunk: large enough that a scan's per-chunk overhead is small, small
/// enough that building the open chunk's batch on every scan costs little.
pub const CHUNK_ROWS: usize = 4096;

/// Rows that no longer change, and their batch once a scan has built it.
struct Chunk {
    rows: Vec<Arc<ResourceVersion>>,
    batch: OnceLock<RecordBatch>,
}

impl Chunk {
    fn new(rows: Vec<Arc<ResourceVersion>>) -> Arc<Chunk> {
        Arc::new(Chunk {
            rows,
            batch: OnceLock::new(),
        })
    }

    fn batch(&self) -> Result<RecordBatch> {
        if let Some(b) = self.batch.get() {
            return Ok(b.clone());
        }
        // Two scans may build the same chunk at once; both batches are equal, one is kept.
        let built = versions_to_batch(self.rows.iter().map(|r| r.as_ref()))?;
        Ok(self.batch.get_or_init(|| built).clone())
    }
}

/// Buffered versions of one resource type.
#[derive(Default)]
pub struct TypeBuffer {
    sealed: Vec<Arc<Chunk>>,
    open: Vec<Arc<ResourceVersion>>,
    /// id -> its newest buffered version, and its position.
    latest: HashMap<String, (Arc<ResourceVersion>, u64)>,
    len: usize,
    /// The position of the first row held: rows are numbered in the order they came, so
    /// a position stays valid while the rows before it are flushed away.
    front: u64,
    /// Positions of rows that are not current: replaced by a newer buffered version, or
    /// delete markers. (Stored rows that buffered versions replace are hidden by the id
    /// index.)
    hidden: RoaringTreemap,
}

/// What a scan takes of a [`TypeBuffer`] under the lock: cheap to take, turned into
/// batches afterwards ([`TailSnapshot::batches`]).
#[derive(Default)]
pub struct TailSnapshot {
    sealed: Vec<Arc<Chunk>>,
    open: Vec<Arc<ResourceVersion>>,
    front: u64,
    hidden: RoaringTreemap,
}

impl TailSnapshot {
    /// The rows as Arrow batches, in WAL order. Sealed chunks are built at most once.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.sealed.len() + 1);
        for c in &self.sealed {
            out.push(c.batch()?);
        }
        if !self.open.is_empty() {
            out.push(versions_to_batch(self.open.iter().map(|r| r.as_ref()))?);
        }
        Ok(out)
    }

    pub fn rows(&self) -> usize {
        self.sealed.iter().map(|c| c.rows.len()).sum::<usize>() + self.open.len()
    }

    /// Per batch of [`TailSnapshot::batches`], which rows are current (not replaced by a
    /// newer buffered version, not a delete marker); `None` for a batch whose rows all
    /// are.
    pub fn current_rows(&self) -> Vec<Option<BooleanArray>> {
        let mut start = self.front;
        let sizes = self
            .sealed
            .iter()
            .map(|c| c.rows.len())
            .chain((!self.open.is_empty()).then_some(self.open.len()));
        sizes
            .map(|n| {
                let range = start..start + n as u64;
                start += n as u64;
                if self.hidden.range_cardinality(range.clone()) == 0 {
                    return None;
                }
                Some(range.map(|p| Some(!self.hidden.contains(p))).collect())
            })
            .collect()
    }
}

impl TypeBuffer {
    pub fn insert(&mut self, row: ResourceVersion) {
        let row = Arc::new(row);
        let position = self.front + self.len as u64;
        if let Some((_, replaced)) = self.latest.insert(row.id.clone(), (row.clone(), position)) {
            self.hidden.insert(replaced);
        }
        if row.deleted {
            self.hidden.insert(position);
        }
        self.open.push(row);
        self.len += 1;
        if self.open.len() >= CHUNK_ROWS {
            let full = std::mem::replace(&mut self.open, Vec::with_capacity(CHUNK_ROWS));
            self.sealed.push(Chunk::new(full));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn all_rows(&self) -> impl DoubleEndedIterator<Item = &Arc<ResourceVersion>> {
        self.sealed
            .iter()
            .flat_map(|c| c.rows.iter())
            .chain(self.open.iter())
    }

    /// The newest buffered version of `id`, if any.
    pub fn latest(&self, id: &str) -> Option<Arc<ResourceVersion>> {
        self.latest.get(id).map(|(r, _)| r.clone())
    }

    /// One specific buffered version.
    pub fn version(&self, id: &str, version_id: i64) -> Option<Arc<ResourceVersion>> {
        let (newest, _) = self.latest.get(id)?;
        if newest.version_id == version_id {
            return Some(newest.clone());
        }
        self.all_rows()
            .rev()
            .find(|r| r.id == id && r.version_id == version_id)
            .cloned()
    }

    /// Rows with a WAL sequence up to `seq`, for a flush.
    pub fn rows_upto(&self, seq: i64) -> Vec<Arc<ResourceVersion>> {
        self.all_rows()
            .filter(|r| r.wal_seq.is_some_and(|s| s <= seq))
            .cloned()
            .collect()
    }

    /// Drop the rows a flush has committed. Chunks that keep all their rows keep their
    /// built batch; only a chunk that straddles `seq` is cut (and rebuilt when scanned).
    pub fn remove_upto(&mut self, seq: i64) {
        let flushed = |r: &Arc<ResourceVersion>| r.wal_seq.is_some_and(|s| s <= seq);
        let mut kept = Vec::with_capacity(self.sealed.len());
        for c in self.sealed.drain(..) {
            let gone = c.rows.iter().filter(|r| flushed(*r)).count();
            if gone == 0 {
                kept.push(c);
            } else if gone < c.rows.len() {
                kept.push(Chunk::new(
                    c.rows.iter().filter(|r| !flushed(*r)).cloned().collect(),
                ));
            }
        }
        self.sealed = kept;
        self.open.retain(|r| !flushed(r));
        // Rows are in sequence order, so an id whose newest row is flushed has no row left.
        self.latest.retain(|_, (r, _)| !flushed(&*r));
        let before = self.len;
        self.len = self.sealed.iter().map(|c| c.rows.len()).sum::<usize>() + self.open.len();
        self.front += (before - self.len) as u64;
        self.hidden.remove_range(..self.front);
    }

    /// What a scan needs, taken in time proportional to the chunks, not the rows.
    pub fn snapshot(&self) -> TailSnapshot {
        TailSnapshot {
            sealed: self.sealed.clone(),
            open: self.open.clone(),
            front: self.front,
            hidden: self.hidden.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, version_id: i64, seq: i64) -> ResourceVersion {
        ResourceVersion {
            resource_type: "Patient".into(),
            id: id.into(),
            version_id,
            last_updated: 0,
            deleted: false,
            resource: Arc::from(format!("{{\"id\":\"{id}\"}}")),
            wal_seq: Some(seq),
            search: Arc::from(""),
        }
    }

    #[test]
    fn a_flush_keeps_exactly_the_later_rows_across_chunks() {
        let mut b = TypeBuffer::default();
        let n = CHUNK_ROWS as i64 * 2 + 10;
        for seq in 1..=n {
            b.insert(row(&format!("p{}", seq % 100), seq / 100 + 1, seq));
        }
        assert_eq!(b.len(), n as usize);
        let snap = b.snapshot();
        let built: usize = snap.batches().unwrap().iter().map(|b| b.num_rows()).sum();
        assert_eq!(built, n as usize);

        // Cut in the middle of the first chunk.
        let cut = CHUNK_ROWS as i64 / 2;
        assert_eq!(b.rows_upto(cut).len(), cut as usize);
        b.remove_upto(cut);
        assert_eq!(b.len(), (n - cut) as usize);
        let left: Vec<i64> = b.all_rows().map(|r| r.wal_seq.unwrap()).collect();
        assert_eq!(left, ((cut + 1)..=n).collect::<Vec<_>>());
        // The snapshot taken before the flush still holds what it saw.
        assert_eq!(snap.rows(), n as usize);
        // Newest versions survive; an id whose every row was flushed is gone.
        let newest_p7 = (1..=n).filter(|s| s % 100 == 7).max();
        assert_eq!(b.latest("p7").unwrap().wal_seq, newest_p7);
        b.remove_upto(n);
        assert!(b.is_empty());
        assert!(b.latest("p7").is_none());
        assert!(b.snapshot().batches().unwrap().is_empty());
    }

    #[test]
    fn older_versions_are_found_in_sealed_chunks() {
        let mut b = TypeBuffer::default();
        for seq in 1..=(CHUNK_ROWS as i64 + 5) {
            b.insert(row("same", seq, seq));
        }
        assert_eq!(b.version("same", 3).unwrap().wal_seq, Some(3));
        assert_eq!(b.latest("same").unwrap().version_id, CHUNK_ROWS as i64 + 5);
        assert!(b.version("same", CHUNK_ROWS as i64 + 6).is_none());
        assert!(b.version("other", 1).is_none());
    }
}
