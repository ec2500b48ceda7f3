//! A real FHIR client: Python `requests` drives the server (`tests/python/fhir_client.py`)
//! and validates every resource it gets back against the official R4 JSON schema
//! (`$MEDLAKE_SHARED/fhir-r4/fhir.schema.json`). The test command installs the Python
//! packages into `tests/.venv`.

use std::process::Command;

use medlake_e2e::{Server, shared_dir};

#[test]
fn a_python_client_round_trip_validates_against_the_r4_schema() {
    let tests = medlake_e2e::tests_dir();
    let python = tests.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the test command (scripts/test), which installs tests/python/requirements.txt",
        python.display()
    );
    let schema = shared_dir().join("fhir-r4/fhir.schema.json");
    assert!(
        schema.exists(),
        "{} is missing (set MEDLAKE_SHARED)",
        schema.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &["--demo"]);
    let out = Command::new(&python)
        .arg(tests.join("python/fhir_client.py"))
        .arg(server.url("/fhir"))
        .arg(&schema)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every interaction behaved"), "{stdout}");
}
