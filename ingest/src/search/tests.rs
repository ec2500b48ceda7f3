use serde_json::json;

use super::*;

fn values<'a>(entries: &'a [IndexEntry], param: &str) -> Vec<&'a IndexValue> {
    entries
        .iter()
        .filter(|e| e.param == param)
        .map(|e| &e.value)
        .collect()
}

#[test]
fn every_vendored_parameter_loads_and_common_types_have_theirs() {
    let p = SearchParams::r4();
    assert!(p.types().count() > 120);
    for (ty, code, kind) in [
        ("Patient", "family", ParamKind::String),
        ("Patient", "birthdate", ParamKind::Date),
        ("Observation", "code", ParamKind::Token),
        ("Observation", "value-quantity", ParamKind::Quantity),
        ("Observation", "code-value-quantity", ParamKind::Composite),
        ("Encounter", "patient", ParamKind::Reference),
        ("RiskAssessment", "probability", ParamKind::Number),
        ("ValueSet", "url", ParamKind::Uri),
        ("Condition", "_tag", ParamKind::Token),
    ] {
        let param = p
            .get(ty, code)
            .unwrap_or_else(|| panic!("{ty}.{code} missing"));
        assert_eq!(param.kind, kind, "{ty}.{code}");
    }
    assert!(p.get("Patient", "near").is_none());
}

#[test]
fn dates_cover_the_instants_of_their_precision() {
    let (lo, hi) = date_range("2024").unwrap();
    assert_eq!(lo, 1_704_067_200_000_000);
    assert_eq!(hi, 1_735_689_600_000_000 - 1);
    let (lo, hi) = date_range("2024-03-05").unwrap();
    assert_eq!(hi - lo + 1, 86_400_000_000);
    let (lo, _) = date_range("2024-03-05T10:00:00+01:00").unwrap();
    assert_eq!(lo, date_range("2024-03-05T09:00:00Z").unwrap().0);
    let (lo, hi) = date_range("2024-03-05T10:00:00.250Z").unwrap();
    assert_eq!(hi - lo + 1, 1_000);
    assert!(date_range("2024-13").is_none());
    assert!(date_range("yesterday").is_none());
}

#[test]
fn strings_are_compared_without_case_or_accents() {
    assert_eq!(normalize_string("  Émile  Zoë "), "emile zoe");
    assert_eq!(normalize_string("ŁUKASZ Dvořák"), "lukasz dvorak");
    assert_eq!(normalize_string("Straße"), "strasse");
    assert_eq!(normalize_string("Иван"), "иван");
    assert_eq!(normalize_string("Nguyễn Søren Łódź"), "nguyen soren lodz");
}

#[test]
fn a_patient_is_found_by_its_names_identifiers_dates_and_references() {
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "12345",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
        "name": [{"family": "Müller", "given": ["Anna", "Maria"], "text": "Anna Müller"}],
        "gender": "female",
        "birthDate": "1980-05",
        "telecom": [{"system": "phone", "value": "555-1234"}],
        "address": [{"city": "Bern", "postalCode": "3000"}],
        "generalPractitioner": [{"reference": "Practitioner/dr1"}],
        "deceasedBoolean": false,
        "meta": {"tag": [{"system": "urn:t", "code": "demo"}]}
    });
    let e = SearchParams::r4().extract("Patient", &patient);
    assert_eq!(
        values(&e, "family"),
        vec![&IndexValue::String("Müller".into())]
    );
    assert_eq!(values(&e, "given").len(), 2);
    assert_eq!(values(&e, "name").len(), 4); // text, family, two given
    assert_eq!(
        values(&e, "identifier"),
        vec![&IndexValue::Token {
            system: Some("urn:mrn".into()),
            code: Some("12345".into()),
            text: None,
            of_type: Some("http://terminology.hl7.org/CodeSystem/v2-0203|MR".into()),
        }]
    );
    let birth = date_range("1980-05").unwrap();
    assert_eq!(
        values(&e, "birthdate"),
        vec![&IndexValue::Date(birth.0, birth.1)]
    );
    assert_eq!(values(&e, "phone").len(), 1);
    assert!(values(&e, "email").is_empty());
    assert_eq!(values(&e, "address-city").len(), 1);
    assert_eq!(
        values(&e, "general-practitioner"),
        vec![&IndexValue::Reference {
            reference: Some("Practitioner/dr1".into()),
            identifier: None
        }]
    );
    assert!(matches!(values(&e, "deceased")[..],
        [IndexValue::Token { code: Some(c), .. }] if c == "false"));
    assert!(matches!(values(&e, "_tag")[..],
        [IndexValue::Token { code: Some(c), .. }] if c == "demo"));
    assert!(
        values(&e, "_id").is_empty(),
        "the server indexes _id itself"
    );
}

