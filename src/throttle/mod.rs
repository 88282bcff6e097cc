//! Login throttling: a cap on failed logins per account and per client address.
//!
//! # How it works
//!
//! A login handler asks [`LoginThrottle::check`] before verifying a password, then reports the
//! outcome with [`LoginThrottle::record_failure`] or [`LoginThrottle::record_success`]. Failures
//! are counted under two keys: the account (the username as typed, Unicode lower-cased) and the
//! client address. Once a key has `max_failures` failures (default 5; per address
//! `10 × max_failures`) within one `window` (default 15 minutes), `check` answers
//! [`Error::Throttled`] — even when the password would have been right — until the window ends.
//! A success resets the account's counter but not the address's.
//!
//! # Device cookies
//!
//! A lock on an account or an address refuses everyone, the account's owner included: an
//! attacker who spends five wrong passwords on `alice` locks alice out, and fifty wrong
//! passwords through a shared address (a reverse proxy, a NAT) lock out every user behind it.
//! OWASP's *device cookies* ("Slow Down Online Guessing Attacks with Device Cookies") keep the
//! limits and take the weapon away:
//!
//! - a successful login gives the browser a device cookie for that account: 32 random bytes,
//!   stored server-side only as a SHA-256 digest bound to the account (no secret key: the
//!   cookie is worth nothing unless the store knows its digest);
//! - an attempt for that account from a browser holding its valid device cookie is judged
//!   only by that device's own failures (`max_failures` per window): a locked account, a
//!   locked address — locks other clients caused — never refuse it;
//! - every other attempt is judged as before, by the account's and the address's counters.
//!
//! [`LoginThrottle::attempt`] does all of it and returns a [`LoginAttempt`] to report the
//! outcome on; [`AuthSession::login_with_password`](crate::AuthSession::login_with_password)
//! reads and sets the cookie. A browser holds one device cookie: a login into another account
//! replaces it. A trusted success resets the device's failures, not the account's, so that the
//! owner's login does not give an attacker a fresh set of guesses.
//!
//! What stays: a thief of the device cookie gets the device's own `max_failures` guesses per
//! window (OWASP accepts this; the cookie is `HttpOnly`), and an attacker who never logged in
//! still meets the account and address limits. [`MemoryThrottleStore`] evicts year-long
//! registrations last, but under a spray above its key cap it may forget one: that browser
//! is then judged like any other until its next login.
//!
//! The registration and the device's failures are two keys of the [`ThrottleStore`]
//! (`dev:<digest>`, a window as long as the cookie lives, and `devfail:<digest>`), so every
//! throttle store holds device cookies with no new method. A cookie that does not decode, or
//! that was issued for another account, is simply not trusted: it costs no store call in the
//! first case and one read in the second.
//!
//! # Why a fixed window
//!
//! The window starts at the first failure and does not move: further failures neither extend
//! nor restart it. That is the one rule every shared store can apply atomically in one round
//! trip — Redis `INCR` + `PEXPIRE … NX`, one SQL upsert (see [`ThrottleStore`]) — so the same
//! limit holds across any number of app instances. A sliding window would need a log of
//! timestamps per key. The cost is that an attacker can spend up to `2 × max_failures` guesses
//! around a window boundary, which does not change the order of magnitude.
//!
//! # Enumeration resistance
//!
//! The throttle never knows whether an account exists: an unknown username is counted, locked
//! and answered exactly like a real one, so a `429` reveals nothing an attacker did not already
//! cause. Long usernames are hashed into fixed-size keys, so the key size does not depend on
//! the input either.
//!
//! # Bounded memory
//!
//! Every distinct username an attacker sprays creates a key. [`MemoryThrottleStore`] therefore
//! holds at most a fixed number of keys (default 100 000) and evicts, in bounded amortized
//! time, the windows that end soonest; the per-address limit bounds how fast one client can
//! create keys at all. Shared stores expire keys with the window (Redis TTL, SQL cleanup).
//!
//! # Example
//!
//! ```
//! use std::net::IpAddr;
//! use login_manager::{Error, LoginThrottle, MemoryThrottleStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> login_manager::Result<()> {
//! let throttle = LoginThrottle::new(MemoryThrottleStore::new());
//! let addr: Option<IpAddr> = Some("203.0.113.7".parse().unwrap());
//!
//! for _ in 0..5 {
//!     throttle.check("alice", addr).await?; // allowed: the password is checked...
//!     throttle.record_failure("alice", addr).await?; // ...and was wrong
//! }
//! // The sixth attempt is refused before the password is even looked at.
//! assert!(matches!(
//!     throttle.check("Alice", addr).await,
//!     Err(Error::Throttled { .. })
//! ));
//! # Ok(())
//! # }
//! ```

