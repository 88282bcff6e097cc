//! The conformance cases: every store must behave like the memory stores. Written once,
//! run against each backend by `tests/conformance.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use login_manager::{RememberToken, Rotation};
use time::OffsetDateTime;
use tokio::sync::Barrier;

use super::Stores;

/// Now, to the millisecond: the precision every store keeps.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).expect("valid")
}

fn token(selector: &str, user_id: &str, expires_in: time::Duration) -> RememberToken {
    let now = now();
    RememberToken {
        selector: selector.to_owned(),
        validator_hash: [7; 32],
        previous_hash: None,
        rotated_at: None,
        user_id: user_id.to_owned(),
        auth_hash: "digest-of-the-auth-hash".to_owned(),
        created_at: now,
        last_used_at: now,
        expires_at: now + expires_in,
        user_agent: "Mozilla/5.0 (X11; Linux) — test".to_owned(),
    }
}

fn sorted(mut tokens: Vec<RememberToken>) -> Vec<RememberToken> {
    tokens.sort_by(|a, b| a.selector.cmp(&b.selector));
    tokens
}

const DAY: time::Duration = time::Duration::days(1);

pub async fn create_then_find(s: Stores) {
    let plain = token("sel-plain", "1", DAY);
    let mut rotated = token("sel-rotated", "\"alice\"", DAY);
    rotated.previous_hash = Some([3; 32]);
    rotated.rotated_at = Some(now() - time::Duration::seconds(5));
    s.remember.create(plain.clone()).await.unwrap();
    s.remember.create(rotated.clone()).await.unwrap();

    assert_eq!(s.remember.find("sel-plain").await.unwrap(), Some(plain));
    assert_eq!(s.remember.find("sel-rotated").await.unwrap(), Some(rotated));
    assert_eq!(s.remember.find("sel-missing").await.unwrap(), None);
}

pub async fn rotate_needs_the_expected_hash(s: Stores) {
    let original = token("sel", "1", DAY);
    s.remember.create(original.clone()).await.unwrap();
    let at = now() + time::Duration::seconds(1);
    let rotation = Rotation {
        new_hash: [9; 32],
        rotated_at: at,
        expires_at: at + DAY,
    };

    let wrong = s.remember.rotate("sel", &[8; 32], rotation.clone());
    assert!(!wrong.await.unwrap(), "a wrong expected hash loses");
    assert_eq!(
        s.remember.find("sel").await.unwrap(),
        Some(original.clone())
    );
    let missing = s.remember.rotate("sel-missing", &[7; 32], rotation.clone());
    assert!(!missing.await.unwrap(), "a missing token cannot be rotated");

    let right = s.remember.rotate("sel", &[7; 32], rotation.clone());
    assert!(right.await.unwrap(), "the expected hash wins");
    let stored = s.remember.find("sel").await.unwrap().unwrap();
    assert_eq!(
        stored,
        RememberToken {
            validator_hash: [9; 32],
            previous_hash: Some([7; 32]),
            rotated_at: Some(at),
            last_used_at: at,
            expires_at: at + DAY,
            ..original
        }
    );

    let again = s.remember.rotate("sel", &[7; 32], rotation);
    assert!(
        !again.await.unwrap(),
        "the rotated-out hash no longer matches"
    );
}

pub async fn delete_removes_one_token(s: Stores) {
    s.remember.create(token("sel-a", "1", DAY)).await.unwrap();
    s.remember.create(token("sel-b", "1", DAY)).await.unwrap();
    s.remember.delete("sel-a").await.unwrap();
    assert_eq!(s.remember.find("sel-a").await.unwrap(), None);
    assert!(s.remember.find("sel-b").await.unwrap().is_some());
    assert_eq!(s.remember.list_for_user("1").await.unwrap().len(), 1);
    s.remember.delete("sel-a").await.unwrap();
    s.remember.delete("sel-missing").await.unwrap();
}

pub async fn list_and_delete_for_user(s: Stores) {
    // Ids as the library encodes them (JSON), plus awkward ones: braces and `%` (Redis hash
    // tags) and the empty string.
    let alice = "\"alice\"";
    let weird = "\"{we}ird%7B\"";
    let mut alices = Vec::new();
    for i in 0..3 {
        let t = token(&format!("sel-alice-{i}"), alice, DAY);
        s.remember.create(t.clone()).await.unwrap();
        alices.push(t);
    }
    let one = token("sel-one", "1", DAY);
    let odd = token("sel-weird", weird, DAY);
    let empty = token("sel-empty", "", DAY);
    for t in [&one, &odd, &empty] {
        s.remember.create(t.clone()).await.unwrap();
    }

    let listed = sorted(s.remember.list_for_user(alice).await.unwrap());
    assert_eq!(listed, alices);
    assert_eq!(
        s.remember.list_for_user("1").await.unwrap(),
        vec![one.clone()]
    );
    assert_eq!(
        s.remember.list_for_user(weird).await.unwrap(),
        vec![odd.clone()]
    );
    assert_eq!(
        s.remember.list_for_user("").await.unwrap(),
        vec![empty.clone()]
    );
    assert!(s
        .remember
        .list_for_user("\"nobody\"")
        .await
        .unwrap()
        .is_empty());

    assert_eq!(s.remember.delete_for_user(alice).await.unwrap(), 3);
    assert!(s.remember.list_for_user(alice).await.unwrap().is_empty());
    for t in &alices {
        assert_eq!(s.remember.find(&t.selector).await.unwrap(), None);
    }
    assert_eq!(s.remember.find("sel-one").await.unwrap(), Some(one));
    assert_eq!(s.remember.find("sel-weird").await.unwrap(), Some(odd));
    assert_eq!(s.remember.delete_for_user(alice).await.unwrap(), 0);
    assert_eq!(s.remember.delete_for_user("\"nobody\"").await.unwrap(), 0);
    assert_eq!(s.remember.delete_for_user("").await.unwrap(), 1);
}

