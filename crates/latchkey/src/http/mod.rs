//! The HTTP API: one module per resource, thin handlers, one router.

mod access;
pub(crate) mod access_logs;
pub(crate) mod api_keys;
pub(crate) mod audit;
mod body;
pub mod client;
mod error;
mod forward;
pub(crate) mod groups;
mod health;
pub mod leaked;
pub mod limiter;
pub mod metrics;
pub mod openapi;
pub(crate) mod permissions;
mod rotate;
pub(crate) mod tasks;
pub(crate) mod users;
mod verify;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use proget_api::paths;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::{new_error_id, AppError, ErrorCause};
// Pure parsers, public for fuzzing and tests (fuzz/).
pub use forward::{forwarded_query, permission_of, Requirement};
pub use permissions::parse_id as parse_permission_id;

use crate::auth::{extract_credential, Authenticator};
use crate::domain::{Principal, SecurityModel};
use crate::store::Store;

/// Largest request body accepted; larger is `413`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Limits that protect the server from slow or too many clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests served at once; more get 503.
    pub max_in_flight: usize,
}

/// What every handler shares.
pub struct App {
    /// The storage back end.
    pub store: Arc<dyn Store>,
    /// Credential verification.
    pub auth: Authenticator,
    /// Whether create accepts a caller-chosen `key`.
    pub custom_keys: bool,
    /// Configured limits on custom keys, personal keys and passwords.
    pub rules: crate::keys::InputRules,
    /// Longest time a client may take to send a request body; then 408.
    pub body_timeout: Duration,
    /// Refuses addresses with too many failed authentications; `None` when disabled.
    pub limiter: Option<limiter::Limiter>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: client::TrustedProxies,
    /// Records last use and access logs.
    pub usage: Arc<crate::usage::Usage>,
    /// Keys that sign leaked-key reports; `None`: the endpoint is `404`.
    pub leak_keys: Option<leaked::LeakReportKeys>,
    /// The web console's session and cookie settings.
    pub console: crate::console::Settings,
    /// The bearer token `/metrics` requires; `None`: no credential needed.
    pub metrics_token: Option<metrics::MetricsToken>,
}

/// Shared state of the router.
pub type AppState = Arc<App>;

/// Builds the whole HTTP service: every route of the API, inside the
/// cross-cutting layers (outermost first: `front_door` — request log, head
/// limits, load shedding — then the panic catcher). The layers wrap the
/// router once, not each route (as `Router::layer` would), so that a request
/// pays for one boxed future per layer and no service clone.
pub fn service(
    app: AppState,
    limits: Limits,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let door = Arc::new(FrontDoor {
        in_flight: Semaphore::new(limits.max_in_flight),
        body_timeout: app.body_timeout,
        bodies: body::BodyGate::new(body::BODIES_PER_CLIENT, body::BODY_BYTES_PER_CLIENT),
        trusted_proxies: app.trusted_proxies.clone(),
        usage: app.usage.clone(),
    });
    let router = Router::new()
        .route(paths::API_KEYS_CREATE, post(api_keys::create))
        .route(paths::API_KEYS_LIST, get(api_keys::list))
        .route(paths::API_KEYS_DELETE, post(api_keys::delete))
        .route(paths::API_KEYS_ROTATE, post(rotate::rotate))
        .route(paths::API_KEYS_LEAKED, post(leaked::leaked))
        .route(paths::API_KEYS_LOGS, get(access_logs::logs))
        .route(paths::API_KEYS_VERIFY, post(verify::verify))
        .route(paths::API_KEYS_SELF, get(verify::own_key))
        .route(paths::AUTH_FORWARD, any(forward::forward))
        .route(paths::USERS_ADD, post(users::add))
        .route(paths::USERS_LIST, get(users::list))
        .route(paths::USERS_DELETE, delete(users::delete))
        .route(paths::USERS_EDIT, post(users::edit))
        .route(paths::PERMISSIONS_LIST, get(permissions::list))
        .route(paths::PERMISSIONS_ADD, post(permissions::add))
        .route(paths::PERMISSIONS_DELETE, post(permissions::delete))
        .route(paths::GROUPS_LIST, get(groups::list))
        .route(paths::GROUPS_ADD, post(groups::add))
        .route(paths::GROUPS_EDIT, post(groups::edit))
        .route(paths::GROUPS_DELETE, post(groups::delete))
        .route(paths::TASKS_LIST, get(tasks::list))
        .route(paths::AUDIT_LIST, get(audit::list))
        .route(paths::HEALTH, get(health::health))
        .route(paths::HEALTH_JSON, get(health::health_json))
        .route(crate::metrics::METRICS_PATH, get(metrics::metrics))
        .route(paths::OPENAPI, get(openapi::openapi))
        .merge(crate::console::router())
        .fallback(not_found)
        .with_state(app);
    ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(door, front_door))
        .layer(CatchPanicLayer::custom(panic_response))
        .service(router)
}

