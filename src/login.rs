//! Password logins: the [`PasswordUserLoader`] trait, which documents the safe login path, and
//! the hasher and throttle that `AuthSession::login_with_password` runs on.

use std::{future::Future, time::Duration};

use cookie::Cookie;

use crate::{
    client::PeerInfo, throttle::LoginAttempt, Error, LoginThrottle, PasswordHasher, Result,
    UserLoader,
};

/// A [`UserLoader`] that can also find users by the name typed into a login form: what
/// [`AuthSession::login_with_password`](crate::AuthSession::login_with_password) needs to do the
/// safe password-login path in one call — throttle check, look-up, constant-work verification,
/// recording the result, [`login_user`](crate::AuthSession::login_user) — with hash upgrades on
/// the way ([`save_password_hash`](Self::save_password_hash)).
///
/// ```
/// # use login_manager::{AuthUser, UserLoader};
/// # #[derive(Clone)] struct User { id: u32, password_hash: String }
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { self.id } fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() } }
/// # #[derive(Clone)] struct Users;
/// # impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
/// #   async fn load_user(&self, _: &u32) -> Result<Option<User>, Self::Error> { Ok(None) } }
/// use axum::{http::StatusCode, response::{IntoResponse, Redirect, Response}, Form};
/// use login_manager::{AuthSession, LoginOptions, LoginOutcome, PasswordUserLoader};
///
/// impl PasswordUserLoader for Users {
///     async fn load_user_by_username(&self, name: &str) -> Result<Option<User>, Self::Error> {
///         Ok(None) // SELECT ... WHERE username = $1
///     }
///     fn password_hash<'a>(&self, user: &'a User) -> Option<&'a str> {
///         Some(&user.password_hash)
///     }
/// }
///
/// #[derive(serde::Deserialize)]
/// struct LoginForm { username: String, password: String }
///
/// async fn login(
///     mut auth: AuthSession<Users>,
///     Form(form): Form<LoginForm>,
/// ) -> Result<Response, login_manager::Error> {
///     // The hasher and throttle are the manager's: `LoginManager::password_hasher` and
///     // `LoginManager::login_throttle`.
///     let outcome = auth
///         .login_with_password(&form.username, &form.password, LoginOptions::new())
///         .await?;
///     Ok(match outcome {
///         LoginOutcome::LoggedIn => Redirect::to(&auth.next_or("/")).into_response(),
///         LoginOutcome::InvalidCredentials => {
///             (StatusCode::UNAUTHORIZED, "Invalid username or password.").into_response()
///         }
///         LoginOutcome::Throttled { retry_after } => {
///             login_manager::Error::Throttled { retry_after }.into_response()
///         }
///         LoginOutcome::SecondFactorRequired => Redirect::to("/login/2fa").into_response(),
///     })
/// }
/// ```
pub trait PasswordUserLoader: UserLoader {
    /// The user with this login name, if any (match it the way your sign-up stores it).
    fn load_user_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = std::result::Result<Option<Self::User>, Self::Error>> + Send;

    /// The user's stored password hash (argon2 PHC string, or a Werkzeug hash with the
    /// `werkzeug` feature); `None` when the account cannot log in with a password.
    fn password_hash<'a>(&self, user: &'a Self::User) -> Option<&'a str>;

    /// The name the user types into the login form, if the loader knows it.
    ///
    /// [`reauthenticate_with_password`](crate::AuthSession::reauthenticate_with_password) then counts
    /// its failures under the same throttle key as the login form, and the browser's device
    /// cookie for the account applies there too. The default, `None`, counts them under
    /// `id:<user id>`, a key of their own.
    fn login_name<'a>(&self, _user: &'a Self::User) -> Option<&'a str> {
        None
    }

    /// Whether `user` has a second factor turned on. When `true`, a right password does not
    /// log in: [`login_with_password`](crate::AuthSession::login_with_password) answers
    /// [`LoginOutcome::SecondFactorRequired`] and the login waits, in the session, for
    /// [`complete_second_factor`](crate::AuthSession::complete_second_factor). The default,
    /// `false`, logs in with the password alone.
    fn second_factor_required(&self, _user: &Self::User) -> bool {
        false
    }

    /// Stores an upgraded hash after a successful login with an outdated one (other
    /// parameters, or a Werkzeug hash). The default keeps the old hash.
    fn save_password_hash(
        &self,
        _user: &Self::User,
        _new_hash: &str,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
}

/// The hasher and the throttle of [`AuthSession::login_with_password`](crate::AuthSession::login_with_password),
/// set on the [`LoginManager`](crate::LoginManager).
#[derive(Debug, Clone, Default)]
pub(crate) struct PasswordLogin {
    pub hasher: PasswordHasher,
    pub throttle: Option<LoginThrottle>,
}

impl PasswordLogin {
    /// Asks the throttle about an attempt for `key` from the client `peer`, presenting the
    /// device cookie that `cookie` reads by name.
    pub(crate) async fn admit(
        &self,
        key: &str,
        peer: &PeerInfo,
        cookie: impl FnOnce(&str) -> Option<String>,
    ) -> Result<Admission> {
        let Some(throttle) = &self.throttle else {
            return Ok(Admission::Unthrottled);
        };
        let addr = throttle.client_addr_of(peer);
        let device_cookie = cookie(&throttle.device_cookie_name());
        match throttle.attempt(key, addr, device_cookie.as_deref()).await {
            Ok(attempt) => Ok(Admission::Admitted(attempt)),
            Err(Error::Throttled { retry_after }) => Ok(Admission::Refused(retry_after)),
            Err(err) => Err(err),
        }
    }
}

/// Whether a password may be checked at all.
pub(crate) enum Admission {
    /// No throttle is configured.
    Unthrottled,
    /// The throttle let it through; its outcome is to be reported.
    Admitted(LoginAttempt),
    /// Throttled: answer 429 with `Retry-After`.
    Refused(Duration),
}

impl Admission {
    /// Reports the outcome; a success returns the browser's new device cookie.
    pub(crate) async fn report(self, success: bool) -> Result<Option<Cookie<'static>>> {
        match (self, success) {
            (Admission::Admitted(attempt), true) => attempt.succeeded().await.map(Some),
            (Admission::Admitted(attempt), false) => attempt.failed().await.map(|()| None),
            _ => Ok(None),
        }
    }
}

/// What [`AuthSession::login_with_password`](crate::AuthSession::login_with_password) did.
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
    /// The password was right, and the user has a second factor
    /// ([`PasswordUserLoader::second_factor_required`]): nobody is logged in yet; redirect
    /// (303) to the second step, which calls
    /// [`complete_second_factor`](crate::AuthSession::complete_second_factor) within 5
    /// minutes.
    SecondFactorRequired,
}
