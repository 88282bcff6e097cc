#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! # login-manager
//!
//! A Flask-Login-style login manager for [axum], built on [tower-sessions]: implement one trait
//! that loads a user by id, call [`login_user`](AuthSession::login_user) and
//! [`logout_user`](AuthSession::logout_user) from handlers, and protect routes with
//! [`LoginRequired`]. On top: revocable remember-me cookies ([`Remember`]), fresh-login checks
//! ([`FreshLoginRequired`]), argon2id passwords ([`PasswordHasher`]), login throttling
//! ([`LoginThrottle`]) and cross-origin protection ([`CrossOriginProtection`]).
//!
//! [axum]: https://docs.rs/axum
//! [tower-sessions]: https://docs.rs/tower-sessions
//!
//! ## Quick start
//!
//! **1. The user type.** [`AuthUser::session_auth_hash`] is a value that changes when the
//! credentials change (the password hash is a good choice): changing it logs out every other
//! session and revokes every remember-me token of the user.
//!
//! ```
//! use login_manager::AuthUser;
//!
//! #[derive(Clone)]
//! struct User {
//!     id: i64,
//!     name: String,
//!     password_hash: String,
//! }
//!
//! impl AuthUser for User {
//!     type Id = i64;
//!     fn id(&self) -> i64 {
//!         self.id
//!     }
//!     fn session_auth_hash(&self) -> &[u8] {
//!         self.password_hash.as_bytes()
//!     }
//! }
//! ```
//!
//! **2. The loader** (Flask-Login's `user_loader`), usually a database pool:
//!
//! ```
//! # use login_manager::AuthUser;
//! # #[derive(Clone)] struct User { id: i64, name: String, password_hash: String }
//! # impl AuthUser for User { type Id = i64; fn id(&self) -> i64 { self.id }
//! #     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() } }
//! use std::{collections::HashMap, convert::Infallible, sync::Arc};
//!
//! use login_manager::{UserLoader};
//!
//! #[derive(Clone)]
//! struct Users(Arc<HashMap<i64, User>>);
//!
//! impl UserLoader for Users {
//!     type User = User;
//!     type Error = Infallible;
//!
//!     async fn load_user(&self, id: &i64) -> Result<Option<User>, Infallible> {
//!         Ok(self.0.get(id).cloned())
//!     }
//! }
//! ```
//!
//! **3. Handlers**: log in after checking the password, log out, and a protected page.
//!
//! ```
//! # use std::{collections::HashMap, convert::Infallible, sync::Arc};
//! # use login_manager::{AuthUser, UserLoader};
//! # #[derive(Clone)] struct User { id: i64, name: String, password_hash: String }
//! # impl AuthUser for User { type Id = i64; fn id(&self) -> i64 { self.id }
//! #     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() } }
//! # #[derive(Clone)] struct Users(Arc<HashMap<i64, User>>);
//! # impl UserLoader for Users { type User = User; type Error = Infallible;
//! #     async fn load_user(&self, id: &i64) -> Result<Option<User>, Infallible> { Ok(self.0.get(id).cloned()) } }
//! use axum::{
//!     http::StatusCode,
//!     response::{IntoResponse, Redirect, Response},
//!     Form,
//! };
//! use login_manager::{AuthSession, LoginOptions, LoginRequired};
//!
//! #[derive(serde::Deserialize)]
//! struct LoginForm {
//!     username: String,
//!     password: String,
//!     remember: Option<String>,
//! }
//!
//! async fn login(
//!     mut auth: AuthSession<Users>,
//!     Form(form): Form<LoginForm>,
//! ) -> login_manager::Result<Response> {
//!     let user = auth.loader().0.values().find(|u| u.name == form.username).cloned();
//!     // With no such user, a dummy hash is verified: same time, same answer.
//!     let stored = user.as_ref().map(|u| u.password_hash.as_str());
//!     let hasher = auth.password_hasher(); // the manager's: argon2id, bounded concurrency
//!     let valid = hasher.verify_user(&form.password, stored).await?.valid;
//!     match user {
//!         Some(user) if valid => {
//!             let remember = form.remember.as_deref() == Some("on");
//!             auth.login_user_with(&user, LoginOptions::new().remember(remember)).await?;
//!             // `next` from the query string, validated: never another site.
//!             Ok(Redirect::to(&auth.next_or("/")).into_response())
//!         }
//!         _ => Ok((StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response()),
//!     }
//! }
//!
//! async fn logout(mut auth: AuthSession<Users>) -> login_manager::Result<Redirect> {
//!     auth.logout_user().await?;
//!     Ok(Redirect::to("/"))
//! }
//!
//! // Anonymous browsers are sent to `/login?next=%2Fdashboard`; JSON clients get a 401.
//! async fn dashboard(LoginRequired(user): LoginRequired<User>) -> String {
//!     format!("Hello, {}", user.name)
//! }
//! ```
//!
//! [`AuthSession::login_with_password`] does the whole safe login path (throttle, verify,
//! rehash, login) in one call.
//!
//! **4. The layers.** The [`LoginManager`] layer goes *inside* tower-sessions'
//! `SessionManagerLayer`:
//!
//! ```
//! # use std::{collections::HashMap, convert::Infallible, sync::Arc};
//! # use login_manager::{AuthUser, UserLoader, LoginRequired};
//! # #[derive(Clone)] struct User { id: i64, name: String, password_hash: String }
//! # impl AuthUser for User { type Id = i64; fn id(&self) -> i64 { self.id }
//! #     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() } }
//! # #[derive(Clone)] struct Users(Arc<HashMap<i64, User>>);
//! # impl UserLoader for Users { type User = User; type Error = Infallible;
//! #     async fn load_user(&self, id: &i64) -> Result<Option<User>, Infallible> { Ok(self.0.get(id).cloned()) } }
//! # async fn dashboard(LoginRequired(user): LoginRequired<User>) -> String { user.name }
//! use std::time::Duration;
//!
//! use axum::{routing::get, Router};
//! use login_manager::{CrossOriginProtection, LoginManager, MemoryRememberStore, Remember};
//! use tower_sessions::{cookie::SameSite, MemoryStore, SessionManagerLayer};
//!
//! const DAY: Duration = Duration::from_secs(24 * 60 * 60);
//!
//! let users = Users(Arc::new(HashMap::new()));
//! let manager = LoginManager::new(users)
//!     .login_view("/login")
//!     .remember(Remember::new(MemoryRememberStore::new()).duration(30 * DAY))
//!     .idle_timeout(Duration::from_secs(30 * 60));
//!
//! let app: Router = Router::new()
//!     .route("/dashboard", get(dashboard))
//!     // One `.layer` call, outermost first: axum wraps every route once more per call.
//!     .layer((
//!         CrossOriginProtection::new(),
//!         // Lax like the remember cookie (tower-sessions defaults to Strict).
//!         SessionManagerLayer::new(MemoryStore::default()).with_same_site(SameSite::Lax),
//!         manager.into_layer(),
//!     ));
//! ```
//!
//! That's all: sessions get a new id at every login, logouts are server-side, `next` cannot
//! point to another site, and a store failure answers 503 instead of logging anyone in. The
//! [guide] covers remember-me, fresh logins, permissions, API tokens, throttling and
//! deployment with Postgres or Redis. The crate `login-manager-sessions` builds
//! the session layer from one setting (`redis://…`, `postgres://…`, `file:…`, `cookie:`), like
//! Flask-Session's `SESSION_TYPE`.
//!
//! ## Cargo features
//!
//! | feature | adds |
//! |---|---|
//! | `testing` | `testing::TestLogin`: a session cookie for a logged-in user in app tests |
//! | `werkzeug` | verification of Flask/Werkzeug password hashes, upgraded to argon2id at login |
//! | `sqlite`, `postgres`, `redis` | shared remember-me and throttle stores (`stores`) |

