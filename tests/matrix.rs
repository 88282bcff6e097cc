//! The invariant matrix (issue #14, item 5): DESIGN.md's security invariants, tested from the
//! outside — a library app (`matrix_support`: `LoginManager`, `login_with_password`,
//! `LoginRequired`, `login_required()`, remember-me) driven with real requests through
//! `tower::ServiceExt::oneshot` — on every path that reaches them and every session backend.
//!
//! Every cell is its own test, named `<invariant row>::<path>::<backend>`, e.g.
//! `inv1_new_session_id::another_user::postgres` (modules, not one joined identifier:
//! `macro_rules!` cannot build identifiers without a `paste`-like crate, which the project does
//! not depend on); `cargo test --test matrix postgres` runs one backend,
//! `cargo test --test matrix another_user` one path.
//!
//! # Axes
//!
//! Login paths (invariant 1, and 2, 3, 6, 7 where they can differ per path):
//! (a) `anonymous` — a visitor whose anonymous session holds a cart logs in;
//! (b) `same_user` — the logged-in user logs in again;
//! (c) `another_user` — bob logs in over alice's session (her cart in it);
//! (d) `remembered` — the browser was closed, the session restored from the remember cookie,
//! then a login; (e) `stale_hash` — alice's `session_auth_hash` changed elsewhere (password
//! changed), then she logs in with the new password; (f) `after_logout` — a login after a
//! logout; (g) `forged` — a session cookie the server never issued, then a login.
//!
//! Session backends: `memory`, `sqlite` (temp file), `postgres` (a schema of the cell's own,
//! dropped afterwards), `redis` (a database number of the cell's own, 1–11, taken with a lock
//! key; the keys the cell created are deleted afterwards), `file` (temp dir), `cookie`
//! (private cookie sessions). Remember tokens live on the same backend where the library has
//! a store for it (`stores::{sqlite, postgres, redis}`); `memory`, `file` and `cookie` use
//! `MemoryRememberStore`. The store-based backends run as
//! `SessionBackend::custom(CountingSessions::new(<the tower-sessions store the matching
//! SessionBackend variant builds>))`: the same `into_layer` code path, with a wrapper that counts
//! `create`/`save` calls; records are also counted in the backend's own storage (SQLite and
//! Postgres `SELECT count(*)`, Redis `DBSIZE`, files in the directory). Postgres and Redis
//! missing: each of their cells prints SKIPPED, or fails under `CI=true` (as `store_support`).
//!
//! # Rows (450 cells)
//!
//! | row | what | paths | backends | cells |
//! |---|---|---|---|---|
//! | `inv1_new_session_id` | the login's session cookie is a value no earlier response carried (nor the planted one); on (c), (e) the old data is gone; the old id is dead server-side (record gone from the store, replaying its cookie is anonymous with an empty cart) | a–g | all 6 | 42 |
//! | `inv1_logout_is_server_side` | after the path's (remembered) login, logout: remember cookie expired in the response, token deleted server-side, replaying the old remember cookie is anonymous and restores nothing, the old session record is gone and replaying it is anonymous, any session that lives on has a new id | a–g | all 6 | 42 |
//! | `inv1_logout_and_flush_then_insert` | `logout_user_and_flush`, then the handler stores a flash: the session that carries it has an id no earlier response carried; the old record is gone | a–g | all 6 | 42 |
//! | `inv8_anonymous_stores_nothing` | anonymous GET/HEAD (and a JSON 401) to the guard extractor, the `login_required()` route layer, a public route reading `AuthSession`; with a forged session cookie, a garbage remember cookie, a well-formed unknown one, the dead cookies of a logged-out browser; and 10 000 such requests: no session cookie is set, no session write, no record, no remember write | 8 request kinds | all 6 | 48 |
//! | `inv7_loader_failure_503` | the user database down on the path's login: 503, no session or remember cookie, no token; the guard is 503 (or the anonymous redirect), never the page; afterwards the browser is who it was (never the user who tried to log in) | a–g | all 6 | 42 |
//! | `inv7_session_store_failure_503` | the same with the session store down | a–g | memory | 7 |
//! | `inv7_remember_me_survives_loader_outage` | a restore that failed with 503 does not cost the browser its remember-me once the grace window is over | d | memory, sqlite, postgres, redis | 4 |
//! | `inv2_next_validated` | `next` after the path's login: foreign, protocol-relative, backslash, CR/LF and `javascript:` targets become `/`; a local path with a query stays | a–g | memory | 7 |
//! | `inv3_remember_token` | the remember cookie the path's login sets: `selector.validator` (16 + 32 random bytes, base64url), stored as SHA-256 only, expiry server-side, the browser's previous token deleted (one per browser), rotated on use (previous hash kept), a replay after the grace window (0 here) revokes all of the user's tokens | a–g | memory, sqlite, postgres, redis | 28 |
//! | `inv6_cookie_attributes` | every session and remember cookie set along the path: `HttpOnly`, `SameSite=Lax`, `Secure`, `Path=/`, no `Domain` | a–g | memory, cookie | 14 |
//! | `inv1_new_session_id_indexed` | `inv1_new_session_id` with a login index (#17) on the backend's own login store: the index's extra session save and entry write bring no earlier id back; on `cookie`, replaying the pre-login cookie is anonymous | a–g | all 6 | 42 |
//! | `inv1_logout_is_server_side_indexed` | `inv1_logout_is_server_side` with a login index: on `cookie` too, the logged-out cookie replayed is anonymous | a–g | all 6 | 42 |
//! | `inv8_anonymous_stores_nothing_indexed` | `inv8_anonymous_stores_nothing` with a login index, its store's writes counted too: none (the `after_logout` kind logs in and out before the counted requests) | 8 request kinds | all 6 | 48 |
//! | `logins_ended_from_another_browser` | after the path's remembered login, another browser of the user lists both logins and ends the others: the ended session is gone from the store, its cookie and its remember cookie replayed are anonymous, its token is deleted; the other browser keeps its login and lists one | a–g | all 6 | 42 |
//!
//! Not multiplied, because they cannot differ there: invariant 2 by backend (`next` is read
//! from the query string, no storage involved); invariant 3 on `file` and `cookie` (their
//! remember store is `MemoryRememberStore`, as on `memory`); invariant 6 on the other store
//! backends (every store backend gets the same `SessionManagerLayer` settings from
//! `into_layer`; `cookie` is the other layer); the session-store failure by backend (the
//! failure is the counting wrapper's); invariants 4, 5, 9, 10, 11 have no session path and
//! are covered elsewhere (`tests/invariants.rs`, `password.rs`, `throttle.rs`).
//!
//! # Exceptions (also printed as `NOTE ... EXCEPTION` lines by the cells concerned)
//!
//! - **Cookie sessions cannot revoke server-side** — without a login index. The session lives
//!   in the cookie, so on `cookie` the "old id is dead server-side" parts of invariant 1
//!   (after a login on any path, after logout, after `logout_user_and_flush`) cannot hold: a
//!   copy of the old cookie keeps whatever it held (the cells print what replaying it gives).
//!   With a login index (`LoginIndex::for_cookie_sessions`, the `_indexed` rows) the login in
//!   a replayed cookie is dead (asserted); its other data still lives in the cookie. What is still tested
//!   there: the new cookie differs from every earlier one, the old data is gone in this
//!   browser on (c) and (e), and the remember token *is* deleted server-side at logout.
//! - **Cookie sessions have no store to count** for invariant 8: the cells check that no
//!   session cookie is set and no remember write happens.
//! - **A removal cookie is allowed** for invariant 8: a forged session cookie is answered with
//!   `session=; Max-Age=0` by tower-sessions (and an unusable remember cookie with its
//!   removal); expiring a cookie stores nothing.
//! - **Memory** has no storage to read: its records are the counting wrapper's writes.
//! - **Redis** session keys are bare ids: the cell's own database is what isolates them.

