//! [`AuthSession`]: who is logged in, and `login_user` / `logout_user`.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::request::Parts;
use tower_sessions::Session;

use crate::{
    client::{PeerInfo, RequestFacts},
    context::{AuthContext, DynAuthHandle},
    login::{Admission, LoginOutcome, PasswordUserLoader},
    logins::LiveLogin,
    password::PasswordHasher,
    record::{auth_hash_digest, digest_matches, now, user_id_value, AuthState},
    redirect::next_from_query,
    remember::RememberDevice,
    second_factor::{Pending, SecondFactor, PENDING_KEY, PENDING_SECONDS},
    timeout::{loader_call, timed},
    AuthUser, Error, LoginOptions, Result, UserLoader,
};

/// The login state of a request, and the handle to change it.
///
/// Extracting it resolves the current user (once per request, shared with the guards).
///
/// ```
/// # use login_manager::{AuthUser, UserLoader};
/// # #[derive(Clone)] struct User { name: String }
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
/// # #[derive(Clone)] struct Users;
/// # impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
/// #   async fn load_user(&self, _: &u32) -> Result<Option<User>, Self::Error> { Ok(None) } }
/// use axum::response::Redirect;
/// use login_manager::AuthSession;
///
/// async fn home(auth: AuthSession<Users>) -> String {
///     match auth.user() {
///         Some(user) => format!("Signed in as {}", user.name),
///         None => "Hello, stranger".to_owned(),
///     }
/// }
///
/// async fn logout(mut auth: AuthSession<Users>) -> login_manager::Result<Redirect> {
///     auth.logout_user().await?;
///     Ok(Redirect::to("/"))
/// }
/// ```
pub struct AuthSession<L: UserLoader> {
    context: Arc<AuthContext<L>>,
    facts: Arc<RequestFacts>,
    state: Arc<AuthState<L::User>>,
}

impl<L: UserLoader> std::fmt::Debug for AuthSession<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("user_id", &self.state.user.as_ref().map(|u| u.id()))
            .field("source", &self.state.source)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, L: UserLoader> FromRequestParts<S> for AuthSession<L> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(DynAuthHandle(handle)) = parts.extensions.get::<DynAuthHandle>().cloned() else {
            return Err(Error::MissingLoginManagerLayer.into_response());
        };
        let context = handle
            .into_any()
            .downcast::<AuthContext<L>>()
            .map_err(|_| {
                Error::Config(format!(
                    "`AuthSession<{}>` does not match the loader type of the `LoginManagerLayer`",
                    std::any::type_name::<L>()
                ))
                .into_response()
            })?;
        let state = context
            .resolve(parts)
            .await
            .map_err(IntoResponse::into_response)?;
        let facts = context.facts(parts).clone();
        Ok(Self {
            context,
            facts,
            state,
        })
    }
}

impl<L: UserLoader> AuthSession<L> {
    /// The logged-in user (Flask-Login's `current_user`), if any.
    pub fn user(&self) -> Option<&L::User> {
        self.state.user.as_ref()
    }

    /// Whether a user is logged in.
    pub fn is_authenticated(&self) -> bool {
        self.state.user.is_some()
    }

    /// Whether the login is fresh: the password was checked in this session (not restored from
    /// a remember-me cookie, not marked stale by session protection, not older than
    /// [`fresh_max_age`](crate::LoginManager::fresh_max_age)).
    pub fn is_fresh(&self) -> bool {
        self.state.is_fresh(self.context.settings().fresh_max_age)
    }

    /// Whether this session was restored from a remember-me cookie.
    pub fn is_remembered(&self) -> bool {
        self.state.record.as_ref().is_some_and(|r| r.remembered)
    }

    /// The user loader, for looking users up in a login handler.
    pub fn loader(&self) -> &L {
        &self.context.core.loader
    }

    /// The manager's password hasher (for sign-up and password changes): the one
    /// [`login_with_password`](Self::login_with_password) verifies with, sharing its bound on
    /// concurrent hashes.
    pub fn password_hasher(&self) -> &PasswordHasher {
        &self.context.core.passwords.hasher
    }

