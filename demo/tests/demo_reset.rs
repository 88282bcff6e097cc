//! Account recovery over real HTTP (#18): "forgot password" mails a one-time link (read from
//! the `.eml` files in `DEMO_MAIL_DIR`, each test in its own directory), the link sets a new
//! password and ends every login of the account. Used, tampered, superseded and expired links
//! are `400`; failed links are throttled; cross-origin posts change nothing.
//!
//! The full story runs on SQLite, and on Postgres and Redis when their servers are reachable
//! (`CI=true` makes a missing one a failure, see `store_support`).

mod demo_support;
#[path = "../../tests/store_support/mod.rs"]
mod store_support;

use std::time::{Duration, Instant};

use demo_support::{
    device_rows, link_token, remember_cookie, reopened_browser, reset_link, Client, Demo,
    SessionIds, ALICE, INVALID_CREDENTIALS,
};
use store_support::{backends, redis_url, unique, with_teardown, PgDatabase};

const LINK_SENT: &str = "If that account exists, we sent it a reset link.";
const INVALID_LINK: &str = "This link is invalid or has expired.";
const PASSWORD_CHANGED: &str = "Your password was changed. Please log in.";
const NEW_PASSWORD: &str = "through-the-looking-glass";
const NEWER_PASSWORD: &str = "jabberwocky-vorpal-blade";

/// `POST /password/forgot` for `username`: always `303` to `/login`.
async fn ask_for_link(client: &mut Client, username: &str) {
    let resp = client
        .post_form("/password/forgot", &[("username", username)])
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login"));
}

/// The `/login` page shows `flash` (once).
async fn login_page_says(client: &mut Client, flash: &str) {
    let page = client.get("/login").await;
    page.assert_status(200);
    assert!(page.body.contains(flash), "{flash:?} in:\n{}", page.body);
}

/// `POST /password/reset`.
async fn reset(client: &mut Client, token: &str, new_password: &str) -> demo_support::Resp {
    client
        .post_form(
            "/password/reset",
            &[("token", token), ("new_password", new_password)],
        )
        .await
}

/// A refused link: `400` and the one message.
#[track_caller]
fn assert_invalid(resp: &demo_support::Resp) {
    resp.assert_status(400);
    assert!(resp.body.contains(INVALID_LINK), "{}", resp.body);
}

/// `token` with one character of its validator changed: still well-formed, so it is judged
/// (and throttled) as this link, not as garbage.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// A well-formed token nobody issued (16 + 32 bytes, base64url, canonical trailing bits).
fn made_up_token(n: usize) -> String {
    let c = char::from(b'B' + u8::try_from(n % 20).unwrap());
    format!("{}{c}A.{}A", "A".repeat(20), "C".repeat(42))
}

