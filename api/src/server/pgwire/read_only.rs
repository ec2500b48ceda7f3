//! What a Postgres client may run: reads, and the session and transaction statements
//! clients send around them. Writes are refused as Postgres refuses them in a read-only
//! transaction (SQLSTATE 25006), so that clients show the usual message and go on.
//!
//! The check runs on the parse tree, before planning, in both protocols (a refused
//! statement never reaches DataFusion, which would otherwise create an in-memory table
//! for `CREATE TABLE`). What is neither a read nor a known write is answered as not
//! supported (0A000) rather than run.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// The first hook of every connection: refuses what must not run.
#[derive(Debug)]
pub struct ReadOnly;

/// Why a statement is refused, as the error a client gets.
pub fn refusal(statement: &Statement) -> Option<ErrorInfo> {
    match verdict(statement) {
        Verdict::Read => None,
        Verdict::Write(kind) => {
            let mut e = ErrorInfo::new(
                "ERROR".into(),
                "25006".into(),
                format!("cannot execute {kind} in a read-only transaction"),
            );
            e.hint = Some(
                "medlake's SQL is read-only: write data with `medlake ingest`, POST /ingest or the FHIR API"
                    .into(),
            );
            Some(e)
        }
        Verdict::Unsupported(kind) => {
            let mut e = ErrorInfo::new(
                "ERROR".into(),
                "0A000".into(),
                format!("{kind} is not supported by medlake's Postgres interface"),
            );
            e.hint =
                Some("queries (SELECT, EXPLAIN), SET, SHOW, transactions and cursors are".into());
            Some(e)
        }
    }
}

enum Verdict {
    Read,
    Write(String),
    Unsupported(String),
}

fn verdict(statement: &Statement) -> Verdict {
    match statement {
        Statement::Query(q) => {
            if query_writes(q) {
                Verdict::Write(first_word(statement))
            } else {
                Verdict::Read
            }
        }
        // EXPLAIN ANALYZE runs its statement.
        Statement::Explain { statement, .. } => verdict(statement),
        Statement::Declare { stmts } => {
            if stmts
                .iter()
                .any(|d| d.for_query.as_deref().is_some_and(query_writes))
            {
                Verdict::Write("DECLARE".into())
            } else {
                Verdict::Read
            }
        }
        Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::Set(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Reset(_)
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Verdict::Read,
        Statement::Copy { to: false, .. } => Verdict::Write("COPY FROM".into()),
        Statement::Copy { .. } => Verdict::Unsupported("COPY".into()),
        other => {
            let kind = first_word(other);
            const WRITES: &[&str] = &[
                "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE",
                "GRANT", "REVOKE", "COMMENT", "REFRESH", "VACUUM", "ANALYZE", "CALL", "DO",
                "REINDEX", "CLUSTER", "LOCK", "SECURITY", "UPSERT", "REPLACE", "LOAD",
            ];
            if WRITES.contains(&kind.as_str()) {
                Verdict::Write(kind)
            } else {
                Verdict::Unsupported(kind)
            }
        }
    }
}

/// A query whose body or `WITH` clause is an `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
fn query_writes(q: &Query) -> bool {
    fn body_writes(body: &SetExpr) -> bool {
        match body {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
            SetExpr::Query(q) => query_writes(q),
            SetExpr::SetOperation { left, right, .. } => body_writes(left) || body_writes(right),
            _ => false,
        }
    }
    body_writes(&q.body)
        || q.with
            .as_ref()
            .is_some_and(|w| w.cte_tables.iter().any(|c| query_writes(&c.query)))
}

fn first_word(statement: &Statement) -> String {
    statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("this statement")
        .to_ascii_uppercase()
}

fn refuse(statement: &Statement) -> Option<PgWireError> {
    refusal(statement).map(|e| PgWireError::UserError(Box::new(e)))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refuse(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refuse(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refuse(statement).map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn code(sql: &str) -> Option<String> {
        let statements = PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        refusal(&statements[0]).map(|e| e.code)
    }

    #[test]
    fn reads_and_session_statements_pass() {
        for sql in [
            "SELECT 1",
            "SELECT id FROM fhir.patient WHERE id = $1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
            "SHOW search_path",
            "SET application_name = 'x'",
            "BEGIN",
            "BEGIN READ ONLY",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "ROLLBACK TO SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH NEXT FROM c",
            "CLOSE c",
        ] {
            assert_eq!(code(sql), None, "{sql}");
        }
    }

    #[test]
    fn writes_are_refused_as_postgres_refuses_them_in_a_read_only_transaction() {
        for sql in [
            "INSERT INTO fhir.patient (id) VALUES ('x')",
            "UPDATE fhir.patient SET id = 'y'",
            "DELETE FROM fhir.patient",
            "CREATE TABLE t (a int)",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE fhir.patient",
            "ALTER TABLE fhir.patient ADD COLUMN x int",
            "TRUNCATE fhir.patient",
            "COPY fhir.patient FROM STDIN",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "GRANT SELECT ON t TO u",
        ] {
            assert_eq!(code(sql).as_deref(), Some("25006"), "{sql}");
        }
    }

    #[test]
    fn what_is_neither_is_not_supported() {
        assert_eq!(
            code("COPY fhir.patient TO STDOUT").as_deref(),
            Some("0A000")
        );
        assert_eq!(code("LISTEN x").as_deref(), Some("0A000"));
    }
}
