//! Redis stores (feature `redis`): [`RedisRememberStore`] and [`RedisThrottleStore`], on a
//! fred 10 [`Pool`].
//!
//! Give them a clone of the [`Pool`] that `tower-sessions-redis-store` 0.16's `RedisStore`
//! uses (clones share the connections), and [`init`](fred::prelude::ClientLike::init) it
//! once. Every atomic step is one Lua script (`EVALSHA`, loaded again after a `NOSCRIPT`),
//! and no script touches two hash slots, so the layout works on Redis Cluster as it is.
//! Needs Redis 5 or later (or Valkey).
//!
//! # Keys
//!
//! Under a prefix (default `login:`), with `<tag>` the user id with `{`, `}` and `%`
//! percent-encoded:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `login:remember:token:{<tag>}:<selector>` | hash | one token | with the token |
//! | `login:remember:user:{<tag>}` | set | the user's selectors | with the user's last token |
//! | `login:remember:selector:<selector>` | string | the user id, to find a token by selector | with the token, or later |
//! | `login:throttle:<key>` | string | a failure count | with the window |
//!
//! One user's tokens and set share the hash tag `{<tag>}`, so listing and revoking all of a
//! user's tokens are single-slot scripts, atomic even on a Cluster. Finding a token by
//! selector therefore takes two round trips (selector → user, then the token).
//!
//! Redis deletes expired tokens and windows itself: [`RememberStore::delete_expired`] has
//! nothing to do and answers 0, and an expired token is simply not found. Members of the
//! per-user set whose token has expired are pruned whenever the set is listed.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use login_manager::stores::redis::{fred::prelude::*, RedisRememberStore, RedisThrottleStore};
//! use login_manager::{LoginThrottle, Remember};
//!
//! let pool = Pool::new(Config::from_url("redis://127.0.0.1:6379")?, None, None, None, 4)?;
//! pool.init().await?;
//! // let sessions = tower_sessions_redis_store::RedisStore::new(pool.clone());
//! let remember = Remember::new(RedisRememberStore::new(pool.clone()));
//! let throttle = LoginThrottle::new(RedisThrottleStore::new(pool));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Pool;
use fred::interfaces::{HashesInterface, KeysInterface};
use fred::types::scripts::Script;
use time::OffsetDateTime;

use super::{bounded, window_entry, window_millis, DEFAULT_TIMEOUT, REMEMBER, THROTTLE};
use crate::remember::{RememberStore, RememberToken, Rotation, ValidatorHash};
use crate::throttle::{ThrottleEntry, ThrottleStore};
use crate::{BoxError, Result};

/// The fred version these stores are built with, for building the [`Pool`].
pub use fred;

/// The default key prefix, `login:`.
///
/// ```
/// assert_eq!(login_manager::stores::redis::DEFAULT_PREFIX, "login:");
/// ```
pub const DEFAULT_PREFIX: &str = "login:";

/// Keeps a key (the per-user set, a selector pointer) alive at least until `expires_at`:
/// lengthens its expiry, never shortens it (server clock). A key without an expiry (which
/// these stores never write) gets one; a missing key stays missing.
const COVER: &str = r"
local function cover(key, expires_at)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < tonumber(expires_at) - now_ms then
    redis.call('PEXPIREAT', key, expires_at)
  end
end
";

/// KEYS: selector pointer. ARGV: user id, expires_at ms. `SET … PXAT` in two commands that
/// Redis 5 and 6.0 also have (`PXAT` came in 6.2).
static SET_POINTER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1",
    )
});

/// KEYS: token, user set. ARGV: selector, expires_at ms, then the hash's field/value pairs.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{COVER}
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
cover(KEYS[2], ARGV[2])
return 1"
    ))
});

/// KEYS: token, user set. ARGV: expected hash, new hash, rotated_at ms, expires_at ms.
/// The compare-and-swap of the validator: 1 when this call won, 0 otherwise.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{COVER}
local current = redis.call('HGET', KEYS[1], 'validator_hash')
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'previous_hash', current, 'validator_hash', ARGV[2],
  'rotated_at', ARGV[3], 'last_used_at', ARGV[3], 'expires_at', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
