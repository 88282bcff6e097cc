//! Helpers for an app's own tests (feature `testing`): a `Cookie` header for a logged-in user,
//! written straight into the app's session store, so that `oneshot` tests of protected routes
//! need no login round trip (Flask-Login's `FlaskLoginClient`).
//!
//! ```
//! # use login_manager::AuthUser;
//! # #[derive(Clone)] struct User;
//! # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 7 } fn session_auth_hash(&self) -> &[u8] { b"pw" } }
//! use login_manager::testing::TestLogin;
//! use tower_sessions::MemoryStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::default();
//! // The app under test uses `SessionManagerLayer::new(store.clone())`.
//! let cookie = TestLogin::new().cookie(&store, &User).await.unwrap();
//! // request.header(http::header::COOKIE, cookie) ...
//! # assert!(cookie.to_str().unwrap().starts_with("id="));
//! # });
//! ```

use std::sync::Arc;

use http::HeaderValue;
use tower_sessions::{Session, SessionStore};

use crate::{
    record::{AuthRecord, AUTH_KEY},
    AuthUser, Error, Result,
};

/// Builds a session cookie for a logged-in user.
#[derive(Debug, Clone)]
pub struct TestLogin {
    cookie_name: String,
    fresh: bool,
    remembered: bool,
}

impl Default for TestLogin {
    fn default() -> Self {
        Self::new()
    }
}

impl TestLogin {
    /// A fresh login in a session cookie named `id` (tower-sessions' default name).
    pub fn new() -> Self {
        Self {
            cookie_name: "id".to_owned(),
            fresh: true,
            remembered: false,
        }
    }

    /// The app's session cookie name (`SessionManagerLayer::with_name`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Whether the login is fresh (default `true`).
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// Make it look restored from a remember-me cookie: not fresh, `is_remembered()`.
    pub fn remembered(mut self) -> Self {
        self.remembered = true;
        self.fresh = false;
        self
    }

    /// Saves a session for `user` in `store` and returns the `Cookie` header value for it. The
    /// session-protection identifier is left unset, so the first request adopts its client.
    pub async fn cookie<S, U>(&self, store: &S, user: &U) -> Result<HeaderValue>
    where
        S: SessionStore + Clone,
        U: AuthUser,
    {
        let session = Session::new(None, Arc::new(store.clone()), None);
        let mut record = AuthRecord::new(user, self.fresh, None)?;
        record.remembered = self.remembered;
        session.insert(AUTH_KEY, &record).await?;
        session.save().await?;
        let id = session
            .id()
            .ok_or_else(|| Error::Config("the session store did not assign an id".to_owned()))?;
        HeaderValue::from_str(&format!("{}={id}", self.cookie_name))
            .map_err(|e| Error::Config(format!("invalid session cookie name: {e}")))
    }
}
