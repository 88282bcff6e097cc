//! The remember-me cookie value, `selector.validator` (the format is documented on
//! [`Remember`](crate::Remember)): minting and parsing.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};

const SELECTOR_BYTES: usize = 16;
const VALIDATOR_BYTES: usize = 32;
/// Encoded lengths: 22 + 1 + 43.
const COOKIE_LEN: usize = 66;

/// SHA-256 of a validator, as stored.
pub type ValidatorHash = [u8; 32];

/// A freshly minted cookie value and what the store keeps of it (for this repository's tests,
/// through `__private::mint_remember_token`).
#[derive(Debug)]
pub struct Minted {
    /// The value of the `remember_token` cookie, `selector.validator`.
    pub cookie_value: String,
    /// The selector, the store's look-up key.
    pub selector: String,
    /// SHA-256 of the validator, as the store keeps it.
    pub validator_hash: ValidatorHash,
}

/// A new random selector and validator.
pub(crate) fn mint() -> Minted {
    let mut rng = rand::rngs::OsRng;
    let mut selector = [0u8; SELECTOR_BYTES];
    rng.fill_bytes(&mut selector);
    let selector = URL_SAFE_NO_PAD.encode(selector);
    let (validator, validator_hash) = mint_validator();
    Minted {
        cookie_value: format!("{selector}.{validator}"),
        selector,
        validator_hash,
    }
}

/// A new validator for an existing selector: the encoded validator and its hash.
pub(crate) fn mint_validator() -> (String, ValidatorHash) {
    let mut validator = [0u8; VALIDATOR_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut validator);
    let encoded = URL_SAFE_NO_PAD.encode(validator);
    let hash = hash_validator(&validator);
    (encoded, hash)
}

fn hash_validator(validator: &[u8]) -> ValidatorHash {
    Sha256::digest(validator).into()
}

/// A cookie value taken apart: the selector and the hash of the presented validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// The selector, canonical base64url.
    pub selector: String,
    /// SHA-256 of the presented validator.
    pub validator_hash: ValidatorHash,
}

/// Parses a remember cookie; anything but exactly `selector.validator` of the right sizes in
/// canonical base64url is `None` (and is then treated as no cookie at all).
pub fn parse_token(value: &str) -> Option<ParsedToken> {
    if value.len() != COOKIE_LEN {
        return None;
    }
    let (selector, validator) = value.split_once('.')?;
    let selector_bytes = URL_SAFE_NO_PAD.decode(selector).ok()?;
    let validator_bytes = URL_SAFE_NO_PAD.decode(validator).ok()?;
    if selector_bytes.len() != SELECTOR_BYTES || validator_bytes.len() != VALIDATOR_BYTES {
        return None;
    }
    Some(ParsedToken {
        selector: selector.to_owned(),
        validator_hash: hash_validator(&validator_bytes),
    })
}

/// With the validator replaced: the cookie value for a rotated token.
pub(crate) fn cookie_value(selector: &str, validator: &str) -> String {
    format!("{selector}.{validator}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_back() {
        let minted = mint();
        assert_eq!(minted.cookie_value.len(), COOKIE_LEN);
        let parsed = parse_token(&minted.cookie_value).expect("parses");
        assert_eq!(parsed.selector, minted.selector);
        assert_eq!(parsed.validator_hash, minted.validator_hash);
    }

    #[test]
    fn tampered_tokens_do_not_parse() {
        let minted = mint();
        let (selector, validator) = minted.cookie_value.split_once('.').unwrap();
        let cases = [
            String::new(),
            selector.to_owned(),
            format!("{selector}.{validator}.x"),
            format!("{selector}!{validator}"),
            format!("{}.{validator}", "*".repeat(22)),
            "a".repeat(10 * 1024),
            format!("{selector}={validator}"),
            // Non-canonical: `/`-alphabet instead of url-safe.
            format!(
                "{selector}.{}",
                validator.replace('-', "+").replace('_', "/")
            ),
        ];
        for case in cases {
            if case == minted.cookie_value {
                continue;
            }
            assert!(parse_token(&case).is_none(), "{case:?} parsed");
        }
    }
}
