//! The Redis stores on a real Redis Cluster (`tests/support/redis-cluster.sh start`: three
//! masters on 127.0.0.1:7101-7103; elsewhere, `LOGIN_MANAGER_TEST_REDIS_CLUSTER_URL`): the
//! conformance cases, plus many users' tokens, logins, one-time tokens and throttle keys spread
//! over every node.
//! Without a reachable cluster each test prints `SKIPPED` and passes, except with `CI=true`,
//! where it fails (as every store test, see `store_support`).
#![cfg(feature = "redis")]

mod store_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use fred::clients::Pool;
use fred::prelude::*;
use login_manager::stores::{
    RedisLoginStore, RedisRememberStore, RedisThrottleStore, RedisTokenStore,
};
use login_manager::{LoginStore, StoredLogin, StoredToken, ThrottleStore, TokenStore};
use login_manager::{RememberStore, RememberToken, Rotation};
use store_support::backends::{cluster_primaries, delete_keys, node_keys, redis_cluster_pool};
use store_support::{conformance, unique, with_teardown};
use time::OffsetDateTime;

// `redis_cluster::<case>`: every conformance case on the cluster.
conformance!(redis_cluster);

/// A connected cluster pool, its primaries (at least three, or the spread proves nothing) and
/// a private key prefix; `None` when skipped.
async fn cluster() -> Option<(Pool, Vec<fred::types::config::Server>, String)> {
    let pool = redis_cluster_pool().await?;
    let primaries = cluster_primaries(&pool).expect("a clustered pool");
    assert!(
        primaries.len() >= 3,
        "a cluster of three masters is needed, got {primaries:?}"
    );
    Some((pool, primaries, format!("{}:", unique("lm-cluster"))))
}

/// Runs `case`, then deletes every key under `prefix` on every node and closes the pool, also
/// when the case panicked.
async fn run<F>(pool: Pool, prefix: String, case: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    with_teardown(case, async move {
        delete_keys(&pool, &prefix).await;
        let _ = pool.quit().await;
    })
    .await;
}

/// One node's keys: how many of each kind, and the user tags of each kind.
type Node = (BTreeMap<String, usize>, BTreeMap<String, BTreeSet<String>>);

