//! Scale-out on Apache DataFusion Ballista: the same SQL, run by a cluster that reads the
//! lake's committed Delta files (`medlake sql --engine ballista://host:port`, `medlake
//! serve --sql-engine ballista://host:port`), and the scheduler and executor processes
//! that run it (`medlake ballista scheduler | executor`).
//!
//! # What crosses to the cluster
//!
//! Ballista ships a query to its scheduler and executors as a protobuf plan, and only
//! the table providers that DataFusion's codecs know survive the trip. medlake's own
//! (the scan that unions Delta with the in-memory tail, the current-version scan that
//! skips rows by the id index, delta-rs's provider) do not: they hold a [`Lake`], which
//! exists only in the process that opened it. So each query here gets a session of its
//! own whose tables are built from what is committed *now*:
//!
//! - `fhir_history.<type>`: a `ListingTable` over exactly the Parquet files the Delta
//!   snapshot lists (never the folder: it also holds files a compaction replaced);
//! - `fhir.<type>`: the newest version per id, without delete markers, ranked with a
//!   window over that listing ([`medlake_query::current::newest_versions`], the plan the
//!   in-process engine falls back to);
//! - `views.<name>`: a view's current rows over a listing of its table
//!   ([`medlake_query::views::current_rows`], the plan the in-process engine uses).
//!
//! A listing of files and a view over it are plain DataFusion plans, which the default
//! codecs carry. Views are inlined on this side before the plan is sent.
//!
//! # Functions
//!
//! The JSON functions are user-defined functions, found by name wherever a plan is
//! decoded: the scheduler (logical plans) and every executor (physical plans). Stock
//! Ballista processes do not have them; `medlake ballista scheduler | executor` start
//! Ballista's own processes, from its crates, with them registered
//! ([`cluster_session`], [`cluster_functions`]) and with object stores built from the
//! same `AWS_*` / `AZURE_*` / `GOOGLE_*` variables as the lake's ([`CloudStores`]).
//!
//! # What the cluster does not see
//!
//! Only what is committed to Delta: a server's acknowledged writes that are still in
//! its tail (up to one flush interval) are not in a cluster's answer, and the server
//! says so ([`Notice`]). `medlake sql` reads only Delta in any engine. `fhir_as_of`,
//! `medlake.ingest_errors` and the tables of other kinds stay in-process for now, and a
//! resource type with nothing committed yet has no table on the cluster.
//!
//! Nothing here reimplements Ballista: its crates are the cluster; this module only
//! decides which tables and functions it is given.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ballista::prelude::SessionContextExt;
use ballista_core::extension::{
    SessionConfigExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use deltalake::DeltaTable;
use medlake_lake::{Lake, TableKind};
use medlake_query::provider::{query_resource_schema, sql_schema};
use medlake_query::{CATALOG, QueryOutput};
use object_store::ObjectStore;
use parking_lot::Mutex;
use url::Url;

/// The scheme of a Ballista scheduler's address in `--engine` / `--sql-engine`.
pub const SCHEME: &str = "ballista";

/// The port a scheduler listens on when its address names none (Ballista's own default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where SQL runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlEngine {
    /// In this process, over the lake (and, in a server, its tail).
    Local,
    /// On a Ballista cluster, given by its scheduler's `host:port`.
    Ballista { host: String, port: u16 },
}

impl SqlEngine {
    /// `local`, or `ballista://host[:port]`.
    pub fn parse(value: &str) -> Result<SqlEngine> {
        if value.eq_ignore_ascii_case("local") {
            return Ok(SqlEngine::Local);
        }
        let url = Url::parse(value).ok().filter(|u| u.scheme() == SCHEME);
        let Some(url) = url else {
            bail!(
                "the SQL engine {value:?} is neither `local` nor a Ballista scheduler's \
                 address like ballista://scheduler-host:{DEFAULT_SCHEDULER_PORT}"
            );
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            bail!("the SQL engine {value:?} names no host: write ballista://<host>:<port>");
        };
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            bail!(
                "the SQL engine {value:?} has more than a host and port: write \
                 ballista://<host>:<port>"
            );
        }
        Ok(SqlEngine::Ballista {
            host: host.to_string(),
            port: url.port().unwrap_or(DEFAULT_SCHEDULER_PORT),
        })
    }
}

