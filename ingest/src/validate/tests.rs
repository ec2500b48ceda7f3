use serde_json::{Map, Value, json};

use super::Validator;
use super::defs::{Defs, Prim, Ty};
use crate::issue::Issue;

fn v() -> &'static Validator {
    Validator::r4()
}

fn issues(resource: Value) -> Vec<Issue> {
    match v().validate(&resource) {
        Ok(()) => panic!("expected issues for {resource:#}"),
        Err(issues) => issues,
    }
}

fn assert_valid(resource: &Value) {
    if let Err(issues) = v().validate(resource) {
        let list: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        panic!(
            "expected valid, got:\n  {}\nfor {resource:#}",
            list.join("\n  ")
        );
    }
}

/// The one issue of `resource`, which must have `code` at `expression`.
fn one_issue(resource: Value, code: &str, expression: &str) -> Issue {
    let found = issues(resource);
    assert_eq!(found.len(), 1, "expected one issue, got {found:#?}");
    let issue = found.into_iter().next().expect("one issue");
    assert_eq!(issue.code, code, "{issue}");
    assert_eq!(issue.expression.as_deref(), Some(expression), "{issue}");
    issue
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "meta": {"versionId": "3", "lastUpdated": "2024-05-01T12:00:00.123Z", "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane Doe</div>"},
        "extension": [{
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                {"url": "text", "valueString": "White"}
            ]
        }],
        "identifier": [{"system": "http://hospital.example.org/mrn", "value": "12345", "period": {"start": "2001-01-01"}}],
        "active": true,
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home", "rank": 1}],
        "gender": "female",
        "birthDate": "1990-02-28",
        "deceasedBoolean": false,
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345", "country": "US"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "multipleBirthInteger": 2,
        "contact": [{
            "relationship": [{"text": "mother"}],
            "name": {"family": "Doe", "given": ["Mary"]},
            "organization": {"reference": "Organization/1"}
        }],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}, "preferred": true}],
        "managingOrganization": {"reference": "Organization/1", "display": "Acme"}
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "bp-1",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": "Patient/pat-1"},
        "effectiveDateTime": "2024-03-01T09:30:00+01:00",
        "issued": "2024-03-01T09:31:12.5Z",
        "valueQuantity": {"value": 120.5, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "dataAbsentReason": {"text": "not measured"}
            }
        ],
        "referenceRange": [{"low": {"value": 90}, "high": {"value": 140}, "text": "normal"}]
    })
}

#[test]
fn valid_patient() {
    assert_valid(&patient());
    assert_valid(&json!({"resourceType": "Patient"}));
}

#[test]
fn valid_observation_with_value_quantity_and_components() {
    assert_valid(&observation());
}

#[test]
fn valid_bundle_with_entries() {
    let bundle = json!({
        "resourceType": "Bundle",
        "id": "b1",
        "type": "transaction",
        "timestamp": "2024-03-01T10:00:00Z",
        "entry": [
            {"fullUrl": "urn:uuid:0b4a8c1e-3f5e-4d6f-9a1b-2c3d4e5f6a7b", "resource": patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}},
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "DELETE", "url": "Patient/old"}}
        ]
    });
    assert_valid(&bundle);
    let searchset = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "link": [{"relation": "self", "url": "http://example.org/fhir/Patient?name=doe"}],
        "entry": [{
            "fullUrl": "http://example.org/fhir/Patient/pat-1",
            "link": [{"relation": "alternate", "url": "http://example.org/other"}],
            "resource": patient(),
            "search": {"mode": "match", "score": 1},
            "response": {"status": "200 OK", "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}}
        }]
    });
    assert_valid(&searchset);
}

#[test]
fn errors_inside_bundle_entries_have_paths() {
    let mut p = patient();
    p["birthDate"] = json!("1990-02-30");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": observation()}, {"resource": p}, {"resource": {"resourceType": "Nope"}}]
    });
    let found = issues(bundle);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].code, "value");
    assert_eq!(
        found[0].expression.as_deref(),
        Some("Bundle.entry[1].resource.birthDate")
    );
    assert!(
        found[0].diagnostics.contains("1990-02 has no day 30"),
        "{}",
        found[0].diagnostics
    );
    assert_eq!(found[1].code, "not-supported");
    assert_eq!(
        found[1].expression.as_deref(),
        Some("Bundle.entry[2].resource")
    );
}

