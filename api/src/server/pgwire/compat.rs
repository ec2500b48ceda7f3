//! Postgres SQL that DataFusion plans differently, rewritten on the parse tree before
//! planning. datafusion-pg-catalog rewrites much already (casts to `regclass`, operators
//! written `OPERATOR(pg_catalog.~)`, ...); this is what clients sent here that it does not.
//!
//! - `LIKE ... ESCAPE 'c'` with another escape character than the backslash: DataFusion
//!   refuses it at execution, SQLAlchemy sends it (`ESCAPE '/'`) to list schemas. The
//!   pattern is rewritten into the backslash form with `replace()`, so it also works
//!   when the pattern is a parameter.
//! - a scalar subquery that selects one value without aggregating it: DataFusion plans a
//!   correlated one only if it aggregates (so that it cannot give two rows), SQLAlchemy
//!   sends them to list columns (`(SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
//!   WHERE ...)`). The value becomes `first_value(value)`, which is the same answer
//!   whenever Postgres gives one (zero rows: NULL; one row: its value) and the first
//!   row where Postgres would fail on several.
//! - a correlated subquery whose WHERE has a condition on the outer row alone
//!   (`(SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE pg_attribute.atthasdef
//!   AND adrelid = pg_attribute.attrelid ...)`, as SQLAlchemy sends): DataFusion cannot
//!   turn it into a join. When the subquery's value on no rows is NULL, it is the same
//!   as `CASE WHEN <that condition> THEN (SELECT ... WHERE <the rest>) END`, which it can.
//!   A column counts as the outer row's when a table the subquery does not have
//!   qualifies it; an unqualified one stays inside.
//! - a correlated subquery whose *value* reads a condition on the outer row
//!   (SQLAlchemy's identity options, `json_build_object('always',
//!   pg_attribute.attidentity = 'a', ...)`): DataFusion cannot plan one whose select list
//!   reads the outer row. A condition is true, false or NULL, so the subquery becomes a
//!   `CASE` on it with one copy per answer, the condition replaced by its value.
//! - `generate_subscripts()`: a set-returning function, which DataFusion has only as
//!   `unnest`; it becomes `unnest` of the list of subscripts.
//!
//! These are rewrites because what they work around is in DataFusion's planner (which
//! subqueries it decorrelates, which functions may return several rows), not a table or
//! function that medlake could register.
//!
//! datafusion-pg-catalog's own rewrites run first; one of them replaces a correlated
//! subquery that is a whole select item with NULL (a subquery inside an expression, as
//! `CASE` puts it, is kept), which no hook can undo.

use std::ops::ControlFlow;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Select, SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value, VisitMut,
    VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;

#[derive(Debug)]
pub struct Compat;

/// The statement rewritten, or `None` if it needs nothing.
pub fn rewrite(statement: &Statement) -> Option<Statement> {
    let mut rewritten = statement.clone();
    let mut changed = false;
    let _ = visit_expressions_mut(&mut rewritten, |expr| {
        if let Expr::Subquery(_) = expr {
            if let Some(lifted) = lift_outer_conditions(expr) {
                *expr = lifted;
                changed = true;
            } else {
                changed |= rewrite_scalar_subquery(expr);
            }
        }
        if let Expr::Function(f) = expr
            && let Some(unnested) = subscripts_as_unnest(f)
        {
            *expr = unnested;
            changed = true;
        }
        if let Expr::Like {
            pattern,
            escape_char: escape @ Some(_),
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char: escape @ Some(_),
            ..
        } = expr
        {
            let c = match escape.as_ref().map(|v| &v.value) {
                Some(Value::SingleQuotedString(s)) => s.clone(),
                _ => return ControlFlow::<()>::Continue(()),
            };
            if c == "\\" {
                return ControlFlow::Continue(());
            }
            if let Some(p) = backslash_pattern(pattern, &c) {
                **pattern = p;
                *escape = None;
                changed = true;
            }
        }
        ControlFlow::Continue(())
    });
    changed.then_some(rewritten)
}

/// The one-column, non-grouping select of a scalar subquery, if `expr` is one.
fn scalar_select(expr: &mut Expr) -> Option<&mut Select> {
    if let Expr::Subquery(query) = expr
        && let SetExpr::Select(select) = query.body.as_mut()
        && select.projection.len() == 1
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
        && select.having.is_none()
    {
        return Some(select.as_mut());
    }
    None
}

