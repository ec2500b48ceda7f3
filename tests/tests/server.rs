//! The HTTP surface: `/sql`, `/ingest`, and the first FHIR interactions.

use medlake_e2e::{Server, http, medlake, sql_count};
use serde_json::{Value, json};

fn load(server: &Server, body: &str) -> Value {
    let mut r = http()
        .post(&server.url("/ingest"))
        .send(body.to_string())
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
    r.body_mut().read_json().unwrap()
}

#[test]
fn a_write_is_readable_at_once_by_id_and_by_sql_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    // A long flush interval: reads must come from the in-memory tail.
    let server = Server::start(&data, &["--flush-interval-secs", "3600"]);
    let agent = http();
    let answer = load(
        &server,
        "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\"}\n\
         {\"resourceType\":\"Patient\",\"gender\":\"male\"}\n\
         {\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"other\"}\n\
         {\"resourceType\":\"Patient\",\"birthDate\":\"not-a-date\"}\n",
    );
    assert_eq!(answer["accepted"], 3);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(answer["errors"][0]["line"], 4);
    assert_eq!(
        answer["errors"][0]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    let server_id = answer["resources"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["resources"][2]["versionId"], "2");

    let mut r = agent.get(&server.url("/fhir/Patient/p1")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("etag").unwrap(), "W/\"2\"");
    assert!(r.headers().get("last-modified").is_some());
    assert!(
        r.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let p: Value = r.body_mut().read_json().unwrap();
    assert_eq!(p["gender"], "other");
    assert_eq!(p["meta"]["versionId"], "2");

    let mut r = agent
        .get(&server.url("/fhir/Patient/p1/_history/1"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap()["gender"],
        "female"
    );

    let r = agent
        .get(&server.url(&format!("/fhir/Patient/{server_id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // SQL over HTTP sees the unflushed writes.
    let mut r = agent
        .post(&server.url("/sql"))
        .send("SELECT id, version_id FROM fhir.patient ORDER BY id")
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows: Value = r.body_mut().read_json().unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    let mut r = agent
        .post(&server.url("/sql"))
        .send_json(json!({"query": "SELECT count(*) AS n FROM fhir_history.patient"}))
        .unwrap();
    assert_eq!(r.body_mut().read_json::<Value>().unwrap()[0]["n"], 3);

    // A graceful stop flushes; the CLI then sees everything in Delta.
    server.stop();
    assert_eq!(sql_count(&data, "SELECT count(*) FROM fhir.patient"), 2);
    assert_eq!(
        sql_count(&data, "SELECT count(*) FROM fhir_history.patient"),
        3
    );
    let wal = data.join("default/_wal");
    let leftover: u64 = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        // Each segment starts with an 8-byte header; the open one holds nothing else.
        .map(|e| e.metadata().unwrap().len().saturating_sub(8))
        .sum();
    assert_eq!(leftover, 0, "flushed WAL segments are removed");

    // And a new server reads it back from Delta.
    let server = Server::start(&data, &[]);
    let mut r = agent.get(&server.url("/fhir/Patient/p1")).call().unwrap();
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap()["meta"]["versionId"],
        "2"
    );
    let mut r = agent
        .get(&server.url("/fhir/Patient/p1/_history/1"))
        .call()
        .unwrap();
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap()["gender"],
        "female"
    );
}

#[test]
fn sql_over_http_speaks_json_csv_and_arrow_and_rejects_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let f = dir.path().join("p.ndjson");
    std::fs::write(&f, "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n").unwrap();
    medlake(&data, &["ingest", "-q", f.to_str().unwrap()]);
    let server = Server::start(&data, &[]);
    let agent = http();
    let q = "SELECT id FROM fhir.patient";

    let mut r = agent
        .post(&server.url("/sql"))
        .header("Accept", "text/csv")
        .send(q)
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "id\na\n");

    let mut r = agent
        .post(&server.url("/sql"))
        .header("Accept", "application/vnd.apache.arrow.stream")
        .send(q)
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.body_mut().read_to_vec().unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(batches[0].schema().field(0).name(), "id");

    // Errors are OperationOutcomes, as everywhere else: SQL that does not parse is 400
    // (structure), SQL that parses but cannot run is 422, a write is refused with 400.
    let outcome = |query: &str, status: u16| -> Value {
        let mut r = agent.post(&server.url("/sql")).send(query).unwrap();
        assert_eq!(r.status(), status, "{query}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{content_type}"
        );
        let oo: Value = r.body_mut().read_json().unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
        assert_eq!(oo["issue"][0]["severity"], "error", "{oo}");
        oo
    };
    let oo = outcome("SELEC nonsense", 400);
    assert_eq!(oo["issue"][0]["code"], "structure", "{oo}");
    let text = oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(text.contains("sql") && text.contains("selec"), "{oo}");
    let oo = outcome("SELECT shoe_size FROM fhir.patient", 422);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe_size"),
        "{oo}"
    );
    let oo = outcome("DROP TABLE fhir.patient", 400);
    assert!(oo.to_string().contains("read-only"), "{oo}");
    let mut r = agent
        .post(&server.url("/sql"))
        .header("Content-Type", "application/json")
        .send("{\"sql\": \"SELECT 1\"}")
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap()["issue"][0]["code"],
        "required"
    );

    // /ingest's failures of the whole request are OperationOutcomes too.
    let mut r = agent
        .post(&server.url("/ingest"))
        .send(&[0xff_u8, 0xfe, 0x00][..])
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo: Value = r.body_mut().read_json().unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
    assert_eq!(oo["issue"][0]["code"], "structure", "{oo}");
}

