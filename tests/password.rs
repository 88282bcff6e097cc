//! `PasswordHasher`: argon2id round trips, rehash detection, enumeration resistance (counted,
//! not timed), bounded concurrency, malformed hashes, and Werkzeug migration vectors.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::{http::header, http::StatusCode, response::IntoResponse};
use login_manager::{Error, PasswordHasher, Verified};

const VALID_NO_REHASH: Verified = Verified {
    valid: true,
    needs_rehash: false,
};
const VALID_REHASH: Verified = Verified {
    valid: true,
    needs_rehash: true,
};
const INVALID: Verified = Verified {
    valid: false,
    needs_rehash: false,
};

/// Cheap parameters so that debug-build tests stay fast.
fn small() -> PasswordHasher {
    PasswordHasher::new().with_params(64, 1, 1).unwrap()
}

/// A PHC string made directly with the argon2 crate, for algorithms and versions the hasher
/// itself never writes.
fn foreign_hash(password: &str, algorithm: Algorithm, version: Version, m: u32) -> String {
    let params = Params::new(m, 1, 1, None).unwrap();
    let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
    Argon2::new(algorithm, version, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The messages of every `tracing` event in this test binary. The hasher logs from blocking
/// threads, so a thread-local subscriber would miss them: install one global subscriber.
fn logged() -> &'static Mutex<Vec<String>> {
    static EVENTS: OnceLock<&'static Mutex<Vec<String>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events: &'static Mutex<Vec<String>> = Box::leak(Box::default());
        tracing::subscriber::set_global_default(Capture(events)).unwrap();
        events
    })
}

