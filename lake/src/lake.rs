//! [`Lake`]: one workspace's tables, its WAL, its in-memory tail and its id index.
//!
//! The write path (see ARCHITECTURE.md):
//! 1. [`Lake::write`] takes the index lock, gives each resource its id, `meta.versionId`,
//!    `meta.lastUpdated` and WAL sequence, and queues the rows to the WAL writer in
//!    sequence order.
//! 2. The WAL writer appends, fsyncs once for the whole group, inserts the rows into the
//!    [`TypeBuffer`]s, and only then acknowledges: an acknowledged write is durable and
//!    readable by id and by SQL.
//! 3. [`Lake::flush`] (every few seconds, or when the tail is big) rotates the WAL,
//!    commits each type's buffered rows to its Delta table as one large file, recording
//!    the WAL sequence as a Delta transaction id (`txn` app id [`WAL_APP_ID`]), swaps in
//!    the new snapshot and drops the flushed rows under one lock, then deletes the closed
//!    WAL segments. Before it drops them, it reads back the new file's keys so that the
//!    id index knows where each version now is ([`IdIndex`]'s places).
//! 4. [`Lake::open`] recovers: it reads each table's `txn` version and replays only the
//!    WAL rows above it, so a crash at any point neither loses nor duplicates a row.
//!
//! Bulk loads ([`crate::bulk::BulkWriter`]) skip the WAL: a Delta commit of a large batch
//! is itself the durable acknowledgement.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde_json::{Map, Value};
use url::Url;

use crate::buffer::TypeBuffer;
use crate::error::{LakeError, Result};
use crate::file_scan::{self, KeyColumns, KeyRow, Values};
use crate::index::{IdIndex, Latest, Place};
use crate::kind::{self, TableKind};
use crate::point_read::PointReader;
use crate::record::{ResourceVersion, instant_string, now_micros, versions_to_batch};
use crate::schema::{INGEST_ERRORS_DIR, resource_table_dir};
use crate::search_index::SearchIndex;
use crate::storage::{is_local, resolve_data_url};
use crate::wal::{Recovery, Rotation, TableRows, Wal, WalEntry, remove_segments};
use medlake_ingest::search::{SearchParams, encode};

/// The Delta `txn` application id under which flushes record the last WAL sequence.
pub const WAL_APP_ID: &str = "medlake-wal";

/// How a lake is opened.
#[derive(Debug, Clone)]
pub struct LakeOptions {
    /// The data URL or local path (`./medlake-data`, `s3://bucket/prefix`, ...).
    pub data: String,
    /// The workspace: a folder under the data root.
    pub workspace: String,
    /// Where the WAL lives. It must be a local disk; defaults to `<data>/<workspace>/_wal`
    /// for local data, and `./medlake-wal/<workspace>` otherwise.
    pub wal_dir: Option<PathBuf>,
    /// Whether this process writes through a WAL (the server) or only bulk-loads and reads.
    pub with_wal: bool,
    /// Whether to keep the resident [`SearchIndex`] (the server, for FHIR search). It is
    /// loaded from the `search` column on open and kept current by every write.
    pub search_index: bool,
    /// The table kinds besides FHIR resources that this lake keeps ([`TableKind`]). A
    /// lake must be opened with every kind its WAL holds rows of.
    pub kinds: Vec<Arc<dyn TableKind>>,
    /// What recovery does with a damaged WAL ([`Recovery`]).
    pub wal_recovery: Recovery,
    /// Writes are refused with [`LakeError::Busy`] while more rows than this wait in the
    /// tail for Delta (object storage down or slow), so that memory stays bounded.
    pub max_tail_rows: usize,
}

impl LakeOptions {
    pub fn new(data: impl Into<String>) -> Self {
        LakeOptions {
            data: data.into(),
            workspace: "default".into(),
            wal_dir: None,
            with_wal: true,
            search_index: false,
            kinds: Vec::new(),
            wal_recovery: Recovery::Strict,
            max_tail_rows: DEFAULT_MAX_TAIL_ROWS,
        }
    }
}

/// The default of [`LakeOptions::max_tail_rows`]: about a minute of the heaviest write
/// load at a few hundred bytes a row.
pub const DEFAULT_MAX_TAIL_ROWS: usize = 2_000_000;

/// A table of a registered kind: its Delta table (if it exists yet) and its tail.
struct KindTable {
    kind: Arc<dyn TableKind>,
    delta: Option<DeltaTable>,
    /// Durable rows not in Delta yet, with their WAL sequence, in sequence order.
    tail: Vec<(i64, RecordBatch)>,
}

/// What a scan of a kind's table sees: the Delta snapshot and the tail above it, taken
/// together.
#[derive(Clone)]
pub struct KindView {
    pub kind: Arc<dyn TableKind>,
    pub delta: Option<DeltaTable>,
    pub tail: Vec<RecordBatch>,
}

/// One resource type's storage: its Delta table (if it exists yet) and its tail.
#[derive(Default)]
struct TypeState {
    delta: Option<DeltaTable>,
    buffer: TypeBuffer,
}

/// What a query or a read sees of one type: a Delta snapshot and the tail above it,
/// taken together so no row is seen twice or missed.
#[derive(Clone)]
pub struct TableView {
    pub delta: Option<DeltaTable>,
    pub buffered: Option<RecordBatch>,
}

/// A write to make.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create or update. Without an id, the server assigns one.
    Put {
        resource_type: String,
        id: Option<String>,
        resource: Map<String, Value>,
        /// The version the writer last saw (HTTP `If-Match`): the write fails with
        /// [`LakeError::VersionConflict`] if the current version differs.
        if_match: Option<i64>,
    },
    /// A versioned soft delete.
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<i64>,
    },
}

