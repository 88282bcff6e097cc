//! The SQL stores' one implementation, generic over the sqlx database and the kind of table
//! (features `sqlite`, `postgres`), and the macro that wraps it into the public store types
//! of `sqlite.rs` and `postgres.rs`. Nothing here is public: every statement is written once
//! (`statements.rs`), each database only supplies its column types and its clock
//! (`dialect.rs`). The resulting tables are documented in [`crate::stores`].

pub(crate) mod dialect;
pub(crate) mod statements;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Pool;

use super::shared::{backend, delete_expired_every, window_entry, window_millis};
use crate::remember::{token::ValidatorHash, RememberToken, Rotation};
use crate::throttle::ThrottleEntry;
use crate::{Error, LoginTouch, Result, StoredLogin, StoredToken};
use dialect::{Arg, Backend};
use statements::{
    Kind, Location, LoginTable, RememberTable, Statements, ThrottleTable, TokenTable,
};

/// A store in one SQL table of database `DB`: remember-me tokens (`K` = [`RememberTable`]),
/// throttle windows ([`ThrottleTable`]), the login index ([`LoginTable`]) or one-time tokens
/// ([`TokenTable`]). Wrapped by the public types of [`sql_store!`].
pub(crate) struct SqlStore<DB: Backend, K: Kind> {
    pool: Pool<DB>,
    location: Location,
    sql: Arc<K::Statements>,
}

impl<DB: Backend, K: Kind> Clone for SqlStore<DB, K> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            location: self.location.clone(),
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<DB: Backend, K: Kind> SqlStore<DB, K> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        let location = Location {
            schema: None,
            table: K::DEFAULT_TABLE.to_owned(),
        };
        Self {
            pool,
            sql: Arc::new(K::Statements::build::<DB>(&location)),
            location,
        }
    }

    pub(crate) fn set_table(mut self, name: String) -> Self {
        self.location.table = name;
        self.rebuild()
    }

    /// Puts the table in `schema` (Postgres' `schema` builder).
    #[cfg(feature = "postgres")]
    pub(crate) fn set_schema(mut self, schema: String) -> Self {
        self.location.schema = Some(schema);
        self.rebuild()
    }

    /// The qualified, quoted table name, for `Debug`.
    pub(crate) fn table(&self) -> String {
        self.location.table()
    }

    pub(crate) fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        backend(DB::run_in_transaction(&self.pool, self.sql.migration())).await
    }

    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        self.execute(self.sql.delete_expired(), vec![]).await
    }

    pub(crate) async fn continuously_delete_expired(self, period: Duration) {
        delete_expired_every(period, K::WHAT, || self.delete_expired()).await;
    }

    fn rebuild(mut self) -> Self {
        self.sql = Arc::new(K::Statements::build::<DB>(&self.location));
        self
    }

    async fn execute(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64> {
        backend(DB::execute(&self.pool, sql, args)).await
    }
}

/// The operations of [`RememberStore`](crate::RememberStore).
impl<DB: Backend> SqlStore<DB, RememberTable> {
    pub(crate) async fn create(&self, token: RememberToken) -> Result<()> {
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

    pub(crate) async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        let tokens = self
            .fetch(&self.sql.find, vec![Arg::Text(selector)])
            .await?;
        Ok(tokens.into_iter().next())
    }

    pub(crate) async fn rotate(
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

    pub(crate) async fn delete(&self, selector: &str) -> Result<()> {
        self.execute(&self.sql.delete, vec![Arg::Text(selector)])
            .await
            .map(drop)
    }

    pub(crate) async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        self.execute(&self.sql.delete_for_user, vec![Arg::Text(user_id)])
            .await
    }

    pub(crate) async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        self.fetch(&self.sql.list_for_user, vec![Arg::Text(user_id)])
            .await
    }

    async fn fetch(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Vec<RememberToken>> {
        backend(DB::fetch_tokens(&self.pool, sql, args)).await
    }
}

