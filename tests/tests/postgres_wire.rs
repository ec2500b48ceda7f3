//! The Postgres wire (`medlake serve --pg-listen`): real clients (psql, psycopg, pandas
//! through SQLAlchemy, pgJDBC) against a small data set, and the recorded sessions of
//! each client, Npgsql's included (`tests/pg_sessions/`), replayed statement by statement.
//!
//! The Python clients run from `tests/.venv`, pgJDBC from the jar Maven fetched; the test
//! command (scripts/test) installs both, and psql.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medlake_e2e::{Server, http};
use serde_json::Value;

const PATIENT: &str = "pat-1";

/// A server with three patients (one of them updated), two observations and one rejected
/// record, all still in the write buffer (SQL must see them there, as `/sql` does).
fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("lake"),
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--flush-interval-secs",
            "3600",
        ],
    );
    let body = "{\"resourceType\":\"Patient\",\"id\":\"pat-1\",\"gender\":\"female\",\"name\":[{\"family\":\"Ode\"}]}\n\
                {\"resourceType\":\"Patient\",\"id\":\"pat-2\",\"gender\":\"male\"}\n\
                {\"resourceType\":\"Patient\",\"id\":\"pat-3\",\"gender\":\"other\"}\n\
                {\"resourceType\":\"Patient\",\"id\":\"pat-1\",\"gender\":\"female\",\"name\":[{\"family\":\"Odell\"}]}\n\
                {\"resourceType\":\"Observation\",\"id\":\"obs-1\",\"status\":\"final\",\"code\":{\"text\":\"hr\"},\"subject\":{\"reference\":\"Patient/pat-1\"}}\n\
                {\"resourceType\":\"Observation\",\"id\":\"obs-2\",\"status\":\"final\",\"code\":{\"text\":\"bp\"}}\n\
                {\"resourceType\":\"Patient\",\"birthDate\":\"not-a-date\"}\n";
    let mut r = http()
        .post(&server.url("/ingest"))
        .send(body.to_string())
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    (dir, server)
}

fn pg(server: &Server) -> (String, String) {
    let addr = server
        .pg
        .clone()
        .expect("the server prints its Postgres address");
    let (host, port) = addr.rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

fn conninfo(server: &Server) -> String {
    let (host, port) = pg(server);
    format!("host={host} port={port} user=tester dbname=medlake")
}

/// The schemas `/sql` lists: the Postgres wire must list the same ones (the lake's own
/// and whatever other schemas the catalog gains, such as `views`).
fn lake_schemas(server: &Server) -> BTreeSet<String> {
    let mut r = http()
        .post(&server.url("/sql"))
        .send("SELECT schema_name FROM information_schema.schemata WHERE schema_name <> 'information_schema'")
        .unwrap();
    let rows: Value = r.body_mut().read_json().unwrap();
    let rows = rows.get("rows").cloned().unwrap_or(rows);
    let set: BTreeSet<String> = rows
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {rows}"))
        .iter()
        .filter_map(|r| r["schema_name"].as_str().map(str::to_string))
        .collect();
    for s in ["fhir", "fhir_history", "medlake"] {
        assert!(set.contains(s), "/sql does not list {s}: {set:?}");
    }
    set
}

fn tests_dir() -> PathBuf {
    medlake_e2e::tests_dir()
}

fn python() -> PathBuf {
    let python = tests_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the test command (scripts/test), which installs tests/python/requirements.txt",
        python.display()
    );
    python
}

