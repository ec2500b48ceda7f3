//! patch: `PATCH /fhir/<type>/<id>` with a JSON Patch (RFC 6902) document or a FHIRPath
//! Patch (a Parameters resource).
//!
//! The patch is applied to the current version, all or nothing (JSON Patch with the
//! `json-patch` crate, FHIRPath Patch with `medlake_ingest::fhirpath::patch`), the result
//! is checked against R4 like any update, and written with the
//! version it was made from as its precondition, so a concurrent update is never lost:
//! the patch is retried on the newer version, or, under the client's own `If-Match`,
//! answered 412.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use medlake_ingest::issue::Issue;
use medlake_ingest::prepare::prepare_value;
use medlake_lake::{LakeError, WriteOp};
use serde_json::{Map, Value};

use super::write::{if_match, only_written, prefer_return, written_response};
use super::{check_instance, is_pretty};
use crate::error::ApiError;
use crate::server::AppState;

/// How often a patch is re-applied when another write got in between.
const ATTEMPTS: usize = 5;

pub async fn patch(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch = if content_type.starts_with("application/json-patch+json") {
        match serde_json::from_slice::<json_patch::Patch>(&body) {
            Ok(p) => Patch::Json(p),
            Err(e) => {
                return Err(ApiError::bad_request(
                    "structure",
                    format!("the body is not a JSON Patch document: {e}"),
                ));
            }
        }
    } else if content_type.contains("json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(p) if p.get("resourceType").and_then(Value::as_str) == Some("Parameters") => {
                Patch::FhirPath(p)
            }
            _ => {
                return Err(ApiError::bad_request(
                    "structure",
                    "a FHIRPath Patch must be a Parameters resource; a JSON Patch must be \
                     sent as application/json-patch+json",
                ));
            }
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!(
                "'{content_type}' is not a patch format this server takes: send a JSON Patch \
                 (application/json-patch+json) or a FHIRPath Patch Parameters resource \
                 (application/fhir+json)"
            ),
        ));
    };
    let client_expects = if_match(&headers)?;
    for _ in 0..ATTEMPTS {
        let (resource, from_version) =
            patched(&state, &resource_type, &id, &patch, client_expects).await?;
        let op = WriteOp::Put {
            resource_type: resource_type.clone(),
            id: Some(id.clone()),
            resource,
            if_match: Some(from_version),
        };
        match state.lake.write(vec![op]).await {
            Ok(w) => {
                let w = only_written(w)?;
                return Ok(written_response(
                    &state,
                    &w,
                    prefer_return(&headers),
                    is_pretty(&params),
                ));
            }
            // Someone wrote in between: patch the newer version, unless the client pinned one.
            Err(LakeError::VersionConflict { .. }) if client_expects.is_none() => continue,
            Err(e) => return Err(ApiError::from_lake(&e, "the patch")),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("{resource_type}/{id} kept changing while the patch was applied; try again"),
    ))
}

/// The current version of a resource with `patch` applied and checked against R4, and
/// the version it was made from (the precondition of its write).
pub(super) async fn patched(
    state: &AppState,
    resource_type: &str,
    id: &str,
    patch: &Patch,
    client_expects: Option<i64>,
) -> Result<(Map<String, Value>, i64), ApiError> {
    let current = match state.lake.read_latest(resource_type, id).await {
        Ok(Some(v)) if v.deleted => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "deleted",
                format!("{resource_type}/{id} was deleted"),
            ));
        }
        Ok(Some(v)) => v,
        Ok(None) => return Err(super::not_found(resource_type, id)),
        Err(e) => return Err(ApiError::from_lake(&e, "reading the resource to patch")),
    };
    if let Some(expected) = client_expects {
        if expected != current.version_id {
            let conflict = LakeError::VersionConflict {
                resource: format!("{resource_type}/{id}"),
                expected,
                current: Some(current.version_id),
            };
            return Err(ApiError::from_lake(&conflict, "the patch"));
        }
    }
    let mut doc: Value = serde_json::from_str(&current.resource)
        .map_err(|e| ApiError::internal("reading the resource to patch", &e))?;
    patch.apply(&mut doc)?;
    if doc.get("resourceType").and_then(Value::as_str) != Some(resource_type)
        || doc.get("id").and_then(Value::as_str) != Some(id)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            "a patch may not change the resource's resourceType or id",
        ));
    }
    match prepare_value(doc) {
        Ok(p) => Ok((p.resource, current.version_id)),
        Err(rejected) => {
            let mut issues = rejected.issues;
            issues.insert(
                0,
                Issue::error("processing", "the patched resource is not valid FHIR R4"),
            );
            Err(ApiError::with_issues(
                StatusCode::UNPROCESSABLE_ENTITY,
                issues,
            ))
        }
    }
}

