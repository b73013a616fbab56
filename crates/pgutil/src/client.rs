//! HTTP client for a ProGet-compatible server: picks the source and the
//! credential, sends it as `X-ApiKey`, bounds every request in time, and turns
//! every failure into one line that says what happened and what to do.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cli::ServerOptions;
use crate::config::{config_path, Config, Credential};
use crate::error::Error;
use crate::output::{one_line, printable};
use crate::prompt::login_password;

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request, answer included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers larger than this are cut off.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Name of the source used when `--source` is absent.
pub const DEFAULT_SOURCE: &str = "Default";

/// The server to call and the credential to call it with.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the server.
    pub url: Url,
    /// What goes into `X-ApiKey`, if anything.
    pub credential: Option<Credential>,
}

/// Parses a server URL: absolute `http` or `https` with a host.
pub fn parse_server_url(text: &str) -> Option<Url> {
    let mut url = Url::parse(text.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().unwrap_or("").is_empty() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// The line after a documented `--url error: Invalid url.`: what a valid one looks like.
pub const URL_HINT: &str =
    "error: a server url starts with http:// or https:// and names a host, e.g. https://proget.example.com/";

/// Whether `--source` names a URL rather than a configured source.
fn looks_like_url(source: &str) -> bool {
    let lower = source.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A URL as shown in messages: without user name or password.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Picks the server and credential from `--source`, the config file and the
/// credential options: `--api-key` wins over `--username`/`--password`, which
/// win over the source's stored credential. A user without a password gets it
/// asked for on the terminal (a usage error without one).
pub fn resolve(options: &ServerOptions) -> Result<Target, Error> {
    let (url, stored) = match options.source.as_deref() {
        Some(text) if looks_like_url(text) => {
            let url = parse_server_url(text)
                .ok_or_else(|| Error::Usage(format!("--source error: Invalid url.\n{URL_HINT}")))?;
            (url, None)
        }
        named => {
            let name = named.unwrap_or(DEFAULT_SOURCE);
            let config = Config::load(&config_path()?)?;
            let Some(source) = config.find(name) else {
                return Err(Error::Failed(if named.is_some() {
                    format!("--source error: Source {name} not found.")
                } else {
                    format!(
                        "--source error: Source {name} not found. Give --source=NAME|URL, or add it with `pgutil sources add --name={name} --url=URL`."
                    )
                }));
            };
            let url = parse_server_url(&source.url).ok_or_else(|| {
                Error::Failed(format!(
                    "error: source {} has an invalid url; fix it with `pgutil sources add --name={} --url=URL`",
                    source.name, source.name
                ))
            })?;
            (url, source.credential()?)
        }
    };
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let credential =
        if let Some(key) = non_empty(&options.api_key) {
            Some(Credential::ApiKey(key))
        } else if let Some(name) = non_empty(&options.username) {
            let password = match non_empty(&options.password) {
                Some(password) => password,
                None => login_password(
                    &name,
                    &format!("--username={} without --password", printable(&name)),
                    "give --password=PASSWORD",
                )?,
            };
            Some(Credential::User { name, password })
        } else {
            match stored {
                Some(Credential::User { name, password }) if password.is_empty() => {
                    let password = login_password(
                    &name,
                    &format!("the source's user {} has no stored password", printable(&name)),
                    "give --username and --password, or store a password with `pgutil sources add`",
                )?;
                    Some(Credential::User { name, password })
                }
                stored => stored,
            }
        };
    Ok(Target { url, credential })
}

/// A failed request, before it is put into words for a particular action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The server answered with a non-success status.
    Status {
        /// HTTP status code.
        status: u16,
        /// The answer's text, as one sanitised line (possibly empty).
        said: String,
        /// The answer's `Retry-After`, in seconds, when it had one.
        retry_after: Option<u64>,
    },
    /// The server answered with a redirect, which is not followed so that the
    /// credential is never sent elsewhere.
    Redirect {
        /// HTTP status code.
        status: u16,
        /// Where it pointed.
        location: String,
    },
    /// No (complete) answer: connection, time-out or transfer failure.
    Transport {
        /// The server's URL (without credentials).
        url: String,
        /// What went wrong, from the innermost cause.
        reason: String,
        /// Whether the connection could not be opened.
        connect: bool,
        /// Whether a time-out expired.
        timed_out: bool,
    },
    /// The answer was not what a ProGet-compatible server sends.
    Decode(String),
}

impl ApiError {
    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `, server said: "…"` when the server gave a reason, else nothing.
    pub fn server_said(&self) -> String {
        match self {
            ApiError::Status { said, .. } if !said.is_empty() => {
                format!(", server said: \"{said}\"")
            }
            _ => String::new(),
        }
    }

    /// What went wrong, without the action or advice (for `sources test`).
    pub fn reason(&self) -> String {
        match self {
            ApiError::Status { status, .. } => {
                format!("the server answered {status}{}", self.server_said())
            }
            ApiError::Redirect { status, location } => {
                format!("the server redirects ({status}) to {location}")
            }
            ApiError::Transport {
                url,
                reason,
                timed_out: true,
                ..
            } => {
                format!("no answer from {url} in time ({reason})")
            }
            ApiError::Transport {
                url,
                reason,
                connect: true,
                ..
            } => {
                format!("could not connect to {url} ({reason})")
            }
            ApiError::Transport { url, reason, .. } => {
                format!("the exchange with {url} broke off ({reason})")
            }
            ApiError::Decode(reason) => {
                format!("the answer is not what a ProGet-compatible server sends ({reason})")
            }
        }
    }

    /// Puts the failure into one line; `action` is what was being done, e.g. `listing API keys`.
    pub fn describe(&self, action: &str) -> Error {
        let said = self.server_said();
        Error::Failed(match self {
            ApiError::Status { status: status @ (401 | 403), .. } => format!(
                "error: {action} was refused ({status}){said}; check the credential (--api-key, --username/--password or the source's) and its permissions"
            ),
            ApiError::Status { status: status @ (400 | 422), .. } => format!(
                "error: {action} was rejected as invalid ({status}){said}; correct the values and try again"
            ),
            ApiError::Status { status: 404, .. } => format!(
                "error: {action} failed: not found (404){said}; check that --source points at a ProGet-compatible server"
            ),
            ApiError::Status { status: 429, retry_after, .. } => format!(
                "error: {action} was refused: too many requests (429){said}; wait {} and try again",
                retry_after.map_or_else(
                    || "a minute".to_owned(),
                    |s| format!("{s} second{}", if s == 1 { "" } else { "s" })
                )
            ),
            ApiError::Status { status, .. } if *status >= 500 => format!(
                "error: {action} failed with a server error ({status}){said}; try again, and if it persists see the server's log"
            ),
            ApiError::Status { status, .. } => {
                format!("error: {action} failed ({status}){said}; check --source and try again")
            }
            ApiError::Redirect { status, location } => format!(
                "error: {action} failed: the server redirects ({status}) to {location}; use that URL as the source"
            ),
            ApiError::Transport { url, reason, timed_out: true, connect, .. } => {
                let (what, limit) = if *connect {
                    ("could not connect to", CONNECT_TIMEOUT)
                } else {
                    ("got no complete answer from", TOTAL_TIMEOUT)
                };
                format!(
                    "error: {action} timed out: {what} {url} within {} s ({reason}); check that the server is up and reachable, then try again",
                    limit.as_secs()
                )
            }
            ApiError::Transport { url, reason, connect: true, .. } => format!(
                "error: {action} failed: could not connect to {url} ({reason}); check that the server is running and that --source is right"
            ),
            ApiError::Transport { url, reason, .. } => format!(
                "error: {action} failed: the exchange with {url} broke off ({reason}); try again"
            ),
            ApiError::Decode(reason) => format!(
                "error: {action} failed: the answer is not what a ProGet-compatible server sends ({reason}); check that --source points at one"
            ),
        })
    }
}

/// A configured HTTP client for one server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    api_key: Option<HeaderValue>,
}

impl Client {
    /// Builds a client for `target`; fails on credentials that cannot go into a header.
    pub fn new(target: &Target) -> Result<Client, Error> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            // Never follow a redirect: X-ApiKey would travel to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pgutil/", env!("CARGO_PKG_VERSION"), " (latchkey)"))
            .build()
            .map_err(|e| {
                Error::Failed(format!(
                    "error: could not set up the HTTP client ({}); this is a bug, please report it",
                    root_cause(&e)
                ))
            })?;
        let api_key = match &target.credential {
            None => None,
            Some(credential) => {
                let mut value = HeaderValue::from_bytes(credential.header_value().as_bytes()).map_err(|_| {
                    Error::Usage(
                        "error: the credential contains characters that cannot be sent in an HTTP header (such as line breaks); check --api-key, --password or the source".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Client {
            http,
            base: target.url.clone(),
            api_key,
        })
    }

    /// The server's base URL, without credentials.
    pub fn display_url(&self) -> String {
        display_url(&self.base)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<RequestBuilder, ApiError> {
        let joined = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        let url =
            Url::parse(&joined).map_err(|e| ApiError::Decode(format!("bad request URL: {e}")))?;
        let mut request = self.http.request(method, url);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(key) = &self.api_key {
            request = request.header("X-ApiKey", key.clone());
        }
        Ok(request)
    }

    fn execute(&self, request: RequestBuilder) -> Result<String, ApiError> {
        let (status, body, retry_after) = self.exchange(request)?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                status,
                said: one_line(&body, 300),
                retry_after,
            });
        }
        Ok(body)
    }

    /// Sends a request; the status and body (as text) of any non-redirect answer.
    fn exchange(&self, request: RequestBuilder) -> Result<(u16, String, Option<u64>), ApiError> {
        let (status, body, retry_after) = self.exchange_bytes(request)?;
        Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        ))
    }

    /// Sends a request; the status, body (unchanged) and `Retry-After`
    /// seconds of any non-redirect answer.
    fn exchange_bytes(
        &self,
        request: RequestBuilder,
    ) -> Result<(u16, Vec<u8>, Option<u64>), ApiError> {
        let response = request.send().map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| one_line(&String::from_utf8_lossy(l.as_bytes()), 200))
                .unwrap_or_else(|| "an unnamed location".into());
            return Err(ApiError::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_body(response).map_err(|reason| ApiError::Transport {
            url: self.display_url(),
            reason,
            connect: false,
            timed_out: false,
        })?;
        Ok((status.as_u16(), body, retry_after))
    }

    fn transport(&self, e: &reqwest::Error) -> ApiError {
        ApiError::Transport {
            url: self.display_url(),
            reason: root_cause(e),
            connect: e.is_connect(),
            timed_out: e.is_timeout(),
        }
    }

    /// `GET path?query`, answer read as JSON.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let body = self.execute(self.request(Method::GET, path, query)?)?;
        decode(&body)
    }

    /// `GET path?query` of a list: the answer's body exactly as sent, after
    /// checking that it is UTF-8 text holding one JSON array.
    pub fn get_json_array_text(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<String, ApiError> {
        let (status, body, retry_after) =
            self.exchange_bytes(self.request(Method::GET, path, query)?)?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                status,
                said: one_line(&String::from_utf8_lossy(&body), 300),
                retry_after,
            });
        }
        let text = String::from_utf8(body)
            .map_err(|_| ApiError::Decode("expected JSON: the answer is not UTF-8 text".into()))?;
        decode::<Vec<serde::de::IgnoredAny>>(&text)?;
        Ok(text)
    }

    /// `GET path`, answer read as JSON even with an error status (health
    /// reports describe failures in the body).
    pub fn get_json_any_status<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (status, body, retry_after) = self.exchange(self.request(Method::GET, path, &[])?)?;
        match decode(&body) {
            Ok(value) => Ok(value),
            Err(_) if !(200..300).contains(&status) => Err(ApiError::Status {
                status,
                said: one_line(&body, 300),
                retry_after,
            }),
            Err(e) => Err(e),
        }
    }

    /// `POST path` with a JSON body, answer read as JSON.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = self.execute(self.request(Method::POST, path, &[])?.json(body))?;
        decode(&body)
    }

    /// `POST path` with a JSON body, answer ignored.
    pub fn post_json_ignoring_answer<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ApiError> {
        self.execute(self.request(Method::POST, path, &[])?.json(body))
            .map(drop)
    }

    /// `POST path?query` without a body, answer read as JSON.
    pub fn post_query_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let body = self.execute(self.request(Method::POST, path, query)?)?;
        decode(&body)
    }

    /// A request without body whose answer is ignored (deletes).
    pub fn send(&self, method: Method, path: &str, query: &[(&str, &str)]) -> Result<(), ApiError> {
        self.execute(self.request(method, path, query)?).map(drop)
    }
}