impl std::fmt::Display for SqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlEngine::Local => f.write_str("local"),
            SqlEngine::Ballista { host, port } => write!(f, "{SCHEME}://{host}:{port}"),
        }
    }
}

/// A note that goes with an answer from the cluster: which of the queried tables have
/// acknowledged rows that are not committed yet, so not in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `(table, rows)` with the table as SQL names it (`fhir.observation`).
    pub unflushed: Vec<(String, usize)>,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables: Vec<String> = self
            .unflushed
            .iter()
            .map(|(t, n)| format!("{t} ({n} rows)"))
            .collect();
        write!(
            f,
            "the Ballista cluster reads only what is committed to Delta: acknowledged \
             writes to {} are not flushed yet and are not in this answer (they are after \
             the next flush; the local engine sees them now)",
            tables.join(", ")
        )
    }
}

/// SQL on a Ballista cluster over one workspace's committed tables.
#[derive(Clone)]
pub struct BallistaEngine {
    scheduler: String,
    lake: Lake,
}

impl BallistaEngine {
    /// An engine for the scheduler at `host:port`. Nothing is contacted until a query
    /// runs.
    pub fn new(lake: Lake, host: &str, port: u16) -> BallistaEngine {
        BallistaEngine {
            scheduler: format!("df://{host}:{port}"),
            lake,
        }
    }

    /// Plan `query` over the tables as committed now, run it on the cluster, and collect
    /// its answer; with a [`Notice`] when a queried table has unflushed rows.
    pub async fn query(&self, query: &str) -> Result<(QueryOutput, Option<Notice>), ClusterError> {
        let ctx = self
            .session()
            .await
            .map_err(|e| ClusterError::Setup(crate::error_chain(e.as_ref())))?;
        let notice = self.notice(&ctx, query);
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(query, options)
            .await
            .map_err(|e| ClusterError::Plan(explain(&crate::error_chain(&e), query)))?;
        let schema = df.schema().inner().clone();
        let batches = df.collect().await.map_err(|e| ClusterError::Run {
            scheduler: self.scheduler.trim_start_matches("df://").to_string(),
            detail: explain(&crate::error_chain(&e), query),
        })?;
        Ok((QueryOutput { schema, batches }, notice))
    }

    /// A client session of the cluster with the catalog `medlake` as committed now.
    async fn session(&self) -> Result<SessionContext> {
        let config = SessionConfig::new_with_ballista()
            .with_default_catalog_and_schema(CATALOG, "fhir")
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let mut ctx = SessionContext::remote_with_state(&self.scheduler, state)
            .await
            .context("could not set up a session of the Ballista cluster")?;
        datafusion_functions_json::register_all(&mut ctx)?;
        ctx.register_catalog(CATALOG, Arc::new(committed_catalog(&self.lake).await?));
        Ok(ctx)
    }

    /// The queried `fhir` and `fhir_history` tables whose type has rows in the tail.
    fn notice(&self, ctx: &SessionContext, query: &str) -> Option<Notice> {
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        // A statement that does not parse fails in planning, with DataFusion's message.
        let statement = state.sql_to_statement(query, &dialect).ok()?;
        let references = state.resolve_table_references(&statement).ok()?;
        let types: HashMap<String, String> = self
            .lake
            .resource_types()
            .into_iter()
            .map(|t| (t.to_ascii_lowercase(), t))
            .collect();
        let mut unflushed = Vec::new();
        for r in references {
            let schema = r.schema().unwrap_or("fhir");
            if schema != "fhir" && schema != "fhir_history" {
                continue;
            }
            let Some(resource_type) = types.get(&r.table().to_ascii_lowercase()) else {
                continue;
            };
            let (_, tail) = self.lake.committed(resource_type);
            let name = format!("{schema}.{}", r.table().to_ascii_lowercase());
            if tail > 0 && !unflushed.iter().any(|(t, _)| *t == name) {
                unflushed.push((name, tail));
            }
        }
        (!unflushed.is_empty()).then_some(Notice { unflushed })
    }
}

