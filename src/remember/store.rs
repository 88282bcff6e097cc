//! Where remember-me tokens live: the [`RememberStore`] trait and [`MemoryRememberStore`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::token::ValidatorHash;
use crate::Result;

/// A stored remember-me token. The validator itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberToken {
    /// Random public half of the cookie, the look-up key.
    pub selector: String,
    /// SHA-256 of the current validator.
    pub validator_hash: ValidatorHash,
    /// SHA-256 of the validator before the last rotation, accepted for the grace window.
    pub previous_hash: Option<ValidatorHash>,
    /// When the validator was last rotated.
    pub rotated_at: Option<OffsetDateTime>,
    /// The user id, JSON-encoded (`1`, `"alice"`).
    pub user_id: String,
    /// Digest of the user's `session_auth_hash` when the token was issued: a credential
    /// change invalidates the token.
    pub auth_hash: String,
    /// Issue time.
    pub created_at: OffsetDateTime,
    /// Last restore.
    pub last_used_at: OffsetDateTime,
    /// Server-side expiry; the cookie's own expiry is not trusted.
    pub expires_at: OffsetDateTime,
    /// A short label of the browser that logged in, for a "your devices" page.
    pub user_agent: String,
}

/// A validator rotation, applied by [`RememberStore::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Hash of the new validator.
    pub new_hash: ValidatorHash,
    /// Now.
    pub rotated_at: OffsetDateTime,
    /// The (possibly slid) expiry.
    pub expires_at: OffsetDateTime,
}

/// Storage for remember-me tokens. Implementations exist for memory, and (behind features)
/// SQLite, Postgres and Redis; all pass the same conformance tests.
///
/// `user_id` arguments are the JSON-encoded ids of [`RememberToken::user_id`].
///
/// Any failure of the backend is an error, normally [`Error::Store`](crate::Error::Store),
/// never a panic and never an invented answer. A store applies no timeout of its own: every
/// call is bounded by the caller,
/// [`LoginManager::store_timeout`](crate::LoginManager::store_timeout) (default 5 s), past
/// which the request is answered with a 503
/// ([`Error::Timeout`](crate::Error::Timeout)`("remember store")`) and logs nobody in.
#[async_trait]
pub trait RememberStore: Send + Sync + 'static {
    /// Stores a new token (the selector is fresh random; a collision may overwrite).
    async fn create(&self, token: RememberToken) -> Result<()>;

    /// The token with this selector, expired or not (the caller checks expiry).
    async fn find(&self, selector: &str) -> Result<Option<RememberToken>>;

    /// Atomically replaces the validator hash, but only if it is still `expected`: the
    /// current hash becomes `previous_hash`, `rotated_at` and `last_used_at` become
    /// `rotation.rotated_at`. Returns whether this call won; of many racing rotations with the
    /// same `expected`, exactly one wins.
    async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool>;

    /// Deletes one token; deleting a missing one is not an error.
    async fn delete(&self, selector: &str) -> Result<()>;

    /// Deletes every token of a user; returns how many.
    async fn delete_for_user(&self, user_id: &str) -> Result<u64>;

    /// Every token of a user (expired ones may be included; callers filter).
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>>;

    /// Deletes the tokens whose `expires_at` has passed; returns how many.
    async fn delete_expired(&self) -> Result<u64>;
}

/// A shared store is a store: lets an app pick the backend at run time
/// (`Arc<dyn RememberStore>`).
#[async_trait]
impl<T: RememberStore + ?Sized> RememberStore for Arc<T> {
    async fn create(&self, token: RememberToken) -> Result<()> {
        (**self).create(token).await
    }

    async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        (**self).find(selector).await
    }

    async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool> {
        (**self).rotate(selector, expected, rotation).await
    }

    async fn delete(&self, selector: &str) -> Result<()> {
        (**self).delete(selector).await
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        (**self).delete_for_user(user_id).await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        (**self).list_for_user(user_id).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        (**self).delete_expired().await
    }
}

