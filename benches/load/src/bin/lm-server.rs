//! Server (a): login-manager. `LoginRequired<User>` on `/protected`, `/public` under the
//! layer, remember-me on, `POST /login` with argon2id (the login storm) and `POST /bench/login`
//! (logs alice in without a password, for the throughput runs).
//!
//! `lm-server [--backend URL [--no-ping] [--fill N] [--count-ops]] [--remember-tokens N FILE]
//! [--login-index] [--separate-layers]`
//!
//! - Without `--backend`: sessions in tower-sessions' `MemoryStore` behind a plain
//!   `SessionManagerLayer` (cookie `id`, as the axum-login and floor servers), remember-me
//!   tokens in `MemoryRememberStore`.
//! - `--backend URL` (`memory:`, `sqlite://…`, `postgres://…`, `redis://…`): sessions through
//!   `login_manager_sessions::SessionBackend::from_url(URL)` and remember-me tokens in the library's
//!   store for the same engine and pool (the per-backend benchmark). The session cookie is
//!   still named `id`.
//! - `--no-ping` (with a `postgres://` backend): a pool that does not ping each connection
//!   before handing it out (`PgPoolOptions::test_before_acquire(false)`; sqlx pings by
//!   default, one more round trip per pool acquire).
//! - `--login-index`: with a `LoginIndex` (entries in a `MemoryLoginStore`, ending through the
//!   session store in use): a logged-in request must cost what it costs without (#17).
//! - `--separate-layers`: the session and login layers in two `.layer` calls (as DESIGN.md's
//!   example writes them) instead of one `.layer((sessions, login))`: what the second call
//!   costs (memory sessions only).
//! - `--remember-tokens N FILE`: before serving, issue N remember-me tokens for alice and
//!   write their cookie values to FILE, one a line (the remember-restore runs use each
//!   exactly once).
//! - `--fill N` (with `--backend`; the scale phase, #16 target 4): before serving, fill the
//!   stores with N more live sessions (copies of a real logged-in session's record), N
//!   remember-me tokens of N other users and N login-throttle keys (`acct:…` and `ip:…`, one
//!   hour windows). Postgres: one `INSERT … SELECT … FROM generate_series` per table, then
//!   `ANALYZE`; Redis: through the stores themselves (tower-sessions-redis-store's `create`,
//!   `RedisRememberStore::create`, `RedisThrottleStore::record_failure`), many at once;
//!   memory: sessions and tokens only (no throttle store in this server).
//! - `--count-ops` (with `--backend`): the session store and the remember store wrapped in
//!   counters of their operations, read on `GET /bench/ops` (JSON, `{"session.load": 3, …}`).
//!   Only for the short counting runs of the backends phase, never for timed ones.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Form, Router,
};
use login_manager::{
    __private::parse_token, __private::remember_token_like, stores::PostgresRememberStore,
    stores::RedisRememberStore, stores::SqliteRememberStore, AuthSession, CookieOptions,
    LoginIndex, LoginManager, LoginOptions, LoginRequired, MemoryLoginStore, MemoryRememberStore,
    PasswordHasher, Remember, RememberStore, RememberToken, Rotation, ThrottleStore, UserLoader,
};
use login_manager_load::{greeting, public, serve, LoginForm, User, Users, USER_AGENT};
use login_manager_sessions::{DynStore, SessionBackend, SessionConfig};
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionManagerLayer, SessionStore,
};

#[derive(Clone)]
struct Loader(Users);

impl UserLoader for Loader {
    type User = User;
    type Error = std::convert::Infallible;

    async fn load_user(&self, id: &u32) -> Result<Option<User>, Self::Error> {
        Ok(self.0.load(*id).await)
    }
}

async fn protected(LoginRequired(user): LoginRequired<User>) -> String {
    greeting(&user)
}

async fn bench_login(
    mut auth: AuthSession<Loader>,
    headers: axum::http::HeaderMap,
) -> Result<&'static str, login_manager::Error> {
    let user = auth.loader().0.alice();
    let remember = headers.contains_key("x-remember");
    auth.login_user_with(&user, LoginOptions::new().remember(remember))
        .await?;
    Ok("logged in")
}

