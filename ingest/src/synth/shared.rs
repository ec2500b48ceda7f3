//! Organizations, Locations and Practitioners.
//!
//! Patients refer to these by index, so everything a reference needs (id, name, which
//! organization a practitioner works for, how many locations an organization has) is a
//! pure function of the index and the seed: nothing has to be remembered, and memory
//! stays flat however many providers there are.

use rand::Rng;
use serde_json::{Value, json};

use super::codes::{
    CITIES, CLINIC_SUFFIX, City, FAMILY, FEMALE_GIVEN, HOSPITAL_PREFIX, HOSPITAL_SUFFIX,
    MALE_GIVEN, STREET_SUFFIX, STREETS,
};
use super::fhir::{cc3, reference_display};
use super::ids::npi;
use super::{Ctx, GenerateError, SHARED_STREAM, Ty};

const HASH_ORG: u64 = 1;
const HASH_PRACTITIONER: u64 = 2;

impl Ctx {
    pub(super) fn org_is_hospital(&self, o: u64) -> bool {
        o % 5 == 0
    }

    /// Hospitals are organizations `0, 5, 10, ...`.
    pub(super) fn hospitals(&self) -> u64 {
        self.orgs.div_ceil(5)
    }

    /// Hospitals have a main building and an emergency department; a quarter of clinics
    /// have a second office.
    pub(super) fn org_locations(&self, o: u64) -> u64 {
        if self.org_is_hospital(o) || self.hash(HASH_ORG, o) % 4 == 0 {
            2
        } else {
            1
        }
    }

    pub(super) fn org_city(&self, o: u64) -> &'static City {
        &CITIES[(self.hash(HASH_ORG, o) >> 8) as usize % CITIES.len()]
    }

    pub(super) fn org_name(&self, o: u64) -> String {
        let h = self.hash(HASH_ORG, o) >> 20;
        let city = self.org_city(o).name;
        if self.org_is_hospital(o) {
            let suffix = HOSPITAL_SUFFIX[h as usize % HOSPITAL_SUFFIX.len()];
            if (h >> 8) % 2 == 0 {
                format!("{city} {suffix}")
            } else {
                format!(
                    "{} {suffix}",
                    HOSPITAL_PREFIX[(h >> 12) as usize % HOSPITAL_PREFIX.len()]
                )
            }
        } else {
            let suffix = CLINIC_SUFFIX[h as usize % CLINIC_SUFFIX.len()];
            if (h >> 8) % 3 == 0 {
                format!("{city} {suffix}")
            } else {
                let family = FAMILY[(h >> 12) as usize % FAMILY.len()];
                format!("{family} {suffix}")
            }
        }
    }

    pub(super) fn org_id(&self, o: u64) -> String {
        self.id(Ty::Organization, o)
    }

    pub(super) fn location_id(&self, o: u64, k: u64) -> String {
        self.id(Ty::Location, o * 2 + k)
    }

    pub(super) fn location_name(&self, o: u64, k: u64) -> String {
        let name = self.org_name(o);
        match (k, self.org_is_hospital(o)) {
            (0, _) => name,
            (_, true) => format!("{name} Emergency Department"),
            (_, false) => {
                let street = STREETS[(self.hash(HASH_ORG, o) >> 40) as usize % STREETS.len()];
                format!("{name} - {street} Street Office")
            }
        }
    }

    pub(super) fn org_ref(&self, o: u64) -> Value {
        reference_display(
            &format!("Organization/{}", self.org_id(o)),
            &self.org_name(o),
        )
    }

    pub(super) fn location_ref(&self, o: u64, k: u64) -> Value {
        reference_display(
            &format!("Location/{}", self.location_id(o, k)),
            &self.location_name(o, k),
        )
    }

    /// Practitioner `j` works for organization `j % orgs`; there are at least as many
    /// practitioners as organizations, so every organization has one.
    pub(super) fn practitioner_org(&self, j: u64) -> u64 {
        j % self.orgs
    }

    /// The `r`-th practitioner of organization `o`, `r` taken modulo their number.
    pub(super) fn practitioner_at(&self, o: u64, r: u64) -> u64 {
        let count = (self.practitioners - o).div_ceil(self.orgs);
        o + (r % count) * self.orgs
    }

    /// (male, given, family).
    pub(super) fn practitioner_name(&self, j: u64) -> (bool, &'static str, &'static str) {
        let h = self.hash(HASH_PRACTITIONER, j);
        let male = h & 1 == 0;
        let given = if male { MALE_GIVEN } else { FEMALE_GIVEN };
        (
            male,
            given[(h >> 8) as usize % given.len()],
            FAMILY[(h >> 24) as usize % FAMILY.len()],
        )
    }

    pub(super) fn practitioner_id(&self, j: u64) -> String {
        self.id(Ty::Practitioner, j)
    }

    pub(super) fn practitioner_ref(&self, j: u64) -> Value {
        let (_, given, family) = self.practitioner_name(j);
        reference_display(
            &format!("Practitioner/{}", self.practitioner_id(j)),
            &format!("Dr. {given} {family}"),
        )
    }
}