fn select_item(select: &mut Select) -> Option<&mut Expr> {
    match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// A scalar subquery's value as `first_value`, and its conditions on the outer row alone
/// in front of it; whether anything changed.
fn rewrite_scalar_subquery(expr: &mut Expr) -> bool {
    let Some(select) = scalar_select(expr) else {
        return false;
    };
    let mut changed = false;
    let mut null_when_empty = false;
    if let Some(e) = select_item(select) {
        if !is_aggregate(e)
            && let Ok(wrapped) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&format!("first_value({e})"))
                .and_then(|mut p| p.parse_expr())
        {
            *e = wrapped;
            changed = true;
        }
        null_when_empty = is_null_on_no_rows(e);
    }
    // Conditions on the outer row alone move out, in front of the subquery.
    let guard = if null_when_empty {
        hoist_outer_conditions(select)
    } else {
        None
    };
    let Expr::Subquery(query) = &*expr else {
        return changed;
    };
    if let Some(guard) = guard
        && let Ok(case) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&format!("CASE WHEN {guard} THEN ({query}) END"))
            .and_then(|mut p| p.parse_expr())
    {
        *expr = case;
        changed = true;
    }
    changed
}

/// How many conditions on the outer row a subquery's value may have: each one makes
/// three copies of the subquery (true, false, NULL).
const MAX_LIFTED: usize = 2;

/// A scalar subquery whose value reads conditions on the outer row, such as
/// SQLAlchemy's `(SELECT json_build_object('always', pg_attribute.attidentity = 'a',
/// 'start', seqstart, ...) FROM pg_sequence WHERE ...)`, as a `CASE` on those
/// conditions with one subquery per answer, each with the condition's value in its place:
/// `CASE WHEN c THEN (SELECT f(true, ...)) WHEN NOT c THEN (SELECT f(false, ...)) ELSE
/// (SELECT f(NULL, ...)) END`. A condition is true, false or NULL, so this is the same
/// value; and DataFusion, which cannot plan a correlated subquery whose select list
/// reads the outer row, plans these. Each copy then gets [`rewrite_scalar_subquery`].
fn lift_outer_conditions(expr: &Expr) -> Option<Expr> {
    let mut probe = expr.clone();
    let select = scalar_select(&mut probe)?;
    let own = own_names(select);
    let item = select_item(select)?;
    let mut finder = OuterConditions {
        own: &own,
        values: None,
        found: Vec::new(),
    };
    let _ = item.visit(&mut finder);
    let conditions = finder.found;
    if conditions.is_empty() || conditions.len() > MAX_LIFTED {
        return None;
    }
    let sql = lifted_case(expr, &own, &conditions, &mut Vec::new())?;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// The nested `CASE` over `conditions[values.len()..]`, with `values` given to the
/// conditions before them.
fn lifted_case(
    subquery: &Expr,
    own: &[String],
    conditions: &[Expr],
    values: &mut Vec<Expr>,
) -> Option<String> {
    if values.len() == conditions.len() {
        let mut copy = subquery.clone();
        let select = scalar_select(&mut copy)?;
        let mut setter = OuterConditions {
            own,
            values: Some(values.as_slice()),
            found: Vec::new(),
        };
        let _ = select_item(select)?.visit(&mut setter);
        if setter.found.len() != conditions.len() {
            return None;
        }
        rewrite_scalar_subquery(&mut copy);
        return Some(copy.to_string());
    }
    let condition = &conditions[values.len()];
    let mut branch = |value: bool| {
        values.push(Expr::Value(Value::Boolean(value).into()));
        let sql = lifted_case(subquery, own, conditions, values);
        values.pop();
        sql
    };
    let (when_true, when_false) = (branch(true)?, branch(false)?);
    values.push(Expr::Value(Value::Null.into()));
    let when_null = lifted_case(subquery, own, conditions, values);
    values.pop();
    Some(format!(
        "CASE WHEN ({condition}) THEN {when_true} WHEN NOT ({condition}) THEN {when_false} \
         ELSE {} END",
        when_null?
    ))
}

/// Finds the outermost conditions on the outer row alone in a select item, in the
/// order written; with `values`, puts the n-th value in place of the n-th one.
struct OuterConditions<'a> {
    own: &'a [String],
    values: Option<&'a [Expr]>,
    found: Vec<Expr>,
}

