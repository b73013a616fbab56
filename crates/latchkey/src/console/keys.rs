//! The API-key pages. Create and delete go through the API's own handlers;
//! the list reads [`Store::search_keys`](crate::store::Store::search_keys)
//! within what [`key_access`] grants, as the API's list does.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use proget_api::{AccessLogEntry, ApiKeyInfo, ApiKeyType};

use super::templates::keys::{self as pages, Draft, PAGE};
use super::{call, caller, decode, error_page, html, query, see_other, Console, Form};
use crate::domain::KeyId;
use crate::http::{api_keys, AppError, AppState};
use crate::keys::{key_access, may_manage, KeyAccess};
use crate::store::KeySearch;

/// Reads one parameter of a page's query string.
fn param(query: &Option<String>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `GET /console/keys[?q=…][&after=ID]`: one page of the keys the user may manage.
pub async fn list(State(app): State<AppState>, c: Console, RawQuery(q): RawQuery) -> Response {
    let owner = match key_access(&c.principal, &c.security) {
        KeyAccess::All => None,
        KeyAccess::OwnPersonal(user) => Some(user),
        KeyAccess::None => {
            return error_page(
                Some(&c),
                AppError::not_authorized("no key management access"),
            )
        }
    };
    let search = param(&q, "q").unwrap_or_default();
    let after = param(&q, "after")
        .and_then(|a| a.parse::<KeyId>().ok())
        .unwrap_or(KeyId::MIN);
    let deleted = param(&q, "deleted").and_then(|a| a.parse::<KeyId>().ok());
    let query = KeySearch {
        after,
        limit: PAGE,
        owner,
        search: (!search.is_empty()).then(|| search.clone()),
    };
    match app.store.search_keys(&query).await {
        Ok(keys) => html(
            StatusCode::OK,
            pages::list(&c, &keys, &search, after, deleted),
        ),
        Err(e) => error_page(Some(&c), e.into()),
    }
}

/// The key type a create form is for: administrators choose, others make personal keys.
fn form_type(c: &Console, asked: Option<&str>) -> ApiKeyType {
    if !c.admin {
        return ApiKeyType::Personal;
    }
    match asked.and_then(|t| t.parse().ok()) {
        Some(t @ (ApiKeyType::System | ApiKeyType::Personal)) => t,
        _ => ApiKeyType::Feed,
    }
}

/// `GET /console/keys/new[?type=feed|system|personal]`: the create form.
pub async fn new_page(c: Console, RawQuery(q): RawQuery) -> Response {
    let key_type = form_type(&c, param(&q, "type").as_deref());
    let mut draft = Draft::default();
    if key_type == ApiKeyType::Personal {
        draft.values.insert("user".into(), vec![c.user.clone()]);
    }
    html(StatusCode::OK, pages::new_key(&c, key_type, &draft))
}

/// The create request the form describes, as the API's JSON body.
fn create_body(c: &Console, key_type: ApiKeyType, form: &Form) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), key_type.as_str().into());
    for name in ["displayName", "description", "logging"] {
        if let Some(v) = form.get(name) {
            body.insert(name.into(), v.into());
        }
    }
    if let Some(v) = form.get("expiration") {
        // A date field's day: the key expires at its start, UTC.
        let v = if v.len() == 10 {
            format!("{v}T00:00:00Z")
        } else {
            v
        };
        body.insert("expiration".into(), v.into());
    }
    if c.admin {
        if let Some(v) = form.get("key") {
            body.insert("key".into(), v.into());
        }
    }
    match key_type {
        ApiKeyType::Feed => {
            for name in ["feed", "feedGroup"] {
                if let Some(v) = form.get(name) {
                    body.insert(name.into(), v.into());
                }
            }
            body.insert(
                "packagePermissions".into(),
                form.all("packagePermissions").into(),
            );
        }
        ApiKeyType::System => {
            body.insert("systemApis".into(), form.all("systemApis").into());
        }
        _ => {
            // Non-administrators create keys for themselves only (the API checks it too).
            let user = if c.admin {
                form.get("user")
            } else {
                Some(c.user.clone())
            };
            if let Some(v) = user {
                body.insert("user".into(), v.into());
            }
        }
    }
    serde_json::Value::Object(body)
}

