//! Guards: [`LoginRequired`] / [`FreshLoginRequired`] extractors, the route layers
//! [`login_required`], [`fresh_login_required`] and [`permission_required`], and what they
//! answer when the request does not pass ([`Rejection`]), rendered from the manager's
//! settings and the [`Reason`] the request context returned.

use std::{
    any::type_name,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::{FromRequestParts, OriginalUri},
    response::{IntoResponse, Response},
};
use http::{request::Parts, Method, Request};
use tower_layer::Layer;
use tower_service::Service;

pub use crate::rejection::{Client, Reason, Rejection};
use crate::{
    config::Settings,
    context::{DynAuth, DynAuthHandle, Requirement},
    events::AuthEvent,
    redirect::{login_url, LoginViewOverride},
    AuthUser, Error,
};

/// The answer to a refused request: the app's `unauthorized_handler` or the default, and the
/// matching event. A wiring mistake (a missing layer) says what to fix rather than 503.
fn refuse(settings: &Settings, parts: &Parts, reason: Reason) -> Response {
    match reason {
        Reason::Unavailable(err) if !err.is_unavailable() => err.into_response(),
        reason => render(settings, parts, reason),
    }
}

/// Builds the answer to a refused request, emitting the matching event.
fn render(settings: &Settings, parts: &Parts, reason: Reason) -> Response {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    // Only path and query: an absolute-form request line must not put its host into `next`.
    let path_and_query = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let login_view = parts
        .extensions
        .get::<LoginViewOverride>()
        .map_or(settings.login_view.as_str(), |view| view.0.as_str());
    let view = match &reason {
        Reason::FreshLoginRequired { .. } => settings.refresh_view.as_deref().unwrap_or(login_view),
        _ => login_view,
    };
    let with_next = matches!(parts.method, Method::GET | Method::HEAD);
    let redirect_to = login_url(view, with_next.then_some(path_and_query.as_str()));
    match &reason {
        Reason::LoginRequired => settings.emit(AuthEvent::Unauthorized {
            path: uri.path().to_owned(),
        }),
        Reason::FreshLoginRequired { user_id } => settings.emit(AuthEvent::NeedsRefresh {
            user_id: user_id.clone(),
            path: uri.path().to_owned(),
        }),
        Reason::Forbidden {
            user_id,
            permission,
        } => settings.emit(AuthEvent::Forbidden {
            user_id: user_id.clone(),
            permission: permission.clone(),
        }),
        Reason::Unavailable(err) => {
            tracing::error!(error = %err, "login state unavailable; answering 503");
        }
    }
    let rejection = Rejection {
        reason,
        method: parts.method.clone(),
        path_and_query,
        redirect_to,
        client: Client::of(&parts.headers),
    };
    match &settings.unauthorized_handler {
        Some(handler) => handler(rejection),
        None => rejection.into_default_response(),
    }
}

/// Asks the request's auth context for a user of type `U` meeting `requirement`.
async fn require<U: AuthUser>(parts: &Parts, requirement: Requirement<'_>) -> Result<U, Response> {
    let handle = parts
        .extensions
        .get::<DynAuthHandle>()
        .ok_or_else(|| Error::MissingLoginManagerLayer.into_response())?;
    let context: &dyn DynAuth = &*handle.0;
    let mut user: Option<U> = None;
    context
        .require(parts, requirement, &mut user)
        .await
        .map_err(|reason| refuse(context.settings(), parts, reason))?;
    user.ok_or_else(|| {
        Error::Config(format!(
            "`{}` is not the user type of the `LoginManager`'s loader",
            type_name::<U>()
        ))
        .into_response()
    })
}

/// Extracts the logged-in user or refuses the request (Flask-Login's `login_required`).
///
/// ```
/// # use login_manager::AuthUser;
/// # #[derive(Clone)] struct User { name: String }
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
/// use login_manager::LoginRequired;
///
/// async fn dashboard(LoginRequired(user): LoginRequired<User>) -> String {
///     format!("Hello, {}", user.name)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct LoginRequired<U>(pub U);

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for LoginRequired<U> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, Requirement::Login).await.map(Self)
    }
}

