//! Why an instance was not stored, with the STOW-RS Failure Reason of each answer.

use medlake_ingest::dicom::DicomError;
use medlake_ingest::dicom::error::{
    FAILURE_DUPLICATE, FAILURE_OUT_OF_RESOURCES, FAILURE_PROCESSING,
};

use crate::blob::BlobError;
use crate::error::LakeError;

/// Why [`crate::Lake::store_dicom`] did not store an instance. Each answers one STOW-RS
/// Failure Reason ([`DicomStoreError::failure_reason`]); in every case no row was added.
#[derive(Debug, thiserror::Error)]
pub enum DicomStoreError {
    /// The file is not a storable instance (not DICOM, damaged, a required attribute
    /// missing, another study than the request's): its reason is the parser's.
    #[error(transparent)]
    Invalid(#[from] DicomError),

    /// An instance with this SOPInstanceUID is stored already (or being stored).
    #[error(
        "instance {sop_instance_uid} is stored already: an instance is stored once; \
         delete it first to replace it"
    )]
    Duplicate { sop_instance_uid: String },

    /// The upload's byte stream failed (the client went away, say): not the file's fault.
    #[error(
        "reading the uploaded instance failed after {received} bytes: {reason}; retry the upload"
    )]
    Upload { received: u64, reason: String },

    /// The blob store failed.
    #[error("storing the instance's file failed: {0}")]
    Blob(#[source] BlobError),

    /// The row could not be made durable (the WAL is full or stopped, the tail is full).
    #[error("recording the instance failed: {0}")]
    Lake(#[source] LakeError),

    /// The lake was opened without the DICOM tables.
    #[error(
        "this lake keeps no DICOM instances: open it with LakeOptions::with_dicom() \
         (the dicom.instances table kind)"
    )]
    NotEnabled,
}

impl DicomStoreError {
    /// The STOW-RS Failure Reason (0008,1197) that answers this error.
    pub fn failure_reason(&self) -> u16 {
        match self {
            DicomStoreError::Invalid(e) => e.failure_reason(),
            DicomStoreError::Duplicate { .. } => FAILURE_DUPLICATE,
            DicomStoreError::Lake(LakeError::Busy { .. } | LakeError::WalFull { .. }) => {
                FAILURE_OUT_OF_RESOURCES
            }
            DicomStoreError::Upload { .. }
            | DicomStoreError::Blob(_)
            | DicomStoreError::Lake(_)
            | DicomStoreError::NotEnabled => FAILURE_PROCESSING,
        }
    }
}
