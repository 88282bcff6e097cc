//! The core life-cycle: login, logout, rotation, timeouts, protection, guards, failures.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::{body::Body, http::Request, routing::get, Router};
use common::{TestApp, Users};
use http::{header, Method, StatusCode};
use login_manager::{
    AuthEvent, AuthSession, EndReason, LoginManager, LoginRequired, SessionProtection,
};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[tokio::test]
async fn login_always_rotates_the_session_id() {
    let app = TestApp::new();
    let mut client = app.client();
    // An anonymous session with data: the attacker-fixable id.
    client.post("/cart/apple").await;
    let anonymous_id = client.session_id().expect("anonymous session");
    client.login("alice").await;
    let logged_in_id = client.session_id().expect("session after login");
    assert_ne!(anonymous_id, logged_in_id);
    assert!(
        !app.store.exists(&anonymous_id).await,
        "old id must be dead"
    );
    assert_eq!(
        client.get("/cart").await.body,
        "apple",
        "same user keeps the data"
    );

    // Logging in again as the same user rotates too.
    client.login("alice").await;
    assert_ne!(client.session_id().unwrap(), logged_in_id);
    assert!(!app.store.exists(&logged_in_id).await);
}

#[tokio::test]
async fn login_as_another_user_flushes_the_old_session_data() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    client.post("/cart/alices-secret").await;
    client.login("bob").await;
    assert!(client.whoami().await.starts_with("bob"));
    assert_eq!(client.get("/cart").await.body, "empty");
}

/// Issue #14, defect 1: the user switch used to keep the first user's session id (tower-sessions'
/// `flush()` + `save()` recreates the old id), so whoever planted that id held the new login.
#[tokio::test]
async fn login_as_another_user_gets_a_session_id_no_response_carried_before() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    let alices = client.session_id().unwrap();
    client.post("/cart/alices-secret").await;
    client.login("bob").await;
    let bobs = client.session_id().unwrap();
    assert_ne!(
        bobs, alices,
        "a user switch must not keep the old session id"
    );
    let mut planted = app.client();
    planted.set_session_id(&alices);
    assert_eq!(planted.whoami().await, "anonymous", "the old id is dead");
}

/// The same for a session the library ended itself (stale auth hash) that a remember-me
/// cookie then restores within the same request: the restored login gets a new id, not the
/// ended one.
#[tokio::test]
async fn a_restore_after_a_stale_session_gets_a_new_session_id() {
    let app = TestApp::new();
    let mut stale = app.client();
    stale.login("alice").await;
    let ended = stale.session_id().unwrap();
    let mut alice = app.users.by_name("alice").unwrap();
    alice.password = "changed".to_owned();
    app.users.update(alice);
    // A remember cookie minted under the new auth hash, carried next to the stale session.
    let mut other = app.client();
    other.login_remembered("alice").await;
    stale.set_cookie("remember_token", &other.remember_cookie().unwrap());
    assert!(stale.whoami().await.starts_with("alice"));
    let restored = stale.session_id().unwrap();
    assert_ne!(
        restored, ended,
        "the restored login must not reuse the ended id"
    );
}

#[tokio::test]
async fn stale_auth_hash_logs_the_session_out() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    client.post("/cart/item").await;
    // The password changes elsewhere (another device, an admin).
    let mut alice = app.users.by_name("alice").unwrap();
    alice.password = "changed".to_owned();
    app.users.update(alice);
    assert_eq!(client.whoami().await, "anonymous");
    assert_eq!(
        client.get("/cart").await.body,
        "empty",
        "stale session data is flushed"
    );
    assert!(app.events().contains(&AuthEvent::SessionEnded {
        user_id: "1".into(),
        reason: EndReason::AuthHashChanged
    }));
}

#[tokio::test]
async fn password_change_keeps_this_session_and_ends_the_others() {
    let app = TestApp::new();
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login("alice").await;
    let before = laptop.session_id().unwrap();
    assert_eq!(laptop.post("/password/new-secret").await.body, "changed");
    assert_ne!(laptop.session_id().unwrap(), before, "id rotated");
    assert!(laptop.whoami().await.starts_with("alice"));
    assert_eq!(phone.whoami().await, "anonymous");
}

