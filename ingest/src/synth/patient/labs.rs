//! Laboratory tests: the panels (CBC, CMP, lipids), single tests, and the monitoring
//! each chronic condition calls for when it is due.
//!
//! Due dates are remembered (`LastTested`) so that monitoring follows guideline intervals
//! (A1c every three months for diabetics, lipids yearly) across visits instead of
//! repeating at every one.

use crate::synth::codes::Chronic as C;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::PatientGenerator;

/// When each monitored test was last done.
#[derive(Default)]
pub(super) struct LastTested {
    pub(super) lipid: Option<i64>,
    pub(super) cmp: Option<i64>,
    pub(super) a1c: Option<i64>,
    pub(super) tsh: Option<i64>,
    pub(super) microalbumin: Option<i64>,
}

impl PatientGenerator<'_> {
    pub(super) fn single_lab(&mut self, e: &Encounter, m: &Measure, t: i64) {
        let v = match m.code.code {
            "4548-4" => self.a1c(t),
            "3016-3" => self.tsh(t),
            "6301-6" => self.inr(t),
            "30934-4" => self.bnp(t),
            "14959-1" => self.microalbumin(t),
            _ => unreachable!("single labs are listed above"),
        };
        self.lab_value(e, m, v, t);
    }

    pub(super) fn cbc(&mut self, e: &Encounter, t: i64, infection: bool) {
        let mut hgb = self.phys.hgb + self.normal(0.0, 0.35);
        if self.has(C::Anemia, t) {
            hgb -= if self.recorded(C::Anemia) { 1.6 } else { 2.8 };
        }
        if self.has(C::Ckd, t) {
            hgb -= 1.2;
        }
        let hct = hgb * 2.95 + self.normal(0.0, 0.8);
        let wbc = self.phys.wbc
            + self.normal(0.0, 0.6)
            + if infection {
                self.uniform(3.0, 8.0)
            } else {
                0.0
            };
        let plt = self.phys.plt + self.normal(0.0, 18.0);
        let (hgb_m, hct_m) = if self.male {
            (&HEMOGLOBIN_M, &HEMATOCRIT_M)
        } else {
            (&HEMOGLOBIN_F, &HEMATOCRIT_F)
        };
        let ids = vec![
            self.lab_value(e, hgb_m, hgb, t),
            self.lab_value(e, hct_m, hct, t),
            self.lab_value(e, &WBC, wbc.max(1.5), t),
            self.lab_value(e, &PLATELETS, plt.max(40.0), t),
        ];
        self.report(e, &CBC_PANEL, t, &ids);
    }

    pub(super) fn cmp(&mut self, e: &Encounter, t: i64) {
        self.last_tested.cmp = Some(t);
        let ckd = self.has(C::Ckd, t);
        let esrd = self.has(C::Esrd, t);
        let glucose = self.glucose(t);
        let creat = if esrd {
            self.normal(6.0, 1.2)
        } else if ckd {
            self.normal(1.8, 0.3)
        } else {
            self.phys.creat + self.normal(0.0, 0.06)
        }
        .max(0.3);
        let bun = if esrd {
            self.normal(60.0, 12.0)
        } else if ckd {
            self.normal(32.0, 6.0)
        } else {
            self.normal(14.0, 3.0)
        };
        let k = self.normal(4.2, 0.3) + if ckd { 0.4 } else { 0.0 };
        let co2 = self.normal(25.5, 1.6) - if ckd { 3.0 } else { 0.0 };
        let na = self.normal(140.0, 2.0);
        let cl = self.normal(103.0, 2.0);
        let ca = self.normal(9.5, 0.3);
        let creat_m = if self.male {
            &CREATININE_M
        } else {
            &CREATININE_F
        };
        let mut ids = vec![
            self.lab_value(e, &GLUCOSE, glucose, t),
            self.lab_value(e, &BUN, bun.max(3.0), t),
            self.lab_value(e, creat_m, creat, t),
            self.lab_value(e, &SODIUM, na, t),
            self.lab_value(e, &POTASSIUM, k, t),
            self.lab_value(e, &CHLORIDE, cl, t),
            self.lab_value(e, &CO2, co2, t),
            self.lab_value(e, &CALCIUM, ca, t),
        ];
        let a = self.age(t);
        if a >= 18.0 {
            // MDRD, the formula the LOINC code names.
            let egfr =
                175.0 * creat.powf(-1.154) * a.powf(-0.203) * if self.male { 1.0 } else { 0.742 };
            ids.push(self.lab_value(e, &EGFR, egfr.min(150.0), t));
        }
        self.report(e, &CMP_PANEL, t, &ids);
    }

    pub(super) fn lipid(&mut self, e: &Encounter, t: i64) {
        self.last_tested.lipid = Some(t);
        let mut chol = self.phys.chol + self.normal(0.0, 8.0);
        if self.has(C::Hyperlipidemia, t) {
            chol += 55.0;
        }
        if self.on_med(&SIMVASTATIN, t) || self.on_med(&ATORVASTATIN, t) {
            chol *= 0.75;
        }
        let hdl = (self.phys.hdl + self.normal(0.0, 3.0)).max(20.0);
        let tg = (self.phys.tg
            + self.normal(0.0, 15.0)
            + if self.has(C::Diabetes, t) { 40.0 } else { 0.0 })
        .max(40.0);
        let ldl = (chol - hdl - tg / 5.0).max(30.0);
        let ids = vec![
            self.lab_value(e, &CHOLESTEROL, chol, t),
            self.lab_value(e, &TRIGLYCERIDES, tg, t),
            self.lab_value(e, &LDL, ldl, t),
            self.lab_value(e, &HDL, hdl, t),
        ];
        self.report(e, &LIPID_PANEL, t, &ids);
    }

    /// The monitoring each condition calls for, when it is due.
    pub(super) fn chronic_labs(&mut self, e: &Encounter, t: i64) {
        if self.has(C::Diabetes, t) {
            if self.last_tested.a1c.is_none_or(|l| t - l > 80 * DAY) {
                self.single_lab(e, &A1C, t);
                self.last_tested.a1c = Some(t);
            }
            if self
                .last_tested
                .microalbumin
                .is_none_or(|l| t - l > 330 * DAY)
            {
                self.single_lab(e, &MICROALBUMIN, t);
                self.last_tested.microalbumin = Some(t);
            }
        }
        let needs_cmp =
            self.has(C::Ckd, t) || self.has(C::HeartFailure, t) || self.has(C::Diabetes, t);
        if needs_cmp && self.last_tested.cmp.is_none_or(|l| t - l > 150 * DAY) {
            self.cmp(e, t);
        }
        if (self.has(C::Hyperlipidemia, t) || self.has(C::CoronaryDisease, t))
            && self.last_tested.lipid.is_none_or(|l| t - l > 330 * DAY)
        {
            self.lipid(e, t);
        }
        if self.has(C::Hypothyroidism, t) && self.last_tested.tsh.is_none_or(|l| t - l > 330 * DAY)
        {
            self.single_lab(e, &TSH, t);
            self.last_tested.tsh = Some(t);
        }
        if self.on_med(&WARFARIN, t) {
            self.single_lab(e, &INR, t);
        }
        if self.has(C::HeartFailure, t) && self.chance(0.5) {
            self.single_lab(e, &BNP, t);
        }
        if self.has(C::Anemia, t) && self.chance(0.5) {
            self.cbc(e, t, false);
        }
    }
}
