//! Server (c), the floor: tower-sessions alone. `/protected` reads the user id from the
//! session and looks it up in the same map (401 if missing); `/public` has the session layer
//! only (the "without login-manager" side of the `/public` comparison); `POST /bench/login`
//! puts alice's id into the session.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Router,
};
use login_manager_load::{greeting, public, serve, Users};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

async fn protected(State(users): State<Users>, session: Session) -> Result<String, StatusCode> {
    let id: Option<u32> = session
        .get("uid")
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let Some(id) = id else {
        return Err(StatusCode::UNAUTHORIZED);
    };
    let user = users.load(id).await.ok_or(StatusCode::UNAUTHORIZED)?;
    Ok(greeting(&user))
}

async fn bench_login(session: Session) -> Result<&'static str, StatusCode> {
    session
        .insert("uid", 1u32)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok("logged in")
}

#[tokio::main]
async fn main() {
    let users = Users::new().await;
    let app = Router::new()
        .route("/protected", get(protected))
        .route("/public", get(public))
        .route("/bench/login", post(bench_login))
        .with_state(users)
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false));
    serve(app).await;
}
