//! What the conformance suite does not cover: the checks of `from_json` one by one, and
//! the column metadata.

use serde_json::{Value, json};

use super::{ViewDefinition, ViewError};

fn invalid(view: Value) -> String {
    match ViewDefinition::from_json(&view) {
        Err(e @ ViewError::Invalid { .. }) => e.to_string(),
        other => panic!("expected an invalid view, got {other:?}"),
    }
}

fn patient_view(select: Value) -> Value {
    json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": select})
}

#[test]
fn the_specification_rules_are_checked_before_any_data() {
    let e = invalid(json!({"resource": "Patient", "selects": [], "select": []}));
    assert!(e.contains("unknown key \"selects\""), "{e}");
    let e = invalid(patient_view(
        json!([{"column": [{"name": "id", "path": "id", "colection": true}]}]),
    ));
    assert!(
        e.contains("select[0].column[0]") && e.contains("\"colection\""),
        "{e}"
    );
    let e = invalid(patient_view(
        json!([{"column": [{"name": "_id", "path": "id"}]}]),
    ));
    assert!(e.contains("select[0].column[0].name"), "{e}");
    let e = invalid(patient_view(json!([
        {"column": [{"name": "id", "path": "id"}]},
        {"forEach": "name", "column": [{"name": "id", "path": "family"}]}
    ])));
    assert!(e.contains("\"id\" is defined twice"), "{e}");
    let e = invalid(patient_view(
        json!([{"forEach": "name", "repeat": ["item"]}]),
    ));
    assert!(e.contains("at most one of forEach"), "{e}");
    let e = invalid(
        json!({"resource": "Patinet", "select": [{"column": [{"name": "id", "path": "id"}]}]}),
    );
    assert!(e.contains("not a FHIR R4 resource type"), "{e}");
    let e = invalid(json!({"resource": "Patient", "name": "patient names", "select": []}));
    assert!(e.contains("not a valid name"), "{e}");
    let e = invalid(patient_view(json!([])));
    assert!(e.contains("at least one select"), "{e}");
    let e = invalid(json!({"resource": "Patient",
        "constant": [{"name": "c", "valueString": "a", "valueCode": "b"}],
        "select": [{"column": [{"name": "id", "path": "%c"}]}]}));
    assert!(e.contains("exactly one value[x]"), "{e}");
    let e = invalid(json!({"resource": "Patient",
        "constant": [{"name": "c", "valueDate": "12 May"}],
        "select": [{"column": [{"name": "id", "path": "%c"}]}]}));
    assert!(e.contains("not a valid Date value"), "{e}");
    let e = invalid(patient_view(
        json!([{"column": [{"name": "id", "path": "name.where("}]}]),
    ));
    assert!(e.contains("select[0].column[0].path"), "{e}");
}

