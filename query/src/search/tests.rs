use medlake_lake::{Lake, LakeOptions, WriteOp};
use serde_json::{Value, json};

use super::*;

async fn lake(dir: &tempfile::TempDir) -> Lake {
    let mut o = LakeOptions::new(dir.path().to_str().unwrap());
    o.search_index = true;
    Lake::open(o).await.unwrap()
}

async fn put(lake: &Lake, resource: Value) {
    let ty = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().map(str::to_string);
    let Value::Object(map) = resource else {
        unreachable!()
    };
    lake.write(vec![WriteOp::Put {
        resource_type: ty,
        id,
        resource: map,
        if_match: None,
    }])
    .await
    .unwrap();
}

async fn ids(lake: &Lake, ty: &str, query: &[(&str, &str)]) -> Vec<String> {
    let page = search(lake, ty, query).await;
    page.matches.iter().map(|r| r.id.clone()).collect()
}

async fn search(lake: &Lake, ty: &str, query: &[(&str, &str)]) -> SearchPage {
    let params: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = Search::parse(vec![ty.to_string()], &params, true).unwrap();
    run(lake, &s, "http://x/fhir").await.unwrap()
}

async fn sample(lake: &Lake) {
    for (id, family, given, birth, gender) in [
        ("p1", "Müller", "Anna", "1980-05-01", "female"),
        ("p2", "Miller", "Bob", "1990-01-01", "male"),
        ("p3", "Smith", "Carla", "2001-12-31", "female"),
    ] {
        put(
            lake,
            json!({"resourceType": "Patient", "id": id,
            "name": [{"family": family, "given": [given]}],
            "birthDate": birth, "gender": gender,
            "identifier": [{"system": "urn:mrn", "value": format!("mrn-{id}")}],
            "managingOrganization": {"reference": "Organization/o1"}}),
        )
        .await;
    }
    put(
        lake,
        json!({"resourceType": "Organization", "id": "o1", "name": "General Hospital"}),
    )
    .await;
    put(
        lake,
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"}}),
    )
    .await;
    for (id, patient, code, value, date) in [
        ("o1", "p1", "8867-4", 72.0, "2024-01-10T10:00:00Z"),
        ("o2", "p1", "8867-4", 95.0, "2024-02-10T10:00:00Z"),
        ("o3", "p1", "8310-5", 37.2, "2024-03-10T10:00:00Z"),
        ("o4", "p2", "8867-4", 60.0, "2023-06-01"),
    ] {
        put(lake, json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": date,
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "/min"}})).await;
    }
}

#[tokio::test]
async fn strings_tokens_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    sample(&lake).await;
    // string: prefix, case and accent insensitive; :exact; :contains
    assert_eq!(
        ids(&lake, "Patient", &[("family", "mul"), ("_sort", "_id")]).await,
        ["p1"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("family", "M"), ("_sort", "_id")]).await,
        ["p1", "p2"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("family:exact", "Muller")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&lake, "Patient", &[("family:exact", "Müller")]).await,
        ["p1"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("name:contains", "ARL")]).await,
        ["p3"]
    );
    // token forms, OR, :not, :missing
    assert_eq!(ids(&lake, "Patient", &[("gender", "male")]).await, ["p2"]);
    assert_eq!(
        ids(&lake, "Patient", &[("identifier", "urn:mrn|mrn-p3")]).await,
        ["p3"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("identifier", "|mrn-p3")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&lake, "Patient", &[("gender:not", "female")]).await,
        ["p2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Patient",
            &[
                ("identifier", "urn:mrn|mrn-p1,urn:mrn|mrn-p2"),
                ("_sort", "-_id")
            ]
        )
        .await,
        ["p2", "p1"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("email:missing", "false")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&lake, "Patient", &[("email:missing", "true")])
            .await
            .len(),
        3
    );
    // dates: prefixes, AND by repetition
    assert_eq!(
        ids(&lake, "Patient", &[("birthdate", "1990")]).await,
        ["p2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Patient",
            &[
                ("birthdate", "ge1985"),
                ("birthdate", "lt2001-12-31"),
                ("_sort", "_id")
            ]
        )
        .await,
        ["p2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Patient",
            &[("birthdate", "sa2000"), ("_sort", "_id")]
        )
        .await,
        ["p3"]
    );
    assert_eq!(
        ids(&lake, "Patient", &[("_id", "p1,p3"), ("_sort", "_id")]).await,
        ["p1", "p3"]
    );
}

