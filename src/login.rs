//! The safe password-login path in one call: throttle check → look-up → constant-work
//! verification → record the result → `login_user`, with hash upgrades on the way.
//!
//! ```
//! # use login_manager::{async_trait, AuthUser, UserLoader};
//! # #[derive(Clone)] struct User { id: u32, password_hash: String }
//! # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { self.id } fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() } }
//! # #[derive(Clone)] struct Users;
//! # #[async_trait] impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
//! #   async fn load_user(&self, _: &u32) -> Result<Option<User>, Self::Error> { Ok(None) } }
//! use axum::{http::StatusCode, response::{IntoResponse, Redirect, Response}, Form};
//! use login_manager::{
//!     AuthSession, LoginOptions, LoginOutcome, PasswordLogin, PasswordUserLoader,
//! };
//!
//! #[async_trait]
//! impl PasswordUserLoader for Users {
//!     async fn load_user_by_username(&self, name: &str) -> Result<Option<User>, Self::Error> {
//!         Ok(None) // SELECT ... WHERE username = $1
//!     }
//!     fn password_hash<'a>(&self, user: &'a User) -> Option<&'a str> {
//!         Some(&user.password_hash)
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct LoginForm { username: String, password: String }
//!
//! async fn login(
//!     mut auth: AuthSession<Users>,
//!     axum::Extension(login): axum::Extension<PasswordLogin>,
//!     Form(form): Form<LoginForm>,
//! ) -> login_manager::Result<Response> {
//!     let outcome = auth
//!         .login_with_password(&login, &form.username, &form.password, LoginOptions::new())
//!         .await?;
//!     Ok(match outcome {
//!         LoginOutcome::LoggedIn => Redirect::to(&auth.next_or("/")).into_response(),
//!         LoginOutcome::InvalidCredentials => {
//!             (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response()
//!         }
//!         LoginOutcome::Throttled { retry_after } => {
//!             login_manager::Error::Throttled { retry_after }.into_response()
//!         }
//!     })
//! }
//! ```

use std::{net::IpAddr, time::Duration};

use async_trait::async_trait;

use crate::{
    context::loader_call, AuthSession, AuthUser, Error, LoginOptions, LoginThrottle,
    PasswordHasher, Result, UserLoader,
};

/// A [`UserLoader`] that can also find users by the name typed into a login form.
#[async_trait]
pub trait PasswordUserLoader: UserLoader {
    /// The user with this login name, if any (match it the way your sign-up stores it).
    async fn load_user_by_username(
        &self,
        username: &str,
    ) -> std::result::Result<Option<Self::User>, Self::Error>;

    /// The user's stored password hash (argon2 PHC string, or a Werkzeug hash with the
    /// `werkzeug` feature); `None` when the account cannot log in with a password.
    fn password_hash<'a>(&self, user: &'a Self::User) -> Option<&'a str>;

    /// Stores an upgraded hash after a successful login with an outdated one (other
    /// parameters, or a Werkzeug hash). The default keeps the old hash.
    async fn save_password_hash(
        &self,
        _user: &Self::User,
        _new_hash: &str,
    ) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
}

/// The hasher and (optionally) the throttle used by
/// [`AuthSession::login_with_password`]. Cheap to clone; build one at start-up.
#[derive(Debug, Clone)]
pub struct PasswordLogin {
    hasher: PasswordHasher,
    throttle: Option<LoginThrottle>,
}

impl PasswordLogin {
    /// Password logins verified by `hasher`, without throttling.
    pub fn new(hasher: PasswordHasher) -> Self {
        Self {
            hasher,
            throttle: None,
        }
    }

    /// Counts failures and locks accounts and addresses with `throttle`.
    pub fn throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// The hasher (for sign-up and password changes).
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The throttle, if any.
    pub fn login_throttle(&self) -> Option<&LoginThrottle> {
        self.throttle.as_ref()
    }

