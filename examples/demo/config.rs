//! Settings from the environment (DEMO.md, "Running"). Every variable has a default, so
//! `cargo run --example demo` works with none set; a value that does not parse stops the
//! demo with a message naming the variable, rather than silently using the default.

use std::{env, fmt::Display, str::FromStr};

use login_manager::Duration;

/// The demo's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DEMO_ADDR`: where to listen; port 0 picks a free port (the real one is printed).
    pub addr: String,
    /// `DATABASE_URL`: the SQLite database holding users, API tokens and sessions.
    pub database_url: String,
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
    /// `DEMO_THROTTLE_MAX_FAILURES`: failed logins per account per 15 minutes.
    pub throttle_max_failures: u32,
}

impl Config {
    /// Reads the settings; the error names the offending variable.
    pub fn from_env() -> Result<Self, String> {
        let throttle_max_failures = parse("DEMO_THROTTLE_MAX_FAILURES", 5u32)?;
        if throttle_max_failures == 0 {
            // The throttle would lock every account before its first attempt.
            return Err("DEMO_THROTTLE_MAX_FAILURES must be at least 1".to_owned());
        }
        Ok(Self {
            addr: env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned()),
            database_url: env::var("DATABASE_URL")
                .unwrap_or_else(|_| "sqlite://demo.db?mode=rwc".to_owned()),
            secure_cookies: parse_bool("DEMO_SECURE_COOKIES", false)?,
            idle_timeout: Duration::seconds(parse("DEMO_IDLE_TIMEOUT_SECS", 1800)?),
            absolute_timeout: Duration::seconds(parse("DEMO_ABSOLUTE_TIMEOUT_SECS", 43_200)?),
            remember_duration: Duration::days(parse("DEMO_REMEMBER_DAYS", 30)?),
            remember_grace: Duration::seconds(parse("DEMO_REMEMBER_GRACE_SECS", 10)?),
            throttle_max_failures,
        })
    }
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
