//! The users database: the `User` type, the `Users` loader the login manager calls, API
//! tokens, and first-start seeding. SQLite by default, Postgres with a `postgres://`
//! `DATABASE_URL`: every query is written once (`$1` placeholders work in both) and run on
//! whichever pool [`Db`] holds.

use std::{collections::HashSet, str::FromStr, time::Duration as StdDuration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use http::{header, request::Parts};
use login_manager::{
    AuthUser, PasswordHasher, PasswordUserLoader, RecoveryCodes, SecondFactor, Totp, UserLoader,
};
use rand::{rngs::OsRng, RngCore};
use sha2::{Digest, Sha256};
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
    Connection, PgPool, SqlitePool,
};

/// The users database, on one of two engines. Cheap to clone (a pool).
#[derive(Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: the same statement, type-checked
/// for each engine.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Accounts created on first start: (username, password, permissions).
pub const SEED_ACCOUNTS: &[(&str, &str, &[&str])] = &[
    ("alice", "wonderland-rabbit-hole", &[]),
    ("admin", "queen-of-hearts-croquet", &["admin"]),
];

/// Registration limits (DEMO.md, `POST /register`); passwords are measured in bytes because
/// that is what the hasher's 1024-byte cap counts.
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a new username; the error is the message for the sign-up page.
pub fn validate_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        Err("Choose a username.".to_owned())
    } else if username.chars().count() > MAX_USERNAME_CHARS {
        Err(format!(
            "Usernames are at most {MAX_USERNAME_CHARS} characters long."
        ))
    } else if username.chars().any(char::is_control) || username.trim() != username {
        // Invisible differences make look-alike accounts.
        Err("Usernames cannot contain control characters or start or end with a space.".to_owned())
    } else {
        Ok(())
    }
}

/// Checks a new password; the error is the message for the form.
pub fn validate_password(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD_BYTES {
        Err(format!(
            "Use a password of at least {MIN_PASSWORD_BYTES} characters."
        ))
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err(format!(
            "Passwords are at most {MAX_PASSWORD_BYTES} bytes long."
        ))
    } else {
        Ok(())
    }
}

/// How long start-up waits for the database server.
const CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// Opens (creating if needed) the database named by `url` (`sqlite:` or `postgres:`) and
/// applies the embedded migrations of its engine.
pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let connect = PgPoolOptions::new()
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(url);
        let pool = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        // sqlx's migrator takes a Postgres advisory lock: instances starting at once take
        // turns.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Db::Postgres(pool))
    } else {
        let options = SqliteConnectOptions::from_str(url)?
            // WAL lets page views read while a login writes; the busy timeout makes concurrent
            // writers wait for each other instead of failing with "database is locked".
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(StdDuration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Db::Sqlite(pool))
    }
}

/// Runs `setup` (table creation, seeding) while no other instance of the demo runs its own:
/// on Postgres an advisory lock on a connection of its own, held until `setup` ends. SQLite
/// needs none (it serializes writers, and seeding tolerates a lost race).
pub async fn exclusively<T, E>(
    db: &Db,
    setup: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    let Db::Postgres(pool) = db else {
        return setup.await;
    };
    let mut lock = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('login_manager_demo.setup'))")
        .execute(&mut lock)
        .await?;
    let result = setup.await;
    // Closing the connection releases the lock, also when `setup` failed.
    let _ = lock.close().await;
    result
}

/// Creates the seed accounts that do not exist yet (an existing account keeps whatever
/// password its owner set).
pub async fn seed(db: &Db, hasher: &PasswordHasher) -> Result<(), SeedError> {
    for (username, password, permissions) in SEED_ACCOUNTS {
        let exists: Option<i64> = on_db!(db, pool => {
            sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = lower($1)")
                .bind(username)
                .fetch_optional(pool)
                .await?
        });
        if exists.is_some() {
            continue;
        }
        let hash = hasher.hash(password).await?;
        let id = match insert_user(db, username, &hash).await {
            Ok(id) => id,
            // Another instance seeded it first (SQLite; on Postgres `exclusively` prevents it).
            Err(err) if is_unique_violation(&err) => continue,
            Err(err) => return Err(err.into()),
        };
        for permission in *permissions {
            on_db!(db, pool => {
                sqlx::query("INSERT INTO user_permissions (user_id, permission) VALUES ($1, $2)")
                    .bind(id)
                    .bind(permission)
                    .execute(pool)
                    .await?;
            });
        }
        tracing::info!(username, "seeded account");
    }
    Ok(())
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("password hashing: {0}")]
    Hash(#[from] login_manager::Error),
}