/// The form field an API error message is about: the property it names first.
fn field_of(message: &str) -> &'static str {
    const FIELDS: &[&str] = &[
        "displayName",
        "description",
        "feedGroup",
        "feed",
        "packagePermissions",
        "systemApis",
        "expiration",
        "logging",
        "user",
        "key",
    ];
    let first = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    FIELDS
        .iter()
        .find(|f| f.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("")
}

/// `POST /console/keys/new`: creates the key through the API's create handler.
pub async fn create(State(app): State<AppState>, c: Console, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let key_type = form_type(&c, form.get("type").as_deref());
    let json = create_body(&c, key_type, &form);
    let request = caller(&c, None, json.to_string().into_bytes());
    match call(api_keys::create(State(app), request)).await {
        Ok(bytes) => match decode::<ApiKeyInfo>(&bytes) {
            Ok(info) => html(StatusCode::OK, pages::created(&c, &info)),
            Err(e) => error_page(Some(&c), e),
        },
        Err(AppError::BadRequest(message)) => {
            let mut draft = Draft::default();
            for (k, v) in &form.0 {
                if k != "key" {
                    draft.values.entry(k.clone()).or_default().push(v.clone());
                }
            }
            draft.errors.insert(field_of(&message).into(), message);
            html(
                StatusCode::BAD_REQUEST,
                pages::new_key(&c, key_type, &draft),
            )
        }
        Err(e) => error_page(Some(&c), e),
    }
}

/// The key `id` names, when the user may manage it (API order: access
/// `403`, existence `404`, permission on that key `403`).
async fn manageable(
    app: &AppState,
    c: &Console,
    id: &str,
) -> Result<crate::domain::StoredKey, AppError> {
    let id: KeyId = id
        .parse()
        .map_err(|_| AppError::BadRequest(format!("\"{id}\" is not a key id")))?;
    if key_access(&c.principal, &c.security) == KeyAccess::None {
        return Err(AppError::not_authorized("no key management access"));
    }
    let key = app
        .store
        .key_by_id(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("API key {id} was not found")))?;
    if !may_manage(&c.principal, &c.security, &key) {
        return Err(AppError::not_authorized(format!("may not manage key {id}")));
    }
    Ok(key)
}

/// Access-log entries per page on a key's page.
const LOG_PAGE: usize = 20;

/// `GET /console/keys/{id}[?before=ENTRY]`: the key's page with its access log
/// (through the API's `api-keys/logs`, redacted as it redacts).
pub async fn show(
    State(app): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let key = match manageable(&app, &c, &id).await {
        Ok(k) => k,
        Err(e) => return error_page(Some(&c), e),
    };
    let mut log_query = format!("id={}&limit={LOG_PAGE}", key.id);
    if let Some(before) = param(&q, "before").and_then(|b| b.parse::<i64>().ok()) {
        log_query.push_str(&format!("&before={before}"));
    }
    let request = caller(&c, Some(log_query), Vec::new());
    let log = match call(crate::http::access_logs::logs(State(app), request)).await {
        Ok(bytes) => decode::<Vec<AccessLogEntry>>(&bytes).ok(),
        Err(_) => None,
    };
    let older = log
        .as_ref()
        .filter(|l| l.len() == LOG_PAGE)
        .and_then(|l| l.last())
        .map(|e| e.entry_id);
    html(StatusCode::OK, pages::show(&c, &key, log.as_deref(), older))
}

/// `GET /console/keys/{id}/delete`: the confirmation step.
pub async fn confirm_delete(
    State(app): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> Response {
    match manageable(&app, &c, &id).await {
        Ok(key) => html(StatusCode::OK, pages::confirm_delete(&c, &key)),
        Err(e) => error_page(Some(&c), e),
    }
}

/// `POST /console/keys/{id}/delete`: deletes through the API's delete handler
/// (the same checks and the same durable `Store::delete_key`).
pub async fn delete(
    State(app): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = c.check_csrf(&Form::parse(&body)) {
        return r;
    }
    let request = caller(&c, Some(query("id", &id)), Vec::new());
    match call(api_keys::delete(State(app), request)).await {
        Ok(_) => see_other(&format!("/console/keys?{}", query("deleted", &id))),
        Err(e) => error_page(Some(&c), e),
    }
}
