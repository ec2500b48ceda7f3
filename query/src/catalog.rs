//! The SQL catalog `medlake`, with three schemas:
//!
//! - `fhir_history.<type>`: every version of every resource ([`ResourceHistoryTable`]);
//! - `fhir.<type>`: the current, non-deleted version of each resource, a scan that
//!   skips the rows the id index knows are not current ([`crate::current`]);
//! - `medlake.ingest_errors`: one row per record that ingest rejected.
//!
//! A session of its own ([`crate::QueryEngine::session`]) sees this catalog through a
//! [`SessionCatalog`], which keeps the schemas that session registers apart.
//!
//! Table names are the lower-case resource type (`fhir.observation`). Every R4 type
//! (and `viewdefinition`, the SQL-on-FHIR views stored in the FHIR API) answers, empty if nothing was stored yet, so queries do not break on a fresh lake;
//! listings show only the types that hold data.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use medlake_ingest::validate::Validator;
use medlake_lake::Lake;

use crate::current::CurrentTable;
use crate::provider::ResourceHistoryTable;

/// Lower-case table name -> resource type (R4, and ViewDefinition).
pub(crate) fn resource_type_for(table: &str) -> Option<&'static str> {
    static BY_LOWER: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
        Validator::r4()
            .stored_types()
            .into_iter()
            .map(|t| (t.to_ascii_lowercase(), t))
            .collect()
    });
    BY_LOWER.get(&table.to_ascii_lowercase()).copied()
}

fn listed(lake: &Lake) -> Vec<String> {
    lake.resource_types()
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect()
}

/// `fhir_history`.
#[derive(Debug)]
pub struct HistorySchema {
    lake: crate::provider::LakeHandle,
}

impl HistorySchema {
    pub fn new(lake: Lake) -> Self {
        HistorySchema {
            lake: crate::provider::LakeHandle(lake),
        }
    }
}

#[async_trait]
impl SchemaProvider for HistorySchema {
    fn table_names(&self) -> Vec<String> {
        listed(&self.lake.0)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(resource_type_for(name)
            .map(|t| Arc::new(ResourceHistoryTable::new(self.lake.0.clone(), t)) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        resource_type_for(name).is_some()
    }
}

/// `fhir`: the current version of each resource.
#[derive(Debug)]
pub struct CurrentSchema {
    lake: crate::provider::LakeHandle,
}

impl CurrentSchema {
    pub fn new(lake: Lake) -> Self {
        CurrentSchema {
            lake: crate::provider::LakeHandle(lake),
        }
    }
}

#[async_trait]
impl SchemaProvider for CurrentSchema {
    fn table_names(&self) -> Vec<String> {
        listed(&self.lake.0)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match resource_type_for(name) {
            Some(t) => Ok(Some(Arc::new(CurrentTable::new(self.lake.0.clone(), t)))),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        resource_type_for(name).is_some()
    }
}

/// `medlake`: the lake's own tables.
#[derive(Debug)]
pub struct SystemSchema {
    lake: crate::provider::LakeHandle,
}

impl SystemSchema {
    pub fn new(lake: Lake) -> Self {
        SystemSchema {
            lake: crate::provider::LakeHandle(lake),
        }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        vec!["ingest_errors".to_string()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name != "ingest_errors" {
            return Ok(None);
        }
        let table = self
            .lake
            .0
            .ingest_errors_table()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match table {
            Some(t) => {
                let provider = t.table_provider().await?;
                Ok(Some(Arc::new(ErrorsTable {
                    inner: provider,
                    table: t,
                })))
            }
            None => {
                let empty = datafusion::datasource::MemTable::try_new(
                    medlake_lake::schema::ingest_errors_schema(),
                    vec![vec![]],
                )?;
                Ok(Some(Arc::new(empty)))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name == "ingest_errors"
    }
}

/// The Delta provider of `ingest_errors`, registering its object store on scan.
#[derive(Debug)]
struct ErrorsTable {
    inner: Arc<dyn TableProvider>,
    table: deltalake::DeltaTable,
}

#[async_trait]
impl TableProvider for ErrorsTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.table
            .update_datafusion_session(state)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// The catalog `medlake` as one session sees it: the engine's schemas, looked up there at
/// each query (so a schema added to the engine is seen at once), and the schemas this
/// session registered itself (the Postgres wire's `pg_catalog`), which no other session
/// sees. A schema of the session's own hides an engine schema of the same name.
#[derive(Debug)]
pub struct SessionCatalog {
    shared: Arc<dyn CatalogProvider>,
    own: MemoryCatalogProvider,
}

impl SessionCatalog {
    pub fn new(shared: Arc<dyn CatalogProvider>) -> Self {
        SessionCatalog {
            shared,
            own: MemoryCatalogProvider::new(),
        }
    }
}

impl CatalogProvider for SessionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.shared.schema_names();
        for name in self.own.schema_names() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.own.schema(name).or_else(|| self.shared.schema(name))
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.own.register_schema(name, schema)
    }
}
