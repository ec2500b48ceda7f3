//! `fhir_history.<type>`: every version of a type, from the Delta snapshot and the tail.
//!
//! Each scan takes one [`TableView`] from the lake (snapshot and tail together, under the
//! lake's lock) and plans the union of a Delta scan and an in-memory scan, so a write
//! acknowledged a moment ago is in the answer, and a row being flushed is counted once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::union::UnionExec;
use medlake_lake::Lake;
use medlake_lake::schema::resource_schema;
use std::sync::LazyLock;

/// The schema SQL sees of a stored one: strings as `Utf8View`, which is what DataFusion
/// and delta-rs read Parquet strings as. The in-memory tail is cast to it so both halves
/// of a scan's union agree.
pub fn sql_schema(stored: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        stored
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => {
                    Field::new(f.name(), DataType::Utf8View, f.is_nullable())
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// [`sql_schema`] of the resource tables.
pub fn query_resource_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| sql_schema(&resource_schema()));
    SCHEMA.clone()
}

/// Cast a plan's columns to `target` where their types differ (same names and order).
pub(crate) fn conform(
    plan: Arc<dyn ExecutionPlan>,
    target: &SchemaRef,
) -> Result<Arc<dyn ExecutionPlan>> {
    let input = plan.schema();
    let same = input.fields().len() == target.fields().len()
        && input
            .fields()
            .iter()
            .zip(target.fields())
            .all(|(a, b)| a.data_type() == b.data_type());
    if same {
        return Ok(plan);
    }
    if input.fields().len() != target.fields().len() {
        return Err(DataFusionError::Internal(format!(
            "Delta scan returned {} columns where {} were asked for",
            input.fields().len(),
            target.fields().len()
        )));
    }
    let exprs = target
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column = Arc::new(Column::new(input.field(i).name(), i));
            let expr: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                if input.field(i).data_type() == f.data_type() {
                    column
                } else {
                    Arc::new(CastExpr::new(column, f.data_type().clone(), None))
                };
            ProjectionExpr {
                expr,
                alias: f.name().clone(),
            }
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// A batch of the stored schema in `target`, the same columns as SQL types them.
fn cast_to(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

/// Plan a scan of one lake table: its Delta snapshot and its in-memory tail, both in
/// `schema` (the table's SQL schema), unioned. The caller took both from the lake
/// together, so that a row being flushed is in exactly one of them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn scan_delta_and_tail(
    state: &dyn Session,
    delta: Option<&deltalake::DeltaTable>,
    tail: &[RecordBatch],
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let wanted: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let target = Arc::new(schema.project(&wanted)?);
    let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    if let Some(table) = delta.filter(|t| t.version().is_some()) {
        table.update_datafusion_session(state).map_err(external)?;
        let provider = table.table_provider().await?;
        // Delta's own column order (partition columns last) may differ: go by name.
        let delta_schema = provider.schema();
        let by_name = wanted
            .iter()
            .map(|&i| delta_schema.index_of(schema.field(i).name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let plan = provider.scan(state, Some(&by_name), filters, limit).await?;
        inputs.push(conform(plan, &target)?);
    }
    if !tail.is_empty() {
        let batches = tail
            .iter()
            .map(|b| cast_to(b, schema))
            .collect::<Result<Vec<_>>>()?;
        inputs.push(MemorySourceConfig::try_new_exec(
            &[batches],
            schema.clone(),
            projection.cloned(),
        )?);
    }
    match inputs.len() {
        0 => Ok(Arc::new(EmptyExec::new(target))),
        1 => Ok(inputs.remove(0)),
        _ => UnionExec::try_new(inputs),
    }
}

/// All versions of one resource type.
#[derive(Debug)]
pub struct ResourceHistoryTable {
    lake: LakeHandle,
    resource_type: String,
}

/// `Lake` without a `Debug` impl of its own, for DataFusion's `Debug` bound.
#[derive(Clone)]
pub struct LakeHandle(pub Lake);

impl std::fmt::Debug for LakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lake({})", self.0.workspace_url())
    }
}

impl ResourceHistoryTable {
    pub fn new(lake: Lake, resource_type: impl Into<String>) -> Self {
        ResourceHistoryTable {
            lake: LakeHandle(lake),
            resource_type: resource_type.into(),
        }
    }
}

pub(crate) fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for ResourceHistoryTable {
    fn schema(&self) -> SchemaRef {
        query_resource_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The Delta scan prunes files and row groups with them; the tail is filtered above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let view = self
            .lake
            .0
            .table_view(&self.resource_type)
            .map_err(external)?;
        scan_delta_and_tail(
            state,
            view.delta.as_ref(),
            &view.tail,
            &query_resource_schema(),
            projection,
            filters,
            limit,
        )
        .await
    }
}
