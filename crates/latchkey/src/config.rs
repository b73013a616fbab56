//! Command line and environment: `latchkey serve` and its settings.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Latchkey: a self-hosted API-key service that speaks ProGet's API-key HTTP API.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Runs the HTTP server.
    #[command(after_help = "\
Environment only (never on the command line):
  LATCHKEY_ADMIN_PASSWORD  password of the first user, Admin, created on an empty database
                           (default: generated into <data-dir>/initial-admin-password)
  LATCHKEY_SECRET          installation secret for key digests, shared by every node;
                           required on PostgreSQL (SQLite default: generated once into
                           <data-dir>/secret, mode 0600)
  LATCHKEY_PREVIOUS_SECRET the secret before a rotation, still accepted
                           (default: <data-dir>/secret.previous if present)
  RUST_LOG                 log level (default: info)

Examples:
  latchkey serve
  latchkey serve --listen 0.0.0.0:8624 --data-dir /var/lib/latchkey
  latchkey serve --database-url postgres://latchkey@db.internal/latchkey")]
    Serve(ServeArgs),
    /// Checks the settings `serve` would start with, changing nothing: the
    /// listen address, the data directory, the secret, the database
    /// (reachable, migrations, secret fingerprint), the leak-report keys, the
    /// public URL. Prints `configuration ok` (exit 0) or `error: …` (exit 1).
    #[command(after_help = "\
Takes the same flags and environment variables as `latchkey serve`.

Examples:
  latchkey check-config --data-dir /var/lib/latchkey
  LATCHKEY_SECRET=... latchkey check-config --database-url postgres://latchkey@db.internal/latchkey")]
    CheckConfig(ServeArgs),
    /// Replaces <data-dir>/secret with a new one, keeping the old as
    /// secret.previous; keys are re-keyed on first use. Restart the server afterwards.
    RotateSecret {
        /// The server's data directory.
        #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
        data_dir: PathBuf,
    },
    /// Sets a new password for Admin (recreating it, or re-adding it to
    /// Administrators, if needed). Refused while a server runs on an SQLite database.
    #[command(after_help = "\
The password is LATCHKEY_ADMIN_PASSWORD, else generated into <data-dir>/initial-admin-password
(mode 0600; refused if that file exists, so that it is never overwritten).")]
    ResetAdmin(ResetAdminArgs),
}

