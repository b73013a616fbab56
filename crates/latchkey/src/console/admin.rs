//! Users, groups, permissions and the audit trail: each page lists through
//! the API's list handler and changes through its add, edit and delete
//! handlers, so that a non-administrator gets the API's `403`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use proget_api::{AuditEntry, GroupInfo, PermissionInfo, TaskInfo, UserInfo};
use serde_json::{json, Value};

use super::templates::admin::{self as pages, urlencode, Draft};
use super::{call, caller, decode, error_page, html, query, see_other, Console, Form};
use crate::http::{
    audit as audit_api, groups as groups_api, permissions as perms_api, tasks, users as users_api,
};
use crate::http::{AppError, AppState};

/// Reads one parameter of a page's query string.
fn param(query: &Option<String>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A comma-separated list field.
fn list_field(form: &Form, name: &str) -> Vec<String> {
    form.get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Calls a list handler and decodes its answer.
async fn fetch<T: serde::de::DeserializeOwned>(
    handler: impl std::future::Future<Output = Result<Response, AppError>>,
) -> Result<T, AppError> {
    decode(&call(handler).await?)
}

/// A draft holding the posted fields (never a password) and one error,
/// placed at the field its message names first.
fn refused(form: &Form, message: String, fields: &[&str]) -> Draft {
    let mut d = Draft::default();
    for (k, v) in &form.0 {
        if k != "password" && k != super::csrf::FIELD {
            d.values.insert(k.clone(), v.clone());
        }
    }
    let first = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    let field = fields
        .iter()
        .find(|f| f.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("");
    d.errors.insert(field.into(), message);
    d
}

const USER_FIELDS: &[&str] = &["name", "displayName", "email", "groups", "password"];

/// `GET /console/users[?q=…]`.
pub async fn users(State(app): State<AppState>, c: Console, RawQuery(q): RawQuery) -> Response {
    users_page(
        &app,
        &c,
        param(&q, "q"),
        Draft::default(),
        param(&q, "done"),
        StatusCode::OK,
    )
    .await
}

async fn users_page(
    app: &AppState,
    c: &Console,
    search: Option<String>,
    d: Draft,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let q = search.as_deref().map(|s| query("search-term", s));
    match fetch::<Vec<UserInfo>>(users_api::list(
        State(app.clone()),
        caller(c, q, Vec::new()),
    ))
    .await
    {
        Ok(list) => html(
            status,
            pages::users(
                c,
                &list,
                search.as_deref().unwrap_or(""),
                &d,
                done.as_deref(),
            ),
        ),
        Err(e) => error_page(Some(c), e),
    }
}

/// `POST /console/users`: users/add.
pub async fn add_user(State(app): State<AppState>, c: Console, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let edit = json!({
        "name": form.get("name").unwrap_or_default(),
        "displayName": form.get("displayName"),
        "email": form.get("email"),
        "groups": list_field(&form, "groups"),
        "password": form.0.iter().find(|(k, _)| k == "password").map(|(_, v)| v.clone()),
    });
    match call(users_api::add(
        State(app.clone()),
        caller(&c, None, edit.to_string().into_bytes()),
    ))
    .await
    {
        Ok(_) => see_other(&format!("/console/users?{}", query("done", "User added."))),
        Err(AppError::BadRequest(m)) => {
            users_page(
                &app,
                &c,
                None,
                refused(&form, m, USER_FIELDS),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => error_page(Some(&c), e),
    }
}

async fn find_user(app: &AppState, c: &Console, name: &str) -> Result<UserInfo, AppError> {
    let list: Vec<UserInfo> = fetch(users_api::list(
        State(app.clone()),
        caller(c, Some(query("search-term", name)), Vec::new()),
    ))
    .await?;
    list.into_iter()
        .find(|u| crate::domain::same_name(&u.name, name))
        .ok_or_else(|| AppError::NotFound(format!("there is no user named {name}")))
}

/// `GET /console/users/{name}`.
pub async fn user_page(
    State(app): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match find_user(&app, &c, &name).await {
        Ok(u) => html(
            StatusCode::OK,
            pages::user(&c, &u, &Draft::default(), param(&q, "done").as_deref()),
        ),
        Err(e) => error_page(Some(&c), e),
    }
}

/// `POST /console/users/{name}`: users/edit.
pub async fn edit_user(
    State(app): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let mut edit = json!({
        "name": name,
        "displayName": form.get("displayName").unwrap_or_default(),
        "email": form.get("email").unwrap_or_default(),
        "groups": list_field(&form, "groups"),
    });
    if let Some(p) = form
        .0
        .iter()
        .find(|(k, v)| k == "password" && !v.is_empty())
    {
        edit["password"] = Value::from(p.1.clone());
    }
    let back = format!("/console/users/{}", urlencode(&name));
    match call(users_api::edit(
        State(app.clone()),
        caller(&c, None, edit.to_string().into_bytes()),
    ))
    .await
    {
        Ok(_) => see_other(&format!("{back}?{}", query("done", "Saved."))),
        Err(AppError::BadRequest(m)) => match find_user(&app, &c, &name).await {
            Ok(u) => html(
                StatusCode::BAD_REQUEST,
                pages::user(&c, &u, &refused(&form, m, USER_FIELDS), None),
            ),
            Err(e) => error_page(Some(&c), e),
        },
        Err(e) => error_page(Some(&c), e),
    }
}

/// `POST /console/users/{name}/delete`: users/delete (with the confirmation box ticked).
pub async fn delete_user(
    State(app): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    if form.get("confirm").as_deref() != Some("yes") {
        return error_page(
            Some(&c),
            AppError::BadRequest("tick the confirmation box to delete the user".into()),
        );
    }
    match call(users_api::delete(
        State(app),
        caller(&c, Some(query("user", &name)), Vec::new()),
    ))
    .await
    {
        Ok(_) => see_other(&format!(
            "/console/users?{}",
            query("done", &format!("User {name} deleted."))
        )),
        Err(e) => error_page(Some(&c), e),
    }
}

/// `GET /console/groups`.
pub async fn groups(State(app): State<AppState>, c: Console, RawQuery(q): RawQuery) -> Response {
    groups_page(
        &app,
        &c,
        Draft::default(),
        param(&q, "done"),
        StatusCode::OK,
    )
    .await
}

async fn groups_page(
    app: &AppState,
    c: &Console,
    d: Draft,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    match fetch::<Vec<GroupInfo>>(groups_api::list(
        State(app.clone()),
        caller(c, None, Vec::new()),
    ))
    .await
    {
        Ok(list) => html(status, pages::groups(c, &list, &d, done.as_deref())),
        Err(e) => error_page(Some(c), e),
    }
}

/// Calls a group write and shows the group page after it.
async fn group_write(
    app: &AppState,
    c: &Console,
    form: &Form,
    result: Result<Bytes, AppError>,
    done: &str,
) -> Response {
    match result {
        Ok(_) => see_other(&format!("/console/groups?{}", query("done", done))),
        Err(AppError::BadRequest(m)) => {
            groups_page(
                app,
                c,
                refused(form, m, &["name", "members"]),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => error_page(Some(c), e),
    }
}

/// `POST /console/groups`: groups/add.
pub async fn add_group(State(app): State<AppState>, c: Console, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let info = json!({ "name": form.get("name").unwrap_or_default(), "members": list_field(&form, "members") });
    let result = call(groups_api::add(
        State(app.clone()),
        caller(&c, None, info.to_string().into_bytes()),
    ))
    .await;
    group_write(&app, &c, &form, result, "Group added.").await
}

/// `POST /console/groups/{name}`: groups/edit (the members).
pub async fn edit_group(
    State(app): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let info = json!({ "name": name, "members": list_field(&form, "members") });
    let result = call(groups_api::edit(
        State(app.clone()),
        caller(&c, None, info.to_string().into_bytes()),
    ))
    .await;
    group_write(&app, &c, &form, result, &format!("Group {name} saved.")).await
}

/// `POST /console/groups/{name}/delete`: groups/delete.
pub async fn delete_group(
    State(app): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let result = call(groups_api::delete(
        State(app.clone()),
        caller(&c, Some(query("group", &name)), Vec::new()),
    ))
    .await;
    group_write(&app, &c, &form, result, &format!("Group {name} deleted.")).await
}

/// `GET /console/permissions`.
pub async fn permissions(
    State(app): State<AppState>,
    c: Console,
    RawQuery(q): RawQuery,
) -> Response {
    permissions_page(
        &app,
        &c,
        Draft::default(),
        param(&q, "done"),
        StatusCode::OK,
    )
    .await
}

async fn permissions_page(
    app: &AppState,
    c: &Console,
    d: Draft,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let list = fetch::<Vec<PermissionInfo>>(perms_api::list(
        State(app.clone()),
        caller(c, None, Vec::new()),
    ))
    .await;
    let tasks = fetch::<Vec<TaskInfo>>(tasks::list(caller(c, None, Vec::new()))).await;
    match (list, tasks) {
        (Ok(list), Ok(tasks)) => html(
            status,
            pages::permissions(c, &list, &tasks, &d, done.as_deref()),
        ),
        (Err(e), _) | (_, Err(e)) => error_page(Some(c), e),
    }
}

/// `POST /console/permissions`: permissions/add.
pub async fn add_permission(State(app): State<AppState>, c: Console, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = c.check_csrf(&form) {
        return r;
    }
    let info = json!({
        "user": form.get("user"),
        "group": form.get("group"),
        "task": form.get("task").unwrap_or_default(),
        "feed": form.get("feed"),
        "feedGroup": form.get("feedGroup"),
        "deny": form.get("deny").as_deref() == Some("true"),
    });
    match call(perms_api::add(
        State(app.clone()),
        caller(&c, None, info.to_string().into_bytes()),
    ))
    .await
    {
        Ok(_) => see_other(&format!(
            "/console/permissions?{}",
            query("done", "Permission added.")
        )),
        Err(AppError::BadRequest(m)) => {
            let d = refused(
                &form,
                m,
                &["user", "group", "task", "feed", "feedGroup", "deny"],
            );
            permissions_page(&app, &c, d, None, StatusCode::BAD_REQUEST).await
        }
        Err(e) => error_page(Some(&c), e),
    }
}

/// `POST /console/permissions/{id}/delete`: permissions/delete.
pub async fn delete_permission(
    State(app): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = c.check_csrf(&Form::parse(&body)) {
        return r;
    }
    match call(perms_api::delete(
        State(app),
        caller(&c, Some(query("id", &id)), Vec::new()),
    ))
    .await
    {
        Ok(_) => see_other(&format!(
            "/console/permissions?{}",
            query("done", &format!("Permission {id} deleted."))
        )),
        Err(e) => error_page(Some(&c), e),
    }
}

/// Audit entries per page.
const AUDIT_PAGE: usize = 50;

/// `GET /console/audit[?action=…][&target=…][&before=ID]`.
pub async fn audit(State(app): State<AppState>, c: Console, RawQuery(q): RawQuery) -> Response {
    let action = param(&q, "action").unwrap_or_default();
    let target = param(&q, "target").unwrap_or_default();
    let api = {
        let mut api = form_urlencoded::Serializer::new(String::new());
        api.append_pair("limit", &AUDIT_PAGE.to_string());
        for (name, value) in [("action", &action), ("target", &target)] {
            if !value.is_empty() {
                api.append_pair(name, value);
            }
        }
        if let Some(b) = param(&q, "before") {
            api.append_pair("before", &b);
        }
        api.finish()
    };
    match fetch::<Vec<AuditEntry>>(audit_api::list(
        State(app),
        caller(&c, Some(api), Vec::new()),
    ))
    .await
    {
        Ok(entries) => {
            let older = (entries.len() == AUDIT_PAGE)
                .then(|| entries.last().map(|e| e.id))
                .flatten();
            html(
                StatusCode::OK,
                pages::audit(&c, &entries, &action, &target, older),
            )
        }
        Err(e) => error_page(Some(&c), e),
    }
}
