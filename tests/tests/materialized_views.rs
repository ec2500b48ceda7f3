//! Materialized views end to end (issue #10, points 2 and 3): a write through the FHIR
//! API reaches `views.observation` within a flush, typed; updates and deletes follow; a
//! crash between a flush's resource commit and its views' commit is recovered exactly at
//! the next start; `medlake views create/list/refresh/drop` with and without a server.

use std::time::{Duration, Instant};

use medlake_e2e::{Server, http, medlake, medlake_unchecked, sql_json};
use serde_json::{Value, json};

fn observation(id: &str, systolic: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2021-03-04T05:06:07+02:00",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": systolic, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
        ]
    })
}

fn sql(agent: &ureq::Agent, server: &Server, query: &str) -> Vec<Value> {
    let mut r = agent.post(&server.url("/sql")).send(query).unwrap();
    assert_eq!(r.status(), 200);
    match r.body_mut().read_json::<Value>().unwrap() {
        Value::Array(rows) => rows,
        other => panic!("not rows: {other}"),
    }
}

/// Ask until `check` holds of the answer, for at most `within`; the answer at the end.
fn eventually(
    agent: &ureq::Agent,
    server: &Server,
    query: &str,
    within: Duration,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let rows = sql(agent, server, query);
        if check(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SYSTOLIC: &str = "SELECT id, value, unit, effective, arrow_typeof(value) AS value_type, \
     arrow_typeof(effective) AS effective_type FROM views.observation WHERE code = '8480-6'";

#[test]
fn a_fhir_write_reaches_views_observation_within_a_flush() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--flush-interval-secs", "1"]);
    let agent = http();
    let r = agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 120.5))
        .unwrap();
    assert!(r.status().is_success());
    let written = Instant::now();
    // One flush interval (1 s) and the flush itself; the margin is for a loaded machine.
    let rows = eventually(&agent, &server, SYSTOLIC, Duration::from_secs(20), |r| {
        !r.is_empty()
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    eprintln!("in views.observation after {:?}", written.elapsed());
    assert_eq!(rows[0]["id"], "o1");
    assert_eq!(rows[0]["value"], 120.5);
    assert_eq!(rows[0]["unit"], "mm[Hg]");
    assert_eq!(rows[0]["value_type"], "Float64");
    assert!(
        rows[0]["effective_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("Timestamp")),
        "{rows:?}"
    );

    // An update replaces the rows.
    agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 99.0))
        .unwrap();
    let rows = eventually(&agent, &server, SYSTOLIC, Duration::from_secs(20), |r| {
        r.len() == 1 && r[0]["value"] == 99.0
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["value"], 99.0);
    let all = sql(
        &agent,
        &server,
        "SELECT count(*) AS n FROM views.observation WHERE id = 'o1'",
    );
    assert_eq!(
        all[0]["n"], 3,
        "one row for the observation, two components"
    );

    // A delete removes them.
    let r = agent
        .delete(&server.url("/fhir/Observation/o1"))
        .call()
        .unwrap();
    assert!(r.status().is_success());
    let rows = eventually(
        &agent,
        &server,
        "SELECT id FROM views.observation",
        Duration::from_secs(20),
        |r| r.is_empty(),
    );
    assert!(rows.is_empty(), "{rows:?}");
    server.stop();
}

#[test]
fn a_crash_between_the_resource_and_the_view_commits_is_recovered_at_start() {
    let data = tempfile::tempdir().unwrap();
    // The second flush that stores resources dies between its commit of the
    // observations and the views' commit: the view then exists and is one commit behind.
    let mut server = Server::start_with_env(
        data.path(),
        &["--flush-interval-secs", "1"],
        &[("MEDLAKE_CRASH_AT", "flush-before-views:2")],
    );
    let agent = http();
    agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 130.0))
        .unwrap();
    let rows = eventually(&agent, &server, SYSTOLIC, Duration::from_secs(20), |r| {
        !r.is_empty()
    });
    assert_eq!(rows.len(), 1, "the first flush reached the view: {rows:?}");
    agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 131.0))
        .unwrap();
    agent
        .put(&server.url("/fhir/Observation/o2"))
        .send_json(observation("o2", 140.0))
        .unwrap();
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.is_some(), "the crash point was reached");

    // The resources are in Delta, the view has not seen the second commit.
    let stored = sql_json(
        data.path(),
        "SELECT count(*) AS n FROM fhir_history.observation",
    );
    assert_eq!(stored[0]["n"], 3);
    let view = sql_json(
        data.path(),
        "SELECT id, value FROM views.observation WHERE code = '8480-6'",
    );
    assert_eq!(view, [json!({"id": "o1", "value": 130.0})]);

    // The next start brings the view up to the resource table before it serves.
    let server = Server::start(data.path(), &["--flush-interval-secs", "1"]);
    let rows = sql(
        &agent,
        &server,
        "SELECT id, value FROM views.observation WHERE code = '8480-6' ORDER BY id",
    );
    assert_eq!(
        rows,
        [
            json!({"id": "o1", "value": 131.0}),
            json!({"id": "o2", "value": 140.0})
        ]
    );
    let all = sql(
        &agent,
        &server,
        "SELECT count(*) AS n FROM views.observation",
    );
    assert_eq!(all[0]["n"], 6, "exactly once");
    server.stop();
}

