//! [`MixedDistinctToGroupBy`]: `count(DISTINCT d)` beside plain aggregates, computed as
//! two group-bys instead of a hash set per group.
//!
//! DataFusion computes `count(DISTINCT d)` in a grouped aggregate with a set of the
//! distinct values per group, built in the partial aggregate and merged set by set in the
//! final one. With 52,000 patients and a few dozen codes each that is most of q3 of the
//! SQL benchmark (`benches/analytics/sql_bench.py`): 17 s of the partial aggregate's
//! compute, six times DuckDB's whole query. Grouping by `(G, d)` first makes the
//! distinct values group keys, which the hash aggregate handles in bulk; the second
//! aggregate, grouped by `G`, then counts them and combines the partial results of the
//! other aggregates:
//!
//! ```text
//! SELECT g, count(*), count(DISTINCT d), min(x), avg(y) FROM t GROUP BY g
//!
//! Projection: g, coalesce(sum(n), 0) AS count(*), cd AS count(DISTINCT d), mn AS min(x),
//!             sy / CAST(cy AS Float64) AS avg(y)
//!   Aggregate: groupBy=[g], aggr=[sum(n), count(d'), min(m), sum(s), sum(c)]
//!     Aggregate: groupBy=[g, d AS d'], aggr=[count(1) AS n, min(x) AS m, sum(y) AS s, count(y) AS c]
//! ```
//!
//! DataFusion's own rule, `SingleDistinctToGroupBy` (datafusion-optimizer,
//! `single_distinct_to_groupby.rs`), makes this rewrite only when every other aggregate
//! is `sum`, `min` or `max`, the ones that combine with themselves; a `count(*)` or an
//! `avg` beside the distinct aggregate, the usual shape of a per-patient summary, leaves
//! the plan as it is. The generalisation was proposed upstream (apache/datafusion#8123,
//! and the review of #8266: `count` combines as a `sum` of counts); a change merged
//! upstream but not in the 55.2 we build on accepts a plain `count`
//! (apache/datafusion#24859), still not `avg`. No crate offers the rule, so it is
//! written here; it builds plans of DataFusion's own operators only, which any
//! DataFusion session runs unchanged.
//!
//! What it takes (anything else is left alone, to `SingleDistinctToGroupBy` or to the
//! hash-set accumulators, never answered differently):
//!
//! - an aggregate without grouping sets, whose distinct aggregates are `count`, `sum`,
//!   `min` or `max` of one and the same expression `d`, and whose other aggregates are
//!   `count(x)` (`count(*)` included), `sum`, `min`, `max`, and `avg` of a `Float64`
//!   (integers are cast to `Float64` for `avg` by DataFusion's type coercion, which runs
//!   before this rule), none with `FILTER`, `ORDER BY` or a null treatment;
//! - `d` of a type whose grouping equality is the distinct aggregate's: integers,
//!   strings, binary, booleans, dates, times, timestamps, decimals. Not floats: the hash
//!   aggregate folds `-0.0` into `0.0` when it groups, `count(DISTINCT)` counts both.
//!
//! How each aggregate is combined, and why the answer is the same:
//!
//! - rows whose `d` is NULL form groups `(G, NULL)` of their own: they still count in
//!   `count(*)`, `sum`, `min`, `max` and `avg`, and the outer `count(d')` skips them as
//!   `count(DISTINCT d)` does;
//! - `count(x)` is the `sum` of the partial counts, under `coalesce(.., 0)`: over an empty
//!   input a global aggregate has one row, where the `sum` of no counts would be NULL and
//!   `count` is 0 (grouped, every group has rows, and the `coalesce` only restores the
//!   column's non-null type);
//! - `sum`, `min`, `max` combine with themselves, as they do between DataFusion's own
//!   partial and final aggregates; a sum of integers wraps the same in two steps;
//! - `avg(y)` over `Float64` is `sum(y) / count(y)`, which is what DataFusion's `avg`
//!   computes: a group with no non-NULL `y` has a NULL sum, so NULL, as `avg`. Floating
//!   point sums may differ in the last digit, as they do between runs with different
//!   partitions. Other `avg`s (decimals, durations) have their own scaling and are left
//!   alone.
//!
//! Last comes a projection giving every column its original qualifier, name and type;
//! should a built plan's schema differ in any of them (nullability included), the
//! rule leaves the aggregate alone.
//!
//! The rule runs just before `SingleDistinctToGroupBy` ([`optimizer_rules`]), in the
//! same place of the logical optimizer: after filters are pushed down, before common
//! subexpressions are taken out and projections pruned (which then tidy the new
//! aggregates' inputs), long before the physical planner. Before that rule rather than
//! instead of it: what this rule declines, such as `avg(DISTINCT x)`, which DataFusion
//! runs only rewritten, still reaches it. Like DataFusion's rule, it trades the hash
//! sets for an aggregate with a row per distinct `(G, d)`: when nearly every row has a
//! `d` of its own, that aggregate is as large as the input (apache/datafusion#24929
//! measures the memory of such a case). q3 has 1.15 M `(patient_id, code)` pairs for
//! 10.2 M rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::functions_aggregate::average::Avg;
use datafusion::functions_aggregate::count::{Count, count_udaf};
use datafusion::functions_aggregate::min_max::{Max, Min};
use datafusion::functions_aggregate::sum::{Sum, sum_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, ExprSchemable, LogicalPlan, Projection, cast, lit,
};
use datafusion::optimizer::optimizer::{ApplyOrder, Optimizer};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The name the optimizer reports this rule by (in `EXPLAIN VERBOSE`).
pub const RULE_NAME: &str = "mixed_distinct_aggregation_to_group_by";

