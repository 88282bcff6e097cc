//! Server (a): login-manager. `LoginRequired<User>` on `/protected`, `/public` under the
//! layer, remember-me on (memory store), `POST /login` with argon2id (the login storm) and
//! `POST /bench/login` (logs alice in without a password, for the throughput runs).
//!
//! `lm-server [--remember-tokens N FILE]`: before serving, issue N remember-me tokens for
//! alice and write their cookie values to FILE, one a line (the remember-restore run uses
//! each exactly once).

use std::io::Write;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Form, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use login_manager::{
    async_trait,
    remember::{parse_token, MemoryRememberStore, RememberStore, RememberToken},
    AuthSession, LoginManager, LoginOptions, LoginRequired, PasswordHasher, Remember, UserLoader,
};
use login_manager_load::{greeting, public, serve, LoginForm, User, Users, USER_AGENT};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone)]
struct Loader(Users);

#[async_trait]
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
) -> login_manager::Result<&'static str> {
    let user = auth.loader().0.alice();
    let remember = headers.contains_key("x-remember");
    auth.login_user(&user, LoginOptions::new().remember(remember))
        .await?;
    Ok("logged in")
}

async fn login(
    mut auth: AuthSession<Loader>,
    Extension(hasher): Extension<PasswordHasher>,
    Form(form): Form<LoginForm>,
) -> login_manager::Result<Response> {
    let user = auth.loader().0.by_name(&form.username);
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let valid = hasher.verify_user(&form.password, stored).await?.valid;
    Ok(match user {
        Some(user) if valid => {
            auth.login_user(&user, LoginOptions::new()).await?;
            "logged in".into_response()
        }
        _ => (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response(),
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokens = match args.as_slice() {
        [] => None,
        [flag, n, file] if flag == "--remember-tokens" => {
            Some((n.parse::<usize>().expect("token count"), file.clone()))
        }
        _ => panic!("usage: lm-server [--remember-tokens N FILE]"),
    };

    let users = Users::new().await;
    let remember_store = MemoryRememberStore::new().max_tokens_per_user(usize::MAX);
    let manager = LoginManager::new(Loader(users))
        .remember(Remember::new(remember_store.clone()).secure(false));
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
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false));

    if let Some((count, file)) = tokens {
        issue_tokens(&app, &remember_store, count, &file).await;
    }
    serve(app).await;
}

/// Issues one token through a real remember-me login, then `count` copies of it with fresh
/// selectors and validators, straight into the store.
async fn issue_tokens(app: &Router, store: &MemoryRememberStore, count: usize, file: &str) {
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

    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("token file"));
    let mut rng = rand::thread_rng();
    for _ in 0..count {
        let mut selector = [0u8; 16];
        let mut validator = [0u8; 32];
        rng.fill_bytes(&mut selector);
        rng.fill_bytes(&mut validator);
        let selector = URL_SAFE_NO_PAD.encode(selector);
        writeln!(out, "{selector}.{}", URL_SAFE_NO_PAD.encode(validator)).unwrap();
        let token = RememberToken {
            selector,
            validator_hash: Sha256::digest(validator).into(),
            ..template.clone()
        };
        store.create(token).await.unwrap();
    }
    out.flush().unwrap();
    eprintln!("issued {count} remember tokens into {file}");
}