/// The outcome of one [`WriteOp`].
#[derive(Debug, Clone)]
pub struct Written {
    pub version: Arc<ResourceVersion>,
    /// True when this write made version 1, or revived a deleted resource.
    pub created: bool,
}

struct Shared {
    workspace_url: Url,
    types: Mutex<HashMap<String, TypeState>>,
    /// Tables of the registered kinds, by qualified name (`device.measurements`).
    tables: Mutex<HashMap<String, KindTable>>,
    index: Mutex<WriteState>,
    /// Rows in every tail, FHIR and other kinds: what waits for Delta.
    tail_rows: AtomicUsize,
    max_tail_rows: usize,
    wal: Option<Wal>,
    flush_lock: tokio::sync::Mutex<()>,
    /// Closed WAL segments waiting for a successful flush before deletion.
    closed_segments: Mutex<Vec<PathBuf>>,
    /// Held while the lake is open: one writer per WAL.
    _wal_lock: Option<std::fs::File>,
    /// Footers and bloom filters of data files, for reads of one resource.
    points: Arc<PointReader>,
    /// FHIR search postings, when the lake was opened with [`LakeOptions::search_index`].
    search: Option<RwLock<SearchIndex>>,
}

struct WriteState {
    /// Durable versions only: what reads see.
    index: IdIndex,
    next_seq: i64,
    /// Versions handed out but not yet durable, by `Type/id`, with their WAL sequence.
    /// Versioning and preconditions look here first; the WAL writer moves an entry into
    /// the index once it is durable, and drops it if the log fails. So a write that never
    /// became durable leaves no trace in what reads, `If-Match` or the next version see.
    pending: HashMap<String, (Latest, i64)>,
}

impl WriteState {
    /// The newest version, durable or on its way: what the next write builds on.
    fn current(&self, resource_type: &str, id: &str) -> Option<Latest> {
        if !self.pending.is_empty() {
            if let Some((latest, _)) = self.pending.get(&pending_key(resource_type, id)) {
                return Some(*latest);
            }
        }
        self.index.get(resource_type, id)
    }

    /// A version reached the end of its way (durable or failed): forget it as pending,
    /// unless a newer write of the same resource is on its way behind it.
    fn settle(&mut self, row: &ResourceVersion) {
        if self.pending.is_empty() {
            return;
        }
        let key = pending_key(&row.resource_type, &row.id);
        if self.pending.get(&key).is_some_and(|(_, seq)| Some(*seq) == row.wal_seq) {
            self.pending.remove(&key);
        }
    }
}

fn pending_key(resource_type: &str, id: &str) -> String {
    let mut k = String::with_capacity(resource_type.len() + id.len() + 1);
    k.push_str(resource_type);
    k.push('/');
    k.push_str(id);
    k
}

impl Shared {
    /// On the WAL writer thread, once entries are durable and before they are
    /// acknowledged: make them readable. The tail first, then the id index, so a read
    /// that finds a new version in the index also finds its row.
    fn apply_durable(&self, entries: &[WalEntry]) {
        let mut added = 0;
        for entry in entries {
            match entry {
                WalEntry::Resources(rows) => {
                    // Search first: a reader that finds a row by id can then also find it
                    // by search.
                    if let Some(search) = &self.search {
                        let mut search = search.write();
                        for r in rows {
                            search.apply(
                                &r.resource_type,
                                &r.id,
                                r.version_id,
                                r.last_updated,
                                r.deleted,
                                &r.search,
                            );
                        }
                    }
                    {
                        let mut types = self.types.lock();
                        for r in rows {
                            types
                                .entry(r.resource_type.clone())
                                .or_default()
                                .buffer
                                .insert(r.clone());
                        }
                    }
                    let mut st = self.index.lock();
                    for r in rows {
                        st.index
                            .observe(&r.resource_type, &r.id, r.version_id, r.deleted);
                        st.settle(r);
                    }
                    added += rows.len();
                }
                WalEntry::Rows(t) => {
                    let Some(batch) = &t.batch else { continue };
                    if let Some(table) = self.tables.lock().get_mut(&*t.table) {
                        table.tail.push((t.seq, batch.clone()));
                        added += batch.num_rows();
                    }
                }
            }
        }
        self.tail_rows.fetch_add(added, Ordering::Relaxed);
    }

    /// On the WAL writer thread, for entries that will never be durable.
    fn apply_failed(&self, entries: &[WalEntry]) {
        let mut st = self.index.lock();
        for entry in entries {
            if let WalEntry::Resources(rows) = entry {
                for r in rows {
                    st.settle(r);
                }
            }
        }
    }
}

/// One workspace of the lake. Cheap to clone.
#[derive(Clone)]
pub struct Lake {
    shared: Arc<Shared>,
}

