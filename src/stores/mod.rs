//! Shared stores for remember-me tokens and login throttling, so that any number of app
//! instances behind a load balancer see the same tokens and the same failure counts.
//!
//! | feature | remember-me | throttling | client |
//! |---|---|---|---|
//! | `sqlite` | [`SqliteRememberStore`](sqlite::SqliteRememberStore) | [`SqliteThrottleStore`](sqlite::SqliteThrottleStore) | sqlx 0.8 `SqlitePool` |
//! | `postgres` | [`PostgresRememberStore`](postgres::PostgresRememberStore) | [`PostgresThrottleStore`](postgres::PostgresThrottleStore) | sqlx 0.8 `PgPool` |
//! | `redis` | [`RedisRememberStore`](redis::RedisRememberStore) | [`RedisThrottleStore`](redis::RedisThrottleStore) | fred 10 `Pool` |
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
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use login_manager::stores::postgres::{PostgresRememberStore, PostgresThrottleStore};
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
//! # Failures
//!
//! Every call of these stores is bounded by a timeout (default 5 s, set with `.timeout(..)`):
//! a hung database answers [`Error::Timeout`] (`"remember store"` or
//! `"throttle store"`) instead of hanging requests; any other backend failure is
//! [`Error::Store`]. Both become a 503 and never log anyone in.
//!
//! See `docs/stores.md` for the table and key layouts, migrations, cleanup, Redis Cluster
//! and timeouts.

use std::future::Future;
use std::time::Duration;

use crate::throttle::ThrottleEntry;
use crate::{BoxError, Error, Result};

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Default bound on one store call.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// What [`Error::Timeout`] names for a remember-me store call.
pub(crate) const REMEMBER: &str = "remember store";
/// What [`Error::Timeout`] names for a throttle store call.
pub(crate) const THROTTLE: &str = "throttle store";

/// Throttle windows are capped at a year, as in [`MemoryThrottleStore`](crate::MemoryThrottleStore),
/// so that the database's time arithmetic cannot overflow.
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A throttle window in whole milliseconds, between 1 ms and [`MAX_WINDOW`].
pub(crate) fn window_millis(window: Duration) -> i64 {
    let millis = window.min(MAX_WINDOW).as_millis().max(1);
    // At most a year of milliseconds: always fits.
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// A window as [`ThrottleStore`](crate::ThrottleStore) reports it: a count of at least 1 that
/// fits a `u32`, and at least 1 ms left. Databases round the time left down to whole
/// milliseconds, so a window read in its last millisecond would otherwise report zero.
pub(crate) fn window_entry(count: i64, millis_left: i64) -> ThrottleEntry {
    ThrottleEntry {
        count: u32::try_from(count.max(1)).unwrap_or(u32::MAX),
        expires_in: Duration::from_millis(u64::try_from(millis_left).unwrap_or(0).max(1)),
    }
}

/// Runs one store call, turning a backend error into [`Error::Store`] and an overrun of
/// `limit` into [`Error::Timeout`]`(what)`.
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    what: &'static str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: Into<BoxError>,
{
    crate::timeout::timed(limit, what, async {
        call.await.map_err(|e| Error::Store(e.into()))
    })
    .await
}

/// The body of the `continuously_delete_expired` tasks: `delete` now, then every `period`,
/// logging failures instead of stopping, so that one database hiccup does not end the
/// cleanup for the life of the process.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn delete_expired_every<F, Fut>(period: Duration, what: &'static str, delete: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    // `interval` panics on a zero period; a cleanup more often than once a second is no use.
    let mut ticks = tokio::time::interval(period.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match delete().await {
            Ok(deleted) => tracing::debug!(deleted, "{what}: expired rows deleted"),
            Err(error) => tracing::warn!(%error, "{what}: deleting expired rows failed"),
        }
    }
}
