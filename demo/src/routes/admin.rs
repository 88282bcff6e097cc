//! `/admin`: behind `permission_required("admin")` (see `app::build`).

use axum::{
    extract::{Path, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::StatusCode;
use login_manager::{LoginRequired, PasswordUserLoader};
use minijinja::context;
use serde::Serialize;

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    web::{error_page, flash, format_unix, page, AppError, Flash},
};

#[derive(Serialize)]
struct UserRow {
    username: String,
    /// `/admin/users/<username, percent-encoded>/logout`.
    logout_path: String,
    created: String,
    disabled: bool,
    permissions: String,
}

/// `GET /admin`: every account, each with a "log out everywhere" button. The route layer has
/// already checked the permission; the extractor only hands over the user, whom it finds
/// cached for this request.
pub async fn index(
    State(app): State<AppState>,
    LoginRequired(_admin): LoginRequired<User>,
    auth: Auth,
) -> Result<Html<String>, AppError> {
    let users: Vec<UserRow> = db::all_users(app.db())
        .await?
        .into_iter()
        .map(|(user, permissions)| UserRow {
            logout_path: format!("/admin/users/{}/logout", path_segment(&user.username)),
            username: user.username,
            created: format_unix(user.created_at),
            disabled: user.disabled,
            permissions,
        })
        .collect();
    page(&auth, "admin.html", context! { users }).await
}

/// `POST /admin/users/{username}/logout` (permission `admin`): ends every session and
/// remember-me token of that user, on every instance: their next request is anonymous.
/// Unknown user: `404`. Their password and account are unchanged: they can log in again.
pub async fn logout_user(
    State(app): State<AppState>,
    LoginRequired(admin): LoginRequired<User>,
    mut auth: Auth,
    Path(username): Path<String>,
) -> Result<Response, AppError> {
    let Some(user) = app.users.load_user_by_username(&username).await? else {
        return Ok(error_page(StatusCode::NOT_FOUND, "There is no such user."));
    };
    let ended = app.manager.end_all_logins(&user.id).await?;
    if user.id == admin.id {
        // This browser's session was among them. Ending it deleted it from the store, but this
        // request still holds it: log out here too, or saving the flash below would write
        // the session back, logged in.
        auth.logout_user().await?;
    }
    let noun = if ended == 1 { "login" } else { "logins" };
    let message = format!(
        "{} is signed out everywhere ({ended} {noun} ended).",
        user.username
    );
    flash(auth.session()?, Flash::success(message)).await?;
    Ok(Redirect::to("/admin").into_response())
}

/// `text` as one path segment: everything but RFC 3986's unreserved characters
/// percent-encoded (a username may hold `/`, `?`, spaces, any Unicode).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("alice"), "alice");
        assert_eq!(path_segment("mad hatter/1?x"), "mad%20hatter%2F1%3Fx");
        assert_eq!(path_segment("Zoë"), "Zo%C3%AB");
        assert_eq!(path_segment("a.b-c_d~"), "a.b-c_d~");
    }
}
