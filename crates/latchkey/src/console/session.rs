//! Log-in, log-out and the [`Console`] extractor: a session stored in the
//! database (only its token's digest), checked on every page.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::{csrf, error_page, html, templates, Form};
use crate::auth::Credential;
use crate::domain::{Principal, SecurityModel};
use crate::http::{AppError, AppState, ClientAddr};
use crate::store::ConsoleSession;

/// The session cookie.
const SESSION_COOKIE: &str = "latchkey_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "latchkey_login";

/// A console page request with a live session.
pub struct Console {
    /// The user, as the API sees them.
    pub principal: Principal,
    /// The permissions the policy reads.
    pub security: Arc<SecurityModel>,
    /// The client address (for the limiter and the audit trail).
    pub peer: Option<IpAddr>,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    /// The user's name.
    pub user: String,
    /// Whether the user may manage users, groups and permissions (and every key).
    pub admin: bool,
    digest: Vec<u8>,
}

impl Console {
    /// Refuses a form whose CSRF token is not this session's.
    // The refusal is the page to send: returned once per form post, not worth boxing.
    #[allow(clippy::result_large_err)]
    pub(super) fn check_csrf(&self, form: &Form) -> Result<(), Response> {
        if csrf::matches(form.get(csrf::FIELD).as_deref(), &self.csrf) {
            Ok(())
        } else {
            Err(csrf_refused(Some(self)))
        }
    }
}

/// The page for a form post without this session's CSRF token.
pub fn csrf_refused(console: Option<&Console>) -> Response {
    html(
        StatusCode::FORBIDDEN,
        templates::message(
            console,
            "Form refused",
            "This form did not carry a valid security token (CSRF). Reload the page and try again.",
        ),
    )
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let digest = session_digest(app, &token);
        let session = app
            .store
            .session(&digest)
            .await
            .map_err(|e| error_page(None, e.into()))?
            .ok_or_else(to_login)?;
        let now = crate::store::unix_now();
        let settings = app.console;
        let expired = now - session.last_seen > settings.idle_seconds
            || now - session.created_at > settings.lifetime_seconds;
        let login = if expired {
            None
        } else {
            app.store
                .user_login(&session.user_name)
                .await
                .map_err(|e| error_page(None, e.into()))?
        };
        // A deleted user, or a changed password, ends the session (on every node:
        // the user row is read on every page).
        let login = login.filter(|l| {
            l.user.id == session.user_id
                && bool::from(
                    stamp(app, &l.password_hash)
                        .as_slice()
                        .ct_eq(session.user_stamp.as_slice()),
                )
        });
        let Some(login) = login else {
            app.store
                .delete_session(&digest)
                .await
                .map_err(|e| error_page(None, e.into()))?;
            return Err(to_login());
        };
        if now > session.last_seen {
            app.store
                .touch_session(&digest, now)
                .await
                .map_err(|e| error_page(None, e.into()))?;
        }
        let principal = Principal::User(login.user);
        let security = app
            .store
            .security()
            .await
            .map_err(|e| error_page(None, e.into()))?;
        let admin = crate::keys::may_manage_users(&principal, &security);
        Ok(Console {
            user: principal.user().map(|u| u.name.clone()).unwrap_or_default(),
            admin,
            csrf: csrf::session_token(app.auth.digester(), &token),
            principal,
            security,
            peer: parts.extensions.get::<ClientAddr>().map(|c| c.0),
            digest,
        })
    }
}

/// `GET /console/login`: the form, with a fresh double-submit token.
pub async fn login_page(State(app): State<AppState>, parts: Parts) -> Response {
    login_form(&app, &parts, StatusCode::OK, None, "")
}

