//! Behaviour of `LoginThrottle` and `MemoryThrottleStore` through the public API.

type Result<T, E = login_manager::Error> = std::result::Result<T, E>;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use http::StatusCode;
use login_manager::__private::client_addr;
use login_manager::ThrottleEntry;
use login_manager::{Error, LoginThrottle, MemoryThrottleStore, ThrottleStore};
use rand::distributions::{Alphanumeric, DistString};

const WINDOW: Duration = Duration::from_secs(15 * 60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The login flow the throttle is designed for; only "alice" / "secret" exists.
async fn login(
    throttle: &LoginThrottle,
    username: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<bool> {
    throttle.check(username, addr).await?;
    if username.eq_ignore_ascii_case("alice") && password == "secret" {
        throttle.record_success(username).await?;
        Ok(true)
    } else {
        throttle.record_failure(username, addr).await?;
        Ok(false)
    }
}

fn retry_after(result: Result<impl std::fmt::Debug>) -> Duration {
    match result {
        Err(Error::Throttled { retry_after }) => retry_after,
        other => panic!("expected Throttled, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn sixth_attempt_is_refused_with_the_defaults() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    let addr = Some(ip("203.0.113.7"));
    for _ in 0..5 {
        assert!(!login(&throttle, "alice", "wrong", addr).await.unwrap());
    }
    let err = login(&throttle, "alice", "wrong", addr).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn correct_password_is_refused_while_locked() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    for _ in 0..5 {
        login(&throttle, "alice", "wrong", None).await.unwrap();
    }
    retry_after(login(&throttle, "alice", "secret", None).await);
    // From another address too: the account lock is not per address.
    retry_after(login(&throttle, "alice", "secret", Some(ip("198.51.100.1"))).await);
}

#[tokio::test(start_paused = true)]
async fn success_resets_the_account_counter_but_not_the_address_counter() {
    let addr = Some(ip("203.0.113.7"));
    let throttle = LoginThrottle::new(MemoryThrottleStore::new()).max_failures_per_address(8);
    for _ in 0..4 {
        login(&throttle, "alice", "wrong", addr).await.unwrap();
    }
    assert!(login(&throttle, "alice", "secret", addr).await.unwrap());
    // Four more failures are allowed: the account counter starts over...
    for _ in 0..4 {
        assert!(!login(&throttle, "alice", "wrong", addr).await.unwrap());
    }
    // ...but the address has now failed 8 times and is locked.
    retry_after(login(&throttle, "alice", "secret", addr).await);
    assert!(
        login(&throttle, "alice", "secret", Some(ip("198.51.100.1")))
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_usernames_are_throttled_like_real_ones() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    for _ in 0..5 {
        assert!(!login(&throttle, "alice", "wrong", None).await.unwrap());
        assert!(!login(&throttle, "nobody", "wrong", None).await.unwrap());
    }
    let real = login(&throttle, "alice", "secret", None).await.unwrap_err();
    let ghost = login(&throttle, "nobody", "secret", None)
        .await
        .unwrap_err();
    assert_eq!(real.to_string(), ghost.to_string());
    assert_eq!(
        retry_after(Err::<(), _>(real)),
        retry_after(Err::<(), _>(ghost))
    );
}

#[tokio::test(start_paused = true)]
async fn usernames_are_case_folded() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    for name in ["Alice", "alice", "ALICE", "aLiCe", "alicE"] {
        login(&throttle, name, "wrong", None).await.unwrap();
    }
    retry_after(throttle.check("alice", None).await);

    for name in ["ÅSA", "åsa", "Åsa", "åSA", "ÅsA"] {
        throttle.record_failure(name, None).await.unwrap();
    }
    retry_after(throttle.check("åsa", None).await);
    // Folding is not trimming: a username with a space is another account.
    throttle.check(" alice", None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_address_spraying_many_usernames_is_locked() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    let sprayer = Some(ip("203.0.113.66"));
    for i in 0..50 {
        let user = format!("user{i}");
        assert!(!login(&throttle, &user, "123456", sprayer).await.unwrap());
    }
    // A username it never tried is refused from that address...
    retry_after(login(&throttle, "alice", "secret", sprayer).await);
    // ...but not from elsewhere, and none of the sprayed accounts is locked by itself.
    assert!(
        login(&throttle, "alice", "secret", Some(ip("198.51.100.1")))
            .await
            .unwrap()
    );
    throttle.check("user0", None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new()).max_failures_per_address(3);
    throttle
        .record_failure("a", Some(ip("2001:db8:1:2::1")))
        .await
        .unwrap();
    throttle
        .record_failure("b", Some(ip("2001:db8:1:2::2")))
        .await
        .unwrap();
    throttle
        .record_failure("c", Some(ip("2001:db8:1:2:ffff::9")))
        .await
        .unwrap();
    retry_after(throttle.check("d", Some(ip("2001:db8:1:2::77"))).await);
    throttle
        .check("d", Some(ip("2001:db8:1:3::1")))
        .await
        .unwrap();

    for user in ["a", "b", "c"] {
        throttle
            .record_failure(user, Some(ip("::ffff:192.0.2.1")))
            .await
            .unwrap();
    }
    retry_after(throttle.check("d", Some(ip("192.0.2.1"))).await);
}

#[tokio::test(start_paused = true)]
async fn lock_ends_with_the_fixed_window() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    login(&throttle, "alice", "wrong", None).await.unwrap();
    tokio::time::advance(Duration::from_secs(10 * 60)).await;
    for _ in 0..4 {
        login(&throttle, "alice", "wrong", None).await.unwrap();
    }
    // Counted from the first failure: five minutes left, not fifteen.
    let left = retry_after(throttle.check("alice", None).await);
    assert_eq!(left, Duration::from_secs(5 * 60));

    tokio::time::advance(Duration::from_secs(5 * 60 - 1)).await;
    assert_eq!(
        retry_after(throttle.check("alice", None).await),
        Duration::from_secs(1)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(login(&throttle, "alice", "secret", None).await.unwrap());
}

#[tokio::test]
async fn lock_ends_with_the_window_in_real_time() {
    let window = Duration::from_millis(1200);
    let throttle = LoginThrottle::new(MemoryThrottleStore::new()).window(window);
    for _ in 0..5 {
        throttle.record_failure("alice", None).await.unwrap();
    }
    let left = retry_after(throttle.check("alice", None).await);
    assert!(left >= Duration::from_secs(1) && left <= Duration::from_secs(2));
    tokio::time::sleep(window).await;
    throttle.check("alice", None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_within_the_window() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new());
    for step in 0..5 {
        throttle.record_failure("alice", None).await.unwrap();
        tokio::time::advance(Duration::from_millis(1234 * step)).await;
    }
    let left = retry_after(throttle.check("alice", None).await);
    assert!(left >= Duration::from_secs(1), "{left:?}");
    assert!(left <= WINDOW, "{left:?}");
    assert_eq!(left.subsec_nanos(), 0, "Retry-After is whole seconds");

    let response =
        axum::response::IntoResponse::into_response(Error::Throttled { retry_after: left });
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()["retry-after"],
        left.as_secs().to_string().as_str()
    );
}

#[tokio::test(start_paused = true)]
async fn memory_store_key_cap_holds_under_100k_random_usernames() {
    let cap = 10_000;
    let store = MemoryThrottleStore::new().with_capacity_limit(cap);
    let throttle = LoginThrottle::new(store.clone());
    let mut rng = rand::thread_rng();
    for i in 0..100_000 {
        let name = Alphanumeric.sample_string(&mut rng, 12);
        throttle.record_failure(&name, None).await.unwrap();
        if i % 10_000 == 0 {
            assert!(store.len() <= cap);
        }
    }
    assert_eq!(store.len(), cap);

    // The victims of eviction are the oldest windows: an account locked just now survives.
    for _ in 0..5 {
        throttle.record_failure("alice", None).await.unwrap();
    }
    for _ in 0..(cap / 2) {
        let name = Alphanumeric.sample_string(&mut rng, 12);
        throttle.record_failure(&name, None).await.unwrap();
    }
    assert!(store.len() <= cap);
    retry_after(throttle.check("alice", None).await);
}

#[tokio::test(start_paused = true)]
async fn expired_windows_are_dropped_first_and_do_not_count() {
    let store = MemoryThrottleStore::new().with_capacity_limit(100);
    let throttle = LoginThrottle::new(store.clone()).window(Duration::from_secs(60));
    for i in 0..100 {
        throttle
            .record_failure(&format!("old{i}"), None)
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 100);
    tokio::time::advance(Duration::from_secs(61)).await;
    for i in 0..10 {
        throttle
            .record_failure(&format!("new{i}"), None)
            .await
            .unwrap();
    }
    assert!(store.len() <= 100);
    assert_eq!(
        store.failures("new0").await.unwrap(),
        None,
        "keys are namespaced"
    );
    assert_eq!(
        store.failures("acct:new0").await.unwrap().map(|e| e.count),
        Some(1)
    );
    assert_eq!(store.failures("acct:old0").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn memory_store_follows_the_store_contract() {
    let store = MemoryThrottleStore::new();
    let window = Duration::from_secs(60);
    assert_eq!(store.failures("k").await.unwrap(), None);
    assert_eq!(
        store.record_failure("k", window).await.unwrap(),
        ThrottleEntry {
            count: 1,
            expires_in: window
        }
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    // An increment does not move the end of the window.
    assert_eq!(
        store
            .record_failure("k", Duration::from_secs(600))
            .await
            .unwrap(),
        ThrottleEntry {
            count: 2,
            expires_in: Duration::from_secs(40)
        }
    );
    assert_eq!(
        store.failures("k").await.unwrap(),
        Some(ThrottleEntry {
            count: 2,
            expires_in: Duration::from_secs(40)
        })
    );
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(store.failures("k").await.unwrap(), None);
    assert_eq!(store.record_failure("k", window).await.unwrap().count, 1);
    store.reset("k").await.unwrap();
    store.reset("k").await.unwrap();
    assert_eq!(store.failures("k").await.unwrap(), None);
    assert!(store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_are_all_counted() {
    let store = MemoryThrottleStore::new();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_failure("k", Duration::from_secs(60))
                    .await
                    .unwrap()
                    .count
            })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=64).collect::<Vec<u32>>());
}

/// Records the keys it is asked about; otherwise a memory store.
#[derive(Clone, Default)]
struct KeyRecorder {
    keys: Arc<Mutex<Vec<String>>>,
    store: MemoryThrottleStore,
}

#[async_trait]
impl ThrottleStore for KeyRecorder {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        self.keys.lock().unwrap().push(key.to_owned());
        self.store.failures(key).await
    }
    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        self.keys.lock().unwrap().push(key.to_owned());
        self.store.record_failure(key, window).await
    }
    async fn reset(&self, key: &str) -> Result<()> {
        self.keys.lock().unwrap().push(key.to_owned());
        self.store.reset(key).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_username_does_not_make_a_huge_key() {
    let recorder = KeyRecorder::default();
    let throttle = LoginThrottle::new(recorder.clone());
    let huge = "A".repeat(1 << 20);
    for _ in 0..5 {
        login(&throttle, &huge, "wrong", Some(ip("203.0.113.7")))
            .await
            .unwrap();
    }
    // Still one account, case-folded before hashing.
    retry_after(throttle.check(&huge.to_lowercase(), None).await);
    {
        let keys = recorder.keys.lock().unwrap();
        let longest = keys.iter().map(String::len).max().unwrap();
        assert!(longest <= 80, "{longest}");
        assert!(keys.iter().any(|k| k.starts_with("acct-sha256:")));
        assert!(keys.iter().any(|k| k == "ip:203.0.113.7"));
    }
    // A 64-byte username is kept as is.
    throttle
        .record_failure(&"b".repeat(64), None)
        .await
        .unwrap();
    let expected = format!("acct:{}", "b".repeat(64));
    assert!(recorder.keys.lock().unwrap().contains(&expected));
}

/// A store whose backend is down.
struct Down;

#[async_trait]
impl ThrottleStore for Down {
    async fn failures(&self, _key: &str) -> Result<Option<ThrottleEntry>> {
        Err(Error::Store("connection refused".into()))
    }
    async fn record_failure(&self, _key: &str, _window: Duration) -> Result<ThrottleEntry> {
        Err(Error::Store("connection refused".into()))
    }
    async fn reset(&self, _key: &str) -> Result<()> {
        Err(Error::Store("connection refused".into()))
    }
}

#[tokio::test]
async fn a_failing_store_refuses_with_503() {
    let throttle = LoginThrottle::new(Down);
    for addr in [None, Some(ip("203.0.113.7"))] {
        let err = throttle.check("alice", addr).await.unwrap_err();
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(login(&throttle, "alice", "secret", addr).await.is_err());
    }
    assert!(throttle.record_failure("alice", None).await.is_err());
    assert!(throttle.record_success("alice").await.is_err());
}

/// A store that never answers.
struct Hung;

#[async_trait]
impl ThrottleStore for Hung {
    async fn failures(&self, _key: &str) -> Result<Option<ThrottleEntry>> {
        std::future::pending().await
    }
    async fn record_failure(&self, _key: &str, _window: Duration) -> Result<ThrottleEntry> {
        std::future::pending().await
    }
    async fn reset(&self, _key: &str) -> Result<()> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_times_out_with_503() {
    let throttle = LoginThrottle::new(Hung).store_timeout(Duration::from_secs(2));
    let start = tokio::time::Instant::now();
    let err = throttle.check("alice", None).await.unwrap_err();
    assert!(matches!(err, Error::Timeout("throttle store")), "{err:?}");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(matches!(
        throttle.record_failure("alice", None).await,
        Err(Error::Timeout(_))
    ));
}

fn parts(peer: Option<&str>, xff: &[&str]) -> http::request::Parts {
    let mut builder = http::Request::builder();
    for value in xff {
        builder = builder.header("x-forwarded-for", *value);
    }
    let (mut parts, ()) = builder.body(()).unwrap().into_parts();
    if let Some(peer) = peer {
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::new(ip(peer), 40_000)));
    }
    parts
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let proxies = [ip("10.0.0.2"), ip("10.0.0.3")];
    let client = Some(ip("203.0.113.7"));

    // Directly connected client: its header is ignored, whatever it says.
    let p = parts(Some("198.51.100.9"), &["203.0.113.7"]);
    assert_eq!(client_addr(&p, &proxies), Some(ip("198.51.100.9")));

    // Through a trusted proxy: the right-most untrusted entry, not the forgeable left-most.
    let p = parts(Some("10.0.0.2"), &["6.6.6.6, 203.0.113.7"]);
    assert_eq!(client_addr(&p, &proxies), client);

    // Through two trusted proxies, and over several header lines.
    let p = parts(Some("10.0.0.2"), &["6.6.6.6, 203.0.113.7", "10.0.0.3"]);
    assert_eq!(client_addr(&p, &proxies), client);

    // Entries with ports, and IPv6.
    let p = parts(Some("10.0.0.2"), &["203.0.113.7:5555"]);
    assert_eq!(client_addr(&p, &proxies), client);
    let p = parts(Some("10.0.0.2"), &["[2001:db8::1]:443"]);
    assert_eq!(client_addr(&p, &proxies), Some(ip("2001:db8::1")));

    // A proxy on a dual-stack socket shows up as IPv4-mapped IPv6.
    let p = parts(Some("::ffff:10.0.0.2"), &["203.0.113.7"]);
    assert_eq!(client_addr(&p, &proxies), client);

    // Malformed header, or none: the socket peer.
    for bad in ["not-an-ip", "203.0.113.7, ", "", "1.2.3.4.5"] {
        let p = parts(Some("10.0.0.2"), &[bad]);
        assert_eq!(client_addr(&p, &proxies), Some(ip("10.0.0.2")), "{bad:?}");
    }
    let p = parts(Some("10.0.0.2"), &[]);
    assert_eq!(client_addr(&p, &proxies), Some(ip("10.0.0.2")));

    // No ConnectInfo: unknown, and the header alone is never believed.
    assert_eq!(client_addr(&parts(None, &["203.0.113.7"]), &proxies), None);

    // Through LoginThrottle.
    let throttle = LoginThrottle::new(MemoryThrottleStore::new()).trusted_proxies(proxies.to_vec());
    let p = parts(Some("10.0.0.3"), &["6.6.6.6, 203.0.113.7"]);
    assert_eq!(throttle.client_addr(&p), client);
    let untrusting = LoginThrottle::new(MemoryThrottleStore::new());
    assert_eq!(untrusting.client_addr(&p), Some(ip("10.0.0.3")));
}

#[test]
fn non_text_forwarded_for_falls_back_to_the_peer() {
    let mut p = parts(Some("10.0.0.2"), &[]);
    p.headers.insert(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap(),
    );
    assert_eq!(client_addr(&p, &[ip("10.0.0.2")]), Some(ip("10.0.0.2")));
}

#[tokio::test]
async fn throttle_store_can_be_chosen_at_run_time() {
    let store: Arc<dyn ThrottleStore> = Arc::new(MemoryThrottleStore::new());
    let throttle = LoginThrottle::new(store).max_failures(1);
    throttle.record_failure("alice", None).await.unwrap();
    assert!(matches!(
        throttle.check("alice", None).await,
        Err(Error::Throttled { .. })
    ));
}

/// Log lines written while `f` runs on this thread.
fn captured_logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Another test thread may have registered a callsite with no subscriber around,
        // caching "never" for it: ask again now that this one is.
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// DESIGN.md invariant 9: behind a reverse proxy that is not configured as trusted, every
/// client has the proxy's address, and its per-address limit is global. Say so, once.
#[test]
fn forwarded_for_without_trusted_proxies_is_warned_about_once() {
    let proxied = parts(Some("10.0.0.2"), &["203.0.113.7"]);
    let logs = captured_logs(|| {
        let throttle = LoginThrottle::new(MemoryThrottleStore::new());
        let clone = throttle.clone();
        for _ in 0..3 {
            assert_eq!(throttle.client_addr(&proxied), Some(ip("10.0.0.2")));
            assert_eq!(clone.client_addr(&proxied), Some(ip("10.0.0.2")));
        }
    });
    assert_eq!(
        logs.matches("no trusted proxy is configured").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("LoginThrottle::trusted_proxies"), "{logs}");

    // No header, or a configured proxy: nothing to warn about.
    let logs = captured_logs(|| {
        let throttle = LoginThrottle::new(MemoryThrottleStore::new());
        throttle.client_addr(&parts(Some("10.0.0.2"), &[]));
        let behind_proxy = throttle.trusted_proxies(vec![ip("10.0.0.2")]);
        assert_eq!(behind_proxy.client_addr(&proxied), Some(ip("203.0.113.7")));
    });
    assert!(!logs.contains("trusted proxy"), "{logs}");
}
