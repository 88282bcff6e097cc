//! Where a login's memory goes: N sequential argon2id verifications at the library's default
//! cost (m = 19456 KiB, t = 2, p = 1), on one thread, two ways (prints one JSON object):
//!
//! - `verify_password`: `argon2`'s `PasswordVerifier`, as `PasswordHasher::verify` does today
//!   — a fresh 19 MiB block vector is allocated and freed by every verification;
//! - `with_memory`: `Argon2::hash_password_into_with_memory` into one block vector allocated
//!   once and reused (what a per-permit buffer pool in `PasswordHasher` would do).
//!
//! Reports milliseconds per verification, the process's peak resident memory (VmHWM) and
//! its page faults (minor, from getrusage).
//!
//! `argon2-memory verify_password|with_memory N`

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2, Block,
};
use serde_json::json;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn minor_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, n) = match args.as_slice() {
        [mode, n] => (mode.clone(), n.parse::<usize>().expect("N")),
        _ => panic!("usage: argon2-memory verify_password|with_memory N"),
    };
    let argon2 = Argon2::default();
    let password = login_manager_load::PASSWORD.as_bytes();
    let salt = SaltString::generate(&mut OsRng);
    let phc = argon2
        .hash_password(password, &salt)
        .expect("hash")
        .to_string();
    let parsed = PasswordHash::new(&phc).expect("phc");
    let mut salt_buf = [0u8; 64];
    let salt_bytes = parsed
        .salt
        .expect("salt")
        .decode_b64(&mut salt_buf)
        .expect("salt b64")
        .to_vec();
    let expected = parsed.hash.expect("hash output");
    let mut blocks = vec![Block::default(); argon2.params().block_count()];

    let faults_before = minor_faults();
    let start = std::time::Instant::now();
    for _ in 0..n {
        let valid = match mode.as_str() {
            "verify_password" => argon2.verify_password(password, &parsed).is_ok(),
            "with_memory" => {
                let mut out = vec![0u8; expected.len()];
                argon2
                    .hash_password_into_with_memory(password, &salt_bytes, &mut out, &mut blocks)
                    .expect("hash into");
                // A plain comparison: this is a measurement, not a login path.
                out == expected.as_bytes()
            }
            other => panic!("unknown mode {other}"),
        };
        assert!(valid);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "mode": mode,
            "verifications": n,
            "ms_per_verification": elapsed * 1e3 / n as f64,
            "vm_hwm_kib": vm_hwm_kib(),
            "minor_faults_per_verification": (minor_faults() - faults_before) as f64 / n as f64,
        })
    );
}
