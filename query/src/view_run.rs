//! Running a SQL-on-FHIR view over the lake's current resources, or over resources
//! given inline, with the filters of the `$viewdefinition-run` operation.
//!
//! [`run_over_lake`] reads `fhir.<type>` (the current, non-deleted versions, tail
//! included) with a streamed plan, and evaluates the view on each resource as its batch
//! arrives. Plan and evaluation run together in one task on the query runtime
//! ([`crate::cpu`]), which hands chunks of rows (one per scanned batch) to the caller
//! through a channel of a few chunks: a large view neither occupies the request threads
//! nor is held in memory whole, and a caller that stops reading (a client that went away,
//! a `_limit` reached) stops the scan. [`run_over_resources`] is the same evaluation over
//! resources already in memory (the operation's `resource` parameters).
//!
//! The filters ([`RunFilter`]) are those of the operation: `_since` keeps resources whose
//! `meta.lastUpdated` is after an instant (pushed into the scan as a predicate on
//! `last_updated`), `patient` and `group` keep the resources in the Patient compartment
//! of the patients given ([`PatientFilter`]), `_limit` stops after so many rows.
//!
//! Compartment membership is decided as the R4 CompartmentDefinition for Patient says:
//! a Patient by its id (or its `link`), any other type by the references of the search
//! parameters listed for it, evaluated on the resource with the same FHIRPath
//! expressions that index it for search. A type outside the compartment (Medication,
//! Organization) has no patient, so restricting it to patients is refused
//! ([`ViewRunError::NotInCompartment`]) rather than answered with all or none of it.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use medlake_ingest::search::{IndexValue, SearchParams};
use medlake_ingest::view::{ViewDefinition, ViewError};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::engine::{QueryEngine, QueryError};

/// Why a view could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ViewRunError {
    /// Reading the resources failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The view failed on a resource (a FHIRPath error, several values in a column not
    /// declared `collection`, a `where` that is not Boolean).
    #[error(transparent)]
    View(#[from] ViewError),
    /// A stored resource is not JSON: the lake is damaged or was written by another tool.
    #[error("{resource_type}/{id} is stored as text that is not JSON: {message}")]
    Stored {
        resource_type: String,
        id: String,
        message: String,
    },
    /// The view's type has no patient compartment membership.
    #[error(
        "{resource_type} is not in the Patient compartment, so a view of it cannot be restricted to patients: leave out patient and group"
    )]
    NotInCompartment { resource_type: String },
}

/// The resources of a Patient compartment: which resources belong to one of the given
/// patients.
#[derive(Debug, Clone)]
pub struct PatientFilter {
    resource_type: String,
    /// The search parameters whose references make a resource a member.
    params: Vec<String>,
    ids: HashSet<String>,
}

impl PatientFilter {
    /// The filter for resources of `resource_type` and the patients of `ids` (bare ids,
    /// not `Patient/<id>`).
    pub fn new(resource_type: &str, ids: HashSet<String>) -> Result<PatientFilter, ViewRunError> {
        let params = SearchParams::r4()
            .compartment("Patient")
            .and_then(|members| members.get(resource_type))
            .cloned();
        match params {
            Some(params) => Ok(PatientFilter {
                resource_type: resource_type.to_string(),
                params,
                ids,
            }),
            None if resource_type == "Patient" => Ok(PatientFilter {
                resource_type: resource_type.to_string(),
                params: Vec::new(),
                ids,
            }),
            None => Err(ViewRunError::NotInCompartment {
                resource_type: resource_type.to_string(),
            }),
        }
    }

    /// Is `resource` in the compartment of one of the patients?
    pub fn admits(&self, resource: &Value) -> bool {
        if self.resource_type == "Patient"
            && resource
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| self.ids.contains(id))
        {
            return true;
        }
        self.params.iter().any(|code| {
            SearchParams::r4()
                .extract_param(&self.resource_type, code, resource)
                .iter()
                .any(|v| match v {
                    IndexValue::Reference {
                        reference: Some(r), ..
                    } => patient_id(r).is_some_and(|id| self.ids.contains(id)),
                    _ => false,
                })
        })
    }
}

