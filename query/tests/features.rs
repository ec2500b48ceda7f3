//! Point-in-time feature extraction leaks nothing recorded after the index time (issue
//! #10, point 6).
//!
//! The lake gets facts in two writes with the index time between them. The second write
//! plants every kind of late fact: an Observation with a back-dated clinical date, a
//! correction of an earlier Observation's value, a delete, a back-dated Condition,
//! Encounter and MedicationRequest, a changed birth date and gender. The first write has
//! facts whose clinical time is after the index. The expected features are computed
//! here from the list of planted facts, by the rules of the module doc, and compared
//! with what the extraction gives, under both `point_in_time` modes (the clinical mode
//! must see the late facts: otherwise the test would not show the guard does anything).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use futures::StreamExt;
use medlake_lake::{Lake, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use medlake_query::features::{FeatureSpec, Files, PointInTime, extract};
use serde_json::{Map, Value, json};

const HBA1C: &str = "4548-4";
const DIABETES: &str = "44054006";
const CKD: &str = "431855005";

fn put(resource: Value) -> WriteOp {
    let Value::Object(m) = resource else {
        unreachable!()
    };
    let m: Map<String, Value> = m;
    WriteOp::Put {
        resource_type: m["resourceType"].as_str().unwrap().into(),
        id: Some(m["id"].as_str().unwrap().into()),
        resource: m,
        if_match: None,
    }
}

/// When a fact is written: before or after the index time.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Written {
    Before,
    After,
}

/// One planted HbA1c Observation: clinical day relative to the index, value, when it
/// was written, and what happens to it after the index (a corrected value, a delete).
struct Obs {
    id: &'static str,
    patient: &'static str,
    day: i64,
    value: f64,
    written: Written,
    corrected_after: Option<f64>,
    deleted_after: bool,
    deleted_before: bool,
}

fn at(index: DateTime<Utc>, day: i64) -> String {
    (index + chrono::Duration::days(day)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn observation(o: &Obs, value: f64, index: DateTime<Utc>) -> WriteOp {
    put(json!({
        "resourceType": "Observation", "id": o.id, "status": "final",
        "code": {"coding": [{"system": "http://example.org/local", "code": "x"},
                            {"system": "http://loinc.org", "code": HBA1C}]},
        "subject": {"reference": format!("Patient/{}", o.patient)},
        "effectiveDateTime": at(index, o.day),
        "valueQuantity": {"value": value, "unit": "%"},
    }))
}

fn condition(id: &str, patient: &str, code: &str, day: i64, index: DateTime<Utc>) -> WriteOp {
    put(json!({
        "resourceType": "Condition", "id": id,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "onsetDateTime": at(index, day),
    }))
}

fn encounter(id: &str, patient: &str, class: &str, day: i64, index: DateTime<Utc>) -> WriteOp {
    put(json!({
        "resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": at(index, day)},
    }))
}

fn medication(id: &str, patient: &str, day: i64, index: DateTime<Utc>) -> WriteOp {
    put(json!({
        "resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": at(index, day),
    }))
}

fn patient(id: &str, birth: &str, gender: &str) -> WriteOp {
    put(json!({"resourceType": "Patient", "id": id, "birthDate": birth, "gender": gender}))
}

/// The planted Observations. p1 has every case; p2 only a late one.
fn observations() -> Vec<Obs> {
    let o = |id, patient, day, value, written| Obs {
        id,
        patient,
        day,
        value,
        written,
        corrected_after: None,
        deleted_after: false,
        deleted_before: false,
    };
    vec![
        o("o-a", "p1", -20, 6.0, Written::Before),
        Obs {
            corrected_after: Some(9.5),
            ..o("o-b", "p1", -10, 7.0, Written::Before)
        },
        o("o-c", "p1", -400, 5.0, Written::Before),
        // Recorded before the index, but its clinical time is after it.
        o("o-d", "p1", 5, 8.0, Written::Before),
        Obs {
            deleted_after: true,
            ..o("o-g", "p1", -5, 4.0, Written::Before)
        },
        Obs {
            deleted_before: true,
            ..o("o-h", "p1", -6, 3.0, Written::Before)
        },
        // Back-dated: entered after the index with a clinical time before it.
        o("o-e", "p1", -3, 100.0, Written::After),
        o("o-f", "p2", -3, 12.0, Written::After),
    ]
}

/// What an HbA1c feature should be for `patient` over `days`, by the module doc's rules.
fn expected_hba1c(
    patient: &str,
    days: i64,
    mode: PointInTime,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64) {
    let mut seen: Vec<(i64, f64)> = Vec::new();
    for o in observations() {
        if o.patient != patient || o.deleted_before {
            continue;
        }
        let (value, exists) = match mode {
            PointInTime::Recorded => (o.value, o.written == Written::Before),
            PointInTime::Clinical => (o.corrected_after.unwrap_or(o.value), !o.deleted_after),
        };
        if exists && o.day <= 0 && o.day > -days {
            seen.push((o.day, value));
        }
    }
    seen.sort_by_key(|(d, _)| *d);
    let values: Vec<f64> = seen.iter().map(|(_, v)| *v).collect();
    let n = values.len() as i64;
    if n == 0 {
        return (None, None, None, None, 0);
    }
    (
        values.last().copied(),
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
        Some(values.iter().sum::<f64>() / n as f64),
        n,
    )
}

/// The rows of the answer by patient, each column as JSON.
fn by_patient(batches: &[RecordBatch]) -> HashMap<String, HashMap<String, Value>> {
    let mut out = HashMap::new();
    for b in batches {
        let schema = b.schema();
        for row in 0..b.num_rows() {
            let mut cols = HashMap::new();
            for (i, f) in schema.fields().iter().enumerate() {
                let c = b.column(i);
                let v = if c.is_null(row) {
                    Value::Null
                } else {
                    match c.data_type() {
                        DataType::Float64 => json!(c.as_primitive::<Float64Type>().value(row)),
                        DataType::Int64 => json!(c.as_primitive::<Int64Type>().value(row)),
                        DataType::Timestamp(_, _) => json!("time"),
                        _ => {
                            let s = cast(c, &DataType::Utf8).unwrap();
                            json!(s.as_string::<i32>().value(row))
                        }
                    }
                };
                cols.insert(f.name().clone(), v);
            }
            out.insert(cols["patient_id"].as_str().unwrap().to_string(), cols);
        }
    }
    out
}

fn spec(index: DateTime<Utc>, mode: &str) -> FeatureSpec {
    let index = index.to_rfc3339_opts(SecondsFormat::Millis, true);
    FeatureSpec::parse(&format!(
        r#"
point_in_time = "{mode}"
demographics = ["age", "gender"]

[cohort]
sql = "SELECT id AS patient_id FROM fhir.patient"
index_time = "{index}"

[[observation]]
loinc = "{HBA1C}"
name = "hba1c"
lookbacks = ["365d", "730d"]

[[condition]]
name = "diabetes"
snomed = ["73211009"]
descendants = true

[[condition]]
name = "ckd"
snomed = ["{CKD}"]

[code_sets]
pairs = [["73211009", "{DIABETES}"]]

[medications]
lookbacks = ["365d"]

[encounters]
lookbacks = ["365d"]
classes = ["EMER"]

[label]
within = "30d"
condition = {{ snomed = ["73211009"], descendants = true }}
"#
    ))
    .unwrap()
}

async fn run(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &FeatureSpec,
) -> HashMap<String, HashMap<String, Value>> {
    let mut stream = extract(engine, lake, spec, Files::Refused)
        .await
        .unwrap_or_else(|e| panic!("extraction failed: {e}"));
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b.unwrap());
    }
    by_patient(&batches)
}

