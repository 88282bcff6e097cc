//! Session backends chosen by one setting, the Flask-Session way.
//!
//! Flask-Session picks where sessions live with `SESSION_TYPE`; here one URL does it, and
//! [`SessionBackend::into_layer`] turns it into the session layer that goes outside the
//! [`LoginManager`](login_manager::LoginManager) layer, with the cookie settings of
//! [`SessionConfig`] (secure defaults: `HttpOnly`, `SameSite=Lax`, `Secure`, a browser-session
//! cookie):
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory:` | tower-sessions' `MemoryStore` (one process, lost on restart) | always |
//! | `sqlite://app.db?mode=rwc` | `tower-sessions-sqlx-store` 0.15 `SqliteStore` | `sqlite` |
//! | `postgres://…`, `postgresql://…` | `tower-sessions-sqlx-store` 0.15 `PostgresStore` | `postgres` |
//! | `redis://…`, `rediss://…` | `tower-sessions-redis-store` 0.16 `RedisStore` (fred 10) | `redis` |
//! | `file:sessions`, `file:///var/lib/app/sessions` | `tower-sessions-file-store` 0.2, one file per session | `file` |
//! | `cookie:`, `cookie:private`, `cookie:signed` | the session inside the cookie (`tower-sessions-cookie-store` 0.5) | `cookie` |
//!
//! Any other tower-sessions store (MongoDB, memcached, DynamoDB, …) plugs in with
//! [`SessionBackend::custom`].
//!
//! ```no_run
//! # async fn run() -> login_manager::Result<()> {
//! use login_manager_sessions::{SessionBackend, SessionConfig};
//! use login_manager::CookieOptions;
//!
//! // e.g. SESSION_URL=redis://127.0.0.1:6379
//! let backend = SessionBackend::from_env("SESSION_URL").await?;
//! let sessions = backend.into_layer(
//!     // Plain HTTP in development only: `Secure` is on by default.
//!     SessionConfig::new().cookie(CookieOptions::new("session").secure(false)),
//! )?;
//! // Router::new()...layer(manager.into_layer()).layer(sessions)
//! # Ok(()) }
//! ```
//!
//! # Cookie sessions
//!
//! With `cookie:` the whole session is in the browser's cookie, signed (`cookie:signed`,
//! Flask's default: the client can read it but not change it) or encrypted and signed
//! (`cookie:`/`cookie:private`, the default here: the client can do neither). That needs a
//! secret key ([`SessionConfig::secret_key`]), and it weakens two of the crate's invariants:
//!
//! - **No server-side revocation.** Logging out, rotating the session id at login and
//!   [`update_session_auth_hash`](login_manager::AuthSession::update_session_auth_hash) replace the
//!   cookie in *this* browser, but a copy taken earlier (a stolen cookie, a backup) stays a
//!   valid logged-in session: there is nothing on the server to delete. What still limits such
//!   a copy: the library's idle and absolute timeouts (the login time and last-seen time are
//!   inside the signed record), and the auth-hash digest (a password change ends it).
//! - **A secret key is required** (invariant 4 says none is): whoever holds it can forge any
//!   session, so keep it out of the repository and rotate it if it leaks (which logs everyone
//!   out).
//!
//! Cookies are limited to about 4 KB; a session that grows past
//! [`SessionConfig::max_cookie_bytes`] is not truncated: the response becomes a `500` saying
//! so, no cookie is written, and the error is logged.
//!
//! # Permanent and browser sessions
//!
//! By default the session cookie has no `Max-Age` (Flask's `SESSION_PERMANENT = False`): it
//! ends when the browser closes, and "remember me" is what keeps a user logged in after that.
//! [`SessionConfig::permanent`] gives the cookie (and the stored record) a lifetime instead
//! (Flask's `PERMANENT_SESSION_LIFETIME`), extended whenever the session is saved. Either way
//! the library's idle and absolute timeouts end the *login* on the server, whatever the
//! cookie's lifetime.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use time::OffsetDateTime;
use tower_cookies::cookie::SameSite;
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::service::SessionManager;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "file"))]
use tower_sessions::ExpiredDeletion;
use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer, SessionStore};

use login_manager::{BoxError, CookieOptions, Duration, Error, Result};

#[cfg(feature = "cookie")]
pub use tower_cookies::Key;

/// The default name of the session cookie (tower-sessions' own default is `id`).
pub const DEFAULT_COOKIE_NAME: &str = "session";

