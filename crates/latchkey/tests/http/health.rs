//! `GET /health` and its JSON forms: no credential needed.

use serde_json::Value;

use crate::both_backends;
use crate::common::{client, Backend, TestServer};

both_backends!(
    health_is_ok_without_a_credential,
    health_json_has_the_spec_fields_in_both_forms,
    health_with_a_wrong_method_is_405_with_allow,
);

fn health_is_ok_without_a_credential(backend: Backend) {
    let s = TestServer::start(backend);
    let r = client().get(s.url("/health")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().unwrap(), "OK");
    let r = client()
        .get(s.url("/health"))
        .header("X-ApiKey", "lk_wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a wrong credential does not matter either");
}

fn health_json_has_the_spec_fields_in_both_forms(backend: Backend) {
    let s = TestServer::start(backend);
    let mut bodies = Vec::new();
    for path in ["/health/json", "/health?format=json", "/health?format=JSON"] {
        let r = client().get(s.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = r.json().unwrap();
        for field in ["applicationName", "versionNumber", "releaseNumber"] {
            assert!(
                !body[field].as_str().unwrap_or_default().is_empty(),
                "{path}: {field} in {body}"
            );
        }
        for field in ["databaseStatus", "licenseStatus", "serviceStatus"] {
            assert_eq!(body[field], "OK", "{path}: {field} in {body}");
        }
        let mut names: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "applicationName",
                "databaseStatus",
                "licenseStatus",
                "releaseNumber",
                "serviceStatus",
                "versionNumber"
            ],
            "{path}: no details while everything is OK"
        );
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
}

fn health_with_a_wrong_method_is_405_with_allow(backend: Backend) {
    let s = TestServer::start(backend);
    for (method, path) in [
        ("POST", "/health"),
        ("DELETE", "/health"),
        ("PUT", "/health/json"),
        ("POST", "/health/json"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), s.url(path))
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        let allow = r.headers()["allow"].to_str().unwrap().to_owned();
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "{method} {path}: Allow {allow}"
        );
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    }
}
