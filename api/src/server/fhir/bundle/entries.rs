//! Reading and checking the entries of a Bundle.
//!
//! An entry is turned into an [`Action`] with every check a plain request would get
//! (type, id, R4 validity, `ifMatch`), and with the same errors, so that a transaction
//! can refuse it before anything is written. References are rewritten here too: it is
//! the last step before an entry's resource is understood.

use std::collections::HashMap;

use axum::http::StatusCode;
use medlake_ingest::prepare::prepare_value;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::server::AppState;
use crate::server::fhir::patch::Patch;
use crate::server::fhir::{check_id, check_type};

/// What an entry asks for, once understood.
#[derive(Debug)]
pub(super) enum Action {
    Create {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
    },
    Update {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
        if_match: Option<i64>,
    },
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<i64>,
    },
    Patch {
        resource_type: String,
        id: String,
        patch: Patch,
        if_match: Option<i64>,
    },
    Read {
        resource_type: String,
        id: String,
        version: Option<i64>,
    },
    /// A search (`Observation?code=...`, `Patient/1/Observation`), answered with a
    /// searchset Bundle.
    Search { path: String, query: String },
}

impl Action {
    /// The order of processing in a transaction.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Action::Delete { .. } => 0,
            Action::Create { .. } => 1,
            Action::Update { .. } | Action::Patch { .. } => 2,
            Action::Read { .. } | Action::Search { .. } => 3,
        }
    }
}

/// An interaction a Bundle entry cannot ask for here.
fn not_supported(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_IMPLEMENTED, "not-supported", message)
}

/// The version an entry's `request.ifMatch` names.
fn entry_if_match(request: &Value) -> Result<Option<i64>, ApiError> {
    let Some(text) = request.get("ifMatch").and_then(Value::as_str) else {
        return Ok(None);
    };
    let bare = text.trim().strip_prefix("W/").unwrap_or(text.trim());
    bare.trim_matches('"').parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid",
            format!("ifMatch '{text}' is not a version ETag like W/\"3\""),
        )
    })
}

/// `Type/id` or `Type/id/_history/v` of a request URL (relative, or under our base).
fn parse_url<'a>(state: &AppState, url: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let relative = url
        .strip_prefix(state.fhir_base.as_str())
        .unwrap_or(url)
        .trim_start_matches('/');
    if relative.contains('?') {
        return Err(not_supported(format!(
            "'{url}': searches in a Bundle entry are not supported"
        )));
    }
    Ok(relative.split('/').collect())
}

/// The resource of an entry, checked against R4 and against the URL's type.
fn entry_resource(entry: &Value, resource_type: &str) -> Result<Map<String, Value>, ApiError> {
    let Some(resource) = entry.get("resource").cloned() else {
        return Err(ApiError::bad_request(
            "required",
            "this entry has no resource",
        ));
    };
    let found = resource.get("resourceType").and_then(Value::as_str);
    if found != Some(resource_type) {
        return Err(ApiError::bad_request(
            "invalid",
            format!(
                "the resource is {}, but the request is for {resource_type}",
                found.unwrap_or("of no type")
            ),
        ));
    }
    match prepare_value(resource) {
        Ok(p) => Ok(p.resource),
        Err(rejected) => {
            let detail = rejected
                .issues
                .iter()
                .map(|i| i.diagnostics.clone())
                .collect::<Vec<_>>()
                .join("; ");
            Err(ApiError::bad_request(
                "invalid",
                format!("the resource is not valid FHIR R4: {detail}"),
            ))
        }
    }
}

