//! [`SessionConfig`]: the session cookie's attributes and the session's lifetime.

use std::fmt;

use tower_cookies::cookie::SameSite;
use tower_sessions::Expiry;

use std::time::Duration;

use login_manager::CookieOptions;

#[cfg(feature = "cookie")]
use crate::Key;

/// The default name of the session cookie (tower-sessions' own default is `id`).
pub const DEFAULT_COOKIE_NAME: &str = "session";

/// Settings of the session cookie and the session's lifetime.
///
/// Defaults: cookie `session`, `HttpOnly`, `SameSite=Lax` (tower-sessions' own default is
/// `Strict`, which hides the session on every arrival from another site, so a user following
/// a link would look logged out and be restored, non-fresh, from the remember cookie),
/// `Secure`, `Path=/`, no `Domain`, a browser-session cookie, no secret key, 4096-byte cookie
/// sessions.
#[derive(Clone)]
pub struct SessionConfig {
    pub(crate) cookie: CookieOptions,
    pub(crate) lifetime: Option<Duration>,
    #[cfg(feature = "cookie")]
    pub(crate) key: Option<Key>,
    #[cfg(feature = "cookie")]
    pub(crate) max_cookie_bytes: usize,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SessionConfig");
        debug
            .field("cookie", &self.cookie)
            .field("lifetime", &self.lifetime);
        // Never the key itself.
        #[cfg(feature = "cookie")]
        debug
            .field("key", &self.key.as_ref().map(|_| "<secret>"))
            .field("max_cookie_bytes", &self.max_cookie_bytes);
        debug.finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionConfig {
    /// The secure defaults.
    pub fn new() -> Self {
        Self {
            cookie: CookieOptions::new(DEFAULT_COOKIE_NAME),
            lifetime: None,
            #[cfg(feature = "cookie")]
            key: None,
            #[cfg(feature = "cookie")]
            max_cookie_bytes: 4096,
        }
    }

    /// The session cookie's name and attributes (Flask's `SESSION_COOKIE_NAME`, `_SECURE`,
    /// `_SAMESITE`, `_PATH`, `_DOMAIN`); it is always `HttpOnly`.
    pub fn cookie(mut self, cookie: CookieOptions) -> Self {
        self.cookie = cookie;
        self
    }

    /// Permanent sessions (Flask's `SESSION_PERMANENT = True` with
    /// `PERMANENT_SESSION_LIFETIME`): the cookie and the stored record last `lifetime` after
    /// the session was last saved, instead of ending with the browser.
    pub fn permanent(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Browser sessions, the default: the cookie has no `Max-Age` and ends when the browser
    /// closes (the stored record is kept two weeks, and the library's timeouts apply).
    pub fn browser_session(mut self) -> Self {
        self.lifetime = None;
        self
    }

    /// The key that signs or encrypts cookie sessions (Flask's `SECRET_KEY`), e.g.
    /// `Key::try_from(&bytes[..])` with 64 random bytes from your secret store, or
    /// `Key::generate()` (sessions then end with the process).
    #[cfg(feature = "cookie")]
    pub fn secret_key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// The largest encoded cookie session, in bytes (default 4096, what browsers keep).
    #[cfg(feature = "cookie")]
    pub fn max_cookie_bytes(mut self, max: usize) -> Self {
        self.max_cookie_bytes = max;
        self
    }

    /// The cookie attributes both layer kinds set. `CookieOptions::to_cookie` applies the
    /// `__Host-` rules: such a cookie must be `Secure`, `Path=/` and have no `Domain`, or
    /// browsers drop it.
    pub(crate) fn attributes(&self) -> CookieAttributes {
        let cookie = self.cookie.to_cookie();
        CookieAttributes {
            name: cookie.name().to_owned(),
            same_site: cookie.same_site().unwrap_or(SameSite::Lax),
            secure: cookie.secure().unwrap_or(false),
            path: cookie.path().unwrap_or("/").to_owned(),
            domain: cookie.domain().map(str::to_owned),
        }
    }

    pub(crate) fn expiry(&self) -> Expiry {
        match self.lifetime {
            Some(lifetime) => Expiry::OnInactivity(
                time::Duration::try_from(lifetime).unwrap_or(time::Duration::MAX),
            ),
            None => Expiry::OnSessionEnd,
        }
    }
}

/// The session cookie as both layer kinds take it.
pub(crate) struct CookieAttributes {
    pub(crate) name: String,
    pub(crate) same_site: SameSite,
    pub(crate) secure: bool,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
}
