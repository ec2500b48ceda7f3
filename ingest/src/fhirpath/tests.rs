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

/// The single result of an expression on an empty resource, as FHIRPath text (`toString`
/// of a system value), so that precision and type show.
fn text_of(expr: &str) -> String {
    let wrapped = format!("({expr}).toString()");
    match eval_json(&wrapped, &json!({})).as_slice() {
        [Value::String(s)] => s.clone(),
        other => panic!("{expr}: expected one value, got {other:?}"),
    }
}

fn fails(expr: &str, env: &Environment<'_>, resource: &Value) -> bool {
    match Expression::parse(expr) {
        Ok(e) => e.evaluate_with(resource, env).is_err(),
        Err(_) => true,
    }
}

#[test]
fn calendar_arithmetic_clamps_month_ends() {
    assert_eq!(text_of("@2019-01-31 + 1 month"), "2019-02-28");
    assert_eq!(text_of("@2020-01-31 + 1 month"), "2020-02-29");
    assert_eq!(text_of("@2019-03-31 - 1 month"), "2019-02-28");
    assert_eq!(text_of("@2020-02-29 + 1 year"), "2021-02-28");
    assert_eq!(text_of("@2019-10-31 + 14 months"), "2020-12-31");
    assert_eq!(text_of("@2019-05-31 + 1 months"), "2019-06-30");
    assert_eq!(
        text_of("@2019-01-31T10:00:00+02:00 + 1 month"),
        "2019-02-28T10:00:00+02:00"
    );
    // Weeks and days are exact.
    assert_eq!(text_of("@2019-12-25 + 1 week"), "2020-01-01");
    assert_eq!(text_of("@2020-03-01 - 1 day"), "2020-02-29");
    assert_eq!(text_of("@T23:30 + 45 minutes"), "00:15");
}

#[test]
fn arithmetic_keeps_the_precision_of_the_left_operand() {
    assert_eq!(text_of("@2014 + 24 months"), "2016");
    assert_eq!(text_of("@2014 + 23 months"), "2015");
    assert_eq!(text_of("@2016 + 364 days"), "2016");
    assert_eq!(text_of("@2016 + 366 days"), "2017");
    assert_eq!(text_of("@2016-01 + 45 days"), "2016-02");
    assert_eq!(text_of("@2019-01-01 + 47 hours"), "2019-01-02");
    // Above seconds the decimal part is dropped; seconds keep it.
    assert_eq!(text_of("@2019-01-01 + 7.7 days"), "2019-01-08");
    assert_eq!(
        text_of("@2019-01-01T00:00:00.000 + 1.5 hours"),
        "2019-01-01T01:00:00.000"
    );
    assert_eq!(
        text_of("@2019-01-01T00:00:00.000 + 1.5 's'"),
        "2019-01-01T00:00:01.500"
    );
}

#[test]
fn ucum_and_calendar_durations() {
    // Definite UCUM durations add as their calendar counterparts.
    assert_eq!(text_of("@2019-12-25 + 1 'wk'"), "2020-01-01");
    assert_eq!(text_of("@2019-12-25 + 2 'd'"), "2019-12-27");
    assert_eq!(
        text_of("@2019-12-25T10:00:00 + 90 'min'"),
        "2019-12-25T11:30:00"
    );
    assert_eq!(
        text_of("@2019-12-25T10:00:00.000 + 10 'ms'"),
        "2019-12-25T10:00:00.010"
    );
    // 'mo' and 'a' are averages, not definite durations: no date arithmetic with them.
    let env = Environment::new();
    assert!(fails("@2019-12-25 + 1 'mo'", &env, &json!({})));
    assert!(fails("@2019-12-25 - 1 'a'", &env, &json!({})));
    assert!(fails("@2019-12-25 + 1 'kg'", &env, &json!({})));
    assert!(fails("@T10:00 + 1 day", &env, &json!({})));
    let p = json!({});
    // Above weeks, calendar and UCUM durations are not comparable, but are equivalent.
    assert_eq!(eval_json("1 year = 1 'a'", &p), Vec::<Value>::new());
    assert_eq!(eval_json("1 year ~ 1 'a'", &p), vec![json!(true)]);
    assert_eq!(eval_json("1 month ~ 1 'mo'", &p), vec![json!(true)]);
    assert_eq!(eval_json("1 day = 1 'd'", &p), vec![json!(true)]);
    assert_eq!(eval_json("1 week = 7 days", &p), vec![json!(true)]);
    assert_eq!(eval_json("60 'min' = 1 'h'", &p), vec![json!(true)]);
    assert_eq!(eval_json("1 's' = 1000 'ms'", &p), vec![json!(true)]);
    assert_eq!(eval_json("1 second ~ 1 's'", &p), vec![json!(true)]);
    assert_eq!(
        eval_json("1 'cm'.comparable(1 '[in_i]')", &p),
        vec![json!(true)]
    );
    assert_eq!(
        eval_json("1 'cm'.comparable(1 's')", &p),
        vec![json!(false)]
    );
    assert_eq!(
        eval_json("1 'cm'.comparable(1 '[s]')", &p),
        vec![json!(false)]
    );
}

