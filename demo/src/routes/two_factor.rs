//! `/settings/2fa`: turning on a second factor (#18) — a TOTP authenticator app, and ten
//! single-use recovery codes shown once. The login's second step is `/login/2fa`
//! (`routes::auth`); the factor itself is `db::TotpOrRecovery`.

use axum::{extract::State, response::Response};
use http::StatusCode;
use login_manager::{FreshLoginRequired, RecoveryCodes, Totp};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::{
    app::{AppState, Auth},
    db::{self, User},
    web::{page_with_status, AppError, HtmlForm},
};

/// The session key of an enrolment in progress: the secret shown on the page, which becomes
/// the account's only once the user typed a valid code from their app.
const ENROLMENT_KEY: &str = "totp_enrolment";

/// An enrolment in progress, for one user (a login as someone else in this browser starts
/// another).
#[derive(Serialize, Deserialize)]
struct Enrolment {
    user_id: i64,
    secret: String,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// The secret of this browser's enrolment for `user`, made (and kept in the session) if there
/// is none yet: reloading the page shows the same QR code.
async fn enrolment_secret(auth: &Auth, user: &User) -> Result<String, AppError> {
    let session = auth.session()?;
    let pending: Option<Enrolment> = session.get(ENROLMENT_KEY).await?;
    if let Some(enrolment) = pending.filter(|e| e.user_id == user.id) {
        return Ok(enrolment.secret);
    }
    let secret = Totp::generate_secret();
    let enrolment = Enrolment {
        user_id: user.id,
        secret: secret.clone(),
    };
    session.insert(ENROLMENT_KEY, &enrolment).await?;
    Ok(secret)
}

/// The enrolment form: the secret (`id="totp-secret"`), its QR code inline, the code field.
async fn render_enrolment(
    auth: &Auth,
    status: StatusCode,
    user: &User,
    secret: &str,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let enrolment = db::totp().enrolment(secret, &user.username)?;
    let ctx = context! {
        username => &user.username,
        secret => &enrolment.secret,
        url => &enrolment.url,
        qr_svg => &enrolment.qr_svg,
        error,
    };
    page_with_status(auth, status, "two_factor.html", ctx).await
}

/// The page of an account with TOTP on already.
async fn render_enabled(
    app: &AppState,
    auth: &Auth,
    status: StatusCode,
    user: &User,
    message: Option<&str>,
) -> Result<Response, AppError> {
    let recovery_left = db::recovery_codes_left(app.db(), user.id).await?;
    let ctx = context! {
        username => &user.username,
        enabled => true,
        recovery_left,
        error => message,
    };
    page_with_status(auth, status, "two_factor.html", ctx).await
}

/// `GET /settings/2fa` (fresh login required): the enrolment page, or "it is on".
pub async fn settings(
    State(app): State<AppState>,
    FreshLoginRequired(user): FreshLoginRequired<User>,
    auth: Auth,
) -> Result<Response, AppError> {
    if user.totp_secret.is_some() {
        return render_enabled(&app, &auth, StatusCode::OK, &user, None).await;
    }
    let secret = enrolment_secret(&auth, &user).await?;
    render_enrolment(&auth, StatusCode::OK, &user, &secret, None).await
}

/// `POST /settings/2fa` (fresh login required), field `code`: a valid code for the secret on
/// the page turns TOTP on (the code's time step counts as used) and shows ten recovery codes,
/// once; a wrong one is `422` with the same secret; an account with TOTP on already `409`.
pub async fn enrol(
    State(app): State<AppState>,
    FreshLoginRequired(user): FreshLoginRequired<User>,
    auth: Auth,
    HtmlForm(form): HtmlForm<CodeForm>,
) -> Result<Response, AppError> {
    const ALREADY_ON: &str = "Two-factor authentication is already on.";
    if user.totp_secret.is_some() {
        return render_enabled(&app, &auth, StatusCode::CONFLICT, &user, Some(ALREADY_ON)).await;
    }
    let session = auth.session()?;
    let pending: Option<Enrolment> = session.get(ENROLMENT_KEY).await?;
    let Some(Enrolment { secret, .. }) = pending.filter(|e| e.user_id == user.id) else {
        // The session lost the enrolment (expired, another login): a new secret to scan.
        let secret = enrolment_secret(&auth, &user).await?;
        let message = "That setup expired. Scan this new code and enter the code it shows.";
        return render_enrolment(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            &user,
            &secret,
            Some(message),
        )
        .await;
    };
    let Some(step) = db::totp().check(&secret, &form.code, None)? else {
        let message = "That code is not right. Check the time on your device and try again.";
        return render_enrolment(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            &user,
            &secret,
            Some(message),
        )
        .await;
    };
    let (codes, hashes) = RecoveryCodes::generate(db::RECOVERY_CODE_COUNT);
    if !db::enable_totp(app.db(), user.id, &secret, step, &hashes).await? {
        // Another tab finished its enrolment first.
        return render_enabled(&app, &auth, StatusCode::CONFLICT, &user, Some(ALREADY_ON)).await;
    }
    session.remove::<Enrolment>(ENROLMENT_KEY).await?;
    tracing::info!(user_id = user.id, "two-factor authentication turned on");
    let ctx = context! {
        username => &user.username,
        recovery_codes => codes,
    };
    page_with_status(&auth, StatusCode::OK, "two_factor.html", ctx).await
}
