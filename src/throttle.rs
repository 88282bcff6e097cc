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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use http::request::Parts;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{Error, Result};

/// Default number of failures that locks an account.
const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default length of a throttle window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The per-address limit, when not set, is this many times the per-account limit.
const DEFAULT_ADDRESS_FACTOR: u32 = 10;
/// Default timeout of one store call.
const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the keys a [`MemoryThrottleStore`] tracks.
const DEFAULT_CAPACITY_LIMIT: usize = 100_000;
/// Usernames longer than this (in bytes, after lower-casing) are stored as a SHA-256 digest.
const MAX_PLAIN_USERNAME_LEN: usize = 64;
/// Lower-case hex digits, for digests in keys.
const HEX: &[u8; 16] = b"0123456789abcdef";
/// The memory store caps windows at a year, so that `Instant + window` cannot overflow.
const MAX_MEMORY_WINDOW: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// How many expired windows one write may purge on its way, so that the cost of a write stays
/// bounded even after a long quiet period left many entries expired.
const PURGE_BATCH: usize = 16;

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

/// Storage for failure counters with a fixed window: the part of [`LoginThrottle`] that a
/// deployment swaps for a shared database.
///
/// # Contract
///
/// Keys are opaque strings built by [`LoginThrottle`] (`acct:…`, `acct-sha256:…`, `ip:…`; at
/// most about 80 bytes of UTF-8). A store may add its own prefix but must not alter them
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
///   [`Error::Store`]; a store never invents an entry or answers `None` because the
///   backend was unreachable. [`LoginThrottle`] turns such errors into a refusal (503),
///   never into a login.
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
/// use login_manager::throttle::ThrottleEntry;
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

/// An in-process [`ThrottleStore`] with a hard cap on the number of keys it tracks.
///
/// Good for a single instance; several instances behind a load balancer need a shared store,
/// or each one counts only the failures it saw itself. Clones share the same counters.
///
/// # Memory cap and eviction
///
/// Spraying random usernames creates one key per name, so the store tracks at most
/// [`capacity_limit`](Self::capacity_limit) keys (default 100 000, some 200–300 bytes each, so
/// about 25 MB when full).
/// Windows are also kept in a queue in the order they were opened. A write first purges a
/// few expired windows from the front of that queue; when the map is still full, it evicts the
/// window at the front: with one window length for all keys (as [`LoginThrottle`] uses), that
/// is the window that ends soonest, so an eviction gives away the least remaining lock time.
/// Each window enters the queue once and leaves it once, so a write costs O(1) amortized; there
/// is no scan of the map. Queue elements left behind by resets are compacted away once they
/// outnumber the live ones, which keeps the queue at about twice the map's size at most.
///
/// What an attacker gains: by opening more than `capacity_limit` new windows within one
/// window length, they can evict counters early — including an account's lock, or their own
/// address's — and so get more guesses per window than configured. Every new window costs
/// them a recorded failure, and each address gets only `max_failures_per_address` of those per
/// window (50 by default), so flushing 100 000 keys takes some 2 000 distinct addresses
/// (IPv6 counted per /64) per window, and each flush buys each target account only
/// `max_failures` more guesses. Deployments that face that scale should use a shared store or
/// raise the cap.
///
/// # Example
///
/// ```
/// use login_manager::{LoginThrottle, MemoryThrottleStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let store = MemoryThrottleStore::new().with_capacity_limit(10_000);
/// let throttle = LoginThrottle::new(store.clone());
/// throttle.record_failure("alice", None).await?;
/// assert_eq!(store.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryThrottleStore {
    inner: Arc<Mutex<MemoryState>>,
}

/// One open (or expired, not yet purged) window in the memory store.
struct MemoryEntry {
    count: u32,
    ends_at: Instant,
    /// Which window of this key this is, to tell its queue entry from stale ones.
    generation: u64,
}

struct MemoryState {
    capacity_limit: usize,
    /// `Arc<str>` keys are shared with `order`, so each key's bytes are stored once.
    map: HashMap<Arc<str>, MemoryEntry>,
    /// Windows in the order they were opened; an element is live while the map holds the
    /// same key with the same generation, and stale otherwise (reset or reopened).
    order: VecDeque<(Arc<str>, u64)>,
    next_generation: u64,
}

impl MemoryState {
    /// Whether a queue element still stands for the window the map holds.
    fn is_live(map: &HashMap<Arc<str>, MemoryEntry>, key: &str, generation: u64) -> bool {
        map.get(key).is_some_and(|e| e.generation == generation)
    }

    /// Pops stale queue elements and up to `PURGE_BATCH` expired windows off the front.
    fn purge_front(&mut self, now: Instant) {
        let mut purged = 0;
        while let Some((key, generation)) = self.order.front() {
            match self.map.get(&**key) {
                Some(e) if e.generation == *generation => {
                    if e.ends_at > now || purged == PURGE_BATCH {
                        return;
                    }
                    self.map.remove(&**key);
                    purged += 1;
                }
                // Stale: this window was reset or replaced; dropping it is free.
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Evicts the oldest live window; false when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((key, generation)) = self.order.pop_front() {
            if Self::is_live(&self.map, &key, generation) {
                self.map.remove(&*key);
                return true;
            }
        }
        false
    }

    /// Drops stale queue elements once they outnumber the live ones. Runs after at least
    /// `map.len()` stale elements accumulated, so it costs O(1) amortized per write.
    fn compact_if_needed(&mut self) {
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(key, generation)| Self::is_live(map, key, *generation));
        }
    }

