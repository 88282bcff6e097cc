//! Redis stores (feature `redis`): [`RedisRememberStore`], [`RedisThrottleStore`],
//! [`RedisLoginStore`] and [`RedisTokenStore`], one implementation on a fred 10 `Pool`. The key
//! layout is documented in [`crate::stores`].

mod codec;
mod scripts;

use std::collections::HashMap;
use std::time::Duration;

use fred::clients::Pool;
use fred::interfaces::{HashesInterface, KeysInterface};

use super::shared::{backend, window_entry, window_millis};
use crate::remember::{token::ValidatorHash, RememberToken, Rotation};
use crate::throttle::ThrottleEntry;
use crate::{error::BoxError, LoginTouch, Result, StoredLogin, StoredToken};
use codec::{
    decode_login, encode_login, escape_prefix, millis, one_time_token_fields,
    one_time_token_from_fields, tag, token_from_fields,
};
use scripts::{
    CREATE, CREATE_ONE_TIME_TOKEN, DELETE, DELETE_FOR_USER, DELETE_LOGIN, DELETE_LOGINS_FOR_USER,
    FAILURES, GET_LOGIN, LIST_FOR_USER, LIST_LOGINS, PUT_LOGIN, RECORD_FAILURE, RESOLVE_AND_EXTEND,
    ROTATE, SET_POINTER, TAKE_ONE_TIME_TOKEN, TOUCH_LOGIN,
};

/// The default key prefix.
const DEFAULT_PREFIX: &str = "login:";

/// Remember-me tokens: the keys of [`RedisRememberStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RememberKeys;

/// Throttle windows: the keys of [`RedisThrottleStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThrottleKeys;

/// The login index: the keys of [`RedisLoginStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginKeys;

/// One-time tokens: the keys of [`RedisTokenStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenKeys;

/// A store in Redis, for one kind of data (`K`): the one implementation that
/// [`RedisRememberStore`], [`RedisThrottleStore`], [`RedisLoginStore`] and [`RedisTokenStore`]
/// wrap.
#[derive(Clone)]
pub(crate) struct RedisStore<K> {
    pool: Pool,
    prefix: String,
    kind: std::marker::PhantomData<K>,
}

impl<K> RedisStore<K> {
    fn new(pool: Pool) -> Self {
        Self {
            pool,
            prefix: DEFAULT_PREFIX.to_owned(),
            kind: std::marker::PhantomData,
        }
    }

    fn set_prefix(mut self, prefix: &str) -> Self {
        self.prefix = escape_prefix(prefix);
        self
    }
}

/// Defines one public Redis store type: a newtype around [`RedisStore`] with the builder
/// (`new`, `key_prefix`, `pool`, `DEFAULT_PREFIX`) and the store trait, each documented with
/// an example naming the type itself.
macro_rules! redis_store {
    ($(#[$doc:meta])* pub struct $name:ident($kind:ty): $store_trait:ident;) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(RedisStore<$kind>);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("prefix", &self.0.prefix)
                    .finish_non_exhaustive()
            }
        }

        impl $name {
            /// The default key prefix, `login:`.
            ///
            /// ```
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("assert_eq!(", stringify!($name), "::DEFAULT_PREFIX, \"login:\");")]
            /// ```
            pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

            /// A store on `pool` (which the caller [`init`](fred::prelude::ClientLike::init)s),
            /// keys under [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX).
            ///
            /// ```no_run
            /// # fn run(pool: fred::clients::Pool) {
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("let store = ", stringify!($name), "::new(pool);")]
            /// # }
            /// ```
            pub fn new(pool: Pool) -> Self {
                Self(RedisStore::new(pool))
            }

            /// Puts the keys under `prefix` (default `login:`). Braces in it are
            /// percent-encoded, as they would otherwise break the hash tags.
            ///
            /// ```no_run
            /// # fn run(pool: fred::clients::Pool) {
            #[doc = concat!("use login_manager::stores::", stringify!($name), ";")]
            ///
            #[doc = concat!("let store = ", stringify!($name), "::new(pool).key_prefix(\"myapp:\");")]
            /// # }
            /// ```
            #[must_use]
            pub fn key_prefix(self, prefix: impl AsRef<str>) -> Self {
                Self(self.0.set_prefix(prefix.as_ref()))
            }

            /// The pool.
            ///
            /// ```no_run
            #[doc = concat!("# fn run(store: login_manager::stores::", stringify!($name), ") {")]
            /// let pool: fred::clients::Pool = store.pool().clone();
            /// # }
            /// ```
            pub fn pool(&self) -> &Pool {
                &self.0.pool
            }
        }

        delegate_store!($store_trait for $name);
    };
}

