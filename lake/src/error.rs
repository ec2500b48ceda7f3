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
        "the write-ahead log {path} is damaged at byte {offset}: {reason}. Acknowledged \
         writes may follow the damage, so medlake will not start on it. Keep a copy of the \
         WAL folder; then either restore the segment, or start once with \
         --wal-truncate-damaged to keep what comes before the damage and set the rest \
         aside (the writes after it are lost)"
    )]
    WalCorrupt {
        path: String,
        offset: u64,
        reason: String,
    },

    /// The log stopped after a failed write or fsync; only a restart recovers.
    #[error(
        "writes are stopped: {0}. Nothing written since was acknowledged; restart medlake \
         to recover from the log on disk"
    )]
    WalStopped(String),

    #[error(
        "another medlake process is writing to this workspace (its WAL {dir} is locked). \
         Stop it first, or send the data to that server: `medlake ingest --server <its URL> \
         <files>`, or POST to its /ingest"
    )]
    WalLocked { dir: String },

    /// The lake was opened without a WAL (`medlake sql`, `medlake ingest`).
    #[error("this lake was opened read-only (no write-ahead log): {0}")]
    ReadOnly(String),

    /// Too much is waiting for Delta: writes resume once a flush gets through.
    #[error(
        "{waiting} rows are waiting to be committed to object storage (the bound is \
         {bound}); retry in a few seconds"
    )]
    Busy { waiting: usize, bound: usize },

    /// The WAL holds too much that is not in Delta yet: writes resume once a flush gets
    /// through and its segments are deleted.
    #[error(
        "the write-ahead log holds {bytes} bytes waiting to be committed to object storage \
         (the bound is {bound}); retry in a few seconds"
    )]
    WalFull { bytes: u64, bound: u64 },

    /// A bug or an invariant broken inside medlake.
    #[error("internal error: {0}")]
    Internal(String),

    #[error("no table kind '{0}' is registered with this lake")]
    UnknownTable(String),

    #[error("rows for {table} do not fit its schema: {reason}")]
    BadRows { table: String, reason: String },

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

    /// A materialized view that cannot be made, found or changed as asked
    /// ([`crate::matview`]).
    #[error("view {view}: {reason}")]
    View { view: String, reason: String },
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
