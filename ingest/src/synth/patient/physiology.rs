//! The patient's physiology: stable traits drawn once (height percentile, BMI, blood
//! pressure, lipids, blood counts) and the measurements that vary around them, shifted
//! by age, by the conditions active at the time and by their treatment.
//!
//! Keeping the traits per patient is what makes a series of measurements look like one
//! person's rather than independent draws.

use crate::synth::codes::Chronic as C;
use crate::synth::codes::*;

use super::PatientGenerator;

/// Stable traits that measurements vary around.
#[derive(Default)]
pub(super) struct Physiology {
    pub(super) height_z: f64,
    pub(super) weight_z: f64,
    pub(super) bmi: f64,
    pub(super) obese_bmi: f64,
    pub(super) hr: f64,
    pub(super) sbp: f64,
    pub(super) chol: f64,
    pub(super) hdl: f64,
    pub(super) tg: f64,
    pub(super) hgb: f64,
    pub(super) wbc: f64,
    pub(super) plt: f64,
    pub(super) creat: f64,
}

impl PatientGenerator<'_> {
    pub(super) fn draw_physiology(&mut self) {
        let f = !self.male;
        let obese = self.chronic[C::Obesity as usize].onset.is_some();
        self.phys = Physiology {
            height_z: self.normal(0.0, 1.0).clamp(-2.5, 2.5),
            weight_z: self.normal(0.0, 1.0).clamp(-2.5, 2.5),
            bmi: self.normal(25.0, 2.6).clamp(18.0, 29.5),
            obese_bmi: (30.5 + self.normal(3.5, 3.0).abs()).min(48.0),
            hr: self.normal(72.0, 7.0),
            sbp: self.normal(116.0, 8.0),
            chol: self.normal(185.0, 24.0),
            hdl: if f {
                self.normal(58.0, 10.0)
            } else {
                self.normal(47.0, 8.0)
            },
            tg: self.normal(120.0, 30.0) + if obese { 50.0 } else { 0.0 },
            hgb: if f {
                self.normal(13.6, 0.7)
            } else {
                self.normal(15.0, 0.8)
            },
            wbc: self.normal(6.8, 1.2),
            plt: self.normal(250.0, 40.0),
            creat: if f {
                self.normal(0.8, 0.1)
            } else {
                self.normal(0.98, 0.12)
            },
        };
    }

    pub(super) fn height(&mut self, t: i64) -> f64 {
        let a = self.age(t);
        let mut h = interpolate(&HEIGHT_TABLE, a, self.male) * (1.0 + 0.04 * self.phys.height_z);
        if a > 70.0 {
            h -= (a - 70.0) * 0.15;
        }
        h + self.normal(0.0, 0.3)
    }

    pub(super) fn weight(&mut self, t: i64, h: f64) -> f64 {
        let a = self.age(t);
        if a < 2.0 {
            return interpolate(&INFANT_WEIGHT_TABLE, a, self.male)
                * (1.0 + 0.08 * self.phys.weight_z)
                + self.normal(0.0, 0.1);
        }
        let adult_bmi = if self.has(C::Obesity, t) {
            self.phys.obese_bmi
        } else {
            self.phys.bmi
        };
        let bmi = if a < 18.0 {
            interpolate(&CHILD_BMI_TABLE, a, self.male) * (adult_bmi / 24.0).powf(0.6)
        } else {
            adult_bmi
        };
        bmi * (h / 100.0).powi(2) * (1.0 + self.normal(0.0, 0.01))
    }

    /// The median head circumference at age `a`, scaled like the patient's height.
    pub(super) fn head_circumference(&self, a: f64) -> f64 {
        interpolate(&HEAD_CIRC_TABLE, a, self.male) * (1.0 + 0.03 * self.phys.height_z)
    }

    pub(super) fn blood_pressure(&mut self, t: i64) -> (f64, f64) {
        let a = self.age(t);
        let mut sbp = if a < 18.0 {
            90.0 + 1.2 * a + self.normal(0.0, 6.0)
        } else {
            self.phys.sbp + 0.45 * (a - 35.0).max(0.0) + self.normal(0.0, 7.0)
        };
        if self.has(C::Hypertension, t) {
            sbp += if self.recorded(C::Hypertension) {
                8.0
            } else {
                24.0
            };
        }
        let dbp = if a < 18.0 {
            50.0 + a + self.normal(0.0, 5.0)
        } else {
            0.55 * sbp + self.normal(12.0, 4.0)
        };
        (sbp, dbp)
    }

    pub(super) fn glucose(&mut self, t: i64) -> f64 {
        if self.has(C::Diabetes, t) {
            if self.recorded(C::Diabetes) {
                self.normal(140.0, 22.0)
            } else {
                self.normal(175.0, 35.0)
            }
        } else if self.has(C::Prediabetes, t) {
            self.normal(108.0, 7.0)
        } else {
            self.normal(88.0, 8.0)
        }
        .max(55.0)
    }

    pub(super) fn a1c(&mut self, t: i64) -> f64 {
        if self.has(C::Diabetes, t) {
            if self.recorded(C::Diabetes) {
                self.normal(7.2, 0.7)
            } else {
                self.normal(8.3, 1.0)
            }
        } else if self.has(C::Prediabetes, t) {
            self.normal(6.0, 0.2)
        } else {
            self.normal(5.2, 0.25)
        }
        .clamp(4.2, 13.5)
    }

    pub(super) fn tsh(&mut self, t: i64) -> f64 {
        if self.has(C::Hypothyroidism, t) {
            if self.on_med(&LEVOTHYROXINE, t) {
                self.normal(2.6, 1.0)
            } else {
                self.normal(9.5, 3.0)
            }
        } else {
            self.normal(1.8, 0.6)
        }
        .max(0.05)
    }

    pub(super) fn inr(&mut self, t: i64) -> f64 {
        if self.on_med(&WARFARIN, t) {
            self.normal(2.5, 0.4)
        } else {
            self.normal(1.0, 0.08)
        }
        .max(0.8)
    }

    pub(super) fn bnp(&mut self, t: i64) -> f64 {
        if self.has(C::HeartFailure, t) {
            self.normal(480.0, 200.0).max(110.0)
        } else {
            self.normal(40.0, 20.0).max(5.0)
        }
    }

    pub(super) fn microalbumin(&mut self, t: i64) -> f64 {
        if self.has(C::Ckd, t) {
            self.normal(120.0, 60.0)
        } else {
            self.normal(18.0, 15.0)
        }
        .max(2.0)
    }
}

