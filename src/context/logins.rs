//! The login index on the request path: the entry a login, a restore or a session-id rotation
//! writes (before the session holds the login), the "last used" refresh, the check of cookie
//! sessions, and the user's own list of logins.

use time::OffsetDateTime;
use tower_sessions::Session;

use super::{discard_session, AuthContext};
use crate::{
    client::RequestFacts,
    events::AuthEvent,
    logins::{
        expiry, new_login_id, not_enabled, stored_user_agent, Keep, LiveLogin, LoginIndex,
        LoginTouch, NewLogin, StoredLogin,
    },
    record::{AuthRecord, AuthState, AUTH_KEY},
    remember::{device_id, user_key, Remember},
    timeout::timed,
    AuthUser, Error, Result, UserLoader,
};

impl<L: UserLoader> AuthContext<L> {
    /// With a login index: gives the session its new id while it does not hold the login yet,
    /// and writes the index entry naming that id; only then may the caller store the login in
    /// the session. Returns the login id for the auth record (`None` without an index).
    pub(super) async fn index_login(
        &self,
        user: &L::User,
        login: NewLogin<'_>,
        facts: &RequestFacts,
    ) -> Result<Option<String>> {
        let Some(index) = &self.core.logins else {
            return Ok(None);
        };
        let session_id = self.reserve_session_id(self.session()?).await?;
        let now = OffsetDateTime::now_utc();
        let settings = self.settings();
        // A remembered browser's id follows from its token: every session it restores
        // replaces the same entry.
        let id = login
            .token
            .map_or_else(new_login_id, |(selector, _)| device_id(selector));
        let entry = StoredLogin {
            id,
            user_id: user_key(user)?,
            session_id: Some(session_id),
            remember_selector: login.token.map(|(selector, _)| selector.to_owned()),
            created_at: now,
            last_used_at: now,
            expires_at: expiry(
                now,
                now,
                settings.idle_timeout,
                settings.absolute_timeout,
                login.token.map(|(_, until)| until),
            ),
            user_agent: stored_user_agent(&facts.user_agent),
            remembered: login.restored,
        };
        let limit = settings.store_timeout;
        let removed = index.put(limit, entry.clone()).await?;
        let keep = Keep {
            session: entry.session_id.as_deref(),
            selector: entry.remember_selector.as_deref(),
        };
        let remember = self.core.remember.as_ref();
        index.end_removed(limit, remember, &removed, keep).await?;
        for gone in removed.iter().filter(|gone| gone.id != entry.id) {
            settings.emit(AuthEvent::LoginEnded {
                user_id: user.id().to_string(),
                login_id: gone.id.clone(),
            });
        }
        Ok(Some(entry.id))
    }

    /// With a login index: after `cycle_id`, points the login's entry at the session's new id
    /// before the session holds the login again (`confirm_login`, a credential change). A
    /// login without an entry (from before the index) gets one. Fails with
    /// [`Error::NotAuthenticated`] when the entry was ended meanwhile: so is the login.
    pub(super) async fn index_new_session_id(
        &self,
        user: &L::User,
        record: &mut AuthRecord,
        facts: &RequestFacts,
    ) -> Result<()> {
        let Some(index) = &self.core.logins else {
            return Ok(());
        };
        let Some(login_id) = record.login_id.clone() else {
            let login = NewLogin {
                token: None,
                restored: false,
            };
            record.login_id = self.index_login(user, login, facts).await?;
            return Ok(());
        };
        let session = self.session()?;
        let session_id = self.reserve_session_id(session).await?;
        let limit = self.settings().store_timeout;
        let touch = self.touch_now(record, Some(session_id));
        let user_id = user_key(user)?;
        if !index.touch(limit, &user_id, &login_id, touch).await? {
            discard_session(limit, session).await?;
            return Err(Error::NotAuthenticated);
        }
        Ok(())
    }

    /// On a request whose `last_seen` is due anyway: the entry's "last used" too. `false`
    /// when the entry is gone, which ends the login (it could no longer be listed or ended).
    pub(super) async fn touch_login(&self, record: &AuthRecord) -> Result<bool> {
        let (Some(index), Some(login_id)) = (&self.core.logins, &record.login_id) else {
            return Ok(true);
        };
        let limit = self.settings().store_timeout;
        let touch = self.touch_now(record, None);
        let user_id = record.user_id.to_string();
        index.touch(limit, &user_id, login_id, touch).await
    }

    /// Cookie sessions, which no server can delete, are checked against the index on every
    /// request: `false` when the login has no live entry. Always `true` for sessions in a
    /// store (ending those deletes them).
    pub(super) async fn login_is_listed(&self, record: &AuthRecord) -> Result<bool> {
        let Some(index) = self
            .core
            .logins
            .as_ref()
            .filter(|i| i.checks_every_request())
        else {
            return Ok(true);
        };
        let Some(login_id) = &record.login_id else {
            return Ok(false);
        };
        let limit = self.settings().store_timeout;
        let user_id = record.user_id.to_string();
        Ok(index.get(limit, &user_id, login_id).await?.is_some())
    }

