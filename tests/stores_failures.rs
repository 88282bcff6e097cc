//! The shared stores when their backend is down, and the library's timeouts around them.
//!
//! - A refused connection: every store call (remember-me, throttle, login index, one-time
//!   tokens) gives
//!   `Error::Store` promptly (within the pool's `acquire_timeout`), never a panic, also when
//!   called directly.
//! - A server that accepts and never answers: the stores have no timeout of their own; the
//!   library's callers bound every call (`LoginThrottle::store_timeout`,
//!   `LoginManager::store_timeout`), so throttling answers `Error::Timeout("throttle store")`,
//!   remember-me `Error::Timeout("remember store")`, one-time tokens
//!   `Error::Timeout("token store")` (`OneTimeTokens::store_timeout`), each within the limit,
//!   and a remembered request gets a 503 and logs nobody in.
//! - An outage and its recovery, through the library: 503 while the backend is cut, the same
//!   browser logged back in by its cookie once it is back.
#![cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]

mod common;
mod store_support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use login_manager::{Error, LoginManager, LoginThrottle, Remember, ThrottleStore};
use login_manager::{LoginStore, LoginTouch, StoredLogin};
use login_manager::{OneTimeTokens, StoredToken, TokenStore};
use login_manager::{RememberStore, RememberToken, Rotation};
use rand::RngCore;
use time::OffsetDateTime;
use tower::ServiceExt;
use tower_sessions::SessionManagerLayer;

/// The timeout in these tests: the pools' `acquire_timeout` for refused connections, the
/// library's `store_timeout` for hung servers.
const LIMIT: Duration = Duration::from_millis(700);
/// Scheduling slack on top of it (two cores, tests in parallel).
const SLACK: Duration = Duration::from_millis(800);

fn sample_token() -> RememberToken {
    let now = OffsetDateTime::now_utc();
    RememberToken {
        selector: "sel".into(),
        validator_hash: [1; 32],
        previous_hash: None,
        rotated_at: None,
        user_id: "1".into(),
        auth_hash: String::new(),
        created_at: now,
        last_used_at: now,
        expires_at: now + time::Duration::days(1),
        user_agent: String::new(),
    }
}

fn sample_login() -> StoredLogin {
    let now = OffsetDateTime::now_utc();
    StoredLogin {
        id: "login".into(),
        user_id: "1".into(),
        session_id: Some("session".into()),
        remember_selector: None,
        created_at: now,
        last_used_at: now,
        expires_at: now + time::Duration::days(1),
        user_agent: String::new(),
        remembered: false,
    }
}

fn sample_one_time_token() -> StoredToken {
    let now = OffsetDateTime::now_utc();
    StoredToken {
        selector: "one-time".into(),
        validator_hash: [1; 32],
        purpose: "password-reset".into(),
        user_id: "1".into(),
        auth_hash: String::new(),
        created_at: now,
        expires_at: now + time::Duration::hours(1),
    }
}

/// Runs a call; how long it took and its error, if any. A call still running at
/// `LIMIT + SLACK` is abandoned and reported as taking that long, without an error.
async fn timed<T>(
    call: impl Future<Output = Result<T, login_manager::Error>>,
) -> (Duration, Option<Error>) {
    let started = Instant::now();
    match tokio::time::timeout(LIMIT + SLACK, call).await {
        Ok(outcome) => (started.elapsed(), outcome.err()),
        Err(_) => (started.elapsed(), None),
    }
}