pub mod guide;

mod auth_session;
mod client;
mod config;
mod context;
mod csrf;
mod error;
mod events;
mod guard;
mod loader;
mod login;
mod logins;
#[cfg(feature = "mail")]
mod mail;
mod manager;
mod password;
mod record;
mod redirect;
mod rejection;
mod remember;
mod second_factor;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub mod stores;
#[cfg(feature = "testing")]
pub mod testing;
mod throttle;
mod timeout;
mod tokens;
mod user;

// Entry points for this repository's own tests, benchmarks and fuzz targets (feature
// `__private`): not an API for apps, and not covered by semver.
#[cfg(feature = "__private")]
#[doc(hidden)]
#[path = "hooks.rs"]
pub mod __private;

pub use auth_session::AuthSession;
pub use config::{CookieOptions, LoginOptions, SessionProtection};
pub use csrf::CrossOriginProtection;
pub use error::{Error, Result};
pub use events::{AuthEvent, EndReason};
pub use guard::{
    fresh_login_required, login_required, permission_required, FreshLoginRequired, LoginRequired,
};
pub use loader::UserLoader;
pub use login::{LoginOutcome, PasswordUserLoader};
pub use logins::{LiveLogin, LoginIndex, LoginStore, LoginTouch, MemoryLoginStore, StoredLogin};
#[cfg(feature = "mail")]
pub use mail::{password_reset_mail, Outbox};
pub use manager::{LoginManager, LoginManagerLayer};
pub use password::{PasswordHasher, Verified};
pub use redirect::{login_url, safe_next, LoginView};
pub use rejection::{Client, Reason, Rejection};
pub use remember::{
    MemoryRememberStore, Remember, RememberDevice, RememberStore, RememberToken, Rotation,
};
pub use second_factor::{RecoveryCodes, SecondFactor};
#[cfg(feature = "totp")]
pub use second_factor::{Totp, TotpEnrolment};
pub use throttle::{
    LoginAttempt, LoginThrottle, MemoryThrottleStore, ThrottleEntry, ThrottleStore,
};
pub use tokens::{MemoryTokenStore, OneTimeTokens, StoredToken, TokenOutcome, TokenStore};
pub use user::AuthUser;