async fn login(
    mut auth: AuthSession<Loader>,
    Extension(hasher): Extension<PasswordHasher>,
    Form(form): Form<LoginForm>,
) -> Result<Response, login_manager::Error> {
    let user = auth.loader().0.by_name(&form.username);
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let valid = hasher.verify_user(&form.password, stored).await?.valid;
    Ok(match user {
        Some(user) if valid => {
            auth.login_user(&user).await?;
            "logged in".into_response()
        }
        _ => (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response(),
    })
}

/// The key prefix of the remember-me tokens in the Redis runs (sessions are stored under their
/// bare ids by tower-sessions-redis-store).
const REDIS_PREFIX: &str = "login-manager-bench:";
/// Tasks inserting pre-issued tokens at once (the database stores are network-bound; SQLite
/// gets one).
const ISSUERS: usize = 16;

struct Args {
    backend: Option<String>,
    no_ping: bool,
    login_index: bool,
    separate_layers: bool,
    tokens: Option<(usize, String)>,
    fill: Option<usize>,
    count_ops: bool,
}

fn parse_args() -> Args {
    const USAGE: &str =
        "usage: lm-server [--backend URL [--no-ping] [--fill N] [--count-ops]] [--remember-tokens N FILE] [--login-index] [--separate-layers]";
    let mut args = Args {
        backend: None,
        no_ping: false,
        login_index: false,
        separate_layers: false,
        tokens: None,
        fill: None,
        count_ops: false,
    };
    let mut rest = std::env::args().skip(1);
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--backend" => args.backend = Some(rest.next().expect(USAGE)),
            "--no-ping" => args.no_ping = true,
            "--login-index" => args.login_index = true,
            "--separate-layers" => args.separate_layers = true,
            "--count-ops" => args.count_ops = true,
            "--fill" => args.fill = Some(rest.next().and_then(|n| n.parse().ok()).expect(USAGE)),
            "--remember-tokens" => {
                let count = rest.next().and_then(|n| n.parse().ok()).expect(USAGE);
                args.tokens = Some((count, rest.next().expect(USAGE)));
            }
            _ => panic!("{USAGE}"),
        }
    }
    let postgres = args
        .backend
        .as_deref()
        .is_some_and(|url| url.starts_with("postgres"));
    assert!(
        !args.no_ping || postgres,
        "--no-ping needs a postgres:// backend"
    );
    assert!(
        args.backend.is_some() || (args.fill.is_none() && !args.count_ops),
        "--fill and --count-ops need --backend"
    );
    args
}

/// The session backend a URL names and the library's remember-me store on the same engine
/// (and pool), tables created.
async fn backend_stores(url: &str, no_ping: bool) -> (SessionBackend, Arc<dyn RememberStore>) {
    let sessions = if no_ping {
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("postgres {url}: {e}"));
        let sessions = SessionBackend::Postgres(pool);
        sessions.migrate().await.expect("create the session table");
        sessions
    } else {
        SessionBackend::from_url(url)
            .await
            .unwrap_or_else(|e| panic!("session backend {url}: {e}"))
    };
    let remember: Arc<dyn RememberStore> = match &sessions {
        SessionBackend::Memory(_) => Arc::new(memory_remember_store()),
        SessionBackend::Sqlite(pool) => {
            let store = SqliteRememberStore::new(pool.clone());
            migrated(store.migrate().await, store)
        }
        SessionBackend::Postgres(pool) => {
            let store = PostgresRememberStore::new(pool.clone());
            migrated(store.migrate().await, store)
        }
        SessionBackend::Redis(pool) => {
            Arc::new(RedisRememberStore::new(pool.clone()).key_prefix(REDIS_PREFIX))
        }
        other => panic!("no benchmark remember store for {other:?}"),
    };
    (sessions, remember)
}

/// `store`, once its table was created (`migration`, the outcome of its `migrate()`).
fn migrated(
    migration: Result<(), login_manager::Error>,
    store: impl RememberStore,
) -> Arc<dyn RememberStore> {
    migration.expect("create the remember table");
    Arc::new(store)
}

