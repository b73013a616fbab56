//! Property tests standing in for fuzzing where `cargo fuzz` cannot run in
//! CI (it needs a nightly toolchain): the sources-file reader and the
//! secrets' obfuscation.
//!
//! Longer runs: `PROPTEST_CASES=100000 cargo nextest run -p pgutil --test config_fuzz`.

use pgutil::config::{obfuscate, unobfuscate, Config, Credential, Source};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Writes `bytes` as a config file and reads it back.
fn load_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgutil.config");
    std::fs::write(&path, bytes).unwrap();
    let loaded = Config::load(&path).map_err(|e| e.to_string());
    (dir, loaded)
}

/// Bytes that are often nearly a config file.
fn near_config_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(
        &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"sources\"",
            "\"name\"",
            "\"url\"",
            "\"token\"",
            "\"encryptedToken\"",
            "\"encryptedPassword\"",
            "\"username\"",
            "\"AAECAwQFBgcICQoLDA0OD/XoC6l08HSxHxJQ5awT2Y4=\"",
            "\"x\"",
            "null",
            "1",
            "true",
            " ",
            "\u{feff}",
            "\"\\ud800\"",
        ][..],
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat().into_bytes()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn source() -> impl Strategy<Value = Source> {
    (
        (
            text(),
            text(),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        prop::collection::vec(("x[a-z]{1,8}", any::<i32>()), 0..3),
    )
        .prop_map(
            |(
                (name, url, default_feed, username),
                (password, token, hidden_pw, hidden_key),
                other,
            )| Source {
                name,
                url,
                default_feed,
                username,
                password,
                token,
                encrypted_password: hidden_pw.map(|p| obfuscate(&p).unwrap()),
                encrypted_token: hidden_key.map(|k| obfuscate(&k).unwrap()),
                other: other
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect::<Map<_, _>>(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in near_config_bytes()) {
        let (_dir, loaded) = load_bytes(&bytes);
        if let Ok(config) = loaded {
            for s in &config.sources {
                // Damaged obfuscated values are errors, never panics.
                let _ = s.credential();
            }
        }
    }

    #[test]
    fn valid_files_round_trip(sources in prop::collection::vec(source(), 0..4), version in any::<Option<u8>>()) {
        let mut config = Config { sources, ..Default::default() };
        if let Some(v) = version {
            config.other.insert("version".into(), Value::from(v));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgutil.config");
        prop_assert!(config.save(&path).is_ok());
        let loaded = Config::load(&path).map_err(|e| e.to_string());
        prop_assert_eq!(loaded.as_ref(), Ok(&config));
        for s in &config.sources {
            prop_assert!(s.credential().is_ok(), "a saved credential can be read back");
        }
    }

    #[test]
    fn obfuscated_secrets_round_trip(secret in ".{0,80}") {
        let hidden = obfuscate(&secret).unwrap();
        prop_assert_eq!(unobfuscate(&hidden), Ok(secret.clone()));
        let source = Source { name: "s".into(), url: "http://x/".into(), encrypted_token: Some(hidden), ..Default::default() };
        prop_assert_eq!(source.credential().ok().flatten(), Some(Credential::ApiKey(secret)));
    }

    #[test]
    fn unobfuscating_arbitrary_text_never_panics(text in ".{0,120}", bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let _ = unobfuscate(&text);
        use base64::Engine;
        let _ = unobfuscate(&base64::engine::general_purpose::STANDARD.encode(bytes));
    }
}
