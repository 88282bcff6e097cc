//! How the Redis stores encode what they keep: hash tags for user ids (so that one user's
//! keys share a Cluster slot), times as Unix milliseconds, hashes as hex, and a token as the
//! fields of a Redis hash. Crate-private.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::error::BoxError;
use crate::remember::{token::ValidatorHash, RememberToken};

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
}
