//! Materialized views in the lake: which views it keeps, their maintenance after each
//! commit of resources, their recovery, full builds, and creating and dropping them.
//! The design is in [`crate::matview`].

use std::collections::{BTreeMap, HashSet};

use deltalake::protocol::SaveMode;
use object_store::ObjectStoreExt;

use super::*;
use crate::matview::store::DefinitionStore;
use crate::matview::{
    MATERIALIZE_TAG, MaterializedView, VIEW_SOURCE_APP_ID, asks_to_materialize, builtin,
    without_materialize_tag,
};
use medlake_ingest::validate::VIEW_DEFINITION;

/// Rows a full build commits at a time.
const BUILD_CHUNK_ROWS: usize = 200_000;

/// `seen` of a view that has seen nothing: no table yet, or a build that did not finish.
const SEEN_NOTHING: i64 = -1;

/// One view the lake keeps.
pub(super) struct ViewState {
    view: Arc<MaterializedView>,
    delta: Option<DeltaTable>,
    /// The Delta version of the resource table whose rows the view holds all of.
    seen: i64,
}

/// What a scan of a view sees: its definition and its table's snapshot.
#[derive(Clone)]
pub struct ViewSnapshot {
    pub view: Arc<MaterializedView>,
    pub delta: Option<DeltaTable>,
}

/// What the Delta log's file statistics say about the rows of one snapshot of a view's
/// table, without reading a data file.
///
/// Each `add` action carries the `maxValues` of the file's columns. A file whose
/// largest `_version_id` is the first version holds no row that a newer version of its
/// resource could have replaced, and one whose largest `_empty` is false holds no
/// bookkeeping row. Where a file has no statistics for a column (another writer, or
/// more columns than the table indexes), the answer is the cautious one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewTableStats {
    /// Some file may hold a row of a version past the first.
    pub later_versions: bool,
    /// Some file may hold an `_empty` row.
    pub empty_rows: bool,
}

impl ViewTableStats {
    /// The statistics of `table`'s files: the snapshot a scan of it will read.
    pub fn of(table: &DeltaTable) -> ViewTableStats {
        let mut stats = ViewTableStats {
            later_versions: false,
            empty_rows: false,
        };
        let Ok(snapshot) = table.snapshot() else {
            return ViewTableStats::unknown();
        };
        for file in snapshot.log_data().iter() {
            let max = file.stats().and_then(|s| file_max_values(&s));
            let (version, empty) = max.unwrap_or((None, None));
            stats.later_versions |= version.is_none_or(|v| v > crate::matview::FIRST_VERSION);
            stats.empty_rows |= empty.unwrap_or(true);
            if stats == ViewTableStats::unknown() {
                break;
            }
        }
        stats
    }

    /// What is assumed without statistics: anything.
    pub fn unknown() -> ViewTableStats {
        ViewTableStats {
            later_versions: true,
            empty_rows: true,
        }
    }
}

/// A file's largest `_version_id` and `_empty`, from its statistics JSON.
fn file_max_values(stats: &str) -> Option<(Option<i64>, Option<bool>)> {
    #[derive(serde::Deserialize)]
    struct Stats {
        #[serde(rename = "maxValues", default)]
        max_values: serde_json::Map<String, Value>,
    }
    let stats: Stats = serde_json::from_str(stats).ok()?;
    Some((
        stats
            .max_values
            .get(crate::matview::VERSION_ID_COLUMN)
            .and_then(Value::as_i64),
        stats
            .max_values
            .get(crate::matview::EMPTY_COLUMN)
            .and_then(Value::as_bool),
    ))
}

/// Which state of a view's table to read ([`Lake::view_table_as_of`]).
#[derive(Debug, Clone, Copy)]
pub enum ViewAsOf {
    DeltaVersion(u64),
    Time(chrono::DateTime<chrono::Utc>),
}

/// One view, for `medlake views list`.
#[derive(Debug, Clone)]
pub struct ViewStatus {
    pub name: String,
    pub resource_type: String,
    pub builtin: bool,
    /// The Delta version of the resource table the view is consistent with, if any.
    pub seen: Option<i64>,
}

