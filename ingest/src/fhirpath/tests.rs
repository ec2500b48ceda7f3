use serde_json::{Value, json};

use super::{Environment, Expression, Item};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "active": true,
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://example.org/time", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
        "managingOrganization": {"reference": "#org"},
        "deceasedBoolean": false
    })
}

fn eval_json(expr: &str, resource: &Value) -> Vec<Value> {
    match Expression::parse(expr) {
        Ok(e) => match e.evaluate(resource) {
            Ok(items) => items.iter().map(Item::to_json).collect(),
            Err(err) => panic!("{expr}: {err}"),
        },
        Err(err) => panic!("{expr}: {}", err.pointer(expr)),
    }
}

fn parse_error_offset(expr: &str) -> usize {
    match Expression::parse(expr) {
        Ok(_) => panic!("{expr} should not parse"),
        Err(e) => e.offset,
    }
}

#[test]
fn parse_errors_point_at_the_problem() {
    assert_eq!(parse_error_offset("2 + 2 /"), 7);
    assert_eq!(parse_error_offset("name.given)"), 10);
    assert_eq!(parse_error_offset("name.where(use = 'x'"), 20);
    assert_eq!(parse_error_offset("'unterminated"), 0);
    assert_eq!(parse_error_offset("1 + /* open"), 4);
    assert_eq!(parse_error_offset("name # x"), 5);
    assert_eq!(parse_error_offset("@2014-13"), 0);
    assert_eq!(parse_error_offset("name."), 5);
}

#[test]
fn parse_error_display_and_pointer() {
    let text = "name.given)";
    let e = match Expression::parse(text) {
        Ok(_) => panic!("should not parse"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("offset 10"), "{e}");
    assert_eq!(
        e.pointer(text).lines().nth(1).map(|l| l.find('^')),
        Some(Some(10))
    );
}

#[test]
fn deep_nesting_is_refused_not_overflowing() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(Expression::parse(&deep).is_err());
    let long = vec!["1"; 3000].join("+");
    assert!(Expression::parse(&long).is_err());
    let minus = format!("{}1", "-".repeat(5000));
    assert!(Expression::parse(&minus).is_err());
}

#[test]
fn paths_choice_types_and_primitive_extensions() {
    let p = patient();
    assert_eq!(
        eval_json("Patient.name.given", &p),
        vec![json!("Peter"), json!("James"), json!("Jim")]
    );
    assert_eq!(eval_json("deceased", &p), vec![json!(false)]);
    assert_eq!(eval_json("deceased is boolean", &p), vec![json!(true)]);
    assert_eq!(
        eval_json("birthDate.extension('http://example.org/time').value", &p),
        vec![json!("1974-12-25T14:35:45-05:00")]
    );
    assert_eq!(eval_json("birthDate < @2000-01-01", &p), vec![json!(true)]);
    assert_eq!(eval_json("Observation.status", &p), Vec::<Value>::new());
    // A typed choice name is a modelling error in strict FHIRPath.
    assert!(
        Expression::parse("deceasedBoolean")
            .map(|e| e.evaluate(&p).is_err())
            .unwrap_or(false)
    );
}

#[test]
fn operators_and_three_valued_logic() {
    let p = patient();
    assert_eq!(eval_json("{} and false", &p), vec![json!(false)]);
    assert_eq!(eval_json("{} or false", &p), Vec::<Value>::new());
    assert_eq!(eval_json("false implies {}", &p), vec![json!(true)]);
    assert_eq!(
        eval_json("7 div 2 = 3 and 7 mod 2 = 1", &p),
        vec![json!(true)]
    );
    assert_eq!(eval_json("0.1 + 0.2 = 0.3", &p), vec![json!(true)]);
    assert_eq!(eval_json("1.0 ~ 1.04", &p), vec![json!(true)]);
    assert_eq!(eval_json("1.0 ~ 1.1", &p), vec![json!(false)]);
    assert_eq!(eval_json("@2012-04 = @2012-04-15", &p), Vec::<Value>::new());
    assert_eq!(eval_json("1 'm' = 100 'cm'", &p), vec![json!(true)]);
    assert_eq!(eval_json("'a' & {} & 'b'", &p), vec![json!("ab")]);
    assert_eq!(eval_json("(1 | 2 | 2).count()", &p), vec![json!(2)]);
    assert_eq!(eval_json("(1 / 3).round(3)", &p), vec![json!(0.333)]);
}

#[test]
fn functions_and_environment() {
    let p = patient();
    assert_eq!(
        eval_json("name.where(use = 'usual').given.first()", &p),
        vec![json!("Jim")]
    );
    assert_eq!(
        eval_json("managingOrganization.resolve().name", &p),
        vec![json!("Acme")]
    );
    assert_eq!(
        eval_json("name.given.join(',')", &p),
        vec![json!("Peter,James,Jim")]
    );
    assert_eq!(
        eval_json("'abc'.replaceMatches('b', 'x').upper()", &p),
        vec![json!("AXC")]
    );
    let name = &p["name"][0];
    let env = Environment::new()
        .with_resource(&p)
        .with_var("greeting", vec![Item::String("hi".into())]);
    let e = match Expression::parse("%greeting & ' ' & family & ' ' & %resource.id") {
        Ok(e) => e,
        Err(err) => panic!("{err}"),
    };
    let out: Vec<Value> = match e.evaluate_with(name, &env) {
        Ok(items) => items.iter().map(Item::to_json).collect(),
        Err(err) => panic!("{err}"),
    };
    assert_eq!(out, vec![json!("hi Chalmers p1")]);
}

#[test]
fn evaluation_errors() {
    let p = patient();
    for bad in [
        "name.given.substring(0)",
        "1 + 'a'",
        "unknownFunction()",
        "%undefined",
        "name.as(HumanName)",
    ] {
        let e = match Expression::parse(bad) {
            Ok(e) => e,
            Err(err) => panic!("{bad}: {err}"),
        };
        assert!(e.evaluate(&p).is_err(), "{bad} should fail");
    }
}

#[test]
fn expressions_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Expression>();
}

#[test]
fn truncated_and_odd_input_never_panics() {
    let p = patient();
    let samples = [
        "Patient.name.where(use = 'official' and given.exists()).given.join(', ')",
        "(@2014-01-01T10:30:00.5+05:00 + 1 'mo').toString() & %`ext-x` & $this.id",
        "iif(birthDate.lowBoundary() < now(), 1.5 'mg'.toQuantity('g'), -`name`[0])",
        "'\\u00e9🔥'.matches('[é]+').not() implies 10 div 0 mod 3 ~ {}",
        "descendants().ofType(FHIR.string).select(substring(1, -2)).repeat(children())",
        "aggregate($total + $this, 0) | sort(-$this) | @T12:00 | %context.resolve()",
    ];
    for s in samples {
        for end in 0..=s.len() {
            let Some(prefix) = s.get(..end) else {
                continue;
            };
            if let Ok(e) = Expression::parse(prefix) {
                let _ = e.evaluate(&p);
            }
        }
    }
}
