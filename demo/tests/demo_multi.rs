//! Two demo processes on two ports, sharing Postgres (and Redis), behave as one app: a
//! session started on one works on the other, a logout on one ends it on both, remember-me
//! rotation, its grace window and theft detection span both, `/devices` lists and ends
//! logins of both, the admin's "log out everywhere" reaches both (#17), and throttle counts
//! add up.
//!
//! Run twice: sessions in Postgres (`DATABASE_URL` only), and sessions in Redis (`REDIS_URL`
//! too). Each run gets its own Postgres database and Redis key prefix, removed afterwards.
//! Without the services the tests print `SKIPPED` (a failure under `CI=true`; see
//! `store_support`).

mod demo_support;
#[path = "../../tests/store_support/mod.rs"]
mod store_support;

use std::time::Duration;

use demo_support::{
    device_row, login_id_of, remember_cookie, reopened_browser, revoke_id, session_cookie, Demo,
    SessionIds, ADMIN, ALICE, FIREFOX_LINUX, SAFARI_MAC,
};
use store_support::{backends, redis_url, unique, with_teardown, PgDatabase};

/// The remember-me grace window of both instances: long enough for two requests, short
/// enough to wait out.
const GRACE_SECS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_in_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let env = vec![("DATABASE_URL".to_owned(), db.url.clone())];
    let sessions = SessionIds::default();
    with_teardown(scenario(env, "postgres", sessions), db.drop_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_in_redis() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let Some(redis) = backends::redis_pool().await else {
        db.drop_database().await;
        return;
    };
    let prefix = format!("{}:", unique("lm-demo"));
    let env = vec![
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("REDIS_URL".to_owned(), redis_url()),
        ("DEMO_REDIS_PREFIX".to_owned(), prefix.clone()),
    ];
    let sessions = SessionIds::default();
    let teardown = {
        let sessions = sessions.clone();
        async move {
            // Remember-me and throttle keys are under the prefix; session keys are bare
            // session ids (tower-sessions-redis-store has no prefix): delete those seen.
            backends::delete_keys(&redis, &prefix).await;
            let ids: Vec<String> = sessions.lock().unwrap().drain(..).collect();
            for id in ids {
                let _: i64 = fred::prelude::KeysInterface::del(&redis, id)
                    .await
                    .expect("delete a session key");
            }
            db.drop_database().await;
        }
    };
    with_teardown(scenario(env, "redis", sessions), teardown).await;
}

/// `sessions`: where the demo must say it keeps sessions.
async fn scenario(mut env: Vec<(String, String)>, sessions: &'static str, ids: SessionIds) {
    env.push((
        "DEMO_REMEMBER_GRACE_SECS".to_owned(),
        GRACE_SECS.to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    // Both at once, as a deployment starts them: migrations and seeding must take turns.
    let (mut a, mut b) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let a = scope.spawn(|| Demo::start_with(&env));
            let b = scope.spawn(|| Demo::start_with(&env));
            (a.join().expect("demo A"), b.join().expect("demo B"))
        })
    });

    a.session_ids = Some(ids.clone());
    b.session_ids = Some(ids);
    for demo in [&a, &b] {
        let ready = format!("sessions=\"{sessions}\"");
        assert!(demo.log().contains(&ready), "{}", demo.log());
    }

    // Logged in on A, the session works on B.
    let mut browser = a.client();
    browser.login_ok(ALICE, false).await;
    browser.set_base(&b.base);
    let page = browser.get("/dashboard").await;
    page.assert_status(200);
    assert!(page.body.contains("Hello, alice"), "{}", page.body);

    // Logged out on B, the session is dead on A.
    let old_session = session_cookie(&browser);
    browser.post_form("/logout", &[]).await.assert_status(303);
    let mut replay = a.client();
    replay.set_cookie("session", &old_session);
    replay.get("/dashboard").await.assert_status(303);

    // Remember-me: restored on A, the token rotates.
    let mut browser = a.client();
    browser.login_ok(ALICE, true).await;
    let first = remember_cookie(&browser);
    let mut on_a = reopened_browser(&a, &first);
    on_a.get("/dashboard").await.assert_status(200);
    let rotated = remember_cookie(&on_a);
    assert_ne!(rotated, first, "restoring rotates the token");

    // A parallel request on B with the old value, within the grace window: still logged in,
    // and the token is not rotated again.
    let mut parallel = reopened_browser(&b, &first);
    parallel.get("/dashboard").await.assert_status(200);
    assert_eq!(
        remember_cookie(&parallel),
        first,
        "no new token in the grace window"
    );

    // The rotated token works on B (and rotates again there).
    let mut on_b = reopened_browser(&b, &rotated);
    on_b.get("/dashboard").await.assert_status(200);
    let latest = remember_cookie(&on_b);
    assert_ne!(latest, rotated);

    // After the grace window, the rotated-out value is a replay: B revokes every token of
    // alice, so the latest one is dead on A too.
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 1)).await;
    reopened_browser(&b, &rotated)
        .get("/dashboard")
        .await
        .assert_status(303);
    reopened_browser(&a, &latest)
        .get("/dashboard")
        .await
        .assert_status(303);

    ending_logins_spans_both(&a, &b).await;

    // Throttling counts across instances: 3 failures on A and 2 on B lock the account on
    // both (default: 5 per account).
    let mut attacker = a.client();
    let wrong = (ADMIN.0, "not-the-password");
    for base in [&a.base, &a.base, &a.base, &b.base, &b.base] {
        attacker.set_base(base);
        attacker.login(wrong, false).await.assert_status(401);
    }
    for base in [&a.base, &b.base] {
        attacker.set_base(base);
        let resp = attacker.login(ADMIN, false).await;
        resp.assert_status(429);
        assert!(resp.header("retry-after").is_some());
    }
}

