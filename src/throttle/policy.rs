//! [`LoginThrottle`]: the builder and the public face of login throttling.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::device::{self, LoginAttempt};
use super::limits::{
    account_key, token_key, Limits, DEFAULT_MAX_FAILURES, DEFAULT_STORE_TIMEOUT, DEFAULT_WINDOW,
};
use super::ThrottleStore;
use crate::client::PeerInfo;
use crate::{CookieOptions, Result};

/// Counts failed logins per account and per client address and refuses further attempts once
/// a limit is reached. Cheap to clone (one `Arc`).
///
/// # How it works
///
/// A login handler asks [`check`](Self::check) before verifying a password — before looking
/// the user up, so that a locked key costs no password hash — then reports the outcome with
/// [`record_failure`](Self::record_failure) (a wrong password and an unknown username alike)
/// or [`record_success`](Self::record_success) after a successful login. Failures are counted
/// under two keys: the account (the username as typed, Unicode lower-cased) and the client
/// address (see [`trusted_proxies`](Self::trusted_proxies)). Once a key has `max_failures`
/// failures (default 5; per address `10 × max_failures`) within one `window` (default 15
/// minutes), `check` answers [`Error::Throttled`](crate::Error::Throttled) — even when the
/// password would have been right — until the window ends. A success resets the account's
/// counter but not the address's.
///
/// Errors convert into responses: [`Error::Throttled`](crate::Error::Throttled) into `429`
/// with `Retry-After`, store errors and timeouts into `503`.
/// [`AuthSession::login_with_password`](crate::AuthSession::login_with_password) does all of
/// this, device cookies included, with the throttle set by
/// [`LoginManager::login_throttle`](crate::LoginManager::login_throttle).
///
/// # Device cookies
///
/// A lock on an account or an address refuses everyone, the account's owner included: an
/// attacker who spends five wrong passwords on `alice` locks alice out, and fifty wrong
/// passwords through a shared address (a reverse proxy, a NAT) lock out every user behind it.
/// OWASP's *device cookies* ("Slow Down Online Guessing Attacks with Device Cookies") keep the
/// limits and take the weapon away:
///
/// - a successful login gives the browser a device cookie for that account: 32 random bytes,
///   stored server-side only as a SHA-256 digest bound to the account (no secret key: the
///   cookie is worth nothing unless the store knows its digest);
/// - an attempt for that account from a browser holding its valid device cookie is judged
///   only by that device's own failures (`max_failures` per window): a locked account, a
///   locked address — locks other clients caused — never refuse it;
/// - every other attempt is judged as before, by the account's and the address's counters.
///
/// [`attempt`](Self::attempt) does all of it and returns a [`LoginAttempt`] to report the
/// outcome on; [`AuthSession::login_with_password`](crate::AuthSession::login_with_password)
/// reads and sets the cookie. A browser holds one device cookie: a login into another account
/// replaces it. A trusted success resets the device's failures, not the account's, so that the
/// owner's login does not give an attacker a fresh set of guesses.
///
/// What stays: a thief of the device cookie gets the device's own `max_failures` guesses per
/// window (OWASP accepts this; the cookie is `HttpOnly`), and an attacker who never logged in
/// still meets the account and address limits.
/// [`MemoryThrottleStore`](crate::MemoryThrottleStore) evicts year-long registrations last,
/// but under a spray above its key cap it may forget one: that browser is then judged like any
/// other until its next login.
///
/// The registration and the device's failures are two keys of the [`ThrottleStore`]
/// (`dev:<digest>`, a window as long as the cookie lives, and `devfail:<digest>`), so every
/// throttle store holds device cookies with no new method. A cookie that does not decode, or
/// that was issued for another account, is simply not trusted: it costs no store call in the
/// first case and one read in the second.
///
/// # Why a fixed window
///
/// The window starts at the first failure and does not move: further failures neither extend
/// nor restart it. That is the one rule every shared store can apply atomically in one round
/// trip — Redis `INCR` + `PEXPIRE … NX`, one SQL upsert (see [`ThrottleStore`]) — so the
/// same limit holds across any number of app instances. A sliding window would need a log of
/// timestamps per key. The cost is that an attacker can spend up to `2 × max_failures`
/// guesses around a window boundary, which does not change the order of magnitude.
///
/// # Enumeration resistance
///
/// The throttle never knows whether an account exists: an unknown username is counted, locked
/// and answered exactly like a real one, so a `429` reveals nothing an attacker did not already
/// cause. Long usernames are hashed into fixed-size keys, so the key size does not depend on
/// the input either.
///
/// # Bounded memory
///
/// Every distinct username an attacker sprays creates a key.
/// [`MemoryThrottleStore`](crate::MemoryThrottleStore) therefore holds at most a fixed number
/// of keys (default 100 000) and evicts, in bounded amortized time, the windows that end
/// soonest; the per-address limit bounds how fast one client can create keys at all. Shared
/// stores expire keys with the window (Redis TTL, SQL cleanup).
///
/// # Examples
///
/// The limit at work:
///
/// ```
/// use std::net::IpAddr;
/// use login_manager::{Error, LoginThrottle, MemoryThrottleStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let throttle = LoginThrottle::new(MemoryThrottleStore::new());
/// let addr: Option<IpAddr> = Some("203.0.113.7".parse().unwrap());
///
/// for _ in 0..5 {
///     throttle.check("alice", addr).await?; // allowed: the password is checked...
///     throttle.record_failure("alice", addr).await?; // ...and was wrong
/// }
/// // The sixth attempt is refused before the password is even looked at.
/// assert!(matches!(
///     throttle.check("Alice", addr).await,
///     Err(Error::Throttled { .. })
/// ));
/// # Ok(())
/// # }
/// ```
///
/// In a login handler of its own (rather than
/// [`login_with_password`](crate::AuthSession::login_with_password)):
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

    /// Reverse proxies whose `X-Forwarded-For` header is believed (default: none): they decide
    /// the client address that [`client_addr`](Self::client_addr) returns and the per-address
    /// limit counts.
    ///
    /// - The address is the socket peer from axum's `ConnectInfo<SocketAddr>` (serve the app
    ///   with `into_make_service_with_connect_info::<SocketAddr>()`); without it there is no
    ///   address, and only the per-account limits apply.
    /// - From a peer that is not one of `proxies`, `X-Forwarded-For` is ignored: the peer is
    ///   the client.
    /// - When the peer is a trusted proxy, `X-Forwarded-For` (several header lines form one
    ///   list, in order) is read from the right, skipping trusted proxies, and the first
    ///   untrusted entry is the client: entries further left were written by the client itself
    ///   and can be forged. When every entry is a trusted proxy, the left-most one counts. An
    ///   entry may carry a port (`203.0.113.7:5`, `[2001:db8::1]:5`).
    /// - An unparsable entry, or a header line that is not text, makes the throttle fall back
    ///   to the socket peer.
    /// - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4
    ///   peers) are taken as IPv4, in requests and in `proxies` alike.
    /// - An IPv6 client is counted per /64, what one subscriber usually gets: counting each of
    ///   its 2^64 addresses apart would make the per-address limit meaningless.
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use axum::extract::ConnectInfo;
    /// use login_manager::{LoginThrottle, MemoryThrottleStore};
    ///
    /// let proxy: IpAddr = "10.0.0.2".parse().unwrap();
    /// let (mut parts, ()) = http::Request::builder()
    ///     .header("x-forwarded-for", "1.1.1.1, 203.0.113.7")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// parts.extensions.insert(ConnectInfo(SocketAddr::new(proxy, 443)));
    ///
    /// let behind_proxy =
    ///     LoginThrottle::new(MemoryThrottleStore::new()).trusted_proxies(vec![proxy]);
    /// assert_eq!(behind_proxy.client_addr(&parts), Some("203.0.113.7".parse().unwrap()));
    /// // Without the proxy in the list, the header is not believed.
    /// let direct = LoginThrottle::new(MemoryThrottleStore::new());
    /// assert_eq!(direct.client_addr(&parts), Some(proxy));
    /// ```
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.config().trusted_proxies = proxies;
        self
    }

    /// The client's address for this request, honouring `X-Forwarded-For` only from the
    /// configured [`trusted_proxies`](Self::trusted_proxies), which describes the rule; `None`
    /// without axum's `ConnectInfo<SocketAddr>`.
    ///
    /// When a request carries `X-Forwarded-For` and no trusted proxy is configured, logs one
    /// warning (once per throttle): behind a reverse proxy, every client would share the
    /// proxy's address, and its per-address limit would lock out everyone at once.
    pub fn client_addr(&self, parts: &Parts) -> Option<IpAddr> {
        self.client_addr_of(&PeerInfo::from_parts(parts))
    }

    /// Like [`client_addr`](Self::client_addr), from captured `PeerInfo`.
    pub(crate) fn client_addr_of(&self, peer: &PeerInfo) -> Option<IpAddr> {
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

    /// One-time tokens ([`OneTimeTokens`](crate::OneTimeTokens)): refuses while the token
    /// (by its selector; `None` for a token that does not even parse) or the address is
    /// locked. Token keys have a namespace of their own (`otk:`), apart from accounts.
    pub(crate) async fn check_token(
        &self,
        selector: Option<&str>,
        addr: Option<IpAddr>,
    ) -> Result<()> {
        let key = selector.map(token_key);
        self.inner.check_keys(key.as_deref(), addr).await
    }

    /// Counts a failed one-time token for the token (when it parsed) and the address.
    pub(crate) async fn record_token_failure(
        &self,
        selector: Option<&str>,
        addr: Option<IpAddr>,
    ) -> Result<()> {
        let key = selector.map(token_key);
        let key = key.as_deref().map(|k| (k, "one-time token"));
        self.inner.record_failure_of(key, addr).await
    }

    /// Lets a login attempt through, or refuses it with [`Error::Throttled`](crate::Error::Throttled).
    ///
    /// `device_cookie` is the value of the request's device cookie
    /// ([`device_cookie_name`](Self::device_cookie_name)), if any. When it is registered for
    /// this account, the attempt is judged only by that device's own failures; otherwise by
    /// the account's and the address's, as [`check`](Self::check) does. See
    /// [Device cookies](Self#device-cookies) and [`LoginAttempt`].
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
