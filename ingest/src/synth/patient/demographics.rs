//! Who the patient is: sex, age, death, smoking and home clinic, then the Patient resource
//! with names, address, contacts and identifiers.
//!
//! Everything else in the history depends on these draws, so `demographics` runs first.
//! The Patient resource's own draws (names, address, contacts) come later, after the
//! conditions and physiology: they depend on nothing else, but moving them would change
//! every patient's data for a given seed.

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::synth::codes::*;
use crate::synth::fhir::*;

use super::PatientGenerator;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Smoking {
    Never,
    Former,
    Current,
}

impl PatientGenerator<'_> {
    pub(super) fn demographics(&mut self) {
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

    pub(super) fn patient_resource(&mut self) -> Value {
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
}
