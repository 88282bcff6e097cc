//! The per-request auth context: lazy, resolved at most once, shared by every extractor.
//!
//! The [`LoginManagerLayer`](crate::LoginManagerLayer) puts one [`AuthContext`] into the
//! request extensions and does nothing else, so a route that never asks for the user costs no
//! session or loader I/O. The first extractor that asks runs the life-cycle of DESIGN.md
//! (session record → remember cookie → request loader) under a lock and caches the outcome.
//! Changes of the login state (`login_user`, `logout_user`, ...) are in [`change`].
//!
//! The context answers guards with data — the user, or a [`Reason`] — and never renders a
//! response itself: that is the guards' job, from the [`Settings`].

mod change;
mod logins;

use std::{
    any::Any,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use cookie::Cookie;
use http::request::Parts;
use tower_sessions::Session;

use crate::{
    client::{has_cookie, protection_id, RequestFacts},
    config::Settings,
    events::{AuthEvent, EndReason},
    login::PasswordLogin,
    logins::{LoginIndex, NewLogin},
    record::{digest_matches, now, AuthRecord, AuthState, Source, AUTH_KEY},
    rejection::Reason,
    remember::{display_user_key, Remember, Restore},
    timeout::{loader_call, timed},
    AuthUser, Error, Result, SessionProtection, UserLoader,
};

/// What every request of one [`LoginManager`](crate::LoginManager) shares.
pub(crate) struct Core<L> {
    pub loader: L,
    pub settings: Settings,
    pub remember: Option<Remember>,
    pub logins: Option<LoginIndex>,
    pub passwords: PasswordLogin,
}

/// The per-request context.
pub(crate) struct AuthContext<L: UserLoader> {
    pub core: Arc<Core<L>>,
    session: Option<Session>,
    state: tokio::sync::Mutex<Option<Arc<AuthState<L::User>>>>,
    facts: OnceLock<Arc<RequestFacts>>,
    touched: AtomicBool,
    logged_out: AtomicBool,
    cookies: Mutex<Vec<Cookie<'static>>>,
}

impl<L: UserLoader> AuthContext<L> {
    pub(crate) fn new(core: Arc<Core<L>>, session: Option<Session>) -> Self {
        Self {
            core,
            session,
            state: tokio::sync::Mutex::new(None),
            facts: OnceLock::new(),
            touched: AtomicBool::new(false),
            logged_out: AtomicBool::new(false),
            cookies: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.core.settings
    }

    pub(crate) fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or(Error::MissingSessionLayer)
    }

    /// Request facts; `parts` is only read the first time.
    pub(crate) fn facts(&self, parts: &Parts) -> &Arc<RequestFacts> {
        self.facts.get_or_init(|| {
            let remember_cookie = self.core.remember.as_ref().map(Remember::cookie_name);
            Arc::new(RequestFacts::read(parts, remember_cookie))
        })
    }

    /// Whether any extractor asked for the login state (the response then depends on it).
    pub(crate) fn was_touched(&self) -> bool {
        self.touched.load(Ordering::Relaxed)
    }

    /// Whether `logout_user` ran during this request.
    pub(crate) fn was_logged_out(&self) -> bool {
        self.logged_out.load(Ordering::Relaxed)
    }

    pub(crate) fn queue_cookie(&self, cookie: Cookie<'static>) {
        let mut cookies = self.cookies.lock().unwrap_or_else(|p| p.into_inner());
        // The last word on a cookie name wins: a login after a logout sets, not clears.
        cookies.retain(|c| c.name() != cookie.name());
        cookies.push(cookie);
    }

    pub(crate) fn take_cookies(&self) -> Vec<Cookie<'static>> {
        std::mem::take(&mut *self.cookies.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The login state, resolved on first use and cached for the rest of the request.
    pub(crate) async fn resolve(&self, parts: &Parts) -> Result<Arc<AuthState<L::User>>> {
        self.touched.store(true, Ordering::Relaxed);
        let mut state = self.state.lock().await;
        if let Some(state) = state.as_ref() {
            return Ok(Arc::clone(state));
        }
        let resolved = Arc::new(self.resolve_uncached(parts).await?);
        *state = Some(Arc::clone(&resolved));
        Ok(resolved)
    }

    /// Replaces the cached state after a login, logout or confirmation.
    async fn set_state(&self, new_state: Arc<AuthState<L::User>>) {
        *self.state.lock().await = Some(new_state);
    }

    async fn resolve_uncached(&self, parts: &Parts) -> Result<AuthState<L::User>> {
        let session = self.session()?;
        let limit = self.settings().store_timeout;
        let record = timed(limit, "session store", session.get_value(AUTH_KEY)).await?;
        if let Some(value) = record {
            match serde_json::from_value::<AuthRecord>(value) {
                Ok(record) => {
                    if let Some(state) = self.resume_session(session, record, parts).await? {
                        return Ok(state);
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "unreadable auth record; removing it");
                    self.end_session(session).await?;
                }
            }
        }
        if let Some(remember) = &self.core.remember {
            // Checked before the facts are built: most anonymous requests carry no cookie.
            if has_cookie(parts, remember.cookie_name()) {
                let facts = self.facts(parts);
                if let Some(cookie) = &facts.remember_cookie {
                    match self.restore(remember, session, cookie, facts).await? {
                        Some(state) => return Ok(state),
                        None => self.queue_cookie(remember.cookie.removal()),
                    }
                }
            }
        }
        let user = loader_call(limit, self.core.loader.load_user_from_request(parts)).await?;
        if let Some(user) = user.filter(AuthUser::is_active) {
            self.settings().emit(AuthEvent::LoadedFromRequest {
                user_id: user.id().to_string(),
            });
            return Ok(AuthState {
                user: Some(user),
                record: None,
                source: Source::Request,
            });
        }
        Ok(AuthState::anonymous())
    }

    /// Checks a session's auth record; `None` when the login has ended.
    async fn resume_session(
        &self,
        session: &Session,
        mut record: AuthRecord,
        parts: &Parts,
    ) -> Result<Option<AuthState<L::User>>> {
        let settings = self.settings();
        let now = now();
        if let Some(reason) = record.expiry(now, settings.absolute_timeout, settings.idle_timeout) {
            return self.end_login(session, &record, reason).await;
        }

        let mut dirty = false;
        let protection_id = protection_id(parts);
        match record.protection_id {
            None => {
                record.protection_id = Some(protection_id);
                dirty = true;
            }
            Some(id) if id != protection_id => match settings.protection {
                SessionProtection::Off => {}
                SessionProtection::Basic => {
                    if record.fresh_at.take().is_some() {
                        dirty = true;
                        settings.emit(AuthEvent::SessionProtected {
                            user_id: record.user_id.to_string(),
                            logged_out: false,
                        });
                    }
                }
                SessionProtection::Strong => {
                    settings.emit(AuthEvent::SessionProtected {
                        user_id: record.user_id.to_string(),
                        logged_out: true,
                    });
                    self.forget_remember_cookie(self.facts(parts)).await?;
                    return self
                        .end_login(session, &record, EndReason::SessionProtection)
                        .await;
                }
            },
            Some(_) => {}
        }

        if !self.login_is_listed(&record).await? {
            return self
                .end_login(session, &record, EndReason::LoginEnded)
                .await;
        }

        let Ok(id) = serde_json::from_value(record.user_id.clone()) else {
            tracing::warn!(
                user_id = %record.user_id,
                "auth record holds an id of another type; removing it"
            );
            self.end_session(session).await?;
            return Ok(None);
        };
        let user = loader_call(settings.store_timeout, self.core.loader.load_user(&id)).await?;
        let user = match user {
            None => return self.end_login(session, &record, EndReason::UserGone).await,
            Some(user) if !user.is_active() => {
                return self
                    .end_login(session, &record, EndReason::UserInactive)
                    .await
            }
            Some(user) if !digest_matches(record.auth_hash.as_str(), user.session_auth_hash()) => {
                return self
                    .end_login(session, &record, EndReason::AuthHashChanged)
                    .await
            }
            Some(user) => user,
        };

        // Writing `last_seen` on every request would turn every read into a store write.
        // The index entry's "last used" rides along, and only then.
        if let Some(idle) = settings.idle_timeout {
            if record.last_seen_due(now, idle) {
                if !self.touch_login(&record).await? {
                    return self
                        .end_login(session, &record, EndReason::LoginEnded)
                        .await;
                }
                record.last_seen = now;
                dirty = true;
            }
        }
        if dirty {
            let limit = settings.store_timeout;
            timed(limit, "session store", session.insert(AUTH_KEY, &record)).await?;
        }
        Ok(Some(AuthState::session(user, record)))
    }

    /// Step 2b: a remember cookie on a request without a session login. The token service
    /// checks and rotates the token; the user is loaded and the session written here. `None`
    /// when the cookie is worth nothing (it is then expired).
    async fn restore(
        &self,
        remember: &Remember,
        session: &Session,
        cookie: &str,
        facts: &RequestFacts,
    ) -> Result<Option<AuthState<L::User>>> {
        let settings = self.settings();
        let limit = settings.store_timeout;
        let (selector, user_key, auth_hash, new_cookie, expires_at) =
            match remember.restore(limit, cookie).await? {
                Restore::Valid {
                    selector,
                    user_key,
                    auth_hash,
                    cookie,
                    expires_at,
                } => (selector, user_key, auth_hash, cookie, expires_at),
                Restore::Rejected => return Ok(None),
                Restore::Stolen { user_key } => {
                    settings.emit(AuthEvent::RememberTheftDetected {
                        user_id: display_user_key(&user_key),
                    });
                    return Ok(None);
                }
            };
        // The store has rotated the validator: the browser must get the new cookie even when
        // what follows fails (a loader outage answers 503), or its next visit would present
        // the rotated-out validator and, past the grace window, be taken for a thief.
        if let Some(cookie) = new_cookie {
            self.queue_cookie(cookie);
        }
        let user = match serde_json::from_str(&user_key) {
            Ok(id) => loader_call(limit, self.core.loader.load_user(&id)).await?,
            Err(_) => None,
        };
        let Some(user) =
            user.filter(|u| u.is_active() && digest_matches(&auth_hash, u.session_auth_hash()))
        else {
            remember.forget_selector(limit, &selector).await?;
            return Ok(None);
        };

        // A new session id for the restored login, marked not fresh, and carrying the
        // protection identifier (Flask-Login #685: Strong mode must not log it out). With a
        // login index, the browser's entry follows the new id before the session holds the
        // login (the entry's previous session, if still alive, is ended).
        if session.id().is_some() {
            timed(limit, "session store", session.cycle_id()).await?;
        }
        let new_login = NewLogin {
            token: Some((&selector, expires_at)),
            restored: true,
        };
        let login_id = self.index_login(&user, new_login, facts).await?;
        let mut record = AuthRecord::new(&user, false, Some(facts.protection_id))?;
        record.remembered = true;
        record.login_id = login_id;
        timed(limit, "session store", session.insert(AUTH_KEY, &record)).await?;
        settings.emit(AuthEvent::LoadedFromRemember {
            user_id: user.id().to_string(),
        });
        Ok(Some(AuthState {
            user: Some(user),
            record: Some(record),
            source: Source::Remember,
        }))
    }

    /// Deletes the remember token named by this request's cookie, and expires the cookie.
    async fn forget_remember_cookie(&self, facts: &RequestFacts) -> Result<()> {
        if let (Some(remember), Some(cookie)) = (&self.core.remember, &facts.remember_cookie) {
            remember
                .forget(self.settings().store_timeout, cookie)
                .await?;
            self.queue_cookie(remember.cookie.removal());
        }
        Ok(())
    }

    /// Ends a login the library no longer trusts, and its entry in the login index (the
    /// session first: see `LoginIndex`).
    async fn end_login(
        &self,
        session: &Session,
        record: &AuthRecord,
        reason: EndReason,
    ) -> Result<Option<AuthState<L::User>>> {
        let user_id = record.user_id.to_string();
        self.settings()
            .emit(AuthEvent::SessionEnded { user_id, reason });
        self.end_session(session).await?;
        if reason != EndReason::LoginEnded {
            self.unindex_login(Some(record)).await?;
        }
        Ok(None)
    }

    /// Drops the whole session: what was stored during an untrusted login must not survive
    /// into the anonymous session that follows (the next login starts clean).
    async fn end_session(&self, session: &Session) -> Result<()> {
        discard_session(self.settings().store_timeout, session).await
    }

    /// The user when `requirement` is met, else why not.
    async fn check(
        &self,
        parts: &Parts,
        requirement: Requirement<'_>,
    ) -> std::result::Result<L::User, Reason> {
        let settings = self.settings();
        let state = self.resolve(parts).await.map_err(Reason::Unavailable)?;
        let Some(user) = state.user.clone() else {
            return Err(Reason::LoginRequired);
        };
        match requirement {
            Requirement::Login => Ok(user),
            Requirement::FreshLogin if state.is_fresh(settings.fresh_max_age) => Ok(user),
            Requirement::FreshLogin => Err(Reason::FreshLoginRequired {
                user_id: user.id().to_string(),
            }),
            Requirement::Permission(permission) => {
                let granted = self.core.loader.permissions(&user);
                match loader_call(settings.store_timeout, granted).await {
                    Ok(set) if set.contains(permission) => Ok(user),
                    Ok(_) => Err(Reason::Forbidden {
                        user_id: user.id().to_string(),
                        permission: permission.to_owned(),
                    }),
                    Err(err) => Err(Reason::Unavailable(err)),
                }
            }
        }
    }
}

/// Empties `session` and moves it to a new id, deleting the old record from the store.
///
/// Not `Session::flush()`: tower-sessions 0.14 keeps the flushed record, old id included, in
/// its cache, and the next save recreates the session under that *old* id (the store's
/// `create` reuses it, since it was just freed) — a login after a flush would then live under
/// an id an earlier response carried. `cycle_id` gives the cached record a new id.
async fn discard_session(limit: std::time::Duration, session: &Session) -> Result<()> {
    session.clear().await;
    timed(limit, "session store", session.cycle_id()).await
}

/// What a guard needs, independent of the loader type, so that `LoginRequired<User>` and the
/// route layers name only the user type (or nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Requirement<'a> {
    Login,
    FreshLogin,
    Permission(&'a str),
}

/// The type-erased face of [`AuthContext`], stored in the request extensions.
pub(crate) trait DynAuth: Send + Sync {
    /// Whether `requirement` is met, else the reason it is not. When it is met and `user` is
    /// an `Option<U>` of the loader's user type, the user is written there (a guard's own
    /// slot: no box for the user); any other `user` (`&mut ()`) is left alone.
    fn require<'a>(
        &'a self,
        parts: &'a Parts,
        requirement: Requirement<'a>,
        user: &'a mut (dyn Any + Send),
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), Reason>> + Send + 'a>>;

    /// What the guards render a refusal from.
    fn settings(&self) -> &Settings;

    /// The concrete context, for `AuthSession<L>` to downcast: one request extension serves
    /// both the guards and the typed extractor.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<L: UserLoader> DynAuth for AuthContext<L> {
    fn require<'a>(
        &'a self,
        parts: &'a Parts,
        requirement: Requirement<'a>,
        user: &'a mut (dyn Any + Send),
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), Reason>> + Send + 'a>> {
        Box::pin(async move {
            let checked = self.check(parts, requirement).await?;
            if let Some(slot) = user.downcast_mut::<Option<L::User>>() {
                *slot = Some(checked);
            }
            Ok(())
        })
    }

    fn settings(&self) -> &Settings {
        &self.core.settings
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The extension through which guards and `AuthSession` reach the context.
#[derive(Clone)]
pub(crate) struct DynAuthHandle(pub Arc<dyn DynAuth>);
