//! The per-request auth context: lazy, resolved at most once, shared by every extractor.
//!
//! The [`LoginManagerLayer`](crate::LoginManagerLayer) puts one [`AuthContext`] into the
//! request extensions and does nothing else, so a route that never asks for the user costs no
//! session or loader I/O. The first extractor that asks runs the life-cycle of DESIGN.md
//! (session record → remember cookie → request loader) under a lock and caches the outcome.

use std::{
    any::Any,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use async_trait::async_trait;
use axum::{
    extract::ConnectInfo,
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cookie::Cookie;
use http::{header, request::Parts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::{
    events::{AuthEvent, EndReason},
    guard::{rejection_response, Reason},
    remember::RestoreOutcome,
    throttle::PeerInfo,
    AuthUser, Error, LoginManager, Result, SessionProtection, UserLoader,
};

/// The session key of the auth record.
pub(crate) const AUTH_KEY: &str = "_auth";

/// What the session stores about a login, under [`AUTH_KEY`]. Short field names keep it
/// around 100 bytes: it is read on every authenticated request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "RecordFields", into = "RecordFields")]
pub(crate) struct AuthRecord {
    /// The user id, serialized.
    pub user_id: serde_json::Value,
    /// Digest of the user's `session_auth_hash` at login.
    pub auth_hash: String,
    /// Login time, unix seconds.
    pub login_at: i64,
    /// Time of the last password check (login or `confirm_login`); `None` once not fresh.
    pub fresh_at: Option<i64>,
    /// Last request seen, refreshed at most every idle/4.
    pub last_seen: i64,
    /// Session-protection identifier; `None` is adopted on the next request.
    pub protection_id: Option<String>,
    /// Restored from a remember-me cookie.
    pub remembered: bool,
}

/// The stored form of an [`AuthRecord`]: a JSON array in field order. tower-sessions clones
/// the session's values on every load and read; an array costs three allocations where an
/// object with seven keys cost more than a dozen (measured with callgrind, see
/// docs/benchmarks.md).
type RecordFields = (
    serde_json::Value,
    String,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    bool,
);

impl From<RecordFields> for AuthRecord {
    fn from(
        (user_id, auth_hash, login_at, fresh_at, last_seen, protection_id, remembered): RecordFields,
    ) -> Self {
        Self {
            user_id,
            auth_hash,
            login_at,
            fresh_at,
            last_seen,
            protection_id,
            remembered,
        }
    }
}

impl From<AuthRecord> for RecordFields {
    fn from(record: AuthRecord) -> Self {
        (
            record.user_id,
            record.auth_hash,
            record.login_at,
            record.fresh_at,
            record.last_seen,
            record.protection_id,
            record.remembered,
        )
    }
}

impl AuthRecord {
    pub(crate) fn new<U: AuthUser>(user: &U, fresh: bool, protection_id: String) -> Result<Self> {
        let now = now();
        Ok(Self {
            user_id: serde_json::to_value(user.id())
                .map_err(|e| Error::Config(format!("the user id does not serialize: {e}")))?,
            auth_hash: auth_hash_digest(user.session_auth_hash()),
            login_at: now,
            fresh_at: fresh.then_some(now),
            last_seen: now,
            protection_id: Some(protection_id),
            remembered: false,
        })
    }

    pub(crate) fn belongs_to<U: AuthUser>(&self, user: &U) -> bool {
        serde_json::to_value(user.id()).is_ok_and(|id| id == self.user_id)
            && digest_matches(&self.auth_hash, user.session_auth_hash())
    }

    /// Why this login is over at `now` (unix seconds), if it is: the absolute timeout is
    /// checked before the idle one. A timestamp from the distant past counts as expired
    /// rather than overflowing.
    pub(crate) fn expiry(
        &self,
        now: i64,
        absolute_timeout: Option<time::Duration>,
        idle_timeout: Option<time::Duration>,
    ) -> Option<EndReason> {
        if absolute_timeout.is_some_and(|t| elapsed(now, self.login_at) > t.whole_seconds()) {
            Some(EndReason::AbsoluteTimeout)
        } else if idle_timeout.is_some_and(|t| elapsed(now, self.last_seen) > t.whole_seconds()) {
            Some(EndReason::IdleTimeout)
        } else {
            None
        }
    }

    /// Whether `last_seen` is old enough to be rewritten: at most every idle/4, so that reads
    /// do not turn into store writes.
    pub(crate) fn last_seen_due(&self, now: i64, idle_timeout: time::Duration) -> bool {
        elapsed(now, self.last_seen) >= idle_timeout.whole_seconds() / 4
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Seconds from `then` to `now`. Saturating: the session store is outside this process, and a
/// record holding `i64::MIN` must neither panic (debug builds) nor wrap to a negative age that
/// never expires (release builds).
fn elapsed(now: i64, then: i64) -> i64 {
    now.saturating_sub(then)
}

/// A 128-bit SHA-256 prefix of the auth hash, base64url: the raw value (often a password
/// hash) never reaches the session store.
pub(crate) fn auth_hash_digest(auth_hash: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(auth_hash)[..16])
}

pub(crate) fn digest_matches(stored: &str, auth_hash: &[u8]) -> bool {
    // Encoded on the stack: this runs on every authenticated request.
    let mut expected = [0u8; 22];
    let written = URL_SAFE_NO_PAD
        .encode_slice(&Sha256::digest(auth_hash)[..16], &mut expected)
        .unwrap_or(0);
    written == expected.len() && bool::from(stored.as_bytes().ct_eq(&expected))
}

/// Where the current user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Anonymous,
    Session,
    Remember,
    Request,
}

/// The resolved login state of a request.
#[derive(Clone)]
pub(crate) struct AuthState<U> {
    pub user: Option<U>,
    pub record: Option<AuthRecord>,
    pub source: Source,
}

impl<U> AuthState<U> {
    pub(crate) fn anonymous() -> Self {
        Self {
            user: None,
            record: None,
            source: Source::Anonymous,
        }
    }

    pub(crate) fn is_fresh(&self, max_age: Option<time::Duration>) -> bool {
        match (&self.source, self.record.as_ref().and_then(|r| r.fresh_at)) {
            (Source::Session | Source::Remember, Some(fresh_at)) => {
                max_age.is_none_or(|max| elapsed(now(), fresh_at) <= max.whole_seconds())
            }
            // Request-loader logins (API tokens) are never fresh, as in Flask-Login: a token is
            // not a password check, and there is no session to confirm.
            _ => false,
        }
    }
}

/// Facts about the request that the life-cycle needs, read once from the first extractor's
/// `Parts` (the layer itself never reads them, keeping public routes free).
pub(crate) struct RequestInfo {
    pub protection_id: String,
    pub user_agent: String,
    pub query: Option<String>,
    pub remember_cookie: Option<String>,
    pub peer: PeerInfo,
    /// The `Cookie` header lines, for cookies other than remember-me (the device cookie of a
    /// password login). Cloning a `HeaderValue` shares its bytes.
    cookie_headers: Vec<http::HeaderValue>,
}

impl RequestInfo {
    fn read(parts: &Parts, remember_cookie_name: Option<&str>) -> Self {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut hasher = Sha256::new();
        match parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        {
            Some(IpAddr::V4(ip)) => hasher.update(ip.octets()),
            Some(IpAddr::V6(ip)) => hasher.update(ip.octets()),
            None => {}
        }
        hasher.update(b"|");
        hasher.update(user_agent.as_bytes());
        let protection_id = URL_SAFE_NO_PAD.encode(&hasher.finalize()[..12]);
        let cookie_headers: Vec<_> = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .cloned()
            .collect();
        let remember_cookie =
            remember_cookie_name.and_then(|name| cookie_value(&cookie_headers, name));
        Self {
            protection_id,
            user_agent,
            query: parts.uri.query().map(str::to_owned),
            remember_cookie,
            peer: PeerInfo::from_parts(parts),
            cookie_headers,
        }
    }

    /// The value of the request's cookie called `name`.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        cookie_value(&self.cookie_headers, name)
    }
}

/// The value of the first cookie called `name`; unparsable headers are skipped.
fn cookie_value(headers: &[http::HeaderValue], name: &str) -> Option<String> {
    headers
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(|c| c.ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Runs `fut` under the manager's timeout, naming `what` in the error.
pub(crate) async fn timed<T, E>(
    limit: std::time::Duration,
    what: &'static str,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    Error: From<E>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Timeout(what)),
    }
}

/// The per-request context.
pub(crate) struct AuthContext<L: UserLoader> {
    pub manager: Arc<LoginManager<L>>,
    session: Option<Session>,
    state: tokio::sync::Mutex<Option<Arc<AuthState<L::User>>>>,
    request: OnceLock<Arc<RequestInfo>>,
    touched: AtomicBool,
    logged_out: AtomicBool,
    cookies: Mutex<Vec<Cookie<'static>>>,
}

impl<L: UserLoader> AuthContext<L> {
    pub(crate) fn new(manager: Arc<LoginManager<L>>, session: Option<Session>) -> Self {
        Self {
            manager,
            session,
            state: tokio::sync::Mutex::new(None),
            request: OnceLock::new(),
            touched: AtomicBool::new(false),
            logged_out: AtomicBool::new(false),
            cookies: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or(Error::MissingSessionLayer)
    }

    /// Request facts; `parts` is only read the first time.
    pub(crate) fn request(&self, parts: &Parts) -> &Arc<RequestInfo> {
        self.request.get_or_init(|| {
            let remember_cookie = self
                .manager
                .remember
                .as_ref()
                .map(|r| r.cookie_name.as_str());
            Arc::new(RequestInfo::read(parts, remember_cookie))
        })
    }

    /// Whether any extractor asked for the login state (the response then depends on it).
    pub(crate) fn was_touched(&self) -> bool {
        self.touched.load(Ordering::Relaxed)
    }

    /// Records that `logout_user` ran during this request.
    pub(crate) fn mark_logged_out(&self) {
        self.logged_out.store(true, Ordering::Relaxed);
    }

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
    pub(crate) async fn set_state(&self, new_state: Arc<AuthState<L::User>>) {
        *self.state.lock().await = Some(new_state);
    }

    async fn resolve_uncached(&self, parts: &Parts) -> Result<AuthState<L::User>> {
        let session = self.session()?;
        let info = self.request(parts);
        let limit = self.manager.timeout;
        let record = timed(limit, "session store", session.get_value(AUTH_KEY)).await?;
        if let Some(value) = record {
            match serde_json::from_value::<AuthRecord>(value) {
                Ok(record) => {
                    if let Some(state) = self.resume_session(session, record, info).await? {
                        return Ok(state);
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "unreadable auth record; removing it");
                    self.end_session(session).await?;
                }
            }
        }
        if let Some(remember) = &self.manager.remember {
            if let Some(cookie) = &info.remember_cookie {
                match remember.restore(self, session, cookie, info).await? {
                    RestoreOutcome::Restored(state) => return Ok(state),
                    RestoreOutcome::Rejected => self.queue_cookie(remember.cookie.removal()),
                }
            }
        }
        let user = loader_call(limit, self.manager.loader.load_user_from_request(parts)).await?;
        if let Some(user) = user.filter(AuthUser::is_active) {
            self.manager.emit(AuthEvent::LoadedFromRequest {
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
        info: &RequestInfo,
    ) -> Result<Option<AuthState<L::User>>> {
        let manager = &self.manager;
        let now = now();
        let user_id = record.user_id.to_string();
        if let Some(reason) = record.expiry(now, manager.absolute_timeout, manager.idle_timeout) {
            return self.end_login(session, user_id, reason).await;
        }

        let mut dirty = false;
        match &record.protection_id {
            None => {
                record.protection_id = Some(info.protection_id.clone());
                dirty = true;
            }
            Some(id) if *id != info.protection_id => match manager.protection {
                SessionProtection::Off => {}
                SessionProtection::Basic => {
                    if record.fresh_at.take().is_some() {
                        dirty = true;
                        manager.emit(AuthEvent::SessionProtected {
                            user_id: user_id.clone(),
                            logged_out: false,
                        });
                    }
                }
                SessionProtection::Strong => {
                    manager.emit(AuthEvent::SessionProtected {
                        user_id: user_id.clone(),
                        logged_out: true,
                    });
                    if let Some(remember) = &manager.remember {
                        remember.forget_cookie(self, info).await?;
                    }
                    return self
                        .end_login(session, user_id, EndReason::SessionProtection)
                        .await;
                }
            },
            Some(_) => {}
        }

        let Ok(id) = serde_json::from_value(record.user_id.clone()) else {
            tracing::warn!(
                user_id,
                "auth record holds an id of another type; removing it"
            );
            self.end_session(session).await?;
            return Ok(None);
        };
        let user = loader_call(manager.timeout, manager.loader.load_user(&id)).await?;
        let user = match user {
            None => return self.end_login(session, user_id, EndReason::UserGone).await,
            Some(user) if !user.is_active() => {
                return self
                    .end_login(session, user_id, EndReason::UserInactive)
                    .await
            }
            Some(user) if !digest_matches(&record.auth_hash, user.session_auth_hash()) => {
                return self
                    .end_login(session, user_id, EndReason::AuthHashChanged)
                    .await
            }
            Some(user) => user,
        };

        // Writing `last_seen` on every request would turn every read into a store write.
        if let Some(idle) = manager.idle_timeout {
            if record.last_seen_due(now, idle) {
                record.last_seen = now;
                dirty = true;
            }
        }
        if dirty {
            timed(
                manager.timeout,
                "session store",
                session.insert(AUTH_KEY, &record),
            )
            .await?;
        }
        Ok(Some(AuthState {
            user: Some(user),
            record: Some(record),
            source: Source::Session,
        }))
    }

    /// Ends a login the library no longer trusts.
    async fn end_login(
        &self,
        session: &Session,
        user_id: String,
        reason: EndReason,
    ) -> Result<Option<AuthState<L::User>>> {
        self.manager
            .emit(AuthEvent::SessionEnded { user_id, reason });
        self.end_session(session).await?;
        Ok(None)
    }

    /// Drops the whole session: what was stored during an untrusted login must not survive
    /// into the anonymous session that follows (the next login starts clean).
    async fn end_session(&self, session: &Session) -> Result<()> {
        discard_session(self.manager.timeout, session).await
    }
}

/// Empties `session` and moves it to a new id, deleting the old record from the store.
///
/// Not `Session::flush()`: tower-sessions 0.14 keeps the flushed record, old id included, in
/// its cache, and the next save recreates the session under that *old* id (the store's
/// `create` reuses it, since it was just freed) — a login after a flush would then live under
/// an id an earlier response carried. `cycle_id` gives the cached record a new id.
pub(crate) async fn discard_session(limit: std::time::Duration, session: &Session) -> Result<()> {
    session.clear().await;
    timed(limit, "session store", session.cycle_id()).await
}

/// Runs a loader call under the manager's timeout.
pub(crate) async fn loader_call<T, E>(
    limit: std::time::Duration,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    timed(limit, "user loader", async {
        fut.await.map_err(|e| Error::Loader(Box::new(e)))
    })
    .await
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
#[async_trait]
pub(crate) trait DynAuth: Send + Sync {
    /// The user (as `Any`) when `requirement` is met, else the response to send.
    async fn require(
        &self,
        parts: &Parts,
        requirement: Requirement<'_>,
    ) -> std::result::Result<Box<dyn Any + Send>, Response>;

    /// The concrete context, for `AuthSession<L>` to downcast: one request extension serves
    /// both the guards and the typed extractor.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

#[async_trait]
impl<L: UserLoader> DynAuth for AuthContext<L> {
    async fn require(
        &self,
        parts: &Parts,
        requirement: Requirement<'_>,
    ) -> std::result::Result<Box<dyn Any + Send>, Response> {
        let manager = &self.manager;
        let state = match self.resolve(parts).await {
            Ok(state) => state,
            Err(err) if err.is_unavailable() => {
                return Err(rejection_response(manager, parts, Reason::Unavailable(err)))
            }
            // A wiring mistake (missing layer): say what to fix rather than "unavailable".
            Err(err) => return Err(err.into_response()),
        };
        let fresh = state.is_fresh(manager.fresh_max_age);
        let Some(user) = state.user.clone() else {
            return Err(rejection_response(manager, parts, Reason::LoginRequired));
        };
        match requirement {
            Requirement::Login => {}
            Requirement::FreshLogin => {
                if !fresh {
                    let user_id = user.id().to_string();
                    return Err(rejection_response(
                        manager,
                        parts,
                        Reason::FreshLoginRequired { user_id },
                    ));
                }
            }
            Requirement::Permission(permission) => {
                let granted = loader_call(manager.timeout, manager.loader.permissions(&user)).await;
                match granted {
                    Ok(set) if set.contains(permission) => {}
                    Ok(_) => {
                        let reason = Reason::Forbidden {
                            user_id: user.id().to_string(),
                            permission: permission.to_owned(),
                        };
                        return Err(rejection_response(manager, parts, reason));
                    }
                    Err(err) => {
                        return Err(rejection_response(manager, parts, Reason::Unavailable(err)))
                    }
                }
            }
        }
        Ok(Box::new(user))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The extension through which guards and `AuthSession` reach the context.
#[derive(Clone)]
pub(crate) struct DynAuthHandle(pub Arc<dyn DynAuth>);

#[cfg(test)]
mod tests {
    use super::*;

    fn record(login_at: i64, fresh_at: Option<i64>, last_seen: i64) -> AuthRecord {
        AuthRecord {
            user_id: serde_json::json!(1),
            auth_hash: String::new(),
            login_at,
            fresh_at,
            last_seen,
            protection_id: None,
            remembered: false,
        }
    }

    /// Found while fuzzing (docs/fuzzing.md): `now - i64::MIN` overflowed, a panic in debug
    /// builds and, in release builds, a negative age that never expired and stayed fresh.
    #[test]
    fn extreme_timestamps_expire_instead_of_overflowing() {
        let now = now();
        let ancient = record(i64::MIN, Some(i64::MIN), i64::MIN);
        let (hour, day) = (
            Some(time::Duration::hours(1)),
            Some(time::Duration::days(1)),
        );
        assert_eq!(
            ancient.expiry(now, day, hour),
            Some(EndReason::AbsoluteTimeout)
        );
        assert_eq!(
            ancient.expiry(now, None, hour),
            Some(EndReason::IdleTimeout)
        );
        assert!(ancient.last_seen_due(now, time::Duration::minutes(30)));
        let state = AuthState::<()> {
            user: None,
            record: Some(ancient),
            source: Source::Session,
        };
        assert!(!state.is_fresh(hour));

        let current = record(now, Some(now), now);
        assert_eq!(current.expiry(now, day, hour), None);
        assert!(!current.last_seen_due(now, time::Duration::minutes(30)));
    }
}
