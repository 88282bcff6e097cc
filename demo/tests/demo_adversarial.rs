//! Hostile HTTP against the demo, over real sockets: malformed and oversized cookies, odd
//! request lines, spoofed hosts, junk forms, floods. Never a 5xx, never a wrong login, and the
//! server keeps serving.

mod demo_support;

use std::time::Duration;

use demo_support::{Client, Demo};
use reqwest::Method;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const ALICE: (&str, &str) = ("alice", "wonderland-rabbit-hole");

/// Sends raw bytes and returns the status code (`None` if the server closed the connection
/// without an answer) and the response head.
async fn raw(addr: &str, request: &[u8]) -> (Option<u16>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading a huge request: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not answer within 20 s");
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn still_serving(demo: &Demo) {
    let home = demo.client().get("/").await;
    assert_eq!(home.status, 200, "the demo stopped serving");
}

async fn logged_in_client(demo: &Demo) -> Client {
    let mut client = demo.client();
    client.login_ok(ALICE, false).await;
    client
}

#[tokio::test]
async fn duplicate_session_cookies_never_500_nor_log_in_someone_else() {
    let demo = Demo::start();
    let alice = logged_in_client(&demo).await;
    let good = alice.cookie("session").expect("a session cookie");
    for cookie in [
        format!("session=bogus; session={good}"),
        format!("session={good}; session=bogus"),
        format!("session={good}; session={good}"),
    ] {
        let mut client = demo.client();
        let resp = client.get_with("/dashboard", &[("cookie", &cookie)]).await;
        assert!(resp.status < 500, "{cookie}: {}", resp.status);
        if resp.status == 200 {
            assert!(resp.body.contains("Hello, alice"), "{cookie}");
        } else {
            assert_eq!(resp.status, 303, "{cookie}");
        }
    }
    still_serving(&demo).await;
}

#[tokio::test]
async fn oversized_cookies_are_refused_or_anonymous_never_5xx() {
    let demo = Demo::start();
    for size in [4 * 1024, 64 * 1024] {
        for name in ["session", "remember_token"] {
            let value = "A".repeat(size);
            let request = format!(
                "GET /dashboard HTTP/1.1\r\nHost: {}\r\nCookie: {name}={value}\r\nConnection: close\r\n\r\n",
                demo.addr
            );
            let (status, head) = raw(&demo.addr, request.as_bytes()).await;
            let status = status.unwrap_or(400);
            assert!(
                [303, 400, 431].contains(&status),
                "{name} of {size} bytes: {status}\n{head}"
            );
        }
    }
    // A 1 MB Cookie header: refused (431/400) or the connection closed, never a 5xx.
    let request = format!(
        "GET /dashboard HTTP/1.1\r\nHost: {}\r\nCookie: x={}\r\nConnection: close\r\n\r\n",
        demo.addr,
        "B".repeat(1024 * 1024)
    );
    let (status, head) = raw(&demo.addr, request.as_bytes()).await;
    assert!(status.is_none_or(|s| s < 500 && s != 200), "{head}");
    still_serving(&demo).await;
}

#[tokio::test]
async fn non_utf8_and_nul_bytes_in_forms_are_a_clean_4xx() {
    let demo = Demo::start();
    let bodies: [&[u8]; 4] = [
        b"username=%FF%FE&password=wonderland-rabbit-hole",
        b"username=alice%00&password=wonderland-rabbit-hole",
        b"username=alice&password=%00%00%00",
        b"username=\xff\xfe&password=\xc3\x28",
    ];
    for body in bodies {
        let mut client = demo.client();
        let resp = client
            .send(
                Method::POST,
                "/login",
                &[],
                Some(("application/x-www-form-urlencoded", body.to_vec())),
            )
            .await;
        assert!(
            (400..500).contains(&resp.status),
            "{body:?}: {}",
            resp.status
        );
        assert!(client.cookie("session").is_none() || client.get("/dashboard").await.status == 303);
    }
    still_serving(&demo).await;
}

#[tokio::test]
async fn duplicate_form_fields_never_log_in_without_the_checked_password() {
    let demo = Demo::start();
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("username", "admin"),
            ("username", "alice"),
            ("password", ALICE.1),
        ],
        &[
            ("username", "alice"),
            ("username", "admin"),
            ("password", ALICE.1),
        ],
        &[
            ("username", "admin"),
            ("password", "wrong"),
            ("password", ALICE.1),
        ],
    ];
    for fields in cases {
        let mut client = demo.client();
        let resp = client.post_form("/login", fields).await;
        assert!(resp.status < 500, "{fields:?}: {}", resp.status);
        let dashboard = client.get("/dashboard").await;
        if dashboard.status == 200 {
            // Only alice's password was ever right: any login must be alice's.
            assert!(dashboard.body.contains("Hello, alice"), "{fields:?}");
        }
        let admin = client.get("/admin").await;
        assert_ne!(admin.status, 200, "{fields:?} reached /admin");
    }
}

