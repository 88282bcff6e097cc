//! `parse_token`, the remember-me cookie parser: never panics; accepts only exactly
//! `selector.validator` (66 bytes) in canonical base64url of 16 + 32 bytes; and accepts every
//! such value, returning its selector and the SHA-256 of its validator.

#![no_main]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use libfuzzer_sys::fuzz_target;
use login_manager::__private::parse_token;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    // Soundness: whatever the cookie header holds.
    if let Ok(value) = std::str::from_utf8(data) {
        if let Some(parsed) = parse_token(value) {
            assert_eq!(value.len(), 66, "accepted a token of another length");
            let (selector, validator) = value.split_once('.').expect("accepted without a dot");
            assert!(!validator.contains('.'), "accepted two dots");
            let selector_bytes = URL_SAFE_NO_PAD.decode(selector).expect("selector decodes");
            let validator_bytes = URL_SAFE_NO_PAD
                .decode(validator)
                .expect("validator decodes");
            assert_eq!(selector_bytes.len(), 16);
            assert_eq!(validator_bytes.len(), 32);
            // Canonical: one cookie value per token, so re-encoding gives the input back.
            assert_eq!(URL_SAFE_NO_PAD.encode(&selector_bytes), selector);
            assert_eq!(URL_SAFE_NO_PAD.encode(&validator_bytes), validator);
            assert_eq!(parsed.selector, selector);
            assert_eq!(
                parsed.validator_hash,
                <[u8; 32]>::from(Sha256::digest(&validator_bytes))
            );
        }
    }

    // Completeness: every well-formed token is accepted.
    if let Some(raw) = data.get(..48) {
        let (selector, validator) = raw.split_at(16);
        let selector = URL_SAFE_NO_PAD.encode(selector);
        let value = format!("{selector}.{}", URL_SAFE_NO_PAD.encode(validator));
        let parsed = parse_token(&value).expect("a well-formed token is accepted");
        assert_eq!(parsed.selector, selector);
        assert_eq!(
            parsed.validator_hash,
            <[u8; 32]>::from(Sha256::digest(validator))
        );
    }
});
