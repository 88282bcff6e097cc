//! What the store implementations share: the delegation of the store traits to the private
//! implementations, the backend-error mapping, throttle-window arithmetic and the cleanup loop.
//! (A module of its own so that `stores` itself only re-exports: no cycle between the parent and
//! its children.)

use std::future::Future;
use std::time::Duration;

use crate::throttle::ThrottleEntry;
use crate::{error::BoxError, Error, Result};

/// Implements [`RememberStore`](crate::RememberStore), [`ThrottleStore`](crate::ThrottleStore),
/// [`LoginStore`](crate::LoginStore) or [`TokenStore`](crate::TokenStore) for a public store type by forwarding every call to
/// the private implementation it wraps (field `0`), which has inherent methods of the same
/// names.
macro_rules! delegate_store {
    (RememberStore for $name:ident) => {
        #[async_trait::async_trait]
        impl $crate::remember::RememberStore for $name {
            async fn create(&self, token: $crate::remember::RememberToken) -> $crate::Result<()> {
                self.0.create(token).await
            }

            async fn find(
                &self,
                selector: &str,
            ) -> $crate::Result<Option<$crate::remember::RememberToken>> {
                self.0.find(selector).await
            }

            async fn rotate(
                &self,
                selector: &str,
                expected: &$crate::remember::token::ValidatorHash,
                rotation: $crate::Rotation,
            ) -> $crate::Result<bool> {
                self.0.rotate(selector, expected, rotation).await
            }

            async fn delete(&self, selector: &str) -> $crate::Result<()> {
                self.0.delete(selector).await
            }

            async fn delete_for_user(&self, user_id: &str) -> $crate::Result<u64> {
                self.0.delete_for_user(user_id).await
            }

            async fn list_for_user(
                &self,
                user_id: &str,
            ) -> $crate::Result<Vec<$crate::remember::RememberToken>> {
                self.0.list_for_user(user_id).await
            }

            async fn delete_expired(&self) -> $crate::Result<u64> {
                self.0.delete_expired().await
            }
        }
    };
    (ThrottleStore for $name:ident) => {
        #[async_trait::async_trait]
        impl $crate::ThrottleStore for $name {
            async fn failures(&self, key: &str) -> $crate::Result<Option<$crate::ThrottleEntry>> {
                self.0.failures(key).await
            }

            async fn record_failure(
                &self,
                key: &str,
                window: std::time::Duration,
            ) -> $crate::Result<$crate::ThrottleEntry> {
                self.0.record_failure(key, window).await
            }

            async fn reset(&self, key: &str) -> $crate::Result<()> {
                self.0.reset(key).await
            }
        }
    };
    (LoginStore for $name:ident) => {
        #[async_trait::async_trait]
        impl $crate::LoginStore for $name {
            async fn put(
                &self,
                login: $crate::StoredLogin,
                max_per_user: usize,
            ) -> $crate::Result<Vec<$crate::StoredLogin>> {
                self.0.put(login, max_per_user).await
            }

            async fn get(
                &self,
                user_id: &str,
                id: &str,
            ) -> $crate::Result<Option<$crate::StoredLogin>> {
                self.0.get(user_id, id).await
            }

            async fn touch(
                &self,
                user_id: &str,
                id: &str,
                touch: $crate::LoginTouch,
            ) -> $crate::Result<bool> {
                self.0.touch(user_id, id, touch).await
            }

            async fn list(&self, user_id: &str) -> $crate::Result<Vec<$crate::StoredLogin>> {
                self.0.list(user_id).await
            }

            async fn delete(
                &self,
                user_id: &str,
                id: &str,
            ) -> $crate::Result<Option<$crate::StoredLogin>> {
                self.0.delete(user_id, id).await
            }

            async fn delete_for_user(
                &self,
                user_id: &str,
            ) -> $crate::Result<Vec<$crate::StoredLogin>> {
                self.0.delete_for_user(user_id).await
            }

            async fn delete_expired(&self) -> $crate::Result<u64> {
                self.0.delete_expired().await
            }
        }
    };
    (TokenStore for $name:ident) => {
        #[async_trait::async_trait]
        impl $crate::TokenStore for $name {
            async fn create(&self, token: $crate::StoredToken) -> $crate::Result<()> {
                self.0.create(token).await
            }

            async fn find(&self, selector: &str) -> $crate::Result<Option<$crate::StoredToken>> {
                self.0.find(selector).await
            }

            async fn take(
                &self,
                selector: &str,
                validator_hash: &[u8; 32],
            ) -> $crate::Result<bool> {
                self.0.take(selector, validator_hash).await
            }

            async fn delete_expired(&self) -> $crate::Result<u64> {
                self.0.delete_expired().await
            }
        }
    };
}

/// Throttle windows are capped at a year, as in [`MemoryThrottleStore`](crate::MemoryThrottleStore),
/// so that the database's time arithmetic cannot overflow.
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A throttle window in whole milliseconds, between 1 ms and [`MAX_WINDOW`].
pub(crate) fn window_millis(window: Duration) -> i64 {
    let millis = window.min(MAX_WINDOW).as_millis().max(1);
    // At most a year of milliseconds: always fits.
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// A window as [`ThrottleStore`](crate::ThrottleStore) reports it: a count of at least 1 that
/// fits a `u32`, and at least 1 ms left. Databases round the time left down to whole
/// milliseconds, so a window read in its last millisecond would otherwise report zero.
pub(crate) fn window_entry(count: i64, millis_left: i64) -> ThrottleEntry {
    ThrottleEntry {
        count: u32::try_from(count.max(1)).unwrap_or(u32::MAX),
        expires_in: Duration::from_millis(u64::try_from(millis_left).unwrap_or(0).max(1)),
    }
}

/// Runs one backend call, turning its error into [`Error::Store`]. No timeout: the callers
/// bound store calls (`crate::timeout::timed`).
pub(crate) async fn backend<T, E>(
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: Into<BoxError>,
{
    call.await.map_err(|e| Error::Store(e.into()))
}

/// The body of the `continuously_delete_expired` tasks: `delete` now, then every `period`,
/// logging failures instead of stopping, so that one database hiccup does not end the
/// cleanup for the life of the process.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn delete_expired_every<F, Fut>(period: Duration, what: &'static str, delete: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    // `interval` panics on a zero period; a cleanup more often than once a second is no use.
    let mut ticks = tokio::time::interval(period.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match delete().await {
            Ok(deleted) => tracing::debug!(deleted, "{what}: expired rows deleted"),
            Err(error) => tracing::warn!(%error, "{what}: deleting expired rows failed"),
        }
    }
}
