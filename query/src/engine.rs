//! [`QueryEngine`]: read-only SQL over a workspace.
//!
//! Plans are planned and run on the engine's own runtime ([`crate::cpu`]): use
//! [`QueryEngine::query`] or [`QueryEngine::collect`] rather than collecting a
//! [`DataFrame`] on the caller's runtime, and [`QueryEngine::stream`] for an answer too
//! large to hold: its batches are produced on the query runtime and handed over a channel
//! of [`STREAM_BUFFER`] batches, so a slow reader stops the plan instead of letting the
//! answer pile up in memory.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use medlake_lake::Lake;
use thiserror::Error;

use crate::catalog::{CurrentSchema, HistorySchema, SessionCatalog, SystemSchema};
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

/// Batches a [`QueryEngine::stream`] runs ahead of its reader. Two keep the query
/// threads busy while the reader takes one; more would only hold more of the answer.
pub const STREAM_BUFFER: usize = 2;

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
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "fhir")
            .with_information_schema(true);
        // A partitioned hash join that pushes its build side down as a dynamic filter
        // waits for every partition to report. When a parent join drops a partition
        // early, the others can wait forever with no thread busy: the hang of
        // apache/datafusion#21625, which DataFusion 55.2 still shows on our plans. The
        // feature extraction's joins of a cohort against several tables hung this way in
        // about half of the runs (the leak test in `tests/features.rs`). A query that
        // never answers is worse than one that prunes less.
        config
            .options_mut()
            .optimizer
            .enable_join_dynamic_filter_pushdown = false;
        // DataFusion's optimizer rules, and `count(DISTINCT d)` beside `count(*)` or `avg`
        // planned as two group-bys (`crate::mixed_distinct`). Sessions made from this
        // one (`session`) keep the rules.
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(crate::mixed_distinct::optimizer_rules())
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
        ctx.register_udtf(
            crate::views::VIEWS_AS_OF,
            Arc::new(crate::views::ViewsAsOf::new(lake.clone())),
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

    /// Plan a read-only query on the query runtime, without running it: its schema, and
    /// its parameters (`$1`, `$name`) with the types they were inferred to have.
    pub async fn plan(&self, query: &str) -> Result<DataFrame, QueryError> {
        let engine = self.clone();
        let query = query.to_string();
        self.cpu
            .run(async move { engine.sql(&query).await })
            .await?
    }

    /// Run a planned query (with its parameters' values, if it has parameters) on the
    /// query runtime and hand its batches back as they are produced.
    ///
    /// The plan runs ahead of the reader by at most [`STREAM_BUFFER`] batches; dropping
    /// the stream stops it. The stream's schema is the plan's logical schema, which is
    /// what a client was told before it asked for the rows.
    pub async fn stream(
        &self,
        df: DataFrame,
        params: Option<ParamValues>,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let df = match params {
            Some(p) => df.with_param_values(p)?,
            None => df,
        };
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut batches = self.cpu.run(df.execute_stream()).await??;
        let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        // The pump lives on the query runtime, so the plan's operators never run on the
        // caller's threads. It ends when the plan does or the receiver is gone.
        drop(self.cpu.spawn(async move {
            while let Some(batch) = batches.next().await {
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    break;
                }
            }
        }));
        let received = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, received)))
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

    /// A session of its own, for a client that keeps state between statements (a
    /// Postgres connection): the same tables, functions and settings as this engine, but
    /// what it `SET`s and the schemas it registers stay in it. Its catalog `medlake`
    /// looks schemas up in the engine's catalog at each query, so it sees the same data
    /// and the same schemas as every other session.
    pub fn session(&self) -> Result<SessionContext, QueryError> {
        let shared = self.ctx.catalog(CATALOG).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("no catalog {CATALOG}"))
        })?;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG.to_string(), Arc::new(SessionCatalog::new(shared)));
        let state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_catalog_list(Arc::new(catalogs))
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Run `work` on the query runtime (see [`crate::cpu`]): for a caller that plans and
    /// streams plans itself, such as a Postgres connection, so that its plans do not
    /// occupy the threads that serve requests.
    pub async fn run<F, T>(&self, work: F) -> Result<T, QueryError>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.cpu.run(work).await?)
    }

    /// The runtime plans run on, for work of this crate that streams a plan.
    pub(crate) fn cpu(&self) -> &CpuRuntime {
        &self.cpu
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
