//! Every live login of a user: the [`LoginIndex`] settings, the entries' life-cycle, and what
//! a "your devices" page shows ([`LiveLogin`]).

use std::{str::FromStr, sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use time::OffsetDateTime;
use tower_sessions::{session::Id, SessionStore};

mod store;

pub use store::{LoginStore, LoginTouch, MemoryLoginStore, StoredLogin};

use crate::{record::time_span, remember::Remember, timeout::timed, Error, Result};

/// The default of [`LoginIndex::max_logins_per_user`], as [`Remember::max_devices`]'s.
const DEFAULT_MAX_PER_USER: usize = 50;
/// How long an entry lives past its last use when the manager has no idle or absolute
/// timeout (tower-sessions' own default expiry is two weeks).
const UNTIMED_LIFETIME: time::Duration = time::Duration::days(14);
/// A `User-Agent` is kept to this many characters.
const USER_AGENT_CHARS: usize = 256;

/// Every live login of every user, so that an app can list them, end one, end all the others,
/// or end all of a user's logins (an admin, a breach) — at no cost per request. Pass it to
/// [`LoginManager::login_index`](crate::LoginManager::login_index).
///
/// The library keeps one entry per logged-in browser in a [`LoginStore`] next to the session
/// store: written at login, logout, session-id rotation and remember-me restore, and its
/// "last used" at most every idle timeout / 4, together with the session's own `last_seen` —
/// never on an ordinary logged-in request. A remembered browser is one entry whatever
/// sessions it restores. Each user has at most
/// [`max_logins_per_user`](Self::max_logins_per_user) entries; a login beyond it ends the
/// least recently used one.
///
/// Ending a login ([`AuthSession::end_login`](crate::AuthSession::end_login),
/// [`end_other_logins`](crate::AuthSession::end_other_logins),
/// [`LoginManager::end_all_logins`](crate::LoginManager::end_all_logins)) deletes its session
/// from the tower-sessions store and its remember-me token: the browser's next request, on
/// any instance, is anonymous. Hence [`new`](Self::new) takes the session store as well (a
/// clone of the one given to the `SessionManagerLayer`). Sessions kept in the cookie itself
/// cannot be deleted: [`for_cookie_sessions`](Self::for_cookie_sessions) checks the index on
/// every request instead.
///
/// # Order of writes
///
/// A login first saves its new session id without the login in it, then writes the index
/// entry, and only then the session's auth record (and the remember-me token): whatever step
/// a crash interrupts, no session holds a login that the index does not list. Ending a login
/// deletes the session and the token first and the entry last, for the same reason.
///
/// ```
/// use login_manager::{LoginIndex, MemoryLoginStore};
/// use tower_sessions::MemoryStore;
///
/// let sessions = MemoryStore::default();
/// let index = LoginIndex::new(MemoryLoginStore::new(), sessions.clone()).max_logins_per_user(20);
/// // LoginManager::new(users).login_index(index) ... .layer(SessionManagerLayer::new(sessions))
/// ```
#[derive(Clone)]
pub struct LoginIndex {
    store: Arc<dyn LoginStore>,
    sessions: Option<Arc<dyn SessionStore>>,
    max_per_user: usize,
}

impl std::fmt::Debug for LoginIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginIndex")
            .field("cookie_sessions", &self.sessions.is_none())
            .field("max_per_user", &self.max_per_user)
            .finish_non_exhaustive()
    }
}

impl LoginIndex {
    /// An index in `store`, for sessions in the tower-sessions store `sessions` (the one the
    /// `SessionManagerLayer` uses), at most 50 logins per user.
    pub fn new(store: impl LoginStore, sessions: impl SessionStore) -> Self {
        Self {
            store: Arc::new(store),
            sessions: Some(Arc::new(sessions)),
            max_per_user: DEFAULT_MAX_PER_USER,
        }
    }

    /// An index for sessions kept in the cookie itself, which no server can delete: every
    /// logged-in request then reads its entry (one [`LoginStore::get`]) and ends the login when
    /// the entry is gone. This is what makes a logout of cookie sessions take effect
    /// server-side. Sessions logged in before the index was turned on have no entry and end
    /// on their next request.
    pub fn for_cookie_sessions(store: impl LoginStore) -> Self {
        Self {
            store: Arc::new(store),
            sessions: None,
            max_per_user: DEFAULT_MAX_PER_USER,
        }
    }

