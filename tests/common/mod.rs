//! A small app and a cookie-keeping client shared by the integration tests.
#![allow(dead_code)] // each test file uses a different part of this support module

use async_trait::async_trait;
use std::time::Duration;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Path},
    http::{header, HeaderMap, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use http_body_util::BodyExt;
use login_manager::{
    fresh_login_required, login_required, permission_required, AuthEvent, AuthSession, AuthUser,
    FreshLoginRequired, LoginManager, LoginOptions, LoginRequired, LoginView, MemoryRememberStore,
    Remember, UserLoader,
};
use serde_json::json;
use tower::ServiceExt;
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionManagerLayer, SessionStore,
};

#[derive(Clone, Debug)]
pub struct User {
    pub id: u32,
    pub name: String,
    pub password: String,
    pub active: bool,
    pub permissions: HashSet<String>,
}

impl AuthUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
    fn is_active(&self) -> bool {
        self.active
    }
}

#[derive(Debug)]
pub struct LoaderDown;
impl fmt::Display for LoaderDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("user database is down")
    }
}
impl std::error::Error for LoaderDown {}

/// Users 1 = alice, 2 = bob, 3 = admin (permission `admin`), 4 = carol (inactive); a bearer
/// token `letmein` authenticates bob through the request loader.
#[derive(Clone, Default)]
pub struct Users {
    pub users: Arc<Mutex<HashMap<u32, User>>>,
    pub loads: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

impl Users {
    pub fn new() -> Self {
        let users = Users::default();
        for (id, name, active, perms) in [
            (1, "alice", true, vec![]),
            (2, "bob", true, vec![]),
            (3, "admin", true, vec!["admin"]),
            (4, "carol", false, vec![]),
        ] {
            users.users.lock().unwrap().insert(
                id,
                User {
                    id,
                    name: name.to_owned(),
                    password: format!("{name}-password"),
                    active,
                    permissions: perms.into_iter().map(str::to_owned).collect(),
                },
            );
        }
        users
    }

    pub fn by_name(&self, name: &str) -> Option<User> {
        self.users
            .lock()
            .unwrap()
            .values()
            .find(|u| u.name == name)
            .cloned()
    }

    pub fn update(&self, user: User) {
        self.users.lock().unwrap().insert(user.id, user);
    }

    pub fn remove(&self, id: u32) {
        self.users.lock().unwrap().remove(&id);
    }

    pub fn load_count(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl UserLoader for Users {
    type User = User;
    type Error = LoaderDown;

    async fn load_user(&self, id: &u32) -> Result<Option<User>, LoaderDown> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(LoaderDown);
        }
        Ok(self.users.lock().unwrap().get(id).cloned())
    }

    async fn load_user_from_request(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<User>, LoaderDown> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        Ok(match bearer {
            Some("letmein") => self.by_name("bob"),
            _ => None,
        })
    }

    async fn permissions(&self, user: &User) -> Result<HashSet<String>, LoaderDown> {
        Ok(user.permissions.clone())
    }
}

/// A session store that counts loads and can be made to fail.
#[derive(Clone, Debug, Default)]
pub struct CountingStore {
    inner: MemoryStore,
    pub loads: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

impl CountingStore {
    fn check(&self) -> session_store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(session_store::Error::Backend("store is down".into()))
        } else {
            Ok(())
        }
    }

    pub fn load_count(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub async fn exists(&self, id: &str) -> bool {
        let id: Id = id.parse().unwrap();
        self.inner.load(&id).await.unwrap().is_some()
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.check()?;
        self.inner.create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.check()?;
        self.inner.save(record).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.check()?;
        self.inner.delete(id).await
    }
}

pub type Auth = AuthSession<Users>;

async fn whoami(auth: Auth) -> String {
    match auth.user() {
        Some(user) => format!(
            "{} fresh={} remembered={}",
            user.name,
            auth.is_fresh(),
            auth.is_remembered()
        ),
        None => "anonymous".to_owned(),
    }
}

async fn login(
    mut auth: Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<String, login_manager::Error> {
    let user = auth.loader().by_name(&name).expect("known test user");
    let mut options = LoginOptions::new();
    if headers.contains_key("x-remember") {
        options = options.remember(true);
    }
    if headers.contains_key("x-force") {
        options = options.force(true);
    }
    auth.login_user_with(&user, options).await?;
    Ok("logged in".to_owned())
}

async fn logout(mut auth: Auth) -> Result<&'static str, login_manager::Error> {
    auth.logout_user().await?;
    Ok("logged out")
}

async fn confirm(mut auth: Auth) -> Result<&'static str, login_manager::Error> {
    auth.confirm_login().await?;
    Ok("confirmed")
}

/// Changes the logged-in user's password and keeps this session.
async fn change_password(
    mut auth: Auth,
    Path(new_password): Path<String>,
) -> Result<&'static str, login_manager::Error> {
    let mut user = auth.user().cloned().expect("logged in");
    user.password = new_password;
    auth.loader().update(user.clone());
    auth.update_session_auth_hash(&user).await?;
    Ok("changed")
}

