//! [`LoginManager`]: the configuration, and the layer that puts it on every request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::response::Response;
use http::{header, HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::Session;

use crate::{
    config::Settings,
    context::{AuthContext, Core, DynAuthHandle},
    events::AuthEvent,
    guard::Rejection,
    login::PasswordLogin,
    logins::LoginIndex,
    remember::{user_key_of, Remember},
    AuthUser, LoginThrottle, PasswordHasher, Result, SessionProtection, UserLoader,
};

/// Flask-Login's `LoginManager`: the user loader plus every login setting.
///
/// Build it once, then turn it into a layer with [`into_layer`](Self::into_layer) and put that
/// layer *inside* tower-sessions' `SessionManagerLayer`:
///
/// ```
/// # use login_manager::{AuthUser, UserLoader};
/// # #[derive(Clone)] struct User;
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
/// # #[derive(Clone)] struct Users;
/// # impl UserLoader for Users { type User = User; type Error = std::convert::Infallible;
/// #   async fn load_user(&self, _: &u32) -> Result<Option<User>, Self::Error> { Ok(None) } }
/// use axum::{routing::get, Router};
/// use std::time::Duration;
///
/// use login_manager::{LoginManager, SessionProtection};
/// use tower_sessions::{MemoryStore, SessionManagerLayer};
///
/// let manager = LoginManager::new(Users)
///     .login_view("/login")
///     .session_protection(SessionProtection::Basic)
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .absolute_timeout(Duration::from_secs(12 * 60 * 60))
///     .on_event(|event| println!("{event}"));
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(manager.into_layer())
///     .layer(SessionManagerLayer::new(MemoryStore::default()));
/// ```
pub struct LoginManager<L: UserLoader> {
    loader: L,
    settings: Settings,
    remember: Option<Remember>,
    logins: Option<LoginIndex>,
    passwords: PasswordLogin,
}

impl<L: UserLoader> Clone for LoginManager<L> {
    fn clone(&self) -> Self {
        Self {
            loader: self.loader.clone(),
            settings: self.settings.clone(),
            remember: self.remember.clone(),
            logins: self.logins.clone(),
            passwords: self.passwords.clone(),
        }
    }
}

impl<L: UserLoader> fmt::Debug for LoginManager<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginManager")
            .field("settings", &self.settings)
            .field("remember", &self.remember.is_some())
            .field("logins", &self.logins)
            .finish_non_exhaustive()
    }
}

impl<L: UserLoader> LoginManager<L> {
    /// A manager with secure defaults: login view `/login`, Basic session protection, idle
    /// timeout 30 minutes, absolute timeout 12 hours, no remember-me, 5 s timeout on every
    /// store and loader call.
    pub fn new(loader: L) -> Self {
        Self {
            loader,
            settings: Settings::default(),
            remember: None,
            logins: None,
            passwords: PasswordLogin::default(),
        }
    }

    /// Where guards send anonymous browsers (Flask-Login's `login_view`). A sub-router can
    /// override it with [`LoginView`](crate::LoginView).
    pub fn login_view(mut self, path: impl Into<String>) -> Self {
        self.settings.login_view = path.into();
        self
    }

    /// Where [`FreshLoginRequired`](crate::FreshLoginRequired) sends sessions that are not
    /// fresh (Flask-Login's `refresh_view`); defaults to the login view.
    pub fn refresh_view(mut self, path: impl Into<String>) -> Self {
        self.settings.refresh_view = Some(path.into());
        self
    }

    /// What happens when a session is used by another client (default Basic).
    pub fn session_protection(mut self, protection: SessionProtection) -> Self {
        self.settings.protection = protection;
        self
    }

