//! `POST /api/api-keys/rotate?id=N[&grace=SECONDS]`: a new text for a key.

use axum::extract::State;
use axum::response::Response;
use proget_api::ApiKeyInfo;
use time::OffsetDateTime;

use super::{json_ok, AppError, AppState, Caller};
use crate::keys::{self, key_access, may_manage, parse_id, KeyAccess};
use crate::store::StoreError;

/// The longest grace period, in seconds (a day).
pub const MAX_GRACE: u32 = 86_400;

/// Reads the optional `grace` parameter: whole seconds, at most [`MAX_GRACE`].
fn parse_grace(query: Option<&str>) -> Result<Option<u32>, String> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "grace" {
            if found.is_some() {
                return Err("grace: give it once".into());
            }
            found = Some(value.into_owned());
        }
    }
    let Some(text) = found else {
        return Ok(None);
    };
    let bad = || format!("grace: \"{text}\" is not a number of seconds from 0 to {MAX_GRACE}");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: u32 = text.parse().map_err(|_| bad())?;
    if seconds > MAX_GRACE {
        return Err(bad());
    }
    Ok((seconds > 0).then_some(seconds))
}

/// Handles `POST /api/api-keys/rotate`: the checks and their order are
/// delete's (a key may rotate itself); answers the key with its new text.
#[utoipa::path(
    post,
    path = "/api/api-keys/rotate",
    tag = "api-keys",
    params(
        ("id" = i32, Query, description = "The key's id."),
        ("grace" = Option<u32>, Query, maximum = 86400, description = "Seconds the previous text keeps working (0 to 86400; default 0)."),
    ),
    responses(
        (status = 200, description = "The key with its new text in `key` (shown only this once).", body = ApiKeyInfo),
        (status = 400, description = "`id` or `grace` is invalid, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not rotate this key.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no key with this id.", body = String, content_type = "text/plain"),
    )
)]
pub async fn rotate(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    let query = caller.query.as_deref();
    let id = parse_id(query).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let grace = parse_grace(query).map_err(AppError::BadRequest)?;
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
                "caller may not rotate key {id}"
            )));
        }
    }
    let grace_until =
        grace.map(|s| OffsetDateTime::now_utc() + time::Duration::seconds(i64::from(s)));
    let text = keys::generate_key();
    let digest = app.auth.digester().key(&text);
    let stored = match app
        .store
        .rotate_key(&caller.audit(), id, &digest, grace_until)
        .await
    {
        Ok(Some(k)) => k,
        Ok(None) => return Err(not_found()),
        Err(StoreError::DuplicateKey) => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a generated key collided with a stored one"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        key_id = id,
        grace_seconds = grace.unwrap_or(0),
        "api key rotated"
    );
    json_ok(&ApiKeyInfo {
        key: Some(text),
        ..ApiKeyInfo::from(stored)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_optional_whole_seconds_up_to_a_day() {
        assert_eq!(parse_grace(None), Ok(None));
        assert_eq!(parse_grace(Some("id=5")), Ok(None));
        assert_eq!(parse_grace(Some("grace=0")), Ok(None));
        assert_eq!(parse_grace(Some("grace=60")), Ok(Some(60)));
        assert_eq!(parse_grace(Some("grace=86400")), Ok(Some(86_400)));
        for bad in [
            "grace=86401",
            "grace=-1",
            "grace=1.5",
            "grace=",
            "grace=x",
            "grace=99999999999",
        ] {
            assert!(parse_grace(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_grace(Some("grace=1&grace=2")).is_err());
    }
}
