//! The `medlake` binary: serve, ingest, sql, generate, optimize, fhirpath, views, features, ballista.

mod allocator;
mod cluster;
mod config;
mod error;
mod features_cmd;
mod ingest_cmd;
mod output;
mod server;
mod views_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use medlake_lake::{Lake, LakeOptions};

use crate::config::FileConfig;

/// medlake: a health-data lakehouse. FHIR R4 lands in Delta Lake tables and is served,
/// from that one copy, by SQL and a FHIR REST API.
#[derive(Parser, Debug)]
#[command(name = "medlake", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Where the lake lives: a local folder, file://, s3://, az://, abfss:// or gs://
    /// [default: ./medlake-data]
    #[arg(long, global = true, env = "MEDLAKE_DATA")]
    data: Option<String>,
    /// The workspace: a folder of tables under the data root [default: default]
    #[arg(long, global = true, env = "MEDLAKE_WORKSPACE")]
    workspace: Option<String>,
    /// Local folder for the write-ahead log [default: <data>/<workspace>/_wal for local
    /// data, ./medlake-wal/<workspace> for object stores]
    #[arg(long, global = true, env = "MEDLAKE_WAL_DIR")]
    wal_dir: Option<PathBuf>,
    /// A TOML file with defaults for these settings [default: ./medlake.toml if present]
    #[arg(long, global = true, env = "MEDLAKE_CONFIG")]
    config: Option<PathBuf>,
    /// Start even though the write-ahead log is damaged in its middle: keep what comes
    /// before the damage and set the rest aside as *.wal.damaged. The acknowledged writes
    /// after the damage are lost; without this flag medlake refuses to start and names
    /// the damaged segment and byte.
    #[arg(long, global = true)]
    wal_truncate_damaged: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve SQL and the FHIR API over HTTP, and SQL over the Postgres wire protocol.
    ///
    /// Example: medlake serve --demo
    Serve(ServeArgs),
    /// Load FHIR R4 files (NDJSON, NDJSON.gz, Bundles, single resources) into the lake.
    ///
    /// Records that fail the R4 structural checks are reported with their file and line
    /// (or Bundle entry) and stored in `medlake.ingest_errors`; every good record lands.
    /// Do not run it against a lake that a running server writes to: POST the data to the
    /// server's /ingest endpoint instead.
    ///
    /// Example: medlake ingest ./synthea/fhir ./more/Observation.ndjson.gz
    Ingest(IngestArgs),
    /// Run a read-only SQL query.
    ///
    /// Tables: fhir.<type> (current versions), fhir_history.<type> (every version),
    /// views.<name> (materialized views: medlake views list), medlake.ingest_errors. JSON functions such as json_get_str(resource, 'gender') work.
    ///
    /// Example: medlake sql "SELECT json_get_str(resource, 'gender') AS g, count(*) FROM fhir.patient GROUP BY g"
    Sql(SqlArgs),
    /// Write deterministic synthetic FHIR R4 NDJSON, one file per resource type.
    ///
    /// Example: medlake generate --patients 100 --seed 7 --out ./synthetic
    Generate(GenerateArgs),
    /// Compact small files, checkpoint the Delta logs, and vacuum old files.
    ///
    /// Example: medlake optimize --retention-hours 168
    Optimize(OptimizeArgs),
    /// Evaluate a FHIRPath expression on a resource and print the result as JSON.
    ///
    /// Example: medlake fhirpath "Patient.name.where(use = 'official').family" --input patient.json
    Fhirpath(FhirpathArgs),
    /// SQL-on-FHIR v2 ViewDefinitions: flat tables of FHIR resources, run over files or
    /// kept in the lake as materialized views (`views.<name>` in SQL).
    ///
    /// Example: medlake views create blood_pressure.json; medlake views list
    Views {
        #[command(subcommand)]
        command: views_cmd::ViewsCommand,
    },
    /// Extract point-in-time ML features from a spec (TOML or JSON): one row per patient
    /// with demographics, Observation statistics, Condition flags, medication and
    /// encounter counts as known at the index time, a label and a train/test split.
    ///
    /// Example: medlake features examples/features/diabetes.toml -o features.parquet
    Features(features_cmd::FeaturesArgs),
    /// Run a Ballista scheduler or executor with medlake's functions, for
    /// `medlake sql --engine ballista://host:port` and `serve --sql-engine`.
    ///
    /// Example: medlake ballista scheduler --listen 0.0.0.0:50050
    Ballista {
        #[command(subcommand)]
        command: BallistaCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BallistaCommand {
    /// Ballista's scheduler: plans the queries and hands their tasks to executors.
    ///
    /// Example: medlake ballista scheduler --listen 0.0.0.0:50050
    Scheduler(SchedulerArgs),
    /// A Ballista executor: runs tasks, reading the lake's files from local disk or
    /// object storage (credentials from the usual AWS_*, AZURE_*, GOOGLE_* variables).
    ///
    /// Example: medlake ballista executor --scheduler sched-host:50050 --external-host this-host
    Executor(ExecutorArgs),
}

#[derive(Args, Debug)]
struct SchedulerArgs {
    /// Address to listen on for clients and executors.
    #[arg(long, default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    /// The host name executors and clients reach this scheduler by [default: the listen
    /// address's IP]
    #[arg(long)]
    external_host: Option<String>,
}

#[derive(Args, Debug)]
struct ExecutorArgs {
    /// The scheduler, as host:port (or ballista://host:port).
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name the scheduler and clients reach this executor by (they fetch
    /// answers from it) [default: the address the scheduler sees it connect from]
    #[arg(long)]
    external_host: Option<String>,
    /// Port of the Arrow Flight service that serves the tasks' results.
    #[arg(long, default_value_t = 50061)]
    port: u16,
    /// Port of the gRPC service the scheduler pushes tasks to.
    #[arg(long, default_value_t = 50062)]
    grpc_port: u16,
    /// Folder for the tasks' intermediate files [default: a temporary folder]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Tasks run at once; 0 for one per core.
    #[arg(long, default_value_t = 0)]
    concurrent_tasks: usize,
    /// Seconds to wait for the scheduler to listen, trying every second, so that the
    /// scheduler and executors can be started in any order.
    #[arg(long, default_value_t = 60)]
    scheduler_wait_secs: u64,
}

#[derive(Args, Debug)]
struct FhirpathArgs {
    /// The FHIRPath expression (FHIRPath N1 with the FHIR R4 additions).
    expression: String,
    /// A JSON file with one FHIR resource; `-` reads standard input.
    #[arg(long, short)]
    input: PathBuf,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "MEDLAKE_LISTEN")]
    listen: Option<String>,
    /// Address for Arrow Flight SQL (ADBC, JDBC, ODBC, pyarrow), or `off`
    /// [default: 127.0.0.1:50051]
    #[arg(long, env = "MEDLAKE_FLIGHT_LISTEN")]
    flight_listen: Option<String>,
    /// Address to serve the Postgres wire protocol on (psql, DBeaver, Power BI), or
    /// `off` [default: 127.0.0.1:5433]
    #[arg(long, env = "MEDLAKE_PG_LISTEN")]
    pg_listen: Option<String>,
    /// If the workspace is empty, generate and load a small demo data set first.
    #[arg(long)]
    demo: bool,
    /// Patients in the demo data set.
    #[arg(long, default_value_t = 25)]
    demo_patients: u64,
    /// Seconds between flushes of the write buffer to Delta [default: 5]
    #[arg(long, env = "MEDLAKE_FLUSH_INTERVAL_SECS")]
    flush_interval_secs: Option<u64>,
    /// Seconds between background compactions of small files; 0 turns them off
    /// [default: 60]
    #[arg(long, env = "MEDLAKE_COMPACT_INTERVAL_SECS")]
    compact_interval_secs: Option<u64>,
    /// Seconds between looks for Delta commits made by other processes (`medlake
    /// optimize`, a restore, Spark); 0 turns them off [default: 30]
    #[arg(long, env = "MEDLAKE_REFRESH_INTERVAL_SECS")]
    refresh_interval_secs: Option<u64>,
    /// Refuse writes with 503 while this many rows wait for object storage
    /// [default: 2000000]
    #[arg(long, env = "MEDLAKE_MAX_TAIL_ROWS")]
    max_tail_rows: Option<usize>,
    /// Refuse writes with 503 while the write-ahead log holds this many MiB that wait
    /// for object storage [default: 4096]
    #[arg(long, env = "MEDLAKE_MAX_WAL_MIB")]
    max_wal_mib: Option<u64>,
    /// Where `POST /sql` runs: `local`, or a Ballista cluster's scheduler,
    /// `ballista://host:port`, which reads only what is committed to Delta
    /// [default: local]
    #[arg(long, env = "MEDLAKE_SQL_ENGINE")]
    sql_engine: Option<String>,
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// Files or folders to load (folders are searched for .ndjson, .ndjson.gz, .json, .json.gz).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Rows per Delta commit and file group.
    #[arg(long, default_value_t = 200_000)]
    batch_rows: usize,
    /// Send the files to the medlake server at this URL (e.g. http://127.0.0.1:8080)
    /// instead of writing the workspace directly: needed while a server owns it.
    #[arg(long, env = "MEDLAKE_SERVER")]
    server: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Args, Debug)]