/// Longest request target (path and query) accepted; longer is `414`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes accepted; more is `431`. (hyper's own buffer limit is
/// only checked while a head is incomplete, so a large head read at once passes it.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What [`front_door`] shares between requests.
struct FrontDoor {
    /// Requests being processed (bodies already read); more get `503`.
    in_flight: Semaphore,
    /// Longest time for a whole request body.
    body_timeout: Duration,
    /// Bodies being read, per client address.
    bodies: body::BodyGate,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: client::TrustedProxies,
    /// Where access-log entries go.
    usage: Arc<crate::usage::Usage>,
}

/// The client address of a request (see [`client`]), set by the front door
/// for every request that came over a socket.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client address the front door found, if the request came over a socket.
fn client_addr(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<ClientAddr>().map(|c| c.0)
}

/// What every request passes first, in one layer (each layer costs a boxed
/// future per request): the request log around everything, then oversized
/// heads refused, then the body read (bounded per client address and by a
/// minimum rate), then load shedding. A processing permit is taken only once
/// the body is in, so slow senders cannot hold permits; `/health` is never
/// shed.
async fn front_door(State(door): State<Arc<FrontDoor>>, mut req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| door.trusted_proxies.client(c.0.ip(), req.headers()));
    if let Some(ip) = client {
        req.extensions_mut().insert(ClientAddr(ip));
    }
    let started = Instant::now();
    let route = crate::metrics::route_of(req.uri().path());
    let method = crate::metrics::method_index(req.method());
    let mut logged = start_log(&mut req, client, started);
    let mut recording = access::Recording::start(req.extensions_mut());
    let response = match admit(&door, req, client).await {
        Ok((req, body, health)) => {
            recording.set_body(&body);
            // An empty body needs no allocation (forward auth never has one).
            let req = req.map(|()| {
                if body.is_empty() {
                    Body::empty()
                } else {
                    Body::from(body)
                }
            });
            if health {
                next.run(req).await
            } else {
                match door.in_flight.try_acquire() {
                    Ok(_permit) => next.run(req).await,
                    Err(_) => overloaded(),
                }
            }
        }
        Err(refusal) => refusal,
    };
    // One clock read for the log line and the metrics.
    let took = started.elapsed();
    let response = recording.finish(finish_log(response, logged.take(), took), &door.usage);
    crate::metrics::METRICS.request(route, method, response.status().as_u16(), took);
    response
}

/// Checks the head and reads the body; returns the request head, its body
/// in memory, and whether it is a health check (never shed).
async fn admit(
    door: &FrontDoor,
    req: Request,
    client: Option<std::net::IpAddr>,
) -> Result<(axum::http::Request<()>, Bytes, bool), Response> {
    if let Some(refusal) = oversized_head(&req) {
        return Err(refusal);
    }
    let health = req.uri().path().starts_with(paths::HEALTH);
    let (parts, body) = req.into_parts();
    if parts.uri.path() == paths::AUTH_FORWARD {
        // Forward auth ignores the body: it is never read.
        return Ok((Request::from_parts(parts, ()), Bytes::new(), health));
    }
    let body = body::read(
        &door.bodies,
        client,
        &parts.headers,
        body,
        door.body_timeout,
    )
    .await?;
    Ok((Request::from_parts(parts, ()), body, health))
}

