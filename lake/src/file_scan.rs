//! Reading a resource table's key columns file by file and row group by row group, so
//! that every version read comes with its place ([`Place`](crate::index::Place)): its file,
//! row group and row.
//!
//! The lake's indexes are built from this scan when it opens, and each file the process
//! commits is read back through it to learn where its versions went. A DataFusion scan
//! would read the same columns but not say which file and row group a row came from.
//! It reads the data files of the snapshot as Parquet, as the point reads do
//! ([`PointReader`]): the tables are written by medlake, without deletion vectors or
//! column mapping, so the files are the table.
//!
//! The decoding runs on its own task, ahead of the consumer: at open the consumer (the
//! search index) is the slower side, and the two then share the cores.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tokio::sync::mpsc;

use crate::error::{LakeError, Result};
use crate::point_read::{ObjectFile, PointReader, parquet_error};

/// The columns every scan reads.
const KEYS: [&str; 4] = ["id", "version_id", "last_updated", "deleted"];

/// What a scan reads besides the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Values {
    None,
    /// The search values; `resource` too for live rows that have none (written before
    /// the `search` column existed, or by another engine), to extract them from.
    Search,
    /// The resource (its JSON text; empty for a delete marker), for materialized views.
    Resource,
}

/// The rows of one row group.
pub(crate) struct ScannedRowGroup {
    /// The file's path relative to the table root.
    pub file: Arc<str>,
    /// How many row groups the file has.
    pub row_groups: u32,
    pub row_group: u32,
    /// The row of the row group that the batch starts at.
    pub first_row: u32,
    pub batch: RecordBatch,
}

/// Scan the files of `table`'s snapshot for which `wanted` says yes. The row groups
/// come in file order through the returned channel; an error ends it.
pub(crate) fn scan(
    points: Arc<PointReader>,
    table: &DeltaTable,
    resource_type: &str,
    values: Values,
    wanted: impl Fn(&str) -> bool,
) -> Result<mpsc::Receiver<Result<ScannedRowGroup>>> {
    let (table_key, listing) = points.snapshot_files(table, resource_type)?;
    let files: Vec<(Path, u64)> = listing
        .files
        .iter()
        .filter(|(p, _)| wanted(p.as_ref()))
        .cloned()
        .collect();
    let store = table.object_store();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for (path, size) in files {
            if let Err(e) = scan_file(&points, &table_key, &store, &path, size, values, &tx).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    });
    Ok(rx)
}

async fn scan_file(
    points: &PointReader,
    table_key: &str,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    values: Values,
    tx: &mpsc::Sender<Result<ScannedRowGroup>>,
) -> Result<()> {
    let index = points.index(table_key, store, path, size).await?;
    let metadata = index.metadata.metadata();
    let schema = metadata.file_metadata().schema_descr();
    let has = |name: &str| schema.columns().iter().any(|c| c.name() == name);
    let mut columns: Vec<&str> = KEYS.to_vec();
    match values {
        Values::Search => columns.push(if has("search") { "search" } else { "resource" }),
        Values::Resource => columns.push("resource"),
        Values::None => {}
    }
    let mask = |columns: &[&str]| {
        let leaves = schema
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| columns.contains(&c.name()))
            .map(|(i, _)| i);
        ProjectionMask::leaves(schema, leaves)
    };
    let file: Arc<str> = Arc::from(path.as_ref());
    let row_groups = metadata.num_row_groups();
    let reader_metadata = as_string_views(&index.metadata, path)?;
    for rg in 0..row_groups {
        let read = |columns: &[&str]| {
            let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
                ObjectFile::new(store, path, size),
                reader_metadata.clone(),
            )
            .with_row_groups(vec![rg])
            .with_projection(mask(columns))
            .with_batch_size(8192);
            async move {
                let stream = builder.build().map_err(|e| parquet_error(path, e))?;
                let batches: Vec<RecordBatch> = stream
                    .try_collect()
                    .await
                    .map_err(|e| parquet_error(path, e))?;
                Ok::<_, LakeError>(batches)
            }
        };
        let mut batches = read(&columns).await?;
        if columns.last() == Some(&"search") && batches.iter().any(lacks_search_values) {
            columns.push("resource");
            batches = read(&columns).await?;
            columns.pop();
        }
        let mut first_row = 0;
        for batch in batches {
            let rows = batch.num_rows() as u32;
            let item = ScannedRowGroup {
                file: file.clone(),
                row_groups: row_groups as u32,
                row_group: rg as u32,
                first_row,
                batch,
            };
            first_row += rows;
            if tx.send(Ok(item)).await.is_err() {
                return Ok(()); // the consumer stopped
            }
        }
    }
    Ok(())
}