fn login_form(
    app: &AppState,
    parts: &Parts,
    status: StatusCode,
    error: Option<&str>,
    user: &str,
) -> Response {
    let token = csrf::random_token();
    let mut response = html(status, templates::login(&token, error, user));
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict{}",
        secure_attr(app, parts)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `POST /console/login`: checks the form's token, charges the limiter like
/// an API log-in, verifies the password on the shared Argon2id pool, and
/// starts a session.
pub async fn login(State(app): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let headers = &parts.headers;
    let expected = cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !csrf::matches(form.get(csrf::FIELD).as_deref(), &expected) {
        return login_form(
            &app,
            &parts,
            StatusCode::FORBIDDEN,
            Some("The log-in form expired. Please log in again."),
            "",
        );
    }
    let user = form.get("user").unwrap_or_default();
    let password = form
        .0
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let peer = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let attempt = match app.limiter.as_ref().zip(peer) {
        Some((limiter, ip)) => match limiter.admit(ip).await {
            Ok(a) => Some(a),
            Err(refusal) => {
                let wait = refusal.retry_after().as_secs().max(1);
                let text = format!(
                    "Too many failed log-ins from this address. Try again in {wait} seconds."
                );
                let mut r = login_form(
                    &app,
                    &parts,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(&text),
                    &user,
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                return r;
            }
        },
        None => None,
    };
    let credential = Credential::Login {
        user: user.clone(),
        password,
    };
    let principal = match app.auth.authenticate(Some(credential), peer).await {
        Ok(p) => {
            if let Some(a) = attempt {
                a.succeeded();
            }
            p
        }
        Err(e) => {
            if e.is_refusal() {
                if let Some(a) = attempt {
                    let _ = a.failed();
                }
                tracing::info!(cause = %e, "console log-in refused");
                return login_form(
                    &app,
                    &parts,
                    StatusCode::FORBIDDEN,
                    Some("Wrong user name or password."),
                    &user,
                );
            }
            if let Some(a) = attempt {
                a.void();
            }
            return error_page(None, AppError::from(e));
        }
    };
    match start_session(&app, &principal).await {
        Ok(token) => {
            let mut response = Redirect::to("/console/keys").into_response();
            let secure = secure_attr(&app, &parts);
            let cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                app.console.lifetime_seconds
            );
            let gone = format!("{LOGIN_COOKIE}=; Path=/console/login; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
            for c in [cookie, gone] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err(e) => error_page(None, e),
    }
}

/// Stores a new session for a verified user; returns its token.
async fn start_session(app: &AppState, principal: &Principal) -> Result<String, AppError> {
    let Some(user) = principal.user() else {
        return Err(AppError::not_authorized("only users log in to the console"));
    };
    // The password hash read now: the session lives only while it stays.
    let login = app
        .store
        .user_login(&user.name)
        .await?
        .ok_or_else(|| AppError::not_authorized("user vanished during log-in"))?;
    let now = crate::store::unix_now();
    let settings = app.console;
    app.store
        .prune_sessions(now - settings.idle_seconds, now - settings.lifetime_seconds)
        .await?;
    let token = csrf::random_token();
    app.store
        .create_session(&ConsoleSession {
            digest: session_digest(app, &token),
            user_id: login.user.id,
            user_name: login.user.name.clone(),
            user_stamp: stamp(app, &login.password_hash),
            created_at: now,
            last_seen: now,
        })
        .await?;
    tracing::info!(user = %login.user.name, "console session started");
    Ok(token)
}

/// `POST /console/logout`: deletes the session server-side.
pub async fn logout(
    State(app): State<AppState>,
    console: Console,
    parts: Parts,
    body: Bytes,
) -> Response {
    if let Err(r) = console.check_csrf(&Form::parse(&body)) {
        return r;
    }
    if let Err(e) = app.store.delete_session(&console.digest).await {
        return error_page(Some(&console), e.into());
    }
    let mut response = Redirect::to("/console/login").into_response();
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_attr(&app, &parts)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

/// The stored digest of a session token.
fn session_digest(app: &AppState, token: &str) -> Vec<u8> {
    app.auth
        .digester()
        .key(&format!("console-session:{token}"))
        .as_bytes()
        .to_vec()
}

/// A digest of a password hash, kept with the session.
fn stamp(app: &AppState, password_hash: &str) -> Vec<u8> {
    app.auth
        .digester()
        .key(&format!("console-stamp:{password_hash}"))
        .as_bytes()
        .to_vec()
}

/// `; Secure` when `--public-url` is https or a trusted proxy says the
/// request came over TLS (`X-Forwarded-Proto: https`).
fn secure_attr(app: &AppState, parts: &Parts) -> &'static str {
    let headers = &parts.headers;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let proxied_tls = peer.is_some_and(|ip| app.trusted_proxies.trusts(ip))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if app.console.secure_cookies || proxied_tls {
        "; Secure"
    } else {
        ""
    }
}

/// A cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}
