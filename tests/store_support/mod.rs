//! Backends for the store tests: each test gets fresh, private storage (its own Postgres
//! schema, SQLite file or Redis key prefix), removed again when the test ends, pass or fail.
//!
//! Postgres and Redis are looked for at `LOGIN_MANAGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `LOGIN_MANAGER_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), and a Redis Cluster (`tests/redis_cluster.rs`) at
//! `LOGIN_MANAGER_TEST_REDIS_CLUSTER_URL` (default `redis-cluster://127.0.0.1:7101`, the one
//! `tests/support/redis-cluster.sh start` brings up). When one is not reachable, its tests print
//! `SKIPPED` and pass, except with `CI=true`, where they fail.
#![allow(dead_code)] // each test file uses a different part of this support module

pub mod cases;
pub mod login_cases;
pub mod token_cases;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use login_manager::{LoginStore, MemoryLoginStore};
use login_manager::{MemoryRememberStore, RememberStore};
use login_manager::{MemoryThrottleStore, ThrottleStore};
use login_manager::{MemoryTokenStore, TokenStore};

/// The stores under test, shared by the tasks of one test.
#[derive(Clone)]
pub struct Stores {
    pub remember: Arc<dyn RememberStore>,
    pub throttle: Arc<dyn ThrottleStore>,
    pub logins: Arc<dyn LoginStore>,
    pub tokens: Arc<dyn TokenStore>,
    /// Redis deletes an expired token (remember-me or one-time, and a login hash whose entries
    /// have all expired) by itself, so `find` no longer returns it and `delete_expired` has
    /// nothing to delete.
    pub native_expiry: bool,
}

/// One test per case of [`cases`] for `$backend` (a function of [`backends`]), in a module
/// named after the backend, one per case of [`login_cases`] in its submodule `logins`, and one
/// per case of [`token_cases`] in its submodule `tokens`.
#[allow(unused_macros)] // not every test file that includes this module runs the cases
macro_rules! conformance {
    (
        $backend:ident: $($case:ident),+ ;
        logins: $($login_case:ident),+ ;
        tokens: $($token_case:ident),+ $(,)?
    ) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::store_support::run(
                        crate::store_support::backends::$backend,
                        crate::store_support::cases::$case,
                    )
                    .await;
                }
            )+

            mod logins {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $login_case() {
                        crate::store_support::run(
                            crate::store_support::backends::$backend,
                            crate::store_support::login_cases::$login_case,
                        )
                        .await;
                    }
                )+
            }

            mod tokens {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $token_case() {
                        crate::store_support::run(
                            crate::store_support::backends::$backend,
                            crate::store_support::token_cases::$token_case,
                        )
                        .await;
                    }
                )+
            }
        }
    };
    ($($backend:ident),+ $(,)?) => {
        $($crate::store_support::conformance!($backend:
            create_then_find,
            rotate_needs_the_expected_hash,
            delete_removes_one_token,
            list_and_delete_for_user,
            expired_tokens_are_cleaned_up,
            concurrent_rotations_have_one_winner,
            throttle_counts_failures,
            throttle_window_is_fixed_and_restarts,
            throttle_reset,
            throttle_concurrent_increments,
            device_cookies_survive_other_clients_locks;
            logins:
            round_trip_put_get_list_delete,
            replace_keeps_created_at_and_returns_the_replaced_entry,
            bound_removes_expired_first_then_least_recently_used_and_returns_exactly_those,
            bound_holds_under_50_concurrent_puts_and_each_removal_is_returned_once,
            concurrent_replacements_return_each_replaced_entry_once,
            touch_never_recreates_a_missing_or_ended_login,
            touch_never_shortens_expiry_and_replaces_session_id_only_when_given,
            expired_logins_are_invisible_to_get_and_list,
            delete_for_user_ends_every_login_of_that_user_only_expired_included,
            delete_expired_removes_only_expired_logins,
            users_are_isolated_from_each_other,
            user_ids_with_braces_percent_and_quotes_stay_apart;
            tokens:
            create_then_find_round_trips,
            find_never_returns_an_expired_token,
            take_with_the_right_hash_succeeds_once_and_the_token_is_gone,
            take_with_a_wrong_hash_fails_and_leaves_the_token,
            fifty_parallel_takes_have_exactly_one_winner,
            delete_expired_removes_only_expired_tokens,
            tokens_of_different_selectors_are_independent,
        );)+
    };
}
// By path, `store_support::conformance!`: `tests/conformance.rs` and `tests/redis_cluster.rs`
// run the same list of cases.
#[allow(unused_imports)] // as the macro
pub(crate) use conformance;