/// Every pre-issued token belongs to alice: no per-user cap may drop them.
fn memory_remember_store() -> MemoryRememberStore {
    MemoryRememberStore::new().max_tokens_per_user(usize::MAX)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let users = Users::new().await;
    let (mut sessions, mut remember_store) = match &args.backend {
        Some(url) => {
            let (sessions, remember) = backend_stores(url, args.no_ping).await;
            (Some(sessions), remember)
        }
        None => (
            None,
            Arc::new(memory_remember_store()) as Arc<dyn RememberStore>,
        ),
    };
    // The stores as they are, for `--fill` (which must not go through the counters).
    let unwrapped = (sessions.clone(), remember_store.clone());
    let ops = Arc::new(Ops::default());
    if args.count_ops {
        let inner = sessions
            .as_ref()
            .and_then(SessionBackend::store)
            .expect("--count-ops: a session store");
        sessions = Some(SessionBackend::custom(CountingSessions {
            inner,
            ops: ops.clone(),
        }));
        remember_store = Arc::new(CountingRemember {
            inner: remember_store,
            ops: ops.clone(),
        });
    }
    let memory_sessions = MemoryStore::default();
    let mut manager = LoginManager::new(Loader(users))
        .remember(Remember::new(remember_store.clone()).secure(false));
    if args.login_index {
        let index = match sessions.as_ref().and_then(|s| s.store()) {
            Some(store) => LoginIndex::new(MemoryLoginStore::new(), store),
            None => LoginIndex::new(MemoryLoginStore::new(), memory_sessions.clone()),
        };
        manager = manager.login_index(index);
    }
    let app = Router::new()
        .route("/protected", get(protected))
        .route("/public", get(public))
        // The hasher on the login route only: a router-wide layer would add work to every
        // route that the other servers do not have.
        .route(
            "/login",
            post(login).layer(Extension(PasswordHasher::new())),
        )
        .route("/bench/login", post(bench_login))
        .route(
            "/bench/ops",
            get(move || {
                let ops = ops.clone();
                async move { ops.json() }
            }),
        );
    // One `.layer` call for both layers, as the guide recommends: axum wraps every route once
    // more for each call.
    let login_layer = manager.into_layer();
    let app = match sessions {
        None if args.separate_layers => app
            .layer(login_layer)
            .layer(SessionManagerLayer::new(memory_sessions).with_secure(false)),
        None => app.layer((
            SessionManagerLayer::new(memory_sessions).with_secure(false),
            login_layer,
        )),
        Some(sessions) => {
            let config = SessionConfig::new().cookie(CookieOptions::new("id").secure(false));
            app.layer((
                sessions.into_layer(config).expect("session layer"),
                login_layer,
            ))
        }
    };

    // The fill first: its remember-me login trims alice's tokens to the per-user bound.
    if let Some(count) = args.fill {
        let (Some(backend), remember) = unwrapped else {
            unreachable!("--fill needs --backend")
        };
        fill(&app, &backend, remember, count).await;
    }
    if let Some((count, file)) = args.tokens {
        // SQLite serialises writers: concurrent issuers only wait for its lock, and on a busy
        // machine past its busy timeout ("database is locked").
        let sqlite = args
            .backend
            .as_deref()
            .is_some_and(|url| url.starts_with("sqlite"));
        let issuers = if sqlite { 1 } else { ISSUERS };
        issue_tokens(&app, remember_store, count, issuers, &file).await;
    }
    serve(app).await;
}

/// Issues one token through a real remember-me login, then `count` copies of it with fresh
/// selectors and validators, straight into the store.
async fn issue_tokens(
    app: &Router,
    store: Arc<dyn RememberStore>,
    count: usize,
    concurrency: usize,
    file: &str,
) {
    let (_, value) = remember_login(app).await;
    let selector = parse_token(&value).expect("a token").selector;
    let template: RememberToken = store.find(&selector).await.unwrap().expect("stored");
    store.delete(&selector).await.unwrap();

    let mut issuers = tokio::task::JoinSet::new();
    for issuer in 0..concurrency {
        let (store, template) = (store.clone(), template.clone());
        let share = count / concurrency + usize::from(issuer < count % concurrency);
        issuers.spawn(async move {
            let mut lines = Vec::with_capacity(share);
            for _ in 0..share {
                let (token, cookie) = remember_token_like(&template);
                store.create(token).await.expect("store a token");
                lines.push(cookie);
            }
            lines
        });
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("token file"));
    while let Some(lines) = issuers.join_next().await {
        for line in lines.expect("issuer task") {
            writeln!(out, "{line}").unwrap();
        }
    }
    out.flush().unwrap();
    eprintln!("issued {count} remember tokens into {file}");
}

/// Logs alice in with remember-me through the app itself; her session id and remember-me
/// cookie value.
async fn remember_login(app: &Router) -> (String, String) {
    let request = Request::post("/bench/login")
        .header("x-remember", "1")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let cookie = |name: &str| {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(name))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie"))
            .to_owned()
    };
    (cookie("id="), cookie("remember_token="))
}