    /// Logs a session out after this long without a request (default 30 minutes). The
    /// library enforces it from its own record, refreshing it at most every quarter of the
    /// timeout: it does not rely on the session store's expiry, which plain reads do not extend.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = Some(timeout);
        self
    }

    /// Logs a session out this long after the login, however active (default 12 hours).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.settings.absolute_timeout = Some(timeout);
        self
    }

    /// Turns off the idle and absolute timeouts (sessions then last as long as the session
    /// store keeps them).
    pub fn without_timeouts(mut self) -> Self {
        self.settings.idle_timeout = None;
        self.settings.absolute_timeout = None;
        self
    }

    /// A login stays fresh only this long after the last password check (default: for the
    /// whole session).
    pub fn fresh_max_age(mut self, max_age: Duration) -> Self {
        self.settings.fresh_max_age = Some(max_age);
        self
    }

    /// Timeout for each session-store, remember-store and loader call (default 5 s): a hung
    /// database answers 503 instead of hanging the request.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.settings.store_timeout = timeout;
        self
    }

    /// The hasher [`AuthSession::login_with_password`](crate::AuthSession::login_with_password)
    /// verifies with (default: [`PasswordHasher::new`], argon2id with OWASP parameters). Hash
    /// new passwords with the same one ([`AuthSession::password_hasher`](crate::AuthSession::password_hasher)):
    /// clones share one bound on concurrent hashes.
    pub fn password_hasher(mut self, hasher: PasswordHasher) -> Self {
        self.passwords.hasher = hasher;
        self
    }

    /// Counts password-login failures and locks accounts and addresses with `throttle`
    /// (default: no throttle).
    pub fn login_throttle(mut self, throttle: LoginThrottle) -> Self {
        self.passwords.throttle = Some(throttle);
        self
    }

    /// Enables remember-me cookies (see [`Remember`]).
    pub fn remember(mut self, remember: Remember) -> Self {
        self.remember = Some(remember);
        self
    }

    /// Keeps an index of every live login (see [`LoginIndex`]), so that users can list and end
    /// their logins ([`AuthSession::logins`](crate::AuthSession::logins)) and an admin can end
    /// all of a user's ([`end_all_logins`](Self::end_all_logins)).
    pub fn login_index(mut self, index: LoginIndex) -> Self {
        self.logins = Some(index);
        self
    }

    /// Ends every login of the user with this id — every session in the [`LoginIndex`] and
    /// every remember-me token — on every instance sharing the stores: their next request is
    /// anonymous. For admins and breach response; no password change needed. Call it on a
    /// clone of the manager kept before [`into_layer`](Self::into_layer) (clones share the
    /// stores). Returns how many logins were listed; emits
    /// [`AuthEvent::LoginEnded`] for each.
    ///
    /// Called from a request of that same user (an admin logging themselves out everywhere),
    /// also call [`AuthSession::logout_user`](crate::AuthSession::logout_user) in that
    /// request: its session is one of those deleted, and tower-sessions would otherwise save
    /// it again at the end of the request if the handler wrote to it (a flash message).
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) when no login index is configured.
    pub async fn end_all_logins(&self, user_id: &<L::User as AuthUser>::Id) -> Result<u64> {
        let index = self
            .logins
            .as_ref()
            .ok_or_else(crate::logins::not_enabled)?;
        let key = user_key_of(user_id)?;
        let limit = self.settings.store_timeout;
        let ended = index.end_all(limit, self.remember.as_ref(), &key).await?;
        for login in &ended {
            self.settings.emit(AuthEvent::LoginEnded {
                user_id: user_id.to_string(),
                login_id: login.id.clone(),
            });
        }
        Ok(ended.len() as u64)
    }

    /// Answers a logout with `Clear-Site-Data: "cookies"` (default off), so the browser drops
    /// every cookie of the site, including ones the app set itself. Off by default because it
    /// also drops cookies unrelated to the login (preferences, consent).
    pub fn clear_site_data_on_logout(mut self, on: bool) -> Self {
        self.settings.clear_site_data = on;
        self
    }

    /// Calls `listener` for every [`AuthEvent`] (Flask-Login's signals). Events are also
    /// logged with `tracing`.
    pub fn on_event(mut self, listener: impl Fn(&AuthEvent) + Send + Sync + 'static) -> Self {
        self.settings.listeners.push(Arc::new(listener));
        self
    }

    /// Replaces the guards' responses (Flask-Login's `unauthorized_handler`). The handler gets
    /// the [`Rejection`] and may fall back to [`Rejection::into_default_response`].
    pub fn unauthorized_handler(
        mut self,
        handler: impl Fn(Rejection) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.settings.unauthorized_handler = Some(Arc::new(handler));
        self
    }

    /// The loader.
    pub fn loader(&self) -> &L {
        &self.loader
    }

    /// The layer to add to the router, inside the `SessionManagerLayer`.
    pub fn into_layer(self) -> LoginManagerLayer<L> {
        LoginManagerLayer {
            core: Arc::new(Core {
                loader: self.loader,
                settings: self.settings,
                remember: self.remember,
                logins: self.logins,
                passwords: self.passwords,
            }),
        }
    }
}

/// The layer made by [`LoginManager::into_layer`].
pub struct LoginManagerLayer<L: UserLoader> {
    core: Arc<Core<L>>,
}

impl<L: UserLoader> Clone for LoginManagerLayer<L> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

impl<L: UserLoader> fmt::Debug for LoginManagerLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.settings.fmt(f)
    }
}

impl<S, L: UserLoader> Layer<S> for LoginManagerLayer<L> {
    type Service = LoginManagerService<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginManagerService {
            inner,
            core: self.core.clone(),
        }
    }
}

/// The service made by [`LoginManagerLayer`].
pub struct LoginManagerService<S, L: UserLoader> {
    inner: S,
    core: Arc<Core<L>>,
}

impl<S: Clone, L: UserLoader> Clone for LoginManagerService<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
        }
    }
}

impl<S: fmt::Debug, L: UserLoader> fmt::Debug for LoginManagerService<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginManagerService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, L, B> Service<Request<B>> for LoginManagerService<S, L>
where
    S: Service<Request<B>, Response = Response> + Send,
    S::Future: Send + 'static,
    L: UserLoader,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let session = req.extensions().get::<Session>().cloned();
        let context = Arc::new(AuthContext::new(self.core.clone(), session));
        req.extensions_mut().insert(DynAuthHandle(context.clone()));
        ResponseFuture {
            inner: self.inner.call(req),
            context,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`LoginManagerService`]: the inner service's, then the queued
    /// cookies and cache headers. A named future rather than a boxed one: every request,
    /// public routes included, goes through it.
    pub struct ResponseFuture<F, L: UserLoader> {
        #[pin]
        inner: F,
        context: Arc<AuthContext<L>>,
    }
}

impl<F, L: UserLoader> fmt::Debug for ResponseFuture<F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, L> Future for ResponseFuture<F, L>
where
    F: Future<Output = Result<Response, E>>,
    L: UserLoader,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        finish_response(this.context, &mut response);
        Poll::Ready(Ok(response))
    }
}

/// Applies queued cookies and, when the answer depended on who is logged in, keeps shared
/// caches from serving it to someone else.
fn finish_response<L: UserLoader>(context: &AuthContext<L>, response: &mut Response) {
    let headers = response.headers_mut();
    for cookie in context.take_cookies() {
        if let Ok(value) = HeaderValue::from_str(&cookie.encoded().to_string()) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if context.was_logged_out() && context.settings().clear_site_data {
        headers.insert(
            HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\""),
        );
    }
    if context.was_touched() {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
}