#[test]
fn columns_keep_their_declarations_in_output_order() {
    let view = ViewDefinition::from_json(&json!({
        "resourceType": "ViewDefinition",
        "name": "obs",
        "status": "active",
        "resource": "Observation",
        "select": [{
            "column": [{"name": "id", "path": "getResourceKey()", "type": "id",
                        "description": "the key", "tag": [{"name": "ansi/type", "value": "VARCHAR"}]}],
            "unionAll": [
                {"column": [{"name": "v", "path": "value.ofType(Quantity)", "type": "Quantity"}]},
                {"column": [{"name": "v", "path": "component.value.ofType(Quantity)", "collection": true}]}
            ]
        }, {
            "column": [{"name": "patient", "path": "subject.getReferenceKey(Patient)"}]
        }]
    }))
    .unwrap();
    assert_eq!(view.name(), Some("obs"));
    assert_eq!(view.status(), Some("active"));
    assert_eq!(view.resource_type(), "Observation");
    let cols = view.columns();
    let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "v", "patient"]);
    assert_eq!(cols[0].fhir_type.as_deref(), Some("id"));
    assert_eq!(cols[0].description.as_deref(), Some("the key"));
    assert_eq!(
        cols[0].tags,
        [("ansi/type".to_string(), "VARCHAR".to_string())]
    );
    // The first unionAll branch defines the column.
    assert_eq!(cols[1].fhir_type.as_deref(), Some("Quantity"));
    assert!(!cols[1].collection);

    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "w"}, "subject": {"reference": "Patient/p9/_history/2"},
        "valueQuantity": {"value": 72.5, "unit": "kg"}});
    assert_eq!(
        view.evaluate(&obs).unwrap(),
        vec![
            vec![
                json!("o1"),
                json!({"value": 72.5, "unit": "kg"}),
                json!("p9")
            ],
            vec![json!("o1"), json!([]), json!("p9")],
        ]
    );
    // Another type gives no rows.
    assert!(
        view.evaluate(&json!({"resourceType": "Patient", "id": "p9"}))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn reference_keys_follow_the_type_and_skip_what_cannot_be_resolved() {
    let view = ViewDefinition::from_json(&patient_view(json!([{
        "forEach": "generalPractitioner",
        "column": [
            {"name": "any", "path": "getReferenceKey()"},
            {"name": "org", "path": "getReferenceKey(Organization)"}
        ]
    }])))
    .unwrap();
    let p = json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [
        {"reference": "Organization/o1"},
        {"reference": "https://example.org/fhir/Practitioner/d1"},
        {"reference": "#contained"},
        {"identifier": {"value": "x"}}
    ]});
    assert_eq!(
        view.evaluate(&p).unwrap(),
        vec![
            vec![json!("o1"), json!("o1")],
            vec![json!("d1"), Value::Null],
            vec![Value::Null, Value::Null],
            vec![Value::Null, Value::Null],
        ]
    );
    let e = ViewDefinition::from_json(&patient_view(json!([{
        "column": [{"name": "k", "path": "link.other.getReferenceKey(Patinet)"}]
    }])))
    .unwrap()
    .evaluate(&json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/1"}, "type": "seealso"}]}))
    .unwrap_err()
    .to_string();
    assert!(e.contains("Patinet is not a FHIR R4 resource type"), "{e}");
}

#[test]
fn repeat_rejects_a_path_that_never_ends() {
    let view = ViewDefinition::from_json(&json!({"resource": "QuestionnaireResponse",
        "select": [{"repeat": ["item", "item"], "column": [{"name": "l", "path": "linkId"}]}]}))
    .unwrap();
    // Two paths to the same children double each level: the limit is reached long
    // before the 2^40 elements.
    let mut item = json!({"linkId": "leaf"});
    for _ in 0..40 {
        item = json!({"linkId": "n", "item": [item]});
    }
    let qr =
        json!({"resourceType": "QuestionnaireResponse", "status": "completed", "item": [item]});
    let e = view.evaluate(&qr).unwrap_err().to_string();
    assert!(e.contains("repeat reached more than"), "{e}");
}

