//! Logging in and out, signing up, and re-entering the password (`/reauth`).

use std::time::Duration;

use axum::{
    extract::{RawQuery, State},
    response::{IntoResponse, Redirect, Response},
};
use http::StatusCode;
use login_manager::{login_url, safe_next, AuthUser, LoginOptions, LoginOutcome};
use minijinja::context;
use serde::Deserialize;

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    web::{self, flash, page_with_status, query_param, AppError, Flash, HtmlForm},
};

/// The one failure message: unknown user, wrong password, disabled account and an oversized
/// password must not be told apart.
const INVALID_CREDENTIALS: &str = "Invalid username or password.";

/// Missing fields are empty rather than a 422, so that a broken form gets the ordinary
/// failure answer (and is counted by the throttle like any other failure).
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    remember: Option<String>,
    next: Option<String>,
}

/// What the login page shows besides the form.
#[derive(Default)]
struct LoginPage<'a> {
    admin: bool,
    next: Option<&'a str>,
    username: &'a str,
    remember: bool,
    error: Option<String>,
}

async fn render_login(
    auth: &Auth,
    status: StatusCode,
    view: LoginPage<'_>,
) -> Result<Response, AppError> {
    let ctx = context! {
        admin => view.admin,
        next => view.next,
        username => view.username,
        remember => view.remember,
        error => view.error,
    };
    page_with_status(auth, status, "login.html", ctx).await
}

/// The login form; `?next=` travels in a hidden field (escaped by the template).
async fn show_login(auth: Auth, query: Option<String>, admin: bool) -> Result<Response, AppError> {
    let next = query_param(query.as_deref(), "next");
    let view = LoginPage {
        admin,
        next: next.as_deref(),
        ..LoginPage::default()
    };
    render_login(&auth, StatusCode::OK, view).await
}

/// `GET /login`.
pub async fn login_form(auth: Auth, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    show_login(auth, query, false).await
}

/// `GET /admin/login`: the admin area's login view (same form, posting to `/login`).
pub async fn admin_login_form(auth: Auth, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    show_login(auth, query, true).await
}

/// `on`, `true` or `1` (the checkbox sends `on`; scripts may send the others).
fn is_checked(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        ["on", "true", "1"]
            .iter()
            .any(|t| v.eq_ignore_ascii_case(t))
    })
}

/// A `next` form field; the hidden field is always sent, so empty means absent.
fn next_field(next: Option<&str>) -> Option<&str> {
    next.filter(|n| !n.is_empty())
}

/// `POST /login`: the library's throttled, enumeration-safe password login.
pub async fn login(
    mut auth: Auth,
    HtmlForm(form): HtmlForm<LoginForm>,
) -> Result<Response, AppError> {
    let remember = is_checked(form.remember.as_deref());
    let options = LoginOptions::new().remember(remember);
    let outcome = auth
        .login_with_password(&form.username, &form.password, options)
        .await?;
    let view = LoginPage {
        next: next_field(form.next.as_deref()),
        username: &form.username,
        remember,
        ..LoginPage::default()
    };
    let refusal = match outcome {
        LoginOutcome::LoggedIn => {
            // The form field first, else `?next=` of the URL the form was posted to.
            let next = next_field(form.next.as_deref())
                .and_then(safe_next)
                .unwrap_or_else(|| auth.next_or("/"));
            return Ok(Redirect::to(&next).into_response());
        }
        LoginOutcome::InvalidCredentials => Refusal::wrong(INVALID_CREDENTIALS),
        LoginOutcome::Throttled { retry_after } => Refusal::throttled(retry_after),
        // TOTP is on for the account (#18): nobody is logged in yet; the second step
        // (`/login/2fa`) gets `next`.
        LoginOutcome::SecondFactorRequired => {
            let next = next_field(form.next.as_deref())
                .and_then(safe_next)
                .unwrap_or_else(|| auth.next_or("/"));
            let target = login_manager::login_url("/login/2fa", Some(&next));
            return Ok(Redirect::to(&target).into_response());
        }
    };
    let view = LoginPage {
        error: Some(refusal.message.clone()),
        ..view
    };
    let response = render_login(&auth, refusal.status, view).await?;
    Ok(refusal.apply(response))
}

