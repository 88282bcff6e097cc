//! The SQL stores' one implementation, generic over the sqlx database (features `sqlite`,
//! `postgres`).
//!
//! Use them through their aliases, [`SqliteRememberStore`](super::sqlite::SqliteRememberStore),
//! [`SqliteThrottleStore`](super::sqlite::SqliteThrottleStore),
//! [`PostgresRememberStore`](super::postgres::PostgresRememberStore) and
//! [`PostgresThrottleStore`](super::postgres::PostgresThrottleStore): every statement is written
//! once here, and each database only supplies its column types and its clock (see
//! `docs/stores.md` for the resulting tables).
//!
//! # Tables
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
//! "time" is `TIMESTAMPTZ` on Postgres and an `INTEGER` of Unix milliseconds on SQLite;
//! "bytes" is `BYTEA` / `BLOB`. Throttle windows are computed by the database's clock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Pool;

use super::{
    bounded, delete_expired_every, window_entry, window_millis, DEFAULT_TIMEOUT, REMEMBER, THROTTLE,
};
use crate::remember::{RememberStore, RememberToken, Rotation, ValidatorHash};
use crate::throttle::{ThrottleEntry, ThrottleStore};
use crate::Result;

/// The sqlx these stores are built with, for building the pool.
pub use sqlx;

use dialect::{Arg, Backend, Dialect};

/// A database the SQL stores run on: [`sqlx::Sqlite`] (feature `sqlite`) or
/// [`sqlx::Postgres`] (feature `postgres`). It cannot be implemented outside this crate.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use login_manager::stores::sql::{SqlDialect, SqlRememberStore};
///
/// fn takes_any_sql_store<DB: SqlDialect>(_store: SqlRememberStore<DB>) {}
/// # }
/// ```
pub trait SqlDialect: Backend {}

/// The database-specific parts, implemented in `sqlite.rs` and `postgres.rs`, and the
/// generic execution on top of them. Public items of a crate-private module: nameable here,
/// sealed for everyone else.
pub(crate) mod dialect {
    use std::future::Future;

    use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
    use time::OffsetDateTime;

    use crate::remember::{RememberToken, ValidatorHash};
    use crate::BoxError;

