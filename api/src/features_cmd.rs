//! `medlake features`: point-in-time ML features from a spec file
//! ([`medlake_query::features`] has the design).
//!
//! The workspace is opened read-only, as `medlake sql` opens it: what is in Delta, not a
//! running server's unflushed writes (its `POST /features` sees those). A cohort given as
//! a FHIR search needs the search index, which is then built when the lake opens. The
//! rows are written as they come from the query runtime: Parquet row group by row group,
//! CSV and JSON lines batch by batch; only `--format table` gathers them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use datafusion::arrow::array::{AsArray, RecordBatch};
use futures::StreamExt;
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;
use medlake_query::features::{self, FeatureSpec, Files};

use crate::Settings;

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// The feature spec, TOML or JSON (see examples/features/).
    spec: PathBuf,
    /// Write to this file instead of standard output (required for parquet on a terminal).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FeatureFormat::Parquet)]
    format: FeatureFormat,
    /// Print the generated SQL instead of running it.
    #[arg(long)]
    print_sql: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FeatureFormat {
    Parquet,
    Csv,
    /// One JSON object per line.
    Ndjson,
    Table,
}

pub async fn run(a: FeaturesArgs, settings: &Settings) -> Result<()> {
    let text = std::fs::read_to_string(&a.spec)
        .with_context(|| format!("could not read the spec {}", a.spec.display()))?;
    let spec = FeatureSpec::parse(&text)
        .with_context(|| format!("{} is not a usable feature spec", a.spec.display()))?;
    let dir = a
        .spec
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let lake = Lake::open(LakeOptions {
        search_index: spec.cohort.search.is_some(),
        ..settings.lake_options(false)
    })
    .await?;
    let engine = QueryEngine::new(lake.clone())?;
    if a.print_sql {
        let sql = features::plan_sql(&engine, &lake, &spec, Files::RelativeTo(&dir)).await?;
        println!("{sql}");
        return Ok(());
    }
    if a.format == FeatureFormat::Parquet
        && a.output.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        bail!("Parquet is binary: add --output FILE.parquet, or redirect standard output");
    }
    let mut stream = features::extract(&engine, &lake, &spec, Files::RelativeTo(&dir)).await?;
    let schema = stream.schema();
    let out: Box<dyn Write + Send> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("could not create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut sink = Sink::new(a.format, out, &schema)?;
    let (mut rows, mut test) = (0usize, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.context("the feature extraction failed")?;
        rows += batch.num_rows();
        if let Some(split) = batch.column_by_name("split") {
            test += split
                .as_string::<i32>()
                .iter()
                .filter(|s| *s == Some("test"))
                .count();
        }
        sink.write(&batch)?;
    }
    sink.finish()?;
    if let Some(p) = &a.output {
        eprintln!(
            "wrote {rows} rows ({} train, {test} test) and {} columns to {}",
            rows - test,
            schema.fields().len(),
            p.display()
        );
    }
    Ok(())
}

/// Where the rows go, batch by batch.
enum Sink {
    Parquet(parquet::arrow::ArrowWriter<Box<dyn Write + Send>>),
    Csv(datafusion::arrow::csv::Writer<Box<dyn Write + Send>>),
    Ndjson(datafusion::arrow::json::LineDelimitedWriter<Box<dyn Write + Send>>),
    Table(Box<dyn Write + Send>, Vec<RecordBatch>),
}

impl Sink {
    fn new(
        format: FeatureFormat,
        out: Box<dyn Write + Send>,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<Sink> {
        Ok(match format {
            FeatureFormat::Parquet => Sink::Parquet(parquet::arrow::ArrowWriter::try_new(
                out,
                schema.clone(),
                None,
            )?),
            FeatureFormat::Csv => Sink::Csv(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            FeatureFormat::Ndjson => {
                Sink::Ndjson(datafusion::arrow::json::LineDelimitedWriter::new(out))
            }
            FeatureFormat::Table => Sink::Table(out, Vec::new()),
        })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<()> {
        match self {
            Sink::Parquet(w) => w.write(b)?,
            Sink::Csv(w) => w.write(b)?,
            Sink::Ndjson(w) => w.write(b)?,
            Sink::Table(_, all) => all.push(b.clone()),
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Parquet(w) => {
                let mut out = w.into_inner()?;
                out.flush()?;
            }
            Sink::Csv(w) => w.into_inner().flush()?,
            Sink::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
            Sink::Table(mut out, all) => {
                writeln!(
                    out,
                    "{}",
                    datafusion::arrow::util::pretty::pretty_format_batches(&all)?
                )?;
                out.flush()?;
            }
        }
        Ok(())
    }
}
