//! `AuthSession::login_with_password`: throttle, constant work, rehash, then `login_user`.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Path},
    http::{Request, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use http_body_util::BodyExt;
use login_manager::{
    AuthSession, AuthUser, LoginManager, LoginOptions, LoginOutcome, LoginThrottle,
    MemoryThrottleStore, PasswordHasher, PasswordUserLoader, UserLoader,
};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone, Debug)]
struct Account {
    name: String,
    hash: String,
    active: bool,
}

impl AuthUser for Account {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
    fn is_active(&self) -> bool {
        self.active
    }
}

#[derive(Clone, Default)]
struct Accounts(Arc<Mutex<HashMap<String, Account>>>);

impl UserLoader for Accounts {
    type User = Account;
    type Error = Infallible;
    async fn load_user(&self, id: &String) -> Result<Option<Account>, Infallible> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
}

impl PasswordUserLoader for Accounts {
    async fn load_user_by_username(&self, name: &str) -> Result<Option<Account>, Infallible> {
        self.load_user(&name.to_owned()).await
    }
    fn password_hash<'a>(&self, user: &'a Account) -> Option<&'a str> {
        Some(&user.hash)
    }
    async fn save_password_hash(&self, user: &Account, new: &str) -> Result<(), Infallible> {
        if let Some(stored) = self.0.lock().unwrap().get_mut(&user.name) {
            stored.hash = new.to_owned();
        }
        Ok(())
    }
}

/// `POST /login/{name}` with the password as the body; answers the outcome's name.
async fn login(
    mut auth: AuthSession<Accounts>,
    Path(name): Path<String>,
    password: String,
) -> Response {
    match auth
        .login_with_password(&name, &password, LoginOptions::new())
        .await
    {
        Ok(LoginOutcome::LoggedIn) => "logged in".into_response(),
        Ok(LoginOutcome::InvalidCredentials) => {
            (StatusCode::UNAUTHORIZED, "invalid").into_response()
        }
        Ok(LoginOutcome::Throttled { retry_after }) => {
            login_manager::Error::Throttled { retry_after }.into_response()
        }
        Ok(LoginOutcome::SecondFactorRequired) => "second factor".into_response(),
        Err(err) => err.into_response(),
    }
}

/// `POST /reauth` with the password as the body.
async fn reauth(mut auth: AuthSession<Accounts>, password: String) -> Response {
    match auth.reauthenticate_with_password(&password).await {
        Ok(LoginOutcome::LoggedIn) => "confirmed".into_response(),
        Ok(LoginOutcome::InvalidCredentials) => {
            (StatusCode::UNAUTHORIZED, "invalid").into_response()
        }
        Ok(LoginOutcome::Throttled { retry_after }) => {
            login_manager::Error::Throttled { retry_after }.into_response()
        }
        Ok(LoginOutcome::SecondFactorRequired) => "second factor".into_response(),
        Err(err) => err.into_response(),
    }
}

struct Harness {
    app: Router,
    accounts: Accounts,
    hasher: PasswordHasher,
}

async fn harness() -> Harness {
    // Small argon2 parameters keep the tests fast; the flow is what is tested here.
    let hasher = PasswordHasher::new().with_params(64, 1, 1).unwrap();
    let accounts = Accounts::default();
    for (name, active) in [("alice", true), ("disabled", false)] {
        let hash = hasher.hash("right-password").await.unwrap();
        accounts.0.lock().unwrap().insert(
            name.to_owned(),
            Account {
                name: name.to_owned(),
                hash,
                active,
            },
        );
    }
    let throttle = LoginThrottle::new(MemoryThrottleStore::new()).max_failures(3);
    let app = Router::new()
        .route("/login/{name}", post(login))
        .route("/reauth", post(reauth))
        .route(
            "/me",
            axum::routing::get(|auth: AuthSession<Accounts>| async move {
                auth.user()
                    .map_or("anonymous".to_owned(), |u| u.name.clone())
            }),
        )
        .layer(
            LoginManager::new(accounts.clone())
                .password_hasher(hasher.clone())
                .login_throttle(throttle)
                .into_layer(),
        )
        .layer(SessionManagerLayer::new(MemoryStore::default()));
    Harness {
        app,
        accounts,
        hasher,
    }
}