fn checked(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn python_json(args: &[&str]) -> Value {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python runs");
    let stdout = checked(out, &format!("python {args:?}"));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn psql(server: &Server, script: &str) -> Output {
    let (host, port) = pg(server);
    Command::new("psql")
        .args([
            "-X", "-h", &host, "-p", &port, "-U", "tester", "-d", "medlake",
        ])
        .args(["-v", "ON_ERROR_STOP=0", "-P", "pager=off"])
        .env("PGCONNECT_TIMEOUT", "30")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("psql runs (the test command installs postgresql-client)")
}

#[test]
fn psql_lists_schemas_tables_and_columns_and_sees_writes_at_once() {
    let (_dir, server) = start();
    let out = psql(
        &server,
        "\\dn\n\\dv fhir.*\n\\dt fhir_history.*\n\\d fhir.patient\n",
    );
    let text = checked(out, "psql");
    for schema in lake_schemas(&server) {
        assert!(
            text.contains(&schema),
            "\\dn does not list {schema}:\n{text}"
        );
    }
    for table in ["patient", "observation"] {
        assert!(
            text.contains(&format!("fhir         | {table}")) || text.contains(table),
            "{text}"
        );
    }
    assert!(text.contains("fhir_history"), "{text}");
    for column in ["id", "version_id", "last_updated", "resource"] {
        assert!(
            text.contains(column),
            "\\d fhir.patient lacks {column}:\n{text}"
        );
    }
    assert!(text.contains("timestamp with time zone"), "{text}");

    // A write through the HTTP API is seen by the next query, as /sql sees it.
    let before = psql(
        &server,
        "\\pset tuples_only on\nSELECT count(*) FROM fhir.patient;\n",
    );
    assert_eq!(checked(before, "psql").trim(), "3");
    let r = http()
        .post(&server.url("/ingest"))
        .send("{\"resourceType\":\"Patient\",\"id\":\"pat-4\"}\n".to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = psql(
        &server,
        "\\pset tuples_only on\nSELECT count(*) FROM fhir.patient;\n",
    );
    assert_eq!(checked(after, "psql").trim(), "4");
}

#[test]
fn psql_writes_are_refused_and_the_session_goes_on() {
    let (_dir, server) = start();
    let out = psql(
        &server,
        "\\pset tuples_only on\n\
         INSERT INTO fhir.patient (id) VALUES ('x');\n\
         CREATE TABLE t (a int);\n\
         SELECT 'still here';\n\
         BEGIN;\nSELECT count(*) FROM fhir.observation;\nCOMMIT;\n\
         COPY fhir.patient FROM STDIN;\n\
         SELECT 'and here';\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("read-only transaction").count(),
        3,
        "INSERT, CREATE and COPY FROM are refused as writes:\n{stderr}"
    );
    assert!(stdout.contains("still here"), "{stdout}\n{stderr}");
    assert!(stdout.contains("and here"), "{stdout}\n{stderr}");
    assert!(stdout.contains(" 2"), "the transaction's count:\n{stdout}");
}

#[test]
fn psycopg_parameters_types_refusals_and_sessions() {
    let (_dir, server) = start();
    let out = python_json(&[
        tests_dir().join("python/pg_clients.py").to_str().unwrap(),
        "psycopg",
        &conninfo(&server),
        PATIENT,
    ]);
    let patient = &out["patient"];
    assert_eq!(patient[0], serde_json::json!(["str", PATIENT]));
    assert_eq!(patient[1], serde_json::json!(["int", 2]));
    assert_eq!(patient[2][0], "datetime");
    assert_eq!(out["patient_tz"], "UTC", "last_updated is a timestamptz");
    assert_eq!(patient[3][0], "str", "resource (Utf8View) is text");
    assert!(patient[3][1].as_str().unwrap().contains("Odell"));
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "int", "int", "float", "Decimal", "bool", "date", "str", "str"
        ],
        "{out}"
    );
    assert_eq!(out["types"][3][1], "12.34");
    assert_eq!(out["types"][5][1], "2024-02-29");
    assert_eq!(out["types"][6][1], "Patient");
    assert!(out["types"][7][1].as_str().unwrap().contains("Odell"));
    // int4, int8, float8, numeric, bool, date, text, text
    assert_eq!(
        out["type_oids"],
        serde_json::json!([23, 20, 701, 1700, 16, 1082, 25, 25])
    );
    assert_eq!(out["count_over"], 3);
    assert_eq!(out["simple_count"], 1);
    for refused in out["refused"].as_array().unwrap() {
        assert_eq!(refused[1], "25006", "{refused}");
    }
    assert_eq!(out["after_refusal"], 2);
    assert_eq!(out["in_transaction"], 3);
    assert_eq!(out["refused_in_transaction"], "25006");
    assert_eq!(out["after_transaction"], 4);
    assert_eq!(out["show_search_path"], "fhir");
    assert_eq!(out["current_schema"], "fhir");
    assert!(
        out["version"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL 16")
    );
    // Each connection has its own settings.
    assert_eq!(out["other_app"], "second");
    assert_eq!(out["first_app"], "first");
    assert_eq!(out["first_app_show"], "first");
    assert_eq!(out["parameter_status_app"], "first");
}

#[test]
fn pandas_and_sqlalchemy_read_and_inspect() {
    let (_dir, server) = start();
    let (host, port) = pg(&server);
    let url = format!("postgresql+psycopg://tester@{host}:{port}/medlake");
    let out = python_json(&[
        tests_dir().join("python/pg_clients.py").to_str().unwrap(),
        "sqlalchemy",
        &url,
        PATIENT,
    ]);
    assert_eq!(out["rows"], 1);
    assert_eq!(out["ids"], serde_json::json!([PATIENT]));
    assert_eq!(out["dtypes"]["version_id"], "int64");
    assert!(
        out["dtypes"]["last_updated"]
            .as_str()
            .unwrap()
            .contains("UTC"),
        "{out}"
    );
    assert_eq!(
        out["all_ids"],
        serde_json::json!(["pat-1", "pat-2", "pat-3"])
    );
    let schemas: BTreeSet<String> = out["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    for s in lake_schemas(&server) {
        assert!(
            schemas.contains(&s),
            "get_schema_names lacks {s}: {schemas:?}"
        );
    }
    assert_eq!(
        out["tables"]["fhir"],
        serde_json::json!(["observation", "patient"])
    );
    assert_eq!(
        out["tables"]["fhir_history"],
        serde_json::json!(["observation", "patient"])
    );
    assert_eq!(
        out["tables"]["medlake"],
        serde_json::json!(["ingest_errors"])
    );
    for (table, columns) in out["columns"].as_object().unwrap() {
        let (schema, name) = table.split_once('.').unwrap();
        let expected = sql_columns(&server, schema, name);
        let got: Vec<(String, String, bool)> = columns
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut ty = c["type"].as_str().unwrap().to_string();
                if c["timezone"] == true {
                    ty.push_str(" WITH TIME ZONE");
                }
                (
                    c["name"].as_str().unwrap().to_string(),
                    ty,
                    c["nullable"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "get_columns({table})");
        for c in columns.as_array().unwrap() {
            assert_eq!(c["default"], Value::Null, "{table}: {c}");
        }
        // What pandas read by the table's name: every column, every row.
        let read = &out["read_table"][table];
        let names: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            read["columns"],
            serde_json::json!(names),
            "read_sql_table({table})"
        );
        let ids = sql_ids(&server, table);
        // A view is maintained at flush, and this server's writes are not flushed: its
        // views are empty, as `/sql` answers too.
        assert!(
            table.starts_with("views.") || !ids.is_empty(),
            "{table} has rows"
        );
        assert_eq!(
            read["ids"],
            serde_json::json!(ids),
            "read_sql_table({table})"
        );
    }
    // No keys, no indexes: answered as Postgres answers for a table without them.
    for (table, keys) in out["keys"].as_object().unwrap() {
        assert_eq!(
            keys["pk"],
            serde_json::json!({"constrained_columns": [], "name": null}),
            "{table}"
        );
        for kind in ["foreign_keys", "unique", "check", "indexes"] {
            assert_eq!(keys[kind], serde_json::json!([]), "{table}: {kind}");
        }
    }
}

/// `schema.table`'s columns as `/sql` has them, each with the SQLAlchemy type its Arrow
/// type is on the Postgres wire, and whether it may be NULL.
fn sql_columns(server: &Server, schema: &str, table: &str) -> Vec<(String, String, bool)> {
    let rows = sql_rows(
        server,
        &format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    );
    assert!(!rows.is_empty(), "/sql has no columns for {schema}.{table}");
    rows.iter()
        .map(|r| {
            let arrow = r["data_type"].as_str().unwrap();
            let ty = match arrow {
                "Utf8" | "Utf8View" | "LargeUtf8" => "TEXT",
                "Int64" => "BIGINT",
                "Int32" => "INTEGER",
                "Float64" => "DOUBLE PRECISION",
                "Boolean" => "BOOLEAN",
                "Date32" => "DATE",
                t if t.starts_with("Timestamp(") && t.contains("UTC") => "TIMESTAMP WITH TIME ZONE",
                other => panic!("{schema}.{table}: no Postgres type known here for {other}"),
            };
            (
                r["column_name"].as_str().unwrap().to_string(),
                ty.to_string(),
                r["is_nullable"] == "YES",
            )
        })
        .collect()
}

fn sql_rows(server: &Server, query: &str) -> Vec<Value> {
    let mut r = http().post(&server.url("/sql")).send(query).unwrap();
    let rows: Value = r.body_mut().read_json().unwrap();
    let rows = rows.get("rows").cloned().unwrap_or(rows);
    rows.as_array()
        .unwrap_or_else(|| panic!("no rows from {query}: {rows}"))
        .clone()
}

/// The ids in `table` as `/sql` answers, sorted.
fn sql_ids(server: &Server, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = sql_rows(server, &format!("SELECT id FROM {table}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The pgJDBC jar Maven fetched (scripts/test runs `mvn dependency:get`).
fn pgjdbc_jar() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let dir = Path::new(&home).join(".m2/repository/org/postgresql/postgresql");
    let mut jars: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the test command fetches pgJDBC with Maven",
                dir.display()
            )
        })
        .filter_map(|e| e.ok())
        .flat_map(|v| {
            std::fs::read_dir(v.path())
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jar"))
        .collect();
    jars.sort();
    jars.pop().expect("a pgJDBC jar under ~/.m2")
}

#[test]
fn pgjdbc_browses_as_dbeaver_does() {
    let (_dir, server) = start();
    let jar = pgjdbc_jar();
    let classes = tempfile::tempdir().unwrap();
    let out = Command::new("javac")
        .args([
            "-d",
            classes.path().to_str().unwrap(),
            "-cp",
            jar.to_str().unwrap(),
        ])
        .arg(tests_dir().join("java/PgJdbcBrowse.java"))
        .output()
        .expect("javac runs");
    checked(out, "javac");
    let (host, port) = pg(&server);
    let cp = format!("{}:{}", jar.display(), classes.path().display());
    let out = Command::new("java")
        .args(["-cp", &cp, "PgJdbcBrowse"])
        .arg(format!("jdbc:postgresql://{host}:{port}/medlake"))
        .args(["patient", PATIENT])
        .output()
        .expect("java runs");
    let text = checked(out, "PgJdbcBrowse");
    assert!(text.contains("product PostgreSQL 16.6"), "{text}");
    for s in lake_schemas(&server) {
        assert!(
            text.contains(&format!("schema {s}\n")),
            "getSchemas lacks {s}:\n{text}"
        );
    }
    for t in [
        "table fhir.patient VIEW",
        "table fhir.observation VIEW",
        "table fhir_history.patient TABLE",
        "table medlake.ingest_errors TABLE",
    ] {
        assert!(text.contains(t), "getTables lacks {t}:\n{text}");
    }
    for c in [
        "column fhir.patient.id text",
        "column fhir.patient.version_id int8",
        "column fhir.patient.last_updated timestamptz",
        "column fhir.patient.resource text",
    ] {
        assert!(text.contains(c), "getColumns lacks {c}:\n{text}");
    }
    assert!(text.contains(&format!("row {PATIENT} 2 ")), "{text}");
}

/// Every recorded session answers each statement without error (but the writes it
/// recorded being refused), and what a browsing client's session answered lists the
/// lake's schemas, its tables and the columns of `fhir.patient`.
#[test]
fn recorded_client_sessions_replay() {
    let (_dir, server) = start();
    let sessions = tests_dir().join("pg_sessions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sessions)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "npgsql",
            "npgsql_source",
            "pgjdbc",
            "psql",
            "psycopg",
            "sqlalchemy"
        ]
    );
    let schemas = lake_schemas(&server);
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy();
        let out = python_json(&[
            tests_dir().join("python/pg_replay.py").to_str().unwrap(),
            file.to_str().unwrap(),
            &conninfo(&server),
        ]);
        assert!(out["statements"].as_u64().unwrap() > 0, "{name}: empty");
        for e in out["errors"].as_array().unwrap() {
            assert_eq!(e["sqlstate"], "25006", "{name}: a statement failed: {e}");
        }
        assert_eq!(
            out["gaps_now_pass"],
            serde_json::json!([]),
            "{name}: a statement marked known_gap works now: remove the mark (and the README's line)"
        );
        assert_eq!(out["known_gaps"], serde_json::json!([]), "{name}: {out}");
        let values: BTreeSet<&str> = out["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if name == "psycopg" {
            // A querying client, not a browsing one: its answers hold the data.
            assert!(values.contains(PATIENT), "{name}: {values:?}");
            continue;
        }
        for s in &schemas {
            assert!(
                values.contains(s.as_str()),
                "{name}: no answer lists schema {s}"
            );
        }
        for t in ["patient", "observation"] {
            assert!(values.contains(t), "{name}: no answer lists table {t}");
        }
        if name == "npgsql" {
            npgsql_answers(&out["results"], &schemas);
        }
        if name == "npgsql_source" {
            npgsql_source_answers(&out["results"], &schemas);
        }
        if name == "sqlalchemy" {
            sqlalchemy_answers(&out["results"]);
        }
        for c in ["version_id", "last_updated", "resource"] {
            assert!(values.contains(c), "{name}: no answer lists column {c}");
        }
    }
}

/// SQLAlchemy's reflection of `fhir.patient` (`get_columns`) lists its columns in order,
/// each with its type and nullability, and of `fhir_history.patient` finds no primary key
/// and no index (`get_pk_constraint`, `get_indexes`), as medlake has none.
fn sqlalchemy_answers(results: &Value) {
    let columns = answer(results, "columns");
    let rows = records(&columns[0]);
    let listed: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].clone().unwrap_or_else(|| "NULL".into());
            (field("name"), field("format_type"), field("not_null"))
        })
        .collect();
    let expected = [
        ("id", "text", "t"),
        ("version_id", "bigint", "t"),
        ("last_updated", "timestamp with time zone", "t"),
        ("resource", "text", "t"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(listed, expected, "get_columns(fhir.patient): {rows:?}");
    for r in &rows {
        for k in ["default", "identity_options", "collation"] {
            assert_eq!(r[k], None, "{k}: {r:?}");
        }
    }
    for name in ["pk", "indexes"] {
        let sets = answer(results, name);
        assert_eq!(sets.len(), 1, "{name}: {sets:?}");
        assert!(sets[0].1.is_empty(), "{name} finds something: {sets:?}");
    }
}

/// One named answer of a replayed session: its result sets, each as (columns, rows).
fn answer(results: &Value, name: &str) -> Vec<(Vec<String>, Vec<Vec<Option<String>>>)> {
    let sets = results[name]
        .as_array()
        .unwrap_or_else(|| panic!("no answer named {name}: {results}"));
    sets.iter()
        .map(|set| {
            let columns = set["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let rows = set["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .collect();
            (columns, rows)
        })
        .collect()
}

/// Rows as maps from column name to value.
/// Checks that Npgsql's type query (`types`, whose type and element columns are named
/// `columns`) lists the types medlake's answers carry as base types of pg_catalog with
/// Postgres's oids, each with an array type (typtype 'a', found through `typreceive =
/// array_recv`) of that element; gives a lookup of the rows by type name.
fn npgsql_result_types<'t>(
    types: &'t [std::collections::BTreeMap<String, Option<String>>],
    (type_column, element_column): (&'t str, &'t str),
) -> impl Fn(&str) -> &'t std::collections::BTreeMap<String, Option<String>> {
    let find = move |name: &str| {
        types
            .iter()
            .find(|t| get(t, "typname") == name)
            .unwrap_or_else(|| panic!("Npgsql's type query lacks {name}"))
    };
    for (name, oid) in RESULT_TYPES {
        let t = find(name);
        assert_eq!(get(t, "nspname"), "pg_catalog", "{t:?}");
        assert_eq!(get(t, "oid"), oid, "{t:?}");
        assert_eq!(get(t, type_column), "b", "{t:?}");
        let array = find(&format!("_{name}"));
        assert_eq!(get(array, type_column), "a", "{array:?}");
        assert_eq!(get(array, element_column), oid, "{array:?}");
    }
    find
}