cover(KEYS[2], ARGV[4])
return 1"
    ))
});

/// KEYS: selector pointer. ARGV: expires_at ms. The user id, with the pointer made to live
/// at least as long as the token will after a rotation (it may slide the expiry). Only ever
/// lengthened: a call that then loses the rotation, or a late one, must not cut the winner's
/// pointer short (a pointer outliving its token only finds nothing).
static RESOLVE_AND_EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{COVER}
local user = redis.call('GET', KEYS[1])
if user then cover(KEYS[1], ARGV[1]) end
return user"
    ))
});

/// KEYS: token, user set. ARGV: selector.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1",
    )
});

/// KEYS: user set. ARGV: token key prefix (up to the selector), user id. Deletes the user's
/// tokens and returns their selectors. The token keys are built here from the set's members:
/// they carry the set's hash tag, so they are in its slot.
static DELETE_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local deleted = {}
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. selector
  local owner = redis.call('HGET', key, 'user_id')
  if owner == ARGV[2] then
    redis.call('DEL', key)
    table.insert(deleted, selector)
  end
  if owner == ARGV[2] or not owner then redis.call('SREM', KEYS[1], selector) end
end
return deleted",
    )
});

/// KEYS: user set. ARGV: token key prefix, user id. Every token of the user as a flat
/// field/value list; members whose token is gone (expired) are pruned from the set.
static LIST_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local tokens = {}
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local token = redis.call('HGETALL', ARGV[1] .. selector)
  if #token == 0 then
    redis.call('SREM', KEYS[1], selector)
  else
    local fields = {}
    for i = 1, #token, 2 do fields[token[i]] = token[i + 1] end
    if fields['user_id'] == ARGV[2] then table.insert(tokens, token) end
  end
end
return tokens",
    )
});

/// KEYS: counter. ARGV: window ms. `INCR`, then an expiry only if the key has none: the same
/// as `PEXPIRE … NX` (Redis 7), also on Redis 5 and 6. Returns `{count, ms left}`.
static RECORD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}",
    )
});

/// KEYS: counter. `{count, ms left}`, or nil when there is no open window.
static FAILURES: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local count = redis.call('GET', KEYS[1])
if not count then return nil end
return {tonumber(count), redis.call('PTTL', KEYS[1])}",
    )
});

/// Escapes `{`, `}` and `%` so that a user id never ends a hash tag early or starts
/// another; injective, so distinct users keep distinct keys. The empty id becomes a lone `%`,
/// which no escape produces, because an empty tag `{}` would not be a tag at all.
fn tag(user_id: &str) -> String {
    if user_id.is_empty() {
        return "%".to_owned();
    }
    let mut tag = String::with_capacity(user_id.len());
    for c in user_id.chars() {
        match c {
            '{' => tag.push_str("%7B"),
            '}' => tag.push_str("%7D"),
            '%' => tag.push_str("%25"),
            c => tag.push(c),
        }
    }
    tag
}

/// A prefix with its braces escaped like a tag's, so that it can never hold a hash tag.
fn escape_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        tag(prefix)
    }
}

/// Unix milliseconds, at least 1: Redis refuses absolute expiry times of 0 or less, and
/// anything in the past expires the key at once, as it should.
fn millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
        .max(1)
}

fn from_millis(text: &str) -> std::result::Result<OffsetDateTime, BoxError> {
    let millis: i64 = text.parse()?;
    Ok(OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(millis) * 1_000_000,
    )?)
}

fn from_hex(text: &str) -> std::result::Result<ValidatorHash, BoxError> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)?;
    Ok(hash)
}

