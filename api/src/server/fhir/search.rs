//! FHIR search over HTTP: type, system and compartment searches, with GET or POST
//! `_search`, and `Patient/<id>/$everything`. The searching itself is
//! [`medlake_query::search`]; this module reads the request and writes the searchset
//! Bundle (entries, `total`, `self`/`next`/`previous` links, and an OperationOutcome
//! entry for what was ignored).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use medlake_ingest::Severity;
use medlake_ingest::issue::{Issue, operation_outcome};
use medlake_ingest::search::SearchParams;
use medlake_lake::ResourceVersion;
use medlake_query::search::{Filter, Search, SearchPage, run};
use serde_json::{Value, json};

use super::history::url_escape;
use super::subset::Subset;
use super::{AppState, check_format, check_id, check_type, fhir_json_response, is_pretty};
use crate::error::ApiError;

/// The page cursor parameters this server writes into its links.
const CURSOR_PARAMS: &[&str] = &["_page_after", "_page_before"];

pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The parameters of a POST `_search`: the form body and the query string together.
fn post_pairs(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !form && !body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "POST _search takes its parameters as application/x-www-form-urlencoded",
        ));
    }
    let mut pairs = query_pairs(uri.query());
    pairs.extend(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    Ok(pairs)
}

fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().replace(' ', "") == "handling=strict")
}

pub async fn type_search(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(uri.query());
    search_response(&state, Scope::Type(resource_type), pairs, &headers).await
}

pub async fn type_search_post(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = post_pairs(&uri, &headers, &body)?;
    search_response(&state, Scope::Type(resource_type), pairs, &headers).await
}

pub async fn system_search(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(uri.query());
    search_response(&state, Scope::System, pairs, &headers).await
}

pub async fn system_search_post(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = post_pairs(&uri, &headers, &body)?;
    search_response(&state, Scope::System, pairs, &headers).await
}

