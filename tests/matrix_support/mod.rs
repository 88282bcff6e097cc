//! Support for `tests/matrix.rs`: one library app per session backend, with counting
//! wrappers around the session and remember stores, a browser that remembers every session
//! cookie it was ever given, the login paths (a)–(g) of invariant 1, and each backend's own
//! storage, fresh per cell and removed afterwards.
#![allow(dead_code)] // not every cell uses every helper

use async_trait::async_trait;
use std::time::Duration;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Path},
    http::{header, HeaderMap, Method, Request, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use http_body_util::BodyExt;
use login_manager::{
    login_required, AuthSession, AuthUser, LoginIndex, LoginManager, LoginOptions, LoginOutcome,
    LoginRequired, LoginStore, LoginTouch, MemoryLoginStore, MemoryRememberStore, PasswordHasher,
    PasswordUserLoader, Remember, RememberStore, RememberToken, Rotation, StoredLogin, UserLoader,
};
use login_manager_sessions::{Key, SessionBackend, SessionConfig};
use serde::Deserialize;
use tower::ServiceExt;
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionStore,
};

use crate::store_support::{self, unavailable, unique};

pub const SESSION_COOKIE: &str = "session";
pub const REMEMBER_COOKIE: &str = "remember_token";

// ---------------------------------------------------------------------------------------------
// Users: a loader that can log in by password and can be made to fail.

#[derive(Clone, Debug)]
pub struct User {
    pub id: u32,
    pub name: String,
    /// The password typed into the form (test-only knowledge).
    pub password: String,
    /// The stored argon2 hash: also the `session_auth_hash`.
    pub hash: String,
}

impl AuthUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

#[derive(Debug)]
pub struct LoaderDown;
impl fmt::Display for LoaderDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("user database is down")
    }
}
impl std::error::Error for LoaderDown {}

/// alice (1) and bob (2). `failing` makes every database call of the loader fail, as a
/// user database that is down would: `load_user` and `load_user_by_username`.
#[derive(Clone)]
pub struct Users {
    users: Arc<Mutex<HashMap<u32, User>>>,
    pub failing: Arc<AtomicBool>,
    hasher: PasswordHasher,
    changes: Arc<AtomicUsize>,
}

impl Users {
    async fn new(hasher: PasswordHasher) -> Self {
        let users = Users {
            users: Arc::default(),
            failing: Arc::default(),
            hasher,
            changes: Arc::default(),
        };
        for (id, name) in [(1, "alice"), (2, "bob")] {
            let password = format!("{name}-password-0");
            let hash = users.hasher.hash(&password).await.expect("hash");
            users.users.lock().unwrap().insert(
                id,
                User {
                    id,
                    name: name.to_owned(),
                    password,
                    hash,
                },
            );
        }
        users
    }

    pub fn by_name(&self, name: &str) -> User {
        self.users
            .lock()
            .unwrap()
            .values()
            .find(|u| u.name == name)
            .cloned()
            .expect("a known test user")
    }

    /// Changes the password (and so the `session_auth_hash`) out of band, as another device
    /// or an admin would: every existing session and remember token of the user is stale.
    pub async fn change_password(&self, name: &str) {
        let mut user = self.by_name(name);
        let n = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        user.password = format!("{name}-password-{n}");
        user.hash = self.hasher.hash(&user.password).await.expect("hash");
        self.users.lock().unwrap().insert(user.id, user);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), LoaderDown> {
        if self.failing.load(Ordering::SeqCst) {
            Err(LoaderDown)
        } else {
            Ok(())
        }
    }
}

impl UserLoader for Users {
    type User = User;
    type Error = LoaderDown;

    async fn load_user(&self, id: &u32) -> Result<Option<User>, LoaderDown> {
        self.check()?;
        Ok(self.users.lock().unwrap().get(id).cloned())
    }
}

impl PasswordUserLoader for Users {
    async fn load_user_by_username(&self, username: &str) -> Result<Option<User>, LoaderDown> {
        self.check()?;
        Ok(self
            .users
            .lock()
            .unwrap()
            .values()
            .find(|u| u.name == username)
            .cloned())
    }

    fn password_hash<'a>(&self, user: &'a User) -> Option<&'a str> {
        Some(&user.hash)
    }
}

// ---------------------------------------------------------------------------------------------
// Counting wrappers.

/// Any tower-sessions store, counting the writes that reach it; can be made to fail.
#[derive(Clone, Debug)]
pub struct CountingSessions {
    inner: Arc<dyn SessionStore>,
    creates: Arc<AtomicUsize>,
    saves: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

impl CountingSessions {
    pub fn new(inner: impl SessionStore) -> Self {
        Self {
            inner: Arc::new(inner),
            creates: Arc::default(),
            saves: Arc::default(),
            deletes: Arc::default(),
            failing: Arc::default(),
        }
    }

