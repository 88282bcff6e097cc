//! Connecting to the backends a URL names, and creating what they need (tables, the session
//! directory).

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::future::Future;

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "file"
))]
use crate::{BoxError, Error, Result};

/// How long [`SessionBackend::from_url`](crate::SessionBackend::from_url) waits for a database
/// or Redis server.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn store_error(error: impl Into<BoxError>) -> Error {
    Error::Store(error.into())
}

/// A connection attempt bounded by [`CONNECT_TIMEOUT`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn connect<T>(
    attempt: impl Future<Output = std::result::Result<T, sqlx::Error>>,
) -> Result<T> {
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(Error::Timeout("session store")),
    }
}

/// WAL and a busy timeout: page views read while a login writes, and concurrent writers
/// wait for each other instead of failing with "database is locked".
#[cfg(feature = "sqlite")]
pub(crate) async fn connect_sqlite(url: &str) -> Result<sqlx::SqlitePool> {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    let options = SqliteConnectOptions::from_str(url)
        .map_err(store_error)?
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(5));
    connect(sqlx::SqlitePool::connect_with(options)).await
}

/// `PostgresStore::migrate` is `CREATE … IF NOT EXISTS`, which fails when two instances run
/// it at once; a session-level advisory lock (the key the crate's own stores use), taken on a
/// connection outside the pool so that the migration can still use every pooled one, makes
/// them take turns.
#[cfg(feature = "postgres")]
pub(crate) async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};

    let options = pool.connect_options();
    let mut lock = connect(options.connect()).await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('login_manager.migrate'))")
        .execute(&mut lock)
        .await
        .map_err(store_error)?;
    let migrated = tower_sessions_sqlx_store::PostgresStore::new(pool.clone())
        .migrate()
        .await
        .map_err(store_error);
    // Closing the connection releases the lock.
    let _ = lock.close().await;
    migrated
}

#[cfg(feature = "redis")]
pub(crate) async fn connect_redis(url: &str) -> Result<fred::clients::Pool> {
    use fred::prelude::{ClientLike, Config, ReconnectPolicy};

    let config = Config::from_url(url).map_err(store_error)?;
    let pool = fred::clients::Pool::new(config, None, None, Some(ReconnectPolicy::default()), 4)
        .map_err(store_error)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, pool.init()).await {
        Ok(Ok(_)) => Ok(pool),
        Ok(Err(error)) => Err(store_error(error)),
        Err(_) => Err(Error::Timeout("session store")),
    }
}

/// `file:sessions` (relative), `file:/abs` or `file:///abs`.
#[cfg(feature = "file")]
pub(crate) fn file_path(rest: &str) -> Result<std::path::PathBuf> {
    let path = rest.trim_start_matches(':');
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err(Error::Config(
            "file sessions need a directory: file:sessions or file:///var/lib/app/sessions"
                .to_owned(),
        ));
    }
    Ok(std::path::PathBuf::from(path))
}

#[cfg(feature = "file")]
pub(crate) fn file_store(dir: &std::path::Path) -> tower_sessions_file_store::FileSessionStorage {
    tower_sessions_file_store::FileSessionStorage::new_in_folder(dir.to_path_buf())
}

/// The session directory, readable by this user only: a session file is as good as a
/// logged-in cookie.
#[cfg(feature = "file")]
pub(crate) async fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // Once, at start-up: a blocking call is fine here.
    builder.create(dir).map_err(store_error)
}
