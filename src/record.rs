//! The auth record: what the session keeps about a login (one small value under
//! [`AUTH_KEY`]), its compact codec, the auth-hash digests, the session-protection
//! identifier's form, the clock, and the login state a request resolves to.

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
    pub auth_hash: AuthDigest,
    /// Login time, unix seconds.
    pub login_at: i64,
    /// Time of the last password check (login or `confirm_login`); `None` once not fresh.
    pub fresh_at: Option<i64>,
    /// Last request seen, refreshed at most every idle/4.
    pub last_seen: i64,
    /// Session-protection identifier; `None` is adopted on the next request.
    pub protection_id: Option<ProtectionId>,
    /// Restored from a remember-me cookie.
    pub remembered: bool,
    /// The login's entry in the login index, when the manager keeps one.
    pub login_id: Option<String>,
}

/// The stored form of an [`AuthRecord`] is one short string, its fields separated by `|`:
///
/// `login_at|fresh_at|last_seen|remembered|auth_hash|protection_id|login_id|user_id`
///
/// (times in unix seconds, `fresh_at`, `protection_id` and `login_id` empty when absent,
/// `remembered` `0` or `1`, the user id as JSON, last because it may hold `|`). It is read on
/// every logged-in request, and tower-sessions clones it twice on each (the store's copy, then
/// `get_value`'s): a string clones in one allocation, and its fields split and parse without
/// a JSON parser or any allocation for the digest and the protection id (docs/benchmarks.md).
/// Records written by earlier releases as a JSON array (7 fields before the login index, then
/// 8) still decode, and are written back in this form on their next change.
impl Serialize for AuthRecord {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use std::fmt::Write as _;
        let user_id = serde_json::to_string(&self.user_id).map_err(serde::ser::Error::custom)?;
        let mut text = String::with_capacity(72 + user_id.len());
        let _ = write!(text, "{}|", self.login_at);
        if let Some(fresh_at) = self.fresh_at {
            let _ = write!(text, "{fresh_at}");
        }
        let _ = write!(
            text,
            "|{}|{}|{}|{}|{}|{user_id}",
            self.last_seen,
            u8::from(self.remembered),
            self.auth_hash.as_str(),
            self.protection_id.as_ref().map_or("", FixedStr::as_str),
            // Login ids are the library's own base64url strings: never a `|`.
            self.login_id.as_deref().unwrap_or(""),
        );
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for AuthRecord {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(RecordVisitor)
    }
}

/// Reads the stored string, or the JSON array of earlier releases.
struct RecordVisitor;

/// The fields of the stored string, `None` when one is missing or malformed.
fn decode_text(text: &str) -> Option<AuthRecord> {
    fn optional<T>(field: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<Option<T>> {
        if field.is_empty() {
            Some(None)
        } else {
            parse(field).map(Some)
        }
    }
    // Split by hand: `str::splitn` with a char pattern costs about as much as the rest of the
    // decoding together, for fields this short.
    let mut rest = text;
    let mut fields = std::iter::from_fn(|| {
        let end = rest.bytes().position(|b| b == b'|')?;
        let field = &rest[..end];
        rest = &rest[end + 1..];
        Some(field)
    });
    let login_at = fields.next()?.parse().ok()?;
    let fresh_at = optional(fields.next()?, |f| f.parse().ok())?;
    let last_seen = fields.next()?.parse().ok()?;
    let remembered = match fields.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let auth_hash = FixedStr::new(fields.next()?)?;
    let protection_id = optional(fields.next()?, FixedStr::new)?;
    let login_id = optional(fields.next()?, |f| Some(f.to_owned()))?;
    let user_id = serde_json::from_str(rest).ok()?;
    Some(AuthRecord {
        user_id,
        auth_hash,
        login_at,
        fresh_at,
        last_seen,
        protection_id,
        remembered,
        login_id,
    })
}

impl<'de> serde::de::Visitor<'de> for RecordVisitor {
    type Value = AuthRecord;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an auth record: its stored string, or an array of 7 or 8 fields")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<AuthRecord, E> {
        decode_text(text).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
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
        if record
            .login_id
            .as_deref()
            .is_some_and(|id| id.contains('|'))
        {
            return Err(A::Error::custom("a login id with a `|`"));
        }
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::invalid_length(9, &self));
        }
        Ok(record)
    }
}

impl AuthRecord {
    pub(crate) fn new<U: AuthUser>(
        user: &U,
        fresh: bool,
        protection_id: Option<ProtectionId>,
    ) -> Result<Self> {
        let now = now();
        Ok(Self {
            user_id: user_id_value(user)?,
            auth_hash: digest_of(user.session_auth_hash()),
            login_at: now,
            fresh_at: fresh.then_some(now),
            last_seen: now,
            protection_id,
            remembered: false,
            login_id: None,
        })
    }