/// Why a query failed on the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The query was refused while planning it here: its SQL, or what the cluster does
    /// not support.
    #[error("{0}")]
    Plan(String),
    /// The cluster could not be reached, or failed while running the query.
    #[error("the Ballista cluster at {scheduler} failed the query: {detail}")]
    Run { scheduler: String, detail: String },
    /// The committed tables could not be listed.
    #[error("could not list the committed tables for the Ballista cluster: {0}")]
    Setup(String),
}

/// DataFusion's message, with what to do when the cause is a limit of the cluster: a
/// table or function that stays in-process.
fn explain(message: &str, query: &str) -> String {
    let lower = query.to_ascii_lowercase();
    let mut hint = None;
    if lower.contains("fhir_as_of") {
        hint = Some(
            "fhir_as_of (time travel) is not supported on Ballista yet; run it with the local engine",
        );
    } else if lower.contains("ingest_errors") || lower.contains("information_schema") {
        hint = Some(
            "medlake.ingest_errors, information_schema and the tables of other kinds are not \
             supported on Ballista yet; query them with the local engine",
        );
    } else if message.contains("table") && message.contains("not found") {
        hint = Some(
            "on Ballista only the resource types with committed data have tables (fhir.<type>, \
             fhir_history.<type>), and views.<name>",
        );
    } else if message.contains("There is no UDF named") {
        hint = Some(
            "the cluster lacks medlake's functions: run its scheduler and executors with \
             `medlake ballista scheduler` and `medlake ballista executor`, not stock Ballista",
        );
    }
    match hint {
        Some(h) => format!("{message} ({h})"),
        None => message.to_string(),
    }
}

/// The schemas `fhir`, `fhir_history` and `views` over the files committed now.
async fn committed_catalog(lake: &Lake) -> Result<MemoryCatalogProvider> {
    let catalog = MemoryCatalogProvider::new();
    let current = Arc::new(MemorySchemaProvider::new());
    let history = Arc::new(MemorySchemaProvider::new());
    let views = Arc::new(MemorySchemaProvider::new());
    for resource_type in lake.resource_types() {
        let (Some(table), _) = lake.committed(&resource_type) else {
            continue;
        };
        let name = resource_type.to_ascii_lowercase();
        let listing: Arc<dyn TableProvider> = Arc::new(listing(&table, query_resource_schema())?);
        let plan = medlake_query::current::newest_versions(LogicalPlanBuilder::scan(
            format!("fhir_history.{name}"),
            provider_as_source(listing.clone()),
            None,
        )?)?;
        history.register_table(name.clone(), listing)?;
        current.register_table(name, Arc::new(ViewTable::new(plan, None)))?;
    }
    for view in lake.views() {
        let Some(table) = lake.view_snapshot(view.name()).and_then(|s| s.delta) else {
            continue;
        };
        let stored = Arc::new(listing(&table, sql_schema(&view.schema()))?);
        let rows = medlake_query::views::current_rows(&view, stored)?;
        views.register_table(view.name().to_string(), Arc::new(rows))?;
    }
    catalog.register_schema("fhir", current)?;
    catalog.register_schema("fhir_history", history)?;
    catalog.register_schema("views", views)?;
    Ok(catalog)
}

/// A table of exactly the Parquet files a Delta snapshot lists, typed as SQL types the
/// lake's tables. The files are named one by one: the table's folder also holds files
/// that a compaction replaced, kept for the retention window.
fn listing(table: &DeltaTable, schema: SchemaRef) -> Result<ListingTable> {
    let mut urls = Vec::new();
    for uri in table
        .get_file_uris()
        .with_context(|| format!("could not list the files of {}", table.table_url()))?
    {
        urls.push(ListingTableUrl::parse(&uri)?);
    }
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    // An empty snapshot still plans: a listing of no paths is refused, so it names the
    // table's folder with an extension no file has.
    let config = if urls.is_empty() {
        let folder = format!("{}/", table.table_url().as_str().trim_end_matches('/'));
        ListingTableConfig::new(ListingTableUrl::parse(&folder)?)
            .with_listing_options(options.with_file_extension(".medlake-no-files"))
    } else {
        ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options)
    };
    Ok(ListingTable::try_new(config.with_schema(schema))?)
}

