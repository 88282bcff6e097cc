//! A second factor over real HTTP (#18): enrolling a TOTP authenticator on `/settings/2fa`
//! (the secret read from the page, the codes computed with `totp-rs` as an authenticator app
//! would), then logins in two steps through `/login/2fa`: wrong, old and replayed codes
//! refused, recovery codes good once, wrong codes throttled, the enrolment page behind a
//! fresh login, and accounts without a second factor unchanged.
//!
//! The story runs on SQLite, and on Postgres when its server is reachable (`CI=true` makes a
//! missing one a failure, see `store_support`).

mod demo_support;
#[path = "../../tests/store_support/mod.rs"]
mod store_support;

use std::time::{SystemTime, UNIX_EPOCH};

use demo_support::{session_cookie, Client, Demo, ADMIN, ALICE};
use store_support::{with_teardown, PgDatabase};
use totp_rs::{Algorithm, Secret, TOTP};

const INVALID_CODE: &str = "Invalid code.";

/// The code an authenticator app with `secret` shows `offset` seconds from now (RFC 6238,
/// SHA-1, 6 digits, 30 s).
fn code_at(secret: &str, offset: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "alice".to_owned())
        .expect("valid TOTP settings");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    totp.generate(now.saturating_add_signed(offset))
}

/// A six-digit code that is none of the codes of the accepted window (now and one step
/// either way).
fn wrong_code(secret: &str) -> String {
    let window: Vec<String> = [-30, 0, 30].iter().map(|o| code_at(secret, *o)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !window.contains(c))
        .expect("a wrong code")
}

/// The text of the element with `id` (`<tag id="...">text</tag>`).
#[track_caller]
fn element_text(body: &str, id: &str) -> String {
    let marker = format!(r#"id="{id}""#);
    let (_, rest) = body
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{body}"));
    let (_, rest) = rest.split_once('>').expect("the end of the tag");
    let (text, _) = rest.split_once('<').expect("the element's end");
    text.to_owned()
}

/// Enrols `client` (logged in, fresh) on `/settings/2fa`: a wrong code first (`422`, same
/// secret), then the current one. Returns the secret and the ten recovery codes.
async fn enrol(client: &mut Client) -> (String, Vec<String>) {
    let page = client.get("/settings/2fa").await;
    page.assert_status(200);
    assert!(
        page.body.contains("<svg"),
        "an inline QR code:\n{}",
        page.body
    );
    assert!(!page.body.contains("<?xml"), "{}", page.body);
    assert!(page.body.contains("otpauth://totp/"), "{}", page.body);
    let secret = element_text(&page.body, "totp-secret");
    assert!(
        secret.len() >= 26
            && secret
                .bytes()
                .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=".contains(&b)),
        "base32: {secret:?}"
    );
    // Reloading shows the same secret (it waits in the session).
    let again = client.get("/settings/2fa").await;
    assert_eq!(element_text(&again.body, "totp-secret"), secret);

    let wrong = client
        .post_form("/settings/2fa", &[("code", &wrong_code(&secret))])
        .await;
    wrong.assert_status(422);
    assert_eq!(element_text(&wrong.body, "totp-secret"), secret);
    assert!(!wrong.body.contains("recovery-codes"), "{}", wrong.body);

    let done = client
        .post_form("/settings/2fa", &[("code", &code_at(&secret, 0))])
        .await;
    done.assert_status(200);
    // The secret and the codes stay out of caches.
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(done.header("cache-control"), Some("no-store"));
    let codes: Vec<String> = element_text(&done.body, "recovery-codes")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 10, "{}", done.body);
    for code in &codes {
        assert!(
            code.len() == 11 && code.as_bytes()[5] == b'-',
            "xxxxx-xxxxx: {code:?}"
        );
    }

    // Shown once: the page now says it is on, without codes or secret.
    let on = client.get("/settings/2fa").await;
    on.assert_status(200);
    assert!(on.body.contains("is <strong>on</strong>"), "{}", on.body);
    assert!(
        on.body.contains("10 unused recovery codes left"),
        "{}",
        on.body
    );
    assert!(!on.body.contains("recovery-codes"), "{}", on.body);
    assert!(!on.body.contains("totp-secret"), "{}", on.body);
    let twice = client
        .post_form("/settings/2fa", &[("code", &code_at(&secret, 0))])
        .await;
    twice.assert_status(409);
    (secret, codes)
}

