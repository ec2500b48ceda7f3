//! A query's batches cut into Flight messages, each sending only the bytes of its rows.
//!
//! gRPC clients cap a message (4 MiB is common), so a batch must be cut into pieces, and
//! arrow-flight's encoder can do that: it slices a batch into pieces of about its
//! `max_flight_data_size`. But a slice of a `Utf8View` / `BinaryView` column keeps every
//! data buffer of the whole column, and arrow-ipc writes a view column's data buffers
//! whole (it slices the views, not the buffers they point into). So each of a batch's
//! pieces carried all of its strings: on `fhir_history.observation` with `resource` (7 MB
//! batches, cut into four or five 2 MB pieces) a million rows went out as 4.5 GB for
//! 0.9 GB of JSON, and a client received five copies of every string. SQL sees every
//! string column of the lake as a view (DataFusion's and delta-rs's Parquet reading), so
//! this is every wide answer.
//!
//! Here each batch is cut before the encoder sees it, by the bytes its rows take (a long
//! JSON document weighs what it is, not the batch's average), and each piece's view
//! columns are compacted (`gc`: the strings its rows use, copied into one buffer) when
//! their buffers hold more than a quarter beyond what the piece uses. The encoder is then told not to cut
//! again. No crate does this: arrow-rs leaves compaction to the caller (its writer's
//! comment says so), and arrow-flight's split estimates a slice's size from its whole
//! buffers.
//!
//! A row larger than the message size is sent as one message of its own; whether the
//! client accepts it is the client's limit. View columns nested in lists or structs are
//! not compacted (none of medlake's tables has one): they go out correct, but with their
//! whole buffers in each piece.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{ByteViewType, DataType};
use arrow::error::ArrowError;

/// The message size medlake aims at: arrow-flight's default, half of the 4 MiB a gRPC
/// client accepts by default, as the encoding adds a little.
pub const MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// A view column's buffers may hold this much more than its rows use before they are
/// compacted: Parquet's pages keep a length before each value, and compacting costs a
/// copy of every long string.
const SLACK_PERCENT: usize = 25;

/// `batch` as the batches of its messages: in order, each of about `max_bytes` or one row,
/// with its view columns holding at most a quarter ([`SLACK_PERCENT`]) beyond what its rows
/// use.
pub fn cut(batch: RecordBatch, max_bytes: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(vec![batch]);
    }
    let sizes = RowSizes::of(&batch);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < rows {
        let mut end = start + 1;
        let mut bytes = sizes.row(start);
        while end < rows && bytes + sizes.row(end) <= max_bytes {
            bytes += sizes.row(end);
            end += 1;
        }
        let piece = if start == 0 && end == rows {
            batch.clone()
        } else {
            batch.slice(start, end - start)
        };
        pieces.push(compact_views(piece)?);
        start = end;
    }
    Ok(pieces)
}

/// What each row of a batch adds to a message: the variable-length columns row by row,
/// the others spread evenly.
struct RowSizes {
    fixed: usize,
    /// Per row, the bytes of its variable-length values; empty if the batch has none.
    variable: Vec<usize>,
}

impl RowSizes {
    fn of(batch: &RecordBatch) -> Self {
        let rows = batch.num_rows();
        let mut fixed_total = 0;
        let mut variable: Vec<usize> = Vec::new();
        let mut add = |per_row: &mut dyn Iterator<Item = usize>| {
            if variable.is_empty() {
                variable = vec![0; rows];
            }
            for (total, n) in variable.iter_mut().zip(per_row) {
                *total += n;
            }
        };
        for column in batch.columns() {
            match column.data_type() {
                DataType::Utf8View => add(&mut view_sizes(column.as_string_view())),
                DataType::BinaryView => add(&mut view_sizes(column.as_binary_view())),
                DataType::Utf8 => add(&mut offset_sizes(column.as_string::<i32>().offsets())),
                DataType::Binary => add(&mut offset_sizes(column.as_binary::<i32>().offsets())),
                DataType::LargeUtf8 => add(&mut offset_sizes(column.as_string::<i64>().offsets())),
                DataType::LargeBinary => {
                    add(&mut offset_sizes(column.as_binary::<i64>().offsets()))
                }
                _ => fixed_total += slice_bytes(column),
            }
        }
        RowSizes {
            fixed: fixed_total.div_ceil(rows.max(1)),
            variable,
        }
    }

    fn row(&self, i: usize) -> usize {
        self.fixed + self.variable.get(i).copied().unwrap_or(0)
    }
}

/// Per row, a view (16 bytes) and the bytes of a value too long to sit in it.
fn view_sizes<T: ByteViewType + ?Sized>(
    a: &arrow::array::GenericByteViewArray<T>,
) -> impl Iterator<Item = usize> + '_ {
    a.views().iter().map(|v| {
        let len = *v as u32 as usize;
        16 + if len > arrow::array::MAX_INLINE_VIEW_LEN as usize {
            len
        } else {
            0
        }
    })
}

