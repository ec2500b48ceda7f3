//! A long SQL scan of a large tail does not hold up write acknowledgements (issue #9,
//! point 8). A scan takes the tail's rows under the lake's lock but builds their Arrow
//! batches after releasing it, and runs on the query runtime; the WAL writer needs that
//! lock to make each write readable before acknowledging it. When the batches were built
//! under the lock, every write issued during a scan waited for the whole build.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use medlake_lake::{Lake, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use serde_json::{Map, Value, json};

fn patient(id: String) -> WriteOp {
    let resource: Map<String, Value> = match json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": "Tailscan", "given": ["Ada", "Grace"]}],
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "y".repeat(600))},
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    WriteOp::Put {
        resource_type: "Patient".into(),
        id: Some(id),
        resource,
        if_match: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_scan_of_the_tail_does_not_stall_write_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    // No flusher runs: every write stays in the tail.
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    let rows = 200_000;
    for chunk in 0..rows / 2000 {
        let ops = (0..2000)
            .map(|i| patient(format!("p-{chunk}-{i}")))
            .collect();
        lake.write(ops).await.unwrap();
    }
    assert_eq!(lake.buffered_rows(), rows);
    let engine = QueryEngine::new(lake.clone()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (lake, stop) = (lake.clone(), stop.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut acknowledged = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                lake.write(vec![patient(format!("w-{acknowledged}"))])
                    .await
                    .unwrap();
                worst = worst.max(started.elapsed());
                acknowledged += 1;
            }
            (worst, acknowledged)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let answer = engine
        .query("SELECT count(*) AS n, sum(length(resource)) AS bytes FROM fhir_history.patient")
        .await
        .unwrap();
    let scan = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst, acknowledged) = writer.await.unwrap();

    let n = answer.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert!(n >= rows as i64, "the scan saw {n} rows");
    println!(
        "scan of {n} tail rows: {:.0} ms; {acknowledged} writes acknowledged meanwhile, the slowest in {:.1} ms",
        scan.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    // The scan must be long enough for a stall to show; it builds 200,000 rows.
    assert!(
        scan > Duration::from_millis(100),
        "the scan took only {scan:?}: too short to tell a stall, make the tail larger"
    );
    assert!(
        acknowledged >= 3,
        "only {acknowledged} writes during the scan"
    );
    assert!(
        worst * 4 < scan,
        "a write waited {worst:?} during a scan of {scan:?}: the scan held up acknowledgements"
    );
}