redis_store! {
    /// Remember-me tokens in Redis: a [`RememberStore`](crate::RememberStore) (see
    /// [Redis](crate::stores#redis) for the key layout and Redis Cluster).
    ///
    /// Clones share the pool. Times are kept to the millisecond. Expired tokens are removed by
    /// Redis itself, so [`find`](crate::RememberStore::find) never returns one and
    /// [`delete_expired`](crate::RememberStore::delete_expired) has nothing to do.
    ///
    /// ```no_run
    /// # fn run(pool: fred::clients::Pool) {
    /// use login_manager::stores::RedisRememberStore;
    /// use login_manager::Remember;
    ///
    /// let store = RedisRememberStore::new(pool).key_prefix("myapp:login:");
    /// let remember = Remember::new(store);
    /// # }
    /// ```
    pub struct RedisRememberStore(RememberKeys): RememberStore;
}

redis_store! {
    /// Login-throttle windows in Redis: a [`ThrottleStore`](crate::ThrottleStore) keeping one
    /// counter per key, `INCR` and an expiry set by the increment that opened the window, in
    /// one Lua script, as `login:throttle:<key>` with the default prefix (see
    /// [Redis](crate::stores#redis)). Redis measures the window and deletes it when it ends.
    /// Clones share the pool.
    ///
    /// ```no_run
    /// # fn run(pool: fred::clients::Pool) {
    /// use login_manager::stores::RedisThrottleStore;
    /// use login_manager::LoginThrottle;
    ///
    /// let throttle = LoginThrottle::new(RedisThrottleStore::new(pool));
    /// # }
    /// ```
    pub struct RedisThrottleStore(ThrottleKeys): ThrottleStore;
}

redis_store! {
    /// The login index in Redis: a [`LoginStore`](crate::LoginStore) keeping each user's
    /// logins in one hash, `login:logins:{<tag>}` with the default prefix (entry id → the
    /// entry as JSON; see [Redis](crate::stores#redis)). Every operation is one Lua script on
    /// that one key, so it is atomic, also on a Redis Cluster: the bound on a user's logins
    /// holds however many logins race. The hash expires with its latest entry; an expired
    /// entry in a live hash is never returned by `get` or `list` (the server's clock
    /// decides), and `list` deletes it. [`delete_expired`](crate::LoginStore::delete_expired)
    /// has nothing to do and answers 0. Clones share the pool.
    ///
    /// ```no_run
    /// # fn run(pool: fred::clients::Pool, sessions: tower_sessions::MemoryStore) {
    /// use login_manager::stores::RedisLoginStore;
    /// use login_manager::LoginIndex;
    ///
    /// // `sessions`: a clone of the SessionManagerLayer's store.
    /// let index = LoginIndex::new(RedisLoginStore::new(pool), sessions);
    /// # }
    /// ```
    pub struct RedisLoginStore(LoginKeys): LoginStore;
}

redis_store! {
    /// One-time tokens (password reset, email verification, magic links) in Redis: a
    /// [`TokenStore`](crate::TokenStore) keeping each token in one hash,
    /// `login:token:<selector>` with the default prefix (fields as the SQL columns; see
    /// [Redis](crate::stores#redis)), which expires at the token's `expires_at`.
    /// [`take`](crate::TokenStore::take) is one Lua script on that one key (compare the stored
    /// hash, delete), so of racing consumptions exactly one wins, also on a Redis Cluster.
    /// Redis deletes expired tokens itself: [`find`](crate::TokenStore::find) never returns
    /// one, and [`delete_expired`](crate::TokenStore::delete_expired) has nothing to do and
    /// answers 0. Clones share the pool.
    ///
    /// ```no_run
    /// # fn run(pool: fred::clients::Pool) {
    /// use login_manager::stores::RedisTokenStore;
    /// use login_manager::OneTimeTokens;
    ///
    /// let tokens = OneTimeTokens::new(RedisTokenStore::new(pool));
    /// # }
    /// ```
    pub struct RedisTokenStore(TokenKeys): TokenStore;
}

