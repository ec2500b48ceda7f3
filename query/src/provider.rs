//! `fhir_history.<type>`: every version of a type, from the Delta snapshot and the tail.
//!
//! Each scan takes one [`TableView`] from the lake (snapshot and tail together, under the
//! lake's lock) and plans the union of a Delta scan and an in-memory scan, so a write
//! acknowledged a moment ago is in the answer, and a row being flushed is counted once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use medlake_lake::Lake;
use medlake_lake::schema::resource_schema;

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

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for ResourceHistoryTable {
    fn schema(&self) -> SchemaRef {
        resource_schema()
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
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if let Some(table) = &view.delta {
            if table.version().is_some() {
                table.update_datafusion_session(state).map_err(external)?;
                let provider = table.table_provider().await?;
                inputs.push(provider.scan(state, projection, filters, limit).await?);
            }
        }
        if let Some(batch) = view.buffered {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                resource_schema(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(resource_schema().project(p)?),
                None => resource_schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}
