//! The web console: server-rendered pages for keys, users, groups,
//! permissions and the audit trail, under `/console/` (and `/`).
//!
//! Every page acts through the API's own handlers (a [`Caller`] built from
//! the session), so the console applies exactly the API's rules; only the
//! key list reads the store itself ([`Store::search_keys`]), after the same
//! [`key_access`] decision the API's list makes.
//!
//! [`Store::search_keys`]: crate::store::Store::search_keys

mod admin;
mod csrf;
mod keys;
mod session;
mod templates;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;

use session::Console;

use crate::config::ServeArgs;
use crate::http::{AppError, AppState, Caller};

/// Session and cookie settings of the console.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Seconds without activity after which a session ends.
    pub idle_seconds: i64,
    /// Seconds after log-in at which a session ends.
    pub lifetime_seconds: i64,
    /// Whether cookies are always `Secure` (`--public-url` is https).
    pub secure_cookies: bool,
}

impl Settings {
    /// The settings `latchkey serve` was given.
    pub fn from_args(args: &ServeArgs) -> Self {
        Settings {
            idle_seconds: args.session_idle_timeout,
            lifetime_seconds: args.session_lifetime,
            secure_cookies: args
                .public_url
                .as_deref()
                .is_some_and(|u| u.len() >= 8 && u[..8].eq_ignore_ascii_case("https://")),
        }
    }
}

/// The console's routes, each answer with the console's security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/console", get(home))
        .route("/console/", get(home))
        .route(
            "/console/login",
            get(session::login_page).post(session::login),
        )
        .route("/console/logout", axum::routing::post(session::logout))
        .route("/console/keys", get(keys::list))
        .route("/console/keys/new", get(keys::new_page).post(keys::create))
        .route("/console/keys/{id}", get(keys::show))
        .route(
            "/console/keys/{id}/delete",
            get(keys::confirm_delete).post(keys::delete),
        )
        .route("/console/users", get(admin::users).post(admin::add_user))
        .route(
            "/console/users/{name}",
            get(admin::user_page).post(admin::edit_user),
        )
        .route(
            "/console/users/{name}/delete",
            axum::routing::post(admin::delete_user),
        )
        .route("/console/groups", get(admin::groups).post(admin::add_group))
        .route(
            "/console/groups/{name}",
            axum::routing::post(admin::edit_group),
        )
        .route(
            "/console/groups/{name}/delete",
            axum::routing::post(admin::delete_group),
        )
        .route(
            "/console/permissions",
            get(admin::permissions).post(admin::add_permission),
        )
        .route(
            "/console/permissions/{id}/delete",
            axum::routing::post(admin::delete_permission),
        )
        .route("/console/audit", get(admin::audit))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .layer(middleware::map_response(security_headers))
}

/// `/`: the key list (which sends visitors without a session to log in).
async fn home() -> Redirect {
    Redirect::to("/console/keys")
}

/// No inline script or style, no framing, no referrer, nothing cached.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page with a status.
fn html(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A form post's fields, in order.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Bytes) -> Self {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field, trimmed; `None` when absent or empty.
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of a field (checkboxes, multi-selects).
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// What an API handler answered: its JSON body, or the error it refused with.
async fn call(
    handler: impl std::future::Future<Output = Result<Response, AppError>>,
) -> Result<Bytes, AppError> {
    let response = handler.await?;
    axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading an API answer: {e}")))
}

/// Decodes an API handler's JSON answer.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("decoding an API answer: {e}")))
}

/// The page for an error an API handler (or the console) returned.
fn error_page(console: Option<&Console>, e: AppError) -> Response {
    let (status, title, text) = match &e {
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Not possible", m.clone()),
        AppError::Forbidden { public, cause } => {
            tracing::info!(cause = %cause, "console page refused");
            (StatusCode::FORBIDDEN, "Not allowed", (*public).to_owned())
        }
        AppError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
        AppError::Throttled { status, public } => (*status, "Busy", (*public).to_owned()),
        AppError::Internal(err) => {
            let id = crate::http::new_error_id();
            tracing::error!(error_id = %id, error = %format!("{err:#}"), "console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                format!("internal error (error id {id})"),
            )
        }
    };
    html(status, templates::message(console, title, &text))
}

/// An API request on behalf of the console's user.
fn caller(console: &Console, query: Option<String>, body: Vec<u8>) -> Caller {
    Caller {
        principal: console.principal.clone(),
        query,
        body: Bytes::from(body),
        peer: console.peer,
        security: console.security.clone(),
    }
}

/// Encodes one query parameter.
fn query(name: &str, value: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish()
}

/// `303 See Other` to a console page (after a successful post).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