#[tokio::test]
async fn references_chains_has_and_quantities() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    sample(&lake).await;
    let q = |pairs: &'static [(&'static str, &'static str)]| pairs;
    assert_eq!(
        ids(
            &lake,
            "Observation",
            q(&[
                ("subject", "Patient/p1"),
                ("code", "http://loinc.org|8867-4"),
                ("_sort", "date")
            ])
        )
        .await,
        ["o1", "o2"]
    );
    assert_eq!(
        ids(&lake, "Observation", &[("patient", "p2")]).await,
        ["o4"]
    );
    assert_eq!(
        ids(&lake, "Observation", &[("subject:Patient", "p2")]).await,
        ["o4"]
    );
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("subject", "http://x/fhir/Patient/p2")]
        )
        .await,
        ["o4"]
    );
    // date range, sorted descending
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("patient", "p1"), ("date", "ge2024-02"), ("_sort", "-date")]
        )
        .await,
        ["o3", "o2"]
    );
    // quantities
    assert_eq!(
        ids(&lake, "Observation", &[("value-quantity", "gt90")]).await,
        ["o2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("value-quantity", "72|http://unitsofmeasure.org|/min")]
        )
        .await,
        ["o1"]
    );
    // composite: the code and the value of one observation
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("code-value-quantity", "http://loinc.org|8867-4$gt90")]
        )
        .await,
        ["o2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("code-value-quantity", "http://loinc.org|8310-5$gt90")]
        )
        .await,
        Vec::<String>::new()
    );
    // chains over one and two levels, and _has
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("subject:Patient.family", "miller")]
        )
        .await,
        ["o4"]
    );
    assert_eq!(
        ids(
            &lake,
            "Encounter",
            &[("subject:Patient.organization.name", "general")]
        )
        .await,
        ["e1"]
    );
    assert_eq!(
        ids(
            &lake,
            "Patient",
            &[("_has:Observation:patient:code", "8310-5")]
        )
        .await,
        ["p1"]
    );
    assert_eq!(
        ids(
            &lake,
            "Patient",
            &[
                ("_has:Observation:patient:value-quantity", "ap60"),
                ("_sort", "_id")
            ]
        )
        .await,
        ["p2"]
    );
}

#[tokio::test]
async fn pages_stay_stable_while_resources_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    for i in 0..7 {
        put(
            &lake,
            json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "other"}),
        )
        .await;
    }
    let first = search(
        &lake,
        "Patient",
        &[("gender", "other"), ("_count", "3"), ("_sort", "_id")],
    )
    .await;
    assert_eq!(first.total, Some(7));
    let got: Vec<_> = first.matches.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, ["p0", "p1", "p2"]);
    assert!(first.prev.is_none());
    // a new resource that sorts before the cursor must not shift the next page
    put(
        &lake,
        json!({"resourceType": "Patient", "id": "p00", "gender": "other"}),
    )
    .await;
    let next = first.next.unwrap();
    let second = search(
        &lake,
        "Patient",
        &[
            ("gender", "other"),
            ("_count", "3"),
            ("_sort", "_id"),
            ("_page_after", &next),
        ],
    )
    .await;
    let got: Vec<_> = second.matches.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, ["p3", "p4", "p5"]);
    let prev = second.prev.unwrap();
    let back = search(
        &lake,
        "Patient",
        &[
            ("gender", "other"),
            ("_count", "3"),
            ("_sort", "_id"),
            ("_page_before", &prev),
        ],
    )
    .await;
    let got: Vec<_> = back.matches.iter().map(|r| r.id.clone()).collect();
    // the page before p3 now holds p00, which was written in between
    assert_eq!(got, ["p00", "p1", "p2"]);
    let none = search(&lake, "Patient", &[("gender", "other"), ("_total", "none")]).await;
    assert_eq!(none.total, None);
}

