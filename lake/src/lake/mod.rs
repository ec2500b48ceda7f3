//! [`Lake`]: one workspace's tables, its WAL, its in-memory tail and its id index.
//!
//! The write path (see ARCHITECTURE.md):
//! 1. [`Lake::write`] takes the index lock, gives each resource its id, `meta.versionId`,
//!    `meta.lastUpdated` and WAL sequence, and queues the rows to the WAL writer in
//!    sequence order. The versions it hands out are *pending* until the WAL writer says
//!    they are durable; only then does the id index (what reads see) take them. A write
//!    that fails in the WAL leaves no trace. [`Lake::append`] does the same for the rows
//!    of the other table kinds ([`crate::kind`]).
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
//!
//! After each commit of a type's resources (a flush or a bulk commit), the materialized
//! views of that type take the committed versions ([`crate::matview`], `views`).
//!
//! The code follows those seams: [`open`] (loading and recovery), [`write`] (versions,
//! pending writes, appends of other kinds), [`read`], [`flush`], [`follow`] (commits of
//! other processes), `views` (materialized views) and [`delta`] (table URLs and
//! snapshots). The types live here, and the submodules share this module's imports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
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
use crate::wal::{Recovery, Rotation, TableRows, Wal, WalEntry};
use medlake_ingest::search::{SearchParams, encode};

mod blobs;
mod delta;
mod flush;
mod follow;
mod open;
mod read;
mod views;
mod write;

pub(crate) use delta::kind_table_url;
pub(crate) use delta::load_table;
pub(crate) use delta::table_url;
use delta::wal_txn_version;
pub use flush::FlushStats;
pub(crate) use flush::RetryBackoff;
pub use follow::{Clash, RefreshReport};
use open::list_resource_tables;
use open::{index_row, index_scanned_row};
pub use views::{ViewAsOf, ViewSnapshot, ViewStatus, ViewTableStats};
pub use write::WriteOp;
pub use write::Written;
pub use write::search_values;
pub use write::stamp;
pub use write::stamp_text;

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
    /// Writes are refused with [`LakeError::WalFull`] while the WAL holds more bytes than
    /// this (its segments are deleted only once their rows are in Delta), so that an
    /// outage of object storage cannot fill the WAL's disk.
    pub max_wal_bytes: u64,
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
            max_wal_bytes: DEFAULT_MAX_WAL_BYTES,
        }
    }
}

impl LakeOptions {
    /// These options with the DICOM tables ([`crate::dicom`]): `dicom.instances` among
    /// the kinds, so that [`Lake::store_dicom`] can store instances.
    pub fn with_dicom(mut self) -> Self {
        let dicom = crate::dicom::INSTANCES_TABLE;
        if !self
            .kinds
            .iter()
            .any(|k| kind::qualified_name(k.as_ref()) == dicom)
        {
            self.kinds.push(Arc::new(crate::dicom::DicomInstances));
        }
        self
    }
}

/// The default of [`LakeOptions::max_tail_rows`]: about a minute of the heaviest write
/// load at a few hundred bytes a row.
pub const DEFAULT_MAX_TAIL_ROWS: usize = 2_000_000;

/// The default of [`LakeOptions::max_wal_bytes`]: 4 GiB, well above what
/// [`DEFAULT_MAX_TAIL_ROWS`] rows take, so the tail's bound usually acts first.
pub const DEFAULT_MAX_WAL_BYTES: u64 = 4 << 30;

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

/// What a scan of the current versions of one type sees ([`Lake::current_view`]): the
/// snapshot and the tail, with the rows of each that are not current.
#[derive(Clone)]
pub struct CurrentView {
    pub delta: Option<DeltaTable>,
    /// The tail's rows, in WAL order.
    pub tail: Vec<RecordBatch>,
    /// Per batch of `tail`, which rows are current; `None` when all are.
    pub tail_current: Vec<Option<arrow::array::BooleanArray>>,
    /// Per data file of the snapshot (its path relative to the table root), the rows of
    /// each row group that are not current; files with none are absent. `None` when a
    /// file of the snapshot has not been located yet (another process's commit, or a bulk
    /// commit being read back): then only a comparison of versions can tell.
    pub hidden: Option<HashMap<String, Vec<Option<roaring::RoaringBitmap>>>>,
}

