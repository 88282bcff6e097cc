//! Runs the demo binary for black-box tests, and a small HTTP client that keeps cookies the
//! way a browser does but lets the test see and change every one of them.
#![allow(dead_code)] // each test file uses a different part of this module

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    sync::{Arc, Mutex},
    time::Duration,
};

use cookie::Cookie;
use reqwest::{header::HeaderMap, redirect::Policy, Method};

pub const ALICE: (&str, &str) = ("alice", "wonderland-rabbit-hole");
pub const ADMIN: (&str, &str) = ("admin", "queen-of-hearts-croquet");
pub const INVALID_CREDENTIALS: &str = "Invalid username or password.";

/// Environment variables the demo reads: cleared, so that the developer's shell cannot
/// change what a test sees.
const DEMO_ENV: &[&str] = &[
    "DEMO_ADDR",
    "DATABASE_URL",
    "REDIS_URL",
    "DEMO_SECURE_COOKIES",
    "DEMO_IDLE_TIMEOUT_SECS",
    "DEMO_ABSOLUTE_TIMEOUT_SECS",
    "DEMO_REMEMBER_DAYS",
    "DEMO_REMEMBER_GRACE_SECS",
    "DEMO_THROTTLE_MAX_FAILURES",
    "DEMO_THROTTLE_MAX_ADDRESS_FAILURES",
    "DEMO_RESET_TOKEN_MINUTES",
    "DEMO_MAIL_DIR",
    "DEMO_SMTP_URL",
    "DEMO_PUBLIC_URL",
    "DEMO_REDIS_PREFIX",
    "SESSION_STORE",
    "DEMO_SESSION_DIR",
    "DEMO_SESSION_KEY",
    "DEMO_SESSION_LIFETIME_SECS",
];

/// How long the demo may take to print its address (migrations and seeding included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `target/<profile>` directory this test binary was built into.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The demo binary. Cargo builds it before the demo crate's integration tests, also for
/// `cargo test -p demo --test demo_http`, so it is always the current code.
pub fn demo_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_demo"))
}

/// Where clients report the session ids they were given, when dropped (also when a test
/// panics): the Redis tests delete those keys afterwards (session keys there are bare ids,
/// not under a test's prefix).
pub type SessionIds = Arc<Mutex<Vec<String>>>;

/// A running demo process with its own temporary directory (its working directory, with
/// the SQLite database unless `DATABASE_URL` says otherwise); killed when dropped.
pub struct Demo {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub db_path: PathBuf,
    log_path: PathBuf,
    env: Vec<(String, String)>,
    /// Given to every client of [`Demo::client`].
    pub session_ids: Option<SessionIds>,
    /// `None` only while [`Demo::restart`] hands it to the next process.
    dir: Option<tempfile::TempDir>,
}

