//! A fingerprint of the generator's output, for refactorings that must not change it.
//!
//! Not a golden test: nothing here is compared against a stored value, because most
//! changes to the generator rightly change its output. It is a tool. Before a change
//! that must keep the output byte-identical (moving code between domain modules,
//! renaming), run
//!
//! ```text
//! SYNTH_FINGERPRINT_DIR=/tmp/before cargo nextest run -p medlake-ingest \
//!     --run-ignored only -E 'test(synth_output_fingerprint)' --no-capture
//! ```
//!
//! and again afterwards with another directory; the printed hashes (and `diff -r` of
//! the two directories) must agree. Several seeds and a larger population reach the
//! rare branches (pacemakers, deaths, admissions) that a handful of patients miss.

use std::path::PathBuf;

use super::*;

/// FNV-1a, 64 bits: dependency-free and plenty to detect an accidental change.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[test]
#[ignore = "a tool for refactorings, run on demand (see the module doc)"]
fn synth_output_fingerprint() {
    let root = std::env::var_os("SYNTH_FINGERPRINT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("medlake-synth-fingerprint"));
    let mut all = 0xCBF2_9CE4_8422_2325u64;
    for (patients, seed) in [(60, 42), (1000, 20260101), (7, 0)] {
        let out = root.join(format!("{patients}-{seed}"));
        let manifest = generate_to_dir(&GenerateConfig { patients, seed }, &out, &mut |_| {})
            .expect("generate");
        let mut h = 0xCBF2_9CE4_8422_2325u64;
        for ty in TYPES {
            let body = std::fs::read(out.join(format!("{}.ndjson", ty.name()))).unwrap();
            h = fnv1a(&body, h);
        }
        all = fnv1a(&h.to_le_bytes(), all);
        println!(
            "synth fingerprint: {patients} patients, seed {seed}: {h:016x} ({} resources) in {}",
            manifest.total,
            out.display()
        );
    }
    println!("synth fingerprint: all {all:016x}");
}
