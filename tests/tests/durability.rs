//! `kill -9` at any moment loses no acknowledged write and duplicates nothing.
//!
//! Writers POST resources to `/ingest` (creates, and updates of resources already
//! acknowledged) while the server flushes to Delta every 200 ms; the server is killed with
//! SIGKILL at a random point, restarted, and killed again, several times. At the end every
//! acknowledged (id, version) must be stored exactly once, and versions must be gapless.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medlake_e2e::{Server, http, sql_json};
use serde_json::{Value, json};

fn post(agent: &ureq::Agent, base: &str, body: String) -> Option<Vec<(String, i64)>> {
    let mut resp = agent
        .post(&format!("{base}/ingest"))
        .header("Content-Type", "application/x-ndjson")
        .send(body)
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    let v: Value = resp.body_mut().read_json().ok()?;
    Some(
        v["resources"]
            .as_array()?
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_string(),
                    r["versionId"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                )
            })
            .collect(),
    )
}

#[test]
fn kill_9_loses_no_acknowledged_write_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    // id -> highest acknowledged version
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next_rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };

    for round in 0..4 {
        let server = Server::start(&data, &["--flush-interval-secs", "1"]);
        let base = server.base.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let base = base.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            writers.push(std::thread::spawn(move || {
                let agent = http();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A batch of new patients, plus an update of one acknowledged earlier.
                    let mut lines = Vec::new();
                    for k in 0..5 {
                        let id = format!("r{round}-w{w}-n{n}-k{k}");
                        lines.push(
                            json!({"resourceType":"Patient","id":id,"gender":"female"}).to_string(),
                        );
                    }
                    let update = acked
                        .lock()
                        .unwrap()
                        .keys()
                        .nth((n as usize * 7 + w) % 97)
                        .cloned();
                    if let Some(id) = update {
                        lines.push(
                            json!({"resourceType":"Patient","id":id,"gender":"male"}).to_string(),
                        );
                    }
                    let Some(done) = post(&agent, &base, lines.join("\n")) else {
                        break; // the server died mid-request: this write was not acknowledged
                    };
                    let mut a = acked.lock().unwrap();
                    for (id, v) in done {
                        let e = a.entry(id).or_insert(0);
                        *e = (*e).max(v);
                    }
                }
            }));
        }
        // Let writes and at least one flush happen, then kill at a random moment.
        let wait = 1200 + next_rand() % 1500;
        std::thread::sleep(Duration::from_millis(wait));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }

    // A last start replays the WAL; a graceful stop flushes it all to Delta.
    let server = Server::start(&data, &[]);
    server.stop();

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few writes were acknowledged to prove anything: {}",
        acked.len()
    );
    let rows = sql_json(
        &data,
        "SELECT id, version_id, count(*) AS copies FROM fhir_history.patient GROUP BY id, version_id",
    );
    let mut versions: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r["copies"], 1, "duplicated version: {r}");
        versions
            .entry(r["id"].as_str().unwrap().to_string())
            .or_default()
            .push(r["version_id"].as_i64().unwrap());
    }
    for (id, v) in &acked {
        let stored = versions
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged {id} v{v} is lost"));
        let max = stored.iter().max().copied().unwrap_or(0);
        assert!(
            max >= *v,
            "acknowledged {id} v{v} is lost; stored {stored:?}"
        );
    }
    for (id, mut vs) in versions {
        vs.sort();
        let expected: Vec<i64> = (1..=vs.len() as i64).collect();
        assert_eq!(vs, expected, "versions of {id} have gaps or repeats");
    }
    // The current view agrees with the history.
    let current = sql_json(&data, "SELECT id, version_id FROM fhir.patient");
    let current: HashMap<String, i64> = current
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["version_id"].as_i64().unwrap(),
            )
        })
        .collect();
    for (id, v) in &acked {
        assert!(
            current.get(id).is_some_and(|c| c >= v),
            "{id}: current {:?} < acked {v}",
            current.get(id)
        );
    }
}
