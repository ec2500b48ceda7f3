//! Immunizations: the childhood schedule, adult vaccines (Td, zoster, pneumococcal), the
//! seasonal flu shot, and COVID-19 vaccines.
//!
//! `VaccinationHistory` remembers doses across visits so that schedules complete (the
//! second zoster dose, one flu shot per season) rather than restart. COVID-19 vaccines
//! are recorded outside any encounter, as reported by pharmacies and vaccination sites.

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::{MINUTE, PatientGenerator};

/// The doses given so far, where a schedule depends on them.
#[derive(Default)]
pub(super) struct VaccinationHistory {
    td: Option<i64>,
    /// Zoster doses given (0, 1 or 2) and when the first was.
    zoster: u8,
    zoster_at: i64,
    ppsv: bool,
    /// The flu season (its starting year) of the last flu shot.
    flu_season: i32,
    /// Bit `i` set once dose `i` of `CHILD_SCHEDULE` is given.
    child_vax: u64,
}

impl PatientGenerator<'_> {
    fn immunization(&mut self, e: Option<&Encounter>, vaccine: &Code, t: i64) {
        let id = self.next_id(Ty::Immunization as usize);
        let mut m = Map::with_capacity(10);
        m.insert("resourceType".into(), "Immunization".into());
        m.insert("id".into(), id.into());
        m.insert("status".into(), "completed".into());
        m.insert("vaccineCode".into(), cc(vaccine));
        m.insert("patient".into(), self.subject());
        if let Some(e) = e {
            m.insert("encounter".into(), reference(&e.reference));
        }
        m.insert("occurrenceDateTime".into(), dt(t).into());
        m.insert("primarySource".into(), e.is_some().into());
        if let Some(e) = e {
            m.insert(
                "location".into(),
                self.ctx.location_ref(e.location.0, e.location.1),
            );
        }
        let lot = format!(
            "{}{}",
            (b'A' + self.rng.random_range(0..26u8)) as char,
            self.digits(6)
        );
        m.insert("lotNumber".into(), lot.into());
        if let Some(e) = e {
            m.insert(
                "performer".into(),
                json!([{
                    "function": cc3("http://terminology.hl7.org/CodeSystem/v2-0443", "AP", "Administering Provider"),
                    "actor": self.ctx.practitioner_ref(e.practitioner)
                }]),
            );
        }
        self.push(Ty::Immunization, Value::Object(m));
    }

    pub(super) fn vaccines(&mut self, e: &Encounter) {
        let t = e.start + 30 * MINUTE;
        let age_days = (t - self.birth) / DAY;
        let a = self.age(t);
        for (i, (due, vaccine)) in CHILD_SCHEDULE.iter().enumerate() {
            let given = self.vaccinations.child_vax & (1 << i) != 0;
            // Doses due within the past year are caught up; older ones were given before
            // the history we have.
            if !given && *due <= age_days + 14 && age_days - due < 365 {
                self.vaccinations.child_vax |= 1 << i;
                self.immunization(Some(e), vaccine, t);
            }
        }
        if a >= 19.0 {
            let td_due = match self.vaccinations.td {
                Some(l) => t - l > 10 * YEAR,
                None => self.chance(0.12),
            };
            if td_due {
                self.vaccinations.td = Some(t);
                self.immunization(Some(e), &VAX_TD, t);
            }
        }
        if a >= 50.0 && self.vaccinations.zoster == 0 && self.chance(0.3) {
            self.vaccinations.zoster = 1;
            self.vaccinations.zoster_at = t;
            self.immunization(Some(e), &VAX_ZOSTER, t);
        } else {
            self.zoster_second_dose(e);
        }
        if a >= 65.0 && !self.vaccinations.ppsv && self.chance(0.5) {
            self.vaccinations.ppsv = true;
            self.immunization(Some(e), &VAX_PPSV23, t);
        }
    }

    pub(super) fn zoster_second_dose(&mut self, e: &Encounter) {
        let t = e.start + 30 * MINUTE;
        if self.vaccinations.zoster == 1
            && t - self.vaccinations.zoster_at > 60 * DAY
            && self.chance(0.8)
        {
            self.vaccinations.zoster = 2;
            self.immunization(Some(e), &VAX_ZOSTER, t);
        }
    }

    pub(super) fn flu_shot(&mut self, e: &Encounter) {
        let t = e.start + 30 * MINUTE;
        let month = month_of(t);
        if !(month >= 9 || month <= 3) || self.age(t) < 0.5 {
            return;
        }
        let season = year_of(t) - if month <= 3 { 1 } else { 0 };
        if self.vaccinations.flu_season == season {
            return;
        }
        let p = if self.age(t) >= 65.0 { 0.6 } else { 0.45 };
        if self.chance(p) {
            self.vaccinations.flu_season = season;
            self.immunization(Some(e), &VAX_FLU, t);
        }
    }

    /// COVID-19 vaccines, mostly given at pharmacies and mass-vaccination sites: recorded
    /// as reported (no encounter, `primarySource` false).
    pub(super) fn covid_vaccines(&mut self) {
        let first_day = 1_614_556_800; // 2021-03-01
        if first_day < self.start
            || !self.alive_at(first_day + 200 * DAY)
            || self.age(first_day) < 18.0
        {
            return;
        }
        let p = if self.age(first_day) >= 65.0 {
            0.85
        } else {
            0.65
        };
        if !self.chance(p) {
            return;
        }
        let pfizer = self.chance(0.6);
        let vaccine = if pfizer {
            VAX_COVID_PFIZER
        } else {
            VAX_COVID_MODERNA
        };
        let offset = self.int(0, 120) * DAY;
        let d1 = self.clinic_time(first_day + offset);
        let d2 = self.clinic_time(d1 + if pfizer { 21 } else { 28 } * DAY);
        self.immunization(None, &vaccine, d1);
        self.immunization(None, &vaccine, d2);
        if self.chance(0.5) {
            let offset = self.int(0, 150) * DAY;
            let b = self.clinic_time(1_633_046_400 + offset); // from 2021-10-01
            if self.alive_at(b) {
                self.immunization(None, &vaccine, b);
            }
        }
    }
}
