//! Benchmark seeding (bench only, not part of the product): fills a fresh
//! latchkey database with `--keys` API keys and `--users` non-admin users
//! fast, and writes the credentials the scenarios of `bench/run.sh` use.
//!
//! The schema comes from `latchkey::store::open` (which runs the migrations);
//! rows are then inserted with multi-row `INSERT`s in large transactions.
//! Digests use `LATCHKEY_SECRET`, which the benchmarked server must share.
//!
//! Key ids, in order (the first key is 1000):
//! - one personal key per bench user (`personal-keys.txt`; the same users'
//!   `name:password` pseudo-keys are in `pseudo-keys.txt`);
//! - one full-control system key (`admin-key.txt`);
//! - `--pgutil-keys` system keys for `pgutil apikeys delete` (`pgutil-ids.txt`);
//! - the rest, alternately system and feed keys, for self-deletion
//!   (`delete-pairs.txt`: `ID KEY` per line).
//!
//! ```sh
//! LATCHKEY_SECRET=… bench_seed --database-url sqlite://DIR/latchkey.db --out DIR
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use latchkey::auth::hash_password;
use latchkey::domain::{Digester, ADMINISTRATORS};
use latchkey::keys::generate_key;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Sqlite, SqliteConnection};

/// Rows per `INSERT` (13 parameters each; well under both back ends' limits).
const ROWS_PER_INSERT: usize = 1_000;
/// Id of the first key, as the migrations set it.
const FIRST_KEY_ID: i32 = 1000;

/// Seeds a latchkey database for the benchmarks.
#[derive(Parser)]
struct Args {
    /// Database URL (sqlite://PATH or postgres://…); the database must be empty.
    #[arg(long)]
    database_url: String,
    /// Directory for the credential files.
    #[arg(long)]
    out: PathBuf,
    /// Total number of API keys.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Non-admin users, each with a password and exactly one personal key.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// System keys reserved for `pgutil apikeys delete`.
    #[arg(long, default_value_t = 30)]
    pgutil_keys: usize,
}

/// A user row.
struct UserRow {
    id: i64,
    name: String,
    groups: String,
    password: String,
    password_hash: String,
}

/// A key row.
struct KeyRow {
    id: i32,
    text: String,
    digest: Vec<u8>,
    key_type: &'static str,
    display_name: String,
    system_apis: &'static str,
    package_permissions: &'static str,
    feed: Option<String>,
    user_id: Option<i64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = std::env::var("LATCHKEY_SECRET")
        .context("LATCHKEY_SECRET must be set (the server's secret)")?;
    if secret.len() < 32 {
        bail!("LATCHKEY_SECRET must be at least 32 characters");
    }
    let reserved = args.users + 1 + args.pgutil_keys;
    if args.keys <= reserved {
        bail!("--keys must exceed --users + 1 + --pgutil-keys ({reserved})");
    }
    let started = Instant::now();

    // Migrations only: the store is closed again before the bulk load.
    latchkey::store::open(&args.database_url)
        .await
        .context("cannot open the database")?
        .close()
        .await;