#[tokio::test]
async fn includes_and_revincludes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    sample(&lake).await;
    let page = search(
        &lake,
        "Encounter",
        &[("_id", "e1"), ("_revinclude", "Observation:encounter")],
    )
    .await;
    assert_eq!(page.matches.len(), 1);
    let mut inc: Vec<_> = page.included.iter().map(|r| r.id.clone()).collect();
    inc.sort();
    assert_eq!(inc, ["o1", "o2", "o3", "o4"]);
    let page = search(
        &lake,
        "Observation",
        &[("_id", "o4"), ("_include", "Observation:patient")],
    )
    .await;
    let inc: Vec<_> = page
        .included
        .iter()
        .map(|r| format!("{}/{}", r.resource_type, r.id))
        .collect();
    assert_eq!(inc, ["Patient/p2"]);
    // :iterate follows the included Patient to its Organization
    let page = search(
        &lake,
        "Observation",
        &[
            ("_id", "o4"),
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:organization"),
        ],
    )
    .await;
    let inc: Vec<_> = page
        .included
        .iter()
        .map(|r| format!("{}/{}", r.resource_type, r.id))
        .collect();
    assert_eq!(inc, ["Patient/p2", "Organization/o1"]);
}

#[tokio::test]
async fn updates_and_deletes_leave_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    sample(&lake).await;
    put(
        &lake,
        json!({"resourceType": "Patient", "id": "p3", "name": [{"family": "Jones"}]}),
    )
    .await;
    assert!(
        ids(&lake, "Patient", &[("family", "smith")])
            .await
            .is_empty()
    );
    assert_eq!(ids(&lake, "Patient", &[("family", "jones")]).await, ["p3"]);
    lake.write(vec![WriteOp::Delete {
        resource_type: "Patient".into(),
        id: "p3".into(),
        if_match: None,
    }])
    .await
    .unwrap();
    assert!(
        ids(&lake, "Patient", &[("family", "jones")])
            .await
            .is_empty()
    );
    // and after a flush and a restart, the index is rebuilt from the lake
    lake.flush().await.unwrap();
    drop(lake);
    let lake = self::lake(&dir).await;
    assert_eq!(
        ids(&lake, "Patient", &[("family", "m"), ("_sort", "_id")]).await,
        ["p1", "p2"]
    );
    assert_eq!(
        ids(
            &lake,
            "Observation",
            &[("code", "8867-4"), ("patient", "p1")]
        )
        .await
        .len(),
        2
    );
}

#[tokio::test]
async fn uris_numbers_meta_parameters_and_several_sort_keys() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    for (id, url, version) in [
        ("vs1", "http://example.org/fhir/ValueSet/a", "1.0"),
        ("vs2", "http://example.org/fhir/ValueSet/a/b", "2.0"),
        ("vs3", "http://other.org/ValueSet/c", "1.0"),
    ] {
        put(
            &lake,
            json!({"resourceType": "ValueSet", "id": id, "status": "active",
            "url": url, "version": version,
            "meta": {"tag": [{"system": "urn:t", "code": format!("tag-{id}")}],
                     "profile": ["http://example.org/StructureDefinition/vs"]}}),
        )
        .await;
    }
    // uri: exact, :below (the URL and everything under it), :above (what it is under)
    assert_eq!(
        ids(
            &lake,
            "ValueSet",
            &[("url", "http://example.org/fhir/ValueSet/a")]
        )
        .await,
        ["vs1"]
    );
    assert_eq!(
        ids(
            &lake,
            "ValueSet",
            &[("url:below", "http://example.org/fhir/"), ("_sort", "_id")]
        )
        .await,
        ["vs1", "vs2"]
    );
    assert_eq!(
        ids(
            &lake,
            "ValueSet",
            &[
                ("url:above", "http://example.org/fhir/ValueSet/a/b/c"),
                ("_sort", "_id")
            ]
        )
        .await,
        ["vs1", "vs2"]
    );
    // _tag, _profile
    assert_eq!(
        ids(&lake, "ValueSet", &[("_tag", "urn:t|tag-vs2")]).await,
        ["vs2"]
    );
    assert_eq!(
        ids(
            &lake,
            "ValueSet",
            &[("_profile", "http://example.org/StructureDefinition/vs")]
        )
        .await
        .len(),
        3
    );
    // two sort keys: version descending, then url ascending
    assert_eq!(
        ids(&lake, "ValueSet", &[("_sort", "-version,url")]).await,
        ["vs2", "vs1", "vs3"]
    );
    // number: RiskAssessment.prediction.probability
    for (id, p) in [("r1", 0.02), ("r2", 0.35), ("r3", 0.8)] {
        put(
            &lake,
            json!({"resourceType": "RiskAssessment", "id": id, "status": "final",
            "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": p}]}),
        )
        .await;
    }
    assert_eq!(
        ids(
            &lake,
            "RiskAssessment",
            &[("probability", "gt0.3"), ("_sort", "probability")]
        )
        .await,
        ["r2", "r3"]
    );
    assert_eq!(
        ids(&lake, "RiskAssessment", &[("probability", "0.35")]).await,
        ["r2"]
    );
    assert_eq!(
        ids(&lake, "RiskAssessment", &[("probability", "le0.02")]).await,
        ["r1"]
    );
}

