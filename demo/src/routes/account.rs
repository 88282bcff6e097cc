//! The signed-in user's pages: dashboard, settings (fresh login required), devices.

use axum::{
    extract::{Path, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::StatusCode;
use login_manager::{FreshLoginRequired, LoginRequired};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    routes::auth::reauthenticate,
    web::{flash, format_time, format_unix, page, page_with_status, AppError, Flash, HtmlForm},
};

/// `GET /dashboard` (login required).
pub async fn dashboard(
    LoginRequired(user): LoginRequired<User>,
    auth: Auth,
) -> Result<Html<String>, AppError> {
    let ctx = context! {
        username => &user.username,
        member_since => format_unix(user.created_at),
        fresh => auth.is_fresh(),
        remembered => auth.is_remembered(),
    };
    page(&auth, "dashboard.html", ctx).await
}

async fn render_settings(
    auth: &Auth,
    status: StatusCode,
    user: &User,
    error: Option<String>,
) -> Result<Response, AppError> {
    let ctx = context! {
        username => &user.username,
        error,
        min_password => db::MIN_PASSWORD_BYTES,
    };
    page_with_status(auth, status, "settings.html", ctx).await
}

/// `GET /settings` (fresh login required: a remembered session re-enters the password).
pub async fn settings(
    FreshLoginRequired(user): FreshLoginRequired<User>,
    auth: Auth,
) -> Result<Response, AppError> {
    render_settings(&auth, StatusCode::OK, &user, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /settings/password` (fresh login required). After the change this session stays
/// signed in under a new id; the user's other sessions and remember-me tokens stop working,
/// since they were minted under the old password hash (`User::session_auth_hash`).
pub async fn change_password(
    State(app): State<AppState>,
    FreshLoginRequired(user): FreshLoginRequired<User>,
    mut auth: Auth,
    HtmlForm(form): HtmlForm<PasswordForm>,
) -> Result<Response, AppError> {
    if let Err(refusal) = reauthenticate(&mut auth, &form.current_password).await? {
        let message = format!("Current password: {}", refusal.message);
        let response = render_settings(&auth, refusal.status, &user, Some(message)).await?;
        return Ok(refusal.apply(response));
    }
    if let Err(problem) = db::validate_password(&form.new_password) {
        let message = format!("New password: {problem}");
        return render_settings(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            &user,
            Some(message),
        )
        .await;
    }
    let hash = auth.password_hasher().hash(&form.new_password).await?;
    db::set_password_hash(app.db(), user.id, &hash).await?;
    let updated = User {
        password_hash: hash,
        ..user
    };
    auth.update_session_auth_hash(&updated).await?;
    let message = "Password changed. Your other sessions and remembered devices are signed out.";
    flash(auth.session()?, Flash::success(message)).await?;
    Ok(Redirect::to("/settings").into_response())
}

/// A remembered browser, as the devices page shows it.
#[derive(Serialize)]
struct DeviceRow {
    id: String,
    created: String,
    last_used: String,
    expires: String,
    user_agent: String,
    current: bool,
}

/// `GET /devices` (login required): the user's remember-me logins.
pub async fn devices(
    LoginRequired(_user): LoginRequired<User>,
    auth: Auth,
) -> Result<Html<String>, AppError> {
    let devices: Vec<DeviceRow> = auth
        .remember_devices()
        .await?
        .into_iter()
        .map(|d| DeviceRow {
            id: d.id,
            created: format_time(d.created_at),
            last_used: format_time(d.last_used_at),
            expires: format_time(d.expires_at),
            user_agent: d.user_agent,
            current: d.current,
        })
        .collect();
    page(&auth, "devices.html", context! { devices }).await
}

/// `POST /devices/{id}/revoke` (login required): that browser is no longer remembered.
pub async fn revoke_device(
    LoginRequired(_user): LoginRequired<User>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Redirect, AppError> {
    let message = if auth.revoke_device(&id).await? {
        Flash::success("That device is no longer remembered.")
    } else {
        // Already gone (expired, revoked in another tab) or not this user's.
        Flash::info("That device was not remembered anymore.")
    };
    flash(auth.session()?, message).await?;
    Ok(Redirect::to("/devices"))
}

/// `POST /devices/revoke-all` (login required): forget every remembered browser.
pub async fn revoke_all_devices(
    LoginRequired(_user): LoginRequired<User>,
    auth: Auth,
) -> Result<Redirect, AppError> {
    let revoked = auth.revoke_all_devices().await?;
    let noun = if revoked == 1 { "device" } else { "devices" };
    let message = format!("{revoked} remembered {noun} signed out.");
    flash(auth.session()?, Flash::success(message)).await?;
    Ok(Redirect::to("/devices"))
}
