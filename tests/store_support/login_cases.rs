//! The conformance cases of the `LoginStore`s (the per-user index of live logins): every
//! store must behave like `MemoryLoginStore`. Written once, run against each backend (in the
//! submodule `logins` of each backend's module) by `tests/conformance.rs` and
//! `tests/redis_cluster.rs`.
//!
//! What these cases guard: an ended login must stay ended (a `touch` never re-creates it,
//! `delete` and `delete_for_user` return what they removed so that the caller can end those
//! sessions), the bound on a user's logins must hold however many logins race, and every
//! entry the store removes must be reported exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use login_manager::{LoginTouch, StoredLogin};
use time::OffsetDateTime;
use tokio::sync::Barrier;

use super::Stores;

/// Now, to the millisecond: the precision every store keeps.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).expect("valid")
}

const DAY: time::Duration = time::Duration::days(1);
const SECOND: time::Duration = time::Duration::seconds(1);

/// A live login (a day left), used now, with a session and no remember-me token.
fn login(id: &str, user_id: &str) -> StoredLogin {
    let now = now();
    StoredLogin {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        session_id: Some(format!("session-of-{id}")),
        remember_selector: None,
        created_at: now,
        last_used_at: now,
        expires_at: now + DAY,
        user_agent: "Mozilla/5.0 (X11; Linux) — test".to_owned(),
        remembered: false,
    }
}

/// `login` last used `ago` before `at`.
fn used(mut login: StoredLogin, at: OffsetDateTime, ago: time::Duration) -> StoredLogin {
    login.last_used_at = at - ago;
    login.created_at = at - ago;
    login
}

/// `login`, expired a second ago.
fn expired(mut login: StoredLogin) -> StoredLogin {
    login.expires_at = now() - SECOND;
    login
}

fn sorted(mut logins: Vec<StoredLogin>) -> Vec<StoredLogin> {
    logins.sort_by(|a, b| a.id.cmp(&b.id));
    logins
}

