//! `sql-stdin`: medlake's in-process side of the SQL benchmark (`sql_bench.py`).
//!
//! The lake is opened once, read-only (a server may own it meanwhile, for the Flight SQL
//! and Postgres sides), and each line of stdin is a query, run through
//! [`QueryEngine::query`] (planned, executed and collected, as a caller in the same
//! process would). Each answer is one tab-separated line: `ok`, the row count, the
//! seconds taken and the first row (for the driver to check that every side gave the same
//! answer); or `err` and the message. `ready` is printed once the lake is open.

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::util::display::array_value_to_string;
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;

pub async fn run(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut data = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next(),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let data = data.context("--data <lake folder> is required")?;
    let lake = Lake::open(LakeOptions {
        with_wal: false,
        ..LakeOptions::new(data)
    })
    .await?;
    let engine = QueryEngine::new(lake)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let query = line?;
        if query.trim().is_empty() {
            continue;
        }
        let started = Instant::now();
        let answer = engine.query(&query).await;
        let took = started.elapsed().as_secs_f64();
        match answer {
            Ok(answer) => {
                let rows: usize = answer.batches.iter().map(|b| b.num_rows()).sum();
                let first = match answer.batches.iter().find(|b| b.num_rows() > 0) {
                    Some(b) => b
                        .columns()
                        .iter()
                        .map(|c| array_value_to_string(c, 0))
                        .collect::<Result<Vec<_>, _>>()?
                        .join("|"),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "ok\t{rows}\t{took:.6}\t{}",
                    first.replace(['\t', '\n'], " ")
                )?;
            }
            Err(e) => writeln!(out, "err\t{}", e.to_string().replace(['\t', '\n'], " "))?,
        }
        out.flush()?;
    }
    Ok(())
}