/// A token from its hash's fields.
fn token_from_fields(
    mut fields: HashMap<String, String>,
) -> std::result::Result<RememberToken, BoxError> {
    let mut take = |name: &'static str| {
        fields
            .remove(name)
            .ok_or_else(|| BoxError::from(format!("stored token lacks `{name}`")))
    };
    Ok(RememberToken {
        selector: take("selector")?,
        validator_hash: from_hex(&take("validator_hash")?)?,
        previous_hash: take("previous_hash")
            .ok()
            .as_deref()
            .map(from_hex)
            .transpose()?,
        rotated_at: take("rotated_at")
            .ok()
            .as_deref()
            .map(from_millis)
            .transpose()?,
        user_id: take("user_id")?,
        auth_hash: take("auth_hash")?,
        created_at: from_millis(&take("created_at")?)?,
        last_used_at: from_millis(&take("last_used_at")?)?,
        expires_at: from_millis(&take("expires_at")?)?,
        user_agent: take("user_agent")?,
    })
}

/// The data a [`RedisStore`] keeps: [`RememberKeys`] or [`ThrottleKeys`]. It cannot be
/// implemented outside this crate.
pub trait KeyKind: sealed::Kind {}

/// Remember-me tokens ([`RedisRememberStore`]).
#[derive(Debug, Clone, Copy)]
pub struct RememberKeys;

/// Throttle windows ([`RedisThrottleStore`]).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleKeys;

impl KeyKind for RememberKeys {}
impl KeyKind for ThrottleKeys {}

mod sealed {
    /// Names of a kind of data, for timeouts and `Debug`.
    pub trait Kind: Clone + Send + Sync + 'static {
        const WHAT: &'static str;
        const NAME: &'static str;
    }

    impl Kind for super::RememberKeys {
        const WHAT: &'static str = super::REMEMBER;
        const NAME: &'static str = "RedisRememberStore";
    }

    impl Kind for super::ThrottleKeys {
        const WHAT: &'static str = super::THROTTLE;
        const NAME: &'static str = "RedisThrottleStore";
    }
}

/// Remember-me tokens in Redis (see the [module docs](self) for the key layout).
///
/// Clones share the pool. Times are kept to the millisecond. Expired tokens are removed by
/// Redis itself, so [`find`](RememberStore::find) never returns one.
///
/// ```no_run
/// # async fn run(pool: login_manager::stores::redis::fred::clients::Pool) {
/// use std::time::Duration;
/// use login_manager::stores::redis::RedisRememberStore;
/// use login_manager::Remember;
///
/// let store = RedisRememberStore::new(pool)
///     .key_prefix("myapp:login:")
///     .timeout(Duration::from_secs(2));
/// let remember = Remember::new(store);
/// # }
/// ```
pub type RedisRememberStore = RedisStore<RememberKeys>;

/// Login-throttle windows in Redis: one counter per key, `INCR` and an expiry set by the
/// increment that opened the window, in one Lua script. Redis measures the window and
/// deletes it when it ends.
///
/// ```no_run
/// # fn run(pool: login_manager::stores::redis::fred::clients::Pool) {
/// use login_manager::stores::redis::RedisThrottleStore;
/// use login_manager::LoginThrottle;
///
/// let throttle = LoginThrottle::new(RedisThrottleStore::new(pool));
/// # }
/// ```
pub type RedisThrottleStore = RedisStore<ThrottleKeys>;

/// A store in Redis: remember-me tokens ([`RedisRememberStore`]) or throttle windows
/// ([`RedisThrottleStore`]).
#[derive(Clone)]
pub struct RedisStore<K: KeyKind> {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    kind: std::marker::PhantomData<K>,
}

