//! A second factor (#18): TOTP codes computed from the secret at the right moment and outside
//! the skew, replays refused; recovery codes once each; a login in two steps (not logged in
//! between, a new session id at the end, the same throttle as passwords); step-up.
#![cfg(feature = "totp")]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use http_body_util::BodyExt;
use login_manager::{
    AuthSession, AuthUser, Error, LoginManager, LoginOptions, LoginOutcome, LoginThrottle,
    MemoryThrottleStore, PasswordHasher, PasswordUserLoader, RecoveryCodes, SecondFactor, Totp,
    UserLoader,
};
use tower::ServiceExt;
use tower_sessions::{MemoryStore, SessionManagerLayer};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The code an authenticator app shows at `unix_time`, computed independently of the library
/// (totp-rs with the RFC 6238 parameters).
fn app_code(secret: &str, unix_time: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        0,
        30,
        bytes,
        None,
        String::new(),
    )
    .generate(unix_time)
}

#[test]
fn totp_accepts_the_codes_of_now_and_one_step_either_side_only() {
    let totp = Totp::new("Test");
    let secret = Totp::generate_secret();
    let t = 1_700_000_000 - 1_700_000_000 % 30 + 10; // 10 s into a step
    let step = t / 30;
    for (offset, accepted) in [
        (-60i64, false),
        (-30, true),
        (0, true),
        (30, true),
        (60, false),
    ] {
        let code = app_code(&secret, (t as i64 + offset) as u64);
        let result = totp.check_at(&secret, &code, None, t).unwrap();
        assert_eq!(result.is_some(), accepted, "offset {offset}s");
        if accepted {
            assert_eq!(result, Some((t as i64 + offset) as u64 / 30));
        }
    }
    assert_eq!(step, t / 30);
}

#[test]
fn totp_refuses_a_replayed_step_and_malformed_codes() {
    let totp = Totp::new("Test");
    let secret = Totp::generate_secret();
    let t = now();
    let code = app_code(&secret, t);
    let step = totp
        .check_at(&secret, &code, None, t)
        .unwrap()
        .expect("valid");
    assert_eq!(
        totp.check_at(&secret, &code, Some(step), t).unwrap(),
        None,
        "replay"
    );
    let next = app_code(&secret, t + 30);
    assert_eq!(
        totp.check_at(&secret, &next, Some(step), t + 30).unwrap(),
        Some(step + 1)
    );
    for bad in ["", "12345", "1234567", "abcdef", "12 456", "１２３４５６"] {
        assert_eq!(
            totp.check_at(&secret, bad, None, t).unwrap(),
            None,
            "{bad:?}"
        );
    }
    let err = totp.check_at("not base32!", "123456", None, t).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn totp_enrolment_gives_the_secret_the_otpauth_url_and_an_svg_qr_code() {
    let totp = Totp::new("Demo");
    let secret = Totp::generate_secret();
    assert!(secret.len() >= 32, "160 bits of base32: {secret}");
    let enrolment = totp.enrolment(&secret, "alice").unwrap();
    assert_eq!(enrolment.secret, secret);
    assert!(
        enrolment.url.starts_with("otpauth://totp/Demo:alice?"),
        "{}",
        enrolment.url
    );
    assert!(enrolment.url.contains(&format!("secret={secret}")));
    assert!(
        enrolment.qr_svg.starts_with("<svg"),
        "an inline SVG element"
    );
    assert!(!enrolment.qr_svg.contains("<?xml"));
}

#[test]
fn recovery_codes_are_random_hashed_and_found_once_each() {
    let (codes, hashes) = RecoveryCodes::generate(10);
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    for (code, hash) in codes.iter().zip(&hashes) {
        assert_eq!(code.len(), 11, "xxxxx-xxxxx: {code}");
        assert!(!hash.contains(&code.replace('-', "")), "stored hashed");
    }
    let mut stored = hashes.clone();
    // Typed back in capitals and without the dash: the same code.
    let typed = codes[4].to_uppercase().replace('-', " ");
    let at = RecoveryCodes::position(&typed, &stored).expect("found");
    assert_eq!(at, 4);
    stored.remove(at); // the app deletes the used hash
    assert_eq!(
        RecoveryCodes::position(&codes[4], &stored),
        None,
        "once only"
    );
    assert_eq!(RecoveryCodes::position("", &stored), None);
}

// ---------------------------------------------------------------------------------------------
// The two-step login, through real requests.

#[derive(Clone, Debug)]
struct Account {
    name: String,
    hash: String,
    totp_secret: Option<String>,
    last_step: Option<u64>,
    recovery: Vec<String>,
}

impl AuthUser for Account {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

#[derive(Clone, Default)]
struct Accounts(Arc<Mutex<HashMap<String, Account>>>);

impl UserLoader for Accounts {
    type User = Account;
    type Error = Infallible;
    async fn load_user(&self, id: &String) -> Result<Option<Account>, Infallible> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
}

impl PasswordUserLoader for Accounts {
    async fn load_user_by_username(&self, name: &str) -> Result<Option<Account>, Infallible> {
        self.load_user(&name.to_owned()).await
    }
    fn password_hash<'a>(&self, user: &'a Account) -> Option<&'a str> {
        Some(&user.hash)
    }
    fn login_name<'a>(&self, user: &'a Account) -> Option<&'a str> {
        Some(&user.name)
    }
    fn second_factor_required(&self, user: &Account) -> bool {
        user.totp_secret.is_some()
    }
}