    /// `create` + `save` calls: what makes a session record exist or change.
    pub fn writes(&self) -> usize {
        self.creates.load(Ordering::SeqCst) + self.saves.load(Ordering::SeqCst)
    }

    /// Whether the backend holds a record under this cookie value (read from the store
    /// itself, not through the wrapper).
    pub async fn exists(&self, cookie_value: &str) -> bool {
        let Ok(id) = cookie_value.parse::<Id>() else {
            return false;
        };
        self.inner
            .load(&id)
            .await
            .expect("load from the session store")
            .is_some()
    }

    fn check(&self) -> session_store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(session_store::Error::Backend(
                "session store is down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for CountingSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.check()?;
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.check()?;
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(record).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.check()?;
        self.inner.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.check()?;
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id).await
    }
}

/// Any login store (the login index), counting its writes.
#[derive(Clone)]
pub struct CountingLogins {
    inner: Arc<dyn LoginStore>,
    writes: Arc<AtomicUsize>,
}

impl CountingLogins {
    fn new(inner: Arc<dyn LoginStore>) -> Self {
        Self {
            inner,
            writes: Arc::default(),
        }
    }

    /// Every call that can change the store.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl LoginStore for CountingLogins {
    async fn put(
        &self,
        login: StoredLogin,
        max: usize,
    ) -> Result<Vec<StoredLogin>, login_manager::Error> {
        self.wrote();
        self.inner.put(login, max).await
    }
    async fn get(&self, user: &str, id: &str) -> Result<Option<StoredLogin>, login_manager::Error> {
        self.inner.get(user, id).await
    }
    async fn touch(
        &self,
        user: &str,
        id: &str,
        touch: LoginTouch,
    ) -> Result<bool, login_manager::Error> {
        self.wrote();
        self.inner.touch(user, id, touch).await
    }
    async fn list(&self, user: &str) -> Result<Vec<StoredLogin>, login_manager::Error> {
        self.inner.list(user).await
    }
    async fn delete(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<StoredLogin>, login_manager::Error> {
        self.wrote();
        self.inner.delete(user, id).await
    }
    async fn delete_for_user(&self, user: &str) -> Result<Vec<StoredLogin>, login_manager::Error> {
        self.wrote();
        self.inner.delete_for_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, login_manager::Error> {
        self.wrote();
        self.inner.delete_expired().await
    }
}

/// Any remember store, counting its writes.
#[derive(Clone)]
pub struct CountingRemember {
    inner: Arc<dyn RememberStore>,
    writes: Arc<AtomicUsize>,
}

impl CountingRemember {
    fn new(inner: impl RememberStore) -> Self {
        Self {
            inner: Arc::new(inner),
            writes: Arc::default(),
        }
    }

    /// Every call that can change the store.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// The stored token with this selector (not counted).
    pub async fn find(&self, selector: &str) -> Option<RememberToken> {
        self.inner
            .find(selector)
            .await
            .expect("remember store find")
    }

    pub async fn tokens_of(&self, user_id: u32) -> Vec<RememberToken> {
        self.inner
            .list_for_user(&user_id.to_string())
            .await
            .expect("remember store list")
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl RememberStore for CountingRemember {
    async fn create(&self, token: RememberToken) -> Result<(), login_manager::Error> {
        self.wrote();
        self.inner.create(token).await
    }
    async fn find(&self, selector: &str) -> Result<Option<RememberToken>, login_manager::Error> {
        self.inner.find(selector).await
    }
    async fn rotate(
        &self,
        selector: &str,
        expected: &[u8; 32],
        rotation: Rotation,
    ) -> Result<bool, login_manager::Error> {
        self.wrote();
        self.inner.rotate(selector, expected, rotation).await
    }
    async fn delete(&self, selector: &str) -> Result<(), login_manager::Error> {
        self.wrote();
        self.inner.delete(selector).await
    }
    async fn delete_for_user(&self, user_id: &str) -> Result<u64, login_manager::Error> {
        self.wrote();
        self.inner.delete_for_user(user_id).await
    }
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<RememberToken>, login_manager::Error> {
        self.inner.list_for_user(user_id).await
    }
    async fn delete_expired(&self) -> Result<u64, login_manager::Error> {
        self.wrote();
        self.inner.delete_expired().await
    }
}

// ---------------------------------------------------------------------------------------------
// The app.

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    remember: Option<String>,
}

type Auth = AuthSession<Users>;

async fn login(
    mut auth: Auth,
    Form(form): Form<LoginForm>,
) -> Result<Response, login_manager::Error> {
    let options = LoginOptions::new().remember(form.remember.as_deref() == Some("on"));
    let outcome = auth
        .login_with_password(&form.username, &form.password, options)
        .await?;
    Ok(match outcome {
        LoginOutcome::LoggedIn => Redirect::to(&auth.next_or("/")).into_response(),
        LoginOutcome::InvalidCredentials => {
            (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response()
        }
        LoginOutcome::Throttled { retry_after } => {
            login_manager::Error::Throttled { retry_after }.into_response()
        }
        // No second factor in the matrix app.
        LoginOutcome::SecondFactorRequired => StatusCode::NOT_IMPLEMENTED.into_response(),
    })
}

async fn whoami(auth: Auth) -> String {
    match auth.user() {
        Some(user) => format!(
            "{} fresh={} remembered={}",
            user.name,
            auth.is_fresh(),
            auth.is_remembered()
        ),
        None => "anonymous".to_owned(),
    }
}

async fn public(auth: Auth) -> String {
    format!(
        "public page, {}",
        auth.user().map_or("stranger", |u| &u.name)
    )
}

async fn protected(LoginRequired(user): LoginRequired<User>) -> String {
    format!("Hello, {}", user.name)
}

async fn logout(mut auth: Auth) -> Result<&'static str, login_manager::Error> {
    auth.logout_user().await?;
    Ok("logged out")
}

/// `logout_user_and_flush`, then the handler stores something (a flash message).
async fn logout_flush(mut auth: Auth) -> Result<&'static str, login_manager::Error> {
    auth.logout_user_and_flush().await?;
    auth.session()?.insert("flash", "Logged out.").await?;
    Ok("logged out")
}

async fn put_cart(
    auth: Auth,
    Path(item): Path<String>,
) -> Result<&'static str, login_manager::Error> {
    auth.session()?.insert("cart", item).await?;
    Ok("added")
}

async fn read_value(auth: &Auth, key: &str) -> Result<String, login_manager::Error> {
    let value: Option<String> = auth.session()?.get(key).await?;
    Ok(value.unwrap_or_else(|| "empty".to_owned()))
}

async fn get_cart(auth: Auth) -> Result<String, login_manager::Error> {
    read_value(&auth, "cart").await
}

async fn get_flash(auth: Auth) -> Result<String, login_manager::Error> {
    read_value(&auth, "flash").await
}

/// How many live logins the user has (the login index).
async fn count_logins(auth: Auth) -> Result<String, login_manager::Error> {
    Ok(auth.logins().await?.len().to_string())
}

async fn end_other_logins(auth: Auth) -> Result<String, login_manager::Error> {
    Ok(auth.end_other_logins().await?.to_string())
}

// ---------------------------------------------------------------------------------------------
// Backends.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Memory,
    Sqlite,
    Postgres,
    Redis,
    File,
    Cookie,
}

impl BackendKind {
    pub fn named(name: &str) -> Self {
        match name {
            "memory" => Self::Memory,
            "sqlite" => Self::Sqlite,
            "postgres" => Self::Postgres,
            "redis" => Self::Redis,
            "file" => Self::File,
            "cookie" => Self::Cookie,
            other => panic!("unknown backend {other}"),
        }
    }
}

/// Where a backend keeps its records, read directly (not through the wrappers).
pub enum Storage {
    /// tower-sessions' `MemoryStore`: only the counting wrapper can see it.
    Memory,
    Sqlite(sqlx::SqlitePool),
    Postgres {
        pool: sqlx::PgPool,
        schema: String,
    },
    /// A Redis database of the cell's own: every key counts.
    Redis(fred::clients::Pool),
    File(PathBuf),
    /// Nothing on the server.
    Cookie,
}

impl Storage {
    /// Session records (Redis: every key of the cell's database, remember tokens included).
    pub async fn records(&self) -> Option<i64> {
        match self {
            Storage::Memory | Storage::Cookie => None,
            Storage::Sqlite(pool) => Some(
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tower_sessions")
                    .fetch_one(pool)
                    .await
                    .expect("count SQLite sessions"),
            ),
            Storage::Postgres { pool, schema } => Some(
                sqlx::query_scalar::<_, i64>(&format!(
                    "SELECT count(*) FROM \"{schema}\".\"session\""
                ))
                .fetch_one(pool)
                .await
                .expect("count Postgres sessions"),
            ),
            Storage::Redis(pool) => Some(redis_dbsize(pool).await),
            Storage::File(dir) => Some(
                std::fs::read_dir(dir)
                    .expect("the session directory")
                    .count() as i64,
            ),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Storage::Memory => "MemoryStore (via the counting wrapper)",
            Storage::Sqlite(_) => "SELECT count(*) FROM tower_sessions",
            Storage::Postgres { .. } => "SELECT count(*) FROM <schema>.session",
            Storage::Redis(_) => "DBSIZE of the cell's Redis database, its lock key included",
            Storage::File(_) => "files in the session directory",
            Storage::Cookie => "nothing server-side",
        }
    }
}

/// What a cell can compare before and after: writes seen by the wrappers, and records in
/// the backend's own storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub session_writes: Option<usize>,
    pub records: Option<i64>,
    pub remember_writes: usize,
    /// Writes to the login index (always 0 without one).
    pub login_writes: usize,
}

