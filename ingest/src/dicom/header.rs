//! The attributes an instance is indexed and searched by, as typed values.
//!
//! One row of `dicom.instances` gets these as columns: the identifiers every instance
//! must have, the QIDO-RS matching keys of PS3.18 Table 10.6.1-5 at study, series and
//! instance level, and the image geometry a viewer asks for before fetching frames.
//! Everything else of the header is only in the instance's DICOM JSON. ModalitiesInStudy
//! is a study-level aggregate of [`InstanceHeader::modality`]: the lake computes it.

use chrono::NaiveDate;
use dicom_core::dictionary::{DataDictionary, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::datetime::{TimeOfDay, parse_date, parse_time};
use super::error::{DicomError, TagText};
use super::person_name::PersonName;

/// The indexed attributes of one DICOM instance, read from its header.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceHeader {
    /// StudyInstanceUID (0020,000D).
    pub study_instance_uid: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_instance_uid: String,
    /// SOPInstanceUID (0008,0018).
    pub sop_instance_uid: String,
    /// SOPClassUID (0008,0016).
    pub sop_class_uid: String,
    /// PatientID (0010,0020).
    pub patient_id: String,
    /// TransferSyntaxUID (0002,0010) of the file meta group: how the file is encoded.
    pub transfer_syntax_uid: String,

    /// PatientName (0010,0010).
    pub patient_name: Option<PersonName>,
    /// PatientBirthDate (0010,0030).
    pub patient_birth_date: Option<NaiveDate>,
    /// AccessionNumber (0008,0050).
    pub accession_number: Option<String>,
    /// ReferringPhysicianName (0008,0090).
    pub referring_physician_name: Option<PersonName>,
    /// StudyDate (0008,0020).
    pub study_date: Option<NaiveDate>,
    /// StudyTime (0008,0030).
    pub study_time: Option<TimeOfDay>,
    /// StudyDescription (0008,1030).
    pub study_description: Option<String>,
    /// StudyID (0020,0010).
    pub study_id: Option<String>,
    /// Modality (0008,0060).
    pub modality: Option<String>,
    /// SeriesNumber (0020,0011).
    pub series_number: Option<i64>,
    /// SeriesDescription (0008,103E).
    pub series_description: Option<String>,
    /// PerformedProcedureStepStartDate (0040,0244).
    pub performed_procedure_step_start_date: Option<NaiveDate>,
    /// ManufacturerModelName (0008,1090).
    pub manufacturer_model_name: Option<String>,
    /// InstanceNumber (0020,0013).
    pub instance_number: Option<i64>,

    /// NumberOfFrames (0028,0008).
    pub number_of_frames: Option<i64>,
    /// Rows (0028,0010).
    pub rows: Option<u32>,
    /// Columns (0028,0011).
    pub columns: Option<u32>,
    /// BitsAllocated (0028,0100).
    pub bits_allocated: Option<u32>,
    /// SamplesPerPixel (0028,0002).
    pub samples_per_pixel: Option<u32>,
    /// PhotometricInterpretation (0028,0004).
    pub photometric_interpretation: Option<String>,

    /// Keywords of attributes that are present but whose value could not be typed (a
    /// date that is not a date, say). Their columns are `None`; the text is still in the
    /// DICOM JSON. The caller may answer them as a STOW warning.
    pub unreadable: Vec<&'static str>,
}

/// The five attributes without which an instance is refused, in the order checked.
pub const REQUIRED: [(&str, Tag); 5] = [
    ("StudyInstanceUID", tags::STUDY_INSTANCE_UID),
    ("SeriesInstanceUID", tags::SERIES_INSTANCE_UID),
    ("SOPInstanceUID", tags::SOP_INSTANCE_UID),
    ("SOPClassUID", tags::SOP_CLASS_UID),
    ("PatientID", tags::PATIENT_ID),
];

