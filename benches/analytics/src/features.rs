//! `features`: a point-in-time feature extraction ([`medlake_query::features`]) over the
//! whole lake, its median time, and checksums of its answer that
//! `benches/analytics/duckdb_features.py` prints too, having computed the same features
//! with DuckDB over the same Parquet files.
//!
//! Usage: `medlake-bench-analytics features --data <lake folder> --spec <spec.toml>
//! [--rounds 5]`.

use std::time::Instant;

use anyhow::{Context, Result};
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;

pub async fn run(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut data = None;
    let mut spec = None;
    let mut rounds = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next(),
            "--spec" => spec = args.next(),
            "--rounds" => rounds = args.next().context("--rounds needs a value")?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let data = data.context("--data <lake folder> is required")?;
    let spec = spec.context("--spec <features spec> is required")?;
    let lake = Lake::open(LakeOptions {
        with_wal: false,
        ..LakeOptions::new(data)
    })
    .await?;
    let engine = QueryEngine::new(lake.clone())?;
    features_bench(&engine, &lake, &spec, rounds).await
}

/// The extraction `rounds` times after a warm-up, and the checksums of
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
