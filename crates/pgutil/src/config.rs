//! The sources file (`pgutil.config`) and the original tool's obfuscation of
//! the secrets in it, so that one file works with both tools.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes::Aes128;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The original tool's fixed, public obfuscation key. It hides secrets from a
/// casual glance at the file; it is not encryption against anyone who has it.
const OBFUSCATION_KEY: [u8; 16] = [
    207, 133, 227, 29, 231, 23, 59, 35, 79, 120, 240, 230, 231, 15, 243, 173,
];

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Configured sources, in file order.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Properties written by other versions of the tool, kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One named server and its credential, as stored (secrets still obfuscated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Unique name, matched case-insensitively.
    pub name: String,
    /// Server URL.
    pub url: String,
    /// Feed used by feed-specific commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_feed: Option<String>,
    /// User name for a `user:password` credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Plain-text password (only with `--plain-text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Plain-text API key (only with `--plain-text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Obfuscated password: base64 of IV ‖ AES-128-CBC ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_password: Option<String>,
    /// Obfuscated API key: base64 of IV ‖ AES-128-CBC ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_token: Option<String>,
    /// Properties written by other versions of the tool, kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A source's credential in clear, ready to be sent.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key.
    ApiKey(String),
    /// A user name and password, sent as the pseudo-key `user:password`.
    User {
        /// User name.
        name: String,
        /// Password (empty when none is stored).
        password: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(..)"),
            Credential::User { name, .. } => write!(f, "User({name}, ..)"),
        }
    }
}

impl Credential {
    /// The value of the `X-ApiKey` header.
    pub fn header_value(&self) -> String {
        match self {
            Credential::ApiKey(key) => key.clone(),
            Credential::User { name, password } => format!("{name}:{password}"),
        }
    }

    /// The user name, for a user credential.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Credential::ApiKey(_) => None,
            Credential::User { name, .. } => Some(name),
        }
    }
}

impl Source {
    /// Whether this source is called `name` (case-insensitively).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.to_lowercase() == name.to_lowercase()
    }

    /// Whether the source holds an API key (plain or obfuscated).
    pub fn has_api_key(&self) -> bool {
        self.token.as_deref().is_some_and(|t| !t.is_empty()) || self.encrypted_token.is_some()
    }

    /// The stored credential in clear: the API key wins over a user name.
    pub fn credential(&self) -> Result<Option<Credential>, Error> {
        let reveal = |plain: &Option<String>, obfuscated: &Option<String>, what: &str| {
            match (plain.as_deref().filter(|s| !s.is_empty()), obfuscated) {
                (Some(text), _) => Ok(Some(text.to_owned())),
                (None, Some(data)) => unobfuscate(data).map(Some).map_err(|reason| {
                    Error::Failed(format!(
                        "error: could not read the stored {what} of source {} ({reason}); add the source again with `pgutil sources add`",
                        self.name
                    ))
                }),
                (None, None) => Ok(None),
            }
        };
        if let Some(key) = reveal(&self.token, &self.encrypted_token, "API key")? {
            return Ok(Some(Credential::ApiKey(key)));
        }
        match self.username.as_deref().filter(|u| !u.is_empty()) {
            Some(name) => {
                let password = reveal(&self.password, &self.encrypted_password, "password")?
                    .unwrap_or_default();
                Ok(Some(Credential::User {
                    name: name.to_owned(),
                    password,
                }))
            }
            None => Ok(None),
        }
    }
}

/// Obfuscates `plain` as the original tool does: base64(IV ‖ AES-128-CBC-PKCS#7(plain)) with a random IV.
pub fn obfuscate(plain: &str) -> Result<String, Error> {
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut iv).map_err(|e| {
        Error::Failed(format!(
            "error: could not get random bytes from the operating system ({e})"
        ))
    })?;
    Ok(obfuscate_with_iv(plain, iv))
}

/// [`obfuscate`] with a given IV (tests pin the format with it).
pub fn obfuscate_with_iv(plain: &str, iv: [u8; 16]) -> String {
    let ciphertext = cbc::Encryptor::<Aes128>::new(&OBFUSCATION_KEY.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    let mut data = iv.to_vec();
    data.extend_from_slice(&ciphertext);
    BASE64.encode(data)
}

/// Reverses [`obfuscate`]; the error says why the value is not valid.
pub fn unobfuscate(text: &str) -> Result<String, String> {
    let data = BASE64
        .decode(text.trim())
        .map_err(|_| "not valid base64".to_owned())?;
    if data.len() < 32 || data.len() % 16 != 0 {
        return Err("wrong length".into());
    }
    let (iv, ciphertext) = data.split_at(16);
    let plain = cbc::Decryptor::<Aes128>::new(&OBFUSCATION_KEY.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| "bad padding".to_owned())?;
    String::from_utf8(plain).map_err(|_| "not UTF-8 text".to_owned())
}

/// Where the config file lives: `$PGUTIL_CONFIG`, else
/// `$XDG_CONFIG_HOME/pgutil/pgutil.config`, else `~/.config/pgutil/pgutil.config`.
pub fn config_path() -> Result<PathBuf, Error> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = non_empty("PGUTIL_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let base = match non_empty("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => match non_empty("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(Error::Failed(
                    "error: cannot find the config file because neither HOME nor XDG_CONFIG_HOME is set; set PGUTIL_CONFIG to its path".into(),
                ))
            }
        },
    };
    Ok(base.join("pgutil").join("pgutil.config"))
}