impl Lake {
    /// Open (or start) a workspace: load its tables and id index, and replay the WAL.
    pub async fn open(options: LakeOptions) -> Result<Lake> {
        let root = resolve_data_url(&options.data)?;
        let workspace_url =
            root.join(&format!("{}/", options.workspace))
                .map_err(|e| LakeError::BadDataUrl {
                    url: root.to_string(),
                    reason: e.to_string(),
                })?;
        let mut types: HashMap<String, TypeState> = HashMap::new();
        let mut index = IdIndex::default();
        let mut flushed: HashMap<String, i64> = HashMap::new();
        let mut search = options.search_index.then(SearchIndex::default);
        let points = Arc::new(PointReader::default());
        for resource_type in list_resource_tables(&workspace_url).await? {
            let url = table_url(&workspace_url, &resource_type)?;
            let Some(mut table) = load_table(&url).await? else {
                continue;
            };
            if options.with_wal {
                table = add_missing_columns(table, &resource_type).await?;
            }
            let seq = wal_txn_version(&table).await?;
            flushed.insert(resource_type.clone(), seq);
            load_indexes(&points, &table, &resource_type, search.as_mut(), &mut index).await?;
            types.insert(
                resource_type,
                TypeState {
                    delta: Some(table),
                    buffer: TypeBuffer::default(),
                },
            );
        }

        let mut tables: HashMap<String, KindTable> = HashMap::new();
        for k in &options.kinds {
            kind::check(k.as_ref())?;
            let name = kind::qualified_name(k.as_ref());
            let delta = load_table(&kind_table_url(&workspace_url, k.as_ref())?).await?;
            if let Some(t) = &delta {
                flushed.insert(name.clone(), wal_txn_version(t).await?);
            }
            tables.insert(
                name,
                KindTable {
                    kind: k.clone(),
                    delta,
                    tail: Vec::new(),
                },
            );
        }

        if let Some(s) = &search {
            let (resources, keys, values) = s.stats();
            tracing::info!(
                "search index: {resources} resources, {keys} keys, {values} date/number/quantity values"
            );
        }
        let mut next_seq = flushed.values().copied().max().unwrap_or(0) + 1;
        let mut wal_lock = None;
        let mut tail_rows = 0usize;
        let wal = if options.with_wal {
            let dir = wal_dir(&options, &workspace_url);
            wal_lock = Some(crate::wal::lock_dir(&dir)?);
            let replay = Wal::replay(&dir, options.wal_recovery)?;
            let mut replayed = 0usize;
            for entry in replay.entries {
                match entry {
                    WalEntry::Resources(rows) => {
                        for mut row in rows {
                            let done = flushed.get(&row.resource_type).copied().unwrap_or(0);
                            if row.wal_seq.is_some_and(|s| s <= done) {
                                continue; // already committed to Delta by an earlier flush
                            }
                            index.observe(&row.resource_type, &row.id, row.version_id, row.deleted);
                            if !row.deleted {
                                row.search =
                                    search_values(&row.resource_type, &row.resource).into();
                            }
                            if let Some(search) = &mut search {
                                search.apply(
                                    &row.resource_type,
                                    &row.id,
                                    row.version_id,
                                    row.last_updated,
                                    row.deleted,
                                    &row.search,
                                );
                            }
                            types
                                .entry(row.resource_type.clone())
                                .or_default()
                                .buffer
                                .insert(row);
                            replayed += 1;
                            tail_rows += 1;
                        }
                    }
                    WalEntry::Rows(rows) => {
                        // Rows of a kind this process does not know would be deleted with
                        // their segment at the next flush: refuse rather than lose them.
                        let Some(table) = tables.get_mut(&*rows.table) else {
                            return Err(LakeError::UnknownTable(format!(
                                "{}: the WAL in {} holds rows of it; open the lake with the \
                                 table kinds it was written with",
                                rows.table,
                                dir.display()
                            )));
                        };
                        if rows.seq <= flushed.get(&*rows.table).copied().unwrap_or(0) {
                            continue;
                        }
                        let batch = table.kind.decode(&rows.encoded)?;
                        tail_rows += batch.num_rows();
                        replayed += batch.num_rows();
                        table.tail.push((rows.seq, batch));
                    }
                }
            }
            if replayed > 0 {
                tracing::info!(
                    "replayed {replayed} writes from the WAL in {}",
                    dir.display()
                );
            }
            next_seq = next_seq.max(replay.last_seq + 1);
            Some((dir, next_seq - 1))
        } else {
            None
        };

        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let wal = wal.and_then(|(dir, last_seq)| {
                let (durable, failed) = (weak.clone(), weak.clone());
                let on_durable = Box::new(move |entries: &[WalEntry]| {
                    if let Some(shared) = durable.upgrade() {
                        shared.apply_durable(entries);
                    }
                });
                let on_failed = Box::new(move |entries: &[WalEntry]| {
                    if let Some(shared) = failed.upgrade() {
                        shared.apply_failed(entries);
                    }
                });
                match Wal::start(&dir, last_seq, on_durable, on_failed) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::error!("{e}");
                        None
                    }
                }
            });
            Shared {
                workspace_url,
                types: Mutex::new(types),
                tables: Mutex::new(tables),
                index: Mutex::new(WriteState {
                    index,
                    next_seq,
                    pending: HashMap::new(),
                }),
                tail_rows: AtomicUsize::new(tail_rows),
                max_tail_rows: options.max_tail_rows,
                wal,
                flush_lock: tokio::sync::Mutex::new(()),
                closed_segments: Mutex::new(Vec::new()),
                _wal_lock: wal_lock,
                points,
                search: search.map(RwLock::new),
            }
        });
        if options.with_wal && shared.wal.is_none() {
            return Err(LakeError::WalStopped(
                "the WAL writer could not be started; see the log above".into(),
            ));
        }
        Ok(Lake { shared })
    }

    /// The URL of this workspace's root folder.
    pub fn workspace_url(&self) -> &Url {
        &self.shared.workspace_url
    }

    /// The URL of a resource type's Delta table.
    pub fn table_url(&self, resource_type: &str) -> Result<Url> {
        table_url(&self.shared.workspace_url, resource_type)
    }

    /// Resource types that have data (in Delta or in the tail), sorted.
    pub fn resource_types(&self) -> Vec<String> {
        let types = self.shared.types.lock();
        let mut v: Vec<String> = types
            .iter()
            .filter(|(_, s)| s.delta.is_some() || !s.buffer.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        v.sort();
        v
    }

    /// A consistent view of one type for a scan.
    pub fn table_view(&self, resource_type: &str) -> Result<TableView> {
        let mut types = self.shared.types.lock();
        match types.get_mut(resource_type) {
            None => Ok(TableView {
                delta: None,
                buffered: None,
            }),
            Some(s) => Ok(TableView {
                delta: s.delta.clone(),
                buffered: s.buffer.batch()?,
            }),
        }
    }

    /// The search index, if the lake keeps one ([`LakeOptions::search_index`]). Hold the
    /// guard briefly: writes wait for it.
    pub fn search_index(&self) -> Option<RwLockReadGuard<'_, SearchIndex>> {
        self.shared.search.as_ref().map(|s| s.read())
    }

    #[cfg(test)]
    pub(crate) fn points(&self) -> &PointReader {
        &self.shared.points
    }

    pub(crate) fn keeps_search_index(&self) -> bool {
        self.shared.search.is_some()
    }

    /// Put the rows of a batch committed straight to Delta (a bulk load) into the search
    /// index.
    pub(crate) fn index_committed(&self, resource_type: &str, batch: &RecordBatch) -> Result<()> {
        let Some(search) = &self.shared.search else {
            return Ok(());
        };
        let columns = KeyColumns::new(batch)?;
        let mut search = search.write();
        for i in 0..batch.num_rows() {
            let row = columns.row(i)?;
            index_row(&mut search, resource_type, &row, row.search.unwrap_or(""));
        }
        Ok(())
    }

    /// Newest version in the index, without reading data.
    pub fn latest(&self, resource_type: &str, id: &str) -> Option<Latest> {
        self.shared.index.lock().index.get(resource_type, id)
    }

    /// Apply writes durably. Returns when they are in the fsync'd WAL and readable.
    ///
    /// The preconditions (`if_match`) of all `ops` are checked first, under the same lock
    /// that assigns versions: if one fails, nothing is written.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<Written>> {
        let wal = self.writable()?;
        // Extract search values before taking the lock: it is the costly part of a write.
        let mut ops = ops;
        let searches: Vec<Arc<str>> = ops
            .iter_mut()
            .map(|op| match op {
                WriteOp::Put {
                    resource_type,
                    resource,
                    ..
                } => Arc::from(search_values_of_map(resource_type, resource)),
                WriteOp::Delete { .. } => Arc::from(""),
            })
            .collect();
        let (pending, written) = {
            let mut st = self.shared.index.lock();
            for op in &ops {
                let (resource_type, id, if_match) = match op {
                    WriteOp::Put {
                        resource_type,
                        id: Some(id),
                        if_match: Some(v),
                        ..
                    } => (resource_type, id, *v),
                    WriteOp::Delete {
                        resource_type,
                        id,
                        if_match: Some(v),
                    } => (resource_type, id, *v),
                    _ => continue,
                };
                let current = st.current(resource_type, id);
                if current.map(|l| l.version_id) != Some(if_match) {
                    return Err(LakeError::VersionConflict {
                        resource: format!("{resource_type}/{id}"),
                        expected: if_match,
                        current: current.map(|l| l.version_id),
                    });
                }
            }
            let now = now_micros() / 1000 * 1000; // lastUpdated carries milliseconds
            let mut rows = Vec::with_capacity(ops.len());
            let mut written = Vec::with_capacity(ops.len());
            for (op, search) in ops.into_iter().zip(searches) {
                let seq = st.next_seq;
                st.next_seq += 1;
                let (resource_type, id, resource, deleted) = match op {
                    WriteOp::Put {
                        resource_type,
                        id,
                        resource,
                        ..
                    } => {
                        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                        (resource_type, id, Some(resource), false)
                    }
                    WriteOp::Delete {
                        resource_type, id, ..
                    } => (resource_type, id, None, true),
                };
                let prev = st.current(&resource_type, &id);
                let version_id = prev.map_or(1, |l| l.version_id + 1);
                let resource: Arc<str> = match resource {
                    Some(mut resource) => {
                        stamp(&mut resource, &resource_type, &id, version_id, now);
                        Arc::from(Value::Object(resource).to_string())
                    }
                    None => Arc::from(""),
                };
                st.pending.insert(
                    pending_key(&resource_type, &id),
                    (
                        Latest {
                            version_id,
                            deleted,
                        },
                        seq,
                    ),
                );
                let row = ResourceVersion {
                    resource_type,
                    id,
                    version_id,
                    last_updated: now,
                    deleted,
                    resource,
                    wal_seq: Some(seq),
                    search,
                };
                written.push(Written {
                    version: Arc::new(row.clone()),
                    created: prev.is_none_or(|l| l.deleted),
                });
                rows.push(row);
            }
            // Queue while still holding the lock: WAL order must be sequence order.
            match wal.submit(vec![WalEntry::Resources(rows)]) {
                Ok(p) => (p, written),
                Err(e) => {
                    for w in &written {
                        st.settle(&w.version);
                    }
                    return Err(e);
                }
            }
        };
        pending.wait().await?;
        Ok(written)
    }

    /// The WAL, if writes may be taken now.
    fn writable(&self) -> Result<Wal> {
        let wal = self.shared.wal.clone().ok_or_else(|| {
            LakeError::ReadOnly("writes go to the server that owns the workspace".into())
        })?;
        let waiting = self.shared.tail_rows.load(Ordering::Relaxed);
        if waiting >= self.shared.max_tail_rows {
            return Err(LakeError::Busy {
                waiting,
                bound: self.shared.max_tail_rows,
            });
        }
        Ok(wal)
    }

    /// Make rows of a registered kind's table durable ([`TableKind`]). Returns their WAL
    /// sequence once they are in the fsync'd log and readable by SQL.
    pub async fn append(&self, table: &str, batch: RecordBatch) -> Result<i64> {
        let wal = self.writable()?;
        let kind = self
            .shared
            .tables
            .lock()
            .get(table)
            .map(|t| t.kind.clone())
            .ok_or_else(|| LakeError::UnknownTable(table.to_string()))?;
        let batch = kind::conform_batch(kind.as_ref(), batch)?;
        if batch.num_rows() == 0 {
            return Ok(self.shared.index.lock().next_seq - 1);
        }
        // Encode before taking the lock: it is the costly part.
        let encoded = kind.encode(&batch)?;
        let (pending, seq) = {
            let mut st = self.shared.index.lock();
            let seq = st.next_seq;
            st.next_seq += 1;
            let entry = WalEntry::Rows(TableRows {
                table: Arc::from(table),
                seq,
                encoded,
                batch: Some(batch),
            });
            (wal.submit(vec![entry])?, seq)
        };
        pending.wait().await?;
        Ok(seq)
    }

    /// The WAL's fault switches, for tests of the fail-stop behaviour.
    #[doc(hidden)]
    pub fn wal_faults(&self) -> Option<&crate::wal::WalFaults> {
        self.shared.wal.as_ref().map(|w| w.faults())
    }

    /// The registered table kinds, by qualified name.
    pub fn kinds(&self) -> Vec<Arc<dyn TableKind>> {
        let tables = self.shared.tables.lock();
        let mut v: Vec<_> = tables.values().map(|t| t.kind.clone()).collect();
        v.sort_by_key(|k| kind::qualified_name(k.as_ref()));
        v
    }

    /// A consistent view of a kind's table for a scan.
    pub fn kind_view(&self, table: &str) -> Result<KindView> {
        let tables = self.shared.tables.lock();
        let t = tables
            .get(table)
            .ok_or_else(|| LakeError::UnknownTable(table.to_string()))?;
        Ok(KindView {
            kind: t.kind.clone(),
            delta: t.delta.clone(),
            tail: t.tail.iter().map(|(_, b)| b.clone()).collect(),
        })
    }

    /// The URL of a kind's Delta table.
    pub fn kind_table_url(&self, kind: &dyn TableKind) -> Result<Url> {
        kind_table_url(&self.shared.workspace_url, kind)
    }

    /// The next version a bulk load gives a resource, recorded at once (bulk loads are
    /// their own acknowledgement).
    pub(crate) fn assign_bulk_version(&self, resource_type: &str, id: &str) -> i64 {
        let mut st = self.shared.index.lock();
        let v = st.current(resource_type, id).map_or(1, |l| l.version_id + 1);
        st.index.observe(resource_type, id, v, false);
        v
    }

    /// The newest version of a resource, deleted or not: from the tail, else from Delta.
    pub async fn read_latest(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Arc<ResourceVersion>>> {
        // The index knows every id: an unknown one needs no file read.
        let Some((_, place)) = self
            .shared
            .index
            .lock()
            .index
            .get_with_place(resource_type, id)
        else {
            return Ok(None);
        };
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(None);
            };
            if let Some(r) = s.buffer.latest(id) {
                return Ok(Some(r));
            }
            s.delta.clone()
        };
        let Some(table) = delta else { return Ok(None) };
        let mut found = self
            .shared
            .points
            .read_many(&table, resource_type, &[(id, place)])
            .await?;
        Ok(found.remove(id).map(Arc::new))
    }

    /// The newest versions of several resources of one type (deleted or not), in the
    /// order asked; `None` for an id the lake does not know. Ids in Delta are read
    /// together, each data file once ([`PointReader`]), from the rows the id index
    /// places them at.
    pub async fn read_latest_many(
        &self,
        resource_type: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<Arc<ResourceVersion>>>> {
        let mut out: Vec<Option<Arc<ResourceVersion>>> = vec![None; ids.len()];
        let mut from_delta: Vec<(usize, &str, Option<Place>)> = Vec::new();
        // The index first, apart from the tail's lock: an unknown id needs no read.
        let known: Vec<Option<Option<Place>>> = {
            let st = self.shared.index.lock();
            ids.iter()
                .map(|id| st.index.get_with_place(resource_type, id).map(|(_, p)| p))
                .collect()
        };
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(out);
            };
            for ((i, id), place) in ids.iter().enumerate().zip(known) {
                let Some(place) = place else { continue };
                match s.buffer.latest(id) {
                    Some(r) => out[i] = Some(r),
                    None => from_delta.push((i, id, place)),
                }
            }
            s.delta.clone()
        };
        if let (Some(table), false) = (delta, from_delta.is_empty()) {
            let wanted: Vec<(&str, Option<Place>)> = from_delta
                .iter()
                .map(|(_, id, place)| (*id, place.clone()))
                .collect();
            let mut found = self
                .shared
                .points
                .read_many(&table, resource_type, &wanted)
                .await?;
            for (i, id, _) in from_delta {
                out[i] = found.remove(id).map(Arc::new);
            }
        }
        Ok(out)
    }

    /// One version of a resource.
    pub async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<Arc<ResourceVersion>>> {
        if self
            .latest(resource_type, id)
            .is_none_or(|l| version_id > l.version_id || version_id < 1)
        {
            return Ok(None);
        }
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(None);
            };
            if let Some(r) = s.buffer.version(id, version_id) {
                return Ok(Some(r));
            }
            s.delta.clone()
        };
        let Some(table) = delta else { return Ok(None) };
        let row = self
            .shared
            .points
            .read(&table, resource_type, id, Some(version_id))
            .await?;
        Ok(row.map(Arc::new))
    }

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
        let work: Vec<(String, Vec<Arc<ResourceVersion>>, Option<DeltaTable>)> = {
            let types = self.shared.types.lock();
            types
                .iter()
                .filter_map(|(t, s)| {
                    let rows = s.buffer.rows_upto(last_seq);
                    (!rows.is_empty()).then(|| (t.clone(), rows, s.delta.clone()))
                })
                .collect()
        };
        let mut stats = FlushStats::default();
        for (resource_type, rows, delta) in work {
            let table = match delta {
                Some(t) => t,
                None => self.table_handle(&resource_type).await?,
            };
            let batch = versions_to_batch(rows.iter().map(|r| r.as_ref()))?;
            let table = commit_flush(
                table,
                &resource_type,
                batch,
                last_seq,
                crate::schema::resource_writer_properties(),
                &[],
            )
            .await?;
            // Before the rows leave the tail, so that reads find them in their place.
            self.locate_new_files(&resource_type, &table).await;
            stats.rows += rows.len();
            stats.tables += 1;
            let mut types = self.shared.types.lock();
            let s = types.entry(resource_type).or_default();
            s.delta = Some(table);
            let before = s.buffer.len();
            s.buffer.remove_upto(last_seq);
            self.shared
                .tail_rows
                .fetch_sub(before - s.buffer.len(), Ordering::Relaxed);
        }
        let kind_work: Vec<(String, Arc<dyn TableKind>, Vec<RecordBatch>, Option<DeltaTable>)> = {
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
                None => self.table_handle_at(&self.kind_table_url(kind.as_ref())?).await?,
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
        // Every row up to last_seq is in Delta: the closed segments are no longer needed.
        let closed = std::mem::take(&mut *self.shared.closed_segments.lock());
        remove_segments(&closed)?;
        Ok(stats)
    }

    /// Flush every `interval`, or sooner once the tail holds `max_rows` rows, until the
    /// returned handle is dropped or aborted.
    pub fn spawn_flusher(
        &self,
        interval: Duration,
        max_rows: usize,
    ) -> tokio::task::JoinHandle<()> {
        let lake = self.clone();
        tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            loop {
                tokio::time::sleep(tick).await;
                waited += tick;
                let rows = lake.buffered_rows();
                if rows == 0 || (waited < interval && rows < max_rows) {
                    continue;
                }
                waited = Duration::ZERO;
                match lake.flush().await {
                    Ok(s) if s.rows > 0 => {
                        tracing::debug!("flushed {} rows to {} tables", s.rows, s.tables)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("flush to Delta failed, will retry: {e}"),
                }
            }
        })
    }

    /// A Delta handle for a type, loaded if it exists or ready to be created.
    pub(crate) async fn table_handle(&self, resource_type: &str) -> Result<DeltaTable> {
        self.table_handle_at(&self.table_url(resource_type)?).await
    }

    /// A Delta handle for a table, loaded if it exists or ready to be created.
    pub(crate) async fn table_handle_at(&self, url: &Url) -> Result<DeltaTable> {
        match load_table(url).await? {
            Some(t) => Ok(t),
            None => DeltaTableBuilder::from_url(url.clone())
                .and_then(|b| b.build())
                .map_err(|e| LakeError::delta(url.as_str(), e)),
        }
    }

    /// Record a version written outside the WAL (bulk loads) in the index.
    pub(crate) fn with_write_state<R>(&self, f: impl FnOnce(&mut IdIndex) -> R) -> R {
        f(&mut self.shared.index.lock().index)
    }

    /// Learn where the versions of the table's files that this process has not located
    /// yet went ([`IdIndex::observe_at`]): the files it has just committed, or another
    /// process's since the last refresh. Without a place a read still finds them, by the
    /// bloom filters of every row group, so a failure here is only logged.
    pub(crate) async fn locate_new_files(&self, resource_type: &str, table: &DeltaTable) {
        let located = |file: &str| {
            self.shared
                .index
                .lock()
                .index
                .is_located(resource_type, file)
        };
        let result = async {
            let mut rx = file_scan::scan(
                self.shared.points.clone(),
                table,
                resource_type,
                Values::None,
                |file| !located(file),
            )?;
            while let Some(item) = rx.recv().await {
                let item = item?;
                let columns = KeyColumns::new(&item.batch)?;
                let row_group = self.with_write_state(|index| {
                    index.locate_file(resource_type, &item.file, item.row_groups)
                }) + item.row_group;
                // A thousand rows at a time: writes wait for this lock.
                let rows = item.batch.num_rows();
                for start in (0..rows).step_by(1024) {
                    let mut st = self.shared.index.lock();
                    for i in start..rows.min(start + 1024) {
                        let row = columns.row(i)?;
                        st.index.observe_at(
                            resource_type,
                            row.id,
                            row.version_id,
                            row.deleted,
                            Some((row_group, item.first_row + i as u32)),
                        );
                    }
                }
            }
            Ok::<_, LakeError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!("could not locate the new rows of {resource_type}: {e}");
        }
    }

    /// Hold off flushes (for a compaction, which must not interleave its commit with one).
    pub(crate) async fn lock_flushes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.flush_lock.lock().await
    }

    /// After a compaction of a kind's table: make the new snapshot the one queries see.
    pub(crate) fn install_kind_table(&self, name: &str, table: DeltaTable) {
        if let Some(t) = self.shared.tables.lock().get_mut(name) {
            t.delta = Some(table);
        }
    }

    /// After a bulk commit: make the new snapshot the one queries see.
    pub(crate) fn install_table(&self, resource_type: &str, table: DeltaTable) {
        let mut types = self.shared.types.lock();
        types.entry(resource_type.to_string()).or_default().delta = Some(table);
    }

    /// The URL of the ingest errors table.
    pub fn ingest_errors_url(&self) -> Result<Url> {
        self.shared
            .workspace_url
            .join(&format!("{INGEST_ERRORS_DIR}/"))
            .map_err(|e| LakeError::BadDataUrl {
                url: self.shared.workspace_url.to_string(),
                reason: e.to_string(),
            })
    }

    /// The ingest errors table, if any record was ever rejected.
    pub async fn ingest_errors_table(&self) -> Result<Option<DeltaTable>> {
        load_table(&self.ingest_errors_url()?).await
    }

    /// Reload every table from storage (to see commits made by other processes).
    pub async fn refresh(&self) -> Result<()> {
        let names = list_resource_tables(&self.shared.workspace_url).await?;
        for t in names {
            let url = self.table_url(&t)?;
            if let Some(table) = load_table(&url).await? {
                self.locate_new_files(&t, &table).await;
                self.install_table(&t, table);
            }
        }
        Ok(())
    }
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushStats {
    pub rows: usize,
    pub tables: usize,
}

