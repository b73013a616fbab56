//! Removing secrets from what an access log keeps: `key`, `password` and
//! `API_Key` values in query strings, form bodies and JSON bodies (the key
//! text of a create response included), and anything shaped like a
//! generated key wherever it appears. Works on cut-off bodies too.

/// What replaces a secret.
pub const REDACTED: &str = "«redacted»";

/// Longest body kept, in bytes; longer ones are cut and marked.
pub const MAX_BODY: usize = 64 * 1024;

/// Whether a property, field or parameter name holds a secret (case-insensitively).
fn is_secret_name(name: &str) -> bool {
    ["key", "password", "api_key"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// A path with its query's secret parameters replaced.
pub fn path_and_query(target: &str) -> String {
    let target: String = target.chars().take(2048).collect();
    match target.split_once('?') {
        None => scrub_keys(&target),
        Some((path, query)) => format!("{}?{}", scrub_keys(path), form(query)),
    }
}

/// A `name=value&…` text with the secret values replaced.
fn form(text: &str) -> String {
    let pairs: Vec<String> = text
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(n, _)| n.into_owned())
                .unwrap_or_default();
            if is_secret_name(decoded.trim()) {
                format!("{name}={REDACTED}")
            } else {
                scrub_keys(pair)
            }
        })
        .collect();
    pairs.join("&")
}

/// A body as the log keeps it: secrets replaced, at most [`MAX_BODY`]
/// bytes; `true` when it was cut (`cut_already`: the bytes are a prefix).
pub fn body(bytes: &[u8], cut_already: bool) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    let start = text.trim_start();
    let redacted = if start.starts_with('{') || start.starts_with('[') {
        json(&text)
    } else if !text.contains(char::is_whitespace) && text.contains('=') {
        form(&text)
    } else {
        scrub_keys(&text)
    };
    let mut truncated = cut_already;
    let mut out = redacted;
    if out.len() > MAX_BODY {
        let mut end = MAX_BODY;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        truncated = true;
    }
    (out, truncated)
}

/// Replaces generated-shape key texts (`lk_` and 30 or more base62
/// characters) wherever they appear.
fn scrub_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("lk_") {
        let tail = &rest[i + 3..];
        let run = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        out.push_str(&rest[..i]);
        if run >= 30 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[i..i + 3 + run]);
        }
        rest = &tail[run..];
    }
    out.push_str(rest);
    out
}

/// JSON text (possibly cut off) with the values of secret properties
/// replaced, at any depth. Property names are read with their escapes, as
/// the server reads them.
fn json(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(b, i);
        let name_literal = &text[i..end];
        let mut j = skip_ws(b, end);
        if j < b.len() && b[j] == b':' {
            let name: String = serde_json::from_str(name_literal).unwrap_or_default();
            if is_secret_name(&name) {
                j = skip_ws(b, j + 1);
                let value_end = value_end(b, j);
                out.push_str(&scrub_keys(&text[copied..j]));
                out.push('"');
                out.push_str(REDACTED);
                out.push('"');
                copied = value_end;
                i = value_end;
                continue;
            }
        }
        i = end;
    }
    out.push_str(&scrub_keys(&text[copied..]));
    out
}

/// The index after the string literal starting at `start` (the text's end
/// when it is cut off).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index after the JSON value starting at `start`: a string, a nested
/// object or array (balanced), or a scalar.
fn value_end(b: &[u8], start: usize) -> usize {
    if start >= b.len() {
        return b.len();
    }
    match b[start] {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let mut i = start;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "lk_0123456789abcdefghijABCDEFGHIJ1234";

    #[test]
    fn json_secrets_are_replaced_at_any_depth_and_with_escaped_names() {
        let text = format!(
            r#"{{"id":1,"key":"{KEY}","user":{{"Password" : "hunter2"}},"API_Key":"x","p\u0061ssword":"y","n":"key"}}"#
        );
        let (out, cut) = body(text.as_bytes(), false);
        assert!(!cut);
        for secret in [KEY, "hunter2", "\"x\"", "\"y\""] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains(r#""n":"key""#), "{out}");
        assert!(out.contains(r#""id":1"#), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
    }

    #[test]
    fn cut_off_json_is_still_redacted() {
        let text = format!(r#"{{"displayName":"a","key":"{}"#, &KEY[..20]);
        let (out, _) = body(text.as_bytes(), true);
        assert!(!out.contains(&KEY[..20]), "{out}");
        let (out, _) = body(br#"{"password":12345"#, true);
        assert!(!out.contains("12345"), "{out}");
    }

    #[test]
    fn forms_and_queries_lose_their_secrets() {
        let (out, _) = body(b"key=abc&password=pw&x=1&API%5FKey=z", false);
        assert_eq!(
            out,
            format!("key={REDACTED}&password={REDACTED}&x=1&API%5FKey={REDACTED}")
        );
        assert_eq!(
            path_and_query("/api/api-keys/list?KEY=s3cret&unusedFor=90d"),
            format!("/api/api-keys/list?KEY={REDACTED}&unusedFor=90d")
        );
        assert_eq!(path_and_query("/x"), "/x");
    }

    #[test]
    fn generated_keys_are_scrubbed_anywhere() {
        let (out, _) = body(format!("token {KEY} here").as_bytes(), false);
        assert_eq!(out, format!("token {REDACTED} here"));
        assert_eq!(
            path_and_query(&format!("/a/{KEY}")),
            format!("/a/{REDACTED}")
        );
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_BODY);
        let (out, cut) = body(text.as_bytes(), false);
        assert!(cut && out.len() <= MAX_BODY && out.len() > MAX_BODY - 2);
    }
}
