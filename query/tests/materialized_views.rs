//! Materialized views (issue #10, points 2 and 3): `views.<name>` is kept by the flush and
//! by bulk commits, has typed columns, follows updates and deletes, catches up after
//! commits it missed, and a refresh gives the same rows as incremental maintenance.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::util::display::array_value_to_string;
use medlake_ingest::source::{Origin, Payload, RawRecord};
use medlake_lake::{BulkOptions, Lake, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use serde_json::{Value, json};

fn options(dir: &std::path::Path, with_wal: bool) -> LakeOptions {
    LakeOptions {
        workspace: "w".into(),
        with_wal,
        ..LakeOptions::new(dir.to_str().unwrap())
    }
}

fn put(resource: Value) -> WriteOp {
    let Value::Object(map) = resource else {
        panic!("not an object")
    };
    WriteOp::Put {
        resource_type: map["resourceType"].as_str().unwrap().to_string(),
        id: map.get("id").and_then(Value::as_str).map(str::to_string),
        resource: map,
        if_match: None,
    }
}

fn blood_pressure(id: &str, systolic: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "effectiveDateTime": "2021-03-04T05:06:07+02:00",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]},
             "valueQuantity": {"value": systolic, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]},
             "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
        ]
    })
}

fn smoking(id: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "effectiveDateTime": "2021-03",
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005", "display": "Never smoker"}]}
    })
}

fn patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id, "active": true, "gender": "female",
        "birthDate": "1980-02-29", "name": [{"family": "Chalmers", "given": ["Peter"]}]
    })
}

/// The rows of a query as text, one string per row, columns joined by `|`.
async fn text_rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let out = engine.query(sql).await.unwrap();
    let mut rows = Vec::new();
    for b in &out.batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "∅".to_string()
                    } else {
                        array_value_to_string(c, i).unwrap()
                    }
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

async fn batches(engine: &QueryEngine, sql: &str) -> Vec<RecordBatch> {
    engine.query(sql).await.unwrap().batches
}

const OBSERVATIONS: &str = "SELECT id, patient_id, encounter_id, part, code, value, unit, \
     value_code, effective FROM views.observation ORDER BY id, part DESC, code";

#[tokio::test]
async fn the_observation_view_is_kept_by_the_flush_with_typed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    lake.write(vec![
        put(patient("p1")),
        put(blood_pressure("bp", 120.5)),
        put(smoking("smoke")),
    ])
    .await
    .unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    assert!(
        text_rows(&engine, OBSERVATIONS).await.is_empty(),
        "before the flush the view has nothing"
    );
    lake.flush().await.unwrap();

    let out = batches(&engine, OBSERVATIONS).await;
    let schema = out[0].schema();
    assert_eq!(schema.field(5).data_type(), &DataType::Float64);
    assert_eq!(
        schema.field(8).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let b = &out[0];
    assert_eq!(b.column(5).as_primitive::<Float64Type>().value(2), 120.5);
    assert_eq!(
        b.column(8)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        // 2021-03-04T03:06:07Z
        1_614_827_167_000_000
    );
    assert_eq!(
        text_rows(&engine, OBSERVATIONS).await,
        [
            "bp|p1|e1|observation|85354-9|∅|∅|∅|2021-03-04T03:06:07Z",
            "bp|p1|e1|component|8462-4|80.0|mm[Hg]|∅|2021-03-04T03:06:07Z",
            "bp|p1|e1|component|8480-6|120.5|mm[Hg]|∅|2021-03-04T03:06:07Z",
            // A partial dateTime is stored as the start of its period.
            "smoke|p1|∅|observation|72166-2|∅|∅|266919005|2021-03-01T00:00:00Z",
        ]
    );

    let patients = batches(
        &engine,
        "SELECT id, birth_date, active, gender FROM views.patient",
    )
    .await;
    let p = &patients[0];
    assert_eq!(p.schema().field(1).data_type(), &DataType::Date32);
    assert_eq!(p.schema().field(2).data_type(), &DataType::Boolean);
    assert_eq!(p.column(1).as_primitive::<Date32Type>().value(0), 3711); // 1980-02-29
    assert!(p.column(2).as_boolean().value(0));

    // The bookkeeping columns are not part of SELECT *.
    let star = batches(&engine, "SELECT * FROM views.observation LIMIT 1").await;
    let names: Vec<String> = star[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('_')), "{names:?}");
    assert_eq!(names[0], "id");
}

