//! `login-manager-sessions`: URLs to backends, the `DynStore` wrapper, the cookie attributes of
//! both layer kinds, and the login / remember / logout round trip through the library on
//! every backend (Postgres and Redis when reachable: see `store_support`).

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/store_support/mod.rs"]
mod store_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestApp;
use http::StatusCode;
use login_manager::{CookieOptions, Error};
use login_manager_sessions::{CookieProtection, DynStore, Key, SessionBackend, SessionConfig};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::{session_store, SessionStore};

/// The cookie name `common::Client` knows as the session cookie.
const COOKIE: &str = "id";

fn config() -> SessionConfig {
    SessionConfig::new().cookie(CookieOptions::new(COOKIE).secure(false))
}

fn cookie_config() -> SessionConfig {
    config().secret_key(Key::generate())
}

#[track_caller]
fn config_error<T: std::fmt::Debug>(result: Result<T, login_manager::Error>) -> String {
    match result {
        Err(Error::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn urls_name_the_backends() {
    for url in ["memory:", "memory://", " MEMORY: "] {
        let backend = SessionBackend::from_url(url).await.unwrap();
        assert_eq!(backend.kind(), "memory", "{url}");
        assert!(!backend.is_shared());
    }
    for (url, protection) in [
        ("cookie:", CookieProtection::Private),
        ("cookie:private", CookieProtection::Private),
        ("cookie://signed", CookieProtection::Signed),
    ] {
        let backend = SessionBackend::from_url(url).await.unwrap();
        assert!(
            matches!(backend, SessionBackend::Cookie(p) if p == protection),
            "{url}"
        );
        assert!(backend.is_shared(), "every instance with the key reads it");
    }
    let message = config_error(SessionBackend::from_url("cookie:plain").await);
    assert!(message.contains("cookie:signed"), "{message}");
    let message = config_error(SessionBackend::from_url("file:").await);
    assert!(message.contains("directory"), "{message}");
    config_error(SessionBackend::from_url("").await);
}

#[tokio::test]
async fn errors_never_repeat_the_url() {
    // A URL is where the password often is.
    for url in [
        "mysql://app:hunter2@db/app",
        "mongodb://app:hunter2@db/app",
        "hunter2",
    ] {
        let message = config_error(SessionBackend::from_url(url).await);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("known:"), "{message}");
    }
    let unreachable = SessionBackend::from_url("redis://:hunter2@127.0.0.1:1").await;
    let message = unreachable.unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");
    let debug = format!("{:?}", SessionBackend::from_url("cookie:").await.unwrap());
    assert_eq!(debug, "SessionBackend::cookie");
}

#[tokio::test]
async fn from_env_reads_one_variable() {
    let name = format!("LM_TEST_SESSION_URL_{}", std::process::id());
    let message = config_error(SessionBackend::from_env(&name).await);
    assert!(message.contains(&name), "{message}");
    // A name no other test uses: setting it cannot race with them.
    std::env::set_var(&name, "memory:");
    let backend = SessionBackend::from_env(&name).await.unwrap();
    std::env::remove_var(&name);
    assert_eq!(backend.kind(), "memory");
}

#[tokio::test]
async fn file_backend_creates_a_private_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("a").join("sessions");
    let url = format!("file://{}", sessions.display());
    let backend = SessionBackend::from_url(&url).await.unwrap();
    assert_eq!(backend.kind(), "file");
    assert!(sessions.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sessions).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
    backend.delete_expired().await.unwrap();
}

#[tokio::test]
async fn cookie_backend_needs_a_key() {
    let backend = SessionBackend::from_url("cookie:").await.unwrap();
    let message = config_error(backend.into_layer(config()));
    assert!(message.contains("secret key"), "{message}");
    let debug = format!("{:?}", cookie_config());
    assert!(debug.contains("<secret>"), "{debug}");
}

/// A store that keeps whatever it is given and never looks at expiry dates.
#[derive(Debug, Clone, Default)]
struct Forgetful(Arc<Mutex<HashMap<Id, Record>>>);

#[async_trait::async_trait]
impl SessionStore for Forgetful {
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.lock().unwrap().insert(record.id, record.clone());
        Ok(())
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0.lock().unwrap().remove(id);
        Ok(())
    }
}

fn record(expires_in: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: [("k".to_owned(), serde_json::json!("v"))].into(),
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

#[tokio::test]
async fn dyn_store_passes_calls_through() {
    let inner = Forgetful::default();
    let store = DynStore::new(inner.clone());
    let mut live = record(time::Duration::hours(1));
    store.create(&mut live).await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap(), Some(live.clone()));
    live.data.insert("k".to_owned(), serde_json::json!("w"));
    store.save(&live).await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap(), Some(live.clone()));
    store.delete(&live.id).await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap(), None);
    assert!(inner.0.lock().unwrap().is_empty());

    // The same through a shared `Arc<dyn SessionStore>`.
    let shared: Arc<dyn SessionStore> = Arc::new(inner.clone());
    let store = DynStore::from_arc(shared);
    let mut other = record(time::Duration::hours(1));
    store.create(&mut other).await.unwrap();
    assert!(inner.0.lock().unwrap().contains_key(&other.id));
}

