//! Scale-out on Ballista: a scheduler and an executor started from the medlake binary
//! (`medlake ballista scheduler | executor`) answer the same SQL as the in-process
//! engine, over the same lake, through `medlake sql --engine ballista://...` and through
//! a server started with `--sql-engine`; a server whose queried tables hold unflushed
//! rows says that the cluster's answer leaves them out.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medlake_e2e::{Server, http, lake_with_history, medlake_bin, medlake_unchecked, sql_json};
use serde_json::Value;

/// A process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different free ports below the kernel's ephemeral range. A port from that range
/// (what binding port 0 gives) is released before the cluster binds it, seconds later,
/// and meanwhile any outgoing connection on the machine may take it as its own local
/// port: with other tests' clients busy beside this one, the executor's Flight service
/// then failed to bind (`Address already in use`) and the test waited for it in vain.
/// No connection takes a port below the range unless it asks for it. The listeners are
/// held until all are chosen, so that the ports differ.
fn free_ports<const N: usize>() -> [u16; N] {
    let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = 10_000u16.min(ephemeral_start / 2);
    let span = u64::from(ephemeral_start - low);
    let mut listeners = Vec::new();
    let mut seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    while listeners.len() < N {
        // xorshift: a different start in each test process, so that two don't race.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = low + (seed % span) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound port").port())
}

fn start(args: &[&str]) -> Running {
    Running(
        Command::new(medlake_bin())
            .args(args)
            .env_remove("MEDLAKE_CONFIG")
            // Ballista logs every task at info; its warnings are enough here.
            .env("MEDLAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("medlake ballista starts"),
    )
}

/// A scheduler and one executor on free ports; the engine address for `--engine`. The
/// executor starts first, as an operator may start them: it waits for the scheduler.
fn cluster(work: &Path) -> (Running, Running, String) {
    let [scheduler_port, flight_port, grpc_port] = free_ports::<3>();
    let scheduler_addr = format!("127.0.0.1:{scheduler_port}");
    let mut executor = start(&[
        "ballista",
        "executor",
        "--scheduler",
        &scheduler_addr,
        "--external-host",
        "127.0.0.1",
        "--port",
        &flight_port.to_string(),
        "--grpc-port",
        &grpc_port.to_string(),
        "--work-dir",
        work.to_str().unwrap(),
        "--concurrent-tasks",
        "2",
        "--scheduler-wait-secs",
        "120",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let mut scheduler = start(&["ballista", "scheduler", "--listen", &scheduler_addr]);
    wait_for_port(scheduler_port, "the scheduler", &mut scheduler);
    // The executor registers with the scheduler before its own services listen; a task
    // pushed to it in that moment is lost, and the scheduler then waits minutes for the
    // executor to register again. A cluster is ready once both ports answer.
    wait_for_port(flight_port, "the executor's Flight service", &mut executor);
    wait_for_port(grpc_port, "the executor's gRPC service", &mut executor);
    (scheduler, executor, format!("ballista://{scheduler_addr}"))
}

/// Wait for `port` to listen, failing at once if `process`, which should listen there,
/// has stopped (its error is above, on the test's standard error).
fn wait_for_port(port: u16, what: &str, process: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{what} stopped ({status}) before it listened on {port}");
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `medlake sql --format json` on the cluster, retried while the executor registers.
fn cluster_json(lake: &Path, engine: &str, query: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = medlake_unchecked(
            lake,
            &["sql", "--engine", engine, "--format", "json", query],
        );
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return match serde_json::from_str::<Value>(text.trim()) {
                Ok(Value::Array(rows)) => rows,
                other => panic!("not a JSON array from the cluster: {other:?}\n{text}"),
            };
        }
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        // Until an executor has registered, the scheduler cannot run a job (or is not
        // listening yet); anything else is a real failure.
        let starting = stderr.contains("transport error")
            || stderr.contains("onnect")
            || stderr.contains("executor");
        assert!(
            starting && Instant::now() < deadline,
            "the cluster failed {query}:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_ballista_cluster_answers_as_the_local_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_history(dir.path(), 4);
    let work = dir.path().join("executor-work");
    std::fs::create_dir_all(&work).unwrap();
    let (_scheduler, _executor, engine) = cluster(&work);

    let queries = [
        // fhir.<type>: the current versions, ranked on the cluster.
        "SELECT count(*) AS n FROM fhir.observation",
        "SELECT id, version_id FROM fhir.observation WHERE version_id > 1 ORDER BY id",
        // fhir_history.<type>: every version and delete marker.
        "SELECT version_id, deleted, count(*) AS n FROM fhir_history.observation \
         GROUP BY version_id, deleted ORDER BY version_id, deleted",
        // The JSON functions, run by the executor.
        "SELECT json_get_str(resource, 'status') AS status, count(*) AS n FROM fhir.observation \
         GROUP BY 1 ORDER BY 1",
        // The JSON operators, planned into the same functions.
        "SELECT resource->>'gender' AS gender, count(*) AS n FROM fhir.patient GROUP BY 1 ORDER BY 1",
        // A join across two types.
        "SELECT p.id, count(*) AS n FROM fhir.patient p JOIN fhir.observation o \
         ON json_get_str(o.resource, 'subject', 'reference') = concat('Patient/', p.id) \
         GROUP BY p.id ORDER BY p.id",
        // A materialized view's current rows.
        "SELECT part, count(*) AS n, count(DISTINCT id) AS ids FROM views.observation \
         GROUP BY part ORDER BY part",
    ];
    for query in queries {
        let local = sql_json(&lake, query);
        let remote = cluster_json(&lake, &engine, query);
        assert!(!local.is_empty(), "no rows from {query}");
        assert_eq!(
            remote, local,
            "the cluster and the local engine differ on {query}"
        );
    }

    // The answers are about the data, not empty agreement: the history has the three
    // updates and the two delete markers `lake_with_history` made.
    let versions = cluster_json(
        &lake,
        &engine,
        "SELECT count(*) FILTER (WHERE version_id = 2 AND NOT deleted) AS updated, \
         count(*) FILTER (WHERE deleted) AS deleted FROM fhir_history.observation",
    );
    assert_eq!(versions[0]["updated"], 3, "{versions:?}");
    assert_eq!(versions[0]["deleted"], 2, "{versions:?}");

    // The engine also comes from MEDLAKE_SQL_ENGINE.
    let out = Command::new(medlake_bin())
        .args([
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n FROM fhir.patient",
        ])
        .env("MEDLAKE_DATA", &lake)
        .env("MEDLAKE_SQL_ENGINE", &engine)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n[0]["n"], 4, "{n}");

    // What stays in-process says so, instead of a bare "table not found".
    let out = medlake_unchecked(
        &lake,
        &[
            "sql",
            "--engine",
            &engine,
            "SELECT count(*) FROM fhir_as_of('observation', 1)",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not supported on Ballista"), "{stderr}");

    // A cluster that is not there is an error naming it, never a local answer.
    let nowhere = format!("ballista://127.0.0.1:{}", free_port());
    let out = medlake_unchecked(
        &lake,
        &[
            "sql",
            "--engine",
            &nowhere,
            "SELECT count(*) FROM fhir.patient",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a query ran without a cluster");
    assert!(stderr.contains("Ballista cluster at 127.0.0.1"), "{stderr}");

    // A server with --sql-engine runs POST /sql on the cluster. Its flushes are far
    // apart, so a write stays in its tail: the cluster does not see it, and says so.
    let server = Server::start(
        &lake,
        &["--sql-engine", &engine, "--flush-interval-secs", "3600"],
    );
    let count = |server: &Server| {
        let mut answer = http()
            .post(&server.url("/sql"))
            .send("SELECT count(*) AS n FROM fhir.observation")
            .unwrap();
        assert_eq!(answer.status(), 200);
        let warning = answer
            .headers()
            .get("warning")
            .map(|v| v.to_str().unwrap().to_string());
        let rows: Value = answer.body_mut().read_json().unwrap();
        (rows[0]["n"].as_i64().unwrap(), warning)
    };
    let committed = sql_json(&lake, "SELECT count(*) AS n FROM fhir.observation")[0]["n"]
        .as_i64()
        .unwrap();
    // The cluster is up: the queries above ran on it.
    let (before, warning) = count(&server);
    assert_eq!(before, committed);
    assert_eq!(warning, None, "nothing is unflushed yet");
    let created = http()
        .post(&server.url("/fhir/Observation"))
        .header("Content-Type", "application/fhir+json")
        .send(
            r#"{"resourceType": "Observation", "status": "final",
                "code": {"text": "unflushed"}}"#,
        )
        .unwrap();
    assert_eq!(created.status(), 201);
    let (after, warning) = count(&server);
    assert_eq!(after, committed, "the cluster reads only committed rows");
    let warning = warning.expect("a Warning header names the unflushed table");
    assert!(
        warning.starts_with("199 medlake") && warning.contains("fhir.observation (1 rows)"),
        "{warning}"
    );
    // A table without unflushed rows gets no warning.
    let answer = http()
        .post(&server.url("/sql"))
        .send("SELECT count(*) AS n FROM fhir.patient")
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("warning").is_none());
    // Once flushed (at the graceful stop), the cluster sees the write.
    server.stop();
    let flushed = cluster_json(&lake, &engine, "SELECT count(*) AS n FROM fhir.observation");
    assert_eq!(flushed[0]["n"].as_i64().unwrap(), committed + 1);
}
