//! Server (b): axum-login 0.18. `login_required!` on `/protected` (the route layer), the
//! handler reading the user from `AuthSession`; `/public` under the auth layer;
//! `POST /bench/login` logs alice in without a password.

use axum::{
    http::StatusCode,
    routing::{get, post},
    Router,
};
use axum_login::{login_required, AuthManagerLayerBuilder, AuthSession, AuthnBackend, UserId};
use login_manager_load::{greeting, public, serve, User, Users};
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone)]
struct Backend(Users);

#[derive(Debug)]
struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no error")
    }
}

impl std::error::Error for NoError {}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = ();
    type Error = NoError;

    async fn authenticate(&self, _: ()) -> Result<Option<User>, NoError> {
        Ok(None)
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, NoError> {
        Ok(self.0.load(*id).await)
    }
}

async fn protected(auth: AuthSession<Backend>) -> Result<String, StatusCode> {
    let user = auth.user.ok_or(StatusCode::UNAUTHORIZED)?;
    Ok(greeting(&user))
}

async fn bench_login(mut auth: AuthSession<Backend>) -> Result<&'static str, StatusCode> {
    let user = auth.backend.0.alice();
    auth.login(&user)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("logged in")
}

#[tokio::main]
async fn main() {
    let users = Users::new().await;
    let session_layer = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let auth_layer = AuthManagerLayerBuilder::new(Backend(users), session_layer).build();
    let app = Router::new()
        .route("/protected", get(protected))
        .route_layer(login_required!(Backend, login_url = "/login"))
        .route("/public", get(public))
        .route("/bench/login", post(bench_login))
        .layer(auth_layer);
    serve(app).await;
}
