//! Where the index of live logins lives: the [`LoginStore`] trait and [`MemoryLoginStore`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Result;

/// One live login in the [`LoginStore`]: a browser's session and, when it ticked "remember
/// me", its remember-me token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogin {
    /// Random and opaque (a remembered browser's is derived from its token's selector, so
    /// that every session it restores replaces the same entry). Safe to show in a page.
    pub id: String,
    /// The user id, JSON-encoded (`1`, `"alice"`), as in [`RememberToken`](crate::RememberToken).
    pub user_id: String,
    /// The tower-sessions id of the login's session, when it has one. A secret: never shown.
    pub session_id: Option<String>,
    /// The selector of the browser's remember-me token, when it has one. A secret: never shown.
    pub remember_selector: Option<String>,
    /// When the login happened. An entry that replaces another with the same id keeps the
    /// first one's.
    pub created_at: OffsetDateTime,
    /// Last request seen, refreshed at most every idle timeout / 4.
    pub last_used_at: OffsetDateTime,
    /// When the login will have ended by itself (session timeouts, remember-me expiry); the
    /// stores prune entries past it.
    pub expires_at: OffsetDateTime,
    /// The browser's `User-Agent` at the login, shortened.
    pub user_agent: String,
    /// Whether the session was restored from a remember-me cookie.
    pub remembered: bool,
}

/// What [`LoginStore::touch`] changes on an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTouch {
    /// The new [`StoredLogin::last_used_at`].
    pub last_used_at: OffsetDateTime,
    /// The new [`StoredLogin::expires_at`].
    pub expires_at: OffsetDateTime,
    /// A new [`StoredLogin::session_id`], after the session changed its id; `None` keeps it.
    pub session_id: Option<String>,
}

/// Storage for the per-user index of live logins ([`LoginIndex`](crate::LoginIndex)).
/// Implementations exist for memory and (behind features) SQLite, Postgres and Redis; all pass
/// the same conformance tests.
///
/// `user_id` arguments are the JSON-encoded ids of [`StoredLogin::user_id`]; every call names
/// the user, so that a Redis Cluster keeps one user's entries in one slot.
///
/// Any failure of the backend is an error, normally [`Error::Store`](crate::Error::Store),
/// never a panic. A store applies no timeout of its own: the library bounds every call with
/// [`LoginManager::store_timeout`](crate::LoginManager::store_timeout).
#[async_trait]
pub trait LoginStore: Send + Sync + 'static {
    /// Stores `login`, replacing an entry with the same `user_id` and `id` (whose
    /// `created_at` is kept), then trims the user's entries to at most `max_per_user`:
    /// expired entries first, then the least recently used. Returns every entry this call
    /// removed — the replaced one (if any) and the trimmed ones — so that the caller can end
    /// their sessions. Atomic per user: however many calls race, the user ends up with at
    /// most `max_per_user` entries, and each removed entry is returned by exactly one call.
    async fn put(&self, login: StoredLogin, max_per_user: usize) -> Result<Vec<StoredLogin>>;

    /// The user's entry with this id, unless it is missing or expired.
    async fn get(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>>;

    /// Updates an entry if it still exists (never re-creates one that was ended); returns
    /// whether it did. `expires_at` only ever moves later (a remembered browser's entry lives
    /// as long as its token, which a session's idle timeout does not shorten).
    async fn touch(&self, user_id: &str, id: &str, touch: LoginTouch) -> Result<bool>;

    /// Every unexpired entry of the user, in no particular order. May delete expired ones.
    async fn list(&self, user_id: &str) -> Result<Vec<StoredLogin>>;

    /// Deletes one entry and returns it, if it existed.
    async fn delete(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>>;

    /// Deletes every entry of the user and returns them (expired ones included).
    async fn delete_for_user(&self, user_id: &str) -> Result<Vec<StoredLogin>>;

    /// Deletes the entries past their `expires_at`; returns how many.
    async fn delete_expired(&self) -> Result<u64>;
}

/// A shared store is a store: lets an app pick the backend at run time
/// (`Arc<dyn LoginStore>`).
#[async_trait]
impl<T: LoginStore + ?Sized> LoginStore for Arc<T> {
    async fn put(&self, login: StoredLogin, max_per_user: usize) -> Result<Vec<StoredLogin>> {
        (**self).put(login, max_per_user).await
    }

    async fn get(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        (**self).get(user_id, id).await
    }

    async fn touch(&self, user_id: &str, id: &str, touch: LoginTouch) -> Result<bool> {
        (**self).touch(user_id, id, touch).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        (**self).list(user_id).await
    }

    async fn delete(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        (**self).delete(user_id, id).await
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        (**self).delete_for_user(user_id).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        (**self).delete_expired().await
    }
}

/// Which of `logins` to remove so that at most `max` stay: expired ones first, then the least
/// recently used, ties broken by id. Returns indexes into `logins`.
pub(crate) fn beyond_bound(logins: &[StoredLogin], max: usize, now: OffsetDateTime) -> Vec<usize> {
    if logins.len() <= max {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..logins.len()).collect();
    // Kept first: unexpired, then most recently used; ids break ties so that the choice is
    // the same in every store.
    order.sort_by(|&a, &b| {
        let key = |l: &StoredLogin| (l.expires_at > now, l.last_used_at);
        key(&logins[b])
            .cmp(&key(&logins[a]))
            .then_with(|| logins[a].id.cmp(&logins[b].id))
    });
    order.split_off(max)
}

/// An in-process [`LoginStore`], for single-instance apps and tests.
///
/// Memory stays bounded: expired entries are swept every 1024 `put`s, and each user has at
/// most the bound the [`LoginIndex`](crate::LoginIndex) passes.
#[derive(Debug, Clone, Default)]
pub struct MemoryLoginStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    users: HashMap<String, Vec<StoredLogin>>,
    puts: u64,
}