#[test]
fn unknown_element() {
    let mut p = patient();
    p["foo"] = json!("bar");
    let issue = one_issue(p, "structure", "Patient.foo");
    assert_eq!(issue.diagnostics, "unknown element 'foo' on Patient");

    let mut p = patient();
    p["name"][0]["nickname"] = json!("JD");
    let issue = one_issue(p, "structure", "Patient.name[0].nickname");
    assert_eq!(issue.diagnostics, "unknown element 'nickname' on HumanName");

    let mut p = patient();
    p["contact"][0]["foo"] = json!(1);
    let issue = one_issue(p, "structure", "Patient.contact[0].foo");
    assert_eq!(
        issue.diagnostics,
        "unknown element 'foo' on Patient.contact"
    );

    let mut p = patient();
    p["birthdate"] = json!("1990");
    let issue = one_issue(p, "structure", "Patient.birthdate");
    assert!(
        issue.diagnostics.contains("did you mean 'birthDate'"),
        "{}",
        issue.diagnostics
    );

    let mut p = patient();
    p["fhir_comments"] = json!(["a comment"]);
    one_issue(p, "structure", "Patient.fhir_comments");

    // resourceType belongs on resources only.
    let mut p = patient();
    p["name"][0]["resourceType"] = json!("HumanName");
    let issue = one_issue(p, "structure", "Patient.name[0].resourceType");
    assert!(
        issue.diagnostics.contains("resources only"),
        "{}",
        issue.diagnostics
    );

    // `_x` only for primitives.
    let mut p = patient();
    p["_name"] = json!([{"id": "x"}]);
    let issue = one_issue(p, "structure", "Patient.name");
    assert!(
        issue.diagnostics.contains("not primitive"),
        "{}",
        issue.diagnostics
    );
}

#[test]
fn bad_date() {
    let mut p = patient();
    p["birthDate"] = json!("1990-13-01");
    let issue = one_issue(p, "value", "Patient.birthDate");
    assert_eq!(
        issue.diagnostics,
        "birthDate '1990-13-01' is not a valid FHIR date (expected YYYY, YYYY-MM or YYYY-MM-DD; month 13 is not 01-12)"
    );

    for bad in [
        "1990-1-01",
        "90-01-01",
        "1990/01/01",
        "1990-01-01T10:00:00Z",
        "0000",
        "1990-02-29",
        "1990-04-31",
        "1990-00",
        "",
    ] {
        let mut p = patient();
        p["birthDate"] = json!(bad);
        one_issue(p, "value", "Patient.birthDate");
    }
    for good in ["1990", "1990-02", "2000-02-29", "1904-02-29", "1990-12-31"] {
        let mut p = patient();
        p["birthDate"] = json!(good);
        assert_valid(&p);
    }
    let mut p = patient();
    p["birthDate"] = json!(19900101);
    let issue = one_issue(p, "value", "Patient.birthDate");
    assert_eq!(
        issue.diagnostics,
        "'birthDate' must be a JSON string (FHIR date), found number 19900101"
    );
}

#[test]
fn bad_choice_type_name() {
    let mut o = observation();
    let q = o
        .as_object_mut()
        .expect("object")
        .remove("valueQuantity")
        .expect("valueQuantity");
    o["valueFoo"] = q;
    let issue = one_issue(o, "structure", "Observation.valueFoo");
    assert!(
        issue.diagnostics.starts_with("unknown element 'valueFoo' on Observation (value[x] is a choice: use one of valueQuantity, valueCodeableConcept, valueString"),
        "{}",
        issue.diagnostics
    );

    let mut o = observation();
    o["component"][0]["value"] = json!(1);
    o["component"][0]
        .as_object_mut()
        .expect("object")
        .remove("valueQuantity");
    one_issue(o, "structure", "Observation.component[0].value");

    // Two choices of one element.
    let mut o = observation();
    o["valueString"] = json!("high");
    let issue = one_issue(o, "structure", "Observation.valueString");
    assert!(
        issue
            .diagnostics
            .contains("only one of the value[x] choices"),
        "{}",
        issue.diagnostics
    );

    // Lowercase type suffix.
    let mut o = observation();
    o["effectivedateTime"] = o["effectiveDateTime"].take();
    o.as_object_mut()
        .expect("object")
        .remove("effectiveDateTime");
    one_issue(o, "structure", "Observation.effectivedateTime");
}

