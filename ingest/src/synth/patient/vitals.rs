//! Vital signs: what is measured at a visit (by age and setting) and the values, from
//! the patient's physiology, the active conditions and an acute illness (fever, pneumonia).

use serde_json::{Value, json};

use crate::synth::Ty;
use crate::synth::codes::Chronic as C;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::PatientGenerator;
use super::observations::Category;

impl PatientGenerator<'_> {
    pub(super) fn vitals(&mut self, e: &Encounter, t: i64, full: bool, acute: Option<&AcuteDef>) {
        let a = self.age(t);
        let fever = acute.is_some_and(|d| d.fever);
        let pneumonia = acute.is_some_and(|d| d.kind == Acute::Pneumonia);
        let copd = self.has(C::Copd, t);
        let h = self.height(t);
        let w = self.weight(t, h);
        if full || self.chance(0.7) {
            if full || a >= 2.0 {
                self.vital(e, &BODY_HEIGHT, h, t);
            }
            self.vital(e, &BODY_WEIGHT, w, t);
            if a >= 2.0 {
                self.vital(e, &BMI, w / (h / 100.0).powi(2), t);
            }
        }
        if full && a < 3.0 {
            let hc = self.head_circumference(a);
            self.vital(e, &HEAD_CIRC, hc, t);
        }
        let base_hr = match a {
            a if a < 1.0 => 130.0,
            a if a < 3.0 => 115.0,
            a if a < 6.0 => 100.0,
            a if a < 12.0 => 88.0,
            a if a < 18.0 => 78.0,
            _ => self.phys.hr,
        };
        let af = if self.has(C::AtrialFibrillation, t) {
            self.normal(8.0, 10.0)
        } else {
            0.0
        };
        let hr = base_hr + self.normal(0.0, 5.0) + if fever { 12.0 } else { 0.0 } + af;
        self.vital(e, &HEART_RATE, hr.max(40.0), t);
        let base_rr = match a {
            a if a < 1.0 => 36.0,
            a if a < 3.0 => 28.0,
            a if a < 6.0 => 24.0,
            a if a < 12.0 => 20.0,
            _ => 15.0,
        };
        let rr = base_rr
            + self.normal(0.0, 1.5)
            + if copd { 3.0 } else { 0.0 }
            + if pneumonia { 6.0 } else { 0.0 };
        self.vital(e, &RESP_RATE, rr.max(8.0), t);
        let temp = if fever {
            self.normal(38.4, 0.5)
        } else {
            self.normal(36.8, 0.22)
        };
        self.vital(e, &BODY_TEMP, temp, t);
        if a >= 3.0 {
            let (sbp, dbp) = self.blood_pressure(t);
            let (_, mut o) = self.observation_base(e, Category::Vital, cc(&BP_PANEL), t, t);
            o.insert(
                "component".into(),
                json!([
                    {"code": cc(&SYSTOLIC.code), "valueQuantity": quantity(sbp, &SYSTOLIC)},
                    {"code": cc(&DIASTOLIC.code), "valueQuantity": quantity(dbp, &DIASTOLIC)}
                ]),
            );
            self.push(Ty::Observation, Value::Object(o));
        }
        let spo2 = self.normal(98.0, 0.9)
            - if copd { 4.0 } else { 0.0 }
            - if pneumonia { 5.0 } else { 0.0 }
            - if self.has(C::HeartFailure, t) {
                1.5
            } else {
                0.0
            };
        let code = json!({"coding": [coding(&SPO2.code), coding(&SPO2_PROFILE)], "text": SPO2.code.display});
        let (_, mut o) = self.observation_base(e, Category::Vital, code, t, t);
        o.insert("valueQuantity".into(), quantity(spo2.min(100.0), &SPO2));
        self.push(Ty::Observation, Value::Object(o));
    }
}