fn phone(rng: &mut impl Rng) -> String {
    // 555-01xx numbers are reserved for fiction; 555 with any line keeps them obviously fake.
    format!(
        "555-{:03}-{:04}",
        rng.random_range(200..1000),
        rng.random_range(0..10000)
    )
}

fn address(rng: &mut impl Rng, city: &City) -> Value {
    let line = format!(
        "{} {} {}",
        rng.random_range(1..9000),
        STREETS[rng.random_range(0..STREETS.len())],
        STREET_SUFFIX[rng.random_range(0..STREET_SUFFIX.len())]
    );
    json!({
        "use": "work",
        "line": [line],
        "city": city.name,
        "state": city.state,
        "postalCode": format!("{:03}{:02}", city.zip3, rng.random_range(1..100)),
        "country": "US"
    })
}

pub(super) fn generate(
    ctx: &Ctx,
    emit: &mut dyn FnMut(Ty, Value) -> Result<(), GenerateError>,
) -> Result<(), GenerateError> {
    for o in 0..ctx.orgs {
        let mut rng = ctx.rng(SHARED_STREAM | (1 << 48) | o);
        let city = ctx.org_city(o);
        let hospital = ctx.org_is_hospital(o);
        let (type_code, type_display) = ("prov", "Healthcare Provider");
        let addr = address(&mut rng, city);
        let org = json!({
            "resourceType": "Organization",
            "id": ctx.org_id(o),
            "identifier": [{
                "system": "http://hl7.org/fhir/sid/us-npi",
                "value": npi(200_000_000 + o)
            }],
            "active": true,
            "type": [cc3("http://terminology.hl7.org/CodeSystem/organization-type", type_code, type_display)],
            "name": ctx.org_name(o),
            "telecom": [{"system": "phone", "value": phone(&mut rng), "use": "work"}],
            "address": [addr.clone()]
        });
        emit(Ty::Organization, org)?;
        for k in 0..ctx.org_locations(o) {
            let (code, display) = match (hospital, k) {
                (true, 0) => ("HOSP", "Hospital"),
                (true, _) => ("ER", "Emergency room"),
                (false, _) => ("FMC", "Family Medicine Clinic"),
            };
            // The main location is at the organization's address; others nearby.
            let loc_addr = if k == 0 {
                addr.clone()
            } else {
                address(&mut rng, city)
            };
            let jitter = |rng: &mut rand_chacha::ChaCha8Rng| rng.random_range(-0.08..0.08f64);
            let lat = ((city.lat + jitter(&mut rng)) * 1e4).round() / 1e4;
            let lon = ((city.lon + jitter(&mut rng)) * 1e4).round() / 1e4;
            let loc = json!({
                "resourceType": "Location",
                "id": ctx.location_id(o, k),
                "status": "active",
                "name": ctx.location_name(o, k),
                "mode": "instance",
                "type": [cc3("http://terminology.hl7.org/CodeSystem/v3-RoleCode", code, display)],
                "telecom": [{"system": "phone", "value": phone(&mut rng), "use": "work"}],
                "address": loc_addr,
                "position": {"longitude": lon, "latitude": lat},
                "managingOrganization": ctx.org_ref(o)
            });
            emit(Ty::Location, loc)?;
        }
    }
    for j in 0..ctx.practitioners {
        let mut rng = ctx.rng(SHARED_STREAM | (2 << 48) | j);
        let (male, given, family) = ctx.practitioner_name(j);
        let o = ctx.practitioner_org(j);
        let email = format!(
            "{}.{}@provider.example.org",
            given.to_ascii_lowercase(),
            family.to_ascii_lowercase().replace('\'', "")
        );
        let prac = json!({
            "resourceType": "Practitioner",
            "id": ctx.practitioner_id(j),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi(100_000_000 + j)}],
            "active": true,
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
            "telecom": [
                {"system": "phone", "value": phone(&mut rng), "use": "work"},
                {"system": "email", "value": email, "use": "work"}
            ],
            "address": [address(&mut rng, ctx.org_city(o))],
            "gender": if male { "male" } else { "female" },
            "qualification": [{
                "code": cc3("http://terminology.hl7.org/CodeSystem/v2-0360", "MD", "Doctor of Medicine")
            }]
        });
        emit(Ty::Practitioner, prac)?;
    }
    Ok(())
}
