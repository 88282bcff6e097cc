//! Settings from the environment (DEMO.md, "Running"). Every variable has a default, so
//! `cargo run -p demo` works with none set; a value that does not parse stops the
//! demo with a message naming the variable, rather than silently using the default.

use std::time::Duration;
use std::{env, fmt::Display, path::PathBuf, str::FromStr};

use base64::{engine::general_purpose, Engine};

/// `SESSION_STORE`: where sessions live (Flask-Session's `SESSION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStore {
    Memory,
    Sqlite,
    Postgres,
    Redis,
    File,
    Cookie,
}

impl FromStr for SessionStore {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value {
            "memory" => Self::Memory,
            "sqlite" => Self::Sqlite,
            "postgres" => Self::Postgres,
            "redis" => Self::Redis,
            "file" => Self::File,
            "cookie" => Self::Cookie,
            _ => return Err("use memory, sqlite, postgres, redis, file or cookie".to_owned()),
        })
    }
}

/// The demo's settings. No `Debug`: it holds the session key.
#[derive(Clone)]
pub struct Config {
    /// `DEMO_ADDR`: where to listen; port 0 picks a free port (the real one is printed).
    pub addr: String,
    /// `DATABASE_URL`: the database (`sqlite:` or `postgres:`) holding users and API tokens,
    /// and, without `REDIS_URL`, sessions, remember-me tokens, throttle counters, the login
    /// index and one-time tokens.
    pub database_url: String,
    /// `REDIS_URL`: when set, sessions, remember-me tokens, throttle counters, the login index
    /// and one-time tokens live in Redis (one connection pool for all of them).
    pub redis_url: Option<String>,
    /// `DEMO_REDIS_PREFIX`: the key prefix of the remember-me, throttle, login-index and
    /// one-time-token keys in Redis (the library's default, `login:`, when unset). Session keys
    /// are bare session ids (tower-sessions-redis-store has no prefix).
    pub redis_prefix: Option<String>,
    /// `SESSION_STORE`: where sessions live. Default: `redis` with `REDIS_URL`, else the
    /// database's engine (`sqlite` by default).
    pub session_store: SessionStore,
    /// `DEMO_SESSION_DIR`: the directory of `SESSION_STORE=file` (default `demo-sessions`).
    pub session_dir: PathBuf,
    /// `DEMO_SESSION_KEY`: base64 of at least 64 random bytes, the key of
    /// `SESSION_STORE=cookie` (e.g. `openssl rand -base64 64`). Unset: a random key per start.
    pub session_key: Option<Vec<u8>>,
    /// `DEMO_SESSION_LIFETIME_SECS`: permanent session cookies with this lifetime; unset or
    /// 0: browser-session cookies (the default), which end when the browser closes.
    pub session_lifetime: Option<Duration>,
    /// `DEMO_SECURE_COOKIES`: the `Secure` attribute of the session and remember cookies.
    /// Off by default because the demo serves plain HTTP; turn it on behind TLS.
    pub secure_cookies: bool,
    /// `DEMO_IDLE_TIMEOUT_SECS`: logged out after this long without a request.
    pub idle_timeout: Duration,
    /// `DEMO_ABSOLUTE_TIMEOUT_SECS`: logged out this long after logging in.
    pub absolute_timeout: Duration,
    /// `DEMO_REMEMBER_DAYS`: lifetime of a remember-me token.
    pub remember_duration: Duration,
    /// `DEMO_REMEMBER_GRACE_SECS`: how long a rotated-out remember token still works.
    pub remember_grace: Duration,
    /// `DEMO_THROTTLE_MAX_FAILURES`: failed logins per account (and per device) per 15 minutes.
    pub throttle_max_failures: u32,
    /// `DEMO_THROTTLE_MAX_ADDRESS_FAILURES`: failed logins per client address per 15 minutes.
    pub throttle_max_address_failures: u32,
    /// `DEMO_RESET_TOKEN_MINUTES`: how long a password-reset link works (default 30; a
    /// fraction such as `0.05`, 3 s, is allowed, for tests).
    pub reset_token_ttl: Duration,
    /// `DEMO_MAIL_DIR`: where outgoing mail is written, one `.eml` file per message (default
    /// `mail`, created if missing), unless `DEMO_SMTP_URL` is set.
    pub mail_dir: PathBuf,
    /// `DEMO_SMTP_URL`: send mail over SMTP instead (`smtp://host:25`,
    /// `smtps://user:password@host`; lettre's URL format). No `Debug`: it may hold a password.
    pub smtp_url: Option<String>,
    /// `DEMO_PUBLIC_URL`: the demo's address as browsers reach it (`https://demo.example.com`),
    /// the base of the links in mail. Unset: `http://` and the address it listens on. Never
    /// the request's `Host` header, which the client chooses (a forged one would mail a link
    /// to the attacker's site carrying the victim's token).
    pub public_url: Option<String>,
}