/// (age in years, male, female) medians (CDC growth charts, rounded).
const HEIGHT_TABLE: [(f64, f64, f64); 17] = [
    (0.0, 50.0, 49.0),
    (0.25, 61.0, 60.0),
    (0.5, 67.5, 66.0),
    (1.0, 76.0, 74.0),
    (1.5, 82.5, 81.0),
    (2.0, 87.0, 86.0),
    (3.0, 96.0, 95.0),
    (4.0, 103.0, 102.0),
    (5.0, 110.0, 109.0),
    (6.0, 116.0, 115.0),
    (8.0, 128.0, 127.0),
    (10.0, 139.0, 138.0),
    (12.0, 150.0, 151.0),
    (14.0, 164.0, 160.0),
    (16.0, 173.0, 162.0),
    (18.0, 176.0, 163.0),
    (200.0, 176.0, 163.0),
];

const INFANT_WEIGHT_TABLE: [(f64, f64, f64); 7] = [
    (0.0, 3.4, 3.3),
    (0.25, 6.2, 5.7),
    (0.5, 7.9, 7.3),
    (1.0, 9.6, 9.0),
    (1.5, 11.0, 10.4),
    (2.0, 12.2, 11.5),
    (200.0, 12.2, 11.5),
];

const CHILD_BMI_TABLE: [(f64, f64, f64); 10] = [
    (2.0, 16.4, 16.1),
    (4.0, 15.7, 15.4),
    (6.0, 15.4, 15.3),
    (8.0, 15.8, 15.8),
    (10.0, 16.8, 16.9),
    (12.0, 18.0, 18.4),
    (14.0, 19.3, 19.6),
    (16.0, 20.5, 20.5),
    (18.0, 21.5, 21.0),
    (200.0, 21.5, 21.0),
];

const HEAD_CIRC_TABLE: [(f64, f64, f64); 7] = [
    (0.0, 34.5, 33.9),
    (0.25, 40.5, 39.5),
    (0.5, 43.3, 42.2),
    (1.0, 46.3, 45.2),
    (2.0, 48.6, 47.5),
    (3.0, 49.6, 48.6),
    (200.0, 49.6, 48.6),
];

fn interpolate(table: &[(f64, f64, f64)], age: f64, male: bool) -> f64 {
    let col = |r: &(f64, f64, f64)| if male { r.1 } else { r.2 };
    if age <= table[0].0 {
        return col(&table[0]);
    }
    for w in table.windows(2) {
        if age <= w[1].0 {
            let f = (age - w[0].0) / (w[1].0 - w[0].0);
            return col(&w[0]) + f * (col(&w[1]) - col(&w[0]));
        }
    }
    col(&table[table.len() - 1])
}
