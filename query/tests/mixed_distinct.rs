//! `MixedDistinctToGroupBy`: `count(DISTINCT d)` beside `count(*)`, `count(x)`, `sum`,
//! `min`, `max` and `avg` answers exactly what DataFusion's own plan answers, over NULLs,
//! empty inputs, several groups and partitions; what the rule does not take keeps its
//! plan. Each query runs twice, in a session with DataFusion's rules and in one with
//! medlake's (`mixed_distinct::optimizer_rules`), and every case asserts on the optimized
//! plan whether the rule rewrote it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use medlake_lake::{Lake, LakeOptions};
use medlake_query::QueryEngine;
use medlake_query::mixed_distinct::{DISTINCT_COLUMN, RULE_NAME, optimizer_rules};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("g", DataType::Utf8, true),
        Field::new("k", DataType::Int64, true),
        Field::new("d_int", DataType::Int64, true),
        Field::new("d_str", DataType::Utf8, true),
        Field::new("d_date", DataType::Date32, true),
        Field::new("d_f", DataType::Float64, true),
        Field::new("x_int", DataType::Int64, true),
        Field::new("x_f", DataType::Float64, true),
        Field::new("x_str", DataType::Utf8, true),
        Field::new("x_date", DataType::Date32, true),
        Field::new("x_dec", DataType::Decimal128(10, 2), true),
    ]))
}

/// Rows `from..to` of a deterministic table: groups `a` to `e` and NULL, distinct values
/// repeated within a group and NULL every few rows, group `c` with every `x` NULL and
/// group `d` with every `d` NULL. Floats are multiples of 1/4, so their sums are exact in
/// any order.
fn rows(from: i64, to: i64) -> RecordBatch {
    let groups = ["a", "b", "c", "d", "e"];
    let n = (to - from) as usize;
    let (mut g, mut k, mut d_int, mut d_str, mut d_date, mut d_f) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut x_int, mut x_f, mut x_str, mut x_date, mut x_dec) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in from..to {
        let group = if i % 13 == 0 {
            None
        } else {
            Some(groups[(i % 5) as usize])
        };
        let no_d = i % 7 == 0 || group == Some("d");
        let no_x = i % 4 == 0 || group == Some("c");
        g.push(group);
        k.push(if i % 11 == 0 { None } else { Some(i % 3) });
        let v = (i * 7) % 9;
        d_int.push((!no_d).then_some(v));
        d_str.push((!no_d).then(|| format!("code-{v}")));
        d_date.push((!no_d).then_some(19_000 + v as i32));
        d_f.push((!no_d).then_some(if v == 0 { -0.0 } else { v as f64 }));
        x_int.push((!no_x).then_some(i * 3 - 50));
        x_f.push((!no_x).then_some(i as f64 / 4.0 - 7.5));
        x_str.push((!no_x).then(|| format!("v{:03}", (i * 37) % 101)));
        x_date.push((!no_x).then_some(18_000 + ((i * 53) % 400) as i32));
        x_dec.push((!no_x).then_some(i as i128 * 125 - 3000));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(g)),
        Arc::new(Int64Array::from(k)),
        Arc::new(Int64Array::from(d_int)),
        Arc::new(StringArray::from(d_str)),
        Arc::new(Date32Array::from(d_date)),
        Arc::new(Float64Array::from(d_f)),
        Arc::new(Int64Array::from(x_int)),
        Arc::new(Float64Array::from(x_f)),
        Arc::new(StringArray::from(x_str)),
        Arc::new(Date32Array::from(x_date)),
        Arc::new(
            Decimal128Array::from(x_dec)
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// A session with table `t` (400 rows in three partitions, so partial and final
/// aggregates both run) and the empty table `empty`, with or without the rule.
fn session(with_rule: bool) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(4);
    let builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    let builder = if with_rule {
        builder.with_optimizer_rules(optimizer_rules())
    } else {
        builder
    };
    let ctx = SessionContext::new_with_state(builder.build());
    let t = MemTable::try_new(
        schema(),
        vec![
            vec![rows(0, 150)],
            vec![rows(150, 290), rows(290, 300)],
            vec![rows(300, 400)],
        ],
    )
    .unwrap();
    ctx.register_table("t", Arc::new(t)).unwrap();
    let empty = MemTable::try_new(schema(), vec![vec![rows(0, 0)]]).unwrap();
    ctx.register_table("empty", Arc::new(empty)).unwrap();
    ctx
}