/// The name of `d` in the inner aggregate; also what shows in a rewritten plan.
pub const DISTINCT_COLUMN: &str = "__medlake_distinct";

/// DataFusion's rule this one runs before.
const SINGLE_DISTINCT_RULE: &str = "single_distinct_aggregation_to_group_by";

/// The logical optimizer rule: see the module documentation.
#[derive(Debug, Default)]
pub struct MixedDistinctToGroupBy;

/// DataFusion's default logical optimizer rules with [`MixedDistinctToGroupBy`] just
/// before `SingleDistinctToGroupBy` (at the end, should a DataFusion upgrade drop that
/// rule: the optimizer's later passes still prune the rewritten plan).
pub fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == SINGLE_DISTINCT_RULE)
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(MixedDistinctToGroupBy));
    rules
}

impl OptimizerRule for MixedDistinctToGroupBy {
    fn name(&self) -> &str {
        RULE_NAME
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(shape) = Shape::of(aggregate) else {
            return Ok(Transformed::no(plan));
        };
        match shape.rewrite(aggregate) {
            Ok(Some(rewritten)) => Ok(Transformed::yes(rewritten)),
            Ok(None) => Ok(Transformed::no(plan)),
            // A plan DataFusion would not build is one the rule does not make: the query
            // keeps its original aggregate rather than failing.
            Err(e) => {
                tracing::debug!(error = %e, "count(DISTINCT) rewrite declined");
                Ok(Transformed::no(plan))
            }
        }
    }
}

/// The aggregate functions the rule knows how to split.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl Kind {
    fn of(func: &AggregateUDF) -> Option<Kind> {
        let f = func.inner().as_ref();
        if f.is::<Count>() {
            Some(Kind::Count)
        } else if f.is::<Sum>() {
            Some(Kind::Sum)
        } else if f.is::<Min>() {
            Some(Kind::Min)
        } else if f.is::<Max>() {
            Some(Kind::Max)
        } else if f.is::<Avg>() {
            Some(Kind::Avg)
        } else {
            None
        }
    }
}

/// One aggregate of the original node, checked.
struct Call {
    kind: Kind,
    func: Arc<AggregateUDF>,
    arg: Expr,
    distinct: bool,
}

/// An aggregate the rule takes: its calls, and the one distinct argument.
struct Shape {
    calls: Vec<Call>,
    distinct_arg: Expr,
}

