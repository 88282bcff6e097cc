//! The demo's login / remember / logout round trip once per session backend
//! (`SESSION_STORE`): memory, sqlite, file and cookie always; postgres and redis when their
//! servers are reachable (`CI=true` makes a missing one a failure, see `store_support`).

mod demo_support;
#[path = "../../tests/store_support/mod.rs"]
mod store_support;

use demo_support::{remember_cookie, reopened_browser, session_cookie, Demo, SessionIds, ALICE};
use store_support::{backends, redis_url, unique, with_teardown, PgDatabase};

/// 64 bytes of key, base64: what `openssl rand -base64 64` prints.
const SESSION_KEY: &str =
    "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLXRlc3RzLW5vdC1hLXNlY3JldC1hdC1hbGwtc2l4dHktZm91ci1ieXRlcyEh";

/// Logs in with "remember me", restores from the remember cookie in a reopened browser, and
/// logs out. A copy of the session cookie dies with the logout on every backend: cookie
/// sessions, which live in the copy itself, are checked against the login index on every
/// request (#17).
async fn round_trip(demo: &Demo, kind: &str) {
    let ready = format!("sessions=\"{kind}\"");
    assert!(demo.log().contains(&ready), "{}", demo.log());

    let mut browser = demo.client();
    let login = browser.login(ALICE, true).await;
    login.assert_status(303);
    let cookie = login.set_cookie("session").expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{kind}");
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax), "{kind}");
    assert_eq!(cookie.max_age(), None, "{kind}: a browser-session cookie");
    assert_eq!(cookie.expires(), None, "{kind}: a browser-session cookie");
    let page = browser.get("/dashboard").await;
    page.assert_status(200);
    assert!(page.body.contains("Hello, alice"), "{kind}: {}", page.body);

    // The browser is closed and reopened: remember-me logs alice in again, not fresh.
    let token = remember_cookie(&browser);
    let mut reopened = reopened_browser(demo, &token);
    reopened.get("/dashboard").await.assert_status(200);
    let settings = reopened.get("/settings").await;
    settings.assert_status(303);
    assert_eq!(
        settings.location(),
        Some("/reauth?next=%2Fsettings"),
        "{kind}"
    );

    // Logout ends the remember token and the session.
    let before_logout = session_cookie(&reopened);
    let rotated = remember_cookie(&reopened);
    reopened.post_form("/logout", &[]).await.assert_status(303);
    reopened.get("/dashboard").await.assert_status(303);
    reopened_browser(demo, &rotated)
        .get("/dashboard")
        .await
        .assert_status(303);
    let mut copy = demo.client();
    copy.set_cookie("session", &before_logout);
    let status = copy.get("/dashboard").await.status;
    assert_eq!(status, 303, "{kind}: the old session is dead");
}

#[tokio::test]
async fn memory_sessions() {
    let demo = Demo::start_with(&[("SESSION_STORE", "memory")]);
    round_trip(&demo, "memory").await;
}

#[tokio::test]
async fn sqlite_sessions_are_the_default() {
    let demo = Demo::start();
    round_trip(&demo, "sqlite").await;
}

#[tokio::test]
async fn file_sessions() {
    let demo = Demo::start_with(&[("SESSION_STORE", "file")]);
    round_trip(&demo, "file").await;
    let dir = demo.db_path.with_file_name("demo-sessions");
    let files = std::fs::read_dir(&dir).expect("DEMO_SESSION_DIR").count();
    assert!(files >= 1, "sessions are files in {}", dir.display());
}

#[tokio::test]
async fn cookie_sessions_with_a_key() {
    let demo = Demo::start_with(&[
        ("SESSION_STORE", "cookie"),
        ("DEMO_SESSION_KEY", SESSION_KEY),
    ]);
    let mut browser = demo.client();
    browser.login_ok(ALICE, false).await;
    round_trip(&demo, "cookie").await;

    // The same key after a restart: the session in the cookie is still valid.
    let demo = demo.restart();
    browser.set_base(&demo.base);
    browser.get("/dashboard").await.assert_status(200);
}

#[tokio::test]
async fn cookie_sessions_without_a_key_warn() {
    let demo = Demo::start_with(&[("SESSION_STORE", "cookie")]);
    assert!(
        demo.log().contains("DEMO_SESSION_KEY is not set"),
        "{}",
        demo.log()
    );
    round_trip(&demo, "cookie").await;
}

