//! Start-up and shutdown: data directory, installation secret, store,
//! first administrator, listener, graceful stop.

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tower::ServiceExt;

use crate::auth::{hash_password, Authenticator};
use crate::config::{ResetAdminArgs, ServeArgs};
use crate::domain::{
    administrators_grant, same_name, AuditContext, Digester, KeyId, Scope, Subject, Task,
    UserChange, ADMINISTRATORS,
};
use crate::http::client::TrustedProxies;
use crate::http::limiter::LimiterConfig;
use crate::http::{service, App, Limits};
use crate::secrets::{fingerprint, same_fingerprint, write_private, Secrets, SECRET_FILE};
use crate::store::{self, CachedStore, Store};

const ADMIN_PASSWORD_FILE: &str = "initial-admin-password";
/// On PostgreSQL: the node's id in the node table (see [`node_identity`]).
const NODE_ID_FILE: &str = "node-id";

/// Runs `latchkey serve` until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // The port first: when it is taken, nothing on disk or in the database changes.
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let data_dir = &args.data_dir;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url_for(data_dir));
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if postgres && std::env::var_os("LATCHKEY_SECRET").is_none() {
        anyhow::bail!(
            "LATCHKEY_SECRET must be set on PostgreSQL, to the same value on every node \
             (a node that used <data-dir>/secret: set LATCHKEY_SECRET to that file's contents)"
        );
    }
    let leak_keys = args
        .leak_report_keys
        .as_deref()
        .map(crate::http::leaked::LeakReportKeys::load)
        .transpose()?;
    prepare_data_dir(data_dir)?;
    // SQLite is written by this process alone (the lock makes sure of it), so
    // its reads can be cached coherently; PostgreSQL nodes cache under the
    // protocol of docs/postgres.md.
    let _sqlite_lock = sqlite_process_lock(&url)?;
    // Held while the node runs (see `node_identity`).
    let (store, _node_lock): (Arc<dyn Store>, _) = if postgres {
        let (id, lock) = node_identity(data_dir)?;
        let store = store::open_node(&url, args.sync_lease, &id)
            .await
            .context("cannot open the database")?;
        (store, lock)
    } else {
        (Arc::new(CachedStore::new(open_store(&url).await?)), None)
    };
    let secrets = installation_secrets(store.as_ref(), data_dir, &url).await?;
    create_first_admin(store.as_ref(), data_dir).await?;
    let mut limiter = LimiterConfig::build(args.auth_failure_limit, args.auth_block_seconds);
    if let Some(limiter) = &mut limiter {
        let (blocks, reports) = tokio::sync::mpsc::channel(BLOCK_REPORTS);
        limiter.report_blocks(blocks);
        tokio::spawn(audit_blocks(store.clone(), reports));
    }
    if args.audit_days > 0 {
        tokio::spawn(prune_audit(store.clone(), args.audit_days));
    }

    let app = Arc::new(App {
        store: store.clone(),
        auth: Authenticator::new(
            store.clone(),
            Digester::new(&secrets.current),
            secrets.previous.as_deref().map(Digester::new),
            args.pseudo_keys,
        )
        .context("cannot start the password-hashing threads")?,
        custom_keys: args.custom_keys,
        rules: args.input_rules(),
        body_timeout: Duration::from_secs(args.body_timeout),
        limiter,
        trusted_proxies: TrustedProxies::new(args.trusted_proxies.clone()),
        usage: crate::usage::Usage::start(
            store.clone(),
            crate::usage::Retention {
                days: args.access_log_days,
                max_per_key: args.access_log_max_per_key,
            },
        ),
        leak_keys,
        console: crate::console::Settings::from_args(&args),
        metrics_token: args
            .metrics_token
            .as_ref()
            .map(|t| crate::http::metrics::MetricsToken::new(&t.0)),
    });
    // Installed before the listening line, so that no signal finds the default action.
    let signals = Signals::install()?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    println!("listening on http://{addr}");
    tracing::info!(
        %addr,
        database = %redact_url(&url),
        "latchkey {} ready",
        env!("CARGO_PKG_VERSION")
    );

    let limits = Limits {
        max_in_flight: args.max_in_flight.max(1),
    };
    let usage = app.usage.clone();
    serve_http(
        listener,
        service(app, limits),
        Duration::from_secs(args.shutdown_grace),
        signals,
    )
    .await;
    // What the recorder still holds is written before the database closes.
    if tokio::time::timeout(Duration::from_secs(5), usage.flush())
        .await
        .is_err()
    {
        tracing::warn!("usage data not written within 5 s of shutdown; dropped");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Limiter blocks waiting for their audit entry; more are dropped (and logged).
const BLOCK_REPORTS: usize = 1024;

/// Writes a `limiter.block` audit entry for each block the limiter reports,
/// off the request path (the limiter never waits for this task).
async fn audit_blocks(
    store: Arc<dyn Store>,
    mut reports: tokio::sync::mpsc::Receiver<crate::http::limiter::Block>,
) {
    while let Some(block) = reports.recv().await {
        let audit = AuditContext {
            address: Some(block.address),
            ..AuditContext::SYSTEM
        };
        let details = serde_json::json!({
            "seconds": block.duration.as_secs(),
            "failures": block.failures,
        });
        let target = format!("address {}", block.address);
        if let Err(e) = store
            .record_audit(&audit, "limiter.block", &target, details)
            .await
        {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "cannot record a limiter block in the audit trail");
        }
    }
}