/// The operations of [`ThrottleStore`](crate::ThrottleStore).
impl<DB: Backend> SqlStore<DB, ThrottleTable> {
    pub(crate) async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        self.window(&self.sql.failures, vec![Arg::Text(key)]).await
    }

    pub(crate) async fn record_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<ThrottleEntry> {
        let args = vec![Arg::Text(key), Arg::BigInt(window_millis(window))];
        let entry = self.window(&self.sql.record_failure, args).await?;
        // An upsert with RETURNING always returns its row; an empty answer means a broken
        // backend, reported as such rather than as "no failures".
        entry.ok_or_else(|| crate::Error::Store("the throttle upsert returned no row".into()))
    }

    pub(crate) async fn reset(&self, key: &str) -> Result<()> {
        self.execute(&self.sql.reset, vec![Arg::Text(key)])
            .await
            .map(drop)
    }

    async fn window(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<ThrottleEntry>> {
        let row = backend(DB::fetch_window(&self.pool, sql, args)).await?;
        Ok(row.map(|(failures, millis_left)| window_entry(failures, millis_left)))
    }
}

/// How many times a `put` re-reads a row that other calls keep changing under it before it
/// gives up with an error. Each retry means another call's write succeeded, so this is only
/// reached by dozens of calls replacing or touching the same entry at once.
const PUT_ATTEMPTS: usize = 64;

/// The operations of [`LoginStore`](crate::LoginStore).
impl<DB: Backend> SqlStore<DB, LoginTable> {
    pub(crate) async fn put(
        &self,
        login: StoredLogin,
        max_per_user: usize,
    ) -> Result<Vec<StoredLogin>> {
        let mut removed = Vec::new();
        let mut placed = false;
        for _ in 0..PUT_ATTEMPTS {
            if self.execute(&self.sql.insert, login_args(&login)).await? == 1 {
                placed = true;
                break;
            }
            let key = vec![Arg::Text(&login.user_id), Arg::Text(&login.id)];
            // Gone since the insert (deleted, trimmed): insert again.
            let Some(old) = self.logins(&self.sql.find_any, key).await?.pop() else {
                continue;
            };
            let args = vec![
                Arg::Text(&login.user_id),
                Arg::Text(&login.id),
                Arg::NullableText(login.session_id.as_deref()),
                Arg::NullableText(login.remember_selector.as_deref()),
                Arg::Time(login.last_used_at),
                Arg::Time(login.expires_at),
                Arg::Text(&login.user_agent),
                Arg::Bool(login.remembered),
                Arg::NullableText(old.session_id.as_deref()),
                Arg::NullableText(old.remember_selector.as_deref()),
                Arg::Time(old.created_at),
                Arg::Time(old.last_used_at),
                Arg::Time(old.expires_at),
                Arg::Text(&old.user_agent),
                Arg::Bool(old.remembered),
            ];
            // Changed since it was read (a touch, a racing put): read it again.
            if self.execute(&self.sql.replace, args).await? == 1 {
                removed.push(old);
                placed = true;
                break;
            }
        }
        if !placed {
            return Err(Error::Store(
                format!(
                    "login store: the entry changed under {PUT_ATTEMPTS} attempts to replace it"
                )
                .into(),
            ));
        }
        // At least one, as the memory store; a bound past i64::MAX is no bound.
        let max = i64::try_from(max_per_user.max(1)).unwrap_or(i64::MAX);
        let trim = vec![Arg::Text(&login.user_id), Arg::BigInt(max)];
        removed.extend(self.logins(&self.sql.trim, trim).await?);
        Ok(removed)
    }

    pub(crate) async fn get(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        let args = vec![Arg::Text(user_id), Arg::Text(id)];
        Ok(self.logins(&self.sql.get, args).await?.pop())
    }