#[test]
fn the_fhir_surface_answers_with_operation_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let server = Server::start(&data, &[]);
    let agent = http();

    let mut r = agent.get(&server.url("/fhir/metadata")).call().unwrap();
    assert_eq!(r.status(), 200);
    let cs: Value = r.body_mut().read_json().unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert!(resources.len() >= 140);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec![
            "read",
            "vread",
            "create",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "search-type"
        ],
        "only what is built is listed"
    );
    assert_eq!(patient["conditionalCreate"], true);
    assert_eq!(patient["conditionalDelete"], "single");
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "family",
        "birthdate",
        "identifier",
        "organization",
        "_id",
        "_lastUpdated",
        "_tag",
    ] {
        assert!(params.contains(&p), "Patient lists {p}");
    }
    assert!(
        !params.contains(&"_text"),
        "_text is not built, so it is not listed"
    );
    assert_eq!(patient["operation"][0]["name"], "everything");
    let location = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Location")
        .unwrap();
    assert!(
        !location["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "near"),
        "near is not built, so it is not listed"
    );

    for (path, status, code) in [
        ("/fhir/Patient/nope", 404, "not-found"),
        ("/fhir/Patient/bad%20id", 400, "invalid"),
        ("/fhir/Frobnicator/1", 404, "not-supported"),
        ("/fhir/Patient/x?_format=xml", 415, "not-supported"),
    ] {
        let mut r = agent.get(&server.url(path)).call().unwrap();
        assert_eq!(r.status(), status, "{path}");
        let oo: Value = r.body_mut().read_json().unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(oo["issue"][0]["code"], code, "{path}");
    }
    // What is not built says so: terminology modifiers, and `near` (unknown, so an
    // error under Prefer: handling=strict).
    for (path, strict) in [
        ("/fhir/Observation?code:in=http://example.org/vs", false),
        ("/fhir/Location?near=42.2|-83.7|10|km", true),
    ] {
        let mut request = agent.get(&server.url(path));
        if strict {
            request = request.header("Prefer", "handling=strict");
        }
        let mut r = request.call().unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let oo: Value = r.body_mut().read_json().unwrap();
        assert_eq!(oo["issue"][0]["code"], "not-supported", "{path}");
    }
    // A method a route does not take is 405, with an OperationOutcome.
    let mut r = agent
        .post(&server.url("/fhir/Patient/x"))
        .send("{}")
        .unwrap();
    assert_eq!(r.status(), 405);
    let oo: Value = r.body_mut().read_json().unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
}

#[test]
fn serve_demo_loads_demo_data_into_an_empty_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let server = Server::start(&data, &["--demo", "--demo-patients", "3"]);
    let agent = http();
    let mut r = agent
        .post(&server.url("/sql"))
        .send("SELECT id FROM fhir.patient ORDER BY id LIMIT 1")
        .unwrap();
    let rows: Value = r.body_mut().read_json().unwrap();
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let r = agent
        .get(&server.url(&format!("/fhir/Patient/{id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        sql_count_http(&agent, &server, "SELECT count(*) AS n FROM fhir.patient"),
        3
    );
}

fn sql_count_http(agent: &ureq::Agent, server: &Server, q: &str) -> i64 {
    let mut r = agent.post(&server.url("/sql")).send(q).unwrap();
    r.body_mut().read_json::<Value>().unwrap()[0]["n"]
        .as_i64()
        .unwrap()
}

#[test]
fn reads_by_id_find_the_right_version_across_delta_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    // Two bulk loads: two Delta files holding versions 1 and 2 of the same resource,
    // among others the bloom filters must rule out.
    for (round, gender) in [(1, "female"), (2, "other")] {
        let file = dir.path().join(format!("round{round}.ndjson"));
        let mut lines: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"resourceType":"Patient","id":"r{round}-{i}"}}"#))
            .collect();
        lines.push(format!(
            r#"{{"resourceType":"Patient","id":"target","gender":"{gender}"}}"#
        ));
        std::fs::write(&file, lines.join("\n")).unwrap();
        medlake_e2e::medlake(&data, &["ingest", "-q", file.to_str().unwrap()]);
    }
    let server = Server::start(&data, &[]);
    let agent = http();
    let mut r = agent
        .get(&server.url("/fhir/Patient/target"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["gender"], "other");
    assert_eq!(v["meta"]["versionId"], "2");
    let mut r = agent
        .get(&server.url("/fhir/Patient/target/_history/1"))
        .call()
        .unwrap();
    let v1: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v1["gender"], "female");
    let r = agent
        .get(&server.url("/fhir/Patient/target/_history/3"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut r = agent
        .get(&server.url("/fhir/Patient/r1-77"))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_json::<Value>().unwrap()["id"], "r1-77");
    let r = agent.get(&server.url("/fhir/Patient/r3-1")).call().unwrap();
    assert_eq!(r.status(), 404);
}
