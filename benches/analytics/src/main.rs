//! Analytics benchmark, first part: the current versions of a type (`fhir.<type>`),
//! read by a scan that skips replaced rows, against the window over every version that
//! it replaced, in the same run and on the same lake.
//!
//! For each query it prints the median of `--rounds` runs (after one warm-up) through
//! [`QueryEngine::query`], in process: `count(*)` and a JSON-path group-by over
//! `fhir.<type>`; the same over the history ranked with a window (the plan of
//! `medlake_query::current::current_by_window`, what `fhir.<type>` was); and `count(*)` over `fhir_history.<type>`, the bare scan.
//!
//! Second part, `--features <spec>`: a point-in-time feature extraction
//! ([`medlake_query::features`]) over the whole lake, its median time, and checksums of
//! its answer that `benches/analytics/duckdb_features.py` prints too, having computed
//! the same features with DuckDB over the same Parquet files.
//!
//! Usage: `medlake-bench-analytics --data <lake folder> [--type observation] [--rounds 5]
//! [--features benches/analytics/features.toml]`
//! (load the lake first with `medlake generate` and `medlake ingest`; see
//! benches/README.md). DuckDB's side of the comparison is `benches/analytics/duckdb_side.py`.

use std::time::Instant;

use anyhow::{Context, Result};
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let mut data = None;
    let mut table = "observation".to_string();
    let mut rounds = 5usize;
    let mut features = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next(),
            "--type" => table = args.next().context("--type needs a value")?,
            "--rounds" => rounds = args.next().context("--rounds needs a value")?.parse()?,
            "--features" => features = args.next(),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let data = data.context("--data <lake folder> is required")?;
    let started = Instant::now();
    let lake = Lake::open(LakeOptions {
        with_wal: false,
        ..LakeOptions::new(data)
    })
    .await?;
    println!("lake opened in {:.1} s", started.elapsed().as_secs_f64());
    let engine = QueryEngine::new(lake.clone())?;
    if let Some(spec) = features {
        return features_bench(&engine, &lake, &spec, rounds).await;
    }
    anyhow::ensure!(
        lake.resource_types()
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&table)),
        "the lake holds no {table}"
    );
    // What `fhir.<type>` was before: the newest version of each id, ranked with a window
    // (the plan of `current_by_window`, written as SQL).
    let ranked = format!(
        "(SELECT * FROM (SELECT id, version_id, deleted, resource, row_number() OVER \
         (PARTITION BY id ORDER BY version_id DESC) AS rank FROM fhir_history.{table}) \
         WHERE rank = 1 AND NOT deleted) AS ranked"
    );
    let status = "json_get_str(resource, 'status')";
    let queries = [
        (
            "count, current (scan)",
            format!("SELECT count(*) FROM fhir.{table}"),
        ),
        (
            "count, current (window)",
            format!("SELECT count(*) FROM {ranked}"),
        ),
        (
            "count, all versions",
            format!("SELECT count(*) FROM fhir_history.{table}"),
        ),
        (
            "group by status, current (scan)",
            format!("SELECT {status} AS s, count(*) FROM fhir.{table} GROUP BY s"),
        ),
        (
            "group by status, current (window)",
            format!("SELECT {status} AS s, count(*) FROM {ranked} GROUP BY s"),
        ),
    ];
    println!("| query | median of {rounds} | answer |");
    println!("|---|---|---|");
    for (name, sql) in queries {
        let mut times = Vec::with_capacity(rounds);
        let mut answer = String::new();
        for round in 0..=rounds {
            let t = Instant::now();
            let out = engine.query(&sql).await?;
            let took = t.elapsed().as_secs_f64();
            if round > 0 {
                times.push(took);
            }
            answer = datafusion::arrow::util::pretty::pretty_format_batches(&out.batches)?
                .to_string()
                .lines()
                .filter(|l| l.starts_with("| ") && !l.contains("count("))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
        }
        times.sort_by(f64::total_cmp);
        println!("| {name} | {:.3} s | {answer} |", times[times.len() / 2]);
    }
    Ok(())
}

/// `--features`: the extraction `rounds` times after a warm-up, and the checksums of
/// `duckdb_features.py`.
async fn features_bench(
    engine: &QueryEngine,
    lake: &Lake,
    spec: &str,
    rounds: usize,
) -> Result<()> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    use futures::StreamExt;
    use medlake_query::features::{FeatureSpec, Files, extract};

    let text = std::fs::read_to_string(spec).with_context(|| format!("could not read {spec}"))?;
    let spec = FeatureSpec::parse(&text)?;
    let dir = std::path::Path::new(".");
    let mut times = Vec::with_capacity(rounds);
    let mut batches = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        let mut stream = extract(engine, lake, &spec, Files::RelativeTo(dir)).await?;
        batches.clear();
        while let Some(b) = stream.next().await {
            batches.push(b?);
        }
        if round > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "medlake features: median of {rounds} {:.3} s",
        times[times.len() / 2]
    );
    let sum = |name: &str| -> Result<f64> {
        let mut total = 0.0;
        for b in &batches {
            let c = cast(
                b.column_by_name(name).context(name.to_string())?,
                &DataType::Float64,
            )?;
            let c = c.as_primitive::<Float64Type>();
            total += (0..c.len())
                .filter(|i| !c.is_null(*i))
                .map(|i| c.value(i))
                .sum::<f64>();
        }
        Ok(total)
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!(
        "checksums: rows={rows} hba1c_count={} hba1c_last_sum={:.3} systolic_count={} diabetes={} \
         med_count={} enc_count={}",
        sum("obs_hba1c_count_730d")?,
        sum("obs_hba1c_last_730d")?,
        sum("obs_systolic_count_730d")?,
        sum("cond_diabetes")?,
        sum("med_count_730d")?,
        sum("enc_count_730d")?,
    );
    Ok(())
}
