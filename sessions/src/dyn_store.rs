//! [`DynStore`]: any tower-sessions store behind one type.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::{session_store, SessionStore};

/// Any tower-sessions store behind one type, so that the store can be chosen at run time
/// (`SessionManagerLayer<DynStore>`).
///
/// It also refuses expired records on `load`, for every store: not all of them check
/// (the file store returns a record until its file is deleted).
#[derive(Clone)]
pub struct DynStore(Arc<dyn SessionStore>);

impl DynStore {
    /// Wraps a store.
    pub fn new(store: impl SessionStore) -> Self {
        Self(Arc::new(store))
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self(store)
    }
}

impl fmt::Debug for DynStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynStore").field(&self.0).finish()
    }
}

#[async_trait::async_trait]
impl SessionStore for DynStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // The inner store's own `create`: it knows how to avoid id collisions atomically.
        self.0.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.save(record).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let record = self.0.load(session_id).await?;
        Ok(record.filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.0.delete(session_id).await
    }
}
