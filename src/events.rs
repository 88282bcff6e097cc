//! Authentication events ([`AuthEvent`], [`EndReason`]): Flask-Login's signals.

use std::fmt;

/// Why a logged-in session ended without a logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// No request for longer than the idle timeout.
    IdleTimeout,
    /// Logged in for longer than the absolute timeout.
    AbsoluteTimeout,
    /// The user's `session_auth_hash` changed (for example a password change elsewhere).
    AuthHashChanged,
    /// The loader no longer finds the user.
    UserGone,
    /// The user is no longer active.
    UserInactive,
    /// Strong session protection saw another client identifier.
    SessionProtection,
    /// Its entry in the [`LoginIndex`](crate::LoginIndex) was ended (cookie sessions, which
    /// check it on every request).
    LoginEnded,
}

/// Something that happened to a login (Flask-Login's signals), passed to every
/// [`LoginManager::on_event`](crate::LoginManager::on_event) listener and logged with
/// `tracing` at `info` (security-relevant ones at `warn`).
///
/// User ids are given in their `Display` form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthEvent {
    /// `login_user` succeeded (`user_logged_in`).
    LoggedIn {
        /// The user.
        user_id: String,
        /// Whether a remember-me token was issued.
        remember: bool,
    },
    /// `login_user` refused an inactive user.
    LoginRefused {
        /// The user.
        user_id: String,
    },
    /// `logout_user` ended a login (`user_logged_out`).
    LoggedOut {
        /// The user, when one was logged in.
        user_id: Option<String>,
    },
    /// A logged-in session was ended by the library.
    SessionEnded {
        /// The user.
        user_id: String,
        /// Why.
        reason: EndReason,
    },
    /// The user was authenticated by `load_user_from_request` (`user_loaded_from_request`).
    LoadedFromRequest {
        /// The user.
        user_id: String,
    },
    /// The user was restored from a remember-me cookie (`user_loaded_from_cookie`).
    LoadedFromRemember {
        /// The user.
        user_id: String,
    },
    /// A remember-me validator was replayed after rotation: every token of the user was
    /// revoked.
    RememberTheftDetected {
        /// The user.
        user_id: String,
    },
    /// `confirm_login` made the session fresh again (`user_login_confirmed`).
    LoginConfirmed {
        /// The user.
        user_id: String,
    },
    /// `update_session_auth_hash` kept this session alive after a credential change.
    AuthHashUpdated {
        /// The user.
        user_id: String,
    },
    /// A guard refused an anonymous request (`user_unauthorized`).
    Unauthorized {
        /// The request path.
        path: String,
    },
    /// A guard asked a non-fresh session to re-authenticate (`user_needs_refresh`).
    NeedsRefresh {
        /// The user.
        user_id: String,
        /// The request path.
        path: String,
    },
    /// A guard refused a logged-in user who lacks a permission.
    Forbidden {
        /// The user.
        user_id: String,
        /// The missing permission.
        permission: String,
    },
    /// Session protection saw a different client identifier (`session_protected`).
    SessionProtected {
        /// The user.
        user_id: String,
        /// `true` in Strong mode (logged out), `false` in Basic mode (marked not fresh).
        logged_out: bool,
    },
    /// A login in the [`LoginIndex`](crate::LoginIndex) was ended from another browser, by an
    /// admin, or to keep the user within
    /// [`max_logins_per_user`](crate::LoginIndex::max_logins_per_user): its session and
    /// remember-me token are gone.
    LoginEnded {
        /// The user.
        user_id: String,
        /// The ended login's [`LiveLogin::id`](crate::LiveLogin::id).
        login_id: String,
    },
}

impl AuthEvent {
    /// Events that may mean an attack, logged at `warn`.
    pub fn is_security_relevant(&self) -> bool {
        matches!(
            self,
            AuthEvent::RememberTheftDetected { .. } | AuthEvent::SessionProtected { .. }
        )
    }
}

impl fmt::Display for AuthEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