pub async fn expired_tokens_are_cleaned_up(s: Stores) {
    let expired = token("sel-expired", "1", -time::Duration::seconds(1));
    let live = token("sel-live", "1", DAY);
    let soon = token("sel-soon", "1", time::Duration::milliseconds(800));
    for t in [&expired, &live, &soon] {
        s.remember.create(t.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    if s.native_expiry {
        // Redis dropped both at their expiry.
        assert_eq!(s.remember.find("sel-expired").await.unwrap(), None);
        assert_eq!(s.remember.find("sel-soon").await.unwrap(), None);
        assert_eq!(s.remember.delete_expired().await.unwrap(), 0);
    } else {
        // Returned as stored, so that the caller sees the expiry and deletes the token.
        assert_eq!(s.remember.find("sel-expired").await.unwrap(), Some(expired));
        assert_eq!(s.remember.find("sel-soon").await.unwrap(), Some(soon));
        assert_eq!(s.remember.delete_expired().await.unwrap(), 2);
    }
    assert_eq!(s.remember.find("sel-expired").await.unwrap(), None);
    assert_eq!(s.remember.find("sel-soon").await.unwrap(), None);
    assert_eq!(
        s.remember.list_for_user("1").await.unwrap(),
        vec![live.clone()]
    );
    assert_eq!(s.remember.find("sel-live").await.unwrap(), Some(live));
    assert_eq!(s.remember.delete_expired().await.unwrap(), 0);
}

pub async fn concurrent_rotations_have_one_winner(s: Stores) {
    const RACERS: u8 = 50;
    s.remember.create(token("sel", "1", DAY)).await.unwrap();
    let start = Arc::new(Barrier::new(usize::from(RACERS)));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, start) = (Arc::clone(&s.remember), Arc::clone(&start));
            tokio::spawn(async move {
                let at = now();
                let rotation = Rotation {
                    new_hash: [100 + i; 32],
                    rotated_at: at,
                    expires_at: at + DAY,
                };
                start.wait().await;
                (i, store.rotate("sel", &[7; 32], rotation).await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (i, won) = racer.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner, got {winners:?}");
    let stored = s.remember.find("sel").await.unwrap().unwrap();
    assert_eq!(stored.validator_hash, [100 + winners[0]; 32]);
    assert_eq!(stored.previous_hash, Some([7; 32]));
}

pub async fn throttle_counts_failures(s: Stores) {
    let window = Duration::from_secs(60);
    for expected in 1..=3 {
        let entry = s
            .throttle
            .record_failure("acct:alice", window)
            .await
            .unwrap();
        assert_eq!(entry.count, expected);
        assert!(entry.expires_in <= window, "{entry:?}");
        assert!(
            entry.expires_in > window - Duration::from_secs(5),
            "{entry:?}"
        );
    }
    let entry = s.throttle.failures("acct:alice").await.unwrap().unwrap();
    assert_eq!(entry.count, 3);
    assert!(entry.expires_in > Duration::ZERO && entry.expires_in <= window);

    // Keys are opaque: no case folding, any text.
    assert_eq!(s.throttle.failures("acct:Alice").await.unwrap(), None);
    assert_eq!(s.throttle.failures("ip:203.0.113.7").await.unwrap(), None);
    let odd = "acct:ÉLODIE {x} 'quoted' \"q\" %_";
    assert_eq!(
        s.throttle.record_failure(odd, window).await.unwrap().count,
        1
    );
    assert_eq!(s.throttle.failures(odd).await.unwrap().unwrap().count, 1);
    assert_eq!(
        s.throttle
            .failures("acct:alice")
            .await
            .unwrap()
            .unwrap()
            .count,
        3
    );
}

pub async fn throttle_window_is_fixed_and_restarts(s: Stores) {
    let window = Duration::from_secs(1);
    let slack = Duration::from_millis(150);
    let opened = tokio::time::Instant::now();
    assert_eq!(
        s.throttle.record_failure("k", window).await.unwrap().count,
        1
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = s.throttle.record_failure("k", window).await.unwrap();
    assert_eq!(second.count, 2);
    let left = window.saturating_sub(opened.elapsed());
    assert!(
        second.expires_in <= left + slack,
        "a failure does not move the window's end: {second:?}, {left:?} left"
    );

    tokio::time::sleep(window.saturating_sub(opened.elapsed()) + slack).await;
    assert_eq!(
        s.throttle.failures("k").await.unwrap(),
        None,
        "the window ended"
    );
    let reopened = s.throttle.record_failure("k", window).await.unwrap();
    assert_eq!(reopened.count, 1, "an ended window restarts at 1");
    assert!(reopened.expires_in > window - slack, "{reopened:?}");
}

pub async fn throttle_reset(s: Stores) {
    let window = Duration::from_secs(60);
    s.throttle.record_failure("k", window).await.unwrap();
    s.throttle.record_failure("k", window).await.unwrap();
    s.throttle.record_failure("other", window).await.unwrap();
    s.throttle.reset("k").await.unwrap();
    assert_eq!(s.throttle.failures("k").await.unwrap(), None);
    assert_eq!(
        s.throttle.record_failure("k", window).await.unwrap().count,
        1
    );
    assert_eq!(
        s.throttle.failures("other").await.unwrap().unwrap().count,
        1
    );
    s.throttle.reset("never-seen").await.unwrap();
}

pub async fn throttle_concurrent_increments(s: Stores) {
    const TASKS: u32 = 50;
    let start = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, start) = (Arc::clone(&s.throttle), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                store
                    .record_failure("acct:contended", Duration::from_secs(60))
                    .await
                    .unwrap()
                    .count
            })
        })
        .collect();
    let mut counts = BTreeSet::new();
    for task in tasks {
        assert!(counts.insert(task.await.unwrap()), "a count was seen twice");
    }
    assert_eq!(counts, (1..=TASKS).collect::<BTreeSet<_>>());
    let entry = s
        .throttle
        .failures("acct:contended")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.count, TASKS);
}

