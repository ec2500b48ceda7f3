use super::*;

fn spec(text: &str) -> Result<FeatureSpec, FeatureError> {
    FeatureSpec::parse(text)
}

const BASE: &str = r#"
[cohort]
sql = "SELECT id AS patient_id FROM fhir.patient"
index_time = "2024-01-01T00:00:00Z"
"#;

#[test]
fn a_minimal_spec_parses_from_toml_and_json() {
    let s = spec(&format!(
        "{BASE}\n[[observation]]\nloinc = \"4548-4\"\nname = \"HbA1c\"\nlookbacks = [\"365d\"]\n"
    ))
    .unwrap();
    assert_eq!(s.observations.len(), 1);
    assert_eq!(s.split.test_fraction, 0.2);
    let j = spec(
        r#"{"cohort": {"search": "Patient?gender=female", "index_time": "2024-01-01"},
            "demographics": ["age", "gender"], "split": {"seed": 3, "test_fraction": 0.5}}"#,
    )
    .unwrap();
    assert_eq!(j.demographics, vec![Demographic::Age, Demographic::Gender]);
    assert_eq!(j.split.seed, 3);
}

#[test]
fn mistakes_are_named() {
    let e = |t: &str| spec(t).unwrap_err().to_string();
    assert!(
        e(&format!(
            "{BASE}\n[[observation]]\nloinc = \"1-1\"\nlookbacks = [\"3 months\"]\n"
        ))
        .contains("not a duration")
    );
    assert!(e(&format!("{BASE}\nlabels = 1\n")).contains("unknown field"));
    assert!(e("[cohort]\nsql = \"SELECT 1\"\n").contains("index_time"));
    assert!(
        e(&format!(
            "{BASE}\n[[condition]]\nname = \"dm\"\nsnomed = [\"44054006\"]\ndescendants = true\n"
        ))
        .contains("code_sets")
    );
    assert!(e(&format!(
        "{BASE}\n[[condition]]\nname = \"dm\"\nsnomed = [\"1\"]\n[[condition]]\nname = \"DM\"\nsnomed = [\"2\"]\n"
    ))
    .contains("cond_dm"));
    assert!(e(&format!("{BASE}\n[split]\ntest_fraction = 1.5\n")).contains("between 0 and 1"));
    assert!(
        e("[cohort]\nsearch = \"Observation?code=1\"\nindex_time = \"2024\"\n")
            .contains("Patient?")
    );
    assert!(e(&format!("{BASE}\n[label]\nwithin = \"30d\"\n")).contains("exactly one"));
}

#[test]
fn the_split_is_stable_and_follows_the_seed() {
    let ids: Vec<String> = (0..2000).map(|i| format!("patient-{i}")).collect();
    let a: Vec<&str> = ids.iter().map(|i| split_of(i, 1, 0.25)).collect();
    let again: Vec<&str> = ids.iter().map(|i| split_of(i, 1, 0.25)).collect();
    let b: Vec<&str> = ids.iter().map(|i| split_of(i, 2, 0.25)).collect();
    assert_eq!(a, again);
    assert_ne!(a, b);
    let tests = a.iter().filter(|s| **s == "test").count();
    assert!(
        (400..600).contains(&tests),
        "{tests} of 2000 in test at 0.25"
    );
    assert!(ids.iter().all(|i| split_of(i, 9, 0.0) == "train"));
    assert!(ids.iter().all(|i| split_of(i, 9, 1.0) == "test"));
}