/// Audit entries deleted per statement while pruning.
const PRUNE_BATCH: u32 = 500;
/// Time between pruning runs (the first runs at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes audit entries older than `days`, at start and then hourly, in
/// batches of [`PRUNE_BATCH`] with a pause between them, so that no
/// statement holds the writer for long.
async fn prune_audit(store: Arc<dyn Store>, days: u32) {
    loop {
        let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - i64::from(days) * 86_400;
        let mut pruned = 0;
        loop {
            match store.prune_audit(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < u64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "pruning the audit trail failed");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if pruned > 0 {
            tracing::info!(entries = pruned, days, "pruned old audit entries");
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// `latchkey reset-admin`: gives `Admin` a new password and makes sure it
/// exists and is in `Administrators`. Refuses while a server holds an SQLite
/// database (it caches users); PostgreSQL nodes see the change at once.
pub async fn reset_admin(args: ResetAdminArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url_for(data_dir));
    if let Some(path) = sqlite_path(&url) {
        let empty = fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true);
        if empty {
            anyhow::bail!(
                "there is no database at {}: nothing to reset (check --data-dir)",
                path.display()
            );
        }
    }
    let _lock = sqlite_process_lock(&url).map_err(|e| {
        e.context("reset-admin refuses while a server runs on this SQLite database (it caches users); stop it first")
    })?;
    let (password, generated) = admin_password();
    let password_file = data_dir.join(ADMIN_PASSWORD_FILE);
    if generated && password_file.exists() {
        anyhow::bail!(
            "{} already exists and is never overwritten: set LATCHKEY_ADMIN_PASSWORD to the new password, \
             or delete the file and run reset-admin again to get a generated one",
            password_file.display()
        );
    }
    if generated || sqlite_path(&url).is_some() {
        prepare_data_dir(data_dir)?;
    }
    let store = open_store(&url).await?;
    let hash = hash_password(&password)?;
    if generated {
        // Written before the change, so that nobody is left with a password nobody knows.
        write_private(&password_file, &password)?;
    }
    let outcome = set_admin_password(store.as_ref(), hash).await;
    store.close().await;
    match outcome {
        Ok(what) => {
            tracing::warn!("reset-admin: {what}");
            if generated {
                println!(
                    "{what}; the new password is in {} (sign in, change it, then delete the file)",
                    password_file.display()
                );
            } else {
                println!("{what}; the new password is the value of LATCHKEY_ADMIN_PASSWORD");
            }
            Ok(())
        }
        Err(e) => {
            if generated {
                let _ = fs::remove_file(&password_file);
            }
            Err(e)
        }
    }
}

/// Sets `Admin`'s password hash and makes it an administrator again: back
/// in `Administrators`, the grant `allow Administer globally for group
/// Administrators` present, and no global deny of `Administer` on `Admin` or
/// `Administrators`; recreates the user if needed. Returns what was done.
///
/// Audited as `system`: the permission changes as `permission.add` /
/// `permission.delete`, the user's change as `admin.reset`.
async fn set_admin_password(store: &dyn Store, hash: String) -> anyhow::Result<String> {
    let reset = AuditContext::SYSTEM.with_action("admin.reset");
    let mut done = Vec::new();
    let security = store.security().await?;
    let admins_grant = administrators_grant();
    if !security.permissions().iter().any(|p| {
        p.subject == admins_grant.subject
            && p.task == Task::Administer
            && p.scope == Scope::Global
            && !p.deny
    }) {
        store
            .add_permission(&AuditContext::SYSTEM, admins_grant)
            .await?;
        done.push(format!(
            "restored the grant of Administer to {ADMINISTRATORS}"
        ));
    }
    for p in security.permissions() {
        let on_admin = match &p.subject {
            Subject::User(n) => same_name(n, "Admin"),
            Subject::Group(g) => same_name(g, ADMINISTRATORS),
        };
        if p.deny && p.task == Task::Administer && p.scope == Scope::Global && on_admin {
            store.delete_permission(&AuditContext::SYSTEM, p.id).await?;
            done.push(format!(
                "deleted permission {} (a deny of Administer)",
                p.id
            ));
        }
    }
    match store.user_login("Admin").await? {
        Some(login) => {
            let mut groups = login.user.groups.clone();
            let readd = !groups.iter().any(|g| same_name(g, ADMINISTRATORS));
            if readd {
                groups.push(ADMINISTRATORS.into());
            }
            let change = UserChange {
                name: login.user.name.clone(),
                groups: Some(groups),
                password_hash: Some(hash),
                ..UserChange::default()
            };
            store
                .update_user(&reset, change)
                .await?
                .context("user Admin vanished while being reset")?;
            done.insert(
                0,
                format!("set a new password for user {}", login.user.name),
            );
            if readd {
                done.push(format!("re-added it to {ADMINISTRATORS}"));
            }
        }
        None => {
            store.create_user(&reset, first_admin(hash)).await?;
            done.insert(0, format!("recreated user Admin in {ADMINISTRATORS}"));
        }
    }
    Ok(done.join("; "))
}

/// `latchkey rotate-secret`, refused while a server holds the data directory's database.
pub fn rotate_secret(data_dir: &Path) -> anyhow::Result<()> {
    let db = data_dir.join(DATABASE_FILE);
    let _lock = match fs::metadata(&db) {
        // Without a database no server can be running on it.
        Err(_) => None,
        Ok(_) => sqlite_process_lock(&store::sqlite_url_for(data_dir)).map_err(|e| {
            e.context(
                "rotate-secret refuses while a server runs on this data directory; stop it first",
            )
        })?,
    };
    crate::secrets::rotate(data_dir)
}

/// The file name of the default SQLite database in the data directory.
const DATABASE_FILE: &str = "latchkey.db";

/// The password for a new or reset `Admin`: `LATCHKEY_ADMIN_PASSWORD`, else
/// a generated one (`true`).
fn admin_password() -> (String, bool) {
    match std::env::var("LATCHKEY_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (Alphanumeric.sample_string(&mut OsRng, 24), true),
    }
}

/// `Admin` in `Administrators` with this password hash.
fn first_admin(password_hash: String) -> UserChange {
    UserChange {
        name: "Admin".into(),
        display_name: Some("Administrator".into()),
        email: None,
        groups: Some(vec![ADMINISTRATORS.into()]),
        password_hash: Some(password_hash),
    }
}

/// Opens the store; an SQLite database and its companions are made private (0600).
async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let path = sqlite_path(url);
    if let Some(path) = &path {
        // Created private before SQLite creates it with the umask's mode;
        // SQLite gives the -wal and -shm files the database's mode.
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the database {}", path.display()))?;
    }
    let store = store::open(url).await.context("cannot open the database")?;
    if let Some(path) = &path {
        // A database made by an older latchkey may still be readable by others.
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                fs::set_permissions(&file, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} private", file.display()))?;
            }
        }
    }
    Ok(store)
}

