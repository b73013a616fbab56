//! Wire types of ProGet's API-key, security (users) and health HTTP APIs.
//!
//! Shared by the `latchkey` server and the `pgutil` client so that both speak
//! exactly the same JSON: camelCase properties, camelCase enum values (read
//! case-insensitively), null properties omitted when writing.

mod date;
mod enums;
#[cfg(feature = "openapi")]
mod openapi;

pub use date::{parse_date, Expiration, InvalidDate};
pub use enums::{ApiKeyType, Logging, PackagePermission, SystemApi, UnknownVariant};

use serde::{Deserialize, Serialize};

/// Request paths of the endpoints, as the server routes them.
pub mod paths {
    /// `POST`: create a key.
    pub const API_KEYS_CREATE: &str = "/api/api-keys/create";
    /// `GET`: list the keys the caller may see.
    pub const API_KEYS_LIST: &str = "/api/api-keys/list";
    /// `POST ?id=N`: delete a key.
    pub const API_KEYS_DELETE: &str = "/api/api-keys/delete";
    /// `POST` with `?id=N[&grace=SECONDS]`: a new text for a key.
    pub const API_KEYS_ROTATE: &str = "/api/api-keys/rotate";
    /// `POST`, signed: a secret-scanning service's report of leaked keys.
    pub const API_KEYS_LEAKED: &str = "/api/api-keys/leaked";
    /// `GET ?id=N[&before=ENTRY_ID][&limit=N]`: a key's access log, newest first.
    pub const API_KEYS_LOGS: &str = "/api/api-keys/logs";
    /// `POST`: add a user.
    pub const USERS_ADD: &str = "/api/security/users/add";
    /// `GET [?search-term=…]`: list users.
    pub const USERS_LIST: &str = "/api/security/users/list";
    /// `DELETE ?user=NAME`: delete a user and their personal keys.
    pub const USERS_DELETE: &str = "/api/security/users/delete";
    /// `POST`: edit a user (the body's `name` selects the user).
    pub const USERS_EDIT: &str = "/api/security/users/edit";
    /// `GET`: `OK` when the database answers.
    pub const API_KEYS_VERIFY: &str = "/api/api-keys/verify";
    pub const API_KEYS_SELF: &str = "/api/api-keys/self";
    pub const PERMISSIONS_LIST: &str = "/api/security/permissions/list";
    pub const PERMISSIONS_ADD: &str = "/api/security/permissions/add";
    pub const PERMISSIONS_DELETE: &str = "/api/security/permissions/delete";
    pub const GROUPS_LIST: &str = "/api/security/groups/list";
    pub const GROUPS_ADD: &str = "/api/security/groups/add";
    pub const GROUPS_EDIT: &str = "/api/security/groups/edit";
    pub const GROUPS_DELETE: &str = "/api/security/groups/delete";
    pub const TASKS_LIST: &str = "/api/security/tasks/list";
    pub const AUTH_FORWARD: &str = "/api/auth/forward";
    /// `GET [?before=ID][&limit=N][&target=…][&action=…]`: audit entries, newest first.
    pub const AUDIT_LIST: &str = "/api/audit/list";
    /// `GET`: the OpenAPI 3.1 document of the API (no credential).
    pub const OPENAPI: &str = "/api/openapi.json";
    pub const HEALTH: &str = "/health";
    /// `GET`: the [`HealthInfo`](crate::HealthInfo) object.
    pub const HEALTH_JSON: &str = "/health/json";
}

/// An API key as created, listed and returned by the API-key endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    /// Server-assigned id; ignored on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    /// The kind of key; required on create.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<ApiKeyType>,
    /// The key text: a custom value on create, the full key in a create response only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Name shown in lists; `(unnamed key)` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// System keys only: what the key may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_apis: Option<Vec<SystemApi>>,
    /// Feed keys only: what the key may do on its feed or feed group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_permissions: Option<Vec<PackagePermission>>,
    /// Feed keys only: the feed (exclusive with `feed_group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// Feed keys only: the feed group (exclusive with `feed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_group: Option<String>,
    /// When the key stops working; `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Request logging for the key; absent means [`Logging::None`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Personal keys only: the user the key acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When the key last authenticated (to within a minute); absent if never.
    /// Ignored on create; read leniently (another shape counts as absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub last_used: Option<Expiration>,
    /// The client address of that last use. Ignored on create; read leniently.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub last_used_from: Option<String>,
    /// When the key was created. Ignored on create; read leniently.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub created: Option<Expiration>,
    /// After a rotation with a grace period: until when the previous key text
    /// still works. Ignored on create; read leniently.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub grace_until: Option<Expiration>,
}

/// Reads an informational property that older or other servers may send
/// in another shape: anything that is not a `T` counts as absent.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Maybe<T> {
        Is(T),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Maybe<T>>::deserialize(d)? {
        Some(Maybe::Is(v)) => Some(v),
        _ => None,
    })
}