const SWEEP_EVERY: u64 = 1024;

impl MemoryInner {
    fn sweep(&mut self, now: OffsetDateTime) -> u64 {
        let mut deleted = 0;
        self.users.retain(|_, logins| {
            let before = logins.len();
            logins.retain(|l| l.expires_at > now);
            deleted += (before - logins.len()) as u64;
            !logins.is_empty()
        });
        deleted
    }
}

impl MemoryLoginStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LoginStore for MemoryLoginStore {
    async fn put(&self, mut login: StoredLogin, max_per_user: usize) -> Result<Vec<StoredLogin>> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        inner.puts += 1;
        if inner.puts % SWEEP_EVERY == 0 {
            inner.sweep(now);
        }
        let logins = inner.users.entry(login.user_id.clone()).or_default();
        let mut removed = Vec::new();
        if let Some(at) = logins.iter().position(|l| l.id == login.id) {
            let replaced = logins.swap_remove(at);
            login.created_at = replaced.created_at;
            removed.push(replaced);
        }
        logins.push(login);
        let mut trimmed = beyond_bound(logins, max_per_user.max(1), now);
        trimmed.sort_unstable_by(|a, b| b.cmp(a));
        removed.extend(trimmed.into_iter().map(|at| logins.swap_remove(at)));
        Ok(removed)
    }

    async fn get(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .lock()
            .users
            .get(user_id)
            .and_then(|logins| logins.iter().find(|l| l.id == id && l.expires_at > now))
            .cloned())
    }

    async fn touch(&self, user_id: &str, id: &str, touch: LoginTouch) -> Result<bool> {
        let mut inner = self.lock();
        let Some(login) = inner
            .users
            .get_mut(user_id)
            .and_then(|logins| logins.iter_mut().find(|l| l.id == id))
        else {
            return Ok(false);
        };
        login.last_used_at = touch.last_used_at;
        login.expires_at = login.expires_at.max(touch.expires_at);
        if let Some(session_id) = touch.session_id {
            login.session_id = Some(session_id);
        }
        Ok(true)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let Some(logins) = inner.users.get_mut(user_id) else {
            return Ok(Vec::new());
        };
        logins.retain(|l| l.expires_at > now);
        let live = logins.clone();
        if live.is_empty() {
            inner.users.remove(user_id);
        }
        Ok(live)
    }

    async fn delete(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        let mut inner = self.lock();
        let Some(logins) = inner.users.get_mut(user_id) else {
            return Ok(None);
        };
        let removed = logins
            .iter()
            .position(|l| l.id == id)
            .map(|at| logins.swap_remove(at));
        if logins.is_empty() {
            inner.users.remove(user_id);
        }
        Ok(removed)
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        Ok(self.lock().users.remove(user_id).unwrap_or_default())
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(self.lock().sweep(OffsetDateTime::now_utc()))
    }
}
