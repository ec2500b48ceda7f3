//! The tables of the lake's registered kinds ([`medlake_lake::TableKind`]), as
//! `<namespace>.<name>`: each scan is the union of the Delta snapshot and the in-memory
//! tail, taken together from the lake as for `fhir_history`, so a row acknowledged a
//! moment ago is in the answer and a row being flushed is counted once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use medlake_lake::kind::qualified_name;
use medlake_lake::{Lake, TableKind};

use crate::provider::{LakeHandle, conform, external};

/// A kind's schema as SQL sees it: strings as `Utf8View`, as DataFusion and delta-rs
/// read Parquet strings.
pub fn query_schema(kind: &dyn TableKind) -> SchemaRef {
    Arc::new(Schema::new(
        kind.schema()
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

/// One table of a registered kind.
#[derive(Debug)]
pub struct KindTable {
    lake: LakeHandle,
    table: String,
    schema: SchemaRef,
}

impl KindTable {
    pub fn new(lake: Lake, kind: &dyn TableKind) -> Self {
        KindTable {
            lake: LakeHandle(lake),
            table: qualified_name(kind),
            schema: query_schema(kind),
        }
    }
}

fn to_schema(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

#[async_trait]
impl TableProvider for KindTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The Delta scan prunes partitions and files with them; the tail is filtered above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let view = self.lake.0.kind_view(&self.table).map_err(external)?;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let target = Arc::new(self.schema.project(&wanted)?);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if let Some(table) = &view.delta {
            if table.version().is_some() {
                table.update_datafusion_session(state).map_err(external)?;
                let provider = table.table_provider().await?;
                // Delta's own column order (partition columns last) may differ: go by name.
                let delta_schema = provider.schema();
                let by_name = wanted
                    .iter()
                    .map(|&i| delta_schema.index_of(self.schema.field(i).name()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let plan = provider.scan(state, Some(&by_name), filters, limit).await?;
                inputs.push(conform(plan, &target)?);
            }
        }
        if !view.tail.is_empty() {
            let batches = view
                .tail
                .iter()
                .map(|b| to_schema(b, &self.schema))
                .collect::<Result<Vec<_>>>()?;
            inputs.push(MemorySourceConfig::try_new_exec(
                &[batches],
                self.schema.clone(),
                projection.cloned(),
            )?);
        }
        match inputs.len() {
            0 => Ok(Arc::new(EmptyExec::new(target))),
            1 => Ok(inputs.remove(0)),
            _ => UnionExec::try_new(inputs),
        }
    }
}

/// The SQL schema of one namespace of kinds (`device`, `dicom`, ...).
#[derive(Debug)]
pub struct KindSchema {
    lake: LakeHandle,
    namespace: String,
}

impl KindSchema {
    pub fn new(lake: Lake, namespace: impl Into<String>) -> Self {
        KindSchema {
            lake: LakeHandle(lake),
            namespace: namespace.into(),
        }
    }

    fn kind(&self, name: &str) -> Option<Arc<dyn TableKind>> {
        self.lake
            .0
            .kinds()
            .into_iter()
            .find(|k| k.namespace() == self.namespace && k.name().eq_ignore_ascii_case(name))
    }
}

#[async_trait]
impl SchemaProvider for KindSchema {
    fn table_names(&self) -> Vec<String> {
        self.lake
            .0
            .kinds()
            .iter()
            .filter(|k| k.namespace() == self.namespace)
            .map(|k| k.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .kind(name)
            .map(|k| Arc::new(KindTable::new(self.lake.0.clone(), k.as_ref())) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.kind(name).is_some()
    }
}
