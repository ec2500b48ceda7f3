//! A round trip through Azurite, a real Azure Blob Storage emulator: ingest into
//! `az://`, query it back, serve it, and read the Delta log where it landed.
//!
//! The test command installs Azurite and the Azure SDK with npm into `tests/node_modules`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medlake_e2e::{Server, http};
use serde_json::Value;

struct Azurite {
    child: Child,
    port: u16,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    /// Stop it as an operator would (SIGINT), so that it saves what it holds.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port and storage folder.
    fn restart(&mut self) {
        self.child = spawn_azurite(self.port, self.dir.path());
    }
}

fn tools() -> PathBuf {
    medlake_e2e::tests_dir()
}

fn start_azurite() -> Azurite {
    let bin = tools().join("node_modules/.bin/azurite-blob");
    assert!(
        bin.exists(),
        "{} is missing: run the test command (scripts/test), which installs Azurite with npm",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_azurite(port, dir.path());
    Azurite {
        child,
        port,
        endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1"),
        dir,
    }
}

/// Start `azurite-blob` on `port` with its storage in `location`, and wait until it listens.
fn spawn_azurite(port: u16, location: &std::path::Path) -> Child {
    let bin = tools().join("node_modules/.bin/azurite-blob");
    let child = Command::new(&bin)
        .args([
            "--silent",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
        ])
        .args(["--blobPort", &port.to_string(), "--location"])
        .arg(location)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("azurite-blob starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "Azurite did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Run the Azure SDK helper script and return its output.
fn blob(azurite: &Azurite, args: &[&str]) -> String {
    let out = Command::new("node")
        .arg(tools().join("azurite/blob.mjs"))
        .arg(&azurite.endpoint)
        .args(args)
        .current_dir(tools())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "node blob.mjs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn medlake_az(azurite: &Azurite, args: &[&str]) -> std::process::Output {
    let out = Command::new(medlake_e2e::medlake_bin())
        .args(args)
        .env("MEDLAKE_DATA", "az://medlake/lake")
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env(
            "AZURITE_BLOB_STORAGE_URL",
            azurite.endpoint.trim_end_matches("/devstoreaccount1"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "medlake {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn ingest_query_and_serve_through_azurite() {
    let azurite = start_azurite();
    blob(&azurite, &["create", "medlake"]);

    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    medlake_az(
        &azurite,
        &[
            "generate",
            "--patients",
            "3",
            "--seed",
            "11",
            "--out",
            gen_dir.to_str().unwrap(),
            "-q",
        ],
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(gen_dir.join("manifest.json")).unwrap())
            .unwrap();
    let wal = dir.path().join("wal");
    medlake_az(
        &azurite,
        &[
            "ingest",
            "-q",
            "--wal-dir",
            wal.to_str().unwrap(),
            gen_dir.to_str().unwrap(),
        ],
    );

    let out = medlake_az(
        &azurite,
        &[
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n FROM fhir.observation",
        ],
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["n"], manifest["counts"]["Observation"]);

    // The Delta log and Parquet files are really in the blob store.
    let listed = blob(
        &azurite,
        &["list", "medlake", "lake/default/fhir/observation/"],
    );
    assert!(
        listed
            .lines()
            .any(|l| l.ends_with("_delta_log/00000000000000000000.json")),
        "{listed}"
    );
    assert!(listed.lines().any(|l| l.ends_with(".parquet")), "{listed}");
    let agent = http();
    let out = medlake_az(
        &azurite,
        &[
            "sql",
            "--format",
            "json",
            "SELECT id FROM fhir.observation LIMIT 1",
        ],
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored_id = rows[0]["id"].as_str().unwrap().to_string();

    // A server on the same az:// lake writes through its local WAL and flushes to Azure.
    let server = Server::start_with_env(
        std::path::Path::new("az://medlake/lake"),
        &[
            "--wal-dir",
            wal.to_str().unwrap(),
            "--flush-interval-secs",
            "1",
        ],
        &[
            ("AZURE_STORAGE_USE_EMULATOR", "true"),
            (
                "AZURITE_BLOB_STORAGE_URL",
                azurite.endpoint.trim_end_matches("/devstoreaccount1"),
            ),
        ],
    );
    let mut r = agent
        .post(&server.url("/ingest"))
        .send("{\"resourceType\":\"Patient\",\"id\":\"from-http\",\"gender\":\"unknown\"}")
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    let r = agent
        .get(&server.url("/fhir/Patient/from-http"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bulk-loaded resource is read by id from the Parquet files in Azure.
    let mut r = agent
        .get(&server.url(&format!("/fhir/Observation/{stored_id}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.body_mut().read_json::<Value>().unwrap()["id"],
        stored_id.as_str()
    );
    server.stop();
    let out = medlake_az(
        &azurite,
        &[
            "sql",
            "--format",
            "json",
            "SELECT id FROM fhir.patient WHERE id = 'from-http'",
        ],
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "the flushed write is in Azure"
    );
}

/// Object storage goes away under a running server and comes back: writes go on being
/// acknowledged from the WAL while the tail has room, are refused with 503 and
/// `Retry-After` past its bound, and everything acknowledged reaches Azure once the
/// retried flush gets through.
#[test]
fn writes_ride_out_an_azurite_outage_and_land_when_it_returns() {
    let mut azurite = start_azurite();
    blob(&azurite, &["create", "medlake"]);
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let emulator = azurite
        .endpoint
        .trim_end_matches("/devstoreaccount1")
        .to_string();
    let server = Server::start_with_env(
        std::path::Path::new("az://medlake/outage"),
        &[
            "--wal-dir",
            wal.to_str().unwrap(),
            "--flush-interval-secs",
            "1",
            "--max-tail-rows",
            "30",
            "--compact-interval-secs",
            "0",
        ],
        &[
            ("AZURE_STORAGE_USE_EMULATOR", "true"),
            ("AZURITE_BLOB_STORAGE_URL", emulator.as_str()),
        ],
    );
    let agent = http();
    let put = |i: usize| {
        let body =
            format!("{{\"resourceType\":\"Patient\",\"id\":\"o-{i}\",\"gender\":\"female\"}}");
        agent
            .put(&server.url(&format!("/fhir/Patient/o-{i}")))
            .header("Content-Type", "application/fhir+json")
            .send(body)
            .unwrap()
    };
    let mut acknowledged = 0;
    for i in 0..5 {
        assert_eq!(put(i).status(), 201);
        acknowledged += 1;
    }
    // Wait for the first flush to reach Azure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !blob(
        &azurite,
        &["list", "medlake", "outage/default/fhir/patient/"],
    )
    .contains("_delta_log/00000000000000000000.json")
    {
        assert!(
            Instant::now() < deadline,
            "the first flush never reached Azure"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    azurite.stop();
    for i in 5..20 {
        assert_eq!(
            put(i).status(),
            201,
            "a write while Azure is down, with room in the tail"
        );
        acknowledged += 1;
    }
    let r = agent.get(&server.url("/fhir/Patient/o-12")).call().unwrap();
    assert_eq!(
        r.status(),
        200,
        "acknowledged writes are readable meanwhile"
    );
    let mut refused = false;
    for i in 20..60 {
        let r = put(i);
        if r.status() == 503 {
            let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok());
            assert!(
                retry.is_some_and(|v| v.parse::<u64>().is_ok()),
                "503 without Retry-After"
            );
            refused = true;
            break;
        }
        assert_eq!(r.status(), 201);
        acknowledged += 1;
    }
    assert!(
        refused,
        "writes past the tail's bound must be refused while Azure is down"
    );

    azurite.restart();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let status = put(1000).status();
        if status == 201 {
            acknowledged += 1;
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "writes were not taken again within 4 minutes of Azure's return"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    server.stop();

    let out = medlake_az(
        &azurite,
        &[
            "sql",
            "--data",
            "az://medlake/outage",
            "--format",
            "json",
            "SELECT count(*) AS n FROM fhir.patient",
        ],
    );
    let out_text = String::from_utf8_lossy(&out.stdout);
    let rows: Value = serde_json::from_str(out_text.trim()).unwrap();
    assert_eq!(
        rows[0]["n"].as_u64(),
        Some(acknowledged as u64),
        "every acknowledged write is in Azure: {out_text}"
    );
}