type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Stores plus what removes their storage afterwards.
pub struct Backend {
    pub stores: Stores,
    teardown: Option<Teardown>,
}

/// Runs `case` on a fresh backend from `setup`, then tears the backend down, also when the
/// case panicked.
pub async fn run<S, SF, C, CF>(setup: S, case: C)
where
    S: FnOnce() -> SF,
    SF: Future<Output = Option<Backend>>,
    C: FnOnce(Stores) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let Some(backend) = setup().await else { return };
    let teardown = backend.teardown.unwrap_or_else(|| Box::pin(async {}));
    with_teardown(case(backend.stores.clone()), teardown).await;
}

/// Runs `case`, then `teardown`, also when the case panicked (it runs in its own task, so a
/// panic is caught as a `JoinError` and re-raised after the teardown).
pub async fn with_teardown<CF>(case: CF, teardown: impl Future<Output = ()>)
where
    CF: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(case).await;
    teardown.await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("test task failed: {error}"),
        }
    }
}

/// A name no other test (in this or a parallel run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A missing service: a failure in CI, a loud skip elsewhere.
pub fn unavailable<T>(service: &str, url: &str, error: &dyn std::fmt::Display) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{service} not reachable at {url} (CI=true requires it): {error}");
    }
    // Straight to stderr: `eprintln!` would be captured, and hidden, by the test harness.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("\n*** SKIPPED ({service} not reachable at {url}): {error} ***\n").as_bytes(),
    );
    None
}

pub fn postgres_url() -> String {
    std::env::var("LOGIN_MANAGER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("LOGIN_MANAGER_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn redis_cluster_url() -> String {
    std::env::var("LOGIN_MANAGER_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis-cluster://127.0.0.1:7101".to_owned())
}

/// How long a test waits for a service to answer before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A fresh, empty Postgres database for a program that creates its own tables (the demo);
/// [`PgDatabase::drop_database`] removes it.
#[cfg(feature = "postgres")]
pub struct PgDatabase {
    /// The URL of the new database.
    pub url: String,
    name: String,
    admin: sqlx::PgPool,
}

#[cfg(feature = "postgres")]
impl PgDatabase {
    /// Creates `lm_demo_<unique>` next to the test database, or `None` (skipped) when the
    /// server is not reachable.
    pub async fn create() -> Option<Self> {
        let admin = backends::postgres_pool().await?;
        let name = unique("lm_demo");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&postgres_url()).expect("a Postgres URL");
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            name,
            admin,
        })
    }

    /// Drops the database, closing the connections still open to it.
    pub async fn drop_database(self) {
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(&statement)
            .execute(&self.admin)
            .await
            .expect("drop the test database");
        self.admin.close().await;
    }
}

pub mod backends {
    use super::*;

    pub async fn memory() -> Option<Backend> {
        Some(Backend {
            stores: Stores {
                remember: Arc::new(MemoryRememberStore::new()),
                throttle: Arc::new(MemoryThrottleStore::new()),
                logins: Arc::new(MemoryLoginStore::new()),
                tokens: Arc::new(MemoryTokenStore::new()),
                native_expiry: false,
            },
            teardown: None,
        })
    }

    /// A temporary database file, WAL mode, and table names that need quoting.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite() -> Option<Backend> {
        use login_manager::stores::{
            SqliteLoginStore, SqliteRememberStore, SqliteThrottleStore, SqliteTokenStore,
        };
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

