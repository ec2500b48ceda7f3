//! Other engines read the same tables (`tests/python/other_engines.py`): delta-rs through
//! the Delta log, and DuckDB on exactly the Parquet files the log lists, with the
//! current-version SQL of the README. Both must give the rows, versions and resource
//! checksums that medlake's SQL gives.

use std::process::Command;

use medlake_e2e::{lake_with_history, medlake, venv_python};

#[test]
fn deltalake_and_duckdb_read_what_medlakes_sql_reads() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_history(dir.path(), 8);
    let history = dir.path().join("history.json");
    let current = dir.path().join("current.json");
    medlake(
        &lake,
        &[
            "sql",
            "--format",
            "json",
            "-o",
            history.to_str().unwrap(),
            "SELECT id, version_id, deleted, md5(resource) AS md5 FROM fhir_history.observation",
        ],
    );
    medlake(
        &lake,
        &[
            "sql",
            "--format",
            "json",
            "-o",
            current.to_str().unwrap(),
            "SELECT id, version_id, md5(resource) AS md5 FROM fhir.observation",
        ],
    );
    let script = medlake_e2e::tests_dir().join("python/other_engines.py");
    let out = Command::new(venv_python())
        .arg(script)
        .arg(lake.join("default/fhir/observation"))
        .arg(&history)
        .arg(&current)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "another engine disagreed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("other engines: every check passed"),
        "{stdout}"
    );
}