/// Every call of both stores, made directly, fails with `Error::Store` within the limit: the
/// stores map a backend that cannot be reached to an error of their own (here through the
/// pool's `acquire_timeout`, or a client that fails fast), never a panic. The calls run
/// concurrently, so that the test waits for one limit, not nine.
async fn every_call_is_a_store_error(remember: &dyn RememberStore, throttle: &dyn ThrottleStore) {
    let rotation = Rotation {
        new_hash: [2; 32],
        rotated_at: OffsetDateTime::now_utc(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(1),
    };
    let window = Duration::from_secs(60);
    let outcomes = tokio::join!(
        timed(remember.create(sample_token())),
        timed(remember.find("sel")),
        timed(remember.rotate("sel", &[1; 32], rotation)),
        timed(remember.delete("sel")),
        timed(remember.delete_for_user("1")),
        timed(remember.list_for_user("1")),
        timed(throttle.failures("acct:alice")),
        timed(throttle.record_failure("acct:alice", window)),
        timed(throttle.reset("acct:alice")),
    );
    let outcomes = [
        ("create", outcomes.0),
        ("find", outcomes.1),
        ("rotate", outcomes.2),
        ("delete", outcomes.3),
        ("delete_for_user", outcomes.4),
        ("list_for_user", outcomes.5),
        ("failures", outcomes.6),
        ("record_failure", outcomes.7),
        ("reset", outcomes.8),
    ];
    for (call, (elapsed, error)) in outcomes {
        assert!(elapsed < LIMIT + SLACK, "{call} took {elapsed:?}");
        assert!(
            matches!(error, Some(Error::Store(_))),
            "{call}: expected a store error, got {error:?}"
        );
    }
}

/// The same for every call of a login store (the index of live logins).
async fn every_login_call_is_a_store_error(logins: &dyn LoginStore) {
    let now = OffsetDateTime::now_utc();
    let touch = LoginTouch {
        last_used_at: now,
        expires_at: now + time::Duration::days(1),
        session_id: None,
    };
    let outcomes = tokio::join!(
        timed(logins.put(sample_login(), 10)),
        timed(logins.get("1", "login")),
        timed(logins.touch("1", "login", touch)),
        timed(logins.list("1")),
        timed(logins.delete("1", "login")),
        timed(logins.delete_for_user("1")),
    );
    let outcomes = [
        ("put", outcomes.0),
        ("get", outcomes.1),
        ("touch", outcomes.2),
        ("list", outcomes.3),
        ("delete", outcomes.4),
        ("delete_for_user", outcomes.5),
    ];
    for (call, (elapsed, error)) in outcomes {
        assert!(elapsed < LIMIT + SLACK, "login {call} took {elapsed:?}");
        assert!(
            matches!(error, Some(Error::Store(_))),
            "login {call}: expected a store error, got {error:?}"
        );
    }
}

/// The same for every call of a one-time token store; `delete_expired` too when it reaches
/// the backend (the SQL stores: Redis expires tokens itself and answers 0 without a call).
async fn every_token_call_is_a_store_error(tokens: &dyn TokenStore, cleanup_calls_backend: bool) {
    let (create, find, take, cleanup) = tokio::join!(
        timed(tokens.create(sample_one_time_token())),
        timed(tokens.find("one-time")),
        timed(tokens.take("one-time", &[1; 32])),
        timed(tokens.delete_expired()),
    );
    let mut outcomes = vec![("create", create), ("find", find), ("take", take)];
    if cleanup_calls_backend {
        outcomes.push(("delete_expired", cleanup));
    }
    for (call, (elapsed, error)) in outcomes {
        assert!(elapsed < LIMIT + SLACK, "token {call} took {elapsed:?}");
        assert!(
            matches!(error, Some(Error::Store(_))),
            "token {call}: expected a store error, got {error:?}"
        );
    }
}

/// Everything `OneTimeTokens` asks of `store` is bounded by its `store_timeout`, and a store
/// that fails is an error, never a token judged invalid (or valid).
async fn one_time_tokens_are_bounded_by_their_store_timeout(store: impl TokenStore, hung: bool) {
    let tokens = OneTimeTokens::new(store).store_timeout(LIMIT);
    let users = common::Users::new();
    let alice = users.by_name("alice").expect("alice");
    let ttl = Duration::from_secs(3600);
    let presented = remember_cookie();
    let (issue, unknown, consume) = tokio::join!(
        timed(tokens.issue(&alice, "password-reset", ttl)),
        timed(tokens.issue_if_known(None::<&common::User>, "password-reset", ttl)),
        timed(tokens.consume(&users, &presented, "password-reset", None)),
    );
    let what = "token store";
    assert_bounded("issue (create)", what, hung, issue);
    assert_bounded("issue_if_known (find)", what, hung, unknown);
    assert_bounded("consume (find)", what, hung, consume);
}

/// Asserts that `call` failed within the limit: with `Error::Timeout(what)` after at least
/// the limit when the server is `hung` (nothing else can end the call), else with a store
/// error or that timeout.
fn assert_bounded(call: &str, what: &str, hung: bool, (elapsed, error): (Duration, Option<Error>)) {
    assert!(elapsed < LIMIT + SLACK, "{call} took {elapsed:?}");
    match error {
        Some(Error::Timeout(name)) => {
            assert_eq!(name, what, "{call}");
            assert!(elapsed >= LIMIT, "{call} timed out early: {elapsed:?}");
        }
        Some(Error::Store(_)) if !hung => {}
        other => panic!("{call}: expected a store error or timeout, got {other:?}"),
    }
}

/// Every throttle store call `LoginThrottle` makes is bounded by its `store_timeout`.
async fn throttle_is_bounded_by_its_store_timeout(store: impl ThrottleStore, hung: bool) {
    let throttle = LoginThrottle::new(store).store_timeout(LIMIT);
    let addr = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let (check, failure, success) = tokio::join!(
        timed(throttle.check("alice", addr)),
        timed(throttle.record_failure("alice", addr)),
        timed(throttle.record_success("alice")),
    );
    let what = "throttle store";
    assert_bounded("check (failures)", what, hung, check);
    assert_bounded("record_failure", what, hung, failure);
    assert_bounded("record_success (reset)", what, hung, success);
}

/// The answer to a request, which must come within the limit.
async fn bounded<T>(request: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = tokio::time::timeout(LIMIT + SLACK, request).await;
    answer.unwrap_or_else(|_| panic!("no answer after {:?}", started.elapsed()))
}

/// A well-formed remember cookie for a token no store has: enough to make the library ask
/// the store.
fn remember_cookie() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&bytes[..16]),
        URL_SAFE_NO_PAD.encode(&bytes[16..])
    )
}

