//! `current`: the current versions of a type (`fhir.<type>`), read by a scan that skips
//! replaced rows, against the window over every version that it replaced, in the same
//! run and on the same lake.
//!
//! For each query it prints the median of `--rounds` runs (after one warm-up) through
//! [`QueryEngine::query`], in process: `count(*)` and a JSON-path group-by over
//! `fhir.<type>`; the same over the history ranked with a window (the plan of
//! `medlake_query::current::current_by_window`, what `fhir.<type>` was); and `count(*)`
//! over `fhir_history.<type>`, the bare scan.
//!
//! Usage: `medlake-bench-analytics current --data <lake folder> [--type observation]
//! [--rounds 5]`. DuckDB's side of this comparison is `benches/analytics/duckdb_side.py`.

use std::time::Instant;

use anyhow::{Context, Result};
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;

pub async fn run(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut data = None;
    let mut table = "observation".to_string();
    let mut rounds = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next(),
            "--type" => table = args.next().context("--type needs a value")?,
            "--rounds" => rounds = args.next().context("--rounds needs a value")?.parse()?,
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
