//! `medlake views`: SQL-on-FHIR ViewDefinitions.
//!
//! `create`, `refresh`, `list` and `drop` manage the lake's materialized views
//! ([`medlake_lake::matview`]): tables `views.<name>` kept fresh by every flush and bulk
//! load. They change the workspace, so they open it as its owner (with the WAL), and are
//! refused while a server holds it: a running server creates a view when a ViewDefinition
//! tagged `medlake` is stored through its FHIR API. `list` only reads, and works beside a
//! running server.
//!
//! `run`: a ViewDefinition over FHIR files or over the lake, printed as a table, CSV or
//! JSON, or written as Parquet. Without `--input` the view runs over the current versions
//! of its resource type in the workspace (`--data`, `--workspace`), opened read-only as
//! `medlake sql` opens it: what is in Delta, not a running server's unflushed writes (its
//! `$viewdefinition-run` sees those). The resources are streamed from `fhir.<type>` on the
//! query runtime and evaluated batch by batch ([`medlake_query::view_run`]); only the rows
//! are kept.
//!
//! The files are read with the same readers as `medlake ingest` (NDJSON, NDJSON.gz,
//! Bundles, single resources, folders of them), so a transaction Bundle's `urn:uuid:`
//! references are already `Type/id` when `getReferenceKey()` sees them. Every resource is
//! put through [`ViewDefinition::evaluate`]; JSON output is built from those rows
//! directly (complex values stay JSON, nulls are explicit), the other formats go through
//! [`medlake_query::view_batch`] so that their columns are typed (CSV takes collections
//! as JSON text). The rows are held in memory until written (a table or a Parquet file
//! needs them all); for very large views the server's `$viewdefinition-run` streams
//! JSON, NDJSON and CSV instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use medlake_ingest::source::{self, Payload};
use medlake_ingest::view::ViewDefinition;
use medlake_lake::{Lake, LakeError, LakeOptions};
use serde_json::{Map, Value};

use crate::{Format, Settings};