mod matrix_support;
mod store_support;

/// Cells over paths × backends: `row => runner [with options]; paths [...]; backends [...];`
/// makes `mod row { mod path { #[tokio::test] async fn backend() } }`.
macro_rules! matrix {
    (
        $(#[$doc:meta])*
        $row:ident => $runner:ident;
        paths [$($path:ident),+ $(,)?];
        backends $backends:tt;
    ) => {
        matrix! {
            $(#[$doc])*
            $row => $runner with crate::matrix_support::Options::default();
            paths [$($path),+];
            backends $backends;
        }
    };
    (
        $(#[$doc:meta])*
        $row:ident => $runner:ident with $options:expr;
        paths [$($path:ident),+ $(,)?];
        backends $backends:tt;
    ) => {
        $(#[$doc])*
        mod $row {
            $( matrix!(@path $row $runner ($options) $path $backends); )+
        }
    };
    (@path $row:ident $runner:ident ($options:expr) $path:ident [$($backend:ident),+ $(,)?]) => {
        mod $path {
            $(
                #[tokio::test]
                async fn $backend() {
                    let cell = concat!(
                        stringify!($row), "::", stringify!($path), "::", stringify!($backend)
                    );
                    crate::matrix_support::run_cell(
                        cell,
                        stringify!($backend),
                        $options,
                        |env| crate::runners::$runner(env, stringify!($path)),
                    )
                    .await;
                }
            )+
        }
    };
}

matrix! {
    /// Invariant 1: every login ends with a session id no earlier response carried.
    inv1_new_session_id => inv1_new_session_id;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 1: logout is server-side (auth record, remember token) and expires the cookie.
    inv1_logout_is_server_side => inv1_logout_is_server_side;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 1: `logout_user_and_flush` then an insert never brings the old id back.
    inv1_logout_and_flush_then_insert => inv1_logout_and_flush_then_insert;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 8: anonymous requests create no server-side state.
    inv8_anonymous_stores_nothing => inv8_anonymous_stores_nothing;
    paths [
        guard, route_layer, public, forged_session, garbage_remember, unknown_remember,
        after_logout, requests_10000
    ];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 7: a loader failure is a 503 and never a login.
    inv7_loader_failure_503 => inv7_failure_503;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 7: a session-store failure is a 503 and never a login.
    inv7_session_store_failure_503 => inv7_failure_503;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory];
}

matrix! {
    /// Invariant 7 (after-effect): a failed restore does not cost the browser its remember-me.
    inv7_remember_me_survives_loader_outage => inv7_remember_me_survives_loader_outage
        with crate::matrix_support::Options {
            grace: std::time::Duration::from_secs(1),
            ..crate::matrix_support::Options::default()
        };
    paths [remembered];
    backends [memory, sqlite, postgres, redis];
}

matrix! {
    /// Invariant 2: `next` after a login on each path is a same-origin relative path.
    inv2_next_validated => inv2_next_validated;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory];
}

matrix! {
    /// Invariant 3: the remember token of a login on each path, in each remember store.
    inv3_remember_token => inv3_remember_token
        with crate::matrix_support::Options {
            grace: std::time::Duration::ZERO,
            ..crate::matrix_support::Options::default()
        };
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis];
}

matrix! {
    /// Invariant 6: cookie attributes along each path, on both layer kinds.
    inv6_cookie_attributes => inv6_cookie_attributes;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, cookie];
}

