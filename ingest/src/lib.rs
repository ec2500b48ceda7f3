//! Understanding medlake's inputs, with no storage.
//!
//! - [`dicom`]: DICOM Part 10 files, understood from their header (indexed attributes, DICOM JSON).
//! - [`issue`]: FHIR-style problems (`OperationOutcome.issue`).
//! - [`source`]: reading NDJSON, Bundles and single resources from files, streamed.
//! - [`validate`]: structural checks of FHIR R4 resources against the vendored R4 definitions.
//! - [`prepare`]: parse and validate one record.
//! - [`search`]: the R4 search parameters, and the values a resource is found by.
//! - [`synth`]: deterministic synthetic FHIR R4 data for demos, tests and benchmarks.
//! - [`view`]: SQL-on-FHIR v2 ViewDefinitions, evaluated on one resource at a time.

pub mod dicom;
pub mod fhirpath;
pub mod issue;
pub mod prepare;
pub mod search;
pub mod source;
pub mod synth;
pub mod validate;
pub mod view;

pub use issue::{Issue, Severity, operation_outcome};
