//! Devices given to or implanted in the patient (glucose meter, CPAP, pacemaker, cane,
//! hearing aid), with UDI carriers.
//!
//! `DevicesGiven` remembers the aids handed out at well visits (cane, hearing aid), so
//! that later visits do not hand them out again; the devices a diagnosis brings come once,
//! with the diagnosis.

use serde_json::json;

use crate::synth::Ty;
use crate::synth::codes::*;
use crate::synth::fhir::obj;
use crate::synth::fhir::*;

use super::Encounter;
use super::{HOUR, MINUTE, PatientGenerator};

/// Devices given once and kept.
#[derive(Default)]
pub(super) struct DevicesGiven {
    pub(super) cane: bool,
    pub(super) hearing_aid: bool,
}

impl PatientGenerator<'_> {
    /// A device given to the patient at `t`; returns its id.
    pub(super) fn device(&mut self, code: &Code, t: i64, name: &str) -> String {
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

    /// A pacemaker implanted for `c`: the Device, and the Procedure that implants it.
    pub(super) fn pacemaker(&mut self, e: &Encounter, c: Chronic) {
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
}