impl InstanceHeader {
    /// Reads the indexed attributes of a parsed data set.
    pub(crate) fn from_dataset(
        obj: &InMemDicomObject,
        transfer_syntax_uid: &str,
    ) -> Result<InstanceHeader, DicomError> {
        let required = |(keyword, tag): (&'static str, Tag)| {
            text(obj, tag).ok_or(DicomError::MissingAttribute {
                keyword,
                tag: TagText(tag),
            })
        };
        let [study, series, sop, class, patient] = REQUIRED;
        let (study, series, sop, class, patient) = (
            required(study)?,
            required(series)?,
            required(sop)?,
            required(class)?,
            required(patient)?,
        );

        let mut r = Reader {
            obj,
            unreadable: Vec::new(),
        };
        Ok(InstanceHeader {
            study_instance_uid: study,
            series_instance_uid: series,
            sop_instance_uid: sop,
            sop_class_uid: class,
            patient_id: patient,
            transfer_syntax_uid: transfer_syntax_uid.to_string(),
            patient_name: r.name(tags::PATIENT_NAME),
            patient_birth_date: r.date("PatientBirthDate", tags::PATIENT_BIRTH_DATE),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            referring_physician_name: r.name(tags::REFERRING_PHYSICIAN_NAME),
            study_date: r.date("StudyDate", tags::STUDY_DATE),
            study_time: r.time("StudyTime", tags::STUDY_TIME),
            study_description: text(obj, tags::STUDY_DESCRIPTION),
            study_id: text(obj, tags::STUDY_ID),
            modality: text(obj, tags::MODALITY),
            series_number: r.integer("SeriesNumber", tags::SERIES_NUMBER),
            series_description: text(obj, tags::SERIES_DESCRIPTION),
            performed_procedure_step_start_date: r.date(
                "PerformedProcedureStepStartDate",
                tags::PERFORMED_PROCEDURE_STEP_START_DATE,
            ),
            manufacturer_model_name: text(obj, tags::MANUFACTURER_MODEL_NAME),
            instance_number: r.integer("InstanceNumber", tags::INSTANCE_NUMBER),
            number_of_frames: r.integer("NumberOfFrames", tags::NUMBER_OF_FRAMES),
            rows: r.unsigned("Rows", tags::ROWS),
            columns: r.unsigned("Columns", tags::COLUMNS),
            bits_allocated: r.unsigned("BitsAllocated", tags::BITS_ALLOCATED),
            samples_per_pixel: r.unsigned("SamplesPerPixel", tags::SAMPLES_PER_PIXEL),
            photometric_interpretation: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
            unreadable: r.unreadable,
        })
    }
}

/// The first value of an attribute as text, padding removed; `None` when absent or empty.
///
/// A standard attribute stored with VR UN (some writers do, for every element) is read
/// as its dictionary VR would be: the text VRs' bytes as text, US as a little-endian
/// 16-bit number (the index's US attributes, Rows and the like). dicom-rs keeps such an
/// element as bytes; pydicom converts it likewise.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.get(tag)?;
    let first = if element.vr() == VR::UN {
        let bytes = element.value().to_bytes().ok()?;
        match dicom_dictionary_std::StandardDataDictionary
            .by_tag(tag)
            .map(|e| e.vr)
        {
            Some(VirtualVr::Exact(VR::US)) => match bytes.as_ref() {
                [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]).to_string(),
                _ => return None,
            },
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                text.split('\\').next()?.to_string()
            }
        }
    } else {
        element.value().to_multi_str().ok()?.first()?.clone()
    };
    let first = first.trim_matches([' ', '\0']);
    (!first.is_empty()).then(|| first.to_string())
}

/// Typed reads that remember which present attributes did not parse.
struct Reader<'a> {
    obj: &'a InMemDicomObject,
    unreadable: Vec<&'static str>,
}

impl Reader<'_> {
    fn typed<T>(
        &mut self,
        keyword: &'static str,
        tag: Tag,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = text(self.obj, tag)?;
        let typed = parse(&value);
        if typed.is_none() {
            self.unreadable.push(keyword);
        }
        typed
    }

    fn name(&self, tag: Tag) -> Option<PersonName> {
        // Any text is a name; an all-`^` one is empty, not unreadable.
        PersonName::parse(&text(self.obj, tag)?)
    }

    fn date(&mut self, keyword: &'static str, tag: Tag) -> Option<NaiveDate> {
        self.typed(keyword, tag, parse_date)
    }

    fn time(&mut self, keyword: &'static str, tag: Tag) -> Option<TimeOfDay> {
        self.typed(keyword, tag, parse_time)
    }

    fn integer(&mut self, keyword: &'static str, tag: Tag) -> Option<i64> {
        // IS is text; a binary integer (a private or UN-coerced element) reads the same way.
        self.typed(keyword, tag, |v| v.trim().parse().ok())
    }

    fn unsigned(&mut self, keyword: &'static str, tag: Tag) -> Option<u32> {
        // US is binary; `to_multi_str` renders it as decimal text.
        self.typed(keyword, tag, |v| v.trim().parse().ok())
    }
}