/// An in-process [`RememberStore`], for single-instance apps and tests.
///
/// Memory stays bounded: expired tokens are swept every 1024 creations, and one user keeps at
/// most [`max_tokens_per_user`](Self::max_tokens_per_user) tokens (the oldest are dropped).
#[derive(Debug, Clone)]
pub struct MemoryRememberStore {
    inner: Arc<Mutex<MemoryInner>>,
    max_per_user: usize,
}

#[derive(Debug, Default)]
struct MemoryInner {
    tokens: HashMap<String, RememberToken>,
    by_user: HashMap<String, HashSet<String>>,
    creations: u64,
}

const SWEEP_EVERY: u64 = 1024;

impl Default for MemoryRememberStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRememberStore {
    /// An empty store keeping at most 50 tokens per user.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            max_per_user: 50,
        }
    }

    /// Caps how many remembered devices one user may have (default 50).
    pub fn max_tokens_per_user(mut self, max: usize) -> Self {
        self.max_per_user = max.max(1);
        self
    }

    /// How many tokens are stored.
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryInner {
    fn remove(&mut self, selector: &str) -> Option<RememberToken> {
        let token = self.tokens.remove(selector)?;
        if let Some(set) = self.by_user.get_mut(&token.user_id) {
            set.remove(selector);
            if set.is_empty() {
                self.by_user.remove(&token.user_id);
            }
        }
        Some(token)
    }

    fn sweep(&mut self, now: OffsetDateTime) -> u64 {
        let expired: Vec<String> = self
            .tokens
            .values()
            .filter(|t| t.expires_at <= now)
            .map(|t| t.selector.clone())
            .collect();
        for selector in &expired {
            self.remove(selector);
        }
        expired.len() as u64
    }
}

#[async_trait]
impl RememberStore for MemoryRememberStore {
    async fn create(&self, token: RememberToken) -> Result<()> {
        let mut inner = self.lock();
        inner.creations += 1;
        if inner.creations % SWEEP_EVERY == 0 {
            inner.sweep(OffsetDateTime::now_utc());
        }
        let user_tokens = inner.by_user.get(&token.user_id).map_or(0, HashSet::len);
        if user_tokens >= self.max_per_user {
            let oldest = inner.by_user[&token.user_id]
                .iter()
                .filter_map(|s| inner.tokens.get(s))
                .min_by_key(|t| t.last_used_at)
                .map(|t| t.selector.clone());
            if let Some(oldest) = oldest {
                inner.remove(&oldest);
            }
        }
        // A selector collision (2^-128) replaces the old token, keeping the index honest.
        inner.remove(&token.selector);
        inner
            .by_user
            .entry(token.user_id.clone())
            .or_default()
            .insert(token.selector.clone());
        inner.tokens.insert(token.selector.clone(), token);
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        Ok(self.lock().tokens.get(selector).cloned())
    }

    async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool> {
        let mut inner = self.lock();
        let Some(token) = inner.tokens.get_mut(selector) else {
            return Ok(false);
        };
        if token.validator_hash != *expected {
            return Ok(false);
        }
        token.previous_hash = Some(token.validator_hash);
        token.validator_hash = rotation.new_hash;
        token.rotated_at = Some(rotation.rotated_at);
        token.last_used_at = rotation.rotated_at;
        token.expires_at = rotation.expires_at;
        Ok(true)
    }

    async fn delete(&self, selector: &str) -> Result<()> {
        self.lock().remove(selector);
        Ok(())
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        let mut inner = self.lock();
        let selectors = inner.by_user.remove(user_id).unwrap_or_default();
        for selector in &selectors {
            inner.tokens.remove(selector);
        }
        Ok(selectors.len() as u64)
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        let inner = self.lock();
        Ok(inner
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|s| inner.tokens.get(s).cloned())
            .collect())
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(self.lock().sweep(OffsetDateTime::now_utc()))
    }
}
