//! `fhir.<type>` answers the current versions without a window over history (issue #10,
//! point 4): the same rows as ranking every version, in the tail, in Delta, across
//! updates and deletes in both, after a compaction moved the rows, and after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use medlake_lake::{Lake, LakeOptions, WriteOp};
use medlake_query::QueryEngine;
use serde_json::{Map, Value, json};

fn put(id: &str, family: &str) -> WriteOp {
    let resource: Map<String, Value> = match json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": family}],
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

fn delete(id: &str) -> WriteOp {
    WriteOp::Delete {
        resource_type: "Patient".into(),
        id: id.into(),
        if_match: None,
    }
}

/// What the writes say is current: id -> (version, family).
#[derive(Default)]
struct Model(BTreeMap<String, (i64, String)>, BTreeMap<String, i64>);

impl Model {
    async fn put(&mut self, lake: &Lake, id: &str, family: &str) {
        lake.write(vec![put(id, family)]).await.unwrap();
        let v = self.1.entry(id.into()).or_insert(0);
        *v += 1;
        self.0.insert(id.into(), (*v, family.into()));
    }

    async fn delete(&mut self, lake: &Lake, id: &str) {
        lake.write(vec![delete(id)]).await.unwrap();
        *self.1.entry(id.into()).or_insert(0) += 1;
        self.0.remove(id);
    }
}

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<(String, i64, String)> {
    let out = engine.query(sql).await.unwrap();
    let mut rows = Vec::new();
    for b in &out.batches {
        let ids = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let ids = ids.as_string::<i32>();
        let versions = b.column(1).as_primitive::<Int64Type>();
        let families = datafusion::arrow::compute::cast(
            b.column(2),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let families = families.as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((
                ids.value(i).to_string(),
                versions.value(i),
                if families.is_null(i) {
                    String::new()
                } else {
                    families.value(i).to_string()
                },
            ));
        }
    }
    rows
}

async fn check(engine: &QueryEngine, model: &Model, when: &str) {
    let expected: Vec<(String, i64, String)> = model
        .0
        .iter()
        .map(|(id, (v, f))| (id.clone(), *v, f.clone()))
        .collect();
    let current = rows(
        engine,
        "SELECT id, version_id, json_get_str(resource, 'name', 0, 'family') \
         FROM fhir.patient ORDER BY id",
    )
    .await;
    let ranked = rows(
        engine,
        "SELECT id, version_id, json_get_str(resource, 'name', 0, 'family') FROM ( \
           SELECT *, row_number() OVER (PARTITION BY id ORDER BY version_id DESC) AS rank \
           FROM fhir_history.patient) \
         WHERE rank = 1 AND NOT deleted ORDER BY id",
    )
    .await;
    assert_eq!(current, expected, "{when}: fhir.patient");
    assert_eq!(ranked, expected, "{when}: the window over fhir_history");
    let count = engine
        .query("SELECT count(*) FROM fhir.patient")
        .await
        .unwrap();
    assert_eq!(
        count.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0) as usize,
        expected.len(),
        "{when}: count(*)"
    );
    // And the plan is a scan: no window, no sort (the fallback, for files the index has
    // not located, would rank versions).
    let plan = engine
        .query("EXPLAIN SELECT id FROM fhir.patient")
        .await
        .unwrap();
    let text = format!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&plan.batches).unwrap()
    );
    assert!(
        !text.contains("Window") && !text.contains("SortExec"),
        "{when}: current versions rank nothing:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_versions_match_the_ranking_of_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let options = LakeOptions::new(dir.path().to_str().unwrap());
    let lake = Lake::open(options.clone()).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let mut model = Model::default();

    // In the tail only: versions replace each other there.
    for i in 0..40 {
        model.put(&lake, &format!("p{i:02}"), "One").await;
    }
    for i in (0..40).step_by(3) {
        model.put(&lake, &format!("p{i:02}"), "Two").await;
    }
    for i in (0..40).step_by(7) {
        model.delete(&lake, &format!("p{i:02}")).await;
    }
    check(&engine, &model, "tail only").await;

    // In Delta: the replaced rows and delete markers are in the same file.
    lake.flush().await.unwrap();
    check(&engine, &model, "after a flush").await;

    // Versions in the tail replace versions in Delta, and are deleted again.
    for i in (0..40).step_by(2) {
        model.put(&lake, &format!("p{i:02}"), "Three").await;
    }
    model.delete(&lake, "p02").await;
    model.put(&lake, "p07", "Recreated").await;
    check(&engine, &model, "tail over Delta").await;
    lake.flush().await.unwrap();
    check(&engine, &model, "two files").await;

    // A compaction rewrites the files: the marks follow the rows.
    for i in (1..40).step_by(5) {
        model.put(&lake, &format!("p{i:02}"), "Four").await;
        lake.flush().await.unwrap();
    }
    let reports = lake
        .compact_small_files(2, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert!(
        reports.iter().any(|r| r.files_removed > 1),
        "the compaction ran: {reports:?}"
    );
    check(&engine, &model, "after a compaction").await;
    model.put(&lake, "p05", "Five").await;
    model.delete(&lake, "p11").await;
    check(&engine, &model, "updates after a compaction").await;

    // A restart learns the marks from the files and the replayed WAL.
    drop(engine);
    drop(lake);
    let lake = Lake::open(options).await.unwrap();
    let engine = QueryEngine::new(lake.clone()).unwrap();
    check(&engine, &model, "after a restart").await;
}