/// The index of live logins is shared: `/devices` on B lists a login made on A, "log out
/// everywhere else" on A ends a session in use on B, and so does the admin's logout on A.
async fn ending_logins_spans_both(a: &Demo, b: &Demo) {
    // Firefox logs in on A and stays there; Safari logs in on A and moves to B.
    let mut here = a.client().with_user_agent(FIREFOX_LINUX);
    here.login_ok(ALICE, false).await;
    let mut there = a.client().with_user_agent(SAFARI_MAC);
    there.login_ok(ALICE, true).await;
    let there_token = remember_cookie(&there);
    there.set_base(&b.base);
    there.get("/dashboard").await.assert_status(200);

    let page = there.get("/devices").await;
    page.assert_status(200);
    assert!(
        device_row(&page.body, "Safari").contains("This device"),
        "{}",
        page.body
    );
    let firefox = device_row(&page.body, "Firefox");
    assert!(revoke_id(&firefox).is_some(), "{firefox}");

    // "Log out everywhere else" on A: B's session ends at its next request, its remember
    // cookie restores nothing on either instance, and A's browser keeps its session on both.
    let here_session = session_cookie(&here);
    here.post_form("/devices/revoke-others", &[])
        .await
        .assert_status(303);
    let resp = there.get("/dashboard").await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/login?next=%2Fdashboard"));
    for demo in [a, b] {
        reopened_browser(demo, &there_token)
            .get("/dashboard")
            .await
            .assert_status(303);
    }
    here.get("/dashboard").await.assert_status(200);
    here.set_base(&b.base);
    here.get("/dashboard").await.assert_status(200);
    assert_eq!(session_cookie(&here), here_session);

    // One login ended on B by id, made and used on A.
    let mut on_a = a.client().with_user_agent(SAFARI_MAC);
    on_a.login_ok(ALICE, false).await;
    let id = login_id_of(&mut here, "Safari").await;
    here.post_form(&format!("/devices/{id}/revoke"), &[])
        .await
        .assert_status(303);
    on_a.get("/dashboard").await.assert_status(303);

    // The admin's logout on A ends alice's sessions on B, and her remember-me tokens.
    let mut b_one = b.client();
    b_one.login_ok(ALICE, false).await;
    let mut b_two = b.client();
    b_two.login_ok(ALICE, true).await;
    let b_token = remember_cookie(&b_two);
    let mut admin = a.client();
    admin.login_ok(ADMIN, false).await;
    let resp = admin.post_form("/admin/users/alice/logout", &[]).await;
    resp.assert_status(303);
    assert_eq!(resp.location(), Some("/admin"));
    for browser in [&mut b_one, &mut b_two, &mut here] {
        browser.get("/dashboard").await.assert_status(303);
    }
    reopened_browser(b, &b_token)
        .get("/dashboard")
        .await
        .assert_status(303);
    admin.set_base(&b.base);
    admin.get("/admin").await.assert_status(200);
}
