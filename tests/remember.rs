//! Remember-me: issue, restore, rotation, theft detection, revocation, failures.

mod common;

use async_trait::async_trait;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
use std::time::Duration;

use axum::{body::Body, http::Request};
use common::{Client, TestApp};
use http::StatusCode;
use login_manager::{
    AuthEvent, MemoryRememberStore, Remember, RememberStore, RememberToken, Rotation,
    SessionProtection,
};

async fn remembered_client(app: &TestApp) -> Client {
    let mut client = app.client();
    let reply = client.login_remembered("alice").await;
    assert_eq!(reply.status, StatusCode::OK);
    client
}

#[tokio::test]
async fn remember_cookie_is_set_only_when_asked_and_only_on_success() {
    let app = TestApp::new();
    let mut plain = app.client();
    assert!(plain
        .login("alice")
        .await
        .set_cookie("remember_token")
        .is_none());

    let mut refused = app.client();
    let reply = refused
        .send(
            Request::post("/login/carol") // inactive
                .header("x-remember", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.set_cookie("remember_token").is_none());
    assert!(app.remember_store.is_empty());

    let mut client = app.client();
    let reply = client.login_remembered("alice").await;
    let cookie = reply.set_cookie("remember_token").expect("remember cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    assert_eq!(app.remember_store.len(), 1);
}

#[tokio::test]
async fn remember_restores_after_the_session_cookie_is_gone_not_fresh() {
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    client.close_browser();
    assert_eq!(client.whoami().await, "alice fresh=false remembered=true");
    assert!(client.session_id().is_some(), "a new session was started");
    assert!(app.events().contains(&AuthEvent::LoadedFromRemember {
        user_id: "1".into()
    }));
    // The restored session is an ordinary session from now on.
    assert_eq!(client.whoami().await, "alice fresh=false remembered=true");
    // Fresh-only pages ask for the password again.
    assert_eq!(client.get("/fresh").await.status, StatusCode::SEE_OTHER);
    client.post("/confirm").await;
    assert_eq!(client.get("/fresh").await.status, StatusCode::OK);
}

#[tokio::test]
async fn remember_token_rotates_on_every_use() {
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    let mut seen = vec![client.remember_cookie().unwrap()];
    for _ in 0..3 {
        client.close_browser();
        assert!(client.whoami().await.starts_with("alice"));
        let cookie = client.remember_cookie().unwrap();
        assert!(!seen.contains(&cookie), "validator rotated");
        // Same selector, new validator.
        assert_eq!(cookie.split('.').next(), seen[0].split('.').next());
        seen.push(cookie);
    }
    assert_eq!(app.remember_store.len(), 1);
}

#[tokio::test]
async fn remember_replay_after_grace_revokes_every_token_of_the_user() {
    let app = TestApp::new(); // grace window: 1 s
    let mut victim = remembered_client(&app).await;
    let mut other_device = remembered_client(&app).await;
    let mut thief = victim.clone();
    thief.close_browser();
    // The victim uses the token: it rotates.
    victim.close_browser();
    assert!(victim.whoami().await.starts_with("alice"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The thief's copy is the old validator, past the grace window.
    let reply = thief.get("/whoami").await;
    assert_eq!(reply.body, "anonymous");
    assert!(reply
        .set_cookie("remember_token")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert!(app.events().contains(&AuthEvent::RememberTheftDetected {
        user_id: "1".into()
    }));
    // The whole family is gone: the victim's newest token and the other device's too.
    victim.close_browser();
    assert_eq!(victim.whoami().await, "anonymous");
    other_device.close_browser();
    assert_eq!(other_device.whoami().await, "anonymous");
    assert!(app.remember_store.is_empty());
}

#[tokio::test]
async fn remember_parallel_restores_within_grace_both_succeed() {
    let app = TestApp::with(|m| {
        m.remember(
            Remember::new(MemoryRememberStore::new())
                .secure(false)
                .grace_period(Duration::from_secs(10)),
        )
    });
    let mut tab = app.client();
    tab.login_remembered("alice").await;
    tab.close_browser();
    let mut tab1 = tab.clone();
    let mut tab2 = tab.clone();
    let (a, b) = tokio::join!(tab1.whoami(), tab2.whoami());
    assert!(a.starts_with("alice"), "{a}");
    assert!(b.starts_with("alice"), "{b}");
    // One more replay of the original inside the window: still fine, nothing revoked.
    let mut tab3 = tab.clone();
    assert!(tab3.whoami().await.starts_with("alice"));
    assert!(!app
        .events()
        .iter()
        .any(|e| matches!(e, AuthEvent::RememberTheftDetected { .. })));
}

#[tokio::test]
async fn remember_expiry_is_enforced_server_side() {
    let app = TestApp::with(|m| {
        m.remember(
            Remember::new(MemoryRememberStore::new())
                .secure(false)
                .duration(Duration::from_secs(1)),
        )
    });
    let mut client = app.client();
    client.login_remembered("alice").await;
    client.close_browser();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The client still sends the cookie (it ignores Max-Age); the server refuses it.
    assert!(client.remember_cookie().is_some());
    assert_eq!(client.whoami().await, "anonymous");
    assert!(client.remember_cookie().is_none(), "cookie expired");
}

#[tokio::test]
async fn remember_token_dies_on_logout_even_when_replayed() {
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    let mut copy = client.clone();
    let reply = client.post("/logout").await;
    assert!(reply
        .set_cookie("remember_token")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert!(app.remember_store.is_empty());
    copy.close_browser();
    assert_eq!(copy.whoami().await, "anonymous");
}

#[tokio::test]
async fn remember_token_dies_on_logout_after_the_app_cleared_the_session() {
    // Flask-Login #600: the session is already gone, the cookie must still be revoked.
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    let mut copy = client.clone();
    client.close_browser();
    client.post("/logout").await;
    assert!(app.remember_store.is_empty());
    copy.close_browser();
    assert_eq!(copy.whoami().await, "anonymous");
}

#[tokio::test]
async fn remember_tokens_die_with_a_password_change() {
    let app = TestApp::new();
    let mut laptop = remembered_client(&app).await;
    let mut phone = remembered_client(&app).await;
    laptop.post("/password/new-secret").await;
    assert!(app.remember_store.is_empty());
    phone.close_browser();
    assert_eq!(phone.whoami().await, "anonymous");

    // A password change elsewhere (not through update_session_auth_hash) also kills them.
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    let mut alice = app.users.by_name("alice").unwrap();
    alice.password = "reset-by-admin".into();
    app.users.update(alice);
    client.close_browser();
    assert_eq!(client.whoami().await, "anonymous");
}

#[tokio::test]
async fn remember_devices_can_be_revoked_one_or_all() {
    let app = TestApp::new();
    let mut laptop = remembered_client(&app).await;
    let mut phone = remembered_client(&app).await;
    let mut tablet = remembered_client(&app).await;
    let devices: Vec<(String, bool)> =
        serde_json::from_str(&laptop.get("/devices").await.body).unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices.iter().filter(|(_, current)| *current).count(), 1);
    let phone_id: Vec<(String, bool)> =
        serde_json::from_str(&phone.get("/devices").await.body).unwrap();
    let phone_id = phone_id.into_iter().find(|(_, c)| *c).unwrap().0;
    assert_eq!(
        laptop
            .post(&format!("/devices/{phone_id}/revoke"))
            .await
            .body,
        "true"
    );
    assert_eq!(
        laptop.post("/devices/nonexistent/revoke").await.body,
        "false"
    );
    phone.close_browser();
    assert_eq!(phone.whoami().await, "anonymous");
    tablet.close_browser();
    assert!(tablet.whoami().await.starts_with("alice"));

    assert_eq!(laptop.post("/devices/revoke-all").await.body, "2");
    tablet.close_browser();
    assert_eq!(tablet.whoami().await, "anonymous");
    laptop.close_browser();
    assert_eq!(laptop.whoami().await, "anonymous");
}

#[tokio::test]
async fn remember_devices_beyond_the_cap_forget_the_least_recently_used() {
    // A store without a cap of its own, as the SQL and Redis stores: the library enforces it.
    let store = MemoryRememberStore::new().max_tokens_per_user(usize::MAX);
    let app =
        TestApp::with(|m| m.remember(Remember::new(store.clone()).max_devices(3).secure(false)));
    let mut browsers = Vec::new();
    for _ in 0..3 {
        browsers.push(remembered_client(&app).await);
    }
    // The first browser comes back: the second is now the least recently used.
    browsers[0].close_browser();
    assert!(browsers[0].whoami().await.starts_with("alice"));
    browsers.push(remembered_client(&app).await);
    assert_eq!(store.len(), 3);

    let mut remembered = Vec::new();
    for browser in &mut browsers {
        browser.close_browser();
        remembered.push(browser.whoami().await.starts_with("alice"));
    }
    assert_eq!(remembered, [true, false, true, true]);
    assert!(
        !app.events()
            .iter()
            .any(|e| matches!(e, AuthEvent::RememberTheftDetected { .. })),
        "a forgotten token is not a theft"
    );
}

#[tokio::test]
async fn remember_cap_forgets_expired_tokens_before_live_ones() {
    let store = MemoryRememberStore::new().max_tokens_per_user(usize::MAX);
    let now = time::OffsetDateTime::now_utc();
    for (selector, last_used_at, expires_at) in [
        (
            "live-old",
            now - Duration::from_secs(20 * 24 * 60 * 60),
            now + Duration::from_secs(10 * 24 * 60 * 60),
        ),
        ("expired-recent", now, now - Duration::from_secs(1)),
    ] {
        store
            .create(RememberToken {
                selector: selector.into(),
                validator_hash: [0; 32],
                previous_hash: None,
                rotated_at: None,
                user_id: "1".into(),
                auth_hash: String::new(),
                created_at: last_used_at,
                last_used_at,
                expires_at,
                user_agent: String::new(),
            })
            .await
            .unwrap();
    }
    let app =
        TestApp::with(|m| m.remember(Remember::new(store.clone()).max_devices(2).secure(false)));
    remembered_client(&app).await;
    assert_eq!(store.len(), 2);
    assert!(store.find("live-old").await.unwrap().is_some());
    assert!(store.find("expired-recent").await.unwrap().is_none());
}

#[tokio::test]
async fn remember_tampered_tokens_are_anonymous_without_error() {
    let app = TestApp::new();
    let mut client = remembered_client(&app).await;
    let good = client.remember_cookie().unwrap();
    let (selector, _) = good.split_once('.').unwrap();
    let unknown_selector = format!("{}.{}", "A".repeat(22), "B".repeat(43));
    let wrong_format = [
        String::new(),
        "one-part".to_owned(),
        "a.b.c".to_owned(),
        format!("{selector}.!!!not-base64!!!"),
        "x".repeat(10 * 1024),
        unknown_selector,
    ];
    for value in wrong_format {
        let mut tampered = app.client();
        tampered
            .cookies
            .insert("remember_token".into(), value.clone());
        let reply = tampered.get("/whoami").await;
        assert_eq!(reply.status, StatusCode::OK, "{value:.40}");
        assert_eq!(reply.body, "anonymous", "{value:.40}");
        let protected = tampered.get("/protected").await;
        assert_eq!(protected.status, StatusCode::SEE_OTHER, "{value:.40}");
    }
    assert!(!app
        .events()
        .iter()
        .any(|e| matches!(e, AuthEvent::RememberTheftDetected { .. })));
    // The real owner is unaffected.
    client.close_browser();
    assert!(client.whoami().await.starts_with("alice"));
}

#[tokio::test]
async fn remember_restored_session_survives_strong_protection() {
    // Flask-Login #685: the restored session must carry the protection identifier.
    let app = TestApp::with(|m| {
        m.session_protection(SessionProtection::Strong)
            .remember(Remember::new(MemoryRememberStore::new()).secure(false))
    });
    let mut client = app.client();
    client.login_remembered("alice").await;
    client.close_browser();
    for _ in 0..3 {
        assert_eq!(client.whoami().await, "alice fresh=false remembered=true");
    }
}

/// A remember store that can be switched off.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemoryRememberStore,
    down: Arc<AtomicBool>,
}

impl FlakyStore {
    fn check(&self) -> Result<(), login_manager::Error> {
        if self.down.load(Ordering::SeqCst) {
            Err(login_manager::Error::Store("remember store is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl RememberStore for FlakyStore {
    async fn create(&self, token: RememberToken) -> Result<(), login_manager::Error> {
        self.check()?;
        self.inner.create(token).await
    }
    async fn find(&self, selector: &str) -> Result<Option<RememberToken>, login_manager::Error> {
        self.check()?;
        self.inner.find(selector).await
    }
    async fn rotate(
        &self,
        selector: &str,
        expected: &[u8; 32],
        rotation: Rotation,
    ) -> Result<bool, login_manager::Error> {
        self.check()?;
        self.inner.rotate(selector, expected, rotation).await
    }
    async fn delete(&self, selector: &str) -> Result<(), login_manager::Error> {
        self.check()?;
        self.inner.delete(selector).await
    }
    async fn delete_for_user(&self, user_id: &str) -> Result<u64, login_manager::Error> {
        self.check()?;
        self.inner.delete_for_user(user_id).await
    }
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<RememberToken>, login_manager::Error> {
        self.check()?;
        self.inner.list_for_user(user_id).await
    }
    async fn delete_expired(&self) -> Result<u64, login_manager::Error> {
        self.check()?;
        self.inner.delete_expired().await
    }
}

#[tokio::test]
async fn remember_store_failure_gives_503_never_a_login() {
    let store = FlakyStore::default();
    let down = store.down.clone();
    let app = TestApp::with(|m| m.remember(Remember::new(store).secure(false)));
    let mut client = app.client();
    client.login_remembered("alice").await;
    client.close_browser();
    down.store(true, Ordering::SeqCst);
    let reply = client.get("/protected").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(client.session_id().is_none(), "no session was started");
    assert!(
        client.remember_cookie().is_some(),
        "the cookie is kept for later"
    );
    let login = client.login_remembered("bob").await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    down.store(false, Ordering::SeqCst);
    assert!(
        client.whoami().await.starts_with("alice"),
        "works again once the store is back"
    );
}

#[tokio::test]
async fn remember_store_cleanup_removes_expired_tokens() {
    let store = MemoryRememberStore::new();
    let now = time::OffsetDateTime::now_utc();
    for (i, expires) in [
        (0, now - Duration::from_secs(1)),
        (1, now + Duration::from_secs(24 * 60 * 60)),
    ] {
        store
            .create(RememberToken {
                selector: format!("s{i}"),
                validator_hash: [0; 32],
                previous_hash: None,
                rotated_at: None,
                user_id: "1".into(),
                auth_hash: String::new(),
                created_at: now,
                last_used_at: now,
                expires_at: expires,
                user_agent: String::new(),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert_eq!(store.len(), 1);
    assert!(store.find("s1").await.unwrap().is_some());
}

#[tokio::test]
async fn remember_store_can_be_chosen_at_run_time() {
    let store: Arc<dyn RememberStore> = Arc::new(MemoryRememberStore::new());
    let app = TestApp::with(|m| m.remember(Remember::new(store.clone()).secure(false)));
    let mut client = app.client();
    client.login_remembered("alice").await;
    client.close_browser();
    assert!(client.whoami().await.starts_with("alice"));
    assert_eq!(store.list_for_user("1").await.unwrap().len(), 1);
}
