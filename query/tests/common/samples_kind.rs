// A small time-series table kind for the tests of table kinds: readings of named series,
// partitioned by day. Included by `tests/table_kinds.rs` and `examples/samples_writer.rs`.

use arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use medlake_lake::TableKind;

#[derive(Debug)]
pub struct Samples;

impl TableKind for Samples {
    fn namespace(&self) -> &str {
        "metrics"
    }
    fn name(&self) -> &str {
        "samples"
    }
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("series", DataType::Utf8, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("value", DataType::Float64, true),
            Field::new("day", DataType::Date32, false),
        ]))
    }
    fn key_columns(&self) -> &[&str] {
        &["series", "at"]
    }
    fn partition_columns(&self) -> &[&str] {
        &["day"]
    }
}

/// `n` readings of `series`, one a minute from 2026-11-30T23:00Z (so that they span two
/// days), with the values `first, first + 1, ...`.
pub fn samples(series: &str, first: i64, n: usize) -> RecordBatch {
    const START_MICROS: i64 = 1_796_079_600_000_000; // 2026-11-30T23:00:00Z
    let at: Vec<i64> = (0..n as i64)
        .map(|i| START_MICROS + (first + i) * 60_000_000)
        .collect();
    let day: Vec<i32> = at
        .iter()
        .map(|t| t.div_euclid(86_400_000_000) as i32)
        .collect();
    RecordBatch::try_new(
        Samples.schema(),
        vec![
            Arc::new(StringArray::from(vec![series; n])),
            Arc::new(TimestampMicrosecondArray::from(at).with_timezone("UTC")),
            Arc::new(Float64Array::from(
                (0..n as i64).map(|i| (first + i) as f64).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(day)),
        ],
    )
    .unwrap()
}
