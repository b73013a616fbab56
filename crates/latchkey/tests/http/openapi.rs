//! `GET /api/openapi.json`: the OpenAPI 3.1 document describes every route
//! the router serves (`operations.md` section 1).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{client, Backend, TestServer};

/// Every route of `latchkey::http::service` but the console's, with its
/// methods (lower case, as OpenAPI names them). A route added to the router
/// belongs here and in the document.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/api-keys/create", &["post"]),
    ("/api/api-keys/list", &["get"]),
    ("/api/api-keys/delete", &["post"]),
    ("/api/api-keys/rotate", &["post"]),
    ("/api/api-keys/leaked", &["post"]),
    ("/api/api-keys/logs", &["get"]),
    ("/api/api-keys/verify", &["post"]),
    ("/api/api-keys/self", &["get"]),
    (
        "/api/auth/forward",
        &[
            "get", "post", "put", "delete", "patch", "head", "options", "trace",
        ],
    ),
    ("/api/security/users/add", &["post"]),
    ("/api/security/users/list", &["get"]),
    ("/api/security/users/delete", &["delete"]),
    ("/api/security/users/edit", &["post"]),
    ("/api/security/permissions/list", &["get"]),
    ("/api/security/permissions/add", &["post"]),
    ("/api/security/permissions/delete", &["post"]),
    ("/api/security/groups/list", &["get"]),
    ("/api/security/groups/add", &["post"]),
    ("/api/security/groups/edit", &["post"]),
    ("/api/security/groups/delete", &["post"]),
    ("/api/security/tasks/list", &["get"]),
    ("/api/audit/list", &["get"]),
    ("/api/openapi.json", &["get"]),
    ("/health", &["get"]),
    ("/health/json", &["get"]),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document(s: &TestServer) -> Value {
    let r = client().get(s.url("/api/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200, "no credential needed");
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    serde_json::from_str(&r.text().unwrap()).expect("the document is JSON")
}

/// The operations of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

#[test]
fn the_document_is_openapi_3_1_and_lists_every_route_with_its_methods() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = document(&s);
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert!(!doc["info"]["title"].as_str().unwrap_or_default().is_empty());
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

#[test]
fn every_response_has_a_description_every_operation_a_unique_id_and_links_resolve() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = document(&s);
    let mut ids = BTreeSet::new();
    let mut links = Vec::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_default();
                links.push((
                    format!("{method} {path} {status} {name}"),
                    target.to_owned(),
                ));
            }
        }
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path}: no success response"
        );
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                !description.trim().is_empty(),
                "{method} {path} {status}: no description"
            );
            assert!(
                status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()),
                "{method} {path}: status {status} is not a status code"
            );
        }
    }
    assert!(
        !links.is_empty(),
        "the document has links for stateful testing"
    );
    for (link, target) in links {
        assert!(ids.contains(&target), "{link}: no operation {target:?}");
    }
}

#[test]
fn every_reference_resolves_and_the_credential_channels_are_security_schemes() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = document(&s);
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let schemes = &doc["components"]["securitySchemes"];
    for (name, kind, location, header) in [
        ("apiKey", "apiKey", Some("header"), Some("X-ApiKey")),
        (
            "nugetApiKey",
            "apiKey",
            Some("header"),
            Some("X-NuGet-ApiKey"),
        ),
        ("apiKeyQuery", "apiKey", Some("query"), Some("key")),
        ("basic", "http", None, None),
        ("bearer", "http", None, None),
    ] {
        let scheme = &schemes[name];
        assert_eq!(scheme["type"], kind, "{name}: {scheme}");
        if let (Some(location), Some(header)) = (location, header) {
            assert_eq!(scheme["in"], location, "{name}");
            assert_eq!(scheme["name"], header, "{name}");
        }
    }
    for path in [
        "/health",
        "/health/json",
        "/api/openapi.json",
        "/api/api-keys/verify",
    ] {
        let op = doc["paths"][path]
            .as_object()
            .and_then(|item| item.values().next())
            .expect(path);
        assert_eq!(
            op["security"],
            serde_json::json!([{}]),
            "{path} needs no credential"
        );
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_documented_operation_is_served_by_the_router() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = document(&s);
    for (path, method, _) in operations(&doc) {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = client()
            .request(method.clone(), s.url(&path))
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        let status = r.status();
        assert_ne!(status, 405, "{method} {path}");
        let body = r.text().unwrap();
        assert!(
            !(status == 404 && body == "not found"),
            "{method} {path} is not routed"
        );
    }
}
