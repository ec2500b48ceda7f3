//! `POST /features`: a point-in-time feature extraction ([`medlake_query::features`]) on
//! the server's lake, its current writes included.
//!
//! The body is the spec, TOML or JSON. The answer is an Arrow IPC stream for
//! `Accept: application/vnd.apache.arrow.stream`, written batch by batch as the plan
//! produces them (the plan runs at most a couple of batches ahead of the client);
//! Parquet for `application/vnd.apache.parquet`, CSV for `text/csv`, and otherwise
//! a JSON array, which are gathered first. A spec that cannot run is a 400
//! OperationOutcome that says what to change; a cohort query that fails is answered as
//! `/sql` answers it. The server reads no files for a client: a code set is sent inline
//! or as a query.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::writer::StreamWriter;
use futures::StreamExt;
use medlake_query::features::{self, FeatureError, FeatureSpec, Files};

use super::AppState;
use crate::error::ApiError;
use crate::output;

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
const PARQUET: &str = "application/vnd.apache.parquet";

fn answer_error(e: &FeatureError) -> ApiError {
    match e {
        FeatureError::Spec(m) => ApiError::bad_request("invalid", m.clone()),
        FeatureError::NotSupported(_) => ApiError::bad_request("not-supported", e.to_string()),
        FeatureError::Query(q) => ApiError::from_query(q, "the feature extraction"),
        FeatureError::Search(s) => ApiError::from_search(s, "the cohort search"),
    }
}

pub async fn post_features(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("structure", "the body is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "required",
            "the body is empty: send the feature spec, TOML or JSON",
        ));
    }
    let spec = FeatureSpec::parse(text).map_err(|e| answer_error(&e))?;
    let mut stream = features::extract(&state.engine, &state.lake, &spec, Files::Refused)
        .await
        .map_err(|e| answer_error(&e))?;
    let schema = stream.schema();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");

    if accept.contains(ARROW_STREAM) {
        // The first batch is awaited before answering, so that a plan failing at once
        // gets its status; later failures can only cut the stream short.
        let first = stream.next().await.transpose().map_err(|e| failed(&e))?;
        let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(|e| failed(&e))?;
        if let Some(b) = &first {
            writer.write(b).map_err(|e| failed(&e))?;
        }
        let head = std::mem::take(writer.get_mut());
        let body = futures::stream::unfold(
            (Some(head), Some((stream, writer))),
            |(pending, state)| async move {
                if let Some(bytes) = pending {
                    return Some((Ok(Bytes::from(bytes)), (None, state)));
                }
                let (mut stream, mut writer) = state?;
                match stream.next().await {
                    Some(Ok(b)) => match writer.write(&b) {
                        Ok(()) => {
                            let bytes = std::mem::take(writer.get_mut());
                            Some((Ok(Bytes::from(bytes)), (None, Some((stream, writer)))))
                        }
                        Err(e) => Some((Err(std::io::Error::other(e.to_string())), (None, None))),
                    },
                    Some(Err(e)) => {
                        tracing::error!(
                            "a feature extraction failed after its answer had begun; the body is cut off: {e}"
                        );
                        Some((Err(std::io::Error::other(e.to_string())), (None, None)))
                    }
                    None => match writer.finish() {
                        Ok(()) => Some((
                            Ok(Bytes::from(std::mem::take(writer.get_mut()))),
                            (None, None),
                        )),
                        Err(e) => Some((Err(std::io::Error::other(e.to_string())), (None, None))),
                    },
                }
            },
        );
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, ARROW_STREAM)],
            Body::from_stream(body),
        )
            .into_response());
    }

    let mut batches: Vec<RecordBatch> = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b.map_err(|e| failed(&e))?);
    }
    let (content_type, encoded) = if accept.contains(PARQUET) {
        (PARQUET, parquet_file(&schema, &batches))
    } else if accept.contains("text/csv") {
        ("text/csv; charset=utf-8", output::csv(&batches))
    } else {
        ("application/json", output::json(&batches))
    };
    let bytes = encoded.map_err(|e| failed(&crate::error_chain(e.as_ref())))?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

fn failed(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::internal("the feature extraction", e)
}

/// Parquet with the extraction's schema, also when it has no rows.
fn parquet_file(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), None)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(buf)
}
