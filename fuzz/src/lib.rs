//! What the fuzz targets share: a readable request format for the seed
//! corpora, and the invariants every extracted credential keeps.
//!
//! A request is text: an optional first line `?QUERY`, then header lines
//! `name: value` (invalid names or values are skipped, as hyper would refuse
//! them), then an empty line and the body. Lines `:peer ADDR` and
//! `:trusted CIDR` are not headers: they set the TCP peer and the trusted
//! proxies for the `X-Forwarded-For` checks.

use http::{HeaderMap, HeaderName, HeaderValue};
use latchkey::auth::{AuthError, Credential};

/// One fuzzed request.
#[derive(Debug, Default)]
pub struct Request {
    /// The query string (without `?`), when the first line gives one.
    pub query: Option<String>,
    /// The headers, in order.
    pub headers: HeaderMap,
    /// The body: everything after the first empty line.
    pub body: Vec<u8>,
    /// `:NAME VALUE` lines, in order.
    pub pseudo: Vec<(String, String)>,
}

impl Request {
    /// Reads the format above from any bytes.
    pub fn parse(data: &[u8]) -> Request {
        let (head, body) = match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &b""[..]),
        };
        let mut req = Request {
            body: body.to_vec(),
            ..Request::default()
        };
        for (n, line) in head.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if n == 0 {
                if let Some(q) = line.strip_prefix(b"?") {
                    req.query = Some(String::from_utf8_lossy(q).into_owned());
                    continue;
                }
            }
            if let Some(rest) = line.strip_prefix(b":") {
                let text = String::from_utf8_lossy(rest);
                let (name, value) = text.split_once(' ').unwrap_or((&text, ""));
                req.pseudo.push((name.to_owned(), value.trim().to_owned()));
                continue;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(trim(&line[colon + 1..]));
            if let (Ok(name), Ok(value)) = (name, value) {
                req.headers.append(name, value);
            }
        }
        req
    }

    /// The values of the `:NAME` lines.
    pub fn pseudo<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pseudo
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != b' ' && *b != b'\t');
    let end = bytes.iter().rposition(|b| *b != b' ' && *b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// What holds for every credential an extractor returns: nothing empty
/// where it would mean "absent", a user name without `:`, and a `Debug`
/// that never shows the secret.
pub fn check_credential(c: &Credential) {
    let debug = format!("{c:?}");
    match c {
        Credential::Key(key) => {
            assert!(!key.is_empty(), "an empty key counts as absent");
            assert_eq!(debug, "Key(<redacted>)");
        }
        Credential::PseudoKey { user, .. } => {
            assert!(!user.contains(':'), "a pseudo-key splits at the first ':'");
            assert_eq!(debug, format!("PseudoKey({user:?}, <redacted>)"));
        }
        Credential::Login { user, .. } => {
            assert!(!user.is_empty(), "Basic with no user name is no login");
            assert!(!user.contains(':'), "Basic splits at the first ':'");
            assert_eq!(debug, format!("Login({user:?}, <redacted>)"));
        }
    }
}

/// The key text the targets add as a second credential.
pub const EXTRA_KEY: &str = "fuzz-extra-key";

/// Compares an extraction with the same request plus one more key
/// (`EXTRA_KEY`): a credential plus another is refused as ambiguous, no
/// credential plus one is that one, and a refused request stays refused.
pub fn check_one_more(
    before: &Result<Option<Credential>, AuthError>,
    after: &Result<Option<Credential>, AuthError>,
) {
    match (before, after) {
        (Ok(Some(_)), Err(AuthError::Ambiguous)) => {}
        (Ok(Some(_)), other) => panic!("two credentials gave {other:?}"),
        (Ok(None), Ok(Some(Credential::Key(k)))) if k == EXTRA_KEY => {}
        (Ok(None), other) => panic!("one credential gave {other:?}"),
        (Err(_), Err(_)) => {}
        (Err(e), other) => panic!("{e:?} became {other:?} with one more credential"),
    }
}

/// Whether two extractions agree (credentials compared, errors by kind).
pub fn same(
    a: &Result<Option<Credential>, AuthError>,
    b: &Result<Option<Credential>, AuthError>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.to_string() == y.to_string(),
        _ => false,
    }
}