/// The operations of [`RememberStore`](crate::RememberStore).
impl RedisStore<RememberKeys> {
    pub(crate) async fn create(&self, token: RememberToken) -> Result<()> {
        backend(self.run_create(token)).await
    }

    pub(crate) async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        backend(self.run_find(selector)).await
    }

    pub(crate) async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool> {
        backend(self.run_rotate(selector, expected, rotation)).await
    }

    pub(crate) async fn delete(&self, selector: &str) -> Result<()> {
        backend(self.run_delete(selector)).await
    }

    pub(crate) async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        backend(self.run_delete_for_user(user_id)).await
    }

    pub(crate) async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        backend(self.run_list_for_user(user_id)).await
    }

    /// Redis expires tokens by itself: nothing to do, 0.
    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    fn pointer_key(&self, selector: &str) -> String {
        format!("{}remember:selector:{selector}", self.prefix)
    }

    fn set_key(&self, user_id: &str) -> String {
        format!("{}remember:user:{{{}}}", self.prefix, tag(user_id))
    }

    /// A token's key without the selector, as the per-user scripts build it.
    fn token_key_prefix(&self, user_id: &str) -> String {
        format!("{}remember:token:{{{}}}:", self.prefix, tag(user_id))
    }

    fn token_key(&self, user_id: &str, selector: &str) -> String {
        format!("{}{selector}", self.token_key_prefix(user_id))
    }

    async fn run_create(&self, token: RememberToken) -> std::result::Result<(), BoxError> {
        let expires = millis(token.expires_at);
        // The pointer first: a token is never stored without a way to find and delete it; a
        // failure in between leaves only a pointer to nothing, which expires with the token.
        let _: i64 = SET_POINTER
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer_key(&token.selector)],
                vec![token.user_id.clone(), expires.to_string()],
            )
            .await?;
        let mut args = vec![token.selector.clone(), expires.to_string()];
        let mut field = |name: &str, value: String| {
            args.push(name.to_owned());
            args.push(value);
        };
        field("selector", token.selector.clone());
        field("validator_hash", hex::encode(token.validator_hash));
        if let Some(previous) = token.previous_hash {
            field("previous_hash", hex::encode(previous));
        }
        if let Some(rotated_at) = token.rotated_at {
            field("rotated_at", millis(rotated_at).to_string());
        }
        field("user_id", token.user_id.clone());
        field("auth_hash", token.auth_hash);
        field("created_at", millis(token.created_at).to_string());
        field("last_used_at", millis(token.last_used_at).to_string());
        field("expires_at", expires.to_string());
        field("user_agent", token.user_agent);
        let keys = vec![
            self.token_key(&token.user_id, &token.selector),
            self.set_key(&token.user_id),
        ];
        let _: i64 = CREATE
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await?;
        Ok(())
    }

    async fn run_find(
        &self,
        selector: &str,
    ) -> std::result::Result<Option<RememberToken>, BoxError> {
        let user: Option<String> = self.pool.get(self.pointer_key(selector)).await?;
        let Some(user) = user else { return Ok(None) };
        let fields: HashMap<String, String> =
            self.pool.hgetall(self.token_key(&user, selector)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        token_from_fields(fields).map(Some)
    }

    async fn run_rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> std::result::Result<bool, BoxError> {
        let expires = millis(rotation.expires_at);
        let user: Option<String> = RESOLVE_AND_EXTEND
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer_key(selector)],
                vec![expires.to_string()],
            )
            .await?;
        let Some(user) = user else { return Ok(false) };
        let keys = vec![self.token_key(&user, selector), self.set_key(&user)];
        let args = vec![
            hex::encode(expected),
            hex::encode(rotation.new_hash),
            millis(rotation.rotated_at).to_string(),
            expires.to_string(),
        ];
        let won: i64 = ROTATE
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await?;
        Ok(won == 1)
    }

    async fn run_delete(&self, selector: &str) -> std::result::Result<(), BoxError> {
        let pointer = self.pointer_key(selector);
        let user: Option<String> = self.pool.get(&pointer).await?;
        if let Some(user) = user {
            let keys = vec![self.token_key(&user, selector), self.set_key(&user)];
            let _: i64 = DELETE
                .evalsha_with_reload(self.pool.next(), keys, vec![selector])
                .await?;
        }
        // The pointer last, so that a failure above leaves the token findable for a retry.
        let _: i64 = self.pool.del(pointer).await?;
        Ok(())
    }

    async fn run_delete_for_user(&self, user_id: &str) -> std::result::Result<u64, BoxError> {
        let deleted: Vec<String> = DELETE_FOR_USER
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.set_key(user_id)],
                vec![self.token_key_prefix(user_id), user_id.to_owned()],
            )
            .await?;
        // The tokens are gone (atomically, above); their pointers live in other slots, one
        // `DEL` each. A pointer left behind by a failure points to nothing and expires with
        // the token it named, so failures here are only logged: revoking did succeed.
        for selector in &deleted {
            if let Err(error) = self.pool.del::<i64, _>(self.pointer_key(selector)).await {
                tracing::warn!(%error, "remember store: a revoked token's selector key was left behind");
            }
        }
        Ok(deleted.len() as u64)
    }

    async fn run_list_for_user(
        &self,
        user_id: &str,
    ) -> std::result::Result<Vec<RememberToken>, BoxError> {
        let tokens: Vec<Vec<String>> = LIST_FOR_USER
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.set_key(user_id)],
                vec![self.token_key_prefix(user_id), user_id.to_owned()],
            )
            .await?;
        tokens
            .into_iter()
            .map(|flat| {
                let mut fields = HashMap::with_capacity(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                    fields.insert(name, value);
                }
                token_from_fields(fields)
            })
            .collect()
    }
}