#[tokio::test]
async fn absolute_form_request_lines_and_spoofed_hosts_keep_redirects_relative() {
    let demo = Demo::start();
    let requests = [
        "GET http://evil.example/dashboard HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /dashboard HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n".to_owned(),
        format!("GET //evil.example/dashboard HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", demo.addr),
    ];
    for request in requests {
        let (status, head) = raw(&demo.addr, request.as_bytes()).await;
        let status = status.expect("an answer");
        assert!(status < 500, "{head}");
        if let Some(location) = header(&head, "location") {
            assert!(location.starts_with('/'), "{location}");
            assert!(!location.starts_with("//"), "{location}");
            assert!(!location.contains("evil.example"), "{location}");
        }
    }
    // The login page's hidden `next` keeps only safe values after a real login.
    let mut client = demo.client();
    let resp = client
        .post_form(
            "/login?next=%2F%2Fevil.example",
            &[("username", ALICE.0), ("password", ALICE.1)],
        )
        .await;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.location(), Some("/"));
}

#[tokio::test]
async fn head_options_and_trace_on_protected_routes_reveal_nothing() {
    let demo = Demo::start();
    let mut client = demo.client();
    for path in ["/dashboard", "/settings", "/devices", "/admin"] {
        let head = client.send(Method::HEAD, path, &[], None).await;
        assert_eq!(head.status, 303, "HEAD {path}");
        for method in [Method::OPTIONS, Method::TRACE] {
            let resp = client.send(method.clone(), path, &[], None).await;
            assert!(
                resp.status != 200 && resp.status < 500,
                "{method} {path}: {}",
                resp.status
            );
            assert!(!resp.body.contains("Hello"), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_flood_of_megabyte_passwords_does_not_starve_other_requests() {
    let demo = Demo::start();
    let password = "p".repeat(1024 * 1024);
    let floods = (0..50).map(|_| {
        let mut client = demo.client();
        let password = password.clone();
        tokio::spawn(async move {
            client
                .post_form("/login", &[("username", "alice"), ("password", &password)])
                .await
                .status
        })
    });
    let floods: Vec<_> = floods.collect();
    // Served while the flood is in flight.
    let mut alice = demo.client();
    alice.login_ok(ALICE, false).await;
    assert_eq!(alice.get("/dashboard").await.status, 200);
    for flood in floods {
        let status = flood.await.expect("a flood request");
        assert!([401, 413, 429].contains(&status), "{status}");
    }
    still_serving(&demo).await;
}

#[tokio::test]
async fn parallel_logins_on_one_anonymous_session_do_not_deadlock() {
    let demo = Demo::start();
    let mut anonymous = demo.client();
    // Signing up leaves a "Welcome" flash: an anonymous session now exists.
    anonymous
        .post_form(
            "/register",
            &[
                ("username", "parallel"),
                ("password", "a long enough password"),
            ],
        )
        .await
        .assert_status(303);
    let session = anonymous.cookie("session").expect("an anonymous session");
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let mut client = demo.client();
            client.set_cookie("session", &session);
            tokio::spawn(async move { client.login(ALICE, true).await.status })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut statuses = Vec::new();
        for login in logins {
            statuses.push(login.await.expect("a login task"));
        }
        statuses
    })
    .await
    .expect("20 parallel logins finish (no deadlock)");
    assert!(all.iter().all(|&s| s == 303), "{all:?}");
    still_serving(&demo).await;
}