/// Inserts a user; a taken username is a unique-constraint error (see [`is_unique_violation`]).
pub async fn insert_user(db: &Db, username: &str, password_hash: &str) -> Result<i64, sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(unix_now())
        .fetch_one(pool)
        .await
    })
}

/// Whether `err` is a UNIQUE violation: checking for the username first would race with a
/// concurrent registration, the constraint does not.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

pub async fn set_password_hash(
    db: &Db,
    user_id: i64,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Every user, for the admin page: (user, comma-separated permissions).
pub async fn all_users(db: &Db) -> Result<Vec<(User, String)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: User,
        permissions: String,
    }
    // `string_agg`: Postgres, and SQLite since 3.44.
    let rows: Vec<Row> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at,
                    u.totp_secret, u.totp_last_step,
                    COALESCE(string_agg(p.permission, ', '), '') AS permissions
             FROM users u LEFT JOIN user_permissions p ON p.user_id = u.id
             GROUP BY u.id ORDER BY u.id",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(|r| (r.user, r.permissions)).collect())
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A user row. No `Debug`: it holds the password hash, which must not end up in logs.
#[derive(Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: i64,
    /// The TOTP secret (base32) once enrolment was confirmed: `Some` means the second factor
    /// is on.
    pub totp_secret: Option<String>,
    /// The last time step a TOTP code was accepted for (enrolment included).
    pub totp_last_step: Option<i64>,
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.id
    }

    // The password hash changes (new salt) on every password change, so a change ends every
    // other session and revokes every remember-me token of the user.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }

    fn is_active(&self) -> bool {
        !self.disabled
    }
}

const USER_COLUMNS: &str =
    "id, username, password_hash, disabled, created_at, totp_secret, totp_last_step";

/// The user loader: every login-manager look-up goes through here.
#[derive(Clone)]
pub struct Users {
    db: Db,
}

impl Users {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl UserLoader for Users {
    type User = User;
    type Error = sqlx::Error;

    async fn load_user(&self, id: &i64) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        on_db!(&self.db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)
    }

    /// `Authorization: Bearer <token>` for tokens made by `POST /api/tokens`, on the JSON API
    /// only. The library counts such a login as fresh (the credential comes with every
    /// request), so on the HTML pages a token would pass `FreshLoginRequired` and reach the
    /// password change, which needs a session (`update_session_auth_hash`).
    async fn load_user_from_request(&self, parts: &Parts) -> Result<Option<User>, sqlx::Error> {
        if !parts.uri.path().starts_with("/api/") {
            return Ok(None);
        }
        let Some(token) = bearer_token(parts) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE id = (SELECT user_id FROM api_tokens WHERE token_sha256 = $1)"
        );
        let digest = token_digest(token);
        on_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(&digest).fetch_optional(pool).await
        })
    }

    async fn permissions(&self, user: &User) -> Result<HashSet<String>, sqlx::Error> {
        let sql = "SELECT permission FROM user_permissions WHERE user_id = $1";
        let rows: Vec<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(user.id).fetch_all(pool).await?
        });
        Ok(rows.into_iter().collect())
    }
}

impl PasswordUserLoader for Users {
    async fn load_user_by_username(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        // Case-insensitive on both engines (`lower`: SQLite's NOCASE column alone would not
        // carry over to Postgres), like the throttle's per-username count.
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)");
        on_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(username).fetch_optional(pool).await
        })
    }

    fn password_hash<'a>(&self, user: &'a User) -> Option<&'a str> {
        Some(&user.password_hash)
    }

    /// Re-entering the password counts in the same throttle key as the login form.
    fn login_name<'a>(&self, user: &'a User) -> Option<&'a str> {
        Some(&user.username)
    }

    /// A right password is not enough once TOTP is on: `POST /login` sends the browser to
    /// `/login/2fa`.
    fn second_factor_required(&self, user: &User) -> bool {
        user.totp_secret.is_some()
    }

    async fn save_password_hash(&self, user: &User, new_hash: &str) -> Result<(), sqlx::Error> {
        set_password_hash(&self.db, user.id, new_hash).await
    }
}

