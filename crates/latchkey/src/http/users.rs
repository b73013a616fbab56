//! The security API's user endpoints: add, list, delete, edit.

use axum::extract::State;
use axum::response::Response;
use proget_api::{UserEdit, UserInfo};

use super::{empty_ok, json_ok, query_param, AppError, AppState, Caller};
use crate::domain::{same_name, User, UserChange, ADMINISTRATORS, ANONYMOUS};
use crate::keys::may_manage_users;
use crate::store::StoreError;

/// Handles the `POST /api/security/users/add` route.
#[utoipa::path(
    post,
    path = "/api/security/users/add",
    tag = "security",
    request_body(content = UserEdit, description = "The new user; `password` is required."),
    responses(
        (status = 200, description = "The user as stored.", body = UserInfo, links(
            ("delete" = (operation_id = "securityUsersDelete", parameters(("user" = "$response.body#/name")), description = "Delete the user.")),
        )),
        (status = 400, description = "The body is invalid (the message names the property), the name is taken, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not manage users.", body = String, content_type = "text/plain"),
    )
)]
pub async fn add(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let edit: UserEdit = caller.json()?;
    check_name(&edit.name)?;
    let password = match edit.password.as_deref() {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => return Err(AppError::BadRequest("password is required".into())),
    };
    app.rules
        .check_password(&password)
        .map_err(AppError::BadRequest)?;
    let change = UserChange {
        name: edit.name,
        display_name: edit.display_name,
        email: edit.email,
        groups: Some(edit.groups.unwrap_or_default()),
        password_hash: Some(app.auth.hash_password(password).await?),
    };
    match app.store.create_user(&caller.audit(), change).await {
        Ok(user) => json_ok(&to_info(user)),
        Err(StoreError::DuplicateUser) => Err(AppError::BadRequest(
            "name: a user with this name already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Handles the `GET /api/security/users/list[?search-term=…]` route.
#[utoipa::path(
    get,
    path = "/api/security/users/list",
    tag = "security",
    params(("search-term" = Option<String>, Query, description = "Only users whose name, display name or e-mail contains this.")),
    responses(
        (status = 200, description = "The users, without passwords.", body = Vec<UserInfo>),
        (status = 400, description = "The credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not manage users.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let search = query_param(caller.query.as_deref(), "search-term");
    let users = app.store.list_users(search.as_deref()).await?;
    json_ok(&users.into_iter().map(to_info).collect::<Vec<_>>())
}

/// Handles the `DELETE /api/security/users/delete?user=NAME` route; deleting
/// a user that does not exist is not an error.
#[utoipa::path(
    delete,
    path = "/api/security/users/delete",
    tag = "security",
    params(("user" = String, Query, min_length = 1, description = "The user's name.")),
    responses(
        (status = 200, description = "Deleted with their personal keys, or there was no such user; the body is empty.", body = super::openapi::Empty, content_type = "text/plain"),
        (status = 400, description = "`user` is missing or repeated, the deletion would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not manage users.", body = String, content_type = "text/plain"),
    )
)]
pub async fn delete(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let mut names = form_urlencoded::parse(caller.query.as_deref().unwrap_or("").as_bytes())
        .filter(|(n, _)| n == "user")
        .map(|(_, v)| v.into_owned());
    let name = match (names.next(), names.next()) {
        (Some(name), None) if !name.is_empty() => name,
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "user is repeated; give exactly one".into(),
            ))
        }
        _ => return Err(AppError::BadRequest("user is required".into())),
    };
    if app
        .store
        .delete_user(&caller.audit(), &name)
        .await
        .map_err(last_admin)?
    {
        tracing::info!(user = %name, "user and their personal keys deleted");
    }
    Ok(empty_ok())
}

/// Handles the `POST /api/security/users/edit` route (the body's `name` selects the user).
#[utoipa::path(
    post,
    path = "/api/security/users/edit",
    tag = "security",
    request_body(content = UserEdit, description = "`name` selects the user; absent properties are unchanged."),
    responses(
        (status = 200, description = "The user as stored.", body = UserInfo),
        (status = 400, description = "The body is invalid, the change would leave no administrator, or the credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not manage users.", body = String, content_type = "text/plain"),
        (status = 404, description = "There is no user with this name.", body = String, content_type = "text/plain"),
    )
)]
pub async fn edit(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let edit: UserEdit = caller.json()?;
    let password_hash = match edit.password {
        Some(p) if !p.is_empty() => {
            app.rules.check_password(&p).map_err(AppError::BadRequest)?;
            Some(app.auth.hash_password(p).await?)
        }
        _ => None,
    };
    let change = UserChange {
        name: edit.name,
        display_name: edit.display_name,
        email: edit.email,
        groups: edit.groups,
        password_hash,
    };
    match app
        .store
        .update_user(&caller.audit(), change)
        .await
        .map_err(last_admin)?
    {
        Some(user) => json_ok(&to_info(user)),
        None => Err(AppError::NotFound("user not found".into())),
    }
}

/// The store refuses (in the change's own transaction) a change that would
/// leave no administrator who can log in: that is the caller's `400`.
fn last_admin(e: StoreError) -> AppError {
    match e {
        StoreError::LastAdministrator => AppError::BadRequest(format!(
            "this would leave no administrator who can log in; add another user to {ADMINISTRATORS} first"
        )),
        other => other.into(),
    }
}

fn require_user_admin(caller: &Caller) -> Result<(), AppError> {
    if may_manage_users(&caller.principal, &caller.security) {
        Ok(())
    } else {
        Err(AppError::not_authorized("caller may not manage users"))
    }
}

/// Checks a user or group name: non-empty, printable, no `:`, at most 256 characters.
pub(super) fn check_name(name: &str) -> Result<(), AppError> {
    let problem = if name.is_empty() {
        "name is required"
    } else if name.trim() != name {
        "name cannot start or end with white space"
    } else if name.contains(':') {
        "name cannot contain ':' (it separates user and password in pseudo-keys)"
    } else if name.chars().count() > 256 || name.chars().any(char::is_control) {
        "name must be at most 256 printable characters"
    } else if name.chars().any(invisible) {
        "name cannot contain invisible or formatting characters (zero-width, direction overrides, …)"
    } else if same_name(name, ANONYMOUS) {
        "name: Anonymous is reserved"
    } else {
        return Ok(());
    };
    Err(AppError::BadRequest(problem.into()))
}

/// Characters that show nothing or change how others are shown: format
/// characters (zero-width, bidi controls), separators other than the ASCII
/// space, private-use, unassigned and default-ignorable fillers.
fn invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    match c.general_category() {
        G::Format | G::LineSeparator | G::ParagraphSeparator | G::PrivateUse | G::Unassigned => {
            true
        }
        G::SpaceSeparator => c != ' ',
        _ => matches!(
            c,
            '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        ),
    }
}

fn to_info(u: User) -> UserInfo {
    UserInfo {
        name: u.name,
        display_name: u.display_name,
        email: u.email,
        groups: u.groups,
    }
}
