//! Where one-time tokens live: the [`TokenStore`] trait and [`MemoryTokenStore`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Result;

/// A stored one-time token. The validator itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// Random public half of the token, the look-up key.
    pub selector: String,
    /// SHA-256 of the validator.
    pub validator_hash: [u8; 32],
    /// What the token is for (`password-reset`, `verify-email`, `magic-link`, ...): a token is
    /// only accepted for its own purpose.
    pub purpose: String,
    /// The user id, JSON-encoded (`1`, `"alice"`).
    pub user_id: String,
    /// Digest of the user's `session_auth_hash` at issue: a credential change voids the token.
    pub auth_hash: String,
    /// Issue time.
    pub created_at: OffsetDateTime,
    /// Server-side expiry.
    pub expires_at: OffsetDateTime,
}

/// Storage for one-time tokens ([`OneTimeTokens`](crate::OneTimeTokens)). Implementations
/// exist for memory and (behind features) SQLite, Postgres and Redis; all pass the same
/// conformance tests.
///
/// Any failure of the backend is an error, normally [`Error::Store`](crate::Error::Store),
/// never a panic. A store applies no timeout of its own: the library bounds every call.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new token (the selector is fresh random; a collision may overwrite).
    async fn create(&self, token: StoredToken) -> Result<()>;

    /// The token with this selector, unless it is missing or expired.
    async fn find(&self, selector: &str) -> Result<Option<StoredToken>>;

    /// Deletes the token if it still exists with this validator hash; returns whether this
    /// call deleted it. Of many racing calls, exactly one gets `true`: that is what makes a
    /// token single-use.
    async fn take(&self, selector: &str, validator_hash: &[u8; 32]) -> Result<bool>;

    /// Deletes the tokens whose `expires_at` has passed; returns how many.
    async fn delete_expired(&self) -> Result<u64>;
}

/// A shared store is a store (`Arc<dyn TokenStore>`).
#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    async fn create(&self, token: StoredToken) -> Result<()> {
        (**self).create(token).await
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>> {
        (**self).find(selector).await
    }

    async fn take(&self, selector: &str, validator_hash: &[u8; 32]) -> Result<bool> {
        (**self).take(selector, validator_hash).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        (**self).delete_expired().await
    }
}

/// An in-process [`TokenStore`], for single-instance apps and tests. Expired tokens are swept
/// every 1024 creations.
#[derive(Debug, Clone, Default)]
pub struct MemoryTokenStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    tokens: HashMap<String, StoredToken>,
    creations: u64,
}

const SWEEP_EVERY: u64 = 1024;

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryInner {
    fn sweep(&mut self, now: OffsetDateTime) -> u64 {
        let before = self.tokens.len();
        self.tokens.retain(|_, t| t.expires_at > now);
        (before - self.tokens.len()) as u64
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn create(&self, token: StoredToken) -> Result<()> {
        let mut inner = self.lock();
        inner.creations += 1;
        if inner.creations % SWEEP_EVERY == 0 {
            inner.sweep(OffsetDateTime::now_utc());
        }
        inner.tokens.insert(token.selector.clone(), token);
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .lock()
            .tokens
            .get(selector)
            .filter(|t| t.expires_at > now)
            .cloned())
    }

    async fn take(&self, selector: &str, validator_hash: &[u8; 32]) -> Result<bool> {
        let mut inner = self.lock();
        let matches = inner
            .tokens
            .get(selector)
            .is_some_and(|t| t.validator_hash == *validator_hash);
        if matches {
            inner.tokens.remove(selector);
        }
        Ok(matches)
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(self.lock().sweep(OffsetDateTime::now_utc()))
    }
}