    /// What a kind of table brings to [`SqlStore`](super::SqlStore): its names and its
    /// statements.
    pub trait Kind: Send + Sync + 'static {
        const DEFAULT_TABLE: &'static str;
        /// The store's name in timeouts and logs.
        const WHAT: &'static str;
        /// The type's name in `Debug`.
        const NAME: &'static str;
        type Statements: Statements;
    }

    /// A table's statements, built once per configuration.
    pub trait Statements: std::fmt::Debug + Send + Sync + 'static {
        fn build<DB: Dialect>(at: &super::statements::Location) -> Self;
        fn migration(&self) -> &[String];
        fn delete_expired(&self) -> &str;
    }

    /// Column types, the clock, and how times are bound.
    pub trait Dialect: Database {
        /// How a time is bound and read: `OffsetDateTime` (Postgres), Unix ms (SQLite).
        type Time: for<'q> Encode<'q, Self> + for<'r> Decode<'r, Self> + Type<Self> + Send;
        /// Column type of a SHA-256 hash.
        const BYTES: &'static str;
        /// Column type of a time.
        const TIME: &'static str;
        /// Column type of a 64-bit integer.
        const BIGINT: &'static str;
        /// The database's clock, as a `TIME` value.
        const NOW: &'static str;
        /// The two-argument minimum function.
        const LEAST: &'static str;

        /// `NOW` plus `millis` milliseconds (a parameter holding a `BIGINT`), as a `TIME`.
        fn now_plus_millis(millis: &str) -> String;
        /// Whole milliseconds from `NOW` until the `TIME` `column`, rounded up.
        fn millis_until(column: &str) -> String;
        /// Statements run first in the migration's transaction.
        fn migration_prelude(schema: Option<&str>) -> Vec<String>;
        /// A time as bound.
        fn encode_time(time: OffsetDateTime) -> Self::Time;
        /// A time as read.
        fn decode_time(value: Self::Time) -> Result<OffsetDateTime, BoxError>;
        /// The driver's rows-affected count (sqlx has no trait for it).
        fn rows_affected(result: &Self::QueryResult) -> u64;
    }

    /// A bind parameter. One small enum rather than generic binds, so that all bounds sqlx
    /// needs are written once, on the blanket impl below.
    #[derive(Debug)]
    pub enum Arg<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
        NullableBytes(Option<&'a [u8]>),
        Time(OffsetDateTime),
        NullableTime(Option<OffsetDateTime>),
        BigInt(i64),
    }

    /// Running statements; implemented once for every [`Dialect`] that sqlx supports fully.
    pub trait Backend: Dialect {
        /// Runs a statement; rows affected.
        fn execute<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> impl Future<Output = Result<u64, BoxError>> + Send + 'a;

        /// Runs a query selecting the token columns in [`RememberToken`] field order.
        fn fetch_tokens<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> impl Future<Output = Result<Vec<RememberToken>, BoxError>> + Send + 'a;

        /// Runs a query returning at most one `(failures, milliseconds left)` row.
        fn fetch_window<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> impl Future<Output = Result<Option<(i64, i64)>, BoxError>> + Send + 'a;

        /// Runs `statements` in one transaction.
        fn run_in_transaction<'a>(
            pool: &'a Pool<Self>,
            statements: &'a [String],
        ) -> impl Future<Output = Result<(), BoxError>> + Send + 'a;
    }

    impl<DB> Backend for DB
    where
        DB: Dialect,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q [u8]>: Encode<'q, DB>,
        for<'q> Option<DB::Time>: Encode<'q, DB>,
        for<'q> i64: Encode<'q, DB>,
        for<'r> i64: Decode<'r, DB> + Type<DB>,
        for<'r> String: Decode<'r, DB> + Type<DB>,
        for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        async fn execute<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> Result<u64, BoxError> {
            let result = bind(sql, args).execute(pool).await?;
            Ok(DB::rows_affected(&result))
        }

        async fn fetch_tokens<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> Result<Vec<RememberToken>, BoxError> {
            let rows = bind(sql, args).fetch_all(pool).await?;
            rows.iter().map(token_from_row::<DB>).collect()
        }

        async fn fetch_window<'a>(
            pool: &'a Pool<Self>,
            sql: &'a str,
            args: Vec<Arg<'a>>,
        ) -> Result<Option<(i64, i64)>, BoxError> {
            let row = bind(sql, args).fetch_optional(pool).await?;
            Ok(match row {
                Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
                None => None,
            })
        }

        async fn run_in_transaction<'a>(
            pool: &'a Pool<Self>,
            statements: &'a [String],
        ) -> Result<(), BoxError> {
            let mut tx = pool.begin().await?;
            for statement in statements {
                sqlx::query::<DB>(statement).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }

    fn bind<'a, DB>(
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> sqlx::query::Query<'a, DB, DB::Arguments<'a>>
    where
        DB: Dialect,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q [u8]>: Encode<'q, DB>,
        for<'q> Option<DB::Time>: Encode<'q, DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
    {
        args.into_iter()
            .fold(sqlx::query::<DB>(sql), |query, arg| match arg {
                Arg::Text(v) => query.bind(v),
                Arg::Bytes(v) => query.bind(v),
                Arg::NullableBytes(v) => query.bind(v),
                Arg::Time(v) => query.bind(DB::encode_time(v)),
                Arg::NullableTime(v) => query.bind(v.map(DB::encode_time)),
                Arg::BigInt(v) => query.bind(v),
            })
    }

    fn token_from_row<DB>(row: &DB::Row) -> Result<RememberToken, BoxError>
    where
        DB: Dialect,
        for<'r> String: Decode<'r, DB> + Type<DB>,
        for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        let time = |i: usize| -> Result<OffsetDateTime, BoxError> {
            DB::decode_time(row.try_get::<DB::Time, _>(i)?)
        };
        Ok(RememberToken {
            selector: row.try_get(0)?,
            validator_hash: hash(row.try_get(1)?)?,
            previous_hash: row
                .try_get::<Option<Vec<u8>>, _>(2)?
                .map(hash)
                .transpose()?,
            rotated_at: row
                .try_get::<Option<DB::Time>, _>(3)?
                .map(DB::decode_time)
                .transpose()?,
            user_id: row.try_get(4)?,
            auth_hash: row.try_get(5)?,
            created_at: time(6)?,
            last_used_at: time(7)?,
            expires_at: time(8)?,
            user_agent: row.try_get(9)?,
        })
    }

    fn hash(bytes: Vec<u8>) -> Result<ValidatorHash, BoxError> {
        ValidatorHash::try_from(bytes)
            .map_err(|b| format!("stored hash has {} bytes, not 32", b.len()).into())
    }
}

