//! The signed-in user's pages: dashboard, settings (fresh login required), devices (every
//! live login of the user, each of which can be ended).

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

/// One live login of the user, as the devices page shows it. The raw `User-Agent` is not
/// shown: the library parses it into a browser and a system.
#[derive(Serialize)]
struct DeviceRow {
    id: String,
    created: String,
    last_used: String,
    browser: String,
    system: String,
    /// Ticked "remember me": it may come back after its session ends.
    remembered: bool,
    /// Its session was restored from the remember-me cookie.
    restored: bool,
    current: bool,
}

/// `GET /devices` (login required): every live login of the user — signed-in sessions and
/// remembered browsers, on any instance — this one first.
pub async fn devices(
    LoginRequired(_user): LoginRequired<User>,
    auth: Auth,
) -> Result<Html<String>, AppError> {
    let devices: Vec<DeviceRow> = auth
        .logins()
        .await?
        .into_iter()
        .map(|login| DeviceRow {
            id: login.id,
            created: format_time(login.created_at),
            last_used: format_time(login.last_used_at),
            browser: login.browser,
            system: login.system,
            remembered: login.remember_me,
            restored: login.restored,
            current: login.current,
        })
        .collect();
    let others = devices.iter().filter(|d| !d.current).count();
    page(&auth, "devices.html", context! { devices, others }).await
}

/// `POST /devices/{id}/revoke` (login required): ends that login at once — its session and
/// its remember-me token are deleted, so its next request, on any instance, is anonymous.
///
/// An id that names no live login of this user (already ended in another tab, expired,
/// another user's, made up) changes nothing and gets the same `303` with an info flash: a
/// stale page is normal, and the answer does not tell whether an id exists for someone else.
/// The page offers no form for the current login (the header's "Log out" is that); posting
/// its id anyway logs this browser out, like `POST /logout`.
pub async fn revoke_device(
    LoginRequired(_user): LoginRequired<User>,
    mut auth: Auth,
    Path(id): Path<String>,
) -> Result<Redirect, AppError> {
    let ended = auth.end_login(&id).await?;
    if !auth.is_authenticated() {
        flash(auth.session()?, Flash::success("Logged out.")).await?;
        return Ok(Redirect::to("/"));
    }
    let message = if ended {
        Flash::success("That device is signed out.")
    } else {
        Flash::info("That device was already signed out.")
    };
    flash(auth.session()?, message).await?;
    Ok(Redirect::to("/devices"))
}

/// `POST /devices/revoke-others` (login required): "log out everywhere else" — every other
/// session and remembered browser of the user ends; this one keeps working, with its session
/// id and its remember-me cookie.
pub async fn revoke_other_devices(
    LoginRequired(_user): LoginRequired<User>,
    auth: Auth,
) -> Result<Redirect, AppError> {
    let ended = auth.end_other_logins().await?;
    let message = match ended {
        0 => "No other device was signed in.".to_owned(),
        1 => "1 other device signed out.".to_owned(),
        n => format!("{n} other devices signed out."),
    };
    flash(auth.session()?, Flash::success(message)).await?;
    Ok(Redirect::to("/devices"))
}
