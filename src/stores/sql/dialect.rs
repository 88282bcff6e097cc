//! What each database supplies ([`Dialect`]: column types, its clock, how times are bound)
//! and the generic execution on top of it ([`Backend`], implemented once for every dialect
//! that sqlx supports fully). Crate-private: `sqlite.rs` and `postgres.rs` implement
//! [`Dialect`], the public store types never show it.

use std::future::Future;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use time::OffsetDateTime;

use crate::error::BoxError;
use crate::remember::{token::ValidatorHash, RememberToken};
use crate::{StoredLogin, StoredToken};

/// Column types, the clock, and how times are bound.
pub(crate) trait Dialect: Database {
    /// How a time is bound and read: `OffsetDateTime` (Postgres), Unix ms (SQLite).
    type Time: for<'q> Encode<'q, Self> + for<'r> Decode<'r, Self> + Type<Self> + Send;
    /// Column type of a SHA-256 hash.
    const BYTES: &'static str;
    /// Column type of a time.
    const TIME: &'static str;
    /// Column type of a 64-bit integer.
    const BIGINT: &'static str;
    /// Column type of a boolean.
    const BOOL: &'static str;
    /// Equality that holds between two NULLs (`a <op> b`).
    const NULL_SAFE_EQ: &'static str;
    /// What follows a text column in `ORDER BY` so that it sorts byte by byte, as Rust's
    /// `str` does, whatever the database's collation.
    const BYTEWISE: &'static str;
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
pub(crate) enum Arg<'a> {
    Text(&'a str),
    NullableText(Option<&'a str>),
    Bool(bool),
    Bytes(&'a [u8]),
    NullableBytes(Option<&'a [u8]>),
    Time(OffsetDateTime),
    NullableTime(Option<OffsetDateTime>),
    BigInt(i64),
}

/// Running statements; implemented once for every [`Dialect`] that sqlx supports fully.
pub(crate) trait Backend: Dialect {
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

    /// Runs a query selecting the login columns in [`StoredLogin`] field order.
    fn fetch_logins<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> impl Future<Output = Result<Vec<StoredLogin>, BoxError>> + Send + 'a;

    /// Runs a query selecting the one-time token columns in [`StoredToken`] field order.
    fn fetch_one_time_tokens<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> impl Future<Output = Result<Vec<StoredToken>, BoxError>> + Send + 'a;

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
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB>,
    for<'q> bool: Encode<'q, DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
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

    async fn fetch_logins<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> Result<Vec<StoredLogin>, BoxError> {
        let rows = bind(sql, args).fetch_all(pool).await?;
        rows.iter().map(login_from_row::<DB>).collect()
    }

    async fn fetch_one_time_tokens<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> Result<Vec<StoredToken>, BoxError> {
        let rows = bind(sql, args).fetch_all(pool).await?;
        rows.iter().map(one_time_token_from_row::<DB>).collect()
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

fn bind<'a, DB>(sql: &'a str, args: Vec<Arg<'a>>) -> sqlx::query::Query<'a, DB, DB::Arguments<'a>>
where
    DB: Dialect,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    args.into_iter()
        .fold(sqlx::query::<DB>(sql), |query, arg| match arg {
            Arg::Text(v) => query.bind(v),
            Arg::NullableText(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
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

fn login_from_row<DB>(row: &DB::Row) -> Result<StoredLogin, BoxError>
where
    DB: Dialect,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let time = |i: usize| -> Result<OffsetDateTime, BoxError> {
        DB::decode_time(row.try_get::<DB::Time, _>(i)?)
    };
    Ok(StoredLogin {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        session_id: row.try_get(2)?,
        remember_selector: row.try_get(3)?,
        created_at: time(4)?,
        last_used_at: time(5)?,
        expires_at: time(6)?,
        user_agent: row.try_get(7)?,
        remembered: row.try_get(8)?,
    })
}

fn one_time_token_from_row<DB>(row: &DB::Row) -> Result<StoredToken, BoxError>
where
    DB: Dialect,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let time = |i: usize| -> Result<OffsetDateTime, BoxError> {
        DB::decode_time(row.try_get::<DB::Time, _>(i)?)
    };
    Ok(StoredToken {
        selector: row.try_get(0)?,
        validator_hash: hash(row.try_get(1)?)?,
        purpose: row.try_get(2)?,
        user_id: row.try_get(3)?,
        auth_hash: row.try_get(4)?,
        created_at: time(5)?,
        expires_at: time(6)?,
    })
}

fn hash(bytes: Vec<u8>) -> Result<ValidatorHash, BoxError> {
    ValidatorHash::try_from(bytes)
        .map_err(|b| format!("stored hash has {} bytes, not 32", b.len()).into())
}