/// The test app with `store` for remember-me and every store call bounded by `LIMIT`.
fn app_on(store: impl RememberStore) -> common::TestApp {
    common::TestApp::with(|m| {
        m.store_timeout(LIMIT)
            .remember(Remember::new(store).secure(false))
    })
}

/// A browser with a remember cookie and no session, on an app whose remember store is down:
/// 503 within the manager's `store_timeout`, no session started, nobody logged in, and public
/// pages still work.
async fn remembered_request_is_refused(store: impl RememberStore) {
    let app = app_on(store);
    let mut client = app.client();
    client
        .cookies
        .insert("remember_token".to_owned(), remember_cookie());
    let reply = bounded(client.get("/protected")).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(client.session_id().is_none(), "no session was started");
    assert!(
        client.remember_cookie().is_some(),
        "the cookie is kept for later"
    );
    assert_eq!(client.get("/public").await.status, StatusCode::OK);
}

/// The remember-me calls a logged-in user's requests make (listing and revoking devices) are
/// bounded by `LoginManager::store_timeout` too, and fail with the library's error: handlers
/// on the test app's session store that answer with that error's text.
async fn remember_calls_are_bounded_by_the_store_timeout(
    store: impl RememberStore + Clone,
    hung: bool,
) {
    async fn devices(auth: common::Auth) -> Result<String, String> {
        let devices = auth.remember_devices().await.map_err(|e| e.to_string())?;
        Ok(devices.len().to_string())
    }
    async fn revoke_all(auth: common::Auth) -> Result<String, String> {
        let revoked = auth.revoke_all_devices().await.map_err(|e| e.to_string())?;
        Ok(revoked.to_string())
    }

    let app = app_on(store.clone());
    let mut client = app.client();
    // A plain login: the session only, no remember-me store call.
    assert_eq!(client.login("alice").await.status, StatusCode::OK);
    let manager = LoginManager::new(app.users.clone())
        .store_timeout(LIMIT)
        .remember(Remember::new(store).secure(false));
    let router = Router::new()
        .route("/devices", get(devices))
        .route("/devices/revoke-all", post(revoke_all))
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(app.store.clone()).with_secure(false));
    let send = |method: &str, path: &str| {
        let cookies = client
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookies)
            .header(header::USER_AGENT, &client.user_agent)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(client.addr));
        let router = router.clone();
        async move {
            let started = Instant::now();
            let response = bounded(router.oneshot(request)).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                started.elapsed(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let (list, revoke) = tokio::join!(send("GET", "/devices"), send("POST", "/devices/revoke-all"));
    for (call, (elapsed, body)) in [("list_for_user", list), ("delete_for_user", revoke)] {
        assert!(elapsed < LIMIT + SLACK, "{call} took {elapsed:?}");
        if body == "remember store timed out" {
            assert!(elapsed >= LIMIT, "{call} timed out early: {elapsed:?}");
        } else {
            assert!(
                !hung && body.starts_with("store error"),
                "{call}: expected the remember store's timeout, got {body:?}"
            );
        }
    }
}

/// Everything the library asks of `remember` and `throttle` is bounded by its timeouts.
async fn bounded_through_the_library<R>(remember: R, throttle: impl ThrottleStore, hung: bool)
where
    R: RememberStore + Clone,
{
    tokio::join!(
        throttle_is_bounded_by_its_store_timeout(throttle, hung),
        remember_calls_are_bounded_by_the_store_timeout(remember.clone(), hung),
        remembered_request_is_refused(remember),
    );
}

#[cfg(any(feature = "postgres", feature = "redis"))]
/// Servers to point stores at: none, a silent one, and a cuttable proxy to the real one.
mod net {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use super::*;

    /// A port with nothing listening: bound, then released.
    pub async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    }

    /// A server that accepts connections and never says a word.
    pub async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (addr, task)
    }

    /// A TCP forwarder to a real server that can be cut and restored: a backend outage and its
    /// recovery, without touching the shared server itself.
    pub struct Proxy {
        pub addr: SocketAddr,
        upstream: SocketAddr,
        tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }

    impl Proxy {
        pub async fn start(upstream: SocketAddr) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let proxy = Proxy {
                addr: listener.local_addr().unwrap(),
                upstream,
                tasks: Arc::default(),
            };
            proxy.serve(listener);
            proxy
        }

        fn serve(&self, listener: TcpListener) {
            let (upstream, tasks) = (self.upstream, Arc::clone(&self.tasks));
            let accept = tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    tasks.lock().unwrap().push(pipe);
                }
            });
            self.tasks.lock().unwrap().push(accept);
        }

        /// Closes the listener and every forwarded connection.
        pub fn cut(&self) {
            for task in self.tasks.lock().unwrap().drain(..) {
                task.abort();
            }
        }

        pub async fn restore(&self) {
            // The port was just released by `cut`; aborted tasks drop their sockets soon after.
            for _ in 0..50 {
                if let Ok(listener) = TcpListener::bind(self.addr).await {
                    return self.serve(listener);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("could not listen on {} again", self.addr);
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.cut();
        }
    }

    /// Logs in with "remember me" through `store` on an app with `store_timeout(LIMIT)`, cuts
    /// the backend: the remembered request is refused with 503 within the limit; restores it:
    /// the same browser is logged back in by its cookie.
    pub async fn outage_and_recovery(store: impl RememberStore, proxy: &Proxy) {
        let app = app_on(store);
        let mut client = app.client();
        assert_eq!(
            client.login_remembered("alice").await.status,
            StatusCode::OK
        );
        client.close_browser();

        proxy.cut();
        let reply = bounded(client.get("/protected")).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        assert!(client.session_id().is_none(), "no session was started");
        assert!(
            client.remember_cookie().is_some(),
            "the cookie is kept for later"
        );

        proxy.restore().await;
        // The client library reconnects in the background; give it a few tries.
        let mut whoami = String::new();
        for _ in 0..20 {
            whoami = client.whoami().await;
            if whoami.starts_with("alice") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(whoami.starts_with("alice "), "logged back in: {whoami}");
        assert!(whoami.contains("remembered=true"), "{whoami}");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use login_manager::stores::{
        SqliteLoginStore, SqliteRememberStore, SqliteThrottleStore, SqliteTokenStore,
    };
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    #[tokio::test]
    async fn unopenable_file_is_an_error_not_a_panic() {
        let options = SqliteConnectOptions::new()
            .filename("/nonexistent-directory/for/login-manager/tests.db")
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(LIMIT)
            .connect_lazy_with(options);
        let remember = SqliteRememberStore::new(pool.clone());
        let logins = SqliteLoginStore::new(pool.clone());
        let tokens = SqliteTokenStore::new(pool.clone());
        let throttle = SqliteThrottleStore::new(pool);
        let (elapsed, error) = timed(remember.migrate()).await;
        assert!(elapsed < LIMIT + SLACK, "migrate took {elapsed:?}");
        assert!(matches!(error, Some(Error::Store(_))), "{error:?}");
        let (elapsed, error) = timed(logins.migrate()).await;
        assert!(elapsed < LIMIT + SLACK, "login migrate took {elapsed:?}");
        assert!(matches!(error, Some(Error::Store(_))), "{error:?}");
        let (elapsed, error) = timed(tokens.migrate()).await;
        assert!(elapsed < LIMIT + SLACK, "token migrate took {elapsed:?}");
        assert!(matches!(error, Some(Error::Store(_))), "{error:?}");
        every_call_is_a_store_error(&remember, &throttle).await;
        every_login_call_is_a_store_error(&logins).await;
        every_token_call_is_a_store_error(&tokens, true).await;
        one_time_tokens_are_bounded_by_their_store_timeout(tokens, false).await;
        bounded_through_the_library(remember, throttle, false).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::net::SocketAddr;
    use std::str::FromStr;

    use super::net::{closed_port, outage_and_recovery, silent_server, Proxy};
    use super::*;
    use login_manager::stores::{
        PostgresLoginStore, PostgresRememberStore, PostgresThrottleStore, PostgresTokenStore,
    };
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    fn lazy_pool(addr: SocketAddr, acquire_timeout: Duration) -> sqlx::PgPool {
        let options = PgConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("postgres")
            .database("test");
        PgPoolOptions::new()
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options)
    }

    #[tokio::test]
    async fn refused_connection_is_a_store_error_within_the_acquire_timeout() {
        let pool = lazy_pool(closed_port().await, LIMIT);
        let remember = PostgresRememberStore::new(pool.clone());
        let logins = PostgresLoginStore::new(pool.clone());
        let tokens = PostgresTokenStore::new(pool.clone());
        let throttle = PostgresThrottleStore::new(pool);
        every_call_is_a_store_error(&remember, &throttle).await;
        every_login_call_is_a_store_error(&logins).await;
        every_token_call_is_a_store_error(&tokens, true).await;
        one_time_tokens_are_bounded_by_their_store_timeout(tokens, false).await;
        bounded_through_the_library(remember, throttle, false).await;
    }

    /// With a pool that would wait 30 s for a connection, the library's timeouts answer first.
    #[tokio::test]
    async fn hung_server_times_out_through_the_library() {
        let (addr, _server) = silent_server().await;
        let pool = lazy_pool(addr, Duration::from_secs(30));
        let remember = PostgresRememberStore::new(pool.clone());
        let tokens = PostgresTokenStore::new(pool.clone());
        let throttle = PostgresThrottleStore::new(pool);
        tokio::join!(
            bounded_through_the_library(remember, throttle, true),
            one_time_tokens_are_bounded_by_their_store_timeout(tokens, true),
        );
    }

    /// `migrate` runs outside any request: the pool's own `acquire_timeout` bounds it.
    #[tokio::test]
    async fn hung_server_migrate_is_bounded_by_the_acquire_timeout() {
        let (addr, _server) = silent_server().await;
        let remember = PostgresRememberStore::new(lazy_pool(addr, LIMIT));
        let (elapsed, error) = timed(remember.migrate()).await;
        assert!(
            LIMIT <= elapsed && elapsed < LIMIT + SLACK,
            "migrate took {elapsed:?}"
        );
        assert!(matches!(error, Some(Error::Store(_))), "{error:?}");
    }

    #[tokio::test]
    async fn outage_then_recovery_through_the_library() {
        let Some(direct) = store_support::backends::postgres_pool().await else {
            return;
        };
        let url = store_support::postgres_url();
        let options = PgConnectOptions::from_str(&url).unwrap();
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = Proxy::start(upstream).await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(LIMIT)
            .connect_lazy_with(options.host("127.0.0.1").port(proxy.addr.port()));
        let schema = store_support::unique("lm_test");
        let store = PostgresRememberStore::new(pool).schema(&schema);
        store.migrate().await.unwrap();

        let outcome = tokio::spawn({
            let store = store.clone();
            async move { outage_and_recovery(store, &proxy).await }
        })
        .await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&direct)
            .await
            .unwrap();
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

#[cfg(feature = "redis")]
mod redis {
    use std::net::SocketAddr;

    use super::net::{closed_port, outage_and_recovery, silent_server, Proxy};
    use super::*;
    use fred::prelude::*;
    use login_manager::stores::{
        RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore,
    };

    /// A pool for `addr` that is connecting (or failing to) in the background, as an app's
    /// pool is when Redis goes away; with fred's own `command_timeout`, if any.
    fn connecting_pool(
        addr: SocketAddr,
        policy: Option<ReconnectPolicy>,
        command_timeout: Option<Duration>,
    ) -> Pool {
        let config = Config {
            server: ServerConfig::new_centralized(addr.ip().to_string(), addr.port()),
            ..Config::default()
        };
        let performance = command_timeout.map(|timeout| PerformanceConfig {
            default_command_timeout: timeout,
            ..PerformanceConfig::default()
        });
        let pool = Pool::new(config, performance, None, policy, 1).unwrap();
        // The connection tasks run detached; dropping their handle does not stop them.
        drop(pool.connect());
        pool
    }

    /// fred holds commands while it is not connected; its own `default_command_timeout` (the
    /// counterpart of a sqlx pool's `acquire_timeout`) ends them: a store error.
    #[tokio::test]
    async fn refused_connection_is_a_store_error_within_the_command_timeout() {
        let addr = closed_port().await;
        for policy in [None, Some(ReconnectPolicy::new_constant(0, 50))] {
            let pool = connecting_pool(addr, policy, Some(LIMIT));
            let remember = RedisRememberStore::new(pool.clone());
            let logins = RedisLoginStore::new(pool.clone());
            let tokens = RedisTokenStore::new(pool.clone());
            let throttle = RedisThrottleStore::new(pool);
            every_call_is_a_store_error(&remember, &throttle).await;
            every_login_call_is_a_store_error(&logins).await;
            every_token_call_is_a_store_error(&tokens, false).await;
            one_time_tokens_are_bounded_by_their_store_timeout(tokens, false).await;
            bounded_through_the_library(remember, throttle, false).await;
        }
    }

    /// Without a command timeout, the library's timeouts bound every call.
    #[tokio::test]
    async fn refused_connection_is_bounded_by_the_library() {
        let addr = closed_port().await;
        for policy in [None, Some(ReconnectPolicy::new_constant(0, 50))] {
            let pool = connecting_pool(addr, policy, None);
            let remember = RedisRememberStore::new(pool.clone());
            let tokens = RedisTokenStore::new(pool.clone());
            let throttle = RedisThrottleStore::new(pool);
            tokio::join!(
                bounded_through_the_library(remember, throttle, false),
                one_time_tokens_are_bounded_by_their_store_timeout(tokens, false),
            );
        }
    }

    #[tokio::test]
    async fn hung_server_times_out_through_the_library() {
        let (addr, _server) = silent_server().await;
        let pool = connecting_pool(addr, None, None);
        let remember = RedisRememberStore::new(pool.clone());
        let tokens = RedisTokenStore::new(pool.clone());
        let throttle = RedisThrottleStore::new(pool);
        tokio::join!(
            bounded_through_the_library(remember, throttle, true),
            one_time_tokens_are_bounded_by_their_store_timeout(tokens, true),
        );
    }

    #[tokio::test]
    async fn outage_then_recovery_through_the_library() {
        let Some(direct) = store_support::backends::redis_pool().await else {
            return;
        };
        let url = store_support::redis_url();
        let config = Config::from_url(&url).unwrap();
        let ServerConfig::Centralized { server } = &config.server else {
            panic!("the test Redis is a single server");
        };
        let upstream = tokio::net::lookup_host((server.host.to_string(), server.port))
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = Proxy::start(upstream).await;
        let policy = ReconnectPolicy::new_constant(0, 50);
        let pool = connecting_pool(proxy.addr, Some(policy), None);
        pool.wait_for_connect().await.unwrap();
        let prefix = format!("{}:", store_support::unique("lm-test"));
        let store = RedisRememberStore::new(pool).key_prefix(&prefix);

        let outcome = tokio::spawn(async move { outage_and_recovery(store, &proxy).await }).await;
        store_support::backends::delete_keys(&direct, &prefix).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}