#[derive(Subcommand, Debug)]
pub enum ViewsCommand {
    /// Run a ViewDefinition over FHIR files, or over the lake, and print its rows.
    ///
    /// Without --input it reads the current resources of the view's type in the
    /// workspace (--data, --workspace), as `medlake sql` does.
    ///
    /// Example: medlake views run patient_names.json --input ./synthetic --format csv
    Run(RunArgs),
    /// Create a materialized view `views.<name>` from a ViewDefinition: built from the
    /// stored resources now, and kept fresh by every flush and bulk load from then on.
    /// Refused while a server holds the workspace.
    ///
    /// Example: medlake views create blood_pressure.json
    Create {
        /// The ViewDefinition (SQL-on-FHIR v2), a JSON file with a `name`.
        view: PathBuf,
    },
    /// Rebuild a materialized view from scratch, replacing its table's content.
    ///
    /// Example: medlake views refresh observation
    Refresh {
        /// The view's name (`views.<name>`).
        name: String,
    },
    /// List the materialized views: the built-in ones and those created.
    List,
    /// Drop a materialized view that was created: its definition and its table.
    ///
    /// Example: medlake views drop blood_pressure
    Drop {
        /// The view's name (`views.<name>`).
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The ViewDefinition (SQL-on-FHIR v2), a JSON file.
    view: PathBuf,
    /// The resources: an .ndjson or .ndjson.gz file, a Bundle or resource .json file, or
    /// a folder of them [default: the lake's current resources]
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Output format (parquet needs --output).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Run a `views` command in the workspace that `settings` names.
pub async fn run(command: ViewsCommand, settings: &Settings) -> Result<()> {
    let lake = settings.lake_options(true);
    match command {
        ViewsCommand::Run(a) => run_view(a, settings).await,
        ViewsCommand::Create { view } => {
            let text = std::fs::read_to_string(&view)
                .with_context(|| format!("could not read the view {}", view.display()))?;
            let json: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", view.display()))?;
            let lake = open_as_owner(lake, "create a view").await?;
            // Rows an earlier server left in the WAL go to Delta first, so that the
            // build sees every acknowledged write.
            lake.flush().await?;
            let created = lake.create_view(json).await?;
            println!(
                "created views.{} over {}",
                created.name(),
                created.resource_type()
            );
            Ok(())
        }
        ViewsCommand::Refresh { name } => {
            let lake = open_as_owner(lake, "refresh a view").await?;
            lake.flush().await?;
            lake.refresh_view(&name).await?;
            println!("refreshed views.{}", name.to_ascii_lowercase());
            Ok(())
        }
        ViewsCommand::Drop { name } => {
            let lake = open_as_owner(lake, "drop a view").await?;
            lake.drop_view(&name).await?;
            println!("dropped views.{}", name.to_ascii_lowercase());
            Ok(())
        }
        ViewsCommand::List => {
            let lake = Lake::open(LakeOptions {
                with_wal: false,
                ..lake
            })
            .await?;
            for v in lake.view_status() {
                println!(
                    "views.{:<24} {:<20} {:<9} {}",
                    v.name,
                    v.resource_type,
                    if v.builtin { "built-in" } else { "created" },
                    v.seen.map_or_else(
                        || "not built yet".to_string(),
                        |s| format!("up to {} version {s}", v.resource_type)
                    )
                );
            }
            Ok(())
        }
    }
}

/// Open the workspace with its WAL, or say why a running server prevents it.
async fn open_as_owner(options: LakeOptions, what: &str) -> Result<Lake> {
    match Lake::open(LakeOptions {
        with_wal: true,
        ..options
    })
    .await
    {
        Err(LakeError::WalLocked { dir }) => bail!(
            "a server is writing to this workspace (its WAL {dir} is locked), and views \
             are changed by the process that owns it. Either store the ViewDefinition \
             through the server's FHIR API with a meta.tag of code `medlake` (the server \
             then keeps the view), or stop the server, {what} with this command, and \
             start the server again"
        ),
        other => Ok(other?),
    }
}

async fn run_view(a: RunArgs, settings: &Settings) -> Result<()> {
    let text = std::fs::read_to_string(&a.view)
        .with_context(|| format!("could not read the view {}", a.view.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", a.view.display()))?;
    let view = ViewDefinition::from_json(&json)
        .with_context(|| format!("{} is not a usable ViewDefinition", a.view.display()))?;
    if a.format == Format::Parquet && a.output.is_none() {
        bail!("Parquet is binary: add --output FILE.parquet");
    }
    let rows = match &a.input {
        Some(input) => evaluate_files(&view, input)?,
        None => evaluate_lake(view.clone(), settings).await?,
    };
    match a.format {
        Format::Json => write_json(&view, &rows, a.output.as_deref()),
        format => {
            // CSV has no nested values: collections go out as JSON text there.
            let batch = if format == Format::Csv {
                medlake_query::view_batch::rows_to_flat_batch(&view, &rows)?
            } else {
                medlake_query::view_batch::rows_to_batch(&view, &rows)?
            };
            crate::output::write_cli(&[batch], format, a.output.as_deref())
        }
    }
}

/// The rows of the current resources of the view's type in the workspace.
async fn evaluate_lake(view: ViewDefinition, settings: &Settings) -> Result<Vec<Vec<Value>>> {
    let lake = Lake::open(settings.lake_options(false)).await?;
    let engine = medlake_query::QueryEngine::new(lake)?;
    let rows = medlake_query::view_run::run_over_lake(&engine, Arc::new(view), Default::default())
        .collect()
        .await?;
    Ok(rows)
}

/// The rows of every resource under `input`, in file order.
fn evaluate_files(view: &ViewDefinition, input: &Path) -> Result<Vec<Vec<Value>>> {
    let files = source::input_files(&[input.to_path_buf()])?;
    if files.is_empty() {
        bail!(
            "{} holds no .ndjson, .ndjson.gz, .json or .json.gz files",
            input.display()
        );
    }
    let bytes = Arc::new(AtomicU64::new(0));
    let mut rows = Vec::new();
    for file in &files {
        let mut failure: Option<anyhow::Error> = None;
        source::read_file(file, &bytes, &mut |record| {
            if failure.is_some() {
                return;
            }
            let origin = record.origin;
            let resource = match record.payload {
                Payload::Json(v) => v,
                Payload::Text(t) => match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(e) => {
                        failure = Some(anyhow::anyhow!("{origin}: not JSON: {e}"));
                        return;
                    }
                },
                Payload::Broken(issue) => {
                    failure = Some(anyhow::anyhow!("{origin}: {}", issue.diagnostics));
                    return;
                }
            };
            match view.evaluate(&resource) {
                Ok(r) => rows.extend(r),
                Err(e) => failure = Some(anyhow::anyhow!("{origin}: {e}")),
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(rows)
}

/// One JSON array of row objects, keys in column order, nulls explicit.
fn write_json(view: &ViewDefinition, rows: &[Vec<Value>], output: Option<&Path>) -> Result<()> {
    let names: Vec<&str> = view.columns().iter().map(|c| c.name.as_str()).collect();
    let objects: Vec<Value> = rows
        .iter()
        .map(|row| {
            Value::Object(
                names
                    .iter()
                    .map(|n| n.to_string())
                    .zip(row.iter().cloned())
                    .collect::<Map<String, Value>>(),
            )
        })
        .collect();
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("could not create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    serde_json::to_writer_pretty(&mut out, &Value::Array(objects))?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
