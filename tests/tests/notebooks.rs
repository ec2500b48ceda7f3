//! The notebooks under `notebooks/`, run top to bottom by `tests/python/run_notebook.py`
//! (nbclient, with tests/.venv's kernel), each on a lake made for it. What a notebook
//! prints is checked against medlake's own SQL on the same lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medlake_e2e::{lake_with_history, sql_count, sql_json, venv_python};

/// Run `notebooks/<name>` with these variables; panic with its output if a cell fails.
fn run_notebook(name: &str, env: &[(&str, &Path)]) -> String {
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = venv_python();
    // The kernel is found on PATH by some kernel specs: the venv's bin comes first.
    let path = format!(
        "{}:{}",
        python.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&python);
    cmd.arg(tests.join("python/run_notebook.py"))
        .arg(tests.join("../notebooks").join(name))
        .env("PATH", path)
        .env_remove("MEDLAKE_WORKSPACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "notebook {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value after `label` on the line that has it.
fn printed<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.split_once(label).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("the notebook did not print {label:?}:\n{stdout}"))
}

#[test]
fn the_delta_direct_notebook_derives_what_medlakes_sql_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_history(dir.path(), 8);
    let stdout = run_notebook("delta_direct.ipynb", &[("MEDLAKE_DATA", &lake)]);

    assert!(
        stdout.contains("fhir/observation"),
        "no table listing:\n{stdout}"
    );
    let current = sql_count(&lake, "SELECT count(*) AS n FROM fhir.observation");
    assert_eq!(
        printed(&stdout, "current observations:"),
        current.to_string()
    );
    let versioned = sql_count(
        &lake,
        "SELECT count(*) AS n FROM (SELECT id FROM fhir_history.observation GROUP BY id \
         HAVING count(*) > 1)",
    );
    assert_eq!(versioned, 5, "the lake was prepared with 5 new versions");
    assert_eq!(
        printed(&stdout, "observations with more than one version:"),
        versioned.to_string()
    );
    assert_eq!(printed(&stdout, "deleted observations:"), "2");
    let top = &sql_json(
        &lake,
        "SELECT json_get_str(resource, 'code', 'coding', 0, 'code') AS code, count(*) AS n \
         FROM fhir.observation GROUP BY code ORDER BY n DESC, code LIMIT 1",
    )[0];
    let line = printed(&stdout, "most frequent code:");
    let expected_start = format!("{} (", top["code"].as_str().unwrap());
    let expected_end = format!("in {} observations", top["n"]);
    assert!(
        line.starts_with(&expected_start) && line.ends_with(&expected_end),
        "{line} is not {top}"
    );
}

#[test]
fn the_ml_features_notebook_trains_a_model_and_reports_a_test_auc() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    let lake = dir.path().join("lake");
    medlake_e2e::medlake(
        &lake,
        &[
            "generate",
            "--patients",
            "250",
            "--seed",
            "5",
            "--out",
            generated.to_str().unwrap(),
            "-q",
        ],
    );
    medlake_e2e::medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    let server = medlake_e2e::Server::start(&lake, &["--flight-listen", "off"]);
    let url = PathBuf::from(&server.base);
    let stdout = run_notebook("ml_features.ipynb", &[("MEDLAKE_URL", &url)]);

    let adults = sql_count(
        &lake,
        "SELECT count(*) AS n FROM fhir.patient WHERE json_get_str(resource, 'birthDate') < '2007-01-01'",
    );
    assert_eq!(printed(&stdout, "rows:"), adults.to_string());
    assert!(printed(&stdout, "columns:").contains("cond_diabetes"));
    let auc: f64 = printed(&stdout, "test AUC:")
        .parse()
        .unwrap_or_else(|_| panic!("the AUC is not a number:\n{stdout}"));
    assert!((0.0..=1.0).contains(&auc), "AUC {auc}");
    server.stop();
}
