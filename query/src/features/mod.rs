//! Point-in-time feature extraction for machine learning: `medlake features` and
//! `POST /features`.
//!
//! A [`FeatureSpec`] (TOML or JSON) names a cohort (a SQL query or a FHIR search of
//! Patients), an index time per patient (fixed, or a column of the cohort query), the
//! features (demographics; per LOINC code the last, min, max, mean and count of numeric
//! Observation values, their own or a component's, over lookback windows; Condition
//! flags from SNOMED CT code sets with their descendants; counts of MedicationRequests
//! and Encounters), a label and a train/test split. [`extract`] answers one row per cohort row: `patient_id`,
//! `index_time`, the features under stable names (`age`, `gender`,
//! `obs_<name>_<stat>_<window>`, `cond_<name>`, `med_count_<window>`,
//! `enc_count_<window>`, `enc_<class>_count_<window>`), `label` and `split`.
//!
//! # Point in time
//!
//! A feature must see only what was known at the index time, or a model learns from
//! facts it will not have when it is used. Two clocks decide what was known:
//!
//! - **Record time.** Every version of every resource is in `fhir_history.<type>` with
//!   its `last_updated` (the server's `meta.lastUpdated`, stamped when it was written).
//!   Per cohort row and resource, the extraction takes the newest version with
//!   `last_updated <= index_time`, drops it if it is a delete or its subject is not the
//!   patient, and ignores every later version. So a correction written after the index
//!   time does not change the value a feature sees, and a record entered after the index
//!   time with a back-dated clinical date does not count at all.
//! - **Clinical time.** Of those versions, a fact counts only if its clinical time
//!   (Observation `effective[x]`, else `issued`; Condition `onset[x]`, else
//!   `recordedDate`; MedicationRequest `authoredOn`; Encounter `period.start`) is at or
//!   before the index time and, for windowed features, after `index_time - window`.
//!   A fact without a clinical time is not counted. Records marked `entered-in-error`
//!   (or `cancelled`; `refuted` Conditions) are left out.
//!
//! `point_in_time = "clinical"` gives up the record-time rule and reads the current
//! versions (`fhir.<type>`), filtered by clinical time only. It is for a lake whose
//! history was loaded in one go (a migration, generated data): there `last_updated` is
//! the load time of everything, and the record-time rule would rightly see nothing
//! before it. It does leak later corrections and late entries; the answer says which
//! mode made it only through the spec that asked.
//!
//! **Labels look forward** over `(index_time, index_time + within]` and read the
//! current versions, the data as known now: a label is the outcome that did happen,
//! including what was recorded late, and is never an input at prediction time. A
//! condition label fires on an onset in the window (an incident diagnosis); patients
//! who had it before are not excluded by the extraction (filter them in the cohort).
//!
//! # Split
//!
//! `split` is `train` or `test` by patient, from a 64-bit FNV-1a hash of the seed and the
//! patient id (finished with MurmurHash3's `fmix64`), so every row of a patient falls on
//! the same side, the same seed gives the same split on any machine and any data, and
//! another seed another split. The hash and its use must not change between releases.
//!
//! # Why generated SQL
//!
//! The extraction is one SQL query over the lake's own tables, planned and run by the
//! same engine as `/sql` ([`sql`] says how it is shaped): it scales with DataFusion's
//! operators rather than with code here, and it can be printed and read
//! (`medlake features --print-sql`). No crate extracts point-in-time features from FHIR
//! versions; feature stores (Feast and the like) join on event timestamps of their own
//! tables and know nothing of FHIR's versions or code systems. Four small SQL functions
//! do what the JSON functions cannot ([`udf`]).

mod spec;
mod sql;
mod udf;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use medlake_lake::Lake;

pub use spec::{
    CodeSets, Cohort, ConditionFeature, Counts, Demographic, EncounterCounts, FeatureSpec, Label,
    LabelCondition, ObservationFeature, PointInTime, Split, Stat,
};
pub use udf::parse_fhir_instant;

use crate::engine::{QueryEngine, QueryError};
use crate::search::{Search, SearchError, matching_ids};

/// Why an extraction cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The spec is wrong; the message says what to change.
    #[error("{0}")]
    Spec(String),
    /// Something the spec asks for that is not built.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The cohort or code-set query, or the extraction's own plan.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The cohort search.
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// Where an extraction may read files from: the CLI's spec folder, or nowhere (a server
/// does not read its own disk on a client's behalf).
#[derive(Debug, Clone, Copy)]
pub enum Files<'a> {
    RelativeTo(&'a Path),
    Refused,
}