#[test]
fn array_where_single_expected() {
    let mut p = patient();
    p["birthDate"] = json!(["1990-01-01"]);
    let issue = one_issue(p, "structure", "Patient.birthDate");
    assert!(
        issue
            .diagnostics
            .starts_with("'birthDate' must not be an array (max 1)"),
        "{}",
        issue.diagnostics
    );

    let mut o = observation();
    o["code"] = json!([{"text": "x"}]);
    one_issue(o, "structure", "Observation.code");
}

#[test]
fn single_where_array_expected() {
    let mut p = patient();
    p["name"] = json!({"family": "Doe"});
    let issue = one_issue(p, "structure", "Patient.name");
    assert!(
        issue
            .diagnostics
            .starts_with("'name' must be an array (max *)"),
        "{}",
        issue.diagnostics
    );

    let mut p = patient();
    p["name"][0]["given"] = json!("Jane");
    one_issue(p, "structure", "Patient.name[0].given");
}

#[test]
fn missing_required() {
    let o = json!({"resourceType": "Observation", "subject": {"reference": "Patient/1"}});
    let found = issues(o);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].code, "required");
    assert_eq!(found[0].expression.as_deref(), Some("Observation.status"));
    assert_eq!(
        found[0].diagnostics,
        "element 'status' is required on Observation (min 1)"
    );
    assert_eq!(found[1].code, "required");
    assert_eq!(found[1].expression.as_deref(), Some("Observation.code"));

    // In a backbone element that is present.
    let mut o = observation();
    o["component"][1]
        .as_object_mut()
        .expect("object")
        .remove("code");
    let issue = one_issue(o, "required", "Observation.component[1].code");
    assert_eq!(
        issue.diagnostics,
        "element 'code' is required on Observation.component (min 1)"
    );

    // Extension.url.
    let mut p = patient();
    p["extension"][0]["extension"][1] = json!({"valueString": "White"});
    one_issue(p, "required", "Patient.extension[0].extension[1].url");

    // A required choice element.
    let r = json!({"resourceType": "Library", "status": "draft", "type": {"text": "x"},
        "useContext": [{"code": {"code": "age"}}]});
    let issue = one_issue(r, "required", "Library.useContext[0].value[x]");
    assert!(
        issue
            .diagnostics
            .contains("valueCodeableConcept, valueQuantity, valueRange, valueReference"),
        "{}",
        issue.diagnostics
    );

    // A primitive given only by its extensions satisfies min 1.
    let o = json!({"resourceType": "Observation", "_status": {"extension": [{"url": "http://example.org/why", "valueString": "unknown"}]}, "code": {"text": "x"}});
    assert_valid(&o);
}

#[test]
fn bad_resource_type() {
    let issue = issues(json!({"resourceType": "Foo"})).remove(0);
    assert_eq!(issue.code, "not-supported");
    assert_eq!(issue.expression, None);
    assert!(
        issue.diagnostics.contains("unknown resourceType 'Foo'"),
        "{}",
        issue.diagnostics
    );

    let issue = issues(json!({"resourceType": "patient"})).remove(0);
    assert_eq!(issue.code, "not-supported");
    assert!(
        issue.diagnostics.contains("did you mean 'Patient'"),
        "{}",
        issue.diagnostics
    );

    for abs in ["Resource", "DomainResource"] {
        let issue = issues(json!({"resourceType": abs})).remove(0);
        assert_eq!(issue.code, "not-supported");
        assert!(
            issue.diagnostics.contains("abstract"),
            "{}",
            issue.diagnostics
        );
    }
    let issue = issues(json!({"resourceType": "SubscriptionStatus"})).remove(0);
    assert_eq!(issue.code, "not-supported");

    let issue = issues(json!({"id": "x"})).remove(0);
    assert_eq!(issue.code, "invalid");
    let issue = issues(json!({"resourceType": 5})).remove(0);
    assert_eq!(issue.code, "invalid");
    let issue = issues(json!([{"resourceType": "Patient"}])).remove(0);
    assert_eq!(issue.code, "structure");
    let issue = issues(json!("Patient")).remove(0);
    assert_eq!(issue.code, "structure");
}

