//! FHIR search over HTTP against the built server: parameter types, prefixes and
//! modifiers, chains and `_has`, includes, sorting and paging links that stay stable
//! while resources are written, system and compartment searches, `$everything`, POST
//! `_search`, conditional update and delete, and a search index rebuilt after a restart.

use medlake_e2e::{Server, http, medlake};
use serde_json::{Value, json};

const FHIR_JSON: &str = "application/fhir+json";

fn get(agent: &ureq::Agent, url: &str) -> (u16, Value) {
    let mut r = agent.get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap())
}

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn search(agent: &ureq::Agent, server: &Server, query: &str) -> Vec<String> {
    let (status, bundle) = get(agent, &server.url(&format!("/fhir/{query}")));
    assert_eq!(status, 200, "{query}: {bundle}");
    assert_eq!(bundle["type"], "searchset");
    ids(&bundle, "match")
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}

fn transaction(agent: &ureq::Agent, server: &Server, entries: Vec<Value>) {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries.into_iter().map(|r| {
            let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            json!({"resource": r, "request": {"method": "PUT", "url": url}})
        }).collect::<Vec<_>>()
    });
    let r = agent
        .post(&server.url("/fhir"))
        .header("Content-Type", FHIR_JSON)
        .send(bundle.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn clinic(agent: &ureq::Agent, server: &Server) {
    let mut resources = vec![
        json!({"resourceType": "Organization", "id": "org1", "name": "St. Mary's Clinic"}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
    ];
    for (id, family, birth, gender) in [
        ("pat1", "Nguyễn", "1950-02-03", "male"),
        ("pat2", "Ngata", "1988-07-19", "female"),
        ("pat3", "Olsen", "2003-11-30", "female"),
    ] {
        resources.push(json!({"resourceType": "Patient", "id": id,
            "name": [{"family": family}], "birthDate": birth, "gender": gender,
            "identifier": [{"system": "urn:mrn", "value": format!("MRN-{id}")}],
            "managingOrganization": {"reference": "Organization/org1"},
            "generalPractitioner": [{"reference": "Practitioner/dr1"}]}));
        resources.push(
            json!({"resourceType": "Encounter", "id": format!("enc-{id}"),
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{id}")},
            "period": {"start": "2024-05-01T09:00:00Z", "end": "2024-05-01T10:00:00Z"}}),
        );
        for (n, (code, value, day)) in [
            ("2339-0", 5.4, "01"),
            ("2339-0", 9.8, "02"),
            ("8867-4", 71.0, "03"),
        ]
        .into_iter()
        .enumerate()
        {
            resources.push(json!({"resourceType": "Observation", "id": format!("obs-{id}-{n}"),
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": format!("Patient/{id}")},
                "encounter": {"reference": format!("Encounter/enc-{id}")},
                "effectiveDateTime": format!("2024-05-{day}T09:30:00Z"),
                "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}));
        }
    }
    transaction(agent, server, resources);
}

#[test]
fn searches_by_every_parameter_type_with_prefixes_modifiers_chains_and_includes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    clinic(&agent, &server);
    let s = |q: &str| search(&agent, &server, q);

    // string: prefix, accents and case folded; :exact; :contains
    assert_eq!(s("Patient?family=nguyen"), ["Patient/pat1"]);
    assert_eq!(
        s("Patient?family=NG&_sort=family"),
        ["Patient/pat2", "Patient/pat1"]
    );
    assert_eq!(s("Patient?family:exact=Nguyen"), Vec::<String>::new());
    assert_eq!(s("Patient?family:contains=lse"), ["Patient/pat3"]);
    // token, OR with commas, :not, :missing, :of-type-free identifiers
    assert_eq!(s("Patient?identifier=urn:mrn|MRN-pat2"), ["Patient/pat2"]);
    assert_eq!(s("Patient?gender=male,other"), ["Patient/pat1"]);
    assert_eq!(
        s("Patient?gender:not=male&_sort=_id"),
        ["Patient/pat2", "Patient/pat3"]
    );
    assert_eq!(s("Patient?email:missing=false"), Vec::<String>::new());
    // date: prefixes, AND by repetition
    assert_eq!(
        s("Patient?birthdate=ge1980&birthdate=lt2000"),
        ["Patient/pat2"]
    );
    assert_eq!(s("Patient?birthdate=eb1960"), ["Patient/pat1"]);
    assert_eq!(
        s("Encounter?date=2024-05-01&patient=pat3"),
        ["Encounter/enc-pat3"]
    );
    // quantity and number-style prefixes; composite
    assert_eq!(
        s(
            "Observation?value-quantity=gt9|http://unitsofmeasure.org|mmol/L&patient=pat1&code=2339-0"
        ),
        ["Observation/obs-pat1-1"]
    );
    assert_eq!(
        s("Observation?code-value-quantity=http://loinc.org|2339-0$lt6&_sort=_id"),
        [
            "Observation/obs-pat1-0",
            "Observation/obs-pat2-0",
            "Observation/obs-pat3-0"
        ]
    );
    // reference: Type/id, bare id, :Type, absolute URL; _id; _lastUpdated
    assert_eq!(
        s("Observation?subject=Patient/pat2&code=8867-4"),
        ["Observation/obs-pat2-2"]
    );
    assert_eq!(
        s("Observation?subject:Patient=pat2&code=8867-4"),
        ["Observation/obs-pat2-2"]
    );
    let absolute = server.url("/fhir/Patient/pat2");
    assert_eq!(
        s(&format!("Encounter?subject={absolute}")),
        ["Encounter/enc-pat2"]
    );
    assert_eq!(
        s("Patient?_id=pat3,pat1&_sort=-_id"),
        ["Patient/pat3", "Patient/pat1"]
    );
    assert_eq!(
        s("Organization?_lastUpdated=ge2020-01-01"),
        ["Organization/org1"]
    );
    assert_eq!(
        s("Organization?_lastUpdated=lt2020-01-01"),
        Vec::<String>::new()
    );
    // sorted by date, descending
    assert_eq!(
        s("Observation?patient=pat3&_sort=-date"),
        [
            "Observation/obs-pat3-2",
            "Observation/obs-pat3-1",
            "Observation/obs-pat3-0"
        ]
    );
    // chains over two levels, and _has
    assert_eq!(
        s("Observation?subject:Patient.family=olsen&code=8867-4"),
        ["Observation/obs-pat3-2"]
    );
    assert_eq!(
        s("Encounter?subject:Patient.organization.name=st.%20mary&_sort=_id").len(),
        3
    );
    assert_eq!(
        s("Patient?_has:Encounter:patient:_id=enc-pat2"),
        ["Patient/pat2"]
    );
    assert_eq!(
        s("Patient?_has:Observation:patient:value-quantity=gt70&_sort=_id"),
        ["Patient/pat1", "Patient/pat2", "Patient/pat3"]
    );

    // _include (with :iterate) and _revinclude
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Encounter?_id=enc-pat1&_revinclude=Observation:encounter"),
    );
    assert_eq!(ids(&b, "match"), ["Encounter/enc-pat1"]);
    assert_eq!(ids(&b, "include").len(), 3);
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Observation?_id=obs-pat2-0&_include=Observation:patient&_include:iterate=Patient:organization"),
    );
    assert_eq!(ids(&b, "include"), ["Patient/pat2", "Organization/org1"]);
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Patient?_id=pat1&_include=Patient:*"),
    );
    let mut included = ids(&b, "include");
    included.sort();
    assert_eq!(included, ["Organization/org1", "Practitioner/dr1"]);

    // _summary=count, _total=none, _elements
    let (_, b) = get(&agent, &server.url("/fhir/Observation?_summary=count"));
    assert_eq!(b["total"], 9);
    assert!(b.get("entry").is_none());
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Observation?_total=none&_count=1"),
    );
    assert!(b.get("total").is_none());
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Patient?_id=pat1&_elements=gender"),
    );
    let p = &b["entry"][0]["resource"];
    assert_eq!(p["gender"], "male");
    assert!(p.get("birthDate").is_none());
}

