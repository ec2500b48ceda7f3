//! Which visits happen when: well visits (the pediatric schedule, then yearly adult
//! checkups), condition follow-ups as often as the active conditions call for, acute
//! problems and admissions at age-dependent rates, and cancer screenings.
//!
//! The whole schedule is drawn before the first visit is generated, so what happens at a
//! visit never changes when the next visit is.

use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::PatientGenerator;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VisitKind {
    Wellness,
    FollowUp,
    Acute,
    Inpatient,
    Colonoscopy,
    Mammogram,
}

impl PatientGenerator<'_> {
    pub(super) fn schedule(&mut self) -> Vec<(i64, VisitKind)> {
        let mut plans: Vec<(i64, VisitKind)> = Vec::new();
        // Nothing may run past the end: admissions need room for their stay.
        let room = |k: VisitKind| {
            if k == VisitKind::Inpatient {
                8 * DAY
            } else {
                2 * DAY
            }
        };
        let (start, end, birth) = (self.start, self.end, self.birth);
        let mut add = |g: &mut Self, t: i64, k: VisitKind| {
            if t >= start && t + room(k) < end {
                let t = match k {
                    VisitKind::Inpatient => g.any_time(t),
                    VisitKind::Acute => t.div_euclid(DAY) * DAY, // time of day chosen with the setting
                    _ => g.clinic_time(t),
                };
                plans.push((t, k));
            }
        };
        for &d in WELL_CHILD_DAYS {
            let jitter = if d > 30 { self.int(-10, 10) } else { 0 };
            let t = birth + (d + jitter) * DAY;
            if self.chance(0.92) {
                add(self, t, VisitKind::Wellness);
            }
        }
        let mut t = start.max(birth + 18 * YEAR);
        while t < end {
            let a = self.age(t);
            let p = if a < 40.0 {
                0.55
            } else if a < 65.0 {
                0.75
            } else {
                0.9
            };
            if self.chance(p) {
                let when = t + self.int(0, 300) * DAY;
                add(self, when, VisitKind::Wellness);
            }
            t += YEAR;
        }
        let mut t = start;
        while t < end {
            let a = self.age(t);
            let mut visits = 0.0;
            let mut serious = 0;
            for (i, def) in CHRONIC.iter().enumerate() {
                if self.chronic[i].onset.is_some_and(|o| o <= t) {
                    visits += def.visits_per_year;
                    serious += def.serious as i32;
                }
            }
            let visits = f64::min(visits, 5.0);
            if self.chance(visits / 12.0) {
                let when = t + self.int(0, 29) * DAY;
                add(self, when, VisitKind::FollowUp);
            }
            let acute = if a < 5.0 {
                2.5
            } else if a < 18.0 {
                1.2
            } else if a < 65.0 {
                0.9
            } else {
                1.2
            };
            if self.chance(acute / 12.0) {
                let when = t + self.int(0, 29) * DAY;
                add(self, when, VisitKind::Acute);
            }
            if a >= 1.0 {
                let mut rate = 0.008 + 0.03 * serious as f64;
                if a >= 65.0 {
                    rate *= 2.0;
                }
                if self.chance(rate / 12.0) {
                    let when = t + self.int(0, 29) * DAY;
                    add(self, when, VisitKind::Inpatient);
                }
            }
            t += 30 * DAY;
        }
        let from50 = start.max(birth + 50 * YEAR);
        if from50 + YEAR < end && self.chance(0.5) {
            let when = from50 + self.int(0, (end - from50) / DAY - 3) * DAY;
            add(self, when, VisitKind::Colonoscopy);
        }
        if !self.male {
            let mut t = start.max(birth + 40 * YEAR);
            while t < end && t < birth + 75 * YEAR {
                if self.chance(0.65) {
                    let when = t + self.int(0, 200) * DAY;
                    add(self, when, VisitKind::Mammogram);
                }
                t += 2 * YEAR;
            }
        }
        // Stable: same-time plans keep their order, so the result is deterministic.
        plans.sort_by_key(|p| p.0);
        plans
    }
}
