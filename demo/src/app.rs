//! Wiring: the login manager, the layers and the routes.

use std::{convert::Infallible, net::IpAddr, sync::Arc, time::Duration, time::Instant};

use axum::{
    extract::{FromRequestParts, Request},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};
use http::{request::Parts, StatusCode};
use login_manager::{
    permission_required, AuthSession, Client, CrossOriginProtection, LoginManager, LoginThrottle,
    LoginView, OneTimeTokens, Outbox, PasswordHasher, Reason, Rejection, Remember,
};
use login_manager_sessions::SessionLayer;

use crate::{
    config::Config,
    db::{Db, Users},
    routes::{account, admin, api, auth, pages, password, two_factor},
    stores::{self, Stores},
    web::{self, Flash, PendingFlash},
};

/// The login state of a request, typed by the demo's loader.
pub type Auth = AuthSession<Users>;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub users: Users,
    /// A clone of the login manager, kept before `into_layer` (clones share the stores):
    /// what the admin's "log out everywhere" calls `end_all_logins` on.
    pub manager: LoginManager<Users>,
    /// Account recovery: `/password/forgot` and `/password/reset`.
    pub recovery: Recovery,
}

impl AppState {
    pub fn db(&self) -> &Db {
        self.users.db()
    }
}

/// What "forgot password" needs (#18): the one-time tokens, the outbox and how links are made.
#[derive(Clone)]
pub struct Recovery {
    /// Password-reset tokens, throttled by the login throttle: a client guessing tokens
    /// spends the same per-address budget as one guessing passwords.
    pub tokens: OneTimeTokens,
    pub outbox: Outbox,
    /// The login throttle, for the client address (`X-Forwarded-For` rules included).
    pub throttle: LoginThrottle,
    /// How long a reset link works (`DEMO_RESET_TOKEN_MINUTES`).
    pub ttl: Duration,
    /// `http(s)://host[:port]`, no trailing `/`: the base of the links in mail.
    pub public_url: Arc<str>,
    /// `DEMO_MAIL_DIR` when mail is written there (not over SMTP): the forgot page says so.
    pub mail_dir: Option<Arc<str>>,
}

/// The request's client address as the login throttle sees it.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Infallible> {
        Ok(Self(app.recovery.throttle.client_addr(parts)))
    }
}