    /// Deletes this login's entry (a logout, after the session and token are gone).
    pub(super) async fn unindex_login(&self, record: Option<&AuthRecord>) -> Result<()> {
        let (Some(index), Some(record)) = (&self.core.logins, record) else {
            return Ok(());
        };
        if let Some(login_id) = &record.login_id {
            let limit = self.settings().store_timeout;
            index
                .delete(limit, &record.user_id.to_string(), login_id)
                .await?;
        }
        Ok(())
    }

    /// The user's live logins, this one marked, this one first and then by last use.
    pub(crate) async fn logins(
        &self,
        user: &L::User,
        state: &AuthState<L::User>,
    ) -> Result<Vec<LiveLogin>> {
        let index = self.index()?;
        let limit = self.settings().store_timeout;
        let current = state.record.as_ref().and_then(|r| r.login_id.as_deref());
        let stored = index.list(limit, &user_key(user)?).await?;
        let mut logins: Vec<LiveLogin> = stored
            .into_iter()
            .map(|login| LiveLogin::new(login, current))
            .collect();
        logins.sort_by_key(|l| (!l.current, std::cmp::Reverse(l.last_used_at)));
        Ok(logins)
    }

    /// Ends another login of `user` by its id; whether it existed.
    pub(crate) async fn end_login_by_id(
        &self,
        user: &L::User,
        facts: &RequestFacts,
        id: &str,
    ) -> Result<bool> {
        let index = self.index()?;
        let limit = self.settings().store_timeout;
        let Some(login) = index.get(limit, &user_key(user)?, id).await? else {
            return Ok(false);
        };
        self.end_indexed(index, user, facts, &[login]).await?;
        Ok(true)
    }

    /// Ends every login of `user` but this one, and every remember-me token but this
    /// browser's; returns how many logins were ended.
    pub(crate) async fn end_other_logins(
        &self,
        user: &L::User,
        state: &AuthState<L::User>,
        facts: &RequestFacts,
    ) -> Result<u64> {
        let index = self.index()?;
        let limit = self.settings().store_timeout;
        let key = user_key(user)?;
        let current = state.record.as_ref().and_then(|r| r.login_id.as_deref());
        let others: Vec<StoredLogin> = index
            .list(limit, &key)
            .await?
            .into_iter()
            .filter(|login| Some(login.id.as_str()) != current)
            .collect();
        self.end_indexed(index, user, facts, &others).await?;
        if let Some(remember) = &self.core.remember {
            // Tokens the index does not name (issued before it existed) go as well.
            let own = own_selector(facts);
            remember
                .revoke_user_except(limit, &key, own.as_deref())
                .await?;
        }
        Ok(others.len() as u64)
    }

    async fn end_indexed(
        &self,
        index: &LoginIndex,
        user: &L::User,
        facts: &RequestFacts,
        logins: &[StoredLogin],
    ) -> Result<()> {
        let limit = self.settings().store_timeout;
        let remember = self.core.remember.as_ref();
        let own_session = self.session()?.id().map(|id| id.to_string());
        let own_selector = own_selector(facts);
        let keep = Keep {
            session: own_session.as_deref(),
            selector: own_selector.as_deref(),
        };
        for login in logins {
            index.end(limit, remember, login, keep).await?;
            self.settings().emit(AuthEvent::LoginEnded {
                user_id: user.id().to_string(),
                login_id: login.id.clone(),
            });
        }
        Ok(())
    }

    fn index(&self) -> Result<&LoginIndex> {
        self.core.logins.as_ref().ok_or_else(not_enabled)
    }

    /// The session's new id, given before it holds the login: the auth record is taken out and
    /// the session saved.
    async fn reserve_session_id(&self, session: &Session) -> Result<String> {
        let limit = self.settings().store_timeout;
        timed(limit, "session store", session.remove_value(AUTH_KEY)).await?;
        timed(limit, "session store", session.save()).await?;
        session
            .id()
            .map(|id| id.to_string())
            .ok_or_else(|| Error::Store("the session store saved the session without an id".into()))
    }

    fn touch_now(&self, record: &AuthRecord, session_id: Option<String>) -> LoginTouch {
        let settings = self.settings();
        let now = OffsetDateTime::now_utc();
        let login_at = OffsetDateTime::from_unix_timestamp(record.login_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        LoginTouch {
            last_used_at: now,
            expires_at: expiry(
                now,
                login_at,
                settings.idle_timeout,
                settings.absolute_timeout,
                None,
            ),
            session_id,
        }
    }
}

/// The selector of this browser's remember-me cookie, if it sent one.
fn own_selector(facts: &RequestFacts) -> Option<String> {
    facts
        .remember_cookie
        .as_deref()
        .and_then(Remember::selector_of)
}
