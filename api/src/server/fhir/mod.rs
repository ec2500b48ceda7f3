//! The FHIR R4 REST API under `/fhir`.
//!
//! Built: `metadata`; read and vread ([`read`]); create, update (with create-on-update
//! and `If-Match`) and versioned delete ([`write`]); JSON Patch and FHIRPath Patch
//! ([`patch`]); history at instance, type and system level ([`history`]); batch and
//! transaction Bundles ([`bundle`]); `_summary` and `_elements` ([`subset`]). Everything
//! else (search, conditional interactions) answers 501 with an OperationOutcome, and the
//! CapabilityStatement lists only what is built.
//!
//! A write goes through the lake's write-ahead log ([`medlake_lake::Lake::write`]): it is
//! durable when answered, and a REST read or a SQL query sees it at once.

mod bundle;
mod history;
mod patch;
mod read;
mod subset;
mod write;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
        .route("/metadata", get(metadata).fallback(method_not_allowed))
        .route("/", post(bundle::post_bundle).fallback(method_not_allowed))
        .route(
            "/_history",
            get(history::system_history).fallback(method_not_allowed),
        )
        .route(
            "/{type}",
            post(write::create)
                .get(not_supported_yet("search"))
                .put(not_supported_yet("conditional update"))
                .delete(not_supported_yet("conditional delete"))
                .fallback(method_not_allowed),
        )
        .route(
            "/{type}/_search",
            post(not_supported_yet("search")).fallback(method_not_allowed),
        )
        .route(
            "/{type}/_history",
            get(history::type_history).fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}",
            get(read::read)
                .put(write::update)
                .delete(write::delete)
                .patch(patch::patch)
                .fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}/_history",
            get(history::instance_history).fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}/_history/{vid}",
            get(read::vread).fallback(method_not_allowed),
        )
        .fallback(unknown_path)
}

/// An OperationOutcome response.
pub fn outcome(status: StatusCode, issue: Issue) -> Response {
    outcomes(status, &[issue])
}

/// An OperationOutcome response with several issues.
pub fn outcomes(status: StatusCode, issues: &[Issue]) -> Response {
    let mut r = (status, axum::Json(operation_outcome(issues))).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// A handler for an interaction that is not built yet.
fn not_supported_yet(
    what: &'static str,
) -> impl Fn(Method, axum::http::Uri) -> std::future::Ready<Response> + Clone + Send + Sync + 'static
{
    move |method, uri| {
        std::future::ready(outcome(
            StatusCode::NOT_IMPLEMENTED,
            Issue::error(
                "not-supported",
                format!(
                    "{what} ({method} {}) is not supported yet; GET /fhir/metadata lists what this server does",
                    uri.path()
                ),
            ),
        ))
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    outcome(
        StatusCode::METHOD_NOT_ALLOWED,
        Issue::error(
            "not-supported",
            format!("{method} is not allowed on {}", uri.path()),
        ),
    )
}

async fn unknown_path(method: Method, uri: axum::http::Uri) -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        Issue::error(
            "not-found",
            format!(
                "{method} {} is not a FHIR REST interaction this server knows; see GET /fhir/metadata",
                uri.path()
            ),
        ),
    )
}

/// The checks every request on one resource (`<type>/<id>`) starts with.
pub(super) fn check_instance(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    resource_type: &str,
    id: &str,
) -> Result<(), Response> {
    check_format(params, headers)
        .and_then(|()| check_type(resource_type))
        .and_then(|()| check_id(id))
}

/// JSON is the only format; XML (or anything else) is refused up front.
pub(super) fn check_format(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), Response> {
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

pub(super) fn check_type(resource_type: &str) -> Result<(), Response> {
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

pub(super) fn check_id(id: &str) -> Result<(), Response> {
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

/// The response for one stored version, cut down by `_summary` / `_elements`.
pub(super) fn resource_response(
    v: &ResourceVersion,
    pretty: bool,
    subset: &subset::Subset,
) -> Response {
    let body = if !pretty && *subset == subset::Subset::Full {
        v.resource.to_string()
    } else {
        match serde_json::from_str::<Value>(&v.resource) {
            Ok(Value::Object(mut m)) => {
                subset.apply(&mut m);
                let j = Value::Object(m);
                if pretty {
                    serde_json::to_string_pretty(&j).unwrap_or_else(|_| j.to_string())
                } else {
                    j.to_string()
                }
            }
            _ => v.resource.to_string(),
        }
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    version_headers(h, v);
    r
}

pub(super) fn version_headers(h: &mut HeaderMap, v: &ResourceVersion) {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", v.version_id)) {
        h.insert(header::ETAG, etag);
    }
    let t = UNIX_EPOCH + Duration::from_micros(v.last_updated.max(0) as u64);
    if let Ok(lm) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
        h.insert(header::LAST_MODIFIED, lm);
    }
}

pub(super) fn gone(v: &ResourceVersion) -> Response {
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

pub(super) fn not_found(resource_type: &str, id: &str) -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        Issue::error("not-found", format!("{resource_type}/{id} is not known")),
    )
}

pub(super) fn storage_error(e: medlake_lake::LakeError) -> Response {
    tracing::error!("read failed: {e}");
    outcome(
        StatusCode::INTERNAL_SERVER_ERROR,
        Issue::error("exception", format!("the lake could not be read: {e}")),
    )
}

pub(super) fn is_pretty(params: &HashMap<String, String>) -> bool {
    params.get("_pretty").is_some_and(|v| v == "true")
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
                "interaction": [
                    {"code": "read"},
                    {"code": "vread"},
                    {"code": "create"},
                    {"code": "update"},
                    {"code": "patch"},
                    {"code": "delete"},
                    {"code": "history-instance"},
                    {"code": "history-type"},
                ],
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
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
            "documentation": "Implemented for every R4 resource type: read, vread, create, update \
                (create-on-update, If-Match), patch (JSON Patch or FHIRPath Patch), versioned \
                delete, history at instance, type and system level (_since, _count), and batch \
                and atomic transaction Bundles (urn:uuid references rewritten); _summary and \
                _elements on read, vread and history. Not supported yet: search, conditional \
                create/update/delete and conditional references; they answer 501 with an \
                OperationOutcome. JSON only.",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
            ],
        }],
    });
    let body = if is_pretty(&params) {
        serde_json::to_string_pretty(&cs).unwrap_or_default()
    } else {
        cs.to_string()
    };
    ([(header::CONTENT_TYPE, FHIR_JSON)], body).into_response()
}