fn close(got: &Value, want: Option<f64>, what: &str) {
    match want {
        None => assert!(got.is_null(), "{what}: expected null, got {got}"),
        Some(w) => {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: expected {w}, got {got}"));
            assert!((g - w).abs() < 1e-9, "{what}: expected {w}, got {g}");
        }
    }
}

/// Delete an Observation in a write of its own: a version recorded now.
async fn delete_observation(lake: &Lake, id: &str) {
    lake.write(vec![WriteOp::Delete {
        resource_type: "Observation".into(),
        id: id.into(),
        if_match: None,
    }])
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fact_recorded_after_the_index_time_reaches_a_feature() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    // Clinical times are relative to the index time, which is only known after the
    // first write; they are set from a provisional one a few seconds ahead, and the
    // true index time (between the writes) is within a minute of it, far inside a day.
    let index = Utc::now();
    let plan = observations();

    let mut before = vec![
        patient("p1", "1980-06-15", "female"),
        patient("p2", "1950-01-01", "male"),
        patient("p3", "2001-01-01", "female"),
        condition("c-dm", "p1", DIABETES, -100, index),
        // p2's diagnosis is recorded ahead of its onset (after the index): no flag, but
        // the label.
        condition("c-dm2", "p2", DIABETES, 10, index),
        encounter("e-1", "p1", "EMER", -30, index),
        encounter("e-2", "p1", "AMB", -60, index),
        medication("m-1", "p1", -50, index),
    ];
    for o in plan.iter().filter(|o| o.written == Written::Before) {
        before.push(observation(o, o.value, index));
    }
    lake.write(before).await.unwrap();
    for o in plan.iter().filter(|o| o.deleted_before) {
        delete_observation(&lake, o.id).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;

    let mut after = vec![
        // A later correction of the patient: the features keep the version of the index.
        patient("p1", "1990-06-15", "other"),
        // Back-dated records.
        condition("c-ckd", "p1", CKD, -200, index),
        encounter("e-3", "p1", "EMER", -2, index),
        medication("m-2", "p1", -1, index),
        // The outcome, recorded late: labels see data as known now.
        condition("c-dm3", "p1", DIABETES, 20, index),
    ];
    for o in &plan {
        if o.written == Written::After {
            after.push(observation(o, o.value, index));
        }
        if let Some(v) = o.corrected_after {
            after.push(observation(o, v, index));
        }
    }
    lake.write(after).await.unwrap();
    for o in plan.iter().filter(|o| o.deleted_after) {
        delete_observation(&lake, o.id).await;
    }
    // Half of it in Delta, half in the tail: the extraction reads both.
    lake.flush().await.unwrap();
    lake.write(vec![encounter("e-4", "p2", "EMER", -1, index)])
        .await
        .unwrap();

    let engine = QueryEngine::new(lake.clone()).unwrap();
    // The index time is `cut`; clinical days were counted from `index`, a few ms earlier.
    for (mode_name, mode) in [
        ("recorded", PointInTime::Recorded),
        ("clinical", PointInTime::Clinical),
    ] {
        let rows = run(&engine, &lake, &spec(cut, mode_name)).await;
        assert_eq!(rows.len(), 3, "{mode_name}: one row per patient");
        for p in ["p1", "p2"] {
            let row = &rows[p];
            for days in [365, 730] {
                let (last, min, max, mean, count) = expected_hba1c(p, days, mode);
                let what = |s: &str| format!("{mode_name} {p} obs_hba1c_{s}_{days}d");
                close(
                    &row[&format!("obs_hba1c_last_{days}d")],
                    last,
                    &what("last"),
                );
                close(&row[&format!("obs_hba1c_min_{days}d")], min, &what("min"));
                close(&row[&format!("obs_hba1c_max_{days}d")], max, &what("max"));
                close(
                    &row[&format!("obs_hba1c_mean_{days}d")],
                    mean,
                    &what("mean"),
                );
                assert_eq!(
                    row[&format!("obs_hba1c_count_{days}d")],
                    json!(count),
                    "{}",
                    what("count")
                );
            }
        }
        let p1 = &rows["p1"];
        let p2 = &rows["p2"];
        let recorded = mode == PointInTime::Recorded;
        // Demographics: the Patient version of the index time, or the current one.
        let age_now = cut.format("%Y").to_string().parse::<i64>().unwrap();
        let birth_year = if recorded { 1980 } else { 1990 };
        let had_birthday = cut.format("%m-%d").to_string().as_str() >= "06-15";
        let age = age_now - birth_year - if had_birthday { 0 } else { 1 };
        assert_eq!(p1["age"], json!(age), "{mode_name}: age");
        assert_eq!(
            p1["gender"],
            json!(if recorded { "female" } else { "other" })
        );
        // Condition flags: the descendant counts; a back-dated CKD only without the guard;
        // an onset after the index never.
        assert_eq!(p1["cond_diabetes"], json!(1), "{mode_name}");
        assert_eq!(
            p1["cond_ckd"],
            json!(if recorded { 0 } else { 1 }),
            "{mode_name}"
        );
        assert_eq!(
            p2["cond_diabetes"],
            json!(0),
            "{mode_name}: onset after the index"
        );
        // Counts over 365 days.
        assert_eq!(
            p1["med_count_365d"],
            json!(if recorded { 1 } else { 2 }),
            "{mode_name}"
        );
        assert_eq!(
            p1["enc_count_365d"],
            json!(if recorded { 2 } else { 3 }),
            "{mode_name}"
        );
        assert_eq!(
            p1["enc_emer_count_365d"],
            json!(if recorded { 1 } else { 2 }),
            "{mode_name}"
        );
        assert_eq!(
            p2["enc_count_365d"],
            json!(if recorded { 0 } else { 1 }),
            "{mode_name}"
        );
        // Labels read what is known now, forward from the index, in both modes.
        assert_eq!(
            p1["label"],
            json!(1),
            "{mode_name}: p1's late-recorded diagnosis"
        );
        assert_eq!(
            p2["label"],
            json!(1),
            "{mode_name}: p2's diagnosis 10 days on"
        );
        assert_eq!(rows["p3"]["label"], json!(0), "{mode_name}: no outcome");
        assert_eq!(rows["p3"]["obs_hba1c_count_365d"], json!(0), "{mode_name}");
        assert!(rows["p3"]["obs_hba1c_last_365d"].is_null(), "{mode_name}");
        for p in [p1, p2] {
            assert!(p["split"] == json!("train") || p["split"] == json!("test"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_query_without_patient_id_is_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    lake.write(vec![patient("p1", "1980-01-01", "female")])
        .await
        .unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let spec = FeatureSpec::parse(
        "[cohort]\nsql = \"SELECT id FROM fhir.patient\"\nindex_time = \"2024-01-01\"\n",
    )
    .unwrap();
    let e = match extract(&engine, &lake, &spec, Files::Refused).await {
        Ok(_) => panic!("a cohort without patient_id ran"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("patient_id") && e.contains("returns id"), "{e}");
    let spec = FeatureSpec::parse(
        "[cohort]\nsql = \"DELETE FROM fhir.patient\"\nindex_time = \"2024-01-01\"\n",
    )
    .unwrap();
    let e = match extract(&engine, &lake, &spec, Files::Refused).await {
        Ok(_) => panic!("a write ran as a cohort"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("read-only"), "{e}");
}