#[tokio::test]
async fn an_update_replaces_a_resources_rows_and_a_delete_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    lake.write(vec![
        put(blood_pressure("bp", 120.0)),
        put(smoking("smoke")),
    ])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    let count = "SELECT id, count(*) FROM views.observation GROUP BY id ORDER BY id";
    assert_eq!(text_rows(&engine, count).await, ["bp|3", "smoke|1"]);

    // The update drops a component: its rows are the update's only.
    let mut updated = blood_pressure("bp", 140.0);
    updated["component"].as_array_mut().unwrap().truncate(1);
    lake.write(vec![put(updated)]).await.unwrap();
    lake.flush().await.unwrap();
    assert_eq!(
        text_rows(
            &engine,
            "SELECT part, code, value FROM views.observation WHERE id = 'bp' ORDER BY part DESC"
        )
        .await,
        ["observation|85354-9|∅", "component|8480-6|140.0"]
    );

    lake.write(vec![WriteOp::Delete {
        resource_type: "Observation".into(),
        id: "smoke".into(),
        if_match: None,
    }])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    assert_eq!(text_rows(&engine, count).await, ["bp|2"]);

    // Updated and deleted in the same flush, then revived in the next.
    lake.write(vec![put(smoking("smoke"))]).await.unwrap();
    lake.write(vec![WriteOp::Delete {
        resource_type: "Observation".into(),
        id: "bp".into(),
        if_match: None,
    }])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    assert_eq!(text_rows(&engine, count).await, ["smoke|1"]);
}

fn chunk(resources: &[Value]) -> Vec<RawRecord> {
    resources
        .iter()
        .enumerate()
        .map(|(i, r)| RawRecord {
            origin: Origin {
                source: Arc::from("test"),
                line: Some(i as u64 + 1),
                entry: None,
            },
            payload: Payload::Json(r.clone()),
        })
        .collect()
}

async fn bulk(lake: &Lake, resources: &[Value]) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(chunk(resources)).await.unwrap();
    drop(tx);
    let summary = lake
        .bulk_load(rx, BulkOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(summary.rejected, 0, "{:?}", summary.first_errors);
}

#[tokio::test]
async fn a_bulk_load_is_in_the_views_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    bulk(
        &lake,
        &[patient("p1"), blood_pressure("bp", 110.0), smoking("smoke")],
    )
    .await;
    let engine = QueryEngine::new(lake.clone()).unwrap();
    assert_eq!(
        text_rows(
            &engine,
            "SELECT id, count(*) FROM views.observation GROUP BY id ORDER BY id"
        )
        .await,
        ["bp|3", "smoke|1"]
    );
    assert_eq!(
        text_rows(&engine, "SELECT id, family FROM views.patient").await,
        ["p1|Chalmers"]
    );
    // A second load of the same resources makes version 2: still one set of rows.
    bulk(&lake, &[blood_pressure("bp", 111.0)]).await;
    assert_eq!(
        text_rows(
            &engine,
            "SELECT value FROM views.observation WHERE id = 'bp' AND code = '8480-6'"
        )
        .await,
        ["111.0"]
    );
}

#[tokio::test]
async fn a_view_catches_up_with_commits_it_missed_and_a_refresh_agrees() {
    let dir = tempfile::tempdir().unwrap();
    {
        let lake = Lake::open(options(dir.path(), true)).await.unwrap();
        lake.write(vec![
            put(blood_pressure("bp", 120.0)),
            put(smoking("smoke")),
        ])
        .await
        .unwrap();
        lake.flush().await.unwrap();
    }
    {
        // A process without the WAL commits resources and maintains no view: the view
        // is now behind its resource table, as after a crash between the two commits.
        let other = Lake::open(options(dir.path(), false)).await.unwrap();
        bulk(
            &other,
            &[blood_pressure("bp", 150.0), blood_pressure("bp2", 90.0)],
        )
        .await;
        let stale = QueryEngine::new(other.clone()).unwrap();
        assert_eq!(
            text_rows(
                &stale,
                "SELECT DISTINCT id FROM views.observation ORDER BY id"
            )
            .await,
            ["bp", "smoke"],
            "the view has not seen the bulk commit"
        );
    }
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let all = "SELECT id, part, code, value, unit, value_code, effective FROM views.observation \
               ORDER BY id, part, code";
    let caught_up = text_rows(&engine, all).await;
    assert_eq!(
        text_rows(
            &engine,
            "SELECT id, value FROM views.observation WHERE code = '8480-6' ORDER BY id"
        )
        .await,
        ["bp|150.0", "bp2|90.0"]
    );
    assert_eq!(caught_up.len(), 7);

    // What the resources say, by a view over fhir.observation's JSON: the same ids.
    let ids = text_rows(&engine, "SELECT id FROM fhir.observation ORDER BY id").await;
    assert_eq!(
        text_rows(
            &engine,
            "SELECT DISTINCT id FROM views.observation ORDER BY id"
        )
        .await,
        ids
    );

    lake.refresh_view("observation").await.unwrap();
    assert_eq!(text_rows(&engine, all).await, caught_up);
}