/// Below this many resource rows, a batch is evaluated on one thread: splitting it
/// would cost more than it saves.
const EVALUATE_SLICE_MIN_ROWS: usize = 256;

/// The `txn` of a view's table, or [`SEEN_NOTHING`].
async fn view_txn(table: &DeltaTable) -> Result<i64> {
    if table.version().is_none() {
        return Ok(SEEN_NOTHING);
    }
    let snapshot = table
        .snapshot()
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), VIEW_SOURCE_APP_ID)
        .await
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    Ok(v.unwrap_or(SEEN_NOTHING))
}

/// Whether `row` is the newest version Delta holds of its resource: the id index's
/// newest version, or one whose next version is still only in the tail `buffer`
/// (versions of a resource are consecutive, and the tail holds those newer than Delta's).
fn newest_in_delta(
    index: &crate::index::IdIndex,
    buffer: Option<&crate::buffer::TypeBuffer>,
    resource_type: &str,
    row: &file_scan::KeyRow<'_>,
) -> bool {
    match index.get(resource_type, row.id) {
        None => true,
        Some(l) if l.version_id == row.version_id => true,
        Some(_) => buffer.is_some_and(|b| b.version(row.id, row.version_id + 1).is_some()),
    }
}

/// The built-in views and those stored in the workspace, with their tables. A stored
/// definition that no longer parses is skipped with an error in the log, so that one
/// bad file does not keep the lake from opening.
pub(super) async fn load_views(workspace_url: &Url) -> Result<BTreeMap<String, ViewState>> {
    let mut views: Vec<MaterializedView> = builtin::views()?;
    let stored = match DefinitionStore::existing(workspace_url)? {
        Some(store) => store.list().await?,
        None => Vec::new(),
    };
    for json in stored {
        match MaterializedView::from_json(json, false) {
            Ok(v) => views.push(v),
            Err(e) => tracing::error!("a stored view definition is skipped: {e}"),
        }
    }
    let mut out = BTreeMap::new();
    for view in views {
        let delta = load_table(&kind_table_url(workspace_url, &view)?).await?;
        let seen = match &delta {
            Some(t) => view_txn(t).await?,
            None => SEEN_NOTHING,
        };
        out.insert(
            view.name().to_string(),
            ViewState {
                view: Arc::new(view),
                delta,
                seen,
            },
        );
    }
    Ok(out)
}

/// The paths of the files that the commits `versions` of a resource table added with
/// new data, or `None` when that cannot be told from its log: a commit is gone (log
/// cleanup) or removed data (a delete by another engine), so only a full build is exact.
async fn added_files(
    table: &DeltaTable,
    versions: impl Iterator<Item = i64>,
) -> Result<Option<HashSet<String>>> {
    let mut files = HashSet::new();
    for v in versions {
        let Ok(version) = u64::try_from(v) else {
            return Ok(None);
        };
        let entry = table
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
        let Some(bytes) = entry else {
            return Ok(None);
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<Value>(line) else {
                return Ok(None);
            };
            let changes = |a: &Value| a.get("dataChange").and_then(Value::as_bool) != Some(false);
            if let Some(add) = action.get("add") {
                if !changes(add) {
                    continue;
                }
                let Some(path) = add.get("path").and_then(Value::as_str) else {
                    return Ok(None);
                };
                match object_store::path::Path::from_url_path(path) {
                    Ok(p) => files.insert(p.as_ref().to_string()),
                    Err(_) => return Ok(None),
                };
            } else if action.get("remove").is_some_and(changes) {
                return Ok(None);
            }
        }
    }
    Ok(Some(files))
}

impl Lake {
    /// The views this lake keeps, by name.
    pub fn views(&self) -> Vec<Arc<MaterializedView>> {
        self.shared
            .views
            .lock()
            .values()
            .map(|s| s.view.clone())
            .collect()
    }

