//! Understanding a DICOM Part 10 file from its header, with no storage.
//!
//! A DICOM instance is stored whole in the lake's blob store and indexed from its header
//! alone: everything before the pixel data. [`DicomInstance::read`] parses a Part 10
//! stream up to the first pixel data element (`(7FE0,0008)` Float Pixel Data, `(7FE0,0009)`
//! Double Float Pixel Data or `(7FE0,0010)` Pixel Data) and stops there, so indexing a
//! multi-gigabyte multi-frame file reads a few kilobytes of it (plus a read-ahead buffer
//! of 8 KiB), and the pixels go to the blob store untouched. Elements after the pixel
//! data (trailing padding, in practice) are not indexed.
//!
//! From the header come two things:
//! - [`InstanceHeader`]: the typed columns of `dicom.instances`: the five attributes an
//!   instance must have (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID,
//!   PatientID), the QIDO-RS matching keys (dates as [`chrono::NaiveDate`], times as
//!   [`TimeOfDay`], numbers as integers, person names as [`PersonName`] with the words
//!   fuzzy matching uses), the transfer syntax and the image geometry. These are what
//!   searches filter and sort on, so they are columns.
//! - [`DicomInstance::to_json`]: the whole header as DICOM JSON (PS3.18 F.2), bulk data
//!   replaced by `BulkDataURI`s ([`BulkData`]). That is what WADO-RS metadata and QIDO-RS
//!   `includefield=all` answer, so it is stored once per instance, as it is, rather than
//!   rebuilt from columns.
//!
//! What is whose: the dicom-rs crates do the DICOM encoding work: dicom-object parses
//! Part 10 (every transfer syntax's data set encoding, implicit/explicit VR, big endian,
//! deflate, character sets) and stops at a tag; dicom-json encodes each element as DICOM
//! JSON. Ours is what those crates leave to the application: which attributes are
//! indexed and how they are typed ([`datetime`] keeps pydicom's leniency for ACR-NEMA
//! dates and times, which dicom-core's partial-precision types do not read), person-name
//! words for fuzzy matching, the bulk-data cut and the corrections to dicom-json's
//! output (see [`json`]), the bound on header size, and the mapping of every failure to
//! a STOW-RS Failure Reason ([`error`]).
//!
//! Limits, checked against pydicom on the files its wheel ships (ingest/tests/dicom_pydicom.rs):
//! - Text in ISO 2022 with multi-byte code extensions (Japanese `ISO 2022 IR 87`/`159`,
//!   Korean `IR 149`, Chinese `IR 58`) keeps its escape sequences: dicom-rs 0.10 does not
//!   decode them. Such names are stored and searchable only as those bytes.
//! - A standard attribute stored with VR UN is typed from its bytes for the index (see
//!   [`header`]), but stays UN (InlineBinary) in the JSON, as PS3.5 6.2.2 allows; pydicom
//!   writes the dictionary VR there.
//! - A truncated file is refused even when only its last element is cut (pydicom reads
//!   what it can); truncation inside the pixel data is not seen, since it is not read.
//! - A file must be Part 10 (preamble, `DICM`, meta group): a bare data set is refused,
//!   as STOW-RS's `application/dicom` requires.
//!
//! ```
//! use medlake_ingest::dicom::{BulkData, DicomError, DicomInstance};
//!
//! // Not DICOM: refused with "cannot understand" (0xC000).
//! let err = DicomInstance::read(&b"plain text, not a DICOM file"[..]).unwrap_err();
//! assert!(matches!(err, DicomError::NotPart10 { .. }));
//! assert_eq!(err.failure_reason(), 0xC000);
//!
//! # fn index(file: std::fs::File) -> Result<(), DicomError> {
//! // A real file: header only, then its JSON with bulk data under a WADO-RS prefix.
//! let instance = DicomInstance::read(std::io::BufReader::new(file))?;
//! let header = instance.header();
//! let json = instance.to_json(&BulkData::new(format!(
//!     "/dicom-web/studies/{}/series/{}/instances/{}/bulkdata",
//!     header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid
//! )));
//! # let _ = json; Ok(()) }
//! ```

pub mod datetime;
pub mod error;
pub mod header;
pub mod json;
pub mod person_name;

use std::io::Read;

use dicom_core::Tag;
use dicom_object::{InMemDicomObject, OpenFileOptions, ReadError, file::ReadPreamble};

pub use datetime::TimeOfDay;
pub use error::{DicomError, check_study};
pub use header::InstanceHeader;
pub use json::BulkData;
pub use person_name::PersonName;

/// The first pixel data tag; parsing stops before it (Float Pixel Data, then Double Float
/// Pixel Data and Pixel Data follow it in tag order).
const FIRST_PIXEL_DATA_TAG: Tag = Tag(0x7FE0, 0x0008);

/// How many header bytes a file may have before its pixel data, by default: far above
/// any real header (a few kB to a few hundred kB, with icons, overlays, waveforms), low
/// enough that a hostile length cannot make the parser hold gigabytes.
pub const DEFAULT_HEADER_LIMIT: u64 = 64 * 1024 * 1024;

