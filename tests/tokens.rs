//! One-time tokens (DESIGN.md invariant 11, #18) through the public API: random, stored hashed,
//! single-use under concurrency, expiring, bound to the auth hash, throttled, one answer for
//! every kind of bad token. The stores are checked on every backend by `tests/conformance.rs`.

mod common;

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use common::Users;
use login_manager::{
    LoginThrottle, MemoryThrottleStore, MemoryTokenStore, OneTimeTokens, StoredToken, TokenOutcome,
    TokenStore,
};

const RESET: &str = "password-reset";
const HOUR: Duration = Duration::from_secs(3600);

/// A token store that counts calls and can be made to fail.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryTokenStore,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Counting {
    fn check(&self) -> login_manager::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(login_manager::Error::Store("token store is down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl TokenStore for Counting {
    async fn create(&self, token: StoredToken) -> login_manager::Result<()> {
        self.check()?;
        self.inner.create(token).await
    }
    async fn find(&self, selector: &str) -> login_manager::Result<Option<StoredToken>> {
        self.check()?;
        self.inner.find(selector).await
    }
    async fn take(&self, selector: &str, hash: &[u8; 32]) -> login_manager::Result<bool> {
        self.check()?;
        self.inner.take(selector, hash).await
    }
    async fn delete_expired(&self) -> login_manager::Result<u64> {
        self.check()?;
        self.inner.delete_expired().await
    }
}

fn valid_user(outcome: TokenOutcome<common::User>) -> Option<String> {
    match outcome {
        TokenOutcome::Valid(user) => Some(user.name),
        _ => None,
    }
}

#[tokio::test]
async fn invariant_11_tokens_are_random_hashed_and_single_use() {
    let store = Counting::default();
    let tokens = OneTimeTokens::new(store.clone());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();

    let a = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let b = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 66, "selector.validator, base64url");
    let (selector, validator) = a.split_once('.').unwrap();
    let stored = store.inner.find(selector).await.unwrap().unwrap();
    assert!(
        !format!("{stored:?}").contains(validator),
        "the validator is not stored"
    );
    assert_eq!(stored.purpose, RESET);

    let outcome = tokens.consume(&users, &a, RESET, None).await.unwrap();
    assert_eq!(valid_user(outcome).as_deref(), Some("alice"));
    let again = tokens.consume(&users, &a, RESET, None).await.unwrap();
    assert!(matches!(again, TokenOutcome::Invalid), "used up");
    assert!(valid_user(tokens.consume(&users, &b, RESET, None).await.unwrap()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_consumes_exactly_one_succeeds() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (tokens, users, token) = (tokens.clone(), users.clone(), token.clone());
            tokio::spawn(async move { tokens.consume(&users, &token, RESET, None).await })
        })
        .collect();
    let mut valid = 0;
    for task in tasks {
        if let TokenOutcome::Valid(_) = task.await.unwrap().unwrap() {
            valid += 1;
        }
    }
    assert_eq!(valid, 1);
}

#[tokio::test]
async fn a_password_change_voids_every_outstanding_token() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let mut alice = users.by_name("alice").unwrap();
    let before = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    alice.password = "a new password".to_owned();
    users.update(alice.clone());
    let outcome = tokens.consume(&users, &before, RESET, None).await.unwrap();
    assert!(matches!(outcome, TokenOutcome::Invalid));
    let after = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    assert!(valid_user(tokens.consume(&users, &after, RESET, None).await.unwrap()).is_some());
}

#[tokio::test]
async fn expired_tokens_are_invalid() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens
        .issue(&alice, RESET, Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let outcome = tokens.consume(&users, &token, RESET, None).await.unwrap();
    assert!(matches!(outcome, TokenOutcome::Invalid));
}

#[tokio::test]
async fn bad_tokens_get_one_answer_and_do_not_burn_the_real_one() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let (selector, validator) = token.split_once('.').unwrap();
    let mut flipped = validator.to_owned();
    let last = if flipped.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(flipped.len() - 1.., last);
    let bad = [
        String::new(),
        "x".repeat(66),
        format!("{selector}.{flipped}"),
        format!("{selector}."),
        token.to_uppercase(),
        "a".repeat(100_000),
    ];
    for bad in &bad {
        let outcome = tokens.consume(&users, bad, RESET, None).await.unwrap();
        assert!(matches!(outcome, TokenOutcome::Invalid), "{bad:.40}");
    }
    let other_purpose = tokens
        .consume(&users, &token, "magic-link", None)
        .await
        .unwrap();
    assert!(matches!(other_purpose, TokenOutcome::Invalid));
    assert!(valid_user(tokens.consume(&users, &token, RESET, None).await.unwrap()).is_some());
}

#[tokio::test]
async fn tokens_of_inactive_or_deleted_users_are_invalid() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let carol = users.by_name("carol").unwrap(); // inactive
    let token = tokens.issue(&carol, RESET, HOUR).await.unwrap();
    assert!(matches!(
        tokens.consume(&users, &token, RESET, None).await.unwrap(),
        TokenOutcome::Invalid
    ));
    let bob = users.by_name("bob").unwrap();
    let token = tokens.issue(&bob, RESET, HOUR).await.unwrap();
    users.remove(bob.id);
    assert!(matches!(
        tokens.consume(&users, &token, RESET, None).await.unwrap(),
        TokenOutcome::Invalid
    ));
}