/// Manager settings a row may change.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The remember-me grace window (the library's default is 10 s).
    pub grace: Duration,
    /// Whether the manager keeps a login index, on the backend's own login store
    /// (`stores::{sqlite, postgres, redis}`, else `MemoryLoginStore`; cookie sessions check
    /// it on every request).
    pub login_index: bool,
}

/// [`Options::default`] with a login index.
pub const INDEXED: Options = Options {
    grace: Duration::from_secs(10),
    login_index: true,
};

impl Default for Options {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            login_index: false,
        }
    }
}

/// One backend, one app.
pub struct Env {
    pub kind: BackendKind,
    pub router: Router,
    pub users: Users,
    /// The counting wrapper around the session store (`None` for cookie sessions).
    pub sessions: Option<CountingSessions>,
    pub remember: CountingRemember,
    pub storage: Storage,
    /// Whether the manager keeps a login index ([`Options::login_index`]).
    pub indexed: bool,
    /// The counting wrapper around the login index's store (idle without an index).
    pub logins: CountingLogins,
    /// The name of the cell, for messages.
    pub cell: String,
}

type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `case` on a fresh backend, then removes the backend's storage (also on panic).
/// Postgres or Redis unreachable: a loud SKIPPED, or a failure under `CI=true`.
pub async fn run_cell<F, Fut>(cell: &str, backend: &str, options: Options, case: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let kind = BackendKind::named(backend);
    let Some((env, teardown)) = Env::setup(kind, options, cell).await else {
        return;
    };
    store_support::with_teardown(case(env), teardown).await;
}

