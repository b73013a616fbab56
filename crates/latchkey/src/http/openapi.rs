//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API, generated
//! from the handlers' `#[utoipa::path]` attributes and the wire types'
//! schemas, so that it cannot drift from the code.
//!
//! What every route shares is added here rather than on each handler: the
//! credential channels (security schemes) and the answers of the layers in
//! front of the handlers (the front door's `400`, `408`, `413`, `414`,
//! `429`, `431`, `503`; the limiter's `429`; the panic catcher's `500`).

use std::sync::OnceLock;

use axum::response::Response;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{
    access_logs, api_keys, audit, forward, groups, health, json_response, leaked, permissions,
    rotate, tasks, users, verify,
};

/// The document: every route of [`router`](super::router) but the console's.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "A self-hosted API-key service that speaks ProGet's API-key HTTP API. \
            Besides the security schemes listed, a key can be passed as a `key` form field \
            (`application/x-www-form-urlencoded` bodies) or an `API_Key` property of a JSON body; \
            `user:password` can be passed anywhere a key goes (a pseudo-key). More than one \
            credential in a request is a `400`. Errors are `text/plain` with a one-line message."
    ),
    paths(
        api_keys::create,
        api_keys::list,
        api_keys::delete,
        rotate::rotate,
        leaked::leaked,
        access_logs::logs,
        verify::verify,
        verify::own_key,
        forward::forward,
        users::add,
        users::list,
        users::delete,
        users::edit,
        permissions::list,
        permissions::add,
        permissions::delete,
        groups::list,
        groups::add,
        groups::edit,
        groups::delete,
        tasks::list,
        audit::list,
        health::health,
        health::health_json,
        openapi,
    ),
    security(("apiKey" = []), ("apiKeyQuery" = []), ("basic" = [])),
    modifiers(&SharedParts),
    tags(
        (name = "api-keys", description = "Create, list, rotate, verify and delete API keys."),
        (name = "auth", description = "Forward auth for reverse proxies."),
        (name = "security", description = "Users, groups, permissions and tasks."),
        (name = "audit", description = "The audit trail of changes."),
        (name = "health", description = "Health checks (no credential)."),
        (name = "meta", description = "This document."),
    )
)]
pub struct ApiDoc;

/// Handles the `GET /api/openapi.json` route (no credential).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "This OpenAPI 3.1 document.", body = serde_json::Value, content_type = "application/json"),
    )
)]
pub async fn openapi() -> Response {
    json_response(document())
}

/// The document as JSON, built once.
pub fn document() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        camel_case_links(&mut doc);
        serde_json::to_vec(&doc).unwrap_or_default()
    })
}

/// utoipa 5.5 writes a Link Object's fields in snake case
/// (`operation_id`); OpenAPI spells them `operationId`, `operationRef`
/// and `requestBody`.
fn camel_case_links(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let serde_json::Value::Object(link) = link {
                        for (from, to) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(from) {
                                link.insert(to.to_owned(), v);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// The empty `text/plain` body of a `200` that says only its status.
pub struct Empty;

impl utoipa::PartialSchema for Empty {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(0))
            .into()
    }
}

impl utoipa::ToSchema for Empty {}

/// Adds what every route shares: security schemes, the layers' answers and
/// operation ids derived from the paths.
struct SharedParts;

impl Modify for SharedParts {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, scheme) in security_schemes() {
            components.add_security_scheme(name, scheme);
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let multiple = operations(item).count() > 1;
            for (method, op) in operations(item) {
                add_layer_responses(path, op);
                let method = multiple.then(|| method_name(method));
                op.operation_id = Some(operation_id(path, method));
            }
        }
    }
}

/// The credential channels: where the router and forward auth look for a key.
fn security_schemes() -> Vec<(&'static str, SecurityScheme)> {
    let mut basic = Http::new(HttpAuthScheme::Basic);
    basic.description = Some("`api:KEY`, or a user's `name:password`.".into());
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some("`Bearer KEY`: forward auth only.".into());
    vec![
        (
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-ApiKey",
                "A key, or `user:password` (a pseudo-key).",
            ))),
        ),
        (
            "apiKeyQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "key",
                "A key, or `user:password` (a pseudo-key). For forward auth: in the query of `X-Forwarded-Uri`.",
            ))),
        ),
        (
            "nugetApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-NuGet-ApiKey",
                "A key, or `user:password`: forward auth only.",
            ))),
        ),
        ("basic", SecurityScheme::Http(basic)),
        ("bearer", SecurityScheme::Http(bearer)),
    ]
}

/// Every operation of a path, with its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, &mut item.get),
        (HttpMethod::Put, &mut item.put),
        (HttpMethod::Post, &mut item.post),
        (HttpMethod::Delete, &mut item.delete),
        (HttpMethod::Options, &mut item.options),
        (HttpMethod::Head, &mut item.head),
        (HttpMethod::Patch, &mut item.patch),
        (HttpMethod::Trace, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// A unique operation id from the path (handlers of different resources
/// share names such as `list`): `/api/security/users/list` is
/// `securityUsersList`; with `method`, it is appended (`authForwardGet`).
fn operation_id(path: &str, method: Option<&str>) -> String {
    let mut id = String::new();
    let words = path
        .trim_start_matches("/api/")
        .split(['/', '-', '.'])
        .chain(method)
        .filter(|w| !w.is_empty());
    for word in words {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            if id.is_empty() {
                id.push(first.to_ascii_lowercase());
            } else {
                id.push(first.to_ascii_uppercase());
            }
            id.extend(chars);
        }
    }
    id
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Put => "put",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

/// Adds the answers of the layers in front of the handler, unless the
/// handler documents that status itself.
fn add_layer_responses(path: &str, op: &mut Operation) {
    let mut shared = vec![
        ("400", "The request body could not be read.", false),
        ("408", "The request body did not arrive in time.", false),
        ("413", "The request body is larger than 256 KiB.", false),
        ("414", "The request target is longer than 8 KiB.", false),
        (
            "429",
            "Too many request bodies in progress from this address, or (where a credential is \
             checked) too many failed authentications or password checks; retry after \
             `Retry-After` seconds.",
            true,
        ),
        ("431", "The request headers are larger than 32 KiB.", false),
        (
            "500",
            "Internal error: the body holds an error id; the details are in the server log.",
            false,
        ),
    ];
    // Health checks are never shed.
    if !path.starts_with("/health") {
        shared.push((
            "503",
            "The server is overloaded or busy checking passwords; retry after `Retry-After` seconds.",
            true,
        ));
    }
    for (status, description, retry_after) in shared {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        let text = Content::new(Some(ObjectBuilder::new().schema_type(Type::String)));
        let mut response = ResponseBuilder::new()
            .description(description)
            .content("text/plain", text);
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying."))
                    .build(),
            );
        }
        op.responses
            .responses
            .insert(status.to_owned(), RefOr::T(response.build()));
    }
}