impl Demo {
    /// Starts the demo with the default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the demo with extra environment variables (e.g. small timeouts).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let env = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Self::spawn(dir, env)
    }

    /// Stops the process and starts a new one with the same settings and directory (and so
    /// the same SQLite database, session directory, ...), on a new port.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.take().expect("the demo's directory");
        let mut next = Self::spawn(dir, std::mem::take(&mut self.env));
        next.session_ids = self.session_ids.take();
        next
    }

    fn spawn(dir: tempfile::TempDir, env: Vec<(String, String)>) -> Self {
        let bin = demo_binary();
        let db_path = dir.path().join("demo.db");
        let log_path = dir.path().join("demo.log");
        // Appending: after a restart the log keeps the first process's lines.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("the demo's log file");

        let mut command = Command::new(&bin);
        for name in DEMO_ENV {
            command.env_remove(name);
        }
        command
            .env("DEMO_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db_path.display()),
            )
            .env("RUST_LOG", "info,login_manager=debug")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        // Read stdout on a thread, for the whole life of the process: a full pipe would
        // block the demo.
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The receiver is gone once the address is known; keep draining.
                let _ = lines_tx.send(line);
            }
        });

        let mut demo = Demo {
            child,
            base: String::new(),
            addr: String::new(),
            db_path,
            log_path,
            env,
            session_ids: None,
            dir: Some(dir),
        };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("Listening on ") {
                        demo.base = url.trim().to_owned();
                        demo.addr = demo.base.trim_start_matches("http://").to_owned();
                        return demo;
                    }
                }
                // Stdout closed (the process exited) or the deadline passed.
                Err(_) => panic!(
                    "the demo did not print `Listening on ...` (exit status: {:?}); its log:\n{}",
                    demo.child.try_wait().ok().flatten(),
                    demo.log()
                ),
            }
        }
    }

    /// Everything the demo logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new client without cookies: a new browser.
    pub fn client(&self) -> Client {
        let mut client = Client::new(&self.base);
        client.session_ids = self.session_ids.clone();
        client
    }

    /// Where the demo writes its mail: `DEMO_MAIL_DIR` (relative to the demo's directory), by
    /// default `mail/` in the demo's own temporary directory.
    pub fn mail_dir(&self) -> PathBuf {
        let dir = self.dir.as_ref().expect("the demo's directory").path();
        match self.env.iter().find(|(name, _)| name == "DEMO_MAIL_DIR") {
            Some((_, value)) => dir.join(value),
            None => dir.join("mail"),
        }
    }

    /// The mails written so far, each decoded from quoted-printable, oldest first. A file
    /// still being written (no end of body yet) is not counted.
    pub fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, String)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                let raw = std::fs::read_to_string(e.path()).ok()?;
                let mail = decode_quoted_printable(&raw);
                // The last line of every mail the demo sends.
                mail.contains("your password stays as it is.")
                    .then_some((modified, mail))
            })
            .collect();
        files.sort_by_key(|(modified, _)| *modified);
        files.into_iter().map(|(_, mail)| mail).collect()
    }

    /// Waits (up to 30 s: the mail goes out on a task of its own) until `count` mails are
    /// written, and returns them, oldest first.
    pub async fn wait_for_mails(&self, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} mails in {} after 30 s, expected {count}; the demo's log:
{}",
                mails.len(),
                self.mail_dir().display(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs SQL against the demo's database (e.g. to disable an account).
    pub async fn sql(&self, statement: &str) {
        let url = format!("sqlite://{}", self.db_path.display());
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("the demo's database");
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("the SQL statement");
        pool.close().await;
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The server side of a failed test.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the demo's log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Enough of RFC 2045 quoted-printable for the demo's ASCII mail: soft line breaks and `=XX`.
pub fn decode_quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut rest = joined.as_str();
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 3..];
            }
            None => {
                out.push('=');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The password-reset link in a (decoded) mail: the whole URL, up to the end of its line.
#[track_caller]
pub fn reset_link(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|line| line.starts_with("http") && line.contains("/password/reset?token="))
        .unwrap_or_else(|| panic!("no reset link in the mail:\n{mail}"))
        .to_owned()
}

/// The token of a reset link.
#[track_caller]
pub fn link_token(link: &str) -> String {
    let (_, token) = link
        .split_once("?token=")
        .unwrap_or_else(|| panic!("no token in {link}"));
    token.to_owned()
}

/// A browser that was closed (no session cookie) but kept its remember-me cookie.
pub fn reopened_browser(demo: &Demo, remember_token: &str) -> Client {
    let mut client = demo.client();
    client.set_cookie("remember_token", remember_token);
    client
}

pub fn remember_cookie(client: &Client) -> String {
    client
        .cookie("remember_token")
        .expect("a remember_token cookie")
}

pub fn session_cookie(client: &Client) -> String {
    client.cookie("session").expect("a session cookie")
}

/// One HTTP response, read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, joined with `, ` (`Vary` may come as several lines).
    pub fn header_joined(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The `Set-Cookie` for `name`, if this response set or cleared it.
    pub fn set_cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_owned()).ok())
            .find(|c| c.name() == name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Panics with the body when the status is not `expected`.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status, expected,
            "unexpected status; headers {:?}; body:\n{}",
            self.headers, self.body
        );
        self
    }
}

