//! Every live login of a user (#17), over real HTTP: `GET /devices`, `POST
//! /devices/{id}/revoke`, `POST /devices/revoke-others` and the admin's `POST
//! /admin/users/{username}/logout` (DEMO.md), on the default stores and with
//! `SESSION_STORE=cookie`. Two instances sharing Postgres or Redis: `demo_multi.rs`.

mod demo_support;

use demo_support::{
    device_row, device_rows, login_id_of, remember_cookie, reopened_browser, revoke_id,
    session_cookie, Client, Demo, Resp, ADMIN, ALICE, CHROME_WINDOWS, FIREFOX_LINUX, SAFARI_MAC,
};

/// `SESSION_STORE=cookie`'s key (base64 of 64 bytes), as in `demo_backends.rs`.
const SESSION_KEY: &str =
    "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLXRlc3RzLW5vdC1hLXNlY3JldC1hdC1hbGwtc2l4dHktZm91ci1ieXRlcyEh";

/// A browser with this `User-Agent`, logged in.
async fn browser(demo: &Demo, user_agent: &str, who: (&str, &str), remember: bool) -> Client {
    let mut client = demo.client().with_user_agent(user_agent);
    client.login_ok(who, remember).await;
    client
}

/// A browser's next page is anonymous: the dashboard sends it to the login page.
#[track_caller]
fn assert_anonymous(resp: &Resp) {
    resp.assert_status(303);
    assert_eq!(
        resp.location(),
        Some("/login?next=%2Fdashboard"),
        "{resp:?}"
    );
}

/// A reopened browser with only this remember-me cookie is not logged in by it.
async fn assert_token_dead(demo: &Demo, token: &str) {
    let resp = reopened_browser(demo, token).get("/dashboard").await;
    assert_anonymous(&resp);
}

/// A reopened browser with this remember-me cookie is logged in by it.
async fn assert_token_restores(demo: &Demo, token: &str) {
    reopened_browser(demo, token)
        .get("/dashboard")
        .await
        .assert_status(200);
}

async fn assert_logged_in(client: &mut Client) {
    client.get("/dashboard").await.assert_status(200);
}

/// `Cache-Control: no-store` and `Vary: Cookie`.
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