    fn record_failure(&mut self, key: &str, window: Duration, now: Instant) -> ThrottleEntry {
        let window = window.min(MAX_MEMORY_WINDOW);
        self.purge_front(now);
        if let Some(e) = self.map.get_mut(key) {
            if e.ends_at > now {
                e.count = e.count.saturating_add(1);
                return ThrottleEntry {
                    count: e.count,
                    expires_in: e.ends_at - now,
                };
            }
        }
        // Open a new window. An expired entry for this key is replaced in place (its queue
        // element becomes stale); a new key may need room. A loop, not one eviction: the
        // limit may have been lowered below the current size.
        if !self.map.contains_key(key) {
            while self.map.len() >= self.capacity_limit && self.evict_one() {}
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let key: Arc<str> = Arc::from(key);
        self.map.insert(
            Arc::clone(&key),
            MemoryEntry {
                count: 1,
                ends_at: now + window,
                generation,
            },
        );
        self.order.push_back((key, generation));
        self.compact_if_needed();
        ThrottleEntry {
            count: 1,
            expires_in: window,
        }
    }
}

impl MemoryThrottleStore {
    /// An empty store tracking at most 100 000 keys.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(MemoryState {
                capacity_limit: DEFAULT_CAPACITY_LIMIT,
                map: HashMap::new(),
                order: VecDeque::new(),
                next_generation: 0,
            })),
        }
    }

    /// Sets the maximum number of keys tracked at once (default 100 000). Applies to every
    /// clone of this store; when lowered below the current size, the excess is evicted on the
    /// next writes.
    ///
    /// # Panics
    ///
    /// If `limit` is 0: such a store could never lock anything.
    pub fn with_capacity_limit(self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "MemoryThrottleStore capacity limit must be at least 1"
        );
        self.state().capacity_limit = limit;
        self
    }

    /// The maximum number of keys tracked at once.
    pub fn capacity_limit(&self) -> usize {
        self.state().capacity_limit
    }

    /// The number of keys currently tracked, including expired windows not yet purged.
    /// Never more than [`capacity_limit`](Self::capacity_limit) after a write.
    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.state().map.is_empty()
    }

    fn state(&self) -> MutexGuard<'_, MemoryState> {
        // Nothing inside the lock can panic halfway through an update that matters for
        // security, so a poisoned lock still holds usable state: keep throttling.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryThrottleStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryThrottleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryThrottleStore")
            .field("len", &state.map.len())
            .field("capacity_limit", &state.capacity_limit)
            .finish()
    }
}

