//! Loading users: Flask-Login's `user_loader` and `request_loader`.

use std::{collections::HashSet, future::Future};

use crate::AuthUser;

/// Loads users for the login manager: the one trait an application implements.
///
/// Write the methods as plain `async fn` (native `async fn` in traits; no `#[async_trait]`).
/// Their futures must be `Send`, as everything an axum handler awaits.
///
/// ```
/// use std::{collections::HashMap, convert::Infallible, sync::Arc};
///
/// use login_manager::{AuthUser, UserLoader};
///
/// #[derive(Clone)]
/// struct User { id: u32, name: String, password_hash: String }
///
/// impl AuthUser for User {
///     type Id = u32;
///     fn id(&self) -> u32 { self.id }
///     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() }
/// }
///
/// #[derive(Clone)]
/// struct Users(Arc<HashMap<u32, User>>);
///
/// impl UserLoader for Users {
///     type User = User;
///     type Error = Infallible;
///     async fn load_user(&self, id: &u32) -> Result<Option<User>, Infallible> {
///         Ok(self.0.get(id).cloned())
///     }
/// }
/// ```
pub trait UserLoader: Clone + Send + Sync + 'static {
    /// The user type.
    type User: AuthUser;
    /// The loader's error; it becomes a `503` in guards and never logs anyone in.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Loads a user by id. `Ok(None)` means the user no longer exists: the session's auth
    /// record is then removed, so the loader is not asked again on the next request.
    fn load_user(
        &self,
        id: &<Self::User as AuthUser>::Id,
    ) -> impl Future<Output = Result<Option<Self::User>, Self::Error>> + Send;

    /// Flask-Login's `request_loader`: authenticates a request that has no logged-in session,
    /// for example from an API key or a bearer token. Nothing is written to the session.
    fn load_user_from_request(
        &self,
        _parts: &http::request::Parts,
    ) -> impl Future<Output = Result<Option<Self::User>, Self::Error>> + Send {
        async { Ok(None) }
    }

    /// The user's permissions, checked by [`permission_required`](crate::permission_required).
    fn permissions(
        &self,
        _user: &Self::User,
    ) -> impl Future<Output = Result<HashSet<String>, Self::Error>> + Send {
        async { Ok(HashSet::new()) }
    }
}