/// The operations of [`ThrottleStore`](crate::ThrottleStore).
impl RedisStore<ThrottleKeys> {
    pub(crate) async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        let window: Option<(i64, i64)> = backend(FAILURES.evalsha_with_reload(
            self.pool.next(),
            vec![self.key(key)],
            Vec::<String>::new(),
        ))
        .await?;
        Ok(window.map(|(count, left)| window_entry(count, left)))
    }

    pub(crate) async fn record_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<ThrottleEntry> {
        let (count, left): (i64, i64) = backend(RECORD_FAILURE.evalsha_with_reload(
            self.pool.next(),
            vec![self.key(key)],
            vec![window_millis(window)],
        ))
        .await?;
        Ok(window_entry(count, left))
    }

    pub(crate) async fn reset(&self, key: &str) -> Result<()> {
        backend(self.pool.del::<i64, _>(self.key(key)))
            .await
            .map(drop)
    }

    fn key(&self, key: &str) -> String {
        format!("{}throttle:{key}", self.prefix)
    }
}

/// The operations of [`LoginStore`](crate::LoginStore): one script each, on the user's hash.
impl RedisStore<LoginKeys> {
    pub(crate) async fn put(
        &self,
        login: StoredLogin,
        max_per_user: usize,
    ) -> Result<Vec<StoredLogin>> {
        backend(async {
            let args = vec![
                login.id.clone(),
                encode_login(&login)?,
                // At least one, as the memory store.
                max_per_user.max(1).to_string(),
            ];
            let removed: Vec<String> = PUT_LOGIN
                .evalsha_with_reload(self.pool.next(), vec![self.key(&login.user_id)], args)
                .await?;
            decode_all(&removed, &login.user_id)
        })
        .await
    }

