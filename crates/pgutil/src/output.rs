//! Text the commands print, as pure functions of the data.

use std::fmt::Write as _;
use std::io::{self, Write};

use proget_api::{
    ApiKeyInfo, ApiKeyType, GroupInfo, HealthInfo, Logging, PermissionInfo, TaskInfo, UserInfo,
};
use reqwest::Url;
use serde::Serialize;

use crate::config::Source;
use crate::error::Error;

/// Text from a server or a file made safe for a terminal: control characters
/// (escape sequences included) become `?`.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Text squeezed onto one line of at most `max` characters: white space runs
/// (line breaks included) become one space, control characters `?`.
pub fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = printable(&joined);
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Writes `text` to stdout. A closed pipe (`pgutil … | head`) ends the command quietly.
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                Error::Reported
            } else {
                Error::Failed(format!("error: could not write to standard output ({e})"))
            }
        })
}

/// Writes a note to stderr (never results).
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Label/value lines: labels indented two spaces, values two columns after the
/// longest label.
fn two_columns(out: &mut String, rows: &[(&str, String)]) {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<width$}  {value}");
    }
}

/// `apikeys list`: one block per key, each followed by a blank line.
pub fn api_key_list(keys: &[ApiKeyInfo]) -> String {
    if keys.is_empty() {
        return "No API keys are defined.\n".into();
    }
    let unknown = || "(unknown)".to_owned();
    let mut out = String::new();
    for key in keys {
        let name = key
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let _ = writeln!(
            out,
            "{}",
            name.map_or_else(|| "(unnamed key)".into(), printable)
        );
        let mut rows = vec![
            ("Id:", key.id.map_or_else(unknown, |id| id.to_string())),
            (
                "Expiration:",
                key.expiration
                    .map_or_else(|| "None".into(), |e| e.date_string()),
            ),
            (
                "Logging:",
                key.logging.unwrap_or(Logging::None).label().to_owned(),
            ),
            (
                "Type:",
                key.key_type.map_or_else(unknown, |t| t.label().to_owned()),
            ),
        ];
        let join = |items: Vec<&str>| items.join(", ");
        match key.key_type {
            Some(ApiKeyType::System) => rows.push((
                "APIs:",
                join(
                    key.system_apis
                        .iter()
                        .flatten()
                        .map(|a| a.as_str())
                        .collect(),
                ),
            )),
            Some(ApiKeyType::Personal) => {
                rows.push(("User:", key.user.as_deref().map_or_else(unknown, printable)))
            }
            Some(ApiKeyType::Feed) => {
                rows.push(match &key.feed_group {
                    Some(group) => ("Feed group:", printable(group)),
                    None => ("Feed:", key.feed.as_deref().map_or_else(unknown, printable)),
                });
                rows.push((
                    "Permissions:",
                    join(
                        key.package_permissions
                            .iter()
                            .flatten()
                            .map(|p| p.as_str())
                            .collect(),
                    ),
                ));
            }
            Some(ApiKeyType::Other) | None => {}
        }
        two_columns(&mut out, &rows);
        out.push('\n');
    }
    out
}

/// `sources list`: numbered blocks separated by blank lines; the URL shows
/// `api@` or `user@`, never a secret.
pub fn source_list(sources: &[Source]) -> String {
    if sources.is_empty() {
        return "No sources configured.\n".into();
    }
    let mut blocks = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let mut block = format!("{}. {}", i + 1, printable(&source.name));
        if let Some(feed) = source.default_feed.as_deref().filter(|f| !f.is_empty()) {
            let _ = write!(block, " ({} feed)", printable(feed));
        }
        let url = match Url::parse(source.url.trim()) {
            Ok(mut url) => {
                let user = if source.has_api_key() {
                    Some("api")
                } else {
                    source.username.as_deref().filter(|u| !u.is_empty())
                };
                let _ = url.set_password(None);
                let _ = url.set_username(user.unwrap_or(""));
                url.to_string()
            }
            Err(_) => format!("{} (not a valid URL)", printable(&source.url)),
        };
        let _ = write!(block, "\n   {url}\n");
        blocks.push(block);
    }
    blocks.join("\n")
}

