use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;

fn collect(patients: u64, seed: u64) -> (Manifest, Vec<(String, Value)>) {
    let mut all = Vec::new();
    let m = generate(&GenerateConfig { patients, seed }, &mut |t, v| {
        all.push((t.to_string(), v))
    });
    (m, all)
}

fn lines(all: &[(String, Value)]) -> Vec<String> {
    all.iter()
        .map(|(_, v)| serde_json::to_string(v).unwrap())
        .collect()
}

/// Every `reference` string anywhere in `v`.
fn references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference"
                    && let Value::String(s) = x
                {
                    out.push(s);
                }
                references(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

#[test]
fn same_seed_same_output_other_seed_other_output() {
    let (m1, a) = collect(6, 42);
    let (m2, b) = collect(6, 42);
    assert_eq!(m1, m2);
    assert_eq!(lines(&a), lines(&b));
    let (_, c) = collect(6, 43);
    assert_ne!(lines(&a), lines(&c));
}

#[test]
fn a_patient_does_not_depend_on_how_many_follow() {
    // Same provider pool size (both round to 1 organization and 1 practitioner), so
    // the first two patients must come out byte-identical.
    let (_, a) = collect(2, 9);
    let (_, b) = collect(4, 9);
    let pa: Vec<String> = lines(&a);
    let pb: Vec<String> = lines(&b);
    assert!(pb.starts_with(&pa));
}

#[test]
fn resources_per_patient_and_all_types() {
    let (m, all) = collect(20, 1);
    let shared: u64 = ["Organization", "Location", "Practitioner"]
        .iter()
        .map(|t| m.counts[*t])
        .sum();
    let per_patient = (m.total - shared) as f64 / 20.0;
    assert!(
        (150.0..=500.0).contains(&per_patient),
        "{per_patient} resources per patient"
    );
    assert_eq!(m.total as usize, all.len());
    assert_eq!(m.counts.len(), 13);
    for (t, n) in &m.counts {
        assert!(*n > 0, "no {t} generated");
    }
    assert_eq!(m.counts["Patient"], 20);
    assert_eq!(m.counts["Organization"], 1);
    assert_eq!(m.counts["Practitioner"], 2);
}

#[test]
fn every_reference_resolves_and_ids_are_unique_and_valid() {
    let (_, all) = collect(30, 7);
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (t, v) in &all {
        assert_eq!(v["resourceType"].as_str(), Some(t.as_str()));
        let id = v["id"].as_str().expect("every resource has an id");
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "bad id {id}"
        );
        assert!(ids.entry(t).or_default().insert(id), "duplicate {t}/{id}");
    }
    let mut refs = Vec::new();
    for (_, v) in &all {
        references(v, &mut refs);
    }
    assert!(refs.len() > all.len());
    for r in refs {
        let (t, id) = r
            .split_once('/')
            .unwrap_or_else(|| panic!("reference {r} is not Type/id"));
        assert!(
            ids.get(t).is_some_and(|s| s.contains(id)),
            "dangling reference {r}"
        );
    }
}

#[test]
fn to_dir_matches_in_memory_and_manifest_counts_lines() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("nested/out");
    let config = GenerateConfig {
        patients: 8,
        seed: 3,
    };
    let mut calls = Vec::new();
    let m = generate_to_dir(&config, &out, &mut |n| calls.push(n)).unwrap();
    assert_eq!(calls, (1..=8).collect::<Vec<_>>());
    let (m2, all) = collect(8, 3);
    assert_eq!(m, m2);
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, serde_json::to_value(&m).unwrap());
    for (t, n) in &m.counts {
        let body = std::fs::read_to_string(out.join(format!("{t}.ndjson"))).unwrap();
        assert_eq!(body.lines().count() as u64, *n, "{t}");
        let expected: String = all
            .iter()
            .filter(|(tt, _)| tt == t)
            .map(|(_, v)| serde_json::to_string(v).unwrap() + "\n")
            .collect();
        assert_eq!(body, expected, "{t}");
    }
}

#[test]
fn times_are_in_the_past_and_well_formed() {
    let (_, all) = collect(15, 5);
    for (t, v) in &all {
        if t == "Encounter" {
            let start = v["period"]["start"].as_str().unwrap();
            let end = v["period"]["end"].as_str().unwrap();
            assert!(start <= end, "{start} > {end}");
            assert!(end < "2026-01-01T00:00:00+00:00", "{end}");
            assert!(end.ends_with("+00:00") && end.len() == 25);
        }
        if t == "Observation" {
            let e = v["effectiveDateTime"].as_str().unwrap();
            assert!(e < "2026-01-01T00:00:00+00:00", "{e}");
        }
    }
}

#[test]
fn diabetes_brings_metformin_and_a1c() {
    let (_, all) = collect(60, 11);
    let mut by_patient: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (t, v) in &all {
        let subject = v
            .get("subject")
            .or_else(|| v.get("patient"))
            .and_then(|s| s["reference"].as_str());
        let (Some(subject), Some(code)) = (
            subject,
            v.pointer("/code/coding/0/code")
                .or(v.pointer("/medicationCodeableConcept/coding/0/code")),
        ) else {
            continue;
        };
        by_patient
            .entry(subject.to_string())
            .or_default()
            .insert(format!("{t}:{}", code.as_str().unwrap()));
    }
    let diabetics: Vec<_> = by_patient
        .values()
        .filter(|s| s.contains("Condition:44054006"))
        .collect();
    assert!(!diabetics.is_empty(), "60 patients and no diabetic");
    for s in diabetics {
        assert!(s.contains("MedicationRequest:860975"));
        assert!(s.contains("Observation:4548-4"));
    }
}

#[test]
fn every_resource_is_valid_r4() {
    let validator = crate::validate::Validator::r4();
    let (_, all) = collect(5, 2);
    let mut failures = Vec::new();
    for (t, v) in &all {
        if let Err(issues) = validator.validate(v) {
            failures.push(format!("{t}/{}: {issues:?}", v["id"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
