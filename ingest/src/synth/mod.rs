//! Deterministic synthetic FHIR R4 (4.0.1) data: `medlake generate`.
//!
//! # Why hand-written
//!
//! Synthea, the usual source of synthetic FHIR, is a Java application: it cannot be
//! embedded in a Rust binary, needs a JVM at demo and benchmark time, and takes minutes
//! for what benchmarks need in seconds. This generator is small, dependency-free beyond
//! `rand_chacha`, fast (hundreds of thousands of resources per second on one core) and
//! byte-for-byte reproducible, which tests and benchmarks rely on.
//!
//! # What it makes
//!
//! Shared resources first: Organizations (about 1 per 50 patients; every fifth is a
//! hospital with an emergency department), their Locations, and Practitioners (about 1
//! per 10 patients). Then, per patient: the Patient and a clinical history of a few to
//! ten years ending at a fixed "now" (2026-01-01) or at death. Chronic conditions are
//! drawn from age- and sex-specific prevalences and drive follow-up visits, labs,
//! medications, admissions and devices (diabetes: metformin, A1c, glucose meter); well
//! visits follow the pediatric schedule and yearly adult checkups with vital signs,
//! panels and vaccines; acute problems bring clinic or emergency visits, sometimes
//! imaging. Lab values follow each patient's physiology and conditions, with LOINC
//! codes, UCUM units, reference ranges and interpretations.
//!
//! # Determinism
//!
//! Patient `i` is generated from ChaCha8 stream `i` of a key derived from the seed, so
//! it does not depend on other patients, on threads or on the number of patients
//! (except for which shared provider it is assigned). Ids are keyed bijections of
//! sequence numbers (`ids.rs`), unique by construction. No clock, no hash-map iteration.
//! `fingerprint.rs` checks that a refactoring keeps the output byte-identical.
//!
//! # Clinical domains
//!
//! The per-patient model lives in `patient/`, one module per clinical domain; its module
//! doc says how to add one (imaging, device readings, ...).
//!
//! # Streaming
//!
//! Each patient's resources are built in memory (a few hundred) and written out before
//! the next patient starts; shared resources are derived from their index, never kept.
//! Memory does not grow with the number of patients.

mod codes;
mod fhir;
#[cfg(test)]
mod fingerprint;
mod ids;
mod patient;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use ids::{Ids, mix64};

/// What to generate.
pub struct GenerateConfig {
    pub patients: u64,
    pub seed: u64,
}

/// Counts of generated resources per type, ordered by type name.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Manifest {
    pub patients: u64,
    pub seed: u64,
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("could not write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The generated resource types, in name order (the order of the manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Ty {
    Condition,
    Device,
    DiagnosticReport,
    Encounter,
    ImagingStudy,
    Immunization,
    Location,
    MedicationRequest,
    Observation,
    Organization,
    Patient,
    Practitioner,
    Procedure,
}

pub(crate) const TYPES: [Ty; 13] = [
    Ty::Condition,
    Ty::Device,
    Ty::DiagnosticReport,
    Ty::Encounter,
    Ty::ImagingStudy,
    Ty::Immunization,
    Ty::Location,
    Ty::MedicationRequest,
    Ty::Observation,
    Ty::Organization,
    Ty::Patient,
    Ty::Practitioner,
    Ty::Procedure,
];

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Condition => "Condition",
            Ty::Device => "Device",
            Ty::DiagnosticReport => "DiagnosticReport",
            Ty::Encounter => "Encounter",
            Ty::ImagingStudy => "ImagingStudy",
            Ty::Immunization => "Immunization",
            Ty::Location => "Location",
            Ty::MedicationRequest => "MedicationRequest",
            Ty::Observation => "Observation",
            Ty::Organization => "Organization",
            Ty::Patient => "Patient",
            Ty::Practitioner => "Practitioner",
            Ty::Procedure => "Procedure",
        }
    }
}

/// Everything derived from the configuration that patients share.
pub(crate) struct Ctx {
    seed: u64,
    key: [u8; 32],
    ids: Ids,
    orgs: u64,
    practitioners: u64,
}

