//! Other writers and big loads while a server runs (issue #9, point 4):
//! - a large `POST /ingest` goes through the server's bulk path, with versions from the
//!   server; `medlake ingest --server` streams files to it;
//! - commits of other processes (another engine appending, `medlake optimize`) are
//!   followed by the server's indexes, and clashes are reported, not shadowed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use medlake_e2e::{Server, http, medlake, medlake_unchecked};
use serde_json::{Value, json};

fn sql(server: &Server, query: &str) -> Vec<Value> {
    let mut r = http()
        .post(&server.url("/sql"))
        .header("Content-Type", "text/plain")
        .send(query)
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "{query}: {text}");
    match serde_json::from_str(&text) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("{query}: not a JSON array: {other:?}"),
    }
}

fn count(server: &Server, query: &str) -> i64 {
    sql(server, query)[0]["n"]
        .as_i64()
        .unwrap_or_else(|| panic!("no count from {query}"))
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let mut r = http().get(&server.url(path)).call().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_json::<Value>().unwrap_or(Value::Null);
    (status, body)
}

/// Wait until `check` holds, or fail with `what`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// NDJSON Patients `<prefix>-0 .. <prefix>-<n-1>`, each padded with a narrative so that
/// the body grows past the WAL path's limit, and one broken record (not JSON) on line 3.
fn patients_ndjson(prefix: &str, n: usize) -> String {
    let padding = "x".repeat(1500);
    let mut out = String::new();
    for i in 0..n {
        if i == 2 {
            out.push_str("{\"resourceType\":\"Patient\",\"gender\":\n");
        }
        let p = json!({
            "resourceType": "Patient",
            "id": format!("{prefix}-{i}"),
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{padding}</div>")},
            "name": [{"family": format!("Bulk{i}")}],
        });
        out.push_str(&p.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn a_large_ingest_takes_the_bulk_path_with_versions_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &["--compact-interval-secs", "0"]);
    let n = 6000;
    let body = patients_ndjson("big", n);
    assert!(
        body.len() > 8 << 20,
        "the body must exceed the WAL path's 8 MiB"
    );
    let load = || {
        let mut r = http()
            .post(&server.url("/ingest"))
            .header("Content-Type", "application/x-ndjson")
            .send(body.as_str())
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status(), 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let first = load();
    assert_eq!(first["mode"], "bulk", "{first}");
    assert_eq!(first["accepted"], n as u64);
    assert_eq!(first["rejected"], 1);
    assert_eq!(first["types"]["Patient"], n as u64);
    let quoted = first["firstErrors"][0].as_str().unwrap();
    assert!(
        quoted.contains(":3"),
        "the rejection names its line: {quoted}"
    );

    let (status, p) = get(&server, "/fhir/Patient/big-10");
    assert_eq!(status, 200);
    assert_eq!(p["meta"]["versionId"], "1");
    assert_eq!(p["name"][0]["family"], "Bulk10");

    // The same body again makes version 2 of each: the server assigns versions.
    let second = load();
    assert_eq!(second["accepted"], n as u64);
    let (_, p) = get(&server, "/fhir/Patient/big-10");
    assert_eq!(p["meta"]["versionId"], "2");
    // A write through the WAL continues the same sequence of versions.
    let r = http()
        .put(&server.url("/fhir/Patient/big-10"))
        .header("Content-Type", "application/fhir+json")
        .send(json!({"resourceType": "Patient", "id": "big-10", "gender": "other"}).to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, p) = get(&server, "/fhir/Patient/big-10");
    assert_eq!(p["meta"]["versionId"], "3");
    // Search and SQL see the bulk-loaded rows.
    let (_, bundle) = get(&server, "/fhir/Patient?family=Bulk4321&_total=accurate");
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(
        count(&server, "SELECT count(*) AS n FROM fhir_history.patient"),
        2 * n as i64 + 1
    );
    let run = first["runId"].as_str().unwrap();
    assert_eq!(
        count(
            &server,
            &format!(
                "SELECT count(*) AS n FROM medlake.ingest_errors WHERE run_id = '{run}' AND line = 3"
            )
        ),
        1
    );
}

#[test]
fn medlake_ingest_streams_files_to_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let generated = dir.path().join("gen");
    medlake(
        &lake,
        &[
            "generate",
            "--patients",
            "4",
            "--seed",
            "3",
            "--out",
            generated.to_str().unwrap(),
            "-q",
        ],
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(generated.join("manifest.json")).unwrap())
            .unwrap();
    let total = manifest["total"].as_u64().unwrap();
    let server = Server::start(&lake, &[]);

    // Writing the workspace directly is refused while the server owns it, with the way out.
    let refused = medlake_unchecked(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("--server"), "{why}");

    let out = medlake(
        &lake,
        &[
            "ingest",
            "-q",
            "--server",
            &server.base,
            generated.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("ingested {total} resources")),
        "{said}"
    );
    assert_eq!(
        count(&server, "SELECT count(*) AS n FROM fhir.observation"),
        manifest["counts"]["Observation"].as_i64().unwrap()
    );
    let id = sql(&server, "SELECT id FROM fhir.patient ORDER BY id LIMIT 1")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, p) = get(&server, &format!("/fhir/Patient/{id}"));
    assert_eq!(status, 200);
    assert_eq!(p["meta"]["versionId"], "1");
}

