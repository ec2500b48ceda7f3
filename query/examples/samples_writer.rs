//! Appends readings to a second table kind (`metrics.samples`) through the lake's WAL,
//! flushing every 200 ms, and prints `acked <first> <n>` after each acknowledged append.
//! The kill -9 test of table kinds (`tests/table_kinds.rs`) drives it.
//!
//! Usage: samples_writer <data dir> <first value>

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use medlake_lake::{Lake, LakeOptions};

include!("../tests/common/samples_kind.rs");

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let data = args
        .next()
        .expect("usage: samples_writer <data dir> <first value>");
    let mut first: i64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: samples_writer <data dir> <first value>");
    let mut options = LakeOptions::new(data);
    options.kinds = vec![Arc::new(Samples)];
    let lake = Lake::open(options).await.expect("open the lake");
    let _flusher = lake.spawn_flusher(Duration::from_millis(200), 100_000);
    let mut out = std::io::stdout();
    loop {
        let n = 1 + (first % 7) as usize;
        lake.append("metrics.samples", samples("s", first, n))
            .await
            .expect("append");
        writeln!(out, "acked {first} {n}").expect("stdout");
        out.flush().expect("stdout");
        first += n as i64;
    }
}
