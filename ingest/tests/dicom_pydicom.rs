//! medlake's DICOM reading checked against pydicom's, on the files pydicom ships.
//!
//! `tests/python/dicom_dump.py` (run with tests/.venv's python, which the test command
//! fills from tests/python/requirements.txt) lists pydicom's test and character-set files
//! and prints what pydicom reads from each. These tests read the same files and compare.
//! Without tests/.venv or pydicom they say so loudly and pass, except under CI (`CI` set),
//! where that is a failure.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::OnceLock;

use medlake_ingest::dicom::{BulkData, DicomError, DicomInstance};
use serde_json::Value;

const REQUIRED: [&str; 5] = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "PatientID",
];

#[path = "support/pydicom_dump.rs"]
mod pydicom_dump;

/// pydicom's reading of its files, read once; `None` when pydicom is absent.
fn pydicom() -> Option<&'static Value> {
    static DUMP: OnceLock<Option<Value>> = OnceLock::new();
    DUMP.get_or_init(pydicom_dump::pydicom_dump).as_ref()
}

fn files() -> Vec<&'static Value> {
    pydicom()
        .map(|d| d["files"].as_array().expect("files").iter().collect())
        .unwrap_or_default()
}

fn name(file: &Value) -> String {
    let path = file["path"].as_str().unwrap();
    path.rsplit_once("/data/")
        .map_or(path, |(_, p)| p)
        .to_string()
}

fn read(file: &Value) -> Result<DicomInstance, DicomError> {
    let f = File::open(file["path"].as_str().unwrap()).expect("pydicom's file opens");
    DicomInstance::read(BufReader::new(f))
}

/// Files in Japanese or Korean with ISO 2022 code extensions (escape sequences switching
/// to a multi-byte set): dicom-rs 0.10 leaves the escape sequences in the text.
fn iso_2022_multibyte(file: &Value) -> bool {
    let charset = file["charset"].as_str().unwrap_or_default();
    [
        "ISO 2022 IR 87",
        "ISO 2022 IR 159",
        "ISO 2022 IR 149",
        "ISO 2022 IR 58",
    ]
    .iter()
    .any(|c| charset.contains(c))
}

fn pydicom_has_required(file: &Value) -> bool {
    file["readable"] == true && REQUIRED.iter().all(|k| file["values"][k].is_string())
}

#[test]
fn every_pydicom_file_parses_or_fails_with_a_reason() {
    let files = files();
    if files.is_empty() {
        return;
    }
    let mut parsed = 0;
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        match read(file) {
            Ok(instance) => {
                parsed += 1;
                let h = instance.header();
                let ours = [
                    &h.study_instance_uid,
                    &h.series_instance_uid,
                    &h.sop_instance_uid,
                    &h.sop_class_uid,
                    &h.patient_id,
                ];
                for (k, v) in REQUIRED.iter().zip(ours) {
                    assert!(!v.is_empty(), "{}: {k} is empty", name(file));
                    if file["readable"] == true && file["values"][k] != v.as_str() {
                        wrong.push(format!(
                            "{}: {k} {v:?} but pydicom {}",
                            name(file),
                            file["values"][k]
                        ));
                    }
                }
                if file["readable"] == true
                    && file["transfer_syntax"] != h.transfer_syntax_uid.as_str()
                {
                    wrong.push(format!(
                        "{}: transfer syntax {} but pydicom {}",
                        name(file),
                        h.transfer_syntax_uid,
                        file["transfer_syntax"]
                    ));
                }
            }
            Err(e) => {
                let kind = format!("{:#06X} {}", e.failure_reason(), variant(&e));
                failures
                    .entry(kind)
                    .or_default()
                    .push(format!("{}: {e}", name(file)));
                // pydicom reads what it can of a truncated file; a store must refuse it.
                let truncated = matches!(&e, DicomError::Unparsable { reason } if reason.contains("failed to fill whole buffer"));
                if pydicom_has_required(file) && !truncated {
                    wrong.push(format!(
                        "{}: pydicom reads it with the five required attributes, we fail: {e}",
                        name(file)
                    ));
                }
            }
        }
    }
    println!(
        "{} pydicom files: {parsed} parse, {} fail",
        files.len(),
        files.len() - parsed
    );
    for (kind, names) in &failures {
        println!("  {kind}: {}", names.len());
        for n in names {
            println!("    {n}");
        }
    }
    assert!(
        wrong.is_empty(),
        "disagreements with pydicom:\n{}",
        wrong.join("\n")
    );
    assert!(
        parsed > 0 && !failures.is_empty(),
        "expected both outcomes among pydicom's files"
    );
}

fn variant(e: &DicomError) -> &'static str {
    match e {
        DicomError::NotPart10 { .. } => "NotPart10",
        DicomError::UnsupportedTransferSyntax { .. } => "UnsupportedTransferSyntax",
        DicomError::Unparsable { .. } => "Unparsable",
        DicomError::HeaderTooLarge { .. } => "HeaderTooLarge",
        DicomError::Io(_) => "Io",
        DicomError::MissingAttribute { .. } => "MissingAttribute",
        DicomError::StudyMismatch { .. } => "StudyMismatch",
    }
}