#[test]
fn bad_searches_say_what_is_wrong() {
    let parse = |ty: &str, k: &str, v: &str, strict: bool| {
        Search::parse(vec![ty.into()], &[(k.into(), v.into())], strict)
    };
    assert!(matches!(
        parse("Patient", "shoe-size", "4", true),
        Err(SearchError::UnknownParameter(_))
    ));
    assert_eq!(
        parse("Patient", "shoe-size", "4", false).unwrap().ignored,
        ["Patient?shoe-size"]
    );
    // Values are checked when the search runs (a date that is no date is a 400 then);
    // names, modifiers and result parameters when it is parsed.
    assert!(parse("Patient", "birthdate", "soon", true).is_ok());
    for (ty, name, value, not_supported) in [
        ("Patient", "family:below", "x", false),
        ("Observation", "code:in", "http://vs", true),
        ("Patient", "gender.name", "x", false),
        ("Patient", "_count", "many", false),
        ("Patient", "_sort", "shoe-size", false),
        ("Patient", "_include", "Patient:gender", false),
    ] {
        match parse(ty, name, value, true) {
            Err(SearchError::NotSupported(_)) if not_supported => {}
            Err(SearchError::Invalid(_)) if !not_supported => {}
            other => panic!("{ty}?{name}={value}: {other:?}"),
        }
    }
}

/// The ids a search finds, sorted, so that a test states the set it expects.
async fn found(lake: &Lake, ty: &str, query: &[(&str, &str)]) -> Vec<String> {
    let mut found = ids(lake, ty, query).await;
    found.sort();
    found
}

async fn expect(lake: &Lake, ty: &str, query: &[(&str, &str)], want: &[&str]) {
    assert_eq!(found(lake, ty, query).await, want, "{ty}?{query:?}");
}

/// Commit the tail to Delta and open the lake again, so that the search index is rebuilt
/// from what Delta holds instead of from the writes themselves.
async fn flushed_and_reopened(dir: &tempfile::TempDir, lake: Lake) -> Lake {
    lake.flush().await.unwrap();
    drop(lake);
    self::lake(dir).await
}

fn patient_with_gp(id: &str, family: &str, gps: &[&str]) -> Value {
    let gps: Vec<Value> = gps.iter().map(|r| json!({"reference": r})).collect();
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}],
           "generalPractitioner": gps})
}

fn observation_of(id: &str, subject: Value) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": subject})
}