/// How long [`SessionBackend::from_url`] waits for a database or Redis server.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Any tower-sessions store behind one type, so that the store can be chosen at run time
/// (`SessionManagerLayer<DynStore>`).
///
/// It also refuses expired records on `load`, for every store: not all of them check
/// (the file store returns a record until its file is deleted).
#[derive(Clone)]
pub struct DynStore(Arc<dyn SessionStore>);

impl DynStore {
    /// Wraps a store.
    pub fn new(store: impl SessionStore) -> Self {
        Self(Arc::new(store))
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self(store)
    }
}

impl fmt::Debug for DynStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynStore").field(&self.0).finish()
    }
}

#[async_trait::async_trait]
impl SessionStore for DynStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // The inner store's own `create`: it knows how to avoid id collisions atomically.
        self.0.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.save(record).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let record = self.0.load(session_id).await?;
        Ok(record.filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.0.delete(session_id).await
    }
}

/// How a cookie session is protected.
#[cfg(feature = "cookie")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieProtection {
    /// Encrypted and authenticated (AES-256-GCM): the client can neither read nor change the
    /// session. The default.
    #[default]
    Private,
    /// Authenticated only (HMAC-SHA256), like Flask's session cookie: the client can read the
    /// session (user id, login times, a digest of the auth hash) but not change it.
    Signed,
}

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

    /// The session layer: put it outside (after, in `Router::layer` order) the login
    /// manager's layer. Fails only for a cookie backend without a secret key.
    pub fn into_layer(self, config: SessionConfig) -> Result<SessionLayer> {
        let store = match self {
            Self::Memory(store) => DynStore::new(store),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => DynStore::new(tower_sessions_sqlx_store::SqliteStore::new(pool)),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                DynStore::new(tower_sessions_sqlx_store::PostgresStore::new(pool))
            }
            #[cfg(feature = "redis")]
            Self::Redis(pool) => DynStore::new(tower_sessions_redis_store::RedisStore::new(pool)),
            #[cfg(feature = "file")]
            Self::File(dir) => DynStore::new(file_store(&dir)),
            #[cfg(feature = "cookie")]
            Self::Cookie(protection) => return cookie_layer(protection, config),
            Self::Custom(store) => store,
        };
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

