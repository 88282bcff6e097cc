//! Account recovery (#18): "forgot password" mails a one-time link, the link sets a new
//! password and ends every login of the account.
//!
//! - `POST /password/forgot` answers the same, after comparable work, whether the account
//!   exists or not (`OneTimeTokens::issue_if_known`), sends the mail on a task of its own, and
//!   answers no sooner than 200 ms after the request: the response time does not tell which
//!   accounts exist.
//! - The link carries the token in its query; `GET /password/reset` only shows the form (mail
//!   scanners fetch links: a GET must not use the token up), `POST /password/reset` uses it.
//!   The token is single-use, expires, is bound to the password it was issued under, and
//!   failed tokens are throttled like failed passwords.

use std::time::Duration;

use axum::{
    extract::{RawQuery, State},
    response::{IntoResponse, Redirect, Response},
};
use http::{header, HeaderValue, StatusCode};
use login_manager::{password_reset_mail, AuthUser, Outbox, PasswordUserLoader, TokenOutcome};
use minijinja::context;
use serde::Deserialize;

use crate::{
    app::{AppState, Auth, ClientAddr},
    db::{self, User},
    web::{self, flash, page_with_status, query_param, AppError, Flash, HtmlForm},
};

/// The purpose the tokens are issued and consumed for: a token of another purpose (a future
/// e-mail verification link) is refused here.
const PURPOSE: &str = "password-reset";
/// The one answer to `POST /password/forgot`.
pub const LINK_SENT: &str = "If that account exists, we sent it a reset link.";
/// The one answer to a token that cannot be used, whatever the reason.
pub const INVALID_LINK: &str = "This link is invalid or has expired.";
/// The least time `POST /password/forgot` takes. The library does comparable work for unknown
/// accounts, but not the same: a store write (the token) for a real one, a read (a look-up of
/// a decoy) for an unknown one, measurably faster (about 1 ms on SQLite and on Postgres). The
/// answer is held back to this floor, far above either, so its timing tells nothing.
const FORGOT_FLOOR: Duration = Duration::from_millis(200);
/// The sender of the demo's mail.
const MAIL_FROM: &str = "Wonderland <no-reply@demo.invalid>";
/// The demo's users have no e-mail address: mail goes to `<username>@demo.invalid` (the
/// `.invalid` top-level domain never resolves, RFC 2606).
const MAIL_DOMAIN: &str = "demo.invalid";

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    username: String,
}

/// `GET /password/forgot`.
pub async fn forgot_form(State(app): State<AppState>, auth: Auth) -> Result<Response, AppError> {
    let ctx = context! { mail_dir => app.recovery.mail_dir.as_deref() };
    page_with_status(&auth, StatusCode::OK, "forgot.html", ctx).await
}

/// `POST /password/forgot`: `303` to `/login` with the same flash for every username. For an
/// active account a token is stored and the mail with the link goes out on a task of its own;
/// for an unknown or disabled one the library does the same store work (a look-up) and
/// nothing is sent.
pub async fn forgot(
    State(app): State<AppState>,
    auth: Auth,
    HtmlForm(form): HtmlForm<ForgotForm>,
) -> Result<Response, AppError> {
    let floor = tokio::time::Instant::now() + FORGOT_FLOOR;
    let recovery = &app.recovery;
    let user = app
        .users
        .load_user_by_username(&form.username)
        .await?
        .filter(AuthUser::is_active);
    let token = recovery
        .tokens
        .issue_if_known(user.as_ref(), PURPOSE, recovery.ttl)
        .await?;
    if let (Some(user), Some(token)) = (user, token) {
        let link = format!("{}/password/reset?token={token}", recovery.public_url);
        // Off the request path: an SMTP round trip would make a real account's answer slower
        // than an unknown one's.
        tokio::spawn(send_reset_mail(
            recovery.outbox.clone(),
            user,
            link,
            recovery.ttl,
        ));
    }
    flash(auth.session()?, Flash::info(LINK_SENT)).await?;
    tokio::time::sleep_until(floor).await;
    Ok(Redirect::to("/login").into_response())
}

/// Builds and sends the reset mail; failures are logged (nobody is waiting for them).
async fn send_reset_mail(outbox: Outbox, user: User, link: String, valid_for: Duration) {
    let to = mail_address(&user);
    let sent = match password_reset_mail(MAIL_FROM, &to, &link, valid_for) {
        Ok(message) => outbox.send(message).await,
        Err(err) => Err(err),
    };
    match sent {
        Ok(()) => tracing::info!(user_id = user.id, "password-reset mail sent"),
        Err(err) => tracing::warn!(user_id = user.id, %err, "password-reset mail not sent"),
    }
}

/// `<username>@demo.invalid` when the username is a plain mail local part (letters, digits,
/// `.`, `-`, `_`, no leading, trailing or double dot), else `user-<id>@demo.invalid`: a
/// username is attacker-chosen text and never becomes mail syntax.
pub fn mail_address(user: &User) -> String {
    let name = &user.username;
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if plain {
        format!("{name}@{MAIL_DOMAIN}")
    } else {
        format!("user-{}@{MAIL_DOMAIN}", user.id)
    }
}

