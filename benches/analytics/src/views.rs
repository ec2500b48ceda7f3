//! `views`: the cost of `views.observation`, built from scratch and maintained by a bulk
//! load, in resources per second, against the raw `serde_json::from_str::<Value>` parse
//! of the same resources on 2 threads (a rayon pool, as `benches/ingest` measures it).
//!
//! Three measures, each printed with the raw parse of the same run:
//!
//! - **From scratch** (`--data`, a loaded lake that no server holds; `--build-rounds 0`
//!   skips it): `Lake::refresh_view`,
//!   the call behind `medlake views refresh observation`, rounds interleaved with the raw
//!   parse of every current Observation of the lake. The raw parse reads the resources
//!   from the lake in chunks of about 256k and times only the parse of each chunk; the
//!   scan that feeds the next chunk runs at most two batches ahead meanwhile.
//! - **Stages** (`--data`): where a build's time goes, on one thread, over the first
//!   `--stage-rows` Observations: the JSON parse, the FHIRPath evaluation of the view on
//!   parsed resources, the view read straight from the text (what a build does), the
//!   whole per-resource evaluation into Arrow (`MaterializedView::evaluate_batch`:
//!   `evaluate_text`, type checks, Arrow builders),
//!   and the Parquet encoding of its rows; and, on the whole table, the scan of the rows
//!   a build reads. `--stage-repeat N` runs the stages of what a build does N times and
//!   gives the fastest, skipping the two that build trees.
//! - **Maintenance** (`--sample`, an Observation NDJSON file): a bulk load of its first
//!   `--sample-rows` lines into a fresh lake that keeps its views (opened as owner, with
//!   the WAL) against the same load into a fresh lake that keeps none (opened without
//!   the WAL, as a reader that bulk-loads), interleaved; the difference is what keeping
//!   the views cost, and the sample over that difference the maintenance rate. The
//!   from-scratch build of the same view on the loaded sample lake is timed too.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use medlake_ingest::source::{Origin, Payload, RawRecord};
use medlake_lake::{BulkOptions, Lake, LakeOptions, TableKind};
use medlake_query::QueryEngine;
use parquet::arrow::ArrowWriter;
use rayon::prelude::*;
use serde_json::Value;

const VIEW: &str = "observation";

/// Rows the raw parse takes from the scan at a time.
const PARSE_CHUNK_ROWS: usize = 256 * 1024;

/// Records per chunk of a bulk load, as `medlake ingest` sends them.
const LOAD_CHUNK: usize = 4096;

