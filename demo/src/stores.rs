//! Where the demo keeps its state: the one place that decides, from the settings, where
//! sessions, remember-me tokens, login-throttle counters, the index of live logins, one-time
//! tokens and outgoing mail live.
//!
//! - Remember-me tokens, throttle counters and the login index (every live login of every
//!   user, for `/devices` and the admin's "log out everywhere"): in Redis with `REDIS_URL`,
//!   else in the database of `DATABASE_URL` (SQLite or Postgres), in the library's stores.
//!   Never in memory: a restart keeps everyone "remembered", and several instances see the
//!   same tokens, counts and logins.
//! - Sessions: wherever `SESSION_STORE` says (see `config.rs`), built by
//!   `login-manager-sessions`. The login index deletes the sessions of ended logins from that
//!   same store; cookie sessions, which no server can delete, are checked against the index
//!   on every request instead.
//! - One-time tokens (password-reset links, #18): next to the remember-me tokens, in Redis
//!   with `REDIS_URL`, else in the database: a link mailed by one instance works on another.
//! - Mail: the `Outbox` — one `.eml` file per message in `DEMO_MAIL_DIR`, or SMTP with
//!   `DEMO_SMTP_URL`.
//!
//! The library's stores are chosen at run time as `Arc<dyn RememberStore>` /
//! `Arc<dyn ThrottleStore>` / `Arc<dyn LoginStore>` / `Arc<dyn TokenStore>`, which the library
//! accepts like any store.

use std::{sync::Arc, time::Duration};

use fred::{
    clients::Pool as RedisPool,
    prelude::{ClientLike, Config as RedisConfig, ReconnectPolicy},
};
use login_manager::{
    stores::{
        PostgresLoginStore, PostgresRememberStore, PostgresThrottleStore, PostgresTokenStore,
        RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore, SqliteLoginStore,
        SqliteRememberStore, SqliteThrottleStore, SqliteTokenStore,
    },
    CookieOptions, LoginIndex, LoginStore, Outbox, RememberStore, ThrottleStore, TokenStore,
};
use login_manager_sessions::{Key, SessionBackend, SessionConfig};

use crate::{
    config::{Config, SessionStore},
    db::Db,
};

/// How often expired sessions, remember-me tokens, login-index entries and one-time tokens
/// are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(60 * 60);
/// How often ended throttle windows are deleted (Redis expires them itself).
const THROTTLE_CLEANUP_EVERY: Duration = Duration::from_secs(10 * 60);
/// How long start-up waits for Redis.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the Redis pool shared by sessions, remember-me, throttling and the login
/// index.
const REDIS_POOL_SIZE: usize = 4;

/// The library's stores, as the demo picks them at run time.
type LibraryStores = (
    Arc<dyn RememberStore>,
    Arc<dyn ThrottleStore>,
    Arc<dyn LoginStore>,
    Arc<dyn TokenStore>,
);

/// Remember-me tokens, throttle windows, the login index and one-time tokens in the users'
/// SQL database (SQLite or Postgres): tables created if missing, ended throttle windows
/// deleted in the background (expired tokens and login entries by [`spawn_cleanup`]).
macro_rules! sql_stores {
    ($remember:ident, $throttle:ident, $logins:ident, $tokens:ident, $pool:expr) => {{
        let remember = $remember::new($pool.clone());
        remember.migrate().await?;
        let throttle = $throttle::new($pool.clone());
        throttle.migrate().await?;
        let logins = $logins::new($pool.clone());
        logins.migrate().await?;
        let tokens = $tokens::new($pool.clone());
        tokens.migrate().await?;
        tokio::spawn(
            throttle
                .clone()
                .continuously_delete_expired(THROTTLE_CLEANUP_EVERY),
        );
        let stores: LibraryStores = (
            Arc::new(remember),
            Arc::new(throttle),
            Arc::new(logins),
            Arc::new(tokens),
        );
        stores
    }};
}

/// The stores, built once at start-up.
pub struct Stores {
    pub sessions: SessionBackend,
    pub remember: Arc<dyn RememberStore>,
    pub throttle: Arc<dyn ThrottleStore>,
    /// Every live login, next to the remember-me tokens, and able to delete sessions from
    /// `sessions` (the layer's store).
    pub logins: LoginIndex,
    /// One-time tokens: the password-reset links.
    pub tokens: Arc<dyn TokenStore>,
    /// Where mail goes.
    pub outbox: Outbox,
}