#[test]
fn bad_id() {
    for bad in [
        "has space",
        "under_score",
        "",
        "x".repeat(65).as_str(),
        "ünï",
    ] {
        let mut p = patient();
        p["id"] = json!(bad);
        let issue = one_issue(p, "invalid", "Patient.id");
        assert!(
            issue.diagnostics.contains("resource id"),
            "{}",
            issue.diagnostics
        );
    }
    let mut p = patient();
    p["id"] = json!(42);
    one_issue(p, "value", "Patient.id");
    let mut p = patient();
    p["id"] = json!("A-Za-z0-9.-".to_string() + &"x".repeat(53));
    assert_valid(&p);
    // Element ids are strings, not ids.
    let mut p = patient();
    p["name"][0]["id"] = json!("any string at all");
    assert_valid(&p);
}

#[test]
fn contained_resources_are_validated() {
    let mut o = observation();
    o["contained"] = json!([
        {"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01"},
        {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Who"}]}
    ]);
    o["subject"] = json!({"reference": "#p1"});
    assert_valid(&o);

    let mut bad = o.clone();
    bad["contained"][1]["foo"] = json!(true);
    let issue = one_issue(bad, "structure", "Observation.contained[1].foo");
    assert_eq!(issue.diagnostics, "unknown element 'foo' on Practitioner");

    let mut bad = o.clone();
    bad["contained"][0] = json!({"resourceType": "Observation", "id": "o2"});
    assert_eq!(issues(bad).len(), 2);

    let mut bad = o.clone();
    bad["contained"][0] = json!({"id": "p1"});
    one_issue(bad, "invalid", "Observation.contained[0]");

    let mut bad = o;
    bad["contained"] = json!({"resourceType": "Patient"});
    one_issue(bad, "structure", "Observation.contained");
}

#[test]
fn primitive_extensions() {
    let mut p = patient();
    p["_birthDate"] = json!({"id": "bd", "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1990-02-28T14:35:45-05:00"}]});
    assert_valid(&p);

    // Only the extension, no value.
    let mut p = patient();
    p.as_object_mut().expect("object").remove("birthDate");
    p["_birthDate"] = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]});
    assert_valid(&p);

    // Arrays with nulls lined up.
    let mut p = patient();
    p["name"][0]["given"] = json!(["Jane", null]);
    p["name"][0]["_given"] =
        json!([null, {"extension": [{"url": "http://example.org/x", "valueBoolean": true}]}]);
    assert_valid(&p);

    // Choice primitives have companions too.
    let mut o = observation();
    o.as_object_mut().expect("object").remove("valueQuantity");
    o["valueString"] = json!("high");
    o["_valueString"] = json!({"id": "v"});
    assert_valid(&o);
    let mut bad = o.clone();
    bad.as_object_mut().expect("object").remove("valueString");
    bad["valueBoolean"] = json!(true);
    one_issue(bad, "structure", "Observation.valueString");

    // Wrong shapes.
    let mut p = patient();
    p["_birthDate"] = json!("x");
    one_issue(p, "structure", "Patient.birthDate");
    let mut p = patient();
    p["_birthDate"] = json!({"extension": [{"url": "http://x"}], "foo": 1});
    let issue = one_issue(p, "structure", "Patient.birthDate.foo");
    assert_eq!(issue.diagnostics, "unknown element 'foo' on Element");
    let mut p = patient();
    p["_birthDate"] = json!({"extension": [{"valueString": "x"}]});
    one_issue(p, "required", "Patient.birthDate.extension[0].url");
    let mut p = patient();
    p["name"][0]["given"] = json!(["Jane", null]);
    one_issue(p, "structure", "Patient.name[0].given[1]");
    let mut p = patient();
    p["name"][0]["_given"] = json!([null]);
    one_issue(p, "structure", "Patient.name[0].given");
    let mut p = patient();
    p["name"][0]["given"] = json!(["Jane", null]);
    p["name"][0]["_given"] = json!([{"id": "a"}, null]);
    one_issue(p, "structure", "Patient.name[0].given[1]");
    let mut p = patient();
    p.as_object_mut().expect("object").remove("name");
    p["_gender"] = json!([{"id": "a"}]);
    one_issue(p, "structure", "Patient.gender");
}

#[test]
fn json_rules_no_empty_no_null() {
    let cases = [
        ("name", json!([]), "Patient.name"),
        ("name", json!([{}]), "Patient.name[0]"),
        ("maritalStatus", json!({}), "Patient.maritalStatus"),
        ("gender", json!(""), "Patient.gender"),
        ("gender", Value::Null, "Patient.gender"),
        ("name", json!([null]), "Patient.name[0]"),
        ("name", json!([[{"family": "x"}]]), "Patient.name[0]"),
    ];
    for (key, value, expr) in cases {
        let mut p = patient();
        p[key] = value;
        let found = issues(p);
        assert_eq!(found.len(), 1, "{key}: {found:#?}");
        assert_eq!(found[0].expression.as_deref(), Some(expr), "{key}");
    }
}