#[tokio::test]
async fn devices_lists_every_live_login_of_the_user() {
    let demo = Demo::start();
    let resp = demo.client().get("/devices").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdevices"));

    let mut firefox = browser(&demo, FIREFOX_LINUX, ALICE, false).await;
    let _safari = browser(&demo, SAFARI_MAC, ALICE, false).await;
    // Remembered, then closed: no session left, only the remember-me cookie.
    let chrome = browser(&demo, CHROME_WINDOWS, ALICE, true).await;
    let chrome_token = remember_cookie(&chrome);
    drop(chrome);
    // Another user's login is not alice's business.
    let _admin = browser(&demo, "Admin-Browser/1.0", ADMIN, false).await;

    let page = firefox.get("/devices").await;
    page.assert_status(200);
    assert_private(&page);
    let rows = device_rows(&page.body);
    assert_eq!(rows.len(), 3, "{}", page.body);
    assert!(
        rows[0].contains("Firefox"),
        "this device first: {}",
        page.body
    );
    assert_eq!(page.body.matches("This device").count(), 1, "{}", page.body);

    let this = device_row(&page.body, "Firefox 121.0");
    assert!(this.contains("<td>Linux</td>"), "{this}");
    assert!(this.contains("This device"), "{this}");
    assert_eq!(
        revoke_id(&this),
        None,
        "no revoke form for this device: {this}"
    );

    let safari = device_row(&page.body, "Safari 17.1");
    assert!(safari.contains("<td>Mac OSX 10.15.7</td>"), "{safari}");
    assert!(!safari.contains("This device") && !safari.contains("remembered"));
    assert!(revoke_id(&safari).is_some(), "{safari}");

    let chrome = device_row(&page.body, "Chrome 120");
    assert!(chrome.contains("Windows 10"), "{chrome}");
    assert!(chrome.contains("remembered"), "{chrome}");
    assert!(revoke_id(&chrome).is_some(), "{chrome}");

    // Parsed, not raw; dates; the one "everywhere else" form; nothing of admin's.
    assert!(!page.body.contains("Mozilla/5.0"), "{}", page.body);
    assert!(!page.body.contains("Admin-Browser"));
    assert!(page.body.contains(" UTC"), "dates: {}", page.body);
    assert_eq!(
        page.body
            .matches(r#"method="post" action="/devices/revoke-others""#)
            .count(),
        1
    );

    // The remembered browser comes back: still one entry, now restored.
    let mut back = reopened_browser(&demo, &chrome_token).with_user_agent(CHROME_WINDOWS);
    assert_logged_in(&mut back).await;
    let page = firefox.get("/devices").await;
    assert_eq!(device_rows(&page.body).len(), 3, "{}", page.body);
    let chrome = device_row(&page.body, "Chrome 120");
    assert!(chrome.contains("came back"), "{chrome}");

    // On the restored browser's own page, it is "This device".
    let page = back.get("/devices").await;
    assert!(device_row(&page.body, "Chrome 120").contains("This device"));
    assert!(revoke_id(&device_row(&page.body, "Firefox 121.0")).is_some());
}

#[tokio::test]
async fn revoking_a_device_ends_it_at_once() {
    let demo = Demo::start();
    let mut one = browser(&demo, FIREFOX_LINUX, ALICE, false).await;
    let mut two = browser(&demo, SAFARI_MAC, ALICE, true).await;
    let mut three = browser(&demo, CHROME_WINDOWS, ALICE, false).await;
    let one_session = session_cookie(&one);
    let two_token = remember_cookie(&two);

    let two_id = login_id_of(&mut one, "Safari").await;
    let resp = one
        .post_form(&format!("/devices/{two_id}/revoke"), &[])
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/devices"));

    // Browser two, session and remember cookie still in hand, is anonymous at once; its
    // remember cookie restores nothing.
    assert_anonymous(&two.get("/dashboard").await);
    assert_token_dead(&demo, &two_token).await;

    // This browser and the third are untouched.
    let page = one.get("/devices").await;
    page.assert_status(200);
    assert!(
        page.body.contains("That device is signed out."),
        "{}",
        page.body
    );
    assert_eq!(device_rows(&page.body).len(), 2, "{}", page.body);
    assert!(!page.body.contains("Safari"), "{}", page.body);
    assert_eq!(session_cookie(&one), one_session, "same session");
    assert_logged_in(&mut one).await;
    assert_logged_in(&mut three).await;

    // An id of another user's login does nothing to it.
    let mut admin_one = browser(&demo, FIREFOX_LINUX, ADMIN, false).await;
    let mut admin_two = browser(&demo, SAFARI_MAC, ADMIN, true).await;
    let admin_two_id = login_id_of(&mut admin_one, "Safari").await;
    let resp = one
        .post_form(&format!("/devices/{admin_two_id}/revoke"), &[])
        .await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/devices"));
    let page = one.get("/devices").await;
    assert!(
        page.body.contains("That device was already signed out."),
        "{}",
        page.body
    );
    assert_logged_in(&mut admin_two).await;
    let page = admin_one.get("/devices").await;
    assert_eq!(device_rows(&page.body).len(), 2, "{}", page.body);

    // An id that names nothing: the same answer, nothing changes.
    let resp = one.post_form("/devices/not-a-login/revoke", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/devices"));
    assert_eq!(device_rows(&one.get("/devices").await.body).len(), 2);

    // Anonymous: the login redirect. Another site: 403. Neither ends anything.
    let three_id = login_id_of(&mut one, "Chrome").await;
    let path = format!("/devices/{three_id}/revoke");
    let resp = demo.client().post_form(&path, &[]).await;
    resp.assert_status(303);
    assert!(
        resp.location().is_some_and(|l| l.starts_with("/login")),
        "{resp:?}"
    );
    for headers in [
        [("sec-fetch-site", "cross-site")],
        [("origin", "http://evil.example")],
    ] {
        one.post_form_with(&path, &[], &headers)
            .await
            .assert_status(403);
    }
    assert_logged_in(&mut three).await;
    assert_logged_in(&mut one).await;
}

#[tokio::test]
async fn revoke_others_ends_every_other_login_and_keeps_this_one() {
    let demo = Demo::start();
    let mut one = browser(&demo, FIREFOX_LINUX, ALICE, true).await;
    let mut two = browser(&demo, SAFARI_MAC, ALICE, false).await;
    let three = browser(&demo, CHROME_WINDOWS, ALICE, true).await;
    let three_token = remember_cookie(&three);
    drop(three);
    let mut four = browser(&demo, CHROME_WINDOWS, ALICE, true).await;
    let four_token = remember_cookie(&four);
    let mut admin = browser(&demo, FIREFOX_LINUX, ADMIN, true).await;
    let one_session = session_cookie(&one);
    let one_token = remember_cookie(&one);
    assert_eq!(device_rows(&one.get("/devices").await.body).len(), 4);

    let resp = one.post_form("/devices/revoke-others", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/devices"));

    // Every other session and remembered browser of alice is dead.
    assert_anonymous(&two.get("/dashboard").await);
    assert_anonymous(&four.get("/dashboard").await);
    assert_token_dead(&demo, &three_token).await;
    assert_token_dead(&demo, &four_token).await;

    // This one keeps working, with the same session cookie and its remember cookie.
    let page = one.get("/devices").await;
    page.assert_status(200);
    assert!(
        page.body.contains("3 other devices signed out."),
        "{}",
        page.body
    );
    let rows = device_rows(&page.body);
    assert_eq!(rows.len(), 1, "{}", page.body);
    assert!(rows[0].contains("This device"));
    assert!(page.body.contains("No other device is signed in."));
    assert_logged_in(&mut one).await;
    assert_eq!(session_cookie(&one), one_session);
    assert_eq!(remember_cookie(&one), one_token);

    // Another user is untouched.
    assert_logged_in(&mut admin).await;
    assert_eq!(device_rows(&admin.get("/devices").await.body).len(), 1);

    // Again: nothing left to end.
    one.post_form("/devices/revoke-others", &[])
        .await
        .assert_status(303);
    let page = one.get("/devices").await;
    assert!(
        page.body.contains("No other device was signed in."),
        "{}",
        page.body
    );
    assert_logged_in(&mut one).await;

    // The remember cookie of this browser still restores (last: restoring it elsewhere
    // takes over this browser's one entry, and so ends its session).
    assert_token_restores(&demo, &one_token).await;

    // Another site cannot make alice log out everywhere else.
    let mut five = browser(&demo, SAFARI_MAC, ALICE, false).await;
    five.post_form_with(
        "/devices/revoke-others",
        &[],
        &[("sec-fetch-site", "cross-site")],
    )
    .await
    .assert_status(403);
    assert_logged_in(&mut five).await;
}

#[tokio::test]
async fn admin_logs_a_user_out_everywhere() {
    let demo = Demo::start();
    let mut one = browser(&demo, FIREFOX_LINUX, ALICE, true).await;
    let mut two = browser(&demo, SAFARI_MAC, ALICE, false).await;
    let three = browser(&demo, CHROME_WINDOWS, ALICE, true).await;
    let three_token = remember_cookie(&three);
    drop(three);
    let one_token = remember_cookie(&one);
    let path = "/admin/users/alice/logout";

    // Anonymous: the admin area's login page. Not an admin: 403.
    let resp = demo.client().post_form(path, &[]).await;
    resp.assert_status(303);
    assert!(
        resp.location()
            .is_some_and(|l| l.starts_with("/admin/login")),
        "{resp:?}"
    );
    two.post_form(path, &[]).await.assert_status(403);
    assert_logged_in(&mut one).await;
    assert_logged_in(&mut two).await;

    // The admin page has a button per user.
    let mut admin = browser(&demo, FIREFOX_LINUX, ADMIN, false).await;
    let page = admin.get("/admin").await;
    page.assert_status(200);
    assert!(
        page.body
            .contains(r#"<form method="post" action="/admin/users/alice/logout""#),
        "{}",
        page.body
    );

    // Another site: 403, nothing ends.
    for headers in [
        [("sec-fetch-site", "cross-site")],
        [("origin", "http://evil.example")],
    ] {
        admin
            .post_form_with(path, &[], &headers)
            .await
            .assert_status(403);
    }
    assert_logged_in(&mut one).await;
    assert_logged_in(&mut two).await;

    // An unknown user: 404.
    admin
        .post_form("/admin/users/nobody/logout", &[])
        .await
        .assert_status(404);

    let resp = admin.post_form(path, &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/admin"));
    let page = admin.get("/admin").await;
    page.assert_status(200);
    assert!(
        page.body
            .contains("alice is signed out everywhere (3 logins ended)."),
        "{}",
        page.body
    );

    // Every browser of alice is anonymous at its next request, remember cookies included.
    assert_anonymous(&one.get("/dashboard").await);
    assert_anonymous(&two.get("/dashboard").await);
    assert_token_dead(&demo, &one_token).await;
    assert_token_dead(&demo, &three_token).await;
    // Her password still works.
    one.login_ok(ALICE, false).await;
    assert_logged_in(&mut one).await;

    // A username that needs percent-encoding in the path.
    let name = "mad hatter/tea?party";
    demo.client()
        .post_form(
            "/register",
            &[("username", name), ("password", "unbirthday-tea")],
        )
        .await
        .assert_status(303);
    let mut hatter = browser(&demo, SAFARI_MAC, (name, "unbirthday-tea"), true).await;
    let encoded = "/admin/users/mad%20hatter%2Ftea%3Fparty/logout";
    let page = admin.get("/admin").await;
    assert!(
        page.body.contains(&format!(r#"action="{encoded}""#)),
        "{}",
        page.body
    );
    admin.post_form(encoded, &[]).await.assert_status(303);
    assert_anonymous(&hatter.get("/dashboard").await);
    assert_logged_in(&mut one).await;

    // The admin logging themself out everywhere: this browser too.
    let mut admin_two = browser(&demo, SAFARI_MAC, ADMIN, false).await;
    let admin_session = session_cookie(&admin);
    let resp = admin.post_form("/admin/users/admin/logout", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/admin"));
    assert_anonymous(&admin.get("/dashboard").await);
    assert_anonymous(&admin_two.get("/dashboard").await);
    let mut copy = demo.client();
    copy.set_cookie("session", &admin_session);
    assert_anonymous(&copy.get("/dashboard").await);
}

/// Cookie sessions cannot be deleted: the index is read on every logged-in request, so
/// ending a login ends the session inside the cookie at its next request all the same.
#[tokio::test]
async fn cookie_sessions_end_when_their_login_is_ended() {
    let demo = Demo::start_with(&[
        ("SESSION_STORE", "cookie"),
        ("DEMO_SESSION_KEY", SESSION_KEY),
    ]);
    assert!(
        demo.log().contains(r#"sessions="cookie""#),
        "{}",
        demo.log()
    );
    let mut one = browser(&demo, FIREFOX_LINUX, ALICE, false).await;
    let mut two = browser(&demo, SAFARI_MAC, ALICE, false).await;
    let mut three = browser(&demo, CHROME_WINDOWS, ALICE, true).await;
    let two_cookie = session_cookie(&two);
    let three_token = remember_cookie(&three);

    let two_id = login_id_of(&mut one, "Safari").await;
    one.post_form(&format!("/devices/{two_id}/revoke"), &[])
        .await
        .assert_status(303);
    // The cookie still holds the login; the server refuses it.
    assert_anonymous(&two.get("/dashboard").await);
    let mut copy = demo.client();
    copy.set_cookie("session", &two_cookie);
    assert_anonymous(&copy.get("/dashboard").await);
    assert_logged_in(&mut one).await;
    assert_logged_in(&mut three).await;

    // Everywhere else: the third browser's session and token end, this one stays.
    let three_cookie = session_cookie(&three);
    one.post_form("/devices/revoke-others", &[])
        .await
        .assert_status(303);
    assert_anonymous(&three.get("/dashboard").await);
    let mut copy = demo.client();
    copy.set_cookie("session", &three_cookie);
    assert_anonymous(&copy.get("/dashboard").await);
    assert_token_dead(&demo, &three_token).await;
    assert_logged_in(&mut one).await;

    // The admin's logout of alice ends the last one.
    let one_cookie = session_cookie(&one);
    let mut admin = browser(&demo, FIREFOX_LINUX, ADMIN, false).await;
    admin
        .post_form("/admin/users/alice/logout", &[])
        .await
        .assert_status(303);
    assert_anonymous(&one.get("/dashboard").await);
    let mut copy = demo.client();
    copy.set_cookie("session", &one_cookie);
    assert_anonymous(&copy.get("/dashboard").await);
    assert_logged_in(&mut admin).await;
}
