//! The rows of a SQL-on-FHIR view as an Arrow [`RecordBatch`], for CSV, Parquet, text
//! tables and materialized views.
//!
//! [`ViewDefinition::evaluate`](medlake_ingest::view::ViewDefinition::evaluate) gives JSON
//! values; [`rows_to_batch`] gives each column the Arrow type its declared FHIR `type`
//! calls for, close to the specification's default SQL mapping:
//!
//! | declared `type` | Arrow type |
//! |---|---|
//! | `boolean` | `Boolean` |
//! | `integer`, `positiveInt`, `unsignedInt` | `Int32` |
//! | `integer64` | `Int64` |
//! | `decimal` | `Float64` |
//! | `date` | `Date32` when every value is a full date (`YYYY-MM-DD`), else `Utf8` |
//! | `dateTime`, `instant` | `Timestamp(µs, UTC)` when every value has a time and a zone, else `Utf8` |
//! | `string`, `code`, `id`, `uri`, `url`, `canonical`, `oid`, `uuid`, `markdown`, `base64Binary`, `time` | `Utf8` |
//! | any other (a complex type such as `Quantity`) | `Utf8`, the value's JSON text |
//! | none | from the values: all Booleans `Boolean`, all integers `Int64`, all numbers `Float64`, else `Utf8` (strings as they are, anything else as JSON text) |
//!
//! A `collection` column is a `List` of the type its elements would have as a single
//! column (null where the row has no value at all, as in the null row of
//! `forEachOrNull`), or, from [`rows_to_flat_batch`] for formats without nested types
//! such as CSV, `Utf8` holding the JSON array. Partial dates and dateTimes stay text because a Date32 or a timestamp would
//! invent the missing month, day or zone. The date and undeclared rules look at the
//! values, so two batches of one view can differ there; a writer that needs one schema
//! for all its batches should declare types and use full dates.
//!
//! A value that does not fit its declared type (a string in a `boolean` column, an
//! integer beyond `Int32`) is an error naming the column, as the specification asks.
//!
//! # One schema for every batch: [`fixed_schema`], [`rows_to_fixed_batch`]
//!
//! A materialized view ([`crate::matview`]) is a Delta table: every batch it ever gets
//! must have the same schema, so there the declared type alone decides, never the values:
//! the table above without its value-dependent rules. `date` is always `Date32` and
//! `dateTime`/`instant` always `Timestamp(µs, UTC)`; a partial value is stored as the
//! start of the period it denotes (`2020-05` as 2020-05-01, a date in a timestamp column
//! as its midnight UTC, a time without a zone as UTC). That loses the precision, which the
//! stored resource keeps; declare the column `string` to keep the text instead. A column
//! without a declared type is `Utf8` (JSON text for anything but a string), since no
//! later batch could be trusted to agree with a type guessed from the first.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListArray,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use medlake_ingest::view::{ViewColumn, ViewDefinition};
use serde_json::Value;

/// Why rows could not become a batch.
#[derive(Debug, thiserror::Error)]
pub enum ViewBatchError {
    /// A value that does not fit the column's declared type, or a row of the wrong width.
    #[error("view column {column:?}: {message}")]
    Value { column: String, message: String },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// The Arrow form one column's values take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Int32,
    Int64,
    Float64,
    Date32,
    Timestamp,
    /// Strings as they are; other JSON as its text.
    Utf8,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Boolean => DataType::Boolean,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Date32 => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Utf8 => DataType::Utf8,
        }
    }
}