#[test]
fn an_observation_gives_codes_quantities_periods_and_composites() {
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "HR"},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectivePeriod": {"start": "2024-03-05T10:00:00Z"},
        "valueQuantity": {"value": 72.5, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let e = SearchParams::r4().extract("Observation", &obs);
    // The coding with its display, and the concept's own text, which `:text` finds too.
    assert!(matches!(values(&e, "code")[..],
        [IndexValue::Token { system: Some(s), code: Some(c), text: Some(t), .. },
         IndexValue::Token { system: None, code: None, text: Some(hr), .. }]
        if s == "http://loinc.org" && c == "8867-4" && t == "Heart rate" && hr == "HR"));
    assert_eq!(values(&e, "patient").len(), 1);
    assert_eq!(values(&e, "subject").len(), 1);
    let start = date_range("2024-03-05T10:00:00Z").unwrap().0;
    assert_eq!(values(&e, "date"), vec![&IndexValue::Date(start, i64::MAX)]);
    assert!(matches!(values(&e, "value-quantity")[..],
        [IndexValue::Quantity { value: Some(v), lo, hi, code: Some(c), .. }]
        if *v == 72.5 && (*lo - 72.45).abs() < 1e-9 && (*hi - 72.55).abs() < 1e-9 && c == "/min"));
    // Composites are not stored; they are extracted when a search checks them.
    assert!(values(&e, "code-value-quantity").is_empty());
    let composite = SearchParams::r4().extract_param("Observation", "code-value-quantity", &obs);
    assert!(matches!(&composite[..], [IndexValue::Composite(parts)] if parts.len() == 2));

    // Unions of other parameters are not stored: an index takes them from their parts.
    assert!(values(&e, "combo-code").is_empty());
    assert!(values(&e, "combo-value-quantity").is_empty());
    let combo = |code: &str| {
        let mut parts = SearchParams::r4()
            .get("Observation", code)
            .unwrap()
            .union_of
            .clone();
        parts.sort();
        parts
    };
    assert_eq!(combo("combo-code"), ["code", "component-code"]);
    assert_eq!(
        combo("combo-value-quantity"),
        ["component-value-quantity", "value-quantity"]
    );
    assert!(combo("patient").is_empty() && combo("subject").is_empty());
    assert_eq!(
        SearchParams::r4().unions_fed_by("Observation", "code"),
        ["combo-code"]
    );
    // Evaluated on their own (for `_include` and composites), they still give values:
    // the coding and the concept's text.
    assert_eq!(
        SearchParams::r4()
            .extract_param("Observation", "combo-code", &obs)
            .len(),
        2
    );

    // `patient` keeps only references to a Patient
    let on_group = json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Group/g1"}});
    let e = SearchParams::r4().extract("Observation", &on_group);
    assert!(values(&e, "patient").is_empty());
    assert_eq!(values(&e, "subject").len(), 1);
}

#[test]
fn entries_survive_their_stored_form() {
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
        "valueQuantity": {"value": 1}, "effectiveDateTime": "2020"});
    let e = SearchParams::r4().extract("Observation", &obs);
    let text = encode(&e);
    assert_eq!(decode(&text).unwrap(), e);
    assert!(decode("{").is_none());
}

#[test]
fn view_definitions_are_found_by_name_url_and_status() {
    let view = json!({"resourceType": "ViewDefinition", "name": "patient_names",
        "url": "http://example.org/views/patient_names", "status": "active",
        "resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]});
    let e = SearchParams::r4().extract("ViewDefinition", &view);
    assert_eq!(
        values(&e, "name"),
        [&IndexValue::String("patient_names".into())]
    );
    assert_eq!(
        values(&e, "url"),
        [&IndexValue::Uri(
            "http://example.org/views/patient_names".into()
        )]
    );
    assert!(matches!(values(&e, "status")[..],
        [IndexValue::Token { code: Some(c), system: None, .. }] if c == "active"));
    // Without them, nothing is indexed.
    let bare = json!({"resourceType": "ViewDefinition", "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id"}]}]});
    assert!(
        SearchParams::r4()
            .extract("ViewDefinition", &bare)
            .is_empty()
    );
}
