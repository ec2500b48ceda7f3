//! The notebooks under `notebooks/`, run top to bottom by `tests/python/run_notebook.py`
//! (nbclient, with tests/.venv's kernel), each on a lake made for it, the ones that query
//! a server against a `medlake serve` on that lake. What a notebook prints is checked
//! against medlake's own SQL on the same lake, written independently of the notebook's
//! queries (on the FHIR JSON of `fhir.<type>` where the views' columns allow it).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medlake_e2e::{Server, lake_with_history, medlake, sql_count, sql_json, venv_python};
use serde_json::Value;

/// Run `notebooks/<name>` with these variables; panic with its output if a cell fails.
fn run_notebook(name: &str, env: &[(&str, &OsStr)]) -> String {
    let tests = medlake_e2e::tests_dir();
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
    let stdout = run_notebook("delta_direct.ipynb", &[("MEDLAKE_DATA", lake.as_os_str())]);

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

/// A lake at `<root>/lake` with `patients` synthetic patients, loaded with `medlake ingest`
/// (which also fills the built-in views), and a server on it with Flight SQL and the
/// Postgres wire on free ports.
fn served_lake(root: &Path, patients: u64) -> (PathBuf, Server) {
    let generated = root.join("gen");
    let lake = root.join("lake");
    let patients = patients.to_string();
    let generate = [
        "generate",
        "--patients",
        &patients,
        "--out",
        generated.to_str().unwrap(),
        "-q",
    ];
    medlake(&lake, &generate);
    medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    let server = Server::start(&lake, &["--pg-listen", "127.0.0.1:0"]);
    (lake, server)
}

/// The `key=value, ...` pairs a notebook printed after `label`.
fn printed_pairs<'a>(stdout: &'a str, label: &str) -> Vec<(&'a str, &'a str)> {
    printed(stdout, label)
        .split(", ")
        .map(|pair| {
            pair.split_once('=')
                .unwrap_or_else(|| panic!("{pair:?} after {label:?} is not key=value"))
        })
        .collect()
}

/// The number after `key=` in what a notebook printed after `label` (`n=12 mean=3.5`).
fn printed_field(stdout: &str, label: &str, key: &str) -> f64 {
    let line = printed(stdout, label);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key}= in {label:?}: {line}"))
}

/// A float the notebook printed (to 6 decimals) against the one medlake's SQL answered.
fn assert_close(what: &str, printed: f64, expected: &Value) {
    let expected = expected
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: SQL answered {expected}, not a number"));
    assert!(
        (printed - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "{what}: the notebook printed {printed}, medlake's SQL answers {expected}"
    );
}

#[test]
fn the_quickstart_notebook_answers_over_flight_sql_and_postgres_what_medlakes_sql_does() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, server) = served_lake(dir.path(), 120);
    let flight = server
        .flight
        .clone()
        .expect("the server announces Flight SQL");
    let pg = format!(
        "postgresql://medlake@{}/medlake",
        server
            .pg
            .as_deref()
            .expect("the server announces the Postgres wire")
    );
    let stdout = run_notebook(
        "quickstart.ipynb",
        &[
            ("MEDLAKE_FLIGHT", flight.as_ref()),
            ("MEDLAKE_PG", pg.as_ref()),
        ],
    );

    // Every fhir.<type> table, counted by the CLI one at a time.
    let tables = sql_json(
        &lake,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'fhir'",
    );
    assert!(tables.len() > 5, "too few resource tables: {tables:?}");
    let mut total = 0;
    for table in &tables {
        let name = table["table_name"].as_str().unwrap();
        let n = sql_count(&lake, &format!("SELECT count(*) AS n FROM fhir.{name}"));
        total += n;
        assert_eq!(
            printed(&stdout, &format!("resources in fhir.{name}:")),
            n.to_string(),
            "fhir.{name}"
        );
    }
    assert_eq!(printed(&stdout, "resources in total:"), total.to_string());

    // The most frequent observation code, from the FHIR JSON rather than the view.
    let top = &sql_json(
        &lake,
        "SELECT json_get_str(resource, 'code', 'coding', 0, 'code') AS code, count(*) AS n \
         FROM fhir.observation GROUP BY code ORDER BY n DESC, code LIMIT 1",
    )[0];
    let line = printed(&stdout, "most frequent observation code:");
    assert!(
        line.starts_with(&format!("{} (", top["code"].as_str().unwrap()))
            && line.ends_with(&format!("in {} observations", top["n"])),
        "{line} is not {top}"
    );

    // The parameterized query, over both protocols.
    let systolic = &sql_json(
        &lake,
        "SELECT count(*) AS n, avg(value) AS mean FROM views.observation WHERE code = '8480-6'",
    )[0];
    assert!(systolic["n"].as_i64().unwrap() > 0, "no systolic readings");
    for protocol in ["Flight SQL", "Postgres"] {
        let label = format!("8480-6 over {protocol}:");
        assert_eq!(
            printed_field(&stdout, &label, "n"),
            systolic["n"].as_f64().unwrap(),
            "{protocol}"
        );
        assert_close(
            &label,
            printed_field(&stdout, &label, "mean"),
            &systolic["mean"],
        );
    }
    let most = &sql_json(
        &lake,
        "SELECT patient_id, count(*) AS n FROM views.observation WHERE code = '8480-6' \
         GROUP BY patient_id ORDER BY n DESC, patient_id LIMIT 1",
    )[0];
    assert_eq!(
        printed(&stdout, "patient with the most 8480-6 readings:"),
        format!(
            "{} ({} readings)",
            most["patient_id"].as_str().unwrap(),
            most["n"]
        )
    );

    // pandas.read_sql over Postgres, against the patients' FHIR JSON.
    let genders = sql_json(
        &lake,
        "SELECT coalesce(json_get_str(resource, 'gender'), 'unknown') AS gender, count(*) AS n \
         FROM fhir.patient GROUP BY 1 ORDER BY 1",
    );
    let expected: Vec<(String, String)> = genders
        .iter()
        .map(|g| {
            (
                g["gender"].as_str().unwrap().to_string(),
                g["n"].to_string(),
            )
        })
        .collect();
    let got: Vec<(String, String)> = printed_pairs(&stdout, "patients by gender:")
        .into_iter()
        .map(|(g, n)| (g.to_string(), n.to_string()))
        .collect();
    assert_eq!(got, expected);
    server.stop();
}

