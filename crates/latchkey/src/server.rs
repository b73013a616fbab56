//! Start-up and shutdown: data directory, installation secret, store,
//! first administrator, listener, graceful stop.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::auth::{hash_password, Authenticator};
use crate::config::ServeArgs;
use crate::http::limiter::LimiterConfig;
use crate::http::{router, App, Limits};
use crate::keys::{Digester, ADMINISTRATORS};
use crate::store::{self, Store, UserChange};

const SECRET_FILE: &str = "secret";
const ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Runs `latchkey serve` until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir;
    // The directory holds the database, the secret and the first password: owner only.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let secret = installation_secret(data_dir)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url_for(data_dir));
    let store = store::open(&url)
        .await
        .context("cannot open the database")?;
    create_first_admin(store.as_ref(), data_dir).await?;

    let app = Arc::new(App {
        store: store.clone(),
        auth: Authenticator::new(store.clone(), Digester::new(&secret), args.pseudo_keys),
        digester: Digester::new(&secret),
        custom_keys: args.custom_keys,
        limiter: LimiterConfig::build(args.auth_failure_limit, args.auth_block_seconds),
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "latchkey {} ready", env!("CARGO_PKG_VERSION"));

    let limits = Limits {
        max_in_flight: args.max_in_flight.max(1),
        body_timeout: Duration::from_secs(args.body_timeout),
    };
    serve_http(
        listener,
        router(app, limits),
        Duration::from_secs(args.shutdown_grace),
    )
    .await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
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
async fn serve_http(listener: TcpListener, router: Router, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let stop = shutdown_signal();
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
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// The secret keying the digests: `LATCHKEY_SECRET`, else `<data-dir>/secret`,
/// generated on first start with mode 0600.
fn installation_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(secret) = std::env::var("LATCHKEY_SECRET") {
        if secret.len() < 32 {
            bail!("LATCHKEY_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)");
        }
        return Ok(secret.into_bytes());
    }
    let path = data_dir.join(SECRET_FILE);
    if !path.exists() {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        write_private(&path, &hex::encode(bytes))?;
        tracing::info!(path = %path.display(), "generated the installation secret");
    }
    let mode = fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the secret file is readable by others; run chmod 600 on it");
    }
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read the installation secret {}", path.display()))?;
    let secret = text.trim();
    if secret.len() < 32 {
        bail!(
            "the installation secret {} is shorter than 32 characters",
            path.display()
        );
    }
    Ok(secret.as_bytes().to_vec())
}

/// On an empty database, creates `Admin` in `Administrators`.
async fn create_first_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.has_users().await? {
        return Ok(());
    }
    let (password, generated) = match std::env::var("LATCHKEY_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (Alphanumeric.sample_string(&mut OsRng, 24), true),
    };
    let password_file = data_dir.join(ADMIN_PASSWORD_FILE);
    if generated {
        // Written before the user exists, so that a crash cannot leave an Admin whose password nobody knows.
        write_private(&password_file, &password)?;
    }
    let admin = UserChange {
        name: "Admin".into(),
        display_name: Some("Administrator".into()),
        email: None,
        groups: Some(vec![ADMINISTRATORS.into()]),
        password_hash: Some(hash_password(&password)?),
    };
    let created = store.create_first_user(admin).await?;
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

/// Writes a file only its owner can read, durably (replacing any old one).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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
