//! The web console in a real browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) by `fantoccini`, against the real server.
//! Screenshots of every page go to `target/console-screenshots/`; every
//! page is checked with axe-core (vendored, pinned: `fixtures/axe-core-4.10.3`),
//! which must find no serious or critical violation.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run`
//! installs them); fails, never skips, without them.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestServer, ADMIN_PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const AXE: &str = include_str!("fixtures/axe-core-4.10.3/axe.min.js");
/// Longest wait for a page or an element (generous: CI machines are busy).
const WAIT: Duration = Duration::from_secs(60);

/// A chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url };
    let status = format!("{}/status", driver.url);
    let started = Instant::now();
    loop {
        let ready = common::client()
            .get(&status)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == true);
        if ready {
            return driver;
        }
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh browser (its own profile: a separate context with its own cookies).
async fn browser(driver: &Driver, profile: &Path, width: u32, height: u32) -> Client {
    open_browser(driver, profile, width, height, true).await
}

async fn open_browser(
    driver: &Driver,
    profile: &Path,
    width: u32,
    height: u32,
    javascript: bool,
) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                // Nothing but loopback: any other host goes to a dead proxy.
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
            ],
            "prefs": {
                "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 },
            },
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    // chromedriver listens on loopback: plain HTTP, no TLS.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Runs axe-core on the current page; panics on serious or critical violations.
async fn accessible(c: &Client, page: &str) {
    c.execute(&format!("{AXE}\n;window.axe = axe; return true;"), vec![])
        .await
        .unwrap();
    let script = "const done = arguments[arguments.length - 1];\
        window.axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})\
          .then(r => done(JSON.stringify({passes: r.passes.length, violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}))})))\
          .catch(e => done(JSON.stringify({error: String(e)})));";
    let result = c.execute_async(script, vec![]).await.unwrap();
    let report: Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
    let list = report["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}: axe failed: {report}"));
    // axe ran its rules: a page where nothing was checked proves nothing.
    assert!(
        report["passes"].as_u64().unwrap_or(0) > 5,
        "{page}: axe checked nothing: {report}"
    );
    let serious: Vec<&Value> = list
        .iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .collect();
    assert!(
        serious.is_empty(),
        "{page}: serious accessibility violations: {serious:#?}"
    );
    eprintln!(
        "{page}: axe: {} rules passed, minor findings: {list:?}",
        report["passes"]
    );
}

async fn shoot(c: &Client, name: &str) {
    shot(c, name).await;
    accessible(c, name).await;
}

async fn heading(c: &Client, text: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&format!(
            "//h1[normalize-space(.)=\"{text}\"]"
        )))
        .await
        .unwrap_or_else(|e| panic!("no page titled {text:?}: {e}"));
}

