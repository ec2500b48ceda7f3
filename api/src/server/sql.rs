//! `POST /sql`: a read-only query, answered as JSON, CSV or an Arrow IPC stream.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medlake_query::QueryError;
use serde_json::{Value, json};

use super::AppState;
use crate::output;

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The query from a text body, or from `{"query": "..."}`.
fn query_text(headers: &HeaderMap, body: &Bytes) -> Result<String, Response> {
    let text = std::str::from_utf8(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text"))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
        || text.trim_start().starts_with('{');
    if is_json {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        return match v.get("query").and_then(Value::as_str) {
            Some(q) => Ok(q.to_string()),
            None => Err(error(
                StatusCode::BAD_REQUEST,
                "a JSON body needs a string field \"query\"",
            )),
        };
    }
    if text.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the SQL query",
        ));
    }
    Ok(text.to_string())
}

pub async fn post_sql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let query = match query_text(&headers, &body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let df = match state.engine.sql(&query).await {
        Ok(df) => df,
        Err(e @ QueryError::ReadOnly(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(QueryError::DataFusion(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let schema = df.schema().inner().clone();
    let batches = match df.collect().await {
        Ok(b) => b,
        Err(e) => {
            // Planning succeeded, so most execution errors are still the query's fault
            // (casts, division by zero); storage failures are ours.
            let status = match &e {
                datafusion::error::DataFusionError::ObjectStore(_)
                | datafusion::error::DataFusionError::IoError(_)
                | datafusion::error::DataFusionError::External(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, e.to_string());
        }
    };
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
    match encoded {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::error_chain(e.as_ref()),
        ),
    }
}