/// The two patch formats FHIR R4 defines for JSON.
#[derive(Debug)]
pub(super) enum Patch {
    /// RFC 6902, applied by the `json-patch` crate.
    Json(json_patch::Patch),
    /// FHIRPath Patch: a Parameters resource of operations.
    FhirPath(Value),
}

impl Patch {
    /// Apply all operations or none.
    fn apply(&self, doc: &mut Value) -> Result<(), ApiError> {
        match self {
            Patch::Json(operations) => json_patch::patch(doc, operations).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "processing",
                    format!("the patch could not be applied: {e}"),
                )
            }),
            Patch::FhirPath(parameters) => medlake_ingest::fhirpath::patch::apply(doc, parameters)
                .map_err(|e| {
                    let status = if e.is_invalid() {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    ApiError::new(status, "processing", e.to_string())
                }),
        }
    }

    /// The patch of a Bundle entry: a Parameters resource (FHIRPath Patch), or a Binary
    /// whose content is a JSON Patch document.
    pub(super) fn from_entry_resource(resource: &Value) -> Result<Patch, String> {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => Ok(Patch::FhirPath(resource.clone())),
            Some("Binary") => {
                use base64::Engine;
                let content_type = resource
                    .get("contentType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !content_type.starts_with("application/json-patch+json") {
                    return Err(format!(
                        "a Binary patch must have contentType application/json-patch+json, not '{content_type}'"
                    ));
                }
                let data = resource.get("data").and_then(Value::as_str).unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| format!("the Binary's data is not base64: {e}"))?;
                serde_json::from_slice(&bytes)
                    .map(Patch::Json)
                    .map_err(|e| format!("the Binary's data is not a JSON Patch document: {e}"))
            }
            _ => Err(
                "a PATCH entry's resource must be a Parameters (FHIRPath Patch) or a Binary \
                 holding a JSON Patch"
                    .to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The JSON Patch cases of the FHIR test suite (`../shared/conformance/fhir-patch`):
    /// the patches the endpoint applies behave as RFC 6902 says.
    #[test]
    fn the_fhir_json_patch_cases_pass() {
        let shared = std::env::var("MEDLAKE_SHARED").map_or_else(
            |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
            std::path::PathBuf::from,
        );
        let path = shared.join("conformance/fhir-patch/json-patch-tests.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (set MEDLAKE_SHARED)", path.display()));
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        let mut passed = 0;
        let mut failures = Vec::new();
        for case in &cases {
            let name = case["comment"].as_str().unwrap_or("?");
            let mut doc = case["doc"].clone();
            let outcome = serde_json::from_value::<json_patch::Patch>(case["patch"].clone())
                .map_err(|e| e.to_string())
                .and_then(|p| json_patch::patch(&mut doc, &p).map_err(|e| e.to_string()));
            let ok = match (case.get("expected"), outcome) {
                (Some(expected), Ok(())) => &doc == expected,
                (None, Err(_)) => case.get("error").is_some(),
                _ => false,
            };
            if ok {
                passed += 1;
            } else {
                failures.push(name.to_string());
            }
        }
        println!("FHIR JSON Patch cases: {passed}/{} passed", cases.len());
        assert!(failures.is_empty(), "failed: {failures:?}");
        assert_eq!(cases.len(), 16);
    }
}
