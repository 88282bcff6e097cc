//! Login throttling: a cap on failed logins per account and per client address.
//!
//! # How it works
//!
//! A login handler asks [`LoginThrottle::check`] before verifying a password, then reports the
//! outcome with [`LoginThrottle::record_failure`] or [`LoginThrottle::record_success`]. Failures
//! are counted under two keys: the account (the username as typed, Unicode lower-cased) and the
//! client address. Once a key has `max_failures` failures (default 5; per address
//! `10 × max_failures`) within one `window` (default 15 minutes), `check` answers
//! [`Error::Throttled`](crate::Error::Throttled) — even when the password would have been right — until the window ends.
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
mod limits;
mod memory;
mod policy;
mod store;

pub use crate::client::{client_addr, PeerInfo};
pub use device::LoginAttempt;
pub use memory::MemoryThrottleStore;
pub use policy::LoginThrottle;
pub use store::{ThrottleEntry, ThrottleStore};
