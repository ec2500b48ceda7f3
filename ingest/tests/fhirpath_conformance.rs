//! Runs the HL7 FHIRPath R4 test suite against the engine, prints the pass count per
//! group and the failing tests, and fails unless the failures are exactly the known ones
//! listed in [`EXPECTED_FAILURES`]: a regression fails it, and so does a fix that is not
//! taken off the list.
//!
//! The suite is `$MEDLAKE_SHARED/conformance/fhirpath/r4/tests-fhir-r4.xml` (by default
//! `../shared` beside the checkout), a subset of the upstream file. Another copy, such as
//! the full upstream `tests-fhir-r4.xml`, is run with `MEDLAKE_FHIRPATH_SUITE=<file>`; its
//! input files are looked up beside it, as JSON (`patient-example.xml` is read from
//! `patient-example.json`). Known failures that the chosen file does not contain are not
//! counted as fixed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use medlake_ingest::fhirpath::{Environment, Expression, Item};
use serde_json::Value;

/// The cases the engine is known to fail, as `group/name`, and why.
const EXPECTED_FAILURES: &[(&str, &str)] = &[(
    // Only in the upstream file, not in the shared subset.
    "testPlus/testPlusDate19",
    "the R4 file expects `+ 0.1 's'` to add nothing; FHIRPath N1 and 2.0 drop the decimal \
     part only above seconds, and the R5 file expects .100, as the engine answers",
)];

/// The tests file: `$MEDLAKE_FHIRPATH_SUITE`, or the shared subset.
fn suite_file() -> PathBuf {
    if let Some(p) = std::env::var_os("MEDLAKE_FHIRPATH_SUITE") {
        return PathBuf::from(p);
    }
    let shared = std::env::var_os("MEDLAKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("conformance/fhirpath/r4/tests-fhir-r4.xml")
}

/// Input files live beside the tests file.
fn suite_dir() -> PathBuf {
    let file = suite_file();
    file.parent().map(PathBuf::from).unwrap_or_default()
}

struct Case {
    group: String,
    name: String,
    input: Option<String>,
    expression: String,
    invalid: bool,
    /// The expected output is whether the result is non-empty.
    predicate: bool,
    /// `mode="strict"`: semantic errors are expected to be reported.
    strict: bool,
    outputs: Vec<(String, String)>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let tag = tag.replace(['\t', '\n', '\r'], " ");
    let pat = format!(" {name}=\"");
    let start = tag.find(&pat)? + pat.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The element `<name ...>body</name>` at or after `from`: (tag, body, end offset).
fn element<'t>(text: &'t str, name: &str, from: usize) -> Option<(&'t str, &'t str, usize)> {
    let open = format!("<{name}");
    let mut at = from;
    loop {
        let s = text[at..].find(&open)? + at;
        let next = text[s + open.len()..].chars().next()?;
        if next == '>' || next.is_whitespace() {
            let te = text[s..].find('>')? + s;
            let close = format!("</{name}>");
            let ce = text[te..].find(&close)? + te;
            return Some((&text[s..=te], &text[te + 1..ce], ce + close.len()));
        }
        at = s + open.len();
    }
}

/// A small reader for the suite's regular XML: groups of tests, each with one
/// expression and its outputs.
fn parse_suite(xml: &str) -> Vec<Case> {
    let mut text = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(p) = rest.find("<!--") {
        text.push_str(&rest[..p]);
        rest = rest[p..].find("-->").map_or("", |e| &rest[p + e + 3..]);
    }
    text.push_str(rest);

    let mut cases = Vec::new();
    let mut unnamed = 0;
    let mut gpos = 0;
    while let Some((gtag, gbody, gend)) = element(&text, "group", gpos) {
        gpos = gend;
        let group = attr(gtag, "name").unwrap_or_default();
        let mut tpos = 0;
        while let Some((ttag, tbody, tend)) = element(gbody, "test", tpos) {
            tpos = tend;
            let Some((etag, ebody, eend)) = element(tbody, "expression", 0) else {
                continue;
            };
            let name = attr(ttag, "name").unwrap_or_else(|| {
                unnamed += 1;
                format!("unnamed-{unnamed}")
            });
            let mut outputs = Vec::new();
            let mut opos = eend;
            while let Some((otag, obody, oend)) = element(tbody, "output", opos) {
                opos = oend;
                outputs.push((attr(otag, "type").unwrap_or_default(), unescape(obody)));
            }
            cases.push(Case {
                group: group.clone(),
                name,
                input: attr(ttag, "inputfile"),
                expression: unescape(ebody),
                invalid: attr(etag, "invalid").is_some(),
                predicate: attr(ttag, "predicate").as_deref() == Some("true"),
                strict: attr(ttag, "mode").as_deref() == Some("strict"),
                outputs,
            });
        }
    }
    cases
}

/// An expected output written as a FHIRPath literal, evaluated.
fn literal(text: &str) -> Option<Item<'static>> {
    static EMPTY: Value = Value::Null;
    let e = Expression::parse(text).ok()?;
    let v = e.evaluate(&EMPTY).ok()?;
    v.into_iter().next().map(|i| i.to_system())
}

