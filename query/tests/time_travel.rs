//! `fhir_as_of(type, time | delta_version)` returns the older state (issue #10, point 5).

use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use medlake_lake::{Lake, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use serde_json::{Map, Value, json};

fn put(id: &str, family: &str) -> WriteOp {
    let resource: Map<String, Value> = match json!({
        "resourceType": "Patient", "id": id, "name": [{"family": family}],
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    WriteOp::Put {
        resource_type: "Patient".into(),
        id: Some(id.into()),
        resource,
        if_match: None,
    }
}

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<(String, i64, String)> {
    let out = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for b in &out.batches {
        let ids = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let families = datafusion::arrow::compute::cast(b.column(2), &DataType::Utf8).unwrap();
        for i in 0..b.num_rows() {
            rows.push((
                ids.as_string::<i32>().value(i).to_string(),
                b.column(1).as_primitive::<Int64Type>().value(i),
                families.as_string::<i32>().value(i).to_string(),
            ));
        }
    }
    rows
}

fn as_of(table_fn_arg: &str) -> String {
    format!(
        "SELECT id, version_id, json_get_str(resource, 'name', 0, 'family') \
         FROM fhir_as_of('patient', {table_fn_arg}) ORDER BY id"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_time_or_delta_version_gives_the_older_state() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();

    lake.write(vec![put("a", "Old"), put("b", "Old"), put("c", "Old")])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    let first_commit = lake
        .table_view("Patient")
        .unwrap()
        .delta
        .and_then(|t| t.version())
        .expect("the flush made a Delta version");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;

    lake.write(vec![put("a", "New"), put("d", "New")])
        .await
        .unwrap();
    lake.write(vec![WriteOp::Delete {
        resource_type: "Patient".into(),
        id: "b".into(),
        if_match: None,
    }])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    // And one more that stays in the tail.
    lake.write(vec![put("c", "Tail")]).await.unwrap();

    let old = vec![
        ("a".to_string(), 1, "Old".to_string()),
        ("b".to_string(), 1, "Old".to_string()),
        ("c".to_string(), 1, "Old".to_string()),
    ];
    let now = vec![
        ("a".to_string(), 2, "New".to_string()),
        ("c".to_string(), 2, "Tail".to_string()),
        ("d".to_string(), 1, "New".to_string()),
    ];
    assert_eq!(
        rows(
            &engine,
            "SELECT id, version_id, json_get_str(resource, 'name', 0, 'family') FROM fhir.patient ORDER BY id"
        )
        .await,
        now
    );
    assert_eq!(
        rows(&engine, &as_of(&format!("TIMESTAMP '{between}'"))).await,
        old
    );
    assert_eq!(rows(&engine, &as_of(&format!("'{between}'"))).await, old);
    assert_eq!(rows(&engine, &as_of(&first_commit.to_string())).await, old);
    // The present, through the same function, includes the tail.
    assert_eq!(rows(&engine, &as_of("now()")).await, now);
    // Before anything was written: nothing.
    assert!(
        rows(&engine, &as_of("TIMESTAMP '2000-01-01T00:00:00Z'"))
            .await
            .is_empty()
    );

    for (bad, says) in [
        ("SELECT * FROM fhir_as_of('patient')", "two arguments"),
        (
            "SELECT * FROM fhir_as_of('nosuchtype', 1)",
            "not an R4 resource type",
        ),
        (
            "SELECT * FROM fhir_as_of('patient', 'yesterday')",
            "is not a time",
        ),
        ("SELECT * FROM fhir_as_of('patient', 999)", "999"),
    ] {
        let err = engine
            .query(bad)
            .await
            .err()
            .unwrap_or_else(|| panic!("{bad} answered"));
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}
