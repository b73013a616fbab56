//! `GET /metrics`: the Prometheus text exposition (see [`crate::metrics`]).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error, AppState, ErrorCause};
use crate::metrics::{render, Gauges, CONTENT_TYPE};

/// The bearer token `/metrics` requires (`--metrics-token`); never shown in
/// `Debug` output or logs.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// The token with this text.
    pub fn new(text: &str) -> Self {
        MetricsToken(Sha256::digest(text.as_bytes()).into())
    }

    /// Whether `offered` is the token: digests compared in constant time, so
    /// neither the text nor its length leaks through timing.
    fn accepts(&self, offered: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(offered).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

/// Handles the `GET /metrics` route: no credential, or `Authorization:
/// Bearer TOKEN` when a metrics token is set (otherwise `401`).
pub async fn metrics(State(app): State<AppState>, req: Request) -> Response {
    if let Some(token) = &app.metrics_token {
        let offered = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .and_then(bearer);
        if !offered.is_some_and(|t| token.accepts(t)) {
            let mut r = error::text(
                StatusCode::UNAUTHORIZED,
                "metrics need Authorization: Bearer <metrics token>".into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Latchkey metrics\""),
            );
            r.extensions_mut()
                .insert(ErrorCause("missing or wrong metrics token".into()));
            return r;
        }
    }
    let gauges = Gauges {
        blocked_addresses: app.limiter.as_ref().map_or(0, |l| l.blocked_now() as u64),
        in_sync: crate::metrics::METRICS
            .postgres
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| app.store.sync_detail().is_none()),
    };
    match render(gauges) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            super::AppError::Internal(anyhow::anyhow!("cannot encode the metrics")).into_response()
        }
    }
}

/// The token of `Bearer TOKEN` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}
