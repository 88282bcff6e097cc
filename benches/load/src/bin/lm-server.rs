//! Server (a): login-manager. `LoginRequired<User>` on `/protected`, `/public` under the
//! layer, remember-me on, `POST /login` with argon2id (the login storm) and `POST /bench/login`
//! (logs alice in without a password, for the throughput runs).
//!
//! `lm-server [--backend URL] [--remember-tokens N FILE] [--login-index] [--separate-layers]`
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

use std::{io::Write, sync::Arc};

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
    PasswordHasher, Remember, RememberStore, RememberToken, UserLoader,
};
use login_manager_load::{greeting, public, serve, LoginForm, User, Users, USER_AGENT};
use login_manager_sessions::{SessionBackend, SessionConfig};
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

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
/// Tasks inserting pre-issued tokens at once (the database stores are network-bound).
const ISSUERS: usize = 16;

struct Args {
    backend: Option<String>,
    no_ping: bool,
    login_index: bool,
    separate_layers: bool,
    tokens: Option<(usize, String)>,
}

fn parse_args() -> Args {
    const USAGE: &str =
        "usage: lm-server [--backend URL [--no-ping]] [--remember-tokens N FILE] [--login-index] [--separate-layers]";
    let mut args = Args {
        backend: None,
        no_ping: false,
        login_index: false,
        separate_layers: false,
        tokens: None,
    };
    let mut rest = std::env::args().skip(1);
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--backend" => args.backend = Some(rest.next().expect(USAGE)),
            "--no-ping" => args.no_ping = true,
            "--login-index" => args.login_index = true,
            "--separate-layers" => args.separate_layers = true,
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
    let (sessions, remember_store) = match &args.backend {
        Some(url) => {
            let (sessions, remember) = backend_stores(url, args.no_ping).await;
            (Some(sessions), remember)
        }
        None => (
            None,
            Arc::new(memory_remember_store()) as Arc<dyn RememberStore>,
        ),
    };
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
        .route("/bench/login", post(bench_login));
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

    if let Some((count, file)) = args.tokens {
        issue_tokens(&app, remember_store, count, &file).await;
    }
    serve(app).await;
}

/// Issues one token through a real remember-me login, then `count` copies of it with fresh
/// selectors and validators, straight into the store.
async fn issue_tokens(app: &Router, store: Arc<dyn RememberStore>, count: usize, file: &str) {
    let request = Request::post("/bench/login")
        .header("x-remember", "1")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let value = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("remember_token="))
        .and_then(|v| v.split(';').next())
        .expect("a remember cookie")
        .to_owned();
    let selector = parse_token(&value).expect("a token").selector;
    let template: RememberToken = store.find(&selector).await.unwrap().expect("stored");
    store.delete(&selector).await.unwrap();

    let mut issuers = tokio::task::JoinSet::new();
    for issuer in 0..ISSUERS {
        let (store, template) = (store.clone(), template.clone());
        let share = count / ISSUERS + usize::from(issuer < count % ISSUERS);
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