/// Creates the data directory (0700), or checks an existing one as
/// PostgreSQL does: it must belong to this process's user and not be
/// writable by group or others. Read or search permission for group or
/// others is removed, with a warning.
fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let meta = fs::metadata(data_dir)
        .with_context(|| format!("cannot read the data directory {}", data_dir.display()))?;
    let mode = check_data_dir(data_dir, &meta)?;
    if mode & 0o077 != 0 {
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", data_dir.display()))?;
        tracing::warn!(
            path = %data_dir.display(),
            "the data directory was open to others (mode {mode:o}); changed it to 700"
        );
    }
    Ok(())
}

/// Refuses an existing data directory that is not ours or is writable by
/// group or others (as PostgreSQL does); returns its permission bits. Shared
/// by `serve` and `check-config`, so that both refuse the same directories.
pub(crate) fn check_data_dir(data_dir: &Path, meta: &fs::Metadata) -> anyhow::Result<u32> {
    if !meta.is_dir() {
        anyhow::bail!(
            "the data directory {} is not a directory: choose another --data-dir",
            data_dir.display()
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        anyhow::bail!(
            "the data directory {} belongs to user id {}, not to the user running latchkey (id {me}): \
             it may hold someone else's database; use a directory of your own",
            data_dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "the data directory {} is writable by group or others (mode {mode:o}): \
             check that nobody else put files in it, then run chmod 700 on it",
            data_dir.display()
        );
    }
    Ok(mode)
}

/// The database's record of the installation secret.
const FINGERPRINT_SETTING: &str = "secret_fingerprint";

/// Loads the installation secret and checks it against the fingerprint the
/// database records, so that a lost or changed secret is refused instead of
/// silently invalidating every key.
///
/// A secret is generated only on a fresh SQLite installation: no users, no
/// keys, no fingerprint, and no secret or password file left in the data
/// directory. A database without a fingerprint (made by an older latchkey)
/// records the secret it is started with. When the fingerprint matches the
/// previous secret (a rotation), it is moved to the current one.
async fn installation_secrets(
    store: &dyn Store,
    data_dir: &Path,
    url: &str,
) -> anyhow::Result<Secrets> {
    let sqlite = url.starts_with("sqlite:");
    let stored = store.setting(FINGERPRINT_SETTING).await?;
    let has_users = store.has_users().await?;
    let has_keys = !store.keys_after(KeyId::MIN, 1).await?.is_empty();
    let fresh = stored.is_none() && !has_users && !has_keys;
    if fresh && sqlite {
        let leftovers: Vec<&str> = [SECRET_FILE, ADMIN_PASSWORD_FILE]
            .into_iter()
            .filter(|f| data_dir.join(f).exists())
            .collect();
        if !leftovers.is_empty() {
            let files = leftovers.join(" and ");
            anyhow::bail!(
                "the database {} is empty, but the data directory {} holds {files} of an earlier installation: \
                 restore the database from a backup, or delete {files} to start a new installation",
                redact_url(url),
                data_dir.display()
            );
        }
    }
    let secrets = match Secrets::load(data_dir, !sqlite)? {
        Some(secrets) => secrets,
        None if fresh => Secrets::generate(data_dir)?,
        None => anyhow::bail!(
            "there is no installation secret, but the database already has users or keys: a new secret \
             would make every key fail; restore {} from a backup or set LATCHKEY_SECRET",
            data_dir.join(SECRET_FILE).display()
        ),
    };
    let current = fingerprint(&secrets.current);
    let mismatch = || {
        anyhow::anyhow!(
            "the installation secret does not match the one this database was set up with (every key would fail): \
             restore {} or set LATCHKEY_SECRET to the secret in use; during a rotation, give the old one as LATCHKEY_PREVIOUS_SECRET",
            data_dir.join(SECRET_FILE).display()
        )
    };
    match stored {
        None => {
            let kept = store.insert_setting(FINGERPRINT_SETTING, &current).await?;
            if !same_fingerprint(&kept, &current) {
                return Err(mismatch());
            }
        }
        Some(s) if same_fingerprint(&s, &current) => {}
        Some(s)
            if secrets
                .previous
                .as_deref()
                .is_some_and(|p| same_fingerprint(&s, &fingerprint(p))) =>
        {
            if !store
                .replace_setting(
                    &AuditContext::SYSTEM.with_action("secret.rotate"),
                    FINGERPRINT_SETTING,
                    &s,
                    &current,
                )
                .await?
            {
                // Another node may have moved it first.
                let now = store.setting(FINGERPRINT_SETTING).await?;
                if !now.is_some_and(|n| same_fingerprint(&n, &current)) {
                    return Err(mismatch());
                }
            }
            tracing::info!(
                "the database now records the current installation secret (it recorded the previous one)"
            );
        }
        Some(_) => return Err(mismatch()),
    }
    Ok(secrets)
}

/// Longest wait for a client to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest buffer for a request's head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accepts connections until SIGINT/SIGTERM, then lets in-flight requests
/// finish for at most `grace`.
///
/// hyper is driven directly (rather than through `axum::serve`) to bound how
/// long and how much a client may send before its request is complete, and
/// to hand each request its peer address as `ConnectInfo`.
async fn serve_http<S>(listener: TcpListener, service: S, grace: Duration, signals: Signals)
where
    S: tower::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
{
    let graceful = GracefulShutdown::new();
    let stop = signals.shutdown();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone().map_request(move |req: Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(
                TokioIo::new(crate::http::wire::PlainErrors::new(stream)),
                TowerToHyperService::new(service),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
    }
}

/// The signals the server handles: SIGINT and SIGTERM stop it; SIGHUP is
/// logged and ignored (there is no configuration file to reload, and the
/// log goes to stderr), rather than killing the process.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let on = |kind| signal(kind).context("cannot install the signal handlers");
        Ok(Signals {
            interrupt: on(SignalKind::interrupt())?,
            terminate: on(SignalKind::terminate())?,
            hangup: on(SignalKind::hangup())?,
        })
    }

    /// Completes on SIGINT or SIGTERM.
    async fn shutdown(mut self) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP received and ignored (latchkey has nothing to reload)");
                }
            }
        }
    }
}

