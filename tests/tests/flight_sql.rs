//! Arrow Flight SQL (`medlake serve --flight-listen`), driven by a real client: the
//! Python ADBC Flight SQL driver, with pandas and polars (`tests/python/flight_client.py`).
//! The client checks every answer against `POST /sql`, fetches a million rows or more
//! into both data frames, and watches the server's peak resident memory meanwhile.

use std::process::Command;

use medlake_e2e::{Server, medlake, sql_count, venv_python};

/// Rows the large query must return at least.
const BIG_ROWS: i64 = 1_000_000;

#[test]
fn an_adbc_client_queries_lists_and_streams_a_million_rows() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    let lake = dir.path().join("lake");
    medlake(
        &lake,
        &[
            "generate",
            "--patients",
            "60",
            "--out",
            generated.to_str().unwrap(),
            "-q",
        ],
    );
    medlake(&lake, &["ingest", "-q", generated.to_str().unwrap()]);
    let observations = sql_count(&lake, "SELECT count(*) AS n FROM fhir_history.observation");
    assert!(observations > 1000, "too few Observations: {observations}");
    let copies = (BIG_ROWS + observations - 1) / observations;

    let server = Server::start(&lake, &[]);
    let flight = server
        .flight
        .clone()
        .expect("the server announces Flight SQL");
    let script = medlake_e2e::tests_dir().join("python/flight_client.py");
    let out = Command::new(venv_python())
        .arg(script)
        .arg(&flight)
        .arg(&server.base)
        .arg(server.child.id().to_string())
        .arg(copies.to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Flight SQL client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("flight sql: every check passed"),
        "{stdout}"
    );
    // Stopping with Flight SQL on still ends the process promptly, having flushed.
    server.stop();
}

#[test]
fn flight_sql_is_turned_off_by_flag_or_variable_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let off = Server::start(&lake, &["--flight-listen", "off"]);
    assert_eq!(off.flight, None);
    off.stop();
    let off = Server::start_with_env(&lake, &[], &[("MEDLAKE_FLIGHT_LISTEN", "off")]);
    assert_eq!(off.flight, None);
    off.stop();
    // The flag over the variable.
    let on = Server::start_with_env(
        &lake,
        &["--flight-listen", "127.0.0.1:0"],
        &[("MEDLAKE_FLIGHT_LISTEN", "off")],
    );
    assert!(
        on.flight
            .as_deref()
            .is_some_and(|f| f.starts_with("grpc://127.0.0.1:"))
    );
    on.stop();
    // The variable over the file.
    let config = dir.path().join("medlake.toml");
    std::fs::write(&config, "flight_listen = \"off\"\n").unwrap();
    let on = Server::start_with_env(
        &lake,
        &["--config", config.to_str().unwrap()],
        &[("MEDLAKE_FLIGHT_LISTEN", "127.0.0.1:0")],
    );
    assert!(on.flight.is_some());
    on.stop();
    // And the file alone.
    std::fs::write(&config, "flight_listen = \"127.0.0.1:0\"\n").unwrap();
    let from_file = Server::start(&lake, &["--config", config.to_str().unwrap()]);
    assert!(from_file.flight.is_some());
    from_file.stop();
}
