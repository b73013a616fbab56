//! One error type for every handler: a terse public message in a
//! `text/plain` body, and the precise cause in the request log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use crate::auth::AuthError;
use crate::store::StoreError;

/// The cause of a failed request, attached to the response for the request log.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `400` with a message naming what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// `403`: the public text says nothing about whether a key or user exists.
    #[error("{public}")]
    Forbidden {
        /// The body.
        public: &'static str,
        /// The logged cause.
        cause: String,
    },
    /// `404`.
    #[error("{0}")]
    NotFound(String),
    /// `429` or `503` with `Retry-After: 1`: the request could not be
    /// handled now, through no fault of its credential.
    #[error("{public}")]
    Throttled {
        /// `429` (this client) or `503` (everyone).
        status: StatusCode,
        /// The body.
        public: &'static str,
    },
    /// `500`: logged with an error id; the body holds only the id.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The 403 text for a missing or invalid credential.
pub const INVALID_CREDENTIAL: &str = "missing, unknown or invalid API key or credentials";
/// The 403 text for a valid credential without the needed permission.
pub const NOT_AUTHORIZED: &str = "the API key or user is not authorized for this operation";

impl AppError {
    /// `403` for a caller without the needed permission.
    pub fn not_authorized(cause: impl Into<String>) -> Self {
        AppError::Forbidden {
            public: NOT_AUTHORIZED,
            cause: cause.into(),
        }
    }
}

impl From<StoreError> for AppError {
    /// Refusals of a write are the caller's `400` (handlers that can name
    /// the property map them first); anything else is a `500`.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LastAdministrator => AppError::BadRequest(
                "this would leave no administrator who can log in; make another user an administrator first".into(),
            ),
            StoreError::DuplicateGroup
            | StoreError::UnknownUser(_)
            | StoreError::UnknownGroup(_)
            | StoreError::ProtectedGroup => AppError::BadRequest(e.to_string()),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => e.into(),
            AuthError::HashingBusy => AppError::Throttled {
                status: StatusCode::SERVICE_UNAVAILABLE,
                public: "the server is busy checking passwords; retry shortly",
            },
            AuthError::TooManyHashes => AppError::Throttled {
                status: StatusCode::TOO_MANY_REQUESTS,
                public: "too many password checks in progress from this address; retry shortly",
            },
            AuthError::Ambiguous => AppError::BadRequest(
                "more than one credential in the request; send exactly one".into(),
            ),
            AuthError::Malformed(m) => AppError::BadRequest(m.into()),
            AuthError::PseudoKeysDisabled => AppError::Forbidden {
                public: "user:password pseudo-keys are disabled on this server",
                cause: e.to_string(),
            },
            other => AppError::Forbidden {
                public: INVALID_CREDENTIAL,
                cause: other.to_string(),
            },
        }
    }
}

/// The content type of every error body.
pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A plain-text response.
pub fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT_PLAIN)], body).into_response()
}

/// A fresh id that ties a 500 body to its log line.
pub fn new_error_id() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The body of every 500: a message and an error id, never internals.
pub fn internal_error_body(error_id: &str) -> String {
    format!("internal server error (error id {error_id}); the details are in the server log\n")
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body, cause) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m, None),
            AppError::Forbidden { public, cause } => {
                (StatusCode::FORBIDDEN, public.to_owned(), Some(cause))
            }
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m, None),
            AppError::Throttled { status, public } => {
                let mut response = text(status, public.to_owned());
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
                    .extensions_mut()
                    .insert(ErrorCause(public.to_owned()));
                return response;
            }
            AppError::Internal(e) => {
                let id = new_error_id();
                // One line: the error chain joined; the backtrace only at debug.
                tracing::error!(error_id = %id, error = %format!("{e:#}"), "internal error");
                tracing::debug!(error_id = %id, error = ?e, "internal error in detail");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    internal_error_body(&id),
                    Some(format!("error id {id}")),
                )
            }
        };
        let mut response = text(status, body);
        if let Some(cause) = cause {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response
    }
}
