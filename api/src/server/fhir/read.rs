//! read and vread: `GET /fhir/<type>/<id>` and `GET /fhir/<type>/<id>/_history/<vid>`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use medlake_ingest::issue::Issue;

use super::subset::Subset;
use super::{
    check_instance, gone, is_pretty, not_found, outcome, resource_response, storage_error,
};
use crate::server::AppState;

pub async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_instance(&params, &headers, &resource_type, &id) {
        return r;
    }
    let subset = match Subset::from_params(&params) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.lake.read_latest(&resource_type, &id).await {
        Ok(Some(v)) if v.deleted => gone(&v),
        Ok(Some(v)) => resource_response(&v, is_pretty(&params), &subset),
        Ok(None) => not_found(&resource_type, &id),
        Err(e) => storage_error(e),
    }
}

pub async fn vread(
    State(state): State<AppState>,
    Path((resource_type, id, vid)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_instance(&params, &headers, &resource_type, &id) {
        return r;
    }
    let subset = match Subset::from_params(&params) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(version) = vid.parse::<i64>() else {
        return outcome(
            StatusCode::BAD_REQUEST,
            Issue::error("invalid", format!("'{vid}' is not a version number")),
        );
    };
    match state.lake.read_version(&resource_type, &id, version).await {
        Ok(Some(v)) if v.deleted => gone(&v),
        Ok(Some(v)) => resource_response(&v, is_pretty(&params), &subset),
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
