//! create, update and delete: `POST /fhir/<type>`, `PUT` and `DELETE /fhir/<type>/<id>`.
//!
//! Each is one [`Lake::write`](medlake_lake::Lake::write): the resource is checked against
//! R4, stamped with its version under the lake's lock (where `If-Match` is checked too),
//! and answered once it is in the fsync'd write-ahead log, so a read or a SQL query
//! that follows sees it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medlake_ingest::issue::{Issue, Severity, operation_outcome};
use medlake_ingest::prepare::prepare_value;
use medlake_lake::{LakeError, WriteOp, Written};
use serde_json::{Map, Value};

use super::conditional;
use super::{
    FHIR_JSON, check_format, check_id, check_instance, check_type, is_pretty, not_found,
    version_headers,
};
use crate::error::ApiError;
use crate::server::AppState;

/// What the client asked to get back (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub(super) fn prefer_return(headers: &HeaderMap) -> Return {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("return="));
    match prefer.map(|p| p.trim_matches('"')) {
        Some("minimal") => Return::Minimal,
        Some("OperationOutcome") => Return::OperationOutcome,
        _ => Return::Representation,
    }
}

/// The version an `If-Match` header names: `W/"3"`, `"3"` or `3`.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid",
            format!("If-Match '{text}' is not a version ETag like W/\"3\""),
        )
    })
}

/// The request body as a resource of `resource_type`, checked against R4.
fn parse_body(
    resource_type: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("xml") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "FHIR XML is not supported: send application/fhir+json",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("structure", format!("the body is not valid JSON: {e}"))
    })?;
    let found = value.get("resourceType").and_then(Value::as_str);
    if found != Some(resource_type) {
        return Err(ApiError::bad_request(
            "invalid",
            format!(
                "the body's resourceType is {}, but the URL is for {resource_type}",
                found.map_or_else(|| "missing".to_string(), |t| format!("'{t}'"))
            ),
        ));
    }
    match prepare_value(value) {
        Ok(p) => Ok(p.resource),
        Err(rejected) => Err(ApiError::with_issues(
            StatusCode::BAD_REQUEST,
            rejected.issues,
        )),
    }
}

/// The one result of a write of one operation.
pub(super) fn only_written(written: Vec<Written>) -> Result<Written, ApiError> {
    written
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the write", &"the lake answered no version"))
}

/// The answer to a successful create or update.
pub(super) fn written_response(
    state: &AppState,
    written: &Written,
    prefer: Return,
    pretty: bool,
) -> Response {
    let v = &written.version;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = match prefer {
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => {
            let verb = if written.created {
                "created"
            } else {
                "updated"
            };
            let oo = operation_outcome(&[Issue {
                severity: Severity::Information,
                code: "informational",
                diagnostics: format!(
                    "{}/{} {verb}: version {}",
                    v.resource_type, v.id, v.version_id
                ),
                expression: None,
            }]);
            (status, oo.to_string()).into_response()
        }
        Return::Representation => {
            let body = if pretty {
                serde_json::from_str::<Value>(&v.resource)
                    .ok()
                    .and_then(|j| serde_json::to_string_pretty(&j).ok())
                    .unwrap_or_else(|| v.resource.to_string())
            } else {
                v.resource.to_string()
            };
            (status, body).into_response()
        }
    };
    let h = r.headers_mut();
    if prefer != Return::Minimal {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    }
    version_headers(h, v);
    let location = format!(
        "{}/{}/{}/_history/{}",
        state.fhir_base, v.resource_type, v.id, v.version_id
    );
    if let Ok(l) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, l.clone());
        h.insert(header::CONTENT_LOCATION, l);
    }
    r
}

/// The answer to a conditional create that found its resource: 200 with it.
fn existing_response(
    state: &AppState,
    v: &std::sync::Arc<medlake_lake::ResourceVersion>,
    prefer: Return,
    pretty: bool,
) -> Response {
    let w = Written {
        version: v.clone(),
        created: false,
    };
    written_response(state, &w, prefer, pretty)
}

/// Make one write and answer it as `Prefer` asks.
async fn write_one(
    state: &AppState,
    op: WriteOp,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let written = state
        .lake
        .write(vec![op])
        .await
        .map_err(|e| ApiError::from_lake(&e, "the write"))?;
    let w = only_written(written)?;
    Ok(written_response(
        state,
        &w,
        prefer_return(headers),
        is_pretty(params),
    ))
}

/// `POST /fhir/<type>`: a new resource with a server-assigned id.
pub async fn create(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    check_type(&resource_type)?;
    let resource = parse_body(&resource_type, &headers, &body)?;
    let _conditional = match headers.get("if-none-exist") {
        None => None,
        Some(condition) => {
            let condition = condition.to_str().unwrap_or("").to_string();
            let guard = conditional::lock(&state).await;
            let matches = conditional::search(&state, &resource_type, &condition).await?;
            if let Some(id) = matches.at_most_one()? {
                // It exists: answer with it, write nothing.
                return match state.lake.read_latest(&resource_type, id).await {
                    Ok(Some(v)) => Ok(existing_response(
                        &state,
                        &v,
                        prefer_return(&headers),
                        is_pretty(&params),
                    )),
                    Ok(None) => Err(not_found(&resource_type, id)),
                    Err(e) => Err(ApiError::from_lake(&e, "the read")),
                };
            }
            Some(guard)
        }
    };
    // The id in the body is ignored on create, as the specification says.
    let op = WriteOp::Put {
        resource_type,
        id: Some(uuid::Uuid::new_v4().to_string()),
        resource,
        if_match: None,
    };
    write_one(&state, op, &params, &headers).await
}