#[test]
fn nested_paths() {
    let mut p = patient();
    p["name"][0]["given"] = json!(["Jane", 7]);
    let issue = one_issue(p, "value", "Patient.name[0].given[1]");
    assert_eq!(
        issue.diagnostics,
        "'given' must be a JSON string (FHIR string), found number 7"
    );

    let mut o = observation();
    o["valueQuantity"]["value"] = json!("120");
    let issue = one_issue(o, "value", "Observation.valueQuantity.value");
    assert!(
        issue.diagnostics.contains("JSON number (FHIR decimal)"),
        "{}",
        issue.diagnostics
    );

    let mut o = observation();
    o["valueQuantity"] = json!("120 mmHg");
    let issue = one_issue(o, "structure", "Observation.valueQuantity");
    assert!(
        issue
            .diagnostics
            .contains("must be a JSON object (Quantity)"),
        "{}",
        issue.diagnostics
    );

    let mut p = patient();
    p["text"]["div"] = json!({"p": "x"});
    one_issue(p, "structure", "Patient.text.div");
}

#[test]
fn content_references() {
    let q = json!({
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [{
            "linkId": "1", "type": "group",
            "item": [
                {"linkId": "1.1", "type": "string", "text": "Name?"},
                {"linkId": "1.2", "type": "group", "item": [{"linkId": "1.2.1", "type": "boolean", "enableWhen": [{"question": "1.1", "operator": "exists", "answerBoolean": true}]}]}
            ]
        }]
    });
    assert_valid(&q);
    let mut bad = q.clone();
    bad["item"][0]["item"][1]["item"][0]["bogus"] = json!(1);
    let issue = one_issue(
        bad,
        "structure",
        "Questionnaire.item[0].item[1].item[0].bogus",
    );
    assert_eq!(
        issue.diagnostics,
        "unknown element 'bogus' on Questionnaire.item"
    );
    let mut bad = q;
    bad["item"][0]["item"][1]["item"][0]
        .as_object_mut()
        .expect("object")
        .remove("linkId");
    one_issue(
        bad,
        "required",
        "Questionnaire.item[0].item[1].item[0].linkId",
    );
}

#[test]
fn parameters_with_resources() {
    let params = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "resource": patient()},
            {"name": "count", "valueInteger": 3},
            {"name": "nested", "part": [{"name": "x", "valueCode": "y"}]}
        ]
    });
    assert_valid(&params);
    let mut bad = params;
    bad["parameter"][0]["resource"]["gender"] = json!(["female"]);
    one_issue(bad, "structure", "Parameters.parameter[0].resource.gender");
}

