//! What only some stores have: the SQL stores' migrations and cleanup, and the Redis stores'
//! key layout (hash tags, expiries, pruning); how each login and one-time token store reports
//! malformed stored data. The behaviour all stores share is in `conformance.rs`.

mod store_support;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql {
    use std::future::Future;
    use std::time::Duration;

    use login_manager::ThrottleStore;
    use login_manager::{RememberStore, RememberToken};
    use time::OffsetDateTime;

    /// The SQL stores' own calls, beyond the store traits: one trait so that each case below
    /// is written once for SQLite and Postgres.
    pub trait SqlStore: Clone + Send + Sync + 'static {
        fn migrate(&self) -> impl Future<Output = Result<(), login_manager::Error>> + Send;
        fn delete_expired(&self) -> impl Future<Output = Result<u64, login_manager::Error>> + Send;
        fn continuously_delete_expired(self, period: Duration) -> impl Future<Output = ()> + Send;
    }

    macro_rules! sql_store {
        ($($store:ty),+) => {$(
            impl SqlStore for $store {
                fn migrate(&self) -> impl Future<Output = Result<(), login_manager::Error>> + Send {
                    <$store>::migrate(self)
                }
                fn delete_expired(&self) -> impl Future<Output = Result<u64, login_manager::Error>> + Send {
                    <$store>::delete_expired(self)
                }
                fn continuously_delete_expired(self, period: Duration) -> impl Future<Output = ()> + Send {
                    <$store>::continuously_delete_expired(self, period)
                }
            }
        )+};
    }

    #[cfg(feature = "sqlite")]
    sql_store!(
        login_manager::stores::SqliteRememberStore,
        login_manager::stores::SqliteThrottleStore
    );
    #[cfg(feature = "postgres")]
    sql_store!(
        login_manager::stores::PostgresRememberStore,
        login_manager::stores::PostgresThrottleStore
    );

    fn token(selector: &str, expires_in: time::Duration) -> RememberToken {
        let now = OffsetDateTime::now_utc();
        RememberToken {
            selector: selector.to_owned(),
            validator_hash: [1; 32],
            previous_hash: None,
            rotated_at: None,
            user_id: "1".to_owned(),
            auth_hash: String::new(),
            created_at: now,
            last_used_at: now,
            expires_at: now + expires_in,
            user_agent: String::new(),
        }
    }

    /// `migrate()` again changes nothing; ended windows are deleted by `delete_expired`, open
    /// ones are kept.
    pub async fn migrate_again_and_delete_ended_windows(
        remember: impl RememberStore + SqlStore,
        throttle: impl ThrottleStore + SqlStore,
    ) {
        remember.migrate().await.unwrap();
        throttle.migrate().await.unwrap();
        throttle
            .record_failure("short", Duration::from_secs(1))
            .await
            .unwrap();
        throttle
            .record_failure("long", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(throttle.delete_expired().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(throttle.delete_expired().await.unwrap(), 1);
        assert_eq!(throttle.failures("long").await.unwrap().unwrap().count, 1);
        assert_eq!(throttle.delete_expired().await.unwrap(), 0);
    }

    /// The cleanup tasks delete expired tokens and ended windows in the background.
    pub async fn cleanup_tasks_run_in_the_background(
        remember: impl RememberStore + SqlStore,
        throttle: impl ThrottleStore + SqlStore,
    ) {
        remember
            .create(token("expired", -time::Duration::seconds(1)))
            .await
            .unwrap();
        remember
            .create(token("live", time::Duration::days(1)))
            .await
            .unwrap();
        throttle
            .record_failure("short", Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let tasks = [
            tokio::spawn(
                remember
                    .clone()
                    .continuously_delete_expired(Duration::from_secs(1)),
            ),
            tokio::spawn(
                throttle
                    .clone()
                    .continuously_delete_expired(Duration::from_secs(1)),
            ),
        ];
        // The first round runs at once; the next ones find nothing more to delete.
        let mut cleaned = false;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let token_gone = remember.find("expired").await.unwrap().is_none();
            // Nothing left for a manual round means the task already deleted the window.
            let window_gone = throttle.delete_expired().await.unwrap() == 0;
            if token_gone && window_gone {
                cleaned = true;
                break;
            }
        }
        for task in tasks {
            task.abort();
        }
        assert!(cleaned, "the cleanup tasks did not run");
        assert!(remember.find("live").await.unwrap().is_some());
    }

    #[cfg(feature = "sqlite")]
    mod sqlite {
        use login_manager::stores::{SqliteRememberStore, SqliteThrottleStore};
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

        async fn stores() -> (SqliteRememberStore, SqliteThrottleStore, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join("specific.db"))
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            let remember = SqliteRememberStore::new(pool.clone());
            remember.migrate().await.unwrap();
            let throttle = SqliteThrottleStore::new(pool);
            throttle.migrate().await.unwrap();
            (remember, throttle, dir)
        }

        #[tokio::test]
        async fn migrate_again_and_delete_ended_windows() {
            let (remember, throttle, _dir) = stores().await;
            super::migrate_again_and_delete_ended_windows(remember, throttle).await;
        }

        #[tokio::test]
        async fn cleanup_tasks_run_in_the_background() {
            let (remember, throttle, _dir) = stores().await;
            super::cleanup_tasks_run_in_the_background(remember, throttle).await;
        }

        /// `migrate` can run again, and a row the store cannot read (SQLite keeps any value
        /// in any column) is an `Error::Store` for every call that reads it, not a panic and
        /// not a silently missing login.
        #[tokio::test]
        async fn login_store_migrates_again_and_a_malformed_row_is_a_store_error() {
            use login_manager::stores::SqliteLoginStore;
            use login_manager::{Error, LoginStore};

            let (remember, _throttle, _dir) = stores().await;
            let logins = SqliteLoginStore::new(remember.pool().clone());
            logins.migrate().await.unwrap();
            logins.migrate().await.unwrap();
            sqlx::query(
                "INSERT INTO login_index VALUES \
                 ('bad', '1', NULL, NULL, 'yesterday', 0, 253402300799000, 'ua', 0)",
            )
            .execute(remember.pool())
            .await
            .unwrap();
            let store_error = |r: Result<_, Error>| matches!(r, Err(Error::Store(_)));
            assert!(store_error(logins.get("1", "bad").await.map(drop)));
            assert!(store_error(logins.list("1").await.map(drop)));
            assert!(store_error(logins.delete_for_user("1").await.map(drop)));
        }

        /// The one-time token table: `migrate` can run again, and a row the store cannot read
        /// (a hash of the wrong length, a time that is not a number) is an `Error::Store` for
        /// `find`, not a panic and not a token that silently does not exist.
        #[tokio::test]
        async fn token_store_migrates_again_and_a_malformed_row_is_a_store_error() {
            use login_manager::stores::SqliteTokenStore;
            use login_manager::{Error, TokenStore};

            let (remember, _throttle, _dir) = stores().await;
            let tokens = SqliteTokenStore::new(remember.pool().clone());
            tokens.migrate().await.unwrap();
            tokens.migrate().await.unwrap();
            let far = 253_402_300_799_000_i64;
            for (selector, hash, created, expires) in [
                ("short-hash", "x'0102'", "0".to_owned(), far.to_string()),
                (
                    "bad-created",
                    "zeroblob(32)",
                    "'yesterday'".to_owned(),
                    far.to_string(),
                ),
                (
                    "bad-expiry",
                    "zeroblob(32)",
                    "0".to_owned(),
                    "'never'".to_owned(),
                ),
            ] {
                sqlx::query(&format!(
                    "INSERT INTO login_one_time_tokens VALUES \
                     ('{selector}', {hash}, 'password-reset', '1', 'h', {created}, {expires})"
                ))
                .execute(remember.pool())
                .await
                .unwrap();
                let found = tokens.find(selector).await;
                assert!(
                    matches!(found, Err(Error::Store(_))),
                    "{selector}: {found:?}"
                );
            }
            // A sound row next to them reads back.
            let now = time::OffsetDateTime::now_utc();
            let sound = login_manager::StoredToken {
                selector: "sound".to_owned(),
                validator_hash: [3; 32],
                purpose: "verify-email".to_owned(),
                user_id: "1".to_owned(),
                auth_hash: "h".to_owned(),
                created_at: now.replace_millisecond(now.millisecond()).unwrap(),
                expires_at: now.replace_millisecond(now.millisecond()).unwrap()
                    + time::Duration::hours(1),
            };
            tokens.create(sound.clone()).await.unwrap();
            assert_eq!(tokens.find("sound").await.unwrap(), Some(sound));
        }
    }

    #[cfg(feature = "postgres")]
    mod postgres {
        use std::future::Future;

        use login_manager::stores::{PostgresRememberStore, PostgresThrottleStore};

        use crate::store_support::{backends::postgres_pool, unique};

        /// Runs `case` on stores in a fresh schema, which is dropped afterwards.
        async fn in_schema<C, F>(case: C)
        where
            C: FnOnce(PostgresRememberStore, PostgresThrottleStore, String) -> F,
            F: Future<Output = ()> + Send + 'static,
        {
            let Some(pool) = postgres_pool().await else {
                return;
            };
            let schema = unique("lm_test");
            let remember = PostgresRememberStore::new(pool.clone()).schema(&schema);
            let throttle = PostgresThrottleStore::new(pool.clone()).schema(&schema);
            let outcome = tokio::spawn(case(remember, throttle, schema.clone())).await;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            if let Err(error) = outcome {
                std::panic::resume_unwind(error.into_panic());
            }
        }

        /// Instances starting at once all migrate without error, and the tables and indexes
        /// land in the configured schema under the default names.
        #[tokio::test]
        async fn concurrent_migrations_create_the_documented_tables() {
            in_schema(|remember, throttle, schema| async move {
                let mut runs = Vec::new();
                for _ in 0..4 {
                    let (remember, throttle) = (remember.clone(), throttle.clone());
                    runs.push(tokio::spawn(async move {
                        remember.migrate().await.unwrap();
                        throttle.migrate().await.unwrap();
                    }));
                }
                for run in runs {
                    run.await.unwrap();
                }
                let pool = remember.pool();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = $1 ORDER BY 1",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert_eq!(tables, ["login_remember_tokens", "login_throttle"]);
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert_eq!(
                    indexes,
                    [
                        "login_remember_tokens_expires_at_idx",
                        "login_remember_tokens_pkey",
                        "login_remember_tokens_user_id_idx",
                        "login_throttle_pkey",
                        "login_throttle_window_end_idx",
                    ]
                );
            })
            .await;
        }

        /// The login index: concurrent migrations create the documented table, its primary
        /// key `(user_id, id)` and its `expires_at` index, in the configured schema.
        #[tokio::test]
        async fn login_index_migrates_concurrently_into_the_documented_table() {
            use login_manager::stores::PostgresLoginStore;

            in_schema(|remember, _, schema| async move {
                let logins = PostgresLoginStore::new(remember.pool().clone()).schema(&schema);
                let mut runs = Vec::new();
                for _ in 0..4 {
                    let logins = logins.clone();
                    runs.push(tokio::spawn(async move { logins.migrate().await.unwrap() }));
                }
                for run in runs {
                    run.await.unwrap();
                }
                let pool = remember.pool();
                let columns: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text, is_nullable::text \
                     FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = 'login_index' \
                     ORDER BY ordinal_position",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                let expected = [
                    ("id", "text", "NO"),
                    ("user_id", "text", "NO"),
                    ("session_id", "text", "YES"),
                    ("remember_selector", "text", "YES"),
                    ("created_at", "timestamp with time zone", "NO"),
                    ("last_used_at", "timestamp with time zone", "NO"),
                    ("expires_at", "timestamp with time zone", "NO"),
                    ("user_agent", "text", "NO"),
                    ("remembered", "boolean", "NO"),
                ]
                .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
                assert_eq!(columns, expected);
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT indexdef::text FROM pg_indexes \
                     WHERE schemaname = $1 AND tablename = 'login_index' ORDER BY 1",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert_eq!(indexes.len(), 2, "{indexes:?}");
                assert!(
                    indexes[0].contains("login_index_expires_at_idx"),
                    "{indexes:?}"
                );
                assert!(indexes[0].ends_with("(expires_at)"), "{indexes:?}");
                assert!(indexes[1].contains("login_index_pkey"), "{indexes:?}");
                assert!(indexes[1].ends_with("(user_id, id)"), "{indexes:?}");
            })
            .await;
        }

        /// One-time tokens: concurrent migrations create the documented table, its primary
        /// key `selector` and its `expires_at` index, in the configured schema; a stored hash
        /// of the wrong length is an `Error::Store`, not a panic.
        #[tokio::test]
        async fn token_table_migrates_concurrently_into_the_documented_table() {
            use login_manager::stores::PostgresTokenStore;
            use login_manager::{Error, TokenStore};

            in_schema(|remember, _, schema| async move {
                let tokens = PostgresTokenStore::new(remember.pool().clone()).schema(&schema);
                let mut runs = Vec::new();
                for _ in 0..4 {
                    let tokens = tokens.clone();
                    runs.push(tokio::spawn(async move { tokens.migrate().await.unwrap() }));
                }
                for run in runs {
                    run.await.unwrap();
                }
                let pool = remember.pool();
                let columns: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text, is_nullable::text \
                     FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = 'login_one_time_tokens' \
                     ORDER BY ordinal_position",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                let expected = [
                    ("selector", "text", "NO"),
                    ("validator_hash", "bytea", "NO"),
                    ("purpose", "text", "NO"),
                    ("user_id", "text", "NO"),
                    ("auth_hash", "text", "NO"),
                    ("created_at", "timestamp with time zone", "NO"),
                    ("expires_at", "timestamp with time zone", "NO"),
                ]
                .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
                assert_eq!(columns, expected);
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT indexdef::text FROM pg_indexes \
                     WHERE schemaname = $1 AND tablename = 'login_one_time_tokens' ORDER BY 1",
                )
                .bind(&schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert_eq!(indexes.len(), 2, "{indexes:?}");
                assert!(
                    indexes[0].contains("login_one_time_tokens_expires_at_idx"),
                    "{indexes:?}"
                );
                assert!(indexes[0].ends_with("(expires_at)"), "{indexes:?}");
                assert!(
                    indexes[1].contains("login_one_time_tokens_pkey"),
                    "{indexes:?}"
                );
                assert!(indexes[1].ends_with("(selector)"), "{indexes:?}");

                sqlx::query(&format!(
                    "INSERT INTO \"{schema}\".login_one_time_tokens VALUES \
                     ('short', '\\x0102', 'magic-link', '1', 'h', now(), now() + interval '1 hour')"
                ))
                .execute(pool)
                .await
                .unwrap();
                let found = tokens.find("short").await;
                assert!(matches!(found, Err(Error::Store(_))), "{found:?}");
            })
            .await;
        }

        #[tokio::test]
        async fn migrate_again_and_delete_ended_windows() {
            in_schema(|remember, throttle, _| async move {
                remember.migrate().await.unwrap();
                throttle.migrate().await.unwrap();
                super::migrate_again_and_delete_ended_windows(remember, throttle).await;
            })
            .await;
        }

        #[tokio::test]
        async fn cleanup_tasks_run_in_the_background() {
            in_schema(|remember, throttle, _| async move {
                remember.migrate().await.unwrap();
                throttle.migrate().await.unwrap();
                super::cleanup_tasks_run_in_the_background(remember, throttle).await;
            })
            .await;
        }
    }
}