/// The functions of a medlake cluster: Ballista's defaults and the JSON functions.
fn register_medlake_functions(state: &mut datafusion::execution::SessionState) -> Result<()> {
    datafusion_functions_json::register_all(state)?;
    Ok(())
}

/// The session a medlake scheduler plans with: Ballista's, with the JSON functions and
/// the cloud object stores.
pub fn cluster_session(
    config: SessionConfig,
) -> datafusion::error::Result<datafusion::execution::SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(cluster_runtime()?)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .build();
    register_medlake_functions(&mut state)
        .map_err(|e| datafusion::error::DataFusionError::External(e.into()))?;
    Ok(state)
}

/// The functions a medlake executor decodes plans with.
pub fn cluster_functions() -> Result<BallistaFunctionRegistry> {
    let state = cluster_session(SessionConfig::new_with_ballista())?;
    Ok(BallistaFunctionRegistry::from(&state))
}

/// A runtime whose object stores are the lake's kinds, built on first use.
fn cluster_runtime() -> datafusion::error::Result<Arc<RuntimeEnv>> {
    Ok(Arc::new(
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(CloudStores::default()))
            .build()?,
    ))
}

/// Object stores for `s3://`, `az://` / `abfss://` and `gs://` URLs, built from the
/// environment the first time a bucket is asked for, as the lake builds its own.
/// DataFusion's default registry knows only local files and stores registered ahead,
/// and a cluster does not know ahead which buckets its queries will read.
#[derive(Debug, Default)]
pub struct CloudStores {
    known: DefaultObjectStoreRegistry,
    building: Mutex<()>,
}

impl ObjectStoreRegistry for CloudStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let _one_builder = self.building.lock();
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let store = cloud_store(url)?;
        self.known.register_store(url, store.clone());
        Ok(store)
    }
}

fn cloud_store(url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(AmazonS3Builder::from_env().with_url(url.as_str()).build()?),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()?,
        ),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()?,
        ),
        other => {
            return Err(datafusion::error::DataFusionError::Configuration(format!(
                "no object store for {other}:// URLs ({url}); a medlake cluster reads local \
                 files, s3://, az://, abfss:// and gs://"
            )));
        }
    };
    Ok(store)
}

/// `medlake ballista scheduler`: Ballista's scheduler with medlake's functions, until
/// the process is stopped.
pub async fn run_scheduler(bind: SocketAddr, external_host: Option<String>) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: external_host.unwrap_or_else(|| bind.ip().to_string()),
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(Arc::new(cluster_session))
    .with_override_config_producer(Arc::new(SessionConfig::new_with_ballista));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("could not set up the Ballista scheduler's state")?;
    tracing::info!("Ballista scheduler (medlake's functions) listening on {bind}");
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .with_context(|| {
            format!("the Ballista scheduler on {bind} stopped; is the port in use? Choose another with --listen")
        })
}

/// How `medlake ballista executor` reaches its scheduler and where it listens.
pub struct ExecutorSettings {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind_host: String,
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    pub work_dir: Option<String>,
    pub concurrent_tasks: usize,
    /// How long to wait for the scheduler to listen before giving up.
    pub scheduler_wait: std::time::Duration,
}

/// `medlake ballista executor`: Ballista's executor with medlake's functions and object
/// stores, until the process is stopped.
pub async fn run_executor(s: ExecutorSettings) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let functions = Arc::new(cluster_functions()?);
    for (port, flag) in [(s.port, "--port"), (s.grpc_port, "--grpc-port")] {
        check_can_listen(&s.bind_host, port, flag)?;
    }
    wait_for_scheduler(&s.scheduler_host, s.scheduler_port, s.scheduler_wait).await?;
    let config = ExecutorProcessConfig {
        scheduler_host: s.scheduler_host,
        scheduler_port: s.scheduler_port,
        bind_host: s.bind_host,
        external_host: s.external_host,
        port: s.port,
        grpc_port: s.grpc_port,
        work_dir: s.work_dir,
        vcores: s.concurrent_tasks,
        override_function_registry: Some(functions),
        override_runtime_producer: Some(Arc::new(|_: &SessionConfig| cluster_runtime())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .context("the Ballista executor stopped")
}

/// Whether this process can listen on `host:port`, as the executor will. Ballista's
/// executor binds its Flight port only after it has registered with the scheduler, and
/// when that bind fails it logs the error and exits with status 0; checking first gives
/// an error that names the port, and a failed exit, before anything is registered.
/// (The port can still be taken between this check and Ballista's bind.)
fn check_can_listen(host: &str, port: u16, flag: &str) -> Result<()> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| anyhow::anyhow!("--bind-host {host} is not an address of this machine"))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }?;
    // As the executor's listeners do, so that connections closed a moment ago do not
    // count as a use of the port.
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .and_then(|()| socket.listen(1).map(drop))
        .with_context(|| {
            format!(
                "the executor cannot listen on {addr} ({flag}): another process, or an open \
             connection of this machine, uses that port; choose another with {flag}"
            )
        })
}

