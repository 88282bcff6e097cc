//! What every page needs: templates, flash messages, the app's error type (rendered as an
//! HTML page) and a form extractor whose rejections are HTML pages too.

use std::{fmt::Write as _, sync::OnceLock};

use axum::{
    extract::{rejection::FormRejection, FromRequest, Request},
    middleware::Next,
    response::{Html, IntoResponse, Response},
    Form,
};
use http::{header, HeaderValue, StatusCode};
use minijinja::{
    context, escape_formatter, AutoEscape, Environment, ErrorKind, Output, State, Value,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;

use crate::app::Auth;

/// The templates, compiled into the binary so that `cargo run -p demo` works from
/// any directory. `.html` names turn on minijinja's HTML auto-escaping.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("register.html", include_str!("../templates/register.html")),
    ("reauth.html", include_str!("../templates/reauth.html")),
    ("forgot.html", include_str!("../templates/forgot.html")),
    ("reset.html", include_str!("../templates/reset.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("settings.html", include_str!("../templates/settings.html")),
    (
        "two_factor.html",
        include_str!("../templates/two_factor.html"),
    ),
    (
        "login_2fa.html",
        include_str!("../templates/login_2fa.html"),
    ),
    ("devices.html", include_str!("../templates/devices.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    ("error.html", include_str!("../templates/error.html")),
];

static ENV: OnceLock<Environment<'static>> = OnceLock::new();

/// Compiles the templates; called at start-up, so that a broken one stops the demo there.
pub fn init_templates() -> Result<(), minijinja::Error> {
    let mut env = Environment::new();
    env.set_formatter(html_formatter);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    // A second call keeps the first environment: both were built from the same sources.
    let _ = ENV.set(env);
    Ok(())
}

/// minijinja's HTML auto-escaping, except that `/` stays `/`: minijinja writes `&#x2f;`,
/// which is harmless but makes `value="/dashboard"` unreadable in the page source (and to
/// anyone grepping it). `&`, `<`, `>`, `"` and `'` are all that HTML needs escaped in text
/// and in quoted attributes.
fn html_formatter(
    out: &mut Output<'_>,
    state: &State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
            for c in text.chars() {
                match c {
                    '&' => out.write_str("&amp;"),
                    '<' => out.write_str("&lt;"),
                    '>' => out.write_str("&gt;"),
                    '"' => out.write_str("&quot;"),
                    '\'' => out.write_str("&#39;"),
                    c => out.write_char(c),
                }
                .map_err(minijinja::Error::from)?;
            }
            Ok(())
        }
        _ => escape_formatter(out, state, value),
    }
}

/// Renders a template with `ctx`.
pub fn render(template: &str, ctx: Value) -> Result<Html<String>, AppError> {
    let env = ENV.get().ok_or_else(|| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "templates not initialised")
    })?;
    let html = env.get_template(template)?.render(ctx)?;
    Ok(Html(html))
}

/// Renders a page for the current visitor: adds who is signed in (for the header) and the
/// flash messages waiting in the session (which are thereby shown once).
pub async fn page(auth: &Auth, template: &str, ctx: Value) -> Result<Html<String>, AppError> {
    let flashes = take_flashes(auth.session()?).await?;
    let current_user = auth.user().map(|u| u.username.clone());
    render(template, context! { current_user, flashes, ..ctx })
}

/// [`page`] with a status: a form shown again with its error (401, 409, 422, 429).
pub async fn page_with_status(
    auth: &Auth,
    status: StatusCode,
    template: &str,
    ctx: Value,
) -> Result<Response, AppError> {
    Ok((status, page(auth, template, ctx).await?).into_response())
}

/// A one-time message shown on the next page rendered for this session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    /// `info`, `success` or `error`: the CSS class.
    pub kind: String,
    pub message: String,
}

impl Flash {
    pub fn info(message: impl Into<String>) -> Self {
        Self::new("info", message)
    }

    pub fn success(message: impl Into<String>) -> Self {
        Self::new("success", message)
    }

    fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
}

const FLASH_KEY: &str = "flash";