#[cfg(feature = "redis")]
mod redis {
    use std::collections::HashMap;
    use std::time::Duration;

    use fred::prelude::*;
    use fred::util::redis_keyslot;
    use login_manager::stores::{
        RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore,
    };
    use login_manager::{Error, LoginStore, LoginTouch, StoredLogin, ThrottleStore};
    use login_manager::{RememberStore, RememberToken, Rotation};
    use login_manager::{StoredToken, TokenStore};
    use time::OffsetDateTime;

    use crate::store_support::backends::{delete_keys, redis_pool};
    use crate::store_support::unique;

    fn token(selector: &str, user_id: &str, expires_in: time::Duration) -> RememberToken {
        let now = OffsetDateTime::now_utc();
        RememberToken {
            selector: selector.to_owned(),
            validator_hash: [1; 32],
            previous_hash: None,
            rotated_at: None,
            user_id: user_id.to_owned(),
            auth_hash: "h".to_owned(),
            created_at: now,
            last_used_at: now,
            expires_at: now + expires_in,
            user_agent: String::new(),
        }
    }

    /// `SMEMBERS`, without turning on fred's `i-sets` for the library just for tests.
    async fn smembers(pool: &Pool, key: &str) -> Vec<String> {
        let command = fred::types::CustomCommand::new_static("SMEMBERS", None, false);
        pool.custom(command, vec![key]).await.unwrap()
    }