/// Tasks filling a Redis or memory store at once (each one request at a time; fred pipelines
/// the commands of concurrent tasks on its connections).
const FILLERS: usize = 64;
/// The throttle windows of `--fill`: open for the whole run.
const FILL_WINDOW: Duration = Duration::from_secs(3600);

/// The `i`-th throttle key of `--fill`: half account keys, half IPv4 address keys, in the
/// forms `LoginThrottle` stores (`acct:<name>`, `ip:<address>`).
fn throttle_key(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("acct:user{i}")
    } else {
        format!("ip:10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
    }
}

/// `--fill N`: N more live sessions, N remember-me tokens of N other users (ids 1000..) and N
/// throttle keys, all unexpired, next to alice's.
async fn fill(
    app: &Router,
    backend: &SessionBackend,
    remember: Arc<dyn RememberStore>,
    count: usize,
) {
    let started = Instant::now();
    let (session_id, cookie) = remember_login(app).await;
    let selector = parse_token(&cookie).expect("a token").selector;
    match backend {
        SessionBackend::Postgres(pool) => fill_postgres(pool, &session_id, &selector, count).await,
        SessionBackend::Redis(pool) => {
            let throttle = login_manager::stores::RedisThrottleStore::new(pool.clone())
                .key_prefix(REDIS_PREFIX);
            fill_by_stores(
                backend,
                remember,
                Some(Arc::new(throttle)),
                &session_id,
                &selector,
                count,
            )
            .await
        }
        SessionBackend::Memory(_) => {
            fill_by_stores(backend, remember, None, &session_id, &selector, count).await
        }
        other => panic!("--fill: no filler for {other:?} (postgres, redis, memory)"),
    }
    eprintln!(
        "filled {count} sessions, remember tokens and throttle keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Postgres: one `INSERT … SELECT` per table, copying alice's session record and remember
/// token (fresh random ids and selectors, 22 base64url characters like the real ones; the
/// copied session blob still names alice's session id inside), then `ANALYZE`, as
/// autovacuum would have done on a table that grew to this size.
async fn fill_postgres(pool: &sqlx::PgPool, session_id: &str, selector: &str, count: usize) {
    const RANDOM_ID: &str =
        "rtrim(translate(encode(uuid_send(gen_random_uuid()), 'base64'), '+/', '-_'), '=')";
    let throttle = login_manager::stores::PostgresThrottleStore::new(pool.clone());
    throttle.migrate().await.expect("create the throttle table");
    let count = i64::try_from(count).expect("fill count");
    let statements = [
        format!(
            "INSERT INTO \"tower_sessions\".\"session\" (id, data, expiry_date) \
             SELECT {RANDOM_ID}, s.data, s.expiry_date \
             FROM \"tower_sessions\".\"session\" s, generate_series(1, $2) \
             WHERE s.id = $1"
        ),
        format!(
            "INSERT INTO login_remember_tokens (selector, validator_hash, previous_hash, \
             rotated_at, user_id, auth_hash, created_at, last_used_at, expires_at, user_agent) \
             SELECT {RANDOM_ID}, sha256(uuid_send(gen_random_uuid())), NULL, NULL, \
             (999 + g)::text, t.auth_hash, t.created_at, t.last_used_at, t.expires_at, \
             t.user_agent \
             FROM login_remember_tokens t, generate_series(1, $2) g WHERE t.selector = $1"
        ),
    ];
    for (statement, key) in statements.iter().zip([session_id, selector]) {
        let done = sqlx::query(statement)
            .bind(key)
            .bind(count)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("fill: {e}: {statement}"));
        assert_eq!(done.rows_affected(), count as u64, "fill: {statement}");
    }
    let throttle = "INSERT INTO login_throttle (key, failures, window_end) \
         SELECT CASE WHEN g % 2 = 0 THEN 'acct:user' || g \
         ELSE 'ip:10.' || ((g >> 16) & 255) || '.' || ((g >> 8) & 255) || '.' || (g & 255) END, \
         1 + g % 5, now() + interval '1 hour' FROM generate_series(0, $1 - 1) g";
    let done = sqlx::query(throttle)
        .bind(count)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("fill: {e}: {throttle}"));
    assert_eq!(done.rows_affected(), count as u64, "fill: throttle");
    sqlx::query("ANALYZE \"tower_sessions\".\"session\", login_remember_tokens, login_throttle")
        .execute(pool)
        .await
        .expect("fill: ANALYZE");
}