mod device;
mod memory;
mod store;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use sha2::{Digest, Sha256};

pub use device::LoginAttempt;
pub use memory::MemoryThrottleStore;
pub use store::{ThrottleEntry, ThrottleStore};

use crate::client::canonical;
pub use crate::client::{client_addr, PeerInfo};
use crate::{CookieOptions, Error, Result};

/// Default number of failures that locks an account.
const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default length of a throttle window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The per-address limit, when not set, is this many times the per-account limit.
const DEFAULT_ADDRESS_FACTOR: u32 = 10;
/// Default timeout of one store call.
const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Usernames longer than this (in bytes, after lower-casing) are stored as a SHA-256 digest.
const MAX_PLAIN_USERNAME_LEN: usize = 64;
/// Lower-case hex digits, for digests in keys.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Counts failed logins per account and per client address and refuses further attempts once
/// a limit is reached. Cheap to clone (one `Arc`).
///
/// Use it in the login handler: [`check`](Self::check) first — before looking the user up or
/// verifying the password, so a locked key costs no password hash — then
/// [`record_failure`](Self::record_failure) on a wrong username or password, or
/// [`record_success`](Self::record_success) after a successful login. Errors convert into
/// responses: [`Error::Throttled`] into `429` with `Retry-After`, store errors and timeouts
/// into `503`. See the [module documentation](self) for the rules.
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
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    store: Arc<dyn ThrottleStore>,
    max_failures: u32,
    /// `None`: ten times `max_failures`, whatever that is set to.
    max_failures_per_address: Option<u32>,
    window: Duration,
    store_timeout: Duration,
    trusted_proxies: Vec<IpAddr>,
    device_cookie: CookieOptions,
    device_lifetime: Duration,
    /// Shared by clones: the unconfigured-proxy warning is logged once per throttle.
    proxy_warned: Arc<AtomicBool>,
}