/// Cheap argon2id parameters: the matrix is about sessions, not hashing cost.
fn hasher() -> PasswordHasher {
    PasswordHasher::new()
        .with_params(8, 1, 1)
        .expect("argon2 parameters")
}

impl Env {
    async fn setup(kind: BackendKind, options: Options, cell: &str) -> Option<(Env, Teardown)> {
        let mut teardown: Teardown = Box::pin(async {});
        let mut login_store: Arc<dyn LoginStore> = Arc::new(MemoryLoginStore::new());
        let (sessions, remember, storage): (Option<CountingSessions>, CountingRemember, Storage) =
            match kind {
                BackendKind::Memory => (
                    Some(CountingSessions::new(MemoryStore::default())),
                    CountingRemember::new(MemoryRememberStore::new()),
                    Storage::Memory,
                ),
                BackendKind::Sqlite => {
                    use login_manager::stores::SqliteRememberStore;
                    let dir = tempfile::tempdir().expect("temp dir");
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
                    let backend = SessionBackend::from_url(&url)
                        .await
                        .expect("SQLite backend");
                    let SessionBackend::Sqlite(pool) = backend else {
                        panic!("expected the SQLite backend, got {backend:?}");
                    };
                    let tokens = SqliteRememberStore::new(pool.clone());
                    tokens.migrate().await.expect("migrate remember tokens");
                    let logins = login_manager::stores::SqliteLoginStore::new(pool.clone());
                    logins.migrate().await.expect("migrate the login index");
                    login_store = Arc::new(logins);
                    let closing = pool.clone();
                    teardown = Box::pin(async move {
                        closing.close().await;
                        drop(dir);
                    });
                    (
                        Some(CountingSessions::new(
                            tower_sessions_sqlx_store::SqliteStore::new(pool.clone()),
                        )),
                        CountingRemember::new(tokens),
                        Storage::Sqlite(pool),
                    )
                }
                BackendKind::Postgres => {
                    use login_manager::stores::PostgresRememberStore;
                    if !reachable(&PG_UP, "postgres", &store_support::postgres_url()).await {
                        return None;
                    }
                    let pool = store_support::backends::postgres_pool().await?;
                    let schema = unique("lm_matrix");
                    let store = tower_sessions_sqlx_store::PostgresStore::new(pool.clone())
                        .with_schema_name(&schema)
                        .expect("schema name");
                    store.migrate().await.expect("migrate sessions");
                    let tokens = PostgresRememberStore::new(pool.clone()).schema(&schema);
                    tokens.migrate().await.expect("migrate remember tokens");
                    let logins = login_manager::stores::PostgresLoginStore::new(pool.clone())
                        .schema(&schema);
                    logins.migrate().await.expect("migrate the login index");
                    login_store = Arc::new(logins);
                    let closing = pool.clone();
                    let dropped = schema.clone();
                    teardown = Box::pin(async move {
                        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{dropped}\" CASCADE"))
                            .execute(&closing)
                            .await
                            .expect("drop the cell's schema");
                        closing.close().await;
                    });
                    (
                        Some(CountingSessions::new(store)),
                        CountingRemember::new(tokens),
                        Storage::Postgres { pool, schema },
                    )
                }
                BackendKind::Redis => {
                    use login_manager::stores::RedisRememberStore;
                    if !reachable(&REDIS_UP, "redis", &store_support::redis_url()).await {
                        return None;
                    }
                    let db = RedisDb::acquire().await;
                    let pool = db.pool.clone();
                    let prefix = unique("lm-matrix");
                    let tokens = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
                    login_store = Arc::new(
                        login_manager::stores::RedisLoginStore::new(pool.clone())
                            .key_prefix(&prefix),
                    );
                    teardown = Box::pin(db.release());
                    (
                        Some(CountingSessions::new(
                            tower_sessions_redis_store::RedisStore::new(pool.clone()),
                        )),
                        CountingRemember::new(tokens),
                        Storage::Redis(pool),
                    )
                }
                BackendKind::File => {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let path = dir.path().join("sessions");
                    let backend = SessionBackend::from_url(&format!("file:{}", path.display()))
                        .await
                        .expect("file backend");
                    let SessionBackend::File(path) = backend else {
                        panic!("expected the file backend, got {backend:?}");
                    };
                    teardown = Box::pin(async move { drop(dir) });
                    (
                        Some(CountingSessions::new(
                            tower_sessions_file_store::FileSessionStorage::new_in_folder(
                                path.clone(),
                            ),
                        )),
                        CountingRemember::new(MemoryRememberStore::new()),
                        Storage::File(path),
                    )
                }
                BackendKind::Cookie => (
                    None,
                    CountingRemember::new(MemoryRememberStore::new()),
                    Storage::Cookie,
                ),
            };

        let layer = match &sessions {
            // The same `into_layer` path as `SessionBackend::{Memory, Sqlite, ...}`, with the
            // counting wrapper around the store that variant builds.
            Some(store) => SessionBackend::custom(store.clone())
                .into_layer(SessionConfig::new())
                .expect("session layer"),
            None => SessionBackend::from_url("cookie:")
                .await
                .expect("cookie backend")
                .into_layer(SessionConfig::new().secret_key(Key::generate()))
                .expect("cookie session layer"),
        };
        let hasher = hasher();
        let users = Users::new(hasher.clone()).await;
        let mut manager = LoginManager::new(users.clone())
            .password_hasher(hasher)
            .remember(Remember::new(remember.clone()).grace_period(options.grace));
        let logins = CountingLogins::new(login_store);
        if options.login_index {
            manager = manager.login_index(match &sessions {
                Some(store) => LoginIndex::new(logins.clone(), store.clone()),
                None => LoginIndex::for_cookie_sessions(logins.clone()),
            });
        }
        let router = Router::new()
            .route("/login", post(login))
            .route("/whoami", get(whoami))
            .route("/public", get(public))
            .route("/protected", get(protected))
            .route("/logout", post(logout))
            .route("/logout-flush", post(logout_flush))
            .route("/cart/{item}", post(put_cart))
            .route("/cart", get(get_cart))
            .route("/flash", get(get_flash))
            .route("/logins", get(count_logins))
            .route("/logins/end-others", post(end_other_logins))
            .merge(
                Router::new()
                    .route("/layer", get(|| async { "members only" }))
                    .route_layer(login_required()),
            )
            .layer(manager.into_layer())
            .layer(layer);
        let env = Env {
            kind,
            router,
            users,
            sessions,
            remember,
            storage,
            indexed: options.login_index,
            logins,
            cell: cell.to_owned(),
        };
        Some((env, teardown))
    }

    pub fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookies: HashMap::new(),
            seen_sessions: Vec::new(),
            set_cookie_lines: Vec::new(),
        }
    }

    pub fn is_store(&self) -> bool {
        self.sessions.is_some()
    }

    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            session_writes: self.sessions.as_ref().map(CountingSessions::writes),
            records: self.storage.records().await,
            remember_writes: self.remember.writes(),
            login_writes: self.logins.writes(),
        }
    }

    /// Whether the store holds a record under this session cookie value (store backends).
    pub async fn session_exists(&self, value: &str) -> bool {
        self.sessions
            .as_ref()
            .expect("a store backend")
            .exists(value)
            .await
    }

    /// A line in the test output (straight to stderr: not captured by the harness).
    pub fn note(&self, message: &str) {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("NOTE {}: {message}\n", self.cell).as_bytes(),
        );
    }
}