fn records(
    (columns, rows): &(Vec<String>, Vec<Vec<Option<String>>>),
) -> Vec<std::collections::BTreeMap<String, Option<String>>> {
    rows.iter()
        .map(|r| columns.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

fn get<'a>(row: &'a std::collections::BTreeMap<String, Option<String>>, column: &str) -> &'a str {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
        .as_deref()
        .unwrap_or("NULL")
}

/// The types medlake's answers carry, with Postgres's oids: Npgsql must find each, and an
/// array of it, in what its type loading answers.
const RESULT_TYPES: [(&str, &str); 9] = [
    ("text", "25"),
    ("int4", "23"),
    ("int8", "20"),
    ("float8", "701"),
    ("numeric", "1700"),
    ("bool", "16"),
    ("date", "1082"),
    ("timestamptz", "1184"),
    ("json", "114"),
];

/// What the recorded Npgsql 4.0.10 session answered: the types it loads at connect
/// (medlake's result types among them, arrays told apart by their receive function, in
/// the order Npgsql resolves them), the databases, schemas, tables, views and columns of
/// its `GetSchema`, which Power BI lists, the keys and indexes medlake does not have,
/// and the row its parameterized query reads.
fn npgsql_answers(results: &Value, schemas: &BTreeSet<String>) {
    let types = records(&answer(results, "load_types")[0]);
    let find = npgsql_result_types(&types, ("type", "elemoid"));
    let range = find("int4range");
    assert_eq!((get(range, "type"), get(range, "elemoid")), ("r", "23"));
    // `ORDER BY ord`: base types (0), domains (1), ranges (2), then arrays (3), which
    // Npgsql resolves after their elements.
    let ords: Vec<&str> = types.iter().map(|t| get(t, "ord")).collect();
    assert!(ords.windows(2).all(|w| w[0] <= w[1]), "{ords:?}");
    assert_eq!(get(find("_text"), "ord"), "3");
    // No composite or enum types: their queries answer no rows.
    for name in ["load_composites", "load_enums"] {
        let sets = answer(results, name);
        assert!(sets[0].1.is_empty(), "{name}: {sets:?}");
    }

    npgsql_catalog(
        results,
        schemas,
        ("database_name", "owner", "schema_name"),
        |(names, row)| {
            let at = |c: &str| {
                let i = names.iter().position(|n| n == c);
                let i = i.unwrap_or_else(|| panic!("GetSchema(Columns) has no {c}: {names:?}"));
                row[i].clone().unwrap_or_default()
            };
            (at("column_name"), at("data_type"))
        },
        [
            ("id", "text"),
            ("version_id", "int8"),
            ("last_updated", "timestamptz"),
            ("resource", "text"),
        ],
    );

    // medlake has no keys and no indexes: each collection answers, empty.
    for name in [
        "indexes",
        "index_columns",
        "primary_key",
        "foreign_keys",
        "constraint_columns",
    ] {
        let sets = answer(results, name);
        assert_eq!(sets.len(), 1, "{name}: {sets:?}");
        assert!(sets[0].1.is_empty(), "{name} finds something: {sets:?}");
    }
    let rows = &answer(results, "patient_row")[0].1;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0].as_deref(), Some(PATIENT));
    assert_eq!(rows[0][1].as_deref(), Some("2"), "pat-1 was updated once");
}

