//! Every statement of the SQL stores, written once for both databases, and what a kind of
//! table ([`RememberTable`], [`ThrottleTable`], [`LoginTable`], [`TokenTable`]) brings to the
//! generic store: its default name and its statements. Crate-private.

use super::dialect::Dialect;

/// A quoted SQL identifier: any name is safe, and keeps its case.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`, or `"table"`.
fn qualified(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(table),
    }
}

/// Where a store's table lives; shared by both stores' builders.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

impl Location {
    pub(crate) fn table(&self) -> String {
        qualified(self.schema.as_deref(), &self.table)
    }

    /// An index name derived from the table's (indexes live in the table's schema).
    pub(crate) fn index(&self, suffix: &str) -> String {
        quote(&format!("{}_{suffix}", self.table))
    }
}

const TOKEN_COLUMNS: &str = "selector, validator_hash, previous_hash, rotated_at, user_id, \
                             auth_hash, created_at, last_used_at, expires_at, user_agent";

/// Every statement of the remember-me store, built once per configuration.
#[derive(Debug)]
pub(crate) struct RememberSql {
    pub(crate) migration: Vec<String>,
    pub(crate) insert: String,
    pub(crate) find: String,
    pub(crate) rotate: String,
    pub(crate) delete: String,
    pub(crate) delete_for_user: String,
    pub(crate) list_for_user: String,
    pub(crate) delete_expired: String,
}

impl RememberSql {
    pub(crate) fn new<DB: Dialect>(at: &Location) -> Self {
        let t = at.table();
        let (bytes, time) = (DB::BYTES, DB::TIME);
        let mut migration = DB::migration_prelude(at.schema.as_deref());
        migration.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 selector TEXT PRIMARY KEY, \
                 validator_hash {bytes} NOT NULL, \
                 previous_hash {bytes}, \
                 rotated_at {time}, \
                 user_id TEXT NOT NULL, \
                 auth_hash TEXT NOT NULL, \
                 created_at {time} NOT NULL, \
                 last_used_at {time} NOT NULL, \
                 expires_at {time} NOT NULL, \
                 user_agent TEXT NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (user_id)",
                at.index("user_id_idx")
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at)",
                at.index("expires_at_idx")
            ),
        ]);
        Self {
            migration,
            // A selector collision (2^-128) replaces the old token, as the memory store does.
            insert: format!(
                "INSERT INTO {t} ({TOKEN_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (selector) DO UPDATE SET \
                 validator_hash = excluded.validator_hash, previous_hash = excluded.previous_hash, \
                 rotated_at = excluded.rotated_at, user_id = excluded.user_id, \
                 auth_hash = excluded.auth_hash, created_at = excluded.created_at, \
                 last_used_at = excluded.last_used_at, expires_at = excluded.expires_at, \
                 user_agent = excluded.user_agent"
            ),
            find: format!("SELECT {TOKEN_COLUMNS} FROM {t} WHERE selector = $1"),
            // One conditional UPDATE: the row lock makes racing rotations serialize, and each
            // loser re-checks `validator_hash` against the winner's new value and matches 0 rows.
            rotate: format!(
                "UPDATE {t} SET previous_hash = validator_hash, validator_hash = $1, \
                 rotated_at = $2, last_used_at = $2, expires_at = $3 \
                 WHERE selector = $4 AND validator_hash = $5"
            ),
            delete: format!("DELETE FROM {t} WHERE selector = $1"),
            delete_for_user: format!("DELETE FROM {t} WHERE user_id = $1"),
            list_for_user: format!("SELECT {TOKEN_COLUMNS} FROM {t} WHERE user_id = $1"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= {}", DB::NOW),
        }
    }
}

/// Every statement of the throttle store, built once per configuration.
#[derive(Debug)]
pub(crate) struct ThrottleSql {
    pub(crate) migration: Vec<String>,
    pub(crate) record_failure: String,
    pub(crate) failures: String,
    pub(crate) reset: String,
    pub(crate) delete_expired: String,
}

impl ThrottleSql {
    pub(crate) fn new<DB: Dialect>(at: &Location) -> Self {
        let t = at.table();
        let now = DB::NOW;
        let mut migration = DB::migration_prelude(at.schema.as_deref());
        migration.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 key TEXT PRIMARY KEY, \
                 failures {} NOT NULL, \
                 window_end {} NOT NULL)",
                DB::BIGINT,
                DB::TIME
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (window_end)",
                at.index("window_end_idx")
            ),
        ]);
        let left = DB::millis_until("window_end");
        Self {
            migration,
            // One atomic upsert: opens a window, restarts an expired one, or counts into the
            // open one without moving its end; the count saturates at u32::MAX.
            record_failure: format!(
                "INSERT INTO {t} AS t (key, failures, window_end) VALUES ($1, 1, {}) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN t.window_end <= {now} THEN 1 \
                 ELSE {}(t.failures + 1, 4294967295) END, \
                 window_end = CASE WHEN t.window_end <= {now} THEN excluded.window_end \
                 ELSE t.window_end END \
                 RETURNING failures, {left}",
                DB::now_plus_millis("$2"),
                DB::LEAST
            ),
            failures: format!(
                "SELECT failures, {left} FROM {t} WHERE key = $1 AND window_end > {now}"
            ),
            reset: format!("DELETE FROM {t} WHERE key = $1"),
            delete_expired: format!("DELETE FROM {t} WHERE window_end <= {now}"),
        }
    }
}

