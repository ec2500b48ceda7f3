//! Flushes: the tail of every table to Delta, one commit per table with the WAL sequence as its `txn`; and where the committed rows now are.

use super::*;

/// What one flush did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushStats {
    pub rows: usize,
    pub tables: usize,
}

/// Commit a flush's rows of one table, recording `last_seq` as the table's WAL `txn`.
async fn commit_flush(
    table: DeltaTable,
    name: &str,
    batch: RecordBatch,
    last_seq: i64,
    properties: parquet::file::properties::WriterProperties,
    partition_columns: &[&str],
) -> Result<DeltaTable> {
    if table.version().is_some() {
        // A replayed flush (after a crash between commit and WAL cleanup) must not land
        // twice. Delta's conflict checker does not catch a repeated txn, so we do.
        let done = wal_txn_version(&table).await?;
        if done >= last_seq {
            return Ok(table);
        }
    }
    let props = CommitProperties::default()
        .with_application_transaction(Transaction::new(WAL_APP_ID, last_seq))
        .with_cleanup_expired_logs(Some(false));
    let mut write = table
        .write(vec![batch])
        .with_writer_properties(properties)
        .with_commit_properties(props);
    if !partition_columns.is_empty() {
        write = write.with_partition_columns(partition_columns.iter().map(|c| c.to_string()));
    }
    write.await.map_err(|e| LakeError::delta(name, e))
}

impl Lake {
    /// Rows in the in-memory tail, all types.
    pub fn buffered_rows(&self) -> usize {
        self.shared.tail_rows.load(Ordering::Relaxed)
    }

    /// Commit the tail to Delta. Safe to call at any time, from any task.
    pub async fn flush(&self) -> Result<FlushStats> {
        let Some(wal) = self.shared.wal.clone() else {
            return Ok(FlushStats::default());
        };
        let _one_at_a_time = self.shared.flush_lock.lock().await;
        let Rotation { closed, last_seq } = wal.rotate().await?;
        self.shared.closed_segments.lock().extend(closed);
        crate::crash::point("flush-before-commit");
        let work: Vec<(String, Vec<Arc<ResourceVersion>>)> = {
            let types = self.shared.types.lock();
            types
                .iter()
                .filter_map(|(t, s)| {
                    let rows = s.buffer.rows_upto(last_seq);
                    (!rows.is_empty()).then(|| (t.clone(), rows))
                })
                .collect()
        };
        let mut stats = FlushStats::default();
        for (resource_type, rows) in work {
            let table = match self.current_table(&resource_type).await? {
                Some(t) => t,
                None => self.table_handle(&resource_type).await?,
            };
            let batch = versions_to_batch(rows.iter().map(|r| r.as_ref()))?;
            let before = table.version();
            let table = commit_flush(
                table,
                &resource_type,
                batch.clone(),
                last_seq,
                crate::schema::resource_writer_properties(),
                &[],
            )
            .await?;
            // Before the rows leave the tail, so that reads find them in their place.
            self.locate_new_files(&resource_type, &table).await;
            stats.rows += rows.len();
            stats.tables += 1;
            {
                let mut types = self.shared.types.lock();
                let s = types.entry(resource_type.clone()).or_default();
                s.delta = Some(table.clone());
                let buffered = s.buffer.len();
                s.buffer.remove_upto(last_seq);
                self.shared
                    .tail_rows
                    .fetch_sub(buffered - s.buffer.len(), Ordering::Relaxed);
            }
            crate::crash::point("flush-before-views");
            // The views of the type take exactly the rows just committed (or, after a
            // replayed flush that committed nothing, whatever they missed).
            let committed = table
                .version()
                .filter(|v| Some(*v) != before)
                .map(|v| (v as i64, &batch));
            self.maintain_views(&resource_type, &table, committed).await;
        }
        let kind_work: Vec<(
            String,
            Arc<dyn TableKind>,
            Vec<RecordBatch>,
            Option<DeltaTable>,
        )> = {
            let tables = self.shared.tables.lock();
            tables
                .iter()
                .filter_map(|(name, t)| {
                    let batches: Vec<RecordBatch> = t
                        .tail
                        .iter()
                        .filter(|(seq, _)| *seq <= last_seq)
                        .map(|(_, b)| b.clone())
                        .collect();
                    (!batches.is_empty())
                        .then(|| (name.clone(), t.kind.clone(), batches, t.delta.clone()))
                })
                .collect()
        };
        for (name, kind, batches, delta) in kind_work {
            let table = match delta {
                Some(t) => t,
                None => {
                    self.table_handle_at(&self.kind_table_url(kind.as_ref())?)
                        .await?
                }
            };
            let batch = arrow::compute::concat_batches(&kind.schema(), &batches)?;
            let rows = batch.num_rows();
            let table = commit_flush(
                table,
                &name,
                batch,
                last_seq,
                kind.writer_properties(),
                kind.partition_columns(),
            )
            .await?;
            stats.rows += rows;
            stats.tables += 1;
            let mut tables = self.shared.tables.lock();
            if let Some(t) = tables.get_mut(&name) {
                t.delta = Some(table);
                t.tail.retain(|(seq, _)| *seq > last_seq);
            }
            self.shared.tail_rows.fetch_sub(rows, Ordering::Relaxed);
        }
        crate::crash::point("flush-after-commit");
        // Every row up to last_seq is in Delta: the closed segments are no longer needed.
        let closed = std::mem::take(&mut *self.shared.closed_segments.lock());
        wal.remove_segments(&closed)?;
        Ok(stats)
    }

