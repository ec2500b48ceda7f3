//! Imaging: ImagingStudy resources with DICOM series and instances, and the radiology
//! DiagnosticReport that reads them.
//!
//! A study and its report are made together because the report refers to the study and
//! its conclusion depends on why it was done. The Procedure that acquired the images is
//! recorded by the caller (see `chest_xray`), since not every caller wants one.

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::obj;
use crate::synth::fhir::*;
use crate::synth::ids::{KIND_INSTANCE, KIND_SERIES, KIND_STUDY_UID};

use super::Encounter;
use super::{HOUR, MINUTE, PatientGenerator};

impl PatientGenerator<'_> {
    pub(super) fn chest_xray(&mut self, e: &Encounter, t: i64, reason: Option<&str>) {
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
    pub(super) fn imaging(
        &mut self,
        e: &Encounter,
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
        m.insert("encounter".into(), reference(&e.reference));
        m.insert("started".into(), dt(t).into());
        m.insert("referrer".into(), self.ctx.practitioner_ref(e.practitioner));
        m.insert("numberOfSeries".into(), series_n.into());
        m.insert("numberOfInstances".into(), total.into());
        m.insert("procedureCode".into(), json!([cc(procedure)]));
        m.insert(
            "location".into(),
            self.ctx.location_ref(e.location.0, e.location.1),
        );
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
                "encounter" => reference(&e.reference),
                "effectiveDateTime" => dt(t),
                "issued" => dt(t + self.int(1, 6) * HOUR),
                "performer" => [self.ctx.practitioner_ref(radiologist)],
                "imagingStudy" => [reference(format!("ImagingStudy/{id}"))],
                "conclusion" => conclusion
            };
            self.push(Ty::DiagnosticReport, r);
        }
    }
}