/// The reset page: the form, or (`invalid`) the one message for a link that cannot be used.
async fn render_reset(
    auth: &Auth,
    status: StatusCode,
    token: Option<&str>,
    error: Option<String>,
) -> Result<Response, AppError> {
    let ctx = context! {
        token,
        error,
        invalid => token.is_none(),
        invalid_message => INVALID_LINK,
        min_password => db::MIN_PASSWORD_BYTES,
    };
    let mut response = page_with_status(auth, status, "reset.html", ctx).await?;
    // The token is in this page's URL and in its form: no `Referer` carries it to another
    // site, and no cache keeps the page.
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /password/reset?token=...`: the form, the token in a hidden field, when the link is
/// good; `400` with the message at once when it is not (used, expired, tampered, superseded),
/// so that nobody types a new password for nothing. The check (`OneTimeTokens::peek`) does
/// not use the token up — mail scanners that fetch links cannot spend it — and counts in the
/// throttle like a `POST`.
pub async fn reset_form(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let Some(token) = query_param(query.as_deref(), "token").filter(|t| !t.is_empty()) else {
        return render_reset(&auth, StatusCode::BAD_REQUEST, None, None).await;
    };
    let outcome = app
        .recovery
        .tokens
        .peek(&app.users, &token, PURPOSE, client)
        .await?;
    match outcome {
        TokenOutcome::Valid(_) => render_reset(&auth, StatusCode::OK, Some(&token), None).await,
        TokenOutcome::Invalid => render_reset(&auth, StatusCode::BAD_REQUEST, None, None).await,
        TokenOutcome::Throttled { retry_after } => {
            let mut response = render_reset(
                &auth,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some("Too many invalid links from here. Try again later.".to_owned()),
            )
            .await?;
            web::insert_retry_after(&mut response, retry_after);
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /password/reset`: an invalid new password is `422` with the form again (the token is
/// not used up by a typo). Then the token is consumed: invalid `400`, throttled `429`. A valid
/// one sets the password (which also voids the user's other outstanding links), ends every
/// session and remember-me token of the user, and `303`s to `/login`.
pub async fn reset(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    mut auth: Auth,
    HtmlForm(form): HtmlForm<ResetForm>,
) -> Result<Response, AppError> {
    if let Err(problem) = db::validate_password(&form.new_password) {
        return render_reset(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&form.token),
            Some(problem),
        )
        .await;
    }
    let outcome = app
        .recovery
        .tokens
        .consume(&app.users, &form.token, PURPOSE, client)
        .await?;
    let user = match outcome {
        TokenOutcome::Valid(user) => user,
        TokenOutcome::Invalid => {
            return render_reset(&auth, StatusCode::BAD_REQUEST, None, None).await;
        }
        TokenOutcome::Throttled { retry_after } => {
            let mut response = render_reset(
                &auth,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some("Too many invalid links from here. Try again later.".to_owned()),
            )
            .await?;
            web::insert_retry_after(&mut response, retry_after);
            return Ok(response);
        }
    };
    // The manager's hasher: resets, sign-ups and logins share one bound on argon2 runs.
    let hash = auth.password_hasher().hash(&form.new_password).await?;
    db::set_password_hash(app.db(), user.id, &hash).await?;
    let ended = app.manager.end_all_logins(&user.id).await?;
    // Whoever locked the account by guessing no longer keeps its owner out.
    app.recovery.throttle.record_success(&user.username).await?;
    if auth.user().is_some_and(|current| current.id == user.id) {
        // This browser's own login was among those ended: log out here too, or saving the
        // flash below would write the deleted session back, logged in.
        auth.logout_user().await?;
    }
    tracing::info!(user_id = user.id, ended, "password reset");
    let message = "Your password was changed. Please log in.";
    flash(auth.session()?, Flash::success(message)).await?;
    Ok(Redirect::to("/login").into_response())
}

#[cfg(test)]
mod tests {
    use super::mail_address;
    use crate::db::User;

    fn user(id: i64, username: &str) -> User {
        User {
            id,
            username: username.to_owned(),
            password_hash: String::new(),
            disabled: false,
            created_at: 0,
            totp_secret: None,
            totp_last_step: None,
        }
    }

    #[test]
    fn plain_usernames_are_the_local_part_and_others_are_not() {
        assert_eq!(mail_address(&user(1, "alice")), "alice@demo.invalid");
        assert_eq!(
            mail_address(&user(2, "mad.hatter_2-x")),
            "mad.hatter_2-x@demo.invalid"
        );
        for odd in [
            "eve@evil.example",
            "a b",
            "Zoë",
            ".dot",
            "dot.",
            "a..b",
            "x\r\nBcc: eve@evil.example",
            "\"quoted\"",
            "",
        ] {
            assert_eq!(
                mail_address(&user(7, odd)),
                "user-7@demo.invalid",
                "{odd:?}"
            );
        }
    }
}