impl Stores {
    /// Connects what the settings name and creates the tables the stores need (callers run
    /// this inside `db::exclusively`, so that instances starting at once take turns).
    pub async fn new(config: &Config, db: &Db) -> Result<Self, Box<dyn std::error::Error>> {
        let redis = match &config.redis_url {
            Some(url) => Some(connect_redis(url).await?),
            None => None,
        };

        let (remember, throttle, login_store, tokens): LibraryStores = match (&redis, db) {
            (Some(pool), _) => {
                let mut remember = RedisRememberStore::new(pool.clone());
                let mut throttle = RedisThrottleStore::new(pool.clone());
                let mut logins = RedisLoginStore::new(pool.clone());
                let mut tokens = RedisTokenStore::new(pool.clone());
                if let Some(prefix) = &config.redis_prefix {
                    remember = remember.key_prefix(prefix);
                    throttle = throttle.key_prefix(prefix);
                    logins = logins.key_prefix(prefix);
                    tokens = tokens.key_prefix(prefix);
                }
                (
                    Arc::new(remember),
                    Arc::new(throttle),
                    Arc::new(logins),
                    Arc::new(tokens),
                )
            }
            (None, Db::Sqlite(pool)) => {
                sql_stores!(
                    SqliteRememberStore,
                    SqliteThrottleStore,
                    SqliteLoginStore,
                    SqliteTokenStore,
                    pool
                )
            }
            (None, Db::Postgres(pool)) => {
                sql_stores!(
                    PostgresRememberStore,
                    PostgresThrottleStore,
                    PostgresLoginStore,
                    PostgresTokenStore,
                    pool
                )
            }
        };
        let outbox = outbox(config)?;

        let sessions = match (config.session_store, db, &redis) {
            (SessionStore::Memory, _, _) => SessionBackend::from_url("memory:").await?,
            (SessionStore::Sqlite, Db::Sqlite(pool), _) => SessionBackend::Sqlite(pool.clone()),
            (SessionStore::Postgres, Db::Postgres(pool), _) => {
                SessionBackend::Postgres(pool.clone())
            }
            (SessionStore::Redis, _, Some(pool)) => SessionBackend::Redis(pool.clone()),
            (SessionStore::File, _, _) => SessionBackend::File(config.session_dir.clone()),
            (SessionStore::Cookie, _, _) => SessionBackend::from_url("cookie:private").await?,
            (SessionStore::Sqlite, _, _) => {
                return Err("SESSION_STORE=sqlite needs a sqlite: DATABASE_URL".into())
            }
            (SessionStore::Postgres, _, _) => {
                return Err("SESSION_STORE=postgres needs a postgres: DATABASE_URL".into())
            }
            (SessionStore::Redis, _, None) => {
                return Err("SESSION_STORE=redis needs REDIS_URL".into())
            }
        };
        // The pools are the demo's own, so the tables are created here (and in turns).
        sessions.migrate().await?;
        // Ending a login deletes its session from the layer's store; cookie sessions have
        // none, so every logged-in request reads its index entry instead.
        let logins = match sessions.store() {
            Some(session_store) => LoginIndex::new(login_store, session_store),
            None => LoginIndex::for_cookie_sessions(login_store),
        };
        tracing::info!(
            sessions = sessions.kind(),
            shared = sessions.is_shared(),
            remember_throttle_logins_and_tokens = if redis.is_some() { "redis" } else { "database" },
            mail = ?outbox,
            "stores ready"
        );
        Ok(Self {
            sessions,
            remember,
            throttle,
            logins,
            tokens,
            outbox,
        })
    }
}

/// The session layer's settings: the cookie of DEMO.md (`session`), `Secure` as configured,
/// browser-session cookies unless `DEMO_SESSION_LIFETIME_SECS` asks for permanent ones, and
/// the key of cookie sessions.
pub fn session_config(config: &Config) -> Result<SessionConfig, String> {
    let mut settings =
        SessionConfig::new().cookie(CookieOptions::new("session").secure(config.secure_cookies));
    if let Some(lifetime) = config.session_lifetime {
        settings = settings.permanent(lifetime);
    }
    if config.session_store == SessionStore::Cookie {
        let key = match &config.session_key {
            Some(bytes) => Key::try_from(&bytes[..]).map_err(|_| {
                "DEMO_SESSION_KEY must be at least 64 bytes (base64 of `openssl rand 64`)"
                    .to_owned()
            })?,
            None => {
                // A demo that starts with no setting at all, but says what that costs.
                tracing::warn!(
                    "DEMO_SESSION_KEY is not set: cookie sessions use a random key and end when \
                     the demo stops; set it to `openssl rand -base64 64` to keep them"
                );
                Key::generate()
            }
        };
        settings = settings.secret_key(key);
    }
    Ok(settings)
}

/// The outbox of the settings: SMTP with `DEMO_SMTP_URL`, else `.eml` files in `DEMO_MAIL_DIR`
/// (created if missing, so that the first reset mail does not fail on a fresh checkout).
fn outbox(config: &Config) -> Result<Outbox, Box<dyn std::error::Error>> {
    if let Some(url) = &config.smtp_url {
        // The library's error names the problem, never the URL (it may hold a password).
        return Ok(Outbox::smtp(url).map_err(|e| format!("DEMO_SMTP_URL: {e}"))?);
    }
    let dir = &config.mail_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create DEMO_MAIL_DIR {}: {e}", dir.display()))?;
    Ok(Outbox::files(dir))
}

async fn connect_redis(url: &str) -> Result<RedisPool, Box<dyn std::error::Error>> {
    let config = RedisConfig::from_url(url)?;
    let pool = RedisPool::new(
        config,
        None,
        None,
        Some(ReconnectPolicy::default()),
        REDIS_POOL_SIZE,
    )?;
    tokio::time::timeout(REDIS_CONNECT_TIMEOUT, pool.init())
        .await
        .map_err(|_| "Redis did not answer within 10 s")??;
    Ok(pool)
}

/// Deletes expired sessions, remember-me tokens, login-index entries and one-time tokens every
/// hour. The stores refuse expired records on their own; this only keeps them from growing
/// without bound.
pub fn spawn_cleanup(
    sessions: SessionBackend,
    remember: Arc<dyn RememberStore>,
    logins: Arc<dyn LoginStore>,
    tokens: Arc<dyn TokenStore>,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CLEANUP_EVERY);
        loop {
            every.tick().await;
            if let Err(err) = sessions.delete_expired().await {
                tracing::warn!(%err, "deleting expired sessions failed");
            }
            match remember.delete_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "deleted expired remember-me tokens"),
                Err(err) => tracing::warn!(%err, "deleting expired remember-me tokens failed"),
            }
            match logins.delete_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "deleted expired login-index entries"),
                Err(err) => tracing::warn!(%err, "deleting expired login-index entries failed"),
            }
            match tokens.delete_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "deleted expired one-time tokens"),
                Err(err) => tracing::warn!(%err, "deleting expired one-time tokens failed"),
            }
        }
    });
}