/// Wait until the scheduler at `host:port` accepts connections, trying every second for
/// up to `wait`, so that a cluster's processes can be started in any order. Ballista's
/// executor tries once and stops when no scheduler answers (its own retry option loops
/// forever: its deadline is measured from an instant taken at each check).
async fn wait_for_scheduler(host: &str, port: u16, wait: std::time::Duration) -> Result<()> {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut attempt = 1u32;
    loop {
        let try_for = Duration::from_secs(2).min(wait.saturating_sub(started.elapsed()));
        let error = match tokio::time::timeout(
            try_for.max(Duration::from_millis(100)),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(_)) => {
                if attempt > 1 {
                    tracing::info!(
                        "the Ballista scheduler at {host}:{port} answers (attempt {attempt})"
                    );
                }
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", try_for.as_millis()),
        };
        let waited = started.elapsed();
        if waited >= wait {
            bail!(
                "no Ballista scheduler answered at {host}:{port} within {} s ({attempt} \
                 attempts, the last: {error}); start it with `medlake ballista scheduler \
                 --listen {host}:{port}`, check --scheduler, or wait longer with \
                 --scheduler-wait-secs",
                wait.as_secs()
            );
        }
        tracing::warn!(
            "the Ballista scheduler at {host}:{port} does not answer yet ({error}); attempt \
             {attempt}, trying again in 1 s for up to {} s more",
            wait.saturating_sub(waited).as_secs()
        );
        tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(waited))).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_executor_refuses_a_port_in_use() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = check_can_listen("127.0.0.1", port, "--port")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("--port"),
            "{e}"
        );
        drop(taken);
        check_can_listen("127.0.0.1", port, "--port").unwrap();
    }

    #[tokio::test]
    async fn an_executor_waits_for_its_scheduler_then_gives_up() {
        // Nothing listens on a port just released: the wait ends with the error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let e = wait_for_scheduler("127.0.0.1", port, std::time::Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(2),
            "{e}"
        );
        assert!(e.contains("--scheduler-wait-secs"), "{e}");
        assert!(e.contains("attempts"), "{e}");
        // A scheduler that starts listening while the executor waits is found.
        let late = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = late.local_addr().unwrap().port();
        drop(late);
        let waiting = tokio::spawn(wait_for_scheduler(
            "127.0.0.1",
            port,
            std::time::Duration::from_secs(30),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        waiting.await.unwrap().unwrap();
        drop(listener);
    }

    #[test]
    fn an_engine_is_local_or_a_scheduler_address() {
        assert_eq!(SqlEngine::parse("local").unwrap(), SqlEngine::Local);
        assert_eq!(
            SqlEngine::parse("ballista://sched.example:50077").unwrap(),
            SqlEngine::Ballista {
                host: "sched.example".into(),
                port: 50077
            }
        );
        assert_eq!(
            SqlEngine::parse("ballista://10.0.0.5").unwrap().to_string(),
            "ballista://10.0.0.5:50050"
        );
        for bad in ["spark://x:1", "ballista://", "ballista://h:1/db", "h:1"] {
            assert!(SqlEngine::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_cluster_knows_the_json_functions() {
        let functions = cluster_functions().unwrap();
        for f in ["json_get_str", "json_get", "json_contains", "json_length"] {
            assert!(
                datafusion::execution::FunctionRegistry::udf(&functions, f).is_ok(),
                "{f}"
            );
        }
    }
}
