//! batch and transaction: `POST /fhir` with a Bundle.
//!
//! # Why it is built this way
//! - **A transaction is one [`Lake::write`](medlake_lake::Lake::write).** Its writes go
//!   into one write-ahead-log record, whose CRC covers all of them, so a crash keeps all
//!   or none; and the lake checks every `ifMatch` under its lock at that one moment, so
//!   no other write can slip between two entries. That is why [`transaction`] collects
//!   write operations instead of making them one by one, and why any failing entry
//!   fails the whole Bundle before anything is written.
//! - **Every entry is understood before anything is done** ([`entries`]): its URL,
//!   method, resource and preconditions become an `Action`, so that a transaction can
//!   refuse a bad entry while nothing is written yet, and can sort the actions into the
//!   order the specification gives (DELETE, POST, PUT and PATCH, then GET). Reads and
//!   searches come last and see the transaction's own writes.
//! - **Server ids are given before references are rewritten**: a `urn:uuid:` (or any
//!   other) fullUrl of a new resource becomes `Type/<new id>`, and every reference to it
//!   in the Bundle is pointed there, so the resources land already linked.
//! - **Conditions are searched first, under the conditional lock** ([`conditionals`]):
//!   `ifNoneExist`, a search in a PUT, DELETE or PATCH URL, and conditional references
//!   become plain ids before anything is written, with the same rules as the plain
//!   REST interactions ([`super::conditional`]). Bundles without conditions do not
//!   take the lock, so plain transactions commit side by side.
//! - **A batch is entries on their own** ([`batch`]): each is written by itself, and a
//!   failure is that entry's answer, not the request's: the request answers 200.
//! - **One error type for both.** An entry's failure is an [`ApiError`], the type every
//!   handler answers with, so an entry gets the status a plain request would get. A
//!   transaction answers with the failing entry's error, naming the entry; a batch puts
//!   its OperationOutcome in the entry's response ([`response`]).
//!
//! PATCH entries carry a Parameters resource (FHIRPath Patch) or a Binary holding a JSON
//! Patch, as the specification describes. Conditional reads (`ifNoneMatch`,
//! `ifModifiedSince`) are refused as not supported.

mod batch;
mod conditionals;
mod entries;
mod response;
mod transaction;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::write::prefer_return;
use super::{check_format, is_pretty};
use crate::error::ApiError;
use crate::server::AppState;

/// From this size on, a Bundle's JSON is parsed off the async threads.
const LARGE_BODY_BYTES: usize = 256 << 10;

pub async fn post_bundle(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    // A large body is parsed on a blocking thread (`medlake_lake::blocking`).
    let parsed = if body.len() >= LARGE_BODY_BYTES {
        medlake_lake::blocking::run(move || serde_json::from_slice::<Value>(&body))
            .await
            .map_err(|e| ApiError::from_lake(&e, "reading the Bundle"))?
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    let bundle = parsed.map_err(|e| {
        ApiError::bad_request("structure", format!("the body is not valid JSON: {e}"))
    })?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request(
            "invalid",
            "POST to the base URL takes a Bundle of type batch or transaction",
        ));
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prefer = prefer_return(&headers);
    let pretty = is_pretty(&params);
    match kind {
        "transaction" => transaction::transaction(&state, entries, prefer, pretty).await,
        "batch" => Ok(batch::batch(&state, entries, prefer, pretty).await),
        other => Err(ApiError::bad_request(
            "invalid",
            format!(
                "a Bundle of type '{other}' cannot be processed: send a batch or a transaction"
            ),
        )),
    }
}

/// Whether a resource exists and is not deleted: a DELETE of anything else writes
/// nothing (and answers 204), as for a plain DELETE.
fn is_live(state: &AppState, resource_type: &str, id: &str) -> bool {
    state
        .lake
        .latest(resource_type, id)
        .is_some_and(|l| !l.deleted)
}