/// The path of an SQLite URL's database file; `None` for PostgreSQL and `:memory:`.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// A database URL without its password (in the user part or a `password`
/// parameter), for the log and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let before_query = rest.split('?').next().unwrap_or(rest);
    let rest = match before_query.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let password = if rest[..at].contains(':') { ":***" } else { "" };
            format!("{user}{password}@{}", &rest[at + 1..])
        }
        None => rest.to_owned(),
    };
    match rest.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                        format!("{k}=***")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{scheme}://{path}?{}", params.join("&"))
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// For an SQLite URL, an exclusive lock on `<database>.lock`, held while the
/// server runs: a second process on the same file would bypass the cache.
fn sqlite_process_lock(url: &str) -> anyhow::Result<Option<fs::File>> {
    let Some(path) = sqlite_path(url) else {
        return Ok(None);
    };
    let path = path.display();
    let lock_path = format!("{path}.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another latchkey process is using {path}; an SQLite database serves one process (use PostgreSQL for several nodes)"
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot lock {lock_path}")))
        }
    }
}

/// The node's name in PostgreSQL's node table, kept in `<data-dir>/node-id`
/// (0600) so that a restarted node takes over its own row at once instead of
/// leaving writers to wait on the row of the process that died. The file is
/// locked while the node runs; when another process holds it (two nodes
/// started on one data directory), this node takes a fresh id of its own.
fn node_identity(data_dir: &Path) -> anyhow::Result<(String, Option<fs::File>)> {
    let path = data_dir.join(NODE_ID_FILE);
    let fresh = || Alphanumeric.sample_string(&mut OsRng, 16).to_lowercase();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            tracing::warn!(
                path = %path.display(),
                "another latchkey process uses this data directory's node id; this node takes a fresh one"
            );
            return Ok((fresh(), None));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())))
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        return Ok((text.to_owned(), Some(file)));
    }
    let id = fresh();
    file.set_len(0)
        .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
        .and_then(|_| file.write_all(format!("{id}\n").as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((id, Some(file)))
}

/// On an empty database, creates `Admin` in `Administrators`, never
/// overwriting an existing `initial-admin-password`.
async fn create_first_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.has_users().await? {
        if std::env::var("LATCHKEY_ADMIN_PASSWORD").is_ok_and(|p| !p.is_empty()) {
            tracing::warn!(
                "LATCHKEY_ADMIN_PASSWORD is ignored: the database already has users (to set Admin's password, run latchkey reset-admin)"
            );
        }
        return Ok(());
    }
    let (password, generated) = admin_password();
    let password_file = data_dir.join(ADMIN_PASSWORD_FILE);
    if generated {
        if password_file.exists() {
            anyhow::bail!(
                "{} already exists and is never overwritten: delete it or set LATCHKEY_ADMIN_PASSWORD",
                password_file.display()
            );
        }
        // Written before the user exists, so that a crash cannot leave an Admin whose password nobody knows.
        write_private(&password_file, &password)?;
    }
    let created = store
        .create_first_user(
            &AuditContext::SYSTEM,
            first_admin(hash_password(&password)?),
        )
        .await?;
    match (created, generated) {
        (true, true) => tracing::warn!(
            path = %password_file.display(),
            "created user Admin; its generated password is in this file: sign in, change it, then delete the file"
        ),
        (true, false) => {
            tracing::info!("created user Admin with the password from LATCHKEY_ADMIN_PASSWORD")
        }
        (false, true) => {
            let _ = fs::remove_file(&password_file);
        }
        (false, false) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_passwords_only() {
        for (url, shown) in [
            (
                "sqlite://./latchkey-data/latchkey.db",
                "sqlite://./latchkey-data/latchkey.db",
            ),
            (
                "postgres://lk:s3cret@db:5432/lk",
                "postgres://lk:***@db:5432/lk",
            ),
            ("postgres://lk@db/lk", "postgres://lk@db/lk"),
            ("postgres://lk:p@ss@db/lk", "postgres://lk:***@db/lk"),
            (
                "postgresql://db/lk?user=lk&password=s3cret&sslmode=require",
                "postgresql://db/lk?user=lk&password=***&sslmode=require",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
