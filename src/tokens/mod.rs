//! One-time tokens (DESIGN.md invariant 11): password reset, email verification, magic links —
//! [`OneTimeTokens`], what a consumption gives ([`TokenOutcome`]), and the store behind them.

use std::{net::IpAddr, sync::Arc, time::Duration};

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

mod store;

pub use store::{MemoryTokenStore, StoredToken, TokenStore};

use crate::{
    record::{auth_hash_digest, digest_matches, time_span},
    remember::{
        token::{mint, parse_token},
        user_key,
    },
    timeout::{loader_call, timed},
    AuthUser, Error, LoginThrottle, Result, UserLoader,
};

/// Default bound of each store and loader call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One-time tokens for password reset, email verification and magic-link login: random,
/// stored hashed, single-use under concurrency, expiring, bound to the user's
/// [`session_auth_hash`](AuthUser::session_auth_hash) (a password change voids every
/// outstanding token of the user) and throttled.
///
/// A token is a split token `selector.validator` like the remember-me cookie (16 + 32 random
/// bytes, base64url, 66 characters: fits a URL as is). The store keeps the selector and
/// SHA-256(validator), the purpose, the user, a digest of the user's auth hash and the expiry;
/// the validator is compared in constant time, and [`TokenStore::take`] lets exactly one of
/// racing consumptions win.
///
/// ```
/// # use login_manager::{AuthUser, UserLoader};
/// # #[derive(Clone)] struct User { id: u32, hash: String }
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { self.id } fn session_auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
/// # #[derive(Clone)] struct Users(User);
/// # impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
/// #   async fn load_user(&self, id: &u32) -> Result<Option<User>, Self::Error> { Ok((*id == self.0.id).then(|| self.0.clone())) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> login_manager::Result<()> {
/// use std::time::Duration;
/// use login_manager::{MemoryTokenStore, OneTimeTokens, TokenOutcome};
///
/// let tokens = OneTimeTokens::new(MemoryTokenStore::new());
/// let alice = User { id: 1, hash: "argon2-hash".into() };
/// let users = Users(alice.clone());
///
/// let token = tokens.issue(&alice, "password-reset", Duration::from_secs(30 * 60)).await?;
/// // ... mail a link with `token` ...
/// let outcome = tokens.consume(&users, &token, "password-reset", None).await?;
/// assert!(matches!(outcome, TokenOutcome::Valid(user) if user.id == 1));
/// // Single use:
/// let again = tokens.consume(&users, &token, "password-reset", None).await?;
/// assert!(matches!(again, TokenOutcome::Invalid));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OneTimeTokens {
    store: Arc<dyn TokenStore>,
    throttle: Option<LoginThrottle>,
    timeout: Duration,
}

impl std::fmt::Debug for OneTimeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeTokens")
            .field("throttle", &self.throttle)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What [`OneTimeTokens::consume`] made of a token: like [`LoginOutcome`](crate::LoginOutcome),
/// a value, never an error an app's `?` would turn into a response of its own.
#[derive(Debug, Clone)]
pub enum TokenOutcome<U> {
    /// The token was live, of this purpose, and its user still has the auth hash it was
    /// issued under: it is now used up.
    Valid(U),
    /// Unknown, malformed, tampered, expired, already used, of another purpose, or issued
    /// before the user's last credential change — one answer for all.
    Invalid,
    /// Too many failed tokens for this token or this client address.
    Throttled {
        /// How long until the window that refused it ends.
        retry_after: Duration,
    },
}