pub async fn compartment_search(
    State(state): State<AppState>,
    Path((compartment, id, resource_type)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(uri.query());
    let scope = Scope::Compartment {
        compartment,
        id,
        resource_type: Some(resource_type),
    };
    search_response(&state, scope, pairs, &headers).await
}

pub async fn everything(
    State(state): State<AppState>,
    Path((compartment, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(uri.query());
    let scope = Scope::Compartment {
        compartment,
        id,
        resource_type: None,
    };
    search_response(&state, scope, pairs, &headers).await
}

/// What a search covers.
enum Scope {
    Type(String),
    /// `GET /fhir?...`: the `_type` types, or every type with data.
    System,
    /// `Patient/<id>/<type>`, or `Patient/<id>/$everything` without a type.
    Compartment {
        compartment: String,
        id: String,
        resource_type: Option<String>,
    },
}

/// A search's searchset Bundle as an HTTP answer.
async fn search_response(
    state: &AppState,
    scope: Scope,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let body = searchset_text(state, scope, pairs, headers).await?;
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// Run a search and write its searchset Bundle.
async fn searchset_text(
    state: &AppState,
    scope: Scope,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let last: HashMap<String, String> = pairs.iter().cloned().collect();
    check_format(&last, headers)?;
    let count_only = last.get("_summary").is_some_and(|s| s == "count");
    let subset = if count_only {
        Subset::Full
    } else {
        Subset::from_params(&last)?
    };
    let data_types = || state.lake.resource_types();
    let (types, path, compartment_filter) = match &scope {
        Scope::Type(t) => {
            check_type(t)?;
            (vec![t.clone()], t.clone(), None)
        }
        Scope::System => {
            let types = match last.get("_type") {
                Some(list) => {
                    let types: Vec<String> = list
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect();
                    for t in &types {
                        check_type(t)?;
                    }
                    types
                }
                None => data_types(),
            };
            (types, String::new(), None)
        }
        Scope::Compartment {
            compartment,
            id,
            resource_type,
        } => {
            check_type(compartment)?;
            check_id(id)?;
            let Some(members) = SearchParams::r4().compartment(compartment) else {
                return Err(ApiError::bad_request(
                    "not-supported",
                    format!("the {compartment} compartment is not supported: only Patient is"),
                ));
            };
            let types: Vec<String> = match resource_type {
                Some(t) => {
                    check_type(t)?;
                    if !members.contains_key(t) && t != compartment {
                        return Err(ApiError::bad_request(
                            "invalid",
                            format!("{t} is not in the {compartment} compartment"),
                        ));
                    }
                    vec![t.clone()]
                }
                None => {
                    // The compartment's own resource first, as peers answer.
                    let mut types: Vec<String> = std::iter::once(compartment.clone())
                        .chain(
                            data_types()
                                .into_iter()
                                .filter(|t| members.contains_key(t) && t != compartment),
                        )
                        .collect();
                    if let Some(only) = last.get("_type") {
                        types.retain(|t| only.split(',').any(|o| o == t));
                    }
                    types
                }
            };
            let path = match resource_type {
                Some(t) => format!("{compartment}/{id}/{t}"),
                None => format!("{compartment}/{id}/$everything"),
            };
            let filter = Filter::Compartment {
                compartment: compartment.clone(),
                id: id.clone(),
            };
            (types, path, Some(filter))
        }
    };
    if let Scope::Compartment {
        compartment, id, ..
    } = &scope
    {
        if state.lake.latest(compartment, id).is_none_or(|l| l.deleted) {
            return Err(super::not_found(compartment, id));
        }
    }

    // Over several types (system search, `$everything`), only the parameters every
    // resource has apply; `_type` chose the types above.
    let mut search = Search::parse(types, &pairs, strict(headers))
        .map_err(|e| ApiError::from_search(&e, "the search"))?;
    if let Some(f) = compartment_filter {
        search.filters.push(f);
    }
    if count_only {
        search.count = 0;
    }
    let page = run(&state.lake, &search, &state.fhir_base)
        .await
        .map_err(|e| ApiError::from_search(&e, "the search"))?;
    let link_base = if path.is_empty() {
        state.fhir_base.clone()
    } else {
        format!("{}/{path}", state.fhir_base)
    };
    Ok(searchset(
        &link_base,
        &state.fhir_base,
        &pairs,
        &search,
        page,
        &subset,
        is_pretty(&last),
    ))
}

fn link(base: &str, pairs: &[(String, String)], cursor: Option<(&str, &str)>) -> String {
    let mut query: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| !CURSOR_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", url_escape(k), url_escape(v)))
        .collect();
    if let Some((k, v)) = cursor {
        query.push(format!("{k}={}", url_escape(v)));
    }
    if query.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

/// One entry as JSON text. The stored resource is spliced in as it is when nothing is
/// cut from it: parsing and re-serialising a page of a hundred resources would cost
/// more than finding them.
fn entry(fhir_base: &str, r: &ResourceVersion, mode: &str, subset: &Subset) -> String {
    let full_url = Value::String(format!("{fhir_base}/{}/{}", r.resource_type, r.id));
    let resource = if *subset == Subset::Full {
        r.resource.to_string()
    } else {
        match serde_json::from_str::<Value>(&r.resource) {
            Ok(Value::Object(mut m)) => {
                subset.apply(&mut m);
                Value::Object(m).to_string()
            }
            _ => "{}".to_string(),
        }
    };
    format!(r#"{{"fullUrl":{full_url},"resource":{resource},"search":{{"mode":"{mode}"}}}}"#)
}

fn searchset(
    link_base: &str,
    fhir_base: &str,
    pairs: &[(String, String)],
    search: &Search,
    page: SearchPage,
    subset: &Subset,
    pretty: bool,
) -> String {
    let self_cursor = pairs
        .iter()
        .find(|(k, _)| CURSOR_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let mut links = vec![json!({"relation": "self", "url": link(link_base, pairs, self_cursor)})];
    if let Some(next) = &page.next {
        links.push(
            json!({"relation": "next", "url": link(link_base, pairs, Some(("_page_after", next)))}),
        );
    }
    if let Some(prev) = &page.prev {
        links.push(json!({"relation": "previous", "url": link(link_base, pairs, Some(("_page_before", prev)))}));
    }
    let mut entries: Vec<String> = page
        .matches
        .iter()
        .map(|r| entry(fhir_base, r, "match", subset))
        .chain(
            page.included
                .iter()
                .map(|r| entry(fhir_base, r, "include", subset)),
        )
        .collect();
    let mut warnings: Vec<Issue> = search
        .ignored
        .iter()
        .map(|p| Issue {
            severity: Severity::Warning,
            code: "not-supported",
            diagnostics: format!("unknown search parameter {p} was ignored"),
            expression: None,
        })
        .collect();
    warnings.extend(page.warnings.iter().map(|w| Issue {
        severity: Severity::Warning,
        code: "incomplete",
        diagnostics: w.clone(),
        expression: None,
    }));
    if !warnings.is_empty() {
        entries.push(
            json!({
                "resource": operation_outcome(&warnings),
                "search": {"mode": "outcome"},
            })
            .to_string(),
        );
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
    });
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    let mut body = bundle.to_string();
    if !entries.is_empty() {
        // `bundle` is an object: its text ends in `}`.
        body.pop();
        body.push_str(",\"entry\":[");
        body.push_str(&entries.join(","));
        body.push_str("]}");
    }
    if pretty {
        if let Ok(v) = serde_json::from_str::<Value>(&body) {
            body = serde_json::to_string_pretty(&v).unwrap_or(body);
        }
    }
    body
}

/// A search in a batch or transaction entry (`Observation?code=...`,
/// `Patient/1/Observation`, `Patient/1/$everything`): its searchset Bundle.
pub(super) async fn search_in_bundle(
    state: &AppState,
    path: &str,
    query: &str,
) -> Result<Value, ApiError> {
    let pairs = query_pairs(Some(query));
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let scope = match parts.as_slice() {
        [] => Scope::System,
        [t] => Scope::Type(t.to_string()),
        [c, id, "$everything"] => Scope::Compartment {
            compartment: c.to_string(),
            id: id.to_string(),
            resource_type: None,
        },
        [c, id, t] => Scope::Compartment {
            compartment: c.to_string(),
            id: id.to_string(),
            resource_type: Some(t.to_string()),
        },
        _ => {
            return Err(ApiError::bad_request(
                "invalid",
                format!("{path}?{query} is not a search this server knows"),
            ));
        }
    };
    let text = searchset_text(state, scope, pairs, &HeaderMap::new()).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal("the search in a Bundle", &e))
}
