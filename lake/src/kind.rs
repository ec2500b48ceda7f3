//! Table kinds: what the lake needs to know to keep a table that is not FHIR resources
//! (DICOM instances, device measurements, materialized views, audit events) through its
//! one write-ahead log.
//!
//! A kind declares its Arrow schema, its key and partition columns, how its Parquet is
//! written, and how its rows go into the WAL and come back out. The lake does the rest,
//! exactly as for FHIR resources: [`crate::Lake::append`] makes rows durable in the one
//! WAL (same sequence, same group `fsync`) and readable at once from the in-memory tail;
//! the one flush commits them to the table's Delta table with the flushed sequence as the
//! Delta `txn` version; the one recovery pass replays what a crash left in the log; and
//! `optimize` and the background compaction compact them.
//!
//! FHIR resources are the built-in kind: their rows ([`crate::ResourceVersion`]) carry a
//! version per resource, and the lake keeps two FHIR-specific extras over them, the id
//! index (versioning, reads by id) and the search index.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
//! use medlake_lake::kind::TableKind;
//!
//! /// Readings of a metric: partitioned by day, the way time series are queried.
//! #[derive(Debug)]
//! struct Samples;
//!
//! impl TableKind for Samples {
//!     fn namespace(&self) -> &str { "metrics" }
//!     fn name(&self) -> &str { "samples" }
//!     fn schema(&self) -> SchemaRef {
//!         Arc::new(Schema::new(vec![
//!             Field::new("series", DataType::Utf8, false),
//!             Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
//!             Field::new("value", DataType::Float64, true),
//!             Field::new("day", DataType::Date32, false),
//!         ]))
//!     }
//!     fn key_columns(&self) -> &[&str] { &["series", "at"] }
//!     fn partition_columns(&self) -> &[&str] { &["day"] }
//! }
//!
//! assert!(medlake_lake::kind::check(&Samples).is_ok());
//! ```

use std::fmt::Debug;
use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::file::properties::WriterProperties;

use crate::error::{LakeError, Result};

/// A kind of table that the lake stores through its WAL. See the module docs.
pub trait TableKind: Send + Sync + Debug + 'static {
    /// The SQL schema the table appears in, and its folder under the workspace
    /// (`device`). Not `fhir`, `fhir_history` or `medlake`, which the lake owns.
    fn namespace(&self) -> &str;

    /// The table's name within its namespace (`measurements`).
    fn name(&self) -> &str;

    /// The rows' schema as stored. Partition columns come last, where Delta readers put
    /// them.
    fn schema(&self) -> SchemaRef;

    /// The columns that identify a row.
    fn key_columns(&self) -> &[&str];

    /// The columns Delta partitions the table by (a day, for time series).
    fn partition_columns(&self) -> &[&str] {
        &[]
    }

    /// How the table's Parquet files are written, by flushes and by compaction.
    fn writer_properties(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build()
    }

    /// SQL views its namespace shows beside the table, as `(name, SELECT ...)`: derived
    /// tables that stay consistent with it (`dicom.studies` over `dicom.instances`). The
    /// query names tables as `namespace.name`.
    fn views(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Rows as they go into the WAL. Arrow IPC unless the kind knows better.
    fn encode(&self, batch: &RecordBatch) -> Result<Bytes> {
        encode_ipc(batch)
    }

    /// Rows as they come back out of the WAL.
    fn decode(&self, bytes: &[u8]) -> Result<RecordBatch> {
        decode_ipc(self.schema(), bytes)
    }
}

/// `namespace.name`: how the WAL and SQL name a kind's table.
pub fn qualified_name(kind: &dyn TableKind) -> String {
    format!("{}.{}", kind.namespace(), kind.name())
}

/// The namespaces the lake itself owns (`views` holds the materialized views,
/// [`crate::matview`]).
pub const RESERVED_NAMESPACES: [&str; 5] = ["fhir", "fhir_history", "medlake", "views", "_wal"];

/// Check a kind's declaration before the lake takes it.
pub fn check(kind: &dyn TableKind) -> Result<()> {
    let bad = |reason: String| {
        Err(LakeError::BadRows {
            table: qualified_name(kind),
            reason,
        })
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !valid(kind.namespace()) || !valid(kind.name()) {
        return bad("namespace and name must be lower-case letters, digits and '_'".into());
    }
    if RESERVED_NAMESPACES.contains(&kind.namespace()) {
        return bad(format!(
            "the namespace '{}' is the lake's own",
            kind.namespace()
        ));
    }
    check_layout(kind)
}

/// [`check`] without the reserved namespaces: for the lake's own kinds.
pub(crate) fn check_layout(kind: &dyn TableKind) -> Result<()> {
    let bad = |reason: String| {
        Err(LakeError::BadRows {
            table: qualified_name(kind),
            reason,
        })
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !valid(kind.namespace()) || !valid(kind.name()) {
        return bad("namespace and name must be lower-case letters, digits and '_'".into());
    }
    let schema = kind.schema();
    for c in kind.key_columns().iter().chain(kind.partition_columns()) {
        if schema.column_with_name(c).is_none() {
            return bad(format!("the schema has no column '{c}'"));
        }
    }
    let fields = schema.fields();
    let partitions = kind.partition_columns();
    let tail = &fields[fields.len().saturating_sub(partitions.len())..];
    if tail
        .iter()
        .map(|f| f.name().as_str())
        .ne(partitions.iter().copied())
    {
        return bad("partition columns must be the schema's last columns, in order".into());
    }
    Ok(())
}

/// A batch in the kind's schema exactly: the same column names and types in the same
/// order, and no nulls where the kind allows none.
pub fn conform_batch(kind: &dyn TableKind, batch: RecordBatch) -> Result<RecordBatch> {
    let want = kind.schema();
    let have = batch.schema();
    let same = want.fields().len() == have.fields().len()
        && want
            .fields()
            .iter()
            .zip(have.fields())
            .all(|(w, h)| w.name() == h.name() && w.data_type() == h.data_type());
    let bad = |reason: String| LakeError::BadRows {
        table: qualified_name(kind),
        reason,
    };
    if !same {
        return Err(bad(format!("expected columns {want}, got {have}")));
    }
    RecordBatch::try_new(want, batch.columns().to_vec()).map_err(|e| bad(e.to_string()))
}

/// A batch as an Arrow IPC stream.
pub fn encode_ipc(batch: &RecordBatch) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(Bytes::from(out))
}

/// What [`encode_ipc`] wrote, as one batch of `schema`.
pub fn decode_ipc(schema: SchemaRef, bytes: &[u8]) -> Result<RecordBatch> {
    let reader = arrow::ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}
