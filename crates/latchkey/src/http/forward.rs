//! Forward auth for reverse proxies: `/api/auth/forward` (`guarding.md`
//! section 3). The proxy sends a sub-request per client request; the
//! forward URL's own query says what is required, the forwarded headers
//! carry the client's credential. The body is never read.
//!
//! Decisions: a request without a credential that `Anonymous` may make is
//! answered `200` with `X-Latchkey-Principal: user Anonymous` and
//! `X-Latchkey-User: Anonymous`; one that `Anonymous` may not make is `401`
//! and is not counted by the limiter (every browser asks without a
//! credential first, and no guess was made). Wrong credentials and two
//! credentials count; a valid credential without the permission (`403`) does not.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use proget_api::{PackagePermission, SystemApi};

use super::access::KeySlot;
use super::limiter::Attempt;
use super::{
    client_addr, error, permissions_for, too_many_failures, AppError, AppState, ErrorCause,
    RequestNote,
};
use crate::auth::{extract_forwarded_credential, AuthError, Credential};
use crate::domain::{Principal, ANONYMOUS};
use crate::policy::{allows, Need};

/// `X-Latchkey-Principal`: `key ID` or `user NAME`.
pub const PRINCIPAL: HeaderName = HeaderName::from_static("x-latchkey-principal");
/// `X-Latchkey-User`: the user involved, when there is one.
pub const USER: HeaderName = HeaderName::from_static("x-latchkey-user");
/// `X-Latchkey-Key-Id`: the id of the key used.
pub const KEY_ID: HeaderName = HeaderName::from_static("x-latchkey-key-id");
/// `X-Latchkey-Key-Type`: the type of the key used.
pub const KEY_TYPE: HeaderName = HeaderName::from_static("x-latchkey-key-type");

/// The body of every `401`: the same whatever was wrong.
const UNAUTHORIZED: &str = "authentication required: missing, unknown or invalid credentials";

/// What the forward URL asks for, as read from its query string.
#[derive(Debug, Default)]
pub struct Requirement<'a> {
    /// `feed`.
    pub feed: Option<Cow<'a, str>>,
    /// `feedGroup`.
    pub group: Option<Cow<'a, str>>,
    /// `permission`.
    pub permission: Option<PackagePermission>,
    /// `systemApi`.
    pub system_api: Option<SystemApi>,
}

impl<'a> Requirement<'a> {
    /// Reads the forward URL's query: `feed`, `feedGroup`, `permission`,
    /// `systemApi`, each at most once and not empty; anything else is an
    /// error naming it. Public for fuzzing and tests.
    pub fn parse(query: Option<&'a str>) -> Result<Self, String> {
        let mut r = Requirement::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if value.is_empty() {
                return Err(format!("parameter {} has no value", shown(&name)));
            }
            let twice = || format!("parameter {} is given more than once", shown(&name));
            match name.as_ref() {
                "feed" if r.feed.is_none() => r.feed = Some(value),
                "feedGroup" if r.group.is_none() => r.group = Some(value),
                "permission" if r.permission.is_none() => {
                    r.permission = Some(value.parse().map_err(|_| {
                        format!(
                            "permission: unknown value {} (expected view, add, promote or delete)",
                            shown(&value)
                        )
                    })?)
                }
                "systemApi" if r.system_api.is_none() => {
                    r.system_api = Some(value.parse().map_err(|_| {
                        format!(
                            "systemApi: unknown value {} (expected feeds, sca or sbom-upload)",
                            shown(&value)
                        )
                    })?)
                }
                "feed" | "feedGroup" | "permission" | "systemApi" => return Err(twice()),
                _ => {
                    return Err(format!(
                        "unknown parameter {} (expected feed, feedGroup, permission or systemApi)",
                        shown(&name)
                    ))
                }
            }
        }
        Ok(r)
    }

    /// What is needed; `default` is the permission when none is named. An
    /// error names what does not fit together.
    pub fn need(&self, default: PackagePermission) -> Result<Need<'_>, String> {
        let feed = self.feed.as_deref();
        let group = self.group.as_deref();
        match (self.system_api, feed.is_some() || group.is_some()) {
            (Some(_), true) => Err("systemApi cannot be combined with feed or feedGroup".into()),
            (Some(_), false) if self.permission.is_some() => {
                Err("permission cannot be combined with systemApi".into())
            }
            (Some(SystemApi::FullControl), false) => {
                Err("systemApi: expected feeds, sca or sbom-upload".into())
            }
            (Some(api), false) => Ok(Need::SystemApi(api)),
            (None, true) => Ok(Need::Feed {
                feed,
                group,
                permission: self.permission.unwrap_or(default),
            }),
            (None, false) if self.permission.is_some() => {
                Err("permission needs feed or feedGroup".into())
            }
            (None, false) => Ok(Need::AnyValid),
        }
    }
}