#[test]
fn primitive_formats() {
    // (type, valid values, invalid values), tried as Extension.value[x].
    let table: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
        (
            "boolean",
            vec![json!(true), json!(false)],
            vec![json!("true"), json!(1)],
        ),
        (
            "integer",
            vec![json!(0), json!(-5), json!(2147483647), json!(-2147483648)],
            vec![json!(2147483648i64), json!(1.5), json!("1"), json!(1e3)],
        ),
        (
            "unsignedInt",
            vec![json!(0), json!(7)],
            vec![json!(-1), json!(4294967296u64)],
        ),
        ("positiveInt", vec![json!(1)], vec![json!(0), json!(-3)]),
        (
            "decimal",
            vec![json!(0), json!(-1.25), json!(1e-3)],
            vec![json!("1.0"), json!(true)],
        ),
        (
            "string",
            vec![json!("x"), json!(" padded "), json!("line\nbreak")],
            vec![json!(""), json!("form\u{0c}feed"), json!(3)],
        ),
        ("markdown", vec![json!("**bold**")], vec![json!("")]),
        (
            "uri",
            vec![json!("http://x.org/a"), json!("urn:x")],
            vec![json!("has space"), json!("")],
        ),
        (
            "url",
            vec![json!("https://x.org/a?b=c")],
            vec![json!("a\tb")],
        ),
        (
            "canonical",
            vec![json!("http://x.org/StructureDefinition/y|1.0")],
            vec![json!(" x")],
        ),
        (
            "id",
            vec![json!("a.b-C9")],
            vec![json!("a b"), json!("a_b")],
        ),
        (
            "oid",
            vec![json!("urn:oid:1.2.840.113556"), json!("urn:oid:2.0")],
            vec![
                json!("1.2.3"),
                json!("urn:oid:3.1"),
                json!("urn:oid:1"),
                json!("urn:oid:1.02"),
                json!("urn:oid:1..2"),
            ],
        ),
        (
            "uuid",
            vec![json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")],
            vec![
                json!("c757873d-ec9a-4326-a141-556f43239520"),
                json!("urn:uuid:C757873D-EC9A-4326-A141-556F43239520"),
                json!("urn:uuid:c757873d-ec9a-4326-a141-556f4323952"),
            ],
        ),
        (
            "code",
            vec![json!("final"), json!("a b")],
            vec![json!(" final"), json!("final "), json!("a  b"), json!("")],
        ),
        (
            "date",
            vec![json!("2024"), json!("2024-02"), json!("2024-02-29")],
            vec![
                json!("2023-02-29"),
                json!("2024-2-1"),
                json!("2024-01-01T00:00:00Z"),
            ],
        ),
        (
            "dateTime",
            vec![
                json!("2024"),
                json!("2024-06"),
                json!("2024-06-30"),
                json!("2024-06-30T23:59:60Z"),
                json!("2024-06-30T10:00:00.123456+14:00"),
                json!("2024-06-30T10:00:00-13:59"),
            ],
            vec![
                json!("2024-06-30T10:00:00"),
                json!("2024-06-30T10:00Z"),
                json!("2024-06-30T24:00:00Z"),
                json!("2024-06-30T10:00:00+14:30"),
                json!("2024-06-30T10:00:00.Z"),
                json!("2024-06-30 10:00:00Z"),
                json!("2024-06-31T10:00:00Z"),
                json!("2024-06-30T10:00:00+0100"),
            ],
        ),
        (
            "instant",
            vec![
                json!("2024-06-30T10:00:00Z"),
                json!("2024-06-30T10:00:00.5-05:00"),
            ],
            vec![
                json!("2024-06-30"),
                json!("2024-06-30T10:00:00"),
                json!("2024"),
            ],
        ),
        (
            "time",
            vec![json!("00:00:00"), json!("23:59:59.999")],
            vec![
                json!("24:00:00"),
                json!("10:00"),
                json!("10:00:00Z"),
                json!("1:00:00"),
            ],
        ),
        (
            "base64Binary",
            vec![json!("aGVsbG8="), json!("aGVs bG8h")],
            vec![json!("aGVsbG8"), json!("aGVs!G8="), json!("")],
        ),
    ];
    for (ty, good, bad) in table {
        let key = format!("value{}{}", ty[..1].to_ascii_uppercase(), &ty[1..]);
        for value in good {
            let r = json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [{"url": "http://example.org/x", key.as_str(): value}]});
            assert_valid(&r);
        }
        for value in bad {
            let r = json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [{"url": "http://example.org/x", key.as_str(): value.clone()}]});
            let found = issues(r);
            assert_eq!(found.len(), 1, "{ty} {value}: {found:#?}");
            assert_eq!(
                found[0].expression.as_deref(),
                Some(format!("Basic.extension[0].{key}").as_str())
            );
            assert!(found[0].code == "value", "{ty} {value}: {}", found[0]);
        }
    }
}

#[test]
fn at_most_twenty_issues() {
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    for i in 0..50 {
        p.insert(format!("bogus{i}"), json!(i));
    }
    assert_eq!(issues(Value::Object(p)).len(), 20);
}