        let dir = tempfile::tempdir().expect("temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("stores.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("open the SQLite file");
        let remember = SqliteRememberStore::new(pool.clone()).table_name("remember \"tokens\"");
        remember.migrate().await.expect("migrate remember");
        let throttle = SqliteThrottleStore::new(pool.clone()).table_name("Throttle");
        throttle.migrate().await.expect("migrate throttle");
        let logins = SqliteLoginStore::new(pool.clone()).table_name("login 'index'");
        logins.migrate().await.expect("migrate logins");
        let tokens = SqliteTokenStore::new(pool.clone()).table_name("one-time \"tokens\"");
        tokens.migrate().await.expect("migrate tokens");
        Some(Backend {
            stores: Stores {
                remember: Arc::new(remember),
                throttle: Arc::new(throttle),
                logins: Arc::new(logins),
                tokens: Arc::new(tokens),
                native_expiry: false,
            },
            teardown: Some(Box::pin(async move {
                pool.close().await;
                drop(dir);
            })),
        })
    }

    /// A Postgres pool, or `None` (skipped) when the server is not reachable.
    #[cfg(feature = "postgres")]
    pub async fn postgres_pool() -> Option<sqlx::PgPool> {
        let url = postgres_url();
        let connect = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(&url);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(pool)) => Some(pool),
            Ok(Err(error)) => unavailable("postgres", &url, &error),
            Err(elapsed) => unavailable("postgres", &url, &elapsed),
        }
    }

    /// A private schema, created by the stores' `migrate()` and dropped at the end.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Backend> {
        use login_manager::stores::{
            PostgresLoginStore, PostgresRememberStore, PostgresThrottleStore, PostgresTokenStore,
        };

        let pool = postgres_pool().await?;
        let schema = unique("lm_test");
        let remember = PostgresRememberStore::new(pool.clone()).schema(&schema);
        remember.migrate().await.expect("migrate remember");
        let throttle = PostgresThrottleStore::new(pool.clone()).schema(&schema);
        throttle.migrate().await.expect("migrate throttle");
        let logins = PostgresLoginStore::new(pool.clone()).schema(&schema);
        logins.migrate().await.expect("migrate logins");
        let tokens = PostgresTokenStore::new(pool.clone()).schema(&schema);
        tokens.migrate().await.expect("migrate tokens");
        Some(Backend {
            stores: Stores {
                remember: Arc::new(remember),
                throttle: Arc::new(throttle),
                logins: Arc::new(logins),
                tokens: Arc::new(tokens),
                native_expiry: false,
            },
            teardown: Some(Box::pin(async move {
                let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::query(&drop_schema)
                    .execute(&pool)
                    .await
                    .expect("drop the test schema");
                pool.close().await;
            })),
        })
    }

    /// A connected fred pool, or `None` (skipped) when the server is not reachable.
    #[cfg(feature = "redis")]
    pub async fn redis_pool() -> Option<fred::clients::Pool> {
        connect_redis("redis", &redis_url(), "").await
    }

    /// A fred pool connected to a Redis Cluster (a `redis-cluster://` URL: fred's
    /// `ServerConfig::Clustered`, which follows `MOVED` and routes each command by its keys'
    /// slot), or `None` (skipped) when it is not reachable.
    #[cfg(feature = "redis")]
    pub async fn redis_cluster_pool() -> Option<fred::clients::Pool> {
        start_local_cluster();
        let hint = " (run tests/support/redis-cluster.sh start)";
        let pool = connect_redis("Redis Cluster", &redis_cluster_url(), hint).await?;
        assert!(
            fred::prelude::ClientLike::is_clustered(&pool),
            "LOGIN_MANAGER_TEST_REDIS_CLUSTER_URL must be a redis-cluster:// URL"
        );
        Some(pool)
    }

    /// Brings up the local three-node cluster (once per test process) unless the tests were
    /// pointed at another one: the README's test command needs no set-up of its own. A failure
    /// is left to the connection attempt to report.
    #[cfg(feature = "redis")]
    fn start_local_cluster() {
        static STARTED: std::sync::Once = std::sync::Once::new();
        if std::env::var_os("LOGIN_MANAGER_TEST_REDIS_CLUSTER_URL").is_some() {
            return;
        }
        STARTED.call_once(|| {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/redis-cluster.sh"
            );
            match std::process::Command::new(script).arg("start").output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "{script} start failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(error) => eprintln!("{script} start did not run: {error}"),
            }
        });
    }

    #[cfg(feature = "redis")]
    async fn connect_redis(service: &str, url: &str, hint: &str) -> Option<fred::clients::Pool> {
        use fred::prelude::*;

        let config = Config::from_url(url).expect("redis url");
        let pool = Pool::new(config, None, None, None, 4).expect("redis pool");
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, pool.init()).await {
            Ok(Ok(_)) => return Some(pool),
            Ok(Err(error)) => error.to_string(),
            Err(elapsed) => elapsed.to_string(),
        };
        let _ = pool.quit().await;
        unavailable(service, url, &format!("{error}{hint}"))
    }

    /// The primaries of a Redis Cluster, from fred's view of the slots: commands sent to one
    /// of them with `with_cluster_node` reach that node only. `None` for a single server.
    #[cfg(feature = "redis")]
    pub fn cluster_primaries(
        pool: &fred::clients::Pool,
    ) -> Option<Vec<fred::types::config::Server>> {
        let clients = pool.next().split_cluster().ok()?;
        Some(
            clients
                .iter()
                .flat_map(|c| fred::prelude::ClientLike::client_config(c).server.hosts())
                .collect(),
        )
    }

    /// The keys under `prefix`: `KEYS` answers for one node only, so on a Cluster it is asked
    /// of every primary.
    #[cfg(feature = "redis")]
    pub async fn list_keys(pool: &fred::clients::Pool, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        match cluster_primaries(pool) {
            Some(primaries) => {
                for node in primaries {
                    keys.extend(node_keys(pool, &node, prefix).await);
                }
            }
            None => keys = keys_command(pool, prefix).await,
        }
        keys
    }

    /// The keys under `prefix` held by one node of a Cluster.
    #[cfg(feature = "redis")]
    pub async fn node_keys(
        pool: &fred::clients::Pool,
        node: &fred::types::config::Server,
        prefix: &str,
    ) -> Vec<String> {
        keys_command(&pool.next().with_cluster_node(node.clone()), prefix).await
    }

    #[cfg(feature = "redis")]
    async fn keys_command(client: &impl fred::prelude::ClientLike, prefix: &str) -> Vec<String> {
        use fred::types::CustomCommand;

        client
            .custom(
                CustomCommand::new_static("KEYS", None, false),
                vec![format!("{prefix}*")],
            )
            .await
            .expect("list test keys")
    }

    /// Deletes every key under `prefix` (on every node of a Cluster).
    #[cfg(feature = "redis")]
    pub async fn delete_keys(pool: &fred::clients::Pool, prefix: &str) {
        use fred::prelude::*;

        for key in list_keys(pool, prefix).await {
            let _: i64 = pool.del(key).await.expect("delete a test key");
        }
    }

    /// A private key prefix, whose keys are deleted at the end.
    #[cfg(feature = "redis")]
    pub async fn redis() -> Option<Backend> {
        redis_stores(redis_pool().await?).await
    }

    /// The same, on a Redis Cluster.
    #[cfg(feature = "redis")]
    pub async fn redis_cluster() -> Option<Backend> {
        redis_stores(redis_cluster_pool().await?).await
    }

    #[cfg(feature = "redis")]
    async fn redis_stores(pool: fred::clients::Pool) -> Option<Backend> {
        use fred::prelude::*;
        use login_manager::stores::{
            RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore,
        };

        let prefix = format!("{}:", unique("lm-test"));
        let remember = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
        let throttle = RedisThrottleStore::new(pool.clone()).key_prefix(&prefix);
        let logins = RedisLoginStore::new(pool.clone()).key_prefix(&prefix);
        let tokens = RedisTokenStore::new(pool.clone()).key_prefix(&prefix);
        Some(Backend {
            stores: Stores {
                remember: Arc::new(remember),
                throttle: Arc::new(throttle),
                logins: Arc::new(logins),
                tokens: Arc::new(tokens),
                native_expiry: true,
            },
            teardown: Some(Box::pin(async move {
                delete_keys(&pool, &prefix).await;
                let _ = pool.quit().await;
            })),
        })
    }
}
