//! Session backends chosen by one setting, the Flask-Session way.
//!
//! Flask-Session picks where sessions live with `SESSION_TYPE`; here one URL does it, and
//! [`SessionBackend::into_layer`] turns it into the session layer that goes outside the
//! [`LoginManager`](login_manager::LoginManager) layer, with the cookie settings of
//! [`SessionConfig`] (secure defaults: `HttpOnly`, `SameSite=Lax`, `Secure`, a browser-session
//! cookie):
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory:` | tower-sessions' `MemoryStore` (one process, lost on restart) | always |
//! | `sqlite://app.db?mode=rwc` | `tower-sessions-sqlx-store` 0.15 `SqliteStore` | `sqlite` |
//! | `postgres://…`, `postgresql://…` | `tower-sessions-sqlx-store` 0.15 `PostgresStore` | `postgres` |
//! | `redis://…`, `rediss://…` | `tower-sessions-redis-store` 0.16 `RedisStore` (fred 10) | `redis` |
//! | `file:sessions`, `file:///var/lib/app/sessions` | `tower-sessions-file-store` 0.2, one file per session | `file` |
//! | `cookie:`, `cookie:private`, `cookie:signed` | the session inside the cookie (`tower-sessions-cookie-store` 0.5) | `cookie` |
//!
//! Any other tower-sessions store (MongoDB, memcached, DynamoDB, …) plugs in with
//! [`SessionBackend::custom`].
//!
//! ```no_run
//! # async fn run() -> Result<(), login_manager::Error> {
//! use login_manager_sessions::{SessionBackend, SessionConfig};
//! use login_manager::CookieOptions;
//!
//! // e.g. SESSION_URL=redis://127.0.0.1:6379
//! let backend = SessionBackend::from_env("SESSION_URL").await?;
//! let sessions = backend.into_layer(
//!     // Plain HTTP in development only: `Secure` is on by default.
//!     SessionConfig::new().cookie(CookieOptions::new("session").secure(false)),
//! )?;
//! // Router::new()...layer(manager.into_layer()).layer(sessions)
//! # Ok(()) }
//! ```
//!
//! # Cookie sessions
//!
//! With `cookie:` the whole session is in the browser's cookie, signed (`cookie:signed`,
//! Flask's default: the client can read it but not change it) or encrypted and signed
//! (`cookie:`/`cookie:private`, the default here: the client can do neither). That needs a
//! secret key ([`SessionConfig::secret_key`]), and it weakens two of the crate's invariants:
//!
//! - **No server-side revocation.** Logging out, rotating the session id at login and
//!   [`update_session_auth_hash`](login_manager::AuthSession::update_session_auth_hash) replace the
//!   cookie in *this* browser, but a copy taken earlier (a stolen cookie, a backup) stays a
//!   valid logged-in session: there is nothing on the server to delete. What still limits such
//!   a copy: the library's idle and absolute timeouts (the login time and last-seen time are
//!   inside the signed record), and the auth-hash digest (a password change ends it).
//! - **A secret key is required** (invariant 4 says none is): whoever holds it can forge any
//!   session, so keep it out of the repository and rotate it if it leaks (which logs everyone
//!   out).
//!
//! Cookies are limited to about 4 KB; a session that grows past
//! [`SessionConfig::max_cookie_bytes`] is not truncated: the response becomes a `500` saying
//! so, no cookie is written, and the error is logged.
//!
//! # Permanent and browser sessions
//!
//! By default the session cookie has no `Max-Age` (Flask's `SESSION_PERMANENT = False`): it
//! ends when the browser closes, and "remember me" is what keeps a user logged in after that.
//! [`SessionConfig::permanent`] gives the cookie (and the stored record) a lifetime instead
//! (Flask's `PERMANENT_SESSION_LIFETIME`), extended whenever the session is saved. Either way
//! the library's idle and absolute timeouts end the *login* on the server, whatever the
//! cookie's lifetime.

mod backend;
mod config;
mod connect;
#[cfg(feature = "cookie")]
mod cookie;
mod dyn_store;
mod layer;

use login_manager::Error;

type Result<T, E = Error> = std::result::Result<T, E>;
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use backend::SessionBackend;
pub use config::{SessionConfig, DEFAULT_COOKIE_NAME};
#[cfg(feature = "cookie")]
pub use cookie::CookieProtection;
pub use dyn_store::DynStore;
pub use layer::{SessionLayer, SessionService};
/// The secret key of cookie sessions ([`SessionConfig::secret_key`]).
#[cfg(feature = "cookie")]
pub use tower_cookies::Key;