impl<K: KeyKind> fmt::Debug for RedisStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(K::NAME)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<K: KeyKind> RedisStore<K> {
    /// A store on `pool` (which the caller [`init`](fred::prelude::ClientLike::init)s), keys
    /// under `login:`, a 5 s timeout per call.
    ///
    /// ```no_run
    /// # fn run(pool: login_manager::stores::redis::fred::clients::Pool) {
    /// use login_manager::stores::redis::RedisRememberStore;
    ///
    /// let store = RedisRememberStore::new(pool);
    /// # }
    /// ```
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            kind: std::marker::PhantomData,
        }
    }

    /// Puts the keys under `prefix` (default `login:`). Braces in it are percent-encoded,
    /// as they would otherwise break the hash tags.
    ///
    /// ```no_run
    /// # fn run(pool: login_manager::stores::redis::fred::clients::Pool) {
    /// use login_manager::stores::redis::RedisThrottleStore;
    ///
    /// let store = RedisThrottleStore::new(pool).key_prefix("myapp:");
    /// # }
    /// ```
    pub fn key_prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.prefix = escape_prefix(prefix.as_ref());
        self
    }

    /// Bounds every call (default 5 s): past it, the call fails with
    /// [`Error::Timeout`](crate::Error::Timeout) (`"remember store"` or `"throttle store"`).
    ///
    /// ```no_run
    /// # fn run(pool: login_manager::stores::redis::fred::clients::Pool) {
    /// use std::time::Duration;
    /// use login_manager::stores::redis::RedisRememberStore;
    ///
    /// let store = RedisRememberStore::new(pool).timeout(Duration::from_secs(1));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pool.
    ///
    /// ```no_run
    /// # fn run(store: login_manager::stores::redis::RedisRememberStore) {
    /// let pool = store.pool().clone();
    /// # }
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = std::result::Result<T, BoxError>>,
    ) -> Result<T> {
        bounded(self.timeout, K::WHAT, call).await
    }
}

impl RedisRememberStore {
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

#[async_trait]
impl RememberStore for RedisRememberStore {
    async fn create(&self, token: RememberToken) -> Result<()> {
        self.bounded(self.run_create(token)).await
    }

    async fn find(&self, selector: &str) -> Result<Option<RememberToken>> {
        self.bounded(self.run_find(selector)).await
    }

    async fn rotate(
        &self,
        selector: &str,
        expected: &ValidatorHash,
        rotation: Rotation,
    ) -> Result<bool> {
        self.bounded(self.run_rotate(selector, expected, rotation))
            .await
    }

    async fn delete(&self, selector: &str) -> Result<()> {
        self.bounded(self.run_delete(selector)).await
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<u64> {
        self.bounded(self.run_delete_for_user(user_id)).await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<RememberToken>> {
        self.bounded(self.run_list_for_user(user_id)).await
    }

    /// Redis expires tokens by itself: nothing to do, 0.
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

impl RedisThrottleStore {
    fn key(&self, key: &str) -> String {
        format!("{}throttle:{key}", self.prefix)
    }
}

#[async_trait]
impl ThrottleStore for RedisThrottleStore {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        let call = FAILURES.evalsha_with_reload::<Option<(i64, i64)>, _, _>(
            self.pool.next(),
            vec![self.key(key)],
            Vec::<String>::new(),
        );
        let window = bounded(self.timeout, THROTTLE, call).await?;
        Ok(window.map(|(count, left)| window_entry(count, left)))
    }

    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        let call = RECORD_FAILURE.evalsha_with_reload::<(i64, i64), _, _>(
            self.pool.next(),
            vec![self.key(key)],
            vec![window_millis(window)],
        );
        let (count, left) = bounded(self.timeout, THROTTLE, call).await?;
        Ok(window_entry(count, left))
    }

    async fn reset(&self, key: &str) -> Result<()> {
        let call = self.pool.del::<i64, _>(self.key(key));
        bounded(self.timeout, THROTTLE, call).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cannot_break_out_of_their_braces() {
        assert_eq!(tag("42"), "42");
        assert_eq!(tag("\"alice\""), "\"alice\"");
        assert_eq!(tag("a}b{c%"), "a%7Db%7Bc%25");
        assert_eq!(tag(""), "%");
        // Injective on the cases that could collide.
        assert_ne!(tag("%7B"), tag("{"));
        assert_ne!(tag("%"), tag(""));
        assert_eq!(escape_prefix("app{1}:"), "app%7B1%7D:");
        assert_eq!(escape_prefix(""), "");
    }
}