static PG_UP: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
static REDIS_UP: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();

/// Whether the service answered the first time a cell asked (asked once per run, so that a
/// missing server costs one connection timeout, not one per cell).
async fn reachable(cache: &tokio::sync::OnceCell<bool>, service: &str, url: &str) -> bool {
    let up = *cache
        .get_or_init(|| async {
            match service {
                "postgres" => match store_support::backends::postgres_pool().await {
                    Some(pool) => {
                        pool.close().await;
                        true
                    }
                    None => false,
                },
                _ => match store_support::backends::redis_pool().await {
                    Some(pool) => {
                        let _ = fred::prelude::ClientLike::quit(&pool).await;
                        true
                    }
                    None => false,
                },
            }
        })
        .await;
    if !up {
        // Prints SKIPPED (or fails under CI=true) for this cell too.
        unavailable::<()>(service, url, &"not reachable when the matrix started");
    }
    up
}

// ---------------------------------------------------------------------------------------------
// Redis: a database number of the cell's own.

/// Databases 1..=11 (the demo tests use 12, the load benchmark 13). A cell takes one: in
/// this process through `TAKEN`, across processes through a `SET NX` lock key in it.
const REDIS_DBS: std::ops::RangeInclusive<u8> = 1..=11;
const REDIS_LOCK: &str = "lm-matrix:lock";
static TAKEN: Mutex<[bool; 16]> = Mutex::new([false; 16]);