async fn put_cart(
    auth: Auth,
    Path(item): Path<String>,
) -> Result<&'static str, login_manager::Error> {
    auth.session()?
        .insert("cart", item)
        .await
        .map_err(login_manager::Error::from)?;
    Ok("added")
}

async fn get_cart(auth: Auth) -> Result<String, login_manager::Error> {
    let cart: Option<String> = auth.session()?.get("cart").await?;
    Ok(cart.unwrap_or_else(|| "empty".to_owned()))
}

async fn protected(LoginRequired(user): LoginRequired<User>) -> String {
    format!("Hello, {}", user.name)
}

async fn fresh_page(FreshLoginRequired(user): FreshLoginRequired<User>) -> String {
    format!("Fresh, {}", user.name)
}

/// Three extractors asking for the user in one request.
async fn many_extractors(
    LoginRequired(a): LoginRequired<User>,
    auth: Auth,
    LoginRequired(b): LoginRequired<User>,
) -> String {
    format!(
        "{} {} {}",
        a.name,
        auth.user().map_or("-", |u| u.name.as_str()),
        b.name
    )
}

async fn next(auth: Auth) -> String {
    auth.next_or("/home")
}

async fn devices(auth: Auth) -> Result<Json<Vec<(String, bool)>>, login_manager::Error> {
    let devices = auth.remember_devices().await?;
    Ok(Json(
        devices.into_iter().map(|d| (d.id, d.current)).collect(),
    ))
}

async fn revoke(auth: Auth, Path(id): Path<String>) -> Result<String, login_manager::Error> {
    Ok(auth.revoke_device(&id).await?.to_string())
}

async fn revoke_all(auth: Auth) -> Result<String, login_manager::Error> {
    Ok(auth.revoke_all_devices().await?.to_string())
}

/// The current user's live logins, as JSON objects.
async fn logins(auth: Auth) -> Result<Json<serde_json::Value>, login_manager::Error> {
    let logins = auth.logins().await?;
    Ok(Json(json!(logins
        .into_iter()
        .map(|l| json!({
            "id": l.id,
            "current": l.current,
            "browser": l.browser,
            "system": l.system,
            "remember_me": l.remember_me,
            "restored": l.restored,
        }))
        .collect::<Vec<_>>())))
}

async fn end_login(mut auth: Auth, Path(id): Path<String>) -> Result<String, login_manager::Error> {
    Ok(auth.end_login(&id).await?.to_string())
}

async fn end_other_logins(auth: Auth) -> Result<String, login_manager::Error> {
    Ok(auth.end_other_logins().await?.to_string())
}

async fn client_ip(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    addr.to_string()
}

