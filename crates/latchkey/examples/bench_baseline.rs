//! Benchmark baseline (bench only, not part of the product): the bare HTTP
//! floor that `bench/run.sh` compares latchkey with. A minimal axum server on
//! the same runtime as latchkey (multi-threaded tokio), answering `200 OK` to
//! any request; like latchkey it prints `listening on http://ADDR` on stdout
//! once it accepts connections.
//!
//! ```sh
//! bench_baseline --listen 127.0.0.1:0
//! ```

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr)) => addr,
        (None, _) => "127.0.0.1:0".to_owned(),
        _ => anyhow::bail!("usage: bench_baseline [--listen ADDR]"),
    };
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().fallback(|| async { "OK" })).await?;
    Ok(())
}