#[tokio::test]
async fn inactive_user_is_refused_unless_forced() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.login("carol").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(client.whoami().await, "anonymous");
    assert!(app.events().contains(&AuthEvent::LoginRefused {
        user_id: "4".into()
    }));

    let forced = client
        .send(
            Request::post("/login/carol")
                .header("x-force", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    // Forced in, but the next request sees an inactive user and ends the session.
    assert_eq!(client.whoami().await, "anonymous");
}

#[tokio::test]
async fn loader_returning_none_clears_the_auth_record() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    app.users.remove(1);
    let loads = app.users.load_count();
    assert_eq!(client.whoami().await, "anonymous");
    assert_eq!(app.users.load_count(), loads + 1);
    // The id is gone from the session: no loader call on the next request.
    assert_eq!(client.whoami().await, "anonymous");
    assert_eq!(app.users.load_count(), loads + 1);
}

#[tokio::test]
async fn logout_removes_the_auth_record_server_side_and_rotates() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    client.post("/cart/pear").await;
    let logged_in_id = client.session_id().unwrap();
    let stolen = client.clone();
    assert_eq!(client.post("/logout").await.body, "logged out");
    assert_eq!(client.whoami().await, "anonymous");
    assert!(!app.store.exists(&logged_in_id).await);
    assert_eq!(
        client.get("/cart").await.body,
        "pear",
        "unrelated data kept"
    );
    // A copy of the old cookie is dead.
    let mut stolen = stolen;
    assert_eq!(stolen.whoami().await, "anonymous");
    assert!(app.events().contains(&AuthEvent::LoggedOut {
        user_id: Some("1".into())
    }));
}

#[tokio::test]
async fn idle_timeout_ends_a_quiet_session() {
    let app = TestApp::with(|m| m.idle_timeout(Duration::from_secs(2)));
    let mut client = app.client();
    client.login("alice").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(
        client.whoami().await.starts_with("alice"),
        "active within the timeout"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(client.whoami().await, "anonymous");
    assert!(app.events().contains(&AuthEvent::SessionEnded {
        user_id: "1".into(),
        reason: EndReason::IdleTimeout
    }));
}

#[tokio::test]
async fn absolute_timeout_ends_even_an_active_session() {
    let app = TestApp::with(|m| {
        m.idle_timeout(Duration::from_secs(60))
            .absolute_timeout(Duration::from_secs(2))
    });
    let mut client = app.client();
    client.login("alice").await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
        client.whoami().await;
    }
    assert_eq!(client.whoami().await, "anonymous");
    assert!(app.events().contains(&AuthEvent::SessionEnded {
        user_id: "1".into(),
        reason: EndReason::AbsoluteTimeout
    }));
}

#[tokio::test]
async fn session_protection_basic_marks_the_session_not_fresh() {
    let app = TestApp::with(|m| m.session_protection(SessionProtection::Basic));
    let mut client = app.client();
    client.login("alice").await;
    assert_eq!(client.whoami().await, "alice fresh=true remembered=false");
    client.user_agent = "another-browser/2.0".into();
    assert_eq!(client.whoami().await, "alice fresh=false remembered=false");
    assert_eq!(client.get("/fresh").await.status, StatusCode::SEE_OTHER);
    assert!(app.events().contains(&AuthEvent::SessionProtected {
        user_id: "1".into(),
        logged_out: false
    }));
}

#[tokio::test]
async fn session_protection_strong_logs_out() {
    let app = TestApp::with(|m| m.session_protection(SessionProtection::Strong));
    let mut client = app.client();
    client.login("alice").await;
    client.addr = "192.0.2.99:4444".parse().unwrap();
    assert_eq!(client.whoami().await, "anonymous");
    assert!(app.events().contains(&AuthEvent::SessionProtected {
        user_id: "1".into(),
        logged_out: true
    }));
}

