//! Settings with secure defaults: session protection and cookie attributes.

use cookie::{Cookie, SameSite};

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
