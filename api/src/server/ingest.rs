//! `POST /ingest`: load NDJSON, a Bundle or one resource through the write-ahead log.
//!
//! The answer comes once every accepted resource is durable (fsync'd) and readable by id
//! and by SQL. Bad records are listed with their line or entry and an OperationOutcome;
//! the good ones land anyway. A request that fails as a whole (a body that is not text,
//! a write the lake refuses) answers with an OperationOutcome ([`crate::error`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medlake_ingest::issue::operation_outcome;
use medlake_ingest::prepare::prepare;
use medlake_ingest::source::{Payload, RawRecord, read_json_text};
use medlake_lake::WriteOp;
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

pub async fn post_ingest(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(ApiError::bad_request(
            "structure",
            "the body is not UTF-8 text",
        ));
    };
    let records = split_records(text);
    let prepared = tokio::task::spawn_blocking(move || {
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
