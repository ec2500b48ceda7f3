//! Conditions: which chronic conditions the patient has and since when, their Condition
//! resources, and the treatment a diagnosis starts.
//!
//! Chronic conditions are drawn once, up front, with an onset that may precede the
//! recorded history; they are *recorded* (get a Condition) at the first encounter after
//! onset. Both facts matter elsewhere: `has` (the disease acts on measurements from its
//! onset) and `recorded` (once diagnosed, treatment brings values back towards normal).
//! Acute problems, in contrast, are made by the visit that treats them.

use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::Chronic as C;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::demographics::Smoking;
use super::{HOUR, MINUTE, PatientGenerator};

#[derive(Clone, Default)]
pub(super) struct ChronicState {
    /// When it began; `None` if the patient does not have it.
    pub(super) onset: Option<i64>,
    /// The Condition's id, once recorded at an encounter.
    pub(super) id: Option<String>,
}

impl PatientGenerator<'_> {
    /// Whether the patient has `c` at `t`, diagnosed or not.
    pub(super) fn has(&self, c: Chronic, t: i64) -> bool {
        self.chronic[c as usize].onset.is_some_and(|o| o <= t)
    }

    /// Whether `c` has been diagnosed (has its Condition).
    pub(super) fn recorded(&self, c: Chronic) -> bool {
        self.chronic[c as usize].id.is_some()
    }

    /// Onset at an age between `max(min_age, a - span)` and `a`, the age at the end.
    fn set_onset(&mut self, c: Chronic, min_age: f64, span: f64) {
        let a = self.age(self.end);
        let lo = min_age.max(a - span).min(a - 0.1);
        let at = self.uniform(lo, a - 0.05);
        let t = self.birth + (at * YEAR as f64) as i64;
        self.chronic[c as usize].onset = Some(t.clamp(self.birth, self.end - DAY));
    }

    pub(super) fn draw_chronic(&mut self) {
        let a = self.age(self.end);
        let f = !self.male;
        let smoker = self.smoking != Smoking::Never;
        if a >= 20.0 && self.chance(0.38) {
            self.set_onset(C::Obesity, 18.0, 20.0);
        }
        let obese = self.chronic[C::Obesity as usize].onset.is_some();
        let ob = |x: f64| if obese { x * 1.7 } else { x };
        let p_dm = match a {
            a if a < 30.0 => 0.005,
            a if a < 45.0 => 0.04,
            a if a < 65.0 => 0.13,
            _ => 0.22,
        };
        if a >= 25.0 && self.chance(ob(p_dm)) {
            self.set_onset(C::Diabetes, 25.0, 25.0);
        } else if a >= 30.0 && self.chance(ob(0.15)) {
            self.set_onset(C::Prediabetes, 30.0, 10.0);
        }
        let dm = self.chronic[C::Diabetes as usize].onset.is_some();
        let p_htn = match a {
            a if a < 40.0 => 0.08,
            a if a < 60.0 => 0.3,
            _ => 0.55,
        };
        if a >= 20.0 && self.chance(ob(p_htn).min(0.85)) {
            self.set_onset(C::Hypertension, 22.0, 30.0);
        }
        let htn = self.chronic[C::Hypertension as usize].onset.is_some();
        let p_hld = match a {
            a if a < 40.0 => 0.07,
            a if a < 60.0 => 0.25,
            _ => 0.4,
        } * if dm { 1.4 } else { 1.0 };
        if a >= 20.0 && self.chance(p_hld) {
            self.set_onset(C::Hyperlipidemia, 20.0, 25.0);
        }
        if a >= 2.0 && self.chance(0.08) {
            self.set_onset(C::Asthma, 2.0, 40.0);
        }
        if a >= 40.0 && self.chance(if smoker { 0.18 } else { 0.02 }) {
            self.set_onset(C::Copd, 40.0, 15.0);
        }
        if a >= 40.0 {
            let mut p = 0.03 + if dm { 0.12 } else { 0.0 } + if htn { 0.06 } else { 0.0 };
            if a >= 65.0 {
                p *= 2.0;
            }
            if self.chance(p) {
                self.set_onset(C::Ckd, 40.0, 15.0);
                if self.chance(0.07) {
                    self.set_onset(C::Esrd, 45.0, 4.0);
                    let ckd = self.chronic[C::Ckd as usize].onset.unwrap();
                    let esrd = self.chronic[C::Esrd as usize].onset.unwrap();
                    if esrd < ckd {
                        self.chronic[C::Esrd as usize].onset = Some(ckd + (self.end - ckd) / 2);
                    }
                }
            }
        }
        if a >= 45.0 {
            let mut p = if f { 0.05 } else { 0.08 };
            if a >= 65.0 {
                p *= 2.2;
            }
            if dm || smoker {
                p *= 1.5;
            }
            if self.chance(p) {
                self.set_onset(C::CoronaryDisease, 45.0, 15.0);
            }
        }
        if a >= 60.0 && self.chance(if a >= 75.0 { 0.12 } else { 0.06 }) {
            self.set_onset(C::AtrialFibrillation, 60.0, 10.0);
        }
        if a >= 55.0 {
            let chd = self.chronic[C::CoronaryDisease as usize].onset.is_some();
            let p = if a >= 70.0 { 0.07 } else { 0.03 } * if chd { 2.0 } else { 1.0 };
            if self.chance(p) {
                self.set_onset(C::HeartFailure, 55.0, 8.0);
            }
        }
        if a >= 12.0 && self.chance(if f { 0.1 } else { 0.06 }) {
            self.set_onset(C::Depression, 12.0, 30.0);
        }
        if a >= 20.0 && self.chance(if f { 0.07 } else { 0.02 }) {
            self.set_onset(C::Hypothyroidism, 20.0, 30.0);
        }
        if a >= 45.0 && self.chance(if a >= 65.0 { 0.25 } else { 0.12 }) {
            self.set_onset(C::Osteoarthritis, 45.0, 20.0);
        }
        let ckd = self.chronic[C::Ckd as usize].onset.is_some();
        let p_anemia = if ckd {
            0.3
        } else if f && (12.0..50.0).contains(&a) {
            0.06
        } else if a >= 65.0 {
            0.08
        } else {
            0.0
        };
        if a >= 12.0 && self.chance(p_anemia) {
            self.set_onset(C::Anemia, 12.0, 10.0);
        }
        if a >= 30.0 && self.chance(if obese { 0.15 } else { 0.03 }) {
            self.set_onset(C::SleepApnea, 30.0, 15.0);
        }
    }

    fn condition(
        &mut self,
        e: &Encounter,
        code: &Code,
        onset: i64,
        abatement: Option<i64>,
        problem_list: bool,
    ) -> String {
        let id = self.next_id(Ty::Condition as usize);
        let resolved = abatement.filter(|a| *a < self.end);
        let (status, status_display) = if resolved.is_some() {
            ("resolved", "Resolved")
        } else {
            ("active", "Active")
        };
        let (cat, cat_display) = if problem_list {
            ("problem-list-item", "Problem List Item")
        } else {
            ("encounter-diagnosis", "Encounter Diagnosis")
        };
        let mut c = Map::with_capacity(12);
        c.insert("resourceType".into(), "Condition".into());
        c.insert("id".into(), id.clone().into());
        c.insert(
            "clinicalStatus".into(),
            cc3(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                status,
                status_display,
            ),
        );
        c.insert(
            "verificationStatus".into(),
            cc3(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
                "Confirmed",
            ),
        );
        c.insert(
            "category".into(),
            json!([cc3(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                cat,
                cat_display
            )]),
        );
        c.insert("code".into(), cc(code));
        c.insert("subject".into(), self.subject());
        c.insert("encounter".into(), reference(&e.reference));
        c.insert("onsetDateTime".into(), dt(onset).into());
        if let Some(a) = resolved {
            c.insert("abatementDateTime".into(), dt(a).into());
        }
        c.insert("recordedDate".into(), dt(e.start).into());
        c.insert("recorder".into(), self.ctx.practitioner_ref(e.practitioner));
        self.push(Ty::Condition, Value::Object(c));
        id
    }

    pub(super) fn acute_condition(
        &mut self,
        e: &Encounter,
        code: &Code,
        days: (i64, i64),
    ) -> String {
        let onset = e.start - self.int(0, 3) * DAY - self.int(0, 23) * HOUR;
        let abatement = e.start + self.int(days.0, days.1) * DAY;
        self.condition(e, code, onset.max(self.birth), Some(abatement), false)
    }

    pub(super) fn diagnose(&mut self, e: &Encounter, c: Chronic, onset: i64) {
        let id = self.condition(e, &CHRONIC[c as usize].code, onset, None, true);
        self.chronic[c as usize].id = Some(id);
        let t = e.start + 20 * MINUTE;
        let a = self.age(t);
        let pick_htn = self.u();
        match c {
            C::Hypertension => {
                let first = if pick_htn < 0.6 {
                    &LISINOPRIL
                } else if pick_htn < 0.85 {
                    &AMLODIPINE
                } else {
                    &HCTZ
                };
                self.start_med(e, first, c, t);
                if self.chance(0.3) {
                    let second = if first.code.code == HCTZ.code.code {
                        &LISINOPRIL
                    } else {
                        &HCTZ
                    };
                    self.start_med(e, second, c, t);
                }
            }
            C::Diabetes => {
                self.start_med(e, &METFORMIN, c, t);
                if self.chance(0.2) {
                    self.start_med(e, &INSULIN, c, t);
                }
                if self.chance(0.8) {
                    self.device(&DEV_GLUCOSE_METER, t, "Blood glucose meter");
                }
            }
            C::Hyperlipidemia => {
                let statin = if self.has(C::CoronaryDisease, t) {
                    &ATORVASTATIN
                } else {
                    &SIMVASTATIN
                };
                self.start_med(e, statin, c, t);
            }
            C::Asthma => {
                self.start_med(e, &ALBUTEROL, c, t);
                if self.chance(0.5) {
                    self.start_med(e, &FLUTICASONE, c, t);
                }
            }
            C::Copd => {
                self.start_med(e, &FLUTICASONE_SALMETEROL, c, t);
                self.start_med(e, &ALBUTEROL, c, t);
            }
            C::Esrd => {
                self.device(&DEV_DIALYSIS, t, "Home hemodialysis system");
            }
            C::CoronaryDisease => {
                if !self.on_med(&SIMVASTATIN, t) {
                    self.start_med(e, &ATORVASTATIN, c, t);
                }
                self.start_med(e, &CLOPIDOGREL, c, t);
                self.start_med(e, &ASPIRIN, c, t);
                self.start_med(e, &NITROGLYCERIN, c, t);
            }
            C::AtrialFibrillation => {
                self.start_med(e, &WARFARIN, c, t);
                self.start_med(e, &METOPROLOL, c, t);
                if a >= 65.0 && self.chance(0.2) {
                    self.pacemaker(e, c);
                }
            }
            C::HeartFailure => {
                self.start_med(e, &FUROSEMIDE, c, t);
                self.start_med(e, &METOPROLOL, c, t);
                self.start_med(e, &LISINOPRIL, c, t);
                if self.chance(0.1) {
                    self.pacemaker(e, c);
                }
            }
            C::Depression if self.chance(0.7) => self.start_med(e, &SERTRALINE, c, t),
            C::Hypothyroidism => self.start_med(e, &LEVOTHYROXINE, c, t),
            C::Osteoarthritis => {
                let m = if self.chance(0.6) {
                    &NAPROXEN
                } else {
                    &ACETAMINOPHEN
                };
                self.start_med(e, m, c, t);
            }
            C::Anemia => self.start_med(e, &FERROUS_SULFATE, c, t),
            C::SleepApnea if self.chance(0.7) => {
                self.device(&DEV_CPAP, t, "CPAP machine");
            }
            _ => {}
        }
    }
}

/// `Chronic` values by index, to iterate over them.
pub(super) const CHRONIC_LIST: [Chronic; CHRONIC_COUNT] = [
    C::Obesity,
    C::Prediabetes,
    C::Diabetes,
    C::Hypertension,
    C::Hyperlipidemia,
    C::Asthma,
    C::Copd,
    C::Ckd,
    C::Esrd,
    C::CoronaryDisease,
    C::AtrialFibrillation,
    C::HeartFailure,
    C::Depression,
    C::Hypothyroidism,
    C::Osteoarthritis,
    C::Anemia,
    C::SleepApnea,
];