/// Queues a flash message in the session.
pub async fn flash(session: &Session, flash: Flash) -> Result<(), AppError> {
    let mut flashes: Vec<Flash> = session.get(FLASH_KEY).await?.unwrap_or_default();
    flashes.push(flash);
    session.insert(FLASH_KEY, flashes).await?;
    Ok(())
}

/// Takes the queued flash messages. Reads first and removes only when there is something:
/// a removal marks the session modified, which would cost a store write on every page view.
async fn take_flashes(session: &Session) -> Result<Vec<Flash>, AppError> {
    let flashes: Option<Vec<Flash>> = session.get(FLASH_KEY).await?;
    if flashes.is_some() {
        session.remove_value(FLASH_KEY).await?;
    }
    Ok(flashes.unwrap_or_default())
}

/// A flash message attached to a response by code that has no access to the session (the
/// login manager's `unauthorized_handler`); [`apply_pending_flash`] stores it.
#[derive(Debug, Clone)]
pub struct PendingFlash(pub Flash);

/// Middleware (inside the session layer) that moves a [`PendingFlash`] into the session —
/// only into a session that exists already: a flash never creates server-side state.
pub async fn apply_pending_flash(session: Session, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let pending = response.extensions_mut().remove::<PendingFlash>();
    if let Some(PendingFlash(message)) = pending.filter(|_| session.id().is_some()) {
        if let Err(err) = flash(&session, message).await {
            // Losing a "please log in" hint is not worth failing the redirect.
            tracing::warn!(%err, "could not store a flash message");
        }
    }
    response
}

/// `axum::Form`, with rejections (wrong content type, malformed body, too large) answered
/// by an HTML error page with the same status.
pub struct HtmlForm<T>(pub T);

impl<T, S> FromRequest<S> for HtmlForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Form(value) = Form::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// The first `name` parameter of a raw query string. Hand-parsed rather than `Query<T>`,
/// whose rejection of odd queries (a repeated `next`) would turn a harmless link into a 400.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `2025-01-31 14:05 UTC`.
pub fn format_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

pub fn format_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| "?".to_owned(), format_time)
}

/// Everything a handler can fail with. Rendered as an HTML error page; infrastructure
/// failures are logged and shown without details.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Auth(#[from] login_manager::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("session: {0}")]
    Session(#[from] tower_sessions::session::Error),
    #[error("template: {0:#}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Form(#[from] FormRejection),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Auth(err) => {
                let status = err.status();
                if let login_manager::Error::Throttled { retry_after } = err {
                    let mut response = error_page(status, "Too many attempts. Try again later.");
                    insert_retry_after(&mut response, retry_after);
                    return response;
                }
                if status.is_server_error() {
                    tracing::error!(error = %err, "login-manager error");
                    return unavailable(status);
                }
                error_page(status, &err.to_string())
            }
            AppError::Db(_) | AppError::Session(_) => {
                tracing::error!(error = %self, "storage error");
                unavailable(StatusCode::SERVICE_UNAVAILABLE)
            }
            AppError::Template(_) => {
                tracing::error!(error = %self, "template error");
                unavailable(StatusCode::INTERNAL_SERVER_ERROR)
            }
            AppError::Form(rejection) => error_page(rejection.status(), &rejection.body_text()),
        }
    }
}

fn unavailable(status: StatusCode) -> Response {
    error_page(
        status,
        "Something went wrong on our side. Please try again in a moment.",
    )
}

/// An HTML error page. It is rendered without the visitor's login state (which may be what
/// failed), so its header shows no account links.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let ctx = context! { status => status.as_u16(), title, message, account_unknown => true };
    match render("error.html", ctx) {
        Ok(html) => (status, html).into_response(),
        // The error page itself failed: plain text is still an answer.
        Err(_) => (status, format!("{} {title}: {message}", status.as_u16())).into_response(),
    }
}

/// `Retry-After` in whole seconds, at least 1 (the throttle already rounds up).
pub fn insert_retry_after(response: &mut Response, retry_after: std::time::Duration) {
    let secs = retry_after.as_secs().max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}