    /// What a scan of `views.<name>` sees now, if there is such a view.
    pub fn view_snapshot(&self, name: &str) -> Option<ViewSnapshot> {
        let views = self.shared.views.lock();
        let s = views.get(&name.to_ascii_lowercase())?;
        Some(ViewSnapshot {
            view: s.view.clone(),
            delta: s.delta.clone(),
        })
    }

    /// Every view with what it has seen.
    pub fn view_status(&self) -> Vec<ViewStatus> {
        self.shared
            .views
            .lock()
            .values()
            .map(|s| ViewStatus {
                name: s.view.name().to_string(),
                resource_type: s.view.resource_type().to_string(),
                builtin: s.view.is_builtin(),
                seen: (s.seen != SEEN_NOTHING).then_some(s.seen),
            })
            .collect()
    }

    fn views_of(&self, resource_type: &str) -> Vec<Arc<MaterializedView>> {
        self.shared
            .views
            .lock()
            .values()
            .filter(|s| s.view.resource_type() == resource_type)
            .map(|s| s.view.clone())
            .collect()
    }

    fn view_seen(&self, name: &str) -> i64 {
        self.shared
            .views
            .lock()
            .get(name)
            .map_or(SEEN_NOTHING, |s| s.seen)
    }

    fn set_view_seen(&self, name: &str, seen: i64, delta: Option<DeltaTable>) {
        if let Some(s) = self.shared.views.lock().get_mut(name) {
            s.seen = seen;
            if delta.is_some() {
                s.delta = delta;
            }
        }
    }

    /// After a compaction of a view's table: the snapshot SQL sees.
    pub(super) fn install_view_table(&self, qualified: &str, table: DeltaTable) -> bool {
        let Some(name) = qualified.strip_prefix("views.") else {
            return false;
        };
        match self.shared.views.lock().get_mut(name) {
            Some(s) => {
                s.delta = Some(table);
                true
            }
            None => false,
        }
    }

    /// Bring every view of `resource_type` up to `table`, a snapshot of its resource
    /// table that this process has just committed to. `committed` is the Delta version
    /// and the rows of that commit, when the caller made one: then only the commits
    /// before it that the view has not seen (normally none, or a compaction's) are read
    /// from the log. The caller holds the flush lock. A view that fails is logged and
    /// left behind: the next commit of the type, or the next open, catches it up.
    pub(crate) async fn maintain_views(
        &self,
        resource_type: &str,
        table: &DeltaTable,
        committed: Option<(i64, &RecordBatch)>,
    ) {
        if !self.shared.maintain_views {
            return;
        }
        if resource_type == VIEW_DEFINITION
            && let Err(e) = self.sync_stored_views(table).await
        {
            tracing::error!(
                "the views of stored ViewDefinitions could not follow them (they try again \
                 at the next commit of ViewDefinition or the next start): {e}"
            );
        }
        for view in self.views_of(resource_type) {
            if let Err(e) = self.advance_view(&view, table, committed).await {
                tracing::error!(
                    "view {} could not take the new rows of {resource_type} (it catches up \
                     at the next commit of {resource_type} or the next start): {e}",
                    view.name()
                );
            }
        }
    }