/// The second step's form field `code` (a TOTP code or a recovery code) and `next`.
#[derive(Deserialize)]
pub struct SecondStepForm {
    #[serde(default)]
    code: String,
    next: Option<String>,
}

async fn render_second_step(
    auth: &Auth,
    status: StatusCode,
    next: Option<&str>,
    error: Option<String>,
) -> Result<Response, AppError> {
    page_with_status(auth, status, "login_2fa.html", context! { next, error }).await
}

/// `GET /login/2fa`: the code form, for a browser that gave the right password of an account
/// with TOTP on (within the last 5 minutes); anyone else is sent to `/login`, `next` kept.
pub async fn second_step_form(auth: Auth, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    let next = query_param(query.as_deref(), "next");
    if !auth.second_factor_pending().await? {
        return Ok(to_login(next.as_deref()));
    }
    render_second_step(&auth, StatusCode::OK, next.as_deref(), None).await
}

/// `POST /login/2fa`: the library's second step (`complete_second_factor`) with the demo's
/// factor, a TOTP code or an unused recovery code. Success logs in (new session id, the
/// remember-me choice of the first step) and `303`s to `next`; a wrong code is `401`, and
/// counts in the account's throttle like a wrong password (`429` past the limit).
pub async fn second_step(
    State(app): State<AppState>,
    mut auth: Auth,
    HtmlForm(form): HtmlForm<SecondStepForm>,
) -> Result<Response, AppError> {
    let next = next_field(form.next.as_deref());
    if !auth.second_factor_pending().await? {
        return Ok(to_login(next));
    }
    let factor = db::TotpOrRecovery::new(app.db().clone());
    let refusal = match auth.complete_second_factor(&factor, &form.code).await? {
        LoginOutcome::LoggedIn => {
            if let Some(user) = auth.user() {
                tracing::info!(user_id = user.id(), "logged in with a second factor");
            }
            let target = next
                .and_then(safe_next)
                .unwrap_or_else(|| auth.next_or("/"));
            return Ok(Redirect::to(&target).into_response());
        }
        // (`complete_second_factor` never asks for another factor.)
        LoginOutcome::InvalidCredentials | LoginOutcome::SecondFactorRequired => {
            Refusal::wrong(INVALID_CODE)
        }
        LoginOutcome::Throttled { retry_after } => Refusal::throttled(retry_after),
    };
    let message = Some(refusal.message.clone());
    let response = render_second_step(&auth, refusal.status, next, message).await?;
    Ok(refusal.apply(response))
}

/// The second step's one failure message: a wrong, used or expired code alike.
const INVALID_CODE: &str = "Invalid code.";

/// A refused password: `401` with a message, or `429` with `Retry-After` when throttled.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn wrong(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    fn throttled(retry_after: Duration) -> Self {
        let minutes = retry_after.as_secs().div_ceil(60).max(1);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("Too many failed attempts. Try again in {minutes} {unit}."),
            retry_after: Some(retry_after),
        }
    }

    /// Adds `Retry-After` to the page rendered for this refusal.
    pub fn apply(&self, mut response: Response) -> Response {
        if let Some(retry_after) = self.retry_after {
            web::insert_retry_after(&mut response, retry_after);
        }
        response
    }
}

