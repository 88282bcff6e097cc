//! Where the demo keeps its state: the one place to change to move sessions, remember-me
//! tokens or login throttling to another backend (Postgres, Redis).
//!
//! Today: sessions in SQLite (tower-sessions-sqlx-store), remember-me tokens and throttle
//! counters in memory. Memory stores are fine for one process; they are lost on restart
//! (everyone "remembered" has to log in again) and not shared between instances.

use std::{sync::Arc, time::Duration};

use login_manager::{
    remember::{MemoryRememberStore, RememberStore},
    MemoryThrottleStore,
};
use sqlx::SqlitePool;
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions_sqlx_store::SqliteStore;

/// How often expired sessions and remember-me tokens are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(60 * 60);

/// The stores, built once at start-up.
pub struct Stores {
    pub sessions: SqliteStore,
    pub remember: MemoryRememberStore,
    pub throttle: MemoryThrottleStore,
}

impl Stores {
    /// Builds the stores, creating the session table if needed.
    pub async fn new(pool: &SqlitePool) -> Result<Self, sqlx::Error> {
        let sessions = SqliteStore::new(pool.clone());
        sessions.migrate().await?;
        Ok(Self {
            sessions,
            remember: MemoryRememberStore::new(),
            throttle: MemoryThrottleStore::new(),
        })
    }
}

/// Deletes expired sessions and remember-me tokens every hour. Both stores refuse expired
/// records on their own; this only keeps them from growing without bound.
pub fn spawn_cleanup(sessions: SqliteStore, remember: Arc<dyn RememberStore>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CLEANUP_EVERY);
        loop {
            every.tick().await;
            if let Err(err) = sessions.delete_expired().await {
                tracing::warn!(%err, "deleting expired sessions failed");
            }
            match remember.delete_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "deleted expired remember-me tokens"),
                Err(err) => tracing::warn!(%err, "deleting expired remember-me tokens failed"),
            }
        }
    });
}