/// The query's optimized plan, its answer, and its answer's schema.
async fn run(ctx: &SessionContext, sql: &str) -> (String, String, Schema) {
    let df = ctx.sql(sql).await.unwrap();
    let plan = df.clone().into_optimized_plan().unwrap();
    let logical = df.schema().as_arrow().clone();
    let batches = df.collect().await.unwrap();
    if let Some(b) = batches.first() {
        assert_eq!(
            b.schema().fields(),
            logical.fields(),
            "batches and plan disagree on the schema of {sql}"
        );
    }
    let text = pretty_format_batches(&batches).unwrap().to_string();
    (plan.display_indent().to_string(), text, logical)
}

/// Runs `sql` with and without the rule, asserts the same answer and schema, and says
/// whether the rule rewrote the plan.
async fn rewritten_and_same(sql: &str) -> bool {
    let (plan_on, on, schema_on) = run(&session(true), sql).await;
    let (plan_off, off, schema_off) = run(&session(false), sql).await;
    assert!(
        !plan_off.contains(DISTINCT_COLUMN),
        "DataFusion's own rules never name a column {DISTINCT_COLUMN}"
    );
    assert_eq!(
        on, off,
        "{sql}\nwith the rule:\n{plan_on}\nwithout:\n{plan_off}"
    );
    assert_eq!(schema_on, schema_off, "{sql}");
    plan_on.contains(DISTINCT_COLUMN)
}

#[tokio::test]
async fn per_group_counts_extremes_and_means_are_unchanged() {
    // q3 of the SQL benchmark, over each kind of distinct column.
    for d in ["d_int", "d_str", "d_date"] {
        let sql = format!(
            "SELECT g, count(*) AS n, count(DISTINCT {d}) AS codes, min(x_date) AS first, \
             max(x_date) AS last, avg(x_f) AS mean FROM t GROUP BY g ORDER BY n DESC, g"
        );
        assert!(rewritten_and_same(&sql).await, "{sql} was not rewritten");
    }
}

#[tokio::test]
async fn every_aggregate_the_rule_takes_matches_over_nulls() {
    let queries = [
        // count(x) and count(*) beside each other, over columns with NULLs; the group
        // whose x are all NULL has count 0 and NULL sum, min, max and avg.
        "SELECT g, count(*), count(x_int), count(x_str), count(DISTINCT d_str), sum(x_int), \
         min(x_str), max(x_str), avg(x_int), avg(x_f) FROM t GROUP BY g ORDER BY g",
        // sum, min, max and count of the distinct column itself, distinct or not.
        "SELECT g, count(DISTINCT d_int), sum(DISTINCT d_int), min(DISTINCT d_int), \
         max(DISTINCT d_int), count(d_int), sum(d_int), count(*) FROM t GROUP BY g ORDER BY g",
        // Two group keys, one of them with NULLs, and an expression as key.
        "SELECT g, k, count(DISTINCT d_date), count(*), avg(x_f) FROM t \
         GROUP BY g, k ORDER BY g, k",
        "SELECT upper(g) AS big, k + 1, count(DISTINCT d_str) AS codes, max(x_dec), min(x_dec) \
         FROM t GROUP BY upper(g), k + 1 ORDER BY big, 2",
        // Grouped by the distinct column too.
        "SELECT d_str, count(DISTINCT d_str), count(*), avg(x_f) FROM t GROUP BY d_str \
         ORDER BY d_str",
        // Under a filter, a HAVING on a combined count and an outer query by the names.
        "SELECT g, n, codes FROM (SELECT g, count(*) AS n, count(DISTINCT d_int) AS codes, \
         avg(x_f) AS mean FROM t WHERE x_int > 100 OR x_int IS NULL GROUP BY g \
         HAVING count(*) > 10) s ORDER BY codes, g",
        // A filter that leaves some groups with rows but no distinct value.
        "SELECT g, count(*), count(DISTINCT d_int), avg(x_f) FROM t WHERE d_int IS NULL \
         GROUP BY g ORDER BY g",
    ];
    for sql in queries {
        assert!(rewritten_and_same(sql).await, "{sql} was not rewritten");
    }
}

#[tokio::test]
async fn a_global_aggregate_answers_one_row_also_over_no_rows() {
    for table in ["t", "empty"] {
        let sql = format!(
            "SELECT count(*) AS n, count(x_int), count(DISTINCT d_str) AS codes, sum(x_int), \
             min(x_date), max(x_str), avg(x_f) FROM {table}"
        );
        assert!(rewritten_and_same(&sql).await, "{sql} was not rewritten");
    }
    // The count of no rows is 0, not NULL, and the others NULL: checked on the answer as
    // well as against DataFusion's.
    let batches = session(true)
        .sql("SELECT count(*) AS n, count(DISTINCT d_int) AS c, avg(x_f) AS m FROM empty")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &batches[0];
    assert_eq!(b.num_rows(), 1);
    let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let c = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!((n.value(0), c.value(0)), (0, 0));
    assert!(n.is_valid(0) && c.is_valid(0) && b.column(2).is_null(0));
}

