//! Start-up and shutdown: data directory, installation secret, store,
//! first administrator, listener, graceful stop.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::auth::{hash_password, Authenticator};
use crate::config::ServeArgs;
use crate::http::limiter::LimiterConfig;
use crate::http::{router, App, Limits};
use crate::keys::{Digester, ADMINISTRATORS};
use crate::secrets::{write_private, Secrets};
use crate::store::{self, CachedStore, Store, UserChange};

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
    let secrets = Secrets::load(data_dir)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url_for(data_dir));
    // SQLite is written by this process alone (the lock makes sure of it), so
    // its reads can be cached coherently; PostgreSQL nodes share the database
    // and read it on every request.
    let sqlite_lock = sqlite_process_lock(&url)?;
    let store = store::open(&url)
        .await
        .context("cannot open the database")?;
    let store: Arc<dyn Store> = if sqlite_lock.is_some() {
        Arc::new(CachedStore::new(store))
    } else {
        store
    };
    create_first_admin(store.as_ref(), data_dir).await?;

    let app = Arc::new(App {
        store: store.clone(),
        auth: Authenticator::new(
            store.clone(),
            Digester::new(&secrets.current),
            secrets.previous.as_deref().map(Digester::new),
            args.pseudo_keys,
        ),
        custom_keys: args.custom_keys,
        rules: args.input_rules(),
        body_timeout: Duration::from_secs(args.body_timeout),
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

/// For an SQLite URL, an exclusive lock on `<database>.lock`, held while the
/// server runs: a second process on the same file would bypass the cache.
fn sqlite_process_lock(url: &str) -> anyhow::Result<Option<fs::File>> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
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