/// A browser-like client: keeps cookies (`Set-Cookie` in, `Cookie` out), never follows
/// redirects, and sends a fixed `User-Agent`.
pub struct Client {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
    /// Every value any response set, in order.
    seen: Vec<(String, String)>,
    /// Gets the session ids of `seen` when the client is dropped.
    pub session_ids: Option<SessionIds>,
    pub user_agent: String,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(ids) = &self.session_ids {
            if let Ok(mut ids) = ids.lock() {
                ids.extend(self.values_seen("session"));
            }
        }
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            http,
            base: base.to_owned(),
            cookies: BTreeMap::new(),
            seen: Vec::new(),
            session_ids: None,
            user_agent: "demo-http-test".to_owned(),
        }
    }

    /// Sends the next requests to another server (`http://host:port`), keeping the cookies:
    /// a load balancer that moves the browser to another instance.
    pub fn set_base(&mut self, base: &str) {
        self.base = base.to_owned();
    }

    /// Every value the responses so far gave cookie `name`.
    pub fn values_seen(&self, name: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = user_agent.to_owned();
        self
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.get(name).cloned()
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn remove_cookie(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, None).await
    }

    /// A form POST (`application/x-www-form-urlencoded`).
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post_form_with(path, fields, &[]).await
    }

    pub async fn post_form_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let body = ("application/x-www-form-urlencoded", body.into_bytes());
        self.send(Method::POST, path, headers, Some(body)).await
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", &self.user_agent);
        if !self.cookies.is_empty() {
            let cookie_header = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", cookie_header);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.expect("the demo answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("a readable body");
        let resp = Resp {
            status,
            headers,
            body,
        };
        self.store_cookies(&resp);
        resp
    }

    /// Applies `Set-Cookie` the way a browser does: an expired or emptied cookie is deleted.
    fn store_cookies(&mut self, resp: &Resp) {
        for value in resp.headers.get_all("set-cookie") {
            let Some(cookie) = value
                .to_str()
                .ok()
                .and_then(|v| Cookie::parse(v.to_owned()).ok())
            else {
                continue;
            };
            let expired = cookie
                .max_age()
                .is_some_and(|age| age.is_zero() || age.is_negative())
                || cookie
                    .expires_datetime()
                    .is_some_and(|at| at <= time::OffsetDateTime::now_utc())
                || cookie.value().is_empty();
            if expired {
                self.cookies.remove(cookie.name());
            } else {
                self.seen
                    .push((cookie.name().to_owned(), cookie.value().to_owned()));
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }

    /// `POST /login` with these credentials.
    pub async fn login(&mut self, (username, password): (&str, &str), remember: bool) -> Resp {
        let mut fields = vec![("username", username), ("password", password)];
        if remember {
            fields.push(("remember", "on"));
        }
        self.post_form("/login", &fields).await
    }

    /// Logs in and checks that it worked.
    pub async fn login_ok(&mut self, credentials: (&str, &str), remember: bool) {
        self.login(credentials, remember).await.assert_status(303);
    }
}

/// Real `User-Agent`s, for the devices page (which shows the browser and system parsed from
/// them, never the raw string).
pub const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
pub const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
pub const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) \
     AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// The rows of a `/devices` page (one per live login), as HTML.
pub fn device_rows(body: &str) -> Vec<String> {
    let table = body
        .split_once("<tbody>")
        .and_then(|(_, rest)| rest.split_once("</tbody>"))
        .map_or("", |(rows, _)| rows);
    table.split("<tr>").skip(1).map(str::to_owned).collect()
}

/// The one row of a `/devices` page that contains `needle` (a browser name); panics unless
/// there is exactly one.
#[track_caller]
pub fn device_row(body: &str, needle: &str) -> String {
    let mut rows: Vec<String> = device_rows(body)
        .into_iter()
        .filter(|row| row.contains(needle))
        .collect();
    assert_eq!(rows.len(), 1, "rows with {needle:?} in:\n{body}");
    rows.pop().unwrap()
}

/// The login id in a row's `POST /devices/{id}/revoke` form, if it has one.
pub fn revoke_id(row: &str) -> Option<String> {
    let (_, rest) = row.split_once(r#"action="/devices/"#)?;
    let (id, _) = rest.split_once(r#"/revoke""#)?;
    Some(id.to_owned())
}

/// The revoke id of the row containing `needle` on `client`'s `/devices` page.
pub async fn login_id_of(client: &mut Client, needle: &str) -> String {
    let page = client.get("/devices").await;
    page.assert_status(200);
    revoke_id(&device_row(&page.body, needle))
        .unwrap_or_else(|| panic!("no revoke form in the {needle} row:\n{}", page.body))
}
