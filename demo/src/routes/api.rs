//! The JSON API: `/api/me` (session or bearer token) and `/api/tokens`.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use http::{header, StatusCode};
use login_manager::LoginRequired;
use serde_json::json;

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    web::AppError,
};

/// `GET /api/me`: who is calling, by session cookie or `Authorization: Bearer`. Not a
/// guard: an API answers anonymous callers with 401 and a `WWW-Authenticate` challenge
/// (RFC 6750), never with a redirect to a login page.
pub async fn me(auth: Auth) -> Response {
    match auth.user() {
        Some(user) => Json(json!({ "username": user.username })).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "unauthorized" })),
        )
            .into_response(),
    }
}

/// `POST /api/tokens` (login required): a new API token, shown this once.
pub async fn create_token(
    State(app): State<AppState>,
    LoginRequired(user): LoginRequired<User>,
) -> Result<Response, AppError> {
    let token = db::create_api_token(app.db(), user.id).await?;
    tracing::info!(user_id = user.id, "API token created");
    Ok((StatusCode::CREATED, Json(json!({ "token": token }))).into_response())
}
