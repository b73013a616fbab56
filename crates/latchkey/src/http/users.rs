//! The security API's user endpoints: add, list, delete, edit.

use axum::extract::State;
use axum::response::Response;
use proget_api::{UserEdit, UserInfo};

use super::{empty_ok, json_ok, query_param, AppError, AppState, Caller};
use crate::auth::hash_password;
use crate::keys::may_manage_users;
use crate::store::{StoreError, User, UserChange};

/// Handles the `POST /api/security/users/add` route.
pub async fn add(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let edit: UserEdit = caller.json()?;
    check_name(&edit.name)?;
    let password = match edit.password.as_deref() {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => return Err(AppError::BadRequest("password is required".into())),
    };
    let change = UserChange {
        name: edit.name,
        display_name: edit.display_name,
        email: edit.email,
        groups: Some(edit.groups.unwrap_or_default()),
        password_hash: Some(hash(password).await?),
    };
    match app.store.create_user(change).await {
        Ok(user) => json_ok(&to_info(user)),
        Err(StoreError::DuplicateUser) => Err(AppError::BadRequest(
            "name: a user with this name already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Handles the `GET /api/security/users/list[?search-term=…]` route.
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let search = query_param(caller.query.as_deref(), "search-term");
    let users = app.store.list_users(search.as_deref()).await?;
    json_ok(&users.into_iter().map(to_info).collect::<Vec<_>>())
}

/// Handles the `DELETE /api/security/users/delete?user=NAME` route; deleting
/// a user that does not exist is not an error.
pub async fn delete(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let name = query_param(caller.query.as_deref(), "user")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AppError::BadRequest("user is required".into()))?;
    if app.store.delete_user(&name).await? {
        tracing::info!(user = %name, "user and their personal keys deleted");
    }
    Ok(empty_ok())
}

/// Handles the `POST /api/security/users/edit` route (the body's `name` selects the user).
pub async fn edit(State(app): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    require_user_admin(&caller)?;
    let edit: UserEdit = caller.json()?;
    let password_hash = match edit.password {
        Some(p) if !p.is_empty() => Some(hash(p).await?),
        _ => None,
    };
    let change = UserChange {
        name: edit.name,
        display_name: edit.display_name,
        email: edit.email,
        groups: edit.groups,
        password_hash,
    };
    match app.store.update_user(change).await? {
        Some(user) => json_ok(&to_info(user)),
        None => Err(AppError::NotFound("user not found".into())),
    }
}

fn require_user_admin(caller: &Caller) -> Result<(), AppError> {
    if may_manage_users(&caller.principal) {
        Ok(())
    } else {
        Err(AppError::not_authorized("caller may not manage users"))
    }
}

fn check_name(name: &str) -> Result<(), AppError> {
    let problem = if name.is_empty() {
        "name is required"
    } else if name.trim() != name {
        "name cannot start or end with white space"
    } else if name.contains(':') {
        "name cannot contain ':' (it separates user and password in pseudo-keys)"
    } else if name.chars().count() > 256 || name.chars().any(char::is_control) {
        "name must be at most 256 printable characters"
    } else {
        return Ok(());
    };
    Err(AppError::BadRequest(problem.into()))
}

async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(AppError::Internal)
}

fn to_info(u: User) -> UserInfo {
    UserInfo {
        name: u.name,
        display_name: u.display_name,
        email: u.email,
        groups: u.groups,
    }
}