#[tokio::test]
async fn session_protection_off_ignores_client_changes() {
    let app = TestApp::with(|m| m.session_protection(SessionProtection::Off));
    let mut client = app.client();
    client.login("alice").await;
    client.user_agent = "another-browser/2.0".into();
    assert_eq!(client.whoami().await, "alice fresh=true remembered=false");
}

#[tokio::test]
async fn user_is_resolved_once_per_request() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    let loads = app.users.load_count();
    let session_loads = app.store.load_count();
    let reply = client.get("/many").await;
    assert_eq!(reply.body, "alice alice alice");
    assert_eq!(app.users.load_count(), loads + 1, "one loader call");
    assert_eq!(
        app.store.load_count(),
        session_loads + 1,
        "one session load"
    );
}

#[tokio::test]
async fn public_route_does_no_session_or_loader_io() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    let loads = app.users.load_count();
    let session_loads = app.store.load_count();
    let reply = client.get("/public").await;
    assert_eq!(reply.body, "public");
    assert_eq!(app.users.load_count(), loads);
    assert_eq!(app.store.load_count(), session_loads);
    assert!(
        reply.header("vary").is_none(),
        "public answers stay cacheable"
    );
    assert!(reply.header("cache-control").is_none());
}

#[tokio::test]
async fn login_dependent_responses_are_not_cacheable() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.get("/whoami").await;
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("vary"), Some("Cookie"));
}

#[tokio::test]
async fn guard_redirects_browsers_with_next() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.get("/protected?tab=2&x=%2F").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.header("location"),
        Some("/login?next=%2Fprotected%3Ftab%3D2%26x%3D%252F")
    );
    let head = client
        .send(Request::head("/protected").body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, StatusCode::SEE_OTHER);
    assert_eq!(head.header("location"), Some("/login?next=%2Fprotected"));
    assert!(app.events().contains(&AuthEvent::Unauthorized {
        path: "/protected".into()
    }));
}

#[tokio::test]
async fn guard_redirects_other_methods_without_next() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.post("/protected").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "303, never 307");
    assert_eq!(reply.header("location"), Some("/login"));
}