struct Capture(&'static Mutex<Vec<String>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Whether some logged event contains every one of `needles`. Call [`logged`] before the
/// events of interest, so that the subscriber is in place.
fn was_logged(needles: &[&str]) -> bool {
    logged()
        .lock()
        .unwrap()
        .iter()
        .any(|event| needles.iter().all(|needle| event.contains(needle)))
}

#[tokio::test]
async fn hash_and_verify_round_trip() {
    let hasher = small();
    let phc = hasher.hash("correct horse battery staple").await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    assert_eq!(
        hasher
            .verify("correct horse battery staple", &phc)
            .await
            .unwrap(),
        VALID_NO_REHASH
    );
    let again = hasher.hash("correct horse battery staple").await.unwrap();
    assert_ne!(phc, again, "every hash has its own salt");
}

#[tokio::test]
async fn default_parameters_are_owasp() {
    let hasher = PasswordHasher::default();
    let phc = hasher.hash("hunter2").await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(
        hasher.verify("hunter2", &phc).await.unwrap(),
        VALID_NO_REHASH
    );
}

#[tokio::test]
async fn wrong_password_is_invalid() {
    let hasher = small();
    let phc = hasher.hash("hunter2").await.unwrap();
    for wrong in ["hunter3", "Hunter2", "hunter2 ", "", "hunter"] {
        assert_eq!(
            hasher.verify(wrong, &phc).await.unwrap(),
            INVALID,
            "{wrong:?}"
        );
    }
}

#[tokio::test]
async fn needs_rehash_when_parameters_change() {
    let phc = small().hash("hunter2").await.unwrap();
    for (m, t, p) in [(128, 1, 1), (64, 2, 1), (64, 1, 2)] {
        let upgraded = PasswordHasher::new().with_params(m, t, p).unwrap();
        assert_eq!(
            upgraded.verify("hunter2", &phc).await.unwrap(),
            VALID_REHASH,
            "m={m} t={t} p={p}"
        );
        assert_eq!(upgraded.verify("nope", &phc).await.unwrap(), INVALID);
    }
    // Lowering the cost is a change too.
    let stronger = PasswordHasher::new()
        .with_params(128, 2, 1)
        .unwrap()
        .hash("hunter2")
        .await
        .unwrap();
    assert_eq!(
        small().verify("hunter2", &stronger).await.unwrap(),
        VALID_REHASH
    );
}

#[tokio::test]
async fn needs_rehash_for_other_argon2_variants_and_versions() {
    let hasher = small();
    for (algorithm, version) in [
        (Algorithm::Argon2i, Version::V0x13),
        (Algorithm::Argon2d, Version::V0x13),
        (Algorithm::Argon2id, Version::V0x10),
    ] {
        let phc = foreign_hash("hunter2", algorithm, version, 64);
        assert_eq!(
            hasher.verify("hunter2", &phc).await.unwrap(),
            VALID_REHASH,
            "{phc}"
        );
        assert_eq!(hasher.verify("hunter3", &phc).await.unwrap(), INVALID);
    }
    // The same parameters, written by another implementation: nothing to do.
    let phc = foreign_hash("hunter2", Algorithm::Argon2id, Version::V0x13, 64);
    assert_eq!(
        hasher.verify("hunter2", &phc).await.unwrap(),
        VALID_NO_REHASH
    );
}

#[tokio::test]
async fn too_long_password_is_never_hashed_and_is_an_invalid_verification() {
    let hasher = small().max_password_len(16);
    let phc = hasher.hash("sixteen bytes!!!").await.unwrap();
    assert_eq!(hasher.hash_count(), 1);

    let long = "seventeen bytes!!";
    let unicode = "é".repeat(9); // 9 characters, 18 bytes: the limit counts bytes
    let invalid = INVALID;
    for password in [long, unicode.as_str()] {
        let refused = |r: Result<_, Error>| matches!(r, Err(Error::PasswordTooLong { max: 16 }));
        assert!(refused(hasher.hash(password).await.map(drop)));
        // Verification answers with a value, as for any wrong password (invariant 10).
        assert_eq!(hasher.verify(password, &phc).await.unwrap(), invalid);
        assert_eq!(
            hasher.verify_user(password, Some(&phc)).await.unwrap(),
            invalid
        );
        assert_eq!(hasher.verify_user(password, None).await.unwrap(), invalid);
    }
    assert_eq!(hasher.hash_count(), 1, "nothing was hashed");
    assert_eq!(
        hasher.verify("sixteen bytes!!!", &phc).await.unwrap(),
        VALID_NO_REHASH
    );
}

#[tokio::test]
async fn default_maximum_is_1024_bytes() {
    let hasher = small();
    assert!(hasher.hash(&"a".repeat(1024)).await.is_ok());
    let err = hasher.hash(&"a".repeat(1025)).await.unwrap_err();
    assert!(matches!(err, Error::PasswordTooLong { max: 1024 }), "{err}");
    assert_eq!(err.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unknown_user_costs_the_same_as_a_wrong_password() {
    let hasher = small();
    let phc = hasher.hash("hunter2").await.unwrap();

    let before = hasher.hash_count();
    let wrong = hasher.verify_user("guess", Some(&phc)).await.unwrap();
    assert_eq!(hasher.hash_count(), before + 1);

    let before = hasher.hash_count();
    let unknown = hasher.verify_user("guess", None).await.unwrap();
    assert_eq!(hasher.hash_count(), before + 1);

    assert_eq!(wrong, INVALID);
    assert_eq!(unknown, wrong, "the answer does not tell them apart");

    // Even the right password of some other account is refused for an unknown user.
    assert_eq!(hasher.verify_user("hunter2", None).await.unwrap(), INVALID);
    assert_eq!(
        hasher.verify_user("hunter2", Some(&phc)).await.unwrap(),
        VALID_NO_REHASH
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hashing_threads_bound_concurrent_computations() {
    // Heavy enough (8 MiB, 2 passes: ~10 ms) that two computations overlap even on a busy
    // machine, light enough for debug builds (the KDF crates are optimised there too).
    let hasher = PasswordHasher::new()
        .with_params(8192, 2, 1)
        .unwrap()
        .max_concurrent(2);
    let phc = hasher.hash("hunter2").await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (hasher, phc) = (hasher.clone(), phc.clone());
        tasks.spawn(async move {
            let password = if i % 2 == 0 { "hunter2" } else { "wrong" };
            (i, hasher.verify(password, &phc).await.unwrap())
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (i, verified) = result.unwrap();
        assert_eq!(verified.valid, i % 2 == 0);
    }
    assert_eq!(hasher.hash_count(), 21, "clones share the counters");
    assert_eq!(hasher.peak_concurrency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_computation_keeps_its_thread_when_its_caller_is_cancelled() {
    // Long enough (64 MiB, 3 passes) that the second call would overlap if the first call's
    // permit were released when its caller was cancelled.
    let hasher = PasswordHasher::new()
        .with_params(65_536, 3, 1)
        .unwrap()
        .max_concurrent(1);
    let first = tokio::spawn({
        let hasher = hasher.clone();
        async move { hasher.hash("hunter2").await }
    });
    while hasher.hash_count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    first.abort();
    hasher.verify_user("hunter2", None).await.unwrap();
    assert_eq!(hasher.hash_count(), 2);
    assert_eq!(hasher.peak_concurrency(), 1);
}

#[tokio::test]
async fn zero_permits_means_one() {
    let hasher = small().max_concurrent(0);
    let phc = hasher.hash("hunter2").await.unwrap();
    assert!(hasher.verify("hunter2", &phc).await.unwrap().valid);
    assert_eq!(hasher.peak_concurrency(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once_with_503_and_retry_after() {
    // One thread, one waiting place: of eight checks submitted together, at most two are
    // taken (one running, one queued); the others are refused without waiting for them.
    let hasher = PasswordHasher::new()
        .with_params(32_768, 2, 1)
        .unwrap()
        .max_concurrent(1)
        .max_queued(1);
    let phc = hasher.hash("hunter2").await.unwrap();
    let before = hasher.hash_count();
    let check = || hasher.verify("hunter2", &phc);
    // `join!` submits all eight in one poll, microseconds apart.
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        check(),
        check(),
        check(),
        check(),
        check(),
        check(),
        check(),
        check()
    );
    let results = [a, b, c, d, e, f, g, h];
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.len() >= 6, "{} refused", refused.len());
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .all(|v| v.valid));
    assert_eq!(
        hasher.hash_count() - before,
        8 - refused.len() as u64,
        "refused ones cost nothing"
    );
    for error in refused {
        assert!(matches!(error, Error::Overloaded { .. }), "{error:?}");
    }

    let response = Error::Overloaded {
        retry_after: std::time::Duration::from_secs(1),
    }
    .into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
}

/// The scheduling policies (field 41 of `/proc/<pid>/task/<tid>/stat`) of the hashing threads.
#[cfg(target_os = "linux")]
fn hashing_thread_policies() -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("lm-argon2-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // Fields after the parenthesised name (field 2) start with field 3.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = after_name.split(' ').nth(41 - 3).unwrap();
        policies.push(policy.parse().unwrap());
    }
    policies
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn hashing_runs_on_threads_of_the_lowest_priority() {
    const SCHED_IDLE: u32 = 5;
    let hasher = small().max_concurrent(3);
    hasher.hash("hunter2").await.unwrap();
    // Other tests of this binary run hashers of their own: at least this one's three threads.
    // A thread takes its name and policy when it first runs, which on a busy machine can be
    // after the first hash is done: wait for them (a few seconds at most).
    let mut policies = hashing_thread_policies();
    for _ in 0..100 {
        if policies.len() >= 3 && policies.iter().all(|&p| p == SCHED_IDLE) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        policies = hashing_thread_policies();
    }
    assert!(policies.len() >= 3, "{policies:?}");
    assert!(policies.iter().all(|&p| p == SCHED_IDLE), "{policies:?}");
}

#[test]
fn invalid_parameters_are_refused_when_building() {
    for (m, t, p) in [(8, 0, 1), (7, 1, 1), (64, 1, 9), (64, 1, 0)] {
        let result = PasswordHasher::new().with_params(m, t, p);
        assert!(
            matches!(result, Err(Error::PasswordHash(_))),
            "m={m} t={t} p={p}"
        );
    }
}

#[tokio::test]
async fn malformed_stored_hashes_are_invalid_and_cost_one_computation() {
    logged();
    let hasher = small();
    let good = hasher.hash("hunter2").await.unwrap();
    let (head, digest) = good.rsplit_once('$').unwrap();
    let salt_and_digest = good.splitn(5, '$').nth(4).unwrap();
    let malformed = [
        String::new(),
        "hunter2".to_owned(),
        "$".to_owned(),
        "$argon2id$".to_owned(),
        "$argon2id$v=19$m=64,t=1,p=1$".to_owned(),
        head.to_owned(),
        format!("{head}$"),
        format!("{head}${}", &digest[..digest.len() - 3]),
        format!("{head}$!!!{}", &digest[3..]),
        format!("{good}$extra"),
        format!("$argon2id$v=99$m=64,t=1,p=1${salt_and_digest}"),
        format!("$argon2id$v=19$m=64,t=0,p=1${salt_and_digest}"),
        format!("$argon2id$v=19$m=7,t=1,p=1${salt_and_digest}"),
        format!("$argon2id$v=19$m=64,t=1,p=1,x=3${salt_and_digest}"),
        format!("$argon2id$v=19$m=64,t=1,p=1$c2FsdA${digest}"), // 4-byte salt
        // Absurd costs: refused before allocating 4 GiB or running for minutes.
        format!("$argon2id$v=19$m=4294967295,t=1,p=1${salt_and_digest}"),
        format!("$argon2id$v=19$m=1048576,t=100,p=1${salt_and_digest}"),
        format!("$argon2id$v=19$m=64,t=4294967295,p=1${salt_and_digest}"),
        // Other schemes.
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        "$scrypt$ln=4,r=8,p=1$c29tZXNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI".to_owned(),
        "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI".to_owned(),
        "sha256$salt$abcdef".to_owned(),
        "\u{0}\u{ffff}$$$".to_owned(),
    ];
    for stored in &malformed {
        let before = hasher.hash_count();
        assert_eq!(
            hasher.verify("hunter2", stored).await.unwrap(),
            INVALID,
            "{stored:?}"
        );
        assert_eq!(
            hasher.verify_user("hunter2", Some(stored)).await.unwrap(),
            INVALID
        );
        assert_eq!(hasher.hash_count(), before + 2, "{stored:?}");
    }
    assert!(was_logged(&["WARN", "unusable stored password hash"]));
    assert!(
        !was_logged(&[digest]),
        "stored hashes are never written to the log"
    );
}

#[tokio::test]
async fn unicode_passwords() {
    let hasher = small();
    for password in [
        "pässwörd",
        "密码 🔑",
        "пароль",
        "\u{1F600}\u{200D}\u{1F525}",
        " ",
    ] {
        let phc = hasher.hash(password).await.unwrap();
        assert_eq!(
            hasher.verify(password, &phc).await.unwrap(),
            VALID_NO_REHASH
        );
    }
    // No normalisation: the NFC and NFD spellings of "é" are different passwords.
    let nfc = hasher.hash("caf\u{e9}").await.unwrap();
    assert_eq!(hasher.verify("cafe\u{301}", &nfc).await.unwrap(), INVALID);
}

#[cfg(feature = "werkzeug")]
mod werkzeug {
    use super::*;

    struct Vector {
        name: String,
        password: String,
        hash: String,
        valid: bool,
        source: String,
        slow: bool,
    }

    fn vectors() -> Vec<Vector> {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("vectors/werkzeug.json")).unwrap();
        json["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                name: v["name"].as_str().unwrap().to_owned(),
                password: v["password"].as_str().unwrap().to_owned(),
                hash: v["hash"].as_str().unwrap().to_owned(),
                valid: v["valid"].as_bool().unwrap(),
                source: v["source"].as_str().unwrap().to_owned(),
                slow: v["slow"].as_bool().unwrap(),
            })
            .collect()
    }

    async fn check(vectors: impl Iterator<Item = Vector>) -> usize {
        let hasher = small();
        let mut checked = 0;
        for v in vectors {
            let before = hasher.hash_count();
            let verified = hasher.verify(&v.password, &v.hash).await.unwrap();
            let expected = Verified {
                valid: v.valid,
                needs_rehash: v.valid,
            };
            assert_eq!(verified, expected, "{}", v.name);
            assert_eq!(hasher.hash_count(), before + 1, "{}", v.name);
            checked += 1;
        }
        checked
    }

    #[tokio::test]
    async fn vectors_verify_and_always_need_rehash() {
        let all = vectors();
        assert!(all.iter().any(|v| v.source == "werkzeug" && !v.slow));
        assert!(
            all.iter()
                .any(|v| !v.slow && v.valid && v.hash.starts_with("scrypt:32768:8:1$")),
            "Werkzeug's default method and cost are checked in every build"
        );
        for kdf in ["pbkdf2:", "scrypt:"] {
            assert!(all.iter().any(|v| v.valid && v.hash.starts_with(kdf)));
            assert!(all.iter().any(|v| !v.valid && v.hash.starts_with(kdf)));
        }
        let checked = check(all.into_iter().filter(|v| !v.slow)).await;
        assert!(checked >= 40, "{checked}");
    }

    /// PBKDF2 with Werkzeug's default 1 000 000 iterations: 0.1 s per vector optimised, ~3 s
    /// unoptimised (the generic HMAC loop is compiled in this crate, at its opt-level).
    #[tokio::test]
    async fn slow_default_cost_vectors() {
        let checked = check(vectors().into_iter().filter(|v| v.slow)).await;
        assert!(checked >= 2, "{checked}");
    }

    #[tokio::test]
    async fn guards_log_a_warning_without_the_hash() {
        logged();
        let hasher = small();
        let stored = "pbkdf2:sha256:100000000$Q3v8ZzH1kP9sYt2a$00ff";
        assert_eq!(hasher.verify("x", stored).await.unwrap(), INVALID);
        assert!(was_logged(&["pbkdf2 iteration count out of range"]));
        assert!(!was_logged(&["Q3v8ZzH1kP9sYt2a"]));
    }

    #[tokio::test]
    async fn migration_on_login() {
        let hasher = small();
        let flask = vectors()
            .into_iter()
            .find(|v| v.valid && v.source == "werkzeug" && !v.slow)
            .unwrap();
        let verified = hasher
            .verify_user(&flask.password, Some(&flask.hash))
            .await
            .unwrap();
        assert_eq!(verified, VALID_REHASH);
        let migrated = hasher.hash(&flask.password).await.unwrap();
        assert_eq!(
            hasher.verify(&flask.password, &migrated).await.unwrap(),
            VALID_NO_REHASH
        );
    }
}

#[cfg(not(feature = "werkzeug"))]
#[tokio::test]
async fn werkzeug_hashes_need_the_feature() {
    logged();
    let hasher = small();
    for stored in [
        "pbkdf2:sha256:1000$Q3v8ZzH1kP9sYt2a$0b3a55bc2ddbb58ffb9557702a47804ee14d44e96a6a9a82f7fca6444db3e71f",
        "scrypt:1024:8:1$Q3v8ZzH1kP9sYt2a$00",
    ] {
        let before = hasher.hash_count();
        assert_eq!(
            hasher
                .verify("correct horse battery staple", stored)
                .await
                .unwrap(),
            INVALID
        );
        assert_eq!(hasher.hash_count(), before + 1);
    }
    assert!(was_logged(&["WARN", "`werkzeug` feature"]));
}