    async fn pttl(pool: &Pool, key: &str) -> i64 {
        pool.pttl(key).await.unwrap()
    }

    /// The keys named in the docs exist, a user's keys share one Cluster slot, and every key
    /// expires with what it holds, also after a rotation slides the expiry.
    #[tokio::test]
    async fn keys_follow_the_documented_layout() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let remember = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
        let throttle = RedisThrottleStore::new(pool.clone()).key_prefix(&prefix);
        let user = "\"al}ice\"";
        let token_key = format!("{prefix}remember:token:{{\"al%7Dice\"}}:sel");
        let set_key = format!("{prefix}remember:user:{{\"al%7Dice\"}}");
        let pointer_key = format!("{prefix}remember:selector:sel");

        remember
            .create(token("sel", user, time::Duration::hours(1)))
            .await
            .unwrap();
        let fields: HashMap<String, String> = pool.hgetall(&token_key).await.unwrap();
        assert_eq!(fields["validator_hash"], hex::encode([1; 32]));
        assert_eq!(fields["user_id"], user);
        let members: Vec<String> = smembers(&pool, &set_key).await;
        assert_eq!(members, ["sel"]);
        let owner: String = pool.get(&pointer_key).await.unwrap();
        assert_eq!(owner, user);
        assert_eq!(
            redis_keyslot(token_key.as_bytes()),
            redis_keyslot(set_key.as_bytes()),
            "list and revoke-all are single-slot"
        );
        let hour = 3_600_000;
        for key in [&token_key, &set_key, &pointer_key] {
            let left = pttl(&pool, key).await;
            assert!(hour - 5_000 < left && left <= hour, "{key}: {left} ms");
        }

