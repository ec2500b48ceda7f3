//! Medications: MedicationRequests, and the patient's current chronic prescriptions.
//!
//! Chronic medications are remembered (`MedState`) because they outlive the visit that
//! started them: they are renewed yearly, and other domains ask whether the patient is on
//! one (a statin lowers cholesterol, warfarin calls for INR tests). Acute prescriptions
//! are written and forgotten.

use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::{MINUTE, PatientGenerator};

/// A chronic medication the patient is on.
pub(super) struct MedState {
    med: &'static Med,
    /// The condition it treats.
    reason: Chronic,
    last_ordered: i64,
}

impl PatientGenerator<'_> {
    pub(super) fn on_med(&self, m: &Med, t: i64) -> bool {
        self.meds
            .iter()
            .any(|s| s.med.code.code == m.code.code && s.last_ordered <= t)
    }

    pub(super) fn on_any_med(&self) -> bool {
        !self.meds.is_empty()
    }

    pub(super) fn start_med(&mut self, e: &Encounter, med: &'static Med, reason: Chronic, t: i64) {
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
    pub(super) fn renew_meds(&mut self, e: &Encounter) {
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

    pub(super) fn med_request(
        &mut self,
        e: &Encounter,
        med: &Med,
        t: i64,
        reason: Option<&str>,
        chronic: bool,
    ) {
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
        m.insert("encounter".into(), reference(&e.reference));
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
}
