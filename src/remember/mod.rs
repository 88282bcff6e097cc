//! Remember-me that can be revoked: the [`Remember`] settings, which document the token
//! format, rotation, the grace window and theft detection, and the token service behind them.

use std::{sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cookie::Cookie;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

mod store;
pub(crate) mod token;

pub use store::{MemoryRememberStore, RememberStore, RememberToken, Rotation};
use token::{parse_token, ParsedToken};

use crate::{
    config::CookieOptions,
    record::{auth_hash_digest, time_span},
    timeout::timed,
    AuthUser, Error, Result,
};

const USER_AGENT_LABEL_CHARS: usize = 120;
/// The default of [`Remember::max_devices`], as [`MemoryRememberStore`]'s own cap.
const DEFAULT_MAX_DEVICES: usize = 50;

/// Remember-me that can be revoked: the settings to pass to
/// [`LoginManager::remember`](crate::LoginManager::remember).
///
/// Flask-Login's remember cookie is `user_id|HMAC(SECRET_KEY)`: it never expires on the server
/// and cannot be revoked. Here a login with
/// [`LoginOptions::remember`](crate::LoginOptions::remember) stores a token in the
/// [`RememberStore`] and gives the browser a cookie that only names it.
///
/// # The token
///
/// The cookie (`remember_token` by default, see [`cookie`](Self::cookie)) is a split token
/// `selector.validator`. The selector (16 random bytes) finds the stored token; the validator
/// (32 random bytes) proves possession and is stored only as its SHA-256. Both are base64url
/// without padding, so a cookie is 66 characters; any other value is treated as no cookie at
/// all. The store keeps only SHA-256(validator), finds tokens by selector, and the presented
/// validator is compared in constant time. Expiry is enforced by the server
/// ([`duration`](Self::duration), default 30 days), not by the cookie.
///
/// # Rotation, grace window, theft
///
/// Every use — a request without a logged-in session whose cookie restores the login —
/// rotates the validator: the browser gets a new cookie, and the old validator becomes the
/// token's previous one ([`RememberStore::rotate`] lets exactly one of racing rotations win).
/// A rotated-out validator is still accepted for a short grace window
/// ([`grace_period`](Self::grace_period), default 10 s: two tabs restoring at once). After
/// that, presenting it means the cookie was copied: every token of the user is revoked, and
/// [`AuthEvent::RememberTheftDetected`](crate::AuthEvent::RememberTheftDetected) is emitted.
///
/// # Revocation
///
/// Tokens also die with a credential change (the digest of the user's
/// [`session_auth_hash`](crate::AuthUser::session_auth_hash) is stored with them), on logout,
/// and from a "your devices" page
/// ([`AuthSession::remember_devices`](crate::AuthSession::remember_devices),
/// [`revoke_device`](crate::AuthSession::revoke_device),
/// [`revoke_all_devices`](crate::AuthSession::revoke_all_devices)). One user keeps at most
/// [`max_devices`](Self::max_devices) tokens.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use login_manager::{MemoryRememberStore, Remember};
///
/// let remember = Remember::new(MemoryRememberStore::new())
///     .duration(Duration::from_secs(30 * 24 * 60 * 60))
///     .grace_period(Duration::from_secs(10))
///     .secure(false); // plain-HTTP development only
/// ```
#[derive(Clone)]
pub struct Remember {
    store: Arc<dyn RememberStore>,
    pub(crate) cookie: CookieOptions,
    pub(crate) cookie_name: String,
    duration: time::Duration,
    grace: time::Duration,
    refresh_each_request: bool,
    max_devices: usize,
}

impl std::fmt::Debug for Remember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remember")
            .field("cookie", &self.cookie)
            .field("duration", &self.duration)
            .field("grace", &self.grace)
            .field("refresh_each_request", &self.refresh_each_request)
            .field("max_devices", &self.max_devices)
            .finish_non_exhaustive()
    }
}

/// One remembered browser, for a "your devices" page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberDevice {
    /// An identifier derived from the token, safe to put in a page or URL (it cannot be used
    /// to restore or to trigger theft detection).
    pub id: String,
    /// When the user ticked "remember me".
    pub created_at: OffsetDateTime,
    /// When the token last restored a session.
    pub last_used_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// The browser's `User-Agent`, shortened.
    pub user_agent: String,
    /// Whether it is the browser making this request.
    pub current: bool,
}