/// `POST /logout`: the library deletes the remember-me token and expires its cookie, and
/// moves the session to a new id (the old one is dead); the flash goes into that new one.
pub async fn logout(mut auth: Auth) -> Result<Redirect, AppError> {
    auth.logout_user().await?;
    flash(auth.session()?, Flash::success("Logged out.")).await?;
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn render_register(
    auth: &Auth,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let ctx = context! {
        username,
        error,
        min_password => db::MIN_PASSWORD_BYTES,
        max_username => db::MAX_USERNAME_CHARS,
    };
    page_with_status(auth, status, "register.html", ctx).await
}

/// `GET /register`.
pub async fn register_form(auth: Auth) -> Result<Response, AppError> {
    render_register(&auth, StatusCode::OK, "", None).await
}

/// `POST /register`: `303` to `/login`, `409` for a taken name, `422` for invalid input.
pub async fn register(
    State(app): State<AppState>,
    auth: Auth,
    HtmlForm(form): HtmlForm<RegisterForm>,
) -> Result<Response, AppError> {
    let invalid = db::validate_username(&form.username)
        .err()
        .or_else(|| db::validate_password(&form.password).err());
    if let Some(problem) = invalid {
        return render_register(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form.username,
            Some(&problem),
        )
        .await;
    }
    // The manager's hasher: sign-ups and logins share one bound on argon2 runs.
    let hash = auth.password_hasher().hash(&form.password).await?;
    match db::insert_user(app.db(), &form.username, &hash).await {
        Ok(_) => {
            let message = format!("Welcome, {}! Your account is ready: log in.", form.username);
            flash(auth.session()?, Flash::success(message)).await?;
            Ok(Redirect::to("/login").into_response())
        }
        Err(err) if db::is_unique_violation(&err) => {
            render_register(
                &auth,
                StatusCode::CONFLICT,
                &form.username,
                Some("That username is taken. Choose another one."),
            )
            .await
        }
        Err(err) => Err(err.into()),
    }
}

/// Re-checks the signed-in user's password with the library (`reauthenticate_with_password`:
/// counted by the same throttle key as the login form, device cookie honoured; a success
/// marks the session fresh under a new id). `Err` holds the refusal to render.
pub async fn reauthenticate(
    auth: &mut Auth,
    password: &str,
) -> Result<Result<(), Refusal>, AppError> {
    Ok(match auth.reauthenticate_with_password(password).await? {
        LoginOutcome::LoggedIn => Ok(()),
        // `reauthenticate_with_password` never asks for a second factor.
        LoginOutcome::InvalidCredentials | LoginOutcome::SecondFactorRequired => {
            Err(Refusal::wrong("Wrong password."))
        }
        LoginOutcome::Throttled { retry_after } => Err(Refusal::throttled(retry_after)),
    })
}

#[derive(Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn render_reauth(
    auth: &Auth,
    status: StatusCode,
    user: &User,
    next: Option<&str>,
    error: Option<String>,
) -> Result<Response, AppError> {
    let ctx = context! { username => &user.username, next, error };
    page_with_status(auth, status, "reauth.html", ctx).await
}

/// Nobody to re-authenticate: off to the login page, keeping `next`.
fn to_login(next: Option<&str>) -> Response {
    let next = next.and_then(safe_next);
    Redirect::to(&login_url("/login", next.as_deref())).into_response()
}

/// `GET /reauth`: the password re-entry form for a session that is not fresh.
pub async fn reauth_form(auth: Auth, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    let next = query_param(query.as_deref(), "next");
    match auth.user() {
        Some(user) => render_reauth(&auth, StatusCode::OK, user, next.as_deref(), None).await,
        None => Ok(to_login(next.as_deref())),
    }
}

/// `POST /reauth`: a correct password makes the session fresh (`confirm_login`, which also
/// gives it a new id), then `303` to `next`.
pub async fn reauth(
    mut auth: Auth,
    HtmlForm(form): HtmlForm<ReauthForm>,
) -> Result<Response, AppError> {
    let next = next_field(form.next.as_deref());
    let Some(user) = auth.user().cloned() else {
        return Ok(to_login(next));
    };
    if let Err(refusal) = reauthenticate(&mut auth, &form.password).await? {
        let message = Some(refusal.message.clone());
        let response = render_reauth(&auth, refusal.status, &user, next, message).await?;
        return Ok(refusal.apply(response));
    }
    tracing::info!(user_id = user.id(), "re-authenticated");
    let target = next
        .and_then(safe_next)
        .unwrap_or_else(|| auth.next_or("/"));
    Ok(Redirect::to(&target).into_response())
}
