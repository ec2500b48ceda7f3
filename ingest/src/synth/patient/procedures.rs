//! Procedure resources. Which procedures a visit brings is decided by the visit
//! (`visits`), a diagnosis (`conditions`) or an imaging study; this module only builds
//! them, the same way for all.

use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::Encounter;
use super::PatientGenerator;

impl PatientGenerator<'_> {
    pub(super) fn procedure(
        &mut self,
        e: &Encounter,
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
        p.insert("encounter".into(), reference(&e.reference));
        p.insert(
            "performedPeriod".into(),
            json!({"start": dt(start), "end": dt(end)}),
        );
        p.insert(
            "performer".into(),
            json!([{"actor": self.ctx.practitioner_ref(e.practitioner)}]),
        );
        p.insert(
            "location".into(),
            self.ctx.location_ref(e.location.0, e.location.1),
        );
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
}