    /// See [`Lake::maintain_views`].
    async fn advance_view(
        &self,
        view: &Arc<MaterializedView>,
        table: &DeltaTable,
        committed: Option<(i64, &RecordBatch)>,
    ) -> Result<()> {
        let Some(target) = table.version().map(|v| v as i64) else {
            return Ok(());
        };
        let seen = self.view_seen(view.name());
        if seen >= target {
            return Ok(());
        }
        if seen == SEEN_NOTHING {
            return self.build_view(view, table).await;
        }
        let from_log = (seen + 1..=target).filter(|v| committed.is_none_or(|(c, _)| c != *v));
        let Some(files) = added_files(table, from_log).await? else {
            tracing::info!(
                "view {}: the commits it missed cannot be read one by one; rebuilding it",
                view.name()
            );
            return self.build_view(view, table).await;
        };
        let mut out: Vec<RecordBatch> = Vec::new();
        if !files.is_empty() {
            let (_, listing) = self
                .shared
                .points
                .snapshot_files(table, view.resource_type())?;
            if files.iter().any(|f| !listing.by_path.contains_key(f)) {
                // A file it missed was compacted away since: its rows are in a file that
                // also holds rows the view has.
                return self.build_view(view, table).await;
            }
            let mut rx = file_scan::scan(
                self.shared.points.clone(),
                table,
                view.resource_type(),
                Values::Resource,
                |p| files.contains(p),
            )?;
            while let Some(item) = rx.recv().await {
                out.extend(self.evaluate(view, item?.batch, None).await?);
            }
        }
        if let Some((c, batch)) = committed
            && c > seen
            && c <= target
        {
            out.extend(self.evaluate(view, batch.clone(), None).await?);
        }
        out.retain(|b| b.num_rows() > 0);
        if out.is_empty() {
            // Nothing to write (a compaction, or nothing new): the log is read again
            // after a restart, which costs only the reading.
            self.set_view_seen(view.name(), target, None);
            return Ok(());
        }
        self.commit_view(view, out, false, target).await
    }

