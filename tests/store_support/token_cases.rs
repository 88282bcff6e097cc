//! The conformance cases of the `TokenStore`s (one-time tokens: password reset, email
//! verification, magic links): every store must behave like `MemoryTokenStore`. Written once,
//! run against each backend (in the submodule `tokens` of each backend's module) by
//! `tests/conformance.rs` and `tests/redis_cluster.rs`.
//!
//! What these cases guard: a token is single-use (`take` succeeds for exactly one of any
//! number of racing calls, and only with the right hash), an expired token is never found,
//! and cleanup removes only what has expired.

use std::sync::Arc;
use std::time::Duration;

use login_manager::StoredToken;
use time::OffsetDateTime;
use tokio::sync::Barrier;

use super::Stores;

/// Now, to the millisecond: the precision every store keeps.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).expect("valid")
}

const HOUR: time::Duration = time::Duration::hours(1);
const SECOND: time::Duration = time::Duration::seconds(1);

/// A hash that differs from `token(selector)`'s.
const WRONG: [u8; 32] = [0xee; 32];

/// A live token (an hour left), its hash derived from the selector.
fn token(selector: &str) -> StoredToken {
    let now = now();
    let mut validator_hash = [0u8; 32];
    for (i, b) in selector.bytes().enumerate() {
        validator_hash[i % 32] ^= b.wrapping_add(i as u8);
    }
    validator_hash[31] = 0x5a;
    StoredToken {
        selector: selector.to_owned(),
        validator_hash,
        purpose: "password-reset".to_owned(),
        user_id: "\"alice\"".to_owned(),
        auth_hash: "auth-digest".to_owned(),
        created_at: now,
        expires_at: now + HOUR,
    }
}

/// `token`, expired a second ago.
fn expired(mut token: StoredToken) -> StoredToken {
    token.created_at = now() - HOUR;
    token.expires_at = now() - SECOND;
    token
}

pub async fn create_then_find_round_trips(s: Stores) {
    let full = StoredToken {
        purpose: "verify-email É 'single' \"double\" back\\slash {braces} %".to_owned(),
        user_id: "{\"id\":42,\"name\":\"it's\"}".to_owned(),
        auth_hash: "bG9uZyBkaWdlc3Q=".to_owned(),
        validator_hash: [0xff; 32],
        ..token("selector-full")
    };
    let zero = StoredToken {
        validator_hash: [0; 32],
        user_id: "1".to_owned(),
        purpose: "magic-link".to_owned(),
        ..token("selector-zero")
    };
    s.tokens.create(full.clone()).await.unwrap();
    s.tokens.create(zero.clone()).await.unwrap();

    assert_eq!(s.tokens.find("selector-full").await.unwrap(), Some(full));
    assert_eq!(s.tokens.find("selector-zero").await.unwrap(), Some(zero));
    assert_eq!(s.tokens.find("selector-missing").await.unwrap(), None);
    assert_eq!(s.tokens.find("").await.unwrap(), None);
    // Finding does not use a token up.
    assert!(s.tokens.find("selector-full").await.unwrap().is_some());
}

pub async fn find_never_returns_an_expired_token(s: Stores) {
    let gone = expired(token("expired"));
    let soon = StoredToken {
        expires_at: now() + time::Duration::milliseconds(800),
        ..token("soon")
    };
    let live = token("live");
    for t in [&gone, &soon, &live] {
        s.tokens.create(t.clone()).await.unwrap();
    }
    assert_eq!(s.tokens.find("expired").await.unwrap(), None);
    assert_eq!(s.tokens.find("soon").await.unwrap(), Some(soon));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.tokens.find("soon").await.unwrap(), None);
    assert_eq!(s.tokens.find("expired").await.unwrap(), None);
    assert_eq!(s.tokens.find("live").await.unwrap(), Some(live));
}

pub async fn take_with_the_right_hash_succeeds_once_and_the_token_is_gone(s: Stores) {
    let t = token("once");
    s.tokens.create(t.clone()).await.unwrap();

    assert!(s.tokens.take("once", &t.validator_hash).await.unwrap());
    assert_eq!(s.tokens.find("once").await.unwrap(), None);
    assert!(!s.tokens.take("once", &t.validator_hash).await.unwrap());
    assert_eq!(s.tokens.find("once").await.unwrap(), None);
    assert!(!s
        .tokens
        .take("never-issued", &t.validator_hash)
        .await
        .unwrap());
}

