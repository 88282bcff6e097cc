//! The shared stores when their backend is down: a refused connection or a server that never
//! answers gives `Error::Store` or `Error::Timeout` within the configured timeout, never a
//! panic; and through the library, a remembered request then gets a 503 and logs nobody in.
#![cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]

mod common;
mod store_support;

use std::future::Future;
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use http::StatusCode;
use login_manager::remember::{RememberStore, RememberToken, Rotation};
use login_manager::{Error, Remember, ThrottleStore};
use rand::RngCore;
use time::OffsetDateTime;

/// The timeout the stores get in these tests.
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

/// Runs a store call; how long it took and its error, if any.
async fn timed<T>(
    call: impl Future<Output = login_manager::Result<T>>,
) -> (Duration, Option<Error>) {
    let started = Instant::now();
    let error = call.await.err();
    (started.elapsed(), error)
}

/// Every call of both stores fails with a store error or a timeout, each within the limit.
/// With `hung`, only a timeout will do: nothing ever answers. The calls run concurrently, so
/// that the test waits for one timeout, not nine.
async fn every_call_fails(remember: &dyn RememberStore, throttle: &dyn ThrottleStore, hung: bool) {
    let rotation = Rotation {
        new_hash: [2; 32],
        rotated_at: OffsetDateTime::now_utc(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(1),
    };
    let window = Duration::from_secs(60);
    let (r, t) = ("remember store", "throttle store");
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
        ("create", r, outcomes.0),
        ("find", r, outcomes.1),
        ("rotate", r, outcomes.2),
        ("delete", r, outcomes.3),
        ("delete_for_user", r, outcomes.4),
        ("list_for_user", r, outcomes.5),
        ("failures", t, outcomes.6),
        ("record_failure", t, outcomes.7),
        ("reset", t, outcomes.8),
    ];
    for (call, store, (elapsed, error)) in outcomes {
        assert!(elapsed < LIMIT + SLACK, "{call} took {elapsed:?}");
        match error {
            Some(Error::Timeout(name)) => assert_eq!(name, store, "{call}"),
            Some(Error::Store(_)) if !hung => {}
            other => panic!("{call}: expected a store error or timeout, got {other:?}"),
        }
    }
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

/// A browser with a remember cookie and no session, on an app whose remember store is down:
/// 503, no session started, nobody logged in, and public pages still work.
async fn remembered_request_is_refused(store: impl RememberStore) {
    let app = common::TestApp::with(|m| m.remember(Remember::new(store).secure(false)));
    let mut client = app.client();
    client
        .cookies
        .insert("remember_token".to_owned(), remember_cookie());
    let started = Instant::now();
    let reply = client.get("/protected").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(
        started.elapsed() < LIMIT + SLACK,
        "took {:?}",
        started.elapsed()
    );
    assert!(client.session_id().is_none(), "no session was started");
    assert!(
        client.remember_cookie().is_some(),
        "the cookie is kept for later"
    );
    assert_eq!(client.get("/public").await.status, StatusCode::OK);
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

    /// Logs in with "remember me" through `store`, cuts the backend: the remembered request is
    /// refused with 503; restores it: the same browser is logged back in by its cookie.
    pub async fn outage_and_recovery(store: impl RememberStore, proxy: &Proxy) {
        let app = common::TestApp::with(|m| m.remember(Remember::new(store).secure(false)));
        let mut client = app.client();
        assert_eq!(
            client.login_remembered("alice").await.status,
            StatusCode::OK
        );
        client.close_browser();

        proxy.cut();
        let reply = client.get("/protected").await;
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
    use login_manager::stores::sqlite::{SqliteRememberStore, SqliteThrottleStore};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    #[tokio::test]
    async fn unopenable_file_is_an_error_not_a_panic() {
        let options = SqliteConnectOptions::new()
            .filename("/nonexistent-directory/for/login-manager/tests.db")
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(LIMIT)
            .connect_lazy_with(options);
        let remember = SqliteRememberStore::new(pool.clone()).timeout(LIMIT);
        let throttle = SqliteThrottleStore::new(pool).timeout(LIMIT);
        assert!(remember.migrate().await.is_err());
        every_call_fails(&remember, &throttle, false).await;
        remembered_request_is_refused(remember).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::net::SocketAddr;
    use std::str::FromStr;

    use super::net::{closed_port, outage_and_recovery, silent_server, Proxy};
    use super::*;
    use login_manager::stores::postgres::{PostgresRememberStore, PostgresThrottleStore};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    fn lazy_pool(addr: SocketAddr) -> sqlx::PgPool {
        let options = PgConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("postgres")
            .database("test");
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options)
    }

    #[tokio::test]
    async fn refused_connection_is_an_error_within_the_timeout() {
        let pool = lazy_pool(closed_port().await);
        let remember = PostgresRememberStore::new(pool.clone()).timeout(LIMIT);
        let throttle = PostgresThrottleStore::new(pool).timeout(LIMIT);
        every_call_fails(&remember, &throttle, false).await;
        remembered_request_is_refused(remember).await;
    }

    #[tokio::test]
    async fn hung_server_times_out() {
        let (addr, _server) = silent_server().await;
        let pool = lazy_pool(addr);
        let remember = PostgresRememberStore::new(pool.clone()).timeout(LIMIT);
        let throttle = PostgresThrottleStore::new(pool).timeout(LIMIT);
        let started = Instant::now();
        assert!(matches!(
            remember.migrate().await,
            Err(Error::Timeout("remember store"))
        ));
        assert!(started.elapsed() >= LIMIT);
        every_call_fails(&remember, &throttle, true).await;
        remembered_request_is_refused(remember).await;
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
        let store = PostgresRememberStore::new(pool)
            .schema(&schema)
            .timeout(LIMIT);
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
    use login_manager::stores::redis::{RedisRememberStore, RedisThrottleStore};

    /// A pool for `addr` that is connecting (or failing to) in the background, as an app's
    /// pool is when Redis goes away.
    fn connecting_pool(addr: SocketAddr, policy: Option<ReconnectPolicy>) -> Pool {
        let config = Config {
            server: ServerConfig::new_centralized(addr.ip().to_string(), addr.port()),
            ..Config::default()
        };
        let pool = Pool::new(config, None, None, policy, 1).unwrap();
        // The connection tasks run detached; dropping their handle does not stop them.
        drop(pool.connect());
        pool
    }

    #[tokio::test]
    async fn refused_connection_is_an_error_within_the_timeout() {
        let addr = closed_port().await;
        for policy in [None, Some(ReconnectPolicy::new_constant(0, 50))] {
            let pool = connecting_pool(addr, policy);
            let remember = RedisRememberStore::new(pool.clone()).timeout(LIMIT);
            let throttle = RedisThrottleStore::new(pool).timeout(LIMIT);
            every_call_fails(&remember, &throttle, false).await;
            remembered_request_is_refused(remember).await;
        }
    }

    #[tokio::test]
    async fn hung_server_times_out() {
        let (addr, _server) = silent_server().await;
        let pool = connecting_pool(addr, None);
        let remember = RedisRememberStore::new(pool.clone()).timeout(LIMIT);
        let throttle = RedisThrottleStore::new(pool).timeout(LIMIT);
        every_call_fails(&remember, &throttle, true).await;
        remembered_request_is_refused(remember).await;
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
        let pool = connecting_pool(proxy.addr, Some(ReconnectPolicy::new_constant(0, 50)));
        pool.wait_for_connect().await.unwrap();
        let prefix = format!("{}:", store_support::unique("lm-test"));
        let store = RedisRememberStore::new(pool)
            .key_prefix(&prefix)
            .timeout(LIMIT);

        let outcome = tokio::spawn(async move { outage_and_recovery(store, &proxy).await }).await;
        store_support::backends::delete_keys(&direct, &prefix).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}