    /// Evaluate a view on a batch of resource rows, off the async threads and on every
    /// core: the batch is cut into one slice per core (resources are independent), and
    /// the slices' rows come back in order, one batch per slice (a commit takes several
    /// batches, so putting them together would only copy them).
    async fn evaluate(
        &self,
        view: &Arc<MaterializedView>,
        batch: RecordBatch,
        keep: Option<Vec<bool>>,
    ) -> Result<Vec<RecordBatch>> {
        use rayon::prelude::*;

        let view = view.clone();
        if batch.num_rows() < EVALUATE_SLICE_MIN_ROWS {
            return crate::blocking::run(move || {
                Ok(vec![view.evaluate_batch(&batch, keep.as_deref())?])
            })
            .await?;
        }
        crate::blocking::run_on_every_core(move || {
            let rows = batch.num_rows();
            let slice = rows.div_ceil(rayon::current_num_threads().max(1));
            (0..rows)
                .step_by(slice)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|start| {
                    let len = slice.min(rows - start);
                    let keep = keep.as_deref().map(|k| &k[start..start + len]);
                    view.evaluate_batch(&batch.slice(start, len), keep)
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?
    }

    /// Build a view from the resource table `table` and replace its table's content: the
    /// newest version of each resource that `table` holds. The caller holds the flush
    /// lock, so the tail only grows meanwhile.
    async fn build_view(&self, view: &Arc<MaterializedView>, table: &DeltaTable) -> Result<()> {
        let resource_type = view.resource_type().to_string();
        let Some(target) = table.version().map(|v| v as i64) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut rx = file_scan::scan(
            self.shared.points.clone(),
            table,
            &resource_type,
            Values::Resource,
            |_| true,
        )?;
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0;
        let mut first = true;
        let mut total = 0;
        // A chunk's commit (Parquet encoding, the upload, the log) runs while the next
        // chunk is evaluated; commits stay one at a time and in order.
        let mut committing: Option<tokio::task::JoinHandle<Result<()>>> = None;
        let finish = |handle: tokio::task::JoinHandle<Result<()>>| async move {
            handle
                .await
                .map_err(|e| LakeError::Internal(format!("a commit of a view build failed: {e}")))?
        };
        let scanned: Result<()> = async {
            while let Some(item) = rx.recv().await {
                let item = item?;
                let keep = self.newest_in_delta_at(&resource_type, &item)?;
                let parts = self.evaluate(view, item.batch, Some(keep)).await?;
                let rows: usize = parts.iter().map(RecordBatch::num_rows).sum();
                pending_rows += rows;
                total += rows;
                pending.extend(parts);
                if pending_rows >= BUILD_CHUNK_ROWS {
                    // Not the last commit: a crash after it must leave a view that the next
                    // open rebuilds, not one that looks complete.
                    let chunk = std::mem::take(&mut pending);
                    if let Some(previous) = committing.take() {
                        finish(previous).await?;
                    }
                    let (lake, view, overwrite) = (self.clone(), view.clone(), first);
                    committing = Some(tokio::spawn(async move {
                        lake.commit_view(&view, chunk, overwrite, SEEN_NOTHING)
                            .await
                    }));
                    first = false;
                    pending_rows = 0;
                }
            }
            Ok(())
        }
        .await;
        // Whatever happened, no commit of this build may outlive it.
        let committed = match committing.take() {
            Some(previous) => finish(previous).await,
            None => Ok(()),
        };
        scanned?;
        committed?;
        if pending.is_empty() {
            pending.push(RecordBatch::new_empty(kind::TableKind::schema(
                view.as_ref(),
            )));
        }
        self.commit_view(view, pending, first, target).await?;
        tracing::info!(
            "view {} built from {resource_type} version {target}: {total} rows in {:.1} s",
            view.name(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// [`Lake::newest_in_delta`] for a scanned row group, asking the id index about its
    /// hidden rows only: a row it does not hide is the newest version of its resource
    /// (unless a bulk load's replacement is not placed yet, when every row is asked
    /// about). On a table of one version per resource that is no lookup at all, where
    /// one per row took a twentieth of a build.
    fn newest_in_delta_at(
        &self,
        resource_type: &str,
        scanned: &file_scan::ScannedRowGroup,
    ) -> Result<Vec<bool>> {
        let rows = scanned.batch.num_rows();
        let hidden: Option<Vec<u32>> = {
            let st = self.shared.index.lock();
            if st.index.has_unplaced_replacements() {
                None
            } else {
                st.index
                    .hidden_in_row_group(resource_type, &scanned.file, scanned.row_group)
                    .map(|hidden| {
                        let end = scanned.first_row.saturating_add(rows as u32);
                        hidden
                            .map(|b| b.range(scanned.first_row..end).collect())
                            .unwrap_or_default()
                    })
            }
        };
        let Some(hidden) = hidden else {
            return self.newest_in_delta(resource_type, &scanned.batch);
        };
        let mut keep = vec![true; rows];
        if hidden.is_empty() {
            return Ok(keep);
        }
        // A hidden row may still be the newest in Delta: its replacement may be in the
        // tail only, or it may be a delete marker.
        let columns = KeyColumns::new(&scanned.batch)?;
        let types = self.shared.types.lock();
        let buffer = types.get(resource_type).map(|s| &s.buffer);
        let st = self.shared.index.lock();
        for row in hidden {
            let i = (row - scanned.first_row) as usize;
            keep[i] = newest_in_delta(&st.index, buffer, resource_type, &columns.row(i)?);
        }
        Ok(keep)
    }

    /// Which rows of a batch of the resource table are the newest version that Delta
    /// holds of their resource: the id index's newest version, or one whose next version
    /// is still only in the tail (versions of a resource are consecutive, and the tail
    /// holds those newer than Delta's).
    fn newest_in_delta(&self, resource_type: &str, batch: &RecordBatch) -> Result<Vec<bool>> {
        let columns = KeyColumns::new(batch)?;
        let types = self.shared.types.lock();
        let buffer = types.get(resource_type).map(|s| &s.buffer);
        let st = self.shared.index.lock();
        (0..batch.num_rows())
            .map(|i| {
                Ok(newest_in_delta(
                    &st.index,
                    buffer,
                    resource_type,
                    &columns.row(i)?,
                ))
            })
            .collect()
    }

    /// Commit rows to a view's table, recording `seen` as what it has seen; an overwrite
    /// replaces what the table held. The table is loaded afresh, so that a commit
    /// another process made (`medlake optimize`) is not carried over unseen.
    async fn commit_view(
        &self,
        view: &Arc<MaterializedView>,
        batches: Vec<RecordBatch>,
        overwrite: bool,
        seen: i64,
    ) -> Result<()> {
        let url = self.kind_table_url(view.as_ref())?;
        let table = self.table_handle_at(&url).await?;
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(VIEW_SOURCE_APP_ID, seen))
            .with_cleanup_expired_logs(Some(false));
        let mut write = table
            .write(batches)
            .with_writer_properties(kind::TableKind::writer_properties(view.as_ref()))
            .with_commit_properties(props);
        if overwrite {
            write = write.with_save_mode(SaveMode::Overwrite);
        }
        let name = format!("views.{}", view.name());
        let table = write.await.map_err(|e| LakeError::delta(&name, e))?;
        self.set_view_seen(view.name(), seen, Some(table));
        Ok(())
    }

    /// At open: bring every view up to its resource table (recovery after a crash between
    /// a resource commit and its views' commit, new views, commits of other processes).
    pub(super) async fn catch_up_views(&self) {
        if !self.shared.maintain_views {
            return;
        }
        let _one_at_a_time = self.shared.flush_lock.lock().await;
        if let Some(table) = self.installed_table(VIEW_DEFINITION)
            && let Err(e) = self.sync_stored_views(&table).await
        {
            tracing::error!(
                "the views of stored ViewDefinitions could not follow them (they try again \
                 at the next commit of ViewDefinition or the next start): {e}"
            );
        }
        let views: Vec<Arc<MaterializedView>> = self.views();
        for view in views {
            let Some(table) = self.installed_table(view.resource_type()) else {
                continue;
            };
            if let Err(e) = self.advance_view(&view, &table, None).await {
                tracing::error!(
                    "view {} could not catch up with {} (it tries again at the next commit \
                     of that type or the next start): {e}",
                    view.name(),
                    view.resource_type()
                );
            }
        }
    }

    /// The lake must own the workspace to change its views.
    fn views_writable(&self) -> Result<()> {
        if self.shared.maintain_views {
            Ok(())
        } else {
            Err(LakeError::ReadOnly(
                "views are created, refreshed and dropped by the process that owns the \
                 workspace (the server, or `medlake views` while no server runs)"
                    .into(),
            ))
        }
    }

    /// Create a materialized view from a ViewDefinition: store its definition in the
    /// workspace, build its table from the resources committed so far, and keep it
    /// fresh from then on (`medlake views create`). A [`MATERIALIZE_TAG`] in the
    /// definition is dropped: such a view stays until `medlake views drop`, whatever
    /// becomes of a stored resource of the same id.
    pub async fn create_view(&self, json: Value) -> Result<Arc<MaterializedView>> {
        self.views_writable()?;
        let view = Arc::new(MaterializedView::from_json(
            without_materialize_tag(json),
            false,
        )?);
        let _one_at_a_time = self.shared.flush_lock.lock().await;
        self.add_view(&view).await?;
        Ok(view)
    }

    /// Why `view` cannot take its name, if another view has it.
    fn name_taken(&self, view: &MaterializedView) -> Option<LakeError> {
        let views = self.shared.views.lock();
        let existing = views.get(view.name())?;
        let reason = if existing.view.is_builtin() {
            "a built-in view has this name; give the view another `name`".to_string()
        } else if let Some(owner) = existing.view.source_id() {
            if view.source_id() == Some(owner) {
                return None;
            }
            format!(
                "the stored ViewDefinition/{owner} keeps a view of this name; give the view \
                 another `name`, or change or delete that one"
            )
        } else {
            "a view of this name exists; drop it first (`medlake views drop`), or give the \
             view another `name`"
                .to_string()
        };
        Some(LakeError::View {
            view: view.name().to_string(),
            reason,
        })
    }

    /// Store a new view's definition and build its table. The caller holds the flush lock.
    async fn add_view(&self, view: &Arc<MaterializedView>) -> Result<()> {
        {
            if let Some(taken) = self.name_taken(view) {
                return Err(taken);
            }
            let mut views = self.shared.views.lock();
            if views.contains_key(view.name()) {
                // The same stored ViewDefinition: it keeps its view.
                return Ok(());
            }
            views.insert(
                view.name().to_string(),
                ViewState {
                    view: view.clone(),
                    delta: None,
                    seen: SEEN_NOTHING,
                },
            );
        }
        let stored = async {
            DefinitionStore::new(&self.shared.workspace_url)?
                .put(view.name(), view.json())
                .await?;
            // A table left by a view of the same name that was dropped half-way.
            self.remove_view_table(view).await
        }
        .await;
        if let Err(e) = stored {
            self.shared.views.lock().remove(view.name());
            return Err(e);
        }
        if let Some(table) = self.current_table(view.resource_type()).await? {
            self.build_view(view, &table).await?;
        }
        Ok(())
    }

    /// Refuse, before it is acknowledged, a write of a ViewDefinition with the
    /// [`MATERIALIZE_TAG`] whose view could not be made: one the view parser or the
    /// table layout refuses, or whose name another view has.
    pub(super) fn check_view_claims(&self, ops: &[WriteOp]) -> Result<()> {
        for op in ops {
            let WriteOp::Put {
                resource_type,
                id,
                resource,
                ..
            } = op
            else {
                continue;
            };
            if resource_type != VIEW_DEFINITION {
                continue;
            }
            let mut json = Value::Object(resource.clone());
            if !asks_to_materialize(&json) {
                continue;
            }
            // The id the resource will have; a create without one has no view yet, so
            // any view of the same name is another's.
            if let (Some(id), Some(m)) = (id, json.as_object_mut()) {
                m.insert("id".into(), Value::String(id.clone()));
            }
            let view = MaterializedView::from_json(json, false)?;
            if let Some(taken) = self.name_taken(&view) {
                return Err(taken);
            }
        }
        Ok(())
    }

    /// Bring the views of stored ViewDefinitions with the [`MATERIALIZE_TAG`] in step
    /// with `table`, the ViewDefinition table just committed (or found at open): a view
    /// for each current tagged definition, rebuilt when its definition changed, dropped
    /// when its resource was deleted or lost the tag. The caller holds the flush lock.
    /// A definition that cannot be made a view (a name another view has, which a write
    /// through the FHIR API is refused for but a bulk load is not) is logged and skipped.
    async fn sync_stored_views(&self, table: &DeltaTable) -> Result<()> {
        let mut wanted: BTreeMap<String, Value> = BTreeMap::new();
        let mut rx = file_scan::scan(
            self.shared.points.clone(),
            table,
            VIEW_DEFINITION,
            Values::Resource,
            |_| true,
        )?;
        while let Some(item) = rx.recv().await {
            let batch = item?.batch;
            let keep = self.newest_in_delta(VIEW_DEFINITION, &batch)?;
            let columns = KeyColumns::new(&batch)?;
            for (i, keep) in keep.into_iter().enumerate() {
                let row = columns.row(i)?;
                if !keep || row.deleted {
                    continue;
                }
                let Ok(json) = serde_json::from_str::<Value>(row.resource.unwrap_or("")) else {
                    continue;
                };
                if asks_to_materialize(&json) {
                    wanted.insert(row.id.to_string(), json);
                }
            }
        }
        for view in self.views() {
            let Some(owner) = view.source_id() else {
                continue;
            };
            if !wanted.get(owner).is_some_and(|j| view.same_definition(j)) {
                tracing::info!(
                    "view {}: ViewDefinition/{owner} changed; dropping it",
                    view.name()
                );
                self.remove_view(&view).await?;
            }
        }
        for (id, json) in wanted {
            let view = match MaterializedView::from_json(json, false) {
                Ok(v) => Arc::new(v),
                Err(e) => {
                    tracing::error!("ViewDefinition/{id} makes no view: {e}");
                    continue;
                }
            };
            if self
                .view_snapshot(view.name())
                .is_some_and(|s| s.view.source_id() == Some(&id))
            {
                continue;
            }
            match self.add_view(&view).await {
                Ok(()) => tracing::info!("view {} made from ViewDefinition/{id}", view.name()),
                Err(e) => tracing::error!("ViewDefinition/{id} makes no view: {e}"),
            }
        }
        Ok(())
    }

    /// A view's table as it was at a Delta version of it, or at the newest commit made at
    /// or before a time (the commit files' times, as other engines' `TIMESTAMP AS OF`
    /// reads them). `None` when the view had no table then.
    pub async fn view_table_as_of(
        &self,
        name: &str,
        as_of: ViewAsOf,
    ) -> Result<Option<DeltaTable>> {
        let view = self
            .view_snapshot(name)
            .ok_or_else(|| unknown_view(name))?
            .view;
        let url = self.kind_table_url(view.as_ref())?;
        if load_table(&url).await?.is_none() {
            return Ok(None);
        }
        let builder = DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| LakeError::delta(url.as_str(), e))?;
        let builder = match as_of {
            ViewAsOf::DeltaVersion(v) => builder.with_version(v),
            ViewAsOf::Time(t) => builder.with_timestamp(t),
        };
        let table = builder
            .load()
            .await
            .map_err(|e| LakeError::delta(url.as_str(), e))?;
        if let ViewAsOf::Time(t) = as_of {
            // Before the table's first commit delta-rs loads that commit all the same.
            let first = table
                .version()
                .and_then(|v| table.snapshot().ok()?.version_timestamp(v));
            if first.is_some_and(|ms| ms > t.timestamp_millis()) {
                return Ok(None);
            }
        }
        Ok(Some(table))
    }

    /// Rebuild a view from scratch, replacing its table's content in one overwrite
    /// commit (or, for a very large view, several, of which a crash leaves a view the
    /// next open rebuilds).
    pub async fn refresh_view(&self, name: &str) -> Result<()> {
        self.views_writable()?;
        let view = self
            .view_snapshot(name)
            .ok_or_else(|| unknown_view(name))?
            .view;
        let _one_at_a_time = self.shared.flush_lock.lock().await;
        match self.current_table(view.resource_type()).await? {
            Some(table) => self.build_view(&view, &table).await,
            None => Ok(()),
        }
    }

    /// Drop a view that a user created: its definition and its table.
    pub async fn drop_view(&self, name: &str) -> Result<()> {
        self.views_writable()?;
        let view = self
            .view_snapshot(name)
            .ok_or_else(|| unknown_view(name))?
            .view;
        if view.is_builtin() {
            return Err(LakeError::View {
                view: view.name().to_string(),
                reason: "built-in views cannot be dropped".into(),
            });
        }
        if let Some(owner) = view.source_id() {
            return Err(LakeError::View {
                view: view.name().to_string(),
                reason: format!(
                    "this view follows the stored ViewDefinition/{owner}: delete that \
                     resource, or remove its `{MATERIALIZE_TAG}` tag, to drop the view"
                ),
            });
        }
        let _one_at_a_time = self.shared.flush_lock.lock().await;
        self.remove_view(&view).await
    }

    /// Drop a view's definition and table. The caller holds the flush lock.
    async fn remove_view(&self, view: &MaterializedView) -> Result<()> {
        DefinitionStore::new(&self.shared.workspace_url)?
            .remove(view.name())
            .await?;
        self.shared.views.lock().remove(view.name());
        self.remove_view_table(view).await
    }

    /// Delete every file of a view's table.
    async fn remove_view_table(&self, view: &MaterializedView) -> Result<()> {
        let url = self.kind_table_url(view)?;
        if crate::matview::store::missing_local_dir(&url) {
            return Ok(());
        }
        let store = deltalake::logstore::store_for(&url, std::iter::empty::<(String, String)>())
            .map_err(|e| LakeError::delta(url.as_str(), e))?;
        let paths: Vec<object_store::path::Path> = futures::TryStreamExt::try_collect(
            futures::TryStreamExt::map_ok(store.list(None), |m| m.location),
        )
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            e => Err(LakeError::delta(url.as_str(), e.into())),
        })?;
        for p in paths {
            match store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::delta(url.as_str(), e.into())),
            }
        }
        Ok(())
    }
}

fn unknown_view(name: &str) -> LakeError {
    LakeError::View {
        view: name.to_string(),
        reason: "there is no such view; `medlake views list` shows them".into(),
    }
}