/// The generated SQL of a spec, for `--print-sql` and tests.
pub async fn plan_sql(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &FeatureSpec,
    files: Files<'_>,
) -> Result<String, FeatureError> {
    let resolved = resolve(engine, lake, spec, files).await?;
    Ok(sql::build(spec, &resolved))
}

/// Run an extraction: its rows, streamed from the query runtime, sorted by patient and
/// index time, with the `split` column last.
pub async fn extract(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &FeatureSpec,
    files: Files<'_>,
) -> Result<SendableRecordBatchStream, FeatureError> {
    let resolved = resolve(engine, lake, spec, files).await?;
    let text = sql::build(spec, &resolved);
    tracing::debug!(sql = %text, "feature extraction");
    let session = engine.session()?;
    for f in udf::functions() {
        session.register_udf(f);
    }
    let df = engine
        .run(async move { session.sql(&text).await })
        .await?
        .map_err(QueryError::DataFusion)?;
    let stream = engine.stream(df, None).await?;
    let mut fields: Vec<Arc<Field>> = stream.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("split", DataType::Utf8, false)));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let (fraction, seed) = (spec.split.test_fraction, spec.split.seed);
    let out = schema.clone();
    let mapped = stream.map(move |batch| -> datafusion::error::Result<RecordBatch> {
        let batch = batch?;
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let mut split = StringBuilder::with_capacity(ids.len(), ids.len() * 5);
        for i in 0..ids.len() {
            split.append_value(split_of(ids.value(i), seed, fraction));
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(split.finish()));
        Ok(RecordBatch::try_new(out.clone(), columns)?)
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
}

/// `train` or `test` for a patient: FNV-1a 64 of the seed (little-endian) and the id,
/// finished with MurmurHash3's `fmix64`, its top 53 bits as a fraction of 1.
pub fn split_of(patient_id: &str, seed: u64, test_fraction: f64) -> &'static str {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(patient_id.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV-1a alone leaves its top bits poorly mixed by the last bytes, and ids often
    // differ only there (a test found 390 of 2,000 sequential ids in a 25% test
    // side): MurmurHash3's 64-bit finaliser spreads them.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b3fe_1a85_ec53);
    h ^= h >> 33;
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < test_fraction { "test" } else { "train" }
}