    pub(crate) fn belongs_to<U: AuthUser>(&self, user: &U) -> bool {
        serde_json::to_value(user.id()).is_ok_and(|id| id == self.user_id)
            && digest_matches(self.auth_hash.as_str(), user.session_auth_hash())
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

/// A base64url string of exactly `N` characters, kept inline. The auth record's digest and
/// protection id are read on every logged-in request; on the heap they would be allocated and
/// freed on each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedStr<const N: usize>([u8; N]);

impl<const N: usize> FixedStr<N> {
    /// `text` when it is `N` characters of the base64url alphabet (so never the record's
    /// `|` separator).
    pub(crate) fn new(text: &str) -> Option<Self> {
        let bytes = <[u8; N]>::try_from(text.as_bytes()).ok()?;
        let base64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        bytes.iter().all(base64url).then_some(Self(bytes))
    }

    /// `bytes` in unpadded base64url, which must take `N` characters.
    pub(crate) fn base64(bytes: &[u8]) -> Self {
        let mut encoded = [b'A'; N];
        let written = URL_SAFE_NO_PAD.encode_slice(bytes, &mut encoded);
        debug_assert_eq!(written.ok(), Some(N), "base64 of {} bytes", bytes.len());
        Self(encoded)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII gets in (`base64` and `new`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl<const N: usize> Serialize for FixedStr<N> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, const N: usize> Deserialize<'de> for FixedStr<N> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor<const N: usize>;
        impl<const N: usize> serde::de::Visitor<'_> for Visitor<N> {
            type Value = FixedStr<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a base64url string of {N} characters")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<Self::Value, E> {
                FixedStr::new(s)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        deserializer.deserialize_str(Visitor::<N>)
    }
}

/// The digest of an auth hash kept in the auth record (22 base64url characters).
pub(crate) type AuthDigest = FixedStr<22>;

/// The session-protection identifier (16 base64url characters, from 12 bytes of SHA-256).
pub(crate) type ProtectionId = FixedStr<16>;

/// A 128-bit SHA-256 prefix of the auth hash, base64url: the raw value (often a password
/// hash) never reaches a store.
pub(crate) fn digest_of(auth_hash: &[u8]) -> AuthDigest {
    FixedStr::base64(&Sha256::digest(auth_hash)[..16])
}

/// [`digest_of`] as a string, for the stores' records (remember-me, one-time tokens).
pub(crate) fn auth_hash_digest(auth_hash: &[u8]) -> String {
    digest_of(auth_hash).as_str().to_owned()
}

pub(crate) fn digest_matches(stored: &str, auth_hash: &[u8]) -> bool {
    bool::from(stored.as_bytes().ct_eq(&digest_of(auth_hash).0))
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
            auth_hash: digest_of(b""),
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

    const DIGEST: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const PID: &str = "BBBBBBBBBBBBBBBB";

    /// Sessions logged in before the login index keep working after an upgrade (their record
    /// has seven fields), and so do those written as a JSON array before the string form.
    #[test]
    fn older_records_still_decode() {
        let old = serde_json::json!([1, DIGEST, 10, null, 20, PID, true]);
        let record: AuthRecord = serde_json::from_value(old).expect("a 7-field record decodes");
        assert_eq!(record.login_id, None);
        assert!(record.remembered);
        assert_eq!(record.auth_hash.as_str(), DIGEST);
        assert_eq!(
            record.protection_id.map(|p| p.as_str().to_owned()),
            Some(PID.to_owned())
        );

        let mut new = record.clone();
        new.login_id = Some("L".to_owned());
        let array = serde_json::json!([1, DIGEST, 10, null, 20, PID, true, "L"]);
        assert_eq!(
            serde_json::from_value::<AuthRecord>(array).ok(),
            Some(new.clone())
        );

        for bad in [
            serde_json::json!([1, DIGEST, 10, null, 20, PID]),
            serde_json::json!([1, DIGEST, 10, null, 20, PID, true, null, 9]),
            serde_json::json!([1, "short", 10, null, 20, PID, true]),
            serde_json::json!([1, DIGEST, 10, null, 20, "BBBBBBBBBBBBBBBé", true]),
            // What the string form could not write back.
            serde_json::json!([1, DIGEST, 10, null, 20, "BBBBBBBBBBBBBBB|", true]),
            serde_json::json!([1, DIGEST, 10, null, 20, PID, true, "L|1"]),
            serde_json::json!({"user_id": 1}),
        ] {
            assert!(
                serde_json::from_value::<AuthRecord>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    /// The stored string: what is written reads back the same, from the session's value and
    /// from JSON text (the fuzz target's path); a malformed string is an error, never a record.
    #[test]
    fn records_round_trip_through_their_string() {
        let mut record: AuthRecord =
            serde_json::from_value(serde_json::json!([1, DIGEST, 10, null, 20, PID, true, "L"]))
                .expect("decodes");
        let value = serde_json::to_value(&record).expect("encodes");
        assert_eq!(
            value.as_str(),
            Some("10||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L|1")
        );
        assert_eq!(
            serde_json::from_value::<AuthRecord>(value).ok(),
            Some(record.clone())
        );

        record.user_id = serde_json::json!({"org": "a|b", "n": [1, 2]});
        record.fresh_at = Some(-5);
        record.protection_id = None;
        record.login_id = None;
        record.remembered = false;
        let text = serde_json::to_vec(&record).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<AuthRecord>(&text).ok(),
            Some(record)
        );

        for bad in [
            "",
            "10||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L",
            "10||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L|",
            "10||20|2|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L|1",
            "x||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L|1",
            "10||20|1|AAAA|BBBBBBBBBBBBBBBB|L|1",
            "10||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBB|L|1",
            "10||20|1|AAAAAAAAAAAAAAAAAAAAAA|BBBBBBBBBBBBBBBB|L|not json",
            "99999999999999999999||20|1|AAAAAAAAAAAAAAAAAAAAAA||L|1",
        ] {
            let value = serde_json::Value::String(bad.to_owned());
            assert!(
                serde_json::from_value::<AuthRecord>(value).is_err(),
                "{bad}"
            );
        }
    }
}
