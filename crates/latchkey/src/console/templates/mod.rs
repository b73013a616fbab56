//! The console's HTML, written with `maud` (escaped by construction): the
//! page layout and the log-in page here, one module per group of pages.

pub mod admin;
pub mod keys;

use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use super::Console;

/// A whole page: head, skip link, navigation (with a session), the title and `body`.
pub fn layout(console: Option<&Console>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Latchkey" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Latchkey" }
                    @if let Some(c) = console {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/console/keys" { "API keys" } }
                                @if c.admin {
                                    li { a href="/console/users" { "Users" } }
                                    li { a href="/console/groups" { "Groups" } }
                                    li { a href="/console/permissions" { "Permissions" } }
                                    li { a href="/console/audit" { "Audit" } }
                                }
                            }
                        }
                        form.logout method="post" action="/console/logout" {
                            (csrf(c))
                            span.who { "Logged in as " strong { (c.user) } }
                            " "
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(console: &Console) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(console.csrf); }
}

/// A page with one message.
pub fn message(console: Option<&Console>, title: &str, text: &str) -> Markup {
    layout(
        console,
        title,
        html! {
            p.notice role="alert" { (text) }
            @if console.is_some() {
                p { a href="/console/keys" { "Back to the API keys" } }
            } @else {
                p { a href="/console/login" { "Log in" } }
            }
        },
    )
}

/// The log-in page.
pub fn login(token: &str, error: Option<&str>, user: &str) -> Markup {
    layout(
        None,
        "Log in",
        html! {
            @if let Some(e) = error {
                p.error role="alert" id="login-error" { (e) }
            }
            form.stack method="post" action="/console/login" {
                input type="hidden" name=(super::csrf::FIELD) value=(token);
                div.field {
                    label for="user" { "User name" }
                    input id="user" name="user" type="text" autocomplete="username"
                        required value=(user) autofocus[user.is_empty()];
                }
                div.field {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password"
                        autocomplete="current-password" required autofocus[!user.is_empty()];
                }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// One labelled form field with its error (if any) next to it.
pub fn field(
    label: &str,
    id: &str,
    error: Option<&String>,
    input: Markup,
    hint: Option<&str>,
) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            (input)
            @if let Some(h) = hint { p.hint id=(format!("{id}-hint")) { (h) } }
            @if let Some(e) = error { p.error id=(format!("{id}-error")) { (e) } }
        }
    }
}

/// The `aria-describedby` of a field's input: its hint and its error.
pub fn described_by(id: &str, error: Option<&String>, hint: bool) -> Option<String> {
    let mut ids = Vec::new();
    if hint {
        ids.push(format!("{id}-hint"));
    }
    if error.is_some() {
        ids.push(format!("{id}-error"));
    }
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// A time as shown in tables, in UTC.
pub fn when(t: Option<OffsetDateTime>, none: &str) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| none.to_owned())
}
