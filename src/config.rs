//! Settings with secure defaults: session protection, cookie attributes, how one login is
//! made ([`LoginOptions`]), and the non-generic settings of a
//! [`LoginManager`](crate::LoginManager) — views, timeouts, listeners, the unauthorized
//! handler. Not generic over the loader, so that the guards render a refusal from them
//! without knowing the user type, and the request context hands them a
//! [`Reason`](crate::Reason) as plain data.

use std::{fmt, sync::Arc};

use axum::response::Response;
use cookie::{Cookie, SameSite};

use std::time::Duration;

use crate::{events::AuthEvent, rejection::Rejection};

/// Flask-Login's `session_protection`: what happens when a logged-in session is used from a
/// client whose identifier (a digest of the client address and `User-Agent`) differs from
/// the one it logged in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionProtection {
    /// No check.
    Off,
    /// The session stays logged in but is no longer fresh: pages behind
    /// [`FreshLoginRequired`](crate::FreshLoginRequired) ask for the password again.
    #[default]
    Basic,
    /// The session is logged out (and its remember-me cookie dropped).
    Strong,
}

/// Attributes of the cookies this crate sets (the remember-me cookie).
///
/// Defaults follow invariant 6: `HttpOnly`, `SameSite=Lax`, `Secure`, `Path=/`, no `Domain`.
/// Turn `Secure` off explicitly for plain-HTTP development.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieOptions {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) host_prefix: bool,
}

impl CookieOptions {
    /// Secure defaults for a cookie called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            host_prefix: false,
        }
    }

    /// Sets `Secure` (default `true`); `false` only for plain-HTTP development.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `SameSite` (default `Lax`; `Strict` would drop the cookie on links from other sites).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Domain` (default none: the cookie goes to this host only).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Prefixes the name with `__Host-`, which browsers accept only with `Secure`, `Path=/` and
    /// no `Domain`; this forces those three.
    pub fn host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }

    /// The cookie's name as sent to the browser (with the `__Host-` prefix when set).
    pub fn cookie_name(&self) -> String {
        if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// These settings as a cookie with an empty value and no `Max-Age`, exactly as a browser
    /// gets them (the `__Host-` name, and with it `Secure`, `Path=/` and no `Domain`): how a
    /// session layer built elsewhere (`login-manager-sessions`) applies them.
    pub fn to_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.build(String::new(), time::Duration::ZERO);
        cookie.set_max_age(None);
        cookie
    }

    /// A cookie with these attributes and `value`, kept for `max_age`.
    pub(crate) fn build(&self, value: String, max_age: time::Duration) -> Cookie<'static> {
        let mut builder = Cookie::build((self.cookie_name(), value))
            .http_only(true)
            .same_site(self.same_site)
            .max_age(max_age);
        if self.host_prefix {
            builder = builder.secure(true).path("/");
        } else {
            builder = builder.secure(self.secure).path(self.path.clone());
            if let Some(domain) = &self.domain {
                builder = builder.domain(domain.clone());
            }
        }
        builder.build()
    }

    /// A cookie that makes the browser drop this one.
    pub(crate) fn removal(&self) -> Cookie<'static> {
        let mut cookie = self.build(String::new(), time::Duration::ZERO);
        cookie.make_removal();
        cookie
    }
}

/// How [`AuthSession::login_user`](crate::AuthSession::login_user) logs a user in (Flask-Login's `login_user` arguments).
///
/// ```
/// use std::time::Duration;
///
/// use login_manager::LoginOptions;
///
/// let options = LoginOptions::new().remember(true).duration(Duration::from_secs(7 * 24 * 60 * 60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginOptions {
    pub(crate) remember: bool,
    pub(crate) duration: Option<Duration>,
    pub(crate) force: bool,
    pub(crate) fresh: bool,
}

impl Default for LoginOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginOptions {
    /// A fresh login, not remembered, refusing inactive users.
    pub fn new() -> Self {
        Self {
            remember: false,
            duration: None,
            force: false,
            fresh: true,
        }
    }

    /// Also set a remember-me cookie (needs [`LoginManager::remember`](crate::LoginManager::remember)).
    pub fn remember(mut self, remember: bool) -> Self {
        self.remember = remember;
        self
    }

    /// How long this login's remember-me token lives, instead of the configured duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Log the user in even when `is_active()` is false.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Whether the login counts as fresh (default `true`: the password was just checked).
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }
}

type Listener = Arc<dyn Fn(&AuthEvent) + Send + Sync>;
type UnauthorizedHandler = Arc<dyn Fn(Rejection) -> Response + Send + Sync>;

/// The login settings shared by every request (see the builder methods of
/// [`LoginManager`](crate::LoginManager) for what each means and its default).
#[derive(Clone)]
pub(crate) struct Settings {
    pub login_view: String,
    pub refresh_view: Option<String>,
    pub protection: SessionProtection,
    pub idle_timeout: Option<Duration>,
    pub absolute_timeout: Option<Duration>,
    pub fresh_max_age: Option<Duration>,
    /// Bound on every session-store, remember-store and loader call.
    pub store_timeout: Duration,
    pub clear_site_data: bool,
    pub listeners: Vec<Listener>,
    pub unauthorized_handler: Option<UnauthorizedHandler>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            login_view: "/login".to_owned(),
            refresh_view: None,
            protection: SessionProtection::default(),
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            absolute_timeout: Some(Duration::from_secs(12 * 60 * 60)),
            fresh_max_age: None,
            store_timeout: Duration::from_secs(5),
            clear_site_data: false,
            listeners: Vec::new(),
            unauthorized_handler: None,
        }
    }
}

impl Settings {
    /// Logs `event` with `tracing` (security-relevant ones as warnings) and calls every
    /// listener.
    pub fn emit(&self, event: AuthEvent) {
        if event.is_security_relevant() {
            tracing::warn!(event = ?event, "auth event");
        } else {
            tracing::info!(event = ?event, "auth event");
        }
        for listener in &self.listeners {
            listener(&event);
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("login_view", &self.login_view)
            .field("refresh_view", &self.refresh_view)
            .field("protection", &self.protection)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("fresh_max_age", &self.fresh_max_age)
            .field("store_timeout", &self.store_timeout)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}