/// Device cookies (DESIGN.md invariant 9) on this store: a browser holding a valid device
/// cookie for an account is judged by its own failures only; a cookie for another account, a
/// forged one or a retired one is not trusted.
pub async fn device_cookies_survive_other_clients_locks(s: Stores) {
    use login_manager::{Error, LoginThrottle};

    let throttle = LoginThrottle::new(Arc::clone(&s.throttle))
        .max_failures(2)
        .max_failures_per_address(3);
    let addr = Some("203.0.113.9".parse().unwrap());
    let owner = throttle.attempt("alice", addr, None).await.unwrap();
    assert!(!owner.is_trusted_device());
    let cookie = owner.succeeded().await.unwrap();
    assert_eq!(cookie.name(), "device");
    assert_eq!(cookie.http_only(), Some(true));
    let device = cookie.value().to_owned();

    // Other clients, on the owner's address too, lock the account and the address.
    for account in ["alice", "alice", "mallory"] {
        let attempt = throttle.attempt(account, addr, None).await.unwrap();
        attempt.failed().await.unwrap();
    }
    let locked = |r: &Result<_, login_manager::Error>| matches!(r, Err(Error::Throttled { .. }));
    assert!(locked(&throttle.attempt("alice", addr, None).await));
    assert!(
        locked(&throttle.attempt("bob", addr, None).await),
        "address locked"
    );

    // The owner's browser is let through, whatever the account's and address's counters.
    let trusted = throttle
        .attempt("ALICE", addr, Some(&device))
        .await
        .unwrap();
    assert!(trusted.is_trusted_device());
    // Its own failures count: two lock the device.
    trusted.failed().await.unwrap();
    throttle
        .attempt("alice", addr, Some(&device))
        .await
        .unwrap()
        .failed()
        .await
        .unwrap();
    assert!(locked(
        &throttle.attempt("alice", addr, Some(&device)).await
    ));

    // The cookie means nothing for another account, nor forged.
    assert!(locked(&throttle.attempt("bob", addr, Some(&device)).await));
    let forged = "A".repeat(43);
    assert!(locked(
        &throttle.attempt("alice", addr, Some(&forged)).await
    ));

    // A success from a trusted device retires its cookie and issues a new one.
    let other = throttle.attempt("carol", None, None).await.unwrap();
    let first = other.succeeded().await.unwrap().value().to_owned();
    let again = throttle.attempt("carol", None, Some(&first)).await.unwrap();
    assert!(again.is_trusted_device());
    let second = again.succeeded().await.unwrap().value().to_owned();
    assert_ne!(first, second);
    let retired = throttle.attempt("carol", None, Some(&first)).await.unwrap();
    assert!(!retired.is_trusted_device());
    let current = throttle
        .attempt("carol", None, Some(&second))
        .await
        .unwrap();
    assert!(current.is_trusted_device());
}
