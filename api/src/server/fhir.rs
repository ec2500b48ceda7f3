//! The FHIR R4 REST API under `/fhir`: so far `metadata`, read and vread.
//!
//! Everything else answers with an OperationOutcome that says it is not supported yet,
//! and the CapabilityStatement lists only what is built.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use medlake_ingest::issue::{Issue, operation_outcome};
use medlake_ingest::validate::Validator;
use medlake_lake::ResourceVersion;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use super::AppState;

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata).fallback(not_supported))
        .route("/{type}/{id}", get(read).fallback(not_supported))
        .route(
            "/{type}/{id}/_history/{vid}",
            get(vread).fallback(not_supported),
        )
        .fallback(not_supported)
}

/// An OperationOutcome response.
pub fn outcome(status: StatusCode, issue: Issue) -> Response {
    let mut r = (status, axum::Json(operation_outcome(&[issue]))).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

async fn not_supported(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    outcome(
        StatusCode::NOT_IMPLEMENTED,
        Issue::error(
            "not-supported",
            format!(
                "{method} {} is not supported yet: this server implements metadata, read and vread. \
                 Load data with POST /ingest or `medlake ingest`; see GET /fhir/metadata",
                uri.path()
            ),
        ),
    )
}

/// JSON is the only format; XML (or anything else) is refused up front.
fn check_format(params: &HashMap<String, String>, headers: &HeaderMap) -> Result<(), Response> {
    let requested = params.get("_format").map(String::as_str).or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.contains("json") && !a.contains("*/*") && !a.trim().is_empty())
    });
    match requested {
        None => Ok(()),
        Some(f) if f.contains("json") || f == "*/*" => Ok(()),
        Some(f) => Err(outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error(
                "not-supported",
                format!(
                    "the format '{f}' is not supported: this server speaks FHIR JSON only (_format=json)"
                ),
            ),
        )),
    }
}

fn check_type(resource_type: &str) -> Result<(), Response> {
    if Validator::r4().is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(outcome(
            StatusCode::NOT_FOUND,
            Issue::error(
                "not-supported",
                format!("'{resource_type}' is not a FHIR R4 resource type"),
            ),
        ))
    }
}

fn check_id(id: &str) -> Result<(), Response> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(outcome(
            StatusCode::BAD_REQUEST,
            Issue::error(
                "invalid",
                format!("'{id}' is not a valid FHIR id (1-64 of A-Z, a-z, 0-9, '-' and '.')"),
            ),
        ))
    }
}

/// The response for one stored version.
fn resource_response(v: &ResourceVersion, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::from_str::<Value>(&v.resource)
            .ok()
            .and_then(|j| serde_json::to_string_pretty(&j).ok())
            .unwrap_or_else(|| v.resource.to_string())
    } else {
        v.resource.to_string()
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    version_headers(h, v);
    r
}

fn version_headers(h: &mut HeaderMap, v: &ResourceVersion) {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", v.version_id)) {
        h.insert(header::ETAG, etag);
    }
    let t = UNIX_EPOCH + Duration::from_micros(v.last_updated.max(0) as u64);
    if let Ok(lm) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
        h.insert(header::LAST_MODIFIED, lm);
    }
}

fn gone(v: &ResourceVersion) -> Response {
    let mut r = outcome(
        StatusCode::GONE,
        Issue {
            severity: medlake_ingest::Severity::Information,
            code: "deleted",
            diagnostics: format!(
                "{}/{} was deleted (version {})",
                v.resource_type, v.id, v.version_id
            ),
            expression: None,
        },
    );
    version_headers(r.headers_mut(), v);
    r
}

fn not_found(resource_type: &str, id: &str) -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        Issue::error("not-found", format!("{resource_type}/{id} is not known")),
    )
}

fn storage_error(e: medlake_lake::LakeError) -> Response {
    tracing::error!("read failed: {e}");
    outcome(
        StatusCode::INTERNAL_SERVER_ERROR,
        Issue::error("exception", format!("the lake could not be read: {e}")),
    )
}

fn is_pretty(params: &HashMap<String, String>) -> bool {
    params.get("_pretty").is_some_and(|v| v == "true")
}

async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_format(&params, &headers)
        .and_then(|()| check_type(&resource_type))
        .and_then(|()| check_id(&id))
    {
        return r;
    }
    match state.lake.read_latest(&resource_type, &id).await {
        Ok(Some(v)) if v.deleted => gone(&v),
        Ok(Some(v)) => resource_response(&v, is_pretty(&params)),
        Ok(None) => not_found(&resource_type, &id),
        Err(e) => storage_error(e),
    }
}

async fn vread(
    State(state): State<AppState>,
    Path((resource_type, id, vid)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_format(&params, &headers)
        .and_then(|()| check_type(&resource_type))
        .and_then(|()| check_id(&id))
    {
        return r;
    }
    let Ok(version) = vid.parse::<i64>() else {
        return outcome(
            StatusCode::BAD_REQUEST,
            Issue::error("invalid", format!("'{vid}' is not a version number")),
        );
    };
    match state.lake.read_version(&resource_type, &id, version).await {
        Ok(Some(v)) if v.deleted => gone(&v),
        Ok(Some(v)) => resource_response(&v, is_pretty(&params)),
        Ok(None) => outcome(
            StatusCode::NOT_FOUND,
            Issue::error(
                "not-found",
                format!("{resource_type}/{id} has no version {version}"),
            ),
        ),
        Err(e) => storage_error(e),
    }
}

async fn metadata(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_format(&params, &headers) {
        return r;
    }
    let resources: Vec<Value> = Validator::r4()
        .resource_types()
        .into_iter()
        .map(|t| {
            json!({
                "type": t,
                "interaction": [{"code": "read"}, {"code": "vread"}],
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": false,
            })
        })
        .collect();
    let cs = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "kind": "instance",
        "software": {"name": "medlake", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "medlake FHIR R4 server over Delta Lake",
            "url": state.fhir_base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Implemented: metadata, read and vread for every R4 resource type. \
                Not supported yet: create, update, patch, delete, history, search, batch and transaction; \
                they answer 501 with an OperationOutcome. Data is loaded with POST /ingest or `medlake ingest`.",
            "resource": resources,
        }],
    });
    let body = if is_pretty(&params) {
        serde_json::to_string_pretty(&cs).unwrap_or_default()
    } else {
        cs.to_string()
    };
    ([(header::CONTENT_TYPE, FHIR_JSON)], body).into_response()
}
