//! `latchkey check-config`: validates the settings `serve` would start with,
//! changing nothing (no directory created, no migration run, no secret
//! written, the port not bound: a running server may hold it).

use std::net::ToSocketAddrs;
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::ServeArgs;
use crate::secrets::{fingerprint, same_fingerprint, Secrets};
use crate::server::redact_url;
use crate::store;

/// Checks `args`; `Ok` with notes on what the first start would do, or the
/// first problem found.
pub async fn check_config(args: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    args.listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!(
                "--listen {:?} is not an address to listen on (expected HOST:PORT, e.g. 127.0.0.1:8624)",
                args.listen
            )
        })?;
    let data_dir = &args.data_dir;
    check_data_dir(data_dir, &mut notes)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url_for(data_dir));
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !postgres && !url.starts_with("sqlite:") {
        bail!(
            "--database-url {} is not a database URL (expected sqlite://PATH or postgres://…)",
            redact_url(&url)
        );
    }
    if postgres && std::env::var_os("LATCHKEY_SECRET").is_none() {
        bail!("LATCHKEY_SECRET must be set on PostgreSQL, to the same value on every node");
    }
    let secrets = Secrets::load(data_dir, postgres)?;
    let state = store::inspect(&url)
        .await
        .with_context(|| format!("cannot check the database {}", redact_url(&url)))?;
    match &state {
        None => notes.push(format!(
            "the database {} does not exist yet: it will be created at start",
            redact_url(&url)
        )),
        Some(state) => {
            if let Some(unknown) = state.applied.iter().find(|v| !state.known.contains(v)) {
                bail!(
                    "the database {} has migration {unknown}, newer than this latchkey knows: run a newer latchkey",
                    redact_url(&url)
                );
            }
            let pending = state
                .known
                .iter()
                .filter(|v| !state.applied.contains(v))
                .count();
            if pending > 0 {
                notes.push(format!(
                    "{pending} database migration(s) will be applied at start"
                ));
            }
        }
    }
    let recorded = state.as_ref().and_then(|s| s.fingerprint.as_deref());
    match (&secrets, recorded) {
        (None, None) => notes.push(format!(
            "no installation secret yet: one will be generated into {}",
            data_dir.join(crate::secrets::SECRET_FILE).display()
        )),
        (None, Some(_)) => bail!(
            "there is no installation secret, but the database was set up with one: restore {} or set LATCHKEY_SECRET",
            data_dir.join(crate::secrets::SECRET_FILE).display()
        ),
        (Some(secrets), Some(recorded)) => {
            let matches = |s: &[u8]| same_fingerprint(recorded, &fingerprint(s));
            if !matches(&secrets.current) && !secrets.previous.as_deref().is_some_and(matches) {
                bail!(
                    "the installation secret does not match the one this database was set up with: \
                     restore {} or set LATCHKEY_SECRET to the secret in use",
                    data_dir.join(crate::secrets::SECRET_FILE).display()
                );
            }
        }
        (Some(_), None) => {}
    }
    if let Some(path) = &args.leak_report_keys {
        crate::http::leaked::LeakReportKeys::load(path)?;
    }
    if let Some(public) = &args.public_url {
        check_public_url(public)?;
    }
    Ok(notes)
}

/// The data directory as `serve` requires it: ours, not writable by group
/// or others; or absent with an existing parent (then it will be created).
fn check_data_dir(data_dir: &Path, notes: &mut Vec<String>) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(data_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = data_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                bail!(
                    "the data directory {} does not exist, nor does its parent {}: create it, or choose another --data-dir",
                    data_dir.display(),
                    parent.display()
                );
            }
            notes.push(format!(
                "the data directory {} does not exist yet: it will be created (mode 700)",
                data_dir.display()
            ));
            return Ok(());
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the data directory {}", data_dir.display()))
        }
    };
    let mode = crate::server::check_data_dir(data_dir, &meta)?;
    if mode & 0o077 != 0 {
        notes.push(format!(
            "the data directory {} is readable by others (mode {mode:o}): it will be made 700 at start",
            data_dir.display()
        ));
    }
    Ok(())
}

/// `--public-url`: `http://` or `https://` and a host.
fn check_public_url(url: &str) -> anyhow::Result<()> {
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .with_context(|| {
            format!("--public-url {url:?} must start with http:// or https:// (e.g. https://keys.example.com)")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("--public-url {url:?} has no host (e.g. https://keys.example.com)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_public_url;

    #[test]
    fn public_urls_need_a_scheme_and_a_host() {
        for ok in [
            "https://keys.example.com",
            "HTTP://10.0.0.1:8624/",
            "https://h/x",
        ] {
            assert!(check_public_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "keys.example.com",
            "ftp://x",
            "https://",
            "https:///path",
            "http://a b",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }
}