impl Config {
    /// Reads the config file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Error::Failed(format!(
                    "error: could not read config file {} ({e}); check its permissions or set PGUTIL_CONFIG",
                    path.display()
                )))
            }
        };
        Config::parse(&text).map_err(|e| {
            Error::Failed(format!(
                "error: config file {} is not valid ({e}); fix it or remove it",
                path.display()
            ))
        })
    }

    /// Reads the text of a config file; a blank one is an empty config.
    /// Public for fuzzing and tests.
    pub fn parse(text: &str) -> Result<Config, serde_json::Error> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_json::from_str(text)
    }

    /// Writes the config file atomically (temp file in the same folder, then
    /// rename) and readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::Failed(format!(
                "error: could not {what} config file {} ({e}); check the folder's permissions or set PGUTIL_CONFIG",
                path.display()
            ))
        };
        let mut json = serde_json::to_string_pretty(self).map_err(|e| fail("serialise the", &e))?;
        json.push('\n');
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir).map_err(|e| fail("create the folder of the", &e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{file_name}.{}.{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let written =
            write_private_file(&tmp, json.as_bytes()).and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(fail("write the", &e));
        }
        // Make the rename itself durable; failing to sync a folder is not worth an error.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The source called `name` (case-insensitively).
    pub fn find(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.is_named(name))
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with openssl (the IV 00..0f is prepended):
    /// `(printf '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f';
    ///   printf 'abc12345' | openssl enc -aes-128-cbc -K cf85e31de7173b234f78f0e6e70ff3ad
    ///   -iv 000102030405060708090a0b0c0d0e0f) | base64`
    const FIXED_VECTOR: &str = "AAECAwQFBgcICQoLDA0OD/XoC6l08HSxHxJQ5awT2Y4=";

    #[test]
    fn obfuscation_matches_the_original_tool_byte_for_byte() {
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(obfuscate_with_iv("abc12345", iv), FIXED_VECTOR);
        assert_eq!(unobfuscate(FIXED_VECTOR).as_deref(), Ok("abc12345"));
    }

    #[test]
    fn obfuscation_round_trips_with_a_random_iv() {
        for secret in ["", "k", "exactly16bytes!!", "Admin:pässwörd with spaces"] {
            let a = obfuscate(secret).map_err(|e| e.to_string());
            let b = obfuscate(secret).map_err(|e| e.to_string());
            assert_ne!(a, b, "the IV is random");
            let a = a.unwrap_or_default();
            assert_eq!(unobfuscate(&a).as_deref(), Ok(secret));
        }
    }

    #[test]
    fn damaged_obfuscated_values_are_errors_not_panics() {
        assert!(unobfuscate("not base64!").is_err());
        assert!(unobfuscate("AAECAwQFBgcICQoLDA0ODw==").is_err());
        assert!(unobfuscate("AAECAwQFBgcICQoLDA0OD/XoC6l08HSxHxJQ5awT2Y8=").is_err());
    }

    #[test]
    fn file_format_is_camel_case_without_nulls_and_keeps_unknown_properties() {
        let text = r#"{"sources":[{"name":"Default","url":"http://x/","encryptedToken":"AA==","futureField":1}],"version":2}"#;
        let config: Config = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(config.sources.len(), 1);
        let json = serde_json::to_value(&config).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"sources":[{"name":"Default","url":"http://x/","encryptedToken":"AA==","futureField":1}],"version":2})
        );
    }

    /// Found by the `pgutil_config` fuzz target: a long number in an
    /// unknown property came back with another last digit after a save.
    #[test]
    fn numbers_of_unknown_properties_survive_a_save_exactly() {
        let text = r#"{"sources":[],"x":[22222222222222222222222222222222222222222222222222222222222222222222222222222222222,0.30000000000000004]}"#;
        let config = Config::parse(text).unwrap_or_default();
        let saved = serde_json::to_string(&config).unwrap_or_default();
        assert_eq!(Config::parse(&saved).ok(), Some(config));
    }

    #[test]
    fn api_key_wins_over_user_name() {
        let source = Source {
            name: "s".into(),
            url: "http://x/".into(),
            username: Some("u".into()),
            encrypted_password: Some(obfuscate_with_iv("p", [7; 16])),
            token: Some("k".into()),
            ..Default::default()
        };
        assert_eq!(
            source.credential().ok().flatten(),
            Some(Credential::ApiKey("k".into()))
        );
        let user_only = Source {
            token: None,
            ..source
        };
        assert_eq!(
            user_only
                .credential()
                .ok()
                .flatten()
                .map(|c| c.header_value()),
            Some("u:p".to_owned())
        );
    }

    #[test]
    fn save_is_private_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("sub").join("pgutil.config");
        let config = Config {
            sources: vec![Source {
                name: "Default".into(),
                url: "http://x/".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(config.save(&path).is_ok());
        assert_eq!(Config::load(&path).ok(), Some(config));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
        let leftovers = fs::read_dir(path.parent().unwrap_or(dir.path()))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 1, "no temp file is left behind");
    }
}