/// Refuses oversized request targets, headers and declared bodies.
fn oversized_head(req: &Request) -> Option<Response> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(error::text(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_len > MAX_HEADER_BYTES {
        return Some(error::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    let declared_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Forward auth never reads its body, so its size does not matter.
    (declared_body.is_some_and(|n| n > MAX_BODY_BYTES as u64)
        && req.uri().path() != paths::AUTH_FORWARD)
        .then(body_too_large)
}

pub(crate) fn body_too_large() -> Response {
    error::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// `503` once `max_in_flight` requests are being served (the semaphore is
/// shared by every route: a per-route limit would not bound the server).
fn overloaded() -> Response {
    let mut r = error::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is overloaded; retry shortly".into(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

async fn not_found() -> AppError {
    AppError::NotFound("not found".into())
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message may hold request data: only the id leaves the server.
    let id = error::new_error_id();
    tracing::error!(error_id = %id, "handler panicked");
    error::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        error::internal_error_body(&id),
    )
}

/// Who made a request, filled in by [`Caller`] for the request log.
#[derive(Clone, Default)]
struct RequestNote(Arc<OnceLock<String>>);

/// What the request log needs from a request, taken only when it will be logged.
struct LogEntry {
    start: Instant,
    method: axum::http::Method,
    path: String,
    client: Option<std::net::IpAddr>,
    note: RequestNote,
}

/// The request log's start of a request. Dropped before
/// [`take`](LogStart::take) (the client went away before the response), it
/// logs the request as aborted.
struct LogStart(Option<LogEntry>);

impl LogStart {
    fn take(&mut self) -> Option<LogEntry> {
        self.0.take()
    }
}

impl Drop for LogStart {
    fn drop(&mut self) {
        if let Some(e) = self.0.take() {
            tracing::info!(
                method = %e.method,
                path = e.path,
                client = e.client.map(tracing::field::display),
                latency_us = e.start.elapsed().as_micros() as u64,
                caller = e.note.0.get().map(String::as_str),
                "request aborted: the client went away before the response"
            );
        }
    }
}

fn start_log(req: &mut Request, client: Option<std::net::IpAddr>, start: Instant) -> LogStart {
    LogStart(tracing::enabled!(tracing::Level::INFO).then(|| {
        let note = RequestNote::default();
        req.extensions_mut().insert(note.clone());
        let path: String = req.uri().path().chars().take(200).collect();
        LogEntry {
            start,
            method: req.method().clone(),
            path,
            client,
            note,
        }
    }))
}

/// Gives a bodiless error a `text/plain` body, then logs one line for the
/// request (never the query string, which may hold a key).
fn finish_log(mut response: Response, logged: Option<LogEntry>, took: Duration) -> Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, error::TEXT_PLAIN);
        response = Response::from_parts(parts, Body::from(reason));
    }
    if let Some(e) = logged {
        let cause = response
            .extensions()
            .get::<ErrorCause>()
            .map(|c| c.0.as_str());
        tracing::info!(
            method = %e.method,
            path = e.path,
            client = e.client.map(tracing::field::display),
            status = status.as_u16(),
            latency_us = took.as_micros() as u64,
            caller = e.note.0.get().map(String::as_str),
            cause,
            "request"
        );
    }
    response
}

/// An authenticated API request: the verified caller, the query string and
/// the body (read once, since a credential may live in it).
pub struct Caller {
    /// Who is calling.
    pub principal: Principal,
    /// The raw query string.
    pub query: Option<String>,
    /// The request body.
    pub body: Bytes,
    /// The client's address (`None` in-process), for the limiter.
    pub peer: Option<std::net::IpAddr>,
    /// The permissions the policy reads for this caller (empty for system
    /// and feed keys, which no permission concerns: see
    /// [`policy::reads_permissions`](crate::policy::reads_permissions)).
    pub security: Arc<SecurityModel>,
}

impl Caller {
    /// Who is calling and from where, for the audit entry of a change.
    pub fn audit(&self) -> crate::domain::AuditContext {
        crate::domain::AuditContext::of(&self.principal, self.peer)
    }

    /// Parses the body as JSON; errors name the property at fault.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        parse_json(&self.body)
    }
}

/// Parses a JSON body: one value and nothing after it; errors name the property at fault.
/// Public for fuzzing and tests.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            AppError::BadRequest(format!("invalid JSON: {inner}"))
        } else {
            AppError::BadRequest(format!("{path}: {inner}"))
        }
    })?;
    // One JSON value and nothing after it (as the credential reader reads it).
    de.end()
        .map_err(|e| AppError::BadRequest(format!("invalid JSON: {e}")))?;
    Ok(value)
}

