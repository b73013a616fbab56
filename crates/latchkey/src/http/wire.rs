//! The connection's bytes on their way out: hyper answers a request it cannot
//! parse (bad `Content-Length`, bad `Transfer-Encoding`, a broken request
//! line, an oversized head) itself, with an empty body and no content type.
//! [`PlainErrors`] rewrites such a response into one like every other error:
//! `text/plain; charset=utf-8` with a one-line body.
//!
//! The rewrite applies only to an error head (status 4xx or 5xx) written in
//! one piece with `content-length: 0` and no `content-type`: every response
//! of the router carries a content type (the request log's layer gives one to
//! any bodiless error), so only hyper's own answers match.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bodiless error responses from hyper get a text body.
pub struct PlainErrors<T> {
    inner: T,
    /// A rewritten response being written: the bytes, how many are out, and
    /// the length of the original write to report once all are out.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> PlainErrors<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        PlainErrors {
            inner,
            pending: None,
        }
    }
}

/// The rewritten response when `buf` is exactly one bodiless error head
/// without a content type; `None` otherwise.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    // Cheap refusals first: this sees every write of every connection.
    if !buf.starts_with(b"HTTP/1.") || !(buf.get(9) == Some(&b'4') || buf.get(9) == Some(&b'5')) {
        return None;
    }
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    let mut out = String::with_capacity(buf.len() + 128);
    out.push_str(status_line);
    out.push_str("\r\n");
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-type") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
            empty = true;
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !empty {
        return None;
    }
    let body = message(code);
    out.push_str("content-type: text/plain; charset=utf-8\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

/// The one-line body for an error hyper produced (no line end, like the router's).
fn message(code: u16) -> String {
    match code {
        400 => {
            "malformed HTTP request (request line, headers, Content-Length or Transfer-Encoding)"
                .into()
        }
        431 => "the request head is too large".into(),
        _ => axum::http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_lowercase(),
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PlainErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PlainErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match rewrite(buf) {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        while let Some((bytes, written, report)) = &mut this.pending {
            if *written == bytes.len() {
                let report = *report;
                this.pending = None;
                return Poll::Ready(Ok(report));
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0)) // ok: unreachable, `pending` was set above
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (parts.next(), parts.next()) {
            if self.pending.is_some() || rewrite(only).is_some() {
                return self.poll_write(cx, only);
            }
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_get_a_text_body() {
        let canned = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 22:39:22 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(canned).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains("\r\ncontent-type: text/plain; charset=utf-8"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert_eq!(body.lines().count(), 1);
    }

    #[test]
    fn other_writes_pass_unchanged() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody",
            b"[{\"id\":1000}]",
            b"",
        ] {
            assert!(rewrite(bytes).is_none(), "{}", String::from_utf8_lossy(bytes));
        }
    }
}
