//! `POST /api/api-keys/leaked`: reports from a secret-scanning service (the
//! GitHub partner program's format) of keys found in public code. A report is
//! signed with ECDSA P-256 / SHA-256 over the exact body; every reported
//! token that is a live key is deleted.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{client_addr, error, json_ok, AppError, AppState, ErrorCause};
use crate::domain::AuditContext;
use crate::keys::{checksum_ok, has_generated_shape};

/// The header naming the key a report is signed with.
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// The header holding the report's signature (base64 DER).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// The public keys reports may be signed with, by identifier.
#[derive(Debug, Clone, Default)]
pub struct LeakReportKeys {
    keys: HashMap<String, VerifyingKey>,
}

/// One published key: `{key_identifier, key}` with the key in PEM.
#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

/// The file: a JSON list of keys, or the partner program's `{"public_keys": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeysFile {
    List(Vec<PublishedKey>),
    Published { public_keys: Vec<PublishedKey> },
}

impl LeakReportKeys {
    /// Reads the `--leak-report-keys` file; any unreadable key is an error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the leak-report keys {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("invalid leak-report keys in {}", path.display()))
    }

    /// Parses the keys file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: KeysFile = serde_json::from_str(text).context(
            "expected a JSON list of {\"key_identifier\": …, \"key\": \"-----BEGIN PUBLIC KEY-----…\"}",
        )?;
        let (KeysFile::List(list) | KeysFile::Published { public_keys: list }) = file;
        if list.is_empty() {
            anyhow::bail!("the file lists no keys");
        }
        let mut keys = HashMap::new();
        for k in list {
            let key = VerifyingKey::from_public_key_pem(&k.key).map_err(|e| {
                anyhow::anyhow!(
                    "key {:?} is not a PEM P-256 public key: {e}",
                    k.key_identifier
                )
            })?;
            keys.insert(k.key_identifier, key);
        }
        Ok(LeakReportKeys { keys })
    }

    /// Whether `signature` (base64 DER) by the key `key_id` signs `body`.
    pub fn verify(&self, key_id: &str, signature: &str, body: &[u8]) -> Result<(), &'static str> {
        let key = self.keys.get(key_id).ok_or("unknown key identifier")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| "signature is not base64")?;
        let signature =
            DerSignature::try_from(der.as_slice()).map_err(|_| "signature is not DER")?;
        key.verify(body, &signature).map_err(|_| "bad signature")
    }
}

/// One reported token.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LeakReport)]
struct Report {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    source: String,
}

/// The verdict on one token.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LeakVerdict)]
struct Verdict {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

/// Handles `POST /api/api-keys/leaked`: `404` unless keys are configured;
/// `401` (and nothing done) without a valid signature; else deletes each
/// live key reported and answers a verdict per token.
#[utoipa::path(
    post,
    path = "/api/api-keys/leaked",
    tag = "api-keys",
    security(()),
    params(
        ("github-public-key-identifier" = Option<String>, Header, nullable = false, description = "The identifier of the key that signed the report."),
        ("github-public-key-signature" = Option<String>, Header, nullable = false, description = "Base64 DER ECDSA P-256 / SHA-256 signature of the exact body."),
    ),
    request_body(content = Vec<Report>, description = "The reported tokens."),
    responses(
        (status = 200, description = "A verdict per reported token; live keys were deleted.", body = Vec<Verdict>),
        (status = 400, description = "The signed body is not a list of reports.", body = String, content_type = "text/plain"),
        (status = 401, description = "The signature is missing or invalid; nothing was done.", body = String, content_type = "text/plain"),
        (status = 404, description = "Leaked-key reports are not enabled on this server.", body = String, content_type = "text/plain"),
    )
)]
pub async fn leaked(State(app): State<AppState>, req: Request) -> Result<Response, AppError> {
    let Some(keys) = &app.leak_keys else {
        return Err(AppError::NotFound(
            "leaked-key reports are not enabled on this server".into(),
        ));
    };
    let address = client_addr(req.extensions());
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|e| AppError::BadRequest(format!("cannot read the body: {e}")))?;
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let verified = match (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) {
        (Some(id), Some(signature)) => keys.verify(id, signature, &body),
        _ => Err("signature headers missing"),
    };
    if let Err(cause) = verified {
        if let (Some(limiter), Some(ip)) = (&app.limiter, address) {
            let _ = limiter.record_failure(ip);
        }
        let mut response = error::text(
            StatusCode::UNAUTHORIZED,
            "the report's signature is missing or invalid".into(),
        );
        response
            .extensions_mut()
            .insert(ErrorCause(cause.to_owned()));
        return Ok(response);
    }
    let reports: Vec<Report> = super::parse_json(&body)?;
    let mut verdicts = Vec::with_capacity(reports.len());
    for r in reports {
        let deleted = delete_if_live(&app, &r, address).await?;
        verdicts.push(Verdict {
            token_hash: hex::encode(Sha256::digest(r.token.as_bytes())),
            token_type: r.token_type,
            label: if deleted {
                "true_positive"
            } else {
                "false_positive"
            },
        });
    }
    tracing::info!(
        reported = verdicts.len(),
        deleted = verdicts
            .iter()
            .filter(|v| v.label == "true_positive")
            .count(),
        "leaked-key report"
    );
    json_ok(&verdicts)
}

/// Deletes the key `r.token` is the text of (its current text or, during a
/// rotation's grace period, its previous one); `true` when this call did.
async fn delete_if_live(
    app: &AppState,
    r: &Report,
    address: Option<std::net::IpAddr>,
) -> Result<bool, AppError> {
    if r.token.is_empty() || (has_generated_shape(&r.token) && !checksum_ok(&r.token)) {
        return Ok(false);
    }
    let digest = app.auth.digester().key(&r.token);
    let Some(key) = app.store.key_by_digest(&digest).await? else {
        return Ok(false);
    };
    let audit = AuditContext {
        address,
        ..AuditContext::SYSTEM
    }
    .with_action("apikey.leaked")
    .with_details(serde_json::json!({"url": r.url, "source": r.source, "type": r.token_type}));
    let deleted = app.store.delete_key(&audit, key.id).await?;
    if deleted {
        tracing::warn!(key_id = key.id, url = %r.url, "leaked api key deleted");
    }
    Ok(deleted)
}
