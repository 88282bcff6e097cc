//! The crate's one error type.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// A boxed error from a user loader or a store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `login-manager`.
///
/// It implements [`IntoResponse`], so a handler can use `?` on it: infrastructure failures
/// (session store, user loader, remember or throttle store, timeouts) become `503 Service
/// Unavailable` with a short body and are logged with `tracing`; they never authenticate anyone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request did not pass through [`LoginManagerLayer`](crate::LoginManagerLayer).
    #[error(
        "Missing `LoginManagerLayer`: add `.layer(manager.into_layer())` to the router, \
         before (inside) `.layer(SessionManagerLayer::new(store))`"
    )]
    MissingLoginManagerLayer,

    /// The request did not pass through tower-sessions' `SessionManagerLayer`.
    #[error(
        "Missing `SessionManagerLayer`: add `.layer(SessionManagerLayer::new(store))` after \
         `.layer(manager.into_layer())`, so that the session layer wraps the login manager"
    )]
    MissingSessionLayer,

    /// The session store failed (load, save, delete).
    #[error("session store error: {0}")]
    Session(#[from] tower_sessions::session::Error),

    /// The [`UserLoader`](crate::UserLoader) failed.
    #[error("user loader error: {0}")]
    Loader(#[source] BoxError),

    /// A remember-me or throttle store failed.
    #[error("store error: {0}")]
    Store(#[source] BoxError),

    /// A store or loader call took longer than the configured timeout.
    #[error("{0} timed out")]
    Timeout(&'static str),

    /// `login_user` was called with a user whose `is_active()` is false.
    #[error("the user is not active; use `LoginOptions::new().force(true)` to log in anyway")]
    InactiveUser,

    /// The operation needs a logged-in user (`confirm_login`, devices, ...).
    #[error("nobody is logged in")]
    NotAuthenticated,

    /// A password longer than the configured maximum; it was not hashed.
    #[error("password is longer than the maximum of {max} bytes")]
    PasswordTooLong {
        /// The configured maximum, in bytes.
        max: usize,
    },

    /// The password hasher failed or was given an unusable configuration.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),

    /// Too many failed logins for this account or client.
    #[error("too many failed login attempts; retry in {} s", retry_after.as_secs())]
    Throttled {
        /// How long until the lock is lifted.
        retry_after: Duration,
    },

    /// Too many password checks are already waiting for a hashing thread
    /// ([`PasswordHasher::max_queued`](crate::PasswordHasher::max_queued)): answered at once
    /// with 503 and `Retry-After` rather than with an ever longer wait.
    #[error("too many password checks waiting; retry in {} s", retry_after.as_secs())]
    Overloaded {
        /// When to try again.
        retry_after: Duration,
    },

    /// Mail could not be handed to the transport (SMTP server down, directory not
    /// writable): 503, like a store failure.
    #[error("mail error: {0}")]
    Mail(#[source] BoxError),

    /// The configuration is invalid (for example a login view that is not a path).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// True for failures of infrastructure (stores, loader, timeouts, mail, an overloaded
    /// password hasher), answered with 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Session(_)
                | Error::Loader(_)
                | Error::Store(_)
                | Error::Timeout(_)
                | Error::Mail(_)
                | Error::Overloaded { .. }
        )
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            _ if self.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::InactiveUser => StatusCode::FORBIDDEN,
            Error::NotAuthenticated => StatusCode::UNAUTHORIZED,
            Error::PasswordTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "login-manager error");
        }
        let body = match &self {
            // Configuration mistakes are the developer's to fix: say exactly what to do.
            Error::MissingLoginManagerLayer | Error::MissingSessionLayer | Error::Config(_) => {
                self.to_string()
            }
            _ if self.is_unavailable() => "Service temporarily unavailable.".to_owned(),
            Error::PasswordHash(_) => "Internal error.".to_owned(),
            _ => self.to_string(),
        };
        let mut response = (status, body).into_response();
        if let Error::Throttled { retry_after } | Error::Overloaded { retry_after } = &self {
            let secs = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Shorthand for `Result<T, login_manager::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
