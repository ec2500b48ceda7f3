//! Following commits this process did not make: a `medlake optimize` run by another
//! process, a restore, or another engine (Spark, delta-rs, Databricks) appending to a
//! table. The server calls [`Lake::refresh`] on an interval; its own compactions go
//! through the same path ([`Lake::follow_and_install`]).
//!
//! Commits that land between two of this process's own are caught up with before its
//! next commit to the table ([`Lake::current_table`], called by flushes and bulk loads):
//! delta-rs brings the committed snapshot up to date through them, so without that
//! step they would be installed without the indexes ever following them.
//!
//! A new snapshot is compared with the installed one by file. The rows of the files it
//! added are classified against the id index:
//! - *new*: a version above the newest the index knows (or an id it does not know). The
//!   id index takes it with its place, and the search index its search values (from the
//!   `search` column, or extracted from `resource` when another engine wrote none).
//! - *moved*: a version that was in a file the same commits removed (a compaction). Its
//!   place follows the new file.
//! - *clash*: a version the lake already holds from elsewhere, still live. Reads by id
//!   keep the copy the lake had; the clash is logged and recorded in the
//!   `medlake.ingest_errors` table (code `duplicate`), so it is never silently shadowed.
//!
//! Which versions the removed files held is read from those files, which vacuum keeps
//! for the retention window; only a fingerprint of each (id, version) is kept meanwhile.
//! If they are gone already (a vacuum without retention), versions the lake knows are
//! taken as moved: a clash may then go unreported, but none is reported falsely.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::*;
use crate::bulk::IngestErrorRow;

/// What a [`Lake::refresh`] found.
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// Tables whose snapshot moved on.
    pub tables: usize,
    /// Versions the indexes learnt from commits of other processes.
    pub new_versions: u64,
    /// Versions that another process's compaction moved to new files.
    pub moved_versions: u64,
    /// Versions committed by another process that the lake already held.
    pub clashes: Vec<Clash>,
}

/// A version committed by another process whose id and version the lake already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// The data file that holds the second copy, relative to the table root.
    pub file: String,
    /// The Delta version of the table the clash was found in.
    pub table_version: u64,
}

fn version_key(id: &str, version_id: i64) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    version_id.hash(&mut h);
    h.finish()
}

fn file_paths(
    points: &PointReader,
    table: &DeltaTable,
    resource_type: &str,
) -> Result<HashSet<String>> {
    let (_, listing) = points.snapshot_files(table, resource_type)?;
    Ok(listing
        .files
        .iter()
        .map(|(p, _)| p.as_ref().to_string())
        .collect())
}

impl Lake {
    /// Load commits that other processes made since this process last looked, and let
    /// the indexes follow them (see the module doc). Holds off flushes meanwhile, so a
    /// snapshot this process commits and one another process committed are never
    /// installed out of order.
    pub async fn refresh(&self) -> Result<RefreshReport> {
        let _no_flush_meanwhile = self.lock_flushes().await;
        let mut report = RefreshReport::default();
        for resource_type in list_resource_tables(&self.shared.workspace_url).await? {
            let installed = self
                .shared
                .types
                .lock()
                .get(&resource_type)
                .and_then(|s| s.delta.clone());
            let newer = match &installed {
                Some(table) => newer_snapshot(table, &resource_type).await?,
                None => load_table(&self.table_url(&resource_type)?).await?,
            };
            let Some(table) = newer else { continue };
            self.follow(&resource_type, installed.as_ref(), &table, &mut report)
                .await?;
            self.install_table(&resource_type, table);
            report.tables += 1;
        }
        let kinds: Vec<(String, Option<DeltaTable>, Arc<dyn TableKind>)> = self
            .shared
            .tables
            .lock()
            .iter()
            .map(|(name, t)| (name.clone(), t.delta.clone(), t.kind.clone()))
            .collect();
        for (name, installed, kind) in kinds {
            let newer = match &installed {
                Some(table) => newer_snapshot(table, &name).await?,
                None => load_table(&self.kind_table_url(kind.as_ref())?).await?,
            };
            if let Some(table) = newer {
                self.install_kind_table(&name, table);
                report.tables += 1;
            }
        }
        self.report_clashes(&report.clashes).await;
        if report.new_versions > 0 || report.moved_versions > 0 {
            tracing::info!(
                "followed commits of other processes: {} new versions, {} moved by a compaction, {} clashes",
                report.new_versions,
                report.moved_versions,
                report.clashes.len()
            );
        }
        Ok(report)
    }

