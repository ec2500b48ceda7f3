//! A second, non-FHIR table kind goes through the lake's one WAL: durable when
//! acknowledged, in SQL before and after a flush, replayed after a crash (and a real
//! `kill -9`) without loss or duplicates, and compacted. And the fail-safe behaviour of
//! that WAL: a failed write leaves no trace, a failed fsync stops writes, a full tail
//! holds writes back.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use medlake_lake::{Lake, LakeError, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use serde_json::{Map, Value, json};

include!("common/samples_kind.rs");

fn options(data: &Path) -> LakeOptions {
    let mut o = LakeOptions::new(data.to_str().unwrap());
    o.kinds = vec![Arc::new(Samples)];
    o
}

async fn open(data: &Path) -> Lake {
    Lake::open(options(data)).await.unwrap()
}

/// `count(*)`, `count(DISTINCT value)` and `sum(value)` of `metrics.samples`.
async fn totals(lake: &Lake) -> (i64, i64, f64) {
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let batches = engine
        .sql("SELECT count(*), count(DISTINCT value), coalesce(sum(value), 0) FROM metrics.samples")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &batches[0];
    (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Int64Type>().value(0),
        b.column(2).as_primitive::<Float64Type>().value(0),
    )
}

/// Sum of `first .. first + n`.
fn sum_of(first: i64, n: i64) -> f64 {
    (first..first + n).sum::<i64>() as f64
}

fn data_files(table: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.ends_with("_delta_log") {
                walk(&p, n);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(table, &mut n);
    n
}

#[tokio::test]
async fn a_second_kind_is_durable_queryable_before_and_after_a_flush_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;

    // One sequence for every kind: a FHIR write and appends interleave.
    let s1 = lake
        .append("metrics.samples", samples("hr", 0, 100))
        .await
        .unwrap();
    let patient = json!({"resourceType": "Patient", "id": "p1"});
    let written = lake
        .write(vec![WriteOp::Put {
            resource_type: "Patient".into(),
            id: Some("p1".into()),
            resource: patient.as_object().unwrap().clone(),
            if_match: None,
        }])
        .await
        .unwrap();
    let s2 = lake
        .append("metrics.samples", samples("hr", 100, 50))
        .await
        .unwrap();
    let fhir_seq = written[0].version.wal_seq.unwrap();
    assert!(s1 < fhir_seq && fhir_seq < s2, "{s1} < {fhir_seq} < {s2}");

    // Acknowledged means readable by SQL, before any flush.
    assert_eq!(totals(&lake).await, (150, 150, sum_of(0, 150)));
    assert_eq!(lake.buffered_rows(), 151);

    let stats = lake.flush().await.unwrap();
    assert_eq!((stats.rows, stats.tables), (151, 2));
    assert_eq!(lake.buffered_rows(), 0);
    assert_eq!(totals(&lake).await, (150, 150, sum_of(0, 150)));
    // Partitioned by day: the readings span two days.
    let table = dir.path().join("default/metrics/samples");
    let days: BTreeSet<String> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("day="))
        .collect();
    assert_eq!(days.len(), 2, "{days:?}");
    // A filter on the partition column answers from the right day, tail and Delta alike.
    lake.append("metrics.samples", samples("hr", 150, 10))
        .await
        .unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let first_day = engine
        .sql("SELECT count(*) FROM metrics.samples WHERE day = DATE '2026-11-30'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        first_day[0].column(0).as_primitive::<Int64Type>().value(0),
        60
    );

    // Many small flushes, then compaction: fewer files, the same answers.
    for i in 0..5 {
        lake.append("metrics.samples", samples("bp", 1000 + i * 10, 10))
            .await
            .unwrap();
        lake.flush().await.unwrap();
    }
    // One file per day of the first flush, then one per flush, all on the second day.
    let before = data_files(&table);
    assert_eq!(before, 7);
    let expected = totals(&lake).await;
    assert_eq!(expected.0, 210);
    let reports = lake
        .compact_small_files(4, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    let samples_report = reports
        .iter()
        .find(|r| r.table == "metrics.samples")
        .expect("metrics.samples was compacted");
    // Compaction works per partition: the second day's six files become one.
    assert_eq!(samples_report.files_removed, 6, "{samples_report:?}");
    assert_eq!(samples_report.files_added, 1, "{samples_report:?}");
    assert_eq!(totals(&lake).await, expected);
    // Retention keeps the replaced files for older snapshots; a reopened lake reads the
    // compacted snapshot.
    drop(engine);
    drop(lake);
    let lake = open(dir.path()).await;
    assert_eq!(totals(&lake).await, expected);
}