pub async fn take_with_a_wrong_hash_fails_and_leaves_the_token(s: Stores) {
    let t = token("guarded");
    s.tokens.create(t.clone()).await.unwrap();

    assert!(!s.tokens.take("guarded", &WRONG).await.unwrap());
    // One bit off.
    let mut near = t.validator_hash;
    near[0] ^= 1;
    assert!(!s.tokens.take("guarded", &near).await.unwrap());
    assert_eq!(s.tokens.find("guarded").await.unwrap(), Some(t.clone()));

    assert!(s.tokens.take("guarded", &t.validator_hash).await.unwrap());
    assert_eq!(s.tokens.find("guarded").await.unwrap(), None);
}

pub async fn fifty_parallel_takes_have_exactly_one_winner(s: Stores) {
    const TAKES: usize = 50;
    let t = token("contended");
    s.tokens.create(t.clone()).await.unwrap();
    let start = Arc::new(Barrier::new(TAKES));
    let tasks: Vec<_> = (0..TAKES)
        .map(|_| {
            let (store, start, hash) =
                (Arc::clone(&s.tokens), Arc::clone(&start), t.validator_hash);
            tokio::spawn(async move {
                start.wait().await;
                store.take("contended", &hash).await.expect("a racing take")
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "{winners} of {TAKES} racing takes won");
    assert_eq!(s.tokens.find("contended").await.unwrap(), None);
    assert!(!s.tokens.take("contended", &t.validator_hash).await.unwrap());
}

pub async fn delete_expired_removes_only_expired_tokens(s: Stores) {
    let (a, b) = (token("a"), token("b"));
    let soon = StoredToken {
        expires_at: now() + time::Duration::milliseconds(800),
        ..token("soon")
    };
    for t in [&a, &expired(token("x")), &b, &soon] {
        s.tokens.create(t.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let deleted = s.tokens.delete_expired().await.unwrap();
    if s.native_expiry {
        // Redis: each token's key expires with it, so there is nothing left to delete.
        assert_eq!(deleted, 0);
    } else {
        assert_eq!(deleted, 2);
    }
    assert_eq!(s.tokens.delete_expired().await.unwrap(), 0);
    assert_eq!(s.tokens.find("a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.tokens.find("b").await.unwrap(), Some(b.clone()));
    assert_eq!(s.tokens.find("x").await.unwrap(), None);
    assert_eq!(s.tokens.find("soon").await.unwrap(), None);
    // The expired ones cannot be used up any more; the live ones still can.
    assert!(!s
        .tokens
        .take("x", &token("x").validator_hash)
        .await
        .unwrap());
    assert!(!s.tokens.take("soon", &soon.validator_hash).await.unwrap());
    assert!(s.tokens.take("a", &a.validator_hash).await.unwrap());
    assert!(s.tokens.take("b", &b.validator_hash).await.unwrap());
}

pub async fn tokens_of_different_selectors_are_independent(s: Stores) {
    // Prefixes of each other, case, SQL quotes, Redis hash tags and key separators.
    let selectors = [
        "sel",
        "sel2",
        "SEL",
        "se",
        "it's \"quoted\"",
        "{tag}",
        "a:b",
        "%7B",
    ];
    let tokens: Vec<StoredToken> = selectors
        .iter()
        .map(|sel| StoredToken {
            purpose: format!("purpose of {sel}"),
            ..token(sel)
        })
        .collect();
    for t in &tokens {
        s.tokens.create(t.clone()).await.unwrap();
    }
    for t in &tokens {
        assert_eq!(s.tokens.find(&t.selector).await.unwrap().as_ref(), Some(t));
    }
    // Another token's hash does not take this one.
    assert!(!s
        .tokens
        .take("sel", &tokens[1].validator_hash)
        .await
        .unwrap());

    // Using up one leaves the others, whatever their selectors look like.
    assert!(s
        .tokens
        .take("sel", &tokens[0].validator_hash)
        .await
        .unwrap());
    assert_eq!(s.tokens.find("sel").await.unwrap(), None);
    for t in &tokens[1..] {
        assert_eq!(s.tokens.find(&t.selector).await.unwrap().as_ref(), Some(t));
    }
    for t in tokens[1..].iter().step_by(2) {
        assert!(s.tokens.take(&t.selector, &t.validator_hash).await.unwrap());
    }
    for (i, t) in tokens.iter().enumerate().skip(1) {
        let expected = (i % 2 == 0).then_some(t);
        assert_eq!(
            s.tokens.find(&t.selector).await.unwrap().as_ref(),
            expected,
            "{}",
            t.selector
        );
    }
}
