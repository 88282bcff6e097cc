//! Postgres stores (feature `postgres`): [`PostgresRememberStore`],
//! [`PostgresThrottleStore`], [`PostgresLoginStore`] and [`PostgresTokenStore`], the Postgres
//! dialect of the SQL stores. Documented in [`crate::stores`].

use sqlx::Postgres;
use time::OffsetDateTime;

use super::sql::{
    dialect::Dialect,
    sql_store,
    statements::{LoginTable, RememberTable, ThrottleTable, TokenTable},
};
use crate::error::BoxError;

sql_store! {
    /// Remember-me tokens in Postgres: a [`RememberStore`](crate::RememberStore) in
    /// one table (default `login_remember_tokens`, in the [`schema`](Self::schema) if set),
    /// times kept to the microsecond. Clones share the pool. See
    /// [Postgres](crate::stores#postgres) and the [table layout](crate::stores#sql-tables).
    ///
    /// Create the table with [`migrate`](Self::migrate) at start-up, and delete expired
    /// tokens now and then with [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> login_manager::Result<()> {
    /// use login_manager::stores::PostgresRememberStore;
    /// use login_manager::Remember;
    ///
    /// let store = PostgresRememberStore::new(pool);
    /// store.migrate().await?;
    /// let remember = Remember::new(store);
    /// # Ok(()) }
    /// ```
    pub struct PostgresRememberStore(Postgres, RememberTable): RememberStore {
        pool: "sqlx::PgPool",
        table: "login_remember_tokens",
    }
}

sql_store! {
    /// Login-throttle windows in Postgres: a [`ThrottleStore`](crate::ThrottleStore) in one
    /// table (default `login_throttle`, in the [`schema`](Self::schema) if set). Clones share
    /// the pool. See [Postgres](crate::stores#postgres).
    ///
    /// Each failure is one atomic upsert, and windows are measured by the server's `now()`,
    /// so every app instance applies the same limit. Expired windows are ignored at once and
    /// deleted by [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired). Windows are capped
    /// at a year.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> login_manager::Result<()> {
    /// use login_manager::stores::PostgresThrottleStore;
    /// use login_manager::LoginThrottle;
    ///
    /// let store = PostgresThrottleStore::new(pool);
    /// store.migrate().await?;
    /// let throttle = LoginThrottle::new(store);
    /// # Ok(()) }
    /// ```
    pub struct PostgresThrottleStore(Postgres, ThrottleTable): ThrottleStore {
        pool: "sqlx::PgPool",
        table: "login_throttle",
    }
}

sql_store! {
    /// The login index in Postgres: a [`LoginStore`](crate::LoginStore) in one table (default
    /// `login_index`, in the [`schema`](Self::schema) if set; one row per live login, primary
    /// key `(user_id, id)`), times kept to the microsecond. Clones share the pool. See
    /// [Postgres](crate::stores#postgres) and the [table layout](crate::stores#sql-tables).
    ///
    /// Each user's bound holds however many logins race, on any number of app instances:
    /// every `put` trims the user's rows in a statement of its own, after its insert. Expired
    /// entries are never returned by `get` or `list` (the server's `now()` decides), and
    /// deleted by [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool, sessions: tower_sessions::MemoryStore) -> login_manager::Result<()> {
    /// use login_manager::stores::PostgresLoginStore;
    /// use login_manager::LoginIndex;
    ///
    /// let store = PostgresLoginStore::new(pool);
    /// store.migrate().await?;
    /// // `sessions`: a clone of the SessionManagerLayer's store.
    /// let index = LoginIndex::new(store, sessions);
    /// # Ok(()) }
    /// ```
    pub struct PostgresLoginStore(Postgres, LoginTable): LoginStore {
        pool: "sqlx::PgPool",
        table: "login_index",
    }
}

sql_store! {
    /// One-time tokens (password reset, email verification, magic links) in Postgres: a
    /// [`TokenStore`](crate::TokenStore) in one table (default `login_one_time_tokens`, in the
    /// [`schema`](Self::schema) if set; one row per outstanding token, primary key
    /// `selector`), times kept to the microsecond. Clones share the pool. See
    /// [Postgres](crate::stores#postgres) and the [table layout](crate::stores#sql-tables).
    ///
    /// [`take`](crate::TokenStore::take) is one conditional `DELETE`: racing consumptions of
    /// a token, on any number of app instances, queue on the row's lock and only the first
    /// finds the row. Expired tokens are never returned by `find` (the server's `now()`
    /// decides), and deleted by [`delete_expired`](Self::delete_expired) or
    /// [`continuously_delete_expired`](Self::continuously_delete_expired).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> login_manager::Result<()> {
    /// use login_manager::stores::PostgresTokenStore;
    /// use login_manager::OneTimeTokens;
    ///
    /// let store = PostgresTokenStore::new(pool);
    /// store.migrate().await?;
    /// let tokens = OneTimeTokens::new(store);
    /// # Ok(()) }
    /// ```
    pub struct PostgresTokenStore(Postgres, TokenTable): TokenStore {
        pool: "sqlx::PgPool",
        table: "login_one_time_tokens",
    }
}

/// The Postgres-only builder, on every store type.
macro_rules! schema_builder {
    ($($name:ident),+) => {$(
        impl $name {
            /// Puts the table in schema `name` (quoted), created by [`migrate`](Self::migrate)
            /// if missing. Without it, the connection's `search_path` decides.
            ///
            /// ```no_run
            /// # fn run(pool: sqlx::PgPool) {
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("let store = ", stringify!($name), "::new(pool).schema(\"auth\");")]
            /// # }
            /// ```
            #[must_use]
            pub fn schema(self, name: impl Into<String>) -> Self {
                Self(self.0.set_schema(name.into()))
            }
        }
    )+};
}

schema_builder!(
    PostgresRememberStore,
    PostgresThrottleStore,
    PostgresLoginStore,
    PostgresTokenStore
);

impl Dialect for Postgres {
    type Time = OffsetDateTime;
    const BYTES: &'static str = "BYTEA";
    const TIME: &'static str = "TIMESTAMPTZ";
    const BIGINT: &'static str = "BIGINT";
    const BOOL: &'static str = "BOOLEAN";
    const NULL_SAFE_EQ: &'static str = "IS NOT DISTINCT FROM";
    const BYTEWISE: &'static str = " COLLATE \"C\"";
    // The transaction's start: one statement sees one instant.
    const NOW: &'static str = "now()";
    const LEAST: &'static str = "LEAST";

    fn now_plus_millis(millis: &str) -> String {
        format!("(now() + {millis} * INTERVAL '1 millisecond')")
    }

    fn millis_until(column: &str) -> String {
        format!("CEIL(EXTRACT(EPOCH FROM ({column} - now())) * 1000)::BIGINT")
    }

    fn migration_prelude(schema: Option<&str>) -> Vec<String> {
        // `CREATE ... IF NOT EXISTS` is not safe against itself: two instances starting at
        // once can both pass the check and one fails on the catalog's unique index. A
        // transaction-scoped advisory lock makes the migrations take turns.
        let mut prelude =
            vec!["SELECT pg_advisory_xact_lock(hashtext('login_manager.migrate'))".to_owned()];
        if let Some(schema) = schema {
            prelude.push(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                schema.replace('"', "\"\"")
            ));
        }
        prelude
    }

    fn encode_time(time: OffsetDateTime) -> OffsetDateTime {
        time
    }

    fn decode_time(time: OffsetDateTime) -> Result<OffsetDateTime, BoxError> {
        Ok(time)
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
