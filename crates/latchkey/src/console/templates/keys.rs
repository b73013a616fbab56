//! The API-key pages: list, create, created, key page, delete confirmation.

use std::collections::HashMap;

use maud::{html, Markup};
use proget_api::{AccessLogEntry, ApiKeyInfo, ApiKeyType, Logging, PackagePermission, SystemApi};

use super::{csrf, described_by, field, layout, when};
use crate::console::Console;
use crate::domain::{KeyId, StoredKey};

/// Keys shown per page of the list.
pub const PAGE: u32 = 50;

fn feed_of(k: &StoredKey) -> String {
    match (&k.feed, &k.feed_group) {
        (Some(f), _) => f.clone(),
        (None, Some(g)) => format!("group {g}"),
        _ => String::new(),
    }
}

fn permissions_of(k: &StoredKey) -> String {
    match k.key_type {
        ApiKeyType::System => k
            .system_apis
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        ApiKeyType::Feed => k
            .package_permissions
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        ApiKeyType::Personal => "as its user".into(),
        ApiKeyType::Other => String::new(),
    }
}

fn name_of(k: &StoredKey) -> &str {
    k.display_name.as_deref().unwrap_or("(unnamed key)")
}

/// The key list: search, table, next page.
pub fn list(
    c: &Console,
    keys: &[StoredKey],
    search: &str,
    after: KeyId,
    deleted: Option<KeyId>,
) -> Markup {
    let next = (keys.len() == PAGE as usize)
        .then(|| keys.last().map(|k| k.id))
        .flatten();
    layout(
        Some(c),
        "API keys",
        html! {
            @if let Some(id) = deleted {
                p.notice role="status" { "Key " (id) " was deleted; it is refused from now on." }
            }
            div.toolbar {
                form.search method="get" action="/console/keys" role="search" {
                    label for="q" { "Search by name, user or feed" }
                    input id="q" name="q" type="search" value=(search);
                    button type="submit" { "Search" }
                }
                a.button href="/console/keys/new" { "Create key" }
            }
            @if keys.is_empty() {
                p { @if after > crate::domain::KeyId::MIN { "No more keys." } @else { "No keys found." } }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "API keys" }
                        thead { tr {
                            th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Type" }
                            th scope="col" { "User" } th scope="col" { "Feed" } th scope="col" { "Permissions" }
                            th scope="col" { "Expiration" } th scope="col" { "Last used" }
                        } }
                        tbody {
                            @for k in keys {
                                tr {
                                    td { a href=(format!("/console/keys/{}", k.id)) { (k.id) } }
                                    td { a href=(format!("/console/keys/{}", k.id)) { (name_of(k)) } }
                                    td { (k.key_type.label()) }
                                    td { (k.user.as_ref().map(|u| u.name.as_str()).unwrap_or("")) }
                                    td { (feed_of(k)) }
                                    td { (permissions_of(k)) }
                                    td { (when(k.expiration, "never")) }
                                    td { (when(k.usage.last_used, "never")) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(last) = next {
                nav.pager aria-label="Pages" {
                    a href=(format!("/console/keys?{}", paging(search, last))) { "Next page" }
                }
            }
        },
    )
}

fn paging(search: &str, after: KeyId) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !search.is_empty() {
        q.append_pair("q", search);
    }
    q.append_pair("after", &after.to_string());
    q.finish()
}

/// What the create form shows again after a refusal.
#[derive(Default)]
pub struct Draft {
    /// The fields as posted.
    pub values: HashMap<String, Vec<String>>,
    /// Messages by field name; `""` for the form as a whole.
    pub errors: HashMap<String, String>,
}

impl Draft {
    fn value(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    fn checked(&self, name: &str, value: &str) -> bool {
        self.values
            .get(name)
            .is_some_and(|v| v.iter().any(|x| x == value))
    }
}

fn text_field(d: &Draft, label: &str, name: &str, hint: Option<&str>, readonly: bool) -> Markup {
    let error = d.errors.get(name);
    field(
        label,
        name,
        error,
        html! {
            input id=(name) name=(name) type="text" value=(d.value(name))
                readonly[readonly]
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[described_by(name, error, hint.is_some())];
        },
        hint,
    )
}

fn checkboxes(d: &Draft, legend: &str, name: &str, values: &[&str]) -> Markup {
    let error = d.errors.get(name);
    html! {
        fieldset.field.invalid[error.is_some()]
            aria-describedby=[error.map(|_| format!("{name}-error"))] {
            legend { (legend) }
            @for v in values {
                @let id = format!("{name}-{v}");
                div.check {
                    input type="checkbox" id=(id) name=(name) value=(v) checked[d.checked(name, v)];
                    label for=(id) { (v) }
                }
            }
            @if let Some(e) = error { p.error id=(format!("{name}-error")) { (e) } }
        }
    }
}

/// The create form for one key type.
pub fn new_key(c: &Console, key_type: ApiKeyType, d: &Draft) -> Markup {
    let types: &[ApiKeyType] = if c.admin {
        &[ApiKeyType::Feed, ApiKeyType::System, ApiKeyType::Personal]
    } else {
        &[ApiKeyType::Personal]
    };
    let title = format!("Create a {} key", key_type.label().to_lowercase());
    layout(
        Some(c),
        &title,
        html! {
            @if types.len() > 1 {
                nav.tabs aria-label="Key type" {
                    ul {
                        @for t in types {
                            li { a href=(format!("/console/keys/new?type={}", t.as_str()))
                                aria-current=[(*t == key_type).then_some("page")] { (t.label()) " key" } }
                        }
                    }
                }
            }
            @if let Some(e) = d.errors.get("") {
                p.error role="alert" id="form-error" { (e) }
            } @else if !d.errors.is_empty() {
                p.error role="alert" id="form-error" { "The key was not created: see the fields marked below." }
            }
            form.stack method="post" action="/console/keys/new" novalidate {
                (csrf(c))
                input type="hidden" name="type" value=(key_type.as_str());
                (text_field(d, "Name", "displayName", None, false))
                (text_field(d, "Description", "description", None, false))
                @match key_type {
                    ApiKeyType::Feed => {
                        (text_field(d, "Feed", "feed", Some("Give a feed or a feed group, not both."), false))
                        (text_field(d, "Feed group", "feedGroup", None, false))
                        (checkboxes(d, "Permissions", "packagePermissions",
                            &PackagePermission::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>()))
                    }
                    ApiKeyType::System => {
                        (checkboxes(d, "System APIs", "systemApis",
                            &SystemApi::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>()))
                    }
                    _ => {
                        (text_field(d, "User", "user", None, !c.admin))
                    }
                }
                @let error = d.errors.get("expiration");
                (field("Expiration date (optional)", "expiration", error, html! {
                    input id="expiration" name="expiration" type="date" value=(d.value("expiration"))
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby=[described_by("expiration", error, false)];
                }, None))
                @let error = d.errors.get("logging");
                (field("Request logging", "logging", error, html! {
                    select id="logging" name="logging" aria-describedby=[described_by("logging", error, false)] {
                        @for l in Logging::ALL {
                            option value=(l.as_str()) selected[d.value("logging") == l.as_str()] { (l.label()) }
                        }
                    }
                }, None))
                @if c.admin {
                    (text_field(d, "Key text (optional; for keys migrated from elsewhere)", "key", Some("Leave empty to generate a key."), false))
                }
                button type="submit" { "Create key" }
            }
        },
    )
}

/// The page after a create: the key text, once.
pub fn created(c: &Console, info: &ApiKeyInfo) -> Markup {
    let id = info.id.unwrap_or_default();
    layout(
        Some(c),
        "Key created",
        html! {
            p.warning role="alert" { "Copy the key now: it will not be shown again." }
            div.field.copy {
                label for="key-text" { "Key" }
                div.row {
                    input id="key-text" type="text" readonly value=(info.key.as_deref().unwrap_or("")) spellcheck="false" autocomplete="off";
                    button type="button" id="copy" data-copy="key-text" hidden { "Copy" }
                }
                p.hint id="copy-status" role="status" {}
            }
            p { "Key " a href=(format!("/console/keys/{id}")) { (id) } " (" (info.display_name.as_deref().unwrap_or("(unnamed key)")) ") was created." }
            p { a href="/console/keys" { "Back to the API keys" } }
        },
    )
}

/// A key's page: properties, last use, delete, access log.
pub fn show(
    c: &Console,
    k: &StoredKey,
    log: Option<&[AccessLogEntry]>,
    older: Option<i64>,
) -> Markup {
    let title = format!("Key {}: {}", k.id, name_of(k));
    layout(
        Some(c),
        &title,
        html! {
            dl.props {
                dt { "Id" } dd { (k.id) }
                dt { "Name" } dd { (name_of(k)) }
                dt { "Type" } dd { (k.key_type.label()) }
                @if let Some(d) = &k.description { dt { "Description" } dd { (d) } }
                @if let Some(u) = &k.user { dt { "User" } dd { (u.name) } }
                @if !feed_of(k).is_empty() { dt { "Feed" } dd { (feed_of(k)) } }
                dt { "Permissions" } dd { (permissions_of(k)) }
                dt { "Expiration" } dd { (when(k.expiration, "never")) }
                dt { "Request logging" } dd { (k.logging.label()) }
                dt { "Created" } dd { (when(k.usage.created, "unknown")) }
                dt { "Last used" } dd {
                    (when(k.usage.last_used, "never"))
                    @if let Some(from) = &k.usage.last_used_from { " from " (from) }
                }
            }
            p { a.button.danger href=(format!("/console/keys/{}/delete", k.id)) { "Delete" } }
            @if let Some(entries) = log {
                h2 { "Access log" }
                @if entries.is_empty() {
                    p { "No requests logged." }
                } @else {
                    div.table-wrap {
                        table {
                            caption.visually-hidden { "Access log, newest first" }
                            thead { tr {
                                th scope="col" { "Time" } th scope="col" { "Request" } th scope="col" { "Status" }
                                th scope="col" { "From" } th scope="col" { "Bodies" }
                            } }
                            tbody {
                                @for e in entries {
                                    tr {
                                        td { (e.time) }
                                        td { code { (e.method) " " (e.path) } }
                                        td { (e.status) @if let Some(v) = &e.verdict { " (" (v) ")" } }
                                        td { (e.address.as_deref().unwrap_or("")) }
                                        td {
                                            @if let Some(b) = &e.request_body { details { summary { "Request" } pre { (b) } } }
                                            @if let Some(b) = &e.response_body { details { summary { "Response" } pre { (b) } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(before) = older {
                        nav.pager aria-label="Access log pages" {
                            a href=(format!("/console/keys/{}?before={before}", k.id)) { "Older entries" }
                        }
                    }
                }
            }
        },
    )
}

/// The delete confirmation step.
pub fn confirm_delete(c: &Console, k: &StoredKey) -> Markup {
    layout(
        Some(c),
        &format!("Delete key {}?", k.id),
        html! {
            p { "Key " strong { (k.id) } " (" (name_of(k)) ") will be refused from the moment it is deleted. This cannot be undone." }
            form.inline method="post" action=(format!("/console/keys/{}/delete", k.id)) {
                (csrf(c))
                button.danger type="submit" { "Delete" }
                " "
                a href=(format!("/console/keys/{}", k.id)) { "Cancel" }
            }
        },
    )
}
