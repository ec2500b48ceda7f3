//! Compaction, checkpoints and vacuum: `medlake optimize`, and the server's background
//! compaction.
//!
//! The write path already writes large files; what remains small is the tail of each
//! flush interval. Compaction rewrites those into files near the target size; vacuum
//! removes files that no snapshot inside the retention window still needs, so readers of
//! an older snapshot (and time travel) keep working within that window.
//!
//! The server compacts by itself ([`Lake::spawn_compactor`]): every interval, each table
//! with at least a given number of small files is compacted, one table at a time, so the
//! cost of one round is bounded by the small files of one table. A compaction holds the
//! flush lock: a flush and a compaction never commit to one table at once, so neither
//! installs a snapshot that misses the other's files. Writes go on meanwhile (they wait
//! in the WAL and the tail). Before the new snapshot is installed, the id index learns
//! where the compacted rows now are, so reads by place follow them.

use std::sync::Arc;
use std::time::Duration;

use deltalake::DeltaTable;
use url::Url;

use crate::error::{LakeError, Result};
use crate::kind::{TableKind, qualified_name};
use crate::lake::{Lake, load_table};

/// What optimize did to one table.
#[derive(Debug, Clone, Default)]
pub struct OptimizeReport {
    pub table: String,
    pub files_removed: u64,
    pub files_added: u64,
    pub files_vacuumed: usize,
}

/// Files below this size count as small for the background compaction.
pub const SMALL_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The size the background compaction bins small files into. Well above
/// [`SMALL_FILE_BYTES`], so what it writes does not count as small again (unless all
/// the small data together is less), and no round rewrites the output of the last.
pub const COMPACT_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// One table the lake keeps, for maintenance.
enum Target {
    Resources(String),
    Kind(Arc<dyn TableKind>),
    IngestErrors,
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Resources(t) => t.clone(),
            Target::Kind(k) => qualified_name(k.as_ref()),
            Target::IngestErrors => "ingest_errors".into(),
        }
    }
}

impl Lake {
    fn maintenance_targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .resource_types()
            .into_iter()
            .map(Target::Resources)
            .collect();
        targets.extend(self.kinds().into_iter().map(Target::Kind));
        targets.extend(
            self.views()
                .into_iter()
                .map(|v| Target::Kind(v as Arc<dyn TableKind>)),
        );
        targets.push(Target::IngestErrors);
        targets
    }

    fn target_url(&self, target: &Target) -> Result<Url> {
        match target {
            Target::Resources(t) => self.table_url(t),
            Target::Kind(k) => self.kind_table_url(k.as_ref()),
            Target::IngestErrors => self.ingest_errors_url(),
        }
    }

    /// Compact, checkpoint and vacuum every table of the workspace. Files that were
    /// replaced less than `retention` ago are kept, so readers of older snapshots (and
    /// time travel) keep working within that window.
    pub async fn optimize(&self, retention: Duration) -> Result<Vec<OptimizeReport>> {
        // Commit the tail first so compaction sees everything.
        self.flush().await?;
        let mut out = Vec::new();
        for target in self.maintenance_targets() {
            let _no_flush_meanwhile = self.lock_flushes().await;
            if let Some(report) = self.compact(&target, retention, None).await? {
                out.push(report);
            }
        }
        Ok(out)
    }

    /// Compact each table that has at least `min_small_files` files under
    /// [`SMALL_FILE_BYTES`], then vacuum it with `retention`. Returns what it did.
    pub async fn compact_small_files(
        &self,
        min_small_files: usize,
        retention: Duration,
    ) -> Result<Vec<OptimizeReport>> {
        let mut out = Vec::new();
        for target in self.maintenance_targets() {
            let Some(table) = load_table(&self.target_url(&target)?).await? else {
                continue;
            };
            if small_files(&table, &target.name())? < min_small_files {
                continue;
            }
            let _no_flush_meanwhile = self.lock_flushes().await;
            if let Some(report) = self
                .compact(&target, retention, Some(COMPACT_TARGET_BYTES))
                .await?
            {
                out.push(report);
            }
        }
        Ok(out)
    }

    /// Compact in the background every `interval`: see [`Lake::compact_small_files`].
    /// A round that fails (object storage down) is logged, and the next rounds are
    /// skipped for a pause that doubles with each failure in a row, up to a minute.
    pub fn spawn_compactor(
        &self,
        interval: Duration,
        min_small_files: usize,
        retention: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let lake = self.clone();
        tokio::spawn(async move {
            let mut backoff = crate::lake::RetryBackoff::default();
            loop {
                tokio::time::sleep(interval).await;
                if !backoff.ready() {
                    continue;
                }
                match lake.compact_small_files(min_small_files, retention).await {
                    Ok(done) => {
                        backoff.succeeded();
                        for r in done {
                            tracing::info!(
                                "compacted {}: {} small files into {}",
                                r.table,
                                r.files_removed,
                                r.files_added
                            );
                        }
                    }
                    Err(e) => {
                        let pause = backoff.failed();
                        tracing::warn!(
                            "background compaction failed ({} in a row), retrying in {:.0} s at the earliest: {e}",
                            backoff.failures(),
                            pause.as_secs_f64()
                        );
                    }
                }
            }
        })
    }

    /// Compact, checkpoint and vacuum one table, and install the result. The caller
    /// holds the flush lock.
    async fn compact(
        &self,
        target: &Target,
        retention: Duration,
        target_size: Option<u64>,
    ) -> Result<Option<OptimizeReport>> {
        let name = target.name();
        let Some(table) = load_table(&self.target_url(target)?).await? else {
            return Ok(None);
        };
        let mut optimize = table.optimize();
        if let Some(size) = target_size.and_then(std::num::NonZeroU64::new) {
            optimize = optimize.with_target_size(size);
        }
        match target {
            Target::Resources(_) => {
                optimize =
                    optimize.with_writer_properties(crate::schema::resource_writer_properties());
            }
            Target::Kind(k) => optimize = optimize.with_writer_properties(k.writer_properties()),
            Target::IngestErrors => {}
        }
        let (table, metrics) = optimize.await.map_err(|e| LakeError::delta(&name, e))?;
        crate::crash::point("compact-after-commit");
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| LakeError::delta(&name, e))?;
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        let (table, vac) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await
            .map_err(|e| LakeError::delta(&name, e))?;
        match target {
            Target::Resources(t) => self.follow_and_install(t, table).await,
            Target::Kind(_) => self.install_kind_table(&name, table),
            Target::IngestErrors => {}
        }
        Ok(Some(OptimizeReport {
            table: name,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            files_vacuumed: vac.files_deleted.len(),
        }))
    }
}

/// How many of a table's files are under [`SMALL_FILE_BYTES`].
fn small_files(table: &DeltaTable, name: &str) -> Result<usize> {
    Ok(table
        .snapshot()
        .map_err(|e| LakeError::delta(name, e))?
        .log_data()
        .iter()
        .filter(|f| (f.size().max(0) as u64) < SMALL_FILE_BYTES)
        .count())
}
