//! Helpers for the end-to-end tests: find the built `medlake` binary, run it, and start
//! servers on free ports.
//!
//! The tests drive the real binary. `cargo nextest run --workspace` does not build other
//! packages' binaries for this package, so the test command builds it first; the path can
//! be overridden with `MEDLAKE_BIN`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `medlake` binary under test.
pub fn medlake_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MEDLAKE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/medlake
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = profile_dir.join("medlake");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --workspace --all-targets` (the test command does)",
        bin.display()
    );
    bin
}

/// Run `medlake args...` with `data` as the lake; panic with its output if it fails.
pub fn medlake(data: &Path, args: &[&str]) -> Output {
    let out = medlake_unchecked(data, args);
    assert!(
        out.status.success(),
        "medlake {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `medlake args...` and return whatever happened.
pub fn medlake_unchecked(data: &Path, args: &[&str]) -> Output {
    Command::new(medlake_bin())
        .args(args)
        .env("MEDLAKE_DATA", data)
        .env_remove("MEDLAKE_WORKSPACE")
        .env_remove("MEDLAKE_CONFIG")
        .output()
        .expect("medlake runs")
}

/// `medlake sql --format json` parsed.
pub fn sql_json(data: &Path, query: &str) -> Vec<Value> {
    let out = medlake(data, &["sql", "--format", "json", query]);
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("sql output is not a JSON array: {other:?}\n{text}"),
    }
}

/// A single integer from a `SELECT count(*) AS n ...`-style query.
pub fn sql_count(data: &Path, query: &str) -> i64 {
    let rows = sql_json(data, query);
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no rows from {query}"));
    row.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer in {row} from {query}"))
}

/// A running `medlake serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Where its Arrow Flight SQL listens (`grpc://127.0.0.1:<port>`), unless turned off.
    pub flight: Option<String>,
    /// `host:port` of the Postgres wire, when the test asked for it with `--pg-listen`.
    pub pg: Option<String>,
}

impl Server {
    /// Start a server on a free port and wait until it listens.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(medlake_bin());
        // Flight SQL on a free port too, unless the test chooses (by flag, variable or
        // config file): never the fixed default, which tests side by side would fight over.
        let flight_chosen = extra.contains(&"--flight-listen")
            || extra.contains(&"--config")
            || env.iter().any(|(k, _)| *k == "MEDLAKE_FLIGHT_LISTEN");
        cmd.arg("serve").args(["--listen", "127.0.0.1:0"]);
        if !flight_chosen {
            cmd.args(["--flight-listen", "127.0.0.1:0"]);
        }
        // Nor the Postgres default port.
        if !extra.contains(&"--pg-listen") && !env.iter().any(|(k, _)| *k == "MEDLAKE_PG_LISTEN") {
            cmd.args(["--pg-listen", "off"]);
        }
        cmd.args(extra)
            .env("MEDLAKE_DATA", data)
            .env_remove("MEDLAKE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("medlake serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            let mut flight = None;
            let mut pg = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("postgres listening on ") {
                    pg = Some(addr.trim().to_string());
                }
                if !sent {
                    if let Some(uri) = line.trim().strip_prefix("Flight SQL:") {
                        flight = Some(uri.trim().to_string());
                    }
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send((addr.trim().to_string(), flight.take(), pg.clone()));
                        sent = true;
                    }
                }
            }
        });
        let (addr, flight, pg) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("medlake serve did not start listening within 120 s");
            }
        };
        Server {
            child,
            base: format!("http://{addr}"),
            flight,
            pg,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How the server ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait up to `timeout` for the server to end by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ask for a graceful stop (SIGINT) and wait.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("medlake serve did not stop within 60 s of SIGINT");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns error statuses as responses instead of errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// The `tests/` folder of this checkout. Cargo and nextest set `CARGO_MANIFEST_DIR` when
/// they run a test; the value compiled in is only a fallback, because a build cache shared
/// between checkouts can hold test binaries compiled in another folder.
pub fn tests_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The shared test data folder (`MEDLAKE_SHARED`, default `../shared` beside the checkout).
pub fn shared_dir() -> PathBuf {
    if let Ok(p) = std::env::var("MEDLAKE_SHARED") {
        return PathBuf::from(p);
    }
    tests_dir().join("../../shared")
}

/// `tests/.venv/bin/python`, which the test command fills from
/// `tests/python/requirements.txt`.
pub fn venv_python() -> PathBuf {
    let python = tests_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the test command (scripts/test), which installs tests/python/requirements.txt",
        python.display()
    );
    python
}

/// A lake at `<root>/lake` whose Observations have histories: `patients` synthetic
/// patients loaded with `medlake ingest`, then, through a server, three Observations
/// updated (version 2) and two deleted (a delete marker as version 2). The server is
/// stopped gracefully, so everything is in Delta.
pub fn lake_with_history(root: &Path, patients: u64) -> PathBuf {
    let generated = root.join("gen");
    let lake = root.join("lake");
    let patients = patients.to_string();
    medlake(
        &lake,
        &[
            "generate",
            "--patients",
            &patients,
            "--out",
            generated.to_str().unwrap(),
            "-q",
        ],
    );
    medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    let server = Server::start(&lake, &["--flight-listen", "off"]);
    let rows = sql_json(&lake, "SELECT id FROM fhir.observation ORDER BY id LIMIT 5");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), 5, "the lake has too few Observations: {rows:?}");
    for id in &ids[..3] {
        let url = server.url(&format!("/fhir/Observation/{id}"));
        let mut got = http().get(&url).call().unwrap();
        let mut resource: Value = got.body_mut().read_json().unwrap();
        resource["status"] = Value::from("amended");
        let put = http()
            .put(&url)
            .header("Content-Type", "application/fhir+json")
            .send(resource.to_string())
            .unwrap();
        assert_eq!(put.status(), 200, "PUT {url}");
    }
    for id in &ids[3..] {
        let url = server.url(&format!("/fhir/Observation/{id}"));
        let deleted = http().delete(&url).call().unwrap();
        assert!(
            deleted.status().is_success(),
            "DELETE {url}: {}",
            deleted.status()
        );
    }
    server.stop();
    lake
}
