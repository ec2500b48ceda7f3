//! Analytics benchmarks, on a lake loaded with `medlake generate` and `medlake ingest`
//! (see benches/README.md for the commands and the figures):
//!
//! - `current`: `fhir.<type>`'s scan of current versions against the window it replaced.
//! - `sql-stdin`: the in-process side of the SQL benchmark. It reads one query a line on
//!   stdin, runs it through [`medlake_query::QueryEngine`] and answers one line per
//!   query, so that `sql_bench.py` can interleave it, query by query, with Flight SQL,
//!   Postgres wire and DuckDB on the same lake in the same run.
//! - `views`: building `views.observation` from scratch and maintaining it during a bulk
//!   load, against the raw `serde_json` parse of the same resources on 2 threads.
//! - `features`: a point-in-time feature extraction over the whole lake, against
//!   `duckdb_features.py`'s same features over the same Parquet files.

mod current;
mod features;
mod sql;
mod views;

use anyhow::Result;

/// `medlake`'s allocator with its settings, so that the raw parse and DuckDB are
/// compared with what the product does.
#[path = "../../../api/src/allocator.rs"]
mod allocator;

const USAGE: &str = "usage: medlake-bench-analytics current|sql-stdin|views|features --data <lake folder> \
                     [options] (see benches/README.md)";

fn main() -> Result<()> {
    allocator::keep_freed_pages();
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut args = std::env::args().skip(1);
        match args.next().as_deref() {
            Some("current") => current::run(args).await,
            Some("sql-stdin") => sql::run(args).await,
            Some("views") => views::run(args).await,
            Some("features") => features::run(args).await,
            _ => anyhow::bail!("{USAGE}"),
        }
    })
}