/// Settings of the session cookie and the session's lifetime.
///
/// Defaults: cookie `session`, `HttpOnly`, `SameSite=Lax` (tower-sessions' own default is
/// `Strict`, which hides the session on every arrival from another site, so a user following
/// a link would look logged out and be restored, non-fresh, from the remember cookie),
/// `Secure`, `Path=/`, no `Domain`, a browser-session cookie, no secret key, 4096-byte cookie
/// sessions.
#[derive(Clone)]
pub struct SessionConfig {
    cookie: CookieOptions,
    lifetime: Option<Duration>,
    #[cfg(feature = "cookie")]
    key: Option<Key>,
    #[cfg(feature = "cookie")]
    max_cookie_bytes: usize,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SessionConfig");
        debug
            .field("cookie", &self.cookie)
            .field("lifetime", &self.lifetime);
        // Never the key itself.
        #[cfg(feature = "cookie")]
        debug
            .field("key", &self.key.as_ref().map(|_| "<secret>"))
            .field("max_cookie_bytes", &self.max_cookie_bytes);
        debug.finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionConfig {
    /// The secure defaults.
    pub fn new() -> Self {
        Self {
            cookie: CookieOptions::new(DEFAULT_COOKIE_NAME),
            lifetime: None,
            #[cfg(feature = "cookie")]
            key: None,
            #[cfg(feature = "cookie")]
            max_cookie_bytes: 4096,
        }
    }

    /// The session cookie's name and attributes (Flask's `SESSION_COOKIE_NAME`, `_SECURE`,
    /// `_SAMESITE`, `_PATH`, `_DOMAIN`); it is always `HttpOnly`.
    pub fn cookie(mut self, cookie: CookieOptions) -> Self {
        self.cookie = cookie;
        self
    }

    /// Permanent sessions (Flask's `SESSION_PERMANENT = True` with
    /// `PERMANENT_SESSION_LIFETIME`): the cookie and the stored record last `lifetime` after
    /// the session was last saved, instead of ending with the browser.
    pub fn permanent(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Browser sessions, the default: the cookie has no `Max-Age` and ends when the browser
    /// closes (the stored record is kept two weeks, and the library's timeouts apply).
    pub fn browser_session(mut self) -> Self {
        self.lifetime = None;
        self
    }

    /// The key that signs or encrypts cookie sessions (Flask's `SECRET_KEY`), e.g.
    /// `Key::try_from(&bytes[..])` with 64 random bytes from your secret store, or
    /// `Key::generate()` (sessions then end with the process).
    #[cfg(feature = "cookie")]
    pub fn secret_key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// The largest encoded cookie session, in bytes (default 4096, what browsers keep).
    #[cfg(feature = "cookie")]
    pub fn max_cookie_bytes(mut self, max: usize) -> Self {
        self.max_cookie_bytes = max;
        self
    }

    /// The cookie attributes both layer kinds set. `CookieOptions::to_cookie` applies the
    /// `__Host-` rules: such a cookie must be `Secure`, `Path=/` and have no `Domain`, or
    /// browsers drop it.
    fn attributes(&self) -> CookieAttributes {
        let cookie = self.cookie.to_cookie();
        CookieAttributes {
            name: cookie.name().to_owned(),
            same_site: cookie.same_site().unwrap_or(SameSite::Lax),
            secure: cookie.secure().unwrap_or(false),
            path: cookie.path().unwrap_or("/").to_owned(),
            domain: cookie.domain().map(str::to_owned),
        }
    }

    fn expiry(&self) -> Expiry {
        match self.lifetime {
            Some(lifetime) => Expiry::OnInactivity(lifetime),
            None => Expiry::OnSessionEnd,
        }
    }
}

/// The session cookie as both layer kinds take it.
struct CookieAttributes {
    name: String,
    same_site: SameSite,
    secure: bool,
    path: String,
    domain: Option<String>,
}

/// The session layer of any backend; see [`SessionBackend::into_layer`].
#[derive(Clone)]
pub struct SessionLayer(LayerKind);

#[derive(Clone)]
enum LayerKind {
    Store(SessionManagerLayer<DynStore>),
    #[cfg(feature = "cookie")]
    Cookie {
        layer: tower_sessions_cookie_store::CookieSessionManagerLayer<CookieKey>,
        expiry: Expiry,
    },
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            LayerKind::Store(_) => "store",
            #[cfg(feature = "cookie")]
            LayerKind::Cookie { .. } => "cookie",
        };
        f.debug_tuple("SessionLayer").field(&kind).finish()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService(match &self.0 {
            LayerKind::Store(layer) => ServiceKind::Store(layer.layer(inner)),
            #[cfg(feature = "cookie")]
            LayerKind::Cookie { layer, expiry } => ServiceKind::Cookie(layer.layer(SaveFirst {
                inner,
                expiry: *expiry,
            })),
        })
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S>(ServiceKind<S>);

type StoreService<S> = tower_cookies::CookieManager<SessionManager<S, DynStore>>;
#[cfg(feature = "cookie")]
type CookieService<S> = tower_cookies::CookieManager<
    tower_sessions_cookie_store::layer::CookieSessionManager<SaveFirst<S>, CookieKey>,
>;

#[derive(Clone)]
enum ServiceKind<S> {
    Store(StoreService<S>),
    #[cfg(feature = "cookie")]
    Cookie(CookieService<S>),
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    // `From<String>`: the cookie backend's "session too large" answer has a body.
    ResBody: Default + From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        match &mut self.0 {
            ServiceKind::Store(service) => service.poll_ready(cx),
            #[cfg(feature = "cookie")]
            ServiceKind::Cookie(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match &mut self.0 {
            ServiceKind::Store(service) => Box::pin(service.call(request)),
            #[cfg(feature = "cookie")]
            ServiceKind::Cookie(service) => Box::pin(service.call(request)),
        }
    }
}

/// One key, two cookie formats: so that both are one layer type.
#[cfg(feature = "cookie")]
#[derive(Clone)]
struct CookieKey {
    key: Key,
    protection: CookieProtection,
}

#[cfg(feature = "cookie")]
impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKey")
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "cookie")]
impl tower_sessions_cookie_store::CookieController for CookieKey {
    fn get(
        &self,
        cookies: &tower_cookies::Cookies,
        name: &str,
    ) -> Option<tower_cookies::Cookie<'static>> {
        let cookie = match self.protection {
            CookieProtection::Private => cookies.private(&self.key).get(name),
            CookieProtection::Signed => cookies.signed(&self.key).get(name),
        };
        cookie.map(tower_cookies::Cookie::into_owned)
    }

