//! [`QueryEngine`]: read-only SQL over a workspace.
//!
//! Plans are planned and run on the engine's own runtime ([`crate::cpu`]): use
//! [`QueryEngine::query`] or [`QueryEngine::collect`] rather than collecting a
//! [`DataFrame`] on the caller's runtime.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use medlake_lake::Lake;
use thiserror::Error;

use crate::catalog::{CurrentSchema, HistorySchema, SystemSchema};
use crate::cpu::CpuRuntime;
use crate::kind_table::KindSchema;
use crate::views::ViewsSchema;

/// Why a query failed.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The statement would change data or the catalog.
    #[error("medlake's SQL is read-only: {0}. Write data with `medlake ingest` or the FHIR API")]
    ReadOnly(String),
    /// Anything DataFusion rejects: syntax, unknown columns, types.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// The catalog name clients see.
pub const CATALOG: &str = "medlake";

/// SQL over one workspace of the lake.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    cpu: Arc<CpuRuntime>,
}

/// A query's answer: its schema (also when there are no rows) and its batches.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryEngine {
    /// A session with the `fhir`, `fhir_history`, `views` and `medlake` schemas and the JSON
    /// functions (`json_get_str(resource, 'gender')`, `resource->'name'`, ...).
    pub fn new(lake: Lake) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "fhir")
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        datafusion_functions_json::register_all(&mut ctx)?;
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema("fhir", Arc::new(CurrentSchema::new(lake.clone())))?;
        catalog.register_schema("fhir_history", Arc::new(HistorySchema::new(lake.clone())))?;
        let mut namespaces: Vec<String> = lake
            .kinds()
            .iter()
            .map(|k| k.namespace().to_string())
            .collect();
        namespaces.dedup();
        for ns in namespaces {
            catalog.register_schema(&ns, Arc::new(KindSchema::new(lake.clone(), ns.clone())))?;
        }
        ctx.register_udtf(
            crate::time_travel::FHIR_AS_OF,
            Arc::new(crate::time_travel::FhirAsOf::new(lake.clone())),
        );
        catalog.register_schema("views", Arc::new(ViewsSchema::new(lake.clone())))?;
        catalog.register_schema("medlake", Arc::new(SystemSchema::new(lake)))?;
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        let cpu = CpuRuntime::for_this_machine().map_err(|e| {
            datafusion::error::DataFusionError::External(
                format!("could not start the query threads: {e}").into(),
            )
        })?;
        Ok(QueryEngine {
            ctx,
            cpu: Arc::new(cpu),
        })
    }

    /// Plan and run a read-only query on the query runtime, and collect its answer.
    pub async fn query(&self, query: &str) -> Result<QueryOutput, QueryError> {
        let engine = self.clone();
        let query = query.to_string();
        self.cpu
            .run(async move {
                let df = engine.sql(&query).await?;
                let schema = df.schema().inner().clone();
                let batches = df.collect().await?;
                Ok::<_, QueryError>(QueryOutput { schema, batches })
            })
            .await?
    }

    /// Run a planned [`DataFrame`] on the query runtime and collect its batches.
    pub async fn collect(&self, df: DataFrame) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.cpu.run(df.collect()).await??)
    }

    /// Plan a query, refusing DDL, DML and session statements.
    ///
    /// The statement kind is checked on the parse tree before planning, so a malformed
    /// `INSERT` is refused as a write rather than reported as a planning error.
    pub async fn sql(&self, query: &str) -> Result<DataFrame, QueryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(query, &dialect)?;
        if let Some(kind) = write_statement_kind(&statement) {
            return Err(QueryError::ReadOnly(format!(
                "{kind} statements are refused"
            )));
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        match self.ctx.sql_with_options(query, options).await {
            Ok(df) => Ok(df),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("DDL not supported")
                    || msg.contains("DML not supported")
                    || msg.contains("Statement not supported")
                {
                    Err(QueryError::ReadOnly(first_line(&msg)))
                } else {
                    Err(QueryError::DataFusion(e))
                }
            }
        }
    }

    /// The DataFusion session, for callers that need more than [`QueryEngine::sql`].
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// `None` for a read (a query, `EXPLAIN` or `SHOW`), else the kind of statement.
fn write_statement_kind(statement: &DFStatement) -> Option<String> {
    use datafusion::sql::sqlparser::ast::Statement as S;
    match statement {
        DFStatement::Statement(s) => match s.as_ref() {
            S::Query(_)
            | S::Explain { .. }
            | S::ExplainTable { .. }
            | S::ShowTables { .. }
            | S::ShowColumns { .. }
            | S::ShowVariable { .. }
            | S::ShowFunctions { .. } => None,
            other => {
                let text = other.to_string();
                let kind = text
                    .split_whitespace()
                    .next()
                    .unwrap_or("this")
                    .to_ascii_uppercase();
                Some(kind)
            }
        },
        DFStatement::Explain(_) => None,
        DFStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE".into()),
        DFStatement::CopyTo(_) => Some("COPY".into()),
        _ => Some("this".into()),
    }
}