/// The whole app, ready to serve; `public_url` is the base of the links in mail.
pub fn build(
    config: &Config,
    db: Db,
    hasher: PasswordHasher,
    stores: Stores,
    sessions: SessionLayer,
    public_url: &str,
) -> Router {
    let users = Users::new(db);
    // Device cookies (`device`) come with the throttle: a browser that logged into an account
    // before is judged by its own failures only, never locked out by other clients'.
    let throttle = LoginThrottle::new(stores.throttle)
        .max_failures(config.throttle_max_failures)
        .max_failures_per_address(config.throttle_max_address_failures)
        .secure(config.secure_cookies);

    let remember = Remember::new(stores.remember)
        .secure(config.secure_cookies)
        .duration(config.remember_duration)
        .grace_period(config.remember_grace);
    let tokens = OneTimeTokens::new(stores.tokens).throttle(throttle.clone());
    stores::spawn_cleanup(
        stores.sessions.clone(),
        remember.store().clone(),
        stores.logins.store().clone(),
        tokens.store().clone(),
    );
    let recovery = Recovery {
        tokens,
        outbox: stores.outbox,
        throttle: throttle.clone(),
        ttl: config.reset_token_ttl,
        public_url: public_url.into(),
        mail_dir: config
            .smtp_url
            .is_none()
            .then(|| config.mail_dir.display().to_string().into()),
    };

    // The hasher and throttle of `login_with_password` and `reauthenticate_with_password`
    // (`POST /login`, `/reauth`, `/settings/password`): a stolen remember-me cookie must not
    // buy unlimited guesses either.
    let manager = LoginManager::new(users)
        .password_hasher(hasher)
        .login_throttle(throttle)
        .login_view("/login")
        .refresh_view("/reauth")
        .remember(remember)
        // Every live login of every user, on any instance: `/devices` and the admin's
        // "log out everywhere".
        .login_index(stores.logins)
        .idle_timeout(config.idle_timeout)
        .absolute_timeout(config.absolute_timeout)
        .unauthorized_handler(unauthorized);
    let state = AppState {
        users: manager.loader().clone(),
        manager: manager.clone(),
        recovery,
    };

    // `permission_required` as a route layer; `LoginView` sends this router's anonymous
    // visitors to its own login page.
    let admin = Router::new()
        .route("/admin", get(admin::index))
        .route("/admin/users/{username}/logout", post(admin::logout_user))
        .route_layer(permission_required("admin"))
        .layer(LoginView::new("/admin/login"));

    Router::new()
        .route("/", get(pages::home))
        .route("/static/style.css", get(pages::stylesheet))
        .route("/login", get(auth::login_form).post(auth::login))
        .route(
            "/login/2fa",
            get(auth::second_step_form).post(auth::second_step),
        )
        .route("/admin/login", get(auth::admin_login_form))
        .route("/logout", post(auth::logout))
        .route("/register", get(auth::register_form).post(auth::register))
        .route("/reauth", get(auth::reauth_form).post(auth::reauth))
        .route(
            "/password/forgot",
            get(password::forgot_form).post(password::forgot),
        )
        .route(
            "/password/reset",
            get(password::reset_form).post(password::reset),
        )
        .route("/dashboard", get(account::dashboard))
        .route("/settings", get(account::settings))
        .route("/settings/password", post(account::change_password))
        .route(
            "/settings/2fa",
            get(two_factor::settings).post(two_factor::enrol),
        )
        .route("/devices", get(account::devices))
        .route(
            "/devices/revoke-others",
            post(account::revoke_other_devices),
        )
        .route("/devices/{id}/revoke", post(account::revoke_device))
        .route("/api/me", get(api::me))
        .route("/api/tokens", post(api::create_token))
        .merge(admin)
        .fallback(pages::not_found)
        .method_not_allowed_fallback(pages::method_not_allowed)
        .with_state(state)
        // Inside the session layer, which it needs; outside the routes, whose guards
        // attach the flash.
        .layer(middleware::from_fn(web::apply_pending_flash))
        .layer(manager.into_layer())
        .layer(sessions)
        // Outermost but for logging: a refused cross-origin request touches no session.
        .layer(CrossOriginProtection::new())
        .layer(middleware::from_fn(log_request))
}

/// The guards' answers, as the library makes them, plus Flask-Login's "Please
/// reauthenticate" flash for a signed-in browser and an HTML page for a missing permission.
/// JSON clients keep the library's JSON.
///
/// An anonymous visitor gets no flash: storing one would create a session for every
/// anonymous hit (bots would fill the session store). The login page says "Please log in"
/// when it carries a `next` instead.
fn unauthorized(rejection: Rejection) -> Response {
    let browser = rejection.client != Client::Json;
    let message = match &rejection.reason {
        Reason::Forbidden { .. } if browser => {
            return web::error_page(
                StatusCode::FORBIDDEN,
                "Your account does not have the permission to see this page.",
            );
        }
        Reason::FreshLoginRequired { .. } if browser => {
            Some("Please reauthenticate to access this page.")
        }
        _ => None,
    };
    let mut response = rejection.into_default_response();
    if let Some(message) = message {
        response
            .extensions_mut()
            .insert(PendingFlash(Flash::info(message)));
    }
    response
}

/// One log line per request. The path is logged with `?` (escaped): it is attacker text.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        ?path,
        status = response.status().as_u16(),
        elapsed = ?started.elapsed(),
        "request"
    );
    response
}