struct RedisDb {
    db: u8,
    pool: fred::clients::Pool,
    /// Keys that were there before the cell (left alone).
    baseline: HashSet<String>,
}

async fn redis_command<R: fred::prelude::FromValue>(
    pool: &fred::clients::Pool,
    command: &'static str,
    args: Vec<fred::prelude::Value>,
) -> R {
    use fred::prelude::ClientLike;
    use fred::types::CustomCommand;
    pool.custom(CustomCommand::new_static(command, None, false), args)
        .await
        .unwrap_or_else(|e| panic!("redis {command}: {e}"))
}

async fn redis_dbsize(pool: &fred::clients::Pool) -> i64 {
    redis_command(pool, "DBSIZE", vec![]).await
}

async fn redis_keys(pool: &fred::clients::Pool) -> HashSet<String> {
    let keys: Vec<String> = redis_command(pool, "KEYS", vec!["*".into()]).await;
    keys.into_iter().collect()
}

impl RedisDb {
    async fn acquire() -> Self {
        let token = unique("lock");
        let started = std::time::Instant::now();
        loop {
            for db in REDIS_DBS {
                {
                    let mut taken = TAKEN.lock().unwrap();
                    if taken[db as usize] {
                        continue;
                    }
                    taken[db as usize] = true;
                }
                let url = format!("{}/{db}", store_support::redis_url().trim_end_matches('/'));
                let backend = SessionBackend::from_url(&url).await.expect("Redis backend");
                let SessionBackend::Redis(pool) = backend else {
                    panic!("expected the Redis backend, got {backend:?}");
                };
                let locked: Option<String> = redis_command(
                    &pool,
                    "SET",
                    vec![
                        REDIS_LOCK.into(),
                        token.as_str().into(),
                        "NX".into(),
                        "EX".into(),
                        "120".into(),
                    ],
                )
                .await;
                if locked.is_some() {
                    let baseline = redis_keys(&pool).await;
                    return RedisDb { db, pool, baseline };
                }
                // Another process (another run of this binary) holds it.
                let _ = fred::prelude::ClientLike::quit(&pool).await;
                TAKEN.lock().unwrap()[db as usize] = false;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "no free Redis database in {REDIS_DBS:?} for a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Deletes every key the cell created, then the lock.
    async fn release(self) {
        use fred::prelude::KeysInterface;
        for key in redis_keys(&self.pool).await {
            if !self.baseline.contains(&key) && key != REDIS_LOCK {
                let _: i64 = self.pool.del(key).await.expect("delete a cell key");
            }
        }
        let _: i64 = self.pool.del(REDIS_LOCK).await.expect("delete the lock");
        let _ = fred::prelude::ClientLike::quit(&self.pool).await;
        TAKEN.lock().unwrap()[self.db as usize] = false;
    }
}

// ---------------------------------------------------------------------------------------------
// A browser.

/// A response with its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn set_cookie_lines(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ASCII Set-Cookie").to_owned())
            .collect()
    }

    /// The last `Set-Cookie` for `name`.
    pub fn cookie(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        self.set_cookie_lines()
            .into_iter()
            .filter_map(|line| cookie::Cookie::parse(line).ok())
            .rfind(|c| c.name() == name)
    }

    /// The value a `Set-Cookie` for `name` gives, unless it removes the cookie.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        self.cookie(name)
            .filter(|c| !is_removal(c))
            .map(|c| c.value().to_owned())
    }

