//! The FHIR REST write interactions over HTTP against the built server: create, update,
//! If-Match, delete, history, Prefer, and SQL seeing every REST write at once.

use medlake_e2e::{Server, http};
use serde_json::{Value, json};

const FHIR_JSON: &str = "application/fhir+json";

fn json_body(r: &mut ureq::http::Response<ureq::Body>) -> Value {
    r.body_mut().read_json().unwrap()
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn sql(agent: &ureq::Agent, server: &Server, q: &str) -> Vec<Value> {
    let mut r = agent.post(&server.url("/sql")).send(q).unwrap();
    assert_eq!(r.status(), 200, "{q}");
    serde_json::from_value(json_body(&mut r)).unwrap()
}

#[test]
fn create_read_update_delete_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();

    // create: the server picks the id, answers 201 with Location and ETag.
    let patient = json!({
        "resourceType": "Patient",
        "id": "ignored-on-create",
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1984-03-07"
    });
    let mut r = agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .send(patient.to_string())
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = header(&r, "location");
    assert_eq!(header(&r, "etag"), "W/\"1\"");
    assert!(!header(&r, "last-modified").is_empty());
    let created = json_body(&mut r);
    let id = created["id"].as_str().unwrap().to_string();
    assert_ne!(id, "ignored-on-create");
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(
        location,
        server.url(&format!("/fhir/Patient/{id}/_history/1"))
    );

    // SQL sees it at once, through the same tables.
    let rows = sql(
        &agent,
        &server,
        &format!(
            "SELECT version_id, json_get_str(resource, 'birthDate') AS birth FROM fhir.patient WHERE id = '{id}'"
        ),
    );
    assert_eq!(rows, vec![json!({"version_id": 1, "birth": "1984-03-07"})]);

    // update: 200, version 2; the old version stays readable.
    let mut v2 = created.clone();
    v2["gender"] = json!("other");
    let mut r = agent
        .put(&server.url(&format!("/fhir/Patient/{id}")))
        .header("Content-Type", FHIR_JSON)
        .header("If-Match", "W/\"1\"")
        .send(v2.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "W/\"2\"");
    assert_eq!(json_body(&mut r)["meta"]["versionId"], "2");

    // If-Match with a stale version: 412, nothing written.
    let mut r = agent
        .put(&server.url(&format!("/fhir/Patient/{id}")))
        .header("Content-Type", FHIR_JSON)
        .header("If-Match", "W/\"1\"")
        .send(v2.to_string())
        .unwrap();
    assert_eq!(r.status(), 412);
    let oo = json_body(&mut r);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("version 2"),
        "{oo}"
    );

    let mut r = agent
        .get(&server.url(&format!("/fhir/Patient/{id}/_history/1")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_body(&mut r)["gender"], "female");
    let mut r = agent
        .get(&server.url(&format!("/fhir/Patient/{id}")))
        .call()
        .unwrap();
    assert_eq!(json_body(&mut r)["gender"], "other");

    // delete: 204; then read is 410 Gone, and SQL's current view drops it.
    let r = agent
        .delete(&server.url(&format!("/fhir/Patient/{id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);
    let marker = header(&r, "etag");
    assert!(marker.starts_with("W/\""), "{marker}");
    let mut r = agent
        .get(&server.url(&format!("/fhir/Patient/{id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 410);
    // The 410 names the delete marker's version, as HAPI's does.
    assert_eq!(header(&r, "etag"), marker);
    assert!(!header(&r, "last-modified").is_empty());
    assert_eq!(json_body(&mut r)["resourceType"], "OperationOutcome");
    let rows = sql(
        &agent,
        &server,
        &format!("SELECT count(*) AS n FROM fhir.patient WHERE id = '{id}'"),
    );
    assert_eq!(rows[0]["n"], 0);
    let rows = sql(
        &agent,
        &server,
        &format!(
            "SELECT version_id, deleted FROM fhir_history.patient WHERE id = '{id}' ORDER BY version_id"
        ),
    );
    assert_eq!(
        rows,
        vec![
            json!({"version_id": 1, "deleted": false}),
            json!({"version_id": 2, "deleted": false}),
            json!({"version_id": 3, "deleted": true}),
        ]
    );
    // Deleting again writes nothing.
    let r = agent
        .delete(&server.url(&format!("/fhir/Patient/{id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);

    // Instance history: newest first, with the delete as an entry without a resource.
    let mut r = agent
        .get(&server.url(&format!("/fhir/Patient/{id}/_history")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let bundle = json_body(&mut r);
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 3);
    let entries = bundle["entry"].as_array().unwrap();
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "POST"]);
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["resource"]["meta"]["versionId"], "2");
    assert_eq!(entries[2]["response"]["etag"], "W/\"1\"");

    // create-on-update with a client id: 201.
    let mut r = agent
        .put(&server.url("/fhir/Patient/client-chosen-1"))
        .header("Content-Type", FHIR_JSON)
        .send(
            json!({"resourceType": "Patient", "id": "client-chosen-1", "active": true}).to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(json_body(&mut r)["meta"]["versionId"], "1");
}

#[test]
fn history_pages_stay_stable_while_writes_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    for i in 0..7 {
        let r = agent
            .put(&server.url(&format!("/fhir/Observation/obs-{i}")))
            .header("Content-Type", FHIR_JSON)
            .send(
                json!({
                    "resourceType": "Observation",
                    "id": format!("obs-{i}"),
                    "status": "final",
                    "code": {"text": "heart rate"},
                    "valueQuantity": {"value": 60 + i, "unit": "/min"}
                })
                .to_string(),
            )
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut r = agent
        .get(&server.url("/fhir/Observation/_history?_count=3"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = json_body(&mut r);
    let ids = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let page1 = ids(&first);
    assert_eq!(page1.len(), 3);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_string();

    // A new write lands on top; the next page is unaffected by it.
    agent
        .post(&server.url("/fhir/Observation"))
        .header("Content-Type", FHIR_JSON)
        .send(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
                .to_string(),
        )
        .unwrap();
    let mut r = agent.get(&next).call().unwrap();
    assert_eq!(r.status(), 200);
    let page2 = ids(&json_body(&mut r));
    assert_eq!(page2.len(), 3);
    assert!(
        page2.iter().all(|id| !page1.contains(id)),
        "{page1:?} {page2:?}"
    );

    // System history sees every type; _since in the future sees nothing.
    let mut r = agent
        .get(&server.url("/fhir/_history?_count=100"))
        .call()
        .unwrap();
    assert_eq!(json_body(&mut r)["entry"].as_array().unwrap().len(), 8);
    let mut r = agent
        .get(&server.url("/fhir/_history?_since=2999-01-01T00:00:00Z"))
        .call()
        .unwrap();
    let empty = json_body(&mut r);
    assert_eq!(empty["resourceType"], "Bundle", "{empty}");
    assert!(empty.get("entry").is_none(), "no empty arrays in FHIR JSON");
    let r = agent
        .get(&server.url("/fhir/_history?_since=yesterday"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn bad_writes_get_operation_outcomes_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let put = |path: &str, content_type: &str, body: &str| {
        agent
            .put(&server.url(path))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap()
    };
    for (path, content_type, body, status) in [
        ("/fhir/Patient/a", FHIR_JSON, "{not json", 400),
        (
            "/fhir/Patient/a",
            FHIR_JSON,
            r#"{"resourceType":"Observation","id":"a"}"#,
            400,
        ),
        (
            "/fhir/Patient/a",
            FHIR_JSON,
            r#"{"resourceType":"Patient","id":"b"}"#,
            400,
        ),
        (
            "/fhir/Patient/a",
            FHIR_JSON,
            r#"{"resourceType":"Patient"}"#,
            400,
        ),
        (
            "/fhir/Patient/a",
            FHIR_JSON,
            r#"{"resourceType":"Patient","id":"a","gender":7}"#,
            400,
        ),
        (
            "/fhir/Patient/a",
            FHIR_JSON,
            r#"{"resourceType":"Patient","id":"a","shoeSize":43}"#,
            400,
        ),
        ("/fhir/Patient/a", "application/fhir+xml", "<Patient/>", 415),
    ] {
        let mut r = put(path, content_type, body);
        assert_eq!(r.status(), status, "{body}");
        let oo = json_body(&mut r);
        assert_eq!(oo["resourceType"], "OperationOutcome", "{body}");
        assert_eq!(oo["issue"][0]["severity"], "error", "{body}");
    }
    // Nothing of that landed.
    let r = agent.get(&server.url("/fhir/Patient/a")).call().unwrap();
    assert_eq!(r.status(), 404);

    // Prefer: return=minimal has no body; return=OperationOutcome has one.
    let mut r = agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("Prefer", "return=minimal")
        .send(r#"{"resourceType":"Patient"}"#)
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(!header(&r, "location").is_empty());
    assert_eq!(r.body_mut().read_to_string().unwrap(), "");
    let mut r = agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("Prefer", "return=OperationOutcome")
        .send(r#"{"resourceType":"Patient"}"#)
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(json_body(&mut r)["resourceType"], "OperationOutcome");

    // Conditional create: the first creates, the second finds it and writes nothing.
    let with_identifier = r#"{"resourceType":"Patient","identifier":[{"system":"x","value":"1"}]}"#;
    let create = || {
        agent
            .post(&server.url("/fhir/Patient"))
            .header("Content-Type", FHIR_JSON)
            .header("If-None-Exist", "identifier=x|1")
            .send(with_identifier)
            .unwrap()
    };
    let mut first = create();
    assert_eq!(first.status(), 201);
    let id = json_body(&mut first)["id"].as_str().unwrap().to_string();
    let mut second = create();
    assert_eq!(second.status(), 200);
    assert_eq!(json_body(&mut second)["id"], id.as_str());
    assert_eq!(header(&second, "etag"), "W/\"1\"");
    // A condition that finds several is 412; an unknown parameter in one is 400.
    agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .send(with_identifier)
        .unwrap();
    let mut r = agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "identifier=x|1")
        .send(with_identifier)
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(json_body(&mut r)["issue"][0]["code"], "multiple-matches");
    let r = agent
        .post(&server.url("/fhir/Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "shoe-size=9")
        .send(with_identifier)
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn json_patch_applies_atomically_and_is_checked_like_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let r = agent
        .put(&server.url("/fhir/Patient/p1"))
        .header("Content-Type", FHIR_JSON)
        .send(
            json!({"resourceType": "Patient", "id": "p1", "gender": "female", "active": true})
                .to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    let patch = |body: Value, content_type: &str| {
        agent
            .patch(&server.url("/fhir/Patient/p1"))
            .header("Content-Type", content_type)
            .send(body.to_string())
            .unwrap()
    };
    const JSON_PATCH: &str = "application/json-patch+json";

    let mut r = patch(
        json!([
            {"op": "test", "path": "/gender", "value": "female"},
            {"op": "replace", "path": "/gender", "value": "other"},
            {"op": "add", "path": "/birthDate", "value": "1990-05-01"},
            {"op": "remove", "path": "/active"}
        ]),
        JSON_PATCH,
    );
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "W/\"2\"");
    let patched = json_body(&mut r);
    assert_eq!(patched["gender"], "other");
    assert_eq!(patched["birthDate"], "1990-05-01");
    assert!(patched.get("active").is_none());
    assert_eq!(patched["meta"]["versionId"], "2");

    // A failing test op: 422, and nothing of the patch lands.
    let mut r = patch(
        json!([
            {"op": "replace", "path": "/gender", "value": "male"},
            {"op": "test", "path": "/gender", "value": "female"}
        ]),
        JSON_PATCH,
    );
    assert_eq!(r.status(), 422);
    assert_eq!(json_body(&mut r)["resourceType"], "OperationOutcome");
    // A result that is not valid R4: 422.
    let r = patch(
        json!([{"op": "add", "path": "/shoeSize", "value": 43}]),
        JSON_PATCH,
    );
    assert_eq!(r.status(), 422);
    // Changing the id: 422.
    let r = patch(
        json!([{"op": "replace", "path": "/id", "value": "p2"}]),
        JSON_PATCH,
    );
    assert_eq!(r.status(), 422);
    // Not a patch document: 400.
    let r = patch(json!({"op": "replace"}), JSON_PATCH);
    assert_eq!(r.status(), 400);
    // A Parameters body that is no FHIRPath Patch: 400.
    let r = patch(
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation"}]}),
        FHIR_JSON,
    );
    assert_eq!(r.status(), 400);

    let mut r = agent.get(&server.url("/fhir/Patient/p1")).call().unwrap();
    let current = json_body(&mut r);
    assert_eq!(
        current["meta"]["versionId"], "2",
        "failed patches wrote nothing"
    );
    assert_eq!(current["gender"], "other");

    // FHIRPath Patch: replace a primitive and add a name.
    let fhirpath_patch = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.gender"},
                {"name": "value", "valueCode": "female"}
            ]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "name"},
                {"name": "value", "part": [
                    {"name": "family", "valueString": "Adeyemi"}
                ]}
            ]}
        ]
    });
    let mut r = patch(fhirpath_patch, FHIR_JSON);
    assert_eq!(r.status(), 200);
    let patched = json_body(&mut r);
    assert_eq!(patched["gender"], "female");
    assert_eq!(patched["name"][0]["family"], "Adeyemi");
    assert_eq!(patched["meta"]["versionId"], "3");
    // A FHIRPath Patch that adds an element Patient does not have: 422, nothing written.
    let r = patch(
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "shoeSize"},
            {"name": "value", "valueInteger": 43}
        ]}]}),
        FHIR_JSON,
    );
    assert_eq!(r.status(), 422);
    // An operation type FHIRPath Patch does not have: 400.
    let r = patch(
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "frobnicate"},
            {"name": "path", "valueString": "Patient"}
        ]}]}),
        FHIR_JSON,
    );
    assert_eq!(r.status(), 400);

    // A stale If-Match: 412. Patching what does not exist: 404.
    let r = agent
        .patch(&server.url("/fhir/Patient/p1"))
        .header("Content-Type", JSON_PATCH)
        .header("If-Match", "W/\"1\"")
        .send(json!([{"op": "remove", "path": "/gender"}]).to_string())
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = agent
        .patch(&server.url("/fhir/Patient/nobody"))
        .header("Content-Type", JSON_PATCH)
        .send("[]")
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn post_bundle(
    agent: &ureq::Agent,
    server: &Server,
    bundle: Value,
) -> ureq::http::Response<ureq::Body> {
    agent
        .post(&server.url("/fhir"))
        .header("Content-Type", FHIR_JSON)
        .send(bundle.to_string())
        .unwrap()
}

