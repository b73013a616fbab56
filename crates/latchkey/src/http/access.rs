//! Access-log recording around every request (`usage.md` section 2): the
//! handler that authenticated a logged key fills in a [`KeySlot`], and the
//! front door turns it into an entry once the answer is known, with the
//! bodies the key's `logging` asks for, secrets removed. Requests made with
//! a login or pseudo-key never fill the slot, so they are never logged.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use hyper::body::Frame;
use proget_api::Logging;

use crate::domain::{KeyId, StoredKey};
use crate::store::AccessRecord;
use crate::usage::{now_ms, redact, Usage};

/// What a handler tells the front door about the logged key a request was
/// made with (or checked); empty for every other request.
#[derive(Clone, Default)]
pub(super) struct KeySlot(Arc<OnceLock<Tracked>>);

/// A request made with, or a check of, a key whose `logging` is not `none`.
pub(super) struct Tracked {
    key: KeyId,
    logging: Logging,
    method: String,
    target: String,
    user_agent: Option<String>,
    address: Option<IpAddr>,
    /// For forward-auth and verification checks: the verdict (no bodies).
    verdict: Option<&'static str>,
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(512)
            .collect()
    })
}

impl KeySlot {
    /// An API request made with `key` (nothing happens unless it is logged).
    pub(super) fn request(parts: &Parts, key: &StoredKey, address: Option<IpAddr>) {
        if key.logging == Logging::None {
            return;
        }
        if let Some(slot) = parts.extensions.get::<KeySlot>() {
            let target = parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
            let _ = slot.0.set(Tracked {
                key: key.id,
                logging: key.logging,
                method: parts.method.as_str().to_owned(),
                target,
                user_agent: user_agent(&parts.headers),
                address,
                verdict: None,
            });
        }
    }

    /// A forward-auth or verification check of `key`: the original method
    /// and URI, and the verdict.
    pub(super) fn check(
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
        key: &StoredKey,
        address: Option<IpAddr>,
        method: &str,
        uri: &str,
        verdict: &'static str,
    ) {
        if key.logging == Logging::None {
            return;
        }
        if let Some(slot) = extensions.get::<KeySlot>() {
            let _ = slot.0.set(Tracked {
                key: key.id,
                logging: key.logging,
                method: method.chars().take(32).collect(),
                target: uri.to_owned(),
                user_agent: user_agent(headers),
                address,
                verdict: Some(verdict),
            });
        }
    }
}

/// The front door's side: started before the request is handled.
pub(super) struct Recording {
    start: Instant,
    slot: KeySlot,
    body: Bytes,
}

impl Recording {
    /// Attaches an empty slot to the request.
    pub(super) fn start(extensions: &mut axum::http::Extensions) -> Recording {
        let slot = KeySlot::default();
        extensions.insert(slot.clone());
        Recording {
            start: Instant::now(),
            slot,
            body: Bytes::new(),
        }
    }

    /// Keeps the request body (a cheap reference) for a request-logging key.
    pub(super) fn set_body(&mut self, body: &Bytes) {
        self.body = body.clone();
    }

    /// Queues the entry, if a logged key filled the slot; a response body
    /// to keep is captured as it is sent and queued when it is done.
    pub(super) fn finish(self, response: Response, usage: &Arc<Usage>) -> Response {
        let Some(t) = self.slot.0.get() else {
            return response;
        };
        let elapsed = self.start.elapsed();
        let mut record = AccessRecord {
            key_id: t.key,
            time_ms: now_ms() - elapsed.as_millis() as i64,
            method: t.method.clone(),
            path: redact::path_and_query(&t.target),
            status: i32::from(response.status().as_u16()),
            duration_ms: elapsed.as_millis() as i64,
            address: t.address.map(|a| a.to_string()),
            user_agent: t.user_agent.clone(),
            verdict: t.verdict.map(str::to_owned),
            ..AccessRecord::default()
        };
        if t.verdict.is_some() {
            usage.log(record);
            return response;
        }
        if matches!(t.logging, Logging::Request | Logging::Both) && !self.body.is_empty() {
            let (body, cut) = redact::body(&self.body, false);
            record.request_body = Some(body);
            record.truncated |= cut;
        }
        if matches!(t.logging, Logging::Response | Logging::Both) {
            let (parts, body) = response.into_parts();
            let tee = Tee {
                inner: body,
                kept: Vec::new(),
                cut: false,
                pending: Some((record, usage.clone(), self.start)),
            };
            return Response::from_parts(parts, Body::new(tee));
        }
        usage.log(record);
        response
    }
}

/// A response body passed through while its first bytes are kept; the
/// entry is queued when the body is dropped (sent, or the client went away).
struct Tee {
    inner: Body,
    kept: Vec<u8>,
    cut: bool,
    pending: Option<(AccessRecord, Arc<Usage>, Instant)>,
}

impl hyper::body::Body for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let room = (redact::MAX_BODY + 1).saturating_sub(this.kept.len());
                let take = room.min(data.len());
                this.kept.extend_from_slice(&data[..take]);
                this.cut |= take < data.len();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if let Some((mut record, usage, start)) = self.pending.take() {
            let (body, cut) = redact::body(&self.kept, self.cut);
            record.response_body = Some(body);
            record.truncated |= cut;
            record.duration_ms = start.elapsed().as_millis() as i64;
            usage.log(record);
        }
    }
}
