//! Shared stores for remember-me tokens, login throttling, the index of live logins and
//! one-time tokens, so that any number of app instances behind a load balancer see the same
//! tokens, the same failure counts and the same logins.
//!
//! | feature | remember-me | throttling | login index | one-time tokens | client |
//! |---|---|---|---|---|---|
//! | `sqlite` | [`SqliteRememberStore`] | [`SqliteThrottleStore`] | [`SqliteLoginStore`] | [`SqliteTokenStore`] | sqlx 0.8 `SqlitePool` |
//! | `postgres` | [`PostgresRememberStore`] | [`PostgresThrottleStore`] | [`PostgresLoginStore`] | [`PostgresTokenStore`] | sqlx 0.8 `PgPool` |
//! | `redis` | [`RedisRememberStore`] | [`RedisThrottleStore`] | [`RedisLoginStore`] | [`RedisTokenStore`] | fred 10 `Pool` |
//!
//! These twelve types are the whole public surface of this module. The SQL ones share one
//! implementation (every statement is written once; each database only supplies its column
//! types and its clock), the Redis ones another; both stay private.
//!
//! The login stores hold the [`LoginIndex`](crate::LoginIndex): one entry per logged-in
//! browser, so that an app can list a user's logins and end one, the others or all of them on
//! every instance. Put them next to the remember-me store, on the same pool. Each user's
//! bound ([`max_logins_per_user`](crate::LoginIndex::max_logins_per_user)) holds however many
//! logins race, on any number of instances, and every entry a store removes is returned by
//! exactly one call, so that its session is ended once.
//!
//! The token stores hold the [`OneTimeTokens`](crate::OneTimeTokens) of password resets,
//! email verifications and magic links. A token is used up by
//! [`TokenStore::take`](crate::TokenStore::take), one atomic step on every backend (a
//! conditional `DELETE`, a Lua script on one key), so that of any number of racing
//! consumptions, on any number of instances, exactly one succeeds.
//!
//! # Pairing with tower-sessions' stores
//!
//! Sessions need a shared store as well. The published tower-sessions stores use the same
//! clients, so one connection pool serves both:
//!
//! - `tower-sessions-sqlx-store` 0.15 (`SqliteStore`, `PostgresStore`) takes the same sqlx 0.8
//!   `SqlitePool` / `PgPool`; run its `migrate()` and ours at start-up.
//! - `tower-sessions-redis-store` 0.16 (`RedisStore`) takes a fred 10 client: give it a clone
//!   of the same `fred::clients::Pool` (clones share the connections).
//!
//! Build the pool with your own `sqlx` 0.8 or `fred` 10 dependency (or through the re-exports
//! `tower_sessions_sqlx_store::sqlx` and `tower_sessions_redis_store::fred`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use login_manager::stores::{PostgresRememberStore, PostgresThrottleStore};
//! use login_manager::{LoginThrottle, Remember};
//! use sqlx::PgPool;
//!
//! let pool = PgPool::connect("postgres://app@db/app").await?;
//! // let sessions = tower_sessions_sqlx_store::PostgresStore::new(pool.clone());
//! // sessions.migrate().await?;
//! let tokens = PostgresRememberStore::new(pool.clone());
//! tokens.migrate().await?;
//! tokio::spawn(tokens.clone().continuously_delete_expired(std::time::Duration::from_secs(3600)));
//! let throttle = PostgresThrottleStore::new(pool);
//! throttle.migrate().await?;
//!
//! let remember = Remember::new(tokens);
//! let throttle = LoginThrottle::new(throttle);
//! # Ok(()) }
//! ```
//!
//! # SQLite
//!
//! [`SqliteRememberStore`], [`SqliteThrottleStore`], [`SqliteLoginStore`] and
//! [`SqliteTokenStore`] (feature `sqlite`) take the same sqlx 0.8 `SqlitePool` as
//! `tower-sessions-sqlx-store` 0.15's `SqliteStore`, so one database file holds sessions,
//! tokens, throttle windows and logins. Times are stored as `INTEGER` Unix
//! milliseconds, hashes as `BLOB`; the throttle window is measured by SQLite's clock
//! (`julianday('now')`, which is the same for a whole statement).
//!
//! SQLite serializes writers: use WAL mode and a busy timeout (sqlx's default is 5 s) when
//! several tasks write at once. Several processes can share a file on one machine; several
//! machines need Postgres or Redis.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::str::FromStr;
//! use login_manager::stores::{SqliteRememberStore, SqliteThrottleStore};
//! use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
//!
//! let options = SqliteConnectOptions::from_str("sqlite://app.db")?
//!     .create_if_missing(true)
//!     .journal_mode(SqliteJournalMode::Wal);
//! let pool = SqlitePool::connect_with(options).await?;
//! // let sessions = tower_sessions_sqlx_store::SqliteStore::new(pool.clone());
//! let tokens = SqliteRememberStore::new(pool.clone());
//! tokens.migrate().await?;
//! let throttle = SqliteThrottleStore::new(pool);
//! throttle.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! # Postgres
//!
//! [`PostgresRememberStore`], [`PostgresThrottleStore`], [`PostgresLoginStore`] and
//! [`PostgresTokenStore`] (feature `postgres`) take the same sqlx 0.8 `PgPool` as `tower-sessions-sqlx-store` 0.15's `PostgresStore` (example above).
//! Times are `TIMESTAMPTZ`, hashes `BYTEA`; throttle windows are measured by the server's
//! `now()`. Tables go in the connection's `search_path` unless a
//! [`schema`](PostgresRememberStore::schema) is set, which `migrate()` then creates.
//!
//! # SQL tables
//!
//! Remember-me tokens (default table `login_remember_tokens`), primary key `selector`, indexed
//! on `user_id` (list and revoke-all) and `expires_at` (cleanup):
//!
//! | column | type | |
//! |---|---|---|
//! | `selector` | text | primary key |
//! | `validator_hash`, `previous_hash` | bytes | SHA-256 of the validators |
//! | `rotated_at`, `created_at`, `last_used_at`, `expires_at` | time | |
//! | `user_id`, `auth_hash`, `user_agent` | text | |
//!
//! Throttle windows (default table `login_throttle`): `key` text primary key, `failures`
//! integer, `window_end` time, indexed on `window_end`.
//!
//! The login index (default table `login_index`), one row per live login, primary key
//! `(user_id, id)` (which also serves a user's list), indexed on `expires_at` (cleanup):
//!
//! | column | type | |
//! |---|---|---|
//! | `id`, `user_id` | text | primary key |
//! | `session_id`, `remember_selector` | text | or NULL |
//! | `created_at`, `last_used_at`, `expires_at` | time | |
//! | `user_agent` | text | |
//! | `remembered` | boolean | `BOOLEAN`; SQLite `INTEGER` |
//!
//! A login's `put` needs no transaction: an insert that does nothing when the id exists,
//! else a compare-and-swap `UPDATE` of the row it read (so a replaced entry is returned by one
//! call only), then a `DELETE … RETURNING` of the user's rows beyond the bound, each `put`
//! trimming after its own insert.
//!
//! One-time tokens (default table `login_one_time_tokens`), one row per outstanding token,
//! primary key `selector`, indexed on `expires_at` (cleanup):
//!
//! | column | type | |
//! |---|---|---|
//! | `selector` | text | primary key |
//! | `validator_hash` | bytes | SHA-256 of the validator |
//! | `purpose`, `user_id`, `auth_hash` | text | |
//! | `created_at`, `expires_at` | time | |
//!
//! Using a token up is one statement, `DELETE … WHERE selector = $1 AND validator_hash = $2`,
//! won by the call that deleted the row: racing calls queue on the row and the later ones find
//! nothing. `find` never returns a row past its `expires_at` (the database's clock).
//!
//! "time" is `TIMESTAMPTZ` on Postgres and an `INTEGER` of Unix milliseconds on SQLite;
//! "bytes" is `BYTEA` / `BLOB`. Throttle windows are computed by the database's clock.
//!
//! # Redis
//!
//! [`RedisRememberStore`], [`RedisThrottleStore`], [`RedisLoginStore`] and [`RedisTokenStore`]
//! (feature `redis`)
//! run on a fred 10 `Pool`: give them a clone of the `Pool` that `tower-sessions-redis-store` 0.16's
//! `RedisStore` uses (clones share the connections), and `init` it once. Every atomic step is
//! one Lua script (`EVALSHA`, loaded again after a `NOSCRIPT`), and no script touches two hash
//! slots, so the layout works on Redis Cluster as it is. Needs Redis 5 or later (or Valkey).
//!
//! Keys, under a prefix (default `login:`, see
//! [`key_prefix`](RedisRememberStore::key_prefix)), with `<tag>` the user id with `{`, `}` and
//! `%` percent-encoded:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `login:remember:token:{<tag>}:<selector>` | hash | one token | with the token |
//! | `login:remember:user:{<tag>}` | set | the user's selectors | with the user's last token |
//! | `login:remember:selector:<selector>` | string | the user id, to find a token by selector | with the token, or later |
//! | `login:throttle:<key>` | string | a failure count | with the window |
//! | `login:logins:{<tag>}` | hash | the user's logins: id → the entry as JSON | with the user's latest login |
//! | `login:token:<selector>` | hash | one one-time token | at its `expires_at` |
//!
//! One user's tokens and set share the hash tag `{<tag>}`, so listing and revoking all of a
//! user's tokens are single-slot scripts, atomic even on a Cluster. Finding a token by
//! selector therefore takes two round trips (selector → user, then the token).
//!
//! Redis deletes expired tokens and windows itself:
//! [`RememberStore::delete_expired`](crate::RememberStore::delete_expired) has nothing to do
//! and answers 0, and an expired token is simply not found. Members of the per-user set whose
//! token has expired are pruned whenever the set is listed.
//!
//! A user's logins are one hash, so each login operation is one single-slot script. The hash
//! expires with its latest entry; an entry that expired before it is skipped by `get` and
//! `list` (the server's clock decides) and deleted by `list`, so
//! [`LoginStore::delete_expired`](crate::LoginStore::delete_expired) answers 0 too.
//!
//! A one-time token is one hash of its own, expiring at the token's `expires_at`; `take` is a
//! script on that key (compare the stored hash, delete it, answer 1), so it is single-slot and
//! atomic on a Cluster, and [`TokenStore::delete_expired`](crate::TokenStore::delete_expired)
//! answers 0 as well.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fred::prelude::*;
//! use login_manager::stores::{RedisRememberStore, RedisThrottleStore};
//! use login_manager::{LoginThrottle, Remember};
//!
//! let pool = Pool::new(Config::from_url("redis://127.0.0.1:6379")?, None, None, None, 4)?;
//! pool.init().await?;
//! // let sessions = tower_sessions_redis_store::RedisStore::new(pool.clone());
//! let remember = Remember::new(RedisRememberStore::new(pool.clone()));
//! let throttle = LoginThrottle::new(RedisThrottleStore::new(pool));
//! # Ok(()) }
//! ```
//!
//! # Failures and timeouts
//!
//! Any failure of the backend is [`Error::Store`](crate::Error::Store), never a panic; a malformed stored row is one
//! too. The stores have no timeout of their own: every call the library makes is bounded by
//! the caller — [`LoginManager::store_timeout`](crate::LoginManager::store_timeout) for the
//! remember-me and login stores, [`LoginThrottle::store_timeout`](crate::LoginThrottle::store_timeout)
//! for the throttle store, [`OneTimeTokens::store_timeout`](crate::OneTimeTokens::store_timeout)
//! for the token store (all 5 s by default) — so a hung database answers
//! [`Error::Timeout`](crate::Error::Timeout)`("remember store")`, `("login store")`, `("throttle store")` or `("token store")` instead of hanging requests,
//! the same for these stores and any third-party one. Both errors become a 503 and never log
//! anyone in.
//!
//! The SQL stores' `migrate` and `delete_expired`, which an app calls at start-up or from a
//! cleanup task rather than in a request, are bounded by the pool's own `acquire_timeout`
//! (sqlx's default is 30 s); wrap them in `tokio::time::timeout` for a tighter bound.
//!
//! `docs/stores.md` in the repository covers migrations, cleanup, Redis Cluster and timeouts
//! at more length.

#[macro_use]
mod shared;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresLoginStore, PostgresRememberStore, PostgresThrottleStore, PostgresTokenStore,
};
#[cfg(feature = "redis")]
pub use redis::{RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteLoginStore, SqliteRememberStore, SqliteThrottleStore, SqliteTokenStore};