/// Set `resourceType`, `id`, `meta.versionId` and `meta.lastUpdated`, keeping any other
/// `meta` elements (profiles, tags, security labels) the client sent.
pub fn stamp(
    resource: &mut Map<String, Value>,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated_micros: i64,
) {
    resource.insert("resourceType".into(), Value::String(resource_type.into()));
    resource.insert("id".into(), Value::String(id.into()));
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(m) = meta {
        m.insert("versionId".into(), Value::String(version.to_string()));
        m.insert(
            "lastUpdated".into(),
            Value::String(instant_string(last_updated_micros)),
        );
    }
    // resourceType and id first, as FHIR servers conventionally serve them.
    if resource.keys().next().map(String::as_str) != Some("resourceType") {
        let mut ordered = Map::with_capacity(resource.len());
        for k in ["resourceType", "id", "meta"] {
            if let Some(v) = resource.remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.append(resource);
        *resource = ordered;
    }
}

/// [`stamp`] for a resource kept as text that has an id and no `meta`: append the meta
/// instead of rebuilding the JSON. `None` if the text is not a JSON object.
pub fn stamp_text(text: &str, version: i64, last_updated: &str) -> Option<String> {
    let body = text.trim_end();
    let open = body.strip_suffix('}')?.trim_end();
    if !text.trim_start().starts_with('{') || open.ends_with('{') {
        return None;
    }
    let mut out = String::with_capacity(open.len() + 64);
    out.push_str(open);
    out.push_str(",\"meta\":{\"versionId\":\"");
    out.push_str(&version.to_string());
    out.push_str("\",\"lastUpdated\":\"");
    out.push_str(last_updated);
    out.push_str("\"}}");
    Some(out)
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

/// The URL of a kind's table: `<workspace>/<namespace>/<name>/`.
pub(crate) fn kind_table_url(workspace: &Url, kind: &dyn TableKind) -> Result<Url> {
    workspace
        .join(&format!("{}/{}/", kind.namespace(), kind.name()))
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace.to_string(),
            reason: e.to_string(),
        })
}

