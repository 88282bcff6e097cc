//! The remember-me story in a real browser (headless Chromium through chromedriver): log in
//! with "Remember me", lose the session cookie as a closed browser does, come back
//! remembered, re-authenticate for the settings, log out, and check that the saved remember
//! cookie is dead. Also saves a screenshot of the dashboard to `target/demo-dashboard.png`.
//! And the password reset (#18): "Forgot password?", the link from the `.eml` file, a new
//! password, a login with it. And a second factor (#18): turning TOTP on at `/settings/2fa`
//! (the secret read from the page, the codes computed with `totp-rs` as an authenticator app
//! would), then logins in two steps, with a TOTP code and with a single-use recovery code.
//!
//! Needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`),
//! found on `PATH` or through `CHROMEDRIVER` / `CHROME_BIN`. Without them the test fails
//! when `CI=true` and is skipped, loudly, otherwise.

mod demo_support;

use std::{
    future::Future,
    io::Write,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use demo_support::{profile_dir, reset_link, Demo, ALICE};
use fantoccini::{wd::Capabilities, Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use totp_rs::{Algorithm, Secret, TOTP};

/// How long a page may take to appear after a navigation or a form submission.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The first of `names` found as an executable on `PATH` (or the path in `env_var`).
fn find_executable(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

/// A chromedriver process, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start(path: &Path) -> Self {
        // A free port: bind to 0, read it, release it for chromedriver.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the browser shows a page at `path` (a redirect chain may still be running).
async fn wait_for_path(browser: &Client, path: &str) -> url::Url {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let url = browser.current_url().await.expect("the current URL");
        if url.path() == path {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "the browser stayed at {url}, expected {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn source(browser: &Client) -> String {
    browser.source().await.expect("the page source")
}

async fn fill(browser: &Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .expect("typing");
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .expect("clicking");
}

async fn cookie_value(browser: &Client, name: &str) -> Option<String> {
    browser
        .get_named_cookie(name)
        .await
        .ok()
        .map(|c| c.value().to_owned())
}

/// The story; panics on the first difference.
async fn remember_me_story(browser: Client, demo_url: String) {
    let url = |path: &str| format!("{demo_url}{path}");

    // Log in with "Remember me".
    browser
        .goto(&url("/login?next=%2Fdashboard"))
        .await
        .expect("the login page");
    fill(&browser, "input[name=username]", ALICE.0).await;
    fill(&browser, "input[name=password]", ALICE.1).await;
    click(&browser, "input[name=remember]").await;
    click(&browser, r#"form[action="/login"] button[type=submit]"#).await;
    wait_for_path(&browser, "/dashboard").await;
    assert!(source(&browser).await.contains("Hello, alice"));
    assert!(cookie_value(&browser, "remember_token").await.is_some());
    assert!(cookie_value(&browser, "session").await.is_some());

    // The browser is closed: its session cookie (no expiry) is gone, the remember cookie
    // (Max-Age) is not.
    browser
        .delete_cookie("session")
        .await
        .expect("deleting the session cookie");

    // Back again: remembered, in a new session that is not fresh.
    browser.goto(&url("/dashboard")).await.expect("dashboard");
    wait_for_path(&browser, "/dashboard").await;
    let page = source(&browser).await;
    assert!(page.contains("Hello, alice"), "{page}");
    assert!(page.contains("restored from remember-me"), "{page}");
    // The dashboard's script creates an API token and shows how to use it.
    click(&browser, "#token-form button").await;
    let out = browser
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Css("#token-out:not([hidden])"))
        .await
        .expect("the token is shown");
    let shown = out.text().await.expect("the token text");
    assert!(shown.contains("Authorization: Bearer "), "{shown}");
    let png = browser.screenshot().await.expect("a screenshot");
    let shot = profile_dir()
        .parent()
        .expect("the target directory")
        .join("demo-dashboard.png");
    std::fs::write(&shot, png).expect("saving the screenshot");
    eprintln!("dashboard screenshot: {}", shot.display());

    // The settings want the password again.
    browser.goto(&url("/settings")).await.expect("settings");
    let at = wait_for_path(&browser, "/reauth").await;
    assert_eq!(at.query(), Some("next=%2Fsettings"));
    assert!(source(&browser)
        .await
        .contains("Please reauthenticate to access this page."));
    fill(&browser, "input[name=password]", ALICE.1).await;
    click(&browser, r#"form[action="/reauth"] button[type=submit]"#).await;
    wait_for_path(&browser, "/settings").await;
    assert!(source(&browser).await.contains("Change password"));

    // Log out, keeping a copy of the remember cookie as a thief would.
    let saved = browser
        .get_named_cookie("remember_token")
        .await
        .expect("still remembered before logging out");
    click(&browser, r#"form[action="/logout"] button[type=submit]"#).await;
    wait_for_path(&browser, "/").await;
    let page = source(&browser).await;
    assert!(page.contains("Logged out."), "{page}");
    assert!(!page.contains("Signed in as"), "{page}");
    assert_eq!(cookie_value(&browser, "remember_token").await, None);

    // The saved copy no longer signs anyone in.
    let _ = browser.delete_cookie("session").await;
    browser.add_cookie(saved).await.expect("restoring the copy");
    browser.goto(&url("/dashboard")).await.expect("dashboard");
    let at = wait_for_path(&browser, "/login").await;
    assert_eq!(at.query(), Some("next=%2Fdashboard"));
    let page = source(&browser).await;
    assert!(
        page.contains("Please log in to access this page."),
        "{page}"
    );
    assert!(!page.contains("Hello, alice"));
}

/// "Forgot password?" on the login page, the link from the mail, a new password, a login.
async fn password_reset_story(browser: Client, demo: Arc<Demo>) {
    const NEW_PASSWORD: &str = "through-the-looking-glass";
    let url = |path: &str| demo.url(path);

    browser.goto(&url("/login")).await.expect("the login page");
    browser
        .find(Locator::LinkText("Forgot password?"))
        .await
        .expect("a Forgot password? link")
        .click()
        .await
        .expect("clicking it");
    wait_for_path(&browser, "/password/forgot").await;
    fill(&browser, "input[name=username]", ALICE.0).await;
    click(
        &browser,
        r#"form[action="/password/forgot"] button[type=submit]"#,
    )
    .await;
    wait_for_path(&browser, "/login").await;
    let page = source(&browser).await;
    assert!(
        page.contains("If that account exists, we sent it a reset link."),
        "{page}"
    );

    // The mail, as a mail program would show it; its link opened in the browser.
    let link = reset_link(&demo.wait_for_mails(1).await[0]);
    browser.goto(&link).await.expect("the reset link");
    wait_for_path(&browser, "/password/reset").await;
    fill(&browser, "input[name=new_password]", NEW_PASSWORD).await;
    click(
        &browser,
        r#"form[action="/password/reset"] button[type=submit]"#,
    )
    .await;
    wait_for_path(&browser, "/login").await;
    let page = source(&browser).await;
    assert!(
        page.contains("Your password was changed. Please log in."),
        "{page}"
    );

    // The new password logs in.
    fill(&browser, "input[name=username]", ALICE.0).await;
    fill(&browser, "input[name=password]", NEW_PASSWORD).await;
    click(&browser, r#"form[action="/login"] button[type=submit]"#).await;
    wait_for_path(&browser, "/").await;
    let page = source(&browser).await;
    assert!(page.contains("Signed in as alice"), "{page}");

    // The link was used up: opening it again is refused at once, without a form to fill.
    browser.goto(&link).await.expect("the reset link again");
    wait_for_path(&browser, "/password/reset").await;
    let page = wait_for_text(&browser, "This link is invalid or has expired.").await;
    assert!(!page.contains(r#"name="new_password""#), "{page}");
    assert!(page.contains("Ask for a new link"), "{page}");
}

/// The authenticator app of a base32 `secret` (RFC 6238, SHA-1, 6 digits, 30 s).
fn authenticator(secret: &str) -> TOTP {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "alice".to_owned())
        .expect("valid TOTP settings")
}

/// The current TOTP time step (30 s).
fn time_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 30
}

/// Waits until the page contains `text` (a form posted may still be loading).
async fn wait_for_text(browser: &Client, text: &str) -> String {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let page = source(browser).await;
        if page.contains(text) {
            return page;
        }
        assert!(Instant::now() < deadline, "no {text:?} in:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The password form, for alice with `next=/dashboard`; she has TOTP on, so the browser lands
/// on the second step, not logged in (checked in a second tab).
async fn password_then_second_step(browser: &Client, url: &impl Fn(&str) -> String) {
    browser
        .goto(&url("/login?next=%2Fdashboard"))
        .await
        .expect("the login page");
    fill(browser, "input[name=username]", ALICE.0).await;
    fill(browser, "input[name=password]", ALICE.1).await;
    click(browser, r#"form[action="/login"] button[type=submit]"#).await;
    let at = wait_for_path(browser, "/login/2fa").await;
    assert_eq!(at.query(), Some("next=%2Fdashboard"));
    let page = wait_for_text(browser, "One more step").await;
    assert!(page.contains(r#"name="code""#), "{page}");
    assert!(!page.contains("Signed in as"), "{page}");

    // Not logged in yet: the dashboard, in another tab of the same browser, wants a login.
    let first_tab = browser.window().await.expect("the current tab");
    let tab = browser.new_window(true).await.expect("a second tab");
    browser
        .switch_to_window(tab.handle)
        .await
        .expect("to the second tab");
    browser.goto(&url("/dashboard")).await.expect("dashboard");
    let at = wait_for_path(browser, "/login").await;
    assert_eq!(at.query(), Some("next=%2Fdashboard"));
    let page = source(browser).await;
    assert!(!page.contains("Hello, alice"), "{page}");
    browser.close_window().await.expect("closing the tab");
    browser
        .switch_to_window(first_tab)
        .await
        .expect("back to the first tab");
    // ... and the second step is still pending there.
    assert_eq!(
        browser.current_url().await.expect("URL").path(),
        "/login/2fa"
    );
}

async fn log_out(browser: &Client) {
    click(browser, r#"form[action="/logout"] button[type=submit]"#).await;
    wait_for_path(browser, "/").await;
    let page = wait_for_text(browser, "Logged out.").await;
    assert!(!page.contains("Signed in as"), "{page}");
}

/// Turning TOTP on at `/settings/2fa`, then logins in two steps: a recovery code (once only)
/// and a TOTP code.
async fn totp_story(browser: Client, demo: Arc<Demo>) {
    let url = |path: &str| demo.url(path);

    // A password login (fresh), then the enrolment page.
    browser
        .goto(&url("/login?next=%2Fdashboard"))
        .await
        .expect("the login page");
    fill(&browser, "input[name=username]", ALICE.0).await;
    fill(&browser, "input[name=password]", ALICE.1).await;
    click(&browser, r#"form[action="/login"] button[type=submit]"#).await;
    wait_for_path(&browser, "/dashboard").await;
    browser
        .goto(&url("/settings/2fa"))
        .await
        .expect("the 2FA settings");
    wait_for_path(&browser, "/settings/2fa").await;
    let secret = browser
        .find(Locator::Id("totp-secret"))
        .await
        .expect("the secret on the page")
        .text()
        .await
        .expect("its text");
    let secret = secret.trim().to_owned();
    assert!(
        secret.len() >= 26
            && secret
                .bytes()
                .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=".contains(&b)),
        "base32: {secret:?}"
    );
    // The QR code: an inline SVG the browser lays out, at a size a phone can scan.
    let qr = browser
        .find(Locator::Css(".qr > svg"))
        .await
        .expect("an inline SVG QR code");
    assert!(qr.is_displayed().await.expect("displayed?"));
    let (_, _, width, height) = qr.rectangle().await.expect("its size");
    assert!(width >= 100.0 && height >= 100.0, "{width} x {height}");

    // The app's current code turns it on; the step of that code is now used.
    let app = authenticator(&secret);
    let enrolment_step = time_step();
    fill(
        &browser,
        "input[name=code]",
        &app.generate(enrolment_step * 30),
    )
    .await;
    click(
        &browser,
        r#"form[action="/settings/2fa"] button[type=submit]"#,
    )
    .await;
    let page = wait_for_text(&browser, "Two-factor authentication is on.").await;
    assert!(!page.contains("totp-secret"), "{page}");
    let codes: Vec<String> = browser
        .find(Locator::Id("recovery-codes"))
        .await
        .expect("the recovery codes")
        .text()
        .await
        .expect("their text")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'),
        "xxxxx-xxxxx: {codes:?}"
    );
    log_out(&browser).await;

    // The password alone no longer logs in; a recovery code completes the login.
    password_then_second_step(&browser, &url).await;
    fill(&browser, "input[name=code]", &codes[0]).await;
    click(&browser, r#"form[action="/login/2fa"] button[type=submit]"#).await;
    wait_for_path(&browser, "/dashboard").await;
    wait_for_text(&browser, "Hello, alice").await;
    log_out(&browser).await;

    // The same recovery code a second time: refused, the form again.
    password_then_second_step(&browser, &url).await;
    fill(&browser, "input[name=code]", &codes[0]).await;
    click(&browser, r#"form[action="/login/2fa"] button[type=submit]"#).await;
    let page = wait_for_text(&browser, "Invalid code.").await;
    assert!(!page.contains("Hello, alice"), "{page}");
    assert_eq!(
        browser.current_url().await.expect("URL").path(),
        "/login/2fa"
    );

    // The enrolment used its code's time step (no replays): the user waits for the app to
    // show the next code, and types that.
    while time_step() <= enrolment_step {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let code = app.generate(time_step() * 30);
    fill(&browser, "input[name=code]", &code).await;
    click(&browser, r#"form[action="/login/2fa"] button[type=submit]"#).await;
    let at = wait_for_path(&browser, "/dashboard").await;
    assert_eq!(at.query(), None);
    wait_for_text(&browser, "Hello, alice").await;
}

#[tokio::test]
async fn remember_me_in_a_real_browser() {
    in_a_real_browser("remember_me_in_a_real_browser", |browser, demo| {
        remember_me_story(browser, demo.base.clone())
    })
    .await;
}

#[tokio::test]
async fn password_reset_in_a_real_browser() {
    in_a_real_browser("password_reset_in_a_real_browser", password_reset_story).await;
}

#[tokio::test]
async fn totp_login_in_a_real_browser() {
    in_a_real_browser("totp_login_in_a_real_browser", totp_story).await;
}

/// Runs `story` in headless Chromium against a fresh demo; skipped (loudly) without
/// chromedriver and Chromium, a failure under `CI=true`.
async fn in_a_real_browser<F, Fut>(name: &str, story: F)
where
    F: FnOnce(Client, Arc<Demo>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver_path = find_executable("CHROMEDRIVER", &["chromedriver"]);
    let chrome_path = find_executable(
        "CHROME_BIN",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let (Some(driver_path), Some(chrome_path)) = (driver_path, chrome_path) else {
        let message = "chromedriver and chromium are needed for demo/tests/demo_browser.rs \
                       (Debian: apt-get install chromium chromium-driver; or set CHROMEDRIVER \
                       and CHROME_BIN)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        // Straight to stderr: `eprintln!` would be captured, and hidden, by the test harness.
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {name}: {message} ***\n");
        return;
    };

    let demo = Arc::new(Demo::start());
    let driver = ChromeDriver::start(&driver_path);
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chrome_path,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    let browser = builder
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot start a browser session via chromedriver: {e}"));

    // On its own task, so that a failed assertion still lets us close the browser (a
    // chromedriver killed with its session open can leave Chromium running).
    let story = tokio::spawn(story(browser.clone(), demo.clone())).await;
    let _ = browser.close().await;
    drop(driver);
    if let Err(err) = story {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("the browser story did not finish: {err}"),
        }
    }
}