#[tokio::test]
async fn dyn_store_refuses_expired_records() {
    let inner = Forgetful::default();
    let store = DynStore::new(inner.clone());
    let expired = record(-time::Duration::seconds(1));
    inner.save(&expired).await.unwrap();
    assert_eq!(store.load(&expired.id).await.unwrap(), None);
}

/// The attributes of the `Set-Cookie` of the session cookie after a login.
async fn login_cookie(layer_config: SessionConfig, backend: &str) -> cookie::Cookie<'static> {
    let name = "session";
    let backend = SessionBackend::from_url(backend).await.unwrap();
    let app = TestApp::with_session_layer(backend.into_layer(layer_config).unwrap());
    let reply = app.client().login("alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let lines: Vec<String> = reply
        .set_cookies()
        .into_iter()
        .filter(|c| c.starts_with(name) || c.starts_with("__Host-"))
        .collect();
    assert_eq!(lines.len(), 1, "one session cookie: {lines:?}");
    cookie::Cookie::parse(lines[0].clone()).unwrap()
}

#[tokio::test]
async fn cookies_are_secure_by_default_and_end_with_the_browser() {
    for (backend, key) in [("memory:", None), ("cookie:", Some(Key::generate()))] {
        let mut settings = SessionConfig::new();
        if let Some(key) = key {
            settings = settings.secret_key(key);
        }
        let cookie = login_cookie(settings, backend).await;
        assert_eq!(cookie.name(), "session", "{backend}");
        assert_eq!(cookie.http_only(), Some(true), "{backend}");
        assert_eq!(cookie.secure(), Some(true), "{backend}");
        assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax), "{backend}");
        assert_eq!(cookie.path(), Some("/"), "{backend}");
        assert_eq!(cookie.domain(), None, "{backend}");
        assert_eq!(cookie.max_age(), None, "browser session: {cookie}");
        assert_eq!(cookie.expires(), None, "browser session: {cookie}");
    }
}

#[tokio::test]
async fn permanent_sessions_and_cookie_settings() {
    for backend in ["memory:", "cookie:signed"] {
        let settings = SessionConfig::new()
            .secret_key(Key::generate())
            .cookie(
                CookieOptions::new("session")
                    .secure(false)
                    .same_site(cookie::SameSite::Strict)
                    .path("/app")
                    .domain("example.test"),
            )
            .permanent(Duration::from_secs(60 * 60));
        let cookie = login_cookie(settings, backend).await;
        assert_ne!(cookie.secure(), Some(true), "{backend}");
        assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
        assert_eq!(cookie.path(), Some("/app"));
        assert_eq!(cookie.domain(), Some("example.test"));
        let max_age = cookie.max_age().expect("a permanent cookie has a Max-Age");
        assert!(
            max_age > time::Duration::minutes(59) && max_age <= time::Duration::hours(1),
            "{cookie}"
        );

        // `__Host-` forces `Secure`, `Path=/` and no `Domain`.
        let settings = SessionConfig::new().secret_key(Key::generate()).cookie(
            CookieOptions::new("session")
                .secure(false)
                .path("/app")
                .domain("example.test")
                .host_prefix(true),
        );
        let cookie = login_cookie(settings, backend).await;
        assert_eq!(cookie.name(), "__Host-session", "{backend}");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
    }
}

/// Login, data in the session, remember-me after the browser closed, logout. With
/// `revocable`, a copy of the session cookie taken before the logout is dead afterwards; a
/// cookie session cannot do that (module docs), and the test pins that down too.
async fn round_trip(backend: SessionBackend, settings: SessionConfig, revocable: bool) {
    let kind = backend.kind();
    let app = TestApp::with_session_layer(backend.into_layer(settings).unwrap());
    let mut browser = app.client();
    assert_eq!(browser.whoami().await, "anonymous", "{kind}");
    let reply = browser.login_remembered("alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{kind}: {}", reply.body);
    assert!(
        browser.whoami().await.starts_with("alice fresh=true"),
        "{kind}"
    );
    let reply = browser.post("/cart/tea").await;
    assert_eq!(reply.status, StatusCode::OK, "{kind}: {}", reply.body);
    assert_eq!(browser.get("/cart").await.body, "tea", "{kind}");

    browser.close_browser();
    assert!(
        browser
            .whoami()
            .await
            .starts_with("alice fresh=false remembered=true"),
        "{kind}: restored from the remember cookie"
    );
    let before_logout = browser.session_id().expect("a session cookie");
    let reply = browser.post("/logout").await;
    assert_eq!(reply.status, StatusCode::OK, "{kind}: {}", reply.body);
    assert_eq!(browser.whoami().await, "anonymous", "{kind}");
    assert_eq!(browser.remember_cookie(), None, "{kind}");

    let mut copy = app.client();
    copy.cookies.insert(COOKIE.to_owned(), before_logout);
    let whoami = copy.whoami().await;
    if revocable {
        assert_eq!(whoami, "anonymous", "{kind}: logout is server-side");
    } else {
        assert!(whoami.starts_with("alice"), "{kind}: {whoami}");
    }
}

