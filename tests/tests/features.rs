//! `medlake features` and `POST /features` end to end (issue #10, point 6): the shipped
//! example spec on generated data, written as Parquet and read back, counts checked
//! against medlake's own SQL, the split by patient deterministic per seed, and the
//! server's Arrow stream. The point-in-time rules themselves are tested on planted facts
//! in `query/tests/features.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use medlake_e2e::{Server, http, medlake, medlake_unchecked, sql_json};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

fn example_spec() -> PathBuf {
    medlake_e2e::tests_dir().join("../examples/features/admission_risk.toml")
}

fn generated_lake(root: &Path, patients: u64) -> PathBuf {
    let generated = root.join("gen");
    let lake = root.join("lake");
    let n = patients.to_string();
    medlake(
        &lake,
        &[
            "generate",
            "--patients",
            &n,
            "--seed",
            "11",
            "--out",
            generated.to_str().unwrap(),
            "-q",
        ],
    );
    medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    lake
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A column as text per row (nulls as None), by name, over all batches.
fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", b.schema()));
        let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
        let s = c.as_string::<i32>();
        out.extend((0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i).to_string())));
    }
    out
}

fn split_by_patient(batches: &[RecordBatch]) -> HashMap<String, String> {
    column(batches, "patient_id")
        .into_iter()
        .zip(column(batches, "split"))
        .map(|(p, s)| (p.unwrap(), s.unwrap()))
        .collect()
}