fn ids(logins: &[StoredLogin]) -> Vec<&str> {
    let mut ids: Vec<&str> = logins.iter().map(|l| l.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

pub async fn round_trip_put_get_list_delete(s: Stores) {
    let alice = "\"alice\"";
    let full = StoredLogin {
        session_id: Some("sess-1".to_owned()),
        remember_selector: Some("sel-1".to_owned()),
        remembered: true,
        user_agent: "Mozilla/5.0 É 'single' \"double\" back\\slash /slash {braces} %".to_owned(),
        ..login("full", alice)
    };
    let bare = StoredLogin {
        session_id: None,
        remember_selector: None,
        ..login("bare", alice)
    };
    assert!(s.logins.put(full.clone(), 10).await.unwrap().is_empty());
    assert!(s.logins.put(bare.clone(), 10).await.unwrap().is_empty());

    assert_eq!(
        s.logins.get(alice, "full").await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        s.logins.get(alice, "bare").await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(s.logins.get(alice, "missing").await.unwrap(), None);
    assert_eq!(s.logins.get("\"bob\"", "full").await.unwrap(), None);
    assert_eq!(
        sorted(s.logins.list(alice).await.unwrap()),
        vec![bare.clone(), full.clone()]
    );
    assert!(s.logins.list("\"bob\"").await.unwrap().is_empty());

    assert_eq!(s.logins.delete(alice, "full").await.unwrap(), Some(full));
    assert_eq!(s.logins.get(alice, "full").await.unwrap(), None);
    assert_eq!(s.logins.delete(alice, "full").await.unwrap(), None);
    assert_eq!(s.logins.delete("\"bob\"", "bare").await.unwrap(), None);
    assert_eq!(s.logins.list(alice).await.unwrap(), vec![bare.clone()]);
    assert_eq!(s.logins.delete(alice, "bare").await.unwrap(), Some(bare));
    assert!(s.logins.list(alice).await.unwrap().is_empty());
}

pub async fn replace_keeps_created_at_and_returns_the_replaced_entry(s: Stores) {
    let at = now();
    let first = used(login("device", "1"), at, time::Duration::hours(1));
    assert!(s.logins.put(first.clone(), 10).await.unwrap().is_empty());
    let second = StoredLogin {
        session_id: Some("restored-session".to_owned()),
        remember_selector: Some("selector".to_owned()),
        remembered: true,
        user_agent: "another agent".to_owned(),
        expires_at: at + 2 * DAY,
        ..login("device", "1")
    };

    let removed = s.logins.put(second.clone(), 10).await.unwrap();
    assert_eq!(
        removed,
        vec![first.clone()],
        "the replaced entry, as it was"
    );
    let kept = StoredLogin {
        created_at: first.created_at,
        ..second.clone()
    };
    assert_eq!(
        s.logins.get("1", "device").await.unwrap(),
        Some(kept.clone())
    );
    assert_eq!(s.logins.list("1").await.unwrap(), vec![kept.clone()]);

    // A replacement at the bound removes only the replaced entry.
    let third = StoredLogin {
        session_id: Some("third-session".to_owned()),
        ..second
    };
    let removed = s.logins.put(third.clone(), 1).await.unwrap();
    assert_eq!(removed, vec![kept]);
    assert_eq!(
        s.logins.list("1").await.unwrap(),
        vec![StoredLogin {
            created_at: first.created_at,
            ..third
        }]
    );
}

pub async fn bound_removes_expired_first_then_least_recently_used_and_returns_exactly_those(
    s: Stores,
) {
    let at = now();
    let a = used(login("a", "1"), at, 40 * SECOND);
    // The most recently used, but expired: the first to go.
    let b = expired(used(login("b", "1"), at, time::Duration::ZERO));
    let c = used(login("c", "1"), at, 30 * SECOND);
    let d = used(login("d", "1"), at, 20 * SECOND);
    let e = used(login("e", "1"), at, 10 * SECOND);
    for l in [&a, &b, &c] {
        assert!(s.logins.put(l.clone(), 3).await.unwrap().is_empty());
    }
    assert_eq!(s.logins.put(d.clone(), 3).await.unwrap(), vec![b]);
    assert_eq!(s.logins.put(e.clone(), 3).await.unwrap(), vec![a]);
    assert_eq!(
        sorted(s.logins.list("1").await.unwrap()),
        vec![c.clone(), d.clone(), e.clone()]
    );

    // A smaller bound removes several at once, and reports each.
    let f = login("f", "1");
    let removed = s.logins.put(f.clone(), 1).await.unwrap();
    assert_eq!(sorted(removed), vec![c, d, e]);
    assert_eq!(s.logins.list("1").await.unwrap(), vec![f]);

    // Equal last use: the smaller id stays, even when the larger one is the new entry.
    let [tie_a, tie_b, tie_c] =
        ["tie-a", "tie-b", "tie-c"].map(|id| used(login(id, "2"), at, 5 * SECOND));
    assert!(s.logins.put(tie_b.clone(), 1).await.unwrap().is_empty());
    assert_eq!(s.logins.put(tie_a.clone(), 1).await.unwrap(), vec![tie_b]);
    assert_eq!(
        s.logins.put(tie_c.clone(), 1).await.unwrap(),
        vec![tie_c],
        "the new entry itself is beyond the bound, and reported"
    );
    assert_eq!(s.logins.list("2").await.unwrap(), vec![tie_a]);
    assert_eq!(s.logins.get("2", "tie-c").await.unwrap(), None);
}

pub async fn bound_holds_under_50_concurrent_puts_and_each_removal_is_returned_once(s: Stores) {
    const PUTS: usize = 50;
    const MAX: usize = 5;
    let user = "\"contended\"";
    let at = now();
    let logins: Vec<StoredLogin> = (0..PUTS)
        .map(|i| {
            used(
                login(&format!("c-{i:02}"), user),
                at,
                time::Duration::seconds(i as i64),
            )
        })
        .collect();
    let start = Arc::new(Barrier::new(PUTS));
    let tasks: Vec<_> = logins
        .iter()
        .map(|l| {
            let (store, start, l) = (Arc::clone(&s.logins), Arc::clone(&start), l.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.put(l, MAX).await.expect("a racing put")
            })
        })
        .collect();
    let by_id: BTreeMap<&str, &StoredLogin> = logins.iter().map(|l| (l.id.as_str(), l)).collect();
    let mut removed = BTreeSet::new();
    for task in tasks {
        for gone in task.await.unwrap() {
            assert_eq!(
                Some(&&gone),
                by_id.get(gone.id.as_str()),
                "returned as stored"
            );
            assert!(
                removed.insert(gone.id.clone()),
                "{} was returned by two calls",
                gone.id
            );
        }
    }

    let survivors: BTreeSet<String> = s
        .logins
        .list(user)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert!(survivors.len() <= MAX, "{} survivors", survivors.len());
    assert!(
        survivors.is_disjoint(&removed),
        "a survivor was reported removed"
    );
    let all: BTreeSet<String> = logins.iter().map(|l| l.id.clone()).collect();
    let accounted: BTreeSet<String> = survivors.union(&removed).cloned().collect();
    assert_eq!(
        accounted, all,
        "every entry is either kept or reported removed"
    );
    // What any serial order of these puts would keep: the five most recently used.
    let newest: BTreeSet<String> = (0..MAX).map(|i| format!("c-{i:02}")).collect();
    assert_eq!(survivors, newest);
}

pub async fn concurrent_replacements_return_each_replaced_entry_once(s: Stores) {
    const PUTS: usize = 20;
    let at = now();
    let start = Arc::new(Barrier::new(PUTS));
    let tasks: Vec<_> = (0..PUTS)
        .map(|i| {
            let (store, start) = (Arc::clone(&s.logins), Arc::clone(&start));
            let l = StoredLogin {
                session_id: Some(format!("session-{i:02}")),
                created_at: at + time::Duration::milliseconds(i as i64),
                ..login("restored-browser", "7")
            };
            tokio::spawn(async move {
                start.wait().await;
                store.put(l, 10).await.expect("a racing replacement")
            })
        })
        .collect();
    let mut entries = Vec::new();
    for task in tasks {
        entries.extend(task.await.unwrap());
    }
    let survivor = s
        .logins
        .get("7", "restored-browser")
        .await
        .unwrap()
        .expect("one entry left");
    entries.push(survivor);
    let sessions: BTreeSet<String> = entries
        .iter()
        .map(|l| l.session_id.clone().expect("a session id"))
        .collect();
    assert_eq!(
        sessions.len(),
        entries.len(),
        "an entry was reported replaced twice"
    );
    assert_eq!(
        sessions,
        (0..PUTS).map(|i| format!("session-{i:02}")).collect(),
        "every replaced entry is reported"
    );
    let created: BTreeSet<OffsetDateTime> = entries.iter().map(|l| l.created_at).collect();
    assert_eq!(created.len(), 1, "the first entry's created_at is kept");
    assert_eq!(s.logins.list("7").await.unwrap().len(), 1);
}

pub async fn touch_never_recreates_a_missing_or_ended_login(s: Stores) {
    let at = now();
    let touch = LoginTouch {
        last_used_at: at,
        expires_at: at + DAY,
        session_id: Some("new-session".to_owned()),
    };
    assert!(!s.logins.touch("1", "ghost", touch.clone()).await.unwrap());
    assert_eq!(s.logins.get("1", "ghost").await.unwrap(), None);
    assert!(s.logins.list("1").await.unwrap().is_empty());

    s.logins.put(login("ended", "1"), 10).await.unwrap();
    assert!(s.logins.delete("1", "ended").await.unwrap().is_some());
    assert!(!s.logins.touch("1", "ended", touch.clone()).await.unwrap());
    assert_eq!(s.logins.get("1", "ended").await.unwrap(), None);

    s.logins.put(login("all-ended", "1"), 10).await.unwrap();
    assert_eq!(s.logins.delete_for_user("1").await.unwrap().len(), 1);
    assert!(!s
        .logins
        .touch("1", "all-ended", touch.clone())
        .await
        .unwrap());
    assert!(s.logins.list("1").await.unwrap().is_empty());

    // Another user's entry of the same id is not this user's.
    s.logins.put(login("mine", "\"2\""), 10).await.unwrap();
    assert!(!s.logins.touch("2", "mine", touch).await.unwrap());
    assert_eq!(s.logins.get("2", "mine").await.unwrap(), None);
    assert_eq!(
        s.logins
            .get("\"2\"", "mine")
            .await
            .unwrap()
            .unwrap()
            .session_id,
        Some("session-of-mine".to_owned())
    );
}

pub async fn touch_never_shortens_expiry_and_replaces_session_id_only_when_given(s: Stores) {
    let at = now();
    let stored = StoredLogin {
        last_used_at: at - time::Duration::minutes(1),
        expires_at: at + time::Duration::hours(1),
        session_id: Some("s1".to_owned()),
        remember_selector: Some("selector".to_owned()),
        remembered: true,
        ..login("browser", "1")
    };
    s.logins.put(stored.clone(), 10).await.unwrap();

    let shorter = LoginTouch {
        last_used_at: at,
        expires_at: at + time::Duration::minutes(30),
        session_id: None,
    };
    assert!(s.logins.touch("1", "browser", shorter).await.unwrap());
    let touched = StoredLogin {
        last_used_at: at,
        ..stored.clone()
    };
    assert_eq!(
        s.logins.get("1", "browser").await.unwrap(),
        Some(touched),
        "expires_at kept, session id kept"
    );

    let longer = LoginTouch {
        last_used_at: at + SECOND,
        expires_at: at + time::Duration::hours(2),
        session_id: Some("s2".to_owned()),
    };
    assert!(s.logins.touch("1", "browser", longer).await.unwrap());
    let touched = StoredLogin {
        last_used_at: at + SECOND,
        expires_at: at + time::Duration::hours(2),
        session_id: Some("s2".to_owned()),
        ..stored
    };
    assert_eq!(s.logins.get("1", "browser").await.unwrap(), Some(touched));

    // A login without a session gets one.
    let sessionless = StoredLogin {
        session_id: None,
        ..login("sessionless", "1")
    };
    s.logins.put(sessionless.clone(), 10).await.unwrap();
    let renamed = LoginTouch {
        last_used_at: sessionless.last_used_at,
        expires_at: sessionless.expires_at,
        session_id: Some("fresh".to_owned()),
    };
    assert!(s.logins.touch("1", "sessionless", renamed).await.unwrap());
    assert_eq!(
        s.logins.get("1", "sessionless").await.unwrap(),
        Some(StoredLogin {
            session_id: Some("fresh".to_owned()),
            ..sessionless
        })
    );
}

pub async fn expired_logins_are_invisible_to_get_and_list(s: Stores) {
    // The live entry first: Redis drops a user's hash at once when all its entries expired.
    let live = login("live", "1");
    let gone = expired(login("expired", "1"));
    let soon = StoredLogin {
        expires_at: now() + time::Duration::milliseconds(800),
        ..login("soon", "1")
    };
    for l in [&live, &gone, &soon] {
        assert!(s.logins.put(l.clone(), 10).await.unwrap().is_empty());
    }
    assert_eq!(s.logins.get("1", "expired").await.unwrap(), None);
    assert_eq!(s.logins.get("1", "soon").await.unwrap(), Some(soon));
    assert_eq!(ids(&s.logins.list("1").await.unwrap()), ["live", "soon"]);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.logins.get("1", "soon").await.unwrap(), None);
    assert_eq!(s.logins.get("1", "expired").await.unwrap(), None);
    assert_eq!(s.logins.list("1").await.unwrap(), vec![live.clone()]);
    assert_eq!(s.logins.get("1", "live").await.unwrap(), Some(live));
}

pub async fn delete_for_user_ends_every_login_of_that_user_only_expired_included(s: Stores) {
    let alice = "\"alice\"";
    let mine = [login("a", alice), login("b", alice)];
    let old = expired(login("old", alice));
    let other = login("a", "1");
    for l in mine.iter().chain([&old, &other]) {
        s.logins.put(l.clone(), 10).await.unwrap();
    }

    let ended = sorted(s.logins.delete_for_user(alice).await.unwrap());
    assert_eq!(ended, vec![mine[0].clone(), mine[1].clone(), old]);
    assert!(s.logins.list(alice).await.unwrap().is_empty());
    assert_eq!(s.logins.get(alice, "a").await.unwrap(), None);
    assert_eq!(s.logins.list("1").await.unwrap(), vec![other.clone()]);
    assert!(s.logins.delete_for_user(alice).await.unwrap().is_empty());
    assert!(s
        .logins
        .delete_for_user("\"nobody\"")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.logins.get("1", "a").await.unwrap(), Some(other));
}

pub async fn delete_expired_removes_only_expired_logins(s: Stores) {
    let (a, b) = (login("a", "1"), login("b", "2"));
    let soon = StoredLogin {
        expires_at: now() + time::Duration::milliseconds(800),
        ..login("soon", "2")
    };
    for l in [&a, &expired(login("x", "1")), &b, &soon] {
        s.logins.put(l.clone(), 10).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let deleted = s.logins.delete_expired().await.unwrap();
    if s.native_expiry {
        // Redis: each hash expires with its last entry; expired entries in a live hash are
        // skipped by get and list, and deleted by list.
        assert_eq!(deleted, 0);
    } else {
        assert_eq!(deleted, 2);
    }
    assert_eq!(s.logins.list("1").await.unwrap(), vec![a.clone()]);
    assert_eq!(s.logins.list("2").await.unwrap(), vec![b.clone()]);
    assert_eq!(s.logins.delete_expired().await.unwrap(), 0);
    assert_eq!(s.logins.delete_for_user("1").await.unwrap(), vec![a]);
    assert_eq!(s.logins.delete_for_user("2").await.unwrap(), vec![b]);
}

pub async fn users_are_isolated_from_each_other(s: Stores) {
    // The number 1 and the string "1" are different users, as JSON-encoded ids.
    let users = ["1", "\"1\"", "\"alice\""];
    for user in users {
        let shared = StoredLogin {
            session_id: Some(format!("session-of-{user}")),
            ..login("shared", user)
        };
        s.logins.put(shared, 10).await.unwrap();
    }
    for user in users {
        let got = s
            .logins
            .get(user, "shared")
            .await
            .unwrap()
            .expect("own entry");
        assert_eq!(got.user_id, user);
        assert_eq!(got.session_id, Some(format!("session-of-{user}")));
    }

    // One user's bound trims only that user's entries (n1..n3 used after `shared`).
    let later = now() + 10 * SECOND;
    for (id, ago) in [("n1", 3), ("n2", 2), ("n3", 1)] {
        let l = used(login(id, "1"), later, ago * SECOND);
        s.logins.put(l, 2).await.unwrap();
    }
    assert_eq!(ids(&s.logins.list("1").await.unwrap()), ["n2", "n3"]);
    for user in &users[1..] {
        assert_eq!(ids(&s.logins.list(user).await.unwrap()), ["shared"]);
    }

    // Touching, deleting and ending all of one user's logins leaves the others alone.
    let touch = LoginTouch {
        last_used_at: now(),
        expires_at: now() + 2 * DAY,
        session_id: Some("renamed".to_owned()),
    };
    assert!(s.logins.touch("\"alice\"", "shared", touch).await.unwrap());
    assert!(s.logins.delete("\"1\"", "shared").await.unwrap().is_some());
    assert_eq!(s.logins.delete_for_user("1").await.unwrap().len(), 2);
    assert!(s.logins.list("\"1\"").await.unwrap().is_empty());
    let alices = s.logins.list("\"alice\"").await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].session_id.as_deref(), Some("renamed"));
}