    /// How many live logins one user may have (default 50, at least 1). A login beyond it ends
    /// the user's expired entries first, then the least recently used logins.
    pub fn max_logins_per_user(mut self, max: usize) -> Self {
        self.max_per_user = max.max(1);
        self
    }

    /// The entries' store (for a cleanup task calling [`LoginStore::delete_expired`]).
    pub fn store(&self) -> &Arc<dyn LoginStore> {
        &self.store
    }

    /// Whether every logged-in request must find its entry (cookie sessions).
    pub(crate) fn checks_every_request(&self) -> bool {
        self.sessions.is_none()
    }

    /// Writes `login`; returns the entries it replaced or pushed out, still to be ended.
    pub(crate) async fn put(
        &self,
        limit: Duration,
        login: StoredLogin,
    ) -> Result<Vec<StoredLogin>> {
        timed(
            limit,
            "login store",
            self.store.put(login, self.max_per_user),
        )
        .await
    }

    pub(crate) async fn get(
        &self,
        limit: Duration,
        user: &str,
        id: &str,
    ) -> Result<Option<StoredLogin>> {
        timed(limit, "login store", self.store.get(user, id)).await
    }

    pub(crate) async fn touch(
        &self,
        limit: Duration,
        user: &str,
        id: &str,
        touch: LoginTouch,
    ) -> Result<bool> {
        timed(limit, "login store", self.store.touch(user, id, touch)).await
    }

    pub(crate) async fn list(&self, limit: Duration, user: &str) -> Result<Vec<StoredLogin>> {
        timed(limit, "login store", self.store.list(user)).await
    }

    pub(crate) async fn delete(
        &self,
        limit: Duration,
        user: &str,
        id: &str,
    ) -> Result<Option<StoredLogin>> {
        timed(limit, "login store", self.store.delete(user, id)).await
    }

    /// Ends `login` for good: its session and its remember-me token first, then the entry (a
    /// crash in between leaves an entry that can be ended again, never a live session without
    /// one). `keep` names what the caller's own browser still uses.
    pub(crate) async fn end(
        &self,
        limit: Duration,
        remember: Option<&Remember>,
        login: &StoredLogin,
        keep: Keep<'_>,
    ) -> Result<()> {
        self.end_parts(limit, remember, login, keep).await?;
        if let Some(gone) = self.delete(limit, &login.user_id, &login.id).await? {
            // The entry moved to another session meanwhile (a restore, an id rotation).
            self.end_parts(limit, remember, &gone, keep).await?;
        }
        Ok(())
    }

    /// Ends what entries already removed from the index still point at.
    pub(crate) async fn end_removed(
        &self,
        limit: Duration,
        remember: Option<&Remember>,
        removed: &[StoredLogin],
        keep: Keep<'_>,
    ) -> Result<()> {
        for login in removed {
            self.end_parts(limit, remember, login, keep).await?;
        }
        Ok(())
    }

    /// Ends every login of `user_id`, and every remember-me token of the user (also those
    /// issued before the index existed); returns how many logins were listed.
    pub(crate) async fn end_all(
        &self,
        limit: Duration,
        remember: Option<&Remember>,
        user_id: &str,
    ) -> Result<Vec<StoredLogin>> {
        let listed = self.list(limit, user_id).await?;
        self.end_removed(limit, remember, &listed, Keep::default())
            .await?;
        if let Some(remember) = remember {
            remember.revoke_user_key(limit, user_id).await?;
        }
        // Logins that arrived while the listed ones were ended are removed here: end them too.
        let late = timed(limit, "login store", self.store.delete_for_user(user_id)).await?;
        self.end_removed(limit, remember, &late, Keep::default())
            .await?;
        let unlisted: Vec<StoredLogin> = late
            .into_iter()
            .filter(|l| !listed.iter().any(|e| e.id == l.id))
            .collect();
        Ok(listed.into_iter().chain(unlisted).collect())
    }

    async fn end_parts(
        &self,
        limit: Duration,
        remember: Option<&Remember>,
        login: &StoredLogin,
        keep: Keep<'_>,
    ) -> Result<()> {
        if let (Some(sessions), Some(id)) = (&self.sessions, &login.session_id) {
            if keep.session != Some(id.as_str()) {
                // An id that does not parse names no session that could exist.
                if let Ok(id) = Id::from_str(id) {
                    let deleted = async {
                        sessions
                            .delete(&id)
                            .await
                            .map_err(|e| Error::Store(e.into()))
                    };
                    timed(limit, "session store", deleted).await?;
                }
            }
        }
        if let (Some(remember), Some(selector)) = (remember, &login.remember_selector) {
            if keep.selector != Some(selector.as_str()) {
                remember.forget_selector(limit, selector).await?;
            }
        }
        Ok(())
    }
}

