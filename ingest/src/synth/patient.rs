//! One patient and their history.
//!
//! The model is deliberately simple but causal, so that the data answer clinical
//! questions plausibly: chronic conditions are drawn first (from prevalences by age and
//! sex, with the usual co-morbidities), then a schedule of visits (well visits, condition
//! follow-ups whose frequency the conditions set, acute problems, admissions,
//! screenings), then each visit produces what such a visit records. Measurements come
//! from a per-patient physiology (height percentile, BMI, blood pressure, lipids, ...)
//! shifted by the conditions active at that time and by their treatment.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::codes::*;
use super::fhir::obj;
use super::fhir::*;
use super::ids::{KIND_INSTANCE, KIND_SERIES, KIND_STUDY_UID, KINDS};
use super::{Ctx, Ty};

use Chronic as C;

const HOUR: i64 = 3600;
const MINUTE: i64 = 60;

pub(super) fn generate(ctx: &Ctx, idx: u64, out: &mut Vec<(Ty, Value)>) {
    let mut p = Gen::new(ctx, idx, out);
    p.run();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Wellness,
    FollowUp,
    Acute,
    Inpatient,
    Colonoscopy,
    Mammogram,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Smoking {
    Never,
    Former,
    Current,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cat {
    Vital,
    Lab,
    Social,
}

#[derive(Clone, Default)]
struct ChronicState {
    /// When it began; `None` if the patient does not have it.
    onset: Option<i64>,
    /// The Condition's id, once recorded at an encounter.
    id: Option<String>,
}

struct MedState {
    med: &'static Med,
    reason: Chronic,
    last_ordered: i64,
}

/// Stable traits that measurements vary around.
#[derive(Default)]
struct Phys {
    height_z: f64,
    weight_z: f64,
    bmi: f64,
    obese_bmi: f64,
    hr: f64,
    sbp: f64,
    chol: f64,
    hdl: f64,
    tg: f64,
    hgb: f64,
    wbc: f64,
    plt: f64,
    creat: f64,
}

/// The context of the encounter being generated.
struct Enc {
    r: String,
    start: i64,
    end: i64,
    practitioner: u64,
    org: u64,
    loc: (u64, u64),
}

#[derive(Default)]
struct Last {
    lipid: Option<i64>,
    cmp: Option<i64>,
    a1c: Option<i64>,
    tsh: Option<i64>,
    microalbumin: Option<i64>,
    td: Option<i64>,
    zoster: u8,
    zoster_at: i64,
    ppsv: bool,
    flu_season: i32,
    child_vax: u64,
    cane: bool,
    hearing_aid: bool,
}

struct Gen<'a> {
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
    start: i64,
    end: i64,
    gp: u64,
    home_org: u64,
    home_hospital: u64,
    smoking: Smoking,
    phys: Phys,
    chronic: [ChronicState; CHRONIC_COUNT],
    meds: Vec<MedState>,
    last: Last,
}

impl<'a> Gen<'a> {
    fn new(ctx: &'a Ctx, idx: u64, out: &'a mut Vec<(Ty, Value)>) -> Self {
        let pid = ctx.id(Ty::Patient, idx);
        Gen {
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
            phys: Phys::default(),
            chronic: Default::default(),
            meds: Vec::new(),
            last: Last::default(),
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

    fn has(&self, c: Chronic, t: i64) -> bool {
        self.chronic[c as usize].onset.is_some_and(|o| o <= t)
    }

    fn recorded(&self, c: Chronic) -> bool {
        self.chronic[c as usize].id.is_some()
    }

    fn on_med(&self, m: &Med, t: i64) -> bool {
        self.meds
            .iter()
            .any(|s| s.med.code.code == m.code.code && s.last_ordered <= t)
    }

    fn on_any_med(&self) -> bool {
        !self.meds.is_empty()
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

    fn run(&mut self) {
        self.demographics();
        self.draw_chronic();
        self.draw_physiology();
        let patient = self.patient_resource();
        self.push(Ty::Patient, patient);
        let plans = self.schedule();
        for (t, kind) in plans {
            self.encounter(t, kind);
        }
        self.covid_vaccines();
    }

    fn demographics(&mut self) {
        self.male = self.chance(0.49);
        // US population by 5-year age band, 0-4 to 90-94 (Census, rounded).
        const BANDS: [f64; 19] = [
            5.7, 6.0, 6.4, 6.5, 6.6, 7.0, 6.9, 6.6, 6.2, 6.1, 6.3, 6.4, 6.3, 5.5, 4.5, 3.2, 2.0,
            1.2, 0.6,
        ];
        let band = self.weighted(&BANDS) as f64;
        let age = (band * 5.0 + self.uniform(0.0, 5.0)).min(95.9);
        self.birth = (NOW - (age * YEAR as f64) as i64).div_euclid(DAY) * DAY;
        let p_dead = match age {
            a if a < 50.0 => 0.004,
            a if a < 65.0 => 0.02,
            a if a < 75.0 => 0.05,
            a if a < 85.0 => 0.12,
            _ => 0.25,
        };
        if self.chance(p_dead) {
            let back = self.uniform(0.0, (5.0f64).min(age * 0.9)) * YEAR as f64;
            let t = (NOW - back as i64).max(self.birth + 30 * DAY);
            self.death = Some(self.any_time(t));
        }
        self.end = self.death.unwrap_or(NOW);
        let history = self.uniform(3.0, 10.0) * YEAR as f64;
        self.start = (self.end - history as i64).max(self.birth);
        if self.age(self.end) >= 16.0 {
            self.smoking = match self.u() {
                x if x < 0.6 => Smoking::Never,
                x if x < 0.85 => Smoking::Former,
                _ => Smoking::Current,
            };
        }
        self.gp = self.rng.random_range(0..self.ctx.practitioners);
        self.home_org = self.ctx.practitioner_org(self.gp);
        // The hospital of the region: the nearest hospital index below the home clinic.
        self.home_hospital = (self.home_org / 5) * 5;
    }

    /// Onset at an age between `max(min_age, a - span)` and `a`, the age at the end.
    fn set_onset(&mut self, c: Chronic, min_age: f64, span: f64) {
        let a = self.age(self.end);
        let lo = min_age.max(a - span).min(a - 0.1);
        let at = self.uniform(lo, a - 0.05);
        let t = self.birth + (at * YEAR as f64) as i64;
        self.chronic[c as usize].onset = Some(t.clamp(self.birth, self.end - DAY));
    }

    fn draw_chronic(&mut self) {
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

    fn draw_physiology(&mut self) {
        let f = !self.male;
        let obese = self.chronic[C::Obesity as usize].onset.is_some();
        self.phys = Phys {
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

    fn patient_resource(&mut self) -> Value {
        let f = !self.male;
        let a = self.age(self.end);
        let hispanic = self.chance(0.18);
        let race_weights: Vec<f64> = RACES.iter().map(|r| r.2).collect();
        let race = RACES[self.weighted(&race_weights)];
        let given_list = if f { FEMALE_GIVEN } else { MALE_GIVEN };
        let given = self.pick(given_list);
        let middle = if self.chance(0.5) {
            Some(self.pick(given_list))
        } else {
            None
        };
        let family = if hispanic && self.chance(0.8) {
            self.pick(HISPANIC_FAMILY)
        } else {
            self.pick(FAMILY)
        };
        let marital = if a < 18.0 {
            None
        } else {
            let x = self.u();
            let single = if a < 25.0 {
                0.8
            } else if a < 35.0 {
                0.4
            } else {
                0.15
            };
            Some(if x < single {
                ("S", "Never Married")
            } else if x < single + (1.0 - single) * 0.75 {
                ("M", "Married")
            } else if a > 65.0 && x < single + (1.0 - single) * 0.9 {
                ("W", "Widowed")
            } else {
                ("D", "Divorced")
            })
        };
        let married = matches!(marital, Some(("M", _)) | Some(("W", _)));
        self.display = format!("{given} {family}");
        let mut givens = vec![Value::from(given)];
        if let Some(m) = middle {
            givens.push(Value::from(m));
        }
        let mut official = json!({"use": "official", "family": family, "given": givens});
        if a >= 18.0 {
            let prefix = match (f, married) {
                (false, _) => "Mr.",
                (true, true) => "Mrs.",
                (true, false) => "Ms.",
            };
            official["prefix"] = json!([prefix]);
        }
        let mut names = vec![official];
        if f && married && self.chance(0.5) {
            let maiden = if hispanic {
                self.pick(HISPANIC_FAMILY)
            } else {
                self.pick(FAMILY)
            };
            names.push(json!({"use": "maiden", "family": maiden, "given": [given]}));
        }

        let city = if self.chance(0.85) {
            self.ctx.org_city(self.home_org)
        } else {
            &CITIES[self.rng.random_range(0..CITIES.len())]
        };
        let street = format!(
            "{} {} {}",
            self.int(1, 9999),
            self.pick(STREETS),
            self.pick(STREET_SUFFIX)
        );
        let mut line = vec![Value::from(street)];
        if self.chance(0.15) {
            line.push(Value::from(format!("Apt {}", self.int(1, 40))));
        }
        let zip = format!("{:03}{:02}", city.zip3, self.int(1, 99));
        let phone = format!("555-{:03}-{:04}", self.int(200, 999), self.int(0, 9999));
        let mut telecom = vec![json!({"system": "phone", "value": phone, "use": "home"})];
        if a >= 18.0 && self.chance(0.6) {
            let email = format!(
                "{}.{}{}@example.com",
                given.to_ascii_lowercase(),
                family.to_ascii_lowercase().replace('\'', ""),
                self.int(1, 99)
            );
            telecom.push(json!({"system": "email", "value": email, "use": "home"}));
        }

        let omb = "urn:oid:2.16.840.1.113883.6.238";
        let (eth_code, eth_display) = if hispanic {
            ("2135-2", "Hispanic or Latino")
        } else {
            ("2186-5", "Not Hispanic or Latino")
        };
        let mut identifiers = vec![json!({
            "use": "usual",
            "type": cc3("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
            "system": "http://hospital.medlake.example/mrn",
            "value": format!("MRN{:08}", self.idx + 1)
        })];
        if a >= 18.0 {
            identifiers.push(json!({
                "use": "official",
                "type": cc3("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security number"),
                "system": "http://hl7.org/fhir/sid/us-ssn",
                // 999 is never issued, so these cannot be anyone's real number.
                "value": format!("999-{}-{}", self.digits(2), self.digits(4))
            }));
        }
        let spanish = hispanic && self.chance(0.4);
        let (lang, lang_display) = if spanish {
            ("es", "Spanish")
        } else {
            ("en-US", "English (United States)")
        };

        let mut p = Map::with_capacity(18);
        p.insert("resourceType".into(), "Patient".into());
        p.insert("id".into(), self.pid.clone().into());
        p.insert(
            "extension".into(),
            json!([
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": {"system": omb, "code": race.0, "display": race.1}},
                        {"url": "text", "valueString": race.1}
                    ]
                },
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": {"system": omb, "code": eth_code, "display": eth_display}},
                        {"url": "text", "valueString": eth_display}
                    ]
                },
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                    "valueCode": if f { "F" } else { "M" }
                }
            ]),
        );
        p.insert("identifier".into(), Value::Array(identifiers));
        p.insert("name".into(), Value::Array(names));
        p.insert("telecom".into(), Value::Array(telecom));
        p.insert("gender".into(), (if f { "female" } else { "male" }).into());
        p.insert("birthDate".into(), date(self.birth).into());
        if let Some(d) = self.death {
            p.insert("deceasedDateTime".into(), dt(d).into());
        }
        p.insert(
            "address".into(),
            json!([{
                "use": "home",
                "line": line,
                "city": city.name,
                "state": city.state,
                "postalCode": zip,
                "country": "US"
            }]),
        );
        if let Some((code, display)) = marital {
            p.insert(
                "maritalStatus".into(),
                cc3(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    code,
                    display,
                ),
            );
        }
        p.insert("multipleBirthBoolean".into(), self.chance(0.03).into());
        p.insert(
            "communication".into(),
            json!([{"language": cc3("urn:ietf:bcp:47", lang, lang_display), "preferred": true}]),
        );
        p.insert(
            "generalPractitioner".into(),
            json!([self.ctx.practitioner_ref(self.gp)]),
        );
        p.insert(
            "managingOrganization".into(),
            self.ctx.org_ref(self.home_org),
        );
        Value::Object(p)
    }

    // ---- the schedule -----------------------------------------------------------------

    fn schedule(&mut self) -> Vec<(i64, Kind)> {
        let mut plans: Vec<(i64, Kind)> = Vec::new();
        // Nothing may run past the end: admissions need room for their stay.
        let room = |k: Kind| {
            if k == Kind::Inpatient {
                8 * DAY
            } else {
                2 * DAY
            }
        };
        let (start, end, birth) = (self.start, self.end, self.birth);
        let mut add = |g: &mut Self, t: i64, k: Kind| {
            if t >= start && t + room(k) < end {
                let t = match k {
                    Kind::Inpatient => g.any_time(t),
                    Kind::Acute => t.div_euclid(DAY) * DAY, // time of day chosen with the setting
                    _ => g.clinic_time(t),
                };
                plans.push((t, k));
            }
        };
        for &d in WELL_CHILD_DAYS {
            let jitter = if d > 30 { self.int(-10, 10) } else { 0 };
            let t = birth + (d + jitter) * DAY;
            if self.chance(0.92) {
                add(self, t, Kind::Wellness);
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
                add(self, when, Kind::Wellness);
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
                add(self, when, Kind::FollowUp);
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
                add(self, when, Kind::Acute);
            }
            if a >= 1.0 {
                let mut rate = 0.008 + 0.03 * serious as f64;
                if a >= 65.0 {
                    rate *= 2.0;
                }
                if self.chance(rate / 12.0) {
                    let when = t + self.int(0, 29) * DAY;
                    add(self, when, Kind::Inpatient);
                }
            }
            t += 30 * DAY;
        }
        let from50 = start.max(birth + 50 * YEAR);
        if from50 + YEAR < end && self.chance(0.5) {
            let when = from50 + self.int(0, (end - from50) / DAY - 3) * DAY;
            add(self, when, Kind::Colonoscopy);
        }
        if !self.male {
            let mut t = start.max(birth + 40 * YEAR);
            while t < end && t < birth + 75 * YEAR {
                if self.chance(0.65) {
                    let when = t + self.int(0, 200) * DAY;
                    add(self, when, Kind::Mammogram);
                }
                t += 2 * YEAR;
            }
        }
        // Stable: same-time plans keep their order, so the result is deterministic.
        plans.sort_by_key(|p| p.0);
        plans
    }

    // ---- encounters -------------------------------------------------------------------

    fn encounter(&mut self, day: i64, kind: Kind) {
        let ctx = self.ctx;
        let a = self.age(day);
        // Setting.
        let mut acute: Option<&'static AcuteDef> = None;
        let mut emergency = false;
        if kind == Kind::Acute {
            let def = self.pick_acute(day);
            emergency = self.chance(def.emergency);
            acute = Some(def);
        }
        let hospital_setting =
            emergency || matches!(kind, Kind::Inpatient | Kind::Mammogram | Kind::Colonoscopy);
        let (practitioner, org, loc) = if hospital_setting {
            let h = if self.chance(0.85) {
                self.home_hospital
            } else {
                self.rng.random_range(0..ctx.hospitals()) * 5
            };
            let r = self.rng.random::<u64>();
            let k = if emergency { 1 } else { 0 };
            (ctx.practitioner_at(h, r), h, (h, k))
        } else {
            let j = if self.chance(0.85) {
                self.gp
            } else {
                let r = self.rng.random::<u64>();
                ctx.practitioner_at(self.home_org, r)
            };
            let o = ctx.practitioner_org(j);
            let k = if ctx.org_locations(o) > 1 && self.chance(0.3) {
                1
            } else {
                0
            };
            (j, o, (o, k))
        };
        let start = match kind {
            Kind::Inpatient => day,
            Kind::Acute if emergency => self.any_time(day),
            Kind::Acute => self.clinic_time(day),
            _ => day,
        };
        let (class, class_display, type_code) = match kind {
            Kind::Wellness if a < 18.0 => ("AMB", "ambulatory", ENC_WELL_CHILD),
            Kind::Wellness => ("AMB", "ambulatory", ENC_GENERAL_EXAM),
            Kind::FollowUp => ("AMB", "ambulatory", ENC_FOLLOW_UP),
            Kind::Acute if emergency => ("EMER", "emergency", ENC_EMERGENCY),
            Kind::Acute => ("AMB", "ambulatory", ENC_SYMPTOM),
            Kind::Inpatient => ("IMP", "inpatient encounter", ENC_ADMISSION),
            Kind::Colonoscopy | Kind::Mammogram => ("AMB", "ambulatory", ENC_CHECK_UP),
        };

        let enc_id = self.next_id(Ty::Encounter as usize);
        let slot = self.out.len();
        self.out.push((Ty::Encounter, Value::Null));
        let mut e = Enc {
            r: format!("Encounter/{enc_id}"),
            start,
            end: start,
            practitioner,
            org,
            loc,
        };
        let mut reasons: Vec<String> = Vec::new();

        // Chronic conditions begun since the last visit are found now.
        if !matches!(kind, Kind::Colonoscopy | Kind::Mammogram) {
            for i in 0..CHRONIC_COUNT {
                let onset = self.chronic[i].onset;
                if let Some(onset) = onset
                    && onset <= start
                    && self.chronic[i].id.is_none()
                {
                    self.diagnose(&e, CHRONIC_LIST[i], onset);
                }
            }
        }

        match kind {
            Kind::Wellness => {
                e.end = start + self.int(20, 45) * MINUTE;
                self.wellness(&e);
            }
            Kind::FollowUp => {
                e.end = start + self.int(15, 30) * MINUTE;
                // The visit is about the conditions that need follow-up.
                for i in 0..CHRONIC_COUNT {
                    if CHRONIC[i].visits_per_year > 0.0
                        && let Some(id) = &self.chronic[i].id
                        && reasons.len() < 3
                    {
                        reasons.push(id.clone());
                    }
                }
                self.follow_up(&e);
            }
            Kind::Acute => {
                let def = acute.expect("chosen above");
                e.end = start
                    + if emergency {
                        self.int(90, 360) * MINUTE
                    } else {
                        self.int(15, 40) * MINUTE
                    };
                let cid = self.acute_condition(&e, &def.code, def.days);
                reasons.push(cid.clone());
                self.acute(&e, def, emergency, &cid);
            }
            Kind::Inpatient => {
                self.inpatient(&mut e, &mut reasons);
            }
            Kind::Colonoscopy => {
                e.end = start + self.int(60, 120) * MINUTE;
                self.vitals(&e, start, false, None);
                let t = start + 30 * MINUTE;
                let took = self.int(20, 45) * MINUTE;
                self.procedure(&e, &PROC_COLONOSCOPY, t, t + took, None, None);
            }
            Kind::Mammogram => {
                e.end = start + self.int(20, 40) * MINUTE;
                let t = start + 5 * MINUTE;
                self.procedure(&e, &PROC_MAMMOGRAPHY, t, t + 15 * MINUTE, None, None);
                self.imaging(
                    &e,
                    t,
                    &MOD_MG,
                    &BODY_BREAST,
                    &PROC_MAMMOGRAPHY,
                    Some(&REPORT_MAMMOGRAPHY),
                    None,
                );
            }
        }
        if matches!(kind, Kind::Wellness | Kind::FollowUp | Kind::Acute) && !emergency {
            self.flu_shot(&e);
        }

        let mut enc = Map::with_capacity(13);
        enc.insert("resourceType".into(), "Encounter".into());
        enc.insert("id".into(), enc_id.into());
        enc.insert("status".into(), "finished".into());
        enc.insert(
            "class".into(),
            json!({"system": ACT_CODE, "code": class, "display": class_display}),
        );
        enc.insert("type".into(), json!([cc(&type_code)]));
        enc.insert("subject".into(), self.subject());
        let period = json!({"start": dt(e.start), "end": dt(e.end)});
        enc.insert(
            "participant".into(),
            json!([{
                "type": [cc3("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                "period": period.clone(),
                "individual": ctx.practitioner_ref(e.practitioner)
            }]),
        );
        enc.insert("period".into(), period);
        if !reasons.is_empty() {
            let refs: Vec<Value> = reasons
                .iter()
                .map(|id| reference(format!("Condition/{id}")))
                .collect();
            enc.insert("reasonReference".into(), Value::Array(refs));
        }
        if kind == Kind::Inpatient || emergency {
            let (src, src_display) = ("emd", "From accident/emergency department");
            let (disp, disp_display) = if self.death.is_some_and(|d| d <= e.end + DAY) {
                ("exp", "Expired")
            } else {
                ("home", "Home")
            };
            let mut h = Map::with_capacity(2);
            if kind == Kind::Inpatient {
                h.insert(
                    "admitSource".into(),
                    cc3(
                        "http://terminology.hl7.org/CodeSystem/admit-source",
                        src,
                        src_display,
                    ),
                );
            }
            h.insert(
                "dischargeDisposition".into(),
                cc3(
                    "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                    disp,
                    disp_display,
                ),
            );
            enc.insert("hospitalization".into(), Value::Object(h));
        }
        enc.insert(
            "location".into(),
            json!([{"location": ctx.location_ref(e.loc.0, e.loc.1), "status": "completed", "period": {"start": dt(e.start), "end": dt(e.end)}}]),
        );
        enc.insert("serviceProvider".into(), ctx.org_ref(e.org));
        self.out[slot].1 = Value::Object(enc);
    }

    fn pick_acute(&mut self, t: i64) -> &'static AcuteDef {
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

    // ---- what happens at each kind of visit -------------------------------------------

    fn wellness(&mut self, e: &Enc) {
        let t = e.start;
        let a = self.age(t);
        self.vitals(e, t + 5 * MINUTE, true, None);
        if a >= 16.0 {
            let v = match self.smoking {
                Smoking::Never => NEVER_SMOKER,
                Smoking::Former => EX_SMOKER,
                Smoking::Current => SMOKER,
            };
            self.observation_coded(e, Cat::Social, &SMOKING_STATUS, &v, t + 8 * MINUTE);
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
                && self.last.lipid.is_none_or(|l| t - l > interval * DAY)
                && self.chance(0.8)
            {
                self.lipid(e, lab_t);
            }
            if self.has(C::Prediabetes, t)
                || (a >= 45.0 && self.last.a1c.is_none_or(|l| t - l > 3 * YEAR))
            {
                self.single_lab(e, &A1C, lab_t);
                self.last.a1c = Some(t);
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
        if a >= 75.0 && !self.last.cane && self.chance(0.15) {
            self.last.cane = true;
            self.device(&DEV_CANE, t, "Cane");
        }
        if a >= 70.0 && !self.last.hearing_aid && self.chance(0.1) {
            self.last.hearing_aid = true;
            self.device(&DEV_HEARING_AID, t, "Hearing aid");
        }
    }

    fn follow_up(&mut self, e: &Enc) {
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

    fn acute(&mut self, e: &Enc, def: &AcuteDef, emergency: bool, cid: &str) {
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

    fn inpatient(&mut self, e: &mut Enc, reasons: &mut Vec<String>) {
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

    // ---- conditions -------------------------------------------------------------------

    fn condition(
        &mut self,
        e: &Enc,
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
        c.insert("encounter".into(), reference(&e.r));
        c.insert("onsetDateTime".into(), dt(onset).into());
        if let Some(a) = resolved {
            c.insert("abatementDateTime".into(), dt(a).into());
        }
        c.insert("recordedDate".into(), dt(e.start).into());
        c.insert("recorder".into(), self.ctx.practitioner_ref(e.practitioner));
        self.push(Ty::Condition, Value::Object(c));
        id
    }

    fn acute_condition(&mut self, e: &Enc, code: &Code, days: (i64, i64)) -> String {
        let onset = e.start - self.int(0, 3) * DAY - self.int(0, 23) * HOUR;
        let abatement = e.start + self.int(days.0, days.1) * DAY;
        self.condition(e, code, onset.max(self.birth), Some(abatement), false)
    }

    fn diagnose(&mut self, e: &Enc, c: Chronic, onset: i64) {
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

    fn pacemaker(&mut self, e: &Enc, c: Chronic) {
        let t = e.start + 2 * HOUR;
        let dev = self.device(&DEV_PACEMAKER, t, "Implantable pacemaker");
        let reason = self.chronic[c as usize].id.clone();
        let took = self.int(60, 120) * MINUTE;
        self.procedure(
            e,
            &PROC_PACEMAKER,
            t,
            t + took,
            reason.as_deref(),
            Some(&dev),
        );
    }

    // ---- medications ------------------------------------------------------------------

    fn start_med(&mut self, e: &Enc, med: &'static Med, reason: Chronic, t: i64) {
        if self.meds.iter().any(|m| m.med.code.code == med.code.code) {
            return;
        }
        self.meds.push(MedState {
            med,
            reason,
            last_ordered: t,
        });
        let rid = self.chronic[reason as usize].id.clone();
        self.med_request(e, med, t, rid.as_deref(), true);
    }

    /// Chronic prescriptions run a year; the first visit after that renews them.
    fn renew_meds(&mut self, e: &Enc) {
        let t = e.start + 20 * MINUTE;
        for i in 0..self.meds.len() {
            if t - self.meds[i].last_ordered >= 365 * DAY {
                self.meds[i].last_ordered = t;
                let (med, reason) = (self.meds[i].med, self.meds[i].reason);
                let rid = self.chronic[reason as usize].id.clone();
                self.med_request(e, med, t, rid.as_deref(), true);
            }
        }
    }

    fn med_request(&mut self, e: &Enc, med: &Med, t: i64, reason: Option<&str>, chronic: bool) {
        let id = self.next_id(Ty::MedicationRequest as usize);
        let validity_end = t + if chronic { 365 * DAY } else { 30 * DAY };
        let status = if validity_end <= self.end {
            "completed"
        } else if self.death.is_some() {
            "stopped"
        } else {
            "active"
        };
        let mut dosage = Map::with_capacity(5);
        dosage.insert("sequence".into(), 1.into());
        dosage.insert("text".into(), med.instruction.into());
        if med.per_day > 0 {
            dosage.insert(
                "timing".into(),
                json!({"repeat": {"frequency": med.per_day, "period": 1, "periodUnit": "d"}}),
            );
        }
        dosage.insert("asNeededBoolean".into(), (med.per_day == 0).into());
        dosage.insert(
            "doseAndRate".into(),
            json!([{
                "type": cc3("http://terminology.hl7.org/CodeSystem/dose-rate-type", "ordered", "Ordered"),
                "doseQuantity": ucum(num(med.dose, 0), med.dose_display, med.dose_unit)
            }]),
        );
        let supply_days = if chronic { 90 } else { 10 };
        let quantity = if med.per_day > 0 {
            med.dose * med.per_day as f64 * supply_days as f64
        } else {
            med.dose * 30.0
        };
        let mut m = Map::with_capacity(13);
        m.insert("resourceType".into(), "MedicationRequest".into());
        m.insert("id".into(), id.into());
        m.insert("status".into(), status.into());
        m.insert("intent".into(), "order".into());
        m.insert("medicationCodeableConcept".into(), cc(&med.code));
        m.insert("subject".into(), self.subject());
        m.insert("encounter".into(), reference(&e.r));
        m.insert("authoredOn".into(), dt(t).into());
        m.insert(
            "requester".into(),
            self.ctx.practitioner_ref(e.practitioner),
        );
        if let Some(r) = reason {
            m.insert(
                "reasonReference".into(),
                json!([reference(format!("Condition/{r}"))]),
            );
        }
        m.insert("dosageInstruction".into(), json!([Value::Object(dosage)]));
        m.insert(
            "dispenseRequest".into(),
            json!({
                "validityPeriod": {"start": dt(t), "end": dt(validity_end)},
                "numberOfRepeatsAllowed": if chronic { 3 } else { 0 },
                "quantity": ucum(num(quantity, 0), med.dose_display, med.dose_unit),
                "expectedSupplyDuration": ucum(supply_days.into(), "days", "d")
            }),
        );
        self.push(Ty::MedicationRequest, Value::Object(m));
    }

    // ---- observations -----------------------------------------------------------------

    fn category(cat: Cat) -> Value {
        let (code, display) = match cat {
            Cat::Vital => ("vital-signs", "Vital Signs"),
            Cat::Lab => ("laboratory", "Laboratory"),
            Cat::Social => ("social-history", "Social History"),
        };
        json!([{"coding": [{"system": OBS_CATEGORY, "code": code, "display": display}]}])
    }

    fn observation_base(
        &mut self,
        e: &Enc,
        cat: Cat,
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
        o.insert("encounter".into(), reference(&e.r));
        o.insert("effectiveDateTime".into(), dt(t).into());
        o.insert("issued".into(), dt(issued).into());
        (id, o)
    }

    fn vital(&mut self, e: &Enc, m: &Measure, v: f64, t: i64) {
        let (_, mut o) = self.observation_base(e, Cat::Vital, cc(&m.code), t, t);
        o.insert("valueQuantity".into(), quantity(v, m));
        self.push(Ty::Observation, Value::Object(o));
    }

    fn observation_coded(&mut self, e: &Enc, cat: Cat, code: &Code, value: &Code, t: i64) {
        let (_, mut o) = self.observation_base(e, cat, cc(code), t, t);
        o.insert("valueCodeableConcept".into(), cc(value));
        self.push(Ty::Observation, Value::Object(o));
    }

    /// A lab result with range and interpretation; returns its id.
    fn lab_value(&mut self, e: &Enc, m: &Measure, v: f64, t: i64) -> String {
        let issued = t + 2 * HOUR + self.int(0, 240) * MINUTE;
        let (id, mut o) = self.observation_base(e, Cat::Lab, cc(&m.code), t, issued);
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

    fn single_lab(&mut self, e: &Enc, m: &Measure, t: i64) {
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

    fn report(&mut self, e: &Enc, panel: &Code, t: i64, results: &[String]) {
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
            "encounter" => reference(&e.r),
            "effectiveDateTime" => dt(t),
            "issued" => dt(issued),
            "performer" => [self.ctx.org_ref(e.org)],
            "result" => refs
        };
        self.push(Ty::DiagnosticReport, r);
    }

    fn vitals(&mut self, e: &Enc, t: i64, full: bool, acute: Option<&AcuteDef>) {
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
            let hc =
                interpolate(&HEAD_CIRC_TABLE, a, self.male) * (1.0 + 0.03 * self.phys.height_z);
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
            let (_, mut o) = self.observation_base(e, Cat::Vital, cc(&BP_PANEL), t, t);
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
        let (_, mut o) = self.observation_base(e, Cat::Vital, code, t, t);
        o.insert("valueQuantity".into(), quantity(spo2.min(100.0), &SPO2));
        self.push(Ty::Observation, Value::Object(o));
    }

    fn cbc(&mut self, e: &Enc, t: i64, infection: bool) {
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

    fn cmp(&mut self, e: &Enc, t: i64) {
        self.last.cmp = Some(t);
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

    fn lipid(&mut self, e: &Enc, t: i64) {
        self.last.lipid = Some(t);
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
    fn chronic_labs(&mut self, e: &Enc, t: i64) {
        if self.has(C::Diabetes, t) {
            if self.last.a1c.is_none_or(|l| t - l > 80 * DAY) {
                self.single_lab(e, &A1C, t);
                self.last.a1c = Some(t);
            }
            if self.last.microalbumin.is_none_or(|l| t - l > 330 * DAY) {
                self.single_lab(e, &MICROALBUMIN, t);
                self.last.microalbumin = Some(t);
            }
        }
        let needs_cmp =
            self.has(C::Ckd, t) || self.has(C::HeartFailure, t) || self.has(C::Diabetes, t);
        if needs_cmp && self.last.cmp.is_none_or(|l| t - l > 150 * DAY) {
            self.cmp(e, t);
        }
        if (self.has(C::Hyperlipidemia, t) || self.has(C::CoronaryDisease, t))
            && self.last.lipid.is_none_or(|l| t - l > 330 * DAY)
        {
            self.lipid(e, t);
        }
        if self.has(C::Hypothyroidism, t) && self.last.tsh.is_none_or(|l| t - l > 330 * DAY) {
            self.single_lab(e, &TSH, t);
            self.last.tsh = Some(t);
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

    // ---- physiology -------------------------------------------------------------------

    fn height(&mut self, t: i64) -> f64 {
        let a = self.age(t);
        let mut h = interpolate(&HEIGHT_TABLE, a, self.male) * (1.0 + 0.04 * self.phys.height_z);
        if a > 70.0 {
            h -= (a - 70.0) * 0.15;
        }
        h + self.normal(0.0, 0.3)
    }

    fn weight(&mut self, t: i64, h: f64) -> f64 {
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

    fn blood_pressure(&mut self, t: i64) -> (f64, f64) {
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

    fn glucose(&mut self, t: i64) -> f64 {
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

    fn a1c(&mut self, t: i64) -> f64 {
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

    fn tsh(&mut self, t: i64) -> f64 {
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

    fn inr(&mut self, t: i64) -> f64 {
        if self.on_med(&WARFARIN, t) {
            self.normal(2.5, 0.4)
        } else {
            self.normal(1.0, 0.08)
        }
        .max(0.8)
    }

    fn bnp(&mut self, t: i64) -> f64 {
        if self.has(C::HeartFailure, t) {
            self.normal(480.0, 200.0).max(110.0)
        } else {
            self.normal(40.0, 20.0).max(5.0)
        }
    }

    fn microalbumin(&mut self, t: i64) -> f64 {
        if self.has(C::Ckd, t) {
            self.normal(120.0, 60.0)
        } else {
            self.normal(18.0, 15.0)
        }
        .max(2.0)
    }

    // ---- procedures, imaging, devices -------------------------------------------------

    fn procedure(
        &mut self,
        e: &Enc,
        code: &Code,
        start: i64,
        end: i64,
        reason: Option<&str>,
        device: Option<&str>,
    ) {
        let id = self.next_id(Ty::Procedure as usize);
        let mut p = Map::with_capacity(10);
        p.insert("resourceType".into(), "Procedure".into());
        p.insert("id".into(), id.into());
        p.insert("status".into(), "completed".into());
        p.insert("code".into(), cc(code));
        p.insert("subject".into(), self.subject());
        p.insert("encounter".into(), reference(&e.r));
        p.insert(
            "performedPeriod".into(),
            json!({"start": dt(start), "end": dt(end)}),
        );
        p.insert(
            "performer".into(),
            json!([{"actor": self.ctx.practitioner_ref(e.practitioner)}]),
        );
        p.insert("location".into(), self.ctx.location_ref(e.loc.0, e.loc.1));
        if let Some(r) = reason {
            p.insert(
                "reasonReference".into(),
                json!([reference(format!("Condition/{r}"))]),
            );
        }
        if let Some(d) = device {
            p.insert(
                "focalDevice".into(),
                json!([{"manipulated": reference(format!("Device/{d}"))}]),
            );
        }
        self.push(Ty::Procedure, Value::Object(p));
    }

    fn chest_xray(&mut self, e: &Enc, t: i64, reason: Option<&str>) {
        self.imaging(
            e,
            t,
            &MOD_DX,
            &BODY_CHEST,
            &PROC_CHEST_XRAY,
            Some(&REPORT_CHEST_XR),
            reason,
        );
        self.procedure(e, &PROC_CHEST_XRAY, t, t + 10 * MINUTE, reason, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn imaging(
        &mut self,
        e: &Enc,
        t: i64,
        modality: &Modality,
        body: &Code,
        procedure: &Code,
        report: Option<&Code>,
        reason: Option<&str>,
    ) {
        let id = self.next_id(Ty::ImagingStudy as usize);
        let study_uid = self.next_uid(KIND_STUDY_UID);
        let (series_n, per_series): (i64, (i64, i64)) = match modality.code {
            "CT" => (self.int(2, 3), (12, 40)),
            "US" => (1, (6, 16)),
            "MG" => (1, (4, 4)),
            _ => (self.int(1, 2), (1, 3)),
        };
        let mod_coding =
            json!({"system": DICOM_DCM, "code": modality.code, "display": modality.display});
        let mut series = Vec::with_capacity(series_n as usize);
        let mut total = 0;
        for s in 0..series_n {
            let n = self.int(per_series.0, per_series.1);
            total += n;
            let mut instances = Vec::with_capacity(n as usize);
            for i in 0..n {
                instances.push(json!({
                    "uid": self.next_uid(KIND_INSTANCE),
                    "sopClass": {"system": "urn:ietf:rfc:3986", "code": format!("urn:oid:{}", modality.sop_class), "display": modality.sop_display},
                    "number": i + 1,
                    "title": format!("Image {}", i + 1)
                }));
            }
            let st = t + s * 2 * MINUTE;
            series.push(json!({
                "uid": self.next_uid(KIND_SERIES),
                "number": s + 1,
                "modality": mod_coding.clone(),
                "description": format!("{} {}", modality.display, body.display.trim_end_matches(" (body structure)")),
                "numberOfInstances": n,
                "bodySite": coding(body),
                "started": dt(st),
                "instance": instances
            }));
        }
        let mut m = Map::with_capacity(15);
        m.insert("resourceType".into(), "ImagingStudy".into());
        m.insert("id".into(), id.clone().into());
        m.insert(
            "identifier".into(),
            json!([{"system": "urn:dicom:uid", "value": format!("urn:oid:{study_uid}")}]),
        );
        m.insert("status".into(), "available".into());
        m.insert("modality".into(), json!([mod_coding]));
        m.insert("subject".into(), self.subject());
        m.insert("encounter".into(), reference(&e.r));
        m.insert("started".into(), dt(t).into());
        m.insert("referrer".into(), self.ctx.practitioner_ref(e.practitioner));
        m.insert("numberOfSeries".into(), series_n.into());
        m.insert("numberOfInstances".into(), total.into());
        m.insert("procedureCode".into(), json!([cc(procedure)]));
        m.insert("location".into(), self.ctx.location_ref(e.loc.0, e.loc.1));
        if let Some(r) = reason {
            m.insert(
                "reasonReference".into(),
                json!([reference(format!("Condition/{r}"))]),
            );
        }
        m.insert("series".into(), Value::Array(series));
        self.push(Ty::ImagingStudy, Value::Object(m));

        if let Some(code) = report {
            let rid = self.next_id(Ty::DiagnosticReport as usize);
            let conclusion = match code.code {
                "24606-6" => {
                    if self.chance(0.9) {
                        "BI-RADS 1: Negative."
                    } else {
                        "BI-RADS 0: Incomplete. Additional imaging evaluation needed."
                    }
                }
                "36643-5" if reason.is_some() => {
                    "Findings consistent with the clinical indication."
                }
                "24725-4" => "No acute intracranial abnormality.",
                "34552-0" => "Reduced left ventricular systolic function.",
                _ => "No acute findings.",
            };
            let radiologist = self.ctx.practitioner_at(e.org, self.rng.random::<u64>());
            let r = obj! {
                "resourceType" => "DiagnosticReport",
                "id" => rid,
                "status" => "final",
                "category" => [cc3(V2_0074, "RAD", "Radiology")],
                "code" => cc(code),
                "subject" => reference(&self.pref),
                "encounter" => reference(&e.r),
                "effectiveDateTime" => dt(t),
                "issued" => dt(t + self.int(1, 6) * HOUR),
                "performer" => [self.ctx.practitioner_ref(radiologist)],
                "imagingStudy" => [reference(format!("ImagingStudy/{id}"))],
                "conclusion" => conclusion
            };
            self.push(Ty::DiagnosticReport, r);
        }
    }

    /// A device given to the patient at `t`; returns its id.
    fn device(&mut self, code: &Code, t: i64, name: &str) -> String {
        let id = self.next_id(Ty::Device as usize);
        let made = t - self.int(30, 400) * DAY;
        let expires = t + self.int(2, 8) * YEAR;
        let di = format!("0{}", self.digits(13));
        let lot = self.digits(8);
        let serial = self.digits(10);
        let yymmdd = |x: i64| {
            let d = date(x);
            format!("{}{}{}", &d[2..4], &d[5..7], &d[8..10])
        };
        let hrf = format!(
            "(01){di}(11){}(17){}(10){lot}(21){serial}",
            yymmdd(made),
            yymmdd(expires)
        );
        let manufacturer = self.pick(MANUFACTURERS);
        let active = self.death.is_none() && expires > self.end;
        let d = obj! {
            "resourceType" => "Device",
            "id" => id.clone(),
            "udiCarrier" => json!([{"deviceIdentifier": di, "carrierHRF": hrf}]),
            "status" => if active { "active" } else { "inactive" },
            "manufacturer" => manufacturer,
            "manufactureDate" => dt(made),
            "expirationDate" => dt(expires),
            "lotNumber" => lot,
            "serialNumber" => serial,
            "deviceName" => json!([{"name": name, "type": "user-friendly-name"}]),
            "type" => cc(code),
            "patient" => reference(&self.pref)
        };
        self.push(Ty::Device, d);
        id
    }

    // ---- immunizations ----------------------------------------------------------------

    fn immunization(&mut self, e: Option<&Enc>, vaccine: &Code, t: i64) {
        let id = self.next_id(Ty::Immunization as usize);
        let mut m = Map::with_capacity(10);
        m.insert("resourceType".into(), "Immunization".into());
        m.insert("id".into(), id.into());
        m.insert("status".into(), "completed".into());
        m.insert("vaccineCode".into(), cc(vaccine));
        m.insert("patient".into(), self.subject());
        if let Some(e) = e {
            m.insert("encounter".into(), reference(&e.r));
        }
        m.insert("occurrenceDateTime".into(), dt(t).into());
        m.insert("primarySource".into(), e.is_some().into());
        if let Some(e) = e {
            m.insert("location".into(), self.ctx.location_ref(e.loc.0, e.loc.1));
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

    fn vaccines(&mut self, e: &Enc) {
        let t = e.start + 30 * MINUTE;
        let age_days = (t - self.birth) / DAY;
        let a = self.age(t);
        for (i, (due, vaccine)) in CHILD_SCHEDULE.iter().enumerate() {
            let given = self.last.child_vax & (1 << i) != 0;
            // Doses due within the past year are caught up; older ones were given before
            // the history we have.
            if !given && *due <= age_days + 14 && age_days - due < 365 {
                self.last.child_vax |= 1 << i;
                self.immunization(Some(e), vaccine, t);
            }
        }
        if a >= 19.0 {
            let td_due = match self.last.td {
                Some(l) => t - l > 10 * YEAR,
                None => self.chance(0.12),
            };
            if td_due {
                self.last.td = Some(t);
                self.immunization(Some(e), &VAX_TD, t);
            }
        }
        if a >= 50.0 && self.last.zoster == 0 && self.chance(0.3) {
            self.last.zoster = 1;
            self.last.zoster_at = t;
            self.immunization(Some(e), &VAX_ZOSTER, t);
        } else {
            self.zoster_second_dose(e);
        }
        if a >= 65.0 && !self.last.ppsv && self.chance(0.5) {
            self.last.ppsv = true;
            self.immunization(Some(e), &VAX_PPSV23, t);
        }
    }

    fn zoster_second_dose(&mut self, e: &Enc) {
        let t = e.start + 30 * MINUTE;
        if self.last.zoster == 1 && t - self.last.zoster_at > 60 * DAY && self.chance(0.8) {
            self.last.zoster = 2;
            self.immunization(Some(e), &VAX_ZOSTER, t);
        }
    }

    fn flu_shot(&mut self, e: &Enc) {
        let t = e.start + 30 * MINUTE;
        let month = month_of(t);
        if !(month >= 9 || month <= 3) || self.age(t) < 0.5 {
            return;
        }
        let season = year_of(t) - if month <= 3 { 1 } else { 0 };
        if self.last.flu_season == season {
            return;
        }
        let p = if self.age(t) >= 65.0 { 0.6 } else { 0.45 };
        if self.chance(p) {
            self.last.flu_season = season;
            self.immunization(Some(e), &VAX_FLU, t);
        }
    }

    /// COVID-19 vaccines, mostly given at pharmacies and mass-vaccination sites: recorded
    /// as reported (no encounter, `primarySource` false).
    fn covid_vaccines(&mut self) {
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

/// `Chronic` values by index, to iterate over them.
const CHRONIC_LIST: [Chronic; CHRONIC_COUNT] = [
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