/// The text plan hands a resource to the interpreter wherever their answers could
/// differ; these resources each have such a part, and both must still agree.
#[test]
fn text_plan_and_interpreter_agree_on_awkward_resources() {
    let view = ViewDefinition::from_json(&json!({
        "resourceType": "ViewDefinition", "name": "obs", "resource": "Observation",
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "any_ref", "path": "subject.getReferenceKey()"},
                {"name": "status", "path": "status"},
                {"name": "category", "path": "category.first().coding.first().code"},
                {"name": "codes", "path": "code.coding.code", "collection": true},
                {"name": "value", "path": "(value.ofType(Quantity).value | value.ofType(integer)).first()"},
                {"name": "has_string", "path": "value.ofType(string).exists()"},
                {"name": "notes", "path": "note.count()"},
                {"name": "kind", "path": "'obs'"}
            ]},
            {"forEachOrNull": "component", "column": [
                {"name": "component_code", "path": "code.coding.first().code"},
                {"name": "component_value", "path": "value.ofType(Quantity).value"}
            ]}
        ]
    }))
    .unwrap();
    assert!(view.reads_text_directly());
    let resources = [
        // Plain.
        r#"{"resourceType":"Observation","id":"a","status":"final","subject":{"reference":"Patient/p1"},
            "code":{"coding":[{"code":"x"},{"code":"y"}]},"valueQuantity":{"value":1.50,"unit":"mg"},
            "component":[{"code":{"coding":[{"code":"c1"}]},"valueQuantity":{"value":2}},{"code":{"coding":[{"code":"c2"}]}}]}"#,
        // Another type, a reference to another type, an absolute and a versioned one.
        r#"{"resourceType":"Patient","id":"p"}"#,
        r#"{"resourceType":"Observation","id":"b","subject":{"reference":"Group/g1"},"valueInteger":7}"#,
        r#"{"resourceType":"Observation","id":"c","subject":{"reference":"https://h/fhir/Patient/p9/_history/2"}}"#,
        // A primitive with extensions (the interpreter sees an item without a value).
        r#"{"resourceType":"Observation","id":"d","_status":{"extension":[{"url":"u","valueString":"s"}]}}"#,
        // Nulls, a key twice, a bare choice name, a value of the wrong shape.
        r#"{"resourceType":"Observation","id":"e","status":null}"#,
        r#"{"resourceType":"Observation","id":"f","code":{"coding":[null,{"code":"z"}]}}"#,
        r#"{"resourceType":"Observation","id":"g","status":"final","status":"amended"}"#,
        r#"{"resourceType":"Observation","id":"h","value":5}"#,
        r#"{"resourceType":"Observation","id":"i","code":"not-an-object"}"#,
        // Several values where one is expected: the same error.
        r#"{"resourceType":"Observation","id":"j","category":[{"coding":[{"code":"a"}]}],"subject":{"reference":"Patient/1"},
            "component":[{"valueQuantity":{"value":1}}],"valueString":"s","note":[{"text":"n"},{"text":"m"}]}"#,
        r#"{"resourceType":"Observation","id":"k","component":[{"code":{"coding":[{"code":"a"}]},"valueQuantity":[{"value":1},{"value":2}]}]}"#,
        // Strings with escapes, numbers in exponent form, no id.
        r#"{"resourceType":"Observation","status":"fin\u0061l \"q\"","valueQuantity":{"value":1.5e2}}"#,
        // Strings read from the text as they are (multi-byte characters), and with an
        // escape only at their end or start.
        r#"{"resourceType":"Observation","id":"l","status":"ünïcödé","code":{"coding":[{"code":"x\\","display":"\ttab"}]}}"#,
    ];
    let plan = view.text_plan.as_ref().unwrap();
    for (i, text) in resources.iter().enumerate() {
        // The resources with a companion, a null, a key twice, a bare choice name or a
        // value of the wrong shape (d to i) go to the interpreter; the others not.
        let handed_over = (4..=9).contains(&i);
        assert_eq!(plan.evaluate(text).is_err(), handed_over, "{text}");
        let tree: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            view.evaluate_text(text).map_err(|e| e.to_string()),
            view.evaluate(&tree).map_err(|e| e.to_string()),
            "{text}"
        );
    }
    // Not JSON: an error, not rows.
    for bad in [
        r#"{"resourceType":"Observation","#,
        r#"{"resourceType":"Observation"} x"#,
    ] {
        assert!(matches!(
            view.evaluate_text(bad),
            Err(ViewError::NotJson(_))
        ));
    }
}

#[test]
fn views_beyond_plain_paths_are_left_to_the_interpreter() {
    for path in [
        "name.where(use = 'official').family",
        "%rowIndex",
        "name.family.join(',')",
        "Patient.gender",
        "deceased",
    ] {
        let view = ViewDefinition::from_json(&json!({
            "resourceType": "ViewDefinition", "resource": "Patient",
            "select": [{"column": [{"name": "c", "path": path, "collection": true}]}]
        }))
        .unwrap();
        assert!(!view.reads_text_directly(), "{path}");
    }
}
