//! Helpers of the console tests: an HTTP client that keeps cookies by hand
//! and follows no redirects, log-in, and form posts with the page's CSRF token.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::common::TestServer;

/// An answer: status, `Location`, `Set-Cookie` headers, body.
pub struct Page {
    /// Status code.
    pub status: u16,
    /// The redirect target, if any.
    pub location: Option<String>,
    /// Every `Set-Cookie` header.
    pub cookies: Vec<String>,
    /// The body.
    pub body: String,
}

impl Page {
    /// The value of the first `csrf` hidden field.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").expect("the page has a csrf field")
    }

    /// The `Set-Cookie` header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

/// The value of the first `<input name=NAME value=…>` in a page.
pub fn field_value(body: &str, name: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &body[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A cookie's value from a `Set-Cookie` header.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

fn http() -> &'static Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    })
}

fn page(r: reqwest::blocking::Response) -> Page {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookies = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    Page {
        status,
        location,
        cookies,
        body: r.text().unwrap(),
    }
}

/// `GET path` with a `Cookie` header.
pub fn get(s: &TestServer, cookie: &str, path: &str) -> Page {
    page(
        http()
            .get(s.url(path))
            .header(COOKIE, cookie)
            .send()
            .unwrap(),
    )
}

/// A form `POST` with a `Cookie` header.
pub fn post(s: &TestServer, cookie: &str, path: &str, form: &[(&str, &str)]) -> Page {
    page(
        http()
            .post(s.url(path))
            .header(COOKIE, cookie)
            .form(form)
            .send()
            .unwrap(),
    )
}

/// Posts the log-in form (with its own token); returns the answer.
pub fn try_login(s: &TestServer, user: &str, password: &str) -> Page {
    let form = get(s, "", "/console/login");
    assert_eq!(form.status, 200, "{}", form.body);
    let login_cookie = form.set_cookie("latchkey_login").expect("login cookie");
    let token = cookie_value(login_cookie);
    assert_eq!(form.csrf(), token, "the form carries the cookie's token");
    post(
        s,
        &format!("latchkey_login={token}"),
        "/console/login",
        &[("user", user), ("password", password), ("csrf", &token)],
    )
}

/// Logs in; returns the `Cookie` header value of the session.
pub fn login(s: &TestServer, user: &str, password: &str) -> String {
    let r = try_login(s, user, password);
    assert_eq!(r.status, 303, "log-in failed: {}", r.body);
    assert_eq!(r.location.as_deref(), Some("/console/keys"));
    let set = r.set_cookie("latchkey_session").expect("session cookie");
    format!("latchkey_session={}", cookie_value(set))
}

/// Whether a session cookie still opens the key list.
pub fn session_works(s: &TestServer, cookie: &str) -> bool {
    let r = get(s, cookie, "/console/keys");
    match r.status {
        200 => true,
        303 => {
            assert_eq!(r.location.as_deref(), Some("/console/login"));
            false
        }
        other => panic!("unexpected {other}: {}", r.body),
    }
}