// Returned once per restore and matched at once, never stored: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
/// What a presented remember cookie is worth. The caller loads the user, checks it against
/// `auth_hash`, writes the session and emits the events: this service only keeps tokens.
pub(crate) enum Restore {
    /// A live token (rotated now, or a grace-window replay of the previous validator).
    Valid {
        /// The token's selector, to forget it when its user no longer qualifies.
        selector: String,
        /// The user's key (see [`user_key`]).
        user_key: String,
        /// The auth-hash digest the token was minted under.
        auth_hash: String,
        /// The rotated cookie for the browser; `None` for a grace-window replay.
        cookie: Option<Cookie<'static>>,
        /// When the token stops working.
        expires_at: OffsetDateTime,
    },
    /// Unknown, malformed, expired or lost a rotation race: expire the cookie.
    Rejected,
    /// A rotated-out validator past the grace window: every token of the user was revoked.
    Stolen {
        /// The user's key (see [`user_key`]).
        user_key: String,
    },
}

impl Remember {
    /// Remember-me with tokens in `store`, cookie `remember_token`, 30 days, a 10 s grace
    /// window, secure cookie attributes.
    pub fn new(store: impl RememberStore) -> Self {
        let cookie = CookieOptions::new("remember_token");
        Self {
            store: Arc::new(store),
            cookie_name: cookie.cookie_name(),
            cookie,
            duration: time::Duration::days(30),
            grace: time::Duration::seconds(10),
            refresh_each_request: false,
            max_devices: DEFAULT_MAX_DEVICES,
        }
    }

