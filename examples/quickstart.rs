//! The smallest complete app: `cargo run --example quickstart`, open http://127.0.0.1:3001 and
//! sign in as `alice` / `correct horse battery staple`.
type Result<T, E = login_manager::Error> = std::result::Result<T, E>;
use std::{collections::HashMap, convert::Infallible, sync::Arc};

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{http::StatusCode, routing::get, routing::post, Form, Router};
use login_manager::{AuthSession, AuthUser, LoginManager};
use login_manager::{LoginRequired, PasswordHasher, UserLoader};
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone)]
struct User {
    name: String,
    password_hash: String,
}

impl AuthUser for User {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    // A new password hash logs out every other session of the user.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

#[derive(Clone)]
struct Users(Arc<HashMap<String, User>>);

impl UserLoader for Users {
    type User = User;
    type Error = Infallible;
    async fn load_user(&self, name: &String) -> Result<Option<User>, Infallible> {
        Ok(self.0.get(name).cloned())
    }
}

const FORM: &str = r#"<form method="post"><input name="username"><input name="password"
type="password"><button>Sign in</button></form>"#;

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(mut auth: AuthSession<Users>, Form(form): Form<Credentials>) -> Result<Response> {
    let user = auth.loader().0.get(&form.username).cloned();
    // Verifies against a dummy hash when there is no such user: same time, same answer.
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let hasher = auth.password_hasher(); // the manager's: argon2id, bounded concurrency
    match user {
        Some(user) if hasher.verify_user(&form.password, stored).await?.valid => {
            auth.login_user(&user).await?;
            Ok(Redirect::to(&auth.next_or("/")).into_response())
        }
        _ => Ok((StatusCode::UNAUTHORIZED, Html(FORM)).into_response()),
    }
}

async fn logout(mut auth: AuthSession<Users>) -> Result<Redirect> {
    auth.logout_user().await?;
    Ok(Redirect::to("/"))
}

async fn home(LoginRequired(user): LoginRequired<User>) -> Html<String> {
    let logout = r#"<form method="post" action="/logout"><button>Sign out</button></form>"#;
    Html(format!("Hello, {}! {logout}", user.name))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hasher = PasswordHasher::new();
    let alice = User {
        name: "alice".into(),
        password_hash: hasher.hash("correct horse battery staple").await?,
    };
    let users = Users(Arc::new(HashMap::from([("alice".into(), alice)])));
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(|| async { Html(FORM) }).post(login))
        .route("/logout", post(logout))
        // Inside the session layer; the manager verifies passwords with the same hasher.
        .layer(
            LoginManager::new(users)
                .password_hasher(hasher)
                .into_layer(),
        )
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false)); // plain HTTP

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("Listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