/// The id of a reference to a Patient: `Patient/1`, `Patient/1/_history/2` or
/// `https://server/fhir/Patient/1`.
fn patient_id(reference: &str) -> Option<&str> {
    let parts: Vec<&str> = reference.split('/').collect();
    let at = parts.iter().rposition(|p| *p == "Patient")?;
    parts.get(at + 1).copied().filter(|id| !id.is_empty())
}

/// What to keep of a run.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only resources last updated after this instant (microseconds since the epoch).
    pub since: Option<i64>,
    /// Only the resources of these patients' compartments.
    pub patients: Option<PatientFilter>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Whether `resource` passes the filters other than `_limit`. `last_updated` is the
    /// stored version's, when known; otherwise `meta.lastUpdated` is read, and a
    /// resource without one passes `_since` (the operation allows that).
    fn admits(&self, resource: &Value, last_updated: Option<i64>) -> bool {
        if let Some(since) = self.since {
            let updated = last_updated.or_else(|| {
                resource
                    .pointer("/meta/lastUpdated")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_micros())
            });
            if updated.is_some_and(|u| u <= since) {
                return false;
            }
        }
        self.patients.as_ref().is_none_or(|p| p.admits(resource))
    }
}

/// The rows of a view over resources in memory, in their order.
pub fn run_over_resources(
    view: &ViewDefinition,
    resources: &[Value],
    filter: &RunFilter,
) -> Result<Vec<Vec<Value>>, ViewRunError> {
    let mut rows = Vec::new();
    for resource in resources {
        if filter.limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        if resource.get("resourceType").and_then(Value::as_str) != Some(view.resource_type())
            || !filter.admits(resource, None)
        {
            continue;
        }
        rows.extend(view.evaluate(resource)?);
    }
    if let Some(limit) = filter.limit {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// Chunks of rows of a view over the lake, as [`run_over_lake`] produces them.
pub struct ViewRows {
    chunks: mpsc::Receiver<Result<Vec<Vec<Value>>, ViewRunError>>,
}

impl ViewRows {
    /// The next chunk (never empty), an error (after which nothing follows), or `None`
    /// at the end.
    pub async fn next(&mut self) -> Option<Result<Vec<Vec<Value>>, ViewRunError>> {
        self.chunks.recv().await
    }

    /// Every remaining row.
    pub async fn collect(mut self) -> Result<Vec<Vec<Value>>, ViewRunError> {
        let mut rows = Vec::new();
        while let Some(chunk) = self.next().await {
            rows.extend(chunk?);
        }
        Ok(rows)
    }
}

/// Chunks queued between the scan and its reader: enough to keep both busy, few enough
/// that a slow reader holds the scan back instead of memory filling up.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Run `view` over the current resources of its type in the lake, on the query runtime.
pub fn run_over_lake(
    engine: &QueryEngine,
    view: Arc<ViewDefinition>,
    filter: RunFilter,
) -> ViewRows {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let engine_for_task = engine.clone();
    engine.cpu().spawn(async move {
        if let Err(e) = scan(&engine_for_task, &view, &filter, &tx).await {
            // The reader may be gone already; then nobody needs the error.
            let _ = tx.send(Err(e)).await;
        }
    });
    ViewRows { chunks: rx }
}

async fn scan(
    engine: &QueryEngine,
    view: &ViewDefinition,
    filter: &RunFilter,
    tx: &mpsc::Sender<Result<Vec<Vec<Value>>, ViewRunError>>,
) -> Result<(), ViewRunError> {
    let resource_type = view.resource_type();
    let table = format!("fhir.{}", resource_type.to_ascii_lowercase());
    let mut df = engine
        .sql(&format!("SELECT id, resource, last_updated FROM {table}"))
        .await?;
    if let Some(since) = filter.since {
        df = df
            .filter(
                col("last_updated").gt(lit(ScalarValue::TimestampMicrosecond(
                    Some(since),
                    Some("UTC".into()),
                ))),
            )
            .map_err(QueryError::from)?;
    }
    let mut stream = df.execute_stream().await.map_err(QueryError::from)?;
    let mut remaining = filter.limit.unwrap_or(usize::MAX);
    while remaining > 0 {
        let Some(batch) = stream.next().await else {
            break;
        };
        let batch = batch.map_err(QueryError::from)?;
        let mut rows = evaluate_batch(view, filter, &batch)?;
        if rows.is_empty() {
            continue;
        }
        rows.truncate(remaining);
        remaining -= rows.len();
        if tx.send(Ok(rows)).await.is_err() {
            // The reader went away: stop scanning.
            return Ok(());
        }
    }
    Ok(())
}

/// The rows of one batch of `id, resource, last_updated`.
fn evaluate_batch(
    view: &ViewDefinition,
    filter: &RunFilter,
    batch: &RecordBatch,
) -> Result<Vec<Vec<Value>>, ViewRunError> {
    let strings = |i: usize| -> Result<Vec<Option<&str>>, ViewRunError> {
        let column = batch.column(i);
        match column.data_type() {
            DataType::Utf8View => Ok(column.as_string_view().iter().collect()),
            DataType::Utf8 => Ok(column.as_string::<i32>().iter().collect()),
            DataType::LargeUtf8 => Ok(column.as_string::<i64>().iter().collect()),
            other => Err(
                QueryError::DataFusion(datafusion::error::DataFusionError::Internal(format!(
                    "fhir.* column {i} is {other}, not text"
                )))
                .into(),
            ),
        }
    };
    let ids = strings(0)?;
    let resources = strings(1)?;
    let updated = batch
        .column(2)
        .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
    let mut rows = Vec::new();
    for (i, text) in resources.iter().enumerate() {
        let Some(text) = text else {
            continue;
        };
        let resource: Value = serde_json::from_str(text).map_err(|e| ViewRunError::Stored {
            resource_type: view.resource_type().to_string(),
            id: ids[i].unwrap_or("?").to_string(),
            message: e.to_string(),
        })?;
        let last_updated = updated.and_then(|u| u.is_valid(i).then(|| u.value(i)));
        if filter.admits(&resource, last_updated) {
            rows.extend(view.evaluate(&resource)?);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> ViewDefinition {
        ViewDefinition::from_json(&json!({
            "resourceType": "ViewDefinition", "resource": "Observation",
            "select": [{"column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"}
            ]}]
        }))
        .unwrap()
    }

    fn observation(id: &str, patient: &str, updated: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")},
            "meta": {"lastUpdated": updated}})
    }

    #[test]
    fn filters_by_patient_since_and_limit() {
        let resources = vec![
            observation("o1", "p1", "2024-01-01T00:00:00Z"),
            observation("o2", "p2", "2024-02-01T00:00:00Z"),
            observation("o3", "p1", "2024-03-01T00:00:00Z"),
            json!({"resourceType": "Patient", "id": "p1"}),
        ];
        let ids = |rows: Vec<Vec<Value>>| -> Vec<String> {
            rows.into_iter()
                .map(|r| r[0].as_str().unwrap().to_string())
                .collect()
        };
        let all = run_over_resources(&view(), &resources, &RunFilter::default()).unwrap();
        assert_eq!(ids(all), ["o1", "o2", "o3"]);

        let p1 = PatientFilter::new("Observation", HashSet::from(["p1".to_string()])).unwrap();
        let filter = RunFilter {
            patients: Some(p1),
            ..Default::default()
        };
        assert_eq!(
            ids(run_over_resources(&view(), &resources, &filter).unwrap()),
            ["o1", "o3"]
        );

        let since = chrono::DateTime::parse_from_rfc3339("2024-01-15T00:00:00Z")
            .unwrap()
            .timestamp_micros();
        let filter = RunFilter {
            since: Some(since),
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(
            ids(run_over_resources(&view(), &resources, &filter).unwrap()),
            ["o2"]
        );
    }

    #[test]
    fn patients_own_their_compartment_and_other_types_have_none() {
        let f = PatientFilter::new("Patient", HashSet::from(["p1".to_string()])).unwrap();
        assert!(f.admits(&json!({"resourceType": "Patient", "id": "p1"})));
        assert!(!f.admits(&json!({"resourceType": "Patient", "id": "p2"})));
        assert!(matches!(
            PatientFilter::new("Medication", HashSet::new()),
            Err(ViewRunError::NotInCompartment { .. })
        ));
        assert_eq!(patient_id("https://x/fhir/Patient/7/_history/2"), Some("7"));
        assert_eq!(patient_id("Group/7"), None);
    }
}
