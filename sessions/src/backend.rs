//! [`SessionBackend`]: where sessions are stored, from a URL or a pool, and the layer it gives.

use std::fmt;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "file"))]
use tower_sessions::ExpiredDeletion;
use tower_sessions::{session_store, MemoryStore, SessionManagerLayer, SessionStore};

use crate::{Error, Result};

#[cfg(feature = "postgres")]
use crate::connect::connect;
#[cfg(feature = "redis")]
use crate::connect::connect_redis;
#[cfg(feature = "sqlite")]
use crate::connect::connect_sqlite;
#[cfg(feature = "postgres")]
use crate::connect::migrate_postgres;
use crate::connect::store_error;
#[cfg(feature = "file")]
use crate::connect::{create_private_dir, file_path, file_store};
#[cfg(feature = "cookie")]
use crate::cookie::{cookie_layer, CookieProtection};
use crate::layer::LayerKind;
use crate::{DynStore, SessionConfig, SessionLayer};

/// Where sessions are stored. Build one with [`from_url`](Self::from_url), or directly from a
/// pool you already have (then call [`migrate`](Self::migrate) once at start-up). Clones
/// share the store (pools, the memory store).
#[derive(Clone)]
#[non_exhaustive]
pub enum SessionBackend {
    /// In this process only: lost on restart, not shared between instances.
    Memory(MemoryStore),
    /// Table `tower_sessions` in this SQLite database.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// Table `tower_sessions.session` in this Postgres database.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// One Redis key per session (the bare session id: use a Redis database of its own).
    #[cfg(feature = "redis")]
    Redis(fred::clients::Pool),
    /// One JSON file per session in this directory (created if missing, mode `0700`).
    #[cfg(feature = "file")]
    File(std::path::PathBuf),
    /// The session inside the cookie; needs [`SessionConfig::secret_key`]. See the module
    /// documentation for what this gives up.
    #[cfg(feature = "cookie")]
    Cookie(CookieProtection),
    /// Any other tower-sessions store.
    Custom(DynStore),
}

impl fmt::Debug for SessionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kind only: pools and URLs can carry credentials.
        write!(f, "SessionBackend::{}", self.kind())
    }
}

impl SessionBackend {
    /// A backend for any tower-sessions store, for example one for MongoDB or memcached.
    pub fn custom(store: impl SessionStore) -> Self {
        Self::Custom(DynStore::new(store))
    }

