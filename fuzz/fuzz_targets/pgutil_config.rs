//! pgutil's config file reader (`Config::parse`), the credential it reveals
//! and the original tool's obfuscation of secrets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgutil::config::{obfuscate_with_iv, unobfuscate, Config, Credential};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        // What pgutil reads, it saves and reads back the same.
        let saved = serde_json::to_string_pretty(&config).expect("a config read is written");
        assert_eq!(Config::parse(&saved).ok().as_ref(), Some(&config));
        for source in &config.sources {
            assert!(source.is_named(&source.name));
            assert!(config.find(&source.name).is_some());
            match source.credential() {
                Ok(Some(Credential::ApiKey(key))) => {
                    assert!(source.has_api_key());
                    assert!(!key.is_empty() || source.encrypted_token.is_some());
                }
                Ok(Some(Credential::User { name, password })) => {
                    assert!(!source.has_api_key());
                    assert!(!name.is_empty());
                    let header = format!("{name}:{password}");
                    assert_eq!(Credential::User { name, password }.header_value(), header);
                }
                Ok(None) => assert!(!source.has_api_key()),
                Err(e) => assert!(e.to_string().contains("could not read the stored")),
            }
        }
    }
    // Whatever the text, the obfuscation round-trips it (with an IV from the input).
    let mut iv = [0u8; 16];
    for (slot, b) in iv.iter_mut().zip(data) {
        *slot = *b;
    }
    let hidden = obfuscate_with_iv(text, iv);
    assert_eq!(unobfuscate(&hidden).as_deref(), Ok(text));
    if let Ok(plain) = unobfuscate(text) {
        assert_eq!(unobfuscate(&obfuscate_with_iv(&plain, iv)), Ok(plain));
    }
});