/// `medlake features <spec> -o <out>` on the lake, which must succeed.
fn extract_features(lake: &Path, spec: &Path, out: &Path) -> std::process::Output {
    medlake(
        lake,
        &[
            "features",
            spec.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    )
}

#[test]
fn the_example_spec_writes_parquet_with_sql_checked_counts_and_a_seeded_split() {
    let dir = tempfile::tempdir().unwrap();
    let lake = generated_lake(dir.path(), 40);
    let out = dir.path().join("features.parquet");
    let spec = example_spec();
    let run = extract_features(&lake, &spec, &out);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("rows"), "no summary: {said}");
    let batches = read_parquet(&out);

    // One row per patient of the cohort query, in patient order.
    let cohort = sql_json(
        &lake,
        "SELECT id FROM fhir.patient WHERE json_get_str(resource, 'birthDate') < '2007-01-01' \
         ORDER BY id",
    );
    let expected: Vec<Option<String>> = cohort
        .iter()
        .map(|r| r["id"].as_str().map(String::from))
        .collect();
    assert!(
        expected.len() > 10,
        "too few adults generated: {}",
        expected.len()
    );
    assert_eq!(column(&batches, "patient_id"), expected);

    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for n in [
        "patient_id",
        "index_time",
        "age",
        "gender",
        "obs_hba1c_last_365d",
        "obs_hba1c_count_1095d",
        "obs_bmi_max_1095d",
        "obs_systolic_mean_365d",
        "cond_diabetes",
        "cond_ckd",
        "med_count_365d",
        "enc_count_365d",
        "enc_emer_count_365d",
        "enc_imp_count_365d",
        "label",
        "split",
    ] {
        assert!(names.contains(&n), "no column {n} in {names:?}");
    }

    // Counts against SQL over the current versions (the example reads clinical time):
    // emergency encounters starting in (2024-01-02, 2025-01-01], and in the year after.
    let by_patient = |query: &str| -> HashMap<String, i64> {
        sql_json(&lake, query)
            .into_iter()
            .map(|r| {
                (
                    r["p"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("Patient/")
                        .to_string(),
                    r["n"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let window = |from: &str, to: &str| {
        format!(
            "SELECT json_get_str(resource, 'subject', 'reference') AS p, count(*) AS n \
             FROM fhir.encounter WHERE json_get_str(resource, 'class', 'code') = 'EMER' \
             AND json_get_str(resource, 'status') NOT IN ('entered-in-error', 'cancelled') \
             AND json_get_str(resource, 'period', 'start') > '{from}' \
             AND json_get_str(resource, 'period', 'start') <= '{to}' GROUP BY p"
        )
    };
    let before = by_patient(&window(
        "2024-01-02T00:00:00+00:00",
        "2025-01-01T00:00:00+00:00",
    ));
    let after = by_patient(&window(
        "2025-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    ));
    let ids = column(&batches, "patient_id");
    let emer = column(&batches, "enc_emer_count_365d");
    let labels = column(&batches, "label");
    let mut positives = 0;
    for ((id, n), label) in ids.iter().zip(&emer).zip(&labels) {
        let id = id.as_ref().unwrap();
        let want = before.get(id).copied().unwrap_or(0);
        assert_eq!(
            n.as_deref(),
            Some(want.to_string().as_str()),
            "EMER count of {id}"
        );
        let y = i64::from(after.get(id).copied().unwrap_or(0) > 0);
        assert_eq!(
            label.as_deref(),
            Some(y.to_string().as_str()),
            "label of {id}"
        );
        positives += y;
    }
    println!("{positives} of {} patients have the label", ids.len());

    // The same spec gives the same split; another seed another one.
    let again = dir.path().join("again.parquet");
    extract_features(&lake, &spec, &again);
    let first = split_by_patient(&batches);
    assert_eq!(split_by_patient(&read_parquet(&again)), first);
    assert!(first.values().any(|s| s == "test") && first.values().any(|s| s == "train"));
    let reseeded = dir.path().join("seed8.toml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("seed = 7", "seed = 8");
    assert!(text.contains("seed = 8"));
    std::fs::write(&reseeded, text).unwrap();
    std::fs::copy(
        spec.parent().unwrap().join("snomed_closure.csv"),
        dir.path().join("snomed_closure.csv"),
    )
    .unwrap();
    let other = dir.path().join("seed8.parquet");
    extract_features(&lake, &reseeded, &other);
    let second = split_by_patient(&read_parquet(&other));
    assert_eq!(second.len(), first.len());
    assert_ne!(second, first, "seed 8 split the patients exactly as seed 7");

    // A spec that cannot run says what to fix.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[cohort]\nsql = \"SELECT id FROM fhir.patient\"\nindex_time = \"2025-01-01\"\n",
    )
    .unwrap();
    let failed = medlake_unchecked(
        &lake,
        &["features", bad.to_str().unwrap(), "-o", "x.parquet"],
    );
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("patient_id"), "{err}");
}

#[test]
fn post_features_streams_arrow_for_a_search_cohort_and_refuses_bad_specs() {
    let dir = tempfile::tempdir().unwrap();
    let lake = generated_lake(dir.path(), 30);
    let server = Server::start(&lake, &["--flight-listen", "off"]);
    let agent = http();
    let spec = json!({
        "point_in_time": "clinical",
        "demographics": ["age", "gender"],
        "cohort": {"search": "Patient?gender=female", "index_time": "2025-01-01T00:00:00Z"},
        "observation": [{"loinc": "8480-6", "name": "systolic", "lookbacks": ["730d"], "stats": ["count", "last"]}],
        "condition": [{"name": "diabetes", "snomed": ["73211009"], "descendants": true}],
        "code_sets": {"pairs": [["73211009", "44054006"]]},
        "encounters": {"lookbacks": ["365d"]},
        "label": {"within": "365d", "encounter_class": "EMER"},
        "split": {"seed": 3, "test_fraction": 0.5},
    });
    let mut r = agent
        .post(&server.url("/features"))
        .header("Accept", "application/vnd.apache.arrow.stream")
        .header("Content-Type", "application/json")
        .send(spec.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/vnd.apache.arrow.stream"
    );
    let bytes = r.body_mut().read_to_vec().unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let females = sql_json(
        &lake,
        "SELECT id FROM fhir.patient WHERE json_get_str(resource, 'gender') = 'female' ORDER BY id",
    );
    let expected: Vec<Option<String>> = females
        .iter()
        .map(|r| r["id"].as_str().map(String::from))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(column(&batches, "patient_id"), expected);
    assert!(
        column(&batches, "gender")
            .iter()
            .all(|g| g.as_deref() == Some("female"))
    );
    // Diabetes flags against SQL: a type 2 diagnosis with an onset before the index.
    let diabetic: Vec<String> = sql_json(
        &lake,
        "SELECT DISTINCT json_get_str(resource, 'subject', 'reference') AS p FROM fhir.condition \
         WHERE json_get_str(resource, 'code', 'coding', 0, 'code') = '44054006' \
         AND json_get_str(resource, 'onsetDateTime') <= '2025-01-01T00:00:00+00:00'",
    )
    .into_iter()
    .map(|r| {
        r["p"]
            .as_str()
            .unwrap()
            .trim_start_matches("Patient/")
            .to_string()
    })
    .collect();
    for (id, flag) in column(&batches, "patient_id")
        .iter()
        .zip(column(&batches, "cond_diabetes"))
    {
        let id = id.as_ref().unwrap();
        let want = if diabetic.contains(id) { "1" } else { "0" };
        assert_eq!(flag.as_deref(), Some(want), "diabetes flag of {id}");
    }
    let counts = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("obs_systolic_count_730d")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .sum::<i64>();
    assert!(counts > 0, "no systolic pressures counted at all");

    // JSON too, with the same split.
    let mut r = agent
        .post(&server.url("/features"))
        .send(spec.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows: Vec<Value> = r.body_mut().read_json().unwrap();
    assert_eq!(rows.len(), expected.len());
    let split = split_by_patient(&batches);
    for row in &rows {
        assert_eq!(
            Some(row["split"].as_str().unwrap()),
            split
                .get(row["patient_id"].as_str().unwrap())
                .map(String::as_str)
        );
    }

    // Invalid specs: a 400 OperationOutcome saying what to change.
    let refuse = |body: String, hint: &str| {
        let mut r = agent.post(&server.url("/features")).send(body).unwrap();
        assert_eq!(r.status(), 400, "{hint}");
        let oo: Value = r.body_mut().read_json().unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let text = oo["issue"][0]["diagnostics"].as_str().unwrap().to_string();
        assert!(text.contains(hint), "{text} does not mention {hint}");
    };
    let mut no_window = spec.clone();
    no_window["encounters"]["lookbacks"] = json!(["a year"]);
    refuse(no_window.to_string(), "not a duration");
    let mut file = spec.clone();
    file["code_sets"] = json!({"csv": "/etc/passwd"});
    refuse(file.to_string(), "code_sets.csv");
    refuse(
        "[cohort]\nsearch = \"Patient?gender=female\"\n".into(),
        "index_time",
    );
    let mut strict = spec.clone();
    strict["cohort"]["search"] = json!("Patient?colour=blue");
    refuse(strict.to_string(), "colour");
}