#[tokio::test]
async fn guard_answers_json_and_xhr_clients_with_401() {
    let app = TestApp::new();
    let mut client = app.client();
    for (name, value) in [
        ("accept", "application/json"),
        ("accept", "application/json, text/plain;q=0.5"),
        ("x-requested-with", "XMLHttpRequest"),
    ] {
        let reply = client
            .send(
                Request::get("/protected")
                    .header(name, value)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: {value}");
        assert_eq!(reply.body, r#"{"error":"unauthorized"}"#);
    }
    // A browser's Accept prefers HTML.
    let browser = client
        .send(
            Request::get("/protected")
                .header(
                    "accept",
                    "text/html,application/xhtml+xml,application/json;q=0.9",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(browser.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn guard_answers_htmx_with_hx_redirect() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client
        .send(
            Request::get("/protected")
                .header("hx-request", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("hx-redirect"),
        Some("/login?next=%2Fprotected")
    );
}

#[tokio::test]
async fn guard_never_puts_a_foreign_host_into_next() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client
        .send(
            Request::get("http://evil.example/protected?a=1")
                .header("host", "evil.example")
                .header("x-forwarded-host", "evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.header("location"),
        Some("/login?next=%2Fprotected%3Fa%3D1")
    );
}

#[tokio::test]
async fn route_layers_guard_their_routes_and_let_options_through() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.get("/layer/login").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.header("location"),
        Some("/login?next=%2Flayer%2Flogin")
    );
    let preflight = client
        .send(
            Request::options("/layer/login")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(preflight.body, "preflight");
    client.login("alice").await;
    assert_eq!(client.get("/layer/login").await.body, "members");
    assert_eq!(client.get("/layer/fresh").await.body, "fresh members");
}

#[tokio::test]
async fn permission_guard_uses_the_per_router_login_view_and_403() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client.get("/admin").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), Some("/admin/login?next=%2Fadmin"));
    client.login("alice").await;
    let forbidden = client.get("/admin").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(app.events().contains(&AuthEvent::Forbidden {
        user_id: "1".into(),
        permission: "admin".into()
    }));
    let mut admin = app.client();
    admin.login("admin").await;
    assert_eq!(admin.get("/admin").await.body, "admin area");
}

#[tokio::test]
async fn fresh_guard_sends_stale_logins_to_the_refresh_view() {
    let app = TestApp::with(|m| m.refresh_view("/reauth"));
    let mut client = app.client();
    client.login("alice").await;
    assert_eq!(client.get("/fresh").await.body, "Fresh, alice");
    client.user_agent = "moved/1.0".into(); // Basic protection: no longer fresh
    let reply = client.get("/fresh").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), Some("/reauth?next=%2Ffresh"));
    let json = client
        .send(
            Request::get("/fresh")
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(json.status, StatusCode::UNAUTHORIZED);
    let before = client.session_id().unwrap();
    assert_eq!(client.post("/confirm").await.body, "confirmed");
    assert_ne!(
        client.session_id().unwrap(),
        before,
        "confirm_login rotates the id"
    );
    assert_eq!(client.get("/fresh").await.body, "Fresh, alice");
    assert!(app.events().contains(&AuthEvent::LoginConfirmed {
        user_id: "1".into()
    }));
}

#[tokio::test]
async fn fresh_max_age_expires_freshness() {
    let app = TestApp::with(|m| m.fresh_max_age(Duration::from_secs(1)));
    let mut client = app.client();
    client.login("alice").await;
    assert_eq!(client.get("/fresh").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(client.get("/fresh").await.status, StatusCode::SEE_OTHER);
    assert_eq!(client.whoami().await, "alice fresh=false remembered=false");
}

#[tokio::test]
async fn request_loader_authenticates_without_a_session() {
    let app = TestApp::new();
    let mut client = app.client();
    let reply = client
        .send(
            Request::get("/protected")
                .header("authorization", "Bearer letmein")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.body, "Hello, bob");
    assert!(
        client.session_id().is_none(),
        "nothing written to the session"
    );
    let wrong = client
        .send(
            Request::get("/protected")
                .header("authorization", "Bearer nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER);
    assert!(app.events().contains(&AuthEvent::LoadedFromRequest {
        user_id: "2".into()
    }));
}

#[tokio::test]
async fn next_or_accepts_only_safe_paths() {
    let app = TestApp::new();
    let mut client = app.client();
    assert_eq!(
        client.get("/next?next=%2Fdashboard%3Fa%3D1").await.body,
        "/dashboard?a=1"
    );
    assert_eq!(
        client.get("/next?next=%2F%2Fevil.example").await.body,
        "/home"
    );
    assert_eq!(
        client.get("/next?next=https://evil.example").await.body,
        "/home"
    );
    assert_eq!(client.get("/next").await.body, "/home");
}

#[tokio::test]
async fn failing_store_gives_503_not_a_login() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    app.store.failing.store(true, Ordering::SeqCst);
    for path in ["/protected", "/layer/login", "/admin", "/whoami"] {
        let reply = client.get(path).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(!reply.body.contains("alice"));
    }
    let login = client.login("bob").await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    app.store.failing.store(false, Ordering::SeqCst);
    assert!(
        client.whoami().await.starts_with("alice"),
        "back once the store is"
    );
}

#[tokio::test]
async fn failing_loader_gives_503_not_a_login() {
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    app.users.failing.store(true, Ordering::SeqCst);
    let reply = client.get("/protected").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "Service temporarily unavailable.");
    assert_eq!(
        client.get("/whoami").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.users.failing.store(false, Ordering::SeqCst);
    assert!(
        client.whoami().await.starts_with("alice"),
        "the session survived"
    );
}

#[tokio::test]
async fn hung_loader_times_out_with_503() {
    #[derive(Clone)]
    struct Slow;
    impl login_manager::UserLoader for Slow {
        type User = common::User;
        type Error = std::convert::Infallible;
        async fn load_user(&self, _: &u32) -> Result<Option<common::User>, Self::Error> {
            Ok(None)
        }
        async fn load_user_from_request(
            &self,
            _: &http::request::Parts,
        ) -> Result<Option<common::User>, Self::Error> {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok(None)
        }
    }
    let manager = LoginManager::new(Slow).store_timeout(std::time::Duration::from_millis(50));
    let app = Router::new()
        .route("/", get(|_: LoginRequired<common::User>| async { "never" }))
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(MemoryStore::default()));
    let reply = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unauthorized_handler_replaces_the_answer() {
    let app = TestApp::with(|m| {
        m.unauthorized_handler(|rejection| {
            let mut response = rejection.into_default_response();
            response
                .headers_mut()
                .insert("x-custom", http::HeaderValue::from_static("yes"));
            response
        })
    });
    let mut client = app.client();
    let reply = client.get("/protected").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("x-custom"), Some("yes"));
}

#[tokio::test]
async fn missing_layers_say_what_to_add() {
    let no_manager = Router::new()
        .route("/", get(|_: AuthSession<Users>| async { "x" }))
        .layer(SessionManagerLayer::new(MemoryStore::default()));
    let reply = no_manager
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_text(reply).await;
    assert!(body.contains("Missing `LoginManagerLayer`"), "{body}");
    assert!(body.contains(".layer(manager.into_layer())"), "{body}");

    let no_session = Router::new()
        .route("/", get(|_: LoginRequired<common::User>| async { "x" }))
        .layer(LoginManager::new(Users::new()).into_layer());
    let reply = no_session
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = body_text(reply).await;
    assert!(body.contains("Missing `SessionManagerLayer`"), "{body}");
}

#[tokio::test]
async fn head_and_trace_on_protected_routes_are_never_served_anonymously() {
    let app = TestApp::new();
    let mut client = app.client();
    for method in [Method::HEAD, Method::TRACE, Method::DELETE] {
        let reply = client
            .send(
                Request::builder()
                    .method(method.clone())
                    .uri("/protected")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            reply.status == StatusCode::SEE_OTHER || reply.status == StatusCode::METHOD_NOT_ALLOWED,
            "{method}: {}",
            reply.status
        );
    }
}

#[tokio::test]
async fn auth_record_stays_small() {
    let store = MemoryStore::default();
    let manager = LoginManager::new(Users::new());
    let app = Router::new()
        .route(
            "/login",
            get(|mut auth: AuthSession<Users>| async move {
                let user = auth.loader().by_name("alice").unwrap();
                auth.login_user_with(&user, Default::default())
                    .await
                    .unwrap();
                let record = auth
                    .session()
                    .unwrap()
                    .get_value("_auth")
                    .await
                    .unwrap()
                    .unwrap();
                record.to_string().len().to_string()
            }),
        )
        .layer(manager.into_layer())
        .layer(SessionManagerLayer::new(store));
    let reply = app
        .oneshot(
            Request::get("/login")
                .header(header::USER_AGENT, "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let len: usize = body_text(reply).await.parse().unwrap();
    assert!(len <= 128, "auth record is {len} bytes");
}

async fn body_text(response: axum::response::Response) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn logout_can_answer_clear_site_data() {
    let app = TestApp::with(|m| m.clear_site_data_on_logout(true));
    let mut client = app.client();
    client.login("alice").await;
    assert!(client.whoami().await.starts_with("alice"));
    let reply = client.post("/logout").await;
    assert_eq!(reply.header("clear-site-data"), Some("\"cookies\""));
    // Off by default.
    let app = TestApp::new();
    let mut client = app.client();
    client.login("alice").await;
    assert!(client
        .post("/logout")
        .await
        .header("clear-site-data")
        .is_none());
}