/// What the statements of Npgsql 10, taken from its source, answered: the types it loads
/// at connect (ranges and multiranges among them), then the same `GetSchema` collections.
fn npgsql_source_answers(results: &Value, schemas: &BTreeSet<String>) {
    let load = answer(results, "load_types");
    assert_eq!(
        load.len(),
        4,
        "version, types, composite fields, enum labels"
    );
    let version = &load[0].1[0][0];
    assert!(
        version
            .as_deref()
            .unwrap_or("")
            .starts_with("PostgreSQL 16"),
        "{version:?}"
    );
    let types = records(&load[1]);
    let find = npgsql_result_types(&types, ("typtype", "elemtypoid"));
    let range = find("int4range");
    assert_eq!(
        (get(range, "typtype"), get(range, "elemtypoid")),
        ("r", "23")
    );
    let multirange = find("int4multirange");
    assert_eq!(
        (get(multirange, "typtype"), get(multirange, "elemtypoid")),
        ("m", "3904"),
        "a multirange's element is its range, from pg_range"
    );
    // Base types come before ranges, ranges before arrays, as Npgsql needs to resolve
    // each type's element before the type.
    let rank = |t: &str| match t {
        "b" | "e" | "p" => 0,
        "c" => 1,
        "r" => 2,
        "m" => 3,
        "d" => 4,
        _ => 5,
    };
    let ranks: Vec<i32> = types.iter().map(|t| rank(get(t, "typtype"))).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    // No composite or enum types: their queries answer no rows.
    assert!(load[2].1.is_empty(), "{:?}", load[2]);
    assert!(load[3].1.is_empty(), "{:?}", load[3]);

    // The type is the eighth column, an unnamed CASE.
    npgsql_catalog(
        results,
        schemas,
        ("datname", "usename", "nspname"),
        |(_, r)| {
            (
                r[3].clone().unwrap_or_default(),
                r[7].clone().unwrap_or_default(),
            )
        },
        [
            ("id", "text"),
            ("version_id", "bigint"),
            ("last_updated", "timestamp with time zone"),
            ("resource", "text"),
        ],
    );
}

