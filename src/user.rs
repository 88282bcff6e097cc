//! The user type an application logs in.

use std::fmt::{Debug, Display};

use serde::{de::DeserializeOwned, Serialize};

/// A user that can be logged in: Flask-Login's `UserMixin`.
///
/// ```
/// use login_manager::AuthUser;
///
/// #[derive(Clone)]
/// struct User {
///     id: i64,
///     password_hash: String,
///     disabled: bool,
/// }
///
/// impl AuthUser for User {
///     type Id = i64;
///     fn id(&self) -> i64 {
///         self.id
///     }
///     // Changing the password changes this value, which logs out every other session
///     // and revokes every remember-me token of the user.
///     fn session_auth_hash(&self) -> &[u8] {
///         self.password_hash.as_bytes()
///     }
///     fn is_active(&self) -> bool {
///         !self.disabled
///     }
/// }
/// ```
pub trait AuthUser: Clone + Send + Sync + 'static {
    /// The user's identifier, as stored in the session (keep it small: it is in every session).
    type Id: Clone + Debug + Display + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The user's identifier.
    fn id(&self) -> Self::Id;

    /// A value that changes whenever the user's credentials change: the password hash, or a
    /// random "security stamp" column. Sessions and remember-me tokens minted under an older
    /// value stop working on their next request. Only a SHA-256 digest of it is stored.
    fn session_auth_hash(&self) -> &[u8];

    /// Whether the account may log in. Inactive users are refused by `login_user` (unless
    /// forced) and logged out of existing sessions on their next request.
    fn is_active(&self) -> bool {
        true
    }
}