impl VisitorMut for OuterConditions<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if is_condition(expr) && outer_only(expr, self.own) {
            let n = self.found.len();
            self.found.push(expr.clone());
            // Replaced, so that the visit does not go on into its parts.
            *expr = match self.values {
                Some(values) => values
                    .get(n)
                    .cloned()
                    .unwrap_or(Expr::Value(Value::Null.into())),
                None => Expr::Value(Value::Null.into()),
            };
        }
        ControlFlow::Continue(())
    }
}

/// An expression whose value is true, false or NULL.
fn is_condition(e: &Expr) -> bool {
    use BinaryOperator as B;
    match e {
        Expr::BinaryOp { op, .. } => matches!(
            op,
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::And | B::Or
        ),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => true,
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. } => true,
        Expr::Nested(inner) => is_condition(inner),
        _ => false,
    }
}

/// `generate_subscripts(array, dim[, reverse])` as `unnest` of the list of subscripts.
/// Postgres's function is set-returning; DataFusion has no set-returning functions in a
/// select list but `unnest`, which, as Postgres does with several set-returning
/// functions there, runs beside the others row by row (SQLAlchemy pairs
/// `unnest(indkey)` with `generate_subscripts(indkey, 1)`). Arrow lists have no lower
/// bound: the subscripts count from 1, Postgres's default.
fn subscripts_as_unnest(f: &Function) -> Option<Expr> {
    let name = f.name.to_string().to_ascii_lowercase();
    if name.rsplit('.').next() != Some("generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let reverse = match args.get(2) {
        None => false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(b) => *b,
            _ => return None,
        },
        Some(_) => return None,
    };
    let (array, dim) = (args.first()?, args.get(1)?);
    let length = format!("array_length({array}, {dim})");
    let series = if reverse {
        format!("generate_series({length}, 1, -1)")
    } else {
        format!("generate_series(1, {length})")
    };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("unnest({series})"))
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// A condition with a subquery of its own stays where it is: moved, it would be a
/// subquery inside a subquery's guard, no simpler to plan.
fn has_subquery(e: &Expr) -> bool {
    let mut e = e.clone();
    visit_expressions_mut(&mut e, |x| match x {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The subquery's value when no row matches is NULL: `first_value`, `max`, ... of no
/// rows (a `count` would be 0, so a condition cannot move out of one).
fn is_null_on_no_rows(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name).to_string();
            matches!(
                name.as_str(),
                "first_value" | "last_value" | "max" | "min" | "sum" | "avg"
            )
        }
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_null_on_no_rows(inner),
        _ => false,
    }
}

/// The conjuncts of `e` (`a AND (b AND c)`: a, b, c).
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

/// The names a subquery's own tables go by: aliases, and table names bare and
/// qualified, lower-cased.
fn own_names(select: &Select) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |factor: &TableFactor| match factor {
        TableFactor::Table { name, alias, .. } => {
            names.push(name.to_string().to_ascii_lowercase());
            if let Some(last) = name.0.last() {
                names.push(last.to_string().to_ascii_lowercase());
            }
            if let Some(a) = alias {
                names.push(a.name.value.to_ascii_lowercase());
            }
        }
        other => {
            if let TableFactor::Derived { alias: Some(a), .. } = other {
                names.push(a.name.value.to_ascii_lowercase());
            }
        }
    };
    for t in &select.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    names
}

/// Whether `e` reads columns of the outer query only: every column it names is
/// qualified by a table the subquery does not have. An unqualified column might be
/// the subquery's own, so it keeps the condition inside.
fn outer_only(e: &Expr, own: &[String]) -> bool {
    if has_subquery(e) {
        return false;
    }
    let mut e = e.clone();
    let mut columns = 0;
    let inner = visit_expressions_mut(&mut e, |x| match x {
        Expr::Identifier(_) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(parts) => {
            columns += 1;
            let qualifier = parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.value.to_ascii_lowercase())
                .collect::<Vec<_>>();
            let full = qualifier.join(".");
            let last = qualifier.last().cloned().unwrap_or_default();
            if own.contains(&full) || own.contains(&last) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    !inner && columns > 0
}

/// Take out of `select`'s WHERE the conditions on the outer row alone, and return
/// them joined with AND, if there are any.
fn hoist_outer_conditions(select: &mut Select) -> Option<String> {
    let own = own_names(select);
    let selection = select.selection.take()?;
    let mut all = Vec::new();
    conjuncts(selection, &mut all);
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = all.into_iter().partition(|c| outer_only(c, &own));
    select.selection = inner.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    });
    if outer.is_empty() {
        return None;
    }
    Some(
        outer
            .iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" AND "),
    )
}