/// A parameter name for a message: quoted, escaped, at most 64 characters.
fn shown(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

/// The permission implied by the client's method: `GET`, `HEAD`, `OPTIONS`
/// view; `DELETE` deletes; anything else adds. Public for fuzzing and tests.
pub fn permission_of(method: &[u8]) -> PackagePermission {
    if [&b"GET"[..], b"HEAD", b"OPTIONS"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
        PackagePermission::View
    } else if method.eq_ignore_ascii_case(b"DELETE") {
        PackagePermission::Delete
    } else {
        PackagePermission::Add
    }
}

/// The query of a forwarded URI (`X-Forwarded-Uri`, `X-Original-URI`):
/// after the first `?`, up to a `#`. Public for fuzzing and tests.
pub fn forwarded_query(uri: &str) -> Option<&str> {
    uri.split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q))
}

/// The first of these headers that is present.
fn first_header<'h>(headers: &'h HeaderMap, names: [&HeaderName; 2]) -> Option<&'h HeaderValue> {
    names.iter().find_map(|n| headers.get(*n))
}

/// The forwarded request's method and URI, as each proxy names them.
static FORWARDED_METHOD: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-original-method"),
];
static FORWARDED_URI: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-original-uri"),
];

/// Handles `/api/auth/forward` (any method).
#[utoipa::path(
    method(get, post, put, delete, patch, head, options, trace),
    path = "/api/auth/forward",
    tag = "auth",
    security((), ("apiKey" = []), ("nugetApiKey" = []), ("basic" = []), ("bearer" = [])),
    params(
        ("feed" = Option<String>, Query, min_length = 1, description = "Required: a permission on this feed."),
        ("feedGroup" = Option<String>, Query, min_length = 1, description = "Required: a permission on this feed group."),
        ("permission" = Option<PackagePermission>, Query, description = "The feed permission required (default: from the client's method; needs `feed` or `feedGroup`)."),
        ("systemApi" = Option<SystemApi>, Query, description = "Required: this system API (not with `feed`, `feedGroup` or `permission`)."),
        ("X-Forwarded-Method" = Option<String>, Header, nullable = false, description = "The client's method (also `X-Original-Method`)."),
        ("X-Forwarded-Uri" = Option<String>, Header, nullable = false, description = "The client's URI (also `X-Original-Uri`); its `key` query parameter is a credential."),
    ),
    responses(
        (status = 200, description = "Allowed; the headers name who is calling.", headers(
            ("X-Latchkey-Principal" = String, description = "`key ID` or `user NAME`."),
            ("X-Latchkey-User" = String, description = "The user involved, when there is one."),
            ("X-Latchkey-Key-Id" = i32, description = "The id of the key used."),
            ("X-Latchkey-Key-Type" = proget_api::ApiKeyType, description = "The type of the key used."),
        )),
        (status = 400, description = "More than one credential, or a malformed one.", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid credential, and Anonymous may not make this request.", body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"Latchkey\"`"))),
        (status = 403, description = "A valid credential without the required permission.", body = String, content_type = "text/plain"),
        (status = 500, description = "The forward URL's query asks for something unknown or contradictory (the proxy is misconfigured), or an internal error.", body = String, content_type = "text/plain"),
    )
)]
pub async fn forward(State(app): State<AppState>, req: Request) -> Response {
    let headers = req.headers();
    let method = first_header(headers, [&FORWARDED_METHOD[0], &FORWARDED_METHOD[1]])
        .map_or(req.method().as_str().as_bytes(), HeaderValue::as_bytes);
    let requirement = match Requirement::parse(req.uri().query()) {
        Ok(r) => r,
        Err(e) => return misconfigured(&e),
    };
    let need = match requirement.need(permission_of(method)) {
        Ok(n) => n,
        Err(e) => return misconfigured(&e),
    };
    let client = client_addr(req.extensions());
    // Charged on arrival, as every authentication is (see `limiter`).
    let attempt = match app.limiter.as_ref().zip(client) {
        Some((limiter, ip)) => match limiter.admit(ip).await {
            Ok(a) => Some(a),
            Err(refusal) => return too_many_failures(refusal),
        },
        None => None,
    };
    let uri = first_header(headers, [&FORWARDED_URI[0], &FORWARDED_URI[1]])
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let forwarded_query = uri.as_deref().and_then(forwarded_query);
    let credential = match extract_forwarded_credential(headers, forwarded_query) {
        Ok(c) => c,
        Err(e) => {
            if let Some(a) = attempt {
                let _ = a.failed();
            }
            return AppError::from(e).into_response();
        }
    };
    let principal = match credential {
        None => {
            if let Some(a) = attempt {
                a.void();
            }
            None
        }
        Some(c) => match authenticate_settled(&app, c, client, attempt).await {
            Ok(p) => Some(p),
            Err(e) if e.is_refusal() => return unauthorized(&e.to_string()),
            Err(e) => return AppError::from(e).into_response(),
        },
    };
    let model = match permissions_for(&app, principal.as_ref()).await {
        Ok(m) => m,
        Err(e) => return AppError::from(e).into_response(),
    };
    let note = req.extensions().get::<RequestNote>();
    let verdict = allows(&model, principal.as_ref(), need);
    if let Some(Principal::Key(k)) = &principal {
        app.usage.used(k.id, client);
        let method = String::from_utf8_lossy(method);
        KeySlot::check(
            req.extensions(),
            headers,
            k,
            client,
            &method,
            uri.as_deref().unwrap_or(""),
            if verdict { "allowed" } else { "forbidden" },
        );
    }
    if !verdict {
        return match &principal {
            None => unauthorized(AuthError::Missing.to_string().as_str()),
            Some(p) => {
                crate::metrics::METRICS.auth(crate::metrics::AuthOutcome::Forbidden);
                if let Some(note) = note {
                    let _ = note.0.set(label(p));
                }
                AppError::not_authorized(format!("{need:?} refused")).into_response()
            }
        };
    }
    allowed(principal.as_ref(), note)
}