#[test]
fn typed_values_agree_with_pydicom() {
    let mut compared = 0;
    let mut wrong = Vec::new();
    let mut known = Vec::new();
    for file in files() {
        let Ok(instance) = read(file) else { continue };
        if file["readable"] != true {
            continue;
        }
        compared += 1;
        let h = instance.header();
        let p = &file["values"];
        let unreadable = |k: &str| h.unreadable.contains(&k);
        let mut check = |k: &str, ours: Value| {
            // pydicom "unreadable" = it could not type the value; ours is then None and listed.
            let theirs = &p[k];
            let agree = if theirs == "unreadable" {
                ours.is_null() && unreadable(k)
            } else {
                *theirs == ours
            };
            if !agree {
                let line = format!("{}: {k}: ours {ours}, pydicom {theirs}", name(file));
                if iso_2022_multibyte(file) {
                    known.push(line);
                } else {
                    wrong.push(line);
                }
            }
        };
        let text = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::from);
        check("AccessionNumber", text(&h.accession_number));
        check("StudyDescription", text(&h.study_description));
        check("StudyID", text(&h.study_id));
        check("Modality", text(&h.modality));
        check("SeriesDescription", text(&h.series_description));
        check("ManufacturerModelName", text(&h.manufacturer_model_name));
        check(
            "PhotometricInterpretation",
            text(&h.photometric_interpretation),
        );
        let date =
            |d: Option<chrono::NaiveDate>| d.map_or(Value::Null, |d| Value::from(d.to_string()));
        check("PatientBirthDate", date(h.patient_birth_date));
        check("StudyDate", date(h.study_date));
        check(
            "PerformedProcedureStepStartDate",
            date(h.performed_procedure_step_start_date),
        );
        check(
            "StudyTime",
            h.study_time.as_ref().map_or(Value::Null, |t| {
                // Python's isoformat: microseconds only when not zero.
                let fmt = if t.time.format("%6f").to_string() == "000000" {
                    "%H:%M:%S"
                } else {
                    "%H:%M:%S%.6f"
                };
                Value::from(t.time.format(fmt).to_string())
            }),
        );
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::from);
        let uint = |v: Option<u32>| v.map_or(Value::Null, Value::from);
        check("SeriesNumber", int(h.series_number));
        check("InstanceNumber", int(h.instance_number));
        check("NumberOfFrames", int(h.number_of_frames));
        check("Rows", uint(h.rows));
        check("Columns", uint(h.columns));
        check("BitsAllocated", uint(h.bits_allocated));
        check("SamplesPerPixel", uint(h.samples_per_pixel));
        let pn = |n: &Option<medlake_ingest::dicom::PersonName>| {
            n.as_ref().map_or(
                Value::Null,
                |n| serde_json::json!({"text": n.text, "words": n.words}),
            )
        };
        check("PatientName", pn(&h.patient_name));
        check("ReferringPhysicianName", pn(&h.referring_physician_name));
    }
    if pydicom().is_none() {
        return;
    }
    println!(
        "typed values compared on {compared} files, {} disagreements",
        wrong.len()
    );
    println!("known (dicom-rs 0.10 does not decode ISO 2022 multi-byte code extensions):");
    for k in &known {
        println!("  {k}");
    }
    assert!(compared > 100, "only {compared} files compared");
    assert!(
        wrong.is_empty(),
        "disagreements with pydicom:\n{}",
        wrong.join("\n")
    );
}

/// Our JSON made comparable with pydicom's: bulk URIs and pydicom's bulk marker become
/// one marker, numbers compare as floats, pixel data and what follows it (which we do not
/// read) is left out.
fn comparable(json: &Value, top: bool) -> Value {
    match json {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !top || k.as_str() < "7FE00008")
                .map(|(k, v)| match k.as_str() {
                    "BulkDataURI" => ("BulkDataURI".to_string(), Value::from("BULK")),
                    _ => (k.clone(), comparable(v, false)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| comparable(v, false)).collect()),
        Value::Number(n) => n.as_f64().map_or(json.clone(), |f| serde_json::json!(f)),
        // pydicom keeps padding and writes "" for an empty value among several; F.2.5
        // and PS3.5 6.2 make both insignificant.
        Value::String(s) if s.trim_matches(' ').is_empty() => Value::Null,
        Value::String(s) => Value::from(s.trim_matches(' ')),
        other => other.clone(),
    }
}

/// A DICOM JSON object without its bulk data elements (dicom-json's parser keeps no URI).
fn without_bulk(json: &Value) -> Value {
    match json {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| v.get("BulkDataURI").is_none())
                .map(|(k, v)| (k.clone(), without_bulk(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_bulk).collect()),
        other => other.clone(),
    }
}

