//! What each kind of visit records: the clinical decisions (which vitals, labs,
//! procedures, imaging, prescriptions and vaccines a well visit, a follow-up, an acute
//! problem, an admission or a screening brings).
//!
//! Decisions live here, resources in their domain modules, so that a visit reads as the
//! clinical story it tells, and a domain's resource is built the same way whichever
//! visit asks for it. This is where a domain's records that belong to one kind of visit
//! are called from; `at_any_visit` takes those that may come with any visit.

use crate::synth::codes::Chronic as C;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::demographics::Smoking;
use super::observations::Category;
use super::schedule::VisitKind;
use super::{HOUR, MINUTE, PatientGenerator};

impl PatientGenerator<'_> {
    pub(super) fn pick_acute(&mut self, t: i64) -> &'static AcuteDef {
        let a = self.age(t);
        let covid_era = t >= 1_583_020_800; // 2020-03-01
        let weights: Vec<f64> = ACUTE
            .iter()
            .map(|d| {
                let mut w = if a < 18.0 {
                    d.weight_child
                } else {
                    d.weight_adult
                };
                match d.kind {
                    Acute::Covid if !covid_era => w = 0.0,
                    Acute::Uti if self.male => w *= 0.15,
                    Acute::Uti if !self.male && a >= 18.0 => w *= 1.8,
                    Acute::OtitisMedia if a >= 10.0 => w *= 0.2,
                    Acute::Pneumonia if a >= 65.0 => w *= 2.5,
                    _ => {}
                }
                w
            })
            .collect();
        &ACUTE[self.weighted(&weights)]
    }

    pub(super) fn wellness(&mut self, e: &Encounter) {
        let t = e.start;
        let a = self.age(t);
        self.vitals(e, t + 5 * MINUTE, true, None);
        if a >= 16.0 {
            let v = match self.smoking {
                Smoking::Never => NEVER_SMOKER,
                Smoking::Former => EX_SMOKER,
                Smoking::Current => SMOKER,
            };
            self.observation_coded(e, Category::Social, &SMOKING_STATUS, &v, t + 8 * MINUTE);
        }
        let lab_t = t + 25 * MINUTE;
        if a >= 18.0 {
            let p = if a >= 40.0 { 0.8 } else { 0.5 };
            if self.chance(p) {
                self.cbc(e, lab_t, false);
                self.cmp(e, lab_t);
            }
            let cardiometabolic = self.has(C::Hyperlipidemia, t)
                || self.has(C::Diabetes, t)
                || self.has(C::CoronaryDisease, t);
            let interval = if cardiometabolic { 330 } else { 4 * 365 };
            if a >= 20.0
                && self
                    .last_tested
                    .lipid
                    .is_none_or(|l| t - l > interval * DAY)
                && self.chance(0.8)
            {
                self.lipid(e, lab_t);
            }
            if self.has(C::Prediabetes, t)
                || (a >= 45.0 && self.last_tested.a1c.is_none_or(|l| t - l > 3 * YEAR))
            {
                self.single_lab(e, &A1C, lab_t);
                self.last_tested.a1c = Some(t);
            }
        } else if (300..=400).contains(&((t - self.birth) / DAY)) {
            // The 12-month anemia screen.
            let v = self.normal(12.0, 0.7);
            self.lab_value(e, &HEMOGLOBIN_CHILD, v, lab_t);
        }
        self.chronic_labs(e, lab_t);
        if a >= 12.0 && self.chance(0.7) {
            self.procedure(
                e,
                &PROC_DEPRESSION_SCREEN,
                t + 10 * MINUTE,
                t + 15 * MINUTE,
                None,
                None,
            );
        }
        if a >= 18.0 && self.chance(0.4) {
            self.procedure(
                e,
                &PROC_NEEDS_ASSESSMENT,
                t + 15 * MINUTE,
                t + 20 * MINUTE,
                None,
                None,
            );
        }
        if self.on_any_med() && self.chance(0.8) {
            self.procedure(
                e,
                &PROC_MED_RECONCILIATION,
                t + 20 * MINUTE,
                t + 25 * MINUTE,
                None,
                None,
            );
        }
        self.renew_meds(e);
        self.vaccines(e);
        if a >= 75.0 && !self.devices_given.cane && self.chance(0.15) {
            self.devices_given.cane = true;
            self.device(&DEV_CANE, t, "Cane");
        }
        if a >= 70.0 && !self.devices_given.hearing_aid && self.chance(0.1) {
            self.devices_given.hearing_aid = true;
            self.device(&DEV_HEARING_AID, t, "Hearing aid");
        }
    }

    pub(super) fn follow_up(&mut self, e: &Encounter) {
        let t = e.start;
        self.vitals(e, t + 5 * MINUTE, false, None);
        self.chronic_labs(e, t + 20 * MINUTE);
        if self.on_any_med() && self.chance(0.7) {
            self.procedure(
                e,
                &PROC_MED_RECONCILIATION,
                t + 10 * MINUTE,
                t + 15 * MINUTE,
                None,
                None,
            );
        }
        if (self.has(C::AtrialFibrillation, t) || self.has(C::CoronaryDisease, t))
            && self.chance(0.3)
        {
            self.procedure(e, &PROC_ECG, t + 12 * MINUTE, t + 20 * MINUTE, None, None);
        }
        if (self.has(C::Copd, t) || self.has(C::Asthma, t)) && self.chance(0.25) {
            self.procedure(
                e,
                &PROC_SPIROMETRY,
                t + 12 * MINUTE,
                t + 25 * MINUTE,
                None,
                None,
            );
        }
        if self.has(C::Osteoarthritis, t) && self.chance(0.08) {
            let reason = self.chronic[C::Osteoarthritis as usize].id.clone();
            let xt = t + 15 * MINUTE;
            self.imaging(
                e,
                xt,
                &MOD_DX,
                &BODY_KNEE,
                &PROC_RADIOGRAPHY,
                None,
                reason.as_deref(),
            );
            self.procedure(
                e,
                &PROC_RADIOGRAPHY,
                xt,
                xt + 10 * MINUTE,
                reason.as_deref(),
                None,
            );
        }
        if self.has(C::Esrd, t) {
            let reason = self.chronic[C::Esrd as usize].id.clone();
            self.procedure(
                e,
                &PROC_DIALYSIS,
                t + 20 * MINUTE,
                t + 4 * HOUR,
                reason.as_deref(),
                None,
            );
        }
        self.renew_meds(e);
        self.zoster_second_dose(e);
    }

    pub(super) fn acute(&mut self, e: &Encounter, def: &AcuteDef, emergency: bool, cid: &str) {
        let t = e.start;
        let a = self.age(t);
        self.vitals(e, t + 5 * MINUTE, false, Some(def));
        let lab_t = t + 30 * MINUTE;
        if (emergency && a >= 18.0 && self.chance(0.5)) || def.kind == Acute::Pneumonia {
            self.cbc(e, lab_t, def.fever);
            self.cmp(e, lab_t);
        }
        let pt = t + 15 * MINUTE;
        let reason = Some(cid);
        match def.kind {
            Acute::StrepThroat => {
                self.procedure(e, &PROC_THROAT_CULTURE, pt, pt + 5 * MINUTE, reason, None)
            }
            Acute::Pharyngitis if self.chance(0.4) => {
                self.procedure(e, &PROC_THROAT_CULTURE, pt, pt + 5 * MINUTE, reason, None)
            }
            Acute::ForearmFracture => {
                self.imaging(
                    e,
                    pt,
                    &MOD_DX,
                    &BODY_FOREARM,
                    &PROC_RADIOGRAPHY,
                    None,
                    reason,
                );
                self.procedure(e, &PROC_RADIOGRAPHY, pt, pt + 10 * MINUTE, reason, None);
                self.procedure(
                    e,
                    &PROC_IMMOBILIZATION,
                    pt + 30 * MINUTE,
                    pt + 60 * MINUTE,
                    reason,
                    None,
                );
            }
            Acute::AnkleSprain if self.chance(0.5) => {
                self.imaging(e, pt, &MOD_DX, &BODY_ANKLE, &PROC_RADIOGRAPHY, None, reason);
                self.procedure(e, &PROC_RADIOGRAPHY, pt, pt + 10 * MINUTE, reason, None);
            }
            Acute::Laceration => {
                self.procedure(e, &PROC_SUTURE, pt, pt + 25 * MINUTE, reason, None)
            }
            Acute::Concussion if emergency && self.chance(0.7) => {
                self.imaging(
                    e,
                    pt,
                    &MOD_CT,
                    &BODY_HEAD,
                    &PROC_CT,
                    Some(&REPORT_CT_HEAD),
                    reason,
                );
                self.procedure(e, &PROC_CT, pt, pt + 15 * MINUTE, reason, None);
            }
            Acute::AbdominalPain if emergency && self.chance(0.4) => {
                self.imaging(e, pt, &MOD_CT, &BODY_ABDOMEN, &PROC_CT, None, reason);
                self.procedure(e, &PROC_CT, pt, pt + 15 * MINUTE, reason, None);
            }
            Acute::Pneumonia => self.chest_xray(e, pt, reason),
            Acute::Bronchitis | Acute::Covid if self.chance(0.2) => self.chest_xray(e, pt, reason),
            _ => {}
        }
        let child = a < 12.0;
        let med = match def.kind {
            Acute::StrepThroat => Some(if self.chance(0.5) {
                &PENICILLIN_V
            } else {
                &AMOXICILLIN
            }),
            Acute::OtitisMedia if self.chance(0.8) => Some(&AMOXICILLIN),
            Acute::BacterialSinusitis => Some(&AMOX_CLAV),
            Acute::Pneumonia => Some(&AMOX_CLAV),
            Acute::Uti => Some(&CIPROFLOXACIN),
            Acute::Headache => Some(if child { &ACETAMINOPHEN } else { &IBUPROFEN }),
            Acute::AnkleSprain | Acute::ForearmFracture | Acute::Laceration if self.chance(0.6) => {
                Some(if child { &ACETAMINOPHEN } else { &IBUPROFEN })
            }
            Acute::ViralSinusitis
            | Acute::Pharyngitis
            | Acute::Bronchitis
            | Acute::Covid
            | Acute::Concussion
                if self.chance(0.5) =>
            {
                Some(&ACETAMINOPHEN)
            }
            _ => None,
        };
        if let Some(m) = med {
            self.med_request(e, m, e.end - 5 * MINUTE, Some(cid), false);
        }
    }

    pub(super) fn inpatient(&mut self, e: &mut Encounter, reasons: &mut Vec<String>) {
        let t = e.start;
        let a = self.age(t);
        #[derive(Clone, Copy, PartialEq)]
        enum Why {
            Pneumonia,
            Appendicitis,
            HeartFailure,
            Coronary,
            Copd,
        }
        let mut options = vec![(Why::Pneumonia, 3.0 + if a >= 65.0 { 2.0 } else { 0.0 })];
        options.push((Why::Appendicitis, if a < 40.0 { 2.0 } else { 0.4 }));
        if self.has(C::HeartFailure, t) {
            options.push((Why::HeartFailure, 5.0));
        }
        if self.has(C::CoronaryDisease, t) {
            options.push((Why::Coronary, 4.0));
        }
        if self.has(C::Copd, t) {
            options.push((Why::Copd, 4.0));
        }
        let weights: Vec<f64> = options.iter().map(|o| o.1).collect();
        let why = options[self.weighted(&weights)].0;
        let days = match why {
            Why::Appendicitis => self.int(1, 3),
            Why::Coronary => self.int(2, 5),
            _ => self.int(2, 6),
        };
        e.end = t + days * DAY + self.int(0, 8) * HOUR;
        let cid = match why {
            Why::Pneumonia => {
                let def = ACUTE
                    .iter()
                    .find(|d| d.kind == Acute::Pneumonia)
                    .expect("pneumonia is listed");
                self.acute_condition(e, &def.code, def.days)
            }
            Why::Appendicitis => self.acute_condition(e, &APPENDICITIS, (7, 21)),
            Why::Coronary => self.acute_condition(e, &MYOCARDIAL_INFARCTION, (28, 56)),
            Why::Copd => self.acute_condition(e, &COPD_EXACERBATION, (10, 21)),
            Why::HeartFailure => self.chronic[C::HeartFailure as usize]
                .id
                .clone()
                .expect("diagnosed on arrival"),
        };
        reasons.push(cid.clone());
        let reason = Some(cid.as_str());
        let fever = matches!(why, Why::Pneumonia | Why::Appendicitis);
        let mut day_t = t + 30 * MINUTE;
        for d in 0..=days {
            if day_t >= e.end {
                break;
            }
            let pseudo = if fever && d < 2 {
                ACUTE.iter().find(|d| d.kind == Acute::Pneumonia)
            } else {
                None
            };
            self.vitals(e, day_t, false, pseudo);
            if d == 0 {
                self.cbc(e, day_t + 20 * MINUTE, fever);
                self.cmp(e, day_t + 20 * MINUTE);
                if self.has(C::HeartFailure, t) {
                    let v = self.bnp(t);
                    self.lab_value(e, &BNP, v, day_t + 20 * MINUTE);
                }
            } else {
                if self.chance(0.5) {
                    self.cmp(e, day_t + 20 * MINUTE);
                }
                if self.chance(0.4) {
                    self.cbc(e, day_t + 20 * MINUTE, fever && d < 2);
                }
            }
            day_t = (day_t + DAY).div_euclid(DAY) * DAY + 6 * HOUR + self.int(0, 8) * 15 * MINUTE;
        }
        let pt = t + 2 * HOUR;
        match why {
            Why::Pneumonia | Why::Copd => self.chest_xray(e, pt, reason),
            Why::Appendicitis => {
                self.imaging(e, pt, &MOD_CT, &BODY_ABDOMEN, &PROC_CT, None, reason);
                self.procedure(e, &PROC_CT, pt, pt + 15 * MINUTE, reason, None);
                let st = pt + self.int(3, 8) * HOUR;
                let took = self.int(45, 90) * MINUTE;
                self.procedure(e, &PROC_APPENDECTOMY, st, st + took, reason, None);
            }
            Why::HeartFailure => {
                self.chest_xray(e, pt, reason);
                let et = pt + 6 * HOUR;
                self.imaging(
                    e,
                    et,
                    &MOD_US,
                    &BODY_HEART,
                    &PROC_ECHO,
                    Some(&REPORT_ECHO),
                    reason,
                );
                self.procedure(e, &PROC_ECHO, et, et + 40 * MINUTE, reason, None);
            }
            Why::Coronary => {
                self.procedure(e, &PROC_ECG, t + 10 * MINUTE, t + 20 * MINUTE, reason, None);
                let st = pt + self.int(2, 20) * HOUR;
                let code = if self.chance(0.8) {
                    &PROC_PCI
                } else {
                    &PROC_CABG
                };
                let took = self.int(60, 240) * MINUTE;
                self.procedure(e, code, st, st + took, reason, None);
            }
        }
        let discharge = e.end - 30 * MINUTE;
        match why {
            Why::Pneumonia => self.med_request(e, &AMOX_CLAV, discharge, reason, false),
            Why::Appendicitis => self.med_request(e, &ACETAMINOPHEN, discharge, reason, false),
            Why::Coronary if !self.on_med(&CLOPIDOGREL, discharge) => {
                self.start_med(e, &CLOPIDOGREL, C::CoronaryDisease, discharge)
            }
            _ => {}
        }
    }

    /// A screening colonoscopy (from 50).
    pub(super) fn colonoscopy(&mut self, e: &Encounter) {
        let start = e.start;
        self.vitals(e, start, false, None);
        let t = start + 30 * MINUTE;
        let took = self.int(20, 45) * MINUTE;
        self.procedure(e, &PROC_COLONOSCOPY, t, t + took, None, None);
    }

    /// A screening mammogram (women 40 to 75, every other year).
    pub(super) fn mammogram(&mut self, e: &Encounter) {
        let t = e.start + 5 * MINUTE;
        self.procedure(e, &PROC_MAMMOGRAPHY, t, t + 15 * MINUTE, None, None);
        self.imaging(
            e,
            t,
            &MOD_MG,
            &BODY_BREAST,
            &PROC_MAMMOGRAPHY,
            Some(&REPORT_MAMMOGRAPHY),
            None,
        );
    }

    /// What a visit may bring whatever it is for. A domain that records something at
    /// visits of every kind adds its call here, under whatever condition on the setting
    /// it needs.
    pub(super) fn at_any_visit(&mut self, e: &Encounter, kind: VisitKind, emergency: bool) {
        // Flu shots are offered at office visits, not in emergencies, admissions or at
        // screenings.
        let office_visit = matches!(
            kind,
            VisitKind::Wellness | VisitKind::FollowUp | VisitKind::Acute
        ) && !emergency;
        if office_visit {
            self.flu_shot(e);
        }
    }
}