impl Shape {
    fn of(aggregate: &Aggregate) -> Option<Shape> {
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return None;
        }
        let input_schema = aggregate.input.schema();
        let mut distinct_arg: Option<Expr> = None;
        let mut calls = Vec::with_capacity(aggregate.aggr_expr.len());
        for expr in &aggregate.aggr_expr {
            let Expr::AggregateFunction(AggregateFunction {
                func,
                params:
                    AggregateFunctionParams {
                        args,
                        distinct,
                        filter,
                        order_by,
                        null_treatment,
                    },
            }) = expr
            else {
                return None;
            };
            if filter.is_some() || !order_by.is_empty() || null_treatment.is_some() {
                return None;
            }
            let [arg] = args.as_slice() else {
                return None;
            };
            let kind = Kind::of(func)?;
            if *distinct {
                if kind == Kind::Avg {
                    return None;
                }
                match &distinct_arg {
                    Some(d) if d != arg => return None,
                    Some(_) => {}
                    None => distinct_arg = Some(arg.clone()),
                }
            } else if kind == Kind::Avg
                && arg.get_type(input_schema.as_ref()).ok()? != DataType::Float64
            {
                return None;
            }
            calls.push(Call {
                kind,
                func: Arc::clone(func),
                arg: arg.clone(),
                distinct: *distinct,
            });
        }
        let distinct_arg = distinct_arg?;
        if !groups_as_distinct_counts(&distinct_arg.get_type(input_schema.as_ref()).ok()?) {
            return None;
        }
        Some(Shape {
            calls,
            distinct_arg,
        })
    }

    /// The two aggregates and the projection, or `None` when the result's schema would
    /// not be the original's.
    fn rewrite(self, aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
        let original = aggregate.schema.as_ref();
        let mut inner_groups = Vec::with_capacity(aggregate.group_expr.len() + 1);
        let mut outer_groups = Vec::with_capacity(aggregate.group_expr.len());
        let mut output = Vec::with_capacity(original.fields().len());
        for (i, group) in aggregate.group_expr.iter().enumerate() {
            let (qualifier, field) = original.qualified_field(i);
            if let Expr::Column(c) = group {
                // The inner aggregate outputs the column under its own qualified name, so
                // the outer one and the projection refer to it unchanged.
                inner_groups.push(group.clone());
                outer_groups.push(group.clone());
                output.push(Expr::Column(c.clone()));
            } else {
                // An expression is computed once, below, and referred to by a name (an
                // alias it had is replaced: the projection restores the output name).
                let name = format!("__medlake_group_{i}");
                inner_groups.push(group.clone().unalias().alias(&name));
                let column = Expr::Column(Column::new_unqualified(&name));
                outer_groups.push(column.clone());
                output.push(column.alias_qualified(qualifier.cloned(), field.name()));
            }
        }
        inner_groups.push(self.distinct_arg.clone().alias(DISTINCT_COLUMN));
        let distinct = Expr::Column(Column::new_unqualified(DISTINCT_COLUMN));

        let mut inner = Named::new("__medlake_partial");
        let mut outer = Named::new("__medlake_combined");
        let group_count = aggregate.group_expr.len();
        for (j, call) in self.calls.iter().enumerate() {
            let combined = if call.distinct {
                // The distinct values are the inner groups: an ordinary aggregate of them.
                outer.get(aggregate_of(&call.func, distinct.clone()))
            } else {
                match call.kind {
                    Kind::Count => {
                        let partial = inner.get(aggregate_of(&call.func, call.arg.clone()));
                        let total = outer.get(aggregate_of(&sum_udaf(), partial));
                        datafusion::functions::expr_fn::coalesce(vec![total, lit(0i64)])
                    }
                    Kind::Sum | Kind::Min | Kind::Max => {
                        let partial = inner.get(aggregate_of(&call.func, call.arg.clone()));
                        outer.get(aggregate_of(&call.func, partial))
                    }
                    Kind::Avg => {
                        let sum = inner.get(aggregate_of(&sum_udaf(), call.arg.clone()));
                        let count = inner.get(aggregate_of(&count_udaf(), call.arg.clone()));
                        let sum = outer.get(aggregate_of(&sum_udaf(), sum));
                        let count = outer.get(aggregate_of(&sum_udaf(), count));
                        sum / cast(count, DataType::Float64)
                    }
                }
            };
            let (qualifier, field) = original.qualified_field(group_count + j);
            output.push(combined.alias_qualified(qualifier.cloned(), field.name()));
        }

        let inner = Aggregate::try_new(
            Arc::clone(&aggregate.input),
            inner_groups,
            inner.into_exprs(),
        )?;
        let outer = Aggregate::try_new(
            Arc::new(LogicalPlan::Aggregate(inner)),
            outer_groups,
            outer.into_exprs(),
        )?;
        let projection = Projection::try_new(output, Arc::new(LogicalPlan::Aggregate(outer)))?;
        let same = projection.schema.fields().len() == original.fields().len()
            && projection
                .schema
                .iter()
                .zip(original.iter())
                .all(|((q1, f1), (q2, f2))| {
                    q1 == q2
                        && f1.name() == f2.name()
                        && f1.data_type() == f2.data_type()
                        && f1.is_nullable() == f2.is_nullable()
                });
        if !same {
            tracing::debug!(
                original = %original,
                rewritten = %projection.schema,
                "count(DISTINCT) rewrite declined: the schema would change"
            );
            return Ok(None);
        }
        Ok(Some(LogicalPlan::Projection(projection)))
    }
}

/// Aggregate expressions under generated names, each computed once however many of the
/// original aggregates need it (`count(y)` and `avg(y)` share the count of `y`).
struct Named {
    prefix: &'static str,
    exprs: Vec<Expr>,
}

impl Named {
    fn new(prefix: &'static str) -> Self {
        Named {
            prefix,
            exprs: Vec::new(),
        }
    }

    /// The column that will hold `expr`'s value.
    fn get(&mut self, expr: Expr) -> Expr {
        let i = match self.exprs.iter().position(|e| *e == expr) {
            Some(i) => i,
            None => {
                self.exprs.push(expr);
                self.exprs.len() - 1
            }
        };
        Expr::Column(Column::new_unqualified(format!("{}_{i}", self.prefix)))
    }

    fn into_exprs(self) -> Vec<Expr> {
        let prefix = self.prefix;
        self.exprs
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.alias(format!("{prefix}_{i}")))
            .collect()
    }
}

fn aggregate_of(func: &Arc<AggregateUDF>, arg: Expr) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::clone(func),
        vec![arg],
        false,
        None,
        vec![],
        None,
    ))
}

/// Whether grouping by a value of this type tells values apart exactly as the distinct
/// aggregates do.
fn groups_as_distinct_counts(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | BinaryView
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Decimal32(_, _)
            | Decimal64(_, _)
            | Decimal128(_, _)
            | Decimal256(_, _)
    )
}
