//! `GET /health` and `GET /health/json`: no credential needed.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use proget_api::HealthInfo;

use super::{error, query_param, AppState};

const OK: &str = "OK";

/// Handles the `GET /health[?format=json]` route.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    security(()),
    params(("format" = Option<String>, Query, description = "`json`: answer as `/health/json` does.")),
    responses(
        (status = 200, description = "`OK`: the database answers (with `format=json`: the health object).", content(
            (String = "text/plain"),
            (HealthInfo = "application/json"),
        )),
        (status = 500, description = "The database is not answering (with `format=json`: the health object).", content(
            (String = "text/plain"),
            (HealthInfo = "application/json"),
        )),
    )
)]
pub async fn health(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if query_param(query.as_deref(), "format").is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        return health_json(State(app)).await;
    }
    match database_problem(&app).await {
        None => error::text(StatusCode::OK, OK.into()),
        Some(reason) => error::text(StatusCode::INTERNAL_SERVER_ERROR, reason),
    }
}

/// Handles the `GET /health/json` route.
#[utoipa::path(
    get,
    path = "/health/json",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The health object: the database answers.", body = HealthInfo),
        (status = 500, description = "The health object: the database is not answering.", body = HealthInfo),
    )
)]
pub async fn health_json(State(app): State<AppState>) -> Response {
    let problem = database_problem(&app).await;
    let status = |ok: bool| if ok { OK } else { "Error" }.to_owned();
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let info = HealthInfo {
        application_name: "Latchkey".into(),
        version_number: version.clone(),
        release_number: version,
        database_status: status(problem.is_none()),
        database_status_details: problem.clone(),
        license_status: status(true),
        service_status: status(true),
        service_status_detail: app.store.sync_detail(),
    };
    let code = if problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = serde_json::to_vec(&info).unwrap_or_default();
    (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `None` when the database answers; otherwise a reason safe to show anyone
/// (the details go to the log).
async fn database_problem(app: &AppState) -> Option<String> {
    match app.store.ping().await {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "health check: database unavailable");
            Some("the database is not answering; see the server log".into())
        }
    }
}