    /// The backend a URL names (see the module documentation), connected and with its tables
    /// created. Errors name the scheme only, never the URL: it may hold a password.
    pub async fn from_url(url: &str) -> Result<Self> {
        const KNOWN: &str = "known: memory, sqlite, postgres, redis, file, cookie";
        let url = url.trim();
        let scheme = match url.split_once(':') {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                scheme
            }
            _ => {
                return Err(Error::Config(format!(
                    "a session URL starts with its backend, like `memory:` ({KNOWN})"
                )))
            }
        };
        let rest = &url[scheme.len()..];
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "memory" => Self::Memory(MemoryStore::default()),
            #[cfg(feature = "sqlite")]
            "sqlite" => Self::Sqlite(connect_sqlite(url).await?),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Self::Postgres(connect(sqlx::PgPool::connect(url)).await?),
            #[cfg(feature = "redis")]
            "redis" | "rediss" => Self::Redis(connect_redis(url).await?),
            #[cfg(feature = "file")]
            "file" => Self::File(file_path(rest)?),
            #[cfg(feature = "cookie")]
            "cookie" => Self::Cookie(match rest.trim_start_matches(':').trim_matches('/') {
                "" | "private" => CookieProtection::Private,
                "signed" => CookieProtection::Signed,
                other => {
                    return Err(Error::Config(format!(
                        "unknown cookie session mode {other:?}: use cookie:private or cookie:signed"
                    )))
                }
            }),
            other => {
                return Err(Error::Config(format!(
                    "session backend {other:?} is unknown or its login-manager-sessions feature is off \
                     ({KNOWN})"
                )))
            }
        };
        let _ = rest; // not every scheme needs the rest of the URL
        backend.migrate().await?;
        Ok(backend)
    }

    /// [`from_url`](Self::from_url) with the URL from the environment variable `name`.
    pub async fn from_env(name: &str) -> Result<Self> {
        let url = std::env::var(name)
            .map_err(|_| Error::Config(format!("{name} is not set (e.g. {name}=memory:)")))?;
        Self::from_url(&url).await
    }

    /// The backend's name, as in the URL scheme: `memory`, `sqlite`, `postgres`, `redis`,
    /// `file`, `cookie` or `custom`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "file")]
            Self::File(_) => "file",
            #[cfg(feature = "cookie")]
            Self::Cookie(_) => "cookie",
            Self::Custom(_) => "custom",
        }
    }

    /// Whether every instance of an app sees the same sessions through this backend (and so
    /// can sit behind a load balancer without sticky sessions).
    pub fn is_shared(&self) -> bool {
        match self {
            Self::Memory(_) | Self::Custom(_) => false,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => false,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => true,
            #[cfg(feature = "redis")]
            Self::Redis(_) => true,
            #[cfg(feature = "file")]
            Self::File(_) => false,
            // Every instance with the same key reads the same cookie.
            #[cfg(feature = "cookie")]
            Self::Cookie(_) => true,
        }
    }

    /// Creates what the backend needs (tables, the directory); safe to run on every start,
    /// also by several instances at once.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => tower_sessions_sqlx_store::SqliteStore::new(pool.clone())
                .migrate()
                .await
                .map_err(store_error),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => migrate_postgres(pool).await,
            #[cfg(feature = "file")]
            Self::File(dir) => create_private_dir(dir).await,
            _ => Ok(()),
        }
    }

    /// Deletes expired sessions (Redis and cookies expire by themselves; the memory store
    /// drops them when read). Run it periodically, e.g. every hour.
    pub async fn delete_expired(&self) -> Result<()> {
        let deleted = match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                tower_sessions_sqlx_store::SqliteStore::new(pool.clone())
                    .delete_expired()
                    .await
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                tower_sessions_sqlx_store::PostgresStore::new(pool.clone())
                    .delete_expired()
                    .await
            }
            #[cfg(feature = "file")]
            Self::File(dir) => file_store(dir).delete_expired().await,
            _ => Ok::<(), session_store::Error>(()),
        };
        deleted.map_err(store_error)
    }

    /// The store the layer keeps sessions in (a clone: clones share it), for code that must
    /// reach sessions outside a request — such as
    /// `login_manager::LoginIndex::new(login_store, backend.store().unwrap())`, which deletes
    /// the sessions of ended logins. `None` for cookie sessions, which no server can delete.
    pub fn store(&self) -> Option<DynStore> {
        Some(match self {
            Self::Memory(store) => DynStore::new(store.clone()),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                DynStore::new(tower_sessions_sqlx_store::SqliteStore::new(pool.clone()))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                DynStore::new(tower_sessions_sqlx_store::PostgresStore::new(pool.clone()))
            }
            #[cfg(feature = "redis")]
            Self::Redis(pool) => {
                DynStore::new(tower_sessions_redis_store::RedisStore::new(pool.clone()))
            }
            #[cfg(feature = "file")]
            Self::File(dir) => DynStore::new(file_store(dir)),
            #[cfg(feature = "cookie")]
            Self::Cookie(_) => return None,
            Self::Custom(store) => store.clone(),
        })
    }

    /// The session layer: put it outside (after, in `Router::layer` order) the login
    /// manager's layer. Fails only for a cookie backend without a secret key.
    pub fn into_layer(self, config: SessionConfig) -> Result<SessionLayer> {
        #[cfg(feature = "cookie")]
        if let Self::Cookie(protection) = self {
            return cookie_layer(protection, config);
        }
        let store = self
            .store()
            .ok_or_else(|| Error::Config("this session backend keeps no store".to_owned()))?;
        let cookie = config.attributes();
        let mut layer = SessionManagerLayer::new(store)
            .with_name(cookie.name)
            .with_http_only(true)
            .with_same_site(cookie.same_site)
            .with_secure(cookie.secure)
            .with_path(cookie.path)
            .with_expiry(config.expiry());
        if let Some(domain) = cookie.domain {
            layer = layer.with_domain(domain);
        }
        Ok(SessionLayer(LayerKind::Store(layer)))
    }
}
