//! Reading a DICOM file stops at its pixel data, and each failure has its reason and code.
//! The files are made here with dicom-object, so no pydicom is needed.

use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use medlake_ingest::dicom::{BulkData, DicomError, DicomInstance, check_study};

/// Counts the bytes a reader hands out.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A Part 10 file (Explicit VR Little Endian) up to, not including, its pixel data:
/// the required attributes (PatientID unless `without`), and `extra` elements.
fn header(without: Option<Tag>, extra: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let attributes = [
        (tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        (
            tags::SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.1125.9.1",
        ),
        (tags::PATIENT_ID, VR::LO, "P-42"),
        (tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        (tags::STUDY_DATE, VR::DA, "20261202"),
        (
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.1125.9",
        ),
        (
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.1125.9.0",
        ),
        (tags::NUMBER_OF_FRAMES, VR::IS, "2000"),
    ];
    for (tag, vr, value) in attributes {
        if Some(tag) != without {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        }
    }
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(1024_u16),
    ));
    for e in extra {
        obj.put(e);
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .expect("meta");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("write");
    bytes
}

/// The header followed by a Pixel Data element of `pixels` bytes (never materialised).
fn file_with_pixels(header: Vec<u8>, pixels: u32) -> impl Read {
    let mut element = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    element.extend_from_slice(&pixels.to_le_bytes());
    Cursor::new(header)
        .chain(Cursor::new(element))
        .chain(std::io::repeat(0x55).take(u64::from(pixels)))
}

fn private_blob(len: usize) -> Vec<DataElement<InMemDicomObject>> {
    vec![
        DataElement::new(
            Tag(0x0009, 0x0010),
            VR::LO,
            PrimitiveValue::from("MEDLAKE TEST"),
        ),
        DataElement::new(
            Tag(0x0009, 0x1000),
            VR::OB,
            PrimitiveValue::from(vec![7_u8; len]),
        ),
    ]
}

#[test]
fn header_parse_stops_before_four_gigabytes_of_pixel_data() {
    let head = header(None, vec![]);
    let head_len = head.len() as u64;
    let read = Rc::new(Cell::new(0));
    let source = Counting {
        inner: file_with_pixels(head, 0xFFFF_FFF0),
        read: read.clone(),
    };
    let instance = DicomInstance::read(source).expect("parses");
    let h = instance.header();
    assert_eq!(h.patient_id, "P-42");
    assert_eq!(h.number_of_frames, Some(2000));
    assert_eq!(h.rows, Some(1024));
    assert_eq!(h.study_date, chrono::NaiveDate::from_ymd_opt(2026, 12, 2));
    assert_eq!(h.patient_name.as_ref().unwrap().words, ["doe", "jane"]);
    assert_eq!(h.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    // The header, the pixel data element's header and one read-ahead buffer at most.
    assert!(
        read.get() <= head_len + 12 + 8192,
        "read {} bytes of a {head_len}-byte header and 4 GB of pixels",
        read.get()
    );
    let json = instance.to_json(&BulkData::new("/bulk"));
    assert!(json.get("7FE00010").is_none());
    assert_eq!(json["00100020"]["Value"][0], "P-42");
    assert_eq!(json["00280008"]["Value"][0], 2000, "IS is a JSON number");
}

#[test]
fn large_binary_values_become_bulk_data_uris() {
    let head = header(None, private_blob(2000));
    let instance = DicomInstance::read(file_with_pixels(head, 16)).expect("parses");
    let json = instance.to_json(&BulkData::new("https://h/dicom-web/studies/1/bulkdata/"));
    assert_eq!(json["00091000"]["vr"], "OB");
    assert_eq!(
        json["00091000"]["BulkDataURI"],
        "https://h/dicom-web/studies/1/bulkdata/00091000"
    );
    assert!(json["00091000"].get("InlineBinary").is_none());
    let json = instance.to_json(&BulkData::new("/b").threshold(4096));
    assert_eq!(
        json["00091000"]["InlineBinary"].as_str().unwrap().len(),
        2000_usize.div_ceil(3) * 4
    );
}

#[test]
fn a_header_past_the_limit_is_refused_without_reading_on() {
    let head = header(None, private_blob(1_000_000));
    let read = Rc::new(Cell::new(0));
    let source = Counting {
        inner: file_with_pixels(head, 16),
        read: read.clone(),
    };
    let err = DicomInstance::read_limited(source, 100_000).unwrap_err();
    assert!(
        matches!(err, DicomError::HeaderTooLarge { limit: 100_000 }),
        "{err}"
    );
    assert_eq!(err.failure_reason(), 0xA700);
    assert!(read.get() <= 100_000);
}

#[test]
fn a_missing_required_attribute_is_named() {
    let head = header(Some(tags::PATIENT_ID), vec![]);
    let err = DicomInstance::read(file_with_pixels(head, 16)).unwrap_err();
    assert!(
        matches!(
            err,
            DicomError::MissingAttribute {
                keyword: "PatientID",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(0010,0020)"), "{err}");
    assert_eq!(err.failure_reason(), 0xA900);
}

#[test]
fn a_truncated_header_cannot_be_understood() {
    let mut head = header(None, vec![]);
    // Into the middle of the last element (Rows: 8 bytes of header, 2 of value).
    head.truncate(head.len() - 5);
    let err = DicomInstance::read(Cursor::new(head)).unwrap_err();
    assert!(matches!(err, DicomError::Unparsable { .. }), "{err}");
    assert_eq!(err.failure_reason(), 0xC000);
}

#[test]
fn a_failing_source_is_not_blamed_on_the_file() {
    struct Broken(Cursor<Vec<u8>>);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.position() > 200 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "peer reset",
                ));
            }
            let n = buf.len().min(64);
            self.0.read(&mut buf[..n])
        }
    }
    let err = DicomInstance::read(Broken(Cursor::new(header(None, vec![])))).unwrap_err();
    assert!(
        matches!(&err, DicomError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{err}"
    );
    assert_eq!(err.failure_reason(), 0x0110);
}

#[test]
fn the_study_of_the_url_must_be_the_instance_s() {
    assert!(check_study("1.2.3", "1.2.3").is_ok());
    let err = check_study("1.2.3", "1.2.4").unwrap_err();
    assert_eq!(err.failure_reason(), 0xA900);
    assert!(err.to_string().contains("/studies/1.2.4"), "{err}");
}
