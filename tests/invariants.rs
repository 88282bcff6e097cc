//! One test per security invariant of DESIGN.md, named after it. The detailed cases live in
//! core.rs, remember.rs, next.rs, password.rs and login_flow.rs; these are the summaries that
//! docs/security.md points to.

mod common;

use std::sync::atomic::Ordering;

use axum::{body::Body, http::Request, routing::get, Router};
use common::{TestApp, Users};
use http::{header, StatusCode};
use login_manager::{
    AuthSession, LoginManager, LoginOptions, MemoryRememberStore, PasswordHasher, Remember,
};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[tokio::test]
async fn invariant_1_login_rotates_the_session_and_logout_is_server_side() {
    let app = TestApp::new();
    let mut client = app.client();
    client.post("/cart/fixated").await;
    let planted = client.session_id().unwrap();
    client.login_remembered("alice").await;
    assert_ne!(client.session_id().unwrap(), planted);
    assert!(!app.store.exists(&planted).await);
    // A different user: the old data is flushed first.
    client.post("/cart/alices").await;
    client.login("bob").await;
    assert_eq!(client.get("/cart").await.body, "empty");
    // Logout: record gone server-side, token gone server-side, cookie expired.
    client.login_remembered("alice").await;
    let session = client.session_id().unwrap();
    let reply = client.post("/logout").await;
    assert!(!app.store.exists(&session).await);
    assert!(app.remember_store.is_empty());
    assert!(reply
        .set_cookie("remember_token")
        .is_some_and(|c| c.contains("Max-Age=0")));
}

#[tokio::test]
async fn invariant_2_next_is_a_same_origin_relative_path() {
    let app = TestApp::new();
    let mut client = app.client();
    for evil in [
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%0D%0ASet-Cookie%3Ax%3D1",
        "javascript%3Aalert(1)",
    ] {
        assert_eq!(
            client.get(&format!("/next?next={evil}")).await.body,
            "/home",
            "{evil}"
        );
    }
    assert_eq!(client.get("/next?next=%2Fok%3Fa%3D1").await.body, "/ok?a=1");
}

#[tokio::test]
async fn invariant_3_remember_tokens_are_split_hashed_rotated_and_revocable() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login_remembered("alice").await;
    let cookie = client.remember_cookie().unwrap();
    let (selector, validator) = cookie.split_once('.').unwrap();
    assert_eq!(
        (selector.len(), validator.len()),
        (22, 43),
        "16 + 32 random bytes"
    );
    let stored = app.remember_store_token(selector).await;
    let validator_bytes = base64_decode(validator);
    assert_eq!(
        stored.validator_hash,
        <[u8; 32]>::from(Sha256::digest(&validator_bytes))
    );
    assert!(
        !format!("{stored:?}").contains(validator),
        "the validator is not stored"
    );
    // Rotated on use; the old one replayed after the grace window revokes everything.
    let mut thief = client.clone();
    client.close_browser();
    client.whoami().await;
    assert_ne!(client.remember_cookie().unwrap(), cookie);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    thief.close_browser();
    assert_eq!(thief.whoami().await, "anonymous");
    assert!(app.remember_store.is_empty());
}

#[tokio::test]
async fn invariant_4_no_secret_key_anywhere() {
    // Nothing to configure: no key, and nothing the client holds is derived from the user.
    let app = TestApp::new();
    let mut a = app.client();
    let mut b = app.client();
    a.login_remembered("alice").await;
    b.login_remembered("alice").await;
    let (ca, cb) = (a.remember_cookie().unwrap(), b.remember_cookie().unwrap());
    assert_ne!(
        ca.split('.').next(),
        cb.split('.').next(),
        "random, not derived"
    );
    for cookie in [&ca, &cb, &a.session_id().unwrap()] {
        assert!(!cookie.contains("alice"));
    }
    // Forging a cookie for a known user without the random validator gets nothing.
    let mut forger = app.client();
    let selector = ca.split('.').next().unwrap();
    forger.cookies.insert(
        "remember_token".into(),
        format!("{selector}.{}", "A".repeat(43)),
    );
    assert_eq!(forger.whoami().await, "anonymous");
}

#[tokio::test]
async fn invariant_5_passwords_are_argon2id_bounded_and_capped() {
    let hasher = PasswordHasher::new();
    let phc = hasher.hash("correct horse").await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let before = hasher.hash_count();
    let huge = "x".repeat(1024 * 1024);
    assert!(!hasher.verify(&huge, &phc).await.unwrap().valid);
    assert!(!hasher.verify_user(&huge, Some(&phc)).await.unwrap().valid);
    assert_eq!(hasher.hash_count(), before, "not hashed");
    // Unknown users cost one verification, like known ones.
    assert!(!hasher.verify_user("guess", None).await.unwrap().valid);
    assert_eq!(hasher.hash_count(), before + 1);
    assert!(hasher.peak_concurrency() <= std::thread::available_parallelism().unwrap().get());
}

#[tokio::test]
async fn invariant_6_cookies_are_httponly_samesite_lax_secure_by_default() {
    let manager =
        LoginManager::new(Users::new()).remember(Remember::new(MemoryRememberStore::new()));
    let app = Router::new()
        .route(
            "/login",
            get(|mut auth: AuthSession<Users>| async move {
                let alice = auth.loader().by_name("alice").unwrap();
                auth.login_user_with(&alice, LoginOptions::new().remember(true))
                    .await
                    .unwrap();
            }),
        )
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(MemoryStore::default()));
    let response = app
        .oneshot(Request::get("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let remember = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("remember_token="))
        .expect("remember cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(
            remember.contains(attribute),
            "{attribute} missing: {remember}"
        );
    }
    assert!(!remember.contains("Domain"), "{remember}");
}

#[tokio::test]
async fn invariant_7_store_or_loader_failure_never_logs_anyone_in() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    app.users.failing.store(true, Ordering::SeqCst);
    let reply = client.get("/protected").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "Service temporarily unavailable.");
    app.users.failing.store(false, Ordering::SeqCst);
    app.store.failing.store(true, Ordering::SeqCst);
    let mut stranger = app.client();
    assert_eq!(
        stranger.login("bob").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.store.failing.store(false, Ordering::SeqCst);
    assert_eq!(stranger.whoami().await, "anonymous");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

trait StoreAccess {
    async fn remember_store_token(&self, selector: &str) -> login_manager::RememberToken;
}

impl StoreAccess for TestApp {
    async fn remember_store_token(&self, selector: &str) -> login_manager::RememberToken {
        use login_manager::RememberStore;
        self.remember_store.find(selector).await.unwrap().unwrap()
    }
}
