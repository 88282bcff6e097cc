//! Device cookies, documented in the "Device cookies" section of
//! [`LoginThrottle`](crate::LoginThrottle).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cookie::Cookie;
use rand::RngCore;

use super::limits::{account_key, hex_sha256, refuse_while, Limits};
use crate::{record::time_span, Result};

/// The device cookie's default name (DEMO.md).
pub(super) const DEFAULT_COOKIE_NAME: &str = "device";
/// How long a device cookie lives by default: a year.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Random bytes in a device token.
const TOKEN_BYTES: usize = 32;

/// A login attempt that [`LoginThrottle::attempt`](crate::LoginThrottle::attempt) let through: check the password, then report
/// the outcome with [`failed`](Self::failed) or [`succeeded`](Self::succeeded).
///
/// ```
/// use login_manager::{LoginThrottle, MemoryThrottleStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let throttle = LoginThrottle::new(MemoryThrottleStore::new());
/// let addr = Some("203.0.113.7".parse().unwrap());
///
/// // alice logs in: her browser gets a device cookie for her account.
/// let cookie = throttle.attempt("alice", addr, None).await?.succeeded().await?;
///
/// // Someone else spends five wrong passwords on alice: her account is locked...
/// for _ in 0..5 {
///     throttle.attempt("alice", None, None).await?.failed().await?;
/// }
/// assert!(throttle.attempt("alice", None, None).await.is_err());
/// // ...for everyone but the browser holding her device cookie.
/// let attempt = throttle.attempt("alice", addr, Some(cookie.value())).await?;
/// assert!(attempt.is_trusted_device());
/// # Ok(())
/// # }
/// ```
#[must_use = "report the outcome with `failed` or `succeeded`"]
pub struct LoginAttempt {
    limits: Arc<Limits>,
    account: String,
    addr: Option<IpAddr>,
    /// The digest of the presented device token, when it is registered for this account.
    trusted_device: Option<String>,
}

/// [`LoginThrottle::attempt`](crate::LoginThrottle::attempt): judges the attempt by the device's
/// own failures when `device_cookie` is registered for the account, else by the account's
/// and the address's.
pub(super) async fn admit(
    limits: &Arc<Limits>,
    username: &str,
    addr: Option<IpAddr>,
    device_cookie: Option<&str>,
) -> Result<LoginAttempt> {
    let account = account_key(username);
    let presented = device_cookie.and_then(|cookie| device_digest(&account, cookie));
    let trusted_device = match presented {
        Some(digest) if is_registered(limits, &digest).await? => Some(digest),
        _ => None,
    };
    match &trusted_device {
        Some(digest) => {
            let lock = limits
                .lock_left(&failures_key(digest), limits.max_failures)
                .await?;
            refuse_while(lock)?;
        }
        None => limits.check_account(&account, addr).await?,
    }
    Ok(LoginAttempt {
        limits: Arc::clone(limits),
        account,
        addr,
        trusted_device,
    })
}

async fn is_registered(limits: &Limits, digest: &str) -> Result<bool> {
    let key = registration_key(digest);
    Ok(limits.timed(limits.store.failures(&key)).await?.is_some())
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("account", &self.account)
            .field("addr", &self.addr)
            .field("trusted_device", &self.is_trusted_device())
            .finish_non_exhaustive()
    }
}

impl LoginAttempt {
    /// Whether the browser presented a valid device cookie for this account.
    pub fn is_trusted_device(&self) -> bool {
        self.trusted_device.is_some()
    }

    /// Counts a wrong username or password: against the device when it is trusted, else
    /// against the account and the address. Logs a `tracing` warning when a key gets locked.
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`](crate::Error::Timeout).
    pub async fn failed(self) -> Result<()> {
        let limits = &*self.limits;
        match &self.trusted_device {
            Some(digest) => {
                limits
                    .count_failure(&failures_key(digest), limits.max_failures, "device")
                    .await
            }
            None => {
                limits
                    .record_account_failure(&self.account, self.addr)
                    .await
            }
        }
    }

    /// Records a successful login and returns a new device cookie for the browser (set it on
    /// the response; [`AuthSession::login_with_password`](crate::AuthSession::login_with_password)
    /// does).
    ///
    /// A trusted device's failures are reset and its old cookie retired; the account's
    /// counter is left alone, so that the owner's login does not hand an attacker a fresh
    /// set of guesses. An untrusted client that knew the password resets the account's
    /// counter (the address's is kept, as with [`LoginThrottle::record_success`](crate::LoginThrottle::record_success)).
    ///
    /// # Errors
    ///
    /// The store's error or [`Error::Timeout`](crate::Error::Timeout).
    pub async fn succeeded(self) -> Result<Cookie<'static>> {
        let limits = &*self.limits;
        match &self.trusted_device {
            Some(digest) => {
                limits.reset(&failures_key(digest)).await?;
                limits.reset(&registration_key(digest)).await?;
            }
            None => limits.reset(&self.account).await?,
        }
        let mut token = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let value = URL_SAFE_NO_PAD.encode(token);
        let digest = hex_sha256(&[self.account.as_bytes(), b"\n", &token]);
        let lifetime = limits.device_lifetime;
        let registration = registration_key(&digest);
        limits
            .timed(limits.store.record_failure(&registration, lifetime))
            .await?;
        Ok(limits.device_cookie.build(value, time_span(lifetime)))
    }
}

/// The digest that names a device token for `account`, or `None` when `cookie` is not a
/// token this throttle could have issued.
fn device_digest(account: &str, cookie: &str) -> Option<String> {
    let mut token = [0u8; TOKEN_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(cookie, &mut token) {
        Ok(TOKEN_BYTES) => Some(hex_sha256(&[account.as_bytes(), b"\n", &token])),
        _ => None,
    }
}

fn registration_key(digest: &str) -> String {
    format!("dev:{digest}")
}

fn failures_key(digest: &str) -> String {
    format!("devfail:{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_name_a_device() {
        let token = URL_SAFE_NO_PAD.encode([7u8; TOKEN_BYTES]);
        let digest = device_digest("acct:alice", &token).unwrap();
        assert_eq!(digest.len(), 64);
        assert_ne!(device_digest("acct:bob", &token), Some(digest));
        for bad in ["", "x", &token[1..], &format!("{token}A"), &"=".repeat(43)] {
            assert_eq!(device_digest("acct:alice", bad), None, "{bad:?}");
        }
        assert!(failures_key(&"f".repeat(64)).len() <= 80);
    }
}