#[tokio::test]
async fn forgot_mails_a_link_to_active_accounts_only() {
    let demo = Demo::start_with(&[("DEMO_MAIL_DIR", "outgoing/mail")]);

    // The login page links to the form; neither page gives an anonymous browser a session.
    let mut anon = demo.client();
    let login = anon.get("/login").await;
    login.assert_status(200);
    assert!(
        login
            .body
            .contains(r#"<a href="/password/forgot">Forgot password?</a>"#),
        "{}",
        login.body
    );
    let form = anon.get("/password/forgot").await;
    form.assert_status(200);
    assert!(
        form.body.contains(r#"action="/password/forgot""#)
            && form.body.contains(r#"name="username""#),
        "{}",
        form.body
    );
    // A bad link is refused at once (checked without being used up), before any typing.
    let reset_form = anon.get("/password/reset?token=anything").await;
    assert_invalid(&reset_form);
    assert_invalid(&anon.get("/password/reset").await);
    for resp in [&login, &form, &reset_form] {
        assert!(resp.set_cookie("session").is_none(), "{resp:?}");
    }

    // Unknown and disabled accounts: the same answer, no mail.
    demo.sql("UPDATE users SET disabled = TRUE WHERE username = 'admin'")
        .await;
    let mut stranger = demo.client();
    ask_for_link(&mut stranger, "nobody").await;
    login_page_says(&mut stranger, LINK_SENT).await;
    ask_for_link(&mut stranger, "admin").await;
    login_page_says(&mut stranger, LINK_SENT).await;

    // A real one: one mail with an absolute link to this demo.
    let mut browser = demo.client();
    ask_for_link(&mut browser, "alice").await;
    login_page_says(&mut browser, LINK_SENT).await;
    let mails = demo.wait_for_mails(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        demo.mails().len(),
        1,
        "only alice's mail: {:?}",
        demo.mails()
    );
    let files: Vec<_> = std::fs::read_dir(demo.mail_dir())
        .expect("DEMO_MAIL_DIR was created")
        .collect();
    assert_eq!(files.len(), 1);
    let mail = &mails[0];
    assert!(mail.contains("To: alice@demo.invalid"), "{mail}");
    assert!(mail.contains("Subject: Reset your password"), "{mail}");
    assert!(mail.contains("within 30 minutes"), "{mail}");
    let link = reset_link(mail);
    let prefix = demo.url("/password/reset?token=");
    assert!(link.starts_with(&prefix), "{link} is not under {prefix}");
    assert_eq!(link_token(&link).len(), 66, "{link}");
}

/// The whole story on one demo: links, the form, a reset by a browser signed in as alice,
/// every other login of alice ended, the old password refused and the new one accepted; the
/// used link, a tampered one and one issued before the change refused.
async fn reset_story(demo: &Demo) {
    // Alice is signed in on two other browsers, one of them remembered.
    let mut laptop = demo.client();
    laptop.login_ok(ALICE, true).await;
    let remembered = remember_cookie(&laptop);
    let mut phone = demo.client();
    phone.login_ok(ALICE, false).await;

    // Two links, asked for one after the other.
    let mut anon = demo.client();
    ask_for_link(&mut anon, "alice").await;
    let first = reset_link(&demo.wait_for_mails(1).await[0]);
    ask_for_link(&mut anon, "alice").await;
    let second = reset_link(&demo.wait_for_mails(2).await[1]);
    assert_ne!(first, second);
    let (token, earlier_token) = (link_token(&first), link_token(&second));

    // Following the link (in a browser of its own) shows the form, the token in a hidden
    // field; nothing is used yet.
    let path = first.strip_prefix(&demo.base).expect("a link to this demo");
    let form = demo.client().get(path).await;
    form.assert_status(200);
    let hidden = format!(r#"<input type="hidden" name="token" value="{token}">"#);
    assert!(form.body.contains(&hidden), "{}", form.body);
    assert!(
        form.body.contains(r#"name="new_password""#),
        "{}",
        form.body
    );
    assert_eq!(form.header("referrer-policy"), Some("no-referrer"));
    assert!(form.set_cookie("session").is_none(), "{form:?}");

    // A tampered token: refused.
    assert_invalid(&reset(&mut anon, &tampered(&token), NEW_PASSWORD).await);
    // A password the sign-up would refuse: 422 and the form again; the link still works.
    let short = reset(&mut anon, &token, "short").await;
    short.assert_status(422);
    assert!(short.body.contains(&hidden), "{}", short.body);

    // The phone, signed in as alice, uses the link.
    let done = reset(&mut phone, &token, NEW_PASSWORD).await;
    done.assert_status(303);
    assert_eq!(done.location(), Some("/login"));
    login_page_says(&mut phone, PASSWORD_CHANGED).await;
    phone.get("/dashboard").await.assert_status(303);

    // Signed in again with the new password, alice's devices page lists this login only: the
    // others were ended at once, not merely refused when they come back.
    let mut fresh = demo.client();
    fresh.login_ok((ALICE.0, NEW_PASSWORD), false).await;
    let devices = fresh.get("/devices").await;
    devices.assert_status(200);
    assert_eq!(device_rows(&devices.body).len(), 1, "{}", devices.body);

    // Every other login of alice ended: the laptop's session and its remember-me cookie.
    laptop.get("/dashboard").await.assert_status(303);
    reopened_browser(demo, &remembered)
        .get("/dashboard")
        .await
        .assert_status(303);

    // The same link again, and the other link, issued before the password changed: refused.
    assert_invalid(&reset(&mut anon, &token, NEWER_PASSWORD).await);
    assert_invalid(&reset(&mut anon, &earlier_token, NEWER_PASSWORD).await);

    // The old password no longer works, the new one does (still).
    let old = demo.client().login(ALICE, false).await;
    old.assert_status(401);
    assert!(old.body.contains(INVALID_CREDENTIALS), "{}", old.body);
    let page = fresh.get("/dashboard").await;
    page.assert_status(200);
    assert!(page.body.contains("Hello, alice"), "{}", page.body);
}

#[tokio::test]
async fn a_link_resets_the_password_once_and_ends_every_login_sqlite() {
    let demo = Demo::start();
    reset_story(&demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_resets_the_password_once_and_ends_every_login_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let case = async move {
        let demo = Demo::start_with(&[("DATABASE_URL", &url)]);
        reset_story(&demo).await;
        // The tokens are in the users' database.
        let pool = sqlx::PgPool::connect(&url).await.expect("the database");
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_name = 'login_one_time_tokens'",
        )
        .fetch_one(&pool)
        .await
        .expect("the catalog");
        assert_eq!(tables, 1);
        pool.close().await;
    };
    with_teardown(case, db.drop_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_resets_the_password_once_and_ends_every_login_redis() {
    let Some(redis) = backends::redis_pool().await else {
        return;
    };
    let prefix = format!("{}:", unique("lm-demo-reset"));
    let url = redis_url();
    // Users stay in the demo's SQLite file; sessions, remember-me, throttling, the login
    // index and the one-time tokens in Redis.
    let mut demo = Demo::start_with(&[("REDIS_URL", &url), ("DEMO_REDIS_PREFIX", &prefix)]);
    let sessions = SessionIds::default();
    demo.session_ids = Some(sessions.clone());
    let (pool, key_prefix) = (redis.clone(), prefix.clone());
    let case = async move {
        reset_story(&demo).await;
        // An outstanding link lives under DEMO_REDIS_PREFIX.
        ask_for_link(&mut demo.client(), "alice").await;
        demo.wait_for_mails(3).await;
        let keys = backends::list_keys(&pool, &key_prefix).await;
        let tokens = format!("{key_prefix}token:");
        assert!(keys.iter().any(|k| k.starts_with(&tokens)), "{keys:?}");
    };
    let teardown = async {
        backends::delete_keys(&redis, &prefix).await;
        let ids: Vec<String> = sessions.lock().unwrap().drain(..).collect();
        for id in ids {
            let _: i64 = fred::prelude::KeysInterface::del(&redis, id)
                .await
                .expect("delete a session key");
        }
    };
    with_teardown(case, teardown).await;
}

/// `DEMO_RESET_TOKEN_MINUTES` takes fractions: 0.05 minutes is 3 s.
#[tokio::test]
async fn an_expired_link_is_refused() {
    let demo = Demo::start_with(&[("DEMO_RESET_TOKEN_MINUTES", "0.05")]);
    let mut browser = demo.client();
    ask_for_link(&mut browser, "alice").await;
    let asked = Instant::now();
    let token = link_token(&reset_link(&demo.wait_for_mails(1).await[0]));
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(asked.elapsed())).await;
    assert_invalid(&reset(&mut browser, &token, NEW_PASSWORD).await);
    demo.client().login_ok(ALICE, false).await;
}

/// Failed links count in the login throttle: 5 per link, `DEMO_THROTTLE_MAX_ADDRESS_FAILURES`
/// per client address (shared with failed logins), then `429` with `Retry-After`.
#[tokio::test]
async fn bad_links_from_one_client_are_throttled() {
    let demo = Demo::start_with(&[("DEMO_THROTTLE_MAX_ADDRESS_FAILURES", "8")]);
    let mut browser = demo.client();
    ask_for_link(&mut browser, "alice").await;
    let token = link_token(&reset_link(&demo.wait_for_mails(1).await[0]));

    // One link guessed at: five failures, then the link is locked, right validator or not.
    let guess = tampered(&token);
    for attempt in 1..=5 {
        let resp = reset(&mut browser, &guess, NEW_PASSWORD).await;
        assert_eq!(resp.status, 400, "attempt {attempt}: {}", resp.body);
    }
    for try_token in [&guess, &token] {
        let locked = reset(&mut browser, try_token, NEW_PASSWORD).await;
        locked.assert_status(429);
        let retry: u64 = locked
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=15 * 60).contains(&retry), "{retry}");
    }

    // Made-up links, each a new one: the address's budget (8, five spent) runs out.
    for n in 0..3 {
        assert_invalid(&reset(&mut browser, &made_up_token(n), NEW_PASSWORD).await);
    }
    reset(&mut browser, &made_up_token(3), NEW_PASSWORD)
        .await
        .assert_status(429);
    // The same budget as failed logins: this address is refused there too.
    demo.client().login(ALICE, false).await.assert_status(429);
}

#[tokio::test]
async fn cross_origin_posts_change_nothing() {
    let demo = Demo::start();
    let mut browser = demo.client();
    ask_for_link(&mut browser, "alice").await;
    let token = link_token(&reset_link(&demo.wait_for_mails(1).await[0]));
    let fields = [("token", token.as_str()), ("new_password", NEW_PASSWORD)];

    for headers in [
        [("sec-fetch-site", "cross-site")],
        [("origin", "http://evil.example")],
    ] {
        let resp = browser
            .post_form_with("/password/reset", &fields, &headers)
            .await;
        resp.assert_status(403);
        let resp = browser
            .post_form_with("/password/forgot", &[("username", "alice")], &headers)
            .await;
        resp.assert_status(403);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(demo.mails().len(), 1, "no mail for a cross-origin request");
    // The password is unchanged and the link unused: it still works from the demo's own page.
    demo.client().login_ok(ALICE, false).await;
    let own = [
        ("sec-fetch-site", "same-origin"),
        ("origin", demo.base.as_str()),
    ];
    let resp = browser
        .post_form_with("/password/reset", &fields, &own)
        .await;
    resp.assert_status(303);
}

/// With `DEMO_SMTP_URL` the mail goes over SMTP; a server that cannot be reached changes
/// nothing in the answer (the mail is sent after it) and is logged.
#[tokio::test]
async fn an_unreachable_smtp_server_does_not_change_the_answer() {
    // Port 9 (discard) is closed: the connection is refused at once.
    let demo = Demo::start_with(&[("DEMO_SMTP_URL", "smtp://127.0.0.1:9")]);
    let mut browser = demo.client();
    ask_for_link(&mut browser, "alice").await;
    login_page_says(&mut browser, LINK_SENT).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !demo.log().contains("password-reset mail not sent") {
        assert!(Instant::now() < deadline, "{}", demo.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !demo.mail_dir().exists(),
        "no mail directory with DEMO_SMTP_URL"
    );
}

#[tokio::test]
async fn bad_mail_settings_stop_the_demo_at_start() {
    for (name, value) in [
        ("DEMO_RESET_TOKEN_MINUTES", "0"),
        ("DEMO_RESET_TOKEN_MINUTES", "-1"),
        ("DEMO_RESET_TOKEN_MINUTES", "soon"),
        ("DEMO_SMTP_URL", "http://not-smtp"),
        ("DEMO_PUBLIC_URL", "demo.example.com"),
    ] {
        let dir = tempfile::tempdir().expect("a directory");
        let out = std::process::Command::new(demo_support::demo_binary())
            .env("DEMO_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display()),
            )
            .env(name, value)
            .current_dir(dir.path())
            .output()
            .expect("the demo runs");
        assert!(!out.status.success(), "{name}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

/// `DEMO_PUBLIC_URL` is the base of the links (never the request's `Host`).
#[tokio::test]
async fn links_use_the_public_url_not_the_host_header() {
    let demo = Demo::start_with(&[("DEMO_PUBLIC_URL", "https://wonderland.example/")]);
    let mut browser = demo.client();
    let resp = browser
        .post_form_with(
            "/password/forgot",
            &[("username", "alice")],
            &[("host", "evil.example")],
        )
        .await;
    resp.assert_status(303);
    let link = reset_link(&demo.wait_for_mails(1).await[0]);
    assert!(
        link.starts_with("https://wonderland.example/password/reset?token="),
        "{link}"
    );
}
