//! Generate, ingest and query with the built binary.

use medlake_e2e::{medlake, medlake_unchecked, sql_count, sql_json};
use serde_json::Value;

#[test]
fn sql_counts_equal_the_generator_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    let data = dir.path().join("lake");
    medlake(
        &data,
        &[
            "generate",
            "--patients",
            "12",
            "--seed",
            "5",
            "--out",
            gen_dir.to_str().unwrap(),
            "-q",
        ],
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(gen_dir.join("manifest.json")).unwrap())
            .unwrap();
    let counts = manifest["counts"].as_object().unwrap();
    assert!(
        counts.len() >= 13,
        "the generator writes at least 13 types: {counts:?}"
    );

    let out = medlake(&data, &["ingest", "-q", gen_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 rejected"), "{stdout}");

    let mut total = 0;
    for (resource_type, expected) in counts {
        let expected = expected.as_i64().unwrap();
        let table = resource_type.to_ascii_lowercase();
        let got = sql_count(&data, &format!("SELECT count(*) AS n FROM fhir.{table}"));
        assert_eq!(got, expected, "fhir.{table}");
        let history = sql_count(
            &data,
            &format!("SELECT count(*) AS n FROM fhir_history.{table}"),
        );
        assert_eq!(history, expected, "fhir_history.{table}");
        total += got;
    }
    assert_eq!(total, manifest["total"].as_i64().unwrap());

    // Every Observation's subject resolves to a stored Patient (referential integrity
    // survives the trip), and the JSON functions work on the stored resource.
    let dangling = sql_count(
        &data,
        "SELECT count(*) AS n FROM fhir.observation o \
         LEFT JOIN fhir.patient p ON json_get_str(o.resource, 'subject', 'reference') = 'Patient/' || p.id \
         WHERE p.id IS NULL",
    );
    assert_eq!(dangling, 0);
    let genders = sql_json(
        &data,
        "SELECT json_get_str(resource, 'gender') AS gender, count(*) AS n FROM fhir.patient GROUP BY 1 ORDER BY 1",
    );
    assert!(!genders.is_empty());
    assert_eq!(
        genders
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .sum::<i64>(),
        counts["Patient"].as_i64().unwrap()
    );

    // Stored resources carry server metadata.
    let rows = sql_json(&data, "SELECT resource FROM fhir.patient LIMIT 1");
    let resource: Value = serde_json::from_str(rows[0]["resource"].as_str().unwrap()).unwrap();
    assert_eq!(resource["meta"]["versionId"], "1");
    assert!(
        resource["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[test]
fn a_mixed_file_lands_every_good_line_and_reports_every_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let file = dir.path().join("mixed.ndjson");
    let lines = [
        r#"{"resourceType":"Patient","id":"good-1","gender":"female","birthDate":"1980-02-29"}"#,
        r#"{"resourceType":"Patient","id":"bad-date","birthDate":"1980-02-30"}"#,
        r#"{"resourceType":"Patient","id":"good-2","name":[{"family":"Ng","given":["Ana"]}]}"#,
        r#"this is not json"#,
        r#"{"resourceType":"Observation","id":"bad-missing-status","code":{"text":"x"}}"#,
        r#"{"resourceType":"Observation","id":"good-3","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5,"unit":"mg"}}"#,
        r#"{"resourceType":"Patient","id":"bad-element","favouriteColour":"blue"}"#,
        r#"{"resourceType":"NotAType","id":"x"}"#,
        r#"{"resourceType":"Observation","status":"final","code":{"text":"no id: gets one"}}"#,
        r#"{"resourceType":"Patient","id":"bad id with spaces"}"#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = medlake(&data, &["ingest", "-q", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ingested 4 resources"), "{stdout}");
    assert!(stdout.contains("6 rejected"), "{stdout}");
    for line in [2, 4, 5, 7, 8, 10] {
        assert!(
            stdout.contains(&format!("mixed.ndjson:{line}:")),
            "line {line} is not reported:\n{stdout}"
        );
    }
    assert_eq!(sql_count(&data, "SELECT count(*) FROM fhir.patient"), 2);
    assert_eq!(sql_count(&data, "SELECT count(*) FROM fhir.observation"), 2);
    let ids = sql_json(&data, "SELECT id FROM fhir.patient ORDER BY id");
    assert_eq!(ids[0]["id"], "good-1");
    assert_eq!(ids[1]["id"], "good-2");

    let errors = sql_json(
        &data,
        "SELECT line, code, diagnostics, expression, outcome FROM medlake.ingest_errors ORDER BY line",
    );
    let lines: Vec<i64> = errors.iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4, 5, 7, 8, 10]);
    assert!(
        errors[0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("1980-02-30")
    );
    let outcome: Value = serde_json::from_str(errors[2]["outcome"].as_str().unwrap()).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "required");
    assert!(
        errors[3]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("favouriteColour")
    );
}

#[test]
fn an_update_shows_the_latest_version_and_history_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let v1 = dir.path().join("v1.json");
    let v2 = dir.path().join("v2.ndjson");
    std::fs::write(
        &v1,
        r#"{"resourceType":"Patient","id":"pat-1","gender":"male"}"#,
    )
    .unwrap();
    std::fs::write(
        &v2,
        "{\"resourceType\":\"Patient\",\"id\":\"pat-1\",\"gender\":\"female\"}\n",
    )
    .unwrap();
    medlake(&data, &["ingest", "-q", v1.to_str().unwrap()]);
    medlake(&data, &["ingest", "-q", v2.to_str().unwrap()]);
    let current = sql_json(
        &data,
        "SELECT id, version_id, json_get_str(resource, 'gender') AS g, json_get_str(resource, 'meta', 'versionId') AS v FROM fhir.patient",
    );
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(current[0]["version_id"], 2);
    assert_eq!(current[0]["g"], "female");
    assert_eq!(current[0]["v"], "2");
    let history = sql_json(
        &data,
        "SELECT version_id, json_get_str(resource, 'gender') AS g FROM fhir_history.patient ORDER BY version_id",
    );
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["g"], "male");
    assert_eq!(history[1]["g"], "female");
}