/// TOTP or a recovery code, as an app would write it: the accepted step and the used code are
/// stored with the account.
struct TotpOrRecovery(Accounts);

impl SecondFactor<Account> for TotpOrRecovery {
    async fn verify(&self, user: &Account, code: &str) -> login_manager::Result<bool> {
        let mut accounts = self.0 .0.lock().unwrap();
        let Some(stored) = accounts.get_mut(&user.name) else {
            return Ok(false);
        };
        let Some(secret) = stored.totp_secret.clone() else {
            return Ok(false);
        };
        if let Some(step) = Totp::new("Test").check(&secret, code, stored.last_step)? {
            stored.last_step = Some(step);
            return Ok(true);
        }
        if let Some(at) = RecoveryCodes::position(code, &stored.recovery) {
            stored.recovery.remove(at);
            return Ok(true);
        }
        Ok(false)
    }
}

async fn login(mut auth: AuthSession<Accounts>, body: String) -> Response {
    let (name, password) = body.split_once(':').unwrap();
    let options = LoginOptions::new().remember(name.ends_with("+remember"));
    let name = name.trim_end_matches("+remember");
    outcome(auth.login_with_password(name, password, options).await)
}

async fn second_step(mut auth: AuthSession<Accounts>, code: String) -> Response {
    let factor = TotpOrRecovery(auth.loader().clone());
    outcome(auth.complete_second_factor(&factor, &code).await)
}

async fn step_up(mut auth: AuthSession<Accounts>, code: String) -> Response {
    let factor = TotpOrRecovery(auth.loader().clone());
    outcome(auth.reauthenticate_with_second_factor(&factor, &code).await)
}

fn outcome(outcome: login_manager::Result<LoginOutcome>) -> Response {
    match outcome {
        Ok(LoginOutcome::LoggedIn) => "logged in".into_response(),
        Ok(LoginOutcome::InvalidCredentials) => {
            (StatusCode::UNAUTHORIZED, "invalid").into_response()
        }
        Ok(LoginOutcome::Throttled { retry_after }) => {
            Error::Throttled { retry_after }.into_response()
        }
        Ok(LoginOutcome::SecondFactorRequired) => "second factor".into_response(),
        Err(err) => err.into_response(),
    }
}