impl FromRequest<AppState> for Caller {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        // Requests without a peer address (in-process tests) are not limited.
        let peer = client_addr(&parts.extensions);
        // Charged on arrival, so that concurrent guesses cannot overshoot the
        // limit and a client that hangs up is still counted.
        let attempt = match app.limiter.as_ref().zip(peer) {
            Some((limiter, ip)) => Some(limiter.admit(ip).await.map_err(too_many_failures)?),
            None => None,
        };
        // The front door has read the body into memory already.
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| body_too_large())?;
        let query = parts.uri.query();
        // Two credentials (or an unreadable one) fail like a wrong one: 400, and counted.
        let verified = match extract_credential(&parts.headers, query, &body) {
            Ok(credential) => app.auth.authenticate(credential, peer).await,
            Err(e) => Err(e),
        };
        let principal = match verified {
            Ok(principal) => {
                if let Some(attempt) = attempt {
                    attempt.succeeded();
                }
                principal
            }
            Err(e) => {
                if let Some(attempt) = attempt {
                    if e.is_refusal() {
                        let _ = attempt.failed();
                    } else {
                        attempt.void();
                    }
                }
                return Err(AppError::from(e).into_response());
            }
        };
        if let Principal::Key(k) = &principal {
            app.usage.used(k.id, peer);
            access::KeySlot::request(&parts, k, peer);
        }
        if let Some(note) = parts.extensions.get::<RequestNote>() {
            let label = match &principal {
                Principal::Key(k) => format!("key {}", k.id),
                Principal::User(u) => format!("user {}", u.name),
            };
            let _ = note.0.set(label);
        }
        let security = permissions_for(app, Some(&principal))
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        Ok(Caller {
            security,
            principal,
            query: query.map(str::to_owned),
            body,
            peer,
        })
    }
}

/// The permissions a decision for this principal reads: the stored snapshot,
/// or none for keys the policy decides alone (no store call for them).
async fn permissions_for(
    app: &AppState,
    principal: Option<&Principal>,
) -> Result<Arc<SecurityModel>, crate::store::StoreError> {
    static NONE: OnceLock<Arc<SecurityModel>> = OnceLock::new();
    if crate::policy::reads_permissions(principal) {
        app.store.security().await
    } else {
        Ok(NONE.get_or_init(Arc::default).clone())
    }
}

/// `429` for an address the limiter refuses, with `Retry-After` in whole seconds.
fn too_many_failures(refusal: limiter::Refusal) -> Response {
    crate::metrics::METRICS.auth(crate::metrics::AuthOutcome::Blocked);
    let wait = refusal.retry_after();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let (text, cause) = match refusal {
        limiter::Refusal::Blocked(_) => (
            format!("too many failed authentications from this address; retry in {seconds} seconds"),
            "address blocked after repeated failed authentications",
        ),
        limiter::Refusal::Busy => (
            format!("too many authentications in progress from this address; retry in {seconds} seconds"),
            "address has as many authentications in progress as failures left",
        ),
    };
    let mut response = error::text(StatusCode::TOO_MANY_REQUESTS, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response.extensions_mut().insert(ErrorCause(cause.into()));
    response
}

/// A JSON `200` response.
fn json_ok<T: serde::Serialize>(value: &T) -> Result<Response, AppError> {
    let body = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    Ok(json_response(body))
}

/// A `200` with a JSON body in one buffer (so with `Content-Length`).
fn json_response(body: impl Into<Body>) -> Response {
    let body: Body = body.into();
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An empty `200` response.
fn empty_ok() -> Response {
    error::text(StatusCode::OK, String::new())
}

/// Refuses callers other than administrators and full-control system keys
/// (the security API's rule) with `403`.
fn security_admin(caller: &Caller) -> Result<(), AppError> {
    if crate::keys::may_manage_users(&caller.principal, &caller.security) {
        Ok(())
    } else {
        Err(AppError::not_authorized(
            "caller may not use the security API",
        ))
    }
}

/// Reads one query parameter.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}