#[test]
fn paging_links_stay_stable_while_resources_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    let patients: Vec<Value> = (0..25)
        .map(|i| json!({"resourceType": "Patient", "id": format!("p{i:02}"), "active": true}))
        .collect();
    transaction(&agent, &server, patients);

    let (_, first) = get(
        &agent,
        &server.url("/fhir/Patient?active=true&_sort=_id&_count=10"),
    );
    assert_eq!(first["total"], 25);
    assert!(link(&first, "previous").is_none());
    let mut seen = ids(&first, "match");
    // Writes between pages: one that sorts into the first page, one into the last.
    transaction(
        &agent,
        &server,
        vec![
            json!({"resourceType": "Patient", "id": "p00a", "active": true}),
            json!({"resourceType": "Patient", "id": "p99", "active": true}),
        ],
    );
    let mut next = link(&first, "next");
    let mut pages = 1;
    let mut last = first;
    while let Some(url) = next {
        let (status, page) = get(&agent, &url);
        assert_eq!(status, 200);
        seen.extend(ids(&page, "match"));
        next = link(&page, "next");
        last = page;
        pages += 1;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25)
        .map(|i| format!("Patient/p{i:02}"))
        .chain(["Patient/p99".to_string()])
        .collect();
    assert_eq!(seen, expected, "no resource skipped or repeated");
    // and back: the page before the last one
    let (_, back) = get(&agent, &link(&last, "previous").unwrap());
    assert_eq!(
        ids(&back, "match").first().map(String::as_str),
        Some("Patient/p10")
    );

    // A page link whose cursor was tampered with is a 400, not a wrong page.
    let (status, oo) = get(&agent, &server.url("/fhir/Patient?_page_after=nonsense"));
    assert_eq!(status, 400);
    assert_eq!(oo["resourceType"], "OperationOutcome");
}