/// A new browser that gave alice's right password: `303` to the second step, `next` kept,
/// and not logged in.
async fn first_step(demo: &Demo, remember: bool) -> Client {
    let mut browser = demo.client();
    let mut fields = vec![
        ("username", ALICE.0),
        ("password", ALICE.1),
        ("next", "/dashboard"),
    ];
    if remember {
        fields.push(("remember", "on"));
    }
    let resp = browser.post_form("/login", &fields).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login/2fa?next=%2Fdashboard"));
    assert!(
        resp.set_cookie("remember_token").is_none(),
        "not logged in yet"
    );
    assert!(resp.set_cookie("device").is_none(), "not logged in yet");
    let dashboard = browser.get("/dashboard").await;
    dashboard.assert_status(303);
    assert_eq!(dashboard.location(), Some("/login?next=%2Fdashboard"));
    browser
}

/// `POST /login/2fa` with `code`, `next=/dashboard`.
async fn second_step(browser: &mut Client, code: &str) -> demo_support::Resp {
    browser
        .post_form("/login/2fa", &[("code", code), ("next", "/dashboard")])
        .await
}

#[track_caller]
fn assert_refused(resp: &demo_support::Resp) {
    resp.assert_status(401);
    assert!(resp.body.contains(INVALID_CODE), "{}", resp.body);
    assert!(
        resp.body.contains(r#"action="/login/2fa""#),
        "the form again"
    );
    assert!(
        resp.body.contains(r#"name="next" value="/dashboard""#),
        "{}",
        resp.body
    );
}

async fn two_factor_story(demo: &Demo) {
    let mut owner = demo.client();
    owner.login_ok(ALICE, false).await;
    let (secret, recovery) = enrol(&mut owner).await;

    // A second browser: the password, then the code.
    let mut browser = first_step(demo, true).await;
    let form = browser.get("/login/2fa?next=%2Fdashboard").await;
    form.assert_status(200);
    assert!(form.body.contains(r#"name="code""#), "{}", form.body);
    assert!(
        form.body.contains(r#"name="next" value="/dashboard""#),
        "{}",
        form.body
    );
    let before = session_cookie(&browser);

    assert_refused(&second_step(&mut browser, &wrong_code(&secret)).await);
    // A code from two minutes ago (outside the one step of skew).
    assert_refused(&second_step(&mut browser, &code_at(&secret, -120)).await);
    // The code of enrolment's time step was used by the enrolment: the next step's code (an
    // app whose clock runs a little ahead) is the first that logs in.
    let code = code_at(&secret, 30);
    let ok = second_step(&mut browser, &code).await;
    ok.assert_status(303);
    assert_eq!(ok.location(), Some("/dashboard"));
    assert!(
        ok.set_cookie("remember_token").is_some(),
        "remember-me of the first step"
    );
    assert!(
        ok.set_cookie("device").is_some(),
        "a device cookie, as for any login"
    );
    assert_ne!(session_cookie(&browser), before, "a new session id");
    let dashboard = browser.get("/dashboard").await;
    dashboard.assert_status(200);
    assert!(
        dashboard.body.contains("Hello, alice"),
        "{}",
        dashboard.body
    );
    // The second step is over.
    let over = browser.get("/login/2fa").await;
    over.assert_status(303);
    assert_eq!(over.location(), Some("/login"));

    // The same code again, in another browser: a replay.
    let mut thief = first_step(demo, false).await;
    assert_refused(&second_step(&mut thief, &code).await);
    thief.get("/dashboard").await.assert_status(303);
    // A recovery code works (typed in capitals, without the dash) ...
    let typed = recovery[3].replace('-', "").to_uppercase();
    let ok = second_step(&mut thief, &typed).await;
    ok.assert_status(303);
    assert_eq!(ok.location(), Some("/dashboard"));
    thief.get("/dashboard").await.assert_status(200);
    let left = owner.get("/settings/2fa").await;
    assert!(
        left.body.contains("9 unused recovery codes left"),
        "{}",
        left.body
    );
    // ... once.
    let mut again = first_step(demo, false).await;
    assert_refused(&second_step(&mut again, &recovery[3]).await);
    let ok = second_step(&mut again, &recovery[4]).await;
    ok.assert_status(303);

    // An account without a second factor logs in with the password alone.
    let mut admin = demo.client();
    let resp = admin.login(ADMIN, false).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/"));
    admin.get("/dashboard").await.assert_status(200);
}

#[tokio::test]
async fn totp_enrolment_and_logins_in_two_steps_sqlite() {
    let demo = Demo::start();
    two_factor_story(&demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_and_logins_in_two_steps_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let case = async move {
        let demo = Demo::start_with(&[("DATABASE_URL", &url)]);
        two_factor_story(&demo).await;
    };
    with_teardown(case, db.drop_database()).await;
}

#[tokio::test]
async fn wrong_codes_count_in_the_accounts_throttle() {
    let demo = Demo::start();
    let mut owner = demo.client();
    owner.login_ok(ALICE, false).await;
    let (secret, _) = enrol(&mut owner).await;

    let mut browser = first_step(&demo, false).await;
    for _ in 0..5 {
        assert_refused(&second_step(&mut browser, &wrong_code(&secret)).await);
    }
    // The sixth attempt is refused, right code or not.
    let throttled = second_step(&mut browser, &code_at(&secret, 30)).await;
    throttled.assert_status(429);
    let retry_after: u64 = throttled
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after > 0);
    browser.get("/dashboard").await.assert_status(303);
    // So is a right password in a new browser (the account is locked for new clients).
    let mut other = demo.client();
    other.login(ALICE, false).await.assert_status(429);
}

#[tokio::test]
async fn the_pages_need_the_right_state() {
    let demo = Demo::start();

    // Anonymous: the second step sends to the login page, and no session is made.
    let mut anonymous = demo.client();
    let resp = anonymous.get("/login/2fa?next=%2Fdashboard").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdashboard"));
    assert!(resp.set_cookie("session").is_none());
    let resp = anonymous
        .post_form("/login/2fa", &[("code", "123456"), ("next", "/dashboard")])
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdashboard"));
    let resp = anonymous.get("/settings/2fa").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fsettings%2F2fa"));

    // A session restored from the remember-me cookie re-enters the password first.
    let mut browser = demo.client();
    browser.login_ok(ALICE, true).await;
    browser.remove_cookie("session");
    let resp = browser.get("/settings/2fa").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/reauth?next=%2Fsettings%2F2fa"));
    let resp = browser
        .post_form("/settings/2fa", &[("code", "123456")])
        .await;
    resp.assert_status(303);
    assert!(
        resp.location().is_some_and(|l| l.starts_with("/reauth")),
        "{resp:?}"
    );
    browser
        .post_form(
            "/reauth",
            &[("password", ALICE.1), ("next", "/settings/2fa")],
        )
        .await
        .assert_status(303);
    let page = browser.get("/settings/2fa").await;
    page.assert_status(200);
    assert!(page.body.contains(r#"id="totp-secret""#), "{}", page.body);

    // Without an enrolment, alice still logs in with the password alone.
    let mut other = demo.client();
    let resp = other.login(ALICE, false).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/"));
}
