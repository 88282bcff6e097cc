//! [`AuthSession`]: who is logged in, and `login_user` / `logout_user`.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::request::Parts;
use tower_sessions::Session;

use crate::{
    context::{
        discard_session, timed, AuthContext, AuthRecord, AuthState, DynAuthHandle, RequestInfo,
        Source, AUTH_KEY,
    },
    events::AuthEvent,
    redirect::next_from_query,
    remember::{Remember, RememberDevice},
    throttle::PeerInfo,
    AuthUser, Duration, Error, Result, UserLoader,
};

/// How [`AuthSession::login_user`] logs a user in (Flask-Login's `login_user` arguments).
///
/// ```
/// use login_manager::{Duration, LoginOptions};
///
/// let options = LoginOptions::new().remember(true).duration(Duration::days(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginOptions {
    remember: bool,
    duration: Option<Duration>,
    force: bool,
    fresh: bool,
}

impl Default for LoginOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginOptions {
    /// A fresh login, not remembered, refusing inactive users.
    pub fn new() -> Self {
        Self {
            remember: false,
            duration: None,
            force: false,
            fresh: true,
        }
    }

    /// Also set a remember-me cookie (needs [`LoginManager::remember`](crate::LoginManager::remember)).
    pub fn remember(mut self, remember: bool) -> Self {
        self.remember = remember;
        self
    }

    /// How long this login's remember-me token lives, instead of the configured duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Log the user in even when `is_active()` is false.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Whether the login counts as fresh (default `true`: the password was just checked).
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }
}