#[async_trait]
impl ThrottleStore for MemoryThrottleStore {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        let now = Instant::now();
        let state = self.state();
        Ok(state
            .map
            .get(key)
            .filter(|e| e.ends_at > now)
            .map(|e| ThrottleEntry {
                count: e.count,
                expires_in: e.ends_at - now,
            }))
    }

    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        let now = Instant::now();
        Ok(self.state().record_failure(key, window, now))
    }

    async fn reset(&self, key: &str) -> Result<()> {
        let mut state = self.state();
        if state.map.remove(key).is_some() {
            state.compact_if_needed();
        }
        Ok(())
    }
}

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
    pub fn client_addr(&self, parts: &Parts) -> Option<IpAddr> {
        client_addr(parts, &self.inner.trusted_proxies)
    }

    /// Like [`client_addr`](Self::client_addr), from captured [`PeerInfo`].
    pub fn client_addr_of(&self, peer: &PeerInfo) -> Option<IpAddr> {
        peer.client_addr(&self.inner.trusted_proxies)
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
        let mut retry_after = self
            .lock_left(&account_key(username), self.inner.max_failures)
            .await?;
        if let Some(addr) = addr {
            let address = self
                .lock_left(&address_key(addr), self.address_limit())
                .await?;
            retry_after = retry_after.max(address);
        }
        match retry_after {
            None => Ok(()),
            Some(left) => Err(Error::Throttled {
                retry_after: round_up_to_secs(left),
            }),
        }
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
        let window = self.inner.window;
        let key = account_key(username);
        let entry = self
            .timed(self.inner.store.record_failure(&key, window))
            .await?;
        if entry.count == self.inner.max_failures {
            // `?`: the key is attacker-chosen text; Debug escapes control characters.
            tracing::warn!(key = ?key, failures = entry.count, "login throttle: account locked");
        }
        if let Some(addr) = addr {
            let key = address_key(addr);
            let entry = self
                .timed(self.inner.store.record_failure(&key, window))
                .await?;
            if entry.count == self.address_limit() {
                tracing::warn!(key = ?key, failures = entry.count, "login throttle: address locked");
            }
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
        self.timed(self.inner.store.reset(&account_key(username)))
            .await
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

/// The store key of an account: the username lower-cased (so `Alice` and `alice` share a
/// counter), hashed when long so that key size is bounded whatever the input.
fn account_key(username: &str) -> String {
    let folded = username.to_lowercase();
    if folded.len() <= MAX_PLAIN_USERNAME_LEN {
        // A different prefix from the hashed form: a short username that happens to look
        // like a hex digest cannot collide with a hashed one.
        format!("acct:{folded}")
    } else {
        let digest = Sha256::digest(folded.as_bytes());
        let mut key = String::with_capacity("acct-sha256:".len() + 64);
        key.push_str("acct-sha256:");
        for byte in digest {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }
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

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4
/// peers) to plain IPv4, so one client has one key and matches its trusted-proxy entry.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `Retry-After` is in whole seconds: round up, so a client that waits that long is not
/// refused again, and never say 0.
fn round_up_to_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// The client's IP address for a request.
///
/// The address is the socket peer from axum's [`ConnectInfo<SocketAddr>`](ConnectInfo)
/// (serve the app with `into_make_service_with_connect_info::<SocketAddr>()`); without it the
/// answer is `None` and only per-account limits apply. When the peer is one of
/// `trusted_proxies`, the `X-Forwarded-For` header is read from the right, skipping trusted
/// proxies, and the first untrusted entry is the client: entries further left were written by
/// the client itself and can be forged. An unparsable entry, or a header that is not text,
/// makes the function fall back to the socket peer. From an untrusted peer the header is
/// ignored. IPv4-mapped IPv6 addresses are reported as IPv4.
///
/// # Example
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use axum::extract::ConnectInfo;
/// use login_manager::throttle::client_addr;
///
/// let proxy: IpAddr = "10.0.0.2".parse().unwrap();
/// let (mut parts, ()) = http::Request::builder()
///     .header("x-forwarded-for", "1.1.1.1, 203.0.113.7")
///     .body(())
///     .unwrap()
///     .into_parts();
/// parts
///     .extensions
///     .insert(ConnectInfo(SocketAddr::new(proxy, 443)));
///
/// assert_eq!(client_addr(&parts, &[proxy]), Some("203.0.113.7".parse().unwrap()));
/// assert_eq!(client_addr(&parts, &[]), Some(proxy));
/// ```
pub fn client_addr(parts: &Parts, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    PeerInfo::from_parts(parts).client_addr(trusted_proxies)
}

/// What a client address is derived from: the socket peer and the `X-Forwarded-For` list,
/// captured from a request so that the address can be computed later (the login flow keeps
/// it in [`AuthSession`](crate::AuthSession)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    peer: Option<IpAddr>,
    /// `None` when any header line is not text: then only the peer is believed.
    forwarded_for: Option<String>,
}

impl PeerInfo {
    /// Reads the peer (`ConnectInfo<SocketAddr>`) and `X-Forwarded-For` of a request.
    pub fn from_parts(parts: &Parts) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| canonical(info.0.ip()));
        // Several header lines form one list, in order (RFC 9110, section 5.3).
        let forwarded_for = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Option<Vec<_>>>()
            .map(|lines| lines.join(","));
        Self {
            peer,
            forwarded_for,
        }
    }

    /// The client's address, believing `X-Forwarded-For` only from `trusted_proxies`.
    pub fn client_addr(&self, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
        let peer = self.peer?;
        let is_trusted = |ip: IpAddr| trusted_proxies.iter().any(|&p| canonical(p) == ip);
        if !is_trusted(peer) {
            return Some(peer);
        }
        let Some(forwarded_for) = &self.forwarded_for else {
            return Some(peer);
        };
        let mut client = peer;
        for entry in forwarded_for.split(',').rev() {
            let Some(ip) = parse_forwarded_ip(entry) else {
                return Some(peer);
            };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
        // When every entry is a trusted proxy, the left-most one is the closest thing to a
        // client.
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an IP address, or one with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`), as some proxies write.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_stays_bounded_under_reset_churn() {
        let mut state = MemoryState {
            capacity_limit: 10,
            map: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        };
        let now = Instant::now();
        for i in 0..10_000 {
            state.record_failure(&format!("k{}", i % 3), Duration::from_secs(60), now);
            state.map.remove(format!("k{}", i % 3).as_str());
            state.compact_if_needed();
            assert!(state.order.len() <= 2 * state.map.len() + 65);
        }
    }

    #[test]
    fn expired_windows_are_purged_before_live_ones_are_evicted() {
        let mut state = MemoryState {
            capacity_limit: 3,
            map: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        };
        let t0 = Instant::now();
        state.record_failure("short", Duration::from_secs(1), t0);
        state.record_failure("a", Duration::from_secs(60), t0);
        state.record_failure("b", Duration::from_secs(60), t0);
        state.record_failure("c", Duration::from_secs(60), t0 + Duration::from_secs(2));
        assert!(!state.map.contains_key("short"));
        assert!(["a", "b", "c"].iter().all(|k| state.map.contains_key(*k)));
    }

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