/// Understand one entry. `ids` maps fullUrls of new resources to their `Type/id`.
pub(super) fn understand(
    state: &AppState,
    entry: &Value,
    ids: &HashMap<String, String>,
) -> Result<Action, ApiError> {
    let request = entry.get("request").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request.get("url").and_then(Value::as_str).unwrap_or("");
    if request.get("ifNoneMatch").is_some() || request.get("ifModifiedSince").is_some() {
        return Err(not_supported(
            "conditional reads in a Bundle (ifNoneMatch, ifModifiedSince) are not supported",
        ));
    }
    if method == "GET" {
        // Anything but `Type/id` and `Type/id/_history/v` is a search.
        let relative = url
            .strip_prefix(state.fhir_base.as_str())
            .unwrap_or(url)
            .trim_start_matches('/');
        let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let read = !relative.contains('?')
            && (segments.len() == 2 || segments.len() == 4 && segments[2] == "_history");
        if !read {
            return Ok(Action::Search {
                path: path.to_string(),
                query: query.to_string(),
            });
        }
    }
    let parts = parse_url(state, url)?;
    match (method, parts.as_slice()) {
        ("POST", [t]) => {
            check_type(t)?;
            let resource = entry_resource(entry, t)?;
            let full_url = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
            let id = ids
                .get(full_url)
                .and_then(|r| r.split('/').nth(1))
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
            Ok(Action::Create {
                resource_type: t.to_string(),
                id,
                resource,
            })
        }
        ("PUT", [t, id]) => {
            check_type(t)?;
            check_id(id)?;
            let resource = entry_resource(entry, t)?;
            if resource.get("id").and_then(Value::as_str) != Some(id) {
                return Err(ApiError::bad_request(
                    "invalid",
                    format!("the resource's id is not '{id}', the id in request.url"),
                ));
            }
            Ok(Action::Update {
                resource_type: t.to_string(),
                id: id.to_string(),
                resource,
                if_match: entry_if_match(&request)?,
            })
        }
        ("DELETE", [t, id]) => {
            check_type(t)?;
            check_id(id)?;
            Ok(Action::Delete {
                resource_type: t.to_string(),
                id: id.to_string(),
                if_match: entry_if_match(&request)?,
            })
        }
        ("GET", [t, id]) => {
            check_type(t)?;
            check_id(id)?;
            Ok(Action::Read {
                resource_type: t.to_string(),
                id: id.to_string(),
                version: None,
            })
        }
        ("GET", [t, id, "_history", v]) => {
            check_type(t)?;
            check_id(id)?;
            let version = v.parse().map_err(|_| {
                ApiError::bad_request("invalid", format!("'{v}' is not a version number"))
            })?;
            Ok(Action::Read {
                resource_type: t.to_string(),
                id: id.to_string(),
                version: Some(version),
            })
        }
        ("PATCH", [t, id]) => {
            check_type(t)?;
            check_id(id)?;
            let resource = entry.get("resource").unwrap_or(&Value::Null);
            let patch = Patch::from_entry_resource(resource)
                .map_err(|m| ApiError::bad_request("invalid", m))?;
            Ok(Action::Patch {
                resource_type: t.to_string(),
                id: id.to_string(),
                patch,
                if_match: entry_if_match(&request)?,
            })
        }
        ("GET", _) => Err(not_supported(format!(
            "GET {url}: only read and vread are supported in a Bundle, not searches"
        ))),
        ("", _) => Err(ApiError::bad_request(
            "required",
            "every entry needs request.method and request.url",
        )),
        (m, _) => Err(ApiError::bad_request(
            "invalid",
            format!("{m} {url} is not an interaction a Bundle entry can ask for"),
        )),
    }
}

/// Point every `reference` to a fullUrl of this Bundle (or to a resolved conditional
/// reference) at its resource's id. A conditional reference left unresolved is an
/// error: written as it is, it would point nowhere.
pub(super) fn rewrite_references(
    value: &mut Value,
    ids: &HashMap<String, String>,
) -> Result<(), ApiError> {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "reference" {
                    if let Value::String(r) = v {
                        if let Some(target) = ids.get(r.as_str()) {
                            *r = target.clone();
                        } else if r.contains('?') {
                            return Err(ApiError::bad_request(
                                "invalid",
                                format!("the conditional reference '{r}' was not resolved"),
                            ));
                        }
                    }
                } else {
                    rewrite_references(v, ids)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| rewrite_references(v, ids)),
        _ => Ok(()),
    }
}