pub(crate) fn table_url(workspace: &Url, resource_type: &str) -> Result<Url> {
    workspace
        .join(&format!("{}/", resource_table_dir(resource_type)))
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace.to_string(),
            reason: e.to_string(),
        })
}

fn wal_dir(options: &LakeOptions, workspace_url: &Url) -> PathBuf {
    if let Some(d) = &options.wal_dir {
        return d.clone();
    }
    if is_local(workspace_url) {
        if let Ok(p) = workspace_url.to_file_path() {
            return p.join("_wal");
        }
    }
    Path::new("medlake-wal").join(&options.workspace)
}

/// Load a Delta table, or `None` if there is none at `url`.
pub(crate) async fn load_table(url: &Url) -> Result<Option<DeltaTable>> {
    let builder =
        DeltaTableBuilder::from_url(url.clone()).map_err(|e| LakeError::delta(url.as_str(), e))?;
    // Probe first: loading a missing table reports the absence as a kernel error that
    // we cannot tell apart from a real failure.
    let probe = builder
        .build()
        .map_err(|e| LakeError::delta(url.as_str(), e))?;
    let exists = probe
        .log_store()
        .is_delta_table_location()
        .await
        .map_err(|e| LakeError::delta(url.as_str(), e))?;
    if !exists {
        return Ok(None);
    }
    let builder =
        DeltaTableBuilder::from_url(url.clone()).map_err(|e| LakeError::delta(url.as_str(), e))?;
    match builder.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(DeltaTableError::InvalidTableLocation(_)) => Ok(None),
        Err(e) => Err(LakeError::delta(url.as_str(), e)),
    }
}