    /// Flush every `interval`, or sooner once the tail holds `max_rows` rows, until the
    /// returned handle is dropped or aborted.
    ///
    /// A flush that fails (object storage down, or timing out) keeps its rows in the tail
    /// and its segments in the WAL, and is tried again after a pause that doubles with
    /// each failure in a row ([`RetryBackoff`]), so a long outage is not met with a
    /// request storm. Writes go on meanwhile, until the lake's bounds on the tail and on
    /// the WAL refuse them ([`LakeError::Busy`], [`LakeError::WalFull`]).
    pub fn spawn_flusher(
        &self,
        interval: Duration,
        max_rows: usize,
    ) -> tokio::task::JoinHandle<()> {
        let lake = self.clone();
        tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            let mut backoff = RetryBackoff::default();
            loop {
                tokio::time::sleep(tick).await;
                waited += tick;
                let rows = lake.buffered_rows();
                let due = waited >= interval || rows >= max_rows;
                if rows == 0 || !due || !backoff.ready() {
                    continue;
                }
                waited = Duration::ZERO;
                match lake.flush().await {
                    Ok(s) => {
                        if backoff.failures() > 0 {
                            tracing::info!(
                                "flush to Delta succeeded after {} failed attempts",
                                backoff.failures()
                            );
                        }
                        backoff.succeeded();
                        if s.rows > 0 {
                            tracing::debug!("flushed {} rows to {} tables", s.rows, s.tables)
                        }
                    }
                    Err(e) => {
                        let pause = backoff.failed();
                        tracing::error!(
                            "flush to Delta failed ({} in a row; {} rows and {} WAL bytes \
                             wait), retrying in {:.0} s: {e}",
                            backoff.failures(),
                            lake.buffered_rows(),
                            lake.wal_bytes(),
                            pause.as_secs_f64()
                        );
                    }
                }
            }
        })
    }

    /// Learn where the versions of the files this process has just committed went
    /// ([`IdIndex::observe_at`]). (Files of other processes' commits are classified by
    /// [`Lake::refresh`] and [`Lake::current_table`] first, so none is left unlocated by
    /// the time a flush or a bulk load commits.) Without a place a read still finds them,
    /// by the bloom filters of every row group, so a failure here is only logged.
    pub(crate) async fn locate_new_files(&self, resource_type: &str, table: &DeltaTable) {
        let located = |file: &str| {
            self.shared
                .index
                .lock()
                .index
                .is_located(resource_type, file)
        };
        let result = self
            .for_each_placed_row(
                table,
                resource_type,
                |f| !located(f),
                |index, row, place, _| {
                    index.observe_at(
                        resource_type,
                        row.id,
                        row.version_id,
                        row.deleted,
                        Some(place),
                    );
                },
            )
            .await;
        if let Err(e) = result {
            tracing::warn!("could not locate the new rows of {resource_type}: {e}");
        }
    }

    /// Read the key columns of the files of `table` that `wanted` picks, number their row
    /// groups in the id index, and hand each row with its place (row group, row) and its
    /// file to `each`, under the index lock a thousand rows at a time: writes wait for it.
    pub(super) async fn for_each_placed_row(
        &self,
        table: &DeltaTable,
        resource_type: &str,
        wanted: impl Fn(&str) -> bool,
        mut each: impl FnMut(&mut IdIndex, &KeyRow<'_>, (u32, u32), &Arc<str>),
    ) -> Result<()> {
        let mut rx = file_scan::scan(
            self.shared.points.clone(),
            table,
            resource_type,
            Values::None,
            wanted,
        )?;
        while let Some(item) = rx.recv().await {
            let item = item?;
            let columns = KeyColumns::new(&item.batch)?;
            let row_group = self.with_write_state(|index| {
                index.locate_file(resource_type, &item.file, item.row_groups)
            }) + item.row_group;
            let rows = item.batch.num_rows();
            for start in (0..rows).step_by(1024) {
                let mut st = self.shared.index.lock();
                for i in start..rows.min(start + 1024) {
                    let row = columns.row(i)?;
                    each(
                        &mut st.index,
                        &row,
                        (row_group, item.first_row + i as u32),
                        &item.file,
                    );
                }
            }
        }
        Ok(())
    }

    /// Hold off flushes (for a compaction, which must not interleave its commit with one).
    pub(crate) async fn lock_flushes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.flush_lock.lock().await
    }
}

/// Pauses between retries of a failing background task: 1 s after the first failure,
/// doubling up to a minute, and none once it succeeds again.
#[derive(Debug, Default)]
pub(crate) struct RetryBackoff {
    failures: u32,
    not_before: Option<std::time::Instant>,
}

impl RetryBackoff {
    pub(crate) const FIRST: Duration = Duration::from_secs(1);
    pub(crate) const MAX: Duration = Duration::from_secs(60);

    /// Whether the pause after the last failure is over.
    pub(crate) fn ready(&self) -> bool {
        self.not_before
            .is_none_or(|t| std::time::Instant::now() >= t)
    }

    /// Record a failure; the pause before the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let pause = Self::FIRST
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(Self::MAX);
        self.not_before = Some(std::time::Instant::now() + pause);
        pause
    }

    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::RetryBackoff;
    use std::time::Duration;

    #[test]
    fn pauses_double_up_to_a_minute_and_reset_on_success() {
        let mut b = RetryBackoff::default();
        assert!(b.ready());
        let pauses: Vec<u64> = (0..9).map(|_| b.failed().as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!b.ready());
        b.succeeded();
        assert!(b.ready());
        assert_eq!(b.failed(), Duration::from_secs(1));
    }
}