#[tokio::test]
async fn a_view_catches_up_after_a_compaction_of_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let lake = Lake::open(options(dir.path(), true)).await.unwrap();
        lake.write(vec![put(smoking("smoke"))]).await.unwrap();
        lake.flush().await.unwrap();
    }
    {
        let other = Lake::open(options(dir.path(), false)).await.unwrap();
        bulk(&other, &[blood_pressure("bp", 130.0)]).await;
        bulk(&other, &[blood_pressure("bp3", 100.0)]).await;
        other
            .optimize(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
    }
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    assert_eq!(
        text_rows(
            &engine,
            "SELECT id, count(*) FROM views.observation GROUP BY id ORDER BY id"
        )
        .await,
        ["bp|3", "bp3|3", "smoke|1"]
    );
}

#[tokio::test]
async fn a_created_view_is_built_from_what_is_stored_and_kept_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let mut twin = patient("p2");
    twin["multipleBirthInteger"] = json!(2);
    twin["deceasedDateTime"] = json!("2020-01-01T00:00:00Z");
    lake.write(vec![put(patient("p1")), put(twin)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    let definition = json!({
        "resourceType": "ViewDefinition", "name": "Births", "resource": "Patient",
        "where": [{"path": "gender = 'female'"}],
        "select": [{"column": [
            {"name": "id", "path": "getResourceKey()", "type": "id"},
            {"name": "born", "path": "birthDate", "type": "date"},
            {"name": "order", "path": "multipleBirth.ofType(integer)", "type": "integer"},
            {"name": "died", "path": "deceased.ofType(dateTime)", "type": "dateTime"},
            {"name": "active", "path": "active", "type": "boolean"},
            {"name": "given", "path": "name.given", "collection": true}
        ]}]
    });
    let view = lake.create_view(definition.clone()).await.unwrap();
    assert_eq!(view.name(), "births");
    let err = lake.create_view(definition).await.unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");

    let engine = QueryEngine::new(lake.clone()).unwrap();
    let out = batches(&engine, "SELECT * FROM views.births ORDER BY id").await;
    let b = &out[0];
    let types: Vec<DataType> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[1], DataType::Date32);
    assert_eq!(types[2], DataType::Int32);
    assert_eq!(
        types[3],
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(types[4], DataType::Boolean);
    assert!(matches!(types[5], DataType::List(_)));
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(1), 2);

    // Kept fresh: a male patient leaves the view by its `where`, a new one enters.
    let mut male = patient("p1");
    male["gender"] = json!("male");
    lake.write(vec![put(male), put(patient("p3"))])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    assert_eq!(
        text_rows(&engine, "SELECT id FROM views.births ORDER BY id").await,
        ["p2", "p3"]
    );

    // Another process finds it.
    drop(engine);
    drop(lake);
    let reader = Lake::open(options(dir.path(), false)).await.unwrap();
    assert!(reader.views().iter().any(|v| v.name() == "births"));
    let engine = QueryEngine::new(reader.clone()).unwrap();
    assert_eq!(
        text_rows(&engine, "SELECT id FROM views.births ORDER BY id").await,
        ["p2", "p3"]
    );
    let err = reader.drop_view("births").await.unwrap_err().to_string();
    assert!(err.contains("owns the workspace"), "{err}");
    drop(engine);
    drop(reader);

    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    assert!(lake.drop_view("patient").await.is_err(), "built-in");
    lake.drop_view("births").await.unwrap();
    assert!(lake.views().iter().all(|v| v.name() != "births"));
    drop(lake);
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    assert!(lake.views().iter().all(|v| v.name() != "births"));
}

