//! The in-memory tail: durable writes that are not in Delta yet.
//!
//! Every row here is already in the WAL. Reads union these rows with the Delta snapshot;
//! a flush commits them to Delta and then drops exactly the rows up to the flushed WAL
//! sequence, under the same lock that readers take, so a reader sees each row once:
//! either here or in the snapshot, never both and never neither.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::record::{ResourceVersion, versions_to_batch};

/// Buffered versions of one resource type.
#[derive(Default)]
pub struct TypeBuffer {
    rows: Vec<Arc<ResourceVersion>>,
    /// id -> position of its newest version in `rows`.
    latest: HashMap<String, usize>,
    batch: Option<RecordBatch>,
}

impl TypeBuffer {
    pub fn insert(&mut self, row: ResourceVersion) {
        let pos = self.rows.len();
        self.latest.insert(row.id.clone(), pos);
        self.rows.push(Arc::new(row));
        self.batch = None;
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The newest buffered version of `id`, if any.
    pub fn latest(&self, id: &str) -> Option<Arc<ResourceVersion>> {
        self.latest.get(id).map(|&i| self.rows[i].clone())
    }

    /// One specific buffered version.
    pub fn version(&self, id: &str, version_id: i64) -> Option<Arc<ResourceVersion>> {
        self.rows
            .iter()
            .find(|r| r.id == id && r.version_id == version_id)
            .cloned()
    }

    /// Rows with a WAL sequence up to `seq`, for a flush.
    pub fn rows_upto(&self, seq: i64) -> Vec<Arc<ResourceVersion>> {
        self.rows
            .iter()
            .filter(|r| r.wal_seq.is_some_and(|s| s <= seq))
            .cloned()
            .collect()
    }

    /// Drop the rows a flush has committed.
    pub fn remove_upto(&mut self, seq: i64) {
        self.rows.retain(|r| r.wal_seq.is_none_or(|s| s > seq));
        self.latest.clear();
        for (i, r) in self.rows.iter().enumerate() {
            self.latest.insert(r.id.clone(), i);
        }
        self.batch = None;
    }

    /// All buffered rows as one Arrow batch (cached until the next change).
    pub fn batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        if self.batch.is_none() {
            self.batch = Some(versions_to_batch(self.rows.iter().map(|r| r.as_ref()))?);
        }
        Ok(self.batch.clone())
    }
}
