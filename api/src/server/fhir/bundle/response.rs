//! The answers to entries, and the response Bundle that carries them.
//!
//! Each entry gets an [`Answer`] (a status, and a stored version, a resource or an
//! OperationOutcome), kept by its position: a transaction works its entries out of
//! order, but the response lists them in the order of the request, as the
//! specification asks. A failed entry's answer is made from the same [`ApiError`] a
//! plain request would get, so its status and OperationOutcome are the same.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use medlake_lake::{ResourceVersion, Written, instant_string};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::server::AppState;
use crate::server::fhir::search::search_in_bundle;
use crate::server::fhir::write::Return;
use crate::server::fhir::{fhir_json_response, gone, not_found};

/// The answer to one entry.
pub(super) struct Answer {
    status: StatusCode,
    /// A resource to answer with that is not a stored version (a searchset Bundle).
    resource: Option<Value>,
    version: Option<ResourceVersion>,
    outcome: Option<Value>,
}

impl Answer {
    /// A failed entry: its status and OperationOutcome.
    pub(super) fn failed(e: ApiError) -> Answer {
        Answer {
            status: e.status(),
            resource: None,
            version: None,
            outcome: Some(e.outcome()),
        }
    }

    /// A DELETE of what does not exist or is already deleted: 204, nothing written.
    pub(super) fn nothing_to_delete() -> Answer {
        Answer {
            status: StatusCode::NO_CONTENT,
            resource: None,
            version: None,
            outcome: None,
        }
    }

    /// A write that was made.
    pub(super) fn written(w: &Written) -> Answer {
        let v = w.version.as_ref().clone();
        let status = if v.deleted {
            StatusCode::NO_CONTENT
        } else if w.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Answer {
            status,
            resource: None,
            version: Some(v),
            outcome: None,
        }
    }
}

/// A read or vread entry.
pub(super) async fn read_answer(
    state: &AppState,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
) -> Answer {
    let read = match version {
        Some(v) => state.lake.read_version(resource_type, id, v).await,
        None => state.lake.read_latest(resource_type, id).await,
    };
    match read {
        Ok(Some(v)) if v.deleted => Answer::failed(gone(&v)),
        Ok(Some(v)) => Answer {
            status: StatusCode::OK,
            resource: None,
            version: Some(v.as_ref().clone()),
            outcome: None,
        },
        Ok(None) => Answer::failed(not_found(resource_type, id)),
        Err(e) => Answer::failed(ApiError::from_lake(&e, "the read")),
    }
}

/// A search entry: its searchset Bundle, or its OperationOutcome.
pub(super) async fn search_answer(state: &AppState, path: &str, query: &str) -> Answer {
    match search_in_bundle(state, path, query).await {
        Ok(searchset) => Answer {
            status: StatusCode::OK,
            resource: Some(searchset),
            version: None,
            outcome: None,
        },
        Err(e) => Answer::failed(e),
    }
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

/// The `batch-response` or `transaction-response` Bundle, its entries in the order of
/// the request's.
pub(super) fn response_bundle(
    state: &AppState,
    kind: &str,
    count: usize,
    mut answers: HashMap<usize, Answer>,
    prefer: Return,
    pretty: bool,
) -> Response {
    let entries: Vec<Value> = (0..count)
        .map(|i| {
            let Some(a) = answers.remove(&i) else {
                return json!({"response": {"status": "500 Internal Server Error"}});
            };
            let mut response = json!({"status": status_line(a.status)});
            let mut entry = json!({});
            if let Some(v) = &a.version {
                response["etag"] = json!(format!("W/\"{}\"", v.version_id));
                response["lastModified"] = json!(instant_string(v.last_updated));
                if a.status == StatusCode::CREATED || a.status == StatusCode::OK {
                    response["location"] = json!(format!(
                        "{}/{}/_history/{}",
                        v.resource_type, v.id, v.version_id
                    ));
                }
                if !v.deleted {
                    entry["fullUrl"] =
                        json!(format!("{}/{}/{}", state.fhir_base, v.resource_type, v.id));
                    if prefer == Return::Representation {
                        if let Ok(r) = serde_json::from_str::<Value>(&v.resource) {
                            entry["resource"] = r;
                        }
                    }
                }
            }
            if let Some(r) = a.resource {
                entry["resource"] = r;
            }
            if let Some(oo) = a.outcome {
                response["outcome"] = oo;
            }
            entry["response"] = response;
            entry
        })
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": kind});
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    let body = if pretty {
        serde_json::to_string_pretty(&b).unwrap_or_default()
    } else {
        b.to_string()
    };
    fhir_json_response(StatusCode::OK, body)
}