/// An aggregate call already (`count(*)`, `max(x)`, ...), or a constant.
fn is_aggregate(e: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "first_value",
        "last_value",
        "json_agg",
        "jsonb_agg",
        "every",
    ];
    match e {
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name).to_string();
            AGGREGATES.contains(&name.as_str())
        }
        Expr::Value(_) => true,
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_aggregate(inner),
        _ => false,
    }
}

/// `pattern` with escape character `c` (or none, for `ESCAPE ''`) in DataFusion's form:
/// literal backslashes doubled, then `c%`, `c_` and `cc` as `\%`, `\_` and `c`.
fn backslash_pattern(pattern: &Expr, c: &str) -> Option<Expr> {
    let q = |s: &str| s.replace('\'', "''");
    let mut sql = format!("replace(({pattern}), '\\', '\\\\')");
    if !c.is_empty() {
        // A private-use character holds an escaped escape character while the others
        // are replaced.
        let held = '\u{E000}';
        let c = q(c);
        sql = format!(
            "replace(replace(replace(replace({sql}, '{c}{c}', '{held}'), '{c}%', '\\%'), '{c}_', '\\_'), '{held}', '{c}')"
        );
    }
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn api_error(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

async fn plan(ctx: &SessionContext, statement: Statement) -> PgWireResult<LogicalPlan> {
    ctx.state()
        .statement_to_plan(DFStatement::Statement(Box::new(statement)))
        .await
        .map_err(api_error)
}

#[async_trait]
impl QueryHook for Compat {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let rewritten = rewrite(statement)?;
        let run = async {
            let df = ctx
                .execute_logical_plan(plan(ctx, rewritten).await?)
                .await
                .map_err(api_error)?;
            let format =
                std::sync::Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            Ok(Response::Query(
                encode_dataframe(df, &Format::UnifiedText, Some(format)).await?,
            ))
        };
        Some(run.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let rewritten = rewrite(statement)?;
        Some(plan(ctx, rewritten).await)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The plan made at parse time is the rewritten one: it runs as any other.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        rewrite(&statement).map_or_else(|| "unchanged".into(), |s| s.to_string())
    }

    #[test]
    fn like_with_another_escape_character_becomes_the_backslash_form() {
        let r = rewritten("SELECT 1 WHERE 'a' NOT LIKE $1 || '%' ESCAPE '/'");
        assert!(
            r.contains("NOT LIKE replace(replace(replace(replace(replace(($1 || '%')"),
            "{r}"
        );
        assert!(!r.contains("ESCAPE"), "{r}");
        assert_eq!(
            rewritten("SELECT 1 WHERE 'a' LIKE 'a\\%' ESCAPE '\\'"),
            "unchanged"
        );
        assert_eq!(rewritten("SELECT 1 WHERE 'a' LIKE 'a%'"), "unchanged");
    }

    #[test]
    fn scalar_subqueries_aggregate_their_value() {
        let r = rewritten("SELECT (SELECT b.x FROM b WHERE b.id = a.id) AS v FROM a");
        assert!(
            r.contains("(SELECT first_value(b.x) FROM b WHERE b.id = a.id)"),
            "{r}"
        );
        assert_eq!(
            rewritten("SELECT (SELECT max(b.x) FROM b WHERE b.id = a.id) FROM a"),
            "unchanged"
        );
        assert_eq!(rewritten("SELECT (SELECT 1) FROM a"), "unchanged");
        // A condition on the outer row moves in front of the subquery; one that names
        // the subquery's table, or an unqualified column, stays.
        let r = rewritten(
            "SELECT CASE WHEN a.c THEN (SELECT b.x FROM pg_catalog.b WHERE a.flag AND b.id = a.id AND y > 0) END FROM a",
        );
        assert!(
            r.contains(
                "CASE WHEN (a.flag) THEN (SELECT first_value(b.x) FROM pg_catalog.b WHERE b.id = a.id AND y > 0) END"
            ),
            "{r}"
        );
        let r = rewritten(
            "SELECT (SELECT max(t.x) FROM b AS t WHERE pg_catalog.a.f = 1 AND t.id = a.id) FROM a",
        );
        assert!(
            r.contains("CASE WHEN (pg_catalog.a.f = 1) THEN (SELECT max(t.x) FROM b AS t WHERE t.id = a.id) END"),
            "{r}"
        );
        // count() of no rows is 0, not NULL: the condition stays.
        let r = rewritten("SELECT (SELECT count(*) FROM b WHERE a.f AND b.id = a.id) FROM a");
        assert_eq!(r, "unchanged");
    }

    #[tokio::test]
    async fn the_rewritten_pattern_matches_as_postgres_would() {
        let ctx = SessionContext::new();
        for (value, pattern, expected) in [
            ("pg_catalog", "pg/_%", true),
            ("pgxcatalog", "pg/_%", false),
            ("50%", "50/%", true),
            ("500", "50/%", false),
            ("a/b", "a//b", true),
            ("a\\b", "a\\b", true),
        ] {
            let sql = format!("SELECT '{value}' LIKE '{pattern}' ESCAPE '/' AS m");
            let statement = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_statement())
                .unwrap();
            let plan = plan(&ctx, rewrite(&statement).unwrap()).await.unwrap();
            let batches = ctx
                .execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let m = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                .unwrap()
                .value(0);
            assert_eq!(m, expected, "{value} LIKE {pattern} ESCAPE '/'");
        }
    }

    /// The rows `sql` answers after the rewrite, each as its columns' text.
    async fn run(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        let statement = rewrite(&statement).unwrap_or(statement);
        let plan = plan(ctx, statement).await.unwrap();
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in batches {
            for i in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .map(|c| {
                            datafusion::arrow::util::display::array_value_to_string(c, i).unwrap()
                        })
                        .collect(),
                );
            }
        }
        rows
    }

    #[tokio::test]
    async fn a_subquery_whose_value_reads_an_outer_condition_is_planned() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE a AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, NULL), (4, 'a')) \
             AS t(id, flag)",
        )
        .await
        .unwrap();
        ctx.sql("CREATE TABLE b AS SELECT * FROM (VALUES (1, 10), (2, 20), (3, 30)) AS t(id, x)")
            .await
            .unwrap();
        let sql = "SELECT a.id, CASE WHEN a.id > 0 THEN (SELECT concat(CAST(a.flag = 'a' AS \
                   VARCHAR), '-', CAST(b.x AS VARCHAR)) FROM b WHERE b.id = a.id) END AS v \
                   FROM a ORDER BY a.id";
        let r = rewritten(sql);
        assert!(r.contains("WHEN NOT (a.flag = 'a') THEN"), "{r}");
        // The condition's three values, and no inner row (NULL), as Postgres answers.
        let rows = run(&ctx, sql).await;
        let v: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(v, ["true-10", "false-20", "-30", ""], "{rows:?}");
        // A value that reads an outer column that is no condition stays as it was.
        assert_eq!(
            rewritten("SELECT (SELECT max(b.x + a.id) FROM b WHERE b.id = a.id) FROM a"),
            "unchanged"
        );
    }

    #[tokio::test]
    async fn generate_subscripts_runs_beside_unnest() {
        let ctx = SessionContext::new();
        let rows = run(
            &ctx,
            "SELECT unnest(k) AS v, generate_subscripts(k, 1) AS i, \
             generate_subscripts(k, 1, true) AS r FROM (SELECT make_array(5, 6, 7) AS k) t",
        )
        .await;
        assert_eq!(
            rows,
            [["5", "1", "3"], ["6", "2", "2"], ["7", "3", "1"]].map(|r| r.map(String::from))
        );
        // No second dimension: no subscripts.
        let rows = run(
            &ctx,
            "SELECT generate_subscripts(k, 2) AS i FROM (SELECT make_array(5, 6) AS k) t",
        )
        .await;
        assert!(rows.is_empty(), "{rows:?}");
    }
}
