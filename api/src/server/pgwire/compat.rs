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
//! - `CASE WHEN c THEN (SELECT v FROM t WHERE w) [ELSE NULL] END`: DataFusion cannot
//!   plan a correlated subquery inside `CASE`; it is the same as
//!   `(SELECT v FROM t WHERE (w) AND (c))`, which it can.

use std::ops::ControlFlow;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, SelectItem, SetExpr, Statement, Value, visit_expressions_mut,
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
        if let Expr::Case {
            operand: None,
            conditions,
            else_result,
            ..
        } = expr
            && conditions.len() == 1
            && else_result.as_deref().is_none_or(is_null)
            && !has_subquery(&conditions[0].condition)
            && let Expr::Subquery(query) = &conditions[0].result
            && let SetExpr::Select(select) = query.body.as_ref()
        {
            let condition = conditions[0].condition.clone();
            let mut select = select.clone();
            select.selection = Some(match select.selection.take() {
                Some(w) => Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(w))),
                    op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
                    right: Box::new(Expr::Nested(Box::new(condition))),
                },
                None => condition,
            });
            let mut query = query.clone();
            query.body = Box::new(SetExpr::Select(select));
            *expr = Expr::Subquery(query);
            changed = true;
        }
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
            if let Some(e) = item
                && !is_aggregate(e)
                && let Ok(wrapped) = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(&format!("first_value({e})"))
                    .and_then(|mut p| p.parse_expr())
            {
                *e = wrapped;
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

/// A condition with a subquery of its own cannot move into another subquery: DataFusion
/// does not plan a subquery that refers to a query two levels out.
fn has_subquery(e: &Expr) -> bool {
    let mut e = e.clone();
    visit_expressions_mut(&mut e, |x| match x {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn is_null(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if v.value == Value::Null)
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
        let r = rewritten(
            "SELECT CASE WHEN a.c THEN (SELECT b.x FROM b WHERE b.id = a.id) ELSE NULL END FROM a",
        );
        assert!(
            r.contains("(SELECT first_value(b.x) FROM b WHERE (b.id = a.id) AND (a.c))"),
            "{r}"
        );
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