impl Harness {
    async fn attempt(&self, name: &str, password: &str) -> (StatusCode, String) {
        let (status, body, _) = self.attempt_with_cookie(name, password).await;
        (status, body)
    }

    /// Also returns the session cookie set by the answer.
    async fn attempt_with_cookie(
        &self,
        name: &str,
        password: &str,
    ) -> (StatusCode, String, String) {
        let mut request = Request::post(format!("/login/{name}"))
            .body(Body::from(password.to_owned()))
            .unwrap();
        let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        // The session cookie (tower-sessions' default name `id`); a login also sets `device`.
        let cookie = response
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.starts_with("id="))
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), cookie)
    }

    async fn reauth(&self, cookie: &str, password: &str) -> StatusCode {
        let request = Request::post("/reauth")
            .header(http::header::COOKIE, cookie)
            .body(Body::from(password.to_owned()))
            .unwrap();
        self.app.clone().oneshot(request).await.unwrap().status()
    }

    async fn me(&self, cookie: &str) -> String {
        let request = Request::get("/me")
            .header(http::header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }
}

#[tokio::test]
async fn right_password_logs_in_wrong_one_does_not() {
    let h = harness().await;
    assert_eq!(
        h.attempt("alice", "wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.attempt("alice", "right-password").await,
        (StatusCode::OK, "logged in".into())
    );
}

#[tokio::test]
async fn unknown_user_wrong_password_and_disabled_account_look_the_same() {
    let h = harness().await;
    let before = h.hasher.hash_count();
    let answers = [
        h.attempt("nobody", "right-password").await,
        h.attempt("alice", "wrong").await,
        h.attempt("disabled", "right-password").await,
    ];
    assert!(answers
        .iter()
        .all(|a| *a == (StatusCode::UNAUTHORIZED, "invalid".into())));
    assert_eq!(
        h.hasher.hash_count() - before,
        3,
        "one hash computation each"
    );
}

#[tokio::test]
async fn too_long_password_is_refused_without_hashing() {
    let h = harness().await;
    let before = h.hasher.hash_count();
    let long = "x".repeat(1025);
    assert_eq!(h.attempt("alice", &long).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.hasher.hash_count(), before);
}

#[tokio::test]
async fn throttled_account_refuses_even_the_right_password() {
    let h = harness().await;
    for _ in 0..3 {
        assert_eq!(
            h.attempt("alice", "wrong").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let before = h.hasher.hash_count();
    let (status, _) = h.attempt("alice", "right-password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        h.hasher.hash_count(),
        before,
        "a locked account costs no hashing"
    );
    // Unknown usernames are throttled exactly the same way.
    for _ in 0..3 {
        h.attempt("ghost", "x").await;
    }
    assert_eq!(
        h.attempt("ghost", "x").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn outdated_hash_is_upgraded_at_login_and_the_session_survives() {
    let h = harness().await;
    let old = PasswordHasher::new().with_params(32, 1, 1).unwrap();
    let outdated = old.hash("right-password").await.unwrap();
    h.accounts.0.lock().unwrap().get_mut("alice").unwrap().hash = outdated.clone();
    let (status, _, cookie) = h.attempt_with_cookie("alice", "right-password").await;
    assert_eq!(status, StatusCode::OK);
    // The auth hash is the password hash: the login must carry the upgraded one.
    assert_eq!(h.me(&cookie).await, "alice");
    let upgraded = h.accounts.0.lock().unwrap()["alice"].hash.clone();
    assert_ne!(upgraded, outdated);
    assert!(upgraded.contains("m=64,t=1,p=1"), "{upgraded}");
}

#[tokio::test]
async fn reauthentication_checks_the_password_and_is_throttled() {
    let h = harness().await;
    let (_, _, cookie) = h.attempt_with_cookie("alice", "right-password").await;
    for _ in 0..3 {
        assert_eq!(h.reauth(&cookie, "guess").await, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused now.
    assert_eq!(
        h.reauth(&cookie, "right-password").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Anonymous requests are not authenticated at all.
    assert_eq!(
        h.reauth("", "right-password").await,
        StatusCode::UNAUTHORIZED
    );
}