struct SqlArgs {
    /// The query.
    query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write to this file instead of standard output (required for parquet on a terminal).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Where the query runs: `local`, or a Ballista cluster's scheduler,
    /// `ballista://host:port` (see `medlake ballista`). Either reads what is committed
    /// to Delta [default: local]
    #[arg(long, env = "MEDLAKE_SQL_ENGINE")]
    engine: Option<String>,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Number of patients.
    #[arg(long, default_value_t = 100)]
    patients: u64,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct OptimizeArgs {
    /// Keep replaced files this many hours, for readers of older snapshots and time travel.
    #[arg(long, default_value_t = 168)]
    retention_hours: u64,
}

/// Settings after flags, environment and file are merged.
struct Settings {
    data: String,
    workspace: String,
    wal_dir: Option<PathBuf>,
    wal_recovery: medlake_lake::Recovery,
    file: FileConfig,
}

impl Settings {
    fn resolve(g: &Global) -> Result<Settings> {
        let file = FileConfig::load(g.config.as_deref())?;
        Ok(Settings {
            data: g
                .data
                .clone()
                .or_else(|| file.data.clone())
                .unwrap_or_else(|| config::DEFAULT_DATA.into()),
            workspace: g
                .workspace
                .clone()
                .or_else(|| file.workspace.clone())
                .unwrap_or_else(|| config::DEFAULT_WORKSPACE.into()),
            wal_dir: g.wal_dir.clone().or_else(|| file.wal_dir.clone()),
            wal_recovery: if g.wal_truncate_damaged {
                medlake_lake::Recovery::TruncateAtDamage
            } else {
                medlake_lake::Recovery::Strict
            },
            file,
        })
    }

