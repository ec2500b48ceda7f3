//! The FHIR R4 REST API under `/fhir`.
//!
//! Built: `metadata`; read and vread ([`read`]); create, update (with create-on-update
//! and `If-Match`), versioned delete, and their conditional forms ([`write`]); JSON Patch
//! and FHIRPath Patch ([`patch`]); history at instance, type and system level
//! ([`history`]); search at type, system and Patient-compartment level, and
//! `Patient/<id>/$everything` ([`search`]); batch and transaction Bundles with
//! conditional entries and references ([`bundle`]); `_summary` and `_elements`
//! ([`subset`]); SQL-on-FHIR ViewDefinitions as a stored type and `$viewdefinition-run`
//! ([`view_run`]). What is not built answers with an OperationOutcome saying so, and the
//! CapabilityStatement lists only what is built.
//!
//! A write goes through the lake's write-ahead log ([`medlake_lake::Lake::write`]): it is
//! durable when answered, and a REST read or a SQL query sees it at once.
//!
//! Every handler answers its errors as an [`ApiError`] (`crate::error`), which decides
//! their statuses in one place.

mod bundle;
mod conditional;
mod history;
mod patch;
mod read;
mod search;
mod subset;
mod view_run;
mod write;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use medlake_ingest::issue::Issue;
use medlake_ingest::search::{ParamKind, SearchParams};
use medlake_ingest::validate::{VIEW_DEFINITION, Validator};
use medlake_lake::ResourceVersion;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use super::AppState;
use crate::error::{ApiError, FHIR_JSON};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata).fallback(method_not_allowed))
        .route(
            "/",
            post(bundle::post_bundle)
                .get(search::system_search)
                .fallback(method_not_allowed),
        )
        .route(
            "/_search",
            post(search::system_search_post).fallback(method_not_allowed),
        )
        // SQL-on-FHIR `$viewdefinition-run` (and `$run`, its earlier name): static
        // paths, which the router prefers to the `{type}` and `{id}` patterns.
        .route(
            "/$viewdefinition-run",
            get(view_run::run_type)
                .post(view_run::run_type)
                .fallback(method_not_allowed),
        )
        .route(
            "/ViewDefinition/$viewdefinition-run",
            get(view_run::run_type)
                .post(view_run::run_type)
                .fallback(method_not_allowed),
        )
        .route(
            "/ViewDefinition/$run",
            get(view_run::run_type)
                .post(view_run::run_type)
                .fallback(method_not_allowed),
        )
        .route(
            "/ViewDefinition/{id}/$viewdefinition-run",
            get(view_run::run_instance)
                .post(view_run::run_instance)
                .fallback(method_not_allowed),
        )
        .route(
            "/ViewDefinition/{id}/$run",
            get(view_run::run_instance)
                .post(view_run::run_instance)
                .fallback(method_not_allowed),
        )
        .route(
            "/_history",
            get(history::system_history).fallback(method_not_allowed),
        )
        .route(
            "/{type}",
            post(write::create)
                .get(search::type_search)
                .put(write::conditional_update)
                .delete(write::conditional_delete)
                .fallback(method_not_allowed),
        )
        .route(
            "/{type}/_search",
            post(search::type_search_post).fallback(method_not_allowed),
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
            "/{type}/{id}/$everything",
            get(search::everything).fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}/{compartment_type}",
            get(search::compartment_search).fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}/_history/{vid}",
            get(read::vread).fallback(method_not_allowed),
        )
        .fallback(unknown_path)
}

/// A FHIR JSON answer with a body already written.
pub(super) fn fhir_json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn unknown_path(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "{method} {} is not a FHIR REST interaction this server knows; see GET /fhir/metadata",
            uri.path()
        ),
    )
}

/// The checks every request on one resource (`<type>/<id>`) starts with.
pub(super) fn check_instance(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    resource_type: &str,
    id: &str,
) -> Result<(), ApiError> {
    check_format(params, headers)
        .and_then(|()| check_type(resource_type))
        .and_then(|()| check_id(id))
}

/// JSON is the only format; XML (or anything else) is refused up front.
pub(super) fn check_format(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let requested = params.get("_format").map(String::as_str).or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.contains("json") && !a.contains("*/*") && !a.trim().is_empty())
    });
    match requested {
        None => Ok(()),
        Some(f) if f.contains("json") || f == "*/*" => Ok(()),
        Some(f) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!(
                "the format '{f}' is not supported: this server speaks FHIR JSON only (_format=json)"
            ),
        )),
    }
}

pub(super) fn check_type(resource_type: &str) -> Result<(), ApiError> {
    if Validator::r4().is_stored_type(resource_type) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("'{resource_type}' is not a FHIR R4 resource type (nor ViewDefinition)"),
        ))
    }
}

pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid",
            format!("'{id}' is not a valid FHIR id (1-64 of A-Z, a-z, 0-9, '-' and '.')"),
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
    let mut r = fhir_json_response(StatusCode::OK, body);
    version_headers(r.headers_mut(), v);
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

/// The answer to reading a deleted resource: 410, with the `ETag` and `Last-Modified`
/// of its delete marker, as HAPI answers.
pub(super) fn gone(v: &ResourceVersion) -> ApiError {
    let issue = Issue {
        severity: medlake_ingest::Severity::Information,
        code: "deleted",
        diagnostics: format!(
            "{}/{} was deleted (version {})",
            v.resource_type, v.id, v.version_id
        ),
        expression: None,
    };
    let mut headers = HeaderMap::new();
    version_headers(&mut headers, v);
    ApiError::with_issues(StatusCode::GONE, vec![issue]).with_headers(headers)
}