    /// The request's peer address and `X-Forwarded-For`, for throttling by client address.
    fn peer_info(&self) -> &PeerInfo {
        &self.facts.peer
    }

    /// The value of this request's cookie called `name`.
    pub(crate) fn request_cookie(&self, name: &str) -> Option<String> {
        self.facts.cookie(name)
    }

    /// Sets `cookie` on the response.
    pub(crate) fn queue_cookie(&self, cookie: cookie::Cookie<'static>) {
        self.context.queue_cookie(cookie);
    }

    pub(crate) fn store_timeout(&self) -> std::time::Duration {
        self.context.settings().store_timeout
    }

    /// The underlying tower-sessions session (for flash messages and other data).
    pub fn session(&self) -> Result<&Session> {
        self.context.session()
    }

    /// The validated `next` of this request's query string, else `default` (a `next` form
    /// field is checked with [`safe_next`](crate::safe_next)).
    pub fn next_or(&self, default: &str) -> String {
        next_from_query(self.facts.query.as_deref()).unwrap_or_else(|| default.to_owned())
    }

    /// Logs `user` in (Flask-Login's `login_user`): a fresh login, not remembered, refusing
    /// inactive users. [`login_user_with`](Self::login_user_with) takes [`LoginOptions`].
    ///
    /// Always gives the session a new id (no session fixation). When the session belonged to
    /// another user, or to this user under an older `session_auth_hash`, its data is flushed
    /// first. Inactive users are refused with [`Error::InactiveUser`]. The session is saved
    /// before returning, so a store failure is an error here rather than a lost login.
    pub async fn login_user(&mut self, user: &L::User) -> Result<()> {
        self.login_user_with(user, LoginOptions::new()).await
    }

    /// [`login_user`](Self::login_user) with options: remember-me, its duration, logging in
    /// an inactive user ([`LoginOptions::force`]), a login that is not fresh.
    #[tracing::instrument(name = "login_user", skip_all, fields(user_id = %user.id()))]
    pub async fn login_user_with(&mut self, user: &L::User, options: LoginOptions) -> Result<()> {
        self.state = self
            .context
            .login(user, options, &self.state, &self.facts)
            .await?;
        Ok(())
    }

    /// Logs the user out (Flask-Login's `logout_user`): removes the auth record server-side,
    /// gives the session a new id (the old one is dead), deletes this browser's remember-me
    /// token server-side and expires its cookie — even when the app already cleared the
    /// session. Other session data (a cart, a flash message) is kept; see
    /// [`logout_user_and_flush`](Self::logout_user_and_flush).
    #[tracing::instrument(name = "logout_user", skip_all)]
    pub async fn logout_user(&mut self) -> Result<()> {
        self.state = self.context.logout(false, &self.state, &self.facts).await?;
        Ok(())
    }

    /// Like [`logout_user`](Self::logout_user), and also deletes every other value in the
    /// session.
    #[tracing::instrument(name = "logout_user", skip_all)]
    pub async fn logout_user_and_flush(&mut self) -> Result<()> {
        self.state = self.context.logout(true, &self.state, &self.facts).await?;
        Ok(())
    }

    /// Marks the login fresh again after the app re-checked the password (Flask-Login's
    /// `confirm_login`), with a new session id.
    #[tracing::instrument(name = "confirm_login", skip_all)]
    pub async fn confirm_login(&mut self) -> Result<()> {
        self.state = self.context.confirm(&self.state, &self.facts).await?;
        Ok(())
    }

    /// After a credential change of the logged-in user (pass the updated user): this session
    /// stays logged in with a new id, every other session of the user ends on its next
    /// request, and every remember-me token of the user is revoked.
    #[tracing::instrument(name = "update_session_auth_hash", skip_all, fields(user_id = %user.id()))]
    pub async fn update_session_auth_hash(&mut self, user: &L::User) -> Result<()> {
        self.state = self
            .context
            .update_auth_hash(user, &self.state, &self.facts)
            .await?;
        Ok(())
    }