/// The file's reader metadata with its large text columns (`resource`, `search`) read
/// as string views. A view of a plain-encoded page points into the decompressed page
/// itself, where a `Utf8` array copies every value into one buffer that grows by
/// doubling: for a row group of 8,192 resources, megabytes of fresh pages per batch,
/// whose copying and zeroing by the kernel cost a build of a view more than a third of
/// its time.
fn as_string_views(metadata: &ArrowReaderMetadata, path: &Path) -> Result<ArrowReaderMetadata> {
    let schema = metadata.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8
                if matches!(f.name().as_str(), "resource" | "search") =>
            {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(
        metadata.metadata().clone(),
        ArrowReaderOptions::new().with_schema(schema),
    )
    .map_err(|e| parquet_error(path, e))
}

/// Whether a live row has no search values.
fn lacks_search_values(batch: &RecordBatch) -> bool {
    let (Some(search), Some(deleted)) = (
        batch.column_by_name("search"),
        batch.column_by_name("deleted"),
    ) else {
        return false;
    };
    let deleted = deleted.as_boolean();
    (0..batch.num_rows()).any(|i| search.is_null(i) && !deleted.value(i))
}

/// The columns of a scanned batch, by name.
pub(crate) struct KeyColumns<'a> {
    id: &'a ArrayRef,
    versions: &'a Int64Array,
    last_updated: &'a arrow::array::TimestampMicrosecondArray,
    deleted: &'a BooleanArray,
    search: Option<&'a ArrayRef>,
    resource: Option<&'a ArrayRef>,
}

/// One scanned row.
pub(crate) struct KeyRow<'a> {
    pub id: &'a str,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    /// The stored search values, if the row has them.
    pub search: Option<&'a str>,
    /// The resource, where the scan read it.
    pub resource: Option<&'a str>,
}

impl<'a> KeyColumns<'a> {
    pub(crate) fn new(batch: &'a RecordBatch) -> Result<KeyColumns<'a>> {
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                LakeError::Arrow(arrow::error::ArrowError::SchemaError(format!(
                    "a data file of a resource table has no {name} column; the table holds \
                     a file medlake did not write (ARCHITECTURE.md describes the \
                     layout)"
                )))
            })
        };
        let typed = |name: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(LakeError::Arrow(arrow::error::ArrowError::SchemaError(
                    format!(
                        "the {name} column of a data file of a resource table has an \
                         unexpected type; the table holds a file medlake did not write \
                         (ARCHITECTURE.md describes the layout)"
                    ),
                )))
            }
        };
        let versions = column("version_id")?;
        let last_updated = column("last_updated")?;
        let deleted = column("deleted")?;
        typed(
            "version_id",
            versions.as_primitive_opt::<Int64Type>().is_some(),
        )?;
        typed(
            "last_updated",
            last_updated
                .as_primitive_opt::<TimestampMicrosecondType>()
                .is_some(),
        )?;
        typed("deleted", deleted.as_boolean_opt().is_some())?;
        Ok(KeyColumns {
            id: column("id")?,
            versions: versions.as_primitive::<Int64Type>(),
            last_updated: last_updated.as_primitive::<TimestampMicrosecondType>(),
            deleted: deleted.as_boolean(),
            search: batch.column_by_name("search"),
            resource: batch.column_by_name("resource"),
        })
    }

    pub(crate) fn row(&self, i: usize) -> Result<KeyRow<'a>> {
        let text = |column: Option<&'a ArrayRef>| -> Result<Option<&'a str>> {
            match column {
                Some(c) if !c.is_null(i) => Ok(Some(crate::record::string_at(c, i)?)),
                _ => Ok(None),
            }
        };
        Ok(KeyRow {
            id: crate::record::string_at(self.id, i)?,
            version_id: self.versions.value(i),
            last_updated: self.last_updated.value(i),
            deleted: self.deleted.value(i),
            search: text(self.search)?,
            resource: text(self.resource)?,
        })
    }
}