#[test]
fn every_resource_type_is_recognised() {
    let types = v().resource_types();
    assert!(types.len() >= 140, "only {} resource types", types.len());
    assert_eq!(
        types.len(),
        146,
        "R4 4.0.1 defines 146 concrete resource types"
    );
    assert!(types.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    for t in &types {
        assert!(v().is_resource_type(t), "{t}");
        assert_valid(&minimal(&v().defs, t));
    }
    for t in [
        "Patient",
        "Observation",
        "Bundle",
        "Parameters",
        "Binary",
        "OperationOutcome",
        "Questionnaire",
    ] {
        assert!(types.contains(&t), "{t}");
    }
    for t in [
        "Resource",
        "DomainResource",
        "MetadataResource",
        "HumanName",
        "patient",
        "",
        "SubscriptionStatus",
    ] {
        assert!(!v().is_resource_type(t), "{t}");
    }
}

// --- Generated examples -------------------------------------------------------------

/// A valid sample value of a primitive type.
fn sample_prim(p: Prim) -> Value {
    match p {
        Prim::Base64Binary => json!("aGVsbG8gd29ybGQ="),
        Prim::Boolean => json!(true),
        Prim::Canonical => json!("http://example.org/fhir/StructureDefinition/x|1.0"),
        Prim::Code => json!("some-code"),
        Prim::Date => json!("2020-02-29"),
        Prim::DateTime => json!("2020-02-29T10:20:30.5+01:00"),
        Prim::Decimal => json!(1.5),
        Prim::Id | Prim::ResourceId => json!("abc-1.2"),
        Prim::Instant => json!("2020-02-29T10:20:30Z"),
        Prim::Integer => json!(-7),
        Prim::Markdown => json!("*some* markdown"),
        Prim::Oid => json!("urn:oid:1.2.3.4"),
        Prim::PositiveInt => json!(3),
        Prim::String => json!("some text"),
        Prim::Time => json!("10:20:30"),
        Prim::UnsignedInt => json!(0),
        Prim::Uri | Prim::Url => json!("http://example.org/x"),
        Prim::Uuid => json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        Prim::Xhtml => json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"),
    }
}

/// A valid sample value of a type: required elements always, every element while `full`
/// and not deeper than 2 objects.
fn sample(defs: &Defs, ty: Ty, depth: usize, full: bool) -> Value {
    match ty {
        Ty::Prim(p) => sample_prim(p),
        Ty::Resource => minimal(defs, "Basic"),
        Ty::Complex(s) => sample_object(defs, s, depth, full),
    }
}

fn sample_object(defs: &Defs, shape_idx: u32, depth: usize, full: bool) -> Value {
    assert!(depth < 20, "required elements nest too deep");
    let shape = &defs.shapes[shape_idx as usize];
    let mut obj = Map::new();
    for elem in &shape.elems {
        if elem.min == 0 && !(full && depth < 2) {
            continue;
        }
        let key: &str = if elem.choice {
            &elem.variants[0]
        } else {
            &elem.name
        };
        let ty = shape.keys.get(key).expect("key of element").ty;
        let one = sample(defs, ty, depth + 1, full);
        obj.insert(key.to_string(), if elem.many { json!([one]) } else { one });
    }
    if obj.is_empty() {
        obj.insert("id".into(), json!("some-id"));
    }
    Value::Object(obj)
}

fn minimal(defs: &Defs, resource_type: &str) -> Value {
    let shape = defs.resources[resource_type];
    let mut obj = sample_object(defs, shape, 0, false);
    obj["resourceType"] = json!(resource_type);
    obj
}

fn full(defs: &Defs, resource_type: &str) -> Value {
    let shape = defs.resources[resource_type];
    let mut obj = sample_object(defs, shape, 0, true);
    obj["resourceType"] = json!(resource_type);
    obj
}

#[test]
fn generated_examples_of_every_resource_are_valid() {
    let defs = &v().defs;
    let mut checked = 0;
    for t in v().resource_types() {
        assert_valid(&minimal(defs, t));
        let example = full(defs, t);
        assert_valid(&example);
        checked += 1;

        // Every variant of every top-level choice element.
        let shape = &defs.shapes[defs.resources[t] as usize];
        for elem in shape.elems.iter().filter(|e| e.choice) {
            for variant in &elem.variants {
                let mut r = minimal(defs, t);
                let elem_idx = shape.keys[&**variant].elem;
                r.as_object_mut().expect("object").retain(|k, _| {
                    shape
                        .keys
                        .get(k.as_str())
                        .is_none_or(|key| key.elem != elem_idx)
                });
                let ty = shape.keys[&**variant].ty;
                let one = sample(defs, ty, 1, true);
                r[&**variant] = if elem.many { json!([one]) } else { one };
                assert_valid(&r);
                checked += 1;
            }
        }

        // One unknown element, one wrong cardinality, one missing required element.
        let mut bad = example.clone();
        bad["notAnElement"] = json!(1);
        let found = issues(bad);
        assert_eq!(found.len(), 1, "{t}");
        assert_eq!(
            found[0].expression.as_deref(),
            Some(format!("{t}.notAnElement").as_str())
        );

        if example.get("extension").is_some() {
            let mut bad = example.clone();
            bad["extension"] = bad["extension"][0].take();
            one_issue(bad, "structure", &format!("{t}.extension"));
        }

        if let Some(&r) = shape.required.first() {
            let elem = &shape.elems[r as usize];
            let mut bad = example.clone();
            let map = bad.as_object_mut().expect("object");
            map.retain(|k, _| {
                let key = shape.keys.get(k.as_str());
                key.is_none_or(|key| key.elem != r)
            });
            one_issue(bad, "required", &format!("{t}.{}", elem.name));
        }
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn every_extension_value_type() {
    let defs = &v().defs;
    let ext_shape = &defs.shapes[defs.resources["Basic"] as usize];
    let ext = match ext_shape.keys["extension"].ty {
        Ty::Complex(s) => &defs.shapes[s as usize],
        other => panic!("Basic.extension is {other:?}"),
    };
    assert_eq!(&*ext.name, "Extension");
    let value = ext
        .elems
        .iter()
        .find(|e| e.choice)
        .expect("Extension.value[x]");
    assert!(value.variants.len() >= 50, "{}", value.variants.len());
    for variant in &value.variants {
        let ty = ext.keys[&**variant].ty;
        let mut r = minimal(defs, "Basic");
        r["extension"] =
            json!([{"url": "http://example.org/x", &**variant: sample(defs, ty, 1, true)}]);
        assert_valid(&r);
        // A complex value in place of a primitive or the other way round.
        let wrong = match ty {
            Ty::Prim(_) => json!({"text": "x"}),
            _ => json!("x"),
        };
        r["extension"][0][&**variant] = wrong;
        one_issue(r, "structure", &format!("Basic.extension[0].{variant}"));
    }
}

#[test]
fn definitions_are_complete() {
    let defs = &v().defs;
    assert_eq!(defs.fhir_version, "4.0.1");
    for name in [
        "HumanName",
        "Quantity",
        "Age",
        "Reference",
        "Extension",
        "Narrative",
        "Meta",
        "Timing",
        "Timing.repeat",
        "Dosage",
        "ElementDefinition",
        "Patient.contact",
        "Bundle.entry.request",
        "Questionnaire.item",
    ] {
        assert!(defs.shapes.iter().any(|s| &*s.name == name), "{name}");
    }
    // Every non-resource shape has `id` and `extension`.
    for shape in &defs.shapes {
        assert!(shape.keys.contains_key("id"), "{}", shape.name);
        assert!(
            shape.keys.contains_key("extension")
                || shape.name.starts_with("Binary")
                || shape.name.starts_with("Bundle")
                || shape.name.starts_with("Parameters"),
            "{}",
            shape.name
        );
    }
}

#[test]
fn validation_is_thread_safe() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..50 {
                    assert!(Validator::r4().validate(&observation()).is_ok());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

#[test]
fn view_definitions_are_checked_by_the_view_parser() {
    let good = json!({"resourceType": "ViewDefinition", "id": "names", "name": "names",
        "status": "active", "resource": "Patient",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05Z"},
        "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]}]});
    assert_valid(&good);
    assert!(v().is_stored_type("ViewDefinition") && !v().is_resource_type("ViewDefinition"));
    assert!(v().stored_types().contains(&"ViewDefinition"));
    assert!(v().stored_types().windows(2).all(|w| w[0] < w[1]));

    // A bad column name is named with where it is.
    let mut bad = good.clone();
    bad["select"][0]["column"][0]["name"] = json!("not a name");
    let found = issues(bad);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, "invalid");
    assert_eq!(
        found[0].expression.as_deref(),
        Some("ViewDefinition.select[0].column[0].name")
    );
    // A view of an unknown resource type, a bad id and a bad meta are all refused.
    let mut bad = good.clone();
    bad["resource"] = json!("Patients");
    assert!(issues(bad)[0].diagnostics.contains("Patients"));
    let mut bad = good.clone();
    bad["id"] = json!("no spaces");
    assert_eq!(
        issues(bad)[0].expression.as_deref(),
        Some("ViewDefinition.id")
    );
    let mut bad = good.clone();
    bad["meta"]["lastUpdated"] = json!("yesterday");
    assert_eq!(
        issues(bad)[0].expression.as_deref(),
        Some("ViewDefinition.meta.lastUpdated")
    );
    // Inside a Bundle too.
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "ViewDefinition", "resource": "Patient"}}]});
    let found = issues(bundle);
    assert_eq!(
        found[0].expression.as_deref(),
        Some("Bundle.entry[0].resource.select")
    );
}