    pub(crate) async fn get(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        backend(async {
            let raw: Option<String> = GET_LOGIN
                .evalsha_with_reload(self.pool.next(), vec![self.key(user_id)], vec![id])
                .await?;
            raw.map(|raw| decode_login(&raw, user_id)).transpose()
        })
        .await
    }

    pub(crate) async fn touch(&self, user_id: &str, id: &str, touch: LoginTouch) -> Result<bool> {
        backend(async {
            let (renamed, session_id) = match touch.session_id {
                Some(session_id) => ("1", session_id),
                None => ("0", String::new()),
            };
            let args = vec![
                id.to_owned(),
                millis(touch.last_used_at).to_string(),
                millis(touch.expires_at).to_string(),
                renamed.to_owned(),
                session_id,
            ];
            let touched: i64 = TOUCH_LOGIN
                .evalsha_with_reload(self.pool.next(), vec![self.key(user_id)], args)
                .await?;
            Ok::<_, BoxError>(touched == 1)
        })
        .await
    }

    pub(crate) async fn list(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        backend(async {
            let live: Vec<String> = LIST_LOGINS
                .evalsha_with_reload(
                    self.pool.next(),
                    vec![self.key(user_id)],
                    Vec::<String>::new(),
                )
                .await?;
            decode_all(&live, user_id)
        })
        .await
    }

    pub(crate) async fn delete(&self, user_id: &str, id: &str) -> Result<Option<StoredLogin>> {
        backend(async {
            let raw: Option<String> = DELETE_LOGIN
                .evalsha_with_reload(self.pool.next(), vec![self.key(user_id)], vec![id])
                .await?;
            raw.map(|raw| decode_login(&raw, user_id)).transpose()
        })
        .await
    }

    pub(crate) async fn delete_for_user(&self, user_id: &str) -> Result<Vec<StoredLogin>> {
        backend(async {
            let all: Vec<String> = DELETE_LOGINS_FOR_USER
                .evalsha_with_reload(
                    self.pool.next(),
                    vec![self.key(user_id)],
                    Vec::<String>::new(),
                )
                .await?;
            decode_all(&all, user_id)
        })
        .await
    }

    /// Redis expires a user's hash with its latest entry, and `list` deletes expired entries
    /// in a live one: nothing to do, 0.
    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    /// The user's hash.
    fn key(&self, user_id: &str) -> String {
        format!("{}logins:{{{}}}", self.prefix, tag(user_id))
    }
}

/// The operations of [`TokenStore`](crate::TokenStore): one key per token, so every operation
/// touches one slot.
impl RedisStore<TokenKeys> {
    pub(crate) async fn create(&self, token: StoredToken) -> Result<()> {
        let mut args = vec![millis(token.expires_at).to_string()];
        args.extend(one_time_token_fields(&token));
        let _: i64 = backend(CREATE_ONE_TIME_TOKEN.evalsha_with_reload(
            self.pool.next(),
            vec![self.key(&token.selector)],
            args,
        ))
        .await?;
        Ok(())
    }

    /// `HGETALL`: an expired token's key is gone (Redis checks the expiry on every read).
    pub(crate) async fn find(&self, selector: &str) -> Result<Option<StoredToken>> {
        backend(async {
            let fields: HashMap<String, String> = self.pool.hgetall(self.key(selector)).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            one_time_token_from_fields(fields).map(Some)
        })
        .await
    }

    pub(crate) async fn take(&self, selector: &str, validator_hash: &[u8; 32]) -> Result<bool> {
        let taken: i64 = backend(TAKE_ONE_TIME_TOKEN.evalsha_with_reload(
            self.pool.next(),
            vec![self.key(selector)],
            vec![hex::encode(validator_hash)],
        ))
        .await?;
        Ok(taken == 1)
    }

    /// Each token's key expires at its `expires_at`: nothing to do, 0.
    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    /// The token's hash.
    fn key(&self, selector: &str) -> String {
        format!("{}token:{selector}", self.prefix)
    }
}

fn decode_all(raw: &[String], user_id: &str) -> std::result::Result<Vec<StoredLogin>, BoxError> {
    raw.iter().map(|raw| decode_login(raw, user_id)).collect()
}
