//! Micro-benchmarks of the hot paths (docs/benchmarks.md).
//!
//! ```text
//! cargo bench --features testing --bench micro
//! ```
//!
//! - `safe_next`: the `next` validator on good and bad inputs.
//! - `remember_token`: parsing a remember cookie and comparing the validator hash in constant
//!   time, as a restore does before it touches the store.
//! - `auth_record`: the session auth record written (`TestLogin`: encode + session insert +
//!   save) and read back (session load + `get_value`) through `tower_sessions::Session`; the
//!   record's own (de)serialization is private, so it is measured through this round trip.
//! - `resolve`: one request through the layers with a logged-in session in a `MemoryStore`:
//!   `LoginRequired<User>` vs the same handler on bare tower-sessions (read the id from the
//!   session, look it up); `/public` with and without the `LoginManager` layer; a remember-me
//!   restore (fresh token, no session) next to them; and `/protected` and the restore again
//!   with a `LoginIndex` (`..._indexed`), whose logged-in requests must cost the same.

use async_trait::async_trait;
use std::{
    collections::HashMap,
    convert::Infallible,
    hint::black_box,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    routing::{get, post},
    Router,
};
use criterion::{criterion_group, criterion_main, Criterion};
use login_manager::{
    __private::mint_remember_token, __private::parse_token, __private::remember_token_like,
    safe_next, testing::TestLogin, AuthSession, AuthUser, LoginIndex, LoginManager, LoginOptions,
    LoginRequired, MemoryLoginStore, MemoryRememberStore, Remember, RememberStore, UserLoader,
};
use subtle::ConstantTimeEq;
use tower::ServiceExt;
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, Session, SessionManagerLayer, SessionStore,
};

#[derive(Clone, Debug)]
struct User {
    id: u32,
    name: String,
    password_hash: String,
}

impl AuthUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// The one-user in-memory loader every benchmark shares.
#[derive(Clone)]
struct Users(Arc<HashMap<u32, User>>);

impl Users {
    fn new() -> Self {
        let alice = User {
            id: 1,
            name: "alice".to_owned(),
            // A realistic auth hash: an argon2id PHC string (not verified here).
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$\
                            mYkVG1uHnIbcz0Lcl1iaLkbmtuJx2SW0Qe7YtbDkSDY"
                .to_owned(),
        };
        Users(Arc::new(HashMap::from([(1, alice)])))
    }

    fn alice(&self) -> User {
        self.0[&1].clone()
    }
}

impl UserLoader for Users {
    type User = User;
    type Error = Infallible;