async fn resolve(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &FeatureSpec,
    files: Files<'_>,
) -> Result<sql::Resolved, FeatureError> {
    spec.check()?;
    let cohort = cohort_sql(engine, lake, spec).await?;
    let needs_hierarchy = spec.conditions.iter().any(|c| c.descendants)
        || spec
            .label
            .as_ref()
            .and_then(|l| l.condition.as_ref())
            .is_some_and(|c| c.descendants);
    let children = match (&spec.code_sets, needs_hierarchy) {
        (Some(cs), true) => hierarchy(engine, cs, files).await?,
        _ => HashMap::new(),
    };
    let expand = |codes: &[String], descendants: bool| -> Vec<String> {
        let mut out: BTreeSet<String> = codes.iter().cloned().collect();
        if descendants {
            let mut todo: Vec<String> = codes.to_vec();
            while let Some(c) = todo.pop() {
                for d in children.get(&c).into_iter().flatten() {
                    if out.insert(d.clone()) {
                        todo.push(d.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    };
    let condition_codes = spec
        .conditions
        .iter()
        .map(|c| expand(&c.snomed, c.descendants))
        .collect();
    let label_codes = spec
        .label
        .as_ref()
        .and_then(|l| l.condition.as_ref())
        .map(|c| expand(&c.snomed, c.descendants));
    let tables: HashSet<String> = lake
        .resource_types()
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    Ok(sql::Resolved {
        cohort,
        condition_codes,
        label_codes,
        tables,
    })
}

/// The cohort as a query of `patient_id` (text) and `index_time` (UTC timestamp).
async fn cohort_sql(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &FeatureSpec,
) -> Result<String, FeatureError> {
    let c = &spec.cohort;
    let fixed = c
        .index_time
        .as_deref()
        .map(|t| format!("fhir_instant({})", sql::literal(t)));
    if let Some(query) = &c.sql {
        let query = query.trim().trim_end_matches(';');
        // Planned alone first: a write is refused as such, and a missing column is
        // named here rather than deep in the generated query.
        let df = engine.plan(query).await?;
        let schema = df.schema();
        let has = |name: &str| schema.fields().iter().any(|f| f.name() == name);
        if !has("patient_id") {
            return Err(FeatureError::Spec(format!(
                "cohort.sql must return a column named patient_id (it returns {}): \
                 e.g. SELECT id AS patient_id FROM fhir.patient",
                column_list(schema.fields().iter().map(|f| f.name().as_str()))
            )));
        }
        let index = match (&fixed, &c.index_time_column) {
            (Some(f), _) => f.clone(),
            (None, Some(col)) => {
                if !has(col.as_str()) {
                    return Err(FeatureError::Spec(format!(
                        "cohort.index_time_column is {col:?}, but cohort.sql returns {}",
                        column_list(schema.fields().iter().map(|f| f.name().as_str()))
                    )));
                }
                format!("fhir_instant(q.\"{col}\")")
            }
            (None, None) => unreachable_index(),
        };
        return Ok(format!(
            "SELECT CAST(q.patient_id AS VARCHAR) AS patient_id, {index} AS index_time \
             FROM ({query}) q"
        ));
    }
    let search = c.search.as_deref().unwrap_or("");
    let query = search.split_once('?').map_or("", |(_, q)| q);
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (k, _) in &pairs {
        if matches!(
            k.as_str(),
            "_count" | "_sort" | "_include" | "_revinclude" | "_total" | "_elements" | "_summary"
        ) {
            return Err(FeatureError::Spec(format!(
                "cohort.search: {k} does not apply to a cohort (every match is in it): \
                 leave it out"
            )));
        }
    }
    let parsed = Search::parse(vec!["Patient".to_string()], &pairs, true)?;
    let ids = matching_ids(lake, &parsed, "").await?;
    tracing::info!(patients = ids.len(), "feature cohort from {search}");
    let index = fixed.unwrap_or_else(unreachable_index);
    if ids.is_empty() {
        return Ok(format!(
            "SELECT CAST(NULL AS VARCHAR) AS patient_id, {index} AS index_time WHERE false"
        ));
    }
    let values: Vec<String> = ids
        .iter()
        .map(|(_, id)| format!("({})", sql::literal(id)))
        .collect();
    Ok(format!(
        "SELECT CAST(column1 AS VARCHAR) AS patient_id, {index} AS index_time \
         FROM (VALUES {}) v",
        values.join(", ")
    ))
}

/// `check` makes sure one of the two index times is given.
fn unreachable_index() -> String {
    "CAST(NULL AS TIMESTAMP)".to_string()
}

fn column_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "no columns".into()
    } else {
        v.join(", ")
    }
}

/// The children of each code, from the spec's `ancestor, descendant` pairs.
async fn hierarchy(
    engine: &QueryEngine,
    cs: &CodeSets,
    files: Files<'_>,
) -> Result<HashMap<String, Vec<String>>, FeatureError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(p) = &cs.pairs {
        pairs.extend(p.iter().cloned());
    }
    if let Some(file) = &cs.csv {
        let Files::RelativeTo(dir) = files else {
            return Err(FeatureError::Spec(
                "code_sets.csv names a file, which only `medlake features` reads; over HTTP \
                 send the pairs inline (code_sets.pairs) or a query (code_sets.sql)"
                    .into(),
            ));
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            FeatureError::Spec(format!(
                "code_sets.csv: could not read {}: {e}",
                path.display()
            ))
        })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let (Some(a), Some(d)) = (
            header.iter().position(|h| h == "ancestor"),
            header.iter().position(|h| h == "descendant"),
        ) else {
            return Err(FeatureError::Spec(format!(
                "code_sets.csv: {} needs a header line with the columns ancestor and descendant",
                path.display()
            )));
        };
        for line in lines {
            let cells: Vec<&str> = line
                .split(',')
                .map(|c| c.trim().trim_matches('"'))
                .collect();
            if let (Some(x), Some(y)) = (cells.get(a), cells.get(d)) {
                pairs.push((x.to_string(), y.to_string()));
            }
        }
    }
    if let Some(query) = &cs.sql {
        let answer = engine.query(query.trim().trim_end_matches(';')).await?;
        let find = |name: &str| answer.schema.index_of(name).ok();
        let (Some(a), Some(d)) = (find("ancestor"), find("descendant")) else {
            return Err(FeatureError::Spec(format!(
                "code_sets.sql must return the columns ancestor and descendant (it returns {})",
                column_list(answer.schema.fields().iter().map(|f| f.name().as_str()))
            )));
        };
        for b in &answer.batches {
            let x = cast(b.column(a), &DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)
                .map_err(QueryError::from)?;
            let y = cast(b.column(d), &DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)
                .map_err(QueryError::from)?;
            let (x, y) = (x.as_string::<i32>(), y.as_string::<i32>());
            for i in 0..b.num_rows() {
                if !x.is_null(i) && !y.is_null(i) {
                    pairs.push((x.value(i).to_string(), y.value(i).to_string()));
                }
            }
        }
    }
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for (a, d) in pairs {
        if a != d {
            children.entry(a).or_default().push(d);
        }
    }
    Ok(children)
}

#[cfg(test)]
mod tests;
