//! Byte ranges of a blob, with the meaning HTTP gives them (RFC 9110, section 14.1.2).

use std::fmt;
use std::ops::{Range, RangeFrom};
use std::str::FromStr;

use super::BlobError;

/// The bytes of a blob a read asks for.
///
/// A range is resolved against the blob's size as HTTP does ([`ByteRange::resolve`]): it
/// is unsatisfiable when it starts at or past the end; an end past the end is cut at the
/// end; a suffix longer than the blob is the whole blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end`, the end excluded: `bytes=<start>-<end - 1>`.
    Bounded(Range<u64>),
    /// From an offset to the end: `bytes=<start>-`.
    From(u64),
    /// The last `n` bytes: `bytes=-<n>`.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes this range covers of a blob of `size` bytes, or `None` if it covers none
    /// (an unsatisfiable range, HTTP 416).
    pub fn resolve(&self, size: u64) -> Option<Range<u64>> {
        let range = match self {
            ByteRange::Bounded(r) => r.start..r.end.min(size),
            ByteRange::From(start) => *start..size,
            ByteRange::Suffix(n) => size.saturating_sub(*n)..size,
        };
        (range.start < range.end).then_some(range)
    }

    /// Why a range can never be satisfied, whatever the blob: an empty bounded range.
    pub(crate) fn check(&self) -> Result<(), BlobError> {
        match self {
            ByteRange::Bounded(r) if r.start >= r.end => Err(BlobError::BadRange {
                range: format!("{r:?}"),
                reason: "it is empty: its end must lie after its start".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl From<Range<u64>> for ByteRange {
    fn from(range: Range<u64>) -> Self {
        ByteRange::Bounded(range)
    }
}

impl From<RangeFrom<u64>> for ByteRange {
    fn from(range: RangeFrom<u64>) -> Self {
        ByteRange::From(range.start)
    }
}

/// The HTTP form, `bytes=first-last` with the last byte included.
impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::Bounded(r) if r.start < r.end => {
                write!(f, "bytes={}-{}", r.start, r.end - 1)
            }
            ByteRange::Bounded(r) => write!(f, "{r:?}"),
            ByteRange::From(start) => write!(f, "bytes={start}-"),
            ByteRange::Suffix(n) => write!(f, "bytes=-{n}"),
        }
    }
}

/// Parses the value of an HTTP `Range` header holding one range: `bytes=0-499`,
/// `bytes=500-`, `bytes=-500`. Several ranges in one header are refused: a blob read
/// serves one.
impl FromStr for ByteRange {
    type Err = BlobError;

    fn from_str(header: &str) -> Result<ByteRange, BlobError> {
        let bad = |reason: &str| BlobError::BadRange {
            range: header.to_string(),
            reason: reason.to_string(),
        };
        let spec = header
            .trim()
            .strip_prefix("bytes=")
            .ok_or_else(|| bad("the unit must be bytes"))?
            .trim();
        if spec.contains(',') {
            return Err(bad("only one range can be read at a time"));
        }
        let (first, last) = spec
            .split_once('-')
            .ok_or_else(|| bad("a range is <first>-<last>, <first>- or -<length>"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad("its bounds must be whole numbers of bytes"))
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, true) => Err(bad("it names no byte")),
            (true, false) => Ok(ByteRange::Suffix(number(last)?)),
            (false, true) => Ok(ByteRange::From(number(first)?)),
            (false, false) => {
                let (first, last) = (number(first)?, number(last)?);
                if last < first {
                    return Err(bad("its last byte comes before its first"));
                }
                let end = last
                    .checked_add(1)
                    .ok_or_else(|| bad("its last byte is too large"))?;
                Ok(ByteRange::Bounded(first..end))
            }
        }
    }
}
