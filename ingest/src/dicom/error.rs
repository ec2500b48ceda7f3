//! Why a DICOM file was not understood, and the STOW-RS Failure Reason each answer maps to.
//!
//! The codes follow PS3.18 Table I.2-2 (Store Instances Response Failure Reason Values):
//! `Cxxx` "cannot understand", `A9xx` "Data Set does not match SOP Class", `C122`
//! "Referenced Transfer Syntax not supported", `A7xx` "out of resources", `0110`
//! "processing failure". The standard leaves a missing required attribute open; we answer
//! it with `0xA900` like the Microsoft DICOM service (which answers 43264, "the DICOM
//! instance failed validation", for a missing StudyInstanceUID, SeriesInstanceUID or
//! SOPInstanceUID): the file was understood, the data set is what is wrong, and the sender
//! can act on it. `0xC000` is kept for bytes we could not read as DICOM at all.

use dicom_core::Tag;

/// STOW-RS Failure Reason `0xC000` (49152): the instance cannot be understood.
pub const FAILURE_CANNOT_UNDERSTAND: u16 = 0xC000;
/// STOW-RS Failure Reason `0xA900` (43264): the data set does not match its SOP Class
/// (a required attribute is missing, or the study is not the one of the request URL).
pub const FAILURE_DATA_SET_MISMATCH: u16 = 0xA900;
/// STOW-RS Failure Reason `0xC122` (49442): the transfer syntax is not supported.
pub const FAILURE_TRANSFER_SYNTAX: u16 = 0xC122;
/// STOW-RS Failure Reason `0xA700` (42752): out of resources (here: a header too large).
pub const FAILURE_OUT_OF_RESOURCES: u16 = 0xA700;
/// STOW-RS Failure Reason `0x0110` (272): a general processing failure (reading the
/// upload failed, not the file).
pub const FAILURE_PROCESSING: u16 = 0x0110;
/// Not a failure of understanding: the instance is already stored (`0xB00E`, 45070, the
/// code the Microsoft DICOM service uses). Decided by the lake, given here so that every
/// STOW code lives in one place.
pub const FAILURE_DUPLICATE: u16 = 0xB00E;

/// Why a DICOM Part 10 file could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// The bytes do not start like a Part 10 file, or its file meta group is broken.
    #[error(
        "not a DICOM Part 10 file ({reason}): send the whole file, with its 128-byte preamble, \
         'DICM' and the file meta group (a bare data set or another format is not accepted)"
    )]
    NotPart10 { reason: String },

    /// The file meta group names a transfer syntax this build cannot read.
    #[error(
        "transfer syntax {uid} is not supported for reading the header: \
         send the file in Explicit VR Little Endian (1.2.840.10008.1.2.1) or another standard transfer syntax"
    )]
    UnsupportedTransferSyntax { uid: String },

    /// The data set before the pixel data is malformed.
    #[error(
        "the DICOM data set cannot be parsed ({reason}): the file is damaged or truncated; \
         check it with a DICOM validator (e.g. dciodvfy) and send it again"
    )]
    Unparsable { reason: String },

    /// The header (everything before the pixel data) is larger than the reader allows.
    #[error(
        "the DICOM header is larger than {limit} bytes before the pixel data: \
         such files are refused to bound memory; remove large private or overlay elements"
    )]
    HeaderTooLarge { limit: u64 },

    /// The source of the bytes failed (not the file's fault).
    #[error("reading the DICOM file failed: {0}; retry the upload")]
    Io(#[source] std::io::Error),

    /// One of the attributes every stored instance needs is absent or empty.
    #[error(
        "required attribute {keyword} {tag} is missing or empty: \
         every stored instance needs StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID and PatientID"
    )]
    MissingAttribute { keyword: &'static str, tag: TagText },

    /// The instance's StudyInstanceUID is not the one of the request URL.
    #[error(
        "the instance belongs to study {instance}, not to study {requested} of the request: \
         send it to /studies/{instance} or to /studies"
    )]
    StudyMismatch { requested: String, instance: String },
}

impl DicomError {
    /// The STOW-RS Failure Reason (0008,1197) that answers this error.
    pub fn failure_reason(&self) -> u16 {
        match self {
            DicomError::NotPart10 { .. } | DicomError::Unparsable { .. } => {
                FAILURE_CANNOT_UNDERSTAND
            }
            DicomError::UnsupportedTransferSyntax { .. } => FAILURE_TRANSFER_SYNTAX,
            DicomError::HeaderTooLarge { .. } => FAILURE_OUT_OF_RESOURCES,
            DicomError::Io(_) => FAILURE_PROCESSING,
            DicomError::MissingAttribute { .. } | DicomError::StudyMismatch { .. } => {
                FAILURE_DATA_SET_MISMATCH
            }
        }
    }
}

/// A tag shown as `(GGGG,EEEE)` in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagText(pub Tag);

impl std::fmt::Display for TagText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({:04X},{:04X})", self.0.group(), self.0.element())
    }
}

/// Checks that an instance belongs to the study named in a STOW-RS URL
/// (`POST /studies/{study}`); answers [`DicomError::StudyMismatch`] (`0xA900`) otherwise.
pub fn check_study(requested: &str, instance_study_uid: &str) -> Result<(), DicomError> {
    if requested.trim() == instance_study_uid {
        Ok(())
    } else {
        Err(DicomError::StudyMismatch {
            requested: requested.trim().to_string(),
            instance: instance_study_uid.to_string(),
        })
    }
}
