//! How the Redis stores encode what they keep: hash tags for user ids (so that one user's
//! keys share a Cluster slot), times as Unix milliseconds, hashes as hex, a token (remember-me
//! or one-time) as the fields of a Redis hash, and a login as a JSON object (one field of the
//! user's hash).
//! Crate-private.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::BoxError;
use crate::remember::{token::ValidatorHash, RememberToken};
use crate::{StoredLogin, StoredToken};

/// Escapes `{`, `}` and `%` so that a user id never ends a hash tag early or starts
/// another; injective, so distinct users keep distinct keys. The empty id becomes a lone `%`,
/// which no escape produces, because an empty tag `{}` would not be a tag at all.
pub(crate) fn tag(user_id: &str) -> String {
    if user_id.is_empty() {
        return "%".to_owned();
    }
    let mut tag = String::with_capacity(user_id.len());
    for c in user_id.chars() {
        match c {
            '{' => tag.push_str("%7B"),
            '}' => tag.push_str("%7D"),
            '%' => tag.push_str("%25"),
            c => tag.push(c),
        }
    }
    tag
}

/// A prefix with its braces escaped like a tag's, so that it can never hold a hash tag.
pub(crate) fn escape_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        tag(prefix)
    }
}

/// Unix milliseconds, at least 1: Redis refuses absolute expiry times of 0 or less, and
/// anything in the past expires the key at once, as it should.
pub(crate) fn millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
        .max(1)
}

fn from_millis(text: &str) -> std::result::Result<OffsetDateTime, BoxError> {
    let millis: i64 = text.parse()?;
    Ok(OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(millis) * 1_000_000,
    )?)
}

fn from_hex(text: &str) -> std::result::Result<ValidatorHash, BoxError> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)?;
    Ok(hash)
}

/// A token from its hash's fields.
pub(crate) fn token_from_fields(
    mut fields: HashMap<String, String>,
) -> std::result::Result<RememberToken, BoxError> {
    let mut take = |name: &'static str| {
        fields
            .remove(name)
            .ok_or_else(|| BoxError::from(format!("stored token lacks `{name}`")))
    };
    Ok(RememberToken {
        selector: take("selector")?,
        validator_hash: from_hex(&take("validator_hash")?)?,
        previous_hash: take("previous_hash")
            .ok()
            .as_deref()
            .map(from_hex)
            .transpose()?,
        rotated_at: take("rotated_at")
            .ok()
            .as_deref()
            .map(from_millis)
            .transpose()?,
        user_id: take("user_id")?,
        auth_hash: take("auth_hash")?,
        created_at: from_millis(&take("created_at")?)?,
        last_used_at: from_millis(&take("last_used_at")?)?,
        expires_at: from_millis(&take("expires_at")?)?,
        user_agent: take("user_agent")?,
    })
}

/// A one-time token as the fields of its hash, name/value pairs in one list (the order of
/// `HSET`'s arguments).
pub(crate) fn one_time_token_fields(token: &StoredToken) -> Vec<String> {
    [
        ("selector", token.selector.clone()),
        ("validator_hash", hex::encode(token.validator_hash)),
        ("purpose", token.purpose.clone()),
        ("user_id", token.user_id.clone()),
        ("auth_hash", token.auth_hash.clone()),
        ("created_at", millis(token.created_at).to_string()),
        ("expires_at", millis(token.expires_at).to_string()),
    ]
    .into_iter()
    .flat_map(|(name, value)| [name.to_owned(), value])
    .collect()
}

/// A one-time token from its hash's fields: a missing or unreadable field is an error.
pub(crate) fn one_time_token_from_fields(
    mut fields: HashMap<String, String>,
) -> std::result::Result<StoredToken, BoxError> {
    let mut take = |name: &'static str| {
        fields
            .remove(name)
            .ok_or_else(|| BoxError::from(format!("stored one-time token lacks `{name}`")))
    };
    Ok(StoredToken {
        selector: take("selector")?,
        validator_hash: from_hex(&take("validator_hash")?)?,
        purpose: take("purpose")?,
        user_id: take("user_id")?,
        auth_hash: take("auth_hash")?,
        created_at: from_millis(&take("created_at")?)?,
        expires_at: from_millis(&take("expires_at")?)?,
    })
}

/// A login as stored: the fields of [`StoredLogin`], times as decimal strings of Unix
/// milliseconds. Strings rather than numbers because the Lua scripts decode and re-encode
/// entries with `cjson`, whose numbers are doubles printed with 14 significant digits; the
/// scripts compare times with `tonumber`, exact for any millisecond of years 1 to 9999.
#[derive(Serialize, Deserialize)]
struct EncodedLogin {
    id: String,
    user_id: String,
    session_id: Option<String>,
    remember_selector: Option<String>,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    user_agent: String,
    remembered: bool,
}

