//! SQL-on-FHIR views in the FHIR API: ViewDefinition stored, searched, updated and
//! deleted like any resource, and `$viewdefinition-run` (and `$run`) over the lake and
//! over resources sent with the request, in every output format, with its filters and
//! its errors.

use medlake_e2e::{Server, http};
use serde_json::{Value, json};

const FHIR_JSON: &str = "application/fhir+json";

fn body_text(r: &mut ureq::http::Response<ureq::Body>) -> String {
    r.body_mut().read_to_string().unwrap()
}

fn body_json(r: &mut ureq::http::Response<ureq::Body>) -> Value {
    serde_json::from_str(&body_text(r)).unwrap()
}

fn content_type(r: &ureq::http::Response<ureq::Body>) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn put(agent: &ureq::Agent, server: &Server, resource: &Value) -> u16 {
    let path = format!(
        "/fhir/{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let r = agent
        .put(&server.url(&path))
        .header("Content-Type", FHIR_JSON)
        .send(resource.to_string())
        .unwrap();
    r.status().as_u16()
}

fn get(agent: &ureq::Agent, server: &Server, path: &str) -> ureq::http::Response<ureq::Body> {
    agent.get(&server.url(path)).call().unwrap()
}

fn post_parameters(
    agent: &ureq::Agent,
    server: &Server,
    path: &str,
    parameters: Vec<Value>,
) -> ureq::http::Response<ureq::Body> {
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    agent
        .post(&server.url(path))
        .header("Content-Type", FHIR_JSON)
        .send(body.to_string())
        .unwrap()
}

/// Rows of a JSON answer, sorted by their text (a scan has no order).
fn sorted(rows: Value) -> Vec<Value> {
    let mut rows = rows.as_array().unwrap().clone();
    rows.sort_by_key(Value::to_string);
    rows
}

/// The first issue of an OperationOutcome: (code, diagnostics, expression).
fn issue(outcome: &Value) -> (String, String, String) {
    let i = &outcome["issue"][0];
    (
        i["code"].as_str().unwrap_or("").to_string(),
        i["diagnostics"].as_str().unwrap_or("").to_string(),
        i["expression"][0].as_str().unwrap_or("").to_string(),
    )
}

fn patient_view() -> Value {
    json!({
        "resourceType": "ViewDefinition",
        "url": "http://example.org/views/patient_names",
        "name": "patient_names",
        "status": "active",
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"}]},
            {"forEach": "name", "column": [
                {"name": "family", "path": "family", "type": "string"}
            ]}
        ]
    })
}

