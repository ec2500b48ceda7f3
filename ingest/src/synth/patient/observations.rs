//! Observation resources (vital signs, lab results, social history) and the
//! DiagnosticReports that group lab panels.
//!
//! Only how the resources look lives here; `vitals` and `labs` decide which ones a visit
//! gets and with what values, so every Observation shares one shape (category, subject,
//! encounter, times; for labs: range and interpretation).

use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::obj;
use crate::synth::fhir::*;

use super::Encounter;
use super::{HOUR, MINUTE, PatientGenerator};

/// An Observation's category.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Category {
    Vital,
    Lab,
    Social,
}

impl PatientGenerator<'_> {
    fn category(cat: Category) -> Value {
        let (code, display) = match cat {
            Category::Vital => ("vital-signs", "Vital Signs"),
            Category::Lab => ("laboratory", "Laboratory"),
            Category::Social => ("social-history", "Social History"),
        };
        json!([{"coding": [{"system": OBS_CATEGORY, "code": code, "display": display}]}])
    }

    pub(super) fn observation_base(
        &mut self,
        e: &Encounter,
        cat: Category,
        code: Value,
        t: i64,
        issued: i64,
    ) -> (String, Map<String, Value>) {
        let id = self.next_id(Ty::Observation as usize);
        let mut o = Map::with_capacity(12);
        o.insert("resourceType".into(), "Observation".into());
        o.insert("id".into(), id.clone().into());
        o.insert("status".into(), "final".into());
        o.insert("category".into(), Self::category(cat));
        o.insert("code".into(), code);
        o.insert("subject".into(), reference(&self.pref));
        o.insert("encounter".into(), reference(&e.reference));
        o.insert("effectiveDateTime".into(), dt(t).into());
        o.insert("issued".into(), dt(issued).into());
        (id, o)
    }

    pub(super) fn vital(&mut self, e: &Encounter, m: &Measure, v: f64, t: i64) {
        let (_, mut o) = self.observation_base(e, Category::Vital, cc(&m.code), t, t);
        o.insert("valueQuantity".into(), quantity(v, m));
        self.push(Ty::Observation, Value::Object(o));
    }

    pub(super) fn observation_coded(
        &mut self,
        e: &Encounter,
        cat: Category,
        code: &Code,
        value: &Code,
        t: i64,
    ) {
        let (_, mut o) = self.observation_base(e, cat, cc(code), t, t);
        o.insert("valueCodeableConcept".into(), cc(value));
        self.push(Ty::Observation, Value::Object(o));
    }

    /// A lab result with range and interpretation; returns its id.
    pub(super) fn lab_value(&mut self, e: &Encounter, m: &Measure, v: f64, t: i64) -> String {
        let issued = t + 2 * HOUR + self.int(0, 240) * MINUTE;
        let (id, mut o) = self.observation_base(e, Category::Lab, cc(&m.code), t, issued);
        let p = 10f64.powi(m.decimals as i32);
        let shown = (v * p).round() / p;
        o.insert("valueQuantity".into(), quantity(v, m));
        let (code, display) = if m.low.is_some_and(|l| shown < l) {
            ("L", "Low")
        } else if m.high.is_some_and(|h| shown > h) {
            ("H", "High")
        } else {
            ("N", "Normal")
        };
        o.insert(
            "interpretation".into(),
            json!([{"coding": [{"system": INTERPRETATION, "code": code, "display": display}], "text": display}]),
        );
        if let Some(r) = reference_range(m) {
            o.insert("referenceRange".into(), r);
        }
        self.push(Ty::Observation, Value::Object(o));
        id
    }

    pub(super) fn report(&mut self, e: &Encounter, panel: &Code, t: i64, results: &[String]) {
        let id = self.next_id(Ty::DiagnosticReport as usize);
        let issued = t + 5 * HOUR;
        let refs: Vec<Value> = results
            .iter()
            .map(|r| reference(format!("Observation/{r}")))
            .collect();
        let r = obj! {
            "resourceType" => "DiagnosticReport",
            "id" => id,
            "status" => "final",
            "category" => [cc3(V2_0074, "LAB", "Laboratory")],
            "code" => cc(panel),
            "subject" => reference(&self.pref),
            "encounter" => reference(&e.reference),
            "effectiveDateTime" => dt(t),
            "issued" => dt(issued),
            "performer" => [self.ctx.org_ref(e.org)],
            "result" => refs
        };
        self.push(Ty::DiagnosticReport, r);
    }
}