async fn whoami(auth: AuthSession<Accounts>) -> String {
    let pending = auth.second_factor_pending().await.unwrap();
    match auth.user() {
        Some(user) => format!("{} fresh={}", user.name, auth.is_fresh()),
        None => format!("anonymous pending={pending}"),
    }
}

struct Harness {
    app: Router,
    accounts: Accounts,
    secret: String,
    recovery: Vec<String>,
}

async fn harness() -> Harness {
    let hasher = PasswordHasher::new().with_params(64, 1, 1).unwrap();
    let accounts = Accounts::default();
    let secret = Totp::generate_secret();
    let (recovery, hashes) = RecoveryCodes::generate(10);
    for (name, totp) in [("alice", Some(secret.clone())), ("bob", None)] {
        let hash = hasher.hash("right-password").await.unwrap();
        accounts.0.lock().unwrap().insert(
            name.to_owned(),
            Account {
                name: name.to_owned(),
                hash,
                totp_secret: totp,
                last_step: None,
                recovery: hashes.clone(),
            },
        );
    }
    let app = Router::new()
        .route("/login", post(login))
        .route("/2fa", post(second_step))
        .route("/step-up", post(step_up))
        .route("/whoami", get(whoami))
        .layer(
            LoginManager::new(accounts.clone())
                .password_hasher(hasher)
                .login_throttle(LoginThrottle::new(MemoryThrottleStore::new()).max_failures(5))
                .into_layer(),
        )
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false));
    Harness {
        app,
        accounts,
        secret,
        recovery,
    }
}

/// A browser: keeps its cookies (session `id`, `device`, `remember_token`).
struct Browser<'a> {
    app: &'a Router,
    cookies: HashMap<String, String>,
}

impl Browser<'_> {
    async fn send(&mut self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.app.clone().oneshot(request).await.unwrap();
        for line in response.headers().get_all(header::SET_COOKIE) {
            let pair = line.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || line.to_str().unwrap().contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn whoami(&mut self) -> String {
        self.send("GET", "/whoami", "").await.1
    }
}

impl Harness {
    fn browser(&self) -> Browser<'_> {
        Browser {
            app: &self.app,
            cookies: HashMap::new(),
        }
    }

    fn code(&self) -> String {
        app_code(&self.secret, now())
    }
}

#[tokio::test]
async fn the_right_password_alone_does_not_log_in_a_user_with_a_second_factor() {
    let h = harness().await;
    let mut browser = h.browser();
    let (status, body) = browser.send("POST", "/login", "alice:right-password").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "second factor"));
    assert_eq!(browser.whoami().await, "anonymous pending=true");
    let pending_session = browser.cookies["id"].clone();

    let (status, body) = browser.send("POST", "/2fa", &h.code()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "logged in"));
    assert_eq!(browser.whoami().await, "alice fresh=true");
    assert_ne!(
        browser.cookies["id"], pending_session,
        "a new session id at the login"
    );
    assert!(
        browser.cookies.contains_key("device"),
        "the device cookie comes at the end"
    );

    // Users without a second factor log in with the password, as before.
    let mut bob = h.browser();
    let (_, body) = bob.send("POST", "/login", "bob:right-password").await;
    assert_eq!(body, "logged in");
}

