//! The administrators' pages: users, groups, permissions, audit trail.

use std::collections::HashMap;

use maud::{html, Markup};
use proget_api::{AuditEntry, GroupInfo, PermissionInfo, TaskInfo, UserInfo};

use super::{csrf, described_by, field, layout};
use crate::console::Console;

/// A form's values and errors after a refusal (field name → text; `""` for the form).
#[derive(Default)]
pub struct Draft {
    /// The fields as posted.
    pub values: HashMap<String, String>,
    /// Messages by field name.
    pub errors: HashMap<String, String>,
}

impl Draft {
    fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }
}

fn input(d: &Draft, label: &str, id: &str, name: &str, kind: &str, hint: Option<&str>) -> Markup {
    let error = d.errors.get(name);
    let value = if kind == "password" {
        ""
    } else {
        d.value(name)
    };
    field(
        label,
        id,
        error,
        html! {
            input id=(id) name=(name) type=(kind) value=(value)
                autocomplete=[(kind == "password").then_some("new-password")]
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[described_by(id, error, hint.is_some())];
        },
        hint,
    )
}

fn form_error(d: &Draft) -> Markup {
    html! {
        @if let Some(e) = d.errors.get("") {
            p.error role="alert" { (e) }
        } @else if !d.errors.is_empty() {
            p.error role="alert" { "Not saved: see the fields marked below." }
        }
    }
}

fn notice(text: Option<&str>) -> Markup {
    html! { @if let Some(t) = text { p.notice role="status" { (t) } } }
}

