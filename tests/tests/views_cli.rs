//! `medlake views run`: a ViewDefinition over an NDJSON file, as JSON and as CSV, and the
//! answers for a bad view and for a run without `--input`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn views_run(dir: &Path, args: &[&str]) -> Output {
    Command::new(medlake_e2e::medlake_bin())
        .current_dir(dir)
        .args(["views", "run"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn views_run_prints_the_rows_of_a_view_over_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let resources = [
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1974-12-25", "active": true,
               "name": [{"family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Windsor"}]}),
        json!({"resourceType": "Patient", "id": "p2", "birthDate": "1980-06"}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}),
    ];
    let ndjson: String = resources.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.path().join("data.ndjson"), ndjson).unwrap();
    let view = json!({
        "resourceType": "ViewDefinition",
        "name": "patient_names",
        "resource": "Patient",
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "born", "path": "birthDate", "type": "date"},
                {"name": "active", "path": "active", "type": "boolean"},
                {"name": "families", "path": "name.family", "type": "string", "collection": true}
            ]},
            {"forEachOrNull": "name", "column": [
                {"name": "family", "path": "family", "type": "string"},
                {"name": "given", "path": "given.join(' ')", "type": "string"}
            ]}
        ]
    });
    std::fs::write(dir.path().join("view.json"), view.to_string()).unwrap();

    let out = ok(&views_run(
        dir.path(),
        &["view.json", "--input", "data.ndjson", "--format", "json"],
    ));
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rows,
        json!([
            {"id": "p1", "born": "1974-12-25", "active": true, "families": ["Chalmers", "Windsor"],
             "family": "Chalmers", "given": "Peter James"},
            {"id": "p1", "born": "1974-12-25", "active": true, "families": ["Chalmers", "Windsor"],
             "family": "Windsor", "given": ""},
            {"id": "p2", "born": "1980-06", "active": null, "families": [], "family": null,
             "given": null}
        ])
    );

    let out = ok(&views_run(
        dir.path(),
        &["view.json", "--input", "data.ndjson", "--format", "csv"],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "id,born,active,families,family,given",
            r#"p1,1974-12-25,true,"[""Chalmers"",""Windsor""]",Chalmers,Peter James"#,
            r#"p1,1974-12-25,true,"[""Chalmers"",""Windsor""]",Windsor,"#,
            "p2,1980-06,,[],,",
        ]
    );

    // A column name the specification forbids is refused before any data is read.
    let bad =
        json!({"resource": "Patient", "select": [{"column": [{"name": "1id", "path": "id"}]}]});
    std::fs::write(dir.path().join("bad.json"), bad.to_string()).unwrap();
    let out = views_run(dir.path(), &["bad.json", "--input", "data.ndjson"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("select[0].column[0].name"), "{err}");

    let out = views_run(dir.path(), &["view.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not supported yet: give --input"), "{err}");
}