    /// `Some(Throttled)` when `key` or `addr` is locked.
    async fn locked(&self, key: &str, addr: Option<IpAddr>) -> Result<Option<LoginOutcome>> {
        let Some(throttle) = &self.throttle else {
            return Ok(None);
        };
        match throttle.check(key, addr).await {
            Ok(()) => Ok(None),
            Err(Error::Throttled { retry_after }) => {
                Ok(Some(LoginOutcome::Throttled { retry_after }))
            }
            Err(err) => Err(err),
        }
    }

    async fn record(&self, key: &str, addr: Option<IpAddr>, success: bool) -> Result<()> {
        match (&self.throttle, success) {
            (None, _) => Ok(()),
            (Some(throttle), true) => throttle.record_success(key).await,
            (Some(throttle), false) => throttle.record_failure(key, addr).await,
        }
    }
}

/// What [`AuthSession::login_with_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LoginOutcome {
    /// The user is logged in: redirect (303) to `next`.
    LoggedIn,
    /// Unknown user, wrong password, disabled account or a password over the length limit:
    /// one answer for all (401), so that none of them can be told apart.
    InvalidCredentials,
    /// Too many failures for this account or address: answer 429 with `Retry-After`.
    Throttled {
        /// How long until another attempt is considered.
        retry_after: Duration,
    },
}

impl<L: PasswordUserLoader> AuthSession<L> {
    /// Checks `username` / `password` and logs the user in, safely: the throttle is asked
    /// first (a locked account is refused even with the right password); the password is
    /// verified exactly once whether or not the account exists (no timing or message
    /// difference); oversized passwords are refused without hashing; the result is counted;
    /// outdated hashes are upgraded; and the login itself is
    /// [`login_user`](Self::login_user) with `options`.
    ///
    /// Store, loader and hasher failures are errors (503), never a login.
    pub async fn login_with_password(
        &mut self,
        login: &PasswordLogin,
        username: &str,
        password: &str,
        options: LoginOptions,
    ) -> Result<LoginOutcome> {
        let addr = self.client_addr(login);
        if let Some(throttled) = login.locked(username, addr).await? {
            return Ok(throttled);
        }
        let limit = self.store_timeout();
        let loader = self.loader().clone();
        let user = loader_call(limit, loader.load_user_by_username(username)).await?;
        let stored = user.as_ref().and_then(|u| loader.password_hash(u));
        let verified = login.hasher.verify_user(password, stored).await?;
        let user = user.filter(|u| verified.valid && u.is_active());
        login.record(username, addr, user.is_some()).await?;
        let Some(user) = user else {
            return Ok(LoginOutcome::InvalidCredentials);
        };
        let user = if verified.needs_rehash {
            let upgraded = login.hasher.hash(password).await?;
            loader_call(limit, loader.save_password_hash(&user, &upgraded)).await?;
            // The auth hash may derive from the password hash: log in the stored user.
            loader_call(limit, loader.load_user(&user.id()))
                .await?
                .unwrap_or(user)
        } else {
            user
        };
        self.login_user(&user, options).await?;
        Ok(LoginOutcome::LoggedIn)
    }

    /// "Confirm your password" for a logged-in user (the refresh view): when `password` is
    /// the user's, marks the login fresh with [`confirm_login`](Self::confirm_login).
    /// Failures count in the throttle under the key `id:<user id>`, so a stolen remember-me
    /// cookie does not get unlimited guesses at the password.
    pub async fn reauthenticate_with_password(
        &mut self,
        login: &PasswordLogin,
        password: &str,
    ) -> Result<LoginOutcome> {
        let user = self.user().cloned().ok_or(Error::NotAuthenticated)?;
        let key = format!("id:{}", user.id());
        let addr = self.client_addr(login);
        if let Some(throttled) = login.locked(&key, addr).await? {
            return Ok(throttled);
        }
        let stored = self.loader().password_hash(&user);
        let valid = login.hasher.verify_user(password, stored).await?.valid;
        login.record(&key, addr, valid).await?;
        if !valid {
            return Ok(LoginOutcome::InvalidCredentials);
        }
        self.confirm_login().await?;
        Ok(LoginOutcome::LoggedIn)
    }

    fn client_addr(&self, login: &PasswordLogin) -> Option<IpAddr> {
        login
            .throttle
            .as_ref()
            .and_then(|t| t.client_addr_of(self.peer_info()))
    }
}
