//! medlake's query layer: DataFusion over the lake.
//!
//! - [`provider`]: `fhir_history.<type>`, the union of a Delta snapshot and the tail.
//! - [`catalog`]: the `fhir`, `fhir_history` and `medlake` schemas.
//! - [`current`]: `fhir.<type>`, the current versions, a scan that skips replaced rows.
//! - [`time_travel`]: `fhir_as_of(type, time | delta_version)`.
//! - [`kind_table`]: the tables of the lake's other kinds, one schema per namespace.
//! - [`features`]: point-in-time feature extraction for machine learning (a spec to
//!   one row per patient: features, label, train/test split).
//! - [`engine`]: [`QueryEngine`], read-only SQL with the JSON functions.
//! - [`mixed_distinct`]: the optimizer rule that computes `count(DISTINCT d)` beside
//!   `count(*)`, `avg` and the like as two group-bys.
//! - [`cpu`]: the runtime that query plans run on, apart from the request threads.
//! - [`search`]: FHIR search on the lake's search index.
//! - [`view_batch`]: the rows of a SQL-on-FHIR view as an Arrow batch (the lake's
//!   module, re-exported: materialized views are built in the lake's flush).
//! - [`view_run`]: a SQL-on-FHIR view over the lake's current resources (streamed) or
//!   over resources in memory, with the filters of `$viewdefinition-run`.
//! - [`views`]: `views.<name>`, the materialized views, current rows only.

pub mod catalog;
pub mod cpu;
pub mod current;
pub mod engine;
pub mod features;
pub mod kind_table;
pub mod mixed_distinct;
pub mod provider;
pub mod search;
pub mod time_travel;
pub mod view_run;
pub mod views;

pub use medlake_lake::view_batch;

pub use engine::{CATALOG, QueryEngine, QueryError, QueryOutput};