/// The statements, and where they run: public items of a private module, so that the sealed
/// traits can name them without making them part of the API.
mod statements {
    use super::dialect::Dialect;

    /// A quoted SQL identifier: any name is safe, and keeps its case.
    fn quote(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// `"schema"."table"`, or `"table"`.
    fn qualified(schema: Option<&str>, table: &str) -> String {
        match schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(table)),
            None => quote(table),
        }
    }

    /// Where a store's table lives; shared by both stores' builders.
    #[derive(Debug, Clone)]
    pub struct Location {
        pub schema: Option<String>,
        pub table: String,
    }

    impl Location {
        pub fn table(&self) -> String {
            qualified(self.schema.as_deref(), &self.table)
        }

        /// An index name derived from the table's (indexes live in the table's schema).
        pub fn index(&self, suffix: &str) -> String {
            quote(&format!("{}_{suffix}", self.table))
        }
    }

    const TOKEN_COLUMNS: &str = "selector, validator_hash, previous_hash, rotated_at, user_id, \
                                 auth_hash, created_at, last_used_at, expires_at, user_agent";

    /// Every statement of the remember-me store, built once per configuration.
    #[derive(Debug)]
    pub struct RememberSql {
        pub migration: Vec<String>,
        pub insert: String,
        pub find: String,
        pub rotate: String,
        pub delete: String,
        pub delete_for_user: String,
        pub list_for_user: String,
        pub delete_expired: String,
    }

    impl RememberSql {
        pub fn new<DB: Dialect>(at: &Location) -> Self {
            let t = at.table();
            let (bytes, time) = (DB::BYTES, DB::TIME);
            let mut migration = DB::migration_prelude(at.schema.as_deref());
            migration.extend([
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     selector TEXT PRIMARY KEY, \
                     validator_hash {bytes} NOT NULL, \
                     previous_hash {bytes}, \
                     rotated_at {time}, \
                     user_id TEXT NOT NULL, \
                     auth_hash TEXT NOT NULL, \
                     created_at {time} NOT NULL, \
                     last_used_at {time} NOT NULL, \
                     expires_at {time} NOT NULL, \
                     user_agent TEXT NOT NULL)"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (user_id)",
                    at.index("user_id_idx")
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at)",
                    at.index("expires_at_idx")
                ),
            ]);
            Self {
                migration,
                // A selector collision (2^-128) replaces the old token, as the memory store does.
                insert: format!(
                    "INSERT INTO {t} ({TOKEN_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (selector) DO UPDATE SET \
                     validator_hash = excluded.validator_hash, previous_hash = excluded.previous_hash, \
                     rotated_at = excluded.rotated_at, user_id = excluded.user_id, \
                     auth_hash = excluded.auth_hash, created_at = excluded.created_at, \
                     last_used_at = excluded.last_used_at, expires_at = excluded.expires_at, \
                     user_agent = excluded.user_agent"
                ),
                find: format!("SELECT {TOKEN_COLUMNS} FROM {t} WHERE selector = $1"),
                // One conditional UPDATE: the row lock makes racing rotations serialize, and each
                // loser re-checks `validator_hash` against the winner's new value and matches 0 rows.
                rotate: format!(
                    "UPDATE {t} SET previous_hash = validator_hash, validator_hash = $1, \
                     rotated_at = $2, last_used_at = $2, expires_at = $3 \
                     WHERE selector = $4 AND validator_hash = $5"
                ),
                delete: format!("DELETE FROM {t} WHERE selector = $1"),
                delete_for_user: format!("DELETE FROM {t} WHERE user_id = $1"),
                list_for_user: format!("SELECT {TOKEN_COLUMNS} FROM {t} WHERE user_id = $1"),
                delete_expired: format!("DELETE FROM {t} WHERE expires_at <= {}", DB::NOW),
            }
        }
    }

    /// Every statement of the throttle store, built once per configuration.
    #[derive(Debug)]
    pub struct ThrottleSql {
        pub migration: Vec<String>,
        pub record_failure: String,
        pub failures: String,
        pub reset: String,
        pub delete_expired: String,
    }

    impl ThrottleSql {
        pub fn new<DB: Dialect>(at: &Location) -> Self {
            let t = at.table();
            let now = DB::NOW;
            let mut migration = DB::migration_prelude(at.schema.as_deref());
            migration.extend([
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     key TEXT PRIMARY KEY, \
                     failures {} NOT NULL, \
                     window_end {} NOT NULL)",
                    DB::BIGINT,
                    DB::TIME
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (window_end)",
                    at.index("window_end_idx")
                ),
            ]);
            let left = DB::millis_until("window_end");
            Self {
                migration,
                // One atomic upsert: opens a window, restarts an expired one, or counts into the
                // open one without moving its end; the count saturates at u32::MAX.
                record_failure: format!(
                    "INSERT INTO {t} AS t (key, failures, window_end) VALUES ($1, 1, {}) \
                     ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN t.window_end <= {now} THEN 1 \
                     ELSE {}(t.failures + 1, 4294967295) END, \
                     window_end = CASE WHEN t.window_end <= {now} THEN excluded.window_end \
                     ELSE t.window_end END \
                     RETURNING failures, {left}",
                    DB::now_plus_millis("$2"),
                    DB::LEAST
                ),
                failures: format!(
                    "SELECT failures, {left} FROM {t} WHERE key = $1 AND window_end > {now}"
                ),
                reset: format!("DELETE FROM {t} WHERE key = $1"),
                delete_expired: format!("DELETE FROM {t} WHERE window_end <= {now}"),
            }
        }
    }
}