    let users = make_users(args.users)?;
    let keys = make_keys(&Digester::new(secret.as_bytes()), &users, &args);
    if args.database_url.starts_with("sqlite:") {
        seed_sqlite(&args.database_url, &users, &keys).await?;
    } else {
        seed_postgres(&args.database_url, &users, &keys).await?;
    }
    write_files(&args.out, &users, &keys, args.users, args.pgutil_keys)?;
    eprintln!(
        "seeded {} users and {} keys in {:.1} s",
        users.len(),
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `Admin` (password `LATCHKEY_ADMIN_PASSWORD` or random) and `bench-NNNNN`
/// users with distinct random passwords, hashed with Argon2id on every core.
fn make_users(count: usize) -> anyhow::Result<Vec<UserRow>> {
    let admin_password = std::env::var("LATCHKEY_ADMIN_PASSWORD")
        .unwrap_or_else(|_| Alphanumeric.sample_string(&mut OsRng, 24));
    let mut users = vec![(
        String::from("Admin"),
        format!("[\"{ADMINISTRATORS}\"]"),
        admin_password,
    )];
    for i in 0..count {
        users.push((
            format!("bench-{i:05}"),
            "[]".into(),
            Alphanumeric.sample_string(&mut OsRng, 20),
        ));
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = users.len().div_ceil(threads);
    let hashes: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(_, _, pw)| hash_password(pw))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing thread panicked")) // ok: a panic here is a bug in argon2
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(users
        .into_iter()
        .zip(hashes)
        .zip(1_i64..)
        .map(|(((name, groups, password), password_hash), id)| UserRow {
            id,
            name,
            groups,
            password,
            password_hash,
        })
        .collect())
}

/// Every key, in id order (see the module documentation for the layout).
fn make_keys(digester: &Digester, users: &[UserRow], args: &Args) -> Vec<KeyRow> {
    let mut keys = Vec::with_capacity(args.keys);
    for i in 0..args.keys {
        let id = FIRST_KEY_ID + i32::try_from(i).expect("fewer than 2^31 keys"); // ok: bounded by --keys
        let text = generate_key();
        let digest = digester.key(&text).as_bytes().to_vec();
        let mut row = KeyRow {
            id,
            text,
            digest,
            key_type: "system",
            display_name: format!("bench key {id}"),
            system_apis: "feeds",
            package_permissions: "",
            feed: None,
            user_id: None,
        };
        if i < args.users {
            // users[0] is Admin; bench users follow.
            row.key_type = "personal";
            row.system_apis = "";
            row.user_id = Some(users[i + 1].id);
        } else if i == args.users {
            row.display_name = "bench admin".into();
            row.system_apis = "full-control";
        } else if i > args.users + args.pgutil_keys && i % 2 == 0 {
            row.key_type = "feed";
            row.system_apis = "";
            row.package_permissions = "view,add";
            row.feed = Some(format!("feed-{}", i % 100));
        }
        keys.push(row);
    }
    keys
}

async fn seed_sqlite(url: &str, users: &[UserRow], keys: &[KeyRow]) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::from_str(url)?.foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut tx = conn.begin().await?;
    for part in users.chunks(ROWS_PER_INSERT) {
        user_insert::<Sqlite>(part)
            .build()
            .execute(&mut *tx)
            .await?;
    }
    for part in keys.chunks(ROWS_PER_INSERT) {
        key_insert::<Sqlite>(part).build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // Start the server on a compact database with an empty WAL.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn seed_postgres(url: &str, users: &[UserRow], keys: &[KeyRow]) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&PgConnectOptions::from_str(url)?).await?;
    let mut tx = conn.begin().await?;
    for part in users.chunks(ROWS_PER_INSERT) {
        user_insert::<Postgres>(part)
            .build()
            .execute(&mut *tx)
            .await?;
    }
    for part in keys.chunks(ROWS_PER_INSERT) {
        key_insert::<Postgres>(part)
            .build()
            .execute(&mut *tx)
            .await?;
    }
    // Explicit ids do not advance identity columns: move them past the seeded rows.
    for table in ["users", "api_keys"] {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// A multi-row `INSERT INTO users`.
fn user_insert<'a, DB>(rows: &'a [UserRow]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO users (id, name, name_key, display_name, email, groups, password_hash, created_at) ",
    );
    q.push_values(rows, |mut b, u| {
        b.push_bind(u.id)
            .push_bind(u.name.as_str())
            .push_bind(u.name.to_lowercase())
            .push_bind(format!("Bench user {}", u.id))
            .push_bind(format!("{}@bench.invalid", u.name.to_lowercase()))
            .push_bind(u.groups.as_str())
            .push_bind(u.password_hash.as_str())
            .push_bind(created_at());
    });
    q
}

/// A multi-row `INSERT INTO api_keys`.
fn key_insert<'a, DB>(rows: &'a [KeyRow]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO api_keys (id, digest, key_type, display_name, description, system_apis, \
         package_permissions, feed, feed_group, expiration, logging, user_id, created_at) ",
    );
    q.push_values(rows, |mut b, k| {
        b.push_bind(k.id)
            .push_bind(k.digest.as_slice())
            .push_bind(k.key_type)
            .push_bind(k.display_name.as_str())
            .push_bind("seeded by bench_seed")
            .push_bind(k.system_apis)
            .push_bind(k.package_permissions)
            .push_bind(k.feed.as_deref())
            .push_bind(None::<&str>)
            .push_bind(None::<i64>)
            .push_bind("none")
            .push_bind(k.user_id)
            .push_bind(created_at());
    });
    q
}

fn created_at() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Writes the credential files the Lua scripts and `bench/run.sh` read.
fn write_files(
    out: &Path,
    users: &[UserRow],
    keys: &[KeyRow],
    n_users: usize,
    n_pgutil: usize,
) -> anyhow::Result<()> {
    fs::create_dir_all(out)?;
    let lines = |rows: &mut dyn Iterator<Item = String>| {
        rows.fold(String::new(), |mut s, line| {
            let _ = writeln!(s, "{line}");
            s
        })
    };
    let write = |name: &str, text: String| {
        fs::write(out.join(name), text)
            .with_context(|| format!("cannot write {}", out.join(name).display()))
    };
    write(
        "personal-keys.txt",
        lines(&mut keys[..n_users].iter().map(|k| k.text.clone())),
    )?;
    write(
        "pseudo-keys.txt",
        lines(
            &mut users[1..]
                .iter()
                .map(|u| format!("{}:{}", u.name, u.password)),
        ),
    )?;
    write("admin-key.txt", format!("{}\n", keys[n_users].text))?;
    let pgutil = &keys[n_users + 1..n_users + 1 + n_pgutil];
    write(
        "pgutil-ids.txt",
        lines(&mut pgutil.iter().map(|k| k.id.to_string())),
    )?;
    write(
        "delete-pairs.txt",
        lines(
            &mut keys[n_users + 1 + n_pgutil..]
                .iter()
                .map(|k| format!("{} {}", k.id, k.text)),
        ),
    )?;
    Ok(())
}