#[test]
fn views_are_created_listed_refreshed_and_dropped_by_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ndjson = format!(
        "{}\n{}\n",
        observation("o1", 120.0),
        observation("o2", 140.0)
    );
    std::fs::write(dir.path().join("obs.ndjson"), ndjson).unwrap();
    medlake(
        data.path(),
        &["ingest", "--quiet", dir.path().to_str().unwrap()],
    );
    // Built-in views are there right after the ingest.
    let rows = sql_json(
        data.path(),
        "SELECT count(*) AS n FROM views.observation WHERE code = '8480-6'",
    );
    assert_eq!(rows[0]["n"], 2);

    let view = json!({
        "resourceType": "ViewDefinition", "name": "high_systolic", "resource": "Observation",
        "select": [
            {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"}]},
            {"forEach": "component.where(code.coding.code = '8480-6' and value.value > 130)",
             "column": [{"name": "systolic", "path": "value.value", "type": "decimal"}]}
        ]
    });
    let file = dir.path().join("high.json");
    std::fs::write(&file, view.to_string()).unwrap();
    let out = medlake(data.path(), &["views", "create", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("views.high_systolic"));
    assert_eq!(
        sql_json(data.path(), "SELECT id, systolic FROM views.high_systolic"),
        [json!({"id": "o2", "systolic": 140.0})]
    );
    let listed = String::from_utf8(medlake(data.path(), &["views", "list"]).stdout).unwrap();
    assert!(listed.contains("views.high_systolic"), "{listed}");
    assert!(listed.contains("views.observation"), "{listed}");

    // With a server holding the workspace, creating is refused and says what to do.
    let server = Server::start(data.path(), &[]);
    let out = medlake_unchecked(data.path(), &["views", "create", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop the server"), "{err}");
    // The server keeps the created view fresh.
    let agent = http();
    agent
        .put(&server.url("/fhir/Observation/o3"))
        .send_json(observation("o3", 180.0))
        .unwrap();
    server.stop();
    assert_eq!(
        sql_json(
            data.path(),
            "SELECT id FROM views.high_systolic ORDER BY id"
        ),
        [json!({"id": "o2"}), json!({"id": "o3"})]
    );

    medlake(data.path(), &["views", "refresh", "high_systolic"]);
    assert_eq!(
        sql_json(
            data.path(),
            "SELECT id FROM views.high_systolic ORDER BY id"
        ),
        [json!({"id": "o2"}), json!({"id": "o3"})]
    );
    medlake(data.path(), &["views", "drop", "high_systolic"]);
    let out = medlake_unchecked(data.path(), &["sql", "SELECT * FROM views.high_systolic"]);
    assert!(!out.status.success());
    let out = medlake_unchecked(data.path(), &["views", "drop", "observation"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in"));
}

/// A ViewDefinition as the FHIR API stores it, asking to be materialized.
fn tagged_view(id: &str, name: &str, threshold: f64) -> Value {
    json!({
        "resourceType": "ViewDefinition", "id": id, "name": name, "resource": "Observation",
        "meta": {"tag": [{"system": "https://medlake.dev/tags", "code": "medlake"}]},
        "select": [
            {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"}]},
            {"forEach": format!("component.where(code.coding.code = '8480-6' and value.value > {threshold})"),
             "column": [{"name": "systolic", "path": "value.value", "type": "decimal"}]}
        ]
    })
}

#[test]
fn a_view_definition_stored_with_the_medlake_tag_becomes_a_view_that_follows_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--flush-interval-secs", "1"]);
    let agent = http();
    for (id, systolic) in [("o1", 120.0), ("o2", 140.0), ("o3", 160.0)] {
        let r = agent
            .put(&server.url(&format!("/fhir/Observation/{id}")))
            .send_json(observation(id, systolic))
            .unwrap();
        assert!(r.status().is_success());
    }
    let r = agent
        .put(&server.url("/fhir/ViewDefinition/high"))
        .send_json(tagged_view("high", "high_systolic", 130.0))
        .unwrap();
    assert!(r.status().is_success());
    let query = "SELECT id, systolic FROM views.high_systolic ORDER BY id";
    let within = Duration::from_secs(20);
    let rows = eventually_ok(&agent, &server, query, within, |r| r.len() == 2);
    assert_eq!(
        rows,
        [
            json!({"id": "o2", "systolic": 140.0}),
            json!({"id": "o3", "systolic": 160.0})
        ]
    );
    // It is kept fresh like any view.
    agent
        .put(&server.url("/fhir/Observation/o4"))
        .send_json(observation("o4", 150.0))
        .unwrap();
    let rows = eventually_ok(&agent, &server, query, within, |r| r.len() == 3);
    assert_eq!(rows.len(), 3, "{rows:?}");

    // A new version of the definition rebuilds the view.
    agent
        .put(&server.url("/fhir/ViewDefinition/high"))
        .send_json(tagged_view("high", "high_systolic", 155.0))
        .unwrap();
    let rows = eventually_ok(&agent, &server, query, within, |r| r.len() == 1);
    assert_eq!(rows, [json!({"id": "o3", "systolic": 160.0})]);

    // A tagged definition whose view cannot be made is refused before it is stored.
    let mut r = agent
        .put(&server.url("/fhir/ViewDefinition/clash"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(tagged_view("clash", "observation", 1.0))
        .unwrap();
    assert_eq!(r.status(), 400);
    let outcome: Value = r.body_mut().read_json().unwrap();
    assert!(outcome.to_string().contains("built-in"), "{outcome}");
    let r = agent
        .put(&server.url("/fhir/ViewDefinition/other"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(tagged_view("other", "high_systolic", 1.0))
        .unwrap();
    assert_eq!(r.status(), 400, "another resource's view name");
    let r = agent
        .get(&server.url("/fhir/ViewDefinition/clash"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(r.status(), 404, "the refused definition was not stored");
    // An untagged ViewDefinition is only stored.
    agent
        .put(&server.url("/fhir/ViewDefinition/plain"))
        .send_json(
            json!({"resourceType": "ViewDefinition", "name": "plain_view",
            "resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}),
        )
        .unwrap();

    // The CLI does not drop a view that a resource keeps, and says what does.
    server.stop();
    let out = medlake_unchecked(data.path(), &["views", "drop", "high_systolic"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ViewDefinition/high"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(medlake(data.path(), &["views", "list"]).stdout).unwrap();
    assert!(listed.contains("views.high_systolic"), "{listed}");
    assert!(!listed.contains("plain_view"), "{listed}");

    // Deleting the resource drops its view; a restart keeps it dropped.
    let server = Server::start(data.path(), &["--flush-interval-secs", "1"]);
    agent
        .delete(&server.url("/fhir/ViewDefinition/high"))
        .call()
        .unwrap();
    let deadline = Instant::now() + within;
    let gone = loop {
        let r = agent
            .post(&server.url("/sql"))
            .config()
            .http_status_as_error(false)
            .build()
            .send(query)
            .unwrap();
        if r.status() != 200 || Instant::now() > deadline {
            break r.status() != 200;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(gone, "views.high_systolic outlived its ViewDefinition");
    server.stop();
    let listed = String::from_utf8(medlake(data.path(), &["views", "list"]).stdout).unwrap();
    assert!(!listed.contains("views.high_systolic"), "{listed}");
}

/// [`eventually`], for a query that may fail (a view that does not exist yet).
fn eventually_ok(
    agent: &ureq::Agent,
    server: &Server,
    query: &str,
    within: Duration,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut r = agent
            .post(&server.url("/sql"))
            .config()
            .http_status_as_error(false)
            .build()
            .send(query)
            .unwrap();
        if r.status() == 200 {
            let rows = match r.body_mut().read_json::<Value>().unwrap() {
                Value::Array(rows) => rows,
                other => panic!("not rows: {other}"),
            };
            if check(&rows) || Instant::now() > deadline {
                return rows;
            }
        } else if Instant::now() > deadline {
            panic!(
                "{query} still fails: {}",
                r.body_mut().read_to_string().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn views_as_of_reads_an_earlier_state_of_a_view() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--flush-interval-secs", "1"]);
    let agent = http();
    agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 120.0))
        .unwrap();
    let first = eventually(&agent, &server, SYSTOLIC, Duration::from_secs(20), |r| {
        r.len() == 1
    });
    assert_eq!(first[0]["value"], 120.0);
    // A moment between the first state of the view and the next.
    std::thread::sleep(Duration::from_millis(1100));
    let between = sql(&agent, &server, "SELECT CAST(now() AS VARCHAR) AS t")[0]["t"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1100));
    agent
        .put(&server.url("/fhir/Observation/o1"))
        .send_json(observation("o1", 99.0))
        .unwrap();
    agent
        .put(&server.url("/fhir/Observation/o2"))
        .send_json(observation("o2", 101.0))
        .unwrap();
    let now = eventually(&agent, &server, SYSTOLIC, Duration::from_secs(20), |r| {
        r.len() == 2
    });
    assert_eq!(now.len(), 2, "{now:?}");

    let then = sql(
        &agent,
        &server,
        &format!(
            "SELECT id, value FROM views_as_of('observation', TIMESTAMP '{between}') \
             WHERE code = '8480-6'"
        ),
    );
    assert_eq!(then, [json!({"id": "o1", "value": 120.0})]);
    // Delta version 0 of the view's table: the first commit, the same state.
    let v0 = sql(
        &agent,
        &server,
        "SELECT id, value FROM views_as_of('observation', 0) WHERE code = '8480-6'",
    );
    assert_eq!(v0, then);
    // Before the view had a table: nothing.
    let before = sql(
        &agent,
        &server,
        "SELECT count(*) AS n FROM views_as_of('views.observation', TIMESTAMP '2000-01-01T00:00:00Z')",
    );
    assert_eq!(before[0]["n"], 0);
    let mut r = agent
        .post(&server.url("/sql"))
        .config()
        .http_status_as_error(false)
        .build()
        .send("SELECT * FROM views_as_of('no_such_view', 0)")
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.body_mut().read_to_string().unwrap().contains("no view"));
    server.stop();
}
