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
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
    let child = Command::new(&bin)
        .args([
            "--silent",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
        ])
        .args(["--blobPort", &port.to_string(), "--location"])
        .arg(dir.path())
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
    Azurite {
        child,
        endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1"),
        _dir: dir,
    }
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