/// One source as `sources list --json` shows it: the file's fields without
/// any secret, and which kind of credential it holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SourceSummary<'a> {
    name: &'a str,
    url: String,
    default_feed: Option<&'a str>,
    username: Option<&'a str>,
    /// `apiKey`, `user` or null, as `api@` / `user@` in the text.
    credential: Option<&'static str>,
}

/// `sources list --json`: an indented JSON array of
/// `{name, url, defaultFeed, username, credential}`, with the same redaction
/// as the text: no password, token or obfuscated secret, no password in the
/// URL, and none of the properties pgutil does not know (they might be secrets).
pub fn source_list_json(sources: &[Source]) -> Result<String, Error> {
    let summaries: Vec<SourceSummary> = sources
        .iter()
        .map(|source| {
            let username = source.username.as_deref().filter(|u| !u.is_empty());
            let url = match Url::parse(source.url.trim()) {
                Ok(mut url) => {
                    let _ = url.set_password(None);
                    url.to_string()
                }
                Err(_) => source.url.clone(),
            };
            SourceSummary {
                name: &source.name,
                url,
                default_feed: source.default_feed.as_deref().filter(|f| !f.is_empty()),
                username,
                credential: if source.has_api_key() {
                    Some("apiKey")
                } else {
                    username.map(|_| "user")
                },
            }
        })
        .collect();
    serde_json::to_string_pretty(&summaries)
        .map(|text| text + "\n")
        .map_err(|e| Error::Failed(format!("error: could not write the sources as JSON ({e})")))
}

/// `health`: the report and whether everything is OK.
pub fn health_report(url: &str, health: &HealthInfo) -> (String, bool) {
    let statuses = [
        &health.database_status,
        &health.license_status,
        &health.service_status,
    ];
    let all_ok = statuses.iter().all(|s| s.as_str() == "OK");
    let status = |status: &str, detail: &Option<String>| match detail.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => format!("{} ({})", printable(status), one_line(d, 300)),
        _ => printable(status),
    };
    let report = format!(
        "Checking {url}...{}\nVersion: {} ({})\n\nDatabase: {}\nLicense:  {}\nService:  {}\n",
        if all_ok { "all OK" } else { "not OK" },
        printable(&health.version_number),
        printable(&health.release_number),
        status(&health.database_status, &health.database_status_details),
        status(&health.license_status, &None),
        status(&health.service_status, &health.service_status_detail),
    );
    (report, all_ok)
}

/// `security users list`: `name (display name)` per user.
pub fn user_list(users: &[UserInfo]) -> String {
    if users.is_empty() {
        return "No matching users found.\n".into();
    }
    let mut out = String::new();
    for user in users {
        match user.display_name.as_deref().filter(|d| !d.is_empty()) {
            Some(display) => {
                let _ = writeln!(out, "{} ({})", printable(&user.name), printable(display));
            }
            None => {
                let _ = writeln!(out, "{}", printable(&user.name));
            }
        }
    }
    out
}

/// One permission as `permissions list` shows it, without line end:
/// `7: deny Publish Packages on feed npm-internal for user jsmith`.
pub fn permission_line(p: &PermissionInfo) -> String {
    let id = p.id.map_or_else(|| "?".into(), |id| id.to_string());
    format!("{id}: {}", permission_text(p))
}

/// What a permission says, without its id:
/// `deny Publish Packages on feed npm-internal for user jsmith`.
pub fn permission_text(p: &PermissionInfo) -> String {
    let verb = if p.deny { "deny" } else { "allow" };
    let scope = match (&p.feed, &p.feed_group) {
        (Some(feed), _) => format!("on feed {}", printable(feed)),
        (None, Some(group)) => format!("on feed group {}", printable(group)),
        (None, None) => "globally".into(),
    };
    let subject = match (&p.user, &p.group) {
        (Some(user), _) => format!("user {}", printable(user)),
        (None, Some(group)) => format!("group {}", printable(group)),
        (None, None) => "(nobody)".into(),
    };
    format!("{verb} {} {scope} for {subject}", printable(&p.task))
}

/// `security permissions list`: one line per permission.
pub fn permission_list(permissions: &[PermissionInfo]) -> String {
    if permissions.is_empty() {
        return "No permissions are defined.\n".into();
    }
    permissions
        .iter()
        .map(|p| permission_line(p) + "\n")
        .collect()
}

