//! `POST /ingest`: load NDJSON, a Bundle or one resource.
//!
//! Two paths, chosen by size:
//! - **Through the WAL**, for a body of at most [`WAL_PATH_MAX_BYTES`] with a
//!   `Content-Length`, like a FHIR write: the answer comes once every accepted resource is
//!   durable (fsync'd) and readable by id and by SQL, and lists each with its version.
//! - **The bulk path**, for a larger body, a streamed one (no `Content-Length`), or
//!   `?bulk=true`: the body is split into records as it arrives ([`body`]) and loaded by
//!   the lake's bulk pipeline ([`medlake_lake::Lake::bulk_load`]): large Delta commits,
//!   not the WAL, with versions assigned by this server, which owns versioning. The
//!   answer counts what landed per type and quotes the first rejections; every rejection
//!   is in `medlake.ingest_errors` under the answer's `runId`. `medlake ingest --server`
//!   uses this path. `?bulk=false` forces the WAL path.
//!
//! Either way, bad records are reported with their line or entry and an
//! OperationOutcome, and the good ones land anyway. A request that fails as a whole (a
//! body that is not text, a write the lake refuses) answers with an OperationOutcome
//! ([`crate::error`]).

mod body;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medlake_ingest::issue::operation_outcome;
use medlake_ingest::prepare::prepare;
use medlake_ingest::source::{Payload, RawRecord, read_json_text};
use medlake_lake::{BulkOptions, LoadSummary, WriteOp};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// The largest body that goes through the WAL; larger ones take the bulk path.
pub const WAL_PATH_MAX_BYTES: u64 = 8 << 20;

pub async fn post_ingest(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bulk = match params.get("bulk").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "value",
                format!("bulk={other} is not understood: use bulk=true or bulk=false"),
            ));
        }
        None => length.is_none_or(|n| n > WAL_PATH_MAX_BYTES),
    };
    if bulk {
        let document = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| {
                c.starts_with("application/fhir+json") || c.starts_with("application/json")
            });
        return bulk_ingest(&state, body, document).await;
    }
    match axum::body::to_bytes(body, WAL_PATH_MAX_BYTES as usize).await {
        Ok(bytes) => wal_ingest(&state, bytes).await,
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            format!(
                "with bulk=false the body may be at most {} MiB; leave bulk out to load \
                 larger bodies through the bulk path",
                WAL_PATH_MAX_BYTES >> 20
            ),
        )),
    }
}

/// The bulk path: the body streams through the bulk pipeline into large Delta commits.
async fn bulk_ingest(state: &AppState, body: Body, document: bool) -> Result<Response, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<RawRecord>>(4);
    let splitter = tokio::spawn(body::split(body, document, tx));
    let loaded = state
        .lake
        .bulk_load(rx, BulkOptions::default(), |_| {})
        .await;
    let split = match splitter.await {
        Ok(r) => r,
        Err(e) => Err(body::BodyError::Read(format!(
            "the body reader failed: {e}"
        ))),
    };
    let summary = loaded.map_err(|e| {
        ApiError::from_lake(&e, "the bulk ingest").explain(|d| {
            format!("the load stopped: {d}. Batches committed before the failure stay")
        })
    })?;
    if let Err(e) = split {
        let (status, code) = match e {
            body::BodyError::DocumentTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-long"),
            body::BodyError::Read(_) => (StatusCode::BAD_REQUEST, "structure"),
        };
        return Err(ApiError::new(
            status,
            code,
            format!(
                "{e}; the {} resources read before it were committed (run {})",
                summary.accepted, summary.run_id
            ),
        ));
    }
    Ok(bulk_answer(&summary))
}

fn bulk_answer(s: &LoadSummary) -> Response {
    let status = if s.accepted == 0 && s.rejected > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({
            "mode": "bulk",
            "accepted": s.accepted,
            "rejected": s.rejected,
            "types": s.per_type,
            "commits": s.commits,
            "runId": s.run_id,
            "firstErrors": s.first_errors,
            "errorsQuery": format!("SELECT source, line, entry, diagnostics FROM medlake.ingest_errors WHERE run_id = '{}'", s.run_id),
        })),
    )
        .into_response()
}

/// The WAL path: every accepted resource is durable and readable when this answers.
async fn wal_ingest(state: &AppState, body: Bytes) -> Result<Response, ApiError> {
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(ApiError::bad_request(
            "structure",
            "the body is not UTF-8 text",
        ));
    };
    let records = split_records(text);
    let prepared = medlake_lake::blocking::run(move || {
        records
            .into_iter()
            .map(|r| (r.origin, prepare(r.payload)))
            .collect::<Vec<_>>()
    })
    .await;
    let prepared = prepared.map_err(|e| ApiError::internal("parsing the ingest body", &e))?;
    let mut ops = Vec::new();
    let mut rejected = Vec::new();
    for (origin, p) in prepared {
        match p {
            Ok(p) => ops.push(WriteOp::Put {
                resource_type: p.resource_type,
                id: p.id,
                resource: p.resource,
                if_match: None,
            }),
            Err(r) => rejected.push(json!({
                "line": origin.line,
                "entry": origin.entry,
                "resourceType": r.resource_type,
                "id": r.id,
                "outcome": operation_outcome(&r.issues),
            })),
        }
    }
    let written = if ops.is_empty() {
        Vec::new()
    } else {
        match state.lake.write(ops).await {
            Ok(w) => w,
            Err(e) => {
                return Err(ApiError::from_lake(&e, "the ingest write")
                    .explain(|d| format!("nothing was stored: {d}")));
            }
        }
    };
    let accepted: Vec<Value> = written
        .iter()
        .map(|w| {
            json!({
                "resourceType": w.version.resource_type,
                "id": w.version.id,
                "versionId": w.version.version_id.to_string(),
            })
        })
        .collect();
    let status = if accepted.is_empty() && !rejected.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "accepted": accepted.len(),
            "rejected": rejected.len(),
            "resources": accepted,
            "errors": rejected,
        })),
    )
        .into_response())
}

/// A JSON object body is one resource or a Bundle; anything else is NDJSON.
fn split_records(text: &str) -> Vec<RawRecord> {
    let source: Arc<str> = Arc::from("request body");
    let mut out = Vec::new();
    let trimmed = text.trim();
    let single_document =
        trimmed.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok();
    if single_document {
        read_json_text(trimmed, source, &mut |r| out.push(r));
        return out;
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        out.push(RawRecord {
            origin: medlake_ingest::source::Origin {
                source: source.clone(),
                line: Some(i as u64 + 1),
                entry: None,
            },
            payload: Payload::Text(line.to_string()),
        });
    }
    out
}