/// What a query or a read sees of one type: a Delta snapshot and the tail above it,
/// taken together so no row is seen twice or missed.
#[derive(Clone)]
pub struct TableView {
    pub delta: Option<DeltaTable>,
    /// The tail's rows, in WAL order.
    pub tail: Vec<RecordBatch>,
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
    max_wal_bytes: u64,
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
    /// The materialized views, by name ([`crate::matview`]).
    views: Mutex<std::collections::BTreeMap<String, views::ViewState>>,
    /// Whether this process maintains the views: it owns the workspace (has the WAL).
    maintain_views: bool,
    /// The duplicate check and blob store of DICOM stores ([`crate::dicom`]).
    dicom: crate::dicom::DicomState,
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

/// One workspace of the lake. Cheap to clone.
#[derive(Clone)]
pub struct Lake {
    shared: Arc<Shared>,
}

impl Lake {
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

    /// A consistent view of one type for a scan. The snapshot and the tail are taken
    /// together under the lock; the tail's batches are built after it is released, so
    /// the WAL writer, which needs that lock to acknowledge writes, never waits for them
    /// ([`crate::buffer`]).
    pub fn table_view(&self, resource_type: &str) -> Result<TableView> {
        let (delta, tail) = {
            let types = self.shared.types.lock();
            match types.get(resource_type) {
                None => {
                    return Ok(TableView {
                        delta: None,
                        tail: Vec::new(),
                    });
                }
                Some(s) => (s.delta.clone(), s.buffer.snapshot()),
            }
        };
        Ok(TableView {
            delta,
            tail: tail.batches()?,
        })
    }

    /// What an engine that reads only Delta sees of one type: its committed snapshot (if
    /// the table exists yet), and how many of the type's rows are still only in the
    /// tail, acknowledged but not flushed. Cheap: nothing is copied but the table handle.
    pub fn committed(&self, resource_type: &str) -> (Option<DeltaTable>, usize) {
        let types = self.shared.types.lock();
        match types.get(resource_type) {
            None => (None, 0),
            Some(s) => (s.delta.clone(), s.buffer.len()),
        }
    }

    /// A consistent view of the current versions of one type: [`Lake::table_view`] plus
    /// which of its rows a newer version replaced or a delete removed, as the id index
    /// knows them ([`IdIndex::hidden_rows`]). Taken under the same lock as the writes
    /// that change them, so every resource is seen exactly once.
    pub fn current_view(&self, resource_type: &str) -> Result<CurrentView> {
        let (delta, tail, hidden) = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(CurrentView {
                    delta: None,
                    tail: Vec::new(),
                    tail_current: Vec::new(),
                    hidden: Some(HashMap::new()),
                });
            };
            let listing = match &s.delta {
                Some(t) if t.version().is_some() => {
                    Some(self.shared.points.snapshot_files(t, resource_type)?.1)
                }
                _ => None,
            };
            let st = self.shared.index.lock();
            let mut hidden = Some(HashMap::new());
            for (path, _) in listing.iter().flat_map(|l| l.files.iter()) {
                match st.index.hidden_rows(resource_type, path.as_ref()) {
                    None => {
                        hidden = None;
                        break;
                    }
                    Some(rows) if rows.iter().any(Option::is_some) => {
                        if let Some(h) = hidden.as_mut() {
                            h.insert(path.as_ref().to_string(), rows);
                        }
                    }
                    Some(_) => {}
                }
            }
            (s.delta.clone(), s.buffer.snapshot(), hidden)
        };
        Ok(CurrentView {
            delta,
            tail: tail.batches()?,
            tail_current: tail.current_rows(),
            hidden,
        })
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

    pub(crate) fn dicom_state(&self) -> &crate::dicom::DicomState {
        &self.shared.dicom
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
}
