//! The workspace's blob store: large payloads beside the tables ([`crate::blob`]).

use crate::blob::{BLOBS_DIR, BlobError, BlobStore};

use super::Lake;

impl Lake {
    /// The store of this workspace's large payloads (DICOM files, exports, attachments),
    /// in `<workspace>/blobs/` on the same object store as the tables. Each call builds an
    /// object store client: keep the store and clone it, clones share the client.
    pub fn blob_store(&self) -> Result<BlobStore, BlobError> {
        let workspace = self.workspace_url();
        let url = workspace
            .join(BLOBS_DIR)
            .map_err(|e| BlobError::BadLocation {
                url: workspace.to_string(),
                reason: e.to_string(),
            })?;
        BlobStore::open(&url)
    }
}