    /// How long a token lives (default 30 days); [`LoginOptions::duration`](crate::LoginOptions::duration)
    /// overrides it per login.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = time_span(duration);
        self
    }

    /// How long a rotated-out validator is still accepted, for parallel requests (default
    /// 10 s). Past it, a replay counts as theft.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = time_span(grace);
        self
    }

    /// Slide the expiry forward on each use (default off: a token lives `duration` from the
    /// login).
    pub fn refresh_each_request(mut self, on: bool) -> Self {
        self.refresh_each_request = on;
        self
    }

    /// How many remembered browsers one user may have (default 50, at least 1). A remember-me
    /// login beyond it forgets the user's least recently used tokens (expired ones first), in
    /// every store: the shared stores have no cap of their own, and without one a user's
    /// token list (and the work of listing or revoking it) would grow with every login.
    ///
    /// ```
    /// use login_manager::{MemoryRememberStore, Remember};
    ///
    /// let remember = Remember::new(MemoryRememberStore::new()).max_devices(10);
    /// ```
    pub fn max_devices(mut self, max: usize) -> Self {
        self.max_devices = max.max(1);
        self
    }

    /// The cookie's attributes (default name `remember_token`, secure attributes).
    pub fn cookie(mut self, cookie: CookieOptions) -> Self {
        self.cookie_name = cookie.cookie_name();
        self.cookie = cookie;
        self
    }

    /// Shorthand for the cookie's `Secure` attribute (turn off only for plain HTTP).
    pub fn secure(self, secure: bool) -> Self {
        let cookie = self.cookie.clone().secure(secure);
        self.cookie(cookie)
    }

    /// The cookie's name in requests (with the `__Host-` prefix when set).
    pub(crate) fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The token store.
    pub fn store(&self) -> &Arc<dyn RememberStore> {
        &self.store
    }

    /// A new token for `user` and its cookie, not stored yet (see [`save`](Self::save)): the
    /// login index names the token before the token exists.
    pub(crate) fn mint<U: AuthUser>(
        &self,
        user: &U,
        duration: Option<Duration>,
        user_agent: &str,
    ) -> Result<(RememberToken, Cookie<'static>)> {
        let minted = token::mint();
        let now = OffsetDateTime::now_utc();
        let lifetime = duration.map_or(self.duration, time_span);
        let token = RememberToken {
            selector: minted.selector,
            validator_hash: minted.validator_hash,
            previous_hash: None,
            rotated_at: None,
            user_id: user_key(user)?,
            auth_hash: auth_hash_digest(user.session_auth_hash()),
            created_at: now,
            last_used_at: now,
            expires_at: now + lifetime,
            user_agent: user_agent.chars().take(USER_AGENT_LABEL_CHARS).collect(),
        };
        Ok((token, self.cookie.build(minted.cookie_value, lifetime)))
    }

    /// Stores a token made by [`mint`](Self::mint), making room among the user's tokens first
    /// (a failure in between leaves no token without a cookie).
    pub(crate) async fn save(&self, limit: Duration, token: RememberToken) -> Result<()> {
        self.make_room(limit, &token.user_id, token.created_at)
            .await?;
        timed(limit, "remember store", self.store.create(token)).await
    }

    /// Deletes the user's tokens beyond `max_devices - 1`: expired ones first, then the least
    /// recently used.
    async fn make_room(&self, limit: Duration, user_id: &str, now: OffsetDateTime) -> Result<()> {
        let mut tokens = timed(limit, "remember store", self.store.list_for_user(user_id)).await?;
        let keep = self.max_devices - 1;
        if tokens.len() <= keep {
            return Ok(());
        }
        tokens.sort_by_key(|t| std::cmp::Reverse((t.expires_at > now, t.last_used_at)));
        for old in &tokens[keep..] {
            timed(limit, "remember store", self.store.delete(&old.selector)).await?;
        }
        Ok(())
    }

    /// Step 2b of the life-cycle: checks the cookie of a request without a logged-in
    /// session, rotating its validator (or, past the grace window, revoking the user's tokens).
    pub(crate) async fn restore(&self, limit: Duration, cookie_value: &str) -> Result<Restore> {
        let Some(presented) = parse_token(cookie_value) else {
            return Ok(Restore::Rejected);
        };
        let store = &self.store;
        let Some(token) = timed(limit, "remember store", store.find(&presented.selector)).await?
        else {
            return Ok(Restore::Rejected);
        };
        let now = OffsetDateTime::now_utc();
        if token.expires_at <= now {
            timed(limit, "remember store", store.delete(&token.selector)).await?;
            return Ok(Restore::Rejected);
        }

        let mut new_cookie = None;
        let mut expires_at = token.expires_at;
        if bool::from(token.validator_hash.ct_eq(&presented.validator_hash)) {
            let (validator, new_hash) = token::mint_validator();
            if self.refresh_each_request {
                expires_at = now + self.duration;
            }
            let rotation = Rotation {
                new_hash,
                rotated_at: now,
                expires_at,
            };
            let won = timed(
                limit,
                "remember store",
                store.rotate(&token.selector, &token.validator_hash, rotation),
            )
            .await?;
            if won {
                let value = token::cookie_value(&token.selector, &validator);
                new_cookie = Some(self.cookie.build(value, expires_at - now));
            } else {
                // A parallel request rotated first: ours is now a grace-window replay.
                let rotated = timed(limit, "remember store", store.find(&token.selector)).await?;
                if !rotated.is_some_and(|t| self.in_grace(&t, &presented, now)) {
                    return Ok(Restore::Rejected);
                }
            }
        } else if !self.in_grace(&token, &presented, now) {
            let revoked = timed(
                limit,
                "remember store",
                store.delete_for_user(&token.user_id),
            )
            .await?;
            tracing::warn!(user_id = %token.user_id, revoked, "remember-me token replayed");
            return Ok(Restore::Stolen {
                user_key: token.user_id,
            });
        }
        Ok(Restore::Valid {
            selector: token.selector,
            user_key: token.user_id,
            auth_hash: token.auth_hash,
            cookie: new_cookie,
            expires_at,
        })
    }

    fn in_grace(
        &self,
        token: &RememberToken,
        presented: &ParsedToken,
        now: OffsetDateTime,
    ) -> bool {
        let previous_matches = token
            .previous_hash
            .is_some_and(|h| bool::from(h.ct_eq(&presented.validator_hash)));
        previous_matches && token.rotated_at.is_some_and(|at| now - at <= self.grace)
    }

    /// The selector of a remember cookie, if it is well-formed.
    pub(crate) fn selector_of(cookie_value: &str) -> Option<String> {
        parse_token(cookie_value).map(|t| t.selector)
    }

    /// Deletes the token named by `cookie_value` (a remember cookie), if it names one.
    pub(crate) async fn forget(&self, limit: Duration, cookie_value: &str) -> Result<()> {
        match parse_token(cookie_value) {
            Some(presented) => self.forget_selector(limit, &presented.selector).await,
            None => Ok(()),
        }
    }

    /// Deletes the token with this selector.
    pub(crate) async fn forget_selector(&self, limit: Duration, selector: &str) -> Result<()> {
        timed(limit, "remember store", self.store.delete(selector)).await
    }

    /// Every unexpired token of `user`, as devices.
    pub(crate) async fn devices<U: AuthUser>(
        &self,
        limit: Duration,
        user: &U,
        current_cookie: Option<&str>,
    ) -> Result<Vec<RememberDevice>> {
        let current = current_cookie.and_then(parse_token).map(|t| t.selector);
        let now = OffsetDateTime::now_utc();
        let tokens = timed(
            limit,
            "remember store",
            self.store.list_for_user(&user_key(user)?),
        )
        .await?;
        let mut devices: Vec<RememberDevice> = tokens
            .into_iter()
            .filter(|t| t.expires_at > now)
            .map(|t| RememberDevice {
                id: device_id(&t.selector),
                created_at: t.created_at,
                last_used_at: t.last_used_at,
                expires_at: t.expires_at,
                user_agent: t.user_agent,
                current: current.as_deref() == Some(t.selector.as_str()),
            })
            .collect();
        devices.sort_by_key(|d| std::cmp::Reverse(d.last_used_at));
        Ok(devices)
    }

    /// Deletes the token of `user` whose device id is `id`; whether one was found.
    pub(crate) async fn revoke_device<U: AuthUser>(
        &self,
        limit: Duration,
        user: &U,
        id: &str,
    ) -> Result<bool> {
        let tokens = timed(
            limit,
            "remember store",
            self.store.list_for_user(&user_key(user)?),
        )
        .await?;
        let Some(token) = tokens.into_iter().find(|t| device_id(&t.selector) == id) else {
            return Ok(false);
        };
        timed(limit, "remember store", self.store.delete(&token.selector)).await?;
        Ok(true)
    }

    /// Deletes every token of `user`.
    pub(crate) async fn revoke_user<U: AuthUser>(&self, limit: Duration, user: &U) -> Result<u64> {
        self.revoke_user_key(limit, &user_key(user)?).await
    }

    /// Deletes every token of the user with this key but the one with `keep` as selector;
    /// returns how many.
    pub(crate) async fn revoke_user_except(
        &self,
        limit: Duration,
        user_key: &str,
        keep: Option<&str>,
    ) -> Result<u64> {
        let tokens = timed(limit, "remember store", self.store.list_for_user(user_key)).await?;
        let mut revoked = 0;
        for token in tokens.iter().filter(|t| Some(t.selector.as_str()) != keep) {
            timed(limit, "remember store", self.store.delete(&token.selector)).await?;
            revoked += 1;
        }
        Ok(revoked)
    }

    /// Deletes every token of the user with this key (see [`user_key`]).
    pub(crate) async fn revoke_user_key(&self, limit: Duration, user_key: &str) -> Result<u64> {
        timed(
            limit,
            "remember store",
            self.store.delete_for_user(user_key),
        )
        .await
    }
}

/// The store's key for a user: the JSON encoding of the id.
pub(crate) fn user_key<U: AuthUser>(user: &U) -> Result<String> {
    user_key_of(&user.id())
}

/// The store's key for a user id (see [`user_key`]).
pub(crate) fn user_key_of<I: serde::Serialize>(id: &I) -> Result<String> {
    serde_json::to_string(id)
        .map_err(|e| Error::Config(format!("the user id does not serialize: {e}")))
}

/// A user key in the `Display` form events use (`"alice"` → `alice`).
pub(crate) fn display_user_key(key: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(key) {
        Ok(serde_json::Value::String(s)) => s,
        _ => key.to_owned(),
    }
}

/// A public, non-reversible name for a token (also the id of its browser's entry in the
/// login index).
pub(crate) fn device_id(selector: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(selector.as_bytes())[..12])
}