#[test]
fn view_definitions_are_stored_searched_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &[]);
    let agent = http();

    for r in [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Chalmers"}, {"family": "Windsor"}]}),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Okafor"}]}),
        json!({"resourceType": "Patient", "id": "p3"}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "a"},
               "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "b"},
               "subject": {"reference": "Patient/p2"}}),
    ] {
        assert_eq!(put(&agent, &server, &r), 201);
    }

    // A view the specification forbids is refused with where it is wrong.
    let mut bad = patient_view();
    bad["select"][1]["column"][0]["name"] = json!("family name");
    let mut r = agent
        .post(&server.url("/fhir/ViewDefinition"))
        .header("Content-Type", FHIR_JSON)
        .send(bad.to_string())
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, _, at) = issue(&body_json(&mut r));
    assert_eq!(code, "invalid");
    assert_eq!(at, "ViewDefinition.select[1].column[0].name");

    // Create, then find it by name, url, status and _id.
    let mut r = agent
        .post(&server.url("/fhir/ViewDefinition"))
        .header("Content-Type", FHIR_JSON)
        .send(patient_view().to_string())
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = body_json(&mut r)["id"].as_str().unwrap().to_string();
    for query in [
        "name=patient_names".to_string(),
        "url=http://example.org/views/patient_names".to_string(),
        "status=active".to_string(),
        format!("_id={id}"),
    ] {
        let mut r = get(&agent, &server, &format!("/fhir/ViewDefinition?{query}"));
        assert_eq!(r.status(), 200, "{query}");
        let bundle = body_json(&mut r);
        assert_eq!(bundle["total"], 1, "{query}: {bundle}");
        assert_eq!(bundle["entry"][0]["resource"]["id"], id.as_str());
    }
    let mut r = get(&agent, &server, "/fhir/ViewDefinition?name=other_view");
    assert_eq!(body_json(&mut r)["total"], 0);
    let mut r = get(&agent, &server, "/fhir/ViewDefinition?status=draft");
    assert_eq!(body_json(&mut r)["total"], 0);

    // Run it by id over the lake, as $run and as $viewdefinition-run.
    let expected = sorted(json!([
        {"id": "p1", "family": "Chalmers"},
        {"id": "p1", "family": "Windsor"},
        {"id": "p2", "family": "Okafor"}
    ]));
    for op in ["$run", "$viewdefinition-run"] {
        let mut r = get(&agent, &server, &format!("/fhir/ViewDefinition/{id}/{op}"));
        assert_eq!(r.status(), 200);
        assert_eq!(content_type(&r), "application/json");
        assert_eq!(sorted(body_json(&mut r)), expected);
    }
    // NDJSON and CSV, by _format and by Accept.
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_format=ndjson"),
    );
    assert_eq!(content_type(&r), "application/x-ndjson");
    let lines: Vec<Value> = body_text(&mut r)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sorted(Value::Array(lines)), expected);
    let mut r = agent
        .get(&server.url(&format!("/fhir/ViewDefinition/{id}/$run")))
        .header("Accept", "text/csv")
        .call()
        .unwrap();
    assert!(content_type(&r).starts_with("text/csv"));
    let text = body_text(&mut r);
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,family");
    lines[1..].sort();
    assert_eq!(lines[1..], ["p1,Chalmers", "p1,Windsor", "p2,Okafor"]);
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_format=csv&header=false"),
    );
    assert_eq!(body_text(&mut r).lines().count(), 3);
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_format=parquet"),
    );
    assert_eq!(r.status(), 200);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r.body_mut().as_reader(), &mut bytes).unwrap();
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));

    // _limit, patient and _since.
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_limit=2"),
    );
    assert_eq!(body_json(&mut r).as_array().unwrap().len(), 2);
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?patient=Patient/p2"),
    );
    assert_eq!(body_json(&mut r), json!([{"id": "p2", "family": "Okafor"}]));
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_since=2999-01-01T00:00:00Z"),
    );
    assert_eq!(body_json(&mut r), json!([]));
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/$run?_since=2000-01-01T00:00:00Z"),
    );
    assert_eq!(sorted(body_json(&mut r)), expected);

    // An Observation view restricted to a patient's compartment, inline, by POST.
    let obs_view = json!({"resourceType": "ViewDefinition", "resource": "Observation",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"}
    ]}]});
    let mut r = post_parameters(
        &agent,
        &server,
        "/fhir/ViewDefinition/$viewdefinition-run",
        vec![
            json!({"name": "viewResource", "resource": obs_view}),
            json!({"name": "patient", "valueReference": {"reference": "Patient/p1"}}),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(&mut r), json!([{"id": "o1", "patient": "p1"}]));
    // ... and by a Group of patients.
    assert_eq!(
        put(
            &agent,
            &server,
            &json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
                    "member": [{"entity": {"reference": "Patient/p2"}}]})
        ),
        201
    );
    let mut r = post_parameters(
        &agent,
        &server,
        "/fhir/$viewdefinition-run",
        vec![
            json!({"name": "viewResource", "resource": obs_view}),
            json!({"name": "group", "valueReference": {"reference": "Group/g1"}}),
            json!({"name": "_format", "valueCode": "json"}),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(&mut r), json!([{"id": "o2", "patient": "p2"}]));

    // Over resources sent with the request, not the lake's.
    let mut r = post_parameters(
        &agent,
        &server,
        "/fhir/ViewDefinition/$run",
        vec![
            json!({"name": "viewReference", "valueReference": {"reference": format!("ViewDefinition/{id}")}}),
            json!({"name": "resource", "resource": {"resourceType": "Patient", "id": "x1", "name": [{"family": "Inline"}]}}),
            json!({"name": "resource", "resource": {"resourceType": "Observation", "id": "x2", "status": "final", "code": {"text": "c"}}}),
            json!({"name": "_format", "valueCode": "csv"}),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(body_text(&mut r), "id,family\r\nx1,Inline\r\n");
    // By its canonical url.
    let mut r = post_parameters(
        &agent,
        &server,
        "/fhir/ViewDefinition/$run",
        vec![
            json!({"name": "viewReference", "valueReference": {"reference": "http://example.org/views/patient_names"}}),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(sorted(body_json(&mut r)), expected);

    // Errors are OperationOutcomes with the statuses of the IG.
    let cases: Vec<(ureq::http::Response<ureq::Body>, u16, &str)> = vec![
        (
            get(&agent, &server, "/fhir/ViewDefinition/nope/$run"),
            404,
            "not-found",
        ),
        (
            get(
                &agent,
                &server,
                &format!("/fhir/ViewDefinition/{id}/$run?_format=xml"),
            ),
            400,
            "not-supported",
        ),
        (
            get(
                &agent,
                &server,
                &format!("/fhir/ViewDefinition/{id}/$run?source=s3://x"),
            ),
            400,
            "not-supported",
        ),
        (
            get(
                &agent,
                &server,
                &format!("/fhir/ViewDefinition/{id}/$run?patient=Patient/nobody"),
            ),
            400,
            "not-found",
        ),
        (
            get(
                &agent,
                &server,
                &format!("/fhir/ViewDefinition/{id}/$run?_since=yesterday"),
            ),
            400,
            "invalid",
        ),
        (
            post_parameters(&agent, &server, "/fhir/ViewDefinition/$run", vec![]),
            400,
            "required",
        ),
        (
            post_parameters(
                &agent,
                &server,
                "/fhir/ViewDefinition/$run",
                vec![
                    json!({"name": "viewResource", "resource": {"resourceType": "ViewDefinition",
                    "resource": "Patient", "select": [{"column": [{"name": "id", "path": "id.("}]}]}}),
                ],
            ),
            422,
            "invalid",
        ),
        (
            // A column that is not a collection meets several values.
            post_parameters(
                &agent,
                &server,
                "/fhir/ViewDefinition/$run",
                vec![
                    json!({"name": "viewResource", "resource": {"resourceType": "ViewDefinition",
                    "resource": "Patient", "select": [{"column": [{"name": "f", "path": "name.family"}]}]}}),
                ],
            ),
            422,
            "processing",
        ),
        (
            post_parameters(
                &agent,
                &server,
                "/fhir/ViewDefinition/$run",
                vec![
                    json!({"name": "viewResource", "resource": {"resourceType": "ViewDefinition",
                        "resource": "Medication", "select": [{"column": [{"name": "id", "path": "id"}]}]}}),
                    json!({"name": "patient", "valueString": "Patient/p1"}),
                ],
            ),
            400,
            "not-supported",
        ),
    ];
    for (i, (mut r, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(r.status(), status, "case {i}");
        assert!(content_type(&r).starts_with(FHIR_JSON), "case {i}");
        let outcome = body_json(&mut r);
        assert_eq!(issue(&outcome).0, code, "case {i}: {outcome}");
    }

    // Update the view: the next run has the new column.
    let mut updated = patient_view();
    updated["id"] = json!(id);
    updated["select"][1]["column"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "n_given", "path": "given.count()", "type": "integer"}));
    assert_eq!(put(&agent, &server, &updated), 200);
    let mut r = get(&agent, &server, &format!("/fhir/ViewDefinition/{id}/$run"));
    assert_eq!(
        sorted(body_json(&mut r)),
        sorted(json!([
            {"id": "p1", "family": "Chalmers", "n_given": 0},
            {"id": "p1", "family": "Windsor", "n_given": 0},
            {"id": "p2", "family": "Okafor", "n_given": 0}
        ]))
    );
    // The first version is still readable and runnable by reference.
    let mut r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/_history"),
    );
    assert_eq!(body_json(&mut r)["total"], 2);
    let mut r = post_parameters(
        &agent,
        &server,
        "/fhir/ViewDefinition/$run",
        vec![
            json!({"name": "viewReference", "valueString": format!("ViewDefinition/{id}/_history/1")}),
        ],
    );
    assert_eq!(sorted(body_json(&mut r)), expected);

    // The CapabilityStatement says what works.
    let mut r = get(&agent, &server, "/fhir/metadata");
    let cs = body_json(&mut r);
    let vd = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "ViewDefinition")
        .unwrap()
        .clone();
    let ops: Vec<&str> = vd["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"viewdefinition-run"), "{vd}");
    let params: Vec<&str> = vd["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["name", "url", "status", "_id", "_lastUpdated"] {
        assert!(params.contains(&p), "{p}: {vd}");
    }

    // After a restart the stored views are still there, found and run.
    server.stop();
    let server = Server::start(&lake, &[]);
    let mut r = get(&agent, &server, "/fhir/ViewDefinition?name=patient_names");
    assert_eq!(body_json(&mut r)["total"], 1);
    let mut r = get(&agent, &server, &format!("/fhir/ViewDefinition/{id}/$run"));
    assert_eq!(body_json(&mut r).as_array().unwrap().len(), 3);

    // Deleted, it is gone for $run too.
    let r = agent
        .delete(&server.url(&format!("/fhir/ViewDefinition/{id}")))
        .call()
        .unwrap();
    assert!(r.status().is_success());
    let r = get(&agent, &server, &format!("/fhir/ViewDefinition/{id}/$run"));
    assert_eq!(r.status(), 404);
    // Paths beside the operation still route as before.
    let r = get(
        &agent,
        &server,
        &format!("/fhir/ViewDefinition/{id}/_history"),
    );
    assert_eq!(r.status(), 200);
    let r = get(&agent, &server, "/fhir/Patient/p1/_history/1");
    assert_eq!(r.status(), 200);
    server.stop();
}
