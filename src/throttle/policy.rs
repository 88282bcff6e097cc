//! [`LoginThrottle`]: the builder and the public face of login throttling.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::device::{self, LoginAttempt};
use super::limits::{
    account_key, Limits, DEFAULT_MAX_FAILURES, DEFAULT_STORE_TIMEOUT, DEFAULT_WINDOW,
};
use super::ThrottleStore;
use crate::client::PeerInfo;
use crate::{CookieOptions, Result};

/// Counts failed logins per account and per client address and refuses further attempts once
/// a limit is reached. Cheap to clone (one `Arc`).
///
/// Use it in the login handler: [`check`](Self::check) first — before looking the user up or
/// verifying the password, so a locked key costs no password hash — then
/// [`record_failure`](Self::record_failure) on a wrong username or password, or
/// [`record_success`](Self::record_success) after a successful login. Errors convert into
/// responses: [`Error::Throttled`](crate::Error::Throttled) into `429` with `Retry-After`, store errors and timeouts
/// into `503`. See the [module documentation](crate::throttle) for the rules.
///
/// # Example
///
/// ```
/// use std::{net::IpAddr, time::Duration};
/// use login_manager::{LoginThrottle, MemoryThrottleStore};
///
/// # async fn verify(_u: &str, _p: &str) -> bool { false }
/// async fn login(
///     throttle: &LoginThrottle,
///     username: &str,
///     password: &str,
///     addr: Option<IpAddr>,
/// ) -> login_manager::Result<bool> {
///     throttle.check(username, addr).await?; // 429 when locked
///     if verify(username, password).await {
///         throttle.record_success(username).await?;
///         Ok(true)
///     } else {
///         throttle.record_failure(username, addr).await?;
///         Ok(false) // the app answers 401
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let throttle = LoginThrottle::new(MemoryThrottleStore::new())
///     .max_failures(5)
///     .window(Duration::from_secs(15 * 60))
///     .max_failures_per_address(50)
///     .trusted_proxies(vec!["10.0.0.2".parse().unwrap()]);
///
/// assert!(!login(&throttle, "alice", "wrong", None).await.unwrap());
/// # }
/// ```
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Limits>,
}