    /// Follow `refresh` on an interval until the returned handle is aborted. Failures
    /// are logged and retried with a growing pause.
    pub fn spawn_refresher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let lake = self.clone();
        tokio::spawn(async move {
            let mut backoff = flush::RetryBackoff::default();
            loop {
                tokio::time::sleep(interval).await;
                if !backoff.ready() {
                    continue;
                }
                match lake.refresh().await {
                    Ok(_) => backoff.succeeded(),
                    Err(e) => {
                        let pause = backoff.failed();
                        tracing::warn!(
                            "could not look for other processes' commits, retrying in {:.0} s: {e}",
                            pause.as_secs_f64()
                        );
                    }
                }
            }
        })
    }

    /// The snapshot of a type that this process commits on next: the installed one,
    /// brought up to date with other processes' commits first (see the module doc). The
    /// caller holds the flush lock. A failure to follow them is logged, not returned: the
    /// commit must go on, and reads still find every version by the files' bloom filters.
    pub(crate) async fn current_table(&self, resource_type: &str) -> Result<Option<DeltaTable>> {
        let Some(installed) = self.installed_table(resource_type) else {
            return Ok(None);
        };
        let Some(newer) = newer_snapshot(&installed, resource_type).await? else {
            return Ok(Some(installed));
        };
        let mut report = RefreshReport::default();
        if let Err(e) = self
            .follow(resource_type, Some(&installed), &newer, &mut report)
            .await
        {
            tracing::warn!("could not follow other processes' commits to {resource_type}: {e}");
        }
        self.install_table(resource_type, newer.clone());
        self.report_clashes(&report.clashes).await;
        Ok(Some(newer))
    }

    /// Install a snapshot this process made by rewriting files (a compaction), letting
    /// the indexes follow it as they follow other processes' commits. The caller holds
    /// the flush lock. A failure to follow is logged: reads still find every version by
    /// the bloom filters of the files, only slower.
    pub(crate) async fn follow_and_install(&self, resource_type: &str, table: DeltaTable) {
        let installed = self
            .shared
            .types
            .lock()
            .get(resource_type)
            .and_then(|s| s.delta.clone());
        let mut report = RefreshReport::default();
        if let Err(e) = self
            .follow(resource_type, installed.as_ref(), &table, &mut report)
            .await
        {
            tracing::warn!("could not locate the compacted rows of {resource_type}: {e}");
        }
        self.install_table(resource_type, table);
        self.report_clashes(&report.clashes).await;
    }

    /// Classify the rows of the files `new` added since `old` (see the module doc).
    async fn follow(
        &self,
        resource_type: &str,
        old: Option<&DeltaTable>,
        new: &DeltaTable,
        report: &mut RefreshReport,
    ) -> Result<()> {
        let points = &self.shared.points;
        let old_files = match old {
            Some(t) => file_paths(points, t, resource_type)?,
            None => HashSet::new(),
        };
        let new_files = file_paths(points, new, resource_type)?;
        let added: HashSet<String> = {
            let st = self.shared.index.lock();
            new_files
                .iter()
                .filter(|f| !old_files.contains(*f) && !st.index.is_located(resource_type, f))
                .cloned()
                .collect()
        };
        if added.is_empty() {
            return Ok(());
        }
        // What the removed files held: those versions may reappear, moved. `None` when
        // the files could not be read.
        let moved_from = match old {
            Some(old) => {
                let removed: HashSet<String> = old_files.difference(&new_files).cloned().collect();
                match versions_in(points, old, resource_type, &removed).await {
                    Ok(keys) => Some(keys),
                    Err(e) => {
                        tracing::warn!(
                            "could not read the files removed from {resource_type} ({e}); \
                             versions found again are taken as moved, not as clashes"
                        );
                        None
                    }
                }
            }
            None => Some(HashSet::new()),
        };
        let table_version = new.version().unwrap_or(0);
        // New versions, by file, to index for search in a second pass.
        let mut fresh: HashSet<u64> = HashSet::new();
        let mut fresh_files: HashSet<String> = HashSet::new();
        // Versions found moved so far: a compaction that rewrote a clash carries both
        // copies of the version, and only the first found may become its place.
        let mut moved_seen: HashSet<u64> = HashSet::new();
        self.for_each_placed_row(
            new,
            resource_type,
            |f| added.contains(f),
            |index, row, place, file| {
                let key = version_key(row.id, row.version_id);
                let known = index.get(resource_type, row.id);
                let new_version = known.is_none_or(|l| row.version_id > l.version_id);
                let was_moved =
                    !new_version && moved_from.as_ref().is_none_or(|m| m.contains(&key));
                let moved = was_moved && moved_seen.insert(key);
                if was_moved && !moved {
                    // The second copy of a clash that was already reported: hidden again.
                    index.hide(place);
                    return;
                }
                if new_version || moved {
                    index.observe_at(
                        resource_type,
                        row.id,
                        row.version_id,
                        row.deleted,
                        Some(place),
                    );
                }
                if new_version {
                    fresh.insert(key);
                    fresh_files.insert(file.to_string());
                    report.new_versions += 1;
                } else if moved {
                    report.moved_versions += 1;
                } else {
                    // The index keeps its own copy; a scan of current versions skips this one.
                    index.hide(place);
                    report.clashes.push(Clash {
                        resource_type: resource_type.to_string(),
                        id: row.id.to_string(),
                        version_id: row.version_id,
                        file: file.to_string(),
                        table_version,
                    });
                }
            },
        )
        .await?;
        if fresh.is_empty() || self.shared.search.is_none() {
            return Ok(());
        }
        // The search index takes the new versions' values: a second read, of the files
        // that hold new versions only, since a compaction's output holds none.
        let mut rx = file_scan::scan(points.clone(), new, resource_type, Values::Search, |f| {
            fresh_files.contains(f)
        })?;
        while let Some(item) = rx.recv().await {
            let item = item?;
            let columns = KeyColumns::new(&item.batch)?;
            let Some(search) = &self.shared.search else {
                break;
            };
            let mut search = search.write();
            for i in 0..item.batch.num_rows() {
                let row = columns.row(i)?;
                if !fresh.contains(&version_key(row.id, row.version_id)) {
                    continue;
                }
                index_scanned_row(&mut search, resource_type, &row);
            }
        }
        Ok(())
    }

    /// Log clashes and record them in the `ingest_errors` table.
    async fn report_clashes(&self, clashes: &[Clash]) {
        if clashes.is_empty() {
            return;
        }
        for c in clashes.iter().take(10) {
            tracing::warn!(
                "{}/{} version {} was committed by another process (file {}, Delta version {}) but this server already holds that version; reads by id keep the server's copy",
                c.resource_type,
                c.id,
                c.version_id,
                c.file,
                c.table_version
            );
        }
        if clashes.len() > 10 {
            tracing::warn!("... and {} more clashes", clashes.len() - 10);
        }
        let rows: Vec<IngestErrorRow> = clashes
            .iter()
            .map(|c| {
                let diagnostics = format!(
                    "{}/{} version {} was committed to {} by another process (Delta version {}), but the server already held that version; reads by id keep the server's copy, and fhir_history shows both",
                    c.resource_type, c.id, c.version_id, c.file, c.table_version
                );
                let outcome = serde_json::json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "duplicate", "diagnostics": diagnostics}],
                });
                IngestErrorRow {
                    source: c.file.clone(),
                    line: None,
                    entry: None,
                    resource_type: Some(c.resource_type.clone()),
                    resource_id: Some(c.id.clone()),
                    severity: "error".into(),
                    code: "duplicate".into(),
                    diagnostics,
                    expression: None,
                    outcome: outcome.to_string(),
                }
            })
            .collect();
        let run_id = format!("clash-{}", uuid::Uuid::new_v4());
        if let Err(e) = self.append_ingest_errors(&run_id, &rows).await {
            tracing::error!(
                "could not record {} clashes in ingest_errors: {e}",
                rows.len()
            );
        }
    }
}