    pub(crate) async fn touch(&self, user_id: &str, id: &str, touch: LoginTouch) -> Result<bool> {
        let args = vec![
            Arg::Text(user_id),
            Arg::Text(id),
            Arg::Time(touch.last_used_at),
            Arg::Time(touch.expires_at),
            Arg::NullableText(touch.session_id.as_deref()),
        ];
        Ok(self.execute(&self.sql.touch, args).await? == 1)
    }

    pub(crate) async fn list(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        self.logins(&self.sql.list, vec![Arg::Text(user_id)]).await
    }

    pub(crate) async fn delete(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        let args = vec![Arg::Text(user_id), Arg::Text(id)];
        Ok(self.logins(&self.sql.delete, args).await?.pop())
    }

    pub(crate) async fn delete_for_user(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        self.logins(&self.sql.delete_for_user, vec![Arg::Text(user_id)])
            .await
    }

    async fn logins(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Vec<StoredLogin>> {
        backend(DB::fetch_logins(&self.pool, sql, args)).await
    }
}

/// The operations of [`TokenStore`](crate::TokenStore).
impl<DB: Backend> SqlStore<DB, TokenTable> {
    pub(crate) async fn create(&self, token: StoredToken) -> Result<()> {
        let args = vec![
            Arg::Text(&token.selector),
            Arg::Bytes(&token.validator_hash),
            Arg::Text(&token.purpose),
            Arg::Text(&token.user_id),
            Arg::Text(&token.auth_hash),
            Arg::Time(token.created_at),
            Arg::Time(token.expires_at),
        ];
        self.execute(&self.sql.insert, args).await.map(drop)
    }

    pub(crate) async fn find(&self, selector: &str) -> Result<Option<StoredToken>> {
        let args = vec![Arg::Text(selector)];
        let tokens = backend(DB::fetch_one_time_tokens(&self.pool, &self.sql.find, args)).await?;
        Ok(tokens.into_iter().next())
    }

    /// One `DELETE` conditional on the hash: of racing calls, only the one whose statement
    /// deleted the row sees a row affected.
    pub(crate) async fn take(&self, selector: &str, validator_hash: &[u8; 32]) -> Result<bool> {
        let args = vec![Arg::Text(selector), Arg::Bytes(validator_hash)];
        Ok(self.execute(&self.sql.take, args).await? == 1)
    }
}

/// The columns of a login, in the order of the `insert` statement.
fn login_args(login: &StoredLogin) -> Vec<Arg<'_>> {
    vec![
        Arg::Text(&login.id),
        Arg::Text(&login.user_id),
        Arg::NullableText(login.session_id.as_deref()),
        Arg::NullableText(login.remember_selector.as_deref()),
        Arg::Time(login.created_at),
        Arg::Time(login.last_used_at),
        Arg::Time(login.expires_at),
        Arg::Text(&login.user_agent),
        Arg::Bool(login.remembered),
    ]
}

