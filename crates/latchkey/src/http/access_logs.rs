//! `GET /api/api-keys/logs?id=N[&before=ENTRY_ID][&limit=N]`: a key's access
//! log, newest first (`usage.md` section 2).

use axum::extract::State;
use axum::response::Response;
use proget_api::AccessLogEntry;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{json_ok, query_param, AppError, AppState, Caller};
use crate::keys::{key_access, may_manage, parse_id, KeyAccess};
use crate::store::StoredAccess;

/// Entries per page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// Most entries per page.
const MAX_LIMIT: u32 = 1000;

/// Handles the `GET /api/api-keys/logs` route. Who may read a key's log:
/// whoever may delete the key; a deleted key's log, administrators (and
/// full-control system keys) only. Checked in the order delete uses: id
/// (400), management access (403), existence (404), permission (403).
#[utoipa::path(
    get,
    path = "/api/api-keys/logs",
    tag = "api-keys",
    params(
        ("id" = i32, Query, description = "The key's id."),
        ("before" = Option<i64>, Query, minimum = 1, description = "Only entries older than this entry id (the next page)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Most entries returned (default 100)."),
    ),
    responses(
        (status = 200, description = "The key's access log, newest first.", body = Vec<AccessLogEntry>),
        (status = 400, description = "`id`, `before` or `limit` is invalid, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not read this key's log.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no key with this id.", body = String, content_type = "text/plain"),
    )
)]
pub async fn logs(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    let query = caller.query.as_deref();
    let id = parse_id(query).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let access = key_access(&caller.principal, &caller.security);
    if access == KeyAccess::None {
        return Err(AppError::not_authorized(
            "caller has no API-key management access",
        ));
    }
    let before =
        match query_param(query, "before") {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                AppError::BadRequest(format!("before: \"{v}\" is not an entry id"))
            })?),
        };
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "limit: \"{v}\" is not a number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    let not_found = || AppError::NotFound(format!("API key {id} was not found"));
    match app.store.key_by_id(id).await? {
        Some(key) => {
            if !may_manage(&caller.principal, &caller.security, &key) {
                return Err(AppError::not_authorized(format!(
                    "caller may not read the log of key {id}"
                )));
            }
        }
        // A deleted key's entries stay readable by administrators.
        None if access == KeyAccess::All => {}
        None => return Err(not_found()),
    }
    let entries = app.store.access_log(id, before, limit).await?;
    if entries.is_empty() && before.is_none() && app.store.key_by_id(id).await?.is_none() {
        return Err(not_found());
    }
    let wire: Vec<AccessLogEntry> = entries.into_iter().map(to_wire).collect();
    json_ok(&wire)
}

fn to_wire(e: StoredAccess) -> AccessLogEntry {
    let r = e.record;
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.time_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    AccessLogEntry {
        entry_id: e.id,
        time,
        method: r.method,
        path: r.path,
        status: u16::try_from(r.status).unwrap_or(0),
        duration_ms: u64::try_from(r.duration_ms).unwrap_or(0),
        address: r.address,
        user_agent: r.user_agent,
        verdict: r.verdict,
        request_body: r.request_body,
        response_body: r.response_body,
        truncated: r.truncated.then_some(true),
    }
}