use statements::{Location, RememberSql, ThrottleSql};

/// One kind of table a [`SqlStore`] keeps: [`RememberTable`] or [`ThrottleTable`]. It cannot
/// be implemented outside this crate.
pub trait TableKind: dialect::Kind {}

/// The remember-me tokens table ([`SqlRememberStore`]).
#[derive(Debug, Clone, Copy)]
pub struct RememberTable;

/// The throttle windows table ([`SqlThrottleStore`]).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleTable;

impl TableKind for RememberTable {}
impl TableKind for ThrottleTable {}

impl dialect::Kind for RememberTable {
    const DEFAULT_TABLE: &'static str = "login_remember_tokens";
    const WHAT: &'static str = REMEMBER;
    const NAME: &'static str = "SqlRememberStore";
    type Statements = RememberSql;
}

impl dialect::Kind for ThrottleTable {
    const DEFAULT_TABLE: &'static str = "login_throttle";
    const WHAT: &'static str = THROTTLE;
    const NAME: &'static str = "SqlThrottleStore";
    type Statements = ThrottleSql;
}

impl dialect::Statements for RememberSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        RememberSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}

impl dialect::Statements for ThrottleSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        ThrottleSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}

/// A [`RememberStore`] in a SQL table; use it as
/// [`SqliteRememberStore`](super::sqlite::SqliteRememberStore) or
/// [`PostgresRememberStore`](super::postgres::PostgresRememberStore). Times are kept to the
/// millisecond (SQLite) or microsecond (Postgres).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use login_manager::stores::sqlite::SqliteRememberStore;
/// use login_manager::Remember;
///
/// let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
/// let store = SqliteRememberStore::new(pool).table_name("remember_tokens");
/// store.migrate().await?;
/// let remember = Remember::new(store);
/// # Ok(()) }
/// ```
pub type SqlRememberStore<DB> = SqlStore<DB, RememberTable>;

/// A [`ThrottleStore`] in a SQL table; use it as
/// [`SqliteThrottleStore`](super::sqlite::SqliteThrottleStore) or
/// [`PostgresThrottleStore`](super::postgres::PostgresThrottleStore).
///
/// Each failure is one atomic upsert, and windows are measured by the database's clock, so
/// every app instance applies the same limit. Expired windows are ignored at once and deleted
/// by the cleanup. Windows are capped at a year.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn run(pool: sqlx::PgPool) -> login_manager::Result<()> {
/// use login_manager::stores::postgres::PostgresThrottleStore;
/// use login_manager::LoginThrottle;
///
/// let store = PostgresThrottleStore::new(pool);
/// store.migrate().await?;
/// let throttle = LoginThrottle::new(store);
/// # Ok(()) }
/// ```
pub type SqlThrottleStore<DB> = SqlStore<DB, ThrottleTable>;