/// A DICOM instance understood from its header: the indexed attributes and the data set.
#[derive(Debug, Clone)]
pub struct DicomInstance {
    header: InstanceHeader,
    dataset: InMemDicomObject,
}

impl DicomInstance {
    /// Reads a Part 10 file (preamble, `DICM`, file meta group, data set) up to its pixel
    /// data, and checks the required attributes. Reads at most [`DEFAULT_HEADER_LIMIT`]
    /// bytes. Give it a buffered reader when the source is a file or a socket.
    pub fn read(reader: impl Read) -> Result<DicomInstance, DicomError> {
        DicomInstance::read_limited(reader, DEFAULT_HEADER_LIMIT)
    }

    /// [`read`](Self::read), with another bound on the header size in bytes.
    pub fn read_limited(mut reader: impl Read, limit: u64) -> Result<DicomInstance, DicomError> {
        DicomInstance::read_dyn(&mut reader, limit)
    }

    /// The parse, for any reader behind one type. dicom-parser is generic over its
    /// source, and makes room for a value by zero-filling its claimed length before
    /// reading it; compiled with a caller built without optimisation (a test crate, or
    /// any crate in the dev profile) that loop took 27 s on a malformed file claiming a
    /// 3.7 GB value. Behind `dyn Read` it is compiled once, here.
    fn read_dyn(reader: &mut dyn Read, limit: u64) -> Result<DicomInstance, DicomError> {
        let mut counted = Limited {
            inner: reader,
            read: 0,
            limit,
            io_error: None,
        };
        // The preamble is found here rather than by dicom-object, whose detection looks at
        // one buffer fill only and so misses it when a socket hands out short reads.
        let mut start = [0u8; 132];
        let got = read_full(&mut counted, &mut start);
        if let Some(io) = counted.io_error.take() {
            return Err(DicomError::Io(io));
        }
        let rest = match got {
            132 if &start[128..132] == b"DICM" => &start[128..],
            n if n >= 4 && &start[..4] == b"DICM" => &start[..n],
            _ => {
                return Err(DicomError::NotPart10 {
                    reason: "no 'DICM' after a 128-byte preamble".into(),
                });
            }
        };
        let parsed = OpenFileOptions::new()
            .read_until(FIRST_PIXEL_DATA_TAG)
            .read_preamble(ReadPreamble::Never)
            .from_reader(std::io::Read::chain(rest, &mut counted));
        let file = match parsed {
            Ok(file) => file,
            Err(e) => {
                if counted.read >= limit {
                    return Err(DicomError::HeaderTooLarge { limit });
                }
                if let Some(io) = counted.io_error.take() {
                    return Err(DicomError::Io(io));
                }
                return Err(classify(e));
            }
        };
        let transfer_syntax = file.meta().transfer_syntax().to_string();
        let dataset = file.into_inner();
        let header = InstanceHeader::from_dataset(&dataset, &transfer_syntax)?;
        Ok(DicomInstance { header, dataset })
    }

    /// The indexed attributes.
    pub fn header(&self) -> &InstanceHeader {
        &self.header
    }

    /// The indexed attributes, dropping the data set.
    pub fn into_header(self) -> InstanceHeader {
        self.header
    }

    /// The header as DICOM JSON (PS3.18 F.2): one object keyed by `GGGGEEEE` tags,
    /// without the file meta group (it describes the file, not the instance), bulk data
    /// as `BulkDataURI`s.
    pub fn to_json(&self, bulk: &BulkData) -> serde_json::Value {
        json::to_dicom_json(&self.dataset, bulk)
    }
}

/// Reads until `buf` is full or the source ends; the count read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    filled
}

/// Sorts a dicom-object read error into the reasons a sender can act on.
fn classify(e: ReadError) -> DicomError {
    let reason = error_chain(&e);
    match e {
        ReadError::ReadPreambleBytes { .. } | ReadError::ParseMetaDataSet { .. } => {
            DicomError::NotPart10 { reason }
        }
        ReadError::ReadUnrecognizedTransferSyntax { uid, .. } => {
            DicomError::UnsupportedTransferSyntax { uid }
        }
        ReadError::ReadUnsupportedTransferSyntax { uid, .. }
        | ReadError::ReadUnsupportedTransferSyntaxWithSuggestion { uid, .. } => {
            DicomError::UnsupportedTransferSyntax {
                uid: uid.to_string(),
            }
        }
        _ => DicomError::Unparsable { reason },
    }
}

/// An error and its causes on one line: dicom-rs's top-level messages alone ("Could not
/// read data set token") do not say what was wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Counts what the parser reads, refuses to go past the limit, and keeps the source's
/// own I/O errors apart from the file's (dicom-rs wraps both alike).
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
    io_error: Option<std::io::Error>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read >= self.limit {
            return Err(std::io::Error::other("DICOM header limit reached"));
        }
        let room = usize::try_from(self.limit - self.read).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        match self.inner.read(&mut buf[..len]) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.io_error = Some(e);
                Err(std::io::Error::new(kind, "the source failed"))
            }
        }
    }
}
