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
    BinaryOperator, Expr, GroupByExpr, Select, SelectItem, SetExpr, Statement, TableFactor, Value,
    visit_expressions_mut,
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
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && select.projection.len() == 1
            && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            && select.having.is_none()
        {
            let item = match &mut select.projection[0] {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
                _ => None,
            };
            let mut null_when_empty = false;
            if let Some(e) = item {
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
            if let Some(guard) = guard
                && let Ok(case) = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(&format!("CASE WHEN {guard} THEN ({query}) END"))
                    .and_then(|mut p| p.parse_expr())
            {
                *expr = case;
                changed = true;
            }
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
}
