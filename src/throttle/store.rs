//! [`ThrottleStore`]: where failure windows live, and its contract.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// The state of one key's current window, as returned by a [`ThrottleStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleEntry {
    /// Failures counted in the current window; at least 1.
    pub count: u32,
    /// Time left until the window ends, measured on the store's clock; greater than zero.
    ///
    /// A duration rather than a timestamp, so that app instances whose clocks disagree with
    /// each other or with the database still agree on when a lock ends (Redis `PTTL` returns
    /// exactly this).
    pub expires_in: Duration,
}

/// Storage for failure counters with a fixed window: the part of [`LoginThrottle`](crate::LoginThrottle) that a
/// deployment swaps for a shared database.
///
/// # Contract
///
/// Keys are opaque strings built by [`LoginThrottle`](crate::LoginThrottle) (`acct:…`, `acct-sha256:…`, `ip:…`, and
/// for device cookies `dev:…` and `devfail:…`; at most about 80 bytes of UTF-8). A device
/// cookie's registration is a window as long as the cookie lives (a year by default), opened
/// by [`record_failure`](Self::record_failure) and read with [`failures`](Self::failures): a
/// store must keep windows of that length. A store may add its own prefix but must not alter them
/// otherwise; in particular it must not fold case again.
///
/// For each key the store keeps at most one *window*: a failure count and the instant the
/// window ends. A window is *open* while that instant is in the future; an expired window
/// behaves exactly as if it had never existed (it may be deleted lazily).
///
/// - [`failures`](Self::failures) returns the open window (`count >= 1`,
///   `expires_in > 0`), or `None` when there is none. It changes nothing.
/// - [`record_failure`](Self::record_failure) atomically either opens a window
///   (`count = 1`, ending `window` from now) when none is open, or increments the open one's
///   count (saturating at `u32::MAX`) *without* moving its end. It returns the window after
///   the change. Concurrent calls never lose an increment: `n` concurrent calls on a key with
///   no open window return the counts `1..=n`, each exactly once.
/// - [`reset`](Self::reset) deletes the key's window. Resetting a key that has none is `Ok`.
/// - Any failure of the backend is returned as an error, normally
///   [`Error::Store`](crate::Error::Store); a store never invents an entry or answers `None` because the
///   backend was unreachable. [`LoginThrottle`](crate::LoginThrottle) turns such errors into a refusal (503),
///   never into a login.
/// - A store applies no timeout of its own: every call is bounded by the caller,
///   [`LoginThrottle::store_timeout`](crate::LoginThrottle::store_timeout) (default 5 s), past
///   which the login is refused with [`Error::Timeout`](crate::Error::Timeout)`("throttle store")`.
/// - Time is the store's own clock (the Redis server's, the database's `now()`), with
///   at least one-second precision; windows are at least one second long.
/// - A store may forget a window early (eviction under memory pressure); it must document
///   when.
///
/// # Mapping onto shared stores
///
/// Redis: `MULTI; INCR k; PEXPIRE k <window ms> NX; PTTL k; EXEC` (or the same as a Lua
/// script before Redis 7, which lacks `NX`). `NX` sets the expiry only on the increment that
/// created the key, and also heals a key that somehow lost its TTL. `failures` is
/// `GET k` + `PTTL k`; `reset` is `DEL k`.
///
/// SQL, table `throttle(key TEXT PRIMARY KEY, count INT, window_end TIMESTAMPTZ)`:
///
/// ```sql
/// INSERT INTO throttle (key, count, window_end) VALUES ($1, 1, now() + $2)
/// ON CONFLICT (key) DO UPDATE SET
///   count      = CASE WHEN throttle.window_end <= now() THEN 1 ELSE throttle.count + 1 END,
///   window_end = CASE WHEN throttle.window_end <= now() THEN EXCLUDED.window_end
///                     ELSE throttle.window_end END
/// RETURNING count, window_end - now();
/// ```
///
/// plus a periodic `DELETE FROM throttle WHERE window_end <= now()`.
///
/// # Example
///
/// A store that always fails, for testing that errors refuse the login:
///
/// ```
/// use std::time::Duration;
/// use login_manager::{Error, LoginThrottle, Result, ThrottleStore};
/// use login_manager::ThrottleEntry;
///
/// struct Down;
///
/// #[async_trait::async_trait]
/// impl ThrottleStore for Down {
///     async fn failures(&self, _key: &str) -> Result<Option<ThrottleEntry>> {
///         Err(Error::Store("connection refused".into()))
///     }
///     async fn record_failure(&self, _key: &str, _window: Duration) -> Result<ThrottleEntry> {
///         Err(Error::Store("connection refused".into()))
///     }
///     async fn reset(&self, _key: &str) -> Result<()> {
///         Err(Error::Store("connection refused".into()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let throttle = LoginThrottle::new(Down);
/// assert!(matches!(throttle.check("alice", None).await, Err(Error::Store(_))));
/// # }
/// ```
#[async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// The open window of `key`, or `None` when there is none (never opened, expired or
    /// reset).
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>>;

    /// Counts one failure for `key`: opens a window of length `window` with a count of 1 when
    /// none is open, else increments the open window's count without moving its end. Returns
    /// the window after the change. Must be atomic.
    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry>;

    /// Forgets `key`'s window, if any.
    async fn reset(&self, key: &str) -> Result<()>;
}

/// A shared store is a store: lets an app pick the backend at run time
/// (`Arc<dyn ThrottleStore>`).
#[async_trait]
impl<T: ThrottleStore + ?Sized> ThrottleStore for Arc<T> {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        (**self).failures(key).await
    }

    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        (**self).record_failure(key, window).await
    }

    async fn reset(&self, key: &str) -> Result<()> {
        (**self).reset(key).await
    }
}
