//! Bulk loads: large inputs straight to Delta in large commits, with no WAL.
//!
//! - [`load`]: the pipeline. Chunks of raw records (from files for `medlake ingest`, from
//!   a request body for the server's `POST /ingest` of a large body) are parsed and
//!   validated in parallel, given ids and versions in input order, stamped, and handed
//!   to the writer, while the next chunks are parsed.
//! - [`writer`]: [`BulkWriter`], which gathers rows per type into large batches and
//!   commits each as one Delta commit of large Parquet files.
//! - [`errors`]: the `ingest_errors` table, one row per rejected record.
//!
//! The commit is the acknowledgement: a bulk load killed midway keeps every batch
//! already committed, and re-running it makes new versions, as re-sending a resource to
//! a FHIR server would. In a serving process the versions come from the same id index
//! as the WAL's writes, so one process owns versioning, and each commit holds the flush
//! lock, so it never interleaves with a flush or a compaction of the same table.

pub mod errors;
pub mod load;
pub mod writer;

pub use errors::IngestErrorRow;
pub use load::{LoadSummary, RecordChunks};
pub use writer::{BulkOptions, BulkStats, BulkWriter};
