//! history at instance, type and system level: `GET /fhir/<type>/<id>/_history`,
//! `/fhir/<type>/_history` and `/fhir/_history`, with `_since` and `_count`.
//!
//! History is read with SQL over `fhir_history.<type>`, the same tables (and tail) that
//! analysts query. Entries come newest first, ordered by (lastUpdated, type, id,
//! version); a page's `next` link carries the position of its last entry, not an offset,
//! so pages stay stable while new versions arrive at the top.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use medlake_lake::instant_string;
use serde_json::{Value, json};

use super::subset::Subset;
use super::{check_format, check_id, check_instance, check_type, fhir_json_response, is_pretty};
use crate::error::ApiError;
use crate::server::AppState;

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

/// One version in a history Bundle.
struct Entry {
    resource_type: String,
    id: String,
    version_id: i64,
    last_updated: i64,
    deleted: bool,
    resource: String,
}

/// Where a page starts: just after this entry, in newest-first order.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    last_updated: i64,
    resource_type: String,
    id: String,
    version_id: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        format!(
            "{}~{}~{}~{}",
            self.last_updated, self.resource_type, self.id, self.version_id
        )
    }

    fn decode(text: &str) -> Option<Cursor> {
        let mut parts = text.split('~');
        let cursor = Cursor {
            last_updated: parts.next()?.parse().ok()?,
            resource_type: parts.next()?.to_string(),
            id: parts.next()?.to_string(),
            version_id: parts.next()?.parse().ok()?,
        };
        let valid = parts.next().is_none()
            && check_type(&cursor.resource_type).is_ok()
            && check_id(&cursor.id).is_ok();
        valid.then_some(cursor)
    }
}

/// `_count`, `_since` and the page cursor of a history request.
struct Page {
    count: usize,
    since: Option<i64>,
    after: Option<Cursor>,
}

fn bad_request(message: String) -> ApiError {
    ApiError::bad_request("invalid", message)
}

fn page(params: &HashMap<String, String>) -> Result<Page, ApiError> {
    let count = match params.get("_count") {
        None => DEFAULT_COUNT,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| bad_request(format!("_count '{c}' is not a whole number")))?
            .min(MAX_COUNT),
    };
    let since = match params.get("_since") {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    bad_request(format!(
                        "_since '{s}' is not a FHIR instant like 2026-01-31T12:00:00Z"
                    ))
                })?
                .timestamp_micros(),
        ),
    };
    let after = match params.get("_cursor") {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            bad_request(format!(
                "_cursor '{c}' was not made by this server; start again from the first page"
            ))
        })?),
    };
    Ok(Page {
        count,
        since,
        after,
    })
}