/// Fingerprints of the versions the `files` of `table`'s snapshot hold.
async fn versions_in(
    points: &Arc<PointReader>,
    table: &DeltaTable,
    resource_type: &str,
    files: &HashSet<String>,
) -> Result<HashSet<u64>> {
    let mut keys = HashSet::new();
    if files.is_empty() {
        return Ok(keys);
    }
    let mut rx = file_scan::scan(points.clone(), table, resource_type, Values::None, |f| {
        files.contains(f)
    })?;
    while let Some(item) = rx.recv().await {
        let item = item?;
        let columns = KeyColumns::new(&item.batch)?;
        for i in 0..item.batch.num_rows() {
            let row = columns.row(i)?;
            keys.insert(version_key(row.id, row.version_id));
        }
    }
    Ok(keys)
}

/// The table at its newest version, if that is newer than `table`'s.
async fn newer_snapshot(table: &DeltaTable, name: &str) -> Result<Option<DeltaTable>> {
    let latest = table
        .get_latest_version()
        .await
        .map_err(|e| LakeError::delta(name, e))?;
    if Some(latest) <= table.version() {
        return Ok(None);
    }
    let mut newer = table.clone();
    newer
        .update_incremental(Some(latest))
        .await
        .map_err(|e| LakeError::delta(name, e))?;
    Ok(Some(newer))
}