pub async fn run(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut data = None;
    let mut sample: Option<PathBuf> = None;
    let mut sample_rows = 500_000usize;
    let mut stage_rows = 500_000usize;
    let mut stage_repeat = 1usize;
    let mut work = PathBuf::from("/tmp/bench-views");
    let mut rounds = 3usize;
    let mut build_rounds = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = Some(value()?),
            "--sample" => sample = Some(value()?.into()),
            "--sample-rows" => sample_rows = value()?.parse()?,
            "--stage-rows" => stage_rows = value()?.parse()?,
            "--stage-repeat" => stage_repeat = value()?.parse()?,
            "--work" => work = value()?.into(),
            "--rounds" => rounds = value()?.parse()?,
            "--build-rounds" => build_rounds = Some(value()?.parse()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    ensure!(
        data.is_some() || sample.is_some(),
        "give --data <lake folder> (build from scratch, stages) and/or --sample <Observation \
         NDJSON> (maintenance)"
    );
    ensure!(rounds > 0, "--rounds must be at least 1");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    if let Some(data) = data {
        let build_rounds = build_rounds.unwrap_or(rounds);
        if build_rounds > 0 {
            from_scratch(&data, build_rounds, &pool).await?;
        }
        stages(&data, stage_rows, stage_repeat.max(1)).await?;
    }
    if let Some(sample) = sample {
        maintenance(&sample, sample_rows, &work, rounds, &pool).await?;
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn count(engine: &QueryEngine, sql: &str) -> Result<i64> {
    let out = engine.query(sql).await?;
    let batch = out.batches.first().context("a count gave no batch")?;
    Ok(batch
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0))
}

/// Parse every text of `texts` into a `Value` on the pool; the seconds it took.
fn parse_all(pool: &rayon::ThreadPool, texts: &[&str]) -> Result<f64> {
    let started = Instant::now();
    let parsed: usize = pool.install(|| {
        texts
            .par_iter()
            .map(|t| usize::from(serde_json::from_str::<Value>(t).is_ok()))
            .sum()
    });
    let took = started.elapsed().as_secs_f64();
    ensure!(parsed == texts.len(), "some resources did not parse");
    Ok(took)
}

/// The raw parse of every current Observation: (resources, seconds of parsing).
async fn raw_parse_lake(engine: &QueryEngine, pool: &rayon::ThreadPool) -> Result<(usize, f64)> {
    let df = engine
        .plan(&format!("SELECT resource FROM fhir.{VIEW}"))
        .await?;
    let mut stream = engine.stream(df, None).await?;
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_rows = 0;
    let mut total = 0;
    let mut secs = 0.0;
    loop {
        let next = stream.next().await.transpose()?;
        if let Some(b) = &next {
            chunk_rows += b.num_rows();
            chunk.push(b.clone());
        }
        if chunk_rows >= PARSE_CHUNK_ROWS || (next.is_none() && chunk_rows > 0) {
            let columns = chunk
                .iter()
                .map(|b| cast(b.column(0), &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            let texts: Vec<&str> = columns
                .iter()
                .flat_map(|c| {
                    let c = c.as_string::<i32>();
                    (0..c.len()).map(move |i| c.value(i))
                })
                .collect();
            secs += parse_all(pool, &texts)?;
            total += texts.len();
            chunk.clear();
            chunk_rows = 0;
        }
        if next.is_none() {
            break;
        }
    }
    Ok((total, secs))
}

/// `views.observation` rebuilt from scratch, against the raw parse, interleaved.
async fn from_scratch(data: &str, rounds: usize, pool: &rayon::ThreadPool) -> Result<()> {
    let lake = Lake::open(LakeOptions::new(data)).await.context(
        "a view is rebuilt by the lake's owner: stop the server that holds this lake first",
    )?;
    let engine = QueryEngine::new(lake.clone())?;
    let resources = count(&engine, &format!("SELECT count(*) FROM fhir.{VIEW}")).await?;
    println!("## views.{VIEW} from scratch: {resources} current Observations");
    println!();
    println!("| round | raw parse, 2 threads | view build (`Lake::refresh_view`) | view rows |");
    println!("|---|---|---|---|");
    let (mut parses, mut builds) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (parsed, parse_secs) = raw_parse_lake(&engine, pool).await?;
        ensure!(
            parsed as i64 == resources,
            "the raw parse read {parsed} resources, the count says {resources}"
        );
        let started = Instant::now();
        lake.refresh_view(VIEW).await?;
        let build_secs = started.elapsed().as_secs_f64();
        let rows = count(&engine, &format!("SELECT count(*) FROM views.{VIEW}")).await?;
        println!(
            "| {round} | {parse_secs:.2} s ({:.0}/s) | {build_secs:.2} s ({:.0}/s) | {rows} |",
            parsed as f64 / parse_secs,
            parsed as f64 / build_secs
        );
        parses.push(parse_secs);
        builds.push(build_secs);
    }
    let (parse, build) = (median(parses), median(builds));
    let n = resources as f64;
    println!();
    println!(
        "median: raw parse {:.0} resources/s, view build {:.0} resources/s, build / parse \
         rate {:.2}",
        n / parse,
        n / build,
        parse / build
    );
    println!();
    Ok(())
}

/// Where a build's time goes, each stage on one thread. The stages of what a build does
/// run `repeat` times and give their fastest run; with more than one, the stages that
/// build trees (which take minutes and tell what a build no longer does) are skipped.
async fn stages(data: &str, stage_rows: usize, repeat: usize) -> Result<()> {
    let lake = Lake::open(LakeOptions {
        with_wal: false,
        ..LakeOptions::new(data)
    })
    .await?;
    let engine = QueryEngine::new(lake.clone())?;
    let view = lake
        .view_snapshot(VIEW)
        .with_context(|| format!("the lake has no view {VIEW}"))?
        .view;
    // `fhir_history`, for the `deleted` column a view's evaluation reads: what a build
    // reads, every version (a lake loaded once has one version of each resource).
    let columns = "id, version_id, last_updated, deleted, resource";

    // The scan a build reads, on the whole table (the query runtime's threads).
    let started = Instant::now();
    let df = engine
        .plan(&format!("SELECT {columns} FROM fhir_history.{VIEW}"))
        .await?;
    let mut stream = engine.stream(df, None).await?;
    let mut scanned = 0usize;
    while let Some(b) = stream.next().await {
        scanned += b?.num_rows();
    }
    let scan_secs = started.elapsed().as_secs_f64();

    let df = engine
        .plan(&format!(
            "SELECT {columns} FROM fhir_history.{VIEW} LIMIT {stage_rows}"
        ))
        .await?;
    let batches = engine.collect(df).await?;
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    let texts: Vec<String> = batches
        .iter()
        .map(|b| {
            let c = cast(
                b.column_by_name("resource").context("no resource column")?,
                &DataType::Utf8,
            )?;
            let c = c.as_string::<i32>();
            Ok((0..c.len()).map(|i| c.value(i).to_string()).collect())
        })
        .collect::<Result<Vec<Vec<String>>>>()?
        .concat();

    let (mut parse, mut fhirpath) = (f64::NAN, f64::NAN);
    if repeat == 1 {
        let started = Instant::now();
        let values = texts
            .iter()
            .map(|t| serde_json::from_str::<Value>(t))
            .collect::<Result<Vec<_>, _>>()?;
        parse = started.elapsed().as_secs_f64();

        let started = Instant::now();
        for v in &values {
            view.definition().evaluate(v)?;
        }
        fhirpath = started.elapsed().as_secs_f64();
    }

    // What a build does per resource: the view read straight from the text, without the
    // tree (a view of plain paths; the interpreter otherwise).
    let (mut direct, mut whole) = (f64::INFINITY, f64::INFINITY);
    let mut view_rows = 0;
    let mut evaluated = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        view_rows = 0;
        for t in &texts {
            view_rows += view.definition().evaluate_text(t)?.len();
        }
        direct = direct.min(started.elapsed().as_secs_f64());

        let started = Instant::now();
        evaluated = batches
            .iter()
            .map(|b| view.evaluate_batch(b, None))
            .collect::<Result<Vec<_>, _>>()?;
        whole = whole.min(started.elapsed().as_secs_f64());
    }

    let started = Instant::now();
    let schema = TableKind::schema(view.as_ref());
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        schema,
        Some(TableKind::writer_properties(view.as_ref())),
    )?;
    for b in &evaluated {
        writer.write(b)?;
    }
    let bytes = writer.into_inner()?.len();
    let parquet = started.elapsed().as_secs_f64();

    let rate = |secs: f64| n as f64 / secs;
    println!(
        "## Stages of a build of views.{VIEW}, one thread, {n} Observations ({view_rows} view rows), fastest of {repeat}"
    );
    println!();
    println!("| stage | seconds | resources/s |");
    println!("|---|---|---|");
    println!(
        "| scan of the rows a build reads ({columns}), whole table, {scanned} rows, query threads | {scan_secs:.2} | {:.0} |",
        scanned as f64 / scan_secs
    );
    println!(
        "| `serde_json::from_str::<Value>` | {parse:.2} | {:.0} |",
        rate(parse)
    );
    println!(
        "| FHIRPath evaluation of the view on parsed resources (`ViewDefinition::evaluate`) | {fhirpath:.2} | {:.0} |",
        rate(fhirpath)
    );
    println!(
        "| the view read from the text (`ViewDefinition::evaluate_text`; reads the text directly: {}) | {direct:.2} | {:.0} |",
        view.definition().reads_text_directly(),
        rate(direct)
    );
    println!(
        "| `MaterializedView::evaluate_batch` (`evaluate_text`, type checks, Arrow) | {whole:.2} | {:.0} |",
        rate(whole)
    );
    println!(
        "| of which not `evaluate_text` (type checks, JSON rows, Arrow builders) | {:.2} | |",
        whole - direct
    );
    println!(
        "| Parquet encoding of the view's rows ({} MB, the view's writer properties) | {parquet:.2} | {:.0} |",
        bytes / 1_000_000,
        rate(parquet)
    );
    println!();
    Ok(())
}

/// A bulk load of `lines` into a fresh lake at `dir`, with the views kept or not: the
/// seconds it took, and the lake.
async fn load(dir: &Path, lines: &Arc<Vec<String>>, keep_views: bool) -> Result<(f64, Lake)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let lake = Lake::open(LakeOptions {
        with_wal: keep_views,
        ..LakeOptions::new(dir.to_string_lossy())
    })
    .await?;
    let source: Arc<str> = Arc::from("sample");
    let chunks: Vec<Vec<RawRecord>> = lines
        .chunks(LOAD_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, line)| RawRecord {
                    origin: Origin {
                        source: source.clone(),
                        line: Some((c * LOAD_CHUNK + i + 1) as u64),
                        entry: None,
                    },
                    payload: Payload::Text(line.clone()),
                })
                .collect()
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    let summary = lake.bulk_load(rx, BulkOptions::default(), |_| {}).await?;
    sender.await?;
    let took = started.elapsed().as_secs_f64();
    ensure!(
        summary.accepted as usize == lines.len(),
        "{} of {} sample lines were accepted: {:?}",
        summary.accepted,
        lines.len(),
        summary.first_errors
    );
    Ok((took, lake))
}