/// What Npgsql's `GetSchema` answered (entries `databases`, `schemata`, `tables`,
/// `views`, `columns_patient` and `columns_all`): the database `medlake` with its owner,
/// the lake's schemas and `views`, the lake's tables (`fhir`'s being views) and views,
/// and `fhir.patient`'s columns in order with the types `column` reads from a row. The
/// column names differ between Npgsql's versions: the caller gives the database, owner
/// and schema ones.
fn npgsql_catalog(
    results: &Value,
    schemas: &BTreeSet<String>,
    (database, owner, schema): (&str, &str, &str),
    column: impl Fn((&Vec<String>, &Vec<Option<String>>)) -> (String, String),
    expected_columns: [(&str, &str); 4],
) {
    let databases = records(&answer(results, "databases")[0]);
    let medlake = databases
        .iter()
        .find(|d| get(d, database) == "medlake")
        .unwrap_or_else(|| panic!("GetSchema(Databases) lacks medlake: {databases:?}"));
    assert_ne!(get(medlake, owner), "NULL", "the owner's name: {medlake:?}");

    let schemata: BTreeSet<String> = records(&answer(results, "schemata")[0])
        .iter()
        .map(|s| get(s, schema).to_string())
        .collect();
    for s in schemas.iter().chain(&["views".to_string()]) {
        assert!(
            schemata.contains(s),
            "GetSchema(Schemata) lacks {s}: {schemata:?}"
        );
    }
    let listed = |name: &str| -> BTreeSet<(String, String)> {
        records(&answer(results, name)[0])
            .iter()
            .map(|t| {
                (
                    get(t, "table_schema").to_string(),
                    get(t, "table_name").to_string(),
                )
            })
            .collect()
    };
    let tables = listed("tables");
    for (schema, table) in [
        ("fhir_history", "patient"),
        ("fhir_history", "observation"),
        ("medlake", "ingest_errors"),
    ] {
        assert!(
            tables.contains(&(schema.to_string(), table.to_string())),
            "GetSchema(Tables) lacks {schema}.{table}: {tables:?}"
        );
    }
    assert!(
        tables.iter().all(|(s, _)| s != "fhir"),
        "fhir.* are views: {tables:?}"
    );
    let views = listed("views");
    for (schema, table) in [
        ("fhir", "patient"),
        ("fhir", "observation"),
        ("views", "observation"),
    ] {
        assert!(
            views.contains(&(schema.to_string(), table.to_string())),
            "GetSchema(Views) lacks {schema}.{table}: {views:?}"
        );
    }
    let (names, rows) = &answer(results, "columns_patient")[0];
    let columns: Vec<(String, String)> = rows.iter().map(|r| column((names, r))).collect();
    assert_eq!(
        columns,
        expected_columns.map(|(c, t)| (c.to_string(), t.to_string())),
    );
    let all = records(&answer(results, "columns_all")[0]);
    for (schema, table) in [("fhir", "observation"), ("fhir_history", "observation")] {
        assert!(
            all.iter().any(|c| get(c, "table_schema") == schema
                && get(c, "table_name") == table
                && get(c, "column_name") == "resource"),
            "GetSchema(Columns) lacks {schema}.{table}.resource"
        );
    }
}