#[tokio::test]
async fn round_trip_memory() {
    let backend = SessionBackend::from_url("memory:").await.unwrap();
    round_trip(backend, config(), true).await;
}

#[tokio::test]
async fn round_trip_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let backend = SessionBackend::from_url(&url).await.unwrap();
    assert_eq!(backend.kind(), "sqlite");
    round_trip(backend.clone(), config(), true).await;
    backend.delete_expired().await.unwrap();
}

#[tokio::test]
async fn round_trip_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}", dir.path().join("sessions").display());
    let backend = SessionBackend::from_url(&url).await.unwrap();
    round_trip(backend, config(), true).await;
    let files = std::fs::read_dir(dir.path().join("sessions"))
        .unwrap()
        .count();
    assert!(files >= 1, "sessions are files");
}

#[tokio::test]
async fn round_trip_cookie_private() {
    let backend = SessionBackend::from_url("cookie:private").await.unwrap();
    round_trip(backend, cookie_config(), false).await;
}

#[tokio::test]
async fn round_trip_cookie_signed() {
    let backend = SessionBackend::from_url("cookie:signed").await.unwrap();
    round_trip(backend, cookie_config(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_postgres() {
    let Some(db) = store_support::PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let case = async move {
        let backend = SessionBackend::from_url(&url).await.unwrap();
        assert!(backend.is_shared());
        // Twice, as a second instance would: the migration is idempotent.
        backend.migrate().await.unwrap();
        round_trip(backend.clone(), config(), true).await;
        backend.delete_expired().await.unwrap();
    };
    store_support::with_teardown(case, db.drop_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_redis() {
    // Reachability (and the SKIPPED / CI=true rule) first.
    let Some(pool) = store_support::backends::redis_pool().await else {
        return;
    };
    let _ = fred::prelude::ClientLike::quit(&pool).await;
    let backend = SessionBackend::from_url(&store_support::redis_url())
        .await
        .unwrap();
    assert!(backend.is_shared());
    // Session keys are bare ids, not under a test prefix: a short lifetime removes what
    // this test leaves.
    round_trip(
        backend,
        config().permanent(Duration::from_secs(2 * 60)),
        true,
    )
    .await;
}

#[tokio::test]
async fn tampered_cookie_sessions_are_anonymous() {
    for mode in ["cookie:private", "cookie:signed"] {
        let backend = SessionBackend::from_url(mode).await.unwrap();
        let app = TestApp::with_session_layer(backend.into_layer(cookie_config()).unwrap());
        let mut browser = app.client();
        browser.login("alice").await;
        assert!(browser.whoami().await.starts_with("alice"), "{mode}");
        let value = browser.session_id().unwrap();

        // One character changed, in the middle (the signature or ciphertext).
        let mut tampered: Vec<char> = value.chars().collect();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
        let mut thief = app.client();
        thief
            .cookies
            .insert(COOKIE.to_owned(), tampered.into_iter().collect());
        assert_eq!(thief.whoami().await, "anonymous", "{mode}");

        // A cookie made with another key is worth nothing either.
        let other = SessionBackend::from_url(mode).await.unwrap();
        let other = TestApp::with_session_layer(other.into_layer(cookie_config()).unwrap());
        let mut elsewhere = other.client();
        elsewhere.cookies.insert(COOKIE.to_owned(), value);
        assert_eq!(elsewhere.whoami().await, "anonymous", "{mode}");
    }
}

#[tokio::test]
async fn oversized_cookie_sessions_are_a_clear_error() {
    let backend = SessionBackend::from_url("cookie:").await.unwrap();
    let app = TestApp::with_session_layer(
        backend
            .into_layer(cookie_config().max_cookie_bytes(1024))
            .unwrap(),
    );
    let mut browser = app.client();
    browser.login("alice").await;
    let before = browser.session_id().unwrap();

    let big = "x".repeat(2000);
    let reply = browser.post(&format!("/cart/{big}")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("does not fit in its cookie"),
        "{}",
        reply.body
    );
    assert_eq!(reply.set_cookie(COOKIE), None, "no truncated cookie");
    // The session as it was before the request still works.
    assert_eq!(browser.session_id(), Some(before));
    assert!(browser.whoami().await.starts_with("alice"));
    assert_eq!(browser.get("/cart").await.body, "empty");

    // Within the limit, fine.
    let reply = browser.post("/cart/tea").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(browser.get("/cart").await.body, "tea");
}