/// A store in one SQL table: remember-me tokens ([`SqlRememberStore`]) or throttle windows
/// ([`SqlThrottleStore`]).
///
/// Create the table with [`migrate`](Self::migrate) at start-up, and delete expired rows now
/// and then with [`delete_expired`](Self::delete_expired) or
/// [`continuously_delete_expired`](Self::continuously_delete_expired).
pub struct SqlStore<DB: SqlDialect, K: TableKind> {
    pool: Pool<DB>,
    location: Location,
    timeout: Duration,
    sql: Arc<K::Statements>,
}

impl<DB: SqlDialect, K: TableKind> Clone for SqlStore<DB, K> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            location: self.location.clone(),
            timeout: self.timeout,
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<DB: SqlDialect, K: TableKind> fmt::Debug for SqlStore<DB, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(K::NAME)
            .field("database", &DB::NAME)
            .field("table", &self.location.table())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<DB: SqlDialect, K: TableKind> SqlStore<DB, K> {
    /// The default table name: `login_remember_tokens` or `login_throttle`.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use login_manager::stores::sqlite::{SqliteRememberStore, SqliteThrottleStore};
    ///
    /// assert_eq!(SqliteRememberStore::DEFAULT_TABLE, "login_remember_tokens");
    /// assert_eq!(SqliteThrottleStore::DEFAULT_TABLE, "login_throttle");
    /// # }
    /// ```
    pub const DEFAULT_TABLE: &'static str = K::DEFAULT_TABLE;

    /// A store using `pool`, the default table, a 5 s timeout per call.
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # fn run(pool: sqlx::PgPool) {
    /// use login_manager::stores::postgres::PostgresRememberStore;
    ///
    /// let store = PostgresRememberStore::new(pool);
    /// # }
    /// ```
    pub fn new(pool: Pool<DB>) -> Self {
        let location = Location {
            schema: None,
            table: K::DEFAULT_TABLE.to_owned(),
        };
        Self {
            pool,
            sql: Arc::new(<K::Statements as dialect::Statements>::build::<DB>(
                &location,
            )),
            location,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Uses table `name` (quoted: any name is safe and keeps its case).
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # fn run(pool: sqlx::SqlitePool) {
    /// use login_manager::stores::sqlite::SqliteRememberStore;
    ///
    /// let store = SqliteRememberStore::new(pool).table_name("remember_tokens");
    /// # }
    /// ```
    pub fn table_name(mut self, name: impl Into<String>) -> Self {
        self.location.table = name.into();
        self.rebuild();
        self
    }

    /// Bounds every call (default 5 s): past it, the call fails with
    /// [`Error::Timeout`](crate::Error::Timeout) (`"remember store"` or `"throttle store"`).
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # fn run(pool: sqlx::SqlitePool) {
    /// use std::time::Duration;
    /// use login_manager::stores::sqlite::SqliteThrottleStore;
    ///
    /// let store = SqliteThrottleStore::new(pool).timeout(Duration::from_secs(2));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # fn run(store: login_manager::stores::sqlite::SqliteRememberStore) {
    /// let pool: &sqlx::SqlitePool = store.pool();
    /// # }
    /// ```
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Creates the table and its indexes if they do not exist (and, on Postgres, the schema),
    /// in one transaction. Safe to run on every start-up, from several instances at once.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) or [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn run(store: login_manager::stores::sqlite::SqliteRememberStore) -> login_manager::Result<()> {
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<()> {
        let migration = dialect::Statements::migration(&*self.sql);
        bounded(
            self.timeout,
            K::WHAT,
            DB::run_in_transaction(&self.pool, migration),
        )
        .await
    }

    /// Deletes the expired rows (tokens past `expires_at`, ended throttle windows) by the
    /// database's clock; how many. The same as the stores' own `delete_expired`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) or [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn run(store: login_manager::stores::sqlite::SqliteRememberStore) -> login_manager::Result<()> {
    /// let deleted = store.delete_expired().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_expired(&self) -> Result<u64> {
        let statement = dialect::Statements::delete_expired(&*self.sql);
        self.execute(statement, vec![]).await
    }

    /// Deletes expired rows every `period` (at least a second), for ever: spawn it, and abort
    /// the task to stop it. A failed round is logged and retried at the next tick.
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # fn run(store: login_manager::stores::sqlite::SqliteRememberStore) {
    /// use std::time::Duration;
    ///
    /// let cleanup = tokio::spawn(store.clone().continuously_delete_expired(Duration::from_secs(3600)));
    /// // at shutdown: cleanup.abort();
    /// # }
    /// ```
    pub async fn continuously_delete_expired(self, period: Duration) {
        delete_expired_every(period, K::WHAT, || self.delete_expired()).await;
    }

    /// Puts the table in `schema` (Postgres' `schema` builder).
    #[cfg(feature = "postgres")]
    pub(super) fn set_schema(mut self, schema: String) -> Self {
        self.location.schema = Some(schema);
        self.rebuild();
        self
    }

    fn rebuild(&mut self) {
        self.sql = Arc::new(<K::Statements as dialect::Statements>::build::<DB>(
            &self.location,
        ));
    }

    async fn execute(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64> {
        bounded(self.timeout, K::WHAT, DB::execute(&self.pool, sql, args)).await
    }
}

impl<DB: SqlDialect> SqlRememberStore<DB> {
    async fn fetch(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Vec<RememberToken>> {
        bounded(
            self.timeout,
            REMEMBER,
            DB::fetch_tokens(&self.pool, sql, args),
        )
        .await
    }
}

#[async_trait]
impl<DB: SqlDialect> RememberStore for SqlRememberStore<DB> {
    async fn create(&self, token: RememberToken) -> Result<()> {
        let args = vec![
            Arg::Text(&token.selector),
            Arg::Bytes(&token.validator_hash),
            Arg::NullableBytes(token.previous_hash.as_ref().map(|h| &h[..])),
            Arg::NullableTime(token.rotated_at),
            Arg::Text(&token.user_id),
            Arg::Text(&token.auth_hash),
            Arg::Time(token.created_at),
            Arg::Time(token.last_used_at),
            Arg::Time(token.expires_at),
            Arg::Text(&token.user_agent),
        ];
        self.execute(&self.sql.insert, args).await.map(drop)
    }

    async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        let tokens = self
            .fetch(&self.sql.find, vec![Arg::Text(selector)])
            .await?;
        Ok(tokens.into_iter().next())
    }

    async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool> {
        let args = vec![
            Arg::Bytes(&rotation.new_hash),
            Arg::Time(rotation.rotated_at),
            Arg::Time(rotation.expires_at),
            Arg::Text(selector),
            Arg::Bytes(expected),
        ];
        Ok(self.execute(&self.sql.rotate, args).await? == 1)
    }

    async fn delete(&self, selector: &str) -> Result<()> {
        self.execute(&self.sql.delete, vec![Arg::Text(selector)])
            .await
            .map(drop)
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        self.execute(&self.sql.delete_for_user, vec![Arg::Text(user_id)])
            .await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        self.fetch(&self.sql.list_for_user, vec![Arg::Text(user_id)])
            .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        SqlStore::delete_expired(self).await
    }
}

impl<DB: SqlDialect> SqlThrottleStore<DB> {
    async fn window(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<ThrottleEntry>> {
        let row = bounded(
            self.timeout,
            THROTTLE,
            DB::fetch_window(&self.pool, sql, args),
        )
        .await?;
        Ok(row.map(|(failures, millis_left)| window_entry(failures, millis_left)))
    }
}

#[async_trait]
impl<DB: SqlDialect> ThrottleStore for SqlThrottleStore<DB> {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        self.window(&self.sql.failures, vec![Arg::Text(key)]).await
    }

    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        let args = vec![Arg::Text(key), Arg::BigInt(window_millis(window))];
        let entry = self.window(&self.sql.record_failure, args).await?;
        // An upsert with RETURNING always returns its row; an empty answer means a broken
        // backend, reported as such rather than as "no failures".
        entry.ok_or_else(|| crate::Error::Store("the throttle upsert returned no row".into()))
    }

    async fn reset(&self, key: &str) -> Result<()> {
        self.execute(&self.sql.reset, vec![Arg::Text(key)])
            .await
            .map(drop)
    }
}
