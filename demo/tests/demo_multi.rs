//! Two demo processes on two ports, sharing Postgres (and Redis), behave as one app: a
//! session started on one works on the other, a logout on one ends it on both, remember-me
//! rotation, its grace window and theft detection span both, and so do throttle counts.
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
    remember_cookie, reopened_browser, session_cookie, Demo, SessionIds, ADMIN, ALICE,
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
