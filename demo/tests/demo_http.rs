//! The demo app over real HTTP, row by row of DEMO.md. Each test starts its own demo
//! process (with its own SQLite file), so tests are independent and run in parallel.

mod demo_support;

use demo_support::{
    remember_cookie, reopened_browser, session_cookie, Demo, Resp, ADMIN, ALICE,
    INVALID_CREDENTIALS,
};
use std::time::Duration;

use reqwest::Method;

/// `Cache-Control: no-store` and `Vary: Cookie`: a page that depends on who is logged in.
#[track_caller]
fn assert_private(resp: &Resp) {
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp:?}");
    assert!(
        resp.header_joined("vary")
            .split(',')
            .any(|v| v.trim().eq_ignore_ascii_case("cookie")),
        "no `Vary: Cookie`: {resp:?}"
    );
}

/// A client with nothing but this remember-me cookie: a browser reopened after closing.
#[tokio::test]
async fn home_is_public_and_says_who_is_signed_in() {
    let demo = Demo::start();
    let mut browser = demo.client();

    let home = browser.get("/").await;
    home.assert_status(200);
    assert!(home.body.contains(r#"href="/login""#), "{}", home.body);
    assert!(!home.body.contains("Signed in as"));
    assert_private(&home);

    browser.login_ok(ALICE, false).await;
    let home = browser.get("/").await;
    home.assert_status(200);
    assert!(home.body.contains("Signed in as alice"), "{}", home.body);
    assert_private(&home);
}

#[tokio::test]
async fn login_page_has_the_form_and_escapes_next() {
    let demo = Demo::start();
    let mut browser = demo.client();

    let page = browser.get("/login").await;
    page.assert_status(200);
    for needle in [
        r#"method="post" action="/login""#,
        r#"name="username""#,
        r#"name="password""#,
        r#"type="checkbox" name="remember" value="on""#,
        r#"type="hidden" name="next" value="""#,
    ] {
        assert!(page.body.contains(needle), "no {needle} in:\n{}", page.body);
    }

    let page = browser.get("/login?next=%2Fdashboard").await;
    assert!(page
        .body
        .contains(r#"type="hidden" name="next" value="/dashboard""#));

    let page = browser
        .get("/login?next=/dashboard%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    page.assert_status(200);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body.contains(
            r#"name="next" value="/dashboard&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#
        ),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn login_redirects_to_next_with_a_new_session_id() {
    let demo = Demo::start();
    let mut browser = demo.client();

    // An anonymous session first: signing up stores a "Welcome" flash.
    browser
        .post_form(
            "/register",
            &[
                ("username", "newcomer"),
                ("password", "a long enough password"),
            ],
        )
        .await
        .assert_status(303);
    let before = session_cookie(&browser);

    let resp = browser
        .post_form(
            "/login",
            &[
                ("username", ALICE.0),
                ("password", ALICE.1),
                ("next", "/dashboard"),
            ],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/dashboard"));
    assert!(
        resp.set_cookie("remember_token").is_none(),
        "no remember-me asked"
    );
    let after = session_cookie(&browser);
    assert_ne!(before, after, "login must rotate the session id");
    browser.get("/dashboard").await.assert_status(200);

    // The pre-login session id is dead.
    let mut old = demo.client();
    old.set_cookie("session", &before);
    old.get("/dashboard").await.assert_status(303);

    // `next` from the query when the form has none; the hidden field is sent empty.
    let mut other = demo.client();
    let resp = other
        .post_form(
            "/login?next=%2Fdevices",
            &[("username", ALICE.0), ("password", ALICE.1), ("next", "")],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/devices"));

    // The form field wins over the query.
    let resp = demo
        .client()
        .post_form(
            "/login?next=%2Fdevices",
            &[
                ("username", ALICE.0),
                ("password", ALICE.1),
                ("next", "/settings"),
            ],
        )
        .await;
    assert_eq!(resp.location(), Some("/settings"));

    // No next: home. An unsafe next: home too.
    let resp = demo.client().login(ALICE, false).await;
    assert_eq!(resp.location(), Some("/"));
    for evil in ["//evil.example", "https://evil.example/", "/\\evil.example"] {
        let resp = demo
            .client()
            .post_form(
                "/login",
                &[("username", ALICE.0), ("password", ALICE.1), ("next", evil)],
            )
            .await;
        resp.assert_status(303);
        assert_eq!(resp.location(), Some("/"), "next={evil}");
    }
}

#[tokio::test]
async fn remember_cookie_only_when_asked() {
    let demo = Demo::start();
    for (value, expected) in [
        (Some("on"), true),
        (Some("true"), true),
        (Some("1"), true),
        (Some("off"), false),
        (Some("0"), false),
        (Some(""), false),
        (None, false),
    ] {
        let mut fields = vec![("username", ALICE.0), ("password", ALICE.1)];
        if let Some(value) = value {
            fields.push(("remember", value));
        }
        let resp = demo.client().post_form("/login", &fields).await;
        resp.assert_status(303);
        let cookie = resp.set_cookie("remember_token");
        assert_eq!(cookie.is_some(), expected, "remember={value:?}");
        if let Some(cookie) = cookie {
            assert_eq!(cookie.http_only(), Some(true));
            assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax));
            assert_eq!(cookie.path(), Some("/"));
            // DEMO_SECURE_COOKIES defaults to false on plain HTTP.
            assert_ne!(cookie.secure(), Some(true));
        }
    }
}

#[tokio::test]
async fn secure_cookies_setting() {
    let demo = Demo::start_with(&[("DEMO_SECURE_COOKIES", "true")]);
    let resp = demo.client().login(ALICE, true).await;
    resp.assert_status(303);
    for name in ["session", "remember_token"] {
        let cookie = resp.set_cookie(name).expect(name);
        assert_eq!(cookie.secure(), Some(true), "{name}");
        assert_eq!(cookie.http_only(), Some(true), "{name}");
    }
}

#[tokio::test]
async fn login_failures_look_the_same() {
    let demo = Demo::start();

    // A disabled account: signed up, then disabled in the database.
    let resp = demo
        .client()
        .post_form(
            "/register",
            &[("username", "dormouse"), ("password", "treacle-well")],
        )
        .await;
    resp.assert_status(303);
    demo.sql("UPDATE users SET disabled = 1 WHERE username = 'dormouse'")
        .await;

    for (username, password) in [
        ("nobody", "whatever-password"),
        (ALICE.0, "wrong-password"),
        ("dormouse", "treacle-well"),
    ] {
        let mut browser = demo.client();
        let resp = browser.login((username, password), true).await;
        resp.assert_status(401);
        assert!(
            resp.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{resp:?}"
        );
        assert_eq!(
            resp.body.matches(INVALID_CREDENTIALS).count(),
            1,
            "{username}: {}",
            resp.body
        );
        assert!(resp.set_cookie("remember_token").is_none());
        // The form again, keeping what was typed.
        assert!(resp.body.contains(r#"action="/login""#));
        assert!(resp.body.contains(&format!(r#"value="{username}""#)));
        browser.get("/dashboard").await.assert_status(303);
    }
}

#[tokio::test]
async fn login_wrong_content_type_and_oversized_password() {
    let demo = Demo::start();
    let mut browser = demo.client();

    let json = br#"{"username":"alice","password":"wonderland-rabbit-hole"}"#.to_vec();
    let resp = browser
        .send(
            Method::POST,
            "/login",
            &[],
            Some(("application/json", json)),
        )
        .await;
    resp.assert_status(415);
    assert!(resp.body.contains("<html"), "an HTML page: {}", resp.body);

    let long = "a".repeat(1025);
    let resp = browser.login((ALICE.0, &long), false).await;
    resp.assert_status(401);
    assert!(resp.body.contains(INVALID_CREDENTIALS));
    browser.get("/dashboard").await.assert_status(303);
}

#[tokio::test]
async fn throttling_locks_after_five_failures() {
    let demo = Demo::start();

    for username in [ALICE.0, "nobody-at-all"] {
        let mut browser = demo.client();
        for attempt in 1..=5 {
            let resp = browser.login((username, "not-the-password"), false).await;
            assert_eq!(resp.status, 401, "{username}, attempt {attempt}");
        }
        // The sixth attempt is refused, even with the right password.
        let password = if username == ALICE.0 {
            ALICE.1
        } else {
            "not-the-password"
        };
        let resp = browser.login((username, password), false).await;
        resp.assert_status(429);
        let retry_after: u64 = resp
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("a numeric Retry-After");
        assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
        assert!(
            resp.body.contains("Too many failed attempts"),
            "{}",
            resp.body
        );
        assert!(resp.body.contains("<html"));
        browser.get("/dashboard").await.assert_status(303);
    }

    // Another account is not affected.
    demo.client().login_ok(ADMIN, false).await;
}

/// Issue #14, defect 3 (DESIGN.md invariant 9): a login gives the browser a device cookie
/// for the account; failures of other clients never lock that browser out, only its own.
#[tokio::test]
async fn a_locked_account_does_not_lock_out_its_owners_device() {
    let demo = Demo::start();
    let mut owner = demo.client();
    let login = owner.login(ALICE, false).await;
    login.assert_status(303);
    let device = login.set_cookie("device").expect("a device cookie");
    assert_eq!(device.http_only(), Some(true));
    assert_eq!(device.same_site(), Some(cookie::SameSite::Lax));
    let max_age = device.max_age().expect("a persistent device cookie");
    assert!(max_age >= time::Duration::days(364), "{device}");
    // Logging out keeps it (and clears no site data).
    let logout = owner.post_form("/logout", &[]).await;
    logout.assert_status(303);
    assert!(logout.set_cookie("device").is_none());
    assert!(logout.header("clear-site-data").is_none());
    assert!(owner.cookie("device").is_some());

    // An attacker locks alice's account.
    let mut attacker = demo.client();
    for _ in 0..5 {
        attacker
            .login((ALICE.0, "guess"), false)
            .await
            .assert_status(401);
    }
    attacker.login(ALICE, false).await.assert_status(429);
    demo.client().login(ALICE, false).await.assert_status(429);

    // Alice's browser is judged by its own failures only.
    owner.login_ok(ALICE, false).await;
    owner.post_form("/logout", &[]).await.assert_status(303);
    for _ in 0..5 {
        owner
            .login((ALICE.0, "typo"), false)
            .await
            .assert_status(401);
    }
    owner.login(ALICE, false).await.assert_status(429);

    // Her device cookie is worth nothing for another account, nor copied with a change.
    let mut other = demo.client();
    for _ in 0..5 {
        other
            .login((ADMIN.0, "guess"), false)
            .await
            .assert_status(401);
    }
    let mut alices_device_on_admin = demo.client();
    alices_device_on_admin.set_cookie("device", &owner.cookie("device").unwrap());
    alices_device_on_admin
        .login(ADMIN, false)
        .await
        .assert_status(429);
}

/// Behind one address (a proxy that is not configured as trusted, a NAT), 50 failures lock
/// the address for every account — but never a browser with a device cookie for its account.
#[tokio::test]
async fn an_address_lock_does_not_lock_out_browsers_with_a_device_cookie() {
    let demo = Demo::start_with(&[("DEMO_THROTTLE_MAX_ADDRESS_FAILURES", "3")]);
    let mut alice = demo.client();
    alice.login_ok(ALICE, false).await;
    alice.post_form("/logout", &[]).await.assert_status(303);

    // Everyone here shares 127.0.0.1: three failures on three accounts lock the address.
    let mut sprayer = demo.client();
    for name in ["nobody-1", "nobody-2", "nobody-3"] {
        sprayer
            .login((name, "guess"), false)
            .await
            .assert_status(401);
    }
    let resp = demo.client().login(ADMIN, false).await;
    resp.assert_status(429);
    assert!(resp.header("retry-after").is_some());
    alice.login_ok(ALICE, false).await;
}

#[tokio::test]
async fn throttle_limit_comes_from_the_environment() {
    let demo = Demo::start_with(&[("DEMO_THROTTLE_MAX_FAILURES", "2")]);
    let mut browser = demo.client();
    for _ in 0..2 {
        browser
            .login((ALICE.0, "wrong-password"), false)
            .await
            .assert_status(401);
    }
    browser.login(ALICE, false).await.assert_status(429);
}

#[tokio::test]
async fn register() {
    let demo = Demo::start();
    let mut browser = demo.client();

    let resp = browser
        .post_form(
            "/register",
            &[("username", "hatter"), ("password", "tea-party-forever")],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login"));
    let page = browser.get("/login").await;
    assert!(page.body.contains("Welcome, hatter!"), "{}", page.body);
    browser
        .login(("hatter", "tea-party-forever"), false)
        .await
        .assert_status(303);
    assert!(browser
        .get("/dashboard")
        .await
        .body
        .contains("Hello, hatter"));

    // Taken, also in another case (usernames are case-insensitive).
    for name in ["hatter", "Hatter", "alice"] {
        let resp = browser
            .post_form(
                "/register",
                &[("username", name), ("password", "another-password")],
            )
            .await;
        resp.assert_status(409);
        assert!(resp.body.contains("taken"), "{}", resp.body);
    }

    let long_name = "u".repeat(65);
    let max_name = "m".repeat(64);
    let long_password = "p".repeat(1025);
    let max_password = "q".repeat(1024);
    for (username, password, status) in [
        ("", "long-enough-password", 422),
        (long_name.as_str(), "long-enough-password", 422),
        ("march-hare", "1234567", 422),
        ("march-hare", long_password.as_str(), 422),
        (max_name.as_str(), "12345678", 303),
        ("march-hare", max_password.as_str(), 303),
    ] {
        let resp = demo
            .client()
            .post_form(
                "/register",
                &[("username", username), ("password", password)],
            )
            .await;
        assert_eq!(
            resp.status,
            status,
            "username of {} chars, password of {} bytes: {}",
            username.len(),
            password.len(),
            resp.body
        );
        if status == 422 {
            assert!(resp.body.contains("<form"), "the form again: {}", resp.body);
        }
    }
    demo.client()
        .login(("march-hare", &max_password), false)
        .await
        .assert_status(303);

    let resp = browser
        .send(
            Method::POST,
            "/register",
            &[],
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    resp.assert_status(415);
}

#[tokio::test]
async fn dashboard_requires_login() {
    let demo = Demo::start();
    let mut browser = demo.client();

    let resp = browser.get("/dashboard").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdashboard"));
    assert_private(&resp);
    // Issue #14, defect 4: the redirect of an anonymous visitor creates no session.
    assert!(resp.set_cookie("session").is_none(), "{resp:?}");
    // The login page says why, from its `next`, without any session.
    let page = browser.get("/login?next=%2Fdashboard").await;
    assert!(
        page.body.contains("Please log in to access this page."),
        "{}",
        page.body
    );
    assert!(page.set_cookie("session").is_none());
    let page = browser.get("/login").await;
    assert!(!page.body.contains("Please log in to access this page."));

    for header in [
        ("accept", "application/json"),
        ("x-requested-with", "XMLHttpRequest"),
    ] {
        let resp = demo.client().get_with("/dashboard", &[header]).await;
        resp.assert_status(401);
        assert_eq!(
            resp.json(),
            serde_json::json!({ "error": "unauthorized" }),
            "{header:?}"
        );
    }

    browser.login_ok(ALICE, false).await;
    let resp = browser.get("/dashboard").await;
    resp.assert_status(200);
    assert!(resp.body.contains("Hello, alice"), "{}", resp.body);
    assert_private(&resp);
}

#[tokio::test]
async fn remembered_session_must_reauthenticate_for_settings() {
    let demo = Demo::start();

    // Anonymous: the login page.
    let resp = demo.client().get("/settings").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fsettings"));

    // A fresh login may open the settings.
    let mut first = demo.client();
    first.login_ok(ALICE, true).await;
    first.get("/settings").await.assert_status(200);

    // The browser closes (the session cookie is gone) and comes back.
    let mut browser = reopened_browser(&demo, &remember_cookie(&first));
    let resp = browser.get("/dashboard").await;
    resp.assert_status(200);
    assert!(resp.body.contains("Hello, alice"));
    assert!(resp.body.contains("restored from remember-me"));
    let restored_session = session_cookie(&browser);

    let resp = browser.get("/settings").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/reauth?next=%2Fsettings"));

    let page = browser.get("/reauth?next=%2Fsettings").await;
    page.assert_status(200);
    assert!(page.body.contains(r#"name="password""#));
    assert!(page
        .body
        .contains(r#"type="hidden" name="next" value="/settings""#));
    assert!(page
        .body
        .contains("Please reauthenticate to access this page."));

    let resp = browser
        .post_form(
            "/reauth",
            &[("password", "wrong-password"), ("next", "/settings")],
        )
        .await;
    resp.assert_status(401);
    assert!(resp.body.contains("Wrong password."), "{}", resp.body);
    browser.get("/settings").await.assert_status(303);

    let resp = browser
        .post_form("/reauth", &[("password", ALICE.1), ("next", "/settings")])
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/settings"));
    assert_ne!(
        session_cookie(&browser),
        restored_session,
        "confirm_login rotates the session id"
    );
    let resp = browser.get("/settings").await;
    resp.assert_status(200);
    assert!(resp.body.contains("Change password"));

    // Anonymous visitors of /reauth go to the login page.
    let resp = demo.client().get("/reauth?next=%2Fsettings").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fsettings"));
}

#[tokio::test]
async fn reauthentication_is_throttled_like_logins() {
    // A stolen remember-me cookie must not buy unlimited password guesses on /reauth.
    let demo = Demo::start_with(&[("DEMO_THROTTLE_MAX_FAILURES", "2")]);
    let mut first = demo.client();
    first.login_ok(ALICE, true).await;
    let mut thief = reopened_browser(&demo, &remember_cookie(&first));
    thief.get("/dashboard").await.assert_status(200);

    for _ in 0..2 {
        thief
            .post_form("/reauth", &[("password", "guess"), ("next", "/settings")])
            .await
            .assert_status(401);
    }
    let resp = thief
        .post_form("/reauth", &[("password", ALICE.1), ("next", "/settings")])
        .await;
    resp.assert_status(429);
    assert!(resp.header("retry-after").is_some());
    thief.get("/settings").await.assert_status(303);
    // The account is locked for password logins too.
    demo.client().login(ALICE, false).await.assert_status(429);
}

#[tokio::test]
async fn password_change_ends_other_sessions_and_remember_tokens() {
    let demo = Demo::start();
    let new_password = "through-the-looking-glass";

    let mut this = demo.client();
    this.login_ok(ALICE, false).await;
    let mut other = demo.client();
    other.login_ok(ALICE, false).await;
    let mut remembered = demo.client();
    remembered.login_ok(ALICE, true).await;
    let token = remember_cookie(&remembered);

    let resp = this
        .post_form(
            "/settings/password",
            &[
                ("current_password", "wrong-password"),
                ("new_password", new_password),
            ],
        )
        .await;
    resp.assert_status(401);
    let resp = this
        .post_form(
            "/settings/password",
            &[("current_password", ALICE.1), ("new_password", "short")],
        )
        .await;
    resp.assert_status(422);

    let before = session_cookie(&this);
    let resp = this
        .post_form(
            "/settings/password",
            &[
                ("current_password", ALICE.1),
                ("new_password", new_password),
            ],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/settings"));
    assert_ne!(session_cookie(&this), before, "a new session id");
    let page = this.get("/settings").await;
    page.assert_status(200);
    assert!(page.body.contains("Password changed."), "{}", page.body);

    other.get("/dashboard").await.assert_status(303);
    remembered.get("/dashboard").await.assert_status(303);
    reopened_browser(&demo, &token)
        .get("/dashboard")
        .await
        .assert_status(303);

    demo.client().login(ALICE, false).await.assert_status(401);
    demo.client()
        .login((ALICE.0, new_password), false)
        .await
        .assert_status(303);

    // Fresh login required: a remembered session may not change the password.
    let mut remembered = demo.client();
    remembered.login_ok((ALICE.0, new_password), true).await;
    let mut reopened = reopened_browser(&demo, &remember_cookie(&remembered));
    let resp = reopened
        .post_form(
            "/settings/password",
            &[
                ("current_password", new_password),
                ("new_password", "yet-another-password"),
            ],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/reauth"));
}

#[tokio::test]
async fn logout_ends_everything() {
    let demo = Demo::start();
    let mut browser = demo.client();
    browser.login_ok(ALICE, true).await;
    let session = session_cookie(&browser);
    let token = remember_cookie(&browser);

    let resp = browser.post_form("/logout", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/"));
    let expired = resp
        .set_cookie("remember_token")
        .expect("the remember cookie is expired");
    assert!(
        expired.max_age().is_some_and(|age| age.is_zero()) || expired.value().is_empty(),
        "{expired}"
    );
    assert!(browser.cookie("remember_token").is_none());

    let home = browser.get("/").await;
    assert!(home.body.contains("Logged out."), "{}", home.body);
    assert!(!home.body.contains("Signed in as"));
    browser.get("/dashboard").await.assert_status(303);

    // The old session id and the remember token are dead server-side.
    let mut old = demo.client();
    old.set_cookie("session", &session);
    old.get("/dashboard").await.assert_status(303);
    reopened_browser(&demo, &token)
        .get("/dashboard")
        .await
        .assert_status(303);

    let resp = demo.client().get("/logout").await;
    resp.assert_status(405);
}

#[tokio::test]
async fn admin_needs_the_permission_and_has_its_own_login_page() {
    let demo = Demo::start();

    let resp = demo.client().get("/admin").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/admin/login?next=%2Fadmin"));

    let page = demo.client().get("/admin/login?next=%2Fadmin").await;
    page.assert_status(200);
    assert!(page.body.contains(r#"method="post" action="/login""#));
    assert!(page
        .body
        .contains(r#"type="hidden" name="next" value="/admin""#));
    assert!(page.body.contains("Admin sign-in"));

    let mut alice = demo.client();
    alice.login_ok(ALICE, false).await;
    let resp = alice.get("/admin").await;
    resp.assert_status(403);
    assert!(resp.body.contains("<html"), "an HTML page: {}", resp.body);
    let resp = alice
        .get_with("/admin", &[("accept", "application/json")])
        .await;
    resp.assert_status(403);

    let mut admin = demo.client();
    let resp = admin
        .post_form(
            "/login",
            &[
                ("username", ADMIN.0),
                ("password", ADMIN.1),
                ("next", "/admin"),
            ],
        )
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/admin"));
    let page = admin.get("/admin").await;
    page.assert_status(200);
    assert!(page.body.contains("alice"), "{}", page.body);
    assert_private(&page);
}

#[tokio::test]
async fn api_me_and_tokens() {
    let demo = Demo::start();

    let resp = demo.client().get("/api/me").await;
    resp.assert_status(401);
    assert_eq!(resp.json(), serde_json::json!({ "error": "unauthorized" }));
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{resp:?}"
    );

    let mut browser = demo.client();
    browser.login_ok(ALICE, false).await;
    let resp = browser.get("/api/me").await;
    resp.assert_status(200);
    assert_eq!(resp.json(), serde_json::json!({ "username": "alice" }));

    let resp = browser.post_form("/api/tokens", &[]).await;
    resp.assert_status(201);
    let token = resp.json()["token"]
        .as_str()
        .expect("a token string")
        .to_owned();
    assert_eq!(token.len(), 43, "32 bytes, base64url: {token}");

    // The token alone, without cookies; no session is created for it.
    let bearer = format!("Bearer {token}");
    let mut api = demo.client();
    let resp = api.get_with("/api/me", &[("authorization", &bearer)]).await;
    resp.assert_status(200);
    assert_eq!(resp.json(), serde_json::json!({ "username": "alice" }));
    assert!(resp.set_cookie("session").is_none());

    // API tokens are for the API: the HTML pages want a session.
    for page in ["/dashboard", "/settings"] {
        let resp = demo
            .client()
            .get_with(page, &[("authorization", &bearer)])
            .await;
        resp.assert_status(303);
    }

    let forged = format!("Bearer {}", "A".repeat(43));
    for header in [forged.as_str(), "Bearer nonsense", "Basic YWxpY2U6eA=="] {
        let resp = demo
            .client()
            .get_with("/api/me", &[("authorization", header)])
            .await;
        resp.assert_status(401);
    }

    // Creating a token needs a login: JSON clients get 401, browsers the login page.
    let resp = demo
        .client()
        .send(
            Method::POST,
            "/api/tokens",
            &[("accept", "application/json")],
            None,
        )
        .await;
    resp.assert_status(401);
    let resp = demo.client().post_form("/api/tokens", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login"));
}

#[tokio::test]
async fn cross_origin_posts_are_refused_and_change_nothing() {
    let demo = Demo::start();
    let own_origin = demo.base.clone();

    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "http://evil.example")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://evil.example"),
        ],
    ] {
        let mut browser = demo.client();
        let resp = browser
            .post_form_with(
                "/login",
                &[("username", ALICE.0), ("password", ALICE.1)],
                &headers,
            )
            .await;
        resp.assert_status(403);
        assert!(resp.set_cookie("session").is_none(), "{headers:?}");
        browser.get("/dashboard").await.assert_status(303);

        let resp = browser
            .post_form_with(
                "/register",
                &[("username", "cheshire"), ("password", "grinning-cat")],
                &headers,
            )
            .await;
        resp.assert_status(403);
    }
    // Nothing was registered: the name is still free.
    demo.client()
        .post_form(
            "/register",
            &[("username", "cheshire"), ("password", "grinning-cat")],
        )
        .await
        .assert_status(303);

    // A logged-in user is not logged out by another site.
    let mut browser = demo.client();
    browser.login_ok(ALICE, true).await;
    let resp = browser
        .post_form_with("/logout", &[], &[("sec-fetch-site", "cross-site")])
        .await;
    resp.assert_status(403);
    browser.get("/dashboard").await.assert_status(200);
    assert!(browser.cookie("remember_token").is_some());

    // The app's own pages may post.
    let resp = browser
        .post_form_with(
            "/logout",
            &[],
            &[("sec-fetch-site", "same-origin"), ("origin", &own_origin)],
        )
        .await;
    resp.assert_status(303);
    browser.get("/dashboard").await.assert_status(303);
}

// The library keeps time in whole seconds: a timeout of N s ends a login once more than N
// whole seconds have passed, so the sleeps below leave a second of margin each way.

#[tokio::test]
async fn idle_timeout_logs_out() {
    let demo = Demo::start_with(&[("DEMO_IDLE_TIMEOUT_SECS", "2")]);
    let mut browser = demo.client();
    browser.login_ok(ALICE, false).await;
    browser.get("/dashboard").await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let resp = browser.get("/dashboard").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdashboard"));
}

#[tokio::test]
async fn absolute_timeout_logs_out_however_active() {
    let demo = Demo::start_with(&[("DEMO_ABSOLUTE_TIMEOUT_SECS", "3")]);
    let mut browser = demo.client();
    browser.login_ok(ALICE, false).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.get("/dashboard").await.assert_status(200);
    }
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    browser.get("/dashboard").await.assert_status(303);
}

#[tokio::test]
async fn replayed_remember_cookie_revokes_every_token() {
    // No grace window: a replay right after the rotation counts as theft.
    let demo = Demo::start_with(&[("DEMO_REMEMBER_GRACE_SECS", "0")]);
    let mut victim = demo.client();
    victim.login_ok(ALICE, true).await;
    let stolen = remember_cookie(&victim);

    // The victim's browser is reopened and rotates the token.
    let mut reopened = reopened_browser(&demo, &stolen);
    reopened.get("/dashboard").await.assert_status(200);
    let rotated = remember_cookie(&reopened);
    assert_ne!(rotated, stolen, "the token rotates on use");

    // The thief replays the old value: refused, and every token of alice is revoked.
    let mut thief = reopened_browser(&demo, &stolen);
    thief.get("/dashboard").await.assert_status(303);
    reopened_browser(&demo, &rotated)
        .get("/dashboard")
        .await
        .assert_status(303);
}

#[tokio::test]
async fn sessions_and_remember_me_survive_a_restart() {
    // The default: sessions, remember-me tokens and throttle counts all in SQLite.
    let demo = Demo::start();
    let mut browser = demo.client();
    browser.login_ok(ALICE, true).await;
    let token = remember_cookie(&browser);

    let demo = demo.restart();
    browser.set_base(&demo.base);
    browser.get("/dashboard").await.assert_status(200);
    reopened_browser(&demo, &token)
        .get("/dashboard")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn unknown_pages_are_html_404s() {
    let demo = Demo::start();
    let resp = demo.client().get("/no-such-page").await;
    resp.assert_status(404);
    assert!(resp.body.contains("<html"), "{}", resp.body);
    let css = demo.client().get("/static/style.css").await;
    css.assert_status(200);
    assert!(css
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/css")));
}