/// `PUT /fhir/<type>/<id>`: a new version, or the first one under the client's id.
pub async fn update(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let expected = if_match(&headers)?;
    let resource = parse_body(&resource_type, &headers, &body)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(ApiError::bad_request(
                "invalid",
                format!("the body's id '{body_id}' is not the id in the URL, '{id}'"),
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "required",
                format!("an update must carry the resource's id in the body (\"id\": \"{id}\")"),
            ));
        }
    }
    let op = WriteOp::Put {
        resource_type,
        id: Some(id),
        resource,
        if_match: expected,
    };
    write_one(&state, op, &params, &headers).await
}

/// `DELETE /fhir/<type>/<id>`: a delete marker as a new version; reads then answer 410.
///
/// Deleting what does not exist, or is already deleted, succeeds and writes nothing,
/// as the specification allows.
pub async fn delete(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let expected = if_match(&headers)?;
    let prefer = prefer_return(&headers);
    let current = state.lake.latest(&resource_type, &id);
    let message = match current {
        Some(l) if !l.deleted => {
            let op = WriteOp::Delete {
                resource_type: resource_type.clone(),
                id: id.clone(),
                if_match: expected,
            };
            let written = state
                .lake
                .write(vec![op])
                .await
                .map_err(|e| ApiError::from_lake(&e, "the delete"))?;
            let w = only_written(written)?;
            let mut r = deleted_response(
                prefer,
                format!(
                    "{resource_type}/{id} deleted: version {} is the delete marker",
                    w.version.version_id
                ),
            );
            version_headers(r.headers_mut(), &w.version);
            return Ok(r);
        }
        Some(_) => format!("{resource_type}/{id} was already deleted; nothing was written"),
        None => format!("{resource_type}/{id} does not exist; nothing was written"),
    };
    if let Some(v) = expected {
        if current.map(|l| l.version_id) != Some(v) {
            let conflict = LakeError::VersionConflict {
                resource: format!("{resource_type}/{id}"),
                expected: v,
                current: current.map(|l| l.version_id),
            };
            return Err(ApiError::from_lake(&conflict, "the delete"));
        }
    }
    Ok(deleted_response(prefer, message))
}

fn deleted_response(prefer: Return, message: String) -> Response {
    if prefer == Return::OperationOutcome {
        let oo = operation_outcome(&[Issue {
            severity: Severity::Information,
            code: "informational",
            diagnostics: message,
            expression: None,
        }]);
        let mut r = (StatusCode::OK, oo.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `PUT /fhir/<type>?<search>`: update the one resource the search finds, or create one
/// if it finds none; 412 if it finds several.
pub async fn conditional_update(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    uri: axum::http::Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    check_type(&resource_type)?;
    let mut resource = parse_body(&resource_type, &headers, &body)?;
    let condition = uri.query().unwrap_or("").to_string();
    let _guard = conditional::lock(&state).await;
    let matches = conditional::search(&state, &resource_type, &condition).await?;
    let id = matches.update_target(resource.get("id").and_then(Value::as_str))?;
    check_id(&id)?;
    resource.insert("id".into(), Value::String(id.clone()));
    let expected = if_match(&headers)?;
    let op = WriteOp::Put {
        resource_type,
        id: Some(id),
        resource,
        if_match: expected,
    };
    write_one(&state, op, &params, &headers).await
}

/// `DELETE /fhir/<type>?<search>`: delete the one resource the search finds (nothing if
/// none); 412 if it finds several.
pub async fn conditional_delete(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    uri: axum::http::Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    check_type(&resource_type)?;
    let condition = uri.query().unwrap_or("").to_string();
    let _guard = conditional::lock(&state).await;
    let matches = conditional::search(&state, &resource_type, &condition).await?;
    let Some(id) = matches.at_most_one()? else {
        return Ok(deleted_response(
            prefer_return(&headers),
            format!("no {resource_type} matches {condition}; nothing was deleted"),
        ));
    };
    let op = WriteOp::Delete {
        resource_type: resource_type.clone(),
        id: id.to_string(),
        if_match: None,
    };
    let written = state
        .lake
        .write(vec![op])
        .await
        .map_err(|e| ApiError::from_lake(&e, "the delete"))?;
    let w = only_written(written)?;
    let mut r = deleted_response(
        prefer_return(&headers),
        format!("{resource_type}/{id} deleted"),
    );
    version_headers(r.headers_mut(), &w.version);
    Ok(r)
}
