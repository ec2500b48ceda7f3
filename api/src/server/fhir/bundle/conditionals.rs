//! The conditions of Bundle entries, turned into plain ids before anything is written.
//!
//! What a condition's matches mean is decided in [`crate::server::fhir::conditional`],
//! shared with the plain conditional create, update and delete; this module only finds
//! the conditions in an entry and rewrites the entry so that the rest of the Bundle
//! code sees a plain interaction on one id:
//! - `ifNoneExist` on a POST: no match creates; one match turns the entry into a read
//!   of it (the answer is 200 with the resource, and the entry's fullUrl points at it);
//! - a search in the URL of a PUT, DELETE or PATCH: it acts on the one match (a PUT with
//!   no match creates, a DELETE with none deletes nothing, a PATCH with none is 404);
//! - conditional references (`Patient?identifier=...`) in the resource, which must find
//!   exactly one resource.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::server::AppState;
use crate::server::fhir::conditional;

/// Resolve an entry's conditions. `resolved` collects what conditional references and
/// matched fullUrls point at (`Type/id`), for the references of this and later entries.
pub(super) async fn resolve_conditions(
    state: &AppState,
    entry: &mut Value,
    resolved: &mut HashMap<String, String>,
) -> Result<(), ApiError> {
    if let Some(resource) = entry.get("resource") {
        let mut references = Vec::new();
        collect_conditional_references(resource, &mut references);
        for reference in references {
            if resolved.contains_key(&reference) {
                continue;
            }
            let (ty, query) = reference.split_once('?').unwrap_or((&reference, ""));
            let matches = conditional::search(state, ty, query).await?;
            let Some(id) = matches.at_most_one()? else {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "not-found",
                    format!("the conditional reference '{reference}' matches no resource"),
                ));
            };
            resolved.insert(reference.clone(), format!("{ty}/{id}"));
        }
    }
    let method = entry["request"]["method"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let url = entry["request"]["url"].as_str().unwrap_or("").to_string();
    let relative = url
        .strip_prefix(state.fhir_base.as_str())
        .unwrap_or(&url)
        .trim_start_matches('/')
        .to_string();
    if method == "POST" {
        let Some(condition) = entry["request"]["ifNoneExist"].as_str().map(str::to_string) else {
            return Ok(());
        };
        let matches = conditional::search(state, &relative, &condition).await?;
        match matches.at_most_one()? {
            None => {
                if let Some(r) = entry["request"].as_object_mut() {
                    r.remove("ifNoneExist");
                }
            }
            Some(id) => {
                let target = format!("{relative}/{id}");
                if let Some(f) = entry.get("fullUrl").and_then(Value::as_str) {
                    resolved.insert(f.to_string(), target.clone());
                }
                entry["request"] = json!({"method": "GET", "url": target});
            }
        }
        return Ok(());
    }
    let Some((ty, query)) = relative.split_once('?') else {
        return Ok(());
    };
    let id = match method.as_str() {
        "PUT" => {
            let matches = conditional::search(state, ty, query).await?;
            let id = matches.update_target(entry["resource"]["id"].as_str())?;
            if let Some(r) = entry["resource"].as_object_mut() {
                r.insert("id".into(), Value::String(id.clone()));
            }
            id
        }
        // Nothing to delete: an id that cannot exist makes the DELETE a no-op.
        "DELETE" => conditional::search(state, ty, query)
            .await?
            .at_most_one()?
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
        "PATCH" => match conditional::search(state, ty, query).await?.at_most_one()? {
            Some(id) => id.to_string(),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no {ty} matches {query}: nothing to patch"),
                ));
            }
        },
        _ => return Ok(()),
    };
    entry["request"]["url"] = Value::String(format!("{ty}/{id}"));
    Ok(())
}

/// Whether an entry has a condition to search, and so needs the conditional lock.
pub(super) fn has_conditions(entry: &Value) -> bool {
    let mut references = Vec::new();
    if let Some(r) = entry.get("resource") {
        collect_conditional_references(r, &mut references);
    }
    entry["request"].get("ifNoneExist").is_some()
        || entry["request"]["url"]
            .as_str()
            .is_some_and(|u| u.contains('?'))
        || !references.is_empty()
}

fn collect_conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(r)) if r.contains('?') => out.push(r.clone()),
                    _ => collect_conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_conditional_references(v, out)),
        _ => {}
    }
}