/// One batch of `rows` (each as [`ViewDefinition::evaluate`] gives it), with the column
/// names of `view` and the types of the table in the module documentation.
pub fn rows_to_batch(
    view: &ViewDefinition,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, ViewBatchError> {
    to_batch(view, rows, true)
}

/// [`rows_to_batch`] with `collection` columns as the JSON text of their arrays, for
/// outputs that have no nested types (CSV).
pub fn rows_to_flat_batch(
    view: &ViewDefinition,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, ViewBatchError> {
    to_batch(view, rows, false)
}

fn to_batch(
    view: &ViewDefinition,
    rows: &[Vec<Value>],
    lists: bool,
) -> Result<RecordBatch, ViewBatchError> {
    let columns = view.columns();
    if let Some(bad) = rows.iter().find(|r| r.len() != columns.len()) {
        return Err(ViewBatchError::Value {
            column: String::new(),
            message: format!(
                "a row has {} values for {} columns",
                bad.len(),
                columns.len()
            ),
        });
    }
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let values = rows.iter().map(|r| &r[i]);
        let (field, array) = if col.collection && lists {
            list_column(col, values)?
        } else if col.collection {
            let values: Vec<&Value> = values.collect();
            let array = build(col, Kind::Utf8, &values)?;
            (Field::new(&col.name, DataType::Utf8, true), array)
        } else {
            let values: Vec<&Value> = values.collect();
            let kind = kind_of(col, &values);
            let array = build(col, kind, &values)?;
            (Field::new(&col.name, kind.data_type(), true), array)
        };
        fields.push(field);
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

/// The Arrow type a column of a materialized view always has: the declared type decides.
fn fixed_kind(col: &ViewColumn) -> Kind {
    match col.fhir_type_code() {
        Some("boolean") => Kind::Boolean,
        Some("integer" | "positiveInt" | "unsignedInt") => Kind::Int32,
        Some("integer64") => Kind::Int64,
        Some("decimal") => Kind::Float64,
        Some("date") => Kind::Date32,
        Some("dateTime" | "instant") => Kind::Timestamp,
        _ => Kind::Utf8,
    }
}

/// The schema of [`rows_to_fixed_batch`]: the same for every batch of `view`.
pub fn fixed_schema(view: &ViewDefinition) -> Schema {
    Schema::new(
        view.columns()
            .iter()
            .map(|col| {
                let kind = fixed_kind(col);
                if col.collection {
                    let item = Arc::new(Field::new("item", kind.data_type(), true));
                    Field::new(&col.name, DataType::List(item), true)
                } else {
                    Field::new(&col.name, kind.data_type(), true)
                }
            })
            .collect::<Vec<_>>(),
    )
}

/// Check that every value of `row` fits its column in [`fixed_schema`], so that a batch
/// of checked rows cannot fail: a caller that builds a batch of many resources' rows can
/// set aside the rows of one resource that does not fit.
pub fn check_fixed_row(view: &ViewDefinition, row: &[Value]) -> Result<(), ViewBatchError> {
    let columns = view.columns();
    if row.len() != columns.len() {
        return Err(wrong_width(row.len(), columns.len()));
    }
    for (col, value) in columns.iter().zip(row) {
        let kind = fixed_kind(col);
        match value {
            Value::Array(items) if col.collection => {
                for item in items {
                    fixed_cell(col, kind, item)?;
                }
            }
            other => {
                fixed_cell(col, kind, other)?;
            }
        }
    }
    Ok(())
}

fn wrong_width(got: usize, want: usize) -> ViewBatchError {
    ViewBatchError::Value {
        column: String::new(),
        message: format!("a row has {got} values for {want} columns"),
    }
}

/// One batch of `rows` in [`fixed_schema`].
pub fn rows_to_fixed_batch(
    view: &ViewDefinition,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, ViewBatchError> {
    let mut batch = FixedBatchBuilder::new(view, rows.len());
    batch.append_rows(rows)?;
    batch.finish()
}

/// A batch in [`fixed_schema`], built a resource's rows at a time: the rows of one
/// resource go in whole or not at all, so that a caller can set aside a resource whose
/// values do not fit and keep the others, with each value checked and converted once.
pub struct FixedBatchBuilder<'d> {
    view: &'d ViewDefinition,
    kinds: Vec<Kind>,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

/// One column's builder: its cells, or a list's items with each row's length.
enum ColumnBuilder {
    Single(CellBuilder),
    List {
        items: CellBuilder,
        lengths: Vec<usize>,
        valid: Vec<bool>,
    },
}

/// A row's value in a collection column, before its items.
const LIST_NULL: usize = usize::MAX;

impl<'d> FixedBatchBuilder<'d> {
    /// A builder with room for about `capacity` rows.
    pub fn new(view: &'d ViewDefinition, capacity: usize) -> FixedBatchBuilder<'d> {
        let kinds: Vec<Kind> = view.columns().iter().map(fixed_kind).collect();
        let columns = view
            .columns()
            .iter()
            .zip(&kinds)
            .map(|(col, &kind)| {
                if col.collection {
                    ColumnBuilder::List {
                        items: CellBuilder::new(kind, capacity),
                        lengths: Vec::with_capacity(capacity),
                        valid: Vec::with_capacity(capacity),
                    }
                } else {
                    ColumnBuilder::Single(CellBuilder::new(kind, capacity))
                }
            })
            .collect();
        FixedBatchBuilder {
            view,
            kinds,
            columns,
            rows: 0,
        }
    }

    /// How many rows the builder holds.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the builder holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append `rows`, all of them if every value fits its column, else none (the error
    /// names the first column that did not fit).
    pub fn append_rows(&mut self, rows: &[Vec<Value>]) -> Result<(), ViewBatchError> {
        let columns = self.view.columns();
        // Every cell of every row, in order; a collection's cells follow its length.
        let mut cells: Vec<(usize, Cell<'_>)> = Vec::with_capacity(rows.len() * columns.len());
        for row in rows {
            if row.len() != columns.len() {
                return Err(wrong_width(row.len(), columns.len()));
            }
            for (col, (kind, value)) in columns.iter().zip(self.kinds.iter().zip(row)) {
                match value {
                    Value::Array(items) if col.collection => {
                        cells.push((items.len(), Cell::Null));
                        for item in items {
                            cells.push((0, fixed_cell(col, *kind, item)?));
                        }
                    }
                    Value::Null if col.collection => cells.push((LIST_NULL, Cell::Null)),
                    other if col.collection => {
                        cells.push((1, Cell::Null));
                        cells.push((0, fixed_cell(col, *kind, other)?));
                    }
                    other => cells.push((0, fixed_cell(col, *kind, other)?)),
                }
            }
        }
        let mut cells = cells.into_iter();
        for _ in rows {
            for column in &mut self.columns {
                match column {
                    ColumnBuilder::Single(b) => {
                        if let Some((_, cell)) = cells.next() {
                            b.append(cell);
                        }
                    }
                    ColumnBuilder::List {
                        items,
                        lengths,
                        valid,
                    } => {
                        let Some((len, _)) = cells.next() else { break };
                        valid.push(len != LIST_NULL);
                        let len = if len == LIST_NULL { 0 } else { len };
                        lengths.push(len);
                        for (_, cell) in cells.by_ref().take(len) {
                            items.append(cell);
                        }
                    }
                }
            }
        }
        self.rows += rows.len();
        Ok(())
    }

    /// Append a row of nulls (a collection column's null is a null list).
    pub fn append_null_row(&mut self) {
        for column in &mut self.columns {
            match column {
                ColumnBuilder::Single(b) => b.append(Cell::Null),
                ColumnBuilder::List { lengths, valid, .. } => {
                    lengths.push(0);
                    valid.push(false);
                }
            }
        }
        self.rows += 1;
    }

    /// The batch of every row appended.
    pub fn finish(self) -> Result<RecordBatch, ViewBatchError> {
        let schema = Arc::new(fixed_schema(self.view));
        let arrays = self
            .columns
            .into_iter()
            .zip(self.kinds)
            .map(|(column, kind)| {
                Ok(match column {
                    ColumnBuilder::Single(b) => b.finish(),
                    ColumnBuilder::List {
                        items,
                        lengths,
                        valid,
                    } => {
                        let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
                        let item_field = Arc::new(Field::new("item", kind.data_type(), true));
                        Arc::new(ListArray::try_new(
                            item_field,
                            OffsetBuffer::from_lengths(lengths),
                            items.finish(),
                            nulls,
                        )?) as ArrayRef
                    }
                })
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        Ok(RecordBatch::try_new_with_options(schema, arrays, &options)?)
    }
}

/// One value as a column of a fixed schema stores it, borrowed from the row: what
/// [`fixed_cell`] makes and [`CellBuilder`] appends, so that checking a row and building
/// a batch copy nothing but into the Arrow buffers.
#[derive(Debug, Clone, Copy)]
enum Cell<'v> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Days since 1970-01-01.
    Days(i32),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
    Text(&'v str),
    /// Anything else in a text column, stored as its JSON text.
    Json(&'v Value),
}

/// `v` as a column of `kind` in a fixed schema holds it: partial dates and dateTimes
/// become the start of their period; anything else must already fit.
fn fixed_cell<'v>(col: &ViewColumn, kind: Kind, v: &'v Value) -> Result<Cell<'v>, ViewBatchError> {
    let mismatch = || ViewBatchError::Value {
        column: col.name.clone(),
        message: format!(
            "{v} is not a {} value; fix the column's type or its path",
            col.fhir_type_code().unwrap_or("single")
        ),
    };
    Ok(match (kind, v) {
        (_, Value::Null) => Cell::Null,
        (Kind::Date32, Value::String(s)) => {
            let date = period_start(s).ok_or_else(mismatch)?.date_naive();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(mismatch)?;
            Cell::Days(i32::try_from((date - epoch).num_days()).map_err(|_| mismatch())?)
        }
        (Kind::Timestamp, Value::String(s)) => {
            Cell::Micros(period_start(s).ok_or_else(mismatch)?.timestamp_micros())
        }
        (Kind::Boolean, Value::Bool(b)) => Cell::Bool(*b),
        (Kind::Int32, _) => match v.as_i64() {
            Some(x) if i32::try_from(x).is_ok() => Cell::Int(x),
            _ => return Err(mismatch()),
        },
        (Kind::Int64, Value::Number(n)) => Cell::Int(n.as_i64().ok_or_else(mismatch)?),
        (Kind::Int64, Value::String(s)) => Cell::Int(s.parse().map_err(|_| mismatch())?),
        (Kind::Float64, Value::Number(n)) => Cell::Float(n.as_f64().ok_or_else(mismatch)?),
        (Kind::Utf8, Value::String(s)) => Cell::Text(s),
        (Kind::Utf8, other) => Cell::Json(other),
        _ => return Err(mismatch()),
    })
}

/// The Arrow builder of one column of a fixed schema. [`fixed_cell`] has made each cell
/// fit the column's kind, so appending cannot fail.
enum CellBuilder {
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
}

impl CellBuilder {
    fn new(kind: Kind, capacity: usize) -> CellBuilder {
        match kind {
            Kind::Boolean => CellBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Int32 => CellBuilder::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => CellBuilder::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float64 => CellBuilder::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Date32 => CellBuilder::Date32(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp => CellBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            // Reserved, not touched: room for ids and codings without regrowing (and
            // copying) the buffer a few times per batch.
            Kind::Utf8 => CellBuilder::Utf8(StringBuilder::with_capacity(capacity, capacity * 48)),
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (CellBuilder::Boolean(b), Cell::Bool(x)) => b.append_value(x),
            (CellBuilder::Int32(b), Cell::Int(x)) => b.append_value(x as i32),
            (CellBuilder::Int64(b), Cell::Int(x)) => b.append_value(x),
            (CellBuilder::Float64(b), Cell::Float(x)) => b.append_value(x),
            (CellBuilder::Date32(b), Cell::Days(x)) => b.append_value(x),
            (CellBuilder::Timestamp(b), Cell::Micros(x)) => b.append_value(x),
            (CellBuilder::Utf8(b), Cell::Text(s)) => b.append_value(s),
            (CellBuilder::Utf8(b), Cell::Json(v)) => b.append_value(v.to_string()),
            (CellBuilder::Boolean(b), _) => b.append_null(),
            (CellBuilder::Int32(b), _) => b.append_null(),
            (CellBuilder::Int64(b), _) => b.append_null(),
            (CellBuilder::Float64(b), _) => b.append_null(),
            (CellBuilder::Date32(b), _) => b.append_null(),
            (CellBuilder::Timestamp(b), _) => b.append_null(),
            (CellBuilder::Utf8(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            CellBuilder::Boolean(mut b) => Arc::new(b.finish()),
            CellBuilder::Int32(mut b) => Arc::new(b.finish()),
            CellBuilder::Int64(mut b) => Arc::new(b.finish()),
            CellBuilder::Float64(mut b) => Arc::new(b.finish()),
            CellBuilder::Date32(mut b) => Arc::new(b.finish()),
            CellBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            CellBuilder::Utf8(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The first instant of a FHIR date or dateTime, of any precision (`2020`, `2020-05`,
/// `2020-05-17`, `2020-05-17T10:30:00+02:00`; a time without a zone is taken as UTC).
fn period_start(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, TimeZone, Utc};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month: u32 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u32 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    let day = NaiveDate::from_ymd_opt(year, month, day)?;
    let midnight = day.and_hms_opt(0, 0, 0)?;
    let at = match time {
        None => midnight,
        Some(t) => {
            let t = t.trim_end_matches('Z');
            let t = chrono::NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M"))
                .ok()?;
            day.and_time(t)
        }
    };
    Some(Utc.from_utc_datetime(&at))
}

fn list_column<'v>(
    col: &ViewColumn,
    values: impl Iterator<Item = &'v Value>,
) -> Result<(Field, ArrayRef), ViewBatchError> {
    let mut lengths = Vec::new();
    let mut valid = Vec::new();
    let mut items: Vec<&Value> = Vec::new();
    for v in values {
        valid.push(!v.is_null());
        match v {
            Value::Array(a) => {
                lengths.push(a.len());
                items.extend(a.iter());
            }
            Value::Null => lengths.push(0),
            other => {
                lengths.push(1);
                items.push(other);
            }
        }
    }
    let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
    let kind = kind_of(col, &items);
    let inner = build(col, kind, &items)?;
    let item_field = Arc::new(Field::new("item", kind.data_type(), true));
    let list = ListArray::try_new(
        item_field.clone(),
        OffsetBuffer::from_lengths(lengths),
        inner,
        nulls,
    )?;
    Ok((
        Field::new(&col.name, DataType::List(item_field), true),
        Arc::new(list),
    ))
}

fn kind_of(col: &ViewColumn, values: &[&Value]) -> Kind {
    let present = || values.iter().filter(|v| !v.is_null());
    match col.fhir_type_code() {
        Some("boolean") => Kind::Boolean,
        Some("integer" | "positiveInt" | "unsignedInt") => Kind::Int32,
        Some("integer64") => Kind::Int64,
        Some("decimal") => Kind::Float64,
        Some("date") => {
            if present().all(|v| v.as_str().and_then(full_date).is_some()) {
                Kind::Date32
            } else {
                Kind::Utf8
            }
        }
        Some("dateTime" | "instant") => {
            if present().all(|v| v.as_str().and_then(full_timestamp).is_some()) {
                Kind::Timestamp
            } else {
                Kind::Utf8
            }
        }
        Some(_) => Kind::Utf8,
        None => {
            if present().next().is_none() {
                Kind::Utf8
            } else if present().all(|v| v.is_boolean()) {
                Kind::Boolean
            } else if present().all(|v| v.is_i64()) {
                Kind::Int64
            } else if present().all(|v| v.is_number()) {
                Kind::Float64
            } else {
                Kind::Utf8
            }
        }
    }
}

/// Days since 1970-01-01 of a full `YYYY-MM-DD` date.
fn full_date(s: &str) -> Option<i32> {
    if s.len() != 10 {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

/// Microseconds since the epoch of a dateTime with a time and a zone.
fn full_timestamp(s: &str) -> Option<i64> {
    Some(
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_micros(),
    )
}

fn build(col: &ViewColumn, kind: Kind, values: &[&Value]) -> Result<ArrayRef, ViewBatchError> {
    let mismatch = |v: &Value| ViewBatchError::Value {
        column: col.name.clone(),
        message: format!(
            "{v} is not a {} value; fix the column's type or its path",
            col.fhir_type_code().unwrap_or("single")
        ),
    };
    Ok(match kind {
        Kind::Boolean => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::Bool(x) => b.append_value(*x),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int32 => {
            let mut b = Int32Builder::with_capacity(values.len());
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    other => b.append_value(
                        other
                            .as_i64()
                            .and_then(|x| i32::try_from(x).ok())
                            .ok_or_else(|| mismatch(other))?,
                    ),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int64 => {
            let mut b = Int64Builder::with_capacity(values.len());
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::String(s) => b.append_value(s.parse().map_err(|_| mismatch(v))?),
                    other => b.append_value(other.as_i64().ok_or_else(|| mismatch(other))?),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Float64 => {
            let mut b = Float64Builder::with_capacity(values.len());
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    other => b.append_value(other.as_f64().ok_or_else(|| mismatch(other))?),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Date32 => {
            let mut b = Date32Builder::with_capacity(values.len());
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    other => b.append_value(
                        other
                            .as_str()
                            .and_then(full_date)
                            .ok_or_else(|| mismatch(other))?,
                    ),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Timestamp => {
            let mut b =
                TimestampMicrosecondBuilder::with_capacity(values.len()).with_timezone("UTC");
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    other => b.append_value(
                        other
                            .as_str()
                            .and_then(full_timestamp)
                            .ok_or_else(|| mismatch(other))?,
                    ),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Utf8 => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 16);
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::String(s) => b.append_value(s),
                    other => b.append_value(other.to_string()),
                }
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Int32Type, TimestampMicrosecondType};
    use serde_json::json;

    use super::*;

    fn view() -> ViewDefinition {
        ViewDefinition::from_json(&json!({
            "resource": "Patient",
            "select": [{"column": [
                {"name": "id", "path": "id", "type": "id"},
                {"name": "active", "path": "active", "type": "boolean"},
                {"name": "born", "path": "birthDate", "type": "date"},
                {"name": "seen", "path": "meta.lastUpdated", "type": "instant"},
                {"name": "n", "path": "multipleBirth.ofType(integer)", "type": "integer"},
                {"name": "given", "path": "name.given", "collection": true},
                {"name": "untyped", "path": "deceased"}
            ]}]
        }))
        .unwrap()
    }

    #[test]
    fn declared_types_choose_arrow_types() {
        let rows = vec![
            vec![
                json!("p1"),
                json!(true),
                json!("1970-01-02"),
                json!("1970-01-01T00:00:01Z"),
                json!(2),
                json!(["A", "B"]),
                json!(false),
            ],
            vec![
                json!("p2"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                json!([]),
                Value::Null,
            ],
        ];
        let batch = rows_to_batch(&view(), &rows).unwrap();
        let types: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(types[0], DataType::Utf8);
        assert_eq!(types[1], DataType::Boolean);
        assert_eq!(types[2], DataType::Date32);
        assert_eq!(
            types[3],
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(types[4], DataType::Int32);
        assert!(matches!(types[5], DataType::List(_)));
        assert_eq!(types[6], DataType::Boolean);
        assert_eq!(batch.column(2).as_primitive::<Date32Type>().value(0), 1);
        assert_eq!(
            batch
                .column(3)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_000_000
        );
        assert_eq!(batch.column(4).as_primitive::<Int32Type>().value(0), 2);
        assert!(batch.column(1).is_null(1));
        let given = batch.column(5).as_list::<i32>();
        assert_eq!(given.value_length(0), 2);
        assert_eq!(given.value_length(1), 0);
        assert!(!given.is_null(1), "an empty collection is an empty list");

        let flat = rows_to_flat_batch(&view(), &rows).unwrap();
        assert_eq!(flat.schema().field(5).data_type(), &DataType::Utf8);
        assert_eq!(flat.column(5).as_string::<i32>().value(0), r#"["A","B"]"#);
    }

    #[test]
    fn a_collection_without_a_value_is_a_null_list() {
        let row = vec![Value::Null; 7];
        let batch = rows_to_batch(&view(), &[row]).unwrap();
        assert!(batch.column(5).is_null(0));
    }

    #[test]
    fn partial_dates_stay_text() {
        let mut row = vec![Value::Null; 7];
        row[2] = json!("1970-06");
        row[3] = json!("2020-01-01");
        let batch = rows_to_batch(&view(), &[row]).unwrap();
        assert_eq!(batch.schema().field(2).data_type(), &DataType::Utf8);
        assert_eq!(batch.schema().field(3).data_type(), &DataType::Utf8);
    }

    #[test]
    fn a_fixed_schema_does_not_depend_on_the_values() {
        let full = vec![
            json!("p1"),
            json!(true),
            json!("1970-01-02"),
            json!("1970-01-01T00:00:01Z"),
            json!(2),
            json!(["A"]),
            json!(false),
        ];
        let mut partial = vec![Value::Null; 7];
        partial[2] = json!("1970-06");
        partial[3] = json!("1970-01-03");
        partial[6] = json!(7);
        let a = rows_to_fixed_batch(&view(), std::slice::from_ref(&full)).unwrap();
        let b = rows_to_fixed_batch(&view(), &[partial.clone()]).unwrap();
        assert_eq!(a.schema(), b.schema());
        assert_eq!(a.schema().as_ref(), &fixed_schema(&view()));
        assert_eq!(b.schema().field(2).data_type(), &DataType::Date32);
        assert_eq!(b.schema().field(6).data_type(), &DataType::Utf8);
        // 1970-06 is stored as its first day, a date in a timestamp column as midnight UTC.
        assert_eq!(b.column(2).as_primitive::<Date32Type>().value(0), 151);
        assert_eq!(
            b.column(3)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            2 * 86_400 * 1_000_000
        );
        assert_eq!(b.column(6).as_string::<i32>().value(0), "7");
        assert!(check_fixed_row(&view(), &full).is_ok());
        let mut bad = full.clone();
        bad[1] = json!("yes");
        let err = check_fixed_row(&view(), &bad).unwrap_err().to_string();
        assert!(err.contains("\"active\""), "{err}");
        bad[1] = json!(true);
        bad[2] = json!("not a date");
        assert!(check_fixed_row(&view(), &bad).is_err());
    }

    #[test]
    fn a_resources_rows_go_into_a_fixed_batch_whole_or_not_at_all() {
        let view = view();
        let row = |id: &str, given: Value| {
            let mut r = vec![Value::Null; 7];
            r[0] = json!(id);
            r[1] = json!(true);
            r[5] = given;
            r
        };
        let mut builder = FixedBatchBuilder::new(&view, 2);
        builder
            .append_rows(&[row("a", json!(["A", "B"])), row("b", Value::Null)])
            .unwrap();
        // The second row does not fit: neither row of this resource goes in.
        let mut bad = row("d", json!("D"));
        bad[1] = json!("yes");
        let err = builder
            .append_rows(&[row("c", json!(["C"])), bad])
            .unwrap_err();
        assert!(err.to_string().contains("\"active\""), "{err}");
        builder.append_null_row();
        builder.append_rows(&[row("e", json!("E"))]).unwrap();
        assert_eq!(builder.len(), 4);
        let batch = builder.finish().unwrap();
        assert_eq!(batch.schema().as_ref(), &fixed_schema(&view));
        let ids = batch.column(0).as_string::<i32>();
        let ids: Vec<Option<&str>> = (0..ids.len())
            .map(|i| ids.is_valid(i).then(|| ids.value(i)))
            .collect();
        assert_eq!(ids, [Some("a"), Some("b"), None, Some("e")]);
        let given = batch.column(5).as_list::<i32>();
        assert_eq!(
            (0..4).map(|i| given.is_valid(i)).collect::<Vec<_>>(),
            [true, false, false, true]
        );
        assert_eq!(given.value_offsets(), &[0, 2, 2, 2, 3]);
        let items = given.values().as_string::<i32>();
        assert_eq!(
            (0..items.len()).map(|i| items.value(i)).collect::<Vec<_>>(),
            ["A", "B", "E"]
        );
        // The same rows one call at a time give the same batch as all at once.
        let rows = [row("a", json!(["A", "B"])), row("b", Value::Null)];
        let mut one_by_one = FixedBatchBuilder::new(&view, 0);
        for r in &rows {
            one_by_one.append_rows(std::slice::from_ref(r)).unwrap();
        }
        assert_eq!(
            one_by_one.finish().unwrap(),
            rows_to_fixed_batch(&view, &rows).unwrap()
        );
    }

    #[test]
    fn a_value_of_another_type_is_an_error() {
        let mut row = vec![Value::Null; 7];
        row[1] = json!("yes");
        let err = rows_to_batch(&view(), &[row]).unwrap_err().to_string();
        assert!(err.contains("\"active\""), "{err}");
    }
}