#[test]
fn boundaries_and_precision() {
    assert_eq!(text_of("1.587.lowBoundary()"), "1.58650000");
    assert_eq!(text_of("1.587.highBoundary(2)"), "1.59");
    assert_eq!(text_of("(-1.587).lowBoundary(2)"), "-1.59");
    assert_eq!(text_of("120.lowBoundary(2)"), "119.50");
    assert_eq!(text_of("0.0034.lowBoundary(1)"), "0.0");
    // The boundary keeps the sign of the value it bounds, down to zero.
    assert_eq!(text_of("(-0.0034).lowBoundary(1)"), "-0.0");
    assert_eq!(text_of("-(0.0)"), "0.0");
    assert_eq!(
        eval_json("(-0.0034).lowBoundary(1) = 0", &json!({})),
        vec![json!(true)]
    );
    assert_eq!(text_of("@2014.lowBoundary(6)"), "2014-01");
    assert_eq!(text_of("@2016-02.highBoundary(8)"), "2016-02-29");
    assert_eq!(
        text_of("@2014-01-01T08.lowBoundary(17)"),
        "2014-01-01T08:00:00.000+14:00"
    );
    assert_eq!(
        text_of("@2014-01-01T08:05-05:00.highBoundary(17)"),
        "2014-01-01T08:05:59.999-05:00"
    );
    assert_eq!(text_of("@T10:30.highBoundary(9)"), "10:30:59.999");
    assert_eq!(text_of("1.587 'cm'.lowBoundary(8)"), "1.58650000 'cm'");
    let p = json!({});
    assert_eq!(eval_json("1.587.lowBoundary(-1)", &p), Vec::<Value>::new());
    assert_eq!(eval_json("@2014.lowBoundary(5)", &p), Vec::<Value>::new());
    assert_eq!(eval_json("1.58700.precision()", &p), vec![json!(5)]);
    assert_eq!(eval_json("@2014.precision()", &p), vec![json!(4)]);
    assert_eq!(
        eval_json("@2014-01-05T10:30:00.000.precision()", &p),
        vec![json!(17)]
    );
    assert_eq!(eval_json("@T10:30.precision()", &p), vec![json!(4)]);
    assert_eq!(eval_json("{}.precision()", &p), Vec::<Value>::new());
}

#[test]
fn define_variable_is_scoped_to_the_rest_of_its_path() {
    let p = patient();
    assert_eq!(
        eval_json("defineVariable('n1', name.first()).select(%n1.given)", &p),
        vec![json!("Peter"), json!("James")]
    );
    // Without a value the variable is the input; later definitions see earlier ones.
    assert_eq!(
        eval_json(
            "name.defineVariable('all').defineVariable('n', %all.count()).select(%n).first()",
            &p
        ),
        vec![json!(2)]
    );
    // The same name on both sides of a union are two variables.
    assert_eq!(
        eval_json(
            "defineVariable('v', 'a').select(%v) | defineVariable('v', 'b').select(%v)",
            &p
        ),
        vec![json!("a"), json!("b")]
    );
    let env = Environment::new();
    for bad in [
        // Used on the other side of a union, or outside the argument it was made in.
        "defineVariable('v', 'a').active | select(%v)",
        "select(defineVariable('v', 'a').select(%v)).select(%v)",
        // Defined twice in one scope, or over a built-in variable.
        "defineVariable('v').defineVariable('v')",
        "defineVariable('context', 1)",
        "defineVariable(1, 1)",
    ] {
        assert!(fails(bad, &env, &p), "{bad} should fail");
    }
}

#[test]
fn strict_mode_reports_what_lenient_mode_answers_with_empty() {
    let p = patient();
    let strict = Environment::new().with_strict(true);
    let lenient = Environment::new();
    for expr in [
        "name.given1",
        "Encounter.name.given",
        "children().skip(1)",
        "descendants().where(true).first()",
        "children()[0]",
    ] {
        assert!(
            fails(expr, &strict, &p),
            "{expr} should fail in strict mode"
        );
        assert!(
            !fails(expr, &lenient, &p),
            "{expr} should evaluate leniently"
        );
    }
    for ok in [
        "name.given",
        "Patient.name.skip(1).given",
        "children().count()",
    ] {
        assert!(!fails(ok, &strict, &p), "{ok} is valid in strict mode");
    }
}

#[test]
fn string_and_collection_functions() {
    let p = patient();
    assert_eq!(eval_json("'abcabc'.lastIndexOf('bc')", &p), vec![json!(4)]);
    assert_eq!(eval_json("'abc'.lastIndexOf('x')", &p), vec![json!(-1)]);
    assert_eq!(
        eval_json("coalesce(name.suffix, name.given.first(), 'x')", &p),
        vec![json!("Peter")]
    );
    assert_eq!(eval_json("coalesce({}, {})", &p), Vec::<Value>::new());
}