/// Tags whose elements differ between two DICOM JSON objects, with both sides.
fn differences(ours: &Value, theirs: &Value, other: &str) -> Vec<String> {
    let (Some(o), Some(t)) = (ours.as_object(), theirs.as_object()) else {
        return vec!["not objects".into()];
    };
    let mut out = Vec::new();
    for k in o.keys().chain(t.keys().filter(|k| !o.contains_key(*k))) {
        // dicom-rs keeps VR UN where pydicom substitutes the (private) dictionary's VR:
        // both are valid DICOM JSON; PS3.5 6.2.2 lets UN stand.
        let un = |v: Option<&Value>| v.and_then(|v| v.get("vr")) == Some(&Value::from("UN"));
        if un(o.get(k)) && !un(t.get(k)) {
            continue;
        }
        if let (Some(Value::Object(a)), Some(Value::Object(b))) = (o.get(k), t.get(k))
            && a.get("vr") == Some(&Value::from("SQ"))
            && b.get("vr") == a.get("vr")
        {
            // Sequences compare item by item, so a difference names its element.
            let items = |m: &serde_json::Map<String, Value>| {
                m.get("Value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (ia, ib) = (items(a), items(b));
            if ia.len() == ib.len() {
                for (n, (x, y)) in ia.iter().zip(&ib).enumerate() {
                    out.extend(
                        differences(x, y, other)
                            .into_iter()
                            .map(|d| format!("{k}/{}/{d}", n + 1)),
                    );
                }
                continue;
            }
        }
        if o.get(k) != t.get(k) {
            let show = |v: Option<&Value>| {
                let s = v.map_or("absent".to_string(), Value::to_string);
                s.chars().take(160).collect::<String>()
            };
            out.push(format!(
                "{k}: ours {} / {other} {}",
                show(o.get(k)),
                show(t.get(k))
            ));
        }
    }
    out
}

/// Files covering sequences, private tags, waveforms, encapsulated pixel data, big
/// endian, multi-frame, overlays, empty values and character sets: our JSON equals pydicom's on them.
const JSON_FILES: [&str; 10] = [
    "test_files/CT_small.dcm",
    "test_files/MR_small.dcm",
    "test_files/rtplan.dcm",
    "test_files/waveform_ecg.dcm",
    "test_files/JPEG2000.dcm",
    "test_files/MR_small_bigendian.dcm",
    "test_files/rtdose.dcm",
    "test_files/examples_overlay.dcm",
    "test_files/examples_ybr_color.dcm",
    "charset_files/chrX1.dcm",
];

#[test]
fn dicom_json_round_trips_and_equals_pydicom() {
    let bulk = BulkData::new("http://medlake/bulk");
    let mut checked = 0;
    let mut round_trips = 0;
    let mut wrong = Vec::new();
    let mut elsewhere: Vec<String> = Vec::new();
    for file in files() {
        let Ok(instance) = read(file) else { continue };
        let ours = instance.to_json(&bulk);

        // Round trip through dicom-json's parser and back.
        let parsed: dicom_object::InMemDicomObject = dicom_json::from_value(ours.clone())
            .unwrap_or_else(|e| {
                panic!("{}: dicom-json cannot read our JSON back: {e}", name(file))
            });
        let again = medlake_ingest::dicom::json::to_dicom_json(&parsed, &bulk);
        let round_trip = differences(
            &comparable(&without_bulk(&ours), true),
            &comparable(&again, true),
            "read back",
        );
        round_trips += 1;
        for d in round_trip {
            wrong.push(format!(
                "{}: round trip through dicom-json: {d}",
                name(file)
            ));
        }

        let Some(theirs) = file.get("json") else {
            continue;
        };
        let diff = differences(
            &comparable(&ours, true),
            &comparable(theirs, true),
            "pydicom",
        );
        if JSON_FILES.contains(&name(file).as_str()) {
            checked += 1;
            for d in diff {
                wrong.push(format!("{}: {d}", name(file)));
            }
        } else {
            for d in diff {
                // Two known causes elsewhere: ISO 2022 multi-byte text (dicom-rs leaves
                // the escapes), and pydicom's bulk threshold, which it applies to the
                // base64 length rather than to the value's bytes.
                let line = format!("{}: {d}", name(file));
                if iso_2022_multibyte(file) || d.contains("\"BulkDataURI\"") {
                    elsewhere.push(line);
                } else {
                    wrong.push(line);
                }
            }
        }
    }
    if pydicom().is_none() {
        return;
    }
    println!(
        "{round_trips} files read back from their DICOM JSON; {checked} compared with pydicom"
    );
    println!(
        "known differences from pydicom's to_json_dict on other files ({}):",
        elsewhere.len()
    );
    for d in &elsewhere {
        println!("  {d}");
    }
    let missing: Vec<_> = JSON_FILES
        .iter()
        .filter(|f| {
            !files()
                .iter()
                .any(|file| name(file) == **f && read(file).is_ok())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "listed files that do not parse: {missing:?}"
    );
    assert_eq!(checked, JSON_FILES.len());
    assert!(
        wrong.is_empty(),
        "DICOM JSON differs from pydicom:\n{}",
        wrong.join("\n")
    );
}