    fn add(&self, cookies: &tower_cookies::Cookies, cookie: tower_cookies::Cookie<'static>) {
        match self.protection {
            CookieProtection::Private => cookies.private(&self.key).add(cookie),
            CookieProtection::Signed => cookies.signed(&self.key).add(cookie),
        }
    }

    fn remove(&self, cookies: &tower_cookies::Cookies, cookie: tower_cookies::Cookie<'static>) {
        match self.protection {
            CookieProtection::Private => cookies.private(&self.key).remove(cookie),
            CookieProtection::Signed => cookies.signed(&self.key).remove(cookie),
        }
    }
}

#[cfg(feature = "cookie")]
fn cookie_layer(protection: CookieProtection, config: SessionConfig) -> Result<SessionLayer> {
    use tower_sessions_cookie_store::{CookieSessionConfig, CookieSessionManagerLayer};

    let Some(key) = config.key.clone() else {
        return Err(Error::Config(
            "cookie sessions need a secret key: SessionConfig::secret_key(..)".to_owned(),
        ));
    };
    let cookie = config.attributes();
    let mut settings = CookieSessionConfig::default()
        .with_name(cookie.name)
        .with_http_only(true)
        .with_same_site(cookie.same_site)
        .with_secure(cookie.secure)
        .with_path(cookie.path)
        .with_expiry(config.expiry())
        .with_max_cookie_bytes(config.max_cookie_bytes);
    if let Some(domain) = cookie.domain {
        settings = settings.with_domain(domain);
    }
    let layer = CookieSessionManagerLayer::signed(key.clone())
        .with_controller(CookieKey { key, protection })
        .with_config(settings);
    Ok(SessionLayer(LayerKind::Cookie {
        layer,
        expiry: config.expiry(),
    }))
}

/// Saves a modified cookie session right after the handler, inside the cookie layer, so that
/// a session too large for its cookie becomes a `500` that says so. (The cookie layer alone
/// answers an empty `500`; it then sees this 5xx and leaves the response alone, and after a
/// successful save it sees the cookie written and does not write it again.)
#[cfg(feature = "cookie")]
#[derive(Clone)]
struct SaveFirst<S> {
    inner: S,
    /// The layer's expiry. A session whose handler changed its expiry is left to the cookie
    /// layer, which alone can pass that expiry on to the cookie.
    expiry: Expiry,
}

#[cfg(feature = "cookie")]
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SaveFirst<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let session = request
            .extensions()
            .get::<tower_sessions::Session>()
            .cloned();
        let expiry = self.expiry;
        // The service that was polled ready is the one to call; keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let Some(session) = session else {
                return Ok(response);
            };
            let save = session.is_modified()
                && !response.status().is_server_error()
                && session.expiry() == Some(expiry)
                // An emptied session is the cookie layer's: it removes the cookie.
                && !session.is_empty().await;
            if !save {
                return Ok(response);
            }
            match session.save().await {
                Ok(()) => Ok(response),
                Err(error) => {
                    tracing::error!(%error, "cookie session not saved");
                    let mut response = Response::new(ResBody::from(
                        "Internal Server Error: the session does not fit in its cookie \
                         (see the server log)\n"
                            .to_owned(),
                    ));
                    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Ok(response)
                }
            }
        })
    }
}

fn store_error(error: impl Into<BoxError>) -> Error {
    Error::Store(error.into())
}

/// A connection attempt bounded by [`CONNECT_TIMEOUT`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn connect<T>(
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
async fn connect_sqlite(url: &str) -> Result<sqlx::SqlitePool> {
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
async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<()> {
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
async fn connect_redis(url: &str) -> Result<fred::clients::Pool> {
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
fn file_path(rest: &str) -> Result<std::path::PathBuf> {
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
fn file_store(dir: &std::path::Path) -> tower_sessions_file_store::FileSessionStorage {
    tower_sessions_file_store::FileSessionStorage::new_in_folder(dir.to_path_buf())
}

/// The session directory, readable by this user only: a session file is as good as a
/// logged-in cookie.
#[cfg(feature = "file")]
async fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // Once, at start-up: a blocking call is fine here.
    builder.create(dir).map_err(store_error)
}
