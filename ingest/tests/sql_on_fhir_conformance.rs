//! Runs the SQL-on-FHIR v2 test cases (`$MEDLAKE_SHARED/conformance/sql-on-fhir/tests`, by
//! default `../shared` beside the checkout; `MEDLAKE_SOF_TESTS` names another folder of
//! the same format, such as the full `tests/` of github.com/FHIR/sql-on-fhir-v2) against
//! `medlake_ingest::view`, experimental cases included. Writes the specification's
//! `test_report.json` (to `$MEDLAKE_SOF_REPORT`, or `$CARGO_TARGET_TMPDIR`), prints the
//! failing cases and the pass count, and fails unless every case passes.
//!
//! A case passes when: `expectError` and parsing the view or evaluating it on some
//! resource fails; `expectCount` and that many rows come out; `expect` and the rows are
//! those, in any order, each with exactly the expected keys (numbers compare by value);
//! `expectColumns`, when given, is the column order.

use std::path::PathBuf;

use medlake_ingest::view::{ViewDefinition, ViewError};
use serde_json::{Map, Value, json};

fn suite_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEDLAKE_SOF_TESTS") {
        return PathBuf::from(dir);
    }
    let shared = std::env::var_os("MEDLAKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("conformance/sql-on-fhir/tests")
}

fn report_path() -> PathBuf {
    std::env::var_os("MEDLAKE_SOF_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test_report.json"))
}

/// The suite's test files, in name order.
fn suite_files() -> Vec<PathBuf> {
    let dir = suite_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set MEDLAKE_SHARED)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test files in {}", dir.display());
    files
}

/// Every row of the view over the resources, as objects keyed by column name.
fn run(view: &Value, resources: &[Value]) -> Result<(Vec<String>, Vec<Value>), ViewError> {
    let view = ViewDefinition::from_json(view)?;
    let names: Vec<String> = view.columns().iter().map(|c| c.name.clone()).collect();
    let mut rows = Vec::new();
    for r in resources {
        for row in view.evaluate(r)? {
            let obj: Map<String, Value> = names.iter().cloned().zip(row).collect();
            rows.push(Value::Object(obj));
        }
    }
    Ok((names, rows))
}

/// JSON equality with numbers compared by value (`5` and `5.0`, `0.95` and `0.95000000`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `got` is `want` in some order.
fn same_rows(got: &[Value], want: &[Value]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    let mut used = vec![false; got.len()];
    want.iter().all(|w| {
        let found = got
            .iter()
            .enumerate()
            .find(|(i, g)| !used[*i] && same(g, w))
            .map(|(i, _)| i);
        found.map(|i| used[i] = true).is_some()
    })
}

/// `None` when the case passes, else why not.
fn check(case: &Value, resources: &[Value]) -> Option<String> {
    let result = run(&case["view"], resources);
    if case.get("expectError").and_then(Value::as_bool) == Some(true) {
        return match result {
            Err(_) => None,
            Ok((_, rows)) => Some(format!(
                "expected an error, got {} rows: {}",
                rows.len(),
                Value::Array(rows)
            )),
        };
    }
    let (names, rows) = match result {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    if let Some(cols) = case.get("expectColumns") {
        let want: Vec<&str> = cols
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if names != want {
            return Some(format!("columns {names:?}, expected {want:?}"));
        }
    }
    if let Some(n) = case.get("expectCount").and_then(Value::as_u64) {
        return (rows.len() as u64 != n).then(|| format!("{} rows, expected {n}", rows.len()));
    }
    let want = case
        .get("expect")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    (!same_rows(&rows, &want)).then(|| {
        format!(
            "rows {}\nexpected {}",
            Value::Array(rows),
            Value::Array(want)
        )
    })
}

#[test]
fn sql_on_fhir_cases_pass() {
    let files = suite_files();

    let mut report = Map::new();
    let (mut passed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let suite: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let resources = suite["resources"].as_array().cloned().unwrap_or_default();
        let mut results = Vec::new();
        for case in suite["tests"].as_array().into_iter().flatten() {
            let title = case["title"].as_str().unwrap_or("(untitled)");
            total += 1;
            let failure = check(case, &resources);
            let mut result = json!({"passed": failure.is_none()});
            match failure {
                None => passed += 1,
                Some(why) => {
                    result["error"] = Value::String(why.clone());
                    failures.push(format!("{name} / {title}: {why}"));
                }
            }
            results.push(json!({"name": title, "result": result}));
        }
        report.insert(name, json!({"tests": results}));
    }

    let path = report_path();
    let body = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for f in &failures {
        println!("FAIL {f}");
    }
    println!(
        "SQL-on-FHIR: {passed} of {total} cases pass (report: {})",
        path.display()
    );
    assert_eq!(passed, total, "some SQL-on-FHIR cases fail");
}

/// Views of plain paths are evaluated over the resource's text without parsing it into a
/// tree ([`ViewDefinition::evaluate_text`]); on every case of the suite, that must give
/// exactly what the interpreter gives on the parsed resource: the same rows, values and
/// order, or the same error.
#[test]
fn reading_the_text_directly_gives_the_interpreters_answers() {
    let files = suite_files();
    let (mut views, mut direct, mut compared) = (0, 0, 0);
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let suite: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let resources = suite["resources"].as_array().cloned().unwrap_or_default();
        for case in suite["tests"].as_array().into_iter().flatten() {
            let Ok(view) = ViewDefinition::from_json(&case["view"]) else {
                continue;
            };
            views += 1;
            if !view.reads_text_directly() {
                continue;
            }
            direct += 1;
            for r in &resources {
                let tree = view.evaluate(r).map_err(|e| e.to_string());
                let text = view
                    .evaluate_text(&r.to_string())
                    .map_err(|e| e.to_string());
                assert_eq!(
                    text,
                    tree,
                    "{} / {}: the text plan differs on {r}",
                    file.display(),
                    case["title"]
                );
                compared += 1;
            }
        }
    }
    println!(
        "{direct} of {views} views read the text directly; {compared} evaluations agree with the interpreter"
    );
    // The suite is mostly about what plain paths cannot do, but its basic cases are plain.
    assert!(direct >= 20, "only {direct} views compiled to text lookups");
}