impl Config {
    /// Reads the settings; the error names the offending variable.
    pub fn from_env() -> Result<Self, String> {
        let throttle_max_failures = at_least_one("DEMO_THROTTLE_MAX_FAILURES", 5)?;
        let throttle_max_address_failures = at_least_one("DEMO_THROTTLE_MAX_ADDRESS_FAILURES", 50)?;
        let database_url =
            non_empty("DATABASE_URL").unwrap_or_else(|| "sqlite://demo.db?mode=rwc".to_owned());
        let redis_url = non_empty("REDIS_URL");
        let default_store = if redis_url.is_some() {
            SessionStore::Redis
        } else if database_url.starts_with("postgres") {
            SessionStore::Postgres
        } else {
            SessionStore::Sqlite
        };
        let session_key = non_empty("DEMO_SESSION_KEY")
            .map(|key| {
                general_purpose::STANDARD
                    .decode(key.trim())
                    .map_err(|e| format!("DEMO_SESSION_KEY is not valid base64: {e}"))
            })
            .transpose()?;
        let session_lifetime = match parse("DEMO_SESSION_LIFETIME_SECS", 0u32)? {
            0 => None,
            secs => Some(Duration::from_secs(secs.into())),
        };
        Ok(Self {
            addr: env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned()),
            database_url,
            redis_url,
            redis_prefix: non_empty("DEMO_REDIS_PREFIX"),
            session_store: parse("SESSION_STORE", default_store)?,
            session_dir: non_empty("DEMO_SESSION_DIR")
                .map_or_else(|| PathBuf::from("demo-sessions"), PathBuf::from),
            session_key,
            session_lifetime,
            secure_cookies: parse_bool("DEMO_SECURE_COOKIES", false)?,
            idle_timeout: Duration::from_secs(parse("DEMO_IDLE_TIMEOUT_SECS", 1800)?),
            absolute_timeout: Duration::from_secs(parse("DEMO_ABSOLUTE_TIMEOUT_SECS", 43_200)?),
            remember_duration: Duration::from_secs(
                parse::<u64>("DEMO_REMEMBER_DAYS", 30)? * 24 * 60 * 60,
            ),
            remember_grace: Duration::from_secs(parse("DEMO_REMEMBER_GRACE_SECS", 10)?),
            throttle_max_failures,
            throttle_max_address_failures,
            reset_token_ttl: minutes("DEMO_RESET_TOKEN_MINUTES", 30.0)?,
            mail_dir: non_empty("DEMO_MAIL_DIR")
                .map_or_else(|| PathBuf::from("mail"), PathBuf::from),
            smtp_url: non_empty("DEMO_SMTP_URL"),
            public_url: non_empty("DEMO_PUBLIC_URL")
                .map(|url| public_url("DEMO_PUBLIC_URL", &url))
                .transpose()?,
        })
    }
}

/// The longest reset link the demo hands out: a week.
const MAX_TOKEN_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// A positive number of minutes (fractions allowed), at most a week, as a `Duration`.
fn minutes(name: &str, default: f64) -> Result<Duration, String> {
    let value: f64 = parse(name, default)?;
    if !(value > 0.0 && value <= MAX_TOKEN_MINUTES) {
        return Err(format!(
            "{name}={value} is not valid: use a number of minutes above 0 and at most \
             {MAX_TOKEN_MINUTES}"
        ));
    }
    Ok(Duration::from_secs_f64(value * 60.0))
}

/// An `http://` or `https://` URL without a path, query or trailing `/`: the links in mail
/// append `/password/reset?...` to it.
fn public_url(name: &str, value: &str) -> Result<String, String> {
    let url = value.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => {
            Ok(url.to_owned())
        }
        _ => Err(format!(
            "{name}={value:?} is not valid: use http(s)://host[:port], without a path"
        )),
    }
}

/// A throttle limit: 0 would lock every key before its first attempt.
fn at_least_one(name: &str, default: u32) -> Result<u32, String> {
    match parse(name, default)? {
        0 => Err(format!("{name} must be at least 1")),
        limit => Ok(limit),
    }
}

/// The variable's value, unless it is unset or empty.
fn non_empty(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The variable parsed as a `T`, or `default` when it is unset or empty.
fn parse<T>(name: &str, default: T) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    match env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|e| format!("{name}={value:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// A yes/no variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
fn parse_bool(name: &str, default: bool) -> Result<bool, String> {
    match env::var(name) {
        Ok(value) if !value.trim().is_empty() => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("{name}={value:?} is not valid: use true or false")),
        },
        _ => Ok(default),
    }
}