const LOGIN_COLUMNS: &str = "id, user_id, session_id, remember_selector, created_at, \
                             last_used_at, expires_at, user_agent, remembered";

/// Every statement of the login index store, built once per configuration.
///
/// `put` is a few autocommit statements, no transaction: an insert that does nothing when
/// the id exists, else a read of the old row and a compare-and-swap `UPDATE` conditional on
/// every column still holding the value read (retried when another call changed or deleted
/// the row in between), so that each replaced entry is returned by exactly one call; then a
/// separate `trim`. Every `put` trims after its own insert has committed, so the last trim to
/// start sees every insert: however many calls race, the user ends with at most the bound,
/// and a row is deleted (and returned) by one statement only.
#[derive(Debug)]
pub(crate) struct LoginSql {
    pub(crate) migration: Vec<String>,
    /// `$1..$9`: the columns in [`LOGIN_COLUMNS`] order. Affects 0 rows when the id exists.
    pub(crate) insert: String,
    /// `$1` user, `$2` id: the row, expired or not (what `replace` compares against).
    pub(crate) find_any: String,
    /// `$1` user, `$2` id; `$3..$8` the new session_id, remember_selector, last_used_at,
    /// expires_at, user_agent, remembered; `$9..$15` the old session_id, remember_selector,
    /// created_at, last_used_at, expires_at, user_agent, remembered. 1 row when it won.
    pub(crate) replace: String,
    /// `$1` user, `$2` the bound: deletes and returns the rows beyond it.
    pub(crate) trim: String,
    pub(crate) get: String,
    /// `$1` user, `$2` id, `$3` last_used_at, `$4` expires_at, `$5` session_id or NULL.
    pub(crate) touch: String,
    pub(crate) list: String,
    pub(crate) delete: String,
    pub(crate) delete_for_user: String,
    pub(crate) delete_expired: String,
}

impl LoginSql {
    pub(crate) fn new<DB: Dialect>(at: &Location) -> Self {
        let t = at.table();
        let (now, time, same) = (DB::NOW, DB::TIME, DB::NULL_SAFE_EQ);
        let mut migration = DB::migration_prelude(at.schema.as_deref());
        migration.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id TEXT NOT NULL, \
                 user_id TEXT NOT NULL, \
                 session_id TEXT, \
                 remember_selector TEXT, \
                 created_at {time} NOT NULL, \
                 last_used_at {time} NOT NULL, \
                 expires_at {time} NOT NULL, \
                 user_agent TEXT NOT NULL, \
                 remembered {} NOT NULL, \
                 PRIMARY KEY (user_id, id))",
                DB::BOOL
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at)",
                at.index("expires_at_idx")
            ),
        ]);
        Self {
            migration,
            insert: format!(
                "INSERT INTO {t} ({LOGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (user_id, id) DO NOTHING"
            ),
            find_any: format!("SELECT {LOGIN_COLUMNS} FROM {t} WHERE user_id = $1 AND id = $2"),
            // `created_at` is not set: a replacement keeps the first entry's.
            replace: format!(
                "UPDATE {t} SET session_id = $3, remember_selector = $4, last_used_at = $5, \
                 expires_at = $6, user_agent = $7, remembered = $8 \
                 WHERE user_id = $1 AND id = $2 \
                 AND session_id {same} $9 AND remember_selector {same} $10 \
                 AND created_at = $11 AND last_used_at = $12 AND expires_at = $13 \
                 AND user_agent = $14 AND remembered = $15"
            ),
            // The order of `beyond_bound` (src/logins/store.rs): unexpired first, then the
            // most recently used, ids compared byte by byte; everything after the first `$2`
            // goes.
            trim: format!(
                "DELETE FROM {t} WHERE user_id = $1 AND id NOT IN (\
                 SELECT id FROM {t} WHERE user_id = $1 \
                 ORDER BY (expires_at > {now}) DESC, last_used_at DESC, id{} ASC LIMIT $2) \
                 RETURNING {LOGIN_COLUMNS}",
                DB::BYTEWISE
            ),
            get: format!(
                "SELECT {LOGIN_COLUMNS} FROM {t} \
                 WHERE user_id = $1 AND id = $2 AND expires_at > {now}"
            ),
            touch: format!(
                "UPDATE {t} SET last_used_at = $3, \
                 expires_at = CASE WHEN expires_at < $4 THEN $4 ELSE expires_at END, \
                 session_id = COALESCE($5, session_id) \
                 WHERE user_id = $1 AND id = $2"
            ),
            list: format!(
                "SELECT {LOGIN_COLUMNS} FROM {t} WHERE user_id = $1 AND expires_at > {now}"
            ),
            delete: format!(
                "DELETE FROM {t} WHERE user_id = $1 AND id = $2 RETURNING {LOGIN_COLUMNS}"
            ),
            delete_for_user: format!(
                "DELETE FROM {t} WHERE user_id = $1 RETURNING {LOGIN_COLUMNS}"
            ),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= {now}"),
        }
    }
}

