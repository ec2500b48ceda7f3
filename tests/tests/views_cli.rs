//! `medlake views run`: a ViewDefinition over an NDJSON file, as JSON and as CSV, the
//! answer for a bad view, and a run without `--input` over the lake's current resources.

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
}

/// The rows as sorted lines of JSON text: a view over the lake and one over files give
/// the same rows, not necessarily in the same order.
fn sorted_rows(json_text: &str) -> Vec<String> {
    let rows: Value = serde_json::from_str(json_text).unwrap();
    let mut lines: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn views_run_without_input_reads_the_current_resources_of_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let first: String = [
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1974-12-25",
               "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]}),
        json!({"resourceType": "Patient", "id": "p2", "birthDate": "1980-06",
               "name": [{"family": "Old", "given": ["Name"]}]}),
        json!({"resourceType": "Patient", "id": "p3", "gender": "other"}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect();
    // A second load gives p2 a new version: only that one is current.
    let p2_now = json!({"resourceType": "Patient", "id": "p2", "birthDate": "1980-06",
        "name": [{"family": "New", "given": ["Name", "Two"]}]});
    std::fs::write(dir.path().join("first.ndjson"), &first).unwrap();
    std::fs::write(dir.path().join("second.ndjson"), format!("{p2_now}\n")).unwrap();
    let view = json!({
        "resourceType": "ViewDefinition", "name": "patient_names", "resource": "Patient",
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "born", "path": "birthDate", "type": "date"}
            ]},
            {"forEachOrNull": "name", "column": [
                {"name": "family", "path": "family", "type": "string"},
                {"name": "given", "path": "given", "type": "string", "collection": true}
            ]}
        ]
    });
    std::fs::write(dir.path().join("view.json"), view.to_string()).unwrap();

    // An empty workspace is no error: the view has no rows.
    let view_path = dir.path().join("view.json");
    let view_arg = view_path.to_str().unwrap();
    let out = medlake_e2e::medlake(&lake, &["views", "run", view_arg, "--format", "json"]);
    assert_eq!(
        sorted_rows(&String::from_utf8(out.stdout).unwrap()),
        Vec::<String>::new()
    );

    for file in ["first.ndjson", "second.ndjson"] {
        let path = dir.path().join(file);
        medlake_e2e::medlake(&lake, &["ingest", "--quiet", path.to_str().unwrap()]);
    }
    let from_lake = medlake_e2e::medlake(&lake, &["views", "run", view_arg, "--format", "json"]);
    let from_lake = sorted_rows(&String::from_utf8(from_lake.stdout).unwrap());

    // The same rows as the view over the current versions given as a file.
    let current: String = first
        .lines()
        .filter(|l| !l.contains("\"p2\""))
        .map(|l| format!("{l}\n"))
        .chain([format!("{p2_now}\n")])
        .collect();
    std::fs::write(dir.path().join("current.ndjson"), current).unwrap();
    let from_files = ok(&views_run(
        dir.path(),
        &["view.json", "--input", "current.ndjson", "--format", "json"],
    ));
    assert_eq!(from_lake, sorted_rows(&from_files));
    assert_eq!(from_lake.len(), 3, "{from_lake:?}");
    assert!(from_lake.iter().any(|r| r.contains("\"New\"")));
    assert!(!from_lake.iter().any(|r| r.contains("\"Old\"")));

    // CSV from the lake has the same lines as CSV from the files.
    let csv_lines = |out: &[u8]| -> Vec<String> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[1..].sort();
        lines
    };
    let lake_csv = medlake_e2e::medlake(&lake, &["views", "run", view_arg, "--format", "csv"]);
    let files_csv = views_run(
        dir.path(),
        &["view.json", "--input", "current.ndjson", "--format", "csv"],
    );
    assert_eq!(csv_lines(&lake_csv.stdout), csv_lines(&files_csv.stdout));
}