/// One entry of a key's access log (`GET /api/api-keys/logs`), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessLogEntry {
    /// The entry's id: pass it as `before` for the next page.
    pub entry_id: i64,
    /// When the request arrived (RFC 3339, milliseconds).
    pub time: String,
    /// The request method (for a forward-auth check, the original one).
    pub method: String,
    /// The path and query, secrets removed (for a check, the original URI).
    pub path: String,
    /// The response status.
    pub status: u16,
    /// How long the answer took, in milliseconds.
    pub duration_ms: u64,
    /// The client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Forward-auth and verification checks: `allowed`, `forbidden`, … .
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The request body, secrets redacted (`logging` `request` or `both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The response body, secrets redacted (`logging` `response` or `both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// `true` when a body was cut at 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// A user as listed and returned by the security API (never with a password).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// Login name; case-insensitive for look-up.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub name: String,
    /// Name shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Group names; `Administrators` makes the user an administrator.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Body of `users/add` and `users/edit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserEdit {
    /// Login name (selects the user on edit).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub name: String,
    /// Name shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// New password; required on add, unchanged on edit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Group names; unchanged on edit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// The object returned by `/health/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthInfo {
    /// Product name.
    pub application_name: String,
    /// Version, e.g. `0.1.0`.
    pub version_number: String,
    /// Release, e.g. `0.1.0`.
    pub release_number: String,
    /// `OK` or `Error`.
    pub database_status: String,
    /// Why the database is not OK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_status_details: Option<String>,
    /// Always `OK`: there is no license.
    pub license_status: String,
    /// `OK` or `Error`.
    pub service_status: String,
    /// Why the service is not OK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_status_detail: Option<String>,
}

/// A permission: grants or denies one task to one user or group, globally or
/// on one feed or feed group (`/api/security/permissions/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PermissionInfo {
    /// Assigned by the server; absent on add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The user it applies to (exactly one of `user` / `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The task's name, e.g. `Publish Packages`.
    pub task: String,
    /// Scoped to this feed (at most one of `feed` / `feedGroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// Scoped to this feed group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_group: Option<String>,
    /// A deny instead of a grant.
    #[serde(default)]
    pub deny: bool,
}

/// A group and its members (`/api/security/groups/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    /// Group name (case-insensitive, spelling kept).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub name: String,
    /// Member user names; absent on add means none.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A built-in task and the feed permissions it grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    /// Task name.
    pub name: String,
    /// Feed permissions granted (`Administer` grants all, and more).
    pub permissions: Vec<PackagePermission>,
}

/// The body of `POST /api/api-keys/verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    /// The key (or `user:password`) to verify.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub key: String,
    /// Required feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub feed: Option<String>,
    /// Required feed group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub feed_group: Option<String>,
    /// Required permission on the feed (default `view` when a feed is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<PackagePermission>,
    /// Required system API (`feeds`, `sca`, `sbom-upload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_api: Option<SystemApi>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    /// Valid and allowed.
    Valid,
    /// Unknown, deleted or wrong password (not told apart).
    NotFound,
    /// The key has expired.
    Expired,
    /// Valid, but lacks the permission.
    Forbidden,
}

/// The answer of `POST /api/api-keys/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the key is valid and allowed.
    pub valid: bool,
    /// Why.
    pub code: VerifyCode,
    /// When valid: the key's id (absent for a pseudo-key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    /// When valid: the key's type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<ApiKeyType>,
    /// When valid: the user involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When valid: the key's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// When valid: the key's expiration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_properties_are_read_leniently() {
        let k: ApiKeyInfo = serde_json::from_str(
            r#"{"id":1,"lastUsed":"2026-11-30T08:15:00Z","lastUsedFrom":"::1","created":{"by":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            k.last_used.map(|e| e.0.unix_timestamp()),
            Some(1_796_026_500)
        );
        assert_eq!(k.last_used_from.as_deref(), Some("::1"));
        assert_eq!(k.created, None);
        let k: ApiKeyInfo =
            serde_json::from_str(r#"{"lastUsed":7,"lastUsedFrom":null,"created":"soon"}"#).unwrap();
        assert_eq!(
            (k.last_used, k.last_used_from, k.created),
            (None, None, None)
        );
    }

    #[test]
    fn api_key_info_round_trips_in_camel_case_without_nulls() {
        let info = ApiKeyInfo {
            id: Some(1000),
            key_type: Some(ApiKeyType::Feed),
            display_name: Some("Build server".into()),
            package_permissions: Some(vec![PackagePermission::View, PackagePermission::Add]),
            feed: Some("public-npm".into()),
            logging: Some(Logging::Both),
            ..Default::default()
        };
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(
            json,
            r#"{"id":1000,"type":"feed","displayName":"Build server","packagePermissions":["view","add"],"feed":"public-npm","logging":"both"}"#
        );
        assert_eq!(serde_json::from_str::<ApiKeyInfo>(&json).unwrap(), info);
    }

    #[test]
    fn unknown_properties_and_nulls_are_accepted() {
        let info: ApiKeyInfo = serde_json::from_str(
            r#"{"type":"System","systemApis":["full-control"],"user":null,"newField":3}"#,
        )
        .unwrap();
        assert_eq!(info.key_type, Some(ApiKeyType::System));
        assert_eq!(info.system_apis, Some(vec![SystemApi::FullControl]));
        assert_eq!(info.user, None);
    }
}

/// One entry of the audit trail, as `GET /api/audit/list` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing with every entry: newer entries have higher ids.
    pub id: i64,
    /// When the change was committed, UTC, to the second (`2026-12-01T10:00:01Z`).
    pub time: String,
    /// Who made the change: `key 1000`, `user NAME` or `system`.
    pub actor: String,
    /// What was done, a dotted name such as `apikey.delete`.
    pub action: String,
    /// What it was done to, e.g. `key 1001`, `user Alice`, `group Ops`, `permission 7`.
    pub target: String,
    /// The client's address; absent for the server's own changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// More about the change, never a secret.
    pub details: serde_json::Value,
}