/// Redis and memory: through the stores' own writes, `FILLERS` at a time — the keys are
/// exactly what the stores write (sessions: copies of alice's record under fresh ids).
async fn fill_by_stores(
    backend: &SessionBackend,
    remember: Arc<dyn RememberStore>,
    throttle: Option<Arc<dyn ThrottleStore>>,
    session_id: &str,
    selector: &str,
    count: usize,
) {
    let sessions = backend.store().expect("a session store");
    let id: Id = session_id.parse().expect("a session id");
    let record = sessions
        .load(&id)
        .await
        .expect("load the session")
        .expect("alice's session");
    let template = remember
        .find(selector)
        .await
        .expect("find the token")
        .expect("alice's token");
    let mut fillers = tokio::task::JoinSet::new();
    for filler in 0..FILLERS {
        let (sessions, remember, throttle) = (sessions.clone(), remember.clone(), throttle.clone());
        let (record, template) = (record.clone(), template.clone());
        fillers.spawn(async move {
            for i in (filler..count).step_by(FILLERS) {
                let mut copy = Record {
                    id: Id::default(),
                    ..record.clone()
                };
                sessions.create(&mut copy).await.expect("fill: a session");
                let (mut token, _) = remember_token_like(&template);
                token.user_id = (1000 + i).to_string();
                remember.create(token).await.expect("fill: a token");
                if let Some(throttle) = &throttle {
                    throttle
                        .record_failure(&throttle_key(i), FILL_WINDOW)
                        .await
                        .expect("fill: a throttle key");
                }
            }
        });
    }
    while let Some(done) = fillers.join_next().await {
        done.expect("filler task");
    }
}

/// Store operations by name (`--count-ops`).
#[derive(Default)]
struct Ops(Mutex<BTreeMap<&'static str, u64>>);

impl Ops {
    fn count(&self, op: &'static str) {
        *self.0.lock().unwrap().entry(op).or_default() += 1;
    }

    fn json(&self) -> String {
        serde_json::to_string(&*self.0.lock().unwrap()).unwrap()
    }
}

/// A session store that counts its operations.
#[derive(Clone)]
struct CountingSessions {
    inner: DynStore,
    ops: Arc<Ops>,
}

impl std::fmt::Debug for CountingSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CountingSessions")
            .field(&self.inner)
            .finish()
    }
}

#[async_trait::async_trait]
impl SessionStore for CountingSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.ops.count("session.create");
        self.inner.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.ops.count("session.save");
        self.inner.save(record).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.ops.count("session.load");
        self.inner.load(session_id).await
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.ops.count("session.delete");
        self.inner.delete(session_id).await
    }
}

/// A remember-me store that counts its operations.
struct CountingRemember {
    inner: Arc<dyn RememberStore>,
    ops: Arc<Ops>,
}

#[async_trait::async_trait]
impl RememberStore for CountingRemember {
    async fn create(&self, token: RememberToken) -> login_manager::Result<()> {
        self.ops.count("remember.create");
        self.inner.create(token).await
    }

    async fn find(&self, selector: &str) -> login_manager::Result<Option<RememberToken>> {
        self.ops.count("remember.find");
        self.inner.find(selector).await
    }

    async fn rotate(
        &self,
        selector: &str,
        expected: &[u8; 32],
        rotation: Rotation,
    ) -> login_manager::Result<bool> {
        self.ops.count("remember.rotate");
        self.inner.rotate(selector, expected, rotation).await
    }

    async fn delete(&self, selector: &str) -> login_manager::Result<()> {
        self.ops.count("remember.delete");
        self.inner.delete(selector).await
    }

    async fn delete_for_user(&self, user_id: &str) -> login_manager::Result<u64> {
        self.ops.count("remember.delete_for_user");
        self.inner.delete_for_user(user_id).await
    }

    async fn list_for_user(&self, user_id: &str) -> login_manager::Result<Vec<RememberToken>> {
        self.ops.count("remember.list_for_user");
        self.inner.list_for_user(user_id).await
    }

    async fn delete_expired(&self) -> login_manager::Result<u64> {
        self.ops.count("remember.delete_expired");
        self.inner.delete_expired().await
    }
}