/// Types into the control labelled `label` (found through its label).
async fn fill(c: &Client, label: &str, text: &str) {
    let l = c
        .find(Locator::XPath(&format!(
            "//label[normalize-space(.)=\"{label}\"]"
        )))
        .await
        .unwrap_or_else(|e| panic!("no label {label:?}: {e}"));
    let id = l
        .attr("for")
        .await
        .unwrap()
        .expect("the label names its control");
    let input = c.find(Locator::Id(&id)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn tick(c: &Client, label: &str) {
    let l = c
        .find(Locator::XPath(&format!(
            "//label[normalize-space(.)=\"{label}\"]"
        )))
        .await
        .unwrap();
    l.click().await.unwrap();
}

async fn press(c: &Client, button: &str) {
    c.find(Locator::XPath(&format!("//main//button[normalize-space(.)=\"{button}\"] | //header//button[normalize-space(.)=\"{button}\"]")))
        .await
        .unwrap_or_else(|e| panic!("no button {button:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn follow(c: &Client, link: &str) {
    c.find(Locator::LinkText(link))
        .await
        .unwrap_or_else(|e| panic!("no link {link:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn log_in(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    heading(c, "Log in").await;
    fill(c, "User name", user).await;
    fill(c, "Password", password).await;
    press(c, "Log in").await;
    heading(c, "API keys").await;
}

async fn session_cookie(c: &Client) -> String {
    let cookies = c.get_all_cookies().await.unwrap();
    let cookie = cookies
        .iter()
        .find(|k| k.name() == "latchkey_session")
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    format!("latchkey_session={}", cookie.value())
}

/// Table rows' key ids on the current key list.
async fn listed_ids(c: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for cell in c
        .find_all(Locator::Css("tbody tr td:first-child"))
        .await
        .unwrap()
    {
        ids.push(cell.text().await.unwrap());
    }
    ids
}

#[test]
fn the_console_in_a_real_browser() {
    let server = TestServer::start(Backend::Sqlite);
    let driver = start_driver();
    let profiles = tempfile::tempdir().unwrap();
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin = browser(&driver, &profiles.path().join("admin"), 1280, 900).await;
        // `/` without a session: the login page.
        admin.goto(&format!("{base}/")).await.unwrap();
        heading(&admin, "Log in").await;
        assert!(admin.current_url().await.unwrap().path().ends_with("/console/login"));
        shoot(&admin, "login").await;
        // A wrong password: the page says so, and nothing about the user.
        fill(&admin, "User name", "Admin").await;
        fill(&admin, "Password", "not the password").await;
        press(&admin, "Log in").await;
        heading(&admin, "Log in").await;
        let alert = admin.find(Locator::Id("login-error")).await.unwrap().text().await.unwrap();
        assert_eq!(alert, "Wrong user name or password.");
        shoot(&admin, "login-failed").await;

        log_in(&admin, &base, "Admin", ADMIN_PASSWORD).await;
        shoot(&admin, "keys-empty").await;

        // Create a feed key: first a refusal shown next to the field.
        follow(&admin, "Create key").await;
        heading(&admin, "Create a feed key").await;
        shoot(&admin, "create").await;
        fill(&admin, "Name", "browser feed key").await;
        tick(&admin, "view").await;
        press(&admin, "Create key").await;
        let error = admin.wait().at_most(WAIT).for_element(Locator::Id("feed-error")).await.unwrap();
        assert!(error.text().await.unwrap().contains("feed"), "error next to Feed");
        let described = admin.find(Locator::Id("feed")).await.unwrap().attr("aria-describedby").await.unwrap();
        assert!(described.unwrap_or_default().contains("feed-error"));
        shoot(&admin, "create-invalid").await;
        fill(&admin, "Feed", "public-npm").await;
        // The ticked box stayed ticked; add one more.
        assert!(admin.find(Locator::Id("packagePermissions-view")).await.unwrap().is_selected().await.unwrap());
        tick(&admin, "add").await;
        press(&admin, "Create key").await;
        heading(&admin, "Key created").await;
        let field = admin.find(Locator::Id("key-text")).await.unwrap();
        assert!(field.attr("readonly").await.unwrap().is_some());
        let key = field.prop("value").await.unwrap().unwrap();
        assert!(key.starts_with("lk_"), "{key}");
        let warning = admin.find(Locator::Css("p.warning")).await.unwrap().text().await.unwrap();
        assert!(warning.contains("will not be shown again"), "{warning}");
        let copy = admin.find(Locator::XPath("//button[normalize-space(.)='Copy']")).await.unwrap();
        assert!(copy.is_displayed().await.unwrap(), "the Copy button shows with JavaScript");
        shoot(&admin, "created").await;

        // The key works with an HTTP client.
        let own = http
            .get(format!("{base}/api/api-keys/self"))
            .header("X-ApiKey", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200);
        let own: Value = own.json().await.unwrap();
        let id = own["id"].as_i64().unwrap().to_string();

        // The list shows it with every column; its row leads to its page.
        admin.goto(&format!("{base}/console/keys")).await.unwrap();
        heading(&admin, "API keys").await;
        let mut headers = Vec::new();
        for th in admin.find_all(Locator::Css("thead th")).await.unwrap() {
            headers.push(th.text().await.unwrap());
        }
        assert_eq!(headers, ["Id", "Name", "Type", "User", "Feed", "Permissions", "Expiration", "Last used"]);
        assert_eq!(listed_ids(&admin).await, std::slice::from_ref(&id));
        shoot(&admin, "keys").await;
        fill(&admin, "Search by name, user or feed", "no such thing").await;
        press(&admin, "Search").await;
        admin.wait().at_most(WAIT).for_element(Locator::XPath("//p[.='No keys found.']")).await.unwrap();
        admin.goto(&format!("{base}/console/keys")).await.unwrap();
        follow(&admin, "browser feed key").await;
        heading(&admin, &format!("Key {id}: browser feed key")).await;
        shoot(&admin, "key").await;

        // Delete through the page (with its confirmation step): refused at once.
        follow(&admin, "Delete").await;
        heading(&admin, &format!("Delete key {id}?")).await;
        shoot(&admin, "delete-confirm").await;
        press(&admin, "Delete").await;
        heading(&admin, "API keys").await;
        let after = http
            .get(format!("{base}/api/api-keys/self"))
            .header("X-ApiKey", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), 403, "a deleted key is refused at once");
        assert!(listed_ids(&admin).await.is_empty());

        // A second key, so that the other user has something not to see.
        follow(&admin, "Create key").await;
        heading(&admin, "Create a feed key").await;
        fill(&admin, "Feed", "internal").await;
        tick(&admin, "view").await;
        press(&admin, "Create key").await;
        heading(&admin, "Key created").await;
        let admins_key = admin.find(Locator::Css("main a[href^='/console/keys/']")).await.unwrap().text().await.unwrap();

        // Create a user through the Users page.
        follow(&admin, "Users").await;
        heading(&admin, "Users").await;
        fill(&admin, "User name", "alice").await;
        fill(&admin, "Password", "alice's password").await;
        press(&admin, "Add user").await;
        heading(&admin, "Users").await;
        admin.find(Locator::LinkText("alice")).await.unwrap();
        shoot(&admin, "users").await;
        follow(&admin, "alice").await;
        heading(&admin, "User alice").await;
        shoot(&admin, "user").await;
        for (link, title, name) in [("Groups", "Groups", "groups"), ("Permissions", "Permissions", "permissions"), ("Audit", "Audit", "audit")] {
            follow(&admin, link).await;
            heading(&admin, title).await;
            shoot(&admin, name).await;
        }

        // Alice, in a second browser: only her own keys, no administrator page.
        let alice = browser(&driver, &profiles.path().join("alice"), 1280, 900).await;
        log_in(&alice, &base, "alice", "alice's password").await;
        assert!(listed_ids(&alice).await.is_empty(), "alice sees none of the admin's keys");
        assert!(alice.find(Locator::LinkText("Users")).await.is_err(), "no admin navigation");
        follow(&alice, "Create key").await;
        heading(&alice, "Create a personal key").await;
        let user = alice.find(Locator::Id("user")).await.unwrap();
        assert_eq!(user.prop("value").await.unwrap().as_deref(), Some("alice"));
        fill(&alice, "Name", "alice laptop").await;
        press(&alice, "Create key").await;
        heading(&alice, "Key created").await;
        let alices_key = alice.find(Locator::Css("main a[href^='/console/keys/']")).await.unwrap().text().await.unwrap();
        alice.goto(&format!("{base}/console/keys")).await.unwrap();
        heading(&alice, "API keys").await;
        assert_eq!(listed_ids(&alice).await, std::slice::from_ref(&alices_key));
        shoot(&alice, "keys-user").await;
        alice.goto(&format!("{base}/console/keys/{admins_key}")).await.unwrap();
        heading(&alice, "Not allowed").await;
        alice.goto(&format!("{base}/console/users")).await.unwrap();
        heading(&alice, "Not allowed").await;
        shoot(&alice, "forbidden").await;
        let cookie = session_cookie(&alice).await;
        let page = http.get(format!("{base}/console/users")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(page.status(), 403, "the administrator page is a 403 page");

        // The phone-width layout.
        let phone = browser(&driver, &profiles.path().join("phone"), 390, 844).await;
        log_in(&phone, &base, "Admin", ADMIN_PASSWORD).await;
        shoot(&phone, "keys-phone").await;
        phone.goto(&format!("{base}/console/keys/new")).await.unwrap();
        heading(&phone, "Create a feed key").await;
        shoot(&phone, "create-phone").await;
        phone.close().await.unwrap();

        // Keyboard: the skip link comes first and focus is visible.
        alice.goto(&format!("{base}/console/keys")).await.unwrap();
        heading(&alice, "API keys").await;
        let body = alice.find(Locator::Css("body")).await.unwrap();
        body.send_keys("\u{e004}").await.unwrap(); // Tab
        let focused = alice
            .execute("const e = document.activeElement; return [e.textContent, getComputedStyle(e).outlineStyle];", vec![])
            .await
            .unwrap();
        assert_eq!(focused[0], "Skip to content", "{focused}");

        // Log out: the session cookie no longer works.
        press(&alice, "Log out").await;
        heading(&alice, "Log in").await;
        let page = http.get(format!("{base}/console/keys")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(page.status(), 303);
        assert_eq!(page.headers()["location"], "/console/login");
        alice.close().await.unwrap();
        admin.close().await.unwrap();
    });
}

#[test]
fn the_basic_flows_work_with_javascript_disabled() {
    let server = TestServer::start(Backend::Sqlite);
    let driver = start_driver();
    let profiles = tempfile::tempdir().unwrap();
    let base = server.base.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = open_browser(&driver, &profiles.path().join("nojs"), 1280, 900, false).await;
        log_in(&c, &base, "Admin", ADMIN_PASSWORD).await;
        let scripting = c.execute("return 1;", vec![]).await;
        // WebDriver's own scripts still run; the page's do not.
        assert!(scripting.is_ok());
        follow(&c, "Create key").await;
        heading(&c, "Create a feed key").await;
        follow(&c, "System key").await;
        heading(&c, "Create a system key").await;
        tick(&c, "feeds").await;
        fill(&c, "Name", "no script").await;
        press(&c, "Create key").await;
        heading(&c, "Key created").await;
        let key = c
            .find(Locator::Id("key-text"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        assert!(key.starts_with("lk_"));
        // Without the script the Copy button stays hidden: the field is selectable.
        let copy = c.find(Locator::Id("copy")).await.unwrap();
        assert!(!copy.is_displayed().await.unwrap());
        shot(&c, "created-nojs").await;
        c.goto(&format!("{base}/console/keys")).await.unwrap();
        heading(&c, "API keys").await;
        let ids = listed_ids(&c).await;
        assert_eq!(ids.len(), 1);
        follow(&c, "no script").await;
        follow(&c, "Delete").await;
        press(&c, "Delete").await;
        heading(&c, "API keys").await;
        assert!(listed_ids(&c).await.is_empty());
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{base}/api/api-keys/self"))
            .header("X-ApiKey", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        press(&c, "Log out").await;
        heading(&c, "Log in").await;
        c.close().await.unwrap();
    });
}