/// Verifies a credential and settles its limiter attempt: refunded on
/// success or when the server could not check it, kept on a refusal.
pub(super) async fn authenticate_settled(
    app: &AppState,
    credential: Credential,
    client: Option<std::net::IpAddr>,
    attempt: Option<Attempt<'_>>,
) -> Result<Principal, AuthError> {
    let verified = app.auth.authenticate(Some(credential), client).await;
    if let Some(a) = attempt {
        match &verified {
            Ok(_) => a.succeeded(),
            Err(e) if e.is_refusal() => {
                let _ = a.failed();
            }
            Err(_) => a.void(),
        }
    }
    verified
}

/// The principal as the request log and `X-Latchkey-Principal` name it.
fn label(p: &Principal) -> String {
    match p {
        Principal::Key(k) => format!("key {}", k.id),
        Principal::User(u) => format!("user {}", u.name),
    }
}

/// The `200`: empty, with the headers that tell the upstream who it is.
fn allowed(principal: Option<&Principal>, note: Option<&RequestNote>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    // Room for the identity headers at once, not grown twice.
    h.reserve(4);
    let (principal_label, user) = match principal {
        None => (format!("user {ANONYMOUS}"), Some(ANONYMOUS)),
        Some(p) => {
            if let Principal::Key(k) = p {
                h.insert(KEY_ID, HeaderValue::from(k.id));
                h.insert(KEY_TYPE, HeaderValue::from_static(k.key_type.as_str()));
            }
            (label(p), p.user().map(|u| u.name.as_str()))
        }
    };
    h.insert(PRINCIPAL, header_text(&principal_label));
    if let Some(user) = user {
        h.insert(USER, header_text(user));
    }
    if let Some(note) = note {
        let _ = note.0.set(principal_label);
    }
    response
}

