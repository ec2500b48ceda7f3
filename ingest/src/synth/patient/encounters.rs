//! One encounter: where it takes place (clinic or hospital, which practitioner), what it
//! finds and records (by its kind, in `visits`), and its Encounter resource.
//!
//! The Encounter is written last, when its end and reasons are known, but into the slot
//! reserved before the visit's resources, so that it precedes them in the output.

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::conditions::CHRONIC_LIST;
use super::schedule::VisitKind;
use super::{Encounter, MINUTE, PatientGenerator};

impl PatientGenerator<'_> {
    /// One visit of `kind` on `day`, with everything recorded during it.
    pub(super) fn encounter(&mut self, day: i64, kind: VisitKind) {
        let ctx = self.ctx;
        let a = self.age(day);
        // Where: the setting follows from the reason for the visit.
        let mut acute: Option<&'static AcuteDef> = None;
        let mut emergency = false;
        if kind == VisitKind::Acute {
            let def = self.pick_acute(day);
            emergency = self.chance(def.emergency);
            acute = Some(def);
        }
        let hospital_setting = emergency
            || matches!(
                kind,
                VisitKind::Inpatient | VisitKind::Mammogram | VisitKind::Colonoscopy
            );
        let (practitioner, org, location) = if hospital_setting {
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
            VisitKind::Inpatient => day,
            VisitKind::Acute if emergency => self.any_time(day),
            VisitKind::Acute => self.clinic_time(day),
            _ => day,
        };
        let (class, class_display, type_code) = match kind {
            VisitKind::Wellness if a < 18.0 => ("AMB", "ambulatory", ENC_WELL_CHILD),
            VisitKind::Wellness => ("AMB", "ambulatory", ENC_GENERAL_EXAM),
            VisitKind::FollowUp => ("AMB", "ambulatory", ENC_FOLLOW_UP),
            VisitKind::Acute if emergency => ("EMER", "emergency", ENC_EMERGENCY),
            VisitKind::Acute => ("AMB", "ambulatory", ENC_SYMPTOM),
            VisitKind::Inpatient => ("IMP", "inpatient encounter", ENC_ADMISSION),
            VisitKind::Colonoscopy | VisitKind::Mammogram => ("AMB", "ambulatory", ENC_CHECK_UP),
        };

        let enc_id = self.next_id(Ty::Encounter as usize);
        let slot = self.out.len();
        self.out.push((Ty::Encounter, Value::Null));
        let mut e = Encounter {
            reference: format!("Encounter/{enc_id}"),
            start,
            end: start,
            practitioner,
            org,
            location,
        };
        let mut reasons: Vec<String> = Vec::new();

        // Chronic conditions begun since the last visit are found now.
        if !matches!(kind, VisitKind::Colonoscopy | VisitKind::Mammogram) {
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
            VisitKind::Wellness => {
                e.end = start + self.int(20, 45) * MINUTE;
                self.wellness(&e);
            }
            VisitKind::FollowUp => {
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
            VisitKind::Acute => {
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
            VisitKind::Inpatient => {
                self.inpatient(&mut e, &mut reasons);
            }
            VisitKind::Colonoscopy => {
                e.end = start + self.int(60, 120) * MINUTE;
                self.colonoscopy(&e);
            }
            VisitKind::Mammogram => {
                e.end = start + self.int(20, 40) * MINUTE;
                self.mammogram(&e);
            }
        }
        self.at_any_visit(&e, kind, emergency);

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
        if kind == VisitKind::Inpatient || emergency {
            let (src, src_display) = ("emd", "From accident/emergency department");
            let (disp, disp_display) = if self.death.is_some_and(|d| d <= e.end + DAY) {
                ("exp", "Expired")
            } else {
                ("home", "Home")
            };
            let mut h = Map::with_capacity(2);
            if kind == VisitKind::Inpatient {
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
            json!([{"location": ctx.location_ref(e.location.0, e.location.1), "status": "completed", "period": {"start": dt(e.start), "end": dt(e.end)}}]),
        );
        enc.insert("serviceProvider".into(), ctx.org_ref(e.org));
        self.out[slot].1 = Value::Object(enc);
    }
}