async fn wal_txn_version(table: &DeltaTable) -> Result<i64> {
    let snapshot = table
        .snapshot()
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), WAL_APP_ID)
        .await
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    Ok(v.unwrap_or(0))
}

/// The resource types with a table folder under `<workspace>/fhir/`.
async fn list_resource_tables(workspace_url: &Url) -> Result<Vec<String>> {
    let fhir = workspace_url
        .join("fhir/")
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace_url.to_string(),
            reason: e.to_string(),
        })?;
    if is_local(&fhir) && fhir.to_file_path().map(|p| !p.exists()).unwrap_or(true) {
        return Ok(Vec::new());
    }
    let store = deltalake::logstore::store_for(&fhir, std::iter::empty::<(String, String)>())
        .map_err(|e| LakeError::delta(fhir.as_str(), e))?;
    let listing = store
        .list_with_delimiter(None)
        .await
        .map_err(|e| LakeError::delta(fhir.as_str(), e.into()))?;
    let by_lower: HashMap<String, &str> = medlake_ingest::validate::Validator::r4()
        .resource_types()
        .into_iter()
        .map(|t| (t.to_ascii_lowercase(), t))
        .collect();
    let mut out = Vec::new();
    for p in listing.common_prefixes {
        if let Some(name) = p.filename() {
            if let Some(t) = by_lower.get(name) {
                out.push(t.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The stored search values of a resource ([`medlake_ingest::search`]).
pub fn search_values(resource_type: &str, json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => encode(&SearchParams::r4().extract(resource_type, &v)),
        Err(_) => String::new(),
    }
}

fn search_values_of_map(resource_type: &str, resource: &mut Map<String, Value>) -> String {
    // `extract` wants a `Value`: lend it the map rather than copy the resource.
    let value = Value::Object(std::mem::take(resource));
    let search = encode(&SearchParams::r4().extract(resource_type, &value));
    if let Value::Object(map) = value {
        *resource = map;
    }
    search
}

/// Bring a table written by an earlier medlake up to [`resource_schema`] by adding the
/// columns it lacks (nullable, so existing files need no rewrite): `search` came later.
/// Its old rows have no search values; the index extracts them from `resource`.
async fn add_missing_columns(table: DeltaTable, resource_type: &str) -> Result<DeltaTable> {
    use deltalake::kernel::{DataType, PrimitiveType, StructField};
    let provider = table.table_provider().await?;
    let have = provider.schema();
    let missing: Vec<StructField> = crate::schema::resource_schema()
        .fields()
        .iter()
        .filter(|f| have.column_with_name(f.name()).is_none())
        .filter(|f| *f.data_type() == arrow::datatypes::DataType::Utf8 && f.is_nullable())
        .map(|f| StructField::new(f.name(), DataType::Primitive(PrimitiveType::String), true))
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    tracing::info!(
        "adding {} column(s) to the {resource_type} table written by an earlier medlake",
        missing.len()
    );
    table
        .add_columns()
        .with_fields(missing)
        .await
        .map_err(|e| LakeError::delta(resource_type, e))
}

/// Feed the id index, with each version's place, and the search index if there is one,
/// from one scan of a table: the `search` column, or, for rows written before there was
/// one, values extracted from `resource` again.
async fn load_indexes(
    points: &Arc<PointReader>,
    table: &DeltaTable,
    resource_type: &str,
    mut search: Option<&mut SearchIndex>,
    ids: &mut IdIndex,
) -> Result<()> {
    let started = std::time::Instant::now();
    let values = if search.is_some() {
        Values::Search
    } else {
        Values::None
    };
    let mut rx = file_scan::scan(points.clone(), table, resource_type, values, |_| true)?;
    let mut rows = 0usize;
    while let Some(item) = rx.recv().await {
        let item = item?;
        let row_group =
            ids.locate_file(resource_type, &item.file, item.row_groups) + item.row_group;
        let columns = KeyColumns::new(&item.batch)?;
        for i in 0..item.batch.num_rows() {
            let row = columns.row(i)?;
            ids.observe_at(
                resource_type,
                row.id,
                row.version_id,
                row.deleted,
                Some((row_group, item.first_row + i as u32)),
            );
            let Some(search) = search.as_deref_mut() else {
                continue;
            };
            let extracted;
            let values = match (row.search, row.resource) {
                (Some(values), _) => values,
                (None, Some(resource)) if !row.deleted => {
                    extracted = search_values(resource_type, resource);
                    extracted.as_str()
                }
                _ => "",
            };
            index_row(search, resource_type, &row, values);
        }
        rows += item.batch.num_rows();
    }
    tracing::info!(
        "{rows} versions of {resource_type} indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Put a scanned row's version, with its search values, into the search index.
fn index_row(search: &mut SearchIndex, resource_type: &str, row: &KeyRow, values: &str) {
    search.apply(
        resource_type,
        row.id,
        row.version_id,
        row.last_updated,
        row.deleted,
        values,
    );
}

pub(crate) fn row_from_batch(
    b: &RecordBatch,
    resource_type: &str,
    i: usize,
) -> Result<ResourceVersion> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    let col = |name: &str| {
        b.column_by_name(name).cloned().ok_or_else(|| {
            LakeError::Arrow(arrow::error::ArrowError::SchemaError(format!(
                "missing column {name}"
            )))
        })
    };
    let id = col("id")?;
    let resource = col("resource")?;
    let seq = col("wal_seq")?;
    let seq = seq.as_primitive::<Int64Type>();
    Ok(ResourceVersion {
        resource_type: resource_type.to_string(),
        id: string_at(&id, i)?.to_string(),
        version_id: col("version_id")?.as_primitive::<Int64Type>().value(i),
        last_updated: col("last_updated")?
            .as_primitive::<TimestampMicrosecondType>()
            .value(i),
        deleted: col("deleted")?.as_boolean().value(i),
        resource: Arc::from(string_at(&resource, i)?),
        wal_seq: (!seq.is_null(i)).then(|| seq.value(i)),
        search: match b.column_by_name("search") {
            Some(s) if !s.is_null(i) => Arc::from(string_at(s, i)?),
            _ => Arc::from(""),
        },
    })
}

/// A string cell, whichever string layout the reader chose (delta-rs reads `Utf8View`).
pub(crate) fn string_at(array: &arrow::array::ArrayRef, i: usize) -> Result<&str> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Ok(array.as_string_view().value(i)),
        other => Err(LakeError::Arrow(arrow::error::ArrowError::SchemaError(
            format!("expected a string column, found {other}"),
        ))),
    }
}