/// The view's rows by id, as `views.observation` shows them.
const ROWS_BY_ID: &str = "SELECT id, part, code, value FROM views.observation \
     ORDER BY id, part DESC, code";

#[tokio::test]
async fn a_resource_updated_twice_and_deleted_across_flushes_shows_its_newest_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let delete = |id: &str| WriteOp::Delete {
        resource_type: "Observation".into(),
        id: id.into(),
        if_match: None,
    };
    // Flush 1: first versions of all.
    lake.write(vec![
        put(blood_pressure("twice", 120.0)),
        put(blood_pressure("gone", 121.0)),
        put(blood_pressure("once", 122.0)),
        put(smoking("back")),
    ])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    // Flush 2: `twice` and `gone` updated, `back` deleted.
    lake.write(vec![
        put(blood_pressure("twice", 130.0)),
        put(blood_pressure("gone", 131.0)),
        delete("back"),
    ])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    assert_eq!(
        text_rows(&engine, ROWS_BY_ID).await,
        [
            "gone|observation|85354-9|∅",
            "gone|component|8462-4|80.0",
            "gone|component|8480-6|131.0",
            "once|observation|85354-9|∅",
            "once|component|8462-4|80.0",
            "once|component|8480-6|122.0",
            "twice|observation|85354-9|∅",
            "twice|component|8462-4|80.0",
            "twice|component|8480-6|130.0",
        ]
    );
    // Flush 3: `twice` updated again with one component, `gone` deleted, `back` revived.
    let mut third = blood_pressure("twice", 140.0);
    third["component"].as_array_mut().unwrap().truncate(1);
    lake.write(vec![put(third), delete("gone"), put(smoking("back"))])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    // Flush 4: a new resource only; the others' newest versions are in earlier files.
    lake.write(vec![put(smoking("late"))]).await.unwrap();
    lake.flush().await.unwrap();
    let expected = [
        "back|observation|72166-2|∅",
        "late|observation|72166-2|∅",
        "once|observation|85354-9|∅",
        "once|component|8462-4|80.0",
        "once|component|8480-6|122.0",
        "twice|observation|85354-9|∅",
        "twice|component|8480-6|140.0",
    ];
    assert_eq!(text_rows(&engine, ROWS_BY_ID).await, expected);
    // The resources' own current versions agree, and so does a refresh, which keeps
    // only the current versions.
    assert_eq!(
        text_rows(&engine, "SELECT id FROM fhir.observation ORDER BY id").await,
        ["back", "late", "once", "twice"]
    );
    lake.refresh_view("observation").await.unwrap();
    assert_eq!(text_rows(&engine, ROWS_BY_ID).await, expected);
    // The view as it stood after flush 2 (its Delta versions: one commit per flush, the
    // first creating the table) still shows that flush's newest rows.
    assert_eq!(
        text_rows(
            &engine,
            "SELECT id, value FROM views_as_of('observation', 1) \
             WHERE code = '8480-6' ORDER BY id"
        )
        .await,
        ["gone|131.0", "once|122.0", "twice|130.0"]
    );
}

/// Runs `sql` and gives the rows its table scans (the plan's leaves) produced.
async fn rows_scanned(engine: &QueryEngine, sql: &str) -> usize {
    use datafusion::physical_plan::{ExecutionPlan, collect};
    fn leaves(plan: &Arc<dyn ExecutionPlan>, rows: &mut usize) {
        if plan.children().is_empty() {
            *rows += plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
        }
        for child in plan.children() {
            leaves(child, rows);
        }
    }
    let plan = physical(engine, sql).await;
    collect(plan.clone(), engine.context().task_ctx())
        .await
        .unwrap();
    let mut rows = 0;
    leaves(&plan, &mut rows);
    rows
}

