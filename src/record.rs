//! The auth record: what the session keeps about a login (one small value under
//! [`AUTH_KEY`]), its compact codec, the auth-hash digests, the clock, and the login state a
//! request resolves to.

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{events::EndReason, AuthUser, Error, Result};

/// The session key of the auth record.
pub(crate) const AUTH_KEY: &str = "_auth";

/// What the session stores about a login, under [`AUTH_KEY`]. Short field names keep it
/// around 100 bytes: it is read on every authenticated request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuthRecord {
    /// The user id, serialized.
    pub user_id: serde_json::Value,
    /// Digest of the user's `session_auth_hash` at login.
    pub auth_hash: String,
    /// Login time, unix seconds.
    pub login_at: i64,
    /// Time of the last password check (login or `confirm_login`); `None` once not fresh.
    pub fresh_at: Option<i64>,
    /// Last request seen, refreshed at most every idle/4.
    pub last_seen: i64,
    /// Session-protection identifier; `None` is adopted on the next request.
    pub protection_id: Option<String>,
    /// Restored from a remember-me cookie.
    pub remembered: bool,
    /// The login's entry in the login index, when the manager keeps one.
    pub login_id: Option<String>,
}

/// The stored form of an [`AuthRecord`]: a JSON array in field order. tower-sessions clones
/// the session's values on every load and read; an array costs three allocations where an
/// object with seven keys cost more than a dozen (measured with callgrind, see
/// docs/benchmarks.md). Records written before the login index have no eighth element.
type RecordFields<'a> = (
    &'a serde_json::Value,
    &'a str,
    i64,
    Option<i64>,
    i64,
    &'a Option<String>,
    bool,
    &'a Option<String>,
);

impl Serialize for AuthRecord {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let fields: RecordFields<'_> = (
            &self.user_id,
            &self.auth_hash,
            self.login_at,
            self.fresh_at,
            self.last_seen,
            &self.protection_id,
            self.remembered,
            &self.login_id,
        );
        fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AuthRecord {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> serde::de::Visitor<'de> for RecordVisitor {
    type Value = AuthRecord;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an auth record: an array of 7 or 8 fields")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<AuthRecord, A::Error> {
        use serde::de::Error as _;
        macro_rules! field {
            ($n:expr) => {
                seq.next_element()?
                    .ok_or_else(|| A::Error::invalid_length($n, &self))?
            };
        }
        let record = AuthRecord {
            user_id: field!(0),
            auth_hash: field!(1),
            login_at: field!(2),
            fresh_at: field!(3),
            last_seen: field!(4),
            protection_id: field!(5),
            remembered: field!(6),
            login_id: seq.next_element()?.flatten(),
        };
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::invalid_length(9, &self));
        }
        Ok(record)
    }
}

impl AuthRecord {
    pub(crate) fn new<U: AuthUser>(user: &U, fresh: bool, protection_id: String) -> Result<Self> {
        let now = now();
        Ok(Self {
            user_id: user_id_value(user)?,
            auth_hash: auth_hash_digest(user.session_auth_hash()),
            login_at: now,
            fresh_at: fresh.then_some(now),
            last_seen: now,
            protection_id: Some(protection_id),
            remembered: false,
            login_id: None,
        })
    }

    pub(crate) fn belongs_to<U: AuthUser>(&self, user: &U) -> bool {
        serde_json::to_value(user.id()).is_ok_and(|id| id == self.user_id)
            && digest_matches(&self.auth_hash, user.session_auth_hash())
    }

    /// Why this login is over at `now` (unix seconds), if it is: the absolute timeout is
    /// checked before the idle one. A timestamp from the distant past counts as expired
    /// rather than overflowing.
    pub(crate) fn expiry(
        &self,
        now: i64,
        absolute_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) -> Option<EndReason> {
        if absolute_timeout.is_some_and(|t| elapsed(now, self.login_at) > whole_seconds(t)) {
            Some(EndReason::AbsoluteTimeout)
        } else if idle_timeout.is_some_and(|t| elapsed(now, self.last_seen) > whole_seconds(t)) {
            Some(EndReason::IdleTimeout)
        } else {
            None
        }
    }

    /// Whether `last_seen` is old enough to be rewritten: at most every idle/4, so that reads
    /// do not turn into store writes.
    pub(crate) fn last_seen_due(&self, now: i64, idle_timeout: Duration) -> bool {
        elapsed(now, self.last_seen) >= whole_seconds(idle_timeout) / 4
    }
}