/// Chains of two and three references, where the decoys match the right value at the
/// wrong link: an intermediate resource that has the name, a reference of another type,
/// a reference through another parameter, a chain one link too short.
async fn multi_level_chain_data(lake: &Lake) {
    for (id, family) in [("dr-hart", "Hart"), ("dr-stone", "Stone")] {
        put(
            lake,
            json!({"resourceType": "Practitioner", "id": id, "name": [{"family": family}]}),
        )
        .await;
    }
    // An Organization named like the wanted Practitioner: a GP of another type.
    put(
        lake,
        json!({"resourceType": "Organization", "id": "org-hart", "name": "Hart Clinic"}),
    )
    .await;
    for (patient, family, gps) in [
        // the GP is Dr Hart: matches
        ("pa", "Able", &["Practitioner/dr-hart"][..]),
        // the patient is called Hart, its GP is not: only the intermediate matches
        ("pb", "Hart", &["Practitioner/dr-stone"][..]),
        // the GP is the Organization called Hart
        ("pc", "Cole", &["Organization/org-hart"][..]),
        // no GP at all
        ("pd", "Dunn", &[][..]),
        // two GPs, the second is Dr Hart: matches
        (
            "pf",
            "Fox",
            &["Practitioner/dr-stone", "Practitioner/dr-hart"][..],
        ),
    ] {
        put(lake, patient_with_gp(patient, family, gps)).await;
        let observation = format!("o{}", &patient[1..]);
        let subject = json!({"reference": format!("Patient/{patient}")});
        put(lake, observation_of(&observation, subject)).await;
    }
    // Refers to Dr Hart directly, as performer, and to a patient whose GP is Dr Stone.
    let mut performed = observation_of("oe", json!({"reference": "Patient/pb"}));
    performed["performer"] = json!([{"reference": "Practitioner/dr-hart"}]);
    put(lake, performed).await;

    // Three links: Observation -> Patient -> Organization -> parent Organization.
    for (id, name, parent) in [
        ("acme-root", "Acme Health", None),
        ("ward-1", "Ward One", Some("acme-root")),
        ("borough", "Borough Trust", None),
        // named Acme itself, but its parent is not
        ("acme-local", "Acme Local", Some("borough")),
    ] {
        let mut org = json!({"resourceType": "Organization", "id": id, "name": name});
        if let Some(p) = parent {
            org["partOf"] = json!({"reference": format!("Organization/{p}")});
        }
        put(lake, org).await;
    }
    for (patient, organization) in [
        // the organization's parent is Acme: matches
        ("pg", "ward-1"),
        // the organization is called Acme, its parent is not
        ("ph", "acme-local"),
        // the organization is Acme itself and has no parent: a two-link chain matches
        ("pi", "acme-root"),
    ] {
        put(
            lake,
            json!({"resourceType": "Patient", "id": patient,
                   "managingOrganization": {"reference": format!("Organization/{organization}")}}),
        )
        .await;
        let observation = format!("o{}", &patient[1..]);
        let subject = json!({"reference": format!("Patient/{patient}")});
        put(lake, observation_of(&observation, subject)).await;
    }
}

async fn check_multi_level_chains(lake: &Lake) {
    let obs = "Observation";
    expect(
        lake,
        obs,
        &[(
            "subject:Patient.general-practitioner:Practitioner.name",
            "hart",
        )],
        &["oa", "of"],
    )
    .await;
    // Without the type, the GP may be any of the parameter's target types.
    expect(
        lake,
        obs,
        &[("subject:Patient.general-practitioner.name", "hart")],
        &["oa", "oc", "of"],
    )
    .await;
    // The link the decoys do match, for contrast: pb is called Hart.
    expect(
        lake,
        obs,
        &[("subject:Patient.name", "hart")],
        &["ob", "oe"],
    )
    .await;
    expect(
        lake,
        obs,
        &[(
            "subject:Patient.general-practitioner:Practitioner.name",
            "stone",
        )],
        &["ob", "oe", "of"],
    )
    .await;
    expect(
        lake,
        obs,
        &[(
            "subject:Patient.general-practitioner:Practitioner.name",
            "dunn",
        )],
        &[],
    )
    .await;
    // Three links: only the parent's name counts.
    expect(
        lake,
        obs,
        &[("subject:Patient.organization.partof.name", "acme")],
        &["og"],
    )
    .await;
    expect(
        lake,
        obs,
        &[("subject:Patient.organization.name", "acme")],
        &["oh", "oi"],
    )
    .await;
    expect(
        lake,
        obs,
        &[("subject:Patient.organization.partof.name", "borough")],
        &["oh"],
    )
    .await;
    // A chain ANDed with a plain parameter of the searched type.
    expect(
        lake,
        obs,
        &[
            (
                "subject:Patient.general-practitioner:Practitioner.name",
                "stone",
            ),
            ("performer", "Practitioner/dr-hart"),
        ],
        &["oe"],
    )
    .await;
}