#[tokio::test]
async fn rows_of_a_kind_replay_after_a_crash_once_and_are_never_dropped_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.append("metrics.samples", samples("hr", 0, 20))
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.append("metrics.samples", samples("hr", 20, 30))
        .await
        .unwrap();
    // A crash: no flush, the process's state gone.
    drop(lake);

    // A lake opened without the kind would drop those rows with their segment at the
    // next flush: it refuses instead.
    let err = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .err()
        .expect("opening without the kind must fail");
    assert!(matches!(err, LakeError::UnknownTable(_)), "{err}");

    let lake = open(dir.path()).await;
    assert_eq!(totals(&lake).await, (50, 50, sum_of(0, 50)));
    lake.flush().await.unwrap();
    drop(lake);
    // Committed once: a second recovery finds nothing more to replay.
    let lake = open(dir.path()).await;
    assert_eq!(lake.buffered_rows(), 0);
    assert_eq!(totals(&lake).await, (50, 50, sum_of(0, 50)));

    // Rows that do not fit the kind are refused, naming the table.
    let wrong = samples("hr", 0, 1).project(&[0, 1, 2]).unwrap();
    let err = lake.append("metrics.samples", wrong).await.err().unwrap();
    assert!(matches!(err, LakeError::BadRows { .. }), "{err}");
    let err = lake
        .append("metrics.nope", samples("hr", 0, 1))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LakeError::UnknownTable(_)), "{err}");
}