/// How many of each kind of key (`remember:token`, `throttle`, ...) each node holds, and
/// which user tags (the `{…}` of a key) each node holds the keys of.
async fn census(pool: &Pool, primaries: &[fred::types::config::Server], prefix: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    for node in primaries {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for key in node_keys(pool, node, prefix).await {
            let rest = &key[prefix.len()..];
            let kind = match rest.find('{') {
                // Throttle keys are the caller's text, braces included: not user tags.
                _ if rest.starts_with("throttle:") => "throttle".to_owned(),
                Some(open) => {
                    let close = open + rest[open..].find('}').expect("a closed tag");
                    let kind = rest[..open].trim_end_matches(':').to_owned();
                    tags.entry(kind.clone())
                        .or_default()
                        .insert(rest[open..=close].to_owned());
                    kind
                }
                None => rest.rsplit_once(':').expect("a kind").0.to_owned(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        nodes.push((kinds, tags));
    }
    nodes
}

fn count(nodes: &[Node], kind: &str) -> Vec<usize> {
    nodes
        .iter()
        .map(|(kinds, _)| kinds.get(kind).copied().unwrap_or(0))
        .collect()
}

/// Now, to the millisecond (what the store keeps).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).expect("valid")
}

fn token(selector: String, user_id: &str) -> RememberToken {
    let now = now();
    RememberToken {
        selector,
        validator_hash: [7; 32],
        previous_hash: None,
        rotated_at: None,
        user_id: user_id.to_owned(),
        auth_hash: "digest".to_owned(),
        created_at: now,
        last_used_at: now,
        expires_at: now + time::Duration::days(1),
        user_agent: "cluster test".to_owned(),
    }
}

/// 200 users, one token each (the first user three), land on all three nodes, each user's
/// token hashes and set in one slot; revoking one user's tokens, rotating and deleting single
/// tokens (selector pointer in one slot, token in another) work across the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_tokens_of_many_users_on_every_node() {
    const USERS: usize = 200;
    let Some((pool, primaries, prefix)) = cluster().await else {
        return;
    };
    let store = RedisRememberStore::new(pool.clone()).key_prefix(&prefix);
    let (census_pool, census_prefix) = (pool.clone(), prefix.clone());
    run(pool, prefix, async move {
        // JSON ids, as the library encodes them; every tenth one with hash-tag braces and `%`.
        let users: Vec<String> = (0..USERS)
            .map(|i| match i % 10 {
                0 => format!("\"{{team}}-{i}%\""),
                _ => format!("\"user-{i}\""),
            })
            .collect();
        let victim = &users[0];
        let mut tokens: HashMap<String, Vec<RememberToken>> = HashMap::new();
        for (i, user) in users.iter().enumerate() {
            let per_user = if i == 0 { 3 } else { 1 };
            for j in 0..per_user {
                let t = token(format!("sel-{i}-{j}"), user);
                store
                    .create(t.clone())
                    .await
                    .expect("create on the cluster");
                tokens.entry(user.clone()).or_default().push(t);
            }
        }

        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        let per_node = count(&nodes, "remember:token");
        assert!(
            per_node.iter().all(|&n| n > 0),
            "tokens on every node: {per_node:?}"
        );
        assert_eq!(per_node.iter().sum::<usize>(), USERS + 2);
        assert_eq!(count(&nodes, "remember:user").iter().sum::<usize>(), USERS);
        let pointers = count(&nodes, "remember:selector");
        assert!(pointers.iter().all(|&n| n > 0), "pointers: {pointers:?}");
        assert_eq!(pointers.iter().sum::<usize>(), USERS + 2);
        for (_, tags) in &nodes {
            assert_eq!(
                tags.get("remember:token"),
                tags.get("remember:user"),
                "a user's tokens are on the node of the user's set"
            );
        }

        // Every user lists exactly their tokens, and each is found by its selector.
        for (user, theirs) in &tokens {
            let mut listed = store.list_for_user(user).await.expect("list");
            listed.sort_by(|a, b| a.selector.cmp(&b.selector));
            assert_eq!(&listed, theirs, "devices of {user}");
        }
        for t in tokens.values().flatten().step_by(7) {
            assert_eq!(store.find(&t.selector).await.unwrap().as_ref(), Some(t));
        }

        // Revoke every token of one user: the others keep theirs.
        assert_eq!(store.delete_for_user(victim).await.expect("revoke"), 3);
        assert!(store.list_for_user(victim).await.unwrap().is_empty());
        for t in &tokens[victim] {
            assert_eq!(store.find(&t.selector).await.unwrap(), None);
        }
        assert_eq!(store.delete_for_user(victim).await.unwrap(), 0);
        let others = &users[1..];
        for user in others {
            assert_eq!(store.list_for_user(user).await.unwrap(), tokens[user]);
        }

        // Single-token operations on users of every node.
        for user in others.iter().step_by(9) {
            let selector = &tokens[user][0].selector;
            let at = now() + time::Duration::seconds(1);
            let rotation = Rotation {
                new_hash: [9; 32],
                rotated_at: at,
                expires_at: at + time::Duration::days(2),
            };
            assert!(store
                .rotate(selector, &[7; 32], rotation.clone())
                .await
                .unwrap());
            assert!(!store.rotate(selector, &[7; 32], rotation).await.unwrap());
            let rotated = store.find(selector).await.unwrap().expect("rotated");
            assert_eq!(rotated.previous_hash, Some([7; 32]));
            store.delete(selector).await.expect("delete one");
            assert_eq!(store.find(selector).await.unwrap(), None);
            assert!(store.list_for_user(user).await.unwrap().is_empty());
        }

        // Only the untouched users' keys are left: nothing dangling on any node.
        let removed = 1 + others.iter().step_by(9).count();
        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        let left = USERS - removed;
        assert_eq!(count(&nodes, "remember:token").iter().sum::<usize>(), left);
        assert_eq!(count(&nodes, "remember:user").iter().sum::<usize>(), left);
        assert_eq!(
            count(&nodes, "remember:selector").iter().sum::<usize>(),
            left
        );
    })
    .await;
}

fn stored_login(id: String, user_id: &str) -> StoredLogin {
    let now = now();
    StoredLogin {
        session_id: Some(format!("session-{id}")),
        id,
        user_id: user_id.to_owned(),
        remember_selector: None,
        created_at: now,
        last_used_at: now,
        expires_at: now + time::Duration::days(1),
        user_agent: "cluster test".to_owned(),
        remembered: false,
    }
}

/// 200 users' logins (the first user's three) land on all three nodes, and each user's
/// entries are in one hash, so in one slot: every login script of a user is a single-slot,
/// atomic script on the Cluster. Listing and ending all of a user's logins work on every node
/// and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_of_many_users_on_every_node_each_user_in_one_slot() {
    const USERS: usize = 200;
    let Some((pool, primaries, prefix)) = cluster().await else {
        return;
    };
    let store = RedisLoginStore::new(pool.clone()).key_prefix(&prefix);
    let (census_pool, census_prefix) = (pool.clone(), prefix.clone());
    run(pool, prefix, async move {
        // JSON ids; every tenth one with hash-tag braces and `%`.
        let users: Vec<String> = (0..USERS)
            .map(|i| match i % 10 {
                0 => format!("\"{{team}}-{i}%\""),
                _ => format!("\"user-{i}\""),
            })
            .collect();
        let victim = &users[0];
        let mut logins: HashMap<String, Vec<StoredLogin>> = HashMap::new();
        for (i, user) in users.iter().enumerate() {
            let per_user = if i == 0 { 3 } else { 1 };
            for j in 0..per_user {
                let l = stored_login(format!("login-{i}-{j}"), user);
                let removed = store.put(l.clone(), 10).await.expect("put on the cluster");
                assert!(removed.is_empty());
                logins.entry(user.clone()).or_default().push(l);
            }
        }

        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        let per_node = count(&nodes, "logins");
        assert!(
            per_node.iter().all(|&n| n > 0),
            "login hashes on every node: {per_node:?}"
        );
        assert_eq!(per_node.iter().sum::<usize>(), USERS, "one hash per user");
        let mut tags = BTreeSet::new();
        for (_, node_tags) in &nodes {
            for tag in node_tags.get("logins").into_iter().flatten() {
                assert!(tags.insert(tag.clone()), "{tag} on two nodes");
            }
        }
        assert_eq!(tags.len(), USERS);

        for (user, theirs) in &logins {
            let mut listed = store.list(user).await.expect("list");
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(&listed, theirs, "logins of {user}");
        }

        // End every login of one user, then of every ninth other user: the rest keep theirs.
        let mut ended = store.delete_for_user(victim).await.expect("end all");
        ended.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(&ended, &logins[victim]);
        assert!(store.list(victim).await.unwrap().is_empty());
        let others = &users[1..];
        for user in others.iter().step_by(9) {
            assert_eq!(store.delete_for_user(user).await.unwrap(), logins[user]);
            assert!(store.list(user).await.unwrap().is_empty());
        }
        for (i, user) in others.iter().enumerate() {
            let expected = if i % 9 == 0 {
                vec![]
            } else {
                logins[user].clone()
            };
            assert_eq!(store.list(user).await.unwrap(), expected, "{user}");
        }

        let removed = 1 + others.iter().step_by(9).count();
        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        assert_eq!(
            count(&nodes, "logins").iter().sum::<usize>(),
            USERS - removed
        );
    })
    .await;
}