#[tokio::test]
async fn chains_of_two_and_three_links_match_only_at_the_last_link() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    multi_level_chain_data(&lake).await;
    check_multi_level_chains(&lake).await;
    let lake = flushed_and_reopened(&dir, lake).await;
    check_multi_level_chains(&lake).await;
}

/// Observations whose codes, displays and texts start with the same word in different
/// places.
async fn text_modifier_data(lake: &Lake) {
    let local = "urn:local";
    for (id, code) in [
        // Coding.display
        (
            "t-display",
            json!({"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]}),
        ),
        // the code starts with the word, the display does not
        (
            "t-code",
            json!({"coding": [{"system": local, "code": "heart-x", "display": "Pulse"}]}),
        ),
        // CodeableConcept.text without a coding
        ("t-text", json!({"text": "Heartbeat, irregular"})),
        // CodeableConcept.text beside a coding without a display
        (
            "t-text-coded",
            json!({"coding": [{"system": local, "code": "m1"}], "text": "heart murmur"}),
        ),
        // the word is inside the display, not at its start
        (
            "t-inside",
            json!({"coding": [{"system": "http://loinc.org", "code": "55283-6", "display": "Fetal heart rate"}]}),
        ),
        // accents and case are folded
        (
            "t-accent",
            json!({"coding": [{"system": local, "code": "ecg", "display": "Électrocardiogramme"}]}),
        ),
    ] {
        put(
            lake,
            json!({"resourceType": "Observation", "id": id, "status": "final", "code": code}),
        )
        .await;
    }
    // The word is in another token parameter (category), not in code.
    put(
        lake,
        json!({"resourceType": "Observation", "id": "t-category", "status": "final",
               "category": [{"coding": [{"system": local, "code": "c", "display": "Heart studies"}]}],
               "code": {"coding": [{"system": local, "code": "w", "display": "Weight"}]}}),
    )
    .await;
    // Identifier.type.text is the text of an identifier.
    put(
        lake,
        json!({"resourceType": "Patient", "id": "p-typed",
               "identifier": [{"type": {"text": "Medical record number"}, "system": "urn:mrn", "value": "m-1"}]}),
    )
    .await;
    put(
        lake,
        json!({"resourceType": "Patient", "id": "p-untyped",
               "identifier": [{"system": "urn:medical", "value": "medical-2"}]}),
    )
    .await;
}

async fn check_text_modifier(lake: &Lake) {
    let obs = "Observation";
    let heart = ["t-display", "t-text", "t-text-coded"];
    expect(lake, obs, &[("code:text", "heart")], &heart).await;
    expect(lake, obs, &[("code:text", "HEART")], &heart).await;
    expect(lake, obs, &[("code:text", "heart rate")], &["t-display"]).await;
    expect(lake, obs, &[("code:text", "fetal heart")], &["t-inside"]).await;
    expect(lake, obs, &[("code:text", "pulse")], &["t-code"]).await;
    expect(lake, obs, &[("code:text", "electro")], &["t-accent"]).await;
    // A code is not text, not even the whole of it.
    expect(lake, obs, &[("code:text", "heart-x")], &[]).await;
    expect(lake, obs, &[("code:text", "8867-4")], &[]).await;
    // ...while the plain token search does find the code.
    expect(lake, obs, &[("code", "heart-x")], &["t-code"]).await;
    expect(lake, obs, &[("category:text", "heart")], &["t-category"]).await;
    expect(
        lake,
        obs,
        &[("code:text", "pulse,electro")],
        &["t-accent", "t-code"],
    )
    .await;
    expect(
        lake,
        "Patient",
        &[("identifier:text", "medical")],
        &["p-typed"],
    )
    .await;
}

#[tokio::test]
async fn text_modifier_matches_display_and_text_by_prefix_never_codes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    text_modifier_data(&lake).await;
    check_text_modifier(&lake).await;
    let lake = flushed_and_reopened(&dir, lake).await;
    check_text_modifier(&lake).await;
}

/// Observations whose subject carries a logical identifier, next to ones where the same
/// value appears as a reference id, under another system, without a system, as a longer
/// value, or in another reference parameter.
async fn reference_identifier_data(lake: &Lake) {
    // The patient the identifier names: an implementation that resolved references
    // would take r-by-reference for a match.
    put(
        lake,
        json!({"resourceType": "Patient", "id": "123",
               "identifier": [{"system": "urn:mrn", "value": "123"}]}),
    )
    .await;
    for (id, subject) in [
        (
            "r-mrn",
            json!({"identifier": {"system": "urn:mrn", "value": "123"}}),
        ),
        ("r-by-reference", json!({"reference": "Patient/123"})),
        (
            "r-other-system",
            json!({"identifier": {"system": "urn:other", "value": "123"}}),
        ),
        ("r-no-system", json!({"identifier": {"value": "123"}})),
        (
            "r-longer",
            json!({"reference": "Patient/x9", "identifier": {"system": "urn:mrn", "value": "1234"}}),
        ),
        (
            "r-mrn-other-value",
            json!({"identifier": {"system": "urn:mrn", "value": "999"}}),
        ),
    ] {
        put(lake, observation_of(id, subject)).await;
    }
    let mut performed = observation_of("r-performer", json!({"reference": "Patient/x9"}));
    performed["performer"] = json!([{"identifier": {"system": "urn:mrn", "value": "123"}}]);
    put(lake, performed).await;
}

async fn check_reference_identifier(lake: &Lake) {
    let obs = "Observation";
    expect(
        lake,
        obs,
        &[("subject:identifier", "urn:mrn|123")],
        &["r-mrn"],
    )
    .await;
    // Any system.
    expect(
        lake,
        obs,
        &[("subject:identifier", "123")],
        &["r-mrn", "r-no-system", "r-other-system"],
    )
    .await;
    // No system.
    expect(
        lake,
        obs,
        &[("subject:identifier", "|123")],
        &["r-no-system"],
    )
    .await;
    // Any value of the system.
    expect(
        lake,
        obs,
        &[("subject:identifier", "urn:mrn|")],
        &["r-longer", "r-mrn", "r-mrn-other-value"],
    )
    .await;
    expect(lake, obs, &[("subject:identifier", "urn:mrn|12")], &[]).await;
    expect(
        lake,
        obs,
        &[("subject:identifier", "urn:mrn|1234")],
        &["r-longer"],
    )
    .await;
    expect(
        lake,
        obs,
        &[("performer:identifier", "urn:mrn|123")],
        &["r-performer"],
    )
    .await;
    // A reference with an identifier is still found by its reference.
    expect(
        lake,
        obs,
        &[("subject", "Patient/x9")],
        &["r-longer", "r-performer"],
    )
    .await;
}

#[tokio::test]
async fn identifier_modifier_matches_reference_identifiers_as_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    reference_identifier_data(&lake).await;
    check_reference_identifier(&lake).await;
    let lake = flushed_and_reopened(&dir, lake).await;
    check_reference_identifier(&lake).await;
}

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