#[tokio::test]
async fn failed_tokens_are_throttled_per_token_and_per_address() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new())
        .max_failures(3)
        .max_failures_per_address(5);
    let tokens = OneTimeTokens::new(MemoryTokenStore::new()).throttle(throttle);
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let (selector, _) = token.split_once('.').unwrap();
    let guess = format!("{selector}.{}", "A".repeat(43));
    let here: IpAddr = "192.0.2.1".parse().unwrap();
    let elsewhere: IpAddr = "192.0.2.2".parse().unwrap();

    // Per token: three wrong validators (from three addresses) lock this token.
    for addr in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let outcome = tokens
            .consume(&users, &guess, RESET, Some(addr.parse().unwrap()))
            .await
            .unwrap();
        assert!(matches!(outcome, TokenOutcome::Invalid));
    }
    let locked = tokens
        .consume(&users, &token, RESET, Some(elsewhere))
        .await
        .unwrap();
    assert!(
        matches!(locked, TokenOutcome::Throttled { .. }),
        "{locked:?}"
    );

    // Per address: five bad tokens from one address lock that address for every token.
    let fresh = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    for _ in 0..5 {
        let junk = tokens.issue(&alice, "other", HOUR).await.unwrap();
        tokens
            .consume(&users, &junk, RESET, Some(here))
            .await
            .unwrap();
    }
    let from_here = tokens
        .consume(&users, &fresh, RESET, Some(here))
        .await
        .unwrap();
    assert!(matches!(from_here, TokenOutcome::Throttled { .. }));
    let from_elsewhere = tokens
        .consume(&users, &fresh, RESET, Some(elsewhere))
        .await
        .unwrap();
    assert!(valid_user(from_elsewhere).is_some());
}

#[tokio::test]
async fn forgot_password_for_an_unknown_account_does_the_same_store_write_and_stores_nothing_usable(
) {
    let store = Counting::default();
    let tokens = OneTimeTokens::new(store.clone());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();

    let known = tokens
        .issue_if_known(Some(&alice), RESET, HOUR)
        .await
        .unwrap();
    assert!(known.is_some());
    let calls = store.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 1);
    let unknown = tokens
        .issue_if_known(None::<&common::User>, RESET, HOUR)
        .await
        .unwrap();
    assert!(unknown.is_none());
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        calls + 1,
        "one write too"
    );
    // The decoy is born expired and for no user: nothing can find it, cleanup drops it.
    assert_eq!(store.inner.delete_expired().await.unwrap(), 1);
}

#[tokio::test]
async fn a_store_failure_is_an_error_never_a_valid_token() {
    let store = Counting::default();
    let tokens = OneTimeTokens::new(store.clone());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    store.failing.store(true, Ordering::SeqCst);
    assert!(tokens.consume(&users, &token, RESET, None).await.is_err());
    assert!(tokens.issue(&alice, RESET, HOUR).await.is_err());
    store.failing.store(false, Ordering::SeqCst);
    assert!(valid_user(tokens.consume(&users, &token, RESET, None).await.unwrap()).is_some());
}

#[tokio::test]
async fn peek_judges_a_token_without_using_it_up() {
    let tokens = OneTimeTokens::new(MemoryTokenStore::new());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    for _ in 0..3 {
        let seen = tokens.peek(&users, &token, RESET, None).await.unwrap();
        assert_eq!(valid_user(seen).as_deref(), Some("alice"));
    }
    assert!(matches!(
        tokens
            .peek(&users, &token, "magic-link", None)
            .await
            .unwrap(),
        TokenOutcome::Invalid
    ));
    assert!(valid_user(tokens.consume(&users, &token, RESET, None).await.unwrap()).is_some());
    assert!(matches!(
        tokens.peek(&users, &token, RESET, None).await.unwrap(),
        TokenOutcome::Invalid
    ));
}

/// Found by the demo's tests: token failures were counted under the login throttle's account
/// keys, so a user named `token:malformed` was locked out by garbage links.
#[tokio::test]
async fn token_failures_never_lock_an_account_of_the_same_name() {
    let throttle = LoginThrottle::new(MemoryThrottleStore::new())
        .max_failures(3)
        .max_failures_per_address(1000);
    let tokens = OneTimeTokens::new(MemoryTokenStore::new()).throttle(throttle.clone());
    let users = Users::new();
    let alice = users.by_name("alice").unwrap();
    let token = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let (selector, _) = token.split_once('.').unwrap();
    let guess = format!("{selector}.{}", "A".repeat(43));
    for i in 0..5u8 {
        let addr: IpAddr = format!("203.0.113.{i}").parse().unwrap();
        tokens
            .consume(&users, "garbage", RESET, Some(addr))
            .await
            .unwrap();
        tokens
            .consume(&users, &guess, RESET, Some(addr))
            .await
            .unwrap();
    }
    for name in [
        "token:malformed".to_owned(),
        format!("token:{selector}"),
        format!("otk:{selector}"),
    ] {
        assert!(
            throttle.check(&name, None).await.is_ok(),
            "{name} is locked"
        );
    }
    // Malformed tokens count for their address only: a well-formed token elsewhere is fine.
    let fresh = tokens.issue(&alice, RESET, HOUR).await.unwrap();
    let elsewhere: IpAddr = "203.0.113.200".parse().unwrap();
    assert!(valid_user(
        tokens
            .consume(&users, &fresh, RESET, Some(elsewhere))
            .await
            .unwrap()
    )
    .is_some());
}
