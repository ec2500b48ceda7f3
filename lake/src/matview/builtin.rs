//! The views every lake has, written as ViewDefinition JSON in `lake/views/` so that
//! users can read and copy them: `views.patient`, `views.encounter`,
//! `views.observation` (one row per observation and one per component),
//! `views.condition`, `views.medication_request`, `views.procedure`,
//! `views.immunization`, `views.diagnostic_report`. Each has the resource's id as `id`;
//! those of resources about a patient have `patient_id`, and those that belong to an
//! encounter `encounter_id`.

use super::MaterializedView;
use crate::error::Result;

/// The JSON of each built-in view, by file name.
pub const DEFINITIONS: [(&str, &str); 8] = [
    ("patient.json", include_str!("../../views/patient.json")),
    ("encounter.json", include_str!("../../views/encounter.json")),
    (
        "observation.json",
        include_str!("../../views/observation.json"),
    ),
    ("condition.json", include_str!("../../views/condition.json")),
    (
        "medication_request.json",
        include_str!("../../views/medication_request.json"),
    ),
    ("procedure.json", include_str!("../../views/procedure.json")),
    (
        "immunization.json",
        include_str!("../../views/immunization.json"),
    ),
    (
        "diagnostic_report.json",
        include_str!("../../views/diagnostic_report.json"),
    ),
];

/// The built-in views, parsed.
pub fn views() -> Result<Vec<MaterializedView>> {
    DEFINITIONS
        .iter()
        .map(|(file, text)| {
            let json = serde_json::from_str(text).map_err(|e| crate::error::LakeError::View {
                view: file.to_string(),
                reason: format!("the built-in definition is not JSON: {e}"),
            })?;
            MaterializedView::from_json(json, true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_builtin_view_parses_and_has_an_id_column() {
        let views = super::views().unwrap();
        assert_eq!(views.len(), 8);
        for v in &views {
            let columns = v.columns();
            assert_eq!(columns.field(0).name(), "id", "{}", v.name());
            if v.resource_type() != "Patient" {
                assert!(
                    columns.column_with_name("patient_id").is_some(),
                    "{} has patient_id",
                    v.name()
                );
            }
        }
    }

    #[test]
    fn the_observation_view_gives_a_row_per_observation_and_per_component() {
        let views = super::views().unwrap();
        let view = views.iter().find(|v| v.name() == "observation").unwrap();
        let bp = json!({
            "resourceType": "Observation", "id": "bp", "status": "final",
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}]},
            "effectiveDateTime": "2020-01-02T03:04:05+01:00",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 80.5, "code": "mm[Hg]"}}
            ]
        });
        let rows = view.definition().evaluate(&bp).unwrap();
        let names: Vec<&str> = view
            .definition()
            .columns()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let at = |row: &Vec<serde_json::Value>, name: &str| {
            row[names.iter().position(|n| *n == name).unwrap()].clone()
        };
        assert_eq!(rows.len(), 3);
        assert_eq!(at(&rows[0], "part"), json!("observation"));
        assert_eq!(at(&rows[0], "code"), json!("85354-9"));
        assert_eq!(at(&rows[0], "patient_id"), json!("p1"));
        assert_eq!(at(&rows[0], "encounter_id"), json!("e1"));
        assert_eq!(at(&rows[1], "part"), json!("component"));
        assert_eq!(at(&rows[1], "code"), json!("8480-6"));
        assert_eq!(at(&rows[1], "value"), json!(120));
        assert_eq!(at(&rows[1], "unit"), json!("mm[Hg]"));
        assert_eq!(at(&rows[2], "value"), json!(80.5));
        assert_eq!(at(&rows[2], "unit"), json!("mm[Hg]"));
        assert_eq!(
            at(&rows[2], "effective"),
            json!("2020-01-02T03:04:05+01:00")
        );
        for r in &rows {
            crate::view_batch::check_fixed_row(view.definition(), r).unwrap();
        }
    }

    /// Every built-in view is plain paths, so a build reads each resource's text directly
    /// (`ViewDefinition::evaluate_text`); on generated data of every type they read, and
    /// on the same resources with the awkward parts JSON allows, that gives exactly the
    /// interpreter's rows.
    #[test]
    fn every_builtin_view_reads_the_text_directly_with_the_interpreters_rows() {
        use medlake_ingest::synth::{GenerateConfig, generate};
        use std::collections::BTreeMap;

        let views = super::views().unwrap();
        let mut by_type: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        generate(
            &GenerateConfig {
                patients: 25,
                seed: 3,
            },
            &mut |ty, r| by_type.entry(ty.to_string()).or_default().push(r),
        );
        for v in &views {
            let def = v.definition();
            assert!(def.reads_text_directly(), "{} is plain paths", v.name());
            let resources = &by_type[v.resource_type()];
            assert!(resources.len() >= 10, "{}: generated data", v.name());
            let mut rows = 0;
            for r in resources {
                let tree = def.evaluate(r).unwrap();
                assert_eq!(def.evaluate_text(&r.to_string()).unwrap(), tree, "{r}");
                // Pretty-printed text and a resource of another type read the same way.
                assert_eq!(
                    def.evaluate_text(&serde_json::to_string_pretty(r).unwrap())
                        .unwrap(),
                    tree
                );
                rows += tree.len();
            }
            assert!(
                rows >= resources.len(),
                "{}: every resource gives rows",
                v.name()
            );
        }
    }
}