#[test]
fn system_compartment_everything_post_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake"), &[]);
    let agent = http();
    clinic(&agent, &server);

    // system search over the types named in _type, and over every type
    let (_, b) = get(
        &agent,
        &server.url("/fhir?_type=Patient,Organization&_count=100"),
    );
    assert_eq!(b["total"], 4);
    let (_, b) = get(&agent, &server.url("/fhir?_id=org1"));
    assert_eq!(ids(&b, "match"), ["Organization/org1"]);
    // compartment search, and $everything (the patient first)
    assert_eq!(
        search(&agent, &server, "Patient/pat2/Observation?code=8867-4"),
        ["Observation/obs-pat2-2"]
    );
    assert_eq!(
        search(&agent, &server, "Patient/pat2/Encounter"),
        ["Encounter/enc-pat2"]
    );
    let (_, b) = get(
        &agent,
        &server.url("/fhir/Patient/pat2/$everything?_count=100"),
    );
    let all = ids(&b, "match");
    assert_eq!(all.len(), 1 + 1 + 3, "{all:?}");
    assert_eq!(all[0], "Patient/pat2");
    let (status, _) = get(&agent, &server.url("/fhir/Patient/nobody/$everything"));
    assert_eq!(status, 404);
    let (status, _) = get(&agent, &server.url("/fhir/Patient/pat2/Organization"));
    assert_eq!(status, 400);

    // POST _search with a form body
    let mut r = agent
        .post(&server.url("/fhir/Patient/_search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("gender=female&_sort=-birthdate")
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.body_mut().read_json().unwrap();
    assert_eq!(ids(&b, "match"), ["Patient/pat3", "Patient/pat2"]);

    // an unknown parameter: ignored with a warning, or 400 when strict
    let (status, b) = get(
        &agent,
        &server.url("/fhir/Patient?shoe-size=44&gender=male"),
    );
    assert_eq!(status, 200);
    assert_eq!(ids(&b, "match"), ["Patient/pat1"]);
    let outcome = b["entry"].as_array().unwrap().last().unwrap();
    assert_eq!(outcome["search"]["mode"], "outcome");
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
    let mut r = agent
        .get(&server.url("/fhir/Patient?shoe-size=44"))
        .header("Prefer", "handling=strict")
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo: Value = r.body_mut().read_json().unwrap();
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    // a bad value is a 400 that says which
    let (status, oo) = get(&agent, &server.url("/fhir/Patient?birthdate=ge-last-week"));
    assert_eq!(status, 400);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("ge-last-week")
    );
}

#[test]
fn conditional_update_and_delete_and_a_rebuilt_index_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let server = Server::start(&data, &[]);
    let agent = http();
    clinic(&agent, &server);

    // conditional update: one match updates it
    let body = json!({"resourceType": "Patient", "name": [{"family": "Olsen-Berg"}],
        "identifier": [{"system": "urn:mrn", "value": "MRN-pat3"}]});
    let mut r = agent
        .put(&server.url("/fhir/Patient?identifier=urn:mrn|MRN-pat3"))
        .header("Content-Type", FHIR_JSON)
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["id"], "pat3");
    assert_eq!(v["meta"]["versionId"], "2");
    // no match creates; several is 412
    let r = agent
        .put(&server.url("/fhir/Patient?identifier=urn:mrn|MRN-new"))
        .header("Content-Type", FHIR_JSON)
        .send(json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "MRN-new"}]}).to_string())
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = agent
        .put(&server.url("/fhir/Patient?organization=org1"))
        .header("Content-Type", FHIR_JSON)
        .send(json!({"resourceType": "Patient"}).to_string())
        .unwrap();
    assert_eq!(r.status(), 412);
    // the search sees the update at once: the old name is gone from the index
    assert!(search(&agent, &server, "Patient?family:exact=Olsen").is_empty());
    assert_eq!(
        search(&agent, &server, "Patient?family=olsen-b"),
        ["Patient/pat3"]
    );

    // conditional delete: one match deletes it; then nothing matches
    let r = agent
        .delete(&server.url("/fhir/Patient?identifier=urn:mrn|MRN-pat1"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = agent.get(&server.url("/fhir/Patient/pat1")).call().unwrap();
    assert_eq!(r.status(), 410);
    assert!(search(&agent, &server, "Patient?identifier=urn:mrn|MRN-pat1").is_empty());
    let r = agent
        .delete(&server.url("/fhir/Observation?code=2339-0"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 412, "several matches: nothing is deleted");

    // After a restart (the WAL flushed to Delta on stop) the index comes back from the
    // lake's search column, with the same answers.
    server.stop();
    let server = Server::start(&data, &[]);
    assert_eq!(
        search(&agent, &server, "Patient?family=olsen-b"),
        ["Patient/pat3"]
    );
    assert!(search(&agent, &server, "Patient?identifier=urn:mrn|MRN-pat1").is_empty());
    assert_eq!(
        search(&agent, &server, "Observation?patient=pat2&_sort=date").len(),
        3
    );
    drop(server);
    // ...and the values are in the table for SQL and other engines too.
    let out = medlake(
        &data,
        &[
            "sql",
            "SELECT count(*) AS n FROM fhir_history.observation WHERE search LIKE '%\"patient\"%'",
            "--format",
            "csv",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains('9'), "{text}");
}
