#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! login-manager (guide to come)

mod auth_session;
pub mod config;
mod context;
pub mod csrf;
mod error;
pub mod events;
pub mod guard;
mod loader;
mod login;
mod manager;
pub mod password;
pub mod redirect;
pub mod remember;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub mod stores;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
mod user;

pub use async_trait::async_trait;
pub use auth_session::{AuthSession, LoginOptions};
pub use config::{CookieOptions, SessionProtection};
pub use csrf::CrossOriginProtection;
pub use error::{BoxError, Error, Result};
pub use events::AuthEvent;
pub use guard::{
    fresh_login_required, login_required, permission_required, FreshLoginRequired, LoginRequired,
};
pub use loader::UserLoader;
pub use login::{LoginOutcome, PasswordLogin, PasswordUserLoader};
pub use manager::{LoginManager, LoginManagerLayer, LoginManagerService};
pub use password::{PasswordHasher, Verified};
pub use redirect::{safe_next, safe_next_or, LoginView};
pub use remember::Remember;
pub use throttle::{LoginThrottle, MemoryThrottleStore, ThrottleEntry, ThrottleStore};
pub use time::Duration;
pub use user::AuthUser;
