//! The `dicom.instances` table kind: one row per stored instance.
//!
//! Columns, in this order because Delta keeps min/max statistics for the first 32 columns
//! of a file (`delta.dataSkippingNumIndexedCols`): first what QIDO-RS filters on (the
//! UIDs, PatientID, StudyDate, Modality, AccessionNumber, names), then the other indexed
//! attributes, then the storage columns, and last `dicom_json`, the large text no query
//! filters on, which gets no statistics.
//!
//! - Person names are two columns: the text as stored (`patient_name`) and its lowercased
//!   words (`patient_name_words`, a list), which fuzzy matching compares with
//!   `array_has`/prefix tests instead of parsing names at query time.
//! - Dates are `Date32`. A time (`study_time`) is the text `HHMMSS.FFFFFF` of the earliest
//!   instant the stored value denotes, so that text order is time order and a range
//!   compares as text; the value as stored is in `dicom_json`.
//! - Numbers are `Int64` (IS values) or `Int32` (US values).
//! - `unreadable_attributes`: keywords of present attributes whose value could not be
//!   typed (their column is null, their text is in `dicom_json`).
//!
//! No partition column. A partition per study would be a folder and a file per study
//! (100k studies, 100k tiny files); a partition by date serves only the queries that
//! filter on the date, and splits every flush into many small files. The table stays
//! small (about 5 kB a row, 100k instances are a few hundred MB before compression) and
//! is pruned instead by file statistics and Parquet bloom filters: a STOW-RS request
//! carries one study, so the instances of a study arrive together and land in the same
//! flush file, whose min/max of `study_instance_uid` then exclude most other files; and
//! the bloom filters on the UID and PatientID columns skip row groups on equality.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use medlake_ingest::dicom::{InstanceHeader, PersonName};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{LakeError, Result};
use crate::kind::TableKind;

/// The SQL namespace of the DICOM tables.
pub const NAMESPACE: &str = "dicom";
/// The qualified name of the instances table, as [`crate::Lake::append`] and SQL name it.
pub const INSTANCES_TABLE: &str = "dicom.instances";

/// The `dicom.instances` table kind. Give it to the lake with
/// [`crate::LakeOptions::with_dicom`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DicomInstances;

/// The columns with Parquet bloom filters: the ones looked up by equality.
const BLOOM_COLUMNS: [&str; 5] = [
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "patient_id",
    "accession_number",
];

fn words_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The schema of `dicom.instances`.
pub fn instances_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let date = |name: &str| Field::new(name, DataType::Date32, true);
    Arc::new(Schema::new(vec![
        text("study_instance_uid", false),
        text("series_instance_uid", false),
        text("sop_instance_uid", false),
        text("sop_class_uid", false),
        text("patient_id", false),
        date("study_date"),
        text("modality", true),
        text("accession_number", true),
        text("patient_name", true),
        Field::new("patient_name_words", words_type(), true),
        date("patient_birth_date"),
        text("referring_physician_name", true),
        Field::new("referring_physician_name_words", words_type(), true),
        text("study_time", true),
        text("study_description", true),
        text("study_id", true),
        Field::new("series_number", DataType::Int64, true),
        text("series_description", true),
        date("performed_procedure_step_start_date"),
        text("manufacturer_model_name", true),
        Field::new("instance_number", DataType::Int64, true),
        Field::new("number_of_frames", DataType::Int64, true),
        Field::new("rows", DataType::Int32, true),
        Field::new("columns", DataType::Int32, true),
        Field::new("bits_allocated", DataType::Int32, true),
        Field::new("samples_per_pixel", DataType::Int32, true),
        text("photometric_interpretation", true),
        text("transfer_syntax_uid", false),
        Field::new("unreadable_attributes", words_type(), false),
        Field::new(
            "stored_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("size_bytes", DataType::Int64, false),
        text("sha256", false),
        text("blob_path", false),
        text("dicom_json", false),
    ]))
}

impl TableKind for DicomInstances {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn name(&self) -> &str {
        "instances"
    }

    fn schema(&self) -> SchemaRef {
        instances_schema()
    }

