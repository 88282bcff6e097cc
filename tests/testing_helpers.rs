//! The `testing` feature: a cookie for a logged-in user, no login round trip.
#![cfg(feature = "testing")]

mod common;

use axum::{body::Body, http::Request, routing::get, Router};
use common::{User, Users};
use http::{header, StatusCode};
use login_manager::{
    testing::TestLogin, FreshLoginRequired, LoginManager, LoginRequired, SessionProtection,
};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

fn app(store: MemoryStore) -> Router {
    let manager = LoginManager::new(Users::new()).session_protection(SessionProtection::Strong);
    Router::new()
        .route(
            "/",
            get(|LoginRequired(u): LoginRequired<User>| async move { u.name }),
        )
        .route(
            "/fresh",
            get(|FreshLoginRequired(u): FreshLoginRequired<User>| async move { u.name }),
        )
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(store).with_name("session"))
}

async fn get_with(app: &Router, path: &str, cookie: &http::HeaderValue) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .header(header::USER_AGENT, "any-test-client")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn test_login_cookie_opens_protected_routes() {
    let store = MemoryStore::default();
    let app = app(store.clone());
    let alice = Users::new().by_name("alice").unwrap();
    let cookie = TestLogin::new()
        .cookie_name("session")
        .cookie(&store, &alice)
        .await
        .unwrap();
    // Twice: Strong protection adopts the test client on the first request, keeps it after.
    for _ in 0..2 {
        assert_eq!(
            get_with(&app, "/", &cookie).await,
            (StatusCode::OK, "alice".into())
        );
    }
    assert_eq!(get_with(&app, "/fresh", &cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn test_login_can_be_not_fresh_or_remembered() {
    let store = MemoryStore::default();
    let app = app(store.clone());
    let alice = Users::new().by_name("alice").unwrap();
    for login in [TestLogin::new().fresh(false), TestLogin::new().remembered()] {
        let cookie = login
            .cookie_name("session")
            .cookie(&store, &alice)
            .await
            .unwrap();
        assert_eq!(get_with(&app, "/", &cookie).await.0, StatusCode::OK);
        assert_eq!(
            get_with(&app, "/fresh", &cookie).await.0,
            StatusCode::SEE_OTHER
        );
    }
}