/// What a new entry of the index says about its browser.
pub(crate) struct NewLogin<'a> {
    /// The browser's remember-me token (selector, expiry), if it has one.
    pub token: Option<(&'a str, OffsetDateTime)>,
    /// Whether the session is restored from that token.
    pub restored: bool,
}

/// What of an ended entry the calling browser still uses and must not lose.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keep<'a> {
    pub session: Option<&'a str>,
    pub selector: Option<&'a str>,
}

/// One live login of the current user, for a "your devices" page
/// ([`AuthSession::logins`](crate::AuthSession::logins)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveLogin {
    /// Names the login for [`AuthSession::end_login`](crate::AuthSession::end_login); safe in
    /// a page or URL (it cannot restore or end anything by itself).
    pub id: String,
    /// When the login happened.
    pub created_at: OffsetDateTime,
    /// Last request seen (refreshed at most every idle timeout / 4).
    pub last_used_at: OffsetDateTime,
    /// The browser, from its `User-Agent`: `Firefox 121.0`, or `Unknown browser`.
    pub browser: String,
    /// The operating system: `Linux`, `Mac OSX 10.15.7`, or `Unknown system`.
    pub system: String,
    /// Whether the browser ticked "remember me" (it may come back after its session ends).
    pub remember_me: bool,
    /// Whether its session was restored from the remember-me cookie.
    pub restored: bool,
    /// Whether it is the browser making this request.
    pub current: bool,
}

impl LiveLogin {
    pub(crate) fn new(login: StoredLogin, current: Option<&str>) -> Self {
        let (browser, system) = describe_user_agent(&login.user_agent);
        Self {
            current: current == Some(login.id.as_str()),
            id: login.id,
            created_at: login.created_at,
            last_used_at: login.last_used_at,
            browser,
            system,
            remember_me: login.remember_selector.is_some(),
            restored: login.remembered,
        }
    }
}

/// Browser and system of a `User-Agent`, through the `woothee` parser.
fn describe_user_agent(user_agent: &str) -> (String, String) {
    let known = |s: &str| !s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN;
    let parsed = woothee::parser::Parser::new().parse(user_agent);
    let browser = parsed
        .as_ref()
        .filter(|p| known(p.name))
        .map(|p| match known(p.version) {
            true => format!("{} {}", p.name, p.version),
            false => p.name.to_owned(),
        })
        .unwrap_or_else(|| "Unknown browser".to_owned());
    let system = parsed
        .as_ref()
        .filter(|p| known(p.os))
        // Windows names carry their version already ("Windows 10", with os_version "NT 10.0").
        .map(
            |p| match known(&p.os_version) && !p.os.starts_with("Windows") {
                true => format!("{} {}", p.os, p.os_version),
                false => p.os.to_owned(),
            },
        )
        .unwrap_or_else(|| "Unknown system".to_owned());
    (browser, system)
}

/// A new random login id (128 bits, base64url).
pub(crate) fn new_login_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An entry's `expires_at`: when the session's timeouts end it at the latest, or
/// [`UNTIMED_LIFETIME`] after its last use without timeouts; a remembered browser's lasts as
/// long as its token.
pub(crate) fn expiry(
    now: OffsetDateTime,
    login_at: OffsetDateTime,
    idle: Option<Duration>,
    absolute: Option<Duration>,
    remember_until: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let idle_end = idle.map(|idle| now.saturating_add(time_span(idle)));
    let absolute_end = absolute.map(|max| login_at.saturating_add(time_span(max)));
    let session_end = match (idle_end, absolute_end) {
        (Some(a), Some(b)) => a.min(b),
        (Some(end), None) | (None, Some(end)) => end,
        (None, None) => now.saturating_add(UNTIMED_LIFETIME),
    };
    remember_until.map_or(session_end, |until| until.max(session_end))
}

/// A `User-Agent` as an entry keeps it.
pub(crate) fn stored_user_agent(user_agent: &str) -> String {
    user_agent.chars().take(USER_AGENT_CHARS).collect()
}

/// The error of ending a login in a request that has no session store to end it in.
pub(crate) fn not_enabled() -> Error {
    Error::Config(
        "the login index is not enabled: add `.login_index(LoginIndex::new(store, \
         session_store))` to the `LoginManager`"
            .to_owned(),
    )
}
