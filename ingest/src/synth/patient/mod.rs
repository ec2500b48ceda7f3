//! One patient and their history.
//!
//! The model is deliberately simple but causal, so that the data answer clinical
//! questions plausibly: chronic conditions are drawn first (from prevalences by age and
//! sex, with the usual co-morbidities), then a schedule of visits (well visits, condition
//! follow-ups whose frequency the conditions set, acute problems, admissions,
//! screenings), then each visit produces what such a visit records. Measurements come
//! from a per-patient physiology (height percentile, BMI, blood pressure, lipids, ...)
//! shifted by the conditions active at that time and by their treatment.
//!
//! # One generator, extended by domain
//!
//! [`PatientGenerator`] is one patient's state while their record is written: the random
//! stream, the id counters, and what the history so far has established (conditions,
//! medications, when the last lipid panel was drawn). Each clinical domain is a module
//! with an `impl PatientGenerator` block of its own rather than a type of its own,
//! because the domains are not independent: a diagnosis starts medications and devices,
//! medications move lab values, a visit draws on all of them, and all of them draw from
//! the patient's one random stream in one order. What only one domain needs to remember
//! lives in a small state type in that domain's module (`LastTested` in `labs`,
//! `VaccinationHistory` in `immunizations`, ...).
//!
//! - `demographics`: who the patient is (sex, age, death, smoking, home clinic) and the
//!   Patient resource.
//! - `conditions`: chronic conditions from prevalences and co-morbidities, Condition
//!   resources, and the treatment a diagnosis starts.
//! - `physiology`: the stable traits measurements vary around, and the measurements.
//! - `schedule`: which visits happen when.
//! - `encounters`: where a visit takes place, and its Encounter resource.
//! - `visits`: what each kind of visit records; the clinical decisions live here.
//! - `observations`: Observation and lab DiagnosticReport resources; `vitals` and `labs`
//!   decide which ones a visit gets and their values.
//! - `medications`, `procedures`, `imaging`, `devices`, `immunizations`: their resources,
//!   and the decisions that are theirs alone (renewals, vaccine schedules).
//!
//! # Adding a domain
//!
//! Add a module here with an `impl PatientGenerator<'_>` block that builds the domain's
//! resources (and a state type if it must remember something), declare it below, and
//! make one call where its records arise:
//!
//! - outside visits (readings a home device uploads, vaccines given at a pharmacy): in
//!   [`PatientGenerator::run`], after the visits;
//! - at visits of every kind: in `at_any_visit` (`visits.rs`);
//! - at one kind of visit (a knee MRI at an osteoarthritis follow-up): in that visit's
//!   function in `visits.rs`.
//!
//! A new resource type also needs its `Ty` in `synth/mod.rs`. `Ty`'s discriminant keys
//! the ids (`ids.rs`, where the DICOM kinds follow the types), so a type inserted in name
//! order changes the ids of every type after it.
//!
//! Where the call goes decides what else changes. A patient's random numbers come from
//! one stream in call order and each resource type numbers its ids in call order, so a
//! new call leaves everything generated before it as it was and shifts everything after
//! it in that patient's history. A call after the visits keeps every existing resource
//! byte-identical for a given seed; a call inside them gives the rest of the history
//! other (still deterministic) data. The fingerprint tool in `synth/fingerprint.rs`
//! shows which happened.

mod conditions;
mod demographics;
mod devices;
mod encounters;
mod imaging;
mod immunizations;
mod labs;
mod medications;
mod observations;
mod physiology;
mod procedures;
mod schedule;
mod visits;
mod vitals;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::synth::codes::CHRONIC_COUNT;
use crate::synth::fhir::*;
use crate::synth::ids::KINDS;
use crate::synth::{Ctx, Ty};

use conditions::ChronicState;
use demographics::Smoking;
use devices::DevicesGiven;
use immunizations::VaccinationHistory;
use labs::LastTested;
use medications::MedState;
use physiology::Physiology;

/// The encounter being generated, as the records made during it refer to it. Every
/// domain records into one, so it lives here rather than in `encounters`.
pub(super) struct Encounter {
    /// `Encounter/<id>`.
    pub(super) reference: String,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) practitioner: u64,
    pub(super) org: u64,
    /// (organization, location number within it)
    pub(super) location: (u64, u64),
}

const HOUR: i64 = 3600;
const MINUTE: i64 = 60;

pub(super) fn generate(ctx: &Ctx, idx: u64, out: &mut Vec<(Ty, Value)>) {
    let mut p = PatientGenerator::new(ctx, idx, out);
    p.run();
}