matrix! {
    /// Invariant 1 with a login index (#17): the index's own writes (a new session id saved
    /// before the login, then the entry) never bring an earlier id back.
    inv1_new_session_id_indexed => inv1_new_session_id with crate::matrix_support::INDEXED;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 1 with a login index (#17): logout is server-side — on cookie sessions too.
    inv1_logout_is_server_side_indexed => inv1_logout_is_server_side
        with crate::matrix_support::INDEXED;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// Invariant 8 with a login index (#17): anonymous requests write nothing to the index
    /// either (its writes are counted with the session and remember writes).
    inv8_anonymous_stores_nothing_indexed => inv8_anonymous_stores_nothing
        with crate::matrix_support::INDEXED;
    paths [
        guard, route_layer, public, forged_session, garbage_remember, unknown_remember,
        after_logout, requests_10000
    ];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

matrix! {
    /// The login index (#17): after the path's login, "log out everywhere else" from another
    /// browser ends it — session, cookie replay and remember-me — on every backend.
    logins_ended_from_another_browser => logins_ended_from_another_browser
        with crate::matrix_support::INDEXED;
    paths [anonymous, same_user, another_user, remembered, stale_hash, after_logout, forged];
    backends [memory, sqlite, postgres, redis, file, cookie];
}

mod runners {
    use std::sync::atomic::Ordering;

    use axum::http::Method;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use sha2::{Digest, Sha256};
    use tower_sessions::session::Id;

    use crate::matrix_support::{
        is_removal, prepare, raw, selector, Browser, Env, LoginPath, REMEMBER_COOKIE,
        SESSION_COOKIE,
    };

    const UNAVAILABLE: &str = "Service temporarily unavailable.";

    /// The old session id is dead: gone from the store, and its cookie replayed by another
    /// browser is anonymous with an empty cart. Cookie sessions: the documented exception.
    async fn old_session_is_dead(env: &Env, browser: &Browser, old: &str, what: &str) {
        let mut copy = browser.with_only(&[(SESSION_COOKIE, old)]);
        let who = copy.whoami().await;
        let cart = copy.get("/cart").await.body;
        if env.is_store() {
            assert!(
                !env.session_exists(old).await,
                "{}: {what} ({old}) is still in the session store",
                env.cell
            );
            assert_eq!(
                who, "anonymous",
                "{}: replaying {what}'s cookie is logged in",
                env.cell
            );
            assert_eq!(
                cart, "empty",
                "{}: replaying {what}'s cookie still reads its data",
                env.cell
            );
        } else if env.indexed {
            // The login index is what makes the end of a cookie session's login server-side;
            // the rest of the cookie's data is the cookie's own.
            assert_eq!(
                who, "anonymous",
                "{}: replaying {what}'s cookie is logged in despite the login index",
                env.cell
            );
            env.note(&format!(
                "cookie sessions with a login index: replaying {what}'s cookie is anonymous; \
                 its other data (cart `{cart}`) lives in the cookie"
            ));
        } else {
            env.note(&format!(
                "EXCEPTION (cookie sessions, no server-side revocation): replaying {what}'s \
                 cookie gives `{who}`, cart `{cart}`"
            ));
        }
    }

    pub async fn logins_ended_from_another_browser(env: Env, path: &'static str) {
        let mut p = prepare(&env, LoginPath::named(path)).await;
        let reply = p.browser.login_with(&p.user, true, None).await;
        assert_eq!(reply.status, 303, "{}: login: {}", env.cell, reply.body);
        let session = p.browser.session().expect("a session cookie after login");
        let remember = p.browser.remember().expect("a remember cookie after login");
        let mut other = env.browser();
        let reply = other.login_with(&p.user, false, None).await;
        assert_eq!(
            reply.status, 303,
            "{}: other login: {}",
            env.cell, reply.body
        );
        assert_eq!(
            other.get("/logins").await.body,
            "2",
            "{}: both logins listed",
            env.cell
        );

        assert_eq!(
            other.post("/logins/end-others").await.body,
            "1",
            "{}",
            env.cell
        );

        let mut copy = p.browser.with_only(&[(SESSION_COOKIE, session.as_str())]);
        assert_eq!(
            copy.whoami().await,
            "anonymous",
            "{}: the ended login's session cookie still logs in",
            env.cell
        );
        if env.is_store() {
            assert!(
                !env.session_exists(&session).await,
                "{}: the ended login's session is still in the store",
                env.cell
            );
        }
        let mut copy = p.browser.with_only(&[(REMEMBER_COOKIE, remember.as_str())]);
        assert_eq!(
            copy.whoami().await,
            "anonymous",
            "{}: the ended login's remember cookie still restores",
            env.cell
        );
        assert!(
            env.remember.find(selector(&remember)).await.is_none(),
            "{}: the ended login's remember token is still stored",
            env.cell
        );
        assert_eq!(p.browser.whoami().await, "anonymous", "{}", env.cell);
        assert_eq!(
            other.whoami().await,
            format!("{} fresh=true remembered=false", p.user.name),
            "{}: the browser that ended the others was logged out",
            env.cell
        );
        assert_eq!(other.get("/logins").await.body, "1", "{}", env.cell);
    }

    #[track_caller]
    fn assert_new_id(env: &Env, earlier: &[String], new: &str, what: &str) {
        assert!(
            !earlier.iter().any(|seen| seen == new),
            "{}: {what}: session cookie {new} was already carried by an earlier response \
             (or planted); earlier: {earlier:?}",
            env.cell
        );
    }

    pub async fn inv1_new_session_id(env: Env, path: &'static str) {
        let mut p = prepare(&env, LoginPath::named(path)).await;
        let earlier = p.browser.seen_sessions.clone();
        let reply = p.browser.login_with(&p.user, false, None).await;
        assert_eq!(reply.status, 303, "{}: login: {}", env.cell, reply.body);
        let new = reply.cookie_value(SESSION_COOKIE).unwrap_or_else(|| {
            panic!(
                "{}: the login response sets no session cookie: {:?}",
                env.cell,
                reply.set_cookie_lines()
            )
        });
        assert_new_id(&env, &earlier, &new, "login");
        assert_eq!(
            p.browser.whoami().await,
            format!("{} fresh=true remembered=false", p.user.name),
            "{}",
            env.cell
        );
        if p.flushed {
            assert_eq!(
                p.browser.get("/cart").await.body,
                "empty",
                "{}: the old session's data survived the login",
                env.cell
            );
        }
        if let Some(old) = &p.before {
            old_session_is_dead(&env, &p.browser, old, "the pre-login session").await;
        }
        if env.is_store() {
            assert!(env.session_exists(&new).await, "{}: new session", env.cell);
        }
    }

    /// Logs in on the path with remember-me; returns the browser with its session and
    /// remember cookies and every session value seen so far.
    async fn remembered_login(env: &Env, path: &'static str) -> (Browser, String, String) {
        let mut p = prepare(env, LoginPath::named(path)).await;
        let reply = p.browser.login_with(&p.user, true, None).await;
        assert_eq!(reply.status, 303, "{}: login: {}", env.cell, reply.body);
        let session = p.browser.session().expect("a session cookie after login");
        let remember = p.browser.remember().expect("a remember cookie after login");
        (p.browser, session, remember)
    }

    /// The remember token is gone server-side, the response expired the cookie, and the old
    /// cookie replayed alone neither logs in nor creates a session.
    async fn remember_is_dead(env: &Env, browser: &Browser, reply_removes: bool, old: &str) {
        assert!(
            reply_removes,
            "{}: the logout response does not expire the remember cookie",
            env.cell
        );
        assert!(
            env.remember.find(selector(old)).await.is_none(),
            "{}: the remember token is still in the store after logout",
            env.cell
        );
        let mut copy = browser.with_only(&[(REMEMBER_COOKIE, old)]);
        let reply = copy.get("/whoami").await;
        assert_eq!(
            reply.body, "anonymous",
            "{}: the old remember cookie restored a session",
            env.cell
        );
        assert_eq!(
            reply.cookie_value(SESSION_COOKIE),
            None,
            "{}: the old remember cookie created a session",
            env.cell
        );
    }

    pub async fn inv1_logout_is_server_side(env: Env, path: &'static str) {
        let (mut browser, session, remember) = remembered_login(&env, path).await;
        let earlier = browser.seen_sessions.clone();
        let reply = browser.post("/logout").await;
        assert_eq!(reply.status, 200, "{}: logout: {}", env.cell, reply.body);
        if let Some(new) = reply.cookie_value(SESSION_COOKIE) {
            assert_new_id(&env, &earlier, &new, "the session kept after logout");
        }
        assert_eq!(browser.whoami().await, "anonymous", "{}", env.cell);
        remember_is_dead(&env, &browser, reply.removes(REMEMBER_COOKIE), &remember).await;
        old_session_is_dead(&env, &browser, &session, "the pre-logout session").await;
    }

    pub async fn inv1_logout_and_flush_then_insert(env: Env, path: &'static str) {
        let (mut browser, session, remember) = remembered_login(&env, path).await;
        let earlier = browser.seen_sessions.clone();
        let reply = browser.post("/logout-flush").await;
        assert_eq!(reply.status, 200, "{}: logout: {}", env.cell, reply.body);
        let new = reply.cookie_value(SESSION_COOKIE).unwrap_or_else(|| {
            panic!(
                "{}: the session holding the flash got no cookie: {:?}",
                env.cell,
                reply.set_cookie_lines()
            )
        });
        assert_new_id(
            &env,
            &earlier,
            &new,
            "the session after logout_user_and_flush",
        );
        assert_eq!(
            browser.get("/flash").await.body,
            "Logged out.",
            "{}",
            env.cell
        );
        assert_eq!(browser.get("/cart").await.body, "empty", "{}", env.cell);
        assert_eq!(browser.whoami().await, "anonymous", "{}", env.cell);
        remember_is_dead(&env, &browser, reply.removes(REMEMBER_COOKIE), &remember).await;
        old_session_is_dead(&env, &browser, &session, "the pre-logout session").await;
        if env.is_store() {
            assert!(
                env.session_exists(&new).await,
                "{}: flash session",
                env.cell
            );
        }
    }

    /// A well-formed remember cookie for a token that does not exist.
    fn unknown_remember_token() -> String {
        let selector: [u8; 16] = rand::random();
        let validator: [u8; 32] = rand::random();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(selector),
            URL_SAFE_NO_PAD.encode(validator)
        );
        assert!(login_manager::__private::parse_token(&token).is_some());
        token
    }

    /// (method, path, JSON client, expected status, expected Location)
    type Probe = (Method, &'static str, bool, u16, Option<&'static str>);

    const PROTECTED: [Probe; 3] = [
        (
            Method::GET,
            "/protected",
            false,
            303,
            Some("/login?next=%2Fprotected"),
        ),
        (
            Method::HEAD,
            "/protected",
            false,
            303,
            Some("/login?next=%2Fprotected"),
        ),
        (Method::GET, "/protected", true, 401, None),
    ];
    const LAYER: [Probe; 3] = [
        (
            Method::GET,
            "/layer",
            false,
            303,
            Some("/login?next=%2Flayer"),
        ),
        (
            Method::HEAD,
            "/layer",
            false,
            303,
            Some("/login?next=%2Flayer"),
        ),
        (Method::GET, "/layer", true, 401, None),
    ];
    const PUBLIC: [Probe; 3] = [
        (Method::GET, "/public", false, 200, None),
        (Method::HEAD, "/public", false, 200, None),
        (Method::GET, "/whoami", false, 200, None),
    ];

    #[track_caller]
    fn assert_no_state_cookie(env: &Env, lines: &[String], what: &str) {
        for line in lines {
            let cookie = cookie::Cookie::parse(line.as_str()).expect("Set-Cookie");
            if cookie.name() == SESSION_COOKIE || cookie.name() == REMEMBER_COOKIE {
                assert!(
                    is_removal(&cookie),
                    "{}: {what}: an anonymous request was given `{line}`",
                    env.cell
                );
            }
        }
    }

    pub async fn inv8_anonymous_stores_nothing(env: Env, kind: &'static str) {
        if kind == "requests_10000" {
            return ten_thousand_anonymous_requests(env).await;
        }
        let forged = format!("{SESSION_COOKIE}={}", Id::default());
        let garbage = format!("{REMEMBER_COOKIE}=not-a-token.%00%0A");
        let unknown = format!("{REMEMBER_COOKIE}={}", unknown_remember_token());
        let (cookie, probes): (Option<String>, Vec<Probe>) = match kind {
            "guard" => (None, PROTECTED.to_vec()),
            "route_layer" => (None, LAYER.to_vec()),
            "public" => (None, PUBLIC.to_vec()),
            "forged_session" | "garbage_remember" | "unknown_remember" | "after_logout" => {
                let cookie = match kind {
                    "forged_session" => forged,
                    "garbage_remember" => garbage,
                    "unknown_remember" => unknown,
                    _ => {
                        // A browser that logged in with remember-me and logged out, replaying
                        // both of its old cookies.
                        let mut browser = env.browser();
                        let alice = env.users.by_name("alice");
                        assert_eq!(browser.login_with(&alice, true, None).await.status, 303);
                        let session = browser.session().expect("session");
                        let remember = browser.remember().expect("remember");
                        assert_eq!(browser.post("/logout").await.status, 200);
                        if env.is_store() {
                            format!("{SESSION_COOKIE}={session}; {REMEMBER_COOKIE}={remember}")
                        } else {
                            env.note(
                                "EXCEPTION (cookie sessions): the pre-logout session cookie is \
                                 still a login (no server-side revocation), so only the old \
                                 remember cookie is replayed",
                            );
                            format!("{REMEMBER_COOKIE}={remember}")
                        }
                    }
                };
                (
                    Some(cookie),
                    [PROTECTED, LAYER, PUBLIC].concat().into_iter().collect(),
                )
            }
            other => panic!("unknown request kind {other}"),
        };
        let before = env.snapshot().await;
        for (method, path, json, status, location) in probes {
            let what = format!("{method} {path} json={json} cookie={cookie:?}");
            let reply = raw(&env.router, method, path, cookie.as_deref(), json).await;
            assert_eq!(reply.status.as_u16(), status, "{}: {what}", env.cell);
            if let Some(location) = location {
                assert_eq!(
                    reply.location.as_deref(),
                    Some(location),
                    "{}: {what}",
                    env.cell
                );
            }
            assert_no_state_cookie(&env, &reply.set_cookies, &what);
        }
        let after = env.snapshot().await;
        assert_eq!(
            after,
            before,
            "{}: anonymous requests changed the stores ({})",
            env.cell,
            env.storage.describe()
        );
        if env.is_store() {
            return;
        }
        env.note("EXCEPTION (cookie sessions): no session store to count; checked: no session cookie set, no remember write");
    }

    async fn ten_thousand_anonymous_requests(env: Env) {
        const REQUESTS: usize = 10_000;
        let started = std::time::Instant::now();
        let before = env.snapshot().await;
        let forged = format!("{SESSION_COOKIE}={}", Id::default());
        let unknown = format!("{REMEMBER_COOKIE}={}", unknown_remember_token());
        let garbage = format!("{forged}; {REMEMBER_COOKIE}=garbage");
        for i in 0..REQUESTS {
            let (method, path, cookie, json) = match i % 8 {
                0 => (Method::GET, "/protected", None, false),
                1 => (Method::HEAD, "/protected", None, false),
                2 => (Method::GET, "/layer", None, false),
                3 => (Method::HEAD, "/layer", None, false),
                4 => (Method::GET, "/protected", None, true),
                5 => (Method::GET, "/protected", Some(forged.as_str()), false),
                6 => (Method::HEAD, "/layer", Some(unknown.as_str()), false),
                _ => (Method::GET, "/protected", Some(garbage.as_str()), false),
            };
            let reply = raw(&env.router, method.clone(), path, cookie, json).await;
            let what = format!("request {i}: {method} {path}");
            assert!(
                matches!(reply.status.as_u16(), 303 | 401),
                "{}: {what}: {}",
                env.cell,
                reply.status
            );
            assert_no_state_cookie(&env, &reply.set_cookies, &what);
        }
        let after = env.snapshot().await;
        assert_eq!(
            after,
            before,
            "{}: {REQUESTS} anonymous requests changed the stores ({})",
            env.cell,
            env.storage.describe()
        );
        if env.is_store() {
            assert_eq!(after.session_writes, Some(0), "{}", env.cell);
        }
        env.note(&format!(
            "{REQUESTS} anonymous requests in {:?}: session writes {:?}, records {:?} ({}), \
             remember writes {}",
            started.elapsed(),
            after.session_writes,
            after.records,
            env.storage.describe(),
            after.remember_writes
        ));
    }

    /// Invariant 7 on one path: the user database (row `inv7_loader_failure_503`) or the
    /// session store (`inv7_session_store_failure_503`) is down during the login.
    pub async fn inv7_failure_503(env: Env, path: &'static str) {
        let path = LoginPath::named(path);
        let store_down = env.cell.starts_with("inv7_session_store");
        let mut p = prepare(&env, path).await;
        let tokens_before = env.remember.tokens_of(p.user.id).await.len();
        let set_down = |down: bool| {
            if store_down {
                let sessions = env.sessions.as_ref().expect("a store backend");
                sessions.failing.store(down, Ordering::SeqCst);
            } else {
                env.users.set_failing(down);
            }
        };
        set_down(true);
        let reply = p.browser.login_with(&p.user, true, None).await;
        assert_eq!(reply.status, 503, "{}: login: {}", env.cell, reply.body);
        assert_eq!(reply.body, UNAVAILABLE, "{}", env.cell);
        assert_eq!(reply.cookie_value(SESSION_COOKIE), None, "{}", env.cell);
        assert_eq!(reply.cookie_value(REMEMBER_COOKIE), None, "{}", env.cell);
        let guard = p.browser.get("/protected").await;
        // Nothing to load for a browser with no login and no remember cookie.
        let nothing_to_load = p.who_before == "anonymous" && !store_down;
        let expected = if nothing_to_load { 303 } else { 503 };
        assert_eq!(
            guard.status, expected,
            "{}: guard: {}",
            env.cell, guard.body
        );
        set_down(false);
        assert_eq!(
            env.remember.tokens_of(p.user.id).await.len(),
            tokens_before,
            "{}: a remember token was issued by the failed login",
            env.cell
        );
        let who = p.browser.whoami().await;
        let expected = match path {
            // The stale login ends once the loader answers again.
            LoginPath::StaleHash => "anonymous",
            _ => p.who_before,
        };
        assert!(
            who.starts_with(expected),
            "{}: after the outage the browser is `{who}`, expected `{expected}`",
            env.cell
        );
        if path == LoginPath::AnotherUser {
            assert!(!who.starts_with("bob"), "{}: {who}", env.cell);
        }
    }

    /// The user database is down while a reopened browser is restored from its remember
    /// cookie: 503. Once it is back and the grace window is over, the browser must still be
    /// remembered: a server-side failure must not turn the browser's own cookie into a
    /// "stolen" one (its validator rotated in the store but never delivered) and so revoke
    /// every remember token of the user.
    pub async fn inv7_remember_me_survives_loader_outage(env: Env, _path: &'static str) {
        let mut browser = env.browser();
        let alice = env.users.by_name("alice");
        assert_eq!(browser.login_with(&alice, true, None).await.status, 303);
        browser.close();
        env.users.set_failing(true);
        let reply = browser.get("/protected").await;
        assert_eq!(reply.status, 503, "{}: {}", env.cell, reply.body);
        assert_eq!(reply.cookie_value(SESSION_COOKIE), None, "{}", env.cell);
        env.users.set_failing(false);
        // The user comes back after the grace window (1 s here).
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let who = browser.whoami().await;
        let tokens = env.remember.tokens_of(alice.id).await.len();
        assert_eq!(
            who, "alice fresh=false remembered=true",
            "{}: a 503 during the restore cost the browser its remember-me (alice's remember \
             tokens left: {tokens})",
            env.cell
        );
    }

    pub async fn inv2_next_validated(env: Env, path: &'static str) {
        let mut p = prepare(&env, LoginPath::named(path)).await;
        let cases = [
            ("%2F%2Fevil.example", "/"),
            ("https%3A%2F%2Fevil.example%2F", "/"),
            ("%2F%5Cevil.example", "/"),
            ("%2F%0D%0ASet-Cookie%3A%20x%3D1", "/"),
            ("javascript%3Aalert(1)", "/"),
            ("%2F%2F%2Fevil.example", "/"),
            ("%2F%09%2Fevil.example", "/"),
            ("%2Fdashboard%3Fa%3D1", "/dashboard?a=1"),
        ];
        // The first one on the path's own login, the others on logins that follow.
        for (next, expected) in cases {
            let reply = p.browser.login_with(&p.user, false, Some(next)).await;
            assert_eq!(reply.status, 303, "{}: {next}: {}", env.cell, reply.body);
            let location = reply.location().expect("Location");
            assert!(
                !location.contains(['\r', '\n']),
                "{}: {location:?}",
                env.cell
            );
            assert_eq!(location, expected, "{}: next={next}", env.cell);
        }
    }

    fn decode(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    pub async fn inv3_remember_token(env: Env, path: &'static str) {
        let mut p = prepare(&env, LoginPath::named(path)).await;
        let reply = p.browser.login_with(&p.user, true, None).await;
        assert_eq!(reply.status, 303, "{}: {}", env.cell, reply.body);
        let value = reply
            .cookie_value(REMEMBER_COOKIE)
            .expect("a remember cookie");
        let (sel, validator) = value.split_once('.').expect("selector.validator");
        assert_eq!(
            (decode(sel).len(), decode(validator).len()),
            (16, 32),
            "{}",
            env.cell
        );
        let token = env.remember.find(sel).await.expect("the token is stored");
        let digest: [u8; 32] = Sha256::digest(decode(validator)).into();
        assert_eq!(token.validator_hash, digest, "{}: SHA-256 stored", env.cell);
        assert!(
            !format!("{token:?}").contains(validator),
            "{}: the validator itself is stored",
            env.cell
        );
        assert_eq!(token.user_id, p.user.id.to_string(), "{}", env.cell);
        let lifetime = token.expires_at - time::OffsetDateTime::now_utc();
        assert!(
            (time::Duration::days(30) - lifetime).abs() < time::Duration::minutes(1),
            "{}: server-side expiry {lifetime}",
            env.cell
        );
        if let Some(previous) = &p.remember_before {
            assert!(
                env.remember.find(selector(previous)).await.is_none(),
                "{}: the browser's previous remember token survived its new login",
                env.cell
            );
        }
        // Rotated on use.
        p.browser.close();
        let restored = p.browser.get("/whoami").await;
        assert_eq!(
            restored.body,
            format!("{} fresh=false remembered=true", p.user.name),
            "{}",
            env.cell
        );
        let rotated = restored
            .cookie_value(REMEMBER_COOKIE)
            .expect("rotated cookie");
        let (rotated_sel, rotated_validator) = rotated.split_once('.').expect("token");
        assert_eq!(rotated_sel, sel, "{}", env.cell);
        assert_ne!(rotated_validator, validator, "{}", env.cell);
        let token = env.remember.find(sel).await.expect("still stored");
        let rotated_digest: [u8; 32] = Sha256::digest(decode(rotated_validator)).into();
        assert_eq!(token.validator_hash, rotated_digest, "{}", env.cell);
        assert_eq!(token.previous_hash, Some(digest), "{}", env.cell);
        // The old validator replayed after the grace window (0 here): theft, all revoked.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut thief = p.browser.with_only(&[(REMEMBER_COOKIE, &value)]);
        assert_eq!(thief.whoami().await, "anonymous", "{}", env.cell);
        assert!(
            env.remember.tokens_of(p.user.id).await.is_empty(),
            "{}: theft did not revoke the user's tokens",
            env.cell
        );
    }

    pub async fn inv6_cookie_attributes(env: Env, path: &'static str) {
        let mut p = prepare(&env, LoginPath::named(path)).await;
        let reply = p.browser.login_with(&p.user, true, None).await;
        assert_eq!(reply.status, 303, "{}: {}", env.cell, reply.body);
        assert!(reply.cookie_value(SESSION_COOKIE).is_some(), "{}", env.cell);
        assert!(
            reply.cookie_value(REMEMBER_COOKIE).is_some(),
            "{}",
            env.cell
        );
        let mut checked = 0;
        for line in &p.browser.set_cookie_lines {
            let cookie = cookie::Cookie::parse(line.as_str()).expect("Set-Cookie");
            if cookie.name() != SESSION_COOKIE && cookie.name() != REMEMBER_COOKIE {
                continue;
            }
            // A removal must name the same path, or it removes nothing.
            assert_eq!(cookie.path(), Some("/"), "{}: {line}", env.cell);
            assert_eq!(cookie.domain(), None, "{}: {line}", env.cell);
            if is_removal(&cookie) {
                continue;
            }
            assert_eq!(cookie.http_only(), Some(true), "{}: {line}", env.cell);
            assert_eq!(
                cookie.same_site(),
                Some(cookie::SameSite::Lax),
                "{}: {line}",
                env.cell
            );
            assert_eq!(cookie.secure(), Some(true), "{}: {line}", env.cell);
            checked += 1;
        }
        assert!(checked >= 2, "{}", env.cell);
    }
}