        let now = OffsetDateTime::now_utc();
        let rotation = Rotation {
            new_hash: [2; 32],
            rotated_at: now,
            expires_at: now + time::Duration::hours(2),
        };
        assert!(remember.rotate("sel", &[1; 32], rotation).await.unwrap());
        for key in [&token_key, &set_key, &pointer_key] {
            let left = pttl(&pool, key).await;
            assert!(
                2 * hour - 5_000 < left,
                "{key} follows the slid expiry: {left} ms"
            );
        }

        throttle
            .record_failure("acct:alice", Duration::from_secs(60))
            .await
            .unwrap();
        let left = pttl(&pool, &format!("{prefix}throttle:acct:alice")).await;
        assert!(55_000 < left && left <= 60_000, "{left} ms");

        delete_keys(&pool, &prefix).await;
    }

    /// A rotation that loses (a replayed or late validator) with an earlier expiry than the
    /// token's leaves the token findable for its whole life: the selector pointer is only
    /// ever lengthened.
    #[tokio::test]
    async fn a_losing_rotation_never_shortens_the_selector_pointer() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let remember = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
        remember
            .create(token("sel", "1", time::Duration::hours(1)))
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let late = Rotation {
            new_hash: [3; 32],
            rotated_at: now,
            expires_at: now + time::Duration::seconds(1),
        };
        assert!(!remember.rotate("sel", &[9; 32], late).await.unwrap());
        let left = pttl(&pool, &format!("{prefix}remember:selector:sel")).await;
        assert!(3_600_000 - 5_000 < left, "pointer cut short: {left} ms");
        assert!(remember.find("sel").await.unwrap().is_some());

        delete_keys(&pool, &prefix).await;
    }

    /// A member whose token has expired is dropped from the set when the set is listed, and
    /// revoking everything also removes the selector keys.
    #[tokio::test]
    async fn list_prunes_and_revoke_all_cleans_up() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let remember = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
        let set_key = format!("{prefix}remember:user:{{1}}");
        let day = time::Duration::days(1);
        remember.create(token("gone", "1", day)).await.unwrap();
        remember.create(token("kept", "1", day)).await.unwrap();
        // As if it had expired.
        let _: i64 = pool
            .del(format!("{prefix}remember:token:{{1}}:gone"))
            .await
            .unwrap();

        let listed = remember.list_for_user("1").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].selector, "kept");
        let members: Vec<String> = smembers(&pool, &set_key).await;
        assert_eq!(members, ["kept"]);

        assert_eq!(remember.delete_for_user("1").await.unwrap(), 1);
        let left: i64 = pool
            .exists(vec![
                set_key,
                format!("{prefix}remember:selector:kept"),
                format!("{prefix}remember:token:{{1}}:kept"),
            ])
            .await
            .unwrap();
        assert_eq!(left, 0);

        delete_keys(&pool, &prefix).await;
    }

    fn stored_login(id: &str, user_id: &str, expires_in: time::Duration) -> StoredLogin {
        let now = OffsetDateTime::now_utc();
        StoredLogin {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
            session_id: Some(format!("session-{id}")),
            remember_selector: None,
            created_at: now,
            last_used_at: now,
            expires_at: now + expires_in,
            user_agent: "ua".to_owned(),
            remembered: false,
        }
    }

    /// Whether a key's time to live is `expected`, give or take a minute.
    fn about(ttl_ms: i64, expected: time::Duration) -> bool {
        (ttl_ms - expected.whole_milliseconds() as i64).abs() < 60_000
    }

    /// A user's logins are one hash named as documented, in the slot of the user's remember-me
    /// keys, holding JSON entries; the hash expires with its latest entry (recomputed by
    /// `put`, lengthened by `touch`).
    #[tokio::test]
    async fn login_hash_follows_the_documented_layout() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let logins = RedisLoginStore::new(pool.clone()).key_prefix(&prefix);
        let user = "\"al}ice\"";
        let key = format!("{prefix}logins:{{\"al%7Dice\"}}");
        let hour = time::Duration::hours(1);

        logins.put(stored_login("a", user, hour), 10).await.unwrap();
        let raw: String = pool.hget(&key, "a").await.unwrap();
        let entry: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(entry["user_id"], user);
        assert_eq!(entry["session_id"], "session-a");
        assert!(entry["expires_at"].is_string(), "times are strings: {raw}");
        assert_eq!(
            redis_keyslot(key.as_bytes()),
            redis_keyslot(format!("{prefix}remember:user:{{\"al%7Dice\"}}").as_bytes())
        );
        assert!(about(pttl(&pool, &key).await, hour));

        logins
            .put(stored_login("b", user, 2 * hour), 10)
            .await
            .unwrap();
        assert!(about(pttl(&pool, &key).await, 2 * hour));
        // `b` replaced by a shorter-lived entry: the hash's expiry is recomputed, to the
        // latest of what it now holds (the new `b`, 90 minutes).
        let shorter = stored_login("b", user, 90 * time::Duration::minutes(1));
        logins.put(shorter, 10).await.unwrap();
        assert!(about(
            pttl(&pool, &key).await,
            90 * time::Duration::minutes(1)
        ));
        let touch = LoginTouch {
            last_used_at: OffsetDateTime::now_utc(),
            expires_at: OffsetDateTime::now_utc() + 3 * hour,
            session_id: None,
        };
        assert!(logins.touch(user, "a", touch).await.unwrap());
        assert!(about(pttl(&pool, &key).await, 3 * hour));

        // Ending all of the user's logins removes the key.
        assert_eq!(logins.delete_for_user(user).await.unwrap().len(), 2);
        let left: i64 = pool.exists(&key).await.unwrap();
        assert_eq!(left, 0);

        delete_keys(&pool, &prefix).await;
    }

    /// An entry the store cannot read (not JSON, or without its times), or a key of the wrong
    /// type, is an `Error::Store` for the calls that read it: not a panic, and not a login
    /// that silently disappears from the list.
    #[tokio::test]
    async fn malformed_login_entries_are_store_errors() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let logins = RedisLoginStore::new(pool.clone()).key_prefix(&prefix);
        let day = time::Duration::days(1);
        let store_error = |r: Result<(), Error>| matches!(r, Err(Error::Store(_)));

        logins.put(stored_login("ok", "1", day), 10).await.unwrap();
        let _: i64 = pool
            .hset(format!("{prefix}logins:{{1}}"), ("bad", "not json"))
            .await
            .unwrap();
        assert!(store_error(logins.get("1", "bad").await.map(drop)));
        assert!(store_error(logins.list("1").await.map(drop)));
        assert!(store_error(
            logins
                .put(stored_login("new", "1", day), 10)
                .await
                .map(drop)
        ));
        let touch = LoginTouch {
            last_used_at: OffsetDateTime::now_utc(),
            expires_at: OffsetDateTime::now_utc() + day,
            session_id: None,
        };
        assert!(store_error(logins.touch("1", "bad", touch).await.map(drop)));

        logins.put(stored_login("ok", "2", day), 10).await.unwrap();
        let _: i64 = pool
            .hset(
                format!("{prefix}logins:{{2}}"),
                ("timeless", "{\"id\":\"timeless\"}"),
            )
            .await
            .unwrap();
        assert!(store_error(logins.list("2").await.map(drop)));
        assert!(store_error(logins.delete_for_user("2").await.map(drop)));

        let _: () = pool
            .set(
                format!("{prefix}logins:{{3}}"),
                "a string",
                None,
                None,
                false,
            )
            .await
            .unwrap();
        assert!(store_error(logins.list("3").await.map(drop)));
        assert!(store_error(logins.get("3", "x").await.map(drop)));

        delete_keys(&pool, &prefix).await;
    }

    fn one_time_token(selector: &str, expires_in: time::Duration) -> StoredToken {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_millisecond(now.millisecond()).unwrap();
        StoredToken {
            selector: selector.to_owned(),
            validator_hash: [4; 32],
            purpose: "password-reset".to_owned(),
            user_id: "\"al}ice\"".to_owned(),
            auth_hash: "digest".to_owned(),
            created_at: now,
            expires_at: now + expires_in,
        }
    }

    /// A one-time token is one hash, named as documented, holding the SQL columns (hash in
    /// hex, times in Unix ms) and expiring at the token's `expires_at`; a second `create` of
    /// the selector replaces it whole; a wrong hash leaves it, the right one deletes the key.
    #[tokio::test]
    async fn one_time_token_keys_follow_the_documented_layout() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let tokens = RedisTokenStore::new(pool.clone()).key_prefix(&prefix);
        let key = format!("{prefix}token:sel");
        let hour = time::Duration::hours(1);
        let t = one_time_token("sel", hour);

        tokens.create(t.clone()).await.unwrap();
        let fields: HashMap<String, String> = pool.hgetall(&key).await.unwrap();
        let expected: HashMap<String, String> = [
            ("selector", "sel".to_owned()),
            ("validator_hash", hex::encode([4; 32])),
            ("purpose", "password-reset".to_owned()),
            ("user_id", "\"al}ice\"".to_owned()),
            ("auth_hash", "digest".to_owned()),
            (
                "created_at",
                (t.created_at.unix_timestamp_nanos() / 1_000_000).to_string(),
            ),
            (
                "expires_at",
                (t.expires_at.unix_timestamp_nanos() / 1_000_000).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(fields, expected);
        let expires_ms: i64 = pool
            .custom(
                fred::types::CustomCommand::new_static("PEXPIRETIME", None, false),
                vec![key.clone()],
            )
            .await
            .unwrap_or(-3);
        if expires_ms != -3 {
            // Redis 7 and later: the key expires exactly at the token's `expires_at`.
            assert_eq!(
                expires_ms as i128,
                t.expires_at.unix_timestamp_nanos() / 1_000_000
            );
        }
        assert!(about(pttl(&pool, &key).await, hour));

        // A selector collision replaces the whole token, leaving no field of the old one.
        let _: i64 = pool.hset(&key, ("stale", "field")).await.unwrap();
        let replaced = StoredToken {
            purpose: "magic-link".to_owned(),
            ..one_time_token("sel", 2 * hour)
        };
        tokens.create(replaced.clone()).await.unwrap();
        let fields: HashMap<String, String> = pool.hgetall(&key).await.unwrap();
        assert_eq!(fields.len(), 7, "{fields:?}");
        assert_eq!(fields["purpose"], "magic-link");
        assert!(about(pttl(&pool, &key).await, 2 * hour));
        assert_eq!(tokens.find("sel").await.unwrap(), Some(replaced));

        assert!(!tokens.take("sel", &[5; 32]).await.unwrap());
        let left: i64 = pool.exists(&key).await.unwrap();
        assert_eq!(left, 1, "a wrong hash leaves the token");
        assert!(tokens.take("sel", &[4; 32]).await.unwrap());
        let left: i64 = pool.exists(&key).await.unwrap();
        assert_eq!(left, 0, "a used token leaves no key");

        // An already expired token is not kept at all.
        tokens
            .create(one_time_token("late", -time::Duration::seconds(1)))
            .await
            .unwrap();
        let left: i64 = pool.exists(format!("{prefix}token:late")).await.unwrap();
        assert_eq!(left, 0);
        assert_eq!(tokens.delete_expired().await.unwrap(), 0);

        delete_keys(&pool, &prefix).await;
    }

    /// A token hash the store cannot read (a missing field, a hash that is not 64 hex digits,
    /// a time that is not a number), or a key of the wrong type, is an `Error::Store`: not a
    /// panic, and not a token that silently does not exist.
    #[tokio::test]
    async fn malformed_one_time_tokens_are_store_errors() {
        let Some(pool) = redis_pool().await else {
            return;
        };
        let prefix = format!("{}:", unique("lm-test"));
        let tokens = RedisTokenStore::new(pool.clone()).key_prefix(&prefix);
        let store_error = |r: Result<(), Error>| matches!(r, Err(Error::Store(_)));
        let hour = time::Duration::hours(1);

        for (selector, field, value) in [
            ("short-hash", "validator_hash", "0102"),
            ("not-hex", "validator_hash", &"zz".repeat(32)[..]),
            ("bad-time", "created_at", "yesterday"),
        ] {
            tokens.create(one_time_token(selector, hour)).await.unwrap();
            let _: i64 = pool
                .hset(format!("{prefix}token:{selector}"), (field, value))
                .await
                .unwrap();
            assert!(
                store_error(tokens.find(selector).await.map(drop)),
                "{selector}"
            );
        }
        tokens
            .create(one_time_token("no-purpose", hour))
            .await
            .unwrap();
        let _: i64 = pool
            .hdel(format!("{prefix}token:no-purpose"), "purpose")
            .await
            .unwrap();
        assert!(store_error(tokens.find("no-purpose").await.map(drop)));

        let _: () = pool
            .set(
                format!("{prefix}token:string"),
                "a string",
                None,
                None,
                false,
            )
            .await
            .unwrap();
        assert!(store_error(tokens.find("string").await.map(drop)));
        assert!(store_error(tokens.take("string", &[4; 32]).await.map(drop)));

        delete_keys(&pool, &prefix).await;
    }
}
