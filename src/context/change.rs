//! Changes of the login state: what [`AuthSession`](crate::AuthSession)'s `login_user`,
//! `logout_user`, `confirm_login` and `update_session_auth_hash` do to the session, the
//! remember-me tokens and the cached state.

use std::sync::Arc;

use super::{discard_session, AuthContext};
use crate::{
    client::RequestFacts,
    config::LoginOptions,
    events::AuthEvent,
    logins::NewLogin,
    record::{digest_of, now, AuthRecord, AuthState, AUTH_KEY},
    remember::{Remember, RememberDevice},
    timeout::timed,
    AuthUser, Error, Result, UserLoader,
};

impl<L: UserLoader> AuthContext<L> {
    /// Logs `user` in on a new session id; `current` is the state the request resolved to.
    pub(crate) async fn login(
        &self,
        user: &L::User,
        options: LoginOptions,
        current: &AuthState<L::User>,
        facts: &RequestFacts,
    ) -> Result<Arc<AuthState<L::User>>> {
        let settings = self.settings();
        if !user.is_active() && !options.force {
            settings.emit(AuthEvent::LoginRefused {
                user_id: user.id().to_string(),
            });
            return Err(Error::InactiveUser);
        }
        let remember = match (options.remember, &self.core.remember) {
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
        let session = self.session()?;
        let limit = settings.store_timeout;
        let other_login = current
            .record
            .as_ref()
            .is_some_and(|record| !record.belongs_to(user));
        if other_login {
            discard_session(limit, session).await?;
        } else {
            // Unconditionally: even with no id (a new visitor, or a session the app flushed
            // itself), the cached record may still hold an id that a response carried.
            timed(limit, "session store", session.cycle_id()).await?;
        }
        // One login per browser: a remember-me token it had belongs to the login replaced.
        self.forget_remember_cookie(facts).await?;
        // The remember-me token is minted first, so that the index entry can name it; it is
        // stored after the entry, and the login itself last (see `LoginIndex`).
        let token = remember
            .map(|r| r.mint(user, options.duration, &facts.user_agent))
            .transpose()?;
        let new_login = NewLogin {
            token: token
                .as_ref()
                .map(|(t, _)| (t.selector.as_str(), t.expires_at)),
            restored: false,
        };
        let login_id = self.index_login(user, new_login, facts).await?;
        if let (Some(remember), Some((token, cookie))) = (remember, token) {
            remember.save(limit, token).await?;
            self.queue_cookie(cookie);
        }
        let mut record = AuthRecord::new(user, options.fresh, Some(facts.protection_id))?;
        record.login_id = login_id;
        timed(limit, "session store", session.insert(AUTH_KEY, &record)).await?;
        timed(limit, "session store", session.save()).await?;
        // The browser's previous login lived in the session just replaced.
        let previous = current.record.as_ref();
        if previous.is_some_and(|p| p.login_id.is_some() && p.login_id != record.login_id) {
            self.unindex_login(previous).await?;
        }
        let state = self
            .replace_state(AuthState::session(user.clone(), record))
            .await;
        settings.emit(AuthEvent::LoggedIn {
            user_id: user.id().to_string(),
            remember: remember.is_some(),
        });
        Ok(state)
    }

    /// Logs out: the auth record and this browser's remember token go, server-side; the
    /// session moves to a new id (`flush`: and loses every other value too).
    pub(crate) async fn logout(
        &self,
        flush: bool,
        current: &AuthState<L::User>,
        facts: &RequestFacts,
    ) -> Result<Arc<AuthState<L::User>>> {
        let session = self.session()?;
        let limit = self.settings().store_timeout;
        self.forget_remember_cookie(facts).await?;
        timed(limit, "session store", session.remove_value(AUTH_KEY)).await?;
        if flush {
            discard_session(limit, session).await?;
        } else {
            // With no other data left, tower-sessions then drops the cookie and saves nothing.
            timed(limit, "session store", session.cycle_id()).await?;
        }
        // The entry goes last: until then the login can still be listed and ended.
        self.unindex_login(current.record.as_ref()).await?;
        let user_id = current.user.as_ref().map(|u| u.id().to_string());
        self.logged_out
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let state = self.replace_state(AuthState::anonymous()).await;
        self.settings().emit(AuthEvent::LoggedOut { user_id });
        Ok(state)
    }

    /// Marks the session login fresh again, for the client that re-entered the password.
    pub(crate) async fn confirm(
        &self,
        current: &AuthState<L::User>,
        facts: &RequestFacts,
    ) -> Result<Arc<AuthState<L::User>>> {
        let (user, mut record) = session_login(current)?;
        record.fresh_at = Some(now());
        record.protection_id = Some(facts.protection_id);
        self.rewrite_record(&user, &mut record, facts).await?;
        let state = self
            .replace_state(AuthState::session(user.clone(), record))
            .await;
        self.settings().emit(AuthEvent::LoginConfirmed {
            user_id: user.id().to_string(),
        });
        Ok(state)
    }

    /// After a credential change: this session keeps the login under a new id and the new
    /// digest; every remember token of the user goes.
    pub(crate) async fn update_auth_hash(
        &self,
        user: &L::User,
        current: &AuthState<L::User>,
        facts: &RequestFacts,
    ) -> Result<Arc<AuthState<L::User>>> {
        let (logged_in, mut record) = session_login(current)?;
        let same_user =
            serde_json::to_value(user.id()).ok() == serde_json::to_value(logged_in.id()).ok();
        if !same_user {
            return Err(Error::Config(
                "update_session_auth_hash was given another user than the logged-in one".to_owned(),
            ));
        }
        record.auth_hash = digest_of(user.session_auth_hash());
        self.rewrite_record(user, &mut record, facts).await?;
        if let Some(remember) = &self.core.remember {
            remember
                .revoke_user(self.settings().store_timeout, user)
                .await?;
            self.queue_cookie(remember.cookie.removal());
        }
        let state = self
            .replace_state(AuthState::session(user.clone(), record))
            .await;
        // The other sessions would end on their next request (their digest is stale); with an
        // index they end now, and leave the list.
        if self.core.logins.is_some() {
            self.end_other_logins(user, &state, facts).await?;
        }
        self.settings().emit(AuthEvent::AuthHashUpdated {
            user_id: user.id().to_string(),
        });
        Ok(state)
    }

    /// The user's remembered browsers, newest use first.
    pub(crate) async fn remember_devices(
        &self,
        user: &L::User,
        facts: &RequestFacts,
    ) -> Result<Vec<RememberDevice>> {
        let limit = self.settings().store_timeout;
        let current = facts.remember_cookie.as_deref();
        self.remember()?.devices(limit, user, current).await
    }

    /// Revokes one remembered browser of `user`; whether it existed.
    pub(crate) async fn revoke_device(&self, user: &L::User, id: &str) -> Result<bool> {
        let limit = self.settings().store_timeout;
        self.remember()?.revoke_device(limit, user, id).await
    }

    /// Revokes every remembered browser of `user`, this one's cookie included.
    pub(crate) async fn revoke_all_devices(&self, user: &L::User) -> Result<u64> {
        let remember = self.remember()?;
        let revoked = remember
            .revoke_user(self.settings().store_timeout, user)
            .await?;
        self.queue_cookie(remember.cookie.removal());
        Ok(revoked)
    }

    fn remember(&self) -> Result<&Remember> {
        self.core.remember.as_ref().ok_or_else(|| {
            Error::Config("remember-me is not enabled on the `LoginManager`".to_owned())
        })
    }

    /// Stores `record` under a new session id and saves (the index entry, if any, following
    /// the id before the session holds the login again).
    async fn rewrite_record(
        &self,
        user: &L::User,
        record: &mut AuthRecord,
        facts: &RequestFacts,
    ) -> Result<()> {
        let session = self.session()?;
        let limit = self.settings().store_timeout;
        timed(limit, "session store", session.cycle_id()).await?;
        self.index_new_session_id(user, record, facts).await?;
        timed(limit, "session store", session.insert(AUTH_KEY, &*record)).await?;
        timed(limit, "session store", session.save()).await
    }

    async fn replace_state(&self, state: AuthState<L::User>) -> Arc<AuthState<L::User>> {
        let state = Arc::new(state);
        self.set_state(Arc::clone(&state)).await;
        state
    }
}

/// The user and auth record of a session login (not a request-loader one).
fn session_login<U: Clone>(state: &AuthState<U>) -> Result<(U, AuthRecord)> {
    match (&state.user, &state.record) {
        (Some(user), Some(record)) => Ok((user.clone(), record.clone())),
        _ => Err(Error::NotAuthenticated),
    }
}