#[tokio::test]
async fn permanent_sessions() {
    let demo = Demo::start_with(&[("DEMO_SESSION_LIFETIME_SECS", "3600")]);
    let mut browser = demo.client();
    let login = browser.login(ALICE, false).await;
    login.assert_status(303);
    let cookie = login.set_cookie("session").expect("a session cookie");
    let max_age = cookie.max_age().expect("a permanent session cookie");
    assert!(
        max_age > time::Duration::minutes(59) && max_age <= time::Duration::hours(1),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let case = async move {
        let demo = Demo::start_with(&[("DATABASE_URL", &url), ("SESSION_STORE", "postgres")]);
        round_trip(&demo, "postgres").await;
    };
    with_teardown(case, db.drop_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sessions() {
    let Some(redis) = backends::redis_pool().await else {
        return;
    };
    let prefix = format!("{}:", unique("lm-demo"));
    let url = redis_url();
    // Users stay in the demo's SQLite file; sessions, remember-me, throttling and the login
    // index in Redis.
    let mut demo = Demo::start_with(&[
        ("REDIS_URL", &url),
        ("DEMO_REDIS_PREFIX", &prefix),
        ("SESSION_STORE", "redis"),
    ]);
    let sessions = SessionIds::default();
    demo.session_ids = Some(sessions.clone());
    let (pool, key_prefix) = (redis.clone(), prefix.clone());
    let case = async move {
        round_trip(&demo, "redis").await;
        // The login index lives under DEMO_REDIS_PREFIX too, like remember-me and throttling.
        demo.client().login_ok(ALICE, false).await;
        let keys = backends::list_keys(&pool, &key_prefix).await;
        let index = format!("{key_prefix}logins:");
        assert!(keys.iter().any(|k| k.starts_with(&index)), "{keys:?}");
    };
    let teardown = async {
        backends::delete_keys(&redis, &prefix).await;
        // Session keys are bare ids (no prefix in tower-sessions-redis-store): those the
        // clients were given.
        let ids: Vec<String> = sessions.lock().unwrap().drain(..).collect();
        for id in ids {
            let _: i64 = fred::prelude::KeysInterface::del(&redis, id)
                .await
                .expect("delete a session key");
        }
    };
    with_teardown(case, teardown).await;
}

/// Issue #14, defect 4 (DESIGN.md invariant 8): browsers that are not logged in create no
/// server-side state. 10 000 anonymous requests to the demo's protected routes — guard
/// redirects, JSON 401s, HEAD, a forged session cookie, a well-formed but unknown remember
/// cookie — set no session cookie, and `count_sessions` reads the same number afterwards.
async fn anonymous_requests_store_nothing<F, Fut>(demo: &Demo, count_sessions: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    const REQUESTS: usize = 10_000;
    const CLIENTS: usize = 8;
    let before = count_sessions().await;
    let forged_remember = format!("{}.{}", "A".repeat(22), "B".repeat(43));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let mut client = demo.client();
        let forged_remember = forged_remember.clone();
        tasks.spawn(async move {
            for i in (worker..REQUESTS).step_by(CLIENTS) {
                let resp = match i % 6 {
                    0 => client.get("/dashboard").await,
                    1 => client.get("/settings").await,
                    2 => client.get("/admin").await,
                    3 => {
                        client
                            .get_with("/devices", &[("accept", "application/json")])
                            .await
                    }
                    4 => {
                        client.set_cookie("session", "AAAAAAAAAAAAAAAAAAAAAA");
                        let resp = client.get("/dashboard").await;
                        client.remove_cookie("session");
                        resp
                    }
                    _ => {
                        client.set_cookie("remember_token", &forged_remember);
                        let resp = client
                            .send(http::Method::HEAD, "/dashboard", &[], None)
                            .await;
                        client.remove_cookie("remember_token");
                        resp
                    }
                };
                assert!(
                    matches!(resp.status, 303 | 401),
                    "request {i}: {}",
                    resp.status
                );
                // A forged session cookie may be expired (`session=`), never replaced.
                let session = resp.set_cookie("session");
                assert!(
                    session.is_none_or(|c| c.value().is_empty()),
                    "request {i}: {resp:?}"
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    assert_eq!(
        count_sessions().await,
        before,
        "{REQUESTS} anonymous requests created session records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_create_no_sqlite_sessions() {
    let demo = Demo::start();
    let url = format!("sqlite://{}", demo.db_path.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("the demo's database");
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tower_sessions")
            .fetch_one(&pool)
            .await
            .expect("count sessions")
    };
    assert_eq!(count().await, 0);
    anonymous_requests_store_nothing(&demo, count).await;
    assert_eq!(count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_create_no_postgres_sessions() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let case = async move {
        let demo = Demo::start_with(&[("DATABASE_URL", &url), ("SESSION_STORE", "postgres")]);
        let pool = sqlx::PgPool::connect(&url)
            .await
            .expect("the demo's database");
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tower_sessions.session")
                .fetch_one(&pool)
                .await
                .expect("count sessions")
        };
        assert_eq!(count().await, 0);
        anonymous_requests_store_nothing(&demo, count).await;
        assert_eq!(count().await, 0);
        pool.close().await;
    };
    with_teardown(case, db.drop_database()).await;
}

/// Redis on a database of its own (sessions are bare-id keys): every key counts, sessions,
/// remember tokens and throttle windows alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_create_no_redis_keys() {
    use fred::prelude::*;
    if backends::redis_pool().await.is_none() {
        return;
    }
    const DB: u8 = 12;
    let url = format!("{}/{DB}", redis_url().trim_end_matches('/'));
    let redis = Pool::new(
        Config::from_url(&url).expect("redis url"),
        None,
        None,
        None,
        1,
    )
    .expect("redis pool");
    redis.init().await.expect("redis");
    let size = || async { redis.dbsize::<i64>().await.expect("DBSIZE") };
    assert_eq!(
        size().await,
        0,
        "redis database {DB} must be empty for this test"
    );
    let case_url = url.clone();
    let case = async move {
        let demo = Demo::start_with(&[("REDIS_URL", &case_url), ("SESSION_STORE", "redis")]);
        let redis = Pool::new(
            Config::from_url(&case_url).expect("redis url"),
            None,
            None,
            None,
            1,
        )
        .expect("redis pool");
        redis.init().await.expect("redis");
        let count = || async { redis.dbsize::<i64>().await.expect("DBSIZE") };
        anonymous_requests_store_nothing(&demo, count).await;
        assert_eq!(
            count().await,
            0,
            "no key at all in the demo's redis database"
        );
    };
    let teardown = async { backends::delete_keys(&redis, "").await };
    with_teardown(case, teardown).await;
}