fn python() -> PathBuf {
    let python = medlake_e2e::tests_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the test command (scripts/test), which installs tests/python/requirements.txt",
        python.display()
    );
    python
}

/// Append rows to a resource table with delta-rs's Python writer, as another engine would.
fn append_as_another_engine(table: &Path, rows: &Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rows.to_string()).unwrap();
    let out = Command::new(python())
        .arg(medlake_e2e::tests_dir().join("python/append_delta.py"))
        .arg(table)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "append_delta.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn put_patient(server: &Server, id: &str, family: &str) {
    let r = http()
        .put(&server.url(&format!("/fhir/Patient/{id}")))
        .header("Content-Type", "application/fhir+json")
        .send(
            json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}).to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn commits_of_other_processes_are_followed_and_clashes_reported() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &[
            "--flush-interval-secs",
            "1",
            "--refresh-interval-secs",
            "1",
            "--compact-interval-secs",
            "0",
        ],
    );
    put_patient(&server, "own-1", "Ownfamily");
    put_patient(&server, "own-2", "Ownfamily");
    let table = lake.join("default/fhir/patient");
    eventually("the server's first flush", || {
        table.join("_delta_log/00000000000000000000.json").exists()
    });

    // Another engine appends a new patient, and a second copy of own-1's version 1.
    let now_us = 1_796_000_000_000_000i64;
    let external = json!({"resourceType": "Patient", "id": "ext-1", "meta": {"versionId": "1"},
        "name": [{"family": "Externa"}], "gender": "female"});
    let copy = json!({"resourceType": "Patient", "id": "own-1", "meta": {"versionId": "1"},
        "name": [{"family": "Impostor"}]});
    append_as_another_engine(
        &table,
        &json!([
            {"id": "ext-1", "version_id": 1, "last_updated_us": now_us, "resource": external.to_string()},
            {"id": "own-1", "version_id": 1, "last_updated_us": now_us, "resource": copy.to_string()},
        ]),
    );

    // Within the refresh interval the server serves the new one by id, search and SQL.
    eventually("the other engine's patient served by id", || {
        get(&server, "/fhir/Patient/ext-1").0 == 200
    });
    let (_, p) = get(&server, "/fhir/Patient/ext-1");
    assert_eq!(p["name"][0]["family"], "Externa");
    let (_, bundle) = get(&server, "/fhir/Patient?family=Externa");
    let found: Vec<&str> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(found, ["ext-1"], "the search index followed: {bundle}");
    assert_eq!(count(&server, "SELECT count(*) AS n FROM fhir.patient"), 3);

    // The clash is reported, and reads by id keep the server's own copy.
    let (_, own) = get(&server, "/fhir/Patient/own-1");
    assert_eq!(own["name"][0]["family"], "Ownfamily");
    let duplicates = "SELECT count(*) AS n FROM medlake.ingest_errors WHERE code = 'duplicate' AND resource_id = 'own-1'";
    eventually("the clash in medlake.ingest_errors", || {
        count(&server, duplicates) == 1
    });
    let (_, none) = get(&server, "/fhir/Patient?family=Impostor");
    assert_eq!(none["entry"].as_array().map_or(0, Vec::len), 0, "{none}");

    // `medlake optimize` from a second process, while the server runs: it compacts what is
    // in Delta, and the server follows the rewritten files without calling them clashes.
    put_patient(&server, "own-3", "Ownfamily");
    eventually("the second flush", || {
        table.join("_delta_log/00000000000000000002.json").exists()
    });
    let out = medlake(&lake, &["optimize"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("a server is writing to this workspace"),
        "{said}"
    );
    assert!(said.contains("Patient"), "{said}");
    // After the next refresh, every resource still reads, from the compacted file.
    std::thread::sleep(Duration::from_secs(3));
    for id in ["own-1", "own-2", "own-3", "ext-1"] {
        assert_eq!(get(&server, &format!("/fhir/Patient/{id}")).0, 200, "{id}");
    }
    put_patient(&server, "own-4", "Ownfamily");
    assert_eq!(count(&server, "SELECT count(*) AS n FROM fhir.patient"), 5);
    assert_eq!(count(&server, duplicates), 1, "moved rows are not clashes");
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM medlake.ingest_errors WHERE code = 'duplicate'"
        ),
        1
    );
    server.stop();
}
