//! `QueryEngine::plan` and `QueryEngine::stream`: the answer comes batch by batch from
//! the query runtime, with the plan's own schema and the parameters bound; writes are
//! refused at planning. (That the server's memory stays small while a million rows
//! stream is measured end to end, in tests/tests/flight_sql.rs.)

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;

async fn engine(dir: &std::path::Path) -> QueryEngine {
    let lake = Lake::open(LakeOptions::new(dir.to_str().unwrap()))
        .await
        .unwrap();
    QueryEngine::new(lake).unwrap()
}

#[tokio::test]
async fn a_streamed_answer_is_the_collected_one_batch_by_batch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let query = "SELECT value * 2 AS doubled FROM generate_series(1, 100000) WHERE value > $1";
    let df = engine.plan(query).await.unwrap();
    let planned = df.schema().as_arrow().clone();
    let params = ParamValues::from(vec![ScalarValue::Int64(Some(10))]);
    let mut stream = engine.stream(df, Some(params)).await.unwrap();
    assert_eq!(stream.schema().as_ref(), &planned);
    let (mut rows, mut sum, mut batches) = (0usize, 0i64, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        rows += values.len();
        sum += values.iter().flatten().sum::<i64>();
        batches += 1;
    }
    assert_eq!(rows, 100_000 - 10);
    assert_eq!(sum, (11..=100_000i64).map(|v| v * 2).sum::<i64>());
    assert!(batches > 1, "the answer came in one piece");
}

#[tokio::test]
async fn a_write_cannot_be_planned_for_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let refused = engine.plan("CREATE TABLE t AS SELECT 1").await;
    assert!(matches!(
        refused,
        Err(medlake_query::QueryError::ReadOnly(_))
    ));
}