impl OneTimeTokens {
    /// Tokens in `store`, not throttled, 5 s bound on each store and loader call.
    pub fn new(store: impl TokenStore) -> Self {
        Self {
            store: Arc::new(store),
            throttle: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Counts failed consumptions per token and per client address with `throttle` (its
    /// limits and window apply; token keys have a namespace of their own, apart from
    /// accounts; a token that does not even parse counts for the address only), refusing
    /// with [`TokenOutcome::Throttled`] past them. Use a throttle of its own or the login one
    /// (then bad links and failed logins from one address spend one budget).
    pub fn throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// The bound of each store and loader call (default 5 s): past it,
    /// [`Error::Timeout`](crate::Error::Timeout) (503).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The token store (for a cleanup task calling [`TokenStore::delete_expired`]).
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// A new token for `user` and `purpose`, valid for `ttl`.
    pub async fn issue<U: AuthUser>(
        &self,
        user: &U,
        purpose: &str,
        ttl: Duration,
    ) -> Result<String> {
        let minted = mint();
        let now = OffsetDateTime::now_utc();
        let token = StoredToken {
            selector: minted.selector,
            validator_hash: minted.validator_hash,
            purpose: purpose.to_owned(),
            user_id: user_key(user)?,
            auth_hash: auth_hash_digest(user.session_auth_hash()),
            created_at: now,
            expires_at: now.saturating_add(time_span(ttl)),
        };
        timed(self.timeout, "token store", self.store.create(token)).await?;
        Ok(minted.cookie_value)
    }

    /// [`issue`](Self::issue) for a user that may not exist ("forgot password" for whatever
    /// name was typed): `None` for an unknown account, after the same work as for a real one
    /// — a token minted, hashed and written to the store, already expired and for no user
    /// (nothing can ever use it; stores drop it like any expired token) — so that the
    /// answer's timing does not tell which accounts exist. Send the mail off the request path
    /// (`tokio::spawn`), or its time would tell instead.
    pub async fn issue_if_known<U: AuthUser>(
        &self,
        user: Option<&U>,
        purpose: &str,
        ttl: Duration,
    ) -> Result<Option<String>> {
        match user {
            Some(user) => self.issue(user, purpose, ttl).await.map(Some),
            None => {
                let decoy = mint();
                let now = OffsetDateTime::now_utc();
                let token = StoredToken {
                    selector: decoy.selector,
                    validator_hash: decoy.validator_hash,
                    purpose: purpose.to_owned(),
                    user_id: "null".to_owned(),
                    auth_hash: String::new(),
                    created_at: now,
                    expires_at: now,
                };
                timed(self.timeout, "token store", self.store.create(token)).await?;
                Ok(None)
            }
        }
    }

    /// Uses up `token` if it is a live token of `purpose` whose user (loaded with `loader`)
    /// is active and still has the auth hash it was issued under. `client` is the request's
    /// address for the throttle ([`LoginThrottle::client_addr`]).
    ///
    /// Validate the rest of the form first (a new password's length, say): a used token is
    /// gone, whatever the handler does next.
    ///
    /// Store and loader failures are errors (503); everything about the token itself is a
    /// [`TokenOutcome`].
    pub async fn consume<L: UserLoader>(
        &self,
        loader: &L,
        token: &str,
        purpose: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenOutcome<L::User>> {
        self.judge(loader, token, purpose, client, true).await
    }

    /// What [`consume`](Self::consume) would answer, without using the token up: for the
    /// page a link opens (show the form, or "this link is invalid or has expired" at once).
    /// Counted and throttled like `consume`.
    pub async fn peek<L: UserLoader>(
        &self,
        loader: &L,
        token: &str,
        purpose: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenOutcome<L::User>> {
        self.judge(loader, token, purpose, client, false).await
    }

    async fn judge<L: UserLoader>(
        &self,
        loader: &L,
        token: &str,
        purpose: &str,
        client: Option<IpAddr>,
        use_up: bool,
    ) -> Result<TokenOutcome<L::User>> {
        let presented = parse_token(token);
        let selector = presented.as_ref().map(|t| t.selector.as_str());
        if let Some(throttle) = &self.throttle {
            match throttle.check_token(selector, client).await {
                Err(Error::Throttled { retry_after }) => {
                    return Ok(TokenOutcome::Throttled { retry_after })
                }
                other => other?,
            }
        }
        let user = match &presented {
            Some(presented) => self.valid_user(loader, presented, purpose, use_up).await?,
            None => None,
        };
        match user {
            Some(user) => Ok(TokenOutcome::Valid(user)),
            None => {
                if let Some(throttle) = &self.throttle {
                    throttle.record_token_failure(selector, client).await?;
                }
                Ok(TokenOutcome::Invalid)
            }
        }
    }

    async fn valid_user<L: UserLoader>(
        &self,
        loader: &L,
        presented: &crate::remember::token::ParsedToken,
        purpose: &str,
        use_up: bool,
    ) -> Result<Option<L::User>> {
        let limit = self.timeout;
        let found = timed(limit, "token store", self.store.find(&presented.selector)).await?;
        let Some(stored) = found else {
            return Ok(None);
        };
        let validator_ok = bool::from(stored.validator_hash.ct_eq(&presented.validator_hash));
        let purpose_ok = bool::from(stored.purpose.as_bytes().ct_eq(purpose.as_bytes()));
        if !(validator_ok && purpose_ok) {
            return Ok(None);
        }
        if use_up {
            let take = self.store.take(&stored.selector, &stored.validator_hash);
            if !timed(limit, "token store", take).await? {
                return Ok(None);
            }
        }
        let Ok(id) = serde_json::from_str(&stored.user_id) else {
            return Ok(None);
        };
        let user = loader_call(limit, loader.load_user(&id)).await?;
        Ok(user
            .filter(|u| u.is_active() && digest_matches(&stored.auth_hash, u.session_auth_hash())))
    }
}