/// A bulk load with the views kept against the same load without, interleaved.
async fn maintenance(
    sample: &Path,
    sample_rows: usize,
    work: &Path,
    rounds: usize,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    let file = std::fs::File::open(sample)
        .with_context(|| format!("could not open {}", sample.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .take(sample_rows)
        .collect::<Result<_, _>>()?;
    let lines = Arc::new(lines);
    let n = lines.len() as f64;
    std::fs::create_dir_all(work)?;
    println!(
        "## views.{VIEW} kept by a bulk load: {} Observations from {}",
        lines.len(),
        sample.display()
    );
    println!();
    println!(
        "| round | raw parse, 2 threads | load, views kept | load, no views | view build from scratch on the loaded lake |"
    );
    println!("|---|---|---|---|---|");
    let (mut parses, mut kept, mut bare, mut builds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
        let parse = parse_all(pool, &texts)?;
        // Alternate which load goes first, so that neither always follows the other.
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        let (mut with_views, mut without, mut build) = (0.0, 0.0, 0.0);
        for keep in order {
            let dir = work.join(format!(
                "round{round}-{}",
                if keep { "views" } else { "bare" }
            ));
            let (took, lake) = load(&dir, &lines, keep).await?;
            if keep {
                with_views = took;
                let engine = QueryEngine::new(lake.clone())?;
                let rows = count(&engine, &format!("SELECT count(*) FROM views.{VIEW}")).await?;
                ensure!(rows > 0, "the kept view is empty after the load");
                let started = Instant::now();
                lake.refresh_view(VIEW).await?;
                build = started.elapsed().as_secs_f64();
            } else {
                without = took;
            }
            drop(lake);
            std::fs::remove_dir_all(&dir)?;
        }
        println!(
            "| {round} | {parse:.2} s ({:.0}/s) | {with_views:.2} s | {without:.2} s | {build:.2} s ({:.0}/s) |",
            n / parse,
            n / build
        );
        parses.push(parse);
        kept.push(with_views);
        bare.push(without);
        builds.push(build);
    }
    let (parse, kept, bare, build) = (median(parses), median(kept), median(bare), median(builds));
    println!();
    println!(
        "median: raw parse {:.0}/s; load with views {kept:.2} s, without {bare:.2} s: keeping \
         the view cost {:.2} s, {:.0} resources/s of view maintenance ({:.2} of the raw parse \
         rate); a build from scratch of the same resources {:.0}/s",
        n / parse,
        kept - bare,
        n / (kept - bare),
        parse / (kept - bare),
        n / build
    );
    Ok(())
}