/// Settings of `latchkey reset-admin`.
#[derive(Debug, Clone, Args)]
pub struct ResetAdminArgs {
    /// The server's data directory.
    #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://… [default: sqlite://<data-dir>/latchkey.db]
    #[arg(long, env = "LATCHKEY_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Settings of `latchkey serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8624")]
    pub listen: String,
    /// Directory for the SQLite database, the secret and the first admin password.
    #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://… [default: sqlite://<data-dir>/latchkey.db]
    #[arg(long, env = "LATCHKEY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Accept `user:password` where a key is expected.
    #[arg(long, env = "LATCHKEY_PSEUDO_KEYS", default_value_t = true, action = ArgAction::Set)]
    pub pseudo_keys: bool,
    /// Accept a caller-chosen `key` text on create.
    #[arg(long, env = "LATCHKEY_CUSTOM_KEYS", default_value_t = true, action = ArgAction::Set)]
    pub custom_keys: bool,
    /// Shortest custom key text accepted on create (8 to 256).
    #[arg(long, env = "LATCHKEY_CUSTOM_KEY_MIN_LENGTH", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(crate::keys::MIN_CUSTOM_KEY_FLOOR as i64..=256))]
    pub custom_key_min_length: u16,
    /// Most personal keys a non-administrator may hold.
    #[arg(long, env = "LATCHKEY_MAX_PERSONAL_KEYS", default_value_t = 100)]
    pub max_personal_keys: usize,
    /// Shortest password accepted on users/add and users/edit.
    #[arg(long, env = "LATCHKEY_MIN_PASSWORD_LENGTH", default_value_t = 8)]
    pub min_password_length: usize,
    /// Requests served at once; more are refused at once with 503.
    #[arg(long, env = "LATCHKEY_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Seconds a client may take to send a request body (then 408).
    #[arg(long, env = "LATCHKEY_BODY_TIMEOUT", default_value_t = 10)]
    pub body_timeout: u64,
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(long, env = "LATCHKEY_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Failed authentications from one address within 60 s that block it (0: no limit).
    #[arg(long, env = "LATCHKEY_AUTH_FAILURE_LIMIT", default_value_t = crate::http::limiter::DEFAULT_FAILURE_LIMIT)]
    pub auth_failure_limit: u32,
    /// Seconds a blocked address gets 429; doubles on each repeat, up to 15 minutes (0: no limit).
    #[arg(long, env = "LATCHKEY_AUTH_BLOCK_SECONDS", default_value_t = crate::http::limiter::DEFAULT_BLOCK_SECONDS)]
    pub auth_block_seconds: u64,
    /// Days audit entries are kept (0: forever); older ones are pruned in the background.
    #[arg(long, env = "LATCHKEY_AUDIT_DAYS", default_value_t = 365)]
    pub audit_days: u32,
    /// Proxies (comma-separated CIDR networks or addresses) whose
    /// X-Forwarded-For is believed: a request from one of them counts as
    /// coming from the last untrusted address in that header (default: none).
    #[arg(
        long,
        env = "LATCHKEY_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR,..."
    )]
    pub trusted_proxies: Vec<crate::http::client::Cidr>,
    /// Days access-log entries are kept; older ones are pruned in the background.
    #[arg(long, env = "LATCHKEY_ACCESS_LOG_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub access_log_days: u32,
    /// Most access-log entries kept per key; older ones beyond it are pruned.
    #[arg(long, env = "LATCHKEY_ACCESS_LOG_MAX_PER_KEY", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub access_log_max_per_key: u32,
    /// PostgreSQL only: how long a node trusts its cache after confirming it
    /// is in sync (`T`; e.g. `2s`, `500ms`). A longer lease costs fewer checks
    /// but bounds the worst-case delete latency at `T` plus a margin.
    #[arg(long, env = "LATCHKEY_SYNC_LEASE", default_value = "2s", value_parser = parse_lease)]
    pub sync_lease: std::time::Duration,
    /// JSON file of the public keys (PEM, by key_identifier) that sign
    /// leaked-key reports to /api/api-keys/leaked (default: none; the endpoint is 404).
    #[arg(long, env = "LATCHKEY_LEAK_REPORT_KEYS", value_name = "FILE")]
    pub leak_report_keys: Option<PathBuf>,
    /// The URL people reach this server at (e.g. https://keys.example.com);
    /// when it is https, console cookies are marked `Secure` (default: none).
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Bearer token that GET /metrics requires (`Authorization: Bearer TOKEN`;
    /// default: none, the metrics need no credential). Never logged.
    #[arg(
        long,
        env = "LATCHKEY_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub metrics_token: Option<MetricsTokenText>,
    /// How long a console session may stay idle before it ends (e.g. 30m, 1h, 90s).
    #[arg(long, env = "LATCHKEY_SESSION_IDLE_TIMEOUT", default_value = "30m",
          value_parser = parse_duration_seconds)]
    pub session_idle_timeout: i64,
    /// How long after log-in a console session ends, however active (e.g. 12h).
    #[arg(long, env = "LATCHKEY_SESSION_LIFETIME", default_value = "12h",
          value_parser = parse_duration_seconds)]
    pub session_lifetime: i64,
}

/// The text of `--metrics-token`, redacted in `Debug` output.
#[derive(Clone)]
pub struct MetricsTokenText(pub String);

impl std::fmt::Debug for MetricsTokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for MetricsTokenText {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the metrics token must not be empty".into());
        }
        Ok(MetricsTokenText(text.to_owned()))
    }
}

/// A sync lease: a number with `ms` or `s` (seconds when no unit), 100 ms to 1 hour.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 2s or 500ms"))?;
    let seconds = value * scale;
    if !(0.1..=3600.0).contains(&seconds) {
        return Err("the sync lease must be between 100ms and 3600s".into());
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

impl ServeArgs {
    /// The input limits these settings configure.
    pub fn input_rules(&self) -> crate::keys::InputRules {
        crate::keys::InputRules {
            custom_key_min_length: usize::from(self.custom_key_min_length),
            max_personal_keys: self.max_personal_keys,
            min_password_length: self.min_password_length,
        }
    }
}

/// Reads a duration such as `90s`, `30m`, `12h` or `7d` as seconds (at least 1 s).
fn parse_duration_seconds(text: &str) -> Result<i64, String> {
    let bad = || format!("\"{text}\" is not a duration such as 90s, 30m, 12h or 7d");
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .filter(|s| (1..=366 * 86_400).contains(s))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse_lease;
    use std::time::Duration;

    #[test]
    fn sync_leases_read_with_or_without_a_unit() {
        assert_eq!(parse_lease("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_lease("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_lease("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "abc", "50ms", "0", "-1s", "2h", "NaN", "inf"] {
            assert!(parse_lease(bad).is_err(), "{bad}");
        }
    }
}