fn decode<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError::Decode(format!("expected JSON: {e}")))
}

fn read_body(response: Response) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    response
        .take(MAX_BODY)
        .read_to_end(&mut bytes)
        .map_err(|e| lower_first(&one_line(&e.to_string(), 200)))?;
    Ok(bytes)
}

/// The innermost cause of an error, as one lower-case line (`connection refused (os error 111)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    lower_first(&one_line(&cause.to_string(), 200))
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_absolute_http_or_https() {
        assert!(parse_server_url("http://127.0.0.1:8624").is_some());
        assert!(parse_server_url("https://proget.corp.local/proget/").is_some());
        for bad in ["proget.corp.local", "ftp://x/", "http://", "not a url", ""] {
            assert!(parse_server_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn shown_urls_never_carry_credentials() {
        let url = parse_server_url("http://user:secret@host:1/").map(|u| display_url(&u));
        assert_eq!(url.as_deref(), Some("http://host:1/"));
    }

    #[test]
    fn api_key_wins_over_user_and_password() {
        let options = ServerOptions {
            source: Some("http://host/".into()),
            api_key: Some("k".into()),
            username: Some("u".into()),
            password: Some("p".into()),
        };
        let target = resolve(&options).map(|t| t.credential);
        assert_eq!(target, Ok(Some(Credential::ApiKey("k".into()))));
        let options = ServerOptions {
            api_key: None,
            ..options
        };
        let header = resolve(&options)
            .ok()
            .and_then(|t| t.credential)
            .map(|c| c.header_value());
        assert_eq!(header.as_deref(), Some("u:p"));
    }

    #[test]
    fn failures_say_what_happened_and_what_the_server_said() {
        let refused = ApiError::Status {
            status: 403,
            said: "invalid API key".into(),
            retry_after: None,
        };
        assert_eq!(
            refused.describe("listing API keys").to_string(),
            "error: listing API keys was refused (403), server said: \"invalid API key\"; check the credential (--api-key, --username/--password or the source's) and its permissions"
        );
        let down = ApiError::Transport {
            url: "http://127.0.0.1:1/".into(),
            reason: "connection refused (os error 111)".into(),
            connect: true,
            timed_out: false,
        };
        assert!(down
            .describe("listing API keys")
            .to_string()
            .starts_with("error: listing API keys failed: could not connect to http://127.0.0.1:1/ (connection refused"));
    }

    #[test]
    fn time_outs_say_which_limit_expired() {
        let slow = ApiError::Transport {
            url: "http://h/".into(),
            reason: "operation timed out".into(),
            connect: false,
            timed_out: true,
        };
        assert_eq!(
            slow.describe("listing API keys").to_string(),
            "error: listing API keys timed out: got no complete answer from http://h/ within 60 s (operation timed out); check that the server is up and reachable, then try again"
        );
    }
}
