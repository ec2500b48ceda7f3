//! The `ingest_errors` table: one row per rejected input record, and per clash found
//! when following other processes' commits.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};

use crate::error::{LakeError, Result};
use crate::lake::{Lake, load_table};
use crate::record::now_micros;
use crate::schema::ingest_errors_schema;

/// One rejected input record, as stored in `ingest_errors`.
#[derive(Debug, Clone)]
pub struct IngestErrorRow {
    pub source: String,
    pub line: Option<i64>,
    pub entry: Option<i64>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub severity: String,
    pub code: String,
    pub diagnostics: String,
    pub expression: Option<String>,
    pub outcome: String,
}

impl Lake {
    /// Append rejected records to the `ingest_errors` table under `run_id`.
    pub async fn append_ingest_errors(&self, run_id: &str, rows: &[IngestErrorRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        let mut run = StringBuilder::new();
        let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut source = StringBuilder::new();
        let mut line = Int64Builder::new();
        let mut entry = Int64Builder::new();
        let mut rtype = StringBuilder::new();
        let mut rid = StringBuilder::new();
        let mut severity = StringBuilder::new();
        let mut code = StringBuilder::new();
        let mut diagnostics = StringBuilder::new();
        let mut expression = StringBuilder::new();
        let mut outcome = StringBuilder::new();
        for r in rows {
            run.append_value(run_id);
            at.append_value(now);
            source.append_value(&r.source);
            line.append_option(r.line);
            entry.append_option(r.entry);
            rtype.append_option(r.resource_type.as_deref());
            rid.append_option(r.resource_id.as_deref());
            severity.append_value(&r.severity);
            code.append_value(&r.code);
            diagnostics.append_value(&r.diagnostics);
            expression.append_option(r.expression.as_deref());
            outcome.append_value(&r.outcome);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(run.finish()),
            Arc::new(at.finish()),
            Arc::new(source.finish()),
            Arc::new(line.finish()),
            Arc::new(entry.finish()),
            Arc::new(rtype.finish()),
            Arc::new(rid.finish()),
            Arc::new(severity.finish()),
            Arc::new(code.finish()),
            Arc::new(diagnostics.finish()),
            Arc::new(expression.finish()),
            Arc::new(outcome.finish()),
        ];
        let batch = RecordBatch::try_new(ingest_errors_schema(), columns)?;
        let url = self.ingest_errors_url()?;
        let table = match load_table(&url).await? {
            Some(t) => t,
            None => deltalake::DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(|e| LakeError::delta("ingest_errors", e))?,
        };
        table
            .write(vec![batch])
            .await
            .map_err(|e| LakeError::delta("ingest_errors", e))?;
        Ok(())
    }
}