/// `security groups list`: `name: member, member` per group (`name:` when
/// it has none; names cannot contain `:`).
pub fn group_list(groups: &[GroupInfo]) -> String {
    if groups.is_empty() {
        return "No groups are defined.\n".into();
    }
    let mut out = String::new();
    for group in groups {
        let members: Vec<String> = group.members.iter().map(|m| printable(m)).collect();
        let _ = if members.is_empty() {
            writeln!(out, "{}:", printable(&group.name))
        } else {
            writeln!(out, "{}: {}", printable(&group.name), members.join(", "))
        };
    }
    out
}

/// `security tasks list`: `name: permission, permission` per task.
pub fn task_list(tasks: &[TaskInfo]) -> String {
    if tasks.is_empty() {
        return "No tasks are defined.\n".into();
    }
    let mut out = String::new();
    for task in tasks {
        let permissions: Vec<&str> = task.permissions.iter().map(|p| p.as_str()).collect();
        let _ = writeln!(out, "{}: {}", printable(&task.name), permissions.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proget_api::{parse_date, Expiration, PackagePermission, SystemApi};

    #[test]
    fn api_key_list_matches_the_documented_example_byte_for_byte() {
        let keys = [
            ApiKeyInfo {
                id: Some(1000),
                key_type: Some(ApiKeyType::Personal),
                logging: Some(Logging::None),
                user: Some("Admin".into()),
                ..Default::default()
            },
            ApiKeyInfo {
                id: Some(1001),
                key_type: Some(ApiKeyType::Feed),
                display_name: Some("Build server".into()),
                expiration: parse_date("2027-08-01").ok().map(Expiration),
                logging: Some(Logging::Both),
                feed: Some("public-npm".into()),
                package_permissions: Some(vec![PackagePermission::View, PackagePermission::Add]),
                ..Default::default()
            },
        ];
        let expected = "\
(unnamed key)
  Id:          1000
  Expiration:  None
  Logging:     None
  Type:        Personal
  User:        Admin

Build server
  Id:           1001
  Expiration:   2027-08-01
  Logging:      Both
  Type:         Feed
  Feed:         public-npm
  Permissions:  view, add

";
        assert_eq!(api_key_list(&keys), expected);
    }

    #[test]
    fn api_key_list_shows_system_apis_feed_groups_and_absent_logging() {
        let keys = [
            ApiKeyInfo {
                id: Some(1002),
                key_type: Some(ApiKeyType::System),
                system_apis: Some(vec![SystemApi::Feeds, SystemApi::SbomUpload]),
                ..Default::default()
            },
            ApiKeyInfo {
                id: Some(1003),
                key_type: Some(ApiKeyType::Feed),
                feed_group: Some("internal".into()),
                package_permissions: Some(vec![PackagePermission::View]),
                logging: Some(Logging::Request),
                ..Default::default()
            },
        ];
        let expected = "\
(unnamed key)
  Id:          1002
  Expiration:  None
  Logging:     None
  Type:        System
  APIs:        feeds, sbom-upload

(unnamed key)
  Id:           1003
  Expiration:   None
  Logging:      Request
  Type:         Feed
  Feed group:   internal
  Permissions:  view

";
        assert_eq!(api_key_list(&keys), expected);
    }

    #[test]
    fn empty_lists_say_so() {
        assert_eq!(api_key_list(&[]), "No API keys are defined.\n");
        assert_eq!(source_list(&[]), "No sources configured.\n");
        assert_eq!(user_list(&[]), "No matching users found.\n");
    }

    #[test]
    fn source_list_matches_the_documented_example_and_hides_secrets() {
        let sources = [
            Source {
                name: "Default".into(),
                url: "http://127.0.0.1:8624".into(),
                encrypted_token: Some("c2VjcmV0".into()),
                ..Default::default()
            },
            Source {
                name: "MyPackages".into(),
                url: "https://othersource.somewhere.dev/".into(),
                default_feed: Some("unapproved-nuget".into()),
                username: Some("devbuilds".into()),
                password: Some("hunter2".into()),
                ..Default::default()
            },
        ];
        let expected = "\
1. Default
   http://api@127.0.0.1:8624/

2. MyPackages (unapproved-nuget feed)
   https://devbuilds@othersource.somewhere.dev/
";
        assert_eq!(source_list(&sources), expected);
    }

    #[test]
    fn source_list_json_names_the_credential_and_hides_every_secret() {
        let mut other = serde_json::Map::new();
        other.insert("encryptedClientSecret".into(), "c3VwZXI=".into());
        let sources = [
            Source {
                name: "Default".into(),
                url: "http://127.0.0.1:8624".into(),
                encrypted_token: Some("c2VjcmV0".into()),
                other,
                ..Default::default()
            },
            Source {
                name: "My\x1bPackages".into(),
                url: "https://devbuilds:url-secret@othersource.somewhere.dev/".into(),
                default_feed: Some("unapproved-nuget".into()),
                username: Some("devbuilds".into()),
                password: Some("hunter2".into()),
                ..Default::default()
            },
            Source {
                name: "Open".into(),
                url: "not a url".into(),
                ..Default::default()
            },
        ];
        let expected = r#"[
  {
    "name": "Default",
    "url": "http://127.0.0.1:8624/",
    "defaultFeed": null,
    "username": null,
    "credential": "apiKey"
  },
  {
    "name": "My\u001bPackages",
    "url": "https://devbuilds@othersource.somewhere.dev/",
    "defaultFeed": "unapproved-nuget",
    "username": "devbuilds",
    "credential": "user"
  },
  {
    "name": "Open",
    "url": "not a url",
    "defaultFeed": null,
    "username": null,
    "credential": null
  }
]
"#;
        assert_eq!(source_list_json(&sources).as_deref(), Ok(expected));
        assert_eq!(source_list_json(&[]).as_deref(), Ok("[]\n"));
    }

    #[test]
    fn health_report_shows_every_status_and_detail() {
        let health = HealthInfo {
            application_name: "latchkey".into(),
            version_number: "0.1.0".into(),
            release_number: "0.1.0".into(),
            database_status: "Error".into(),
            database_status_details: Some("disk\nfull".into()),
            license_status: "OK".into(),
            service_status: "OK".into(),
            service_status_detail: None,
        };
        let (report, ok) = health_report("http://h/", &health);
        assert!(!ok);
        assert_eq!(
            report,
            "Checking http://h/...not OK\nVersion: 0.1.0 (0.1.0)\n\nDatabase: Error (disk full)\nLicense:  OK\nService:  OK\n"
        );
    }

    #[test]
    fn permission_lines_match_the_documented_examples() {
        let permissions = [
            PermissionInfo {
                id: Some(2),
                group: Some("Administrators".into()),
                task: "Administer".into(),
                ..Default::default()
            },
            PermissionInfo {
                id: Some(7),
                user: Some("jsmith".into()),
                task: "Publish Packages".into(),
                feed: Some("npm-internal".into()),
                deny: true,
                ..Default::default()
            },
            PermissionInfo {
                id: Some(8),
                group: Some("Developers".into()),
                task: "View & Download Packages".into(),
                feed_group: Some("public".into()),
                ..Default::default()
            },
        ];
        assert_eq!(
            permission_list(&permissions),
            "\
2: allow Administer globally for group Administrators
7: deny Publish Packages on feed npm-internal for user jsmith
8: allow View & Download Packages on feed group public for group Developers
"
        );
        assert_eq!(permission_list(&[]), "No permissions are defined.\n");
    }

    #[test]
    fn groups_and_tasks_are_one_line_each() {
        let groups = [
            GroupInfo {
                name: "Auditors".into(),
                members: vec![],
            },
            GroupInfo {
                name: "Developers".into(),
                members: vec!["alice".into(), "bob\x1b".into()],
            },
        ];
        assert_eq!(group_list(&groups), "Auditors:\nDevelopers: alice, bob?\n");
        assert_eq!(group_list(&[]), "No groups are defined.\n");
        let tasks = [TaskInfo {
            name: "Publish Packages".into(),
            permissions: vec![PackagePermission::View, PackagePermission::Add],
        }];
        assert_eq!(task_list(&tasks), "Publish Packages: view, add\n");
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert_eq!(one_line("bad\x1b[2J\n  key", 100), "bad?[2J key");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