#[test]
fn a_transaction_is_all_or_nothing_and_rewrites_urn_uuid_references() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let r = agent
        .put(&server.url("/fhir/Practitioner/dr-1"))
        .header("Content-Type", FHIR_JSON)
        .send(json!({"resourceType": "Practitioner", "id": "dr-1", "active": true}).to_string())
        .unwrap();
    assert_eq!(r.status(), 201);
    let patient_url = "urn:uuid:8f6a1a1e-3b7c-4e0a-9d7e-2a4b6c8d0e1f";
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3f0d4e-1111-4222-8333-944455556666",
                "resource": {"resourceType": "Observation", "status": "final",
                              "code": {"text": "weight"}, "subject": {"reference": patient_url}},
                "request": {"method": "POST", "url": "Observation"}
            },
            {"request": {"method": "GET", "url": "Practitioner/dr-1"}},
            {
                "fullUrl": patient_url,
                "resource": {"resourceType": "Patient", "name": [{"family": "Nakamura"}]},
                "request": {"method": "POST", "url": "Patient"}
            },
            {"request": {"method": "DELETE", "url": "Practitioner/dr-1"}}
        ]
    });
    let mut r = post_bundle(&agent, &server, transaction);
    assert_eq!(r.status(), 200);
    let response = json_body(&mut r);
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    // Entries answer in request order; the GET ran after the DELETE.
    assert_eq!(
        statuses,
        vec!["201 Created", "410 Gone", "201 Created", "204 No Content"]
    );
    let patient_id = entries[2]["resource"]["id"].as_str().unwrap().to_string();
    assert!(
        entries[2]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Patient/{patient_id}/_history/1"))
    );
    assert_eq!(
        entries[0]["resource"]["subject"]["reference"],
        format!("Patient/{patient_id}"),
        "the urn:uuid reference points at the new Patient"
    );
    let r = agent
        .get(&server.url("/fhir/Practitioner/dr-1"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 410);

    // One bad entry: nothing of the transaction lands.
    let count = |agent: &ureq::Agent| -> i64 {
        sql(
            agent,
            &server,
            "SELECT count(*) AS n FROM fhir_history.patient",
        )[0]["n"]
            .as_i64()
            .unwrap()
    };
    let before = count(&agent);
    let bad = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "active": true},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": "x", "shoeSize": 43},
             "request": {"method": "PUT", "url": "Patient/x"}}
        ]
    });
    let mut r = post_bundle(&agent, &server, bad);
    assert_eq!(r.status(), 400);
    let oo = json_body(&mut r);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("entry 1"),
        "{oo}"
    );
    assert_eq!(count(&agent), before);

    // A stale ifMatch fails the whole transaction with 412.
    let stale = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "active": true},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": patient_id, "active": false},
             "request": {"method": "PUT", "url": format!("Patient/{patient_id}"), "ifMatch": "W/\"7\""}}
        ]
    });
    let r = post_bundle(&agent, &server, stale);
    assert_eq!(r.status(), 412);
    assert_eq!(count(&agent), before);

    // A PATCH entry: a Binary holding a JSON Patch.
    let json_patch = json!([{"op": "add", "path": "/gender", "value": "unknown"}]).to_string();
    let encoded = base64_encode(json_patch.as_bytes());
    let patching = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                "data": encoded},
                   "request": {"method": "PATCH", "url": format!("Patient/{patient_id}")}}]
    });
    let mut r = post_bundle(&agent, &server, patching);
    assert_eq!(r.status(), 200);
    let response = json_body(&mut r);
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(response["entry"][0]["resource"]["gender"], "unknown");

    // Conditional references and conditional entries are resolved by search first.
    let conditional = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "mrn", "value": "1"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=mrn|1"}},
            {"resource": {"resourceType": "Practitioner", "identifier": [{"system": "npi", "value": "7"}],
                          "name": [{"family": "Osei"}]},
             "request": {"method": "PUT", "url": "Practitioner?identifier=npi|7"}}
        ]
    });
    let mut r = post_bundle(&agent, &server, conditional.clone());
    assert_eq!(r.status(), 200);
    let first = json_body(&mut r);
    let statuses: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201 Created", "201 Created"]);
    // The same transaction again finds both and creates nothing.
    let mut r = post_bundle(&agent, &server, conditional);
    let again = json_body(&mut r);
    let statuses: Vec<&str> = again["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["200 OK", "200 OK"]);
    assert_eq!(
        again["entry"][0]["resource"]["id"],
        first["entry"][0]["resource"]["id"]
    );
    let observation = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                 "subject": {"reference": "Patient?identifier=mrn|1"}},
                   "request": {"method": "POST", "url": "Observation"}}]
    });
    let mut r = post_bundle(&agent, &server, observation);
    assert_eq!(r.status(), 200);
    let created = json_body(&mut r);
    let patient_id = first["entry"][0]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        created["entry"][0]["resource"]["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    // A conditional reference that finds nothing fails the whole transaction.
    let dangling = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                 "subject": {"reference": "Patient?identifier=mrn|nobody"}},
                   "request": {"method": "POST", "url": "Observation"}}]
    });
    let r = post_bundle(&agent, &server, dangling);
    assert_eq!(r.status(), 412);
}

