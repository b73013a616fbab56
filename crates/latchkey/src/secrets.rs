//! The installation secret that keys the digests, and its rotation.
//!
//! The current secret is `LATCHKEY_SECRET`, else `<data-dir>/secret`
//! (generated on the first start of an SQLite installation; PostgreSQL nodes
//! require `LATCHKEY_SECRET`). The database records the secret's
//! [`fingerprint`], so that a start with another secret is refused. A
//! previous secret — `LATCHKEY_PREVIOUS_SECRET`, else
//! `<data-dir>/secret.previous` — is also accepted: a key found under it is
//! re-keyed under the current secret on first use.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub(crate) const SECRET_FILE: &str = "secret";
const PREVIOUS_SECRET_FILE: &str = "secret.previous";
const MIN_LEN: usize = 32;

/// The secrets in force.
pub struct Secrets {
    /// Keys new digests and is tried first.
    pub current: Vec<u8>,
    /// Also accepted, until every key has been re-keyed or the operator retires it.
    pub previous: Option<Vec<u8>>,
}

/// Label whose HMAC under the secret is stored in the database as the
/// secret's fingerprint (it identifies the secret without revealing it).
const FINGERPRINT_LABEL: &[u8] = b"latchkey installation secret fingerprint v1";

impl Secrets {
    /// Loads the secrets in force; `None` when there is no current secret
    /// (no `LATCHKEY_SECRET` and, unless `env_only`, no `<data-dir>/secret`).
    pub fn load(data_dir: &Path, env_only: bool) -> anyhow::Result<Option<Secrets>> {
        let current = match env_secret("LATCHKEY_SECRET")? {
            Some(s) => s,
            None if env_only => return Ok(None),
            None => match file_secret(&data_dir.join(SECRET_FILE))? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        Ok(Some(Secrets {
            current,
            previous: previous_secret(data_dir)?,
        }))
    }

    /// Generates `<data-dir>/secret` (a first start) and loads the secrets.
    pub fn generate(data_dir: &Path) -> anyhow::Result<Secrets> {
        let path = data_dir.join(SECRET_FILE);
        write_private(&path, &new_secret())?;
        tracing::info!(path = %path.display(), "generated the installation secret");
        let current =
            file_secret(&path)?.with_context(|| format!("{} vanished", path.display()))?;
        Ok(Secrets {
            current,
            previous: previous_secret(data_dir)?,
        })
    }
}

/// The fingerprint of a secret as stored in the database: the hex
/// HMAC-SHA-256 of a fixed label under the secret.
pub fn fingerprint(secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"); // ok: infallible for HMAC
    mac.update(FINGERPRINT_LABEL);
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two fingerprints in constant time.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn previous_secret(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match env_secret("LATCHKEY_PREVIOUS_SECRET")? {
        Some(s) => Ok(Some(s)),
        None => file_secret(&data_dir.join(PREVIOUS_SECRET_FILE)),
    }
}

/// `latchkey rotate-secret`: moves `<data-dir>/secret` to `secret.previous`
/// and generates a new `secret`. Refuses while a previous secret exists, since
/// keys not used since the last rotation still depend on it.
pub fn rotate(data_dir: &Path) -> anyhow::Result<()> {
    let current = data_dir.join(SECRET_FILE);
    let previous = data_dir.join(PREVIOUS_SECRET_FILE);
    if std::env::var_os("LATCHKEY_SECRET").is_some() {
        bail!("LATCHKEY_SECRET is set: rotate by moving its value to LATCHKEY_PREVIOUS_SECRET and setting a new LATCHKEY_SECRET (see README)");
    }
    if !current.exists() {
        bail!("there is no secret to rotate in {}", data_dir.display());
    }
    if previous.exists() {
        bail!(
            "{} still exists: keys not used since the last rotation depend on it; delete it first if you accept that they stop working",
            previous.display()
        );
    }
    fs::rename(&current, &previous)
        .with_context(|| format!("cannot move {} aside", current.display()))?;
    write_private(&current, &new_secret())?;
    Ok(())
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn env_secret(name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match std::env::var(name) {
        Ok(s) if s.len() >= MIN_LEN => Ok(Some(s.into_bytes())),
        Ok(_) => {
            bail!("{name} must be at least {MIN_LEN} characters (e.g. `openssl rand -hex 32`)")
        }
        Err(_) => Ok(None),
    }
}

fn file_secret(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the secret file is readable by others; run chmod 600 on it");
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the installation secret {}", path.display()))?;
    let secret = text.trim();
    if secret.len() < MIN_LEN {
        bail!(
            "the installation secret {} is shorter than {MIN_LEN} characters",
            path.display()
        );
    }
    Ok(Some(secret.as_bytes().to_vec()))
}

/// Writes a file only its owner can read, durably (replacing any old one).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