fn typed_identifier(type_system: &str, type_code: &str, value: &str) -> Value {
    json!({"type": {"coding": [{"system": type_system, "code": type_code}]},
           "system": "urn:ids", "value": value})
}

/// Patients whose identifiers are near misses of `MR` `1001`: each differs in one part,
/// or has the parts on two different identifiers.
async fn of_type_data(lake: &Lake) {
    for (id, identifiers) in [
        ("p-mr", vec![typed_identifier(V2_0203, "MR", "1001")]),
        (
            "p-other-value",
            vec![typed_identifier(V2_0203, "MR", "1002")],
        ),
        (
            "p-longer-value",
            vec![typed_identifier(V2_0203, "MR", "10011")],
        ),
        ("p-dl", vec![typed_identifier(V2_0203, "DL", "1001")]),
        (
            "p-other-type-system",
            vec![typed_identifier("urn:local-types", "MR", "1001")],
        ),
        (
            // MR with another value, and 1001 under another type
            "p-split",
            vec![
                typed_identifier(V2_0203, "MR", "9999"),
                typed_identifier(V2_0203, "DL", "1001"),
            ],
        ),
        (
            "p-untyped",
            vec![json!({"system": "urn:ids", "value": "1001"})],
        ),
        (
            "p-type-text-only",
            vec![json!({"type": {"text": "MR"}, "system": "urn:ids", "value": "1001"})],
        ),
    ] {
        put(
            lake,
            json!({"resourceType": "Patient", "id": id, "identifier": identifiers}),
        )
        .await;
    }
}

