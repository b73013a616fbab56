//! `POST /api/api-keys/leaked` (`operations.md` section 4): reports signed
//! with ECDSA P-256 by a key pair made here; good, bad and missing
//! signatures, an unknown key id, a key already deleted.

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::common::{client, full_control, Backend, Options, TestServer};

both_backends!(
    without_configured_keys_the_endpoint_is_404,
    a_signed_report_deletes_live_keys_and_labels_every_token,
    a_bad_missing_or_unknown_signature_is_401_and_changes_nothing,
);

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

/// A signing key and a server that trusts its public key (and another one's).
fn start(backend: Backend) -> (TestServer, SigningKey, tempfile::TempDir) {
    let signer = SigningKey::random(&mut rand::rngs::OsRng);
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = |k: &SigningKey| k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leak-keys.json");
    let keys = json!({"public_keys": [
        {"key_identifier": KEY_ID, "key": pem(&signer), "is_current": true},
        {"key_identifier": "other", "key": pem(&other), "is_current": false},
    ]});
    std::fs::write(&path, keys.to_string()).unwrap();
    let s = TestServer::start_with(
        backend,
        Options {
            args: vec!["--leak-report-keys".into(), path.display().to_string()],
            ..Options::default()
        },
    );
    (s, signer, dir)
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: DerSignature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.as_bytes())
}

fn send(s: &TestServer, body: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = client()
        .post(s.url("/api/api-keys/leaked"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    r.send().unwrap()
}

fn report(tokens: &[&str]) -> String {
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({"token": t, "type": "latchkey_api_key",
                "url": "https://github.com/octo/leaky/blob/main/.env", "source": "content"})
        })
        .collect();
    Value::from(items).to_string()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn without_configured_keys_the_endpoint_is_404(backend: Backend) {
    let s = TestServer::start(backend);
    let r = send(&s, "[]", &[("Github-Public-Key-Identifier", KEY_ID)]);
    assert_eq!(r.status(), 404);
}

fn a_signed_report_deletes_live_keys_and_labels_every_token(backend: Backend) {
    let (s, signer, _dir) = start(backend);
    let (live_id, live) = s.create_key(full_control());
    let (gone_id, gone) = s.create_key(full_control());
    let (_, kept) = s.create_key(full_control());
    assert_eq!(s.delete_key(gone_id, &s.admin()).status(), 200);
    let unknown = "lk_not-a-key-at-all-0123456789";
    let body = report(&[&live, unknown, &gone]);
    let r = send(
        &s,
        &body,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            (
                "Github-Public-Key-Signature",
                &sign(&signer, body.as_bytes()),
            ),
        ],
    );
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let expected: Vec<Value> = [(&live, "true_positive"), (&unknown.to_owned(), "false_positive"), (&gone, "false_positive")]
        .iter()
        .map(|(t, label)| {
            json!({"token_hash": sha256_hex(t), "token_type": "latchkey_api_key", "label": label})
        })
        .collect();
    assert_eq!(answer, Value::from(expected));
    assert_eq!(s.list_keys(&live).status(), 403, "the leaked key is gone");
    assert_eq!(s.delete_key(live_id, &s.admin()).status(), 404);
    assert_eq!(s.list_keys(&kept).status(), 200, "an unreported key stays");

    // The audit entry names the action and the URL; no text is anywhere.
    let r = client()
        .get(s.url("/api/audit/list?action=apikey.leaked"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    let entries: Vec<Value> = r.json().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], format!("key {live_id}"));
    assert_eq!(entries[0]["actor"], "system");
    assert_eq!(
        entries[0]["details"]["url"],
        "https://github.com/octo/leaky/blob/main/.env"
    );
    let log = s.log();
    for secret in [&live, &gone, &unknown.to_owned()] {
        assert!(!text.contains(secret.as_str()) && !log.contains(secret.as_str()));
        assert!(!serde_json::to_string(&entries)
            .unwrap()
            .contains(secret.as_str()));
    }

    // The same report again: nothing live is left in it.
    let r = send(
        &s,
        &body,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            (
                "Github-Public-Key-Signature",
                &sign(&signer, body.as_bytes()),
            ),
        ],
    );
    let again: Vec<Value> = r.json().unwrap();
    assert!(
        again.iter().all(|v| v["label"] == "false_positive"),
        "{again:?}"
    );
    // A signed body that is not a report is 400.
    let bad = r#"{"token": "x"}"#;
    let r = send(
        &s,
        bad,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            (
                "Github-Public-Key-Signature",
                &sign(&signer, bad.as_bytes()),
            ),
        ],
    );
    assert_eq!(r.status(), 400);
}

fn a_bad_missing_or_unknown_signature_is_401_and_changes_nothing(backend: Backend) {
    let (s, signer, _dir) = start(backend);
    let (_, live) = s.create_key(full_control());
    let body = report(&[&live]);
    let good = sign(&signer, body.as_bytes());
    let stranger = SigningKey::random(&mut rand::rngs::OsRng);
    let other_body = sign(&signer, report(&["something else"]).as_bytes());
    let by_stranger = sign(&stranger, body.as_bytes());
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no headers", vec![]),
        (
            "no signature",
            vec![("Github-Public-Key-Identifier", KEY_ID)],
        ),
        ("no key id", vec![("Github-Public-Key-Signature", &good)]),
        (
            "unknown key id",
            vec![
                ("Github-Public-Key-Identifier", "nope"),
                ("Github-Public-Key-Signature", &good),
            ],
        ),
        (
            "another trusted key's id",
            vec![
                ("Github-Public-Key-Identifier", "other"),
                ("Github-Public-Key-Signature", &good),
            ],
        ),
        (
            "signature of another body",
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", &other_body),
            ],
        ),
        (
            "signed by a stranger",
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", &by_stranger),
            ],
        ),
        (
            "not base64",
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", "***"),
            ],
        ),
        (
            "not DER",
            vec![
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", "AAAA"),
            ],
        ),
    ];
    for (what, headers) in cases {
        let r = send(&s, &body, &headers);
        assert_eq!(r.status(), 401, "{what}");
        assert!(!r.text().unwrap().contains(&live), "{what}");
    }
    assert_eq!(s.list_keys(&live).status(), 200, "nothing was deleted");
    assert!(!s.log().contains(&live));
    // The good signature still works afterwards.
    let r = send(
        &s,
        &body,
        &[
            ("Github-Public-Key-Identifier", KEY_ID),
            ("Github-Public-Key-Signature", &good),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(s.list_keys(&live).status(), 403);
}

#[test]
fn an_unreadable_keys_file_stops_start_up_with_a_clear_message() {
    let (mut s, _, dir) = start(Backend::Sqlite);
    let path = dir.path().join("leak-keys.json");
    for (content, says) in [
        ("not json", "expected a JSON list"),
        ("[]", "lists no keys"),
        (
            r#"[{"key_identifier": "k", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]"#,
            "is not a PEM P-256 public key",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let (status, log) = s.restart_expecting_failure();
        assert!(!status.success(), "{content}");
        assert!(log.contains(says), "{content}: {log}");
    }
}
