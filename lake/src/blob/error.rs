//! What can go wrong with a blob.

use thiserror::Error;

/// Everything that can go wrong while storing or reading a blob.
///
/// It is kept apart from [`crate::LakeError`]: a server maps it to an HTTP answer with
/// [`BlobError::http_status`] (and, for [`BlobError::RangeNotSatisfiable`], the `size` for
/// `Content-Range: bytes */<size>`), or wraps it whole.
#[derive(Debug, Error)]
pub enum BlobError {
    #[error(
        "there is no blob {id} here: check the id (a content-addressed blob is named \
         sha256:<hash>, the hash its put returned), or store the blob first"
    )]
    NotFound { id: String },

    #[error(
        "'{key}' is not a blob key or id: {reason}. A key is one or more names separated by \
         '/' (no leading, trailing or doubled '/', no '.' or '..'), made of ASCII letters, \
         digits and . _ - = + @ ,; a content-addressed id is sha256: and 64 hex digits"
    )]
    BadKey { key: String, reason: String },

    #[error(
        "bad byte range '{range}': {reason}. Ask for one range: bytes=<first>-<last>, \
         bytes=<first>- or bytes=-<length>"
    )]
    BadRange { range: String, reason: String },

    #[error(
        "the range {range} lies outside blob {id}, which has {size} bytes: ask for a range \
         that starts below {size}"
    )]
    RangeNotSatisfiable {
        id: String,
        range: String,
        size: u64,
    },

    /// The payload stream itself failed (a client went away, a file could not be read).
    #[error(
        "the payload failed after {received} bytes, so nothing was stored: {source}. Send it again"
    )]
    Payload {
        received: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "blob storage could not {action}: {source}. Check that the object store is reachable \
         and that its credentials allow this, then retry"
    )]
    Storage {
        action: String,
        #[source]
        source: object_store::Error,
    },

    #[error("the blob location '{url}' is not usable: {reason}")]
    BadLocation { url: String, reason: String },
}

impl BlobError {
    /// The HTTP status a server answers this error with: 404 not found, 400 for a bad key,
    /// range or payload, 416 for a range outside the blob, 503 when storage failed (worth a
    /// retry), 500 for a blob location that cannot work (a configuration error).
    pub fn http_status(&self) -> u16 {
        match self {
            BlobError::NotFound { .. } => 404,
            BlobError::BadKey { .. } | BlobError::BadRange { .. } | BlobError::Payload { .. } => {
                400
            }
            BlobError::RangeNotSatisfiable { .. } => 416,
            BlobError::Storage { .. } => 503,
            BlobError::BadLocation { .. } => 500,
        }
    }
}