    fn lake_options(&self, with_wal: bool) -> LakeOptions {
        LakeOptions {
            data: self.data.clone(),
            workspace: self.workspace.clone(),
            wal_dir: self.wal_dir.clone(),
            with_wal,
            wal_recovery: self.wal_recovery,
            ..LakeOptions::new(self.data.clone())
        }
    }
}

fn main() -> std::process::ExitCode {
    allocator::keep_freed_pages();
    let cli = Cli::parse();
    // `medlake sql ... | head` should end quietly when the reader goes away, as other
    // command-line tools do, not panic on the broken pipe (Rust ignores SIGPIPE). Not in
    // the servers: there a peer that closes its connection while a vectored write is
    // under way (hyper's, tonic's: `writev` raises it where `send` is told not to) would
    // kill the whole process. Ballista's executor died so under load, before its Flight
    // port listened (tests/tests/ballista.rs was flaky for it).
    if !matches!(cli.command, Command::Serve(_) | Command::Ballista { .. }) {
        // SAFETY: called before any thread starts; resets one signal to its default
        // action.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // medlake's own `info` when serving, and only warnings from the crates below it: the
    // Delta kernel alone logs dozens of `info` lines per table at start.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,medlake=info,medlake_lake=info,medlake_query=info",
        Command::Ballista { .. } => {
            "warn,medlake=info,ballista_scheduler=info,ballista_executor=info"
        }
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDLAKE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Generate(a) => generate(a),
        Command::Fhirpath(a) => fhirpath(a),
        Command::Views { command } => views_cmd::run(command, &settings).await,
        Command::Features(a) => features_cmd::run(a, &settings).await,
        Command::Ingest(a) => {
            if let Some(server) = &a.server {
                let summary = ingest_cmd::run_remote(server, &a.paths, !a.quiet).await?;
                summary.print();
                return Ok(());
            }
            let lake = Lake::open(settings.lake_options(true)).await?;
            let summary = ingest_cmd::run(&lake, &a.paths, !a.quiet, a.batch_rows).await?;
            // Anything replayed from an earlier server's WAL goes to Delta too.
            lake.flush().await?;
            summary.print();
            Ok(())
        }
        Command::Sql(a) => {
            let engine = cluster::SqlEngine::parse(
                a.engine
                    .as_deref()
                    .or(settings.file.sql_engine.as_deref())
                    .unwrap_or("local"),
            )?;
            let lake = Lake::open(settings.lake_options(false)).await?;
            let answer = match engine {
                cluster::SqlEngine::Local => {
                    medlake_query::QueryEngine::new(lake)?
                        .query(&a.query)
                        .await?
                }
                cluster::SqlEngine::Ballista { host, port } => {
                    // `medlake sql` keeps no tail: either engine answers from Delta.
                    let (answer, notice) = cluster::BallistaEngine::new(lake, &host, port)
                        .query(&a.query)
                        .await?;
                    if let Some(n) = notice {
                        eprintln!("note: {n}");
                    }
                    answer
                }
            };
            output::write_cli(&answer.batches, a.format, a.output.as_deref())
        }
        Command::Ballista { command } => run_ballista(command).await,
        Command::Optimize(a) => {
            // A server that owns the workspace keeps serving meanwhile: optimize then runs
            // without the WAL (whose tail is the server's to flush), and the server follows
            // the rewritten files at its next refresh.
            let lake = match Lake::open(settings.lake_options(true)).await {
                Err(medlake_lake::LakeError::WalLocked { dir }) => {
                    println!(
                        "a server is writing to this workspace (its WAL {dir} is locked): \
                         optimizing what is in Delta; the server follows the new files"
                    );
                    Lake::open(settings.lake_options(false)).await?
                }
                other => other?,
            };
            let reports = lake
                .optimize(Duration::from_secs(a.retention_hours * 3600))
                .await?;
            for r in reports {
                println!(
                    "{:<24} compacted {} files into {}, vacuumed {} files",
                    r.table, r.files_removed, r.files_added, r.files_vacuumed
                );
            }
            Ok(())
        }
        Command::Serve(a) => {
            let listen = a
                .listen
                .clone()
                .or_else(|| settings.file.listen.clone())
                .unwrap_or_else(|| config::DEFAULT_LISTEN.into());
            let addr: SocketAddr = listen.parse().with_context(|| {
                format!("--listen {listen} is not an address like 127.0.0.1:8080")
            })?;
            let flight = config::optional_addr(
                a.flight_listen
                    .as_deref()
                    .or(settings.file.flight_listen.as_deref())
                    .unwrap_or(config::DEFAULT_FLIGHT_LISTEN),
                "--flight-listen",
            )?;
            let pg = config::optional_addr(
                a.pg_listen
                    .as_deref()
                    .or(settings.file.pg_listen.as_deref())
                    .unwrap_or(server::pgwire::DEFAULT_PG_LISTEN),
                "--pg-listen",
            )?;
            let flush = a
                .flush_interval_secs
                .or(settings.file.flush_interval_secs)
                .unwrap_or(5);
            let compact = a
                .compact_interval_secs
                .or(settings.file.compact_interval_secs)
                .unwrap_or(60);
            let refresh = a
                .refresh_interval_secs
                .or(settings.file.refresh_interval_secs)
                .unwrap_or(30);
            let defaults = LakeOptions::new("");
            let lake = Lake::open(LakeOptions {
                search_index: true,
                max_tail_rows: a
                    .max_tail_rows
                    .or(settings.file.max_tail_rows)
                    .unwrap_or(defaults.max_tail_rows),
                max_wal_bytes: a
                    .max_wal_mib
                    .or(settings.file.max_wal_mib)
                    .map_or(defaults.max_wal_bytes, |m| m.saturating_mul(1 << 20)),
                ..settings.lake_options(true)
            })
            .await?;
            if a.demo {
                load_demo(&lake, a.demo_patients).await?;
            }
            let sql_engine = cluster::SqlEngine::parse(
                a.sql_engine
                    .as_deref()
                    .or(settings.file.sql_engine.as_deref())
                    .unwrap_or("local"),
            )?;
            let background = server::Background {
                flush_interval: Duration::from_secs(flush),
                compact_interval: (compact > 0).then(|| Duration::from_secs(compact)),
                refresh_interval: (refresh > 0).then(|| Duration::from_secs(refresh)),
            };
            server::serve(lake, addr, pg, flight, background, sql_engine).await
        }
    }
}

/// `medlake ballista scheduler | executor`: run until stopped.
async fn run_ballista(command: BallistaCommand) -> Result<()> {
    match command {
        BallistaCommand::Scheduler(a) => cluster::run_scheduler(a.listen, a.external_host).await,
        BallistaCommand::Executor(a) => {
            let address = a
                .scheduler
                .strip_prefix("ballista://")
                .unwrap_or(&a.scheduler);
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .with_context(|| {
                    format!(
                        "--scheduler {} is not host:port, like 127.0.0.1:50050",
                        a.scheduler
                    )
                })?;
            let work_dir = a
                .work_dir
                .map(|d| {
                    d.to_str()
                        .map(str::to_string)
                        .with_context(|| format!("--work-dir {} is not valid UTF-8", d.display()))
                })
                .transpose()?;
            cluster::run_executor(cluster::ExecutorSettings {
                scheduler_host: host,
                scheduler_port: port,
                bind_host: a.bind_host,
                external_host: a.external_host,
                port: a.port,
                grpc_port: a.grpc_port,
                work_dir,
                concurrent_tasks: a.concurrent_tasks,
                scheduler_wait: std::time::Duration::from_secs(a.scheduler_wait_secs),
            })
            .await
        }
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    let config = medlake_ingest::synth::GenerateConfig {
        patients: a.patients,
        seed: a.seed,
    };
    let bar = progress_bar(a.patients, !a.quiet, "patients");
    let manifest =
        medlake_ingest::synth::generate_to_dir(&config, &a.out, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    println!(
        "wrote {} resources for {} patients to {}",
        manifest.total,
        manifest.patients,
        a.out.display()
    );
    for (t, n) in &manifest.counts {
        println!("  {t:<20} {n}");
    }
    Ok(())
}

/// When the workspace is empty, generate a small data set and load it.
async fn load_demo(lake: &Lake, patients: u64) -> Result<()> {
    if !lake.resource_types().is_empty() {
        println!("demo: the workspace already holds data; not generating more");
        return Ok(());
    }
    if patients == 0 {
        bail!("--demo-patients must be at least 1");
    }
    let dir = tempfile::tempdir().context("could not create a temporary folder for demo data")?;
    println!("demo: generating {patients} synthetic patients...");
    let config = medlake_ingest::synth::GenerateConfig { patients, seed: 42 };
    let manifest = medlake_ingest::synth::generate_to_dir(&config, dir.path(), &mut |_| {})?;
    println!("demo: loading {} resources...", manifest.total);
    let summary = ingest_cmd::run(lake, &[dir.path().to_path_buf()], true, 200_000).await?;
    summary.print();
    Ok(())
}

pub(crate) fn progress_bar(len: u64, visible: bool, unit: &str) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// An error and its causes on one line, leaving out a cause whose text the message
/// already quotes (DataFusion and delta-rs errors repeat their sources).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// `medlake fhirpath`: the result collection as a JSON array on stdout.
fn fhirpath(a: FhirpathArgs) -> Result<()> {
    use medlake_ingest::fhirpath::Expression;
    let text = if a.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("could not read the resource from standard input")?;
        s
    } else {
        std::fs::read_to_string(&a.input)
            .with_context(|| format!("could not read {}", a.input.display()))?
    };
    let resource: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", a.input.display()))?;
    let expression = Expression::parse(&a.expression).map_err(|e| {
        anyhow::anyhow!(
            "the expression is not valid FHIRPath:\n{}",
            e.pointer(&a.expression)
        )
    })?;
    let items = expression
        .evaluate(&resource)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let out: Vec<serde_json::Value> = items.iter().map(|i| i.to_json()).collect();
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}