/// A timestamp literal DataFusion compares with `last_updated`.
///
/// DataFusion reads such literals through nanoseconds, which end in 2262; an instant
/// beyond that range is clamped to it (no stored version is that late, or that early).
fn instant_literal(micros: i64) -> String {
    const LIMIT: i64 = i64::MAX / 1000 - 1_000_000;
    match chrono::DateTime::from_timestamp_micros(micros.clamp(-LIMIT, LIMIT)) {
        Some(t) => format!("'{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
        None => "'1970-01-01T00:00:00Z'".to_string(),
    }
}

/// The SQL for one type's part of a page. `id` and `resource_type` are checked by the
/// callers (FHIR ids and type names have no quote characters).
fn type_query(resource_type: &str, id: Option<&str>, page: &Page) -> String {
    let mut conditions = Vec::new();
    if let Some(id) = id {
        conditions.push(format!("id = '{id}'"));
    }
    if let Some(since) = page.since {
        conditions.push(format!("last_updated >= {}", instant_literal(since)));
    }
    if let Some(c) = &page.after {
        let t = instant_literal(c.last_updated);
        let condition = match resource_type.cmp(c.resource_type.as_str()) {
            std::cmp::Ordering::Less => format!("last_updated <= {t}"),
            std::cmp::Ordering::Greater => format!("last_updated < {t}"),
            std::cmp::Ordering::Equal => format!(
                "(last_updated < {t} OR (last_updated = {t} AND (id < '{id}' OR (id = '{id}' AND version_id < {v}))))",
                id = c.id,
                v = c.version_id
            ),
        };
        conditions.push(condition);
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT id, version_id, last_updated, deleted, resource FROM fhir_history.{table} {filter} \
         ORDER BY last_updated DESC, id DESC, version_id DESC LIMIT {limit}",
        table = resource_type.to_ascii_lowercase(),
        limit = page.count + 1
    )
}

fn entries_from(batches: &[RecordBatch], resource_type: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| format!("history query lost column {name}"))
        };
        let text = |name: &str| -> Result<Vec<Option<String>>, String> {
            let c = cast(&column(name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
            let s = c.as_string::<i32>();
            Ok((0..s.len())
                .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
                .collect())
        };
        let ids = text("id")?;
        let resources = text("resource")?;
        let versions = column("version_id")?;
        let versions = versions.as_primitive::<Int64Type>();
        let times = column("last_updated")?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let deleted = column("deleted")?;
        let deleted = deleted.as_boolean();
        for i in 0..b.num_rows() {
            out.push(Entry {
                resource_type: resource_type.to_string(),
                id: ids[i].clone().unwrap_or_default(),
                version_id: versions.value(i),
                last_updated: times.value(i),
                deleted: deleted.value(i),
                resource: resources[i].clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// One type's part of a page. The type must have a table: callers check.
///
/// The SQL is the server's own, checked by the callers, so any failure of it is the
/// server's: a 500 whose log line has the query.
async fn query_type(
    state: &AppState,
    resource_type: &str,
    id: Option<&str>,
    page: &Page,
) -> Result<Vec<Entry>, ApiError> {
    let sql = type_query(resource_type, id, page);
    let failed = |e: &dyn std::fmt::Display| {
        ApiError::internal("reading history", &format!("{e}; the query was: {sql}"))
    };
    let answer = state.engine.query(&sql).await.map_err(|e| failed(&e))?;
    entries_from(&answer.batches, resource_type).map_err(|e| failed(&e))
}

fn newest_first(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    (b.last_updated, &b.resource_type, &b.id, b.version_id).cmp(&(
        a.last_updated,
        &a.resource_type,
        &a.id,
        a.version_id,
    ))
}

/// The history Bundle of one page. `entries` holds up to `count + 1` rows, the extra one
/// telling that a next page exists.
fn bundle(
    state: &AppState,
    path: &str,
    params: &HashMap<String, String>,
    page: &Page,
    mut entries: Vec<Entry>,
    total: Option<usize>,
) -> Result<Response, ApiError> {
    let subset = Subset::from_params(params)?;
    entries.sort_by(newest_first);
    let more = entries.len() > page.count;
    entries.truncate(page.count);
    let link_to = |cursor: Option<&Cursor>| {
        let mut query: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "_cursor")
            .map(|(k, v)| format!("{k}={}", url_escape(v)))
            .collect();
        query.sort();
        if let Some(c) = cursor {
            query.push(format!("_cursor={}", url_escape(&c.encode())));
        }
        if query.is_empty() {
            format!("{}{path}", state.fhir_base)
        } else {
            format!("{}{path}?{}", state.fhir_base, query.join("&"))
        }
    };
    let mut links = vec![json!({"relation": "self", "url": link_to(page.after.as_ref())})];
    if more {
        if let Some(last) = entries.last() {
            let cursor = Cursor {
                last_updated: last.last_updated,
                resource_type: last.resource_type.clone(),
                id: last.id.clone(),
                version_id: last.version_id,
            };
            links.push(json!({"relation": "next", "url": link_to(Some(&cursor))}));
        }
    }
    let entry: Vec<Value> = entries
        .iter()
        .map(|e| {
            let url = format!("{}/{}", e.resource_type, e.id);
            let (method, status) = if e.deleted {
                ("DELETE", "204 No Content")
            } else if e.version_id == 1 {
                ("POST", "201 Created")
            } else {
                ("PUT", "200 OK")
            };
            let mut item = json!({
                "fullUrl": format!("{}/{url}", state.fhir_base),
                "request": {"method": method, "url": if method == "POST" { e.resource_type.clone() } else { url.clone() }},
                "response": {
                    "status": status,
                    "etag": format!("W/\"{}\"", e.version_id),
                    "lastModified": instant_string(e.last_updated),
                },
            });
            if !e.deleted {
                if let Ok(Value::Object(mut resource)) = serde_json::from_str::<Value>(&e.resource) {
                    subset.apply(&mut resource);
                    item["resource"] = Value::Object(resource);
                }
            }
            item
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "history",
        "link": links,
    });
    // FHIR JSON has no empty arrays: an empty page has no `entry` at all.
    if !entry.is_empty() {
        b["entry"] = Value::Array(entry);
    }
    if let Some(total) = total {
        b["total"] = json!(total);
    }
    let body = if is_pretty(params) {
        serde_json::to_string_pretty(&b).unwrap_or_default()
    } else {
        b.to_string()
    };
    Ok(fhir_json_response(StatusCode::OK, body))
}

pub(super) fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn instance_history(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let Some(latest) = state.lake.latest(&resource_type, &id) else {
        return Err(super::not_found(&resource_type, &id));
    };
    let page = page(&params)?;
    let entries = query_type(&state, &resource_type, Some(&id), &page).await?;
    // Versions are numbered 1..n with none missing, so the index knows the total.
    let total = (page.since.is_none()).then_some(latest.version_id as usize);
    bundle(
        &state,
        &format!("/{resource_type}/{id}/_history"),
        &params,
        &page,
        entries,
        total,
    )
}

pub async fn type_history(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    check_type(&resource_type)?;
    let page = page(&params)?;
    // A type with no table yet has no history (and no SQL table to ask).
    let known = state.lake.resource_types().contains(&resource_type);
    let entries = if known {
        query_type(&state, &resource_type, None, &page).await?
    } else {
        Vec::new()
    };
    bundle(
        &state,
        &format!("/{resource_type}/_history"),
        &params,
        &page,
        entries,
        None,
    )
}

pub async fn system_history(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_format(&params, &headers)?;
    let page = page(&params)?;
    let mut entries = Vec::new();
    for resource_type in state.lake.resource_types() {
        entries.append(&mut query_type(&state, &resource_type, None, &page).await?);
    }
    bundle(&state, "/_history", &params, &page, entries, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let c = Cursor {
            last_updated: 1_790_000_000_123_000,
            resource_type: "Patient".into(),
            id: "a-1.b".into(),
            version_id: 3,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("1~Patient~x' OR '1'='1~2"), None);
        assert_eq!(Cursor::decode("1~NotAType~x~2"), None);
        assert_eq!(Cursor::decode("1~Patient~x"), None);
    }
}