/// The cohort the test asks the notebook for: essential hypertension (SNOMED CT), and
/// the systolic blood pressure (LOINC) as its measurement.
const COHORT_CODE: &str = "59621000";
const LAB_CODE: &str = "8480-6";

#[test]
fn the_cohort_notebook_finds_what_medlakes_sql_does_and_draws_its_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, server) = served_lake(dir.path(), 200);
    let flight = server
        .flight
        .clone()
        .expect("the server announces Flight SQL");
    let plots = dir.path().join("plots");
    let stdout = run_notebook(
        "cohort_analytics.ipynb",
        &[
            ("MEDLAKE_FLIGHT", flight.as_ref()),
            ("MEDLAKE_COHORT_CODE", COHORT_CODE.as_ref()),
            ("MEDLAKE_LAB_CODE", LAB_CODE.as_ref()),
            ("MEDLAKE_PLOTS", plots.as_os_str()),
            // No display: the plots are only saved.
            ("MPLBACKEND", "Agg".as_ref()),
        ],
    );

    // The cohort from the FHIR JSON: the patients a Condition with the code refers to.
    let cohort = format!(
        "SELECT DISTINCT json_get_str(resource, 'subject', 'reference') AS subject \
         FROM fhir.condition WHERE json_get_str(resource, 'code', 'coding', 0, 'code') = '{COHORT_CODE}'"
    );
    let patients = sql_count(&lake, "SELECT count(*) AS n FROM fhir.patient");
    let size = sql_count(&lake, &format!("SELECT count(*) AS n FROM ({cohort})"));
    assert!(
        size > 0 && size < patients,
        "the generated lake should have some patients with {COHORT_CODE} and some without: {size} of {patients}"
    );
    assert_eq!(printed(&stdout, "patients:"), patients.to_string());
    assert_eq!(printed(&stdout, "cohort size:"), size.to_string());

    let genders = sql_json(
        &lake,
        &format!(
            "SELECT coalesce(json_get_str(p.resource, 'gender'), 'unknown') AS gender, count(*) AS n \
             FROM fhir.patient p JOIN ({cohort}) c ON c.subject = 'Patient/' || p.id \
             GROUP BY 1 ORDER BY 1"
        ),
    );
    let expected: Vec<String> = genders
        .iter()
        .map(|g| format!("{}={}", g["gender"].as_str().unwrap(), g["n"]))
        .collect();
    assert_eq!(printed(&stdout, "cohort by gender:"), expected.join(", "));

    // Age at the first diagnosis, in years of 365.25 days, from the JSON's dates.
    let age = &sql_json(
        &lake,
        &format!(
            "WITH first AS (\
               SELECT json_get_str(resource, 'subject', 'reference') AS subject, \
                      min(to_timestamp(coalesce(json_get_str(resource, 'onsetDateTime'), \
                                                json_get_str(resource, 'recordedDate')))) AS at \
               FROM fhir.condition \
               WHERE json_get_str(resource, 'code', 'coding', 0, 'code') = '{COHORT_CODE}' \
               GROUP BY 1) \
             SELECT avg((to_unixtime(f.at) - to_unixtime(to_timestamp(json_get_str(p.resource, 'birthDate')))) \
                        / (365.25 * 86400)) AS years \
             FROM first f JOIN fhir.patient p ON f.subject = 'Patient/' || p.id"
        ),
    )[0];
    assert_close(
        "mean age at first diagnosis",
        printed(&stdout, "mean age at first diagnosis:")
            .parse()
            .unwrap(),
        &age["years"],
    );

    // The measurement: views.observation has the components as rows, which the JSON
    // functions cannot unnest.
    let lab = |group: &str| {
        sql_json(
            &lake,
            &format!(
                "SELECT count(*) AS n, avg(o.value) AS mean FROM views.observation o \
                 WHERE o.code = '{LAB_CODE}' AND o.value IS NOT NULL \
                 AND o.patient_id IN (SELECT id FROM views.patient) AND {group}"
            ),
        )
        .remove(0)
    };
    let in_cohort = format!("('Patient/' || o.patient_id) IN ({cohort})");
    for (label, rows) in [
        ("lab in cohort:", lab(&in_cohort)),
        ("lab outside cohort:", lab(&format!("NOT ({in_cohort})"))),
    ] {
        assert!(rows["n"].as_i64().unwrap() > 0, "{label} no readings");
        assert_eq!(
            printed_field(&stdout, label, "n"),
            rows["n"].as_f64().unwrap(),
            "{label}"
        );
        assert_close(label, printed_field(&stdout, label, "mean"), &rows["mean"]);
    }
    let diagnosed = format!(
        "(SELECT patient_id, min(coalesce(onset, recorded_date)) AS at FROM views.condition \
          WHERE code = '{COHORT_CODE}' GROUP BY patient_id)"
    );
    for (label, compare) in [
        ("lab in cohort before diagnosis:", "<"),
        ("lab in cohort after diagnosis:", ">="),
    ] {
        let rows = &sql_json(
            &lake,
            &format!(
                "SELECT count(*) AS n, avg(o.value) AS mean FROM views.observation o \
                 JOIN {diagnosed} d ON d.patient_id = o.patient_id \
                 WHERE o.code = '{LAB_CODE}' AND o.value IS NOT NULL AND o.effective {compare} d.at"
            ),
        )[0];
        assert_eq!(
            printed_field(&stdout, label, "n"),
            rows["n"].as_f64().unwrap(),
            "{label}"
        );
        if rows["n"].as_i64().unwrap() > 0 {
            assert_close(label, printed_field(&stdout, label, "mean"), &rows["mean"]);
        }
    }

    // Encounters per patient, those without any counting 0, from the JSON.
    let per_patient = |member: &str| {
        sql_json(
            &lake,
            &format!(
                "SELECT avg(coalesce(e.n, 0)) AS mean FROM fhir.patient p \
                 LEFT JOIN (SELECT json_get_str(resource, 'subject', 'reference') AS subject, count(*) AS n \
                            FROM fhir.encounter GROUP BY 1) e ON e.subject = 'Patient/' || p.id \
                 WHERE ('Patient/' || p.id) {member} ({cohort})"
            ),
        )
        .remove(0)
    };
    assert_close(
        "encounters per patient in cohort",
        printed(&stdout, "encounters per patient in cohort:")
            .parse()
            .unwrap(),
        &per_patient("IN")["mean"],
    );
    assert_close(
        "encounters per patient outside cohort",
        printed(&stdout, "encounters per patient outside cohort:")
            .parse()
            .unwrap(),
        &per_patient("NOT IN")["mean"],
    );

    for plot in ["age_gender", "lab", "encounters"] {
        let png = std::fs::read(plots.join(format!("{plot}.png")))
            .unwrap_or_else(|e| panic!("the notebook did not save {plot}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "{plot}.png is not a PNG");
    }
    server.stop();
}

#[test]
fn the_ml_features_notebook_trains_a_model_and_reports_a_test_auc() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    let lake = dir.path().join("lake");
    medlake(
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
    medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    let server = Server::start(&lake, &["--flight-listen", "off"]);
    let stdout = run_notebook(
        "ml_features.ipynb",
        &[("MEDLAKE_URL", OsStr::new(&server.base))],
    );

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