pub struct TestApp {
    pub router: Router,
    pub store: CountingStore,
    pub users: Users,
    pub remember_store: MemoryRememberStore,
    pub events: Arc<Mutex<Vec<AuthEvent>>>,
    /// A clone of the manager before `into_layer` (for `end_all_logins`).
    pub manager: LoginManager<Users>,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with(|m| m)
    }

    /// The test app with the manager adjusted by `configure`. Remember-me is on (not secure,
    /// 1 s grace window).
    pub fn with(configure: impl FnOnce(LoginManager<Users>) -> LoginManager<Users>) -> Self {
        Self::with_store(|m, _| configure(m))
    }

    /// [`with`](Self::with), where `configure` also gets the session store (for a
    /// `LoginIndex`).
    pub fn with_store(
        configure: impl FnOnce(LoginManager<Users>, &CountingStore) -> LoginManager<Users>,
    ) -> Self {
        Self::build(CountingStore::default(), configure, |router, store| {
            router.layer(SessionManagerLayer::new(store).with_secure(false))
        })
    }

    /// The test app on another session layer (`store` then sees no traffic).
    pub fn with_session_layer(layer: login_manager_sessions::SessionLayer) -> Self {
        Self::with_session_layer_and(layer, |m| m)
    }

    /// [`with_session_layer`](Self::with_session_layer), the manager adjusted by `configure`.
    pub fn with_session_layer_and(
        layer: login_manager_sessions::SessionLayer,
        configure: impl FnOnce(LoginManager<Users>) -> LoginManager<Users>,
    ) -> Self {
        Self::build(
            CountingStore::default(),
            |m, _| configure(m),
            |router, _| router.layer(layer),
        )
    }

    /// A second instance of this app: its own router and manager over the same session,
    /// remember-me and user stores (what two processes behind a load balancer share), with
    /// the manager adjusted by `configure` (give it the same login index store).
    pub fn second_instance(
        &self,
        configure: impl FnOnce(LoginManager<Users>, &CountingStore) -> LoginManager<Users>,
    ) -> Self {
        let (users, remember_store) = (self.users.clone(), self.remember_store.clone());
        Self::build_with(
            users,
            remember_store,
            self.store.clone(),
            configure,
            |router, store| router.layer(SessionManagerLayer::new(store).with_secure(false)),
        )
    }

    fn build(
        store: CountingStore,
        configure: impl FnOnce(LoginManager<Users>, &CountingStore) -> LoginManager<Users>,
        sessions: impl FnOnce(Router, CountingStore) -> Router,
    ) -> Self {
        Self::build_with(
            Users::new(),
            MemoryRememberStore::new(),
            store,
            configure,
            sessions,
        )
    }

    fn build_with(
        users: Users,
        remember_store: MemoryRememberStore,
        store: CountingStore,
        configure: impl FnOnce(LoginManager<Users>, &CountingStore) -> LoginManager<Users>,
        sessions: impl FnOnce(Router, CountingStore) -> Router,
    ) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let manager = LoginManager::new(users.clone())
            .remember(
                Remember::new(remember_store.clone())
                    .secure(false)
                    .grace_period(Duration::from_secs(1)),
            )
            .on_event(move |e| sink.lock().unwrap().push(e.clone()));
        let manager = configure(manager, &store);
        let manager_clone = manager.clone();
        let admin = Router::new()
            .route("/admin", get(|| async { "admin area" }))
            .route_layer(permission_required("admin"))
            .layer(LoginView::new("/admin/login"));
        let router = Router::new()
            .route("/public", get(|| async { "public" }))
            .route("/whoami", get(whoami))
            .route("/login/{name}", post(login))
            .route("/logout", post(logout))
            .route("/confirm", post(confirm))
            .route("/password/{new}", post(change_password))
            .route("/cart/{item}", post(put_cart))
            .route("/cart", get(get_cart))
            .route("/protected", get(protected).post(protected))
            .route("/fresh", get(fresh_page))
            .route("/many", get(many_extractors))
            .route("/next", get(next))
            .route("/devices", get(devices))
            .route("/devices/{id}/revoke", post(revoke))
            .route("/devices/revoke-all", post(revoke_all))
            .route("/logins", get(logins))
            .route("/logins/{id}/end", post(end_login))
            .route("/logins/end-others", post(end_other_logins))
            .route("/ip", get(client_ip))
            .merge(
                Router::new()
                    .route(
                        "/layer/login",
                        get(|| async { "members" }).options(|| async { "preflight" }),
                    )
                    .route_layer(login_required()),
            )
            .merge(
                Router::new()
                    .route("/layer/fresh", get(|| async { "fresh members" }))
                    .route_layer(fresh_login_required()),
            )
            .merge(admin)
            .layer(manager.into_layer());
        let router = sessions(router, store.clone());
        Self {
            router,
            store,
            users,
            remember_store,
            events,
            manager: manager_clone,
        }
    }

    pub fn client(&self) -> Client {
        Client {
            router: self.router.clone(),
            cookies: HashMap::new(),
            user_agent: "test-browser/1.0".to_owned(),
            addr: "10.0.0.1:5555".parse().unwrap(),
        }
    }

    pub fn events(&self) -> Vec<AuthEvent> {
        self.events.lock().unwrap().clone()
    }
}

/// A response with its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The `Set-Cookie` line for `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// A client that keeps cookies like a browser and never follows redirects.
#[derive(Clone)]
pub struct Client {
    router: Router,
    pub cookies: HashMap<String, String>,
    pub user_agent: String,
    pub addr: SocketAddr,
}

impl Client {
    pub async fn send(&mut self, mut request: Request<Body>) -> Reply {
        let headers = request.headers_mut();
        if !self.cookies.is_empty() && !headers.contains_key(header::COOKIE) {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.insert(header::COOKIE, cookie.parse().unwrap());
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, self.user_agent.parse().unwrap());
        }
        request.extensions_mut().insert(ConnectInfo(self.addr));
        let response: Response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap()
            .into_response();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        for line in parts.headers.get_all(header::SET_COOKIE) {
            let cookie = cookie::Cookie::parse(line.to_str().unwrap().to_owned()).unwrap();
            let expired =
                cookie.max_age().is_some_and(|age| age.is_zero()) || cookie.value().is_empty();
            if expired {
                self.cookies.remove(cookie.name());
            } else {
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post(&mut self, path: &str) -> Reply {
        self.send(Request::post(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn login(&mut self, name: &str) -> Reply {
        self.post(&format!("/login/{name}")).await
    }

    pub async fn login_remembered(&mut self, name: &str) -> Reply {
        self.send(
            Request::post(format!("/login/{name}"))
                .header("x-remember", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn whoami(&mut self) -> String {
        self.get("/whoami").await.body
    }

    /// Sets a cookie as if a response had set it (a planted or copied cookie).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn set_session_id(&mut self, id: &str) {
        self.set_cookie("id", id);
    }

    pub fn session_id(&self) -> Option<String> {
        self.cookies.get("id").cloned()
    }

    pub fn remember_cookie(&self) -> Option<String> {
        self.cookies.get("remember_token").cloned()
    }

    /// What a browser does when it is closed: session cookies are gone.
    pub fn close_browser(&mut self) {
        self.cookies.remove("id");
    }
}