#[test]
fn a_batch_answers_each_entry_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "b1", "active": true},
             "request": {"method": "PUT", "url": "Patient/b1"}},
            {"resource": {"resourceType": "Patient", "id": "b2", "shoeSize": 1},
             "request": {"method": "PUT", "url": "Patient/b2"}},
            {"resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.active"},
                {"name": "value", "valueBoolean": false}]}]},
             "request": {"method": "PATCH", "url": "Patient/b1"}},
            {"request": {"method": "GET", "url": "Patient/nobody"}},
            {"request": {"method": "GET", "url": "Patient?name=x"}}
        ]
    });
    let mut r = post_bundle(&agent, &server, batch);
    assert_eq!(r.status(), 200);
    let response = json_body(&mut r);
    assert_eq!(response["type"], "batch-response");
    let entries = response["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "201 Created",
            "400 Bad Request",
            "200 OK",
            "404 Not Found",
            "200 OK"
        ]
    );
    assert_eq!(entries[4]["resource"]["type"], "searchset");
    assert_eq!(
        entries[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    let r = agent.get(&server.url("/fhir/Patient/b1")).call().unwrap();
    assert_eq!(r.status(), 200);
    let r = agent.get(&server.url("/fhir/Patient/b2")).call().unwrap();
    assert_eq!(r.status(), 404);

    // Not a batch or transaction: 400.
    let r = post_bundle(
        &agent,
        &server,
        json!({"resourceType": "Bundle", "type": "collection"}),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn summary_and_elements_cut_reads_down_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let r = agent
        .put(&server.url("/fhir/Patient/s1"))
        .header("Content-Type", FHIR_JSON)
        .send(
            json!({
                "resourceType": "Patient", "id": "s1",
                "name": [{"family": "Osei"}], "gender": "male",
                "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
                "maritalStatus": {"text": "Married"}
            })
            .to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 201);

    let mut r = agent
        .get(&server.url("/fhir/Patient/s1?_summary=true"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary = json_body(&mut r);
    assert_eq!(summary["name"][0]["family"], "Osei");
    assert_eq!(summary["gender"], "male");
    assert!(
        summary.get("photo").is_none(),
        "photo is not a summary element"
    );
    assert!(summary.get("maritalStatus").is_none());
    assert_eq!(summary["meta"]["tag"][0]["code"], "SUBSETTED");

    let mut r = agent
        .get(&server.url("/fhir/Patient/s1/_history/1?_elements=gender"))
        .call()
        .unwrap();
    let only = json_body(&mut r);
    let mut keys: Vec<&str> = only
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["gender", "id", "meta", "resourceType"]);

    let mut r = agent
        .get(&server.url("/fhir/Patient/s1/_history?_elements=name"))
        .call()
        .unwrap();
    let history = json_body(&mut r);
    assert!(history["entry"][0]["resource"].get("gender").is_none());
    assert_eq!(history["entry"][0]["resource"]["name"][0]["family"], "Osei");

    let r = agent
        .get(&server.url("/fhir/Patient/s1?_summary=count"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut r = agent.get(&server.url("/fhir/Patient/s1")).call().unwrap();
    let full = json_body(&mut r);
    assert!(full.get("photo").is_some());
    assert!(
        full["meta"].get("tag").is_none(),
        "a full read is not tagged"
    );
}

/// Standard base64, for Binary resources (small enough not to need a crate here).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
