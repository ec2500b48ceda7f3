//! [`BulkWriter`]: large batches of resource versions straight to Delta, with no WAL.
//!
//! The load pipeline ([`super::load`]) pushes resources here. Rows gather per type until a batch is big
//! (by default 200,000 rows or 128 MB), then a committer task writes it as one Delta
//! commit of large Parquet files while parsing goes on. All types together may hold at
//! most `buffer_bytes` (256 MB): past that the largest batch is committed early, so
//! memory does not grow with the number of types or the size of the input. The commit is the
//! acknowledgement: a bulk load killed midway keeps every batch already committed, and
//! re-running it makes new versions, as re-sending a resource to a FHIR server would.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::record::{VersionBatchBuilder, now_micros};

/// Limits of one bulk batch.
#[derive(Debug, Clone, Copy)]
pub struct BulkOptions {
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// The most all open batches may hold together.
    pub buffer_bytes: usize,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            batch_rows: 200_000,
            batch_bytes: 128 << 20,
            buffer_bytes: 256 << 20,
        }
    }
}

/// Totals of a bulk load.
#[derive(Debug, Clone, Default)]
pub struct BulkStats {
    pub rows: u64,
    pub commits: u64,
    pub per_type: HashMap<String, u64>,
}

/// Streams resources into Delta in large commits.
pub struct BulkWriter {
    lake: Lake,
    options: BulkOptions,
    builders: HashMap<String, VersionBatchBuilder>,
    buffered_bytes: usize,
    tx: mpsc::Sender<(String, RecordBatch)>,
    committer: JoinHandle<Result<BulkStats>>,
    last_updated: i64,
}

impl BulkWriter {
    pub fn new(lake: Lake, options: BulkOptions) -> Self {
        // Two batches in flight: parsing continues while one commits, and memory stays flat.
        let (tx, rx) = mpsc::channel(1);
        let committer = tokio::spawn(commit_loop(lake.clone(), rx));
        BulkWriter {
            lake,
            options,
            builders: HashMap::new(),
            buffered_bytes: 0,
            tx,
            committer,
            last_updated: now_micros() / 1000 * 1000,
        }
    }

    /// `meta.lastUpdated` for every resource of this load, in microseconds.
    pub fn last_updated(&self) -> i64 {
        self.last_updated
    }

    /// Give a resource its id (a new UUID if it has none) and next version.
    pub fn assign(&self, resource_type: &str, id: Option<&str>) -> (String, i64) {
        let id = id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        let version = self.lake.assign_bulk_version(resource_type, &id);
        (id, version)
    }

    /// Add one stamped resource with its search values
    /// ([`medlake_ingest::search::encode`]). May wait while an earlier batch commits.
    pub async fn push(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        json: &str,
        search: &str,
    ) -> Result<()> {
        let b = match self.builders.get_mut(resource_type) {
            Some(b) => b,
            None => self.builders.entry(resource_type.to_string()).or_default(),
        };
        let before = b.approx_bytes();
        b.push_parts(id, version, self.last_updated, false, json, None, search);
        self.buffered_bytes += b.approx_bytes() - before;
        if b.len() >= self.options.batch_rows || b.approx_bytes() >= self.options.batch_bytes {
            self.commit_type(resource_type.to_string()).await?;
        }
        while self.buffered_bytes >= self.options.buffer_bytes {
            let largest = self
                .builders
                .iter()
                .max_by_key(|(_, b)| b.approx_bytes())
                .map(|(t, _)| t.clone());
            match largest {
                Some(t) => self.commit_type(t).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// Close the open batch of a type and hand it to the committer.
    async fn commit_type(&mut self, resource_type: String) -> Result<()> {
        let Some(b) = self.builders.get_mut(&resource_type) else {
            return Ok(());
        };
        if b.is_empty() {
            return Ok(());
        }
        self.buffered_bytes = self.buffered_bytes.saturating_sub(b.approx_bytes());
        let batch = b.finish()?;
        self.send(resource_type, batch).await
    }

    async fn send(&mut self, resource_type: String, batch: RecordBatch) -> Result<()> {
        if self.tx.send((resource_type, batch)).await.is_err() {
            // The committer stopped: its error says why.
            let (tx, _) = mpsc::channel(1);
            let committer = std::mem::replace(
                &mut self.committer,
                tokio::spawn(async { Ok(BulkStats::default()) }),
            );
            self.tx = tx;
            return match committer.await {
                Ok(Err(e)) => Err(e),
                _ => Err(LakeError::Internal("the bulk committer stopped".into())),
            };
        }
        Ok(())
    }

    /// Commit what is left and wait for every commit.
    pub async fn finish(mut self) -> Result<BulkStats> {
        let mut types: Vec<String> = self.builders.keys().cloned().collect();
        types.sort();
        for t in types {
            self.commit_type(t).await?;
        }
        drop(self.tx);
        match self.committer.await {
            Ok(r) => r,
            Err(e) => Err(LakeError::Internal(format!(
                "the bulk committer panicked: {e}"
            ))),
        }
    }
}

async fn commit_loop(
    lake: Lake,
    mut rx: mpsc::Receiver<(String, RecordBatch)>,
) -> Result<BulkStats> {
    let mut stats = BulkStats::default();
    while let Some((resource_type, batch)) = rx.recv().await {
        // A serving process flushes and compacts the same tables meanwhile: one commit
        // at a time, each on the newest snapshot, so that none installs a snapshot that
        // misses another's files.
        let _no_flush_meanwhile = lake.lock_flushes().await;
        let table = match lake.current_table(&resource_type).await? {
            Some(t) => t,
            None => lake.table_handle(&resource_type).await?,
        };
        let rows = batch.num_rows() as u64;
        let searched = lake.keeps_search_index().then(|| batch.clone());
        let for_views = batch.clone();
        let table = table
            .write(vec![batch])
            .with_writer_properties(crate::schema::resource_writer_properties())
            .with_commit_properties(
                CommitProperties::default().with_cleanup_expired_logs(Some(false)),
            )
            .await
            .map_err(|e| LakeError::delta(&resource_type, e))?;
        lake.install_table(&resource_type, table.clone());
        if let Some(batch) = searched {
            // A serving process: reads of these rows should go straight to them.
            lake.index_committed(&resource_type, &batch)?;
            lake.locate_new_files(&resource_type, &table).await;
        }
        let committed = table.version().map(|v| (v as i64, &for_views));
        lake.maintain_views(&resource_type, &table, committed).await;
        stats.rows += rows;
        stats.commits += 1;
        *stats.per_type.entry(resource_type).or_default() += rows;
    }
    Ok(stats)
}