/// Per row, an offset and the value's bytes.
fn offset_sizes<O: arrow::array::OffsetSizeTrait>(
    offsets: &arrow::buffer::OffsetBuffer<O>,
) -> impl Iterator<Item = usize> + '_ {
    offsets
        .windows(2)
        .map(|w| O::get_byte_width() + (w[1] - w[0]).as_usize())
}

/// The bytes of a column's rows as the IPC writer sends them, as well as Arrow can tell
/// for a slice; its whole buffers where it cannot (types nested around views).
fn slice_bytes(column: &ArrayRef) -> usize {
    column
        .to_data()
        .get_slice_memory_size()
        .unwrap_or_else(|_| column.get_buffer_memory_size())
}

/// `piece` with each view column compacted if its buffers hold much more than it uses.
fn compact_views(piece: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let wasteful = |c: &ArrayRef| match c.data_type() {
        DataType::Utf8View => wastes(c.as_string_view()),
        DataType::BinaryView => wastes(c.as_binary_view()),
        _ => false,
    };
    if !piece.columns().iter().any(wasteful) {
        return Ok(piece);
    }
    let columns = piece
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            if !wasteful(c) {
                return c.clone();
            }
            match c.data_type() {
                DataType::Utf8View => Arc::new(c.as_string_view().gc()),
                _ => Arc::new(c.as_binary_view().gc()),
            }
        })
        .collect();
    RecordBatch::try_new(piece.schema(), columns)
}

/// Whether a view array's data buffers hold more than [`SLACK_PERCENT`] beyond what its
/// rows use.
fn wastes<T: ByteViewType + ?Sized>(a: &arrow::array::GenericByteViewArray<T>) -> bool {
    let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
    let used = a.total_buffer_bytes_used();
    held > used + used * SLACK_PERCENT / 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    /// `rows` rows: a number and a string of `len(i)` bytes.
    fn batch(rows: usize, len: impl Fn(usize) -> usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("text", DataType::Utf8View, false),
        ]));
        let n = Int64Array::from_iter_values(0..rows as i64);
        let text = StringViewArray::from_iter_values(
            (0..rows).map(|i| format!("{i:08}").repeat(len(i) / 8 + 1)[..len(i)].to_string()),
        );
        RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(text)]).unwrap()
    }

    /// The bytes of each piece's string buffers.
    fn held(piece: &RecordBatch) -> usize {
        piece
            .column(1)
            .as_string_view()
            .data_buffers()
            .iter()
            .map(|b| b.len())
            .sum()
    }

    #[test]
    fn pieces_keep_the_rows_in_order_and_hold_only_their_strings() {
        let b = batch(1000, |i| 100 + i % 900);
        let total = held(&b);
        let pieces = cut(b.clone(), 64 * 1024).unwrap();
        assert!(pieces.len() > 5, "{} pieces", pieces.len());
        let again = arrow::compute::concat_batches(&b.schema(), &pieces).unwrap();
        assert_eq!(again, b);
        // Each piece's string bytes are its own: together, the batch's once.
        let sent: usize = pieces.iter().map(held).sum();
        assert_eq!(sent, total);
        for p in &pieces {
            let rows = RowSizes::of(p);
            let bytes: usize = (0..p.num_rows()).map(|i| rows.row(i)).sum();
            assert!(bytes <= 64 * 1024, "a piece of {bytes} bytes");
        }
    }

    #[test]
    fn a_row_larger_than_a_message_goes_alone() {
        let b = batch(50, |i| if i == 20 { 300_000 } else { 1000 });
        let pieces = cut(b.clone(), 100_000).unwrap();
        let rows: Vec<usize> = pieces.iter().map(|p| p.num_rows()).collect();
        assert_eq!(rows.iter().sum::<usize>(), 50);
        let big = pieces
            .iter()
            .find(|p| held(p) >= 300_000)
            .expect("a piece holds the large row");
        assert_eq!(big.num_rows(), 1, "pieces by rows: {rows:?}");
        assert_eq!(
            arrow::compute::concat_batches(&b.schema(), &pieces).unwrap(),
            b
        );
    }

    #[test]
    fn a_small_compact_batch_is_sent_as_it_is() {
        let b = batch(100, |_| 40);
        let pieces = cut(b.clone(), MESSAGE_BYTES).unwrap();
        assert_eq!(pieces.len(), 1);
        let (before, after) = (
            b.column(1).as_string_view().data_buffers()[0].as_ptr(),
            pieces[0].column(1).as_string_view().data_buffers()[0].as_ptr(),
        );
        assert_eq!(before, after, "the strings were copied");
    }

    #[test]
    fn a_slice_of_a_larger_batch_is_compacted() {
        // As a LIMIT leaves the last batch: a few rows over the whole batch's strings.
        let b = batch(1000, |_| 500).slice(0, 10);
        let pieces = cut(b, MESSAGE_BYTES).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(held(&pieces[0]), 10 * 500);
    }
}