/// The user's id as the session stores it (the auth record, a pending second factor).
pub(crate) fn user_id_value<U: AuthUser>(user: &U) -> Result<serde_json::Value> {
    serde_json::to_value(user.id())
        .map_err(|e| Error::Config(format!("the user id does not serialize: {e}")))
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Seconds from `then` to `now`. Saturating: the session store is outside this process, and a
/// record holding `i64::MIN` must neither panic (debug builds) nor wrap to a negative age that
/// never expires (release builds).
fn elapsed(now: i64, then: i64) -> i64 {
    now.saturating_sub(then)
}

/// A duration in whole seconds, saturating: a configured `Duration::MAX` means "never".
fn whole_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The same span as a `time::Duration` for date arithmetic, saturating like [`whole_seconds`].
pub(crate) fn time_span(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}

/// A 128-bit SHA-256 prefix of the auth hash, base64url: the raw value (often a password
/// hash) never reaches the session store.
pub(crate) fn auth_hash_digest(auth_hash: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(auth_hash)[..16])
}

pub(crate) fn digest_matches(stored: &str, auth_hash: &[u8]) -> bool {
    // Encoded on the stack: this runs on every authenticated request.
    let mut expected = [0u8; 22];
    let written = URL_SAFE_NO_PAD
        .encode_slice(&Sha256::digest(auth_hash)[..16], &mut expected)
        .unwrap_or(0);
    written == expected.len() && bool::from(stored.as_bytes().ct_eq(&expected))
}

/// Where the current user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Anonymous,
    Session,
    Remember,
    Request,
}

/// The resolved login state of a request.
#[derive(Clone)]
pub(crate) struct AuthState<U> {
    pub user: Option<U>,
    pub record: Option<AuthRecord>,
    pub source: Source,
}

impl<U> AuthState<U> {
    /// A login held by the session, as `record` describes it.
    pub(crate) fn session(user: U, record: AuthRecord) -> Self {
        Self {
            user: Some(user),
            record: Some(record),
            source: Source::Session,
        }
    }

    pub(crate) fn anonymous() -> Self {
        Self {
            user: None,
            record: None,
            source: Source::Anonymous,
        }
    }

    pub(crate) fn is_fresh(&self, max_age: Option<Duration>) -> bool {
        match (&self.source, self.record.as_ref().and_then(|r| r.fresh_at)) {
            (Source::Session | Source::Remember, Some(fresh_at)) => {
                max_age.is_none_or(|max| elapsed(now(), fresh_at) <= whole_seconds(max))
            }
            // Request-loader logins (API tokens) are never fresh, as in Flask-Login: a token is
            // not a password check, and there is no session to confirm.
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(login_at: i64, fresh_at: Option<i64>, last_seen: i64) -> AuthRecord {
        AuthRecord {
            user_id: serde_json::json!(1),
            auth_hash: String::new(),
            login_at,
            fresh_at,
            last_seen,
            protection_id: None,
            remembered: false,
            login_id: None,
        }
    }

    /// Found while fuzzing (docs/fuzzing.md): `now - i64::MIN` overflowed, a panic in debug
    /// builds and, in release builds, a negative age that never expired and stayed fresh.
    #[test]
    fn extreme_timestamps_expire_instead_of_overflowing() {
        let now = now();
        let ancient = record(i64::MIN, Some(i64::MIN), i64::MIN);
        let (hour, day) = (
            Some(Duration::from_secs(3600)),
            Some(Duration::from_secs(86_400)),
        );
        assert_eq!(
            ancient.expiry(now, day, hour),
            Some(EndReason::AbsoluteTimeout)
        );
        assert_eq!(
            ancient.expiry(now, None, hour),
            Some(EndReason::IdleTimeout)
        );
        assert!(ancient.last_seen_due(now, Duration::from_secs(30 * 60)));
        let state = AuthState::<()> {
            user: None,
            record: Some(ancient),
            source: Source::Session,
        };
        assert!(!state.is_fresh(hour));

        let current = record(now, Some(now), now);
        assert_eq!(current.expiry(now, day, hour), None);
        assert!(!current.last_seen_due(now, Duration::from_secs(30 * 60)));
    }

    /// Sessions logged in before the login index keep working after an upgrade: their record
    /// has seven fields.
    #[test]
    fn records_without_a_login_id_still_decode() {
        let old = serde_json::json!([1, "digest", 10, null, 20, "pid", true]);
        let record: AuthRecord = serde_json::from_value(old).expect("a 7-field record decodes");
        assert_eq!(record.login_id, None);
        assert!(record.remembered);

        let mut new = record.clone();
        new.login_id = Some("L".to_owned());
        let value = serde_json::to_value(&new).expect("encodes");
        assert_eq!(value.as_array().map(Vec::len), Some(8));
        assert_eq!(serde_json::from_value::<AuthRecord>(value).ok(), Some(new));

        for bad in [
            serde_json::json!([1, "digest", 10, null, 20, "pid"]),
            serde_json::json!([1, "digest", 10, null, 20, "pid", true, null, 9]),
            serde_json::json!({"user_id": 1}),
        ] {
            assert!(serde_json::from_value::<AuthRecord>(bad).is_err());
        }
    }
}
