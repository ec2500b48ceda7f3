//! The layouts of the lake's tables. Every table medlake writes is defined here.
//!
//! A resource table (`<data>/<workspace>/fhir/<type>/`) holds every version of every
//! resource of one type, one row per version:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | string | the logical id |
//! | `version_id` | int64 | `meta.versionId`, 1, 2, ... per id |
//! | `last_updated` | timestamp(us, UTC) | `meta.lastUpdated` |
//! | `deleted` | bool | a delete marker: the version that ended the resource |
//! | `resource` | string | the JSON exactly as the FHIR API serves it (`meta` included); empty for a delete |
//! | `wal_seq` | int64, nullable | the write-ahead-log sequence of the write; null for bulk loads |
//! | `search` | string, nullable | the search parameter values of the version, extracted when it was written ([`medlake_ingest::search::encode`]); empty for a delete. Composites, and parameters that are unions of others (Observation's `combo-*`), are not stored: their parts are |
//!
//! The ingest errors table (`<data>/<workspace>/ingest_errors/`) holds one row per
//! rejected record: see [`ingest_errors_schema`].

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Arrow type of `last_updated` and other instants.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema shared by all resource tables.
pub fn resource_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("version_id", DataType::Int64, false),
            Field::new("last_updated", timestamp_type(), false),
            Field::new("deleted", DataType::Boolean, false),
            Field::new("resource", DataType::Utf8, false),
            Field::new("wal_seq", DataType::Int64, true),
            Field::new("search", DataType::Utf8, true),
        ]))
    });
    SCHEMA.clone()
}

/// The schema of `ingest_errors`: one row per rejected input record.
pub fn ingest_errors_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("recorded_at", timestamp_type(), false),
            Field::new("source", DataType::Utf8, false),
            // 1-based line of an NDJSON file, or 0-based entry of a Bundle.
            Field::new("line", DataType::Int64, true),
            Field::new("entry", DataType::Int64, true),
            Field::new("resource_type", DataType::Utf8, true),
            Field::new("resource_id", DataType::Utf8, true),
            Field::new("severity", DataType::Utf8, false),
            Field::new("code", DataType::Utf8, false),
            Field::new("diagnostics", DataType::Utf8, false),
            Field::new("expression", DataType::Utf8, true),
            // The OperationOutcome with every issue of the record.
            Field::new("outcome", DataType::Utf8, false),
        ]))
    });
    SCHEMA.clone()
}

/// Folder of a resource type's table, relative to the workspace root.
pub fn resource_table_dir(resource_type: &str) -> String {
    format!("fhir/{}", resource_type.to_ascii_lowercase())
}

/// Folder of the ingest errors table, relative to the workspace root.
pub const INGEST_ERRORS_DIR: &str = "ingest_errors";

/// Rows per Parquet row group in resource tables: the unit a read by id skips or reads.
pub const ROW_GROUP_ROWS: usize = 8 * 1024;

/// Rows per Parquet data page at most: a read of one row decompresses the page that
/// holds it (the offset index lets the reader skip the others).
pub const PAGE_ROWS: usize = 256;

/// Bytes per data page, about, at most: 256 large resources (a Patient is a few KB) made
/// a page of most of a megabyte to decompress for one row. Measured: a search for 20
/// Patients by family name took 2.2 ms with 256-row pages and 1.2 ms with these.
pub const PAGE_BYTES: usize = 64 * 1024;

/// Rows the Parquet writer takes at a time: it checks a page's size between them, so a
/// page is cut at a multiple of this.
pub const PAGE_WRITE_ROWS: usize = 16;

/// How resource tables are written to Parquet.
///
/// `resource` and `search` hold a distinct JSON document per row: dictionary encoding and
/// min/max statistics would cost a hash and a string comparison per row and never help,
/// so both are off for them. `id` has no dictionary either (ids are unique), but a bloom
/// filter per row group of [`ROW_GROUP_ROWS`] rows: a read by id skips every row group
/// whose filter rules the id out, where min/max statistics of random ids never could.
/// Its false-positive rate is 0.01% (about 20 KB a row group): a page of search results
/// checks a dozen ids against every row group of a table, so at 1% the row groups read
/// for a page grew with the table.
pub fn resource_writer_properties() -> parquet::file::properties::WriterProperties {
    use parquet::basic::Compression;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;
    let resource = ColumnPath::from("resource");
    let search = ColumnPath::from("search");
    let id = ColumnPath::from("id");
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_write_batch_size(PAGE_WRITE_ROWS)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_data_page_size_limit(PAGE_BYTES)
        .set_column_dictionary_enabled(resource.clone(), false)
        .set_column_statistics_enabled(resource, EnabledStatistics::None)
        .set_column_dictionary_enabled(search.clone(), false)
        .set_column_statistics_enabled(search, EnabledStatistics::None)
        .set_column_dictionary_enabled(id.clone(), false)
        .set_column_bloom_filter_enabled(id.clone(), true)
        .set_column_bloom_filter_max_ndv(id.clone(), ROW_GROUP_ROWS as u64)
        .set_column_bloom_filter_fpp(id, 0.0001)
        .build()
}
