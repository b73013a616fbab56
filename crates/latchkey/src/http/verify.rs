//! Checking keys for services and for keys themselves (`guarding.md`
//! section 4): `POST /api/api-keys/verify` and `GET /api/api-keys/self`.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use proget_api::{paths, ApiKeyInfo, PackagePermission, VerifyCode, VerifyRequest, VerifyResponse};

use super::access::KeySlot;
use super::forward::{authenticate_settled, Requirement};
use super::{
    body_too_large, client_addr, json_ok, parse_json, permissions_for, too_many_failures, AppError,
    AppState, Caller, MAX_BODY_BYTES,
};
use crate::auth::{as_key, AuthError};
use crate::domain::Principal;
use crate::policy::allows;

/// Handles `POST /api/api-keys/verify`: no caller credential; the key in the
/// body is checked against what the body asks for. Every answer about the
/// key is a `200`; refused keys count for the limiter, as any failed
/// authentication does.
#[utoipa::path(
    post,
    path = "/api/api-keys/verify",
    tag = "api-keys",
    security(()),
    request_body(content = VerifyRequest, description = "The key (or `user:password`) to check and what it must allow."),
    responses(
        (status = 200, description = "The verdict on the key: every answer about the key is a 200.", body = VerifyResponse),
        (status = 400, description = "The body is invalid or asks for a combination that cannot be checked.", body = String, content_type = "text/plain"),
    )
)]
pub async fn verify(State(app): State<AppState>, req: Request) -> Response {
    let client = client_addr(req.extensions());
    let attempt = match app.limiter.as_ref().zip(client) {
        Some((limiter, ip)) => match limiter.admit(ip).await {
            Ok(a) => Some(a),
            Err(refusal) => return too_many_failures(refusal),
        },
        None => None,
    };
    let (parts, body) = req.into_parts();
    let (extensions, headers) = (parts.extensions, parts.headers);
    // The front door has read the body into memory already.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return body_too_large(),
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => {
            // A malformed body says nothing about any key.
            if let Some(a) = attempt {
                a.void();
            }
            return e.into_response();
        }
    };
    let requirement = Requirement {
        feed: request.feed.as_deref().map(Into::into),
        group: request.feed_group.as_deref().map(Into::into),
        permission: request.permission,
        system_api: request.system_api,
    };
    let need = match requirement.need(PackagePermission::View) {
        Ok(n) => n,
        Err(e) => {
            if let Some(a) = attempt {
                a.void();
            }
            return AppError::BadRequest(e).into_response();
        }
    };
    let principal = match authenticate_settled(&app, as_key(request.key), client, attempt).await {
        Ok(p) => p,
        Err(AuthError::Expired(_)) => return answer(&refused(VerifyCode::Expired)),
        Err(e) if e.is_refusal() => return answer(&refused(VerifyCode::NotFound)),
        Err(e) => return AppError::from(e).into_response(),
    };
    let model = match permissions_for(&app, Some(&principal)).await {
        Ok(m) => m,
        Err(e) => return AppError::from(e).into_response(),
    };
    let verdict = allows(&model, Some(&principal), need);
    if let Principal::Key(k) = &principal {
        app.usage.used(k.id, client);
        KeySlot::check(
            &extensions,
            &headers,
            k,
            client,
            "POST",
            paths::API_KEYS_VERIFY,
            if verdict { "allowed" } else { "forbidden" },
        );
    }
    if !verdict {
        crate::metrics::METRICS.auth(crate::metrics::AuthOutcome::Forbidden);
        return answer(&refused(VerifyCode::Forbidden));
    }
    answer(&valid(principal))
}

/// The body, with an empty key refused.
fn parse_request(body: &[u8]) -> Result<VerifyRequest, AppError> {
    let request: VerifyRequest = parse_json(body)?;
    if request.key.is_empty() {
        return Err(AppError::BadRequest("key: must not be empty".into()));
    }
    for (name, value) in [("feed", &request.feed), ("feedGroup", &request.feed_group)] {
        if value.as_deref().is_some_and(str::is_empty) {
            return Err(AppError::BadRequest(format!("{name}: must not be empty")));
        }
    }
    Ok(request)
}

fn answer(response: &VerifyResponse) -> Response {
    json_ok(response).unwrap_or_else(IntoResponse::into_response)
}

/// A refusal: only the code.
fn refused(code: VerifyCode) -> VerifyResponse {
    VerifyResponse {
        valid: false,
        code,
        id: None,
        key_type: None,
        user: None,
        display_name: None,
        expiration: None,
    }
}

/// A valid key: its id, type, user, display name and expiration; a
/// pseudo-key: its user.
fn valid(principal: Principal) -> VerifyResponse {
    let user = principal.user().map(|u| u.name.clone());
    let mut response = VerifyResponse {
        user,
        ..refused(VerifyCode::Valid)
    };
    response.valid = true;
    if let Principal::Key(k) = principal {
        response.id = Some(k.id);
        response.key_type = Some(k.key_type);
        response.display_name = k.display_name.clone();
        response.expiration = k.expiration.map(proget_api::Expiration);
    }
    response
}

/// Handles `GET /api/api-keys/self`: the calling key as listed (without its
/// text), for every type of key; `403` for logins and pseudo-keys.
#[utoipa::path(
    get,
    path = "/api/api-keys/self",
    tag = "api-keys",
    responses(
        (status = 200, description = "The calling key as listed, without its text.", body = ApiKeyInfo),
        (status = 400, description = "The credential is malformed or given twice.", body = String, content_type = "text/plain"),
        (status = 403, description = "Missing or invalid credential, or the request was made with a user name and password.", body = String, content_type = "text/plain"),
    )
)]
pub async fn own_key(caller: Caller) -> Result<Response, AppError> {
    match caller.principal {
        Principal::Key(k) => json_ok(&ApiKeyInfo::from(std::sync::Arc::unwrap_or_clone(k))),
        Principal::User(_) => Err(AppError::Forbidden {
            public: "only an API key has a key of its own; this request was made with a user name and password",
            cause: "api-keys/self called without a key".into(),
        }),
    }
}
