//! A second factor: the [`SecondFactor`] trait a factor implements, single-use
//! [`RecoveryCodes`], the pending state of a login in two steps, and (feature `totp`) [`Totp`].

use std::future::Future;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[cfg(feature = "totp")]
mod totp;

#[cfg(feature = "totp")]
pub use totp::{Totp, TotpEnrolment};

use crate::Result;

/// A second factor, checked after the right password and before the login
/// ([`AuthSession::complete_second_factor`](crate::AuthSession::complete_second_factor)), or to
/// make a login fresh again
/// ([`reauthenticate_with_second_factor`](crate::AuthSession::reauthenticate_with_second_factor)).
///
/// The library keeps the pending state, the throttle and the session; the factor only says
/// whether `code` proves `user`. A TOTP factor checks the code against the user's secret
/// (`Totp::check`, feature `totp`) and remembers the time step it accepted; a recovery-code factor finds and
/// deletes the code's hash ([`RecoveryCodes::position`]); a WebAuthn factor (for example with
/// `webauthn-rs`) would take the browser's assertion as `code` and check it against the
/// challenge it stored.
///
/// ```
/// # #[derive(Clone)] struct User { recovery_hashes: Vec<String> }
/// use login_manager::{RecoveryCodes, SecondFactor};
///
/// /// Recovery codes only (a real app stores the hashes in its database and deletes the used one).
/// struct Recovery;
///
/// impl SecondFactor<User> for Recovery {
///     async fn verify(&self, user: &User, code: &str) -> login_manager::Result<bool> {
///         Ok(RecoveryCodes::position(code, &user.recovery_hashes).is_some())
///     }
/// }
/// ```
pub trait SecondFactor<U>: Send + Sync {
    /// Whether `code` proves `user`, using it up when it is single-use. Errors are failures of
    /// the factor's storage — wrap them in [`Error::Store`](crate::Error::Store) (503) —
    /// never a wrong code.
    fn verify(&self, user: &U, code: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// Single-use recovery codes: ten (say) random codes shown once at enrolment, stored only as
/// their SHA-256, each accepted once in place of the second factor.
///
/// A code is 10 characters of lowercase base32 (50 random bits) shown as `xxxxx-xxxxx`; case,
/// spaces and dashes do not matter when it is typed back. 50 bits are out of reach of online
/// guessing behind the login throttle, which is why a fast hash is enough here (unlike
/// passwords, nobody chose them).
///
/// ```
/// use login_manager::RecoveryCodes;
///
/// let (codes, hashes) = RecoveryCodes::generate(10);
/// // Show `codes` once; store `hashes`.
/// assert_eq!(RecoveryCodes::position(&codes[3].to_uppercase(), &hashes), Some(3));
/// assert_eq!(RecoveryCodes::position("aaaaa-aaaaa", &hashes), None);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RecoveryCodes;

const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl RecoveryCodes {
    /// `count` new codes and their hashes, in the same order.
    pub fn generate(count: usize) -> (Vec<String>, Vec<String>) {
        let codes: Vec<String> = (0..count).map(|_| new_recovery_code()).collect();
        let hashes = codes.iter().map(|code| Self::hash(code)).collect();
        (codes, hashes)
    }

    /// The stored form of a code (as typed or as generated): SHA-256 of its normalized form,
    /// base64url.
    pub fn hash(code: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(normalize(code).as_bytes()))
    }

    /// Where `code` is among `hashes` (compared in constant time), so that the caller can
    /// delete that hash: each code works once.
    pub fn position(code: &str, hashes: &[String]) -> Option<usize> {
        let typed = Self::hash(code);
        let mut found = None;
        // Every hash is compared, found or not: the time does not tell which one matched.
        for (at, stored) in hashes.iter().enumerate() {
            if bool::from(stored.as_bytes().ct_eq(typed.as_bytes())) && found.is_none() {
                found = Some(at);
            }
        }
        found
    }
}

fn new_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| RECOVERY_ALPHABET[usize::from(b & 31)] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The session key of a login waiting for its second factor.
pub(crate) const PENDING_KEY: &str = "_2fa";
/// How long the second step may take after the password.
pub(crate) const PENDING_SECONDS: i64 = 5 * 60;

/// A login waiting for its second factor, in the session: who, under which auth hash, with
/// which options, since when. Not a login: nothing reads it but the second step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub user_id: serde_json::Value,
    pub auth_hash: String,
    pub remember: bool,
    pub duration_secs: Option<u64>,
    pub at: i64,
}
