//! One stored version of one resource, and its Arrow form.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};
use crate::schema::resource_schema;

/// One row of a resource table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVersion {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// Microseconds since the Unix epoch, UTC.
    pub last_updated: i64,
    pub deleted: bool,
    /// The served JSON, `meta` included. Empty for a delete marker.
    pub resource: Arc<str>,
    pub wal_seq: Option<i64>,
    /// The search values ([`medlake_ingest::search::encode`]). Empty for a delete marker.
    pub search: Arc<str>,
}

/// Builds resource-table record batches row by row.
pub struct VersionBatchBuilder {
    id: StringBuilder,
    version_id: Int64Builder,
    last_updated: TimestampMicrosecondBuilder,
    deleted: BooleanBuilder,
    resource: StringBuilder,
    wal_seq: Int64Builder,
    search: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl Default for VersionBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl VersionBatchBuilder {
    pub fn new() -> Self {
        VersionBatchBuilder {
            id: StringBuilder::new(),
            version_id: Int64Builder::new(),
            last_updated: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            deleted: BooleanBuilder::new(),
            resource: StringBuilder::new(),
            wal_seq: Int64Builder::new(),
            search: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    pub fn push(&mut self, v: &ResourceVersion) {
        self.push_parts(
            &v.id,
            v.version_id,
            v.last_updated,
            v.deleted,
            &v.resource,
            v.wal_seq,
            &v.search,
        );
    }

    pub fn push_parts(
        &mut self,
        id: &str,
        version_id: i64,
        last_updated: i64,
        deleted: bool,
        resource: &str,
        wal_seq: Option<i64>,
        search: &str,
    ) {
        self.id.append_value(id);
        self.version_id.append_value(version_id);
        self.last_updated.append_value(last_updated);
        self.deleted.append_value(deleted);
        self.resource.append_value(resource);
        self.wal_seq.append_option(wal_seq);
        self.search.append_value(search);
        self.rows += 1;
        self.bytes += id.len() + resource.len() + search.len() + 32;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Approximate bytes held, to decide when a batch is big enough to write.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// The rows so far as one batch, in the order they came; the builder is empty
    /// afterwards.
    ///
    /// The order is kept on purpose: input usually comes patient by patient, so a
    /// patient's resources share a few row groups, and a page of search results reads
    /// those few. (Sorting by `id` would let the page index narrow a read by id to one
    /// page, but spreads every patient over the whole batch: measured, searches got
    /// slower than reads got faster.)
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.version_id.finish()),
            Arc::new(self.last_updated.finish()),
            Arc::new(self.deleted.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.wal_seq.finish()),
            Arc::new(self.search.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(resource_schema(), columns)?)
    }
}

/// Rows to one batch.
pub fn versions_to_batch<'a>(
    rows: impl IntoIterator<Item = &'a ResourceVersion>,
) -> Result<RecordBatch> {
    let mut b = VersionBatchBuilder::new();
    for r in rows {
        b.push(r);
    }
    b.finish()
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A FHIR instant for `micros`, with millisecond precision, as `meta.lastUpdated` carries it.
pub fn instant_string(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

/// One row of a resource-table batch (from Delta or the tail) as a [`ResourceVersion`].
pub(crate) fn row_from_batch(
    b: &RecordBatch,
    resource_type: &str,
    i: usize,
) -> Result<ResourceVersion> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    let col = |name: &str| {
        b.column_by_name(name).cloned().ok_or_else(|| {
            LakeError::Arrow(arrow::error::ArrowError::SchemaError(format!(
                "missing column {name}"
            )))
        })
    };
    let id = col("id")?;
    let resource = col("resource")?;
    let seq = col("wal_seq")?;
    let seq = seq.as_primitive::<Int64Type>();
    Ok(ResourceVersion {
        resource_type: resource_type.to_string(),
        id: string_at(&id, i)?.to_string(),
        version_id: col("version_id")?.as_primitive::<Int64Type>().value(i),
        last_updated: col("last_updated")?
            .as_primitive::<TimestampMicrosecondType>()
            .value(i),
        deleted: col("deleted")?.as_boolean().value(i),
        resource: Arc::from(string_at(&resource, i)?),
        wal_seq: (!seq.is_null(i)).then(|| seq.value(i)),
        search: match b.column_by_name("search") {
            Some(s) if !s.is_null(i) => Arc::from(string_at(s, i)?),
            _ => Arc::from(""),
        },
    })
}

/// A string cell, whichever string layout the reader chose (delta-rs reads `Utf8View`).
pub(crate) fn string_at(array: &arrow::array::ArrayRef, i: usize) -> Result<&str> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Ok(array.as_string_view().value(i)),
        other => Err(LakeError::Arrow(arrow::error::ArrowError::SchemaError(
            format!("expected a string column, found {other}"),
        ))),
    }
}