pub async fn user_ids_with_braces_percent_and_quotes_stay_apart(s: Stores) {
    // Braces and `%` (Redis hash tags and their escapes), quotes (SQL), the empty id.
    let users = [
        "\"{we}ird%7B\"",
        "\"{\"",
        "\"}\"",
        "\"%7B\"",
        "%",
        "",
        "\"it's \\\"quoted\\\"\"",
    ];
    let entry_ids = ["{x}%'\"/", "plain"];
    for user in users {
        for id in entry_ids {
            let l = StoredLogin {
                user_agent: format!("agent of {user} / {id}"),
                ..login(id, user)
            };
            assert!(s.logins.put(l, 10).await.unwrap().is_empty());
        }
    }
    for user in users {
        let listed = s.logins.list(user).await.unwrap();
        assert_eq!(ids(&listed), ["plain", "{x}%'\"/"], "logins of {user}");
        assert!(listed.iter().all(|l| l.user_id == user));
        let odd = s.logins.get(user, entry_ids[0]).await.unwrap().unwrap();
        assert_eq!(
            odd.user_agent,
            format!("agent of {user} / {}", entry_ids[0])
        );
    }

    // A touch re-encodes the entry (Redis: in Lua): it reads back the same.
    let touch = LoginTouch {
        last_used_at: now() + SECOND,
        expires_at: now() + 2 * DAY,
        session_id: None,
    };
    let before = s.logins.get(users[0], entry_ids[0]).await.unwrap().unwrap();
    assert!(s
        .logins
        .touch(users[0], entry_ids[0], touch.clone())
        .await
        .unwrap());
    assert_eq!(
        s.logins.get(users[0], entry_ids[0]).await.unwrap(),
        Some(StoredLogin {
            last_used_at: touch.last_used_at,
            expires_at: touch.expires_at,
            ..before
        })
    );

    let ended = s.logins.delete_for_user(users[0]).await.unwrap();
    assert_eq!(ids(&ended), ["plain", "{x}%'\"/"]);
    assert!(s.logins.list(users[0]).await.unwrap().is_empty());
    for user in &users[1..] {
        assert_eq!(s.logins.list(user).await.unwrap().len(), 2, "{user}");
    }
}
