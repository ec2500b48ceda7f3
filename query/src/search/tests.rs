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
