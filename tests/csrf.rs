//! `CrossOriginProtection`: cross-origin unsafe requests are refused before the handler runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::routing::any;
use axum::Router;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use login_manager::CrossOriginProtection;
use tower::ServiceExt;

const HOST: &str = "app.example:3000";

/// A router whose one handler counts its calls, behind `layer`.
fn app(layer: CrossOriginProtection) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = Router::new()
        .route(
            "/action",
            any(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "done"
            }),
        )
        .layer(layer);
    (router, calls)
}

/// Sends one request to a fresh app and returns the status, the body and whether the
/// handler ran.
async fn send(
    layer: CrossOriginProtection,
    method: Method,
    headers: &[(&str, &str)],
) -> (StatusCode, String, bool) {
    let (router, calls) = app(layer);
    let mut request = Request::builder()
        .method(method)
        .uri("/action")
        .header("host", HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let ran = calls.load(Ordering::SeqCst) == 1;
    (status, String::from_utf8(body.to_vec()).unwrap(), ran)
}

async fn status(method: Method, headers: &[(&str, &str)]) -> StatusCode {
    send(CrossOriginProtection::new(), method, headers).await.0
}

/// Asserts that the request is refused with the documented answer and the handler never ran.
async fn assert_refused(layer: CrossOriginProtection, method: Method, headers: &[(&str, &str)]) {
    let (status, body, ran) = send(layer, method.clone(), headers).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{method} {headers:?}");
    assert_eq!(body, "Cross-origin request refused.");
    assert!(!ran, "the handler ran for {method} {headers:?}");
}

const UNSAFE: [Method; 4] = [Method::POST, Method::PUT, Method::DELETE, Method::PATCH];

#[tokio::test]
async fn cross_origin_unsafe_requests_are_refused() {
    for method in UNSAFE {
        for headers in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "something-new")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://app.example:3000"),
            ],
            &[("origin", "https://evil.example")],
            &[("origin", "http://app.example:4000")],
            &[("origin", "http://app.example")],
            &[("origin", "http://evil.example:3000")],
            &[("origin", "null")],
            &[("origin", "")],
            &[("origin", "http://app.example:3000/")],
            &[("origin", "http://user@app.example:3000")],
        ] {
            assert_refused(CrossOriginProtection::new(), method.clone(), headers).await;
        }
    }
}

#[tokio::test]
async fn refusal_is_plain_text() {
    let (router, _) = app(CrossOriginProtection::new());
    let request = Request::post("/action")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn safe_methods_pass_whatever_the_headers() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        for headers in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
        ] {
            let (status, _, ran) =
                send(CrossOriginProtection::new(), method.clone(), headers).await;
            assert_eq!(status, StatusCode::OK, "{method} {headers:?}");
            assert!(ran);
        }
    }
}

#[tokio::test]
async fn same_origin_requests_pass() {
    for method in UNSAFE {
        for headers in [
            &[("sec-fetch-site", "same-origin")][..],
            &[("sec-fetch-site", "none")],
            // Sec-Fetch-Site decides when present, as in Go.
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example"),
            ],
            &[("origin", "http://app.example:3000")],
            &[("origin", "https://app.example:3000")],
            &[("origin", "http://APP.example:3000")],
            // curl, server-to-server: no browser, no ambient cookie to abuse.
            &[],
        ] {
            let (status, body, ran) =
                send(CrossOriginProtection::new(), method.clone(), headers).await;
            assert_eq!(status, StatusCode::OK, "{method} {headers:?}");
            assert_eq!(body, "done");
            assert!(ran);
        }
    }
}

#[tokio::test]
async fn post_by_header() {
    assert_eq!(
        status(Method::POST, &[("sec-fetch-site", "cross-site")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, &[("sec-fetch-site", "same-site")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, &[("sec-fetch-site", "same-origin")]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::POST, &[("sec-fetch-site", "none")]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::POST, &[("origin", "https://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, &[("origin", "http://app.example:3000")]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::POST, &[("origin", "http://app.example:3001")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, &[("origin", "null")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(Method::POST, &[]).await, StatusCode::OK);
}

#[tokio::test]
async fn trusted_origins_pass() {
    let layer = CrossOriginProtection::new()
        .trusted_origin("https://front.example")
        .trusted_origin("HTTPS://Admin.Example:8443");
    for method in UNSAFE {
        for headers in [
            &[("origin", "https://front.example")][..],
            &[("origin", "https://admin.example:8443")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://front.example"),
            ],
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.example:8443"),
            ],
        ] {
            let (status, _, ran) = send(layer.clone(), method.clone(), headers).await;
            assert_eq!(status, StatusCode::OK, "{method} {headers:?}");
            assert!(ran);
        }
        // Trust is exact: another scheme, port or host is not trusted.
        for headers in [
            &[("origin", "http://front.example")][..],
            &[("origin", "https://front.example:444")],
            &[("origin", "https://evil.front.example")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://admin.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
        ] {
            assert_refused(layer.clone(), method.clone(), headers).await;
        }
    }
}

#[tokio::test]
async fn a_proxy_that_rewrites_host_needs_a_trusted_origin() {
    // The proxy forwards to `127.0.0.1:3000`; the browser's origin is the public one.
    let request = || {
        Request::post("/action")
            .header("host", "127.0.0.1:3000")
            .header("origin", "https://app.example")
            .body(Body::empty())
            .unwrap()
    };
    let (router, _) = app(CrossOriginProtection::new());
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let (router, calls) = app(CrossOriginProtection::new().trusted_origin("https://app.example"));
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn absolute_form_authority_is_the_host() {
    // HTTP/2 carries the host in `:authority`, which hyper puts in the URI; no `Host` header.
    let (router, _) = app(CrossOriginProtection::new());
    let request = Request::post("http://app.example:3000/action")
        .header("origin", "http://app.example:3000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        router.oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );

    let (router, _) = app(CrossOriginProtection::new());
    let request = Request::post("/action")
        .header("origin", "http://app.example:3000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        router.oneshot(request).await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "no host at all: an Origin cannot be matched"
    );
}

#[test]
#[should_panic(expected = "is not an origin")]
fn trusted_origin_with_a_path_is_a_configuration_error() {
    let _ = CrossOriginProtection::new().trusted_origin("https://app.example/");
}

#[test]
#[should_panic(expected = "is not an origin")]
fn trusted_origin_without_a_scheme_is_a_configuration_error() {
    let _ = CrossOriginProtection::new().trusted_origin("app.example");
}