/// The login state of a request, and the handle to change it.
///
/// Extracting it resolves the current user (once per request, shared with the guards).
///
/// ```
/// # use login_manager::{AuthUser, UserLoader, async_trait};
/// # #[derive(Clone)] struct User { name: String }
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
/// # #[derive(Clone)] struct Users;
/// # #[async_trait] impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
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
    info: Arc<RequestInfo>,
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
        let info = context.request(parts).clone();
        Ok(Self {
            context,
            info,
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
        self.state.is_fresh(self.context.manager.fresh_max_age)
    }

    /// Whether this session was restored from a remember-me cookie.
    pub fn is_remembered(&self) -> bool {
        self.state.record.as_ref().is_some_and(|r| r.remembered)
    }

    /// The user loader, for looking users up in a login handler.
    pub fn loader(&self) -> &L {
        &self.context.manager.loader
    }

    /// The request's peer address and `X-Forwarded-For`, for throttling by client address.
    pub fn peer_info(&self) -> &PeerInfo {
        &self.info.peer
    }

    /// The value of this request's cookie called `name`.
    pub(crate) fn request_cookie(&self, name: &str) -> Option<String> {
        self.info.cookie(name)
    }

    /// Sets `cookie` on the response.
    pub(crate) fn queue_cookie(&self, cookie: cookie::Cookie<'static>) {
        self.context.queue_cookie(cookie);
    }

    pub(crate) fn store_timeout(&self) -> std::time::Duration {
        self.context.manager.timeout
    }

    /// The underlying tower-sessions session (for flash messages and other data).
    pub fn session(&self) -> Result<&Session> {
        self.context.session()
    }

    /// The validated `next` of this request's query string, else `default` (see
    /// [`safe_next`](crate::safe_next); a form field can be checked with
    /// [`safe_next_or`](crate::safe_next_or)).
    pub fn next_or(&self, default: &str) -> String {
        next_from_query(self.info.query.as_deref()).unwrap_or_else(|| default.to_owned())
    }

    /// Logs `user` in (Flask-Login's `login_user`).
    ///
    /// Always gives the session a new id (no session fixation). When the session belonged to
    /// another user, or to this user under an older `session_auth_hash`, its data is flushed
    /// first. Inactive users are refused with [`Error::InactiveUser`] unless
    /// [`LoginOptions::force`] is set. The session is saved before returning, so a store
    /// failure is an error here rather than a lost login.
    #[tracing::instrument(name = "login_user", skip_all, fields(user_id = %user.id()))]
    pub async fn login_user(&mut self, user: &L::User, options: LoginOptions) -> Result<()> {
        let context = self.context.clone();
        let manager = &context.manager;
        if !user.is_active() && !options.force {
            manager.emit(AuthEvent::LoginRefused {
                user_id: user.id().to_string(),
            });
            return Err(Error::InactiveUser);
        }
        let remember = match (options.remember, &manager.remember) {
            (false, _) => None,
            (true, Some(remember)) => Some(remember),
            (true, None) => {
                return Err(Error::Config(
                    "remember-me is not enabled: add `.remember(Remember::new(store))` to the \
                     `LoginManager`"
                        .to_owned(),
                ))
            }
        };
        let session = self.context.session()?;
        let limit = manager.timeout;
        let other_login = self
            .state
            .record
            .as_ref()
            .is_some_and(|record| !record.belongs_to(user));
        if other_login {
            discard_session(limit, session).await?;
            if let Some(remember) = &manager.remember {
                remember.forget_cookie(&self.context, &self.info).await?;
            }
        } else {
            // Unconditionally: even with no id (a new visitor, or a session the app flushed
            // itself), the cached record may still hold an id that a response carried.
            timed(limit, "session store", session.cycle_id()).await?;
        }
        let record = AuthRecord::new(user, options.fresh, self.info.protection_id.clone())?;
        timed(limit, "session store", session.insert(AUTH_KEY, &record)).await?;
        if let Some(remember) = remember {
            // One token per browser: the one this browser had is replaced.
            remember.forget_cookie(&self.context, &self.info).await?;
            let cookie = remember
                .issue(limit, user, options.duration, &self.info.user_agent)
                .await?;
            self.context.queue_cookie(cookie);
        }
        timed(limit, "session store", session.save()).await?;
        self.set_state(AuthState {
            user: Some(user.clone()),
            record: Some(record),
            source: Source::Session,
        })
        .await;
        manager.emit(AuthEvent::LoggedIn {
            user_id: user.id().to_string(),
            remember: remember.is_some(),
        });
        Ok(())
    }

    /// Logs the user out (Flask-Login's `logout_user`): removes the auth record server-side,
    /// gives the session a new id (the old one is dead), deletes this browser's remember-me
    /// token server-side and expires its cookie — even when the app already cleared the
    /// session. Other session data (a cart, a flash message) is kept; see
    /// [`logout_user_and_flush`](Self::logout_user_and_flush).
    #[tracing::instrument(name = "logout_user", skip_all)]
    pub async fn logout_user(&mut self) -> Result<()> {
        self.logout(false).await
    }

    /// Like [`logout_user`](Self::logout_user), and also deletes every other value in the
    /// session.
    #[tracing::instrument(name = "logout_user", skip_all)]
    pub async fn logout_user_and_flush(&mut self) -> Result<()> {
        self.logout(true).await
    }

    async fn logout(&mut self, flush: bool) -> Result<()> {
        let context = self.context.clone();
        let manager = &context.manager;
        let session = self.context.session()?;
        let limit = manager.timeout;
        if let Some(remember) = &manager.remember {
            remember.forget_cookie(&self.context, &self.info).await?;
        }
        timed(limit, "session store", session.remove_value(AUTH_KEY)).await?;
        if flush {
            discard_session(limit, session).await?;
        } else {
            // With no other data left, tower-sessions then drops the cookie and saves nothing.
            timed(limit, "session store", session.cycle_id()).await?;
        }
        let user_id = self.state.user.as_ref().map(|u| u.id().to_string());
        self.context.mark_logged_out();
        self.set_state(AuthState::anonymous()).await;
        manager.emit(AuthEvent::LoggedOut { user_id });
        Ok(())
    }

    /// Marks the login fresh again after the app re-checked the password (Flask-Login's
    /// `confirm_login`), with a new session id.
    #[tracing::instrument(name = "confirm_login", skip_all)]
    pub async fn confirm_login(&mut self) -> Result<()> {
        let (user, mut record) = self.session_login()?;
        record.fresh_at = Some(crate::context::now());
        // The password was just re-entered on this client: it becomes the protected one.
        record.protection_id = Some(self.info.protection_id.clone());
        self.rewrite_record(&record).await?;
        self.set_state(AuthState {
            user: Some(user.clone()),
            record: Some(record),
            source: Source::Session,
        })
        .await;
        self.context.manager.emit(AuthEvent::LoginConfirmed {
            user_id: user.id().to_string(),
        });
        Ok(())
    }

    /// After a credential change of the logged-in user (pass the updated user): this session
    /// stays logged in with a new id, every other session of the user ends on its next
    /// request, and every remember-me token of the user is revoked.
    #[tracing::instrument(name = "update_session_auth_hash", skip_all, fields(user_id = %user.id()))]
    pub async fn update_session_auth_hash(&mut self, user: &L::User) -> Result<()> {
        let (current, mut record) = self.session_login()?;
        let same_user =
            serde_json::to_value(user.id()).ok() == serde_json::to_value(current.id()).ok();
        if !same_user {
            return Err(Error::Config(
                "update_session_auth_hash was given another user than the logged-in one".to_owned(),
            ));
        }
        record.auth_hash = crate::context::auth_hash_digest(user.session_auth_hash());
        self.rewrite_record(&record).await?;
        let context = self.context.clone();
        let manager = &context.manager;
        if let Some(remember) = &manager.remember {
            remember.revoke_user(manager.timeout, user).await?;
            self.context.queue_cookie(remember.cookie.removal());
        }
        self.set_state(AuthState {
            user: Some(user.clone()),
            record: Some(record),
            source: Source::Session,
        })
        .await;
        manager.emit(AuthEvent::AuthHashUpdated {
            user_id: user.id().to_string(),
        });
        Ok(())
    }

    /// The user's remembered browsers, newest use first.
    pub async fn remember_devices(&self) -> Result<Vec<RememberDevice>> {
        let (remember, user) = self.remember_and_user()?;
        remember
            .devices(self.context.manager.timeout, user, &self.info)
            .await
    }

    /// Revokes one remembered browser of the logged-in user; whether it existed.
    pub async fn revoke_device(&self, id: &str) -> Result<bool> {
        let (remember, user) = self.remember_and_user()?;
        remember
            .revoke_device(self.context.manager.timeout, user, id)
            .await
    }

    /// Revokes every remembered browser of the logged-in user (including this one's cookie);
    /// returns how many.
    pub async fn revoke_all_devices(&self) -> Result<u64> {
        let (remember, user) = self.remember_and_user()?;
        let revoked = remember
            .revoke_user(self.context.manager.timeout, user)
            .await?;
        self.context.queue_cookie(remember.cookie.removal());
        Ok(revoked)
    }

    fn remember_and_user(&self) -> Result<(&Remember, &L::User)> {
        let remember = self.context.manager.remember.as_ref().ok_or_else(|| {
            Error::Config("remember-me is not enabled on the `LoginManager`".to_owned())
        })?;
        let user = self.user().ok_or(Error::NotAuthenticated)?;
        Ok((remember, user))
    }

    /// The user and auth record of a session login (not a request-loader one).
    fn session_login(&self) -> Result<(L::User, AuthRecord)> {
        match (&self.state.user, &self.state.record) {
            (Some(user), Some(record)) => Ok((user.clone(), record.clone())),
            _ => Err(Error::NotAuthenticated),
        }
    }

    /// Stores `record` under a new session id and saves.
    async fn rewrite_record(&self, record: &AuthRecord) -> Result<()> {
        let session = self.context.session()?;
        let limit = self.context.manager.timeout;
        timed(limit, "session store", session.cycle_id()).await?;
        timed(limit, "session store", session.insert(AUTH_KEY, record)).await?;
        timed(limit, "session store", session.save()).await
    }

    async fn set_state(&mut self, state: AuthState<L::User>) {
        let state = Arc::new(state);
        self.context.set_state(Arc::clone(&state)).await;
        self.state = state;
    }
}
