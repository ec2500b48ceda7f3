//! `medlake optimize`: compact small files, checkpoint the log, and vacuum.
//!
//! The write path already writes large files; what remains small is the tail of each
//! flush interval. Compaction rewrites those into files near the target size; vacuum
//! removes files that no snapshot inside the retention window still needs.

use std::time::Duration;

use crate::error::{LakeError, Result};
use crate::lake::{Lake, load_table};

/// What optimize did to one table.
#[derive(Debug, Clone, Default)]
pub struct OptimizeReport {
    pub table: String,
    pub files_removed: u64,
    pub files_added: u64,
    pub files_vacuumed: usize,
}

impl Lake {
    /// Compact, checkpoint and vacuum every table of the workspace. Files that were
    /// replaced less than `retention` ago are kept, so readers of older snapshots (and
    /// time travel) keep working within that window.
    pub async fn optimize(&self, retention: Duration) -> Result<Vec<OptimizeReport>> {
        // Commit the tail first so compaction sees everything.
        self.flush().await?;
        let mut out = Vec::new();
        let mut targets: Vec<(String, url::Url)> = Vec::new();
        for t in self.resource_types() {
            targets.push((t.clone(), self.table_url(&t)?));
        }
        targets.push(("ingest_errors".into(), self.ingest_errors_url()?));
        for (name, url) in targets {
            let Some(table) = load_table(&url).await? else {
                continue;
            };
            let mut optimize = table.optimize();
            if name != "ingest_errors" {
                optimize =
                    optimize.with_writer_properties(crate::schema::resource_writer_properties());
            }
            let (table, metrics) = optimize.await.map_err(|e| LakeError::delta(&name, e))?;
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(|e| LakeError::delta(&name, e))?;
            let retention =
                chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
            let (table, vac) = table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .await
                .map_err(|e| LakeError::delta(&name, e))?;
            if name != "ingest_errors" {
                self.locate_new_files(&name, &table).await;
                self.install_table(&name, table);
            }
            out.push(OptimizeReport {
                table: name,
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
                files_vacuumed: vac.files_deleted.len(),
            });
        }
        Ok(out)
    }
}