impl LoginThrottle {
    /// A throttle over `store` with the defaults: 5 failures per account and 50 per address
    /// within 15 minutes, a 5 s store timeout, no trusted proxies.
    pub fn new(store: impl ThrottleStore) -> Self {
        Self {
            inner: Arc::new(Limits {
                store: Arc::new(store),
                max_failures: DEFAULT_MAX_FAILURES,
                max_failures_per_address: None,
                window: DEFAULT_WINDOW,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                trusted_proxies: Vec::new(),
                device_cookie: CookieOptions::new(device::DEFAULT_COOKIE_NAME),
                device_lifetime: device::DEFAULT_LIFETIME,
                proxy_warned: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    fn config(&mut self) -> &mut Limits {
        Arc::make_mut(&mut self.inner)
    }

    /// Failures per account within one window after which the account is locked (default
    /// 5): with 5, five wrong passwords are answered normally and the sixth attempt is
    /// refused.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    #[must_use]
    pub fn max_failures(mut self, n: u32) -> Self {
        assert!(n > 0, "LoginThrottle::max_failures must be at least 1");
        self.config().max_failures = n;
        self
    }

    /// Failures per client address within one window after which the address is locked,
    /// whatever usernames it tried (default: 10 × [`max_failures`](Self::max_failures)).
    /// Stops one client from guessing a few passwords for many accounts.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    #[must_use]
    pub fn max_failures_per_address(mut self, n: u32) -> Self {
        assert!(
            n > 0,
            "LoginThrottle::max_failures_per_address must be at least 1"
        );
        self.config().max_failures_per_address = Some(n);
        self
    }

    /// Length of the fixed window (default 15 minutes), counted from a key's first failure;
    /// also how long a lock lasts at most. Shared stores work in whole seconds or
    /// milliseconds; use at least one second.
    ///
    /// # Panics
    ///
    /// If `window` is zero.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        assert!(!window.is_zero(), "LoginThrottle::window must not be zero");
        self.config().window = window;
        self
    }

    /// Maximum time one store call may take (default 5 s); a slower call fails with
    /// [`Error::Timeout`](crate::Error::Timeout)`("throttle store")`, which refuses the login with `503`.
    #[must_use]
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config().store_timeout = timeout;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` header is believed (default: none). See
    /// [`client_addr`](crate::throttle::client_addr).
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.config().trusted_proxies = proxies;
        self
    }

    /// The client's address for this request, honouring `X-Forwarded-For` only from the
    /// configured [`trusted_proxies`](Self::trusted_proxies). See [`client_addr`](crate::throttle::client_addr).
    ///
    /// When a request carries `X-Forwarded-For` and no trusted proxy is configured, logs one
    /// warning (once per throttle): behind a reverse proxy, every client would share the
    /// proxy's address, and its per-address limit would lock out everyone at once.
    pub fn client_addr(&self, parts: &Parts) -> Option<IpAddr> {
        self.client_addr_of(&PeerInfo::from_parts(parts))
    }

    /// Like [`client_addr`](Self::client_addr), from captured [`PeerInfo`].
    pub fn client_addr_of(&self, peer: &PeerInfo) -> Option<IpAddr> {
        if self.inner.trusted_proxies.is_empty()
            && peer.carries_forwarded_for()
            && !self.inner.proxy_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                peer = ?peer,
                "login throttle: requests carry X-Forwarded-For but no trusted proxy is \
                 configured, so every client behind the proxy counts as the proxy's address. \
                 List your reverse proxies with `LoginThrottle::trusted_proxies(vec![...])`; \
                 if there is no proxy, clients are forging the header and it is ignored"
            );
        }
        peer.client_addr(&self.inner.trusted_proxies)
    }

    /// The device cookie's attributes (default: name `device`, `HttpOnly`, `SameSite=Lax`,
    /// `Secure`, `Path=/`). See [`attempt`](Self::attempt).
    #[must_use]
    pub fn device_cookie(mut self, cookie: CookieOptions) -> Self {
        self.config().device_cookie = cookie;
        self
    }

    /// Shorthand for the device cookie's `Secure` attribute (turn off only for plain HTTP).
    #[must_use]
    pub fn secure(self, secure: bool) -> Self {
        let cookie = self.inner.device_cookie.clone().secure(secure);
        self.device_cookie(cookie)
    }

    /// How long a device cookie, and its registration in the store, lives (default one year,
    /// the most the memory store keeps a window).
    ///
    /// # Panics
    ///
    /// If `lifetime` is zero.
    #[must_use]
    pub fn device_lifetime(mut self, lifetime: Duration) -> Self {
        assert!(
            !lifetime.is_zero(),
            "LoginThrottle::device_lifetime must not be zero"
        );
        self.config().device_lifetime = lifetime;
        self
    }

    /// The name of the device cookie in requests (with the `__Host-` prefix when set).
    pub fn device_cookie_name(&self) -> String {
        self.inner.device_cookie.cookie_name()
    }

    /// Refuses the attempt when the account or the address is locked.
    ///
    /// Returns [`Error::Throttled`](crate::Error::Throttled) with the time until the longest applicable window ends
    /// (rounded up to whole seconds, at least one), a store error or [`Error::Timeout`](crate::Error::Timeout) when
    /// the store fails — never `Ok` without an answer from the store. Call it before verifying
    /// the password: a locked account is refused even with the right one.
    ///
    /// # Errors
    ///
    /// [`Error::Throttled`](crate::Error::Throttled) (429) when locked; the store's error, normally [`Error::Store`](crate::Error::Store),
    /// or [`Error::Timeout`](crate::Error::Timeout) (both 503) when the store cannot answer.
    pub async fn check(&self, username: &str, addr: Option<IpAddr>) -> Result<()> {
        self.inner.check_account(&account_key(username), addr).await
    }

    /// Counts a failed login for the account and, when known, the address. Call it for a
    /// wrong password and for an unknown username alike.
    ///
    /// Logs a `tracing` warning when this failure locks a key.
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`](crate::Error::Timeout) when a counter could not be incremented.
    pub async fn record_failure(&self, username: &str, addr: Option<IpAddr>) -> Result<()> {
        self.inner
            .record_account_failure(&account_key(username), addr)
            .await
    }

    /// Resets the account's failure counter after a successful login. The address's counter
    /// is kept, so that a client cannot clear its record by logging into an account of its
    /// own between guesses.
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`](crate::Error::Timeout) when the counter could not be reset.
    pub async fn record_success(&self, username: &str) -> Result<()> {
        self.inner.reset(&account_key(username)).await
    }

    /// Lets a login attempt through, or refuses it with [`Error::Throttled`](crate::Error::Throttled).
    ///
    /// `device_cookie` is the value of the request's device cookie
    /// ([`device_cookie_name`](Self::device_cookie_name)), if any. When it is registered for
    /// this account, the attempt is judged only by that device's own failures; otherwise by
    /// the account's and the address's, as [`check`](Self::check) does. See the
    /// [module documentation](crate::throttle#device-cookies) and [`LoginAttempt`].
    ///
    /// # Errors
    ///
    /// [`Error::Throttled`](crate::Error::Throttled) (429) when refused; the store's error or [`Error::Timeout`](crate::Error::Timeout) (503)
    /// when the store cannot answer.
    pub async fn attempt(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        device_cookie: Option<&str>,
    ) -> Result<LoginAttempt> {
        device::admit(&self.inner, username, addr, device_cookie).await
    }
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("max_failures", &self.inner.max_failures)
            .field("max_failures_per_address", &self.inner.address_limit())
            .field("window", &self.inner.window)
            .field("store_timeout", &self.inner.store_timeout)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .finish_non_exhaustive()
    }
}