/// 150 one-time tokens, one key each, land on all three nodes; each is found and used up on
/// its node (a single-key script), a wrong hash takes none, and used-up tokens leave nothing
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_tokens_on_every_node() {
    const TOKENS: usize = 150;
    let Some((pool, primaries, prefix)) = cluster().await else {
        return;
    };
    let store = RedisTokenStore::new(pool.clone()).key_prefix(&prefix);
    let (census_pool, census_prefix) = (pool.clone(), prefix.clone());
    run(pool, prefix, async move {
        let tokens: Vec<StoredToken> = (0..TOKENS)
            .map(|i| {
                let now = now();
                let mut validator_hash = [0; 32];
                validator_hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
                StoredToken {
                    selector: format!("tok-{i}"),
                    validator_hash,
                    purpose: "verify-email".to_owned(),
                    user_id: format!("\"user-{i}\""),
                    auth_hash: "digest".to_owned(),
                    created_at: now,
                    expires_at: now + time::Duration::hours(1),
                }
            })
            .collect();
        for t in &tokens {
            store
                .create(t.clone())
                .await
                .expect("create on the cluster");
        }
        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        let per_node = count(&nodes, "token");
        assert!(
            per_node.iter().all(|&n| n > 0),
            "tokens on every node: {per_node:?}"
        );
        assert_eq!(per_node.iter().sum::<usize>(), TOKENS);

        for t in &tokens {
            assert_eq!(store.find(&t.selector).await.unwrap().as_ref(), Some(t));
            assert!(!store.take(&t.selector, &[0xee; 32]).await.unwrap());
        }
        for t in tokens.iter().step_by(3) {
            assert!(store.take(&t.selector, &t.validator_hash).await.unwrap());
            assert!(!store.take(&t.selector, &t.validator_hash).await.unwrap());
        }
        for (i, t) in tokens.iter().enumerate() {
            let expected = (i % 3 != 0).then_some(t);
            assert_eq!(store.find(&t.selector).await.unwrap().as_ref(), expected);
        }
        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        assert_eq!(
            count(&nodes, "token").iter().sum::<usize>(),
            TOKENS - TOKENS.div_ceil(3)
        );
    })
    .await;
}

