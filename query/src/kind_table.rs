//! The tables of the lake's registered kinds ([`medlake_lake::TableKind`]), as
//! `<namespace>.<name>`: each scan is the union of the Delta snapshot and the in-memory
//! tail, taken together from the lake as for `fhir_history`, so a row acknowledged a
//! moment ago is in the answer and a row being flushed is counted once.
//!
//! A kind's SQL views ([`TableKind::views`], `dicom.studies` over `dicom.instances`)
//! appear beside its table. Each is planned when a query names it, against this
//! namespace's tables, so it reads the same consistent scans as a query of the table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::view::ViewTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use medlake_lake::kind::qualified_name;
use medlake_lake::{Lake, TableKind};

use crate::provider::{LakeHandle, external, scan_delta_and_tail, sql_schema};

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
            schema: sql_schema(&kind.schema()),
        }
    }
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
        scan_delta_and_tail(
            state,
            view.delta.as_ref(),
            &view.tail,
            &self.schema,
            projection,
            filters,
            limit,
        )
        .await
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

    /// The views of this namespace's kinds, as `(name, SELECT ...)`.
    fn views(&self) -> Vec<(&'static str, String)> {
        self.lake
            .0
            .kinds()
            .iter()
            .filter(|k| k.namespace() == self.namespace)
            .flat_map(|k| k.views())
            .collect()
    }

    /// A view planned against this namespace's tables (not its views: a view reads
    /// tables only).
    async fn plan_view(&self, query: &str) -> Result<Arc<dyn TableProvider>> {
        let ctx = SessionContext::new();
        let tables = KindSchema::new(self.lake.0.clone(), self.namespace.clone());
        ctx.catalog("datafusion")
            .ok_or_else(|| external_text("DataFusion's default catalog is missing"))?
            .register_schema(&self.namespace, Arc::new(TablesOnly(tables)))?;
        let plan = ctx.sql(query).await?.into_unoptimized_plan();
        Ok(Arc::new(ViewTable::new(plan, Some(query.to_string()))))
    }
}

fn external_text(message: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Internal(message.to_string())
}

/// A namespace's kind tables without its views, for planning the views.
#[derive(Debug)]
struct TablesOnly(KindSchema);

#[async_trait]
impl SchemaProvider for TablesOnly {
    fn table_names(&self) -> Vec<String> {
        self.0.table_names_only()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .0
            .kind(name)
            .map(|k| Arc::new(KindTable::new(self.0.lake.0.clone(), k.as_ref())) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.kind(name).is_some()
    }
}

impl KindSchema {
    fn table_names_only(&self) -> Vec<String> {
        self.lake
            .0
            .kinds()
            .iter()
            .filter(|k| k.namespace() == self.namespace)
            .map(|k| k.name().to_string())
            .collect()
    }
}

#[async_trait]
impl SchemaProvider for KindSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.table_names_only();
        names.extend(self.views().into_iter().map(|(name, _)| name.to_string()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(k) = self.kind(name) {
            return Ok(Some(Arc::new(KindTable::new(
                self.lake.0.clone(),
                k.as_ref(),
            ))));
        }
        let view = self
            .views()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        match view {
            Some((_, query)) => Ok(Some(self.plan_view(&query).await?)),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.kind(name).is_some()
            || self
                .views()
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}
