//! Reading request bodies: into memory, bounded per client address, and
//! against a minimum data rate, before the request takes a processing permit.
//!
//! A client that declares a body and then sends it slowly would otherwise
//! hold server resources for the whole body time-out. Here one address may
//! have at most [`BODIES_PER_CLIENT`] bodies (and [`BODY_BYTES_PER_CLIENT`]
//! declared bytes) being read at once — further ones get `429` at once — and
//! every body must keep arriving at [`MIN_BODY_RATE`] after a short grace,
//! or it gets `408`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{body_too_large, error, limiter, MAX_BODY_BYTES};

/// Bodies one client address may have being read at once.
pub const BODIES_PER_CLIENT: u32 = 16;
/// Declared body bytes one client address may have being read at once (a
/// body of unknown length counts as the largest allowed).
pub const BODY_BYTES_PER_CLIENT: u64 = 2 * 1024 * 1024;
/// The slowest a body may arrive, in bytes per second, after [`GRACE`].
pub const MIN_BODY_RATE: u64 = 4 * 1024;
/// Time every body gets before the minimum rate applies.
pub const GRACE: Duration = Duration::from_secs(1);

/// Counts the bodies being read per client address.
pub struct BodyGate {
    bodies: u32,
    bytes: u64,
    clients: Mutex<HashMap<IpAddr, (u32, u64)>>,
}

/// One body's share of its client's allowance, given back when dropped.
struct Share<'a> {
    gate: &'a BodyGate,
    client: IpAddr,
    bytes: u64,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut clients = self.gate.lock();
        if let Some((n, bytes)) = clients.get_mut(&self.client) {
            *n -= 1;
            *bytes -= self.bytes;
            if *n == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

impl BodyGate {
    /// A gate allowing `bodies` bodies and `bytes` declared bytes per client.
    pub fn new(bodies: u32, bytes: u64) -> Self {
        BodyGate {
            bodies,
            bytes,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, u64)>> {
        // A poisoned lock only means a panic elsewhere: the counts are still sound.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn share(&self, client: IpAddr, bytes: u64) -> Option<Share<'_>> {
        let client = limiter::client_of(client);
        let mut clients = self.lock();
        let (n, held) = clients.entry(client).or_insert((0, 0));
        if *n >= self.bodies || *held + bytes > self.bytes {
            if *n == 0 {
                clients.remove(&client);
            }
            return None;
        }
        *n += 1;
        *held += bytes;
        Some(Share {
            gate: self,
            client,
            bytes,
        })
    }
}

/// Reads a request body into memory: at most [`MAX_BODY_BYTES`] (`413`),
/// within `limit` in total and at [`MIN_BODY_RATE`] after [`GRACE`] (`408`),
/// and at most [`BODIES_PER_CLIENT`] at once per client (`429`).
pub async fn read(
    gate: &BodyGate,
    client: Option<IpAddr>,
    headers: &HeaderMap,
    body: Body,
    limit: Duration,
) -> Result<Bytes, Response> {
    if axum::body::HttpBody::is_end_stream(&body) {
        // No body (most GETs): nothing to read, nothing to count.
        return Ok(Bytes::new());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(MAX_BODY_BYTES as u64);
    let _share = match client {
        Some(client) => Some(gate.share(client, declared).ok_or_else(too_many_bodies)?),
        None => None,
    };
    collect(body, limit).await
}

async fn collect(mut body: Body, limit: Duration) -> Result<Bytes, Response> {
    let start = Instant::now();
    let hard_deadline = start + limit;
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    let mut received: u64 = 0;
    loop {
        let earned = Duration::from_secs_f64(received as f64 / MIN_BODY_RATE as f64);
        let deadline = hard_deadline.min(start + GRACE + earned);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(too_slow()),
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(error::text(
                    StatusCode::BAD_REQUEST,
                    "cannot read the request body".into(),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        received += data.len() as u64;
        if received > MAX_BODY_BYTES as u64 {
            return Err(body_too_large());
        }
        // The usual body arrives in one piece: keep it without copying.
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(rest)))
}

fn too_slow() -> Response {
    error::text(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time".into(),
    )
}

fn too_many_bodies() -> Response {
    let mut r = error::text(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many request bodies in progress from this address (at most {BODIES_PER_CLIENT}); retry shortly"
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn a_client_gets_a_bounded_number_of_bodies_and_bytes() {
        let gate = BodyGate::new(2, 100);
        let a = gate.share(ip(1), 10).unwrap();
        let b = gate.share(ip(1), 10).unwrap();
        assert!(gate.share(ip(1), 10).is_none(), "a third body");
        assert!(gate.share(ip(2), 10).is_some(), "another client");
        drop(a);
        assert!(gate.share(ip(1), 91).is_none(), "over the byte allowance");
        let c = gate.share(ip(1), 90).unwrap();
        drop((b, c));
        assert!(gate.lock().is_empty(), "nothing left behind");
    }
}
