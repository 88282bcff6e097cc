//! The Werkzeug hash parser (not the key derivation): never panics, and never accepts
//! parameters that would hang a thread or exhaust memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use login_manager::__private::{parse_werkzeug_hash, WerkzeugCost};

/// The limits of `src/password.rs`, restated so that a change there is a deliberate one.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const MAX_SCRYPT_MEMORY: u128 = 256 * 1024 * 1024;
const MAX_SCRYPT_WORK: u128 = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let Ok(stored) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(hash) = parse_werkzeug_hash(stored) else {
        return;
    };

    // Structure: `method$salt$hexdigest`, nothing dropped or added.
    let (method, _) = stored.split_once('$').expect("accepted without `$`");
    assert!(!hash.salt.contains('$'), "salt {:?} holds a `$`", hash.salt);
    assert_eq!(
        format!("{method}${}${}", hash.salt, hash.hex_digest),
        stored,
        "the parts do not make up the input"
    );

    match hash.cost {
        WerkzeugCost::Pbkdf2 {
            digest_len,
            iterations,
        } => {
            assert!(
                method == "pbkdf2" || method.starts_with("pbkdf2:"),
                "{method:?}"
            );
            assert!([20, 28, 32, 48, 64].contains(&digest_len), "{digest_len}");
            assert!(
                (1..=MAX_PBKDF2_ITERATIONS).contains(&iterations),
                "accepted {iterations} pbkdf2 iterations"
            );
        }
        WerkzeugCost::Scrypt { log_n, r, p } => {
            assert!(
                method == "scrypt" || method.starts_with("scrypt:"),
                "{method:?}"
            );
            assert!(
                (1..64).contains(&log_n) && r > 0 && p > 0,
                "{log_n} {r} {p}"
            );
            let (n, r, p) = (1u128 << log_n, u128::from(r), u128::from(p));
            assert!(
                128 * n * r <= MAX_SCRYPT_MEMORY && 128 * r * p <= MAX_SCRYPT_MEMORY,
                "accepted scrypt memory n={n} r={r} p={p}"
            );
            assert!(
                n * r * p <= MAX_SCRYPT_WORK,
                "accepted scrypt work n={n} r={r} p={p}"
            );
        }
    }
});
