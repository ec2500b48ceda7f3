//! The lake's error type.

use thiserror::Error;

/// Everything that can go wrong while storing or loading lake data.
#[derive(Debug, Error)]
pub enum LakeError {
    #[error("the data location '{url}' is not usable: {reason}")]
    BadDataUrl { url: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(
        "the write-ahead log {path} is damaged at byte {offset}: {reason}. \
         Move the file aside to start without it (writes after that point are lost)"
    )]
    WalCorrupt {
        path: String,
        offset: u64,
        reason: String,
    },

    #[error("the writer has stopped: {0}")]
    WriterStopped(String),

    #[error(
        "{resource} is at version {}, not {expected}: read it again and retry with its current version",
        current.map_or_else(|| "none (it does not exist)".to_string(), |v| v.to_string())
    )]
    VersionConflict {
        resource: String,
        expected: i64,
        current: Option<i64>,
    },

    #[error("'{0}' is not a FHIR R4 resource type")]
    UnknownType(String),
}

impl LakeError {
    pub(crate) fn delta(table: impl Into<String>, source: deltalake::DeltaTableError) -> Self {
        LakeError::Delta {
            table: table.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LakeError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