    async fn load_user(&self, id: &u32) -> Result<Option<User>, Infallible> {
        Ok(self.0.get(id).cloned())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// safe_next

fn bench_safe_next(c: &mut Criterion) {
    let cases = [
        ("good/short", "/dashboard"),
        ("good/query", "/reports/2024?tab=summary&sort=desc"),
        (
            "good/percent_encoded",
            "/caf%C3%A9/men%C3%BC?q=cr%C3%A8me+br%C3%BBl%C3%A9e",
        ),
        ("good/raw_non_ascii", "/café/menü"),
        ("bad/scheme_relative", "//evil.example/login"),
        ("bad/encoded_slash", "/%2F/evil.example"),
        ("bad/absolute", "https://evil.example/"),
        ("bad/crlf", "/x\r\nSet-Cookie: a=b"),
        ("bad/double_encoded", "/%252F%252Fevil.example"),
    ];
    let mut group = c.benchmark_group("safe_next");
    for (name, input) in cases {
        let expected = name.starts_with("good");
        assert_eq!(safe_next(input).is_some(), expected, "{name}");
        group.bench_function(name, |b| b.iter(|| safe_next(black_box(input))));
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// remember token

/// A new `selector.validator` cookie value and the SHA-256 of its validator.
fn bench_remember_token(c: &mut Criterion) {
    let minted = mint_remember_token();
    let (valid, stored_hash) = (minted.cookie_value, minted.validator_hash);
    let other = mint_remember_token().cookie_value;
    let wrong_validator = format!("{}{}", &valid[..23], &other[23..]);
    let mut group = c.benchmark_group("remember_token");
    group.bench_function("parse_verify/valid", |b| {
        b.iter(|| {
            let parsed = parse_token(black_box(&valid)).expect("parses");
            bool::from(parsed.validator_hash.ct_eq(black_box(&stored_hash)))
        })
    });
    group.bench_function("parse_verify/wrong_validator", |b| {
        b.iter(|| {
            let parsed = parse_token(black_box(&wrong_validator)).expect("parses");
            bool::from(parsed.validator_hash.ct_eq(black_box(&stored_hash)))
        })
    });
    group.bench_function("parse/malformed_length", |b| {
        b.iter(|| parse_token(black_box("not-a-token")))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// auth record through the session

/// A session store holding only the last saved record: the round trip without a growing map.
#[derive(Clone, Debug, Default)]
struct LastRecordStore(Arc<Mutex<Option<Record>>>);

#[async_trait]
impl SessionStore for LastRecordStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        record.id = Id::default();
        self.save(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        *self.0.lock().unwrap() = Some(record.clone());
        Ok(())
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.0.lock().unwrap().clone().filter(|r| r.id == *id))
    }
    async fn delete(&self, _id: &Id) -> session_store::Result<()> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

fn bench_auth_record(c: &mut Criterion) {
    let rt = runtime();
    let user = Users::new().alice();
    let store = LastRecordStore::default();
    let login = TestLogin::new();

    // Size of the record as a JSON session value (DESIGN.md: target <= 128 bytes).
    rt.block_on(login.cookie(&store, &user)).expect("cookie");
    let record = store.0.lock().unwrap().clone().expect("saved");
    let json = serde_json::to_vec(&record.data["_auth"]).expect("json");
    eprintln!(
        "auth record as JSON: {} bytes: {}",
        json.len(),
        String::from_utf8_lossy(&json)
    );

    let mut group = c.benchmark_group("auth_record");
    group.bench_function("encode_insert_save", |b| {
        b.to_async(&rt)
            .iter(|| async { login.cookie(&store, black_box(&user)).await.unwrap() })
    });
    // Read back from a store of its own (the encode benchmark keeps replacing `store`'s).
    let id = record.id;
    let shared = Arc::new(LastRecordStore(Arc::new(Mutex::new(Some(record)))));
    group.bench_function("load_get_value", |b| {
        b.to_async(&rt).iter(|| async {
            let session = Session::new(Some(id), shared.clone(), None);
            session.get_value("_auth").await.unwrap().expect("record")
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// one request through the layers

async fn protected(LoginRequired(user): LoginRequired<User>) -> String {
    format!("Hello, {}", user.name)
}

async fn public() -> &'static str {
    "public"
}

async fn login_remembered(mut auth: AuthSession<Users>) -> Result<&'static str, StatusCode> {
    let user = auth.loader().alice();
    auth.login_user_with(&user, LoginOptions::new().remember(true))
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("logged in")
}

/// The floor: tower-sessions alone, the user id read from the session and looked up.
async fn protected_floor(
    axum::extract::State(users): axum::extract::State<Users>,
    session: Session,
) -> Result<String, StatusCode> {
    let id: Option<u32> = session
        .get("uid")
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let user = id
        .and_then(|id| users.0.get(&id))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    Ok(format!("Hello, {}", user.name))
}

fn get_with_cookie(path: &str, cookie: &str) -> Request<Body> {
    let mut builder = Request::get(path).header(header::ACCEPT, "application/json");
    if !cookie.is_empty() {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> axum::response::Response {
    router.clone().oneshot(request).await.unwrap()
}

fn bench_resolve(c: &mut Criterion) {
    let rt = runtime();
    let users = Users::new();

    // login-manager: LoginRequired<User> on /protected, remember-me on.
    let lm_store = MemoryStore::default();
    let remember_store = MemoryRememberStore::new().max_tokens_per_user(usize::MAX);
    let manager = LoginManager::new(users.clone())
        .remember(Remember::new(remember_store.clone()).secure(false));
    let lm = Router::new()
        .route("/protected", get(protected))
        .route("/public", get(public))
        .route("/login", post(login_remembered))
        // One `.layer` call for both, as the guide recommends (and as lm-server does).
        .layer((
            SessionManagerLayer::new(lm_store.clone()).with_secure(false),
            manager.into_layer(),
        ));
    let lm_cookie = rt
        .block_on(TestLogin::new().cookie(&lm_store, &users.alice()))
        .unwrap();
    let lm_cookie = lm_cookie.to_str().unwrap().to_owned();

    // The same app with a login index (its cookie from a real login, so that the session has
    // an entry), for the cost of the index on the hot path.
    let ix_store = MemoryStore::default();
    let ix_remember = MemoryRememberStore::new().max_tokens_per_user(usize::MAX);
    let ix_manager = LoginManager::new(users.clone())
        .remember(Remember::new(ix_remember.clone()).secure(false))
        .login_index(
            // The default bound of 50: every restore below is a new browser of alice, so each
            // one past the 50th also ends the least recently used login (as in production).
            LoginIndex::new(MemoryLoginStore::new(), ix_store.clone()),
        );
    let ix = Router::new()
        .route("/protected", get(protected))
        .route("/login", post(login_remembered))
        .layer((
            SessionManagerLayer::new(ix_store.clone()).with_secure(false),
            ix_manager.into_layer(),
        ));
    let (ix_cookie, ix_template) = rt.block_on(async {
        let response = send(&ix, Request::post("/login").body(Body::empty()).unwrap()).await;
        let cookie = |name: &str| {
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.split(';').next())
                .expect("cookie")
                .to_owned()
        };
        let selector = parse_token(&cookie("remember_token"))
            .expect("token")
            .selector;
        let template = ix_remember.find(&selector).await.unwrap().expect("stored");
        (format!("id={}", cookie("id")), template)
    });

    // The floor, and /public with the session layer only.
    let floor_store = MemoryStore::default();
    let floor = Router::new()
        .route("/protected", get(protected_floor))
        .route("/public", get(public))
        .with_state(users.clone())
        .layer(SessionManagerLayer::new(floor_store.clone()).with_secure(false));
    let floor_cookie = rt.block_on(async {
        let session = Session::new(None, Arc::new(floor_store.clone()), None);
        session.insert("uid", 1u32).await.unwrap();
        session.save().await.unwrap();
        format!("id={}", session.id().unwrap())
    });

    // A remember-me token to copy: issued by a real login, then read back from the store.
    let template = rt.block_on(async {
        let response = send(&lm, Request::post("/login").body(Body::empty()).unwrap()).await;
        let value = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("remember_token="))
            .and_then(|v| v.split(';').next())
            .expect("remember cookie")
            .to_owned();
        let selector = parse_token(&value).expect("token").selector;
        remember_store
            .find(&selector)
            .await
            .unwrap()
            .expect("stored")
    });
    let mint_tokens = |n: u64| {
        let (tokens, cookies): (Vec<_>, Vec<String>) = (0..n)
            .map(|_| {
                let (token, value) = remember_token_like(&template);
                (token, format!("remember_token={value}"))
            })
            .unzip();
        let store = remember_store.clone();
        async move {
            for token in tokens {
                store.create(token).await.unwrap();
            }
            cookies
        }
    };

    let mint_indexed_tokens = |n: u64| {
        let (tokens, cookies): (Vec<_>, Vec<String>) = (0..n)
            .map(|_| {
                let (token, value) = remember_token_like(&ix_template);
                (token, format!("remember_token={value}"))
            })
            .unzip();
        let store = ix_remember.clone();
        async move {
            for token in tokens {
                store.create(token).await.unwrap();
            }
            cookies
        }
    };

    // Warm up: the first request adopts the session-protection id (one write).
    rt.block_on(async {
        for _ in 0..2 {
            let r = send(&ix, get_with_cookie("/protected", &ix_cookie)).await;
            assert_eq!(r.status(), StatusCode::OK, "indexed");
        }
        for _ in 0..2 {
            let r = send(&lm, get_with_cookie("/protected", &lm_cookie)).await;
            assert_eq!(r.status(), StatusCode::OK);
            let r = send(&floor, get_with_cookie("/protected", &floor_cookie)).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let cookies = mint_tokens(1).await;
        let r = send(&lm, get_with_cookie("/protected", &cookies[0])).await;
        assert_eq!(r.status(), StatusCode::OK, "remember restore");
    });

    let mut group = c.benchmark_group("resolve");
    group.bench_function("protected/login_manager", |b| {
        b.to_async(&rt).iter(|| async {
            let r = send(&lm, get_with_cookie("/protected", &lm_cookie)).await;
            debug_assert_eq!(r.status(), StatusCode::OK);
            r
        })
    });
    group.bench_function("protected/login_manager_indexed", |b| {
        b.to_async(&rt).iter(|| async {
            let r = send(&ix, get_with_cookie("/protected", &ix_cookie)).await;
            debug_assert_eq!(r.status(), StatusCode::OK);
            r
        })
    });
    group.bench_function("protected/floor", |b| {
        b.to_async(&rt).iter(|| async {
            let r = send(&floor, get_with_cookie("/protected", &floor_cookie)).await;
            debug_assert_eq!(r.status(), StatusCode::OK);
            r
        })
    });
    group.bench_function("public/login_manager", |b| {
        b.to_async(&rt)
            .iter(|| async { send(&lm, get_with_cookie("/public", &lm_cookie)).await })
    });
    group.bench_function("public/sessions_only", |b| {
        b.to_async(&rt)
            .iter(|| async { send(&floor, get_with_cookie("/public", &floor_cookie)).await })
    });
    // Each restore needs a token never used before: they are minted before the timed loop.
    group.bench_function("protected/remember_restore", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let cookies = mint_tokens(iters);
            let lm = lm.clone();
            async move {
                let cookies = cookies.await;
                let start = std::time::Instant::now();
                for cookie in &cookies {
                    let r = send(&lm, get_with_cookie("/protected", cookie)).await;
                    debug_assert_eq!(r.status(), StatusCode::OK);
                    black_box(r);
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("protected/remember_restore_indexed", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let cookies = mint_indexed_tokens(iters);
            let ix = ix.clone();
            async move {
                let cookies = cookies.await;
                let start = std::time::Instant::now();
                for cookie in &cookies {
                    let r = send(&ix, get_with_cookie("/protected", cookie)).await;
                    debug_assert_eq!(r.status(), StatusCode::OK);
                    black_box(r);
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_safe_next,
    bench_remember_token,
    bench_auth_record,
    bench_resolve
);
criterion_main!(benches);
