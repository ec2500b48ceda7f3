//! `medlake fhirpath`: the result collection as JSON, and a pointed message for a bad
//! expression.

use std::process::Command;

fn fhirpath(expression: &str, input: &std::path::Path) -> std::process::Output {
    Command::new(medlake_e2e::medlake_bin())
        .args(["fhirpath", expression, "--input"])
        .arg(input)
        .output()
        .unwrap()
}

#[test]
fn fhirpath_prints_the_result_collection_and_points_at_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("patient.json");
    std::fs::write(
        &input,
        r#"{"resourceType": "Patient", "id": "p1", "birthDate": "1974-12-25",
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
                     {"use": "usual", "given": ["Jim"]}]}"#,
    )
    .unwrap();

    let out = fhirpath("Patient.name.where(use = 'official').given", &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::json!(["Peter", "James"]));

    let out = fhirpath(
        "Patient.birthDate < @2000-01-01 and name.count() = 2",
        &input,
    );
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::json!([true]));

    let out = fhirpath("Patient.name.where(use = ", &input);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid FHIRPath"), "{err}");
    assert!(err.contains('^'), "the message points at the error: {err}");
}