pub(super) fn not_found(resource_type: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("{resource_type}/{id} is not known"),
    )
}

pub(super) fn is_pretty(params: &HashMap<String, String>) -> bool {
    params.get("_pretty").is_some_and(|v| v == "true")
}

/// What works for ViewDefinition: the interactions without patch (FHIRPath Patch
/// needs R4 element definitions, which ViewDefinition has none of), search by its own
/// parameters and the server's `_id` and `_lastUpdated`, and the run operation.
fn view_definition_capabilities(registry: &SearchParams) -> Value {
    let mut search_params: Vec<Value> = registry
        .of_type(VIEW_DEFINITION)
        .filter(|p| !p.code.starts_with('_'))
        .map(|p| json!({"name": p.code, "type": p.kind.as_str()}))
        .collect();
    search_params.push(json!({"name": "_id", "type": "token"}));
    search_params.push(json!({"name": "_lastUpdated", "type": "date"}));
    json!({
        "type": VIEW_DEFINITION,
        "profile": "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition",
        "documentation": "SQL-on-FHIR v2 ViewDefinitions, checked on write by the view parser. \
            $viewdefinition-run (also as $run) runs a view over the lake's current resources or \
            over resource parameters, with _format json, ndjson, csv or parquet (or Accept), \
            header, viewReference (ViewDefinition/<id>[/_history/<v>] or a canonical url[|version]), \
            viewResource, patient, group, _since and _limit; source is not supported. \
            A ViewDefinition stored with a meta.tag of code `medlake` is kept as the SQL table \
            views.<name> from the next flush on, until it is deleted or loses the tag. \
            Not supported for this type: patch, _include, _revinclude, and search by _tag, \
            _profile, _security or _source.",
        "interaction": [
            {"code": "read"},
            {"code": "vread"},
            {"code": "create"},
            {"code": "update"},
            {"code": "delete"},
            {"code": "history-instance"},
            {"code": "history-type"},
            {"code": "search-type"},
        ],
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": true,
        "conditionalRead": "not-supported",
        "conditionalUpdate": true,
        "conditionalDelete": "single",
        "searchParam": search_params,
        "operation": [
            {"name": view_run::OPERATION, "definition": view_run::DEFINITION},
            {"name": "run", "definition": "http://sql-on-fhir.org/OperationDefinition/$run"},
        ],
    })
}

async fn metadata(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    let registry = SearchParams::r4();
    let resources: Vec<Value> = Validator::r4()
        .stored_types()
        .into_iter()
        .map(|t| {
            if t == VIEW_DEFINITION {
                return view_definition_capabilities(registry);
            }
            let search_params: Vec<Value> = registry
                .of_type(t)
                .map(|p| json!({"name": p.code, "type": p.kind.as_str()}))
                .collect();
            let reference_params: Vec<&str> = registry
                .of_type(t)
                .filter(|p| p.kind == ParamKind::Reference)
                .map(|p| p.code.as_str())
                .collect();
            let includes: Vec<String> = std::iter::once(format!("{t}:*"))
                .chain(reference_params.iter().map(|p| format!("{t}:{p}")))
                .collect();
            let mut r = json!({
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
                    {"code": "search-type"},
                ],
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical", "local"],
                "searchInclude": includes,
                "searchParam": search_params,
            });
            if t == "Patient" {
                r["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }]);
            }
            r
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
                delete, conditional create (If-None-Exist), update and delete (single), \
                history at instance, type and system level (_since, _count), batch and atomic \
                transaction Bundles (urn:uuid and conditional references rewritten), and search \
                with every R4 search parameter of types number, date, string, token, \
                reference, quantity, uri and composite: prefixes eq ne gt lt ge le sa eb ap; \
                modifiers :missing :exact :contains :text :not :above :below (uri) \
                :identifier :[type] :of-type; chains over several levels, _has, _include and \
                _revinclude (with :iterate and *), _sort, _count, _total, _summary, _elements; \
                system search with _type; the Patient compartment and Patient/[id]/$everything. \
                Not supported: the near parameter, _text, _content, _query, _filter, _list, \
                _contained, terminology modifiers (:in, :not-in, :above and :below on tokens), \
                and conditional reads. JSON only. SQL-on-FHIR v2 ViewDefinitions are stored and \
                searched as a resource type of their own (see its entry), and \
                $viewdefinition-run runs one (system, type and instance level).",
            "resource": resources,
            "operation": [
                {"name": view_run::OPERATION, "definition": view_run::DEFINITION},
            ],
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "search-system"},
                {"code": "history-system"},
            ],
            "searchParam": [
                {"name": "_id", "type": "token"},
                {"name": "_lastUpdated", "type": "date"},
                {"name": "_tag", "type": "token"},
                {"name": "_profile", "type": "uri"},
                {"name": "_security", "type": "token"},
                {"name": "_source", "type": "uri"},
                {"name": "_type", "type": "token"},
            ],
        }],
    });
    let body = if is_pretty(&params) {
        serde_json::to_string_pretty(&cs).unwrap_or_default()
    } else {
        cs.to_string()
    };
    Ok(fhir_json_response(StatusCode::OK, body))
}
