//! medlake's storage: Delta tables on object storage, with a write-ahead log and an
//! in-memory tail in front of them for durable, immediately readable writes.
//!
//! - [`storage`]: where the lake lives (local folder, S3, Azure Blob, GCS).
//! - [`schema`]: the layout of every table medlake writes.
//! - [`record`]: one stored resource version and its Arrow form.
//! - [`kind`]: table kinds other than FHIR resources, kept through the same WAL.
//! - [`wal`]: the one write-ahead log of every kind of table, with group commit.
//! - [`buffer`], [`index`]: the in-memory tail and the resident id index.
//! - [`lake`]: [`Lake`], which ties them together: writes, flushes, recovery, reads.
//! - [`point_read`]: reads of one resource from Delta by id, without a query plan.
//! - [`search_index`]: the resident index FHIR search runs on.
//! - [`bulk`]: large loads straight to Delta (the pipeline and its writer), and the
//!   ingest errors table.
//! - [`blocking`]: CPU-heavy work of large requests, on blocking threads, a core each.
//! - [`blob`]: large payloads (DICOM files, exports) beside the tables, streamed,
//!   content-addressed or by key, read by byte range.
//! - [`dicom`]: DICOM instances: files in the blob store, headers in `dicom.instances`.
//! - [`maintenance`]: compaction, checkpoints and vacuum.
//! - [`view_batch`]: the rows of a SQL-on-FHIR view as an Arrow batch.
//! - [`matview`]: materialized SQL-on-FHIR views, kept by the flush and bulk loads.

pub mod blob;
pub mod blocking;
pub mod buffer;
pub mod bulk;
pub mod crash;
pub mod dicom;
pub mod error;
pub(crate) mod file_scan;
pub mod index;
pub mod kind;
pub mod lake;
pub mod maintenance;
pub mod matview;
pub mod point_read;
pub mod record;
pub mod schema;
pub mod search_index;
pub mod storage;
pub mod view_batch;
pub mod wal;

pub use bulk::{BulkOptions, BulkStats, BulkWriter, IngestErrorRow, LoadSummary, RecordChunks};
pub use error::{LakeError, Result};
pub use kind::TableKind;
pub use lake::{
    Clash, CurrentView, FlushStats, KindView, Lake, LakeOptions, RefreshReport, TableView,
    ViewAsOf, ViewSnapshot, ViewStatus, ViewTableStats, WriteOp, Written, stamp, stamp_text,
};
pub use record::{ResourceVersion, instant_string};
pub use wal::Recovery;
