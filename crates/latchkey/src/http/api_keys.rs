//! The API-key endpoints: create, list, delete.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use proget_api::ApiKeyInfo;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{empty_ok, json_ok, json_response, AppError, AppState, Caller};
use crate::domain::{KeyId, NewKey};
use crate::keys::{
    self, key_access, may_choose_key_text, may_create, may_manage, parse_id, KeyAccess,
};
use crate::store::{JsonPage, StoreError};

/// Handles the `POST /api/api-keys/create` route.
#[utoipa::path(
    post,
    path = "/api/api-keys/create",
    tag = "api-keys",
    request_body(content = ApiKeyInfo, description = "The key to create: `type` is required; `id` and the usage properties are ignored."),
    responses(
        (status = 200, description = "The key as stored, with its text in `key` (shown only this once).", body = ApiKeyInfo, links(
            ("delete" = (operation_id = "apiKeysDelete", parameters(("id" = "$response.body#/id")), description = "Delete the key.")),
            ("rotate" = (operation_id = "apiKeysRotate", parameters(("id" = "$response.body#/id")), description = "Rotate the key.")),
            ("logs" = (operation_id = "apiKeysLogs", parameters(("id" = "$response.body#/id")), description = "The key's access log.")),
        )),
        (status = 400, description = "The body is not a valid key (the message names the property), or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not create this key.", body = String, content_type = "text/plain"),
    )
)]
pub async fn create(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    if key_access(&caller.principal, &caller.security) == KeyAccess::None {
        return Err(AppError::not_authorized(
            "caller has no API-key management access",
        ));
    }
    let info: ApiKeyInfo = caller.json()?;
    if info.key.is_some() && !may_choose_key_text(&caller.principal, &caller.security) {
        return Err(AppError::Forbidden {
            public: "key: only administrators and full-control system keys may choose a key's text",
            cause: "caller may not choose a key's text".into(),
        });
    }
    let valid = keys::validate_new_key(info, app.custom_keys, OffsetDateTime::now_utc())
        .map_err(AppError::BadRequest)?;
    if let Some(text) = &valid.custom_key {
        app.rules
            .check_custom_key(text)
            .map_err(AppError::BadRequest)?;
    }
    if !may_create(
        &caller.principal,
        &caller.security,
        valid.key_type,
        valid.user.as_deref(),
    ) {
        return Err(AppError::not_authorized("caller may not create this key"));
    }
    // Non-administrators hold a bounded number of personal keys, counted by
    // the store in the create's own transaction.
    let personal_cap = match key_access(&caller.principal, &caller.security) {
        KeyAccess::OwnPersonal(_) => {
            Some(u32::try_from(app.rules.max_personal_keys).unwrap_or(u32::MAX))
        }
        _ => None,
    };
    let user_id = match &valid.user {
        None => None,
        Some(name) => {
            let login = app.store.user_login(name).await?;
            let login = login.ok_or_else(|| {
                AppError::BadRequest(format!("user: there is no user named {name}"))
            })?;
            Some(login.user.id)
        }
    };
    let key_text = valid.custom_key.clone().unwrap_or_else(keys::generate_key);
    let new = NewKey {
        digest: app.auth.digester().key(&key_text),
        key_type: valid.key_type,
        display_name: valid.display_name,
        description: valid.description,
        system_apis: valid.system_apis,
        package_permissions: valid.package_permissions,
        feed: valid.feed,
        feed_group: valid.feed_group,
        expiration: valid.expiration,
        logging: valid.logging,
        user_id,
        personal_cap,
    };
    let stored = match app.store.create_key(&caller.audit(), new).await {
        Ok(k) => k,
        Err(StoreError::TooManyKeys) => {
            return Err(AppError::BadRequest(format!(
                "you already hold the most personal keys allowed ({}); delete one first",
                app.rules.max_personal_keys
            )))
        }
        Err(StoreError::DuplicateKey) => {
            // A collision tells the caller that a key exists: it costs like a wrong guess.
            if let (Some(limiter), Some(ip)) = (&app.limiter, caller.peer) {
                let _ = limiter.record_failure(ip);
            }
            return Err(AppError::BadRequest(
                "key: that key text is already in use; choose another".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(key_id = stored.id, key_type = %stored.key_type, "api key created");
    json_ok(&ApiKeyInfo {
        key: Some(key_text),
        ..ApiKeyInfo::from(stored)
    })
}

/// Handles the `GET /api/api-keys/list` route.
#[utoipa::path(
    get,
    path = "/api/api-keys/list",
    tag = "api-keys",
    params(
        ("unusedFor" = Option<String>, Query, description = "Only keys not used for this long (never-used keys count from creation): whole days, hours or minutes, e.g. `90d`, `12h`, `30m`.", example = "90d"),
    ),
    responses(
        (status = 200, description = "The keys the caller may see, without their text.", body = Vec<ApiKeyInfo>),
        (status = 400, description = "`unusedFor` is not a duration, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or no API-key management access.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    if let Some(text) = super::query_param(caller.query.as_deref(), "unusedFor") {
        return list_unused(app, &caller, &text).await;
    }
    let json = match key_access(&caller.principal, &caller.security) {
        KeyAccess::All => return list_all(app, None).await,
        // Serialised once and kept by the cache (SQLite): sent as it is.
        KeyAccess::OwnPersonal(user) => app.store.list_keys_json(user).await?,
        KeyAccess::None => {
            return Err(AppError::not_authorized(
                "caller has no API-key management access",
            ))
        }
    };
    Ok(json_response(json))
}

/// Reads `unusedFor`: a whole number of days, hours or minutes (`90d`, `12h`, `30m`).
fn parse_unused_for(text: &str) -> Result<time::Duration, String> {
    let bad = || format!("unusedFor: \"{text}\" is not a duration such as 90d, 12h or 30m");
    let unit = text.chars().last().ok_or_else(bad)?;
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        'd' => n.checked_mul(86_400),
        'h' => n.checked_mul(3_600),
        'm' => n.checked_mul(60),
        _ => None,
    }
    .filter(|s| *s <= 100 * 365 * 86_400)
    .ok_or_else(bad)?;
    Ok(time::Duration::seconds(seconds))
}

/// The keys the caller may list that were not used for `unused_for`
/// (never-used keys count from their creation).
async fn list_unused(
    app: AppState,
    caller: &Caller,
    unused_for: &str,
) -> Result<Response, AppError> {
    let owner = match key_access(&caller.principal, &caller.security) {
        KeyAccess::All => None,
        KeyAccess::OwnPersonal(user) => Some(user),
        KeyAccess::None => {
            return Err(AppError::not_authorized(
                "caller has no API-key management access",
            ))
        }
    };
    let unused_for = parse_unused_for(unused_for).map_err(AppError::BadRequest)?;
    let threshold = OffsetDateTime::now_utc() - unused_for;
    let Some(owner) = owner else {
        // Paged like the full listing: memory stays flat however many keys.
        return list_all(app, Some(threshold)).await;
    };
    let unused: Vec<ApiKeyInfo> = app
        .store
        .list_keys(Some(owner))
        .await?
        .into_iter()
        .filter(|k| unused_since(k, threshold))
        .map(ApiKeyInfo::from)
        .collect();
    json_ok(&unused)
}

/// Whether a key was last used (or, never used, created) no later than `threshold`.
fn unused_since(key: &crate::domain::StoredKey, threshold: OffsetDateTime) -> bool {
    key.usage
        .last_used
        .or(key.usage.created)
        .is_none_or(|t| t <= threshold)
}

/// One page of the full listing after `after`; with `unused_since`, only
/// the keys unused since then (`last` and `count` still describe the whole
/// page, so that paging goes on).
async fn page(
    app: &AppState,
    after: KeyId,
    unused_since: Option<OffsetDateTime>,
) -> Result<JsonPage, StoreError> {
    let Some(threshold) = unused_since else {
        return app.store.key_page_json(after, PAGE).await;
    };
    let keys = app.store.keys_after(after, PAGE).await?;
    let mut page = JsonPage {
        last: keys.last().map(|k| k.id),
        count: keys.len(),
        ..JsonPage::default()
    };
    for key in keys
        .into_iter()
        .filter(|k| self::unused_since(k, threshold))
    {
        if !page.items.is_empty() {
            page.items.push(',');
        }
        let json = serde_json::to_string(&ApiKeyInfo::from(key))
            .map_err(|e| StoreError::Other(e.into()))?;
        page.items.push_str(&json);
    }
    Ok(page)
}

/// Keys per page of a full listing.
const PAGE: u32 = 1000;

/// Streams every key as one JSON array, a page at a time, so that memory
/// stays flat however many keys there are. The first page is read before the
/// response starts, so that an unavailable database is still a clean 500; a
/// failure later can only cut the body short (and is logged).
async fn list_all(
    app: AppState,
    unused_since: Option<OffsetDateTime>,
) -> Result<Response, AppError> {
    let first = page(&app, KeyId::MIN, unused_since).await?;
    if first.count < PAGE as usize {
        // The first page is the whole listing: one buffer, with Content-Length.
        let mut json = String::with_capacity(first.items.len() + 2);
        json.push('[');
        json.push_str(&first.items);
        json.push(']');
        return Ok(json_response(json.into_bytes()));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut page = first;
        let mut json = String::from("[");
        let mut any = false;
        loop {
            if !page.items.is_empty() {
                if any {
                    json.push(',');
                }
                json.push_str(&page.items);
                any = true;
            }
            let (Some(after), true) = (page.last, page.count == PAGE as usize) else {
                break;
            };
            if tx
                .send(Ok(Bytes::from(std::mem::take(&mut json))))
                .await
                .is_err()
            {
                return; // the client went away
            }
            page = match self::page(&app, after, unused_since).await {
                Ok(p) => p,
                Err(e) => {
                    let id = super::error::new_error_id();
                    tracing::error!(error_id = %id, error = %format!("{:#}", anyhow::Error::from(e)), "key listing failed mid-stream");
                    let _ = tx.send(Err(std::io::Error::other("listing failed"))).await;
                    return;
                }
            };
        }
        json.push(']');
        let _ = tx.send(Ok(Bytes::from(json))).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok((
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response())
}

/// Handles the `POST /api/api-keys/delete?id=N` route.
///
/// Checks in the documented order: credential (403, in the extractor), id
/// (400), self-revocation (200), management access (403), existence (404),
/// permission on that key (403), then a durable delete (200).
#[utoipa::path(
    post,
    path = "/api/api-keys/delete",
    tag = "api-keys",
    params(("id" = i32, Query, description = "The key's id.")),
    responses(
        (status = 200, description = "Deleted; the body is empty.", body = super::openapi::Empty, content_type = "text/plain"),
        (status = 400, description = "`id` is missing, repeated or not a 32-bit integer, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not delete this key.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no key with this id.", body = String, content_type = "text/plain"),
    )
)]
pub async fn delete(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    let id = parse_id(caller.query.as_deref()).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let not_found = || AppError::NotFound(format!("API key {id} was not found"));
    if caller.principal.key_id() != Some(id) {
        if key_access(&caller.principal, &caller.security) == KeyAccess::None {
            return Err(AppError::not_authorized(
                "caller has no API-key management access",
            ));
        }
        let key = app.store.key_by_id(id).await?.ok_or_else(not_found)?;
        if !may_manage(&caller.principal, &caller.security, &key) {
            return Err(AppError::not_authorized(format!(
                "caller may not delete key {id}"
            )));
        }
    }
    if !app.store.delete_key(&caller.audit(), id).await? {
        return Err(not_found());
    }
    tracing::info!(key_id = id, "api key deleted");
    Ok(empty_ok())
}
