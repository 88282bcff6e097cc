//! The Lua scripts of the Redis stores: every atomic step is one script, run with `EVALSHA`
//! (and loaded again after a `NOSCRIPT`), and no script touches keys of two hash slots.
//! Crate-private.

use std::sync::LazyLock;

use fred::types::scripts::Script;

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
pub(crate) static SET_POINTER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1",
    )
});

/// KEYS: token, user set. ARGV: selector, expires_at ms, then the hash's field/value pairs.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static ROTATE: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static RESOLVE_AND_EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{COVER}
local user = redis.call('GET', KEYS[1])
if user then cover(KEYS[1], ARGV[1]) end
return user"
    ))
});

/// KEYS: token, user set. ARGV: selector.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1",
    )
});

/// KEYS: user set. ARGV: token key prefix (up to the selector), user id. Deletes the user's
/// tokens and returns their selectors. The token keys are built here from the set's members:
/// they carry the set's hash tag, so they are in its slot.
pub(crate) static DELETE_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static LIST_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static RECORD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static FAILURES: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local count = redis.call('GET', KEYS[1])
if not count then return nil end
return {tonumber(count), redis.call('PTTL', KEYS[1])}",
    )
});

/// What the login scripts share: the server's clock in Unix ms, the order of `beyond_bound`
/// (src/logins/store.rs) with ids compared byte by byte (Lua's `<` on strings follows the
/// server's locale), and the decoding of an entry's times. An entry that is not a JSON object
/// with `expires_at` and `last_used_at` raises an error, which reaches the caller as one.
const LOGIN_PRELUDE: &str = r"
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function kept_before(a, b)
  if a.live ~= b.live then return a.live end
  if a.used ~= b.used then return a.used > b.used end
  return bytes_before(a.id, b.id)
end
local function expiry(entry)
  return assert(tonumber(entry['expires_at']), 'a stored login without expires_at')
end
local function used(entry)
  return assert(tonumber(entry['last_used_at']), 'a stored login without last_used_at')
end
";

/// KEYS: the user's logins hash. ARGV: id, the entry (JSON), the bound (at least 1).
/// Stores the entry (a replaced one's `created_at` kept), trims the user's entries to the
/// bound, expired first, then the least recently used, and makes the hash expire with its
/// latest entry. Returns the removed entries: the replaced one, then the trimmed ones.
pub(crate) static PUT_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{LOGIN_PRELUDE}
local now = now_ms()
local removed = {{}}
local entry = ARGV[2]
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local new = cjson.decode(ARGV[2])
  new['created_at'] = cjson.decode(old)['created_at']
  entry = cjson.encode(new)
  table.insert(removed, old)
end
redis.call('HSET', KEYS[1], ARGV[1], entry)
local all = redis.call('HGETALL', KEYS[1])
local logins = {{}}
for i = 1, #all, 2 do
  local e = cjson.decode(all[i + 1])
  local expires = expiry(e)
  table.insert(logins, {{id = all[i], raw = all[i + 1], live = expires > now,
    used = used(e), expires = expires, expires_at = e['expires_at']}})
end
local max = tonumber(ARGV[3])
if #logins > max then
  table.sort(logins, kept_before)
  for i = max + 1, #logins do
    redis.call('HDEL', KEYS[1], logins[i].id)
    table.insert(removed, logins[i].raw)
  end
end
local latest = nil
for i = 1, math.min(#logins, max) do
  if not latest or logins[i].expires > latest.expires then latest = logins[i] end
end
if latest then redis.call('PEXPIREAT', KEYS[1], latest.expires_at) end
return removed"
    ))
});

/// KEYS: the user's logins hash. ARGV: id. The entry, unless it is missing or expired.
pub(crate) static GET_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{LOGIN_PRELUDE}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or expiry(cjson.decode(raw)) <= now_ms() then return false end
return raw"
    ))
});

/// KEYS: the user's logins hash. ARGV: id, last_used_at ms, expires_at ms, `1` when a new
/// session id follows (else `0`), the session id. Updates an existing entry only (1), never
/// shortens its expiry, and keeps the hash alive at least as long; 0 when it is missing.
pub(crate) static TOUCH_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{COVER}{LOGIN_PRELUDE}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
e['last_used_at'] = ARGV[2]
if tonumber(ARGV[3]) > expiry(e) then e['expires_at'] = ARGV[3] end
if ARGV[4] == '1' then e['session_id'] = ARGV[5] end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
cover(KEYS[1], e['expires_at'])
return 1"
    ))
});

/// KEYS: the user's logins hash. The unexpired entries; the expired ones are deleted.
pub(crate) static LIST_LOGINS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{LOGIN_PRELUDE}
local now = now_ms()
local live = {{}}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if expiry(cjson.decode(all[i + 1])) > now then
    table.insert(live, all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live"
    ))
});

/// KEYS: the user's logins hash. ARGV: id. Deletes the entry and returns it, if it existed.
pub(crate) static DELETE_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then redis.call('HDEL', KEYS[1], ARGV[1]) end
return raw",
    )
});

/// KEYS: the user's logins hash. Deletes it and returns every entry it held.
pub(crate) static DELETE_LOGINS_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "local all = redis.call('HVALS', KEYS[1])
redis.call('DEL', KEYS[1])
return all",
    )
});

/// KEYS: the one-time token. ARGV: expires_at ms, then the hash's field/value pairs. Writes
/// the token whole (a colliding selector's old fields gone) and its expiry in one step.
pub(crate) static CREATE_ONE_TIME_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1",
    )
});

/// KEYS: the one-time token. ARGV: the validator hash (hex). Deletes the token if it holds
/// that hash: 1 when this call deleted it, 0 when it was missing, expired, already taken or
/// holds another hash. A script runs alone, so of racing calls exactly one gets 1.
pub(crate) static TAKE_ONE_TIME_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "if redis.call('HGET', KEYS[1], 'validator_hash') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1",
    )
});