/// One patient while their record is generated: see the module doc.
struct PatientGenerator<'a> {
    ctx: &'a Ctx,
    rng: ChaCha8Rng,
    idx: u64,
    counters: [u64; KINDS],
    out: &'a mut Vec<(Ty, Value)>,
    pid: String,
    pref: String,
    display: String,
    male: bool,
    birth: i64,
    death: Option<i64>,
    /// The first moment of the recorded history.
    start: i64,
    /// The end of the recorded history: death, or "now".
    end: i64,
    gp: u64,
    home_org: u64,
    home_hospital: u64,
    smoking: Smoking,
    phys: Physiology,
    chronic: [ChronicState; CHRONIC_COUNT],
    meds: Vec<MedState>,
    last_tested: LastTested,
    vaccinations: VaccinationHistory,
    devices_given: DevicesGiven,
}

impl<'a> PatientGenerator<'a> {
    fn new(ctx: &'a Ctx, idx: u64, out: &'a mut Vec<(Ty, Value)>) -> Self {
        let pid = ctx.id(Ty::Patient, idx);
        PatientGenerator {
            ctx,
            rng: ctx.rng(idx),
            idx,
            counters: [0; KINDS],
            out,
            pref: format!("Patient/{pid}"),
            pid,
            display: String::new(),
            male: false,
            birth: 0,
            death: None,
            start: 0,
            end: NOW,
            gp: 0,
            home_org: 0,
            home_hospital: 0,
            smoking: Smoking::Never,
            phys: Physiology::default(),
            chronic: Default::default(),
            meds: Vec::new(),
            last_tested: LastTested::default(),
            vaccinations: VaccinationHistory::default(),
            devices_given: DevicesGiven::default(),
        }
    }

    // ---- randomness -------------------------------------------------------------------

    fn u(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.u() < p
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.u()
    }

    fn int(&mut self, lo: i64, hi_inclusive: i64) -> i64 {
        self.rng.random_range(lo..=hi_inclusive)
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        // Box-Muller; one draw per call keeps the stream simple to reason about.
        let u1 = self.u().max(1e-12);
        let u2 = self.u();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.u() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| (b'0' + self.rng.random_range(0..10u8)) as char)
            .collect()
    }

    // ---- ids and output ---------------------------------------------------------------

    fn next_id(&mut self, kind: usize) -> String {
        let n = (self.idx << 20) | self.counters[kind];
        self.counters[kind] += 1;
        self.ctx.ids.uuid(kind, n)
    }

    fn next_uid(&mut self, kind: usize) -> String {
        let n = (self.idx << 20) | self.counters[kind];
        self.counters[kind] += 1;
        self.ctx.ids.dicom_uid(kind, n)
    }

    fn push(&mut self, ty: Ty, v: Value) {
        self.out.push((ty, v));
    }

    fn subject(&self) -> Value {
        reference_display(&self.pref, &self.display)
    }

    // ---- time -------------------------------------------------------------------------

    fn age(&self, t: i64) -> f64 {
        (t - self.birth) as f64 / YEAR as f64
    }

    fn alive_at(&self, t: i64) -> bool {
        t < self.end
    }

    /// A clinic appointment on the day of `t`: 08:00 to 16:45 in quarter hours.
    fn clinic_time(&mut self, t: i64) -> i64 {
        t.div_euclid(DAY) * DAY + 8 * HOUR + self.int(0, 35) * 15 * MINUTE
    }

    /// Any minute of the day of `t`.
    fn any_time(&mut self, t: i64) -> i64 {
        t.div_euclid(DAY) * DAY + self.int(0, 24 * 60 - 1) * MINUTE
    }

    // ---- the patient ------------------------------------------------------------------

    /// The patient's life. The order of these calls is the order of the random draws,
    /// and so part of the output (see "Adding a domain" in the module doc).
    fn run(&mut self) {
        // Who the patient is, all drawn before anything is recorded, because every
        // record depends on it.
        self.demographics();
        self.draw_chronic();
        self.draw_physiology();
        let patient = self.patient_resource();
        self.push(Ty::Patient, patient);
        // The visits in time order; each records what its kind of visit records.
        let plans = self.schedule();
        for (t, kind) in plans {
            self.encounter(t, kind);
        }
        // Records made outside any visit, one call per domain. A new domain's call goes
        // last, so that every record before it keeps its random draws.
        self.covid_vaccines();
    }
}