/// The issuer authenticator apps show next to the account name.
pub const TOTP_ISSUER: &str = "login-manager demo";

/// How many recovery codes an enrolment gives.
pub const RECOVERY_CODE_COUNT: usize = 10;

pub fn totp() -> Totp {
    Totp::new(TOTP_ISSUER)
}

/// Turns TOTP on for `user_id` with `secret`, whose code for time step `step` the user just
/// typed (stored as used: that code cannot log in), and replaces the recovery codes with
/// `recovery_hashes`. `false` when TOTP was already on (another tab enrolled first): nothing
/// changed.
pub async fn enable_totp(
    db: &Db,
    user_id: i64,
    secret: &str,
    step: u64,
    recovery_hashes: &[String],
) -> Result<bool, sqlx::Error> {
    let step = step_to_db(step);
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_last_step = $2 \
             WHERE id = $3 AND totp_secret IS NULL",
        )
        .bind(secret)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    })
}

/// How many unused recovery codes `user_id` has left.
pub async fn recovery_codes_left(db: &Db, user_id: i64) -> Result<i64, sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await
    })
}

/// Time steps are `unix time / 30`: far from `i64::MAX`.
fn step_to_db(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// The demo's second factor (`/login/2fa`): a current TOTP code, or one of the user's unused
/// recovery codes. Each is good once, also against a concurrent request with the same code:
/// the accepted time step is stored with `... WHERE totp_last_step < $step`, and a recovery
/// code is used up by deleting its row — whoever changed the row won.
pub struct TotpOrRecovery {
    db: Db,
}

impl TotpOrRecovery {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    async fn accept_totp(
        &self,
        user: &User,
        secret: &str,
        code: &str,
    ) -> login_manager::Result<bool> {
        let last_used = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let Some(step) = totp().check(secret, code, last_used)? else {
            return Ok(false);
        };
        let step = step_to_db(step);
        let updated = on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_secret = $3 \
                 AND (totp_last_step IS NULL OR totp_last_step < $1)",
            )
            .bind(step)
            .bind(user.id)
            .bind(secret)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(storage_error)?;
        Ok(updated == 1)
    }

    async fn accept_recovery_code(&self, user: &User, code: &str) -> login_manager::Result<bool> {
        let hashes: Vec<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT code_hash FROM recovery_codes WHERE user_id = $1")
                .bind(user.id)
                .fetch_all(pool)
                .await
        })
        .map_err(storage_error)?;
        let Some(at) = RecoveryCodes::position(code, &hashes) else {
            return Ok(false);
        };
        let deleted = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2")
                .bind(user.id)
                .bind(&hashes[at])
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(storage_error)?;
        Ok(deleted == 1)
    }
}

impl SecondFactor<User> for TotpOrRecovery {
    async fn verify(&self, user: &User, code: &str) -> login_manager::Result<bool> {
        let Some(secret) = &user.totp_secret else {
            return Ok(false);
        };
        // Six digits are a TOTP code; anything else may be a recovery code (`xxxxx-xxxxx`).
        let digits = code.trim();
        if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.accept_totp(user, secret, digits).await;
        }
        self.accept_recovery_code(user, code).await
    }
}

/// A database failure inside the second factor: the library answers 503.
fn storage_error(err: sqlx::Error) -> login_manager::Error {
    login_manager::Error::Store(Box::new(err))
}

/// The token of an `Authorization: Bearer` header, when it has the shape of ours (43
/// base64url characters): anything else is not worth a database query.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let well_formed = token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (scheme.eq_ignore_ascii_case("bearer") && well_formed).then_some(token)
}

fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates an API token for `user_id` and returns it; only its SHA-256 is stored.
pub async fn create_api_token(db: &Db, user_id: i64) -> Result<String, sqlx::Error> {
    // 32 random bytes from the OS: unguessable, so a fast hash is enough to store (no argon2:
    // there is nothing to brute-force, and it is checked on every API request).
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let digest = token_digest(&token);
    on_db!(db, pool => {
        sqlx::query("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(&digest)
            .bind(unix_now())
            .execute(pool)
            .await?;
    });
    Ok(token)
}