async fn check_of_type(lake: &Lake) {
    let mr_1001 = format!("{V2_0203}|MR|1001");
    let dl_1001 = format!("{V2_0203}|DL|1001");
    expect(
        lake,
        "Patient",
        &[("identifier:of-type", &mr_1001)],
        &["p-mr"],
    )
    .await;
    expect(
        lake,
        "Patient",
        &[("identifier:of-type", &dl_1001)],
        &["p-dl", "p-split"],
    )
    .await;
    expect(
        lake,
        "Patient",
        &[("identifier:of-type", &format!("{mr_1001},{dl_1001}"))],
        &["p-dl", "p-mr", "p-split"],
    )
    .await;
    expect(
        lake,
        "Patient",
        &[("identifier:of-type", "urn:local-types|MR|1001")],
        &["p-other-type-system"],
    )
    .await;
    expect(
        lake,
        "Patient",
        &[("identifier:of-type", &format!("{V2_0203}|MR|100"))],
        &[],
    )
    .await;
    // The plain token search, for contrast, finds the value whatever the type.
    expect(
        lake,
        "Patient",
        &[("identifier", "urn:ids|1001")],
        &[
            "p-dl",
            "p-mr",
            "p-other-type-system",
            "p-split",
            "p-type-text-only",
            "p-untyped",
        ],
    )
    .await;
}

#[tokio::test]
async fn of_type_matches_type_and_value_of_one_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    of_type_data(&lake).await;
    check_of_type(&lake).await;
    let lake = flushed_and_reopened(&dir, lake).await;
    check_of_type(&lake).await;
}

/// R4: `:text` searches "CodeableConcept.text, Coding.display, or Identifier.type.text".
/// Here the concept's text stands beside a coding that has a display of its own.
#[tokio::test]
async fn text_modifier_finds_concept_text_beside_a_display() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    put(
        &lake,
        json!({"resourceType": "Observation", "id": "t-both", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                        "text": "Pulse, resting"}}),
    )
    .await;
    expect(&lake, "Observation", &[("code:text", "heart")], &["t-both"]).await;
    expect(&lake, "Observation", &[("code:text", "pulse")], &["t-both"]).await;
}

/// An identifier's type is a CodeableConcept: any of its codings is its type.
#[tokio::test]
async fn of_type_finds_any_coding_of_the_identifier_type() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    put(
        &lake,
        json!({"resourceType": "Patient", "id": "p-two-type-codings",
               "identifier": [{"type": {"coding": [{"system": "urn:local-types", "code": "X"},
                                                    {"system": V2_0203, "code": "MR"}]},
                               "system": "urn:ids", "value": "1001"}]}),
    )
    .await;
    for of_type in ["urn:local-types|X|1001", &format!("{V2_0203}|MR|1001")] {
        expect(
            &lake,
            "Patient",
            &[("identifier:of-type", of_type)],
            &["p-two-type-codings"],
        )
        .await;
    }
}