#[tokio::test]
async fn wrong_codes_and_missing_first_steps_do_not_log_in() {
    let h = harness().await;
    let mut browser = h.browser();
    // No first step: nothing to complete, even with a right code.
    let (status, _) = browser.send("POST", "/2fa", &h.code()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A wrong password never reaches the second step.
    let (status, _) = browser.send("POST", "/login", "alice:wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.whoami().await, "anonymous pending=false");

    browser.send("POST", "/login", "alice:right-password").await;
    let stale = app_code(&h.secret, now() - 120);
    for code in ["000000", stale.as_str(), "", "garbage"] {
        let (status, _) = browser.send("POST", "/2fa", code).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code:?}");
    }
    assert_eq!(browser.whoami().await, "anonymous pending=true");
    // Another browser cannot complete this browser's first step.
    let mut other = h.browser();
    let (status, _) = other.send("POST", "/2fa", &h.code()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_recovery_code_works_once_in_place_of_the_code() {
    let h = harness().await;
    for attempt in 0..2 {
        let mut browser = h.browser();
        browser.send("POST", "/login", "alice:right-password").await;
        let (_, body) = browser.send("POST", "/2fa", &h.recovery[0]).await;
        let expected = if attempt == 0 { "logged in" } else { "invalid" };
        assert_eq!(body, expected, "attempt {attempt}");
    }
    assert_eq!(h.accounts.0.lock().unwrap()["alice"].recovery.len(), 9);
}

#[tokio::test]
async fn a_totp_code_is_accepted_once() {
    let h = harness().await;
    let code = h.code();
    let mut first = h.browser();
    first.send("POST", "/login", "alice:right-password").await;
    assert_eq!(first.send("POST", "/2fa", &code).await.1, "logged in");
    let mut second = h.browser();
    second.send("POST", "/login", "alice:right-password").await;
    assert_eq!(
        second.send("POST", "/2fa", &code).await.1,
        "invalid",
        "replayed code"
    );
}

#[tokio::test]
async fn the_second_step_is_throttled_like_passwords_and_a_right_password_does_not_reset_it() {
    let h = harness().await;
    let mut attacker = h.browser(); // knows the password, not the second factor
    let mut refused = None;
    for attempt in 0..8 {
        attacker
            .send("POST", "/login", "alice:right-password")
            .await;
        let (status, _) = attacker.send("POST", "/2fa", "000000").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(attempt);
            break;
        }
    }
    assert_eq!(refused, Some(5), "five wrong codes, then 429");
    // The right code is refused too while the account is locked (no device cookie here).
    let (status, _) = attacker.send("POST", "/2fa", &h.code()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_password_change_between_the_steps_voids_the_first() {
    let h = harness().await;
    let mut browser = h.browser();
    browser.send("POST", "/login", "alice:right-password").await;
    h.accounts.0.lock().unwrap().get_mut("alice").unwrap().hash = "changed".to_owned();
    let (status, _) = browser.send("POST", "/2fa", &h.code()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.whoami().await, "anonymous pending=false");
}

#[tokio::test]
async fn remember_me_is_carried_to_the_end_of_the_two_steps() {
    let h = harness().await;
    let mut browser = h.browser();
    browser
        .send("POST", "/login", "alice+remember:right-password")
        .await;
    assert!(
        !browser.cookies.contains_key("remember_token"),
        "not before the second step"
    );
    // (No remember-me store on this manager: asking for one at the end is a configuration
    // error, which proves the option was carried.)
    let (status, body) = browser.send("POST", "/2fa", &h.code()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("remember-me is not enabled"), "{body}");
}

#[tokio::test]
async fn step_up_with_the_second_factor_makes_a_login_fresh() {
    let h = harness().await;
    let mut browser = h.browser();
    let (_, body) = browser.send("POST", "/login", "bob:right-password").await;
    assert_eq!(body, "logged in");
    // Bob has no TOTP secret: his factor refuses every code.
    assert_eq!(
        browser.send("POST", "/step-up", "123456").await.1,
        "invalid"
    );

    let mut alice = h.browser();
    alice.send("POST", "/login", "alice:right-password").await;
    alice.send("POST", "/2fa", &h.recovery[1]).await;
    let before = alice.cookies["id"].clone();
    assert_eq!(
        alice.send("POST", "/step-up", &h.code()).await.1,
        "logged in"
    );
    assert_eq!(alice.whoami().await, "alice fresh=true");
    assert_ne!(alice.cookies["id"], before, "confirm_login gives a new id");
    let mut anonymous = h.browser();
    let (status, _) = anonymous.send("POST", "/step-up", &h.code()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