#[tokio::test]
async fn a_grouped_aggregate_over_no_rows_has_no_rows() {
    let sql = "SELECT g, count(*), count(DISTINCT d_int), avg(x_f) FROM empty GROUP BY g";
    assert!(rewritten_and_same(sql).await);
    let batches = session(true)
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[tokio::test]
async fn the_answer_keeps_its_column_names_and_types() {
    let sql =
        "SELECT g, count(*), count(DISTINCT d_str), avg(x_int), min(x_date) FROM t GROUP BY g";
    let ctx = session(true);
    let df = ctx.sql(sql).await.unwrap();
    let unoptimized = df.logical_plan().schema().as_ref().clone();
    let optimized = df.clone().into_optimized_plan().unwrap();
    assert!(
        optimized
            .display_indent()
            .to_string()
            .contains(DISTINCT_COLUMN)
    );
    let names = |s: &datafusion::common::DFSchema| {
        s.iter()
            .map(|(q, f)| {
                (
                    q.map(|q| q.to_string()),
                    f.name().clone(),
                    f.data_type().clone(),
                    f.is_nullable(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names(optimized.schema()), names(&unoptimized));
    let columns: Vec<String> = unoptimized
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        columns,
        [
            "g",
            "count(*)",
            "count(DISTINCT t.d_str)",
            "avg(t.x_int)",
            "min(t.x_date)"
        ]
    );
}

#[tokio::test]
async fn what_the_rule_does_not_take_keeps_its_plan() {
    let declined = [
        // Two different distinct arguments.
        "SELECT g, count(DISTINCT d_int), count(DISTINCT d_str), count(*) FROM t GROUP BY g ORDER BY g",
        // A FILTER clause.
        "SELECT g, count(DISTINCT d_int), count(*) FILTER (WHERE x_int > 0) FROM t GROUP BY g ORDER BY g",
        // sum of a decimal: its type widens at each step. (With count(*) beside it, so
        // that DataFusion's SingleDistinctToGroupBy leaves it too: that rule's plan of
        // `count(DISTINCT d_int), sum(x_dec)` answers Decimal128(30, 2) where the plan
        // says Decimal128(20, 2).)
        "SELECT g, count(DISTINCT d_int), count(*), sum(x_dec) FROM t GROUP BY g ORDER BY g",
        // avg of a decimal: its own scale, not sum / count.
        "SELECT g, count(DISTINCT d_int), avg(x_dec) FROM t GROUP BY g ORDER BY g",
        // A distinct float: grouping folds -0.0 into 0.0, count(DISTINCT) does not.
        "SELECT g, count(DISTINCT d_f), count(*) FROM t GROUP BY g ORDER BY g",
        // An aggregate the rule does not combine.
        "SELECT g, count(DISTINCT d_int), stddev(x_f) FROM t GROUP BY g ORDER BY g",
        // avg(DISTINCT): DataFusion's own rule runs it.
        "SELECT g, avg(DISTINCT x_int) FROM t GROUP BY g ORDER BY g",
        // Grouping sets.
        "SELECT g, k, count(DISTINCT d_int), count(*) FROM t GROUP BY ROLLUP (g, k) ORDER BY g, k",
        // No distinct aggregate at all.
        "SELECT g, count(*), avg(x_f) FROM t GROUP BY g ORDER BY g",
    ];
    for sql in declined {
        assert!(!rewritten_and_same(sql).await, "{sql} was rewritten");
    }
}

#[tokio::test]
async fn the_engine_and_its_sessions_plan_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    let engine = QueryEngine::new(lake).unwrap();
    let sql = "SELECT g, count(*), count(DISTINCT d), avg(x) FROM \
               (VALUES ('a', 1, 1.5), ('a', 1, 2.5), ('b', NULL, NULL)) AS v(g, d, x) GROUP BY g";
    let explained = engine.query(&format!("EXPLAIN {sql}")).await.unwrap();
    let text = pretty_format_batches(&explained.batches)
        .unwrap()
        .to_string();
    assert!(text.contains(DISTINCT_COLUMN), "{text}");
    let session = engine.session().unwrap();
    let plan = session
        .sql(sql)
        .await
        .unwrap()
        .into_optimized_plan()
        .unwrap();
    assert!(
        plan.display_indent().to_string().contains(DISTINCT_COLUMN),
        "{plan}"
    );
}

#[test]
fn the_rule_runs_just_before_datafusions_single_distinct_rule() {
    let names: Vec<String> = optimizer_rules()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    let ours = names.iter().position(|n| n == RULE_NAME).unwrap();
    assert_eq!(names[ours + 1], "single_distinct_aggregation_to_group_by");
    assert!(
        names[..ours].iter().any(|n| n == "push_down_filter"),
        "{names:?}"
    );
}