    fn key_columns(&self) -> &[&str] {
        &["sop_instance_uid"]
    }

    fn writer_properties(&self) -> WriterProperties {
        let mut builder =
            WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY);
        for column in BLOOM_COLUMNS {
            builder = builder.set_column_bloom_filter_enabled(ColumnPath::from(column), true);
        }
        builder.build()
    }

    fn views(&self) -> Vec<(&'static str, String)> {
        super::views::views()
    }
}

/// Where an instance's file is and what it is, beside its header.
pub(crate) struct StoredFile<'a> {
    pub dicom_json: &'a str,
    pub blob_path: &'a str,
    pub size_bytes: u64,
    pub sha256: &'a str,
    pub stored_at: DateTime<Utc>,
}

/// One instance's row of `dicom.instances`.
pub(crate) fn instance_row(h: &InstanceHeader, file: &StoredFile<'_>) -> Result<RecordBatch> {
    fn text(v: Option<&str>) -> ArrayRef {
        Arc::new(StringArray::from(vec![v]))
    }
    fn date(v: Option<NaiveDate>) -> ArrayRef {
        // Days since the Unix epoch, as Date32 counts.
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
        Arc::new(Date32Array::from(vec![
            v.map(|d| (d - epoch).num_days() as i32),
        ]))
    }
    fn int64(v: Option<i64>) -> ArrayRef {
        Arc::new(Int64Array::from(vec![v]))
    }
    fn int32(v: Option<u32>) -> ArrayRef {
        Arc::new(Int32Array::from(vec![
            v.and_then(|v| i32::try_from(v).ok()),
        ]))
    }
    fn words<'a>(v: Option<impl IntoIterator<Item = &'a str>>) -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        match v {
            Some(words) => {
                for w in words {
                    b.values().append_value(w);
                }
                b.append(true);
            }
            None => b.append(false),
        }
        Arc::new(b.finish())
    }
    let name_words = |n: &Option<PersonName>| {
        words(
            n.as_ref()
                .map(|n| n.words.iter().map(String::as_str).collect::<Vec<_>>()),
        )
    };
    let size = i64::try_from(file.size_bytes).map_err(|_| LakeError::BadRows {
        table: INSTANCES_TABLE.into(),
        reason: format!("a file of {} bytes", file.size_bytes),
    })?;
    let columns: Vec<ArrayRef> = vec![
        text(Some(&h.study_instance_uid)),
        text(Some(&h.series_instance_uid)),
        text(Some(&h.sop_instance_uid)),
        text(Some(&h.sop_class_uid)),
        text(Some(&h.patient_id)),
        date(h.study_date),
        text(h.modality.as_deref()),
        text(h.accession_number.as_deref()),
        text(h.patient_name.as_ref().map(|n| n.text.as_str())),
        name_words(&h.patient_name),
        date(h.patient_birth_date),
        text(h.referring_physician_name.as_ref().map(|n| n.text.as_str())),
        name_words(&h.referring_physician_name),
        text(
            h.study_time
                .as_ref()
                .map(|t| t.time.format("%H%M%S%.6f").to_string())
                .as_deref(),
        ),
        text(h.study_description.as_deref()),
        text(h.study_id.as_deref()),
        int64(h.series_number),
        text(h.series_description.as_deref()),
        date(h.performed_procedure_step_start_date),
        text(h.manufacturer_model_name.as_deref()),
        int64(h.instance_number),
        int64(h.number_of_frames),
        int32(h.rows),
        int32(h.columns),
        int32(h.bits_allocated),
        int32(h.samples_per_pixel),
        text(h.photometric_interpretation.as_deref()),
        text(Some(&h.transfer_syntax_uid)),
        words(Some(h.unreadable.iter().copied())),
        Arc::new(
            TimestampMicrosecondArray::from(vec![file.stored_at.timestamp_micros()])
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from(vec![size])),
        text(Some(file.sha256)),
        text(Some(file.blob_path)),
        text(Some(file.dicom_json)),
    ];
    Ok(RecordBatch::try_new(instances_schema(), columns)?)
}