/// A header value for a name: printable ASCII as it is; `%`, control
/// characters and every non-ASCII byte percent-encoded (UTF-8), so that a
/// name can never break or add a header line.
pub fn header_text(text: &str) -> HeaderValue {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if text.bytes().all(plain) {
        if let Ok(v) = HeaderValue::from_str(text) {
            return v;
        }
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Only printable ASCII is left: always a valid header value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `401` with the Basic challenge; the body never says what was wrong.
fn unauthorized(cause: &str) -> Response {
    let mut response = error::text(StatusCode::UNAUTHORIZED, UNAUTHORIZED.into());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Latchkey\""),
    );
    response
        .extensions_mut()
        .insert(ErrorCause(cause.to_owned()));
    response
}

/// `500` for a forward URL that asks for something unknown: the proxy is
/// misconfigured, so every request through it fails, loudly.
fn misconfigured(problem: &str) -> Response {
    tracing::error!(
        problem,
        "forward auth is misconfigured: the proxy's forward URL asks for something unknown"
    );
    let mut response = error::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("forward auth is misconfigured: {problem}\n"),
    );
    response
        .extensions_mut()
        .insert(ErrorCause(format!("misconfigured forward URL: {problem}")));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use PackagePermission::{Add, Delete, View};

    fn need_of(query: &str, method: &str) -> Result<String, String> {
        let r = Requirement::parse(Some(query))?;
        r.need(permission_of(method.as_bytes()))
            .map(|n| format!("{n:?}"))
    }

    #[test]
    fn the_permission_defaults_from_the_method() {
        for (m, p) in [
            ("GET", View),
            ("head", View),
            ("OPTIONS", View),
            ("DELETE", Delete),
            ("PUT", Add),
            ("POST", Add),
            ("PATCH", Add),
            ("\u{e9}", Add),
        ] {
            assert_eq!(permission_of(m.as_bytes()), p, "{m}");
        }
    }

    #[test]
    fn requirements_are_read_from_the_query() {
        assert_eq!(need_of("", "GET").unwrap(), "AnyValid");
        assert_eq!(
            need_of("feed=npm", "PUT").unwrap(),
            format!(
                "{:?}",
                Need::Feed {
                    feed: Some("npm"),
                    group: None,
                    permission: Add
                }
            )
        );
        assert_eq!(
            need_of("feedGroup=pub&feed=a%20b&permission=delete", "GET").unwrap(),
            format!(
                "{:?}",
                Need::Feed {
                    feed: Some("a b"),
                    group: Some("pub"),
                    permission: Delete
                }
            )
        );
        assert_eq!(
            need_of("systemApi=sbom-upload", "GET").unwrap(),
            "SystemApi(SbomUpload)"
        );
    }

    #[test]
    fn misconfigurations_are_named() {
        for (query, named) in [
            ("fed=npm", "\"fed\""),
            ("feed=", "\"feed\""),
            ("feed=a&feed=b", "more than once"),
            ("permission=view", "needs feed"),
            ("feed=a&permission=write", "write"),
            ("systemApi=full-control", "systemApi"),
            ("systemApi=admin", "admin"),
            ("systemApi=sca&feed=a", "combined"),
            ("systemApi=sca&permission=view", "combined"),
        ] {
            let e = need_of(query, "GET").unwrap_err();
            assert!(e.contains(named), "{query}: {e}");
        }
    }

    #[test]
    fn header_text_encodes_what_could_break_a_header() {
        assert_eq!(header_text("user Admin"), "user Admin");
        assert_eq!(header_text("Jürgen"), "J%C3%BCrgen");
        assert_eq!(header_text("a\r\nX-Evil: 1"), "a%0D%0AX-Evil: 1");
        assert_eq!(header_text("100%"), "100%25");
        assert_eq!(header_text("\u{7f}"), "%7F");
    }
}
