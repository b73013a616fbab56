//! The security API's task endpoint: the built-in tasks, read-only.

use axum::response::Response;
use proget_api::TaskInfo;

use super::{json_ok, security_admin, AppError, Caller};
use crate::domain::Task;

/// Handles the `GET /api/security/tasks/list` route: every built-in task and
/// the feed permissions it grants, in [`Task::ALL`] order.
#[utoipa::path(
    get,
    path = "/api/security/tasks/list",
    tag = "security",
    responses(
        (status = 200, description = "Every built-in task and the feed permissions it grants.", body = Vec<TaskInfo>),
        (status = 400, description = "The credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the caller may not use the security API.", body = String, content_type = "text/plain"),
    )
)]
pub async fn list(caller: Caller) -> Result<Response, AppError> {
    security_admin(&caller)?;
    let tasks: Vec<TaskInfo> = Task::ALL
        .into_iter()
        .map(|t| TaskInfo {
            name: t.name().to_owned(),
            permissions: t.permissions().to_vec(),
        })
        .collect();
    json_ok(&tasks)
}
