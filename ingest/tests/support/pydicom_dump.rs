//! pydicom's reading of the DICOM files it ships, for the tests that compare with it or
//! store those files: `tests/python/dicom_dump.py`, run with tests/.venv's python (which
//! the test command fills from tests/python/requirements.txt), lists pydicom's test and
//! character-set files and prints what pydicom reads from each.
//!
//! Shared by `ingest/tests/dicom_pydicom.rs` and `query/tests/dicom.rs` (`#[path]`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The repository's root. `CARGO_MANIFEST_DIR` at run time first: a shared build cache
/// can hold binaries compiled in another checkout.
fn repo_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// What `dicom_dump.py` prints (`{"files": [{"path": ..., ...}, ...]}`), or `None`, with
/// a loud message, when tests/.venv or pydicom is absent. Under CI (`CI` set) that is a
/// failure instead.
pub fn pydicom_dump() -> Option<Value> {
    let repo = repo_dir();
    let python = repo.join("tests/.venv/bin/python");
    let output = Command::new(&python)
        .arg(repo.join("tests/python/dicom_dump.py"))
        .output();
    let missing = match output {
        Ok(out) if out.status.success() => {
            return Some(serde_json::from_slice(&out.stdout).expect("dicom_dump.py prints JSON"));
        }
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("{}: {e}", python.display()),
    };
    let message = format!(
        "pydicom is not available ({missing}): run the test command (scripts/test), which \
         installs tests/python/requirements.txt into tests/.venv"
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n!!! SKIPPED: {message}\n");
    None
}
