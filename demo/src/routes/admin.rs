//! `/admin`: behind `permission_required("admin")` (see `app::build`).

use axum::{extract::State, response::Html};
use login_manager::LoginRequired;
use minijinja::context;
use serde::Serialize;

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    web::{format_unix, page, AppError},
};

#[derive(Serialize)]
struct UserRow {
    username: String,
    created: String,
    disabled: bool,
    permissions: String,
}

/// `GET /admin`: every account. The route layer has already checked the permission; the
/// extractor only hands over the user, whom it finds cached for this request.
pub async fn index(
    State(app): State<AppState>,
    LoginRequired(_admin): LoginRequired<User>,
    auth: Auth,
) -> Result<Html<String>, AppError> {
    let users: Vec<UserRow> = db::all_users(app.db())
        .await?
        .into_iter()
        .map(|(user, permissions)| UserRow {
            username: user.username,
            created: format_unix(user.created_at),
            disabled: user.disabled,
            permissions,
        })
        .collect();
    page(&auth, "admin.html", context! { users }).await
}