    /// The user's remembered browsers, newest use first.
    pub async fn remember_devices(&self) -> Result<Vec<RememberDevice>> {
        let user = self.logged_in()?;
        self.context.remember_devices(user, &self.facts).await
    }

    /// Revokes one remembered browser of the logged-in user; whether it existed.
    pub async fn revoke_device(&self, id: &str) -> Result<bool> {
        self.context.revoke_device(self.logged_in()?, id).await
    }

    /// Revokes every remembered browser of the logged-in user (including this one's cookie);
    /// returns how many.
    pub async fn revoke_all_devices(&self) -> Result<u64> {
        self.context.revoke_all_devices(self.logged_in()?).await
    }

    /// Every live login of the logged-in user — signed-in sessions and remembered browsers, on
    /// any instance — this one first and marked [`current`](LiveLogin::current), the others
    /// by last use. Needs a [`LoginIndex`](crate::LoginIndex) on the manager.
    ///
    /// ```
    /// # use login_manager::{AuthUser, UserLoader};
    /// # #[derive(Clone)] struct User;
    /// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
    /// # #[derive(Clone)] struct Users;
    /// # impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
    /// #   async fn load_user(&self, _: &u32) -> Result<Option<User>, Self::Error> { Ok(None) } }
    /// use login_manager::AuthSession;
    ///
    /// async fn devices(auth: AuthSession<Users>) -> login_manager::Result<String> {
    ///     let mut page = String::new();
    ///     for login in auth.logins().await? {
    ///         let marker = if login.current { " (this device)" } else { "" };
    ///         page += &format!("{} on {}{marker}\n", login.browser, login.system);
    ///     }
    ///     Ok(page)
    /// }
    /// ```
    pub async fn logins(&self) -> Result<Vec<LiveLogin>> {
        let user = self.logged_in()?;
        self.context.logins(user, &self.state).await
    }

    /// Ends one login of the logged-in user by its [`LiveLogin::id`]: its session and
    /// remember-me token are deleted, so its next request, on any instance, is anonymous.
    /// Ending the current login is a [`logout_user`](Self::logout_user). Returns whether the
    /// login existed (an id of another user's login is not found).
    #[tracing::instrument(name = "end_login", skip_all)]
    pub async fn end_login(&mut self, id: &str) -> Result<bool> {
        let user = self.logged_in()?.clone();
        let current = self
            .state
            .record
            .as_ref()
            .and_then(|r| r.login_id.as_deref());
        if current == Some(id) {
            self.logout_user().await?;
            return Ok(true);
        }
        self.context.end_login_by_id(&user, &self.facts, id).await
    }

    /// "Log out everywhere else": ends every other login of the logged-in user and revokes
    /// every remember-me token but this browser's; this session keeps working, with its id.
    /// Returns how many logins were ended.
    #[tracing::instrument(name = "end_other_logins", skip_all)]
    pub async fn end_other_logins(&self) -> Result<u64> {
        let user = self.logged_in()?;
        self.context
            .end_other_logins(user, &self.state, &self.facts)
            .await
    }