    /// Whether a `Set-Cookie` expires `name`.
    pub fn removes(&self, name: &str) -> bool {
        self.cookie(name).is_some_and(|c| is_removal(&c))
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

pub fn is_removal(cookie: &cookie::Cookie<'_>) -> bool {
    cookie.value().is_empty()
        || cookie.max_age().is_some_and(|age| age.is_zero())
        || cookie
            .expires_datetime()
            .is_some_and(|at| at <= time::OffsetDateTime::now_utc())
}

/// Keeps cookies like a browser, never follows redirects, and remembers every session cookie
/// value it was ever given (or had planted).
#[derive(Clone)]
pub struct Browser {
    router: Router,
    pub cookies: HashMap<String, String>,
    /// Every session cookie value this browser carried, in order.
    pub seen_sessions: Vec<String>,
    /// Every `Set-Cookie` line it received.
    pub set_cookie_lines: Vec<String>,
}

const USER_AGENT: &str = "matrix-browser/1.0";
const PEER: &str = "10.1.2.3:4567";

impl Browser {
    pub async fn send(&mut self, mut request: Request<Body>) -> Reply {
        let headers = request.headers_mut();
        if !self.cookies.is_empty() && !headers.contains_key(header::COOKIE) {
            let mut pairs: Vec<_> = self.cookies.iter().collect();
            pairs.sort();
            let cookie = pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.insert(header::COOKIE, cookie.parse().expect("cookie header"));
        }
        headers.insert(header::USER_AGENT, USER_AGENT.parse().unwrap());
        let peer: SocketAddr = PEER.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible router");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        for line in parts.headers.get_all(header::SET_COOKIE) {
            let line = line.to_str().expect("ASCII Set-Cookie").to_owned();
            self.set_cookie_lines.push(line.clone());
            let cookie = cookie::Cookie::parse(line).expect("a valid Set-Cookie");
            if is_removal(&cookie) {
                self.cookies.remove(cookie.name());
            } else {
                if cookie.name() == SESSION_COOKIE {
                    self.seen_sessions.push(cookie.value().to_owned());
                }
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn request(&mut self, method: Method, path: &str) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post(&mut self, path: &str) -> Reply {
        self.send(Request::post(path).body(Body::empty()).unwrap())
            .await
    }

    /// Posts the login form; `next` goes into the query string as given (already encoded).
    pub async fn login_with(&mut self, user: &User, remember: bool, next: Option<&str>) -> Reply {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("username", &user.name)
                .append_pair("password", &user.password);
            if remember {
                form.append_pair("remember", "on");
            }
            form.finish()
        };
        let uri = match next {
            Some(next) => format!("/login?next={next}"),
            None => "/login".to_owned(),
        };
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
    }

    pub async fn whoami(&mut self) -> String {
        self.get("/whoami").await.body
    }

    pub fn session(&self) -> Option<String> {
        self.cookies.get(SESSION_COOKIE).cloned()
    }

    pub fn remember(&self) -> Option<String> {
        self.cookies.get(REMEMBER_COOKIE).cloned()
    }

    /// A cookie this browser was never given (a forged or copied one).
    pub fn plant(&mut self, name: &str, value: &str) {
        if name == SESSION_COOKIE {
            self.seen_sessions.push(value.to_owned());
        }
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// What closing the browser does: session cookies are gone, the remember cookie stays.
    pub fn close(&mut self) {
        self.cookies.remove(SESSION_COOKIE);
    }

    /// A browser that holds only `cookies` (a copy taken by someone else).
    pub fn with_only(&self, cookies: &[(&str, &str)]) -> Browser {
        let mut other = self.clone();
        other.cookies.clear();
        other.seen_sessions.clear();
        other.set_cookie_lines.clear();
        for (name, value) in cookies {
            other.plant(name, value);
        }
        other
    }
}

// ---------------------------------------------------------------------------------------------
// The login paths of invariant 1.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginPath {
    /// (a) a visitor with an anonymous session (the app stored a cart) logs in.
    Anonymous,
    /// (b) the logged-in user logs in again.
    SameUser,
    /// (c) another user logs in on a logged-in session.
    AnotherUser,
    /// (d) the session was restored from the remember cookie (browser reopened), then a login.
    Remembered,
    /// (e) the user's `session_auth_hash` changed elsewhere, then a login (new password).
    StaleHash,
    /// (f) after a logout (the cart kept the session alive), a login.
    AfterLogout,
    /// (g) a session cookie the server never issued (forged / planted), then a login.
    Forged,
}

impl LoginPath {
    pub fn named(name: &str) -> Self {
        match name {
            "anonymous" => Self::Anonymous,
            "same_user" => Self::SameUser,
            "another_user" => Self::AnotherUser,
            "remembered" => Self::Remembered,
            "stale_hash" => Self::StaleHash,
            "after_logout" => Self::AfterLogout,
            "forged" => Self::Forged,
            other => panic!("unknown login path {other}"),
        }
    }
}

/// A browser brought to the point right before the path's login.
pub struct Prepared {
    pub browser: Browser,
    /// Who logs in on this path.
    pub user: User,
    /// The session cookie the browser holds right before that login.
    pub before: Option<String>,
    /// The remember cookie it holds then.
    pub remember_before: Option<String>,
    /// The path's login must start from an emptied session (another user, stale hash).
    pub flushed: bool,
    /// Who the browser is right before the login (`whoami` prefix).
    pub who_before: &'static str,
}

#[track_caller]
fn expect_status(reply: &Reply, status: u16, what: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{what}: {} {:?}",
        reply.body,
        reply.headers
    );
}

pub async fn prepare(env: &Env, path: LoginPath) -> Prepared {
    let mut browser = env.browser();
    let alice = env.users.by_name("alice");
    let mut user = alice.clone();
    let mut flushed = false;
    let mut who_before = "alice";
    match path {
        LoginPath::Anonymous => {
            expect_status(&browser.post("/cart/anonymous-tea").await, 200, "cart");
            who_before = "anonymous";
        }
        LoginPath::SameUser => {
            expect_status(&browser.login_with(&alice, false, None).await, 303, "login");
            expect_status(&browser.post("/cart/tea").await, 200, "cart");
        }
        LoginPath::AnotherUser => {
            expect_status(&browser.login_with(&alice, true, None).await, 303, "login");
            expect_status(&browser.post("/cart/alices-tea").await, 200, "cart");
            user = env.users.by_name("bob");
            flushed = true;
        }
        LoginPath::Remembered => {
            expect_status(&browser.login_with(&alice, true, None).await, 303, "login");
            expect_status(&browser.post("/cart/tea").await, 200, "cart");
            browser.close();
            let restored = browser.get("/whoami").await;
            assert_eq!(
                restored.body, "alice fresh=false remembered=true",
                "{}: restored from the remember cookie",
                env.cell
            );
            assert!(
                restored.cookie_value(SESSION_COOKIE).is_some(),
                "{}: the restored session gets a cookie",
                env.cell
            );
        }
        LoginPath::StaleHash => {
            expect_status(&browser.login_with(&alice, true, None).await, 303, "login");
            expect_status(&browser.post("/cart/tea").await, 200, "cart");
            env.users.change_password("alice").await;
            user = env.users.by_name("alice");
            flushed = true;
        }
        LoginPath::AfterLogout => {
            expect_status(&browser.login_with(&alice, true, None).await, 303, "login");
            expect_status(&browser.post("/cart/tea").await, 200, "cart");
            expect_status(&browser.post("/logout").await, 200, "logout");
            who_before = "anonymous";
        }
        LoginPath::Forged => {
            browser.plant(SESSION_COOKIE, &Id::default().to_string());
            who_before = "anonymous";
        }
    }
    Prepared {
        before: browser.session(),
        remember_before: browser.remember(),
        browser,
        user,
        flushed,
        who_before,
    }
}

/// The selector of a remember cookie value.
pub fn selector(cookie: &str) -> &str {
    cookie.split_once('.').map_or(cookie, |(s, _)| s)
}

/// What [`raw`] returns.
pub struct RawReply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
}

/// Sends one request straight to the router (no cookie jar, body not read): for the
/// anonymous-request cells.
pub async fn raw(
    router: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    json: bool,
) -> RawReply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::USER_AGENT, USER_AGENT);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if json {
        request = request.header(header::ACCEPT, "application/json");
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = PEER.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.expect("router");
    let headers = response.headers();
    RawReply {
        status: response.status(),
        set_cookies: headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect(),
        location: headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
