//! The security API's permission endpoints: list, add, delete.
//!
//! **Decision:** an `id` in the body of `add` is ignored (as on API-key
//! create): the server assigns ids.

use axum::extract::State;
use axum::response::Response;
use proget_api::PermissionInfo;

use super::{empty_ok, json_ok, security_admin, AppError, AppState, Caller};
use crate::domain::{NewPermission, Permission, PermissionId, Scope, Subject, Task};
use crate::store::StoreError;

/// Longest user, group, feed or feed group name a permission may name.
const MAX_NAME_CHARS: usize = 256;

/// Handles the `GET /api/security/permissions/list` route: every permission, ordered by id.
#[utoipa::path(
    get,
    path = "/api/security/permissions/list",
    tag = "security",
    responses(
        (status = 200, description = "Every permission, ordered by id.", body = Vec<PermissionInfo>),
        (status = 400, description = "The credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let infos: Vec<PermissionInfo> = app
        .store
        .security()
        .await?
        .permissions()
        .iter()
        .cloned()
        .map(to_info)
        .collect();
    json_ok(&infos)
}

/// Handles the `POST /api/security/permissions/add` route.
#[utoipa::path(
    post,
    path = "/api/security/permissions/add",
    tag = "security",
    request_body(content = PermissionInfo, description = "The permission; an `id` is ignored."),
    responses(
        (status = 200, description = "The permission as stored, with its id.", body = PermissionInfo, links(
            ("delete" = (operation_id = "securityPermissionsDelete", parameters(("id" = "$response.body#/id")), description = "Delete the permission.")),
        )),
        (status = 400, description = "The body is invalid (the message names the property), names an unknown user or group, would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn add(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let info: PermissionInfo = caller.json()?;
    let permission = to_new(info).map_err(AppError::BadRequest)?;
    match app.store.add_permission(&caller.audit(), permission).await {
        Ok(stored) => {
            tracing::info!(permission_id = stored.id, "permission added");
            json_ok(&to_info(stored))
        }
        Err(StoreError::UnknownUser(name)) => Err(AppError::BadRequest(format!(
            "user: there is no user named {name}"
        ))),
        Err(StoreError::UnknownGroup(name)) => Err(AppError::BadRequest(format!(
            "group: there is no group named {name}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Handles the `POST /api/security/permissions/delete?id=N` route.
#[utoipa::path(
    post,
    path = "/api/security/permissions/delete",
    tag = "security",
    params(("id" = i64, Query, description = "The permission's id.")),
    responses(
        (status = 200, description = "Deleted; the body is empty.", body = super::openapi::Empty, content_type = "text/plain"),
        (status = 400, description = "`id` is missing, repeated or not an integer, the deletion would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no permission with this id.", body = String, content_type = "text/plain"),
    )
)]
pub async fn delete(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let id = parse_id(caller.query.as_deref()).map_err(AppError::BadRequest)?;
    if !app.store.delete_permission(&caller.audit(), id).await? {
        return Err(AppError::NotFound(format!("permission {id} was not found")));
    }
    tracing::info!(permission_id = id, "permission deleted");
    Ok(empty_ok())
}

/// The wire form of a stored permission.
fn to_info(p: Permission) -> PermissionInfo {
    let (user, group) = match p.subject {
        Subject::User(name) => (Some(name), None),
        Subject::Group(name) => (None, Some(name)),
    };
    let (feed, feed_group) = match p.scope {
        Scope::Global => (None, None),
        Scope::Feed(name) => (Some(name), None),
        Scope::FeedGroup(name) => (None, Some(name)),
    };
    PermissionInfo {
        id: Some(p.id),
        user,
        group,
        task: p.task.name().to_owned(),
        feed,
        feed_group,
        deny: p.deny,
    }
}

/// Checks an `add` body; the error names the property at fault.
fn to_new(info: PermissionInfo) -> Result<NewPermission, String> {
    let task: Task = info.task.parse().map_err(|_| {
        let names: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
        format!(
            "task: unknown task \"{}\"; use one of {}",
            info.task.trim(),
            names.join(", ")
        )
    })?;
    let user = name(info.user, "user")?;
    let group = name(info.group, "group")?;
    let subject = match (user, group) {
        (Some(user), None) => Subject::User(user),
        (None, Some(group)) => Subject::Group(group),
        (Some(_), Some(_)) => return Err("user, group: give exactly one of user or group".into()),
        (None, None) => return Err("user, group: give exactly one of user or group".into()),
    };
    let feed = name(info.feed, "feed")?;
    let feed_group = name(info.feed_group, "feedGroup")?;
    let scope = match (feed, feed_group) {
        (None, None) => Scope::Global,
        (Some(feed), None) => Scope::Feed(feed),
        (None, Some(group)) => Scope::FeedGroup(group),
        (Some(_), Some(_)) => {
            return Err("feed, feedGroup: give at most one of feed or feedGroup".into())
        }
    };
    Ok(NewPermission {
        subject,
        task,
        scope,
        deny: info.deny,
    })
}

/// A name property: absent, or non-blank, printable and at most [`MAX_NAME_CHARS`].
fn name(value: Option<String>, prop: &str) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(format!("{prop} must not be empty")),
        Some(v) if v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control) => Err(
            format!("{prop} must be at most {MAX_NAME_CHARS} printable characters"),
        ),
        Some(v) => Ok(Some(v)),
    }
}

/// Reads the `id` parameter: exactly one, `^-?[0-9]+$`, within 64 bits.
/// Public for fuzzing and tests.
pub fn parse_id(query: Option<&str>) -> Result<PermissionId, String> {
    let mut ids = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(n, _)| n == "id")
        .map(|(_, v)| v);
    let text = match (ids.next(), ids.next()) {
        (Some(_), Some(_)) => return Err("id must be given once".into()),
        (Some(text), None) if !text.is_empty() => text,
        _ => return Err("id is required".into()),
    };
    let digits = text.strip_prefix('-').unwrap_or(&text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("id must be an integer".into());
    }
    text.parse().map_err(|_| "id must be an integer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> PermissionInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn add_bodies_become_permissions() {
        let p = to_new(info(
            r#"{"group":"Developers","task":"publish packages","feed":"npm","id":99}"#,
        ))
        .unwrap();
        assert_eq!(
            p,
            NewPermission {
                subject: Subject::Group("Developers".into()),
                task: Task::PublishPackages,
                scope: Scope::Feed("npm".into()),
                deny: false,
            }
        );
        let p = to_new(info(r#"{"user":"Anonymous","task":"View & Download Packages","feedGroup":"public","deny":true}"#)).unwrap();
        assert_eq!(p.subject, Subject::User("Anonymous".into()));
        assert_eq!(p.scope, Scope::FeedGroup("public".into()));
        assert!(p.deny);
        let p = to_new(info(r#"{"user":"a","task":"Administer"}"#)).unwrap();
        assert_eq!(p.scope, Scope::Global);
    }

    #[test]
    fn bad_add_bodies_name_the_property() {
        for (json, prop) in [
            (r#"{"user":"a","task":"Fly"}"#, "task:"),
            (r#"{"task":"Administer"}"#, "user, group:"),
            (
                r#"{"user":"a","group":"g","task":"Administer"}"#,
                "user, group:",
            ),
            (
                r#"{"user":"a","task":"Administer","feed":"f","feedGroup":"g"}"#,
                "feed, feedGroup:",
            ),
            (r#"{"user":" ","task":"Administer"}"#, "user must"),
            (
                r#"{"group":"g","task":"Administer","feed":""}"#,
                "feed must",
            ),
            (
                r#"{"group":"g","task":"Administer","feedGroup":"a\nb"}"#,
                "feedGroup must",
            ),
        ] {
            let e = to_new(info(json)).unwrap_err();
            assert!(e.starts_with(prop), "{json}: {e}");
        }
    }

    #[test]
    fn ids_are_one_integer() {
        assert_eq!(parse_id(Some("id=7")), Ok(7));
        assert_eq!(parse_id(Some("id=-7")), Ok(-7));
        for bad in [
            None,
            Some(""),
            Some("id="),
            Some("id=1e3"),
            Some("id=%201"),
            Some("id=-"),
            Some("id=1&id=2"),
            Some("id=99999999999999999999"),
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }
}