fn literal_text(item: &Item<'_>) -> Option<String> {
    Some(match item {
        Item::Boolean(b) => b.to_string(),
        Item::String(s) => s.clone(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => d.to_string(),
        Item::Date(d) => format!("@{}", d.format_date()),
        Item::DateTime(d) => format!("@{}", d.format_date_time()),
        Item::Time(t) => format!("@T{}", t.format_time()),
        Item::Quantity(q) => q.format(),
        _ => return None,
    })
}

fn matches_output(actual: &Item<'_>, ty: &str, expected: &str) -> bool {
    let sys = actual.to_system();
    match ty {
        "boolean" => matches!(sys, Item::Boolean(b) if b.to_string() == expected),
        "integer" => matches!(sys, Item::Integer(i) if i.to_string() == expected),
        "decimal" if matches!(&sys, Item::Decimal(a) if a.to_string() == expected) => true,
        "decimal" => match (&sys, literal(expected)) {
            (Item::Decimal(a), Some(Item::Decimal(b))) => a.to_string() == b.to_string(),
            (Item::Decimal(a), Some(Item::Integer(b))) => a.to_string() == b.to_string(),
            _ => false,
        },
        // A typed output's text is a literal; `@2014-01-01` is a dateTime at day precision
        // when the type says so.
        "date" | "dateTime" | "time" => {
            let want = match literal(expected) {
                Some(Item::Date(d) | Item::DateTime(d) | Item::Time(d)) => Some(d),
                _ => None,
            };
            let got = match (&sys, ty) {
                (Item::Date(d), "date")
                | (Item::DateTime(d), "dateTime")
                | (Item::Time(d), "time") => Some(*d),
                _ => None,
            };
            want.is_some() && want == got
        }
        "Quantity" => match (&sys, literal(expected)) {
            (Item::Quantity(a), Some(Item::Quantity(b))) => {
                a.unit == b.unit && a.value.to_string() == b.value.to_string()
            }
            _ => false,
        },
        "string" => matches!(&sys, Item::String(s) if s == expected),
        // Untyped outputs are written as FHIRPath literals.
        "" => literal_text(&sys).is_some_and(|t| t == expected),
        _ => match actual {
            Item::Node(n) => {
                n.type_name() == ty && matches!(&sys, Item::String(s) if s == expected)
            }
            _ => false,
        },
    }
}

fn run(case: &Case, inputs: &mut BTreeMap<String, Value>) -> Result<(), String> {
    let input = match &case.input {
        Some(file) => {
            let json = file.replace(".xml", ".json");
            if !inputs.contains_key(&json) {
                let path = suite_dir().join(&json);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                inputs.insert(json.clone(), v);
            }
            inputs.get(&json).cloned().unwrap_or(Value::Null)
        }
        None => serde_json::json!({}),
    };
    let env = Environment::new().with_strict(case.strict);
    let outcome = Expression::parse(&case.expression)
        .map_err(|e| e.to_string())
        .and_then(|e| e.evaluate_with(&input, &env).map_err(|e| e.to_string()));
    if case.invalid {
        return match outcome {
            Err(_) => Ok(()),
            Ok(r) => Err(format!(
                "expected an error, got {:?}",
                r.iter().map(Item::to_json).collect::<Vec<_>>()
            )),
        };
    }
    let mut out = outcome?;
    if case.predicate {
        out = vec![Item::Boolean(!out.is_empty())];
    }
    let show = || {
        format!(
            "expected {:?}, got {:?}",
            case.outputs,
            out.iter().map(Item::to_json).collect::<Vec<_>>()
        )
    };
    if out.len() != case.outputs.len() {
        return Err(show());
    }
    for (a, (ty, v)) in out.iter().zip(case.outputs.iter()) {
        if !matches_output(a, ty, v) {
            return Err(show());
        }
    }
    Ok(())
}

#[test]
fn fhirpath_r4_suite() {
    let path = suite_file();
    let xml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let cases = parse_suite(&xml);
    assert!(cases.len() > 600, "parsed only {} tests", cases.len());
    let mut inputs = BTreeMap::new();
    let mut per_group: Vec<(String, usize, usize)> = Vec::new();
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in &cases {
        let outcome = run(case, &mut inputs);
        if per_group.last().is_none_or(|g| g.0 != case.group) {
            per_group.push((case.group.clone(), 0, 0));
        }
        if let Some(g) = per_group.last_mut() {
            g.2 += 1;
            g.1 += usize::from(outcome.is_ok());
        }
        match outcome {
            Ok(()) => passed += 1,
            Err(e) => failures.push((
                format!("{}/{}", case.group, case.name),
                format!("{}  -- {e}", case.expression),
            )),
        }
    }
    for (g, p, n) in &per_group {
        println!("{g:30} {p:4}/{n:<4}");
    }
    for (name, why) in &failures {
        println!("FAIL {name}: {why}");
    }
    println!(
        "FHIRPath R4 suite ({}): {passed}/{} passed, {} failed",
        path.display(),
        cases.len(),
        failures.len()
    );
    let failed: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = EXPECTED_FAILURES.iter().map(|(n, _)| *n).collect();
    let new: Vec<&&str> = failed.iter().filter(|f| !expected.contains(f)).collect();
    let present: Vec<String> = cases
        .iter()
        .map(|c| format!("{}/{}", c.group, c.name))
        .collect();
    let fixed: Vec<&&str> = expected
        .iter()
        .filter(|e| !failed.contains(e) && present.iter().any(|p| p == **e))
        .collect();
    assert!(new.is_empty(), "cases that passed before now fail: {new:?}");
    assert!(
        fixed.is_empty(),
        "cases listed as known failures now pass: take them off EXPECTED_FAILURES: {fixed:?}"
    );
}