#[test]
fn a_bundle_is_ingested_entry_by_entry_with_references_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let file = dir.path().join("bundle.json");
    let u = "urn:uuid:0b6a5c1e-7f59-4c5e-8f1e-2d7a9b3c4d5e";
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": u, "resource": {"resourceType": "Patient", "gender": "other"},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Condition", "subject": {"reference": u},
                          "code": {"text": "asthma"}, "onsetDateTime": "2020-13-01"},
             "request": {"method": "POST", "url": "Condition"}},
            {"resource": {"resourceType": "Condition", "subject": {"reference": u}, "code": {"text": "flu"}},
             "request": {"method": "POST", "url": "Condition"}}
        ]
    });
    std::fs::write(&file, bundle.to_string()).unwrap();
    let out = medlake(&data, &["ingest", "-q", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bundle.json entry 1:"), "{stdout}");
    let rows = sql_json(
        &data,
        "SELECT json_get_str(resource, 'subject', 'reference') AS r FROM fhir.condition",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["r"], "Patient/0b6a5c1e-7f59-4c5e-8f1e-2d7a9b3c4d5e");
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) FROM fhir.patient WHERE id = '0b6a5c1e-7f59-4c5e-8f1e-2d7a9b3c4d5e'"
        ),
        1
    );
}

#[test]
fn sql_is_read_only_and_reports_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    for q in [
        "CREATE TABLE t (a INT)",
        "DROP TABLE fhir.patient",
        "INSERT INTO fhir.patient VALUES ('x')",
        "DELETE FROM fhir.patient",
    ] {
        let out = medlake_unchecked(&data, &["sql", q]);
        assert!(!out.status.success(), "{q} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{q}: {err}");
    }
    let out = medlake_unchecked(&data, &["sql", "SELECT nope FROM fhir.patient"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn sql_writes_csv_json_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let f = dir.path().join("p.ndjson");
    std::fs::write(
        &f,
        "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n",
    )
    .unwrap();
    medlake(&data, &["ingest", "-q", f.to_str().unwrap()]);
    let q = "SELECT id FROM fhir.patient ORDER BY id";
    let csv = medlake(&data, &["sql", "--format", "csv", q]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout), "id\na\nb\n");
    let table = medlake(&data, &["sql", q]);
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.contains("| id |") && t.contains("(2 rows)"), "{t}");
    let pq = dir.path().join("out.parquet");
    medlake(
        &data,
        &["sql", "--format", "parquet", "-o", pq.to_str().unwrap(), q],
    );
    let bytes = std::fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
}

/// Parquet data files directly in a table folder.
fn parquet_files(table_dir: &std::path::Path) -> usize {
    std::fs::read_dir(table_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count()
}

#[test]
fn optimize_compacts_small_files_and_vacuums_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    // Four separate ingests: four commits, four small files per table.
    for i in 0..4 {
        let file = dir.path().join(format!("batch{i}.ndjson"));
        let lines: Vec<String> = (0..25)
            .map(|j| {
                format!(
                    r#"{{"resourceType":"Patient","id":"p{i}-{j}","gender":"female","birthDate":"19{:02}-01-01"}}"#,
                    50 + j
                )
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        medlake(&data, &["ingest", "-q", file.to_str().unwrap()]);
    }
    let table_dir = data.join("default/fhir/patient");
    assert_eq!(parquet_files(&table_dir), 4);
    let before = sql_json(
        &data,
        "SELECT id, version_id, resource FROM fhir_history.patient ORDER BY id",
    );
    assert_eq!(before.len(), 100);

    let out = medlake(&data, &["optimize", "--retention-hours", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Patient") && l.contains("compacted 4 files into 1")),
        "{stdout}"
    );

    // One compacted file is left: the four small ones were vacuumed.
    assert_eq!(parquet_files(&table_dir), 1, "{stdout}");
    let after = sql_json(
        &data,
        "SELECT id, version_id, resource FROM fhir_history.patient ORDER BY id",
    );
    assert_eq!(before, after);
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM fhir.patient"),
        100
    );
}

#[test]
fn a_folder_of_gzipped_ndjson_and_single_resources_is_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let ndjson = input.join("patients.ndjson");
    std::fs::write(
        &ndjson,
        "{\"resourceType\":\"Patient\",\"id\":\"gz-1\"}\n{\"resourceType\":\"Patient\",\"id\":\"gz-2\"}\n",
    )
    .unwrap();
    let status = std::process::Command::new("gzip")
        .arg(&ndjson)
        .status()
        .expect("gzip runs");
    assert!(status.success());
    assert!(input.join("patients.ndjson.gz").exists());
    std::fs::write(
        input.join("one.json"),
        r#"{"resourceType": "Observation", "id": "single-1", "status": "final", "code": {"text": "x"}}"#,
    )
    .unwrap();
    let out = medlake(&data, &["ingest", "-q", input.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ingested 3 resources from 2 files"),
        "{stdout}"
    );
    let ids = sql_json(&data, "SELECT id FROM fhir.patient ORDER BY id");
    assert_eq!(
        ids,
        vec![
            serde_json::json!({"id": "gz-1"}),
            serde_json::json!({"id": "gz-2"})
        ]
    );
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) FROM fhir.observation WHERE id = 'single-1'"
        ),
        1
    );
}