/// Stream numbers with the top bit set belong to shared resources; patients use the rest.
const SHARED_STREAM: u64 = 1 << 63;

impl Ctx {
    fn new(config: &GenerateConfig) -> Ctx {
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&mix64(config.seed ^ mix64(i as u64 + 0x5EED)).to_le_bytes());
        }
        let orgs = ((config.patients + 25) / 50).max(1);
        let practitioners = ((config.patients + 5) / 10).max(orgs);
        Ctx {
            seed: config.seed,
            key,
            ids: Ids::new(config.seed),
            orgs,
            practitioners,
        }
    }

    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(stream);
        rng
    }

    /// A cheap deterministic hash for attributes of shared resources that patients
    /// need to know (names, cities) without generating the resource.
    fn hash(&self, a: u64, b: u64) -> u64 {
        mix64(mix64(self.seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ b)
    }

    fn id(&self, ty: Ty, n: u64) -> String {
        self.ids.uuid(ty as usize, n)
    }
}

/// Runs the generator, handing every resource to `sink` in output order.
fn run(
    config: &GenerateConfig,
    sink: &mut dyn FnMut(Ty, Value) -> Result<(), GenerateError>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, GenerateError> {
    let ctx = Ctx::new(config);
    let mut counts = [0u64; 13];
    let mut emit = |ty: Ty, v: Value| {
        counts[ty as usize] += 1;
        sink(ty, v)
    };
    shared::generate(&ctx, &mut emit)?;
    let mut buf = Vec::with_capacity(1024);
    for i in 0..config.patients {
        patient::generate(&ctx, i, &mut buf);
        for (ty, v) in buf.drain(..) {
            emit(ty, v)?;
        }
        progress(i + 1);
    }
    let counts: BTreeMap<String, u64> = TYPES
        .iter()
        .map(|t| (t.name().to_string(), counts[*t as usize]))
        .collect();
    Ok(Manifest {
        patients: config.patients,
        seed: config.seed,
        total: counts.values().sum(),
        counts,
    })
}

/// Generate into `out`: one file per resource type named `<Type>.ndjson` (one compact
/// JSON resource per line), plus `manifest.json` (the Manifest, pretty JSON). Creates
/// `out` if needed. `progress(patients_done)` is called after each patient. Streams:
/// memory does not grow with the number of patients.
pub fn generate_to_dir(
    config: &GenerateConfig,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, GenerateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    // Every type gets a file, even an empty one, so a previous run's file of a type
    // this run did not produce cannot be mistaken for part of this data set.
    let paths: Vec<PathBuf> = TYPES
        .iter()
        .map(|t| out.join(format!("{}.ndjson", t.name())))
        .collect();
    let mut writers = Vec::with_capacity(TYPES.len());
    for p in &paths {
        let f = File::create(p).map_err(io(p))?;
        writers.push(BufWriter::with_capacity(256 * 1024, f));
    }
    let manifest = run(
        config,
        &mut |ty, v| {
            let w = &mut writers[ty as usize];
            serde_json::to_writer(&mut *w, &v)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(io(&paths[ty as usize]))
        },
        progress,
    )?;
    for (w, p) in writers.iter_mut().zip(&paths) {
        w.flush().map_err(io(p))?;
    }
    let mpath = out.join("manifest.json");
    let mut text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    text.push(b'\n');
    std::fs::write(&mpath, text).map_err(io(&mpath))?;
    Ok(manifest)
}

/// Generate in memory, calling `emit(resource_type, resource)` for every resource in
/// output order (shared resources, then each patient's).
pub fn generate(config: &GenerateConfig, emit: &mut dyn FnMut(&str, Value)) -> Manifest {
    let result = run(
        config,
        &mut |ty, v| {
            emit(ty.name(), v);
            Ok(())
        },
        &mut |_| {},
    );
    match result {
        Ok(m) => m,
        Err(e) => unreachable!("an in-memory sink does not fail: {e}"),
    }
}
