//! SQLite stores (feature `sqlite`): [`SqliteRememberStore`], [`SqliteThrottleStore`],
//! [`SqliteLoginStore`] and [`SqliteTokenStore`], the SQLite dialect of the SQL stores.
//! Documented in [`crate::stores`].

use sqlx::Sqlite;
use time::OffsetDateTime;

use super::sql::{
    dialect::Dialect,
    sql_store,
    statements::{LoginTable, RememberTable, ThrottleTable, TokenTable},
};
use crate::error::BoxError;

sql_store! {
    /// Remember-me tokens in SQLite: a [`RememberStore`](crate::RememberStore) in
    /// one table (default `login_remember_tokens`), times kept to the millisecond. Clones
    /// share the pool. See [SQLite](crate::stores#sqlite) and the
    /// [table layout](crate::stores#sql-tables).
    ///
    /// Create the table with [`migrate`](Self::migrate) at start-up, and delete expired
    /// tokens now and then with [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::SqlitePool) -> login_manager::Result<()> {
    /// use login_manager::stores::SqliteRememberStore;
    /// use login_manager::Remember;
    ///
    /// let store = SqliteRememberStore::new(pool).table_name("remember_tokens");
    /// store.migrate().await?;
    /// let remember = Remember::new(store);
    /// # Ok(()) }
    /// ```
    pub struct SqliteRememberStore(Sqlite, RememberTable): RememberStore {
        pool: "sqlx::SqlitePool",
        table: "login_remember_tokens",
    }
}

sql_store! {
    /// Login-throttle windows in SQLite: a [`ThrottleStore`](crate::ThrottleStore) in one
    /// table (default `login_throttle`). Clones share the pool. See
    /// [SQLite](crate::stores#sqlite).
    ///
    /// Each failure is one atomic upsert, and windows are measured by SQLite's clock, so
    /// every process on the file applies the same limit. Expired windows are ignored at once
    /// and deleted by [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired). Windows are capped
    /// at a year.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::SqlitePool) -> login_manager::Result<()> {
    /// use login_manager::stores::SqliteThrottleStore;
    /// use login_manager::LoginThrottle;
    ///
    /// let store = SqliteThrottleStore::new(pool);
    /// store.migrate().await?;
    /// let throttle = LoginThrottle::new(store);
    /// # Ok(()) }
    /// ```
    pub struct SqliteThrottleStore(Sqlite, ThrottleTable): ThrottleStore {
        pool: "sqlx::SqlitePool",
        table: "login_throttle",
    }
}

sql_store! {
    /// The login index in SQLite: a [`LoginStore`](crate::LoginStore) in one table (default
    /// `login_index`, one row per live login, primary key `(user_id, id)`), times kept to the
    /// millisecond. Clones share the pool. See [SQLite](crate::stores#sqlite) and the
    /// [table layout](crate::stores#sql-tables).
    ///
    /// Each user's bound holds however many logins race: SQLite runs one writer at a time,
    /// and every `put` trims the user's rows after its own insert. Expired entries are never
    /// returned by `get` or `list`, and deleted by [`delete_expired`](Self::delete_expired)
    /// or [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::SqlitePool, sessions: tower_sessions::MemoryStore) -> login_manager::Result<()> {
    /// use login_manager::stores::SqliteLoginStore;
    /// use login_manager::LoginIndex;
    ///
    /// let store = SqliteLoginStore::new(pool);
    /// store.migrate().await?;
    /// // `sessions`: a clone of the SessionManagerLayer's store.
    /// let index = LoginIndex::new(store, sessions);
    /// # Ok(()) }
    /// ```
    pub struct SqliteLoginStore(Sqlite, LoginTable): LoginStore {
        pool: "sqlx::SqlitePool",
        table: "login_index",
    }
}

sql_store! {
    /// One-time tokens (password reset, email verification, magic links) in SQLite: a
    /// [`TokenStore`](crate::TokenStore) in one table (default `login_one_time_tokens`, one
    /// row per outstanding token, primary key `selector`), times kept to the millisecond.
    /// Clones share the pool. See [SQLite](crate::stores#sqlite) and the
    /// [table layout](crate::stores#sql-tables).
    ///
    /// [`take`](crate::TokenStore::take) is one conditional `DELETE`: SQLite runs one writer
    /// at a time, so of racing consumptions of a token exactly one wins. Expired tokens are
    /// never returned by `find`, and deleted by [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::SqlitePool) -> login_manager::Result<()> {
    /// use login_manager::stores::SqliteTokenStore;
    /// use login_manager::OneTimeTokens;
    ///
    /// let store = SqliteTokenStore::new(pool);
    /// store.migrate().await?;
    /// let tokens = OneTimeTokens::new(store);
    /// # Ok(()) }
    /// ```
    pub struct SqliteTokenStore(Sqlite, TokenTable): TokenStore {
        pool: "sqlx::SqlitePool",
        table: "login_one_time_tokens",
    }
}

/// Unix milliseconds now. `julianday` keeps whole milliseconds internally; `ROUND` undoes the
/// floating-point division it reports them through.
const NOW_MILLIS: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

impl Dialect for Sqlite {
    type Time = i64;
    const BYTES: &'static str = "BLOB";
    const TIME: &'static str = "INTEGER";
    const BIGINT: &'static str = "INTEGER";
    const BOOL: &'static str = "INTEGER";
    const NULL_SAFE_EQ: &'static str = "IS";
    // A `TEXT` column's default collation already is `BINARY`; said for the reader.
    const BYTEWISE: &'static str = " COLLATE BINARY";
    const NOW: &'static str = NOW_MILLIS;
    // SQLite's `min` with two arguments is the scalar minimum.
    const LEAST: &'static str = "MIN";

    fn now_plus_millis(millis: &str) -> String {
        format!("({NOW_MILLIS} + {millis})")
    }

    fn millis_until(column: &str) -> String {
        format!("({column} - {NOW_MILLIS})")
    }

    fn migration_prelude(_schema: Option<&str>) -> Vec<String> {
        // A write transaction already excludes other writers.
        Vec::new()
    }

    fn encode_time(time: OffsetDateTime) -> i64 {
        // Milliseconds of any `OffsetDateTime` (years ±9999) fit an i64 with room to spare.
        i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    fn decode_time(millis: i64) -> Result<OffsetDateTime, BoxError> {
        Ok(OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(millis) * 1_000_000,
        )?)
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}
