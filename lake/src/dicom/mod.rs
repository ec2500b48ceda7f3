//! DICOM instances in the lake: the file whole in the blob store, its header as a row of
//! `dicom.instances`, and `dicom.series` and `dicom.studies` over them.
//!
//! - [`instances`]: the `dicom.instances` table kind (its columns and layout).
//! - [`views`]: `dicom.series` and `dicom.studies`, SQL views over the instances.
//! - [`store`]: [`crate::Lake::store_dicom`], one pass over an upload.
//! - [`stored_sops`]: the duplicate check.
//! - [`error`]: why an instance was not stored, as STOW-RS Failure Reasons.
//!
//! # One WAL, no second write path
//!
//! `dicom.instances` is a table kind ([`crate::kind`]) of the lake's one write-ahead log:
//! its rows take the same sequence, group `fsync`, flush, recovery and compaction as FHIR
//! resources, and a stored instance is durable and in SQL (from the tail) when
//! [`crate::Lake::store_dicom`] returns. A separate Delta writer would need its own
//! durability, its own recovery and its own idea of "committed" beside the WAL's; this
//! way there is one. Rows of `dicom.instances` are written only by `store_dicom`
//! ([`crate::Lake::append`] refuses them), because the row, the file and the duplicate
//! check are made consistent there.
//!
//! Open the lake with [`crate::LakeOptions::with_dicom`] to keep the DICOM tables.
//!
//! # The file and the row, and a crash between them
//!
//! The file goes first, the row second; a row is never without its file:
//! 1. The upload streams to the blob store (content-addressed by SHA-256, through a
//!    temporary object, [`crate::blob`]) while the parser reads the header from the same
//!    chunks. The blob becomes visible only when the upload completes, and the upload
//!    completes only once the header was read and accepted: a refused instance aborts
//!    the upload and leaves no blob.
//! 2. The row (with the blob's path, size and SHA-256) is appended through the WAL; its
//!    `fsync` is the acknowledgement.
//!
//! A crash between 1 and 2 leaves a blob that no row names. It is harmless: the client
//! had no answer and sends the instance again, and the same bytes find the same content
//! address (the put deduplicates; nothing more is stored). A blob of an instance never
//! sent again stays unreferenced; a future blob vacuum removes the content addresses no
//! row of `dicom.instances` names (not built yet: such a blob costs disk, nothing else).
//! An append that fails without a crash deletes the blob it created.
//!
//! # Duplicates
//!
//! An instance is stored once per SOPInstanceUID: a second store is refused with
//! `0xB00E` (45070) and adds no row. The check is a set in memory of hashed UIDs, loaded
//! on the first store from the table (Delta snapshot and tail, so after a crash it
//! includes what recovery replayed from the WAL) and kept by each store; see
//! [`stored_sops`] for its memory (about 20 to 40 MB at a million instances) and why not
//! a query per instance. The check happens as soon as the header is read, so a
//! duplicate's pixel data is not uploaded.
//!
//! # Series and studies
//!
//! SQL views over the instances, not maintained tables: see [`views`].

pub mod error;
pub mod instances;
pub mod store;
pub(crate) mod stored_sops;
pub mod views;

pub use error::DicomStoreError;
pub use instances::{DicomInstances, INSTANCES_TABLE, NAMESPACE, instances_schema};
pub(crate) use store::DicomState;
pub use store::{StoredInstance, bulkdata_prefix};
