//! What a [`LoginThrottle`](crate::LoginThrottle) counts with: its limits and store, the keys
//! failures are counted under, and the store operations both the throttle and its admitted
//! [`LoginAttempt`](crate::LoginAttempt)s run.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ThrottleStore;
use crate::client::canonical;
use crate::timeout::timed;
use crate::{CookieOptions, Error, Result};

/// Default number of failures that locks an account.
pub(super) const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default length of a throttle window.
pub(super) const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The per-address limit, when not set, is this many times the per-account limit.
const DEFAULT_ADDRESS_FACTOR: u32 = 10;
/// Default timeout of one store call.
pub(super) const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Usernames longer than this (in bytes, after lower-casing) are stored as a SHA-256 digest.
const MAX_PLAIN_USERNAME_LEN: usize = 64;
/// Lower-case hex digits, for digests in keys.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A throttle's settings and store, shared by its clones and its admitted attempts.
#[derive(Clone)]
pub(super) struct Limits {
    pub(super) store: Arc<dyn ThrottleStore>,
    pub(super) max_failures: u32,
    /// `None`: ten times `max_failures`, whatever that is set to.
    pub(super) max_failures_per_address: Option<u32>,
    pub(super) window: Duration,
    pub(super) store_timeout: Duration,
    pub(super) trusted_proxies: Vec<IpAddr>,
    pub(super) device_cookie: CookieOptions,
    pub(super) device_lifetime: Duration,
    /// Shared by clones: the unconfigured-proxy warning is logged once per throttle.
    pub(super) proxy_warned: Arc<AtomicBool>,
}

impl Limits {
    pub(super) fn address_limit(&self) -> u32 {
        self.max_failures_per_address
            .unwrap_or_else(|| self.max_failures.saturating_mul(DEFAULT_ADDRESS_FACTOR))
    }

    /// Refuses the attempt when the account (a key from [`account_key`]) or the address is
    /// locked.
    pub(super) async fn check_account(&self, account: &str, addr: Option<IpAddr>) -> Result<()> {
        self.check_keys(Some(account), addr).await
    }

    /// Refuses while `key` (an account's or a one-time token's, when there is one) or the
    /// address is locked.
    pub(super) async fn check_keys(&self, key: Option<&str>, addr: Option<IpAddr>) -> Result<()> {
        let mut retry_after = match key {
            Some(key) => self.lock_left(key, self.max_failures).await?,
            None => None,
        };
        if let Some(addr) = addr {
            let address = self
                .lock_left(&address_key(addr), self.address_limit())
                .await?;
            retry_after = retry_after.max(address);
        }
        refuse_while(retry_after)
    }

    /// Counts a failure for the account and, when known, the address.
    pub(super) async fn record_account_failure(
        &self,
        account: &str,
        addr: Option<IpAddr>,
    ) -> Result<()> {
        self.record_failure_of(Some((account, "account")), addr)
            .await
    }

    /// Counts a failure for `key` (named `what` in the lock warning), if any, and the address.
    pub(super) async fn record_failure_of(
        &self,
        key: Option<(&str, &'static str)>,
        addr: Option<IpAddr>,
    ) -> Result<()> {
        if let Some((key, what)) = key {
            self.count_failure(key, self.max_failures, what).await?;
        }
        if let Some(addr) = addr {
            self.count_failure(&address_key(addr), self.address_limit(), "address")
                .await?;
        }
        Ok(())
    }

    /// Counts one failure under `key`; logs a `tracing` warning when it reaches `limit`.
    pub(super) async fn count_failure(
        &self,
        key: &str,
        limit: u32,
        what: &'static str,
    ) -> Result<()> {
        let entry = self
            .timed(self.store.record_failure(key, self.window))
            .await?;
        if entry.count == limit {
            // `?`: the key is attacker-chosen text; Debug escapes control characters.
            tracing::warn!(key = ?key, failures = entry.count, "login throttle: {what} locked");
        }
        Ok(())
    }

    pub(super) async fn reset(&self, key: &str) -> Result<()> {
        self.timed(self.store.reset(key)).await
    }

    /// Time left on `key`'s lock, or `None` when it has fewer than `limit` failures.
    pub(super) async fn lock_left(&self, key: &str, limit: u32) -> Result<Option<Duration>> {
        let entry = self.timed(self.store.failures(key)).await?;
        Ok(entry.filter(|e| e.count >= limit).map(|e| e.expires_in))
    }

    /// Bounds a store call by the throttle's store timeout.
    pub(super) async fn timed<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        timed(self.store_timeout, "throttle store", call).await
    }
}

/// `Err(Throttled)` while a lock has time left.
pub(super) fn refuse_while(lock_left: Option<Duration>) -> Result<()> {
    match lock_left {
        None => Ok(()),
        Some(left) => Err(Error::Throttled {
            retry_after: round_up_to_secs(left),
        }),
    }
}

/// The store key of an account: the username lower-cased (so `Alice` and `alice` share a
/// counter), hashed when long so that key size is bounded whatever the input.
pub(super) fn account_key(username: &str) -> String {
    let folded = username.to_lowercase();
    if folded.len() <= MAX_PLAIN_USERNAME_LEN {
        // A different prefix from the hashed form: a short username that happens to look
        // like a hex digest cannot collide with a hashed one.
        format!("acct:{folded}")
    } else {
        format!("acct-sha256:{}", hex_sha256(&[folded.as_bytes()]))
    }
}

/// The store key of a one-time token, by its selector: a namespace of its own, so that no
/// username can share a counter with a token.
pub(super) fn token_key(selector: &str) -> String {
    format!("otk:{selector}")
}

/// Lower-case hex of the SHA-256 of `parts`, concatenated.
pub(super) fn hex_sha256(parts: &[&[u8]]) -> String {
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
pub(super) fn address_key(addr: IpAddr) -> String {
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