#[tokio::test]
async fn a_view_of_first_versions_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    // Three flushes of first versions: three files, 3 rows a blood pressure.
    for batch in [["a", "b"], ["c", "d"], ["e", "f"]] {
        lake.write(
            batch
                .iter()
                .map(|id| put(blood_pressure(id, 120.0)))
                .collect(),
        )
        .await
        .unwrap();
        lake.flush().await.unwrap();
    }
    let count = "SELECT count(*) FROM views.observation";
    assert_eq!(text_rows(&engine, count).await, ["18"]);
    assert_eq!(
        rows_scanned(&engine, count).await,
        0,
        "with first versions only and no `_empty` row, the Delta log's row counts answer"
    );
    let sum = "SELECT count(value), sum(value) FROM views.observation";
    assert_eq!(text_rows(&engine, sum).await, ["12|1200.0"]);
    assert_eq!(
        rows_scanned(&engine, sum).await,
        18,
        "every stored row once, and nothing for the newest versions"
    );

    // An update: its file holds a second version, which the newest-version side reads;
    // the files of first versions it still skips.
    let mut update = blood_pressure("a", 150.0);
    update["component"].as_array_mut().unwrap().truncate(1);
    lake.write(vec![put(update)]).await.unwrap();
    lake.flush().await.unwrap();
    assert_eq!(text_rows(&engine, count).await, ["17"]);
    assert_eq!(rows_scanned(&engine, count).await, 20 + 2);
    assert_eq!(text_rows(&engine, sum).await, ["11|1150.0"]);
    assert_eq!(rows_scanned(&engine, sum).await, 20 + 2);
}

/// The physical plan of `sql`, made now and run later.
async fn physical(
    engine: &QueryEngine,
    sql: &str,
) -> Arc<dyn datafusion::physical_plan::ExecutionPlan> {
    engine
        .plan(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// The physical plan of `sql`, as EXPLAIN shows it.
async fn physical_plan(engine: &QueryEngine, sql: &str) -> String {
    let plan = physical(engine, sql).await;
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string()
}

#[tokio::test]
async fn a_view_of_first_versions_is_planned_as_a_scan_of_the_snapshot_it_was_planned_for() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(options(dir.path(), true)).await.unwrap();
    lake.create_view(json!({
        "resourceType": "ViewDefinition", "name": "women", "resource": "Patient",
        "where": [{"path": "gender = 'female'"}],
        "select": [{"column": [
            {"name": "id", "path": "getResourceKey()", "type": "id"},
            {"name": "born", "path": "birthDate", "type": "date"}
        ]}]
    }))
    .await
    .unwrap();
    let mut man = patient("m1");
    man["gender"] = json!("male");
    lake.write(vec![put(patient("p1")), put(man)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();

    // First versions only, one of them an `_empty` row: no join, but the filter.
    let rows = "SELECT id, born FROM views.women ORDER BY id";
    assert_eq!(text_rows(&engine, rows).await, ["p1|1980-02-29"]);
    let plan = physical_plan(&engine, rows).await;
    assert!(!plan.contains("JoinExec"), "{plan}");
    assert!(plan.contains("NOT _empty"), "{plan}");

    // A physical plan made now reads this snapshot, even once an update is committed:
    // without a join, a newer snapshot would show both versions of p1. A statement
    // planned now but run after the update (a prepared statement) is planned anew over
    // the snapshot of its run, and takes the join.
    let count = "SELECT count(*) FROM views.women";
    let planned = physical(&engine, count).await;
    let prepared = engine.plan(rows).await.unwrap();
    let mut older = patient("p1");
    older["birthDate"] = json!("1950-05-05");
    lake.write(vec![put(older)]).await.unwrap();
    lake.flush().await.unwrap();
    let out = datafusion::physical_plan::collect(planned, engine.context().task_ctx())
        .await
        .unwrap();
    assert_eq!(array_value_to_string(out[0].column(0), 0).unwrap(), "1");
    let out = prepared.collect().await.unwrap();
    let got: Vec<String> = out
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |i| {
                format!(
                    "{}|{}",
                    array_value_to_string(b.column(0), i).unwrap(),
                    array_value_to_string(b.column(1), i).unwrap()
                )
            })
        })
        .collect();
    assert_eq!(got, ["p1|1950-05-05"]);

    // The next query sees the second version, and plans the join that hides the first.
    let plan = physical_plan(&engine, rows).await;
    assert!(plan.contains("JoinExec"), "{plan}");
    assert_eq!(text_rows(&engine, rows).await, ["p1|1950-05-05"]);
}
