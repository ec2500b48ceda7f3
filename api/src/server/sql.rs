//! `POST /sql`: a read-only query, answered as JSON, CSV or an Arrow IPC stream.
//!
//! A query that fails answers with an OperationOutcome, like every other endpoint, so a
//! client reads one error shape: 400 for a body or SQL that cannot be read, 422 for SQL
//! that parses but cannot run (an unknown table or column, a failed cast), and the
//! server's own failures as 500 or 503 ([`crate::error`] decides which).
//!
//! With `--sql-engine ballista://...` the query runs on that cluster over the committed
//! tables ([`crate::cluster`]); when a queried table has acknowledged rows not yet
//! flushed, the answer carries a `Warning: 199` header that names them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;
use crate::output;

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The query from a text body, or from `{"query": "..."}`.
fn query_text(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("structure", "the body is not UTF-8 text"))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
        || text.trim_start().starts_with('{');
    if is_json {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request("structure", format!("the body is not valid JSON: {e}"))
        })?;
        return match v.get("query").and_then(Value::as_str) {
            Some(q) => Ok(q.to_string()),
            None => Err(ApiError::bad_request(
                "required",
                "a JSON body needs a string field \"query\"",
            )),
        };
    }
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "required",
            "the body is empty: send the SQL query",
        ));
    }
    Ok(text.to_string())
}

pub async fn post_sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = query_text(&headers, &body)?;
    let (answer, notice) = match &state.cluster {
        // Planned and run on the query runtime, off the request threads.
        None => (
            state
                .engine
                .query(&query)
                .await
                .map_err(|e| ApiError::from_query(&e, "the query"))?,
            None,
        ),
        Some(cluster) => cluster
            .query(&query)
            .await
            .map_err(|e| ApiError::from_cluster(&e))?,
    };
    let (schema, batches) = (answer.schema, answer.batches);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (content_type, encoded) = if accept.contains(ARROW_STREAM) {
        (ARROW_STREAM, output::arrow_stream(&schema, &batches))
    } else if accept.contains("text/csv") {
        ("text/csv; charset=utf-8", output::csv(&batches))
    } else {
        ("application/json", output::json(&batches))
    };
    let bytes = encoded.map_err(|e| {
        ApiError::internal(
            "writing the query's answer",
            &crate::error_chain(e.as_ref()),
        )
    })?;
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    if let Some(notice) = notice {
        tracing::info!("POST /sql on Ballista: {notice}");
        // RFC 9111's miscellaneous warning: the answer is right, but not complete as of
        // now. Quotes would end the header's text early.
        let text = format!("199 medlake \"{}\"", notice.to_string().replace('"', "'"));
        if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
            response.headers_mut().insert(header::WARNING, value);
        }
    }
    Ok(response)
}