/// A login as the scripts keep it.
pub(crate) fn encode_login(login: &StoredLogin) -> std::result::Result<String, BoxError> {
    Ok(serde_json::to_string(&EncodedLogin {
        id: login.id.clone(),
        user_id: login.user_id.clone(),
        session_id: login.session_id.clone(),
        remember_selector: login.remember_selector.clone(),
        created_at: millis(login.created_at).to_string(),
        last_used_at: millis(login.last_used_at).to_string(),
        expires_at: millis(login.expires_at).to_string(),
        user_agent: login.user_agent.clone(),
        remembered: login.remembered,
    })?)
}

/// A login read from the hash of `user_id`: anything else there (bad JSON, a missing field,
/// another user's entry) is an error.
pub(crate) fn decode_login(
    text: &str,
    user_id: &str,
) -> std::result::Result<StoredLogin, BoxError> {
    let stored: EncodedLogin = serde_json::from_str(text)
        .map_err(|e| BoxError::from(format!("malformed stored login: {e}")))?;
    if stored.user_id != user_id {
        return Err("a stored login is in another user's hash".into());
    }
    Ok(StoredLogin {
        id: stored.id,
        user_id: stored.user_id,
        session_id: stored.session_id,
        remember_selector: stored.remember_selector,
        created_at: from_millis(&stored.created_at)?,
        last_used_at: from_millis(&stored.last_used_at)?,
        expires_at: from_millis(&stored.expires_at)?,
        user_agent: stored.user_agent,
        remembered: stored.remembered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cannot_break_out_of_their_braces() {
        assert_eq!(tag("42"), "42");
        assert_eq!(tag("\"alice\""), "\"alice\"");
        assert_eq!(tag("a}b{c%"), "a%7Db%7Bc%25");
        assert_eq!(tag(""), "%");
        // Injective on the cases that could collide.
        assert_ne!(tag("%7B"), tag("{"));
        assert_ne!(tag("%"), tag(""));
        assert_eq!(escape_prefix("app{1}:"), "app%7B1%7D:");
        assert_eq!(escape_prefix(""), "");
    }

    #[test]
    fn one_time_tokens_round_trip_and_malformed_ones_are_errors() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let token = StoredToken {
            selector: "sel".to_owned(),
            validator_hash: [0xab; 32],
            purpose: "password-reset".to_owned(),
            user_id: "\"{alice}\"".to_owned(),
            auth_hash: "digest".to_owned(),
            created_at: at,
            expires_at: OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(),
        };
        let fields = |flat: Vec<String>| -> HashMap<String, String> {
            flat.chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect()
        };
        let stored = fields(one_time_token_fields(&token));
        assert_eq!(stored.len(), 7);
        assert_eq!(one_time_token_from_fields(stored.clone()).unwrap(), token);
        let mut short = stored.clone();
        short.insert("validator_hash".to_owned(), "abcd".to_owned());
        assert!(one_time_token_from_fields(short).is_err());
        let mut timeless = stored.clone();
        timeless.remove("expires_at");
        assert!(one_time_token_from_fields(timeless).is_err());
        let mut bad_time = stored;
        bad_time.insert("created_at".to_owned(), "soon".to_owned());
        assert!(one_time_token_from_fields(bad_time).is_err());
    }

    #[test]
    fn logins_round_trip_and_malformed_ones_are_errors() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let login = StoredLogin {
            id: "id/1".to_owned(),
            user_id: "\"{alice}\"".to_owned(),
            session_id: None,
            remember_selector: Some("sel".to_owned()),
            created_at: at,
            last_used_at: at,
            expires_at: OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(),
            user_agent: "Mozilla \u{e9}".to_owned(),
            remembered: true,
        };
        let text = encode_login(&login).unwrap();
        assert_eq!(decode_login(&text, &login.user_id).unwrap(), login);
        // What cjson writes back: `/` escaped, keys in any order.
        let relayed = text.replace("id/1", "id\\/1");
        assert_eq!(decode_login(&relayed, &login.user_id).unwrap(), login);
        assert!(decode_login(&text, "\"bob\"").is_err());
        assert!(decode_login("{", &login.user_id).is_err());
        assert!(decode_login(&text.replace("\"expires_at\"", "\"x\""), &login.user_id).is_err());
        let bad_time = text.replace("253402300799000", "soon");
        assert!(decode_login(&bad_time, &login.user_id).is_err());
    }
}
