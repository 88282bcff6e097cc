//! `login_manager::__private` (feature `__private`): entry points for this repository's own
//! tests, benchmarks and fuzz targets into parts that are private to the crate — the parsers
//! (auth record, Werkzeug hashes, remember cookies, `next`), client addresses, and minting of
//! remember tokens for seeding stores. Not an API for apps: names and signatures change in any
//! release.

use std::{net::IpAddr, time::Duration};

use http::request::Parts;

pub use crate::redirect::next::{next_from_query, MAX_DECODE_ROUNDS, MAX_NEXT_LEN};
pub use crate::remember::token::{parse_token, Minted, ParsedToken};

use crate::{
    password::werkzeug,
    record::{self, AuthRecord, AuthState, Source},
};

/// Timeouts an application may configure, from none to absurdly long.
const TIMEOUTS: [Option<Duration>; 6] = [
    None,
    Some(Duration::ZERO),
    Some(Duration::from_secs(30 * 60)),
    Some(Duration::from_secs(12 * 60 * 60)),
    Some(Duration::from_secs(365 * 24 * 60 * 60)),
    Some(Duration::MAX),
];

/// Decodes `bytes` as the JSON of a session auth record (the value stored under `_auth`), the
/// way a request reads it, and runs every check a request runs on a decoded record: the
/// absolute and idle timeouts, the `last_seen` refresh, freshness and the user id's display.
///
/// Returns whether the record decoded. Panics if decoding or one of those checks panics, or
/// if a decoded record does not decode to the same record after being written back.
///
/// Exists for fuzzing: not a supported API.
pub fn decode_auth_record(bytes: &[u8]) -> bool {
    // Straight from bytes, and the way a request does it: tower-sessions hands over a
    // `serde_json::Value`, which is then converted.
    let direct = serde_json::from_slice::<AuthRecord>(bytes).ok();
    let via_value = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| serde_json::from_value::<AuthRecord>(value).ok());
    for record in direct.iter().chain(via_value.iter()) {
        check_record(record);
    }
    via_value.is_some()
}

fn check_record(record: &AuthRecord) {
    let now = record::now();
    for absolute in TIMEOUTS {
        for idle in TIMEOUTS {
            std::hint::black_box(record.expiry(now, absolute, idle));
        }
    }
    for idle in TIMEOUTS.into_iter().flatten() {
        std::hint::black_box(record.last_seen_due(now, idle));
    }
    for source in [Source::Session, Source::Remember] {
        let state = AuthState::<()> {
            user: None,
            record: Some(record.clone()),
            source,
        };
        for max_age in TIMEOUTS {
            std::hint::black_box(state.is_fresh(max_age));
        }
    }
    // Logged and passed to event listeners.
    std::hint::black_box(record.user_id.to_string());

    // What the library writes back (after a `last_seen` refresh, say) reads back the same.
    let encoded = serde_json::to_vec(record).expect("an auth record serializes");
    // Two limits of `serde_json::Value` itself (docs/fuzzing.md), not checked here: its
    // default float parser may be one ULP off, and with its `raw_value` feature (which axum
    // enables) an object whose first key is `$serde_json::private::RawValue` is read as a raw
    // value. Real user ids hold neither.
    if json_round_trips(&record.user_id) {
        let decoded: AuthRecord =
            serde_json::from_slice(&encoded).expect("a written auth record decodes");
        assert_eq!(
            serde_json::to_value(&decoded).expect("an auth record serializes"),
            serde_json::to_value(record).expect("an auth record serializes"),
            "an auth record changed on a write and read"
        );
    }
}

/// Whether `value` is free of what `serde_json::Value` does not read back as written: floats
/// (and integers beyond 64 bits, which parse as floats) and serde_json's private map keys.
fn json_round_trips(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => !n.is_f64(),
        serde_json::Value::Array(items) => items.iter().all(json_round_trips),
        serde_json::Value::Object(map) => map
            .iter()
            .all(|(key, v)| !key.starts_with("$serde_json::private::") && json_round_trips(v)),
        _ => true,
    }
}

/// The cost parameters of a parsed Werkzeug hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WerkzeugCost {
    /// PBKDF2-HMAC.
    Pbkdf2 {
        /// Output length of the digest in bytes (20 for SHA-1 … 64 for SHA-512).
        digest_len: usize,
        /// Iteration count.
        iterations: u32,
    },
    /// scrypt.
    Scrypt {
        /// log2 of the CPU/memory cost `n`.
        log_n: u8,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
}

/// A parsed Werkzeug hash, `method$salt$hexdigest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WerkzeugHash<'a> {
    /// The key derivation and its parameters.
    pub cost: WerkzeugCost,
    /// The salt, as written.
    pub salt: &'a str,
    /// The expected digest, as written.
    pub hex_digest: &'a str,
}

/// Parses a stored Werkzeug (Flask) password hash with the parser that
/// [`PasswordHasher::verify`](crate::PasswordHasher::verify) uses, without running the key
/// derivation.
///
/// Exists for fuzzing: not a supported API.
pub fn parse_werkzeug_hash(stored: &str) -> Result<WerkzeugHash<'_>, &'static str> {
    let hash = werkzeug::Hash::parse(stored)?;
    let cost = match &hash.kdf {
        werkzeug::Kdf::Pbkdf2 { digest, iterations } => WerkzeugCost::Pbkdf2 {
            digest_len: digest.output_len(),
            iterations: *iterations,
        },
        werkzeug::Kdf::Scrypt(params) => WerkzeugCost::Scrypt {
            log_n: params.log_n(),
            r: params.r(),
            p: params.p(),
        },
    };
    Ok(WerkzeugHash {
        cost,
        salt: hash.salt,
        hex_digest: hash.hex_digest,
    })
}

/// The client address a [`LoginThrottle`](crate::LoginThrottle) with these trusted proxies
/// counts a request under.
pub fn client_addr(parts: &Parts, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    crate::client::PeerInfo::from_parts(parts).client_addr(trusted_proxies)
}

/// A new remember-me cookie value (random selector and validator, as a login would issue) and
/// what a [`RememberStore`](crate::RememberStore) keeps of it.
pub fn mint_remember_token() -> Minted {
    crate::remember::token::mint()
}

/// `template` (a token a real login issued) under a new selector and validator, and the
/// cookie value that presents it: another remembered browser of the same user, for seeding a
/// store in tests and benchmarks.
pub fn remember_token_like(template: &crate::RememberToken) -> (crate::RememberToken, String) {
    let minted = mint_remember_token();
    let token = crate::RememberToken {
        selector: minted.selector,
        validator_hash: minted.validator_hash,
        ..template.clone()
    };
    (token, minted.cookie_value)
}