fn samples_writer() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/examples/samples_writer
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/samples_writer");
    assert!(
        bin.exists(),
        "{} does not exist: build it with `cargo build --workspace --all-targets`",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_rows_of_a_second_kind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let mut acked: Vec<(i64, i64)> = Vec::new();
    for round in 0..5u64 {
        // Each round writes its own values: an append that landed but was killed before
        // its acknowledgement was printed must not be written again by the next round.
        let first = round as i64 * 1_000_000;
        let mut child = Command::new(samples_writer())
            .arg(&data)
            .arg(first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill at a different moment each round, flushes (every 200 ms) included.
        let lifetime = Duration::from_millis(300 + round * 170);
        let started = Instant::now();
        let mut lines = BufReader::new(stdout).lines();
        let mut killed = false;
        while let Some(Ok(line)) = lines.next() {
            let mut parts = line.split_whitespace().skip(1);
            let first: i64 = parts.next().unwrap().parse().unwrap();
            let n: i64 = parts.next().unwrap().parse().unwrap();
            acked.push((first, n));
            if !killed && started.elapsed() >= lifetime {
                // SIGKILL: no destructor, no flush.
                child.kill().unwrap();
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(killed, "round {round}: the writer stopped by itself");
    }
    assert!(
        acked.len() > 20,
        "too few appends to test anything: {}",
        acked.len()
    );

    let lake = open(&data).await;
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let batches = engine
        .sql("SELECT value, count(*) AS n FROM metrics.samples GROUP BY value")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut stored = std::collections::BTreeMap::new();
    for b in &batches {
        let (v, n) = (
            b.column(0).as_primitive::<Float64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            assert!(!v.is_null(i));
            stored.insert(v.value(i) as i64, n.value(i));
        }
    }
    for (first, n) in &acked {
        for v in *first..first + n {
            assert_eq!(
                stored.get(&v),
                Some(&1),
                "acknowledged value {v}: stored {:?} times",
                stored.get(&v)
            );
        }
    }
    // Nothing stored twice, and nothing but what was written (an append killed before
    // its acknowledgement may have landed: at most the one in flight per round).
    assert!(stored.values().all(|n| *n == 1));
    let acked_rows: i64 = acked.iter().map(|(_, n)| n).sum();
    let extra = stored.len() as i64 - acked_rows;
    assert!(
        (0..=5 * 7).contains(&extra),
        "{extra} rows beyond the acknowledged ones"
    );
}

fn put(id: &str, family: &str, if_match: Option<i64>) -> WriteOp {
    let r: Map<String, Value> = json!({"resourceType": "Patient", "name": [{"family": family}]})
        .as_object()
        .unwrap()
        .clone();
    WriteOp::Put {
        resource_type: "Patient".into(),
        id: Some(id.into()),
        resource: r,
        if_match,
    }
}

async fn family(lake: &Lake, id: &str) -> String {
    let v = lake.read_latest("Patient", id).await.unwrap().unwrap();
    let json: Value = serde_json::from_str(&v.resource).unwrap();
    json["name"][0]["family"].as_str().unwrap().to_string()
}

async fn history_rows(lake: &Lake) -> i64 {
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let b = engine
        .sql("SELECT count(*) FROM fhir_history.patient")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn a_failed_fsync_leaves_no_trace_and_stops_writes_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![put("p1", "Before", None)]).await.unwrap();
    lake.wal_faults()
        .unwrap()
        .fail_syncs
        .store(1, Ordering::SeqCst);

    let err = lake
        .write(vec![put("p1", "Lost", Some(1))])
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    // As if the write never happened: the version, the content, SQL.
    assert_eq!(lake.latest("Patient", "p1").unwrap().version_id, 1);
    assert_eq!(family(&lake, "p1").await, "Before");
    assert_eq!(history_rows(&lake).await, 1);
    // The log stays stopped, though the next fsync would succeed: no write, no append.
    let err = lake
        .write(vec![put("p1", "Later", Some(1))])
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    let err = lake
        .append("metrics.samples", samples("hr", 0, 1))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    // What was acknowledged still reaches Delta.
    lake.flush().await.unwrap();
    drop(lake);

    // After a restart, the next version is 2, as if the failed writes never happened.
    let lake = open(dir.path()).await;
    assert_eq!(lake.latest("Patient", "p1").unwrap().version_id, 1);
    assert_eq!(family(&lake, "p1").await, "Before");
    let w = lake.write(vec![put("p1", "After", Some(1))]).await.unwrap();
    assert_eq!(w[0].version.version_id, 2);
    assert_eq!(history_rows(&lake).await, 2);
}

#[tokio::test]
async fn a_failed_wal_write_leaves_no_trace_for_if_match_or_versions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![put("p1", "Before", None)]).await.unwrap();
    lake.wal_faults()
        .unwrap()
        .fail_writes
        .store(1, Ordering::SeqCst);
    // A new resource and an update in one transaction: both fail.
    let err = lake
        .write(vec![put("p2", "New", None), put("p1", "Lost", Some(1))])
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    assert!(lake.latest("Patient", "p2").is_none());
    assert!(lake.read_latest("Patient", "p2").await.unwrap().is_none());
    assert_eq!(lake.latest("Patient", "p1").unwrap().version_id, 1);
    drop(lake);
    let lake = open(dir.path()).await;
    assert!(lake.latest("Patient", "p2").is_none());
    let w = lake.write(vec![put("p1", "After", Some(1))]).await.unwrap();
    assert_eq!(w[0].version.version_id, 2);
}

#[tokio::test]
async fn writes_are_held_back_while_too_much_waits_for_delta() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.max_tail_rows = 25;
    let lake = Lake::open(o).await.unwrap();
    lake.append("metrics.samples", samples("hr", 0, 25))
        .await
        .unwrap();
    let err = lake
        .write(vec![put("p1", "Held", None)])
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            LakeError::Busy {
                waiting: 25,
                bound: 25
            }
        ),
        "{err}"
    );
    assert!(lake.latest("Patient", "p1").is_none());
    lake.flush().await.unwrap();
    lake.write(vec![put("p1", "Through", None)]).await.unwrap();
    assert_eq!(family(&lake, "p1").await, "Through");
}