/// Like [`LoginRequired`], but also refuses logins that are not fresh (restored from a
/// remember-me cookie, or past [`fresh_max_age`](crate::LoginManager::fresh_max_age)), sending
/// browsers to the refresh view (Flask-Login's `fresh_login_required`).
///
/// ```
/// # use login_manager::AuthUser;
/// # #[derive(Clone)] struct User;
/// # impl AuthUser for User { type Id = u32; fn id(&self) -> u32 { 1 } fn session_auth_hash(&self) -> &[u8] { b"" } }
/// use login_manager::FreshLoginRequired;
///
/// async fn settings(FreshLoginRequired(user): FreshLoginRequired<User>) -> &'static str {
///     "change your password here"
/// }
/// ```
#[derive(Debug, Clone)]
pub struct FreshLoginRequired<U>(pub U);

impl<S: Send + Sync, U: AuthUser> FromRequestParts<S> for FreshLoginRequired<U> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, Requirement::FreshLogin).await.map(Self)
    }
}

#[derive(Debug, Clone)]
enum Need {
    Login,
    FreshLogin,
    Permission(Arc<str>),
}

/// A route layer that lets a request through only when its requirement is met. `OPTIONS`
/// requests pass untouched (CORS preflights carry no cookies).
#[derive(Debug, Clone)]
pub struct RequireLayer {
    need: Need,
}

/// Route layer: a logged-in user is required.
///
/// ```
/// use axum::{routing::get, Router};
/// use login_manager::login_required;
///
/// let members: Router = Router::new()
///     .route("/members", get(|| async { "members only" }))
///     .route_layer(login_required());
/// ```
pub fn login_required() -> RequireLayer {
    RequireLayer { need: Need::Login }
}

/// Route layer: a fresh login is required.
///
/// ```
/// use axum::{routing::get, Router};
/// use login_manager::fresh_login_required;
///
/// let account: Router = Router::new()
///     .route("/account/delete", get(|| async { "sure?" }))
///     .route_layer(fresh_login_required());
/// ```
pub fn fresh_login_required() -> RequireLayer {
    RequireLayer {
        need: Need::FreshLogin,
    }
}

/// Route layer: a logged-in user with `permission` (from
/// [`UserLoader::permissions`](crate::UserLoader::permissions)) is required; others get 403,
/// anonymous requests the login redirect.
///
/// ```
/// use axum::{routing::get, Router};
/// use login_manager::{permission_required, LoginView};
///
/// let admin: Router = Router::new()
///     .route("/admin", get(|| async { "admin" }))
///     .route_layer(permission_required("admin"))
///     .layer(LoginView::new("/admin/login"));
/// ```
pub fn permission_required(permission: impl Into<String>) -> RequireLayer {
    RequireLayer {
        need: Need::Permission(permission.into().into()),
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService {
            inner,
            need: self.need.clone(),
        }
    }
}

/// The service made by [`RequireLayer`].
#[derive(Clone)]
pub struct RequireService<S> {
    inner: S,
    need: Need,
}

impl<S> fmt::Debug for RequireService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireService")
            .field("need", &self.need)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for RequireService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is not ready; the ready one goes into the future (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let need = self.need.clone();
        Box::pin(async move {
            if req.method() == Method::OPTIONS {
                return inner.call(req).await;
            }
            let Some(handle) = req.extensions().get::<DynAuthHandle>().cloned() else {
                return Ok(Error::MissingLoginManagerLayer.into_response());
            };
            let (parts, body) = req.into_parts();
            let requirement = match &need {
                Need::Login => Requirement::Login,
                Need::FreshLogin => Requirement::FreshLogin,
                Need::Permission(permission) => Requirement::Permission(permission),
            };
            match handle.0.require(&parts, requirement, &mut ()).await {
                Ok(_) => inner.call(Request::from_parts(parts, body)).await,
                Err(reason) => Ok(refuse(handle.0.settings(), &parts, reason)),
            }
        })
    }
}