/// Throttle counters for 150 keys on every node, incremented concurrently, read and reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_keys_on_every_node() {
    const KEYS: u32 = 150;
    let Some((pool, primaries, prefix)) = cluster().await else {
        return;
    };
    let store = RedisThrottleStore::new(pool.clone()).key_prefix(&prefix);
    let (census_pool, census_prefix) = (pool.clone(), prefix.clone());
    run(pool, prefix, async move {
        let window = Duration::from_secs(60);
        let key = |i: u32| match i % 3 {
            0 => format!("acct:user-{i}"),
            1 => format!("ip:203.0.113.{i}"),
            _ => format!("acct:{{odd}} {i} %"),
        };
        let failures = |i: u32| i % 4 + 1;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..KEYS {
            for _ in 0..failures(i) {
                let (store, key) = (store.clone(), key(i));
                tasks.spawn(async move { store.record_failure(&key, window).await });
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task")
                .expect("record a failure on the cluster");
        }

        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        let per_node = count(&nodes, "throttle");
        assert!(
            per_node.iter().all(|&n| n > 0),
            "throttle keys on every node: {per_node:?}"
        );
        assert_eq!(per_node.iter().sum::<usize>(), KEYS as usize);

        for i in 0..KEYS {
            let entry = store.failures(&key(i)).await.unwrap().expect("a window");
            assert_eq!(entry.count, failures(i), "{}", key(i));
            assert!(entry.expires_in > Duration::ZERO && entry.expires_in <= window);
        }
        for i in (0..KEYS).step_by(2) {
            store.reset(&key(i)).await.expect("reset");
        }
        for i in 0..KEYS {
            let count = store.failures(&key(i)).await.unwrap().map(|e| e.count);
            let expected = (i % 2 == 1).then(|| failures(i));
            assert_eq!(count, expected, "{}", key(i));
        }
        let nodes = census(&census_pool, &primaries, &census_prefix).await;
        assert_eq!(
            count(&nodes, "throttle").iter().sum::<usize>(),
            KEYS as usize / 2
        );
    })
    .await;
}