/// Defines one public SQL store type: a newtype around [`SqlStore`] for one database and one
/// kind of table, with the builder (`new`, `table_name`, `pool`, `DEFAULT_TABLE`), the
/// maintenance calls (`migrate`, `delete_expired`, `continuously_delete_expired`) and the store
/// trait, each documented with an example naming the type itself.
///
/// `module` and `pool` are the type's module under `login_manager::stores` and the pool type
/// its examples take; `table` is the default table name, which the `DEFAULT_TABLE` doctest
/// checks against the one the implementation uses.
macro_rules! sql_store {
    (
        $(#[$doc:meta])*
        pub struct $name:ident($db:ty, $kind:ty): $store_trait:ident {
            pool: $pool:literal,
            table: $table:literal $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name($crate::stores::sql::SqlStore<$db, $kind>);

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("table", &self.0.table())
                    .finish_non_exhaustive()
            }
        }

        impl $name {
            #[doc = concat!("The default table name, `", $table, "`.")]
            ///
            /// ```
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("assert_eq!(", stringify!($name), "::DEFAULT_TABLE, \"", $table, "\");")]
            /// ```
            pub const DEFAULT_TABLE: &'static str =
                <$kind as $crate::stores::sql::statements::Kind>::DEFAULT_TABLE;

            /// A store using `pool` and the table [`DEFAULT_TABLE`](Self::DEFAULT_TABLE).
            /// Create the table with [`migrate`](Self::migrate) at start-up.
            ///
            /// ```no_run
            #[doc = concat!("# fn run(pool: ", $pool, ") {")]
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("let store = ", stringify!($name), "::new(pool);")]
            /// # }
            /// ```
            pub fn new(pool: ::sqlx::Pool<$db>) -> Self {
                Self($crate::stores::sql::SqlStore::new(pool))
            }

            /// Uses table `name` (quoted: any name is safe and keeps its case). Its indexes are
            /// named after it.
            ///
            /// ```no_run
            #[doc = concat!("# fn run(pool: ", $pool, ") {")]
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("let store = ", stringify!($name), "::new(pool).table_name(\"my_", $table, "\");")]
            /// # }
            /// ```
            #[must_use]
            pub fn table_name(self, name: impl Into<String>) -> Self {
                Self(self.0.set_table(name.into()))
            }

            /// The connection pool.
            ///
            /// ```no_run
            #[doc = concat!("# fn run(store: login_manager::stores::", stringify!($name), ") {")]
            #[doc = concat!("let pool: &", $pool, " = store.pool();")]
            /// # }
            /// ```
            pub fn pool(&self) -> &::sqlx::Pool<$db> {
                self.0.pool()
            }

            /// Creates the table and its indexes if they do not exist (and, on Postgres, the
            /// schema), in one transaction. Safe to run on every start-up, from several
            /// instances at once.
            ///
            /// A start-up call, not a request's: no store timeout applies, it is bounded by
            /// the pool's own `acquire_timeout` (sqlx's default is 30 s).
            ///
            /// # Errors
            ///
            /// [`Error::Store`](crate::Error::Store) when the database fails or cannot be
            /// reached.
            ///
            /// ```no_run
            #[doc = concat!("# async fn run(store: login_manager::stores::", stringify!($name), ") -> login_manager::Result<()> {")]
            /// store.migrate().await?;
            /// # Ok(()) }
            /// ```
            pub async fn migrate(&self) -> $crate::Result<()> {
                self.0.migrate().await
            }

            /// Deletes the expired rows (tokens and logins past `expires_at`, ended throttle
            /// windows) by the database's clock; how many.
            ///
            /// A cleanup call, not a request's: no store timeout applies, it is bounded by the
            /// pool's own `acquire_timeout` (sqlx's default is 30 s).
            ///
            /// # Errors
            ///
            /// [`Error::Store`](crate::Error::Store) when the database fails or cannot be
            /// reached.
            ///
            /// ```no_run
            #[doc = concat!("# async fn run(store: login_manager::stores::", stringify!($name), ") -> login_manager::Result<()> {")]
            /// let deleted = store.delete_expired().await?;
            /// # Ok(()) }
            /// ```
            pub async fn delete_expired(&self) -> $crate::Result<u64> {
                self.0.delete_expired().await
            }

            /// Deletes expired rows every `period` (at least a second), for ever: spawn it, and
            /// abort the task to stop it. A failed round (see
            /// [`delete_expired`](Self::delete_expired)) is logged and retried at the next
            /// tick.
            ///
            /// ```no_run
            #[doc = concat!("# fn run(store: login_manager::stores::", stringify!($name), ") {")]
            /// use std::time::Duration;
            ///
            /// let cleanup = tokio::spawn(store.clone().continuously_delete_expired(Duration::from_secs(3600)));
            /// // at shutdown: cleanup.abort();
            /// # }
            /// ```
            pub async fn continuously_delete_expired(self, period: ::std::time::Duration) {
                self.0.continuously_delete_expired(period).await
            }
        }

        delegate_store!($store_trait for $name);
    };
}

pub(crate) use sql_store;