/// The user list and the add form.
pub fn users(
    c: &Console,
    users: &[UserInfo],
    search: &str,
    d: &Draft,
    done: Option<&str>,
) -> Markup {
    layout(
        Some(c),
        "Users",
        html! {
            (notice(done))
            form.search method="get" action="/console/users" role="search" {
                label for="q" { "Search users" }
                input id="q" name="q" type="search" value=(search);
                button type="submit" { "Search" }
            }
            div.table-wrap { table {
                caption.visually-hidden { "Users" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Display name" } th scope="col" { "E-mail" } th scope="col" { "Groups" } } }
                tbody { @for u in users { tr {
                    td { a href=(format!("/console/users/{}", urlencode(&u.name))) { (u.name) } }
                    td { (u.display_name.as_deref().unwrap_or("")) }
                    td { (u.email.as_deref().unwrap_or("")) }
                    td { (u.groups.join(", ")) }
                } } }
            } }
            h2 id="add-user" { "Add a user" }
            (form_error(d))
            form.stack method="post" action="/console/users" aria-labelledby="add-user" {
                (csrf(c))
                (input(d, "User name", "new-name", "name", "text", None))
                (input(d, "Display name", "new-displayName", "displayName", "text", None))
                (input(d, "E-mail", "new-email", "email", "email", None))
                (input(d, "Groups", "new-groups", "groups", "text", Some("Comma-separated, e.g. Administrators")))
                (input(d, "Password", "new-password", "password", "password", None))
                button type="submit" { "Add user" }
            }
        },
    )
}

/// One user's page: edit and delete.
pub fn user(c: &Console, u: &UserInfo, d: &Draft, done: Option<&str>) -> Markup {
    let action = format!("/console/users/{}", urlencode(&u.name));
    let mut d2 = Draft {
        values: d.values.clone(),
        errors: d.errors.clone(),
    };
    if d2.values.is_empty() {
        d2.values.insert(
            "displayName".into(),
            u.display_name.clone().unwrap_or_default(),
        );
        d2.values
            .insert("email".into(), u.email.clone().unwrap_or_default());
        d2.values.insert("groups".into(), u.groups.join(", "));
    }
    layout(
        Some(c),
        &format!("User {}", u.name),
        html! {
            (notice(done))
            (form_error(&d2))
            form.stack method="post" action=(action) {
                (csrf(c))
                (input(&d2, "Display name", "displayName", "displayName", "text", None))
                (input(&d2, "E-mail", "email", "email", "email", None))
                (input(&d2, "Groups", "groups", "groups", "text", Some("Comma-separated")))
                (input(&d2, "New password", "password", "password", "password", Some("Leave empty to keep the password. A new password ends the user's console sessions.")))
                button type="submit" { "Save" }
            }
            h2 id="delete-user" { "Delete this user" }
            form.stack method="post" action=(format!("{action}/delete")) aria-labelledby="delete-user" {
                (csrf(c))
                div.check {
                    input type="checkbox" id="confirm" name="confirm" value="yes" required;
                    label for="confirm" { "Yes, delete " (u.name) " and their personal keys" }
                }
                button.danger type="submit" { "Delete user" }
            }
            p { a href="/console/users" { "Back to the users" } }
        },
    )
}

/// The group list with inline edits, and the add form.
pub fn groups(c: &Console, groups: &[GroupInfo], d: &Draft, done: Option<&str>) -> Markup {
    layout(
        Some(c),
        "Groups",
        html! {
            (notice(done))
            (form_error(d))
            div.table-wrap { table {
                caption.visually-hidden { "Groups" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Members" } th scope="col" { "Actions" } } }
                tbody { @for (i, g) in groups.iter().enumerate() {
                    @let action = format!("/console/groups/{}", urlencode(&g.name));
                    tr {
                        td { (g.name) }
                        td {
                            form.inline method="post" action=(action) {
                                (csrf(c))
                                label.visually-hidden for=(format!("members-{i}")) { "Members of " (g.name) }
                                input id=(format!("members-{i}")) name="members" type="text" value=(g.members.join(", "));
                                " "
                                button type="submit" { "Save" span.visually-hidden { " members of " (g.name) } }
                            }
                        }
                        td {
                            form.inline method="post" action=(format!("{action}/delete")) {
                                (csrf(c))
                                button.danger type="submit" { "Delete" span.visually-hidden { " group " (g.name) } }
                            }
                        }
                    }
                } }
            } }
            h2 id="add-group" { "Add a group" }
            form.stack method="post" action="/console/groups" aria-labelledby="add-group" {
                (csrf(c))
                (input(d, "Group name", "group-name", "name", "text", None))
                (input(d, "Members", "group-members", "members", "text", Some("Comma-separated user names")))
                button type="submit" { "Add group" }
            }
        },
    )
}

fn subject(p: &PermissionInfo) -> String {
    match (&p.user, &p.group) {
        (Some(u), _) => format!("user {u}"),
        (None, Some(g)) => format!("group {g}"),
        _ => String::new(),
    }
}

fn scope(p: &PermissionInfo) -> String {
    match (&p.feed, &p.feed_group) {
        (Some(f), _) => format!("feed {f}"),
        (None, Some(g)) => format!("feed group {g}"),
        _ => "everything".into(),
    }
}

/// The permission list and the add form.
pub fn permissions(
    c: &Console,
    perms: &[PermissionInfo],
    tasks: &[TaskInfo],
    d: &Draft,
    done: Option<&str>,
) -> Markup {
    layout(
        Some(c),
        "Permissions",
        html! {
            (notice(done))
            div.table-wrap { table {
                caption.visually-hidden { "Permissions" }
                thead { tr { th scope="col" { "Id" } th scope="col" { "Subject" } th scope="col" { "Task" } th scope="col" { "Scope" } th scope="col" { "Kind" } th scope="col" { "Actions" } } }
                tbody { @for p in perms { tr {
                    td { (p.id.unwrap_or_default()) }
                    td { (subject(p)) }
                    td { (p.task) }
                    td { (scope(p)) }
                    td { @if p.deny { "deny" } @else { "grant" } }
                    td {
                        form.inline method="post" action=(format!("/console/permissions/{}/delete", p.id.unwrap_or_default())) {
                            (csrf(c))
                            button.danger type="submit" { "Delete" span.visually-hidden { " permission " (p.id.unwrap_or_default()) } }
                        }
                    }
                } } }
            } }
            h2 id="add-permission" { "Add a permission" }
            (form_error(d))
            form.stack method="post" action="/console/permissions" aria-labelledby="add-permission" {
                (csrf(c))
                (input(d, "User", "perm-user", "user", "text", Some("A user or a group, not both")))
                (input(d, "Group", "perm-group", "group", "text", None))
                @let error = d.errors.get("task");
                (field("Task", "perm-task", error, html! {
                    select id="perm-task" name="task" aria-describedby=[described_by("perm-task", error, false)] {
                        @for t in tasks { option value=(t.name) selected[d.value("task") == t.name] { (t.name) } }
                    }
                }, None))
                (input(d, "Feed", "perm-feed", "feed", "text", Some("Leave feed and feed group empty for every feed")))
                (input(d, "Feed group", "perm-feedGroup", "feedGroup", "text", None))
                div.check {
                    input type="checkbox" id="perm-deny" name="deny" value="true" checked[d.value("deny") == "true"];
                    label for="perm-deny" { "Deny (instead of grant)" }
                }
                button type="submit" { "Add permission" }
            }
        },
    )
}

/// The audit trail, newest first.
pub fn audit(
    c: &Console,
    entries: &[AuditEntry],
    action: &str,
    target: &str,
    older: Option<i64>,
) -> Markup {
    layout(
        Some(c),
        "Audit",
        html! {
            form.search method="get" action="/console/audit" role="search" {
                label for="action" { "Action" }
                input id="action" name="action" type="search" value=(action);
                label for="target" { "Target" }
                input id="target" name="target" type="search" value=(target);
                button type="submit" { "Filter" }
            }
            div.table-wrap { table {
                caption.visually-hidden { "Audit entries, newest first" }
                thead { tr { th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Address" } th scope="col" { "Details" } } }
                tbody { @for e in entries { tr {
                    td { (e.time) } td { (e.actor) } td { (e.action) } td { (e.target) }
                    td { (e.address.as_deref().unwrap_or("")) }
                    td { code { (e.details.to_string()) } }
                } } }
            } }
            @if let Some(before) = older {
                nav.pager aria-label="Audit pages" {
                    a href=(format!("/console/audit?{}", form_urlencoded::Serializer::new(String::new())
                        .append_pair("before", &before.to_string()).append_pair("action", action)
                        .append_pair("target", target).finish())) { "Older entries" }
                }
            }
        },
    )
}

/// A path segment, percent-encoded.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