const ONE_TIME_COLUMNS: &str =
    "selector, validator_hash, purpose, user_id, auth_hash, created_at, expires_at";

/// Every statement of the one-time token store, built once per configuration.
#[derive(Debug)]
pub(crate) struct TokenSql {
    pub(crate) migration: Vec<String>,
    /// `$1..$7`: the columns in [`ONE_TIME_COLUMNS`] order.
    pub(crate) insert: String,
    /// `$1` selector: the token, unless it has expired.
    pub(crate) find: String,
    /// `$1` selector, `$2` validator hash: 1 row affected when this call used the token up.
    pub(crate) take: String,
    pub(crate) delete_expired: String,
}

impl TokenSql {
    pub(crate) fn new<DB: Dialect>(at: &Location) -> Self {
        let t = at.table();
        let (bytes, time, now) = (DB::BYTES, DB::TIME, DB::NOW);
        let mut migration = DB::migration_prelude(at.schema.as_deref());
        migration.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 selector TEXT PRIMARY KEY, \
                 validator_hash {bytes} NOT NULL, \
                 purpose TEXT NOT NULL, \
                 user_id TEXT NOT NULL, \
                 auth_hash TEXT NOT NULL, \
                 created_at {time} NOT NULL, \
                 expires_at {time} NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at)",
                at.index("expires_at_idx")
            ),
        ]);
        Self {
            migration,
            // A selector collision (2^-128) replaces the old token, as the memory store does.
            insert: format!(
                "INSERT INTO {t} ({ONE_TIME_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (selector) DO UPDATE SET \
                 validator_hash = excluded.validator_hash, purpose = excluded.purpose, \
                 user_id = excluded.user_id, auth_hash = excluded.auth_hash, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at"
            ),
            find: format!(
                "SELECT {ONE_TIME_COLUMNS} FROM {t} WHERE selector = $1 AND expires_at > {now}"
            ),
            // One conditional DELETE: racing calls serialize on the row (Postgres' row lock,
            // SQLite's single writer), and every call after the first finds no row to delete.
            take: format!("DELETE FROM {t} WHERE selector = $1 AND validator_hash = $2"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= {now}"),
        }
    }
}

/// What a kind of table brings to [`SqlStore`](super::SqlStore): its names and its
/// statements.
pub(crate) trait Kind: Send + Sync + 'static {
    /// The default table name.
    const DEFAULT_TABLE: &'static str;
    /// The store's name in logs (as its callers name it in `Error::Timeout`).
    const WHAT: &'static str;
    /// Its statements.
    type Statements: Statements;
}

/// A table's statements, built once per configuration.
pub(crate) trait Statements: std::fmt::Debug + Send + Sync + 'static {
    fn build<DB: Dialect>(at: &Location) -> Self;
    fn migration(&self) -> &[String];
    fn delete_expired(&self) -> &str;
}

/// The remember-me tokens table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RememberTable;

/// The throttle windows table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThrottleTable;

/// The login index table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginTable;

/// The one-time tokens table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenTable;

impl Kind for RememberTable {
    const DEFAULT_TABLE: &'static str = "login_remember_tokens";
    const WHAT: &'static str = "remember store";
    type Statements = RememberSql;
}

impl Kind for ThrottleTable {
    const DEFAULT_TABLE: &'static str = "login_throttle";
    const WHAT: &'static str = "throttle store";
    type Statements = ThrottleSql;
}

impl Kind for LoginTable {
    const DEFAULT_TABLE: &'static str = "login_index";
    const WHAT: &'static str = "login store";
    type Statements = LoginSql;
}

impl Kind for TokenTable {
    const DEFAULT_TABLE: &'static str = "login_one_time_tokens";
    const WHAT: &'static str = "token store";
    type Statements = TokenSql;
}

impl Statements for RememberSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        RememberSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}

impl Statements for ThrottleSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        ThrottleSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}

impl Statements for LoginSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        LoginSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}

impl Statements for TokenSql {
    fn build<DB: Dialect>(at: &Location) -> Self {
        TokenSql::new::<DB>(at)
    }
    fn migration(&self) -> &[String] {
        &self.migration
    }
    fn delete_expired(&self) -> &str {
        &self.delete_expired
    }
}