    fn logged_in(&self) -> Result<&L::User> {
        self.user().ok_or(Error::NotAuthenticated)
    }
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
        username: &str,
        password: &str,
        options: LoginOptions,
    ) -> Result<LoginOutcome> {
        let login = &self.context.core.passwords;
        let admission = login
            .admit(username, self.peer_info(), |name| self.request_cookie(name))
            .await?;
        if let Admission::Refused(retry_after) = admission {
            return Ok(LoginOutcome::Throttled { retry_after });
        }
        let limit = self.store_timeout();
        let loader = self.loader().clone();
        let user = loader_call(limit, loader.load_user_by_username(username)).await?;
        let stored = user.as_ref().and_then(|u| loader.password_hash(u));
        let verified = login.hasher.verify_user(password, stored).await?;
        let user = user.filter(|u| verified.valid && u.is_active());
        let Some(user) = user else {
            admission.report(false).await?;
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
        if loader.second_factor_required(&user) {
            // Not a success yet: the throttle hears of it after the second step, so that a
            // right password cannot reset the count of wrong codes.
            drop(admission);
            let pending = Pending {
                user_id: user_id_value(&user)?,
                auth_hash: auth_hash_digest(user.session_auth_hash()),
                remember: options.remember,
                duration_secs: options.duration.map(|d| d.as_secs()),
                at: now(),
            };
            let session = self.session()?;
            timed(
                limit,
                "session store",
                session.insert(PENDING_KEY, &pending),
            )
            .await?;
            return Ok(LoginOutcome::SecondFactorRequired);
        }
        let device_cookie = admission.report(true).await?;
        self.login_user_with(&user, options).await?;
        if let Some(cookie) = device_cookie {
            self.queue_cookie(cookie);
        }
        Ok(LoginOutcome::LoggedIn)
    }

    /// Whether this browser gave the right password and the login waits for its second
    /// factor (for the second step's page: without it, send the browser to the login form).
    pub async fn second_factor_pending(&self) -> Result<bool> {
        Ok(self.pending().await?.is_some())
    }

    /// The second step of a login ([`LoginOutcome::SecondFactorRequired`]): when `factor`
    /// accepts `code` for the user who gave the right password in this browser (within 5
    /// minutes, under the same auth hash), logs them in with the options of the first step,
    /// on a new session id. Wrong codes count in the login throttle under the user's
    /// [`login_name`](PasswordUserLoader::login_name) like wrong passwords (and only a
    /// complete login resets the count); [`LoginOutcome::Throttled`] past the limit.
    /// Without a pending login: [`LoginOutcome::InvalidCredentials`] (see
    /// [`second_factor_pending`](Self::second_factor_pending)).
    #[tracing::instrument(name = "complete_second_factor", skip_all)]
    pub async fn complete_second_factor<F: SecondFactor<L::User>>(
        &mut self,
        factor: &F,
        code: &str,
    ) -> Result<LoginOutcome> {
        let Some(pending) = self.pending().await? else {
            return Ok(LoginOutcome::InvalidCredentials);
        };
        let limit = self.store_timeout();
        let user = match serde_json::from_value(pending.user_id.clone()) {
            Ok(id) => loader_call(limit, self.loader().load_user(&id)).await?,
            Err(_) => None,
        };
        let Some(user) = user
            .filter(|u| u.is_active() && digest_matches(&pending.auth_hash, u.session_auth_hash()))
        else {
            // The password changed (or the account went) since the first step.
            self.forget_pending().await?;
            return Ok(LoginOutcome::InvalidCredentials);
        };
        let device_cookie = match self.check_second_factor(&user, factor, code).await? {
            FactorCheck::Passed(cookie) => cookie,
            FactorCheck::Refused(outcome) => return Ok(outcome),
        };
        self.forget_pending().await?;
        let mut options = LoginOptions::new().remember(pending.remember);
        if let Some(secs) = pending.duration_secs {
            options = options.duration(std::time::Duration::from_secs(secs));
        }
        self.login_user_with(&user, options).await?;
        if let Some(cookie) = device_cookie {
            self.queue_cookie(cookie);
        }
        Ok(LoginOutcome::LoggedIn)
    }

    /// Step-up with the second factor: when `factor` accepts `code` for the logged-in user,
    /// marks the login fresh ([`confirm_login`](Self::confirm_login)), for pages behind
    /// [`FreshLoginRequired`](crate::FreshLoginRequired) that want more than a password.
    /// Throttled like [`reauthenticate_with_password`](Self::reauthenticate_with_password).
    #[tracing::instrument(name = "reauthenticate_with_second_factor", skip_all)]
    pub async fn reauthenticate_with_second_factor<F: SecondFactor<L::User>>(
        &mut self,
        factor: &F,
        code: &str,
    ) -> Result<LoginOutcome> {
        let user = self.user().cloned().ok_or(Error::NotAuthenticated)?;
        let device_cookie = match self.check_second_factor(&user, factor, code).await? {
            FactorCheck::Passed(cookie) => cookie,
            FactorCheck::Refused(outcome) => return Ok(outcome),
        };
        self.confirm_login().await?;
        if let Some(cookie) = device_cookie {
            self.queue_cookie(cookie);
        }
        Ok(LoginOutcome::LoggedIn)
    }

    /// "Confirm your password" for a logged-in user (the refresh view): when `password` is
    /// the user's, marks the login fresh with [`confirm_login`](Self::confirm_login).
    /// Failures count in the throttle — under the user's
    /// [`login_name`](PasswordUserLoader::login_name), else under `id:<user id>` — so a stolen
    /// remember-me cookie does not get unlimited guesses at the password, and the browser's
    /// device cookie for the account keeps its owner out of locks others caused.
    pub async fn reauthenticate_with_password(&mut self, password: &str) -> Result<LoginOutcome> {
        let user = self.user().cloned().ok_or(Error::NotAuthenticated)?;
        let login = &self.context.core.passwords;
        let admission = login
            .admit(&self.throttle_key(&user), self.peer_info(), |name| {
                self.request_cookie(name)
            })
            .await?;
        if let Admission::Refused(retry_after) = admission {
            return Ok(LoginOutcome::Throttled { retry_after });
        }
        let stored = self.loader().password_hash(&user);
        let valid = login.hasher.verify_user(password, stored).await?.valid;
        let device_cookie = admission.report(valid).await?;
        if !valid {
            return Ok(LoginOutcome::InvalidCredentials);
        }
        self.confirm_login().await?;
        if let Some(cookie) = device_cookie {
            self.queue_cookie(cookie);
        }
        Ok(LoginOutcome::LoggedIn)
    }

    /// The throttle key of a logged-in user's checks (re-authentication, second factor): the
    /// login form's key when the loader knows the login name, else `id:<user id>`.
    fn throttle_key(&self, user: &L::User) -> String {
        match self.loader().login_name(user) {
            Some(name) => name.to_owned(),
            None => format!("id:{}", user.id()),
        }
    }

    /// The throttle's admission, then `factor`'s verdict, reported to the throttle.
    async fn check_second_factor<F: SecondFactor<L::User>>(
        &self,
        user: &L::User,
        factor: &F,
        code: &str,
    ) -> Result<FactorCheck> {
        let login = &self.context.core.passwords;
        let admission = login
            .admit(&self.throttle_key(user), self.peer_info(), |name| {
                self.request_cookie(name)
            })
            .await?;
        if let Admission::Refused(retry_after) = admission {
            return Ok(FactorCheck::Refused(LoginOutcome::Throttled {
                retry_after,
            }));
        }
        let valid = factor.verify(user, code).await?;
        let device_cookie = admission.report(valid).await?;
        Ok(match valid {
            true => FactorCheck::Passed(device_cookie),
            false => FactorCheck::Refused(LoginOutcome::InvalidCredentials),
        })
    }

    /// The login waiting for its second factor in this browser, unless it is too old.
    async fn pending(&self) -> Result<Option<Pending>> {
        let limit = self.store_timeout();
        let session = self.session()?;
        let pending: Option<Pending> =
            timed(limit, "session store", session.get(PENDING_KEY)).await?;
        Ok(pending.filter(|p| now().saturating_sub(p.at) <= PENDING_SECONDS))
    }

    async fn forget_pending(&self) -> Result<()> {
        let limit = self.store_timeout();
        let session = self.session()?;
        timed(limit, "session store", session.remove_value(PENDING_KEY)).await?;
        Ok(())
    }
}

/// A second factor's verdict, after the throttle.
enum FactorCheck {
    /// Accepted: the browser's new device cookie, if the throttle gives one.
    Passed(Option<cookie::Cookie<'static>>),
    /// Refused: what to answer.
    Refused(LoginOutcome),
}
