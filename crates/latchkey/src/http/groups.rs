//! The security API's group endpoints: list, add, edit, delete.
//!
//! **Decision:** like `users/delete`, deleting a group that does not exist
//! is not an error (`200`); `edit` of an unknown group is `404`.

use axum::extract::State;
use axum::response::Response;
use proget_api::GroupInfo;
use serde::Deserialize;

use super::users::check_name;
use super::{empty_ok, json_ok, security_admin, AppError, AppState, Caller};
use crate::domain::{same_name, Group, ADMINISTRATORS};
use crate::store::StoreError;

/// Most members one request may name.
const MAX_MEMBERS: usize = 10_000;

/// The body of `groups/edit`: unlike `add`, `members` is required (it
/// replaces the members, so a forgotten property must not empty the group).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct GroupEdit {
    /// The group's name.
    name: String,
    /// The new member user names (`[]` for none).
    #[schema(required = true, nullable = false)]
    members: Option<Vec<String>>,
}

/// Handles the `GET /api/security/groups/list` route: every group, ordered by name.
#[utoipa::path(
    get,
    path = "/api/security/groups/list",
    tag = "security",
    responses(
        (status = 200, description = "Every group and its members, ordered by name.", body = Vec<GroupInfo>),
        (status = 400, description = "The credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let groups = app.store.list_groups().await?;
    json_ok(&groups.into_iter().map(to_info).collect::<Vec<_>>())
}

/// Handles the `POST /api/security/groups/add` route (`members` optional).
#[utoipa::path(
    post,
    path = "/api/security/groups/add",
    tag = "security",
    request_body(content = GroupInfo, description = "The new group; `members` is optional."),
    responses(
        (status = 200, description = "The group as stored.", body = GroupInfo, links(
            ("delete" = (operation_id = "securityGroupsDelete", parameters(("group" = "$response.body#/name")), description = "Delete the group.")),
        )),
        (status = 400, description = "The body is invalid, the name is taken, a member is unknown, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn add(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let info: GroupInfo = caller.json()?;
    check_name(&info.name)?;
    let group = Group {
        members: members(info.members)?,
        name: info.name,
    };
    match app.store.create_group(&caller.audit(), group).await {
        Ok(group) => {
            tracing::info!(group = %group.name, "group added");
            json_ok(&to_info(group))
        }
        Err(StoreError::DuplicateGroup) => Err(AppError::BadRequest(
            "name: a group with this name already exists".into(),
        )),
        Err(e) => Err(member_error(e)),
    }
}

/// Handles the `POST /api/security/groups/edit` route: replaces the members
/// of the group the body's `name` selects.
#[utoipa::path(
    post,
    path = "/api/security/groups/edit",
    tag = "security",
    request_body(content = GroupEdit, description = "`name` selects the group; `members` replaces its members."),
    responses(
        (status = 200, description = "The group as stored.", body = GroupInfo),
        (status = 400, description = "The body is invalid, a member is unknown, the change would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no group with this name.", body = String, content_type = "text/plain"),
    )
)]
pub async fn edit(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let edit: GroupEdit = caller.json()?;
    let Some(list) = edit.members else {
        return Err(AppError::BadRequest(
            "members is required (it replaces the group's members; give [] for none)".into(),
        ));
    };
    let group = Group {
        members: members(list)?,
        name: edit.name,
    };
    match app
        .store
        .edit_group(&caller.audit(), group)
        .await
        .map_err(member_error)?
    {
        Some(group) => {
            tracing::info!(group = %group.name, "group members replaced");
            json_ok(&to_info(group))
        }
        None => Err(AppError::NotFound("group not found".into())),
    }
}

/// Handles the `POST /api/security/groups/delete?group=NAME` route; the
/// group's permissions go with it.
#[utoipa::path(
    post,
    path = "/api/security/groups/delete",
    tag = "security",
    params(("group" = String, Query, min_length = 1, description = "The group's name.")),
    responses(
        (status = 200, description = "Deleted with its permissions, or there was no such group; the body is empty.", body = super::openapi::Empty, content_type = "text/plain"),
        (status = 400, description = "`group` is missing or repeated, the group is Administrators, the deletion would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn delete(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let mut names = form_urlencoded::parse(caller.query.as_deref().unwrap_or("").as_bytes())
        .filter(|(n, _)| n == "group")
        .map(|(_, v)| v.into_owned());
    let name = match (names.next(), names.next()) {
        (Some(name), None) if !name.is_empty() => name,
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "group is repeated; give exactly one".into(),
            ))
        }
        _ => return Err(AppError::BadRequest("group is required".into())),
    };
    match app.store.delete_group(&caller.audit(), &name).await {
        Ok(deleted) => {
            if deleted {
                tracing::info!(group = %name, "group and its permissions deleted");
            }
            Ok(empty_ok())
        }
        Err(StoreError::ProtectedGroup) => Err(AppError::BadRequest(format!(
            "group: {ADMINISTRATORS} cannot be deleted"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Member names: each non-empty, at most [`MAX_MEMBERS`], repeats
/// (case-insensitively) dropped with the first spelling kept.
fn members(names: Vec<String>) -> Result<Vec<String>, AppError> {
    if names.len() > MAX_MEMBERS {
        return Err(AppError::BadRequest(format!(
            "members: at most {MAX_MEMBERS} members"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if name.trim().is_empty() {
            return Err(AppError::BadRequest(
                "members: a member name must not be empty".into(),
            ));
        }
        if !out.iter().any(|m| same_name(m, &name)) {
            out.push(name);
        }
    }
    Ok(out)
}

/// A store refusal of a group write, as the caller's `400`.
fn member_error(e: StoreError) -> AppError {
    match e {
        StoreError::UnknownUser(name) => {
            AppError::BadRequest(format!("members: there is no user named {name}"))
        }
        other => other.into(),
    }
}

fn to_info(g: Group) -> GroupInfo {
    GroupInfo {
        name: g.name,
        members: g.members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_drop_repeats_and_refuse_blanks() {
        let kept = members(vec!["alice".into(), "Bob".into(), "ALICE".into()]).unwrap();
        assert_eq!(kept, ["alice", "Bob"]);
        assert!(members(vec!["alice".into(), " ".into()]).is_err());
        assert!(members(vec!["a".into(); MAX_MEMBERS + 1]).is_err());
    }
}
