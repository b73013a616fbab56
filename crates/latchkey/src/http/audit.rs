//! The audit trail's endpoint: list.
//!
//! **Decisions:** `limit` defaults to 100 and must be 1..=1000 (`400`
//! outside: a silent clamp would hide a caller's mistake); `before` is a
//! positive entry id; `target` and `action` match exactly (`key 1001`,
//! `apikey.delete`); a parameter given twice is `400`; other parameters are
//! ignored (a credential may travel as `key=`).

use axum::extract::State;
use axum::response::Response;

use super::{json_ok, security_admin, AppError, AppState, Caller};
use crate::domain::AuditQuery;

/// Entries returned when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most entries one request may ask for.
pub const MAX_LIMIT: u32 = 1000;
/// Longest `target` or `action` filter accepted.
const MAX_FILTER_CHARS: usize = 512;

/// Handles the `GET /api/audit/list[?before=ID][&limit=N][&target=…][&action=…]`
/// route: administrators and full-control system keys only, newest first.
#[utoipa::path(
    get,
    path = "/api/audit/list",
    tag = "audit",
    params(
        ("before" = Option<i64>, Query, minimum = 1, description = "Only entries older than this entry id (the next page)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Most entries returned (default 100)."),
        ("target" = Option<String>, Query, min_length = 1, max_length = 512, description = "Only entries about this target, e.g. `key 1001`."),
        ("action" = Option<String>, Query, min_length = 1, max_length = 512, description = "Only entries of this action, e.g. `apikey.delete`."),
    ),
    responses(
        (status = 200, description = "Audit entries, newest first.", body = Vec<proget_api::AuditEntry>),
        (status = 400, description = "A parameter is invalid or repeated, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let query = parse_query(caller.query.as_deref()).map_err(AppError::BadRequest)?;
    let entries = app.store.list_audit(&query).await?;
    json_ok(&entries)
}

/// Reads the listing's parameters.
fn parse_query(query: Option<&str>) -> Result<AuditQuery, String> {
    let mut before = None;
    let mut limit = None;
    let mut target = None;
    let mut action = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "before" => &mut before,
            "limit" => &mut limit,
            "target" => &mut target,
            "action" => &mut action,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("{name} is repeated; give it at most once"));
        }
        *slot = Some(value.into_owned());
    }
    let before = before
        .map(|b| match b.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err("before must be a positive entry id".to_owned()),
        })
        .transpose()?;
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))
            }
        },
    };
    let filter = |name: &str, value: Option<String>| match value {
        Some(v) if v.is_empty() => Err(format!("{name} cannot be empty")),
        Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(format!(
            "{name} must be at most {MAX_FILTER_CHARS} characters"
        )),
        other => Ok(other),
    };
    Ok(AuditQuery {
        before,
        limit,
        target: filter("target", target)?,
        action: filter("action", action)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_and_checked() {
        let q = parse_query(Some(
            "before=5&limit=2&target=key%201001&action=apikey.delete&key=x",
        ))
        .unwrap();
        assert_eq!(
            q,
            AuditQuery {
                before: Some(5),
                limit: 2,
                target: Some("key 1001".into()),
                action: Some("apikey.delete".into()),
            }
        );
        assert_eq!(parse_query(None).unwrap().limit, DEFAULT_LIMIT);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=x",
            "before=0",
            "before=-3",
            "before=abc",
            "target=",
            "action=",
            "limit=1&limit=2",
            "target=a&target=b",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(parse_query(Some("limit=1000")).unwrap().limit, 1000);
    }
}