impl LoginThrottle {
    /// A throttle over `store` with the defaults: 5 failures per account and 50 per address
    /// within 15 minutes, a 5 s store timeout, no trusted proxies.
    pub fn new(store: impl ThrottleStore) -> Self {
        Self {
            inner: Arc::new(Inner {
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

    fn config(&mut self) -> &mut Inner {
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
    /// [`Error::Timeout`]`("throttle store")`, which refuses the login with `503`.
    #[must_use]
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config().store_timeout = timeout;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` header is believed (default: none). See
    /// [`client_addr`].
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.config().trusted_proxies = proxies;
        self
    }

    /// The client's address for this request, honouring `X-Forwarded-For` only from the
    /// configured [`trusted_proxies`](Self::trusted_proxies). See [`client_addr`].
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

    fn address_limit(&self) -> u32 {
        self.inner.max_failures_per_address.unwrap_or_else(|| {
            self.inner
                .max_failures
                .saturating_mul(DEFAULT_ADDRESS_FACTOR)
        })
    }

    /// Refuses the attempt when the account or the address is locked.
    ///
    /// Returns [`Error::Throttled`] with the time until the longest applicable window ends
    /// (rounded up to whole seconds, at least one), a store error or [`Error::Timeout`] when
    /// the store fails — never `Ok` without an answer from the store. Call it before verifying
    /// the password: a locked account is refused even with the right one.
    ///
    /// # Errors
    ///
    /// [`Error::Throttled`] (429) when locked; the store's error, normally [`Error::Store`],
    /// or [`Error::Timeout`] (both 503) when the store cannot answer.
    pub async fn check(&self, username: &str, addr: Option<IpAddr>) -> Result<()> {
        self.check_account(&account_key(username), addr).await
    }

    /// [`check`](Self::check) for an account key.
    async fn check_account(&self, account: &str, addr: Option<IpAddr>) -> Result<()> {
        let mut retry_after = self.lock_left(account, self.inner.max_failures).await?;
        if let Some(addr) = addr {
            let address = self
                .lock_left(&address_key(addr), self.address_limit())
                .await?;
            retry_after = retry_after.max(address);
        }
        refuse_while(retry_after)
    }

    /// Counts a failed login for the account and, when known, the address. Call it for a
    /// wrong password and for an unknown username alike.
    ///
    /// Logs a `tracing` warning when this failure locks a key.
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`] when a counter could not be incremented.
    pub async fn record_failure(&self, username: &str, addr: Option<IpAddr>) -> Result<()> {
        self.record_account_failure(&account_key(username), addr)
            .await
    }

    /// [`record_failure`](Self::record_failure) for an account key.
    async fn record_account_failure(&self, account: &str, addr: Option<IpAddr>) -> Result<()> {
        self.count_failure(account, self.inner.max_failures, "account")
            .await?;
        if let Some(addr) = addr {
            self.count_failure(&address_key(addr), self.address_limit(), "address")
                .await?;
        }
        Ok(())
    }

    /// Counts one failure under `key`; logs a `tracing` warning when it reaches `limit`.
    async fn count_failure(&self, key: &str, limit: u32, what: &'static str) -> Result<()> {
        let entry = self
            .timed(self.inner.store.record_failure(key, self.inner.window))
            .await?;
        if entry.count == limit {
            // `?`: the key is attacker-chosen text; Debug escapes control characters.
            tracing::warn!(key = ?key, failures = entry.count, "login throttle: {what} locked");
        }
        Ok(())
    }

    /// Resets the account's failure counter after a successful login. The address's counter
    /// is kept, so that a client cannot clear its record by logging into an account of its
    /// own between guesses.
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`] when the counter could not be reset.
    pub async fn record_success(&self, username: &str) -> Result<()> {
        self.reset(&account_key(username)).await
    }

    async fn reset(&self, key: &str) -> Result<()> {
        self.timed(self.inner.store.reset(key)).await
    }

    /// Time left on `key`'s lock, or `None` when it has fewer than `limit` failures.
    async fn lock_left(&self, key: &str, limit: u32) -> Result<Option<Duration>> {
        let entry = self.timed(self.inner.store.failures(key)).await?;
        Ok(entry.filter(|e| e.count >= limit).map(|e| e.expires_in))
    }

    async fn timed<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.inner.store_timeout, call)
            .await
            .map_err(|_| Error::Timeout("throttle store"))?
    }
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("max_failures", &self.inner.max_failures)
            .field("max_failures_per_address", &self.address_limit())
            .field("window", &self.inner.window)
            .field("store_timeout", &self.inner.store_timeout)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// `Err(Throttled)` while a lock has time left.
fn refuse_while(lock_left: Option<Duration>) -> Result<()> {
    match lock_left {
        None => Ok(()),
        Some(left) => Err(Error::Throttled {
            retry_after: round_up_to_secs(left),
        }),
    }
}

/// The store key of an account: the username lower-cased (so `Alice` and `alice` share a
/// counter), hashed when long so that key size is bounded whatever the input.
fn account_key(username: &str) -> String {
    let folded = username.to_lowercase();
    if folded.len() <= MAX_PLAIN_USERNAME_LEN {
        // A different prefix from the hashed form: a short username that happens to look
        // like a hex digest cannot collide with a hashed one.
        format!("acct:{folded}")
    } else {
        format!("acct-sha256:{}", hex_sha256(&[folded.as_bytes()]))
    }
}

/// Lower-case hex of the SHA-256 of `parts`, concatenated.
fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// The store key of a client address. An IPv6 client is counted per /64: that is what one
/// subscriber usually gets, and counting each of its 2^64 addresses apart would make the
/// per-address limit meaningless.
fn address_key(addr: IpAddr) -> String {
    match canonical(addr) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("ip:{prefix}/64")
        }
    }
}

/// `Retry-After` is in whole seconds: round up, so a client that waits that long is not
/// refused again, and never say 0.
fn round_up_to_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(account_key("Alice"), "acct:alice");
        assert_eq!(address_key("::ffff:1.2.3.4".parse().unwrap()), "ip:1.2.3.4");
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "ip:2001:db8:1:2::/64"
        );
        assert!(account_key(&"x".repeat(65)).starts_with("acct-sha256:"));
        assert_eq!(
            round_up_to_secs(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(round_up_to_secs(Duration::ZERO), Duration::from_secs(1));
    }
}
