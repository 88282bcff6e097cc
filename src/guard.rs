//! Guards: [`LoginRequired`] / [`FreshLoginRequired`] extractors, the route layers
//! [`login_required`], [`fresh_login_required`] and [`permission_required`], and what they
//! answer when the request does not pass ([`Rejection`]).

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
    Json,
};
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    context::{DynAuthHandle, Requirement},
    events::AuthEvent,
    redirect::{login_url, LoginViewOverride},
    AuthUser, Error, LoginManager, UserLoader,
};

/// Why a guard refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    /// Nobody is logged in.
    LoginRequired,
    /// The user is logged in, but the login is not fresh (restored from a remember-me cookie,
    /// or marked stale by session protection).
    FreshLoginRequired {
        /// The user.
        user_id: String,
    },
    /// The user is logged in but lacks a permission.
    Forbidden {
        /// The user.
        user_id: String,
        /// The permission the route requires.
        permission: String,
    },
    /// The login state could not be determined (store or loader failure): never a login.
    Unavailable(Error),
}

/// Who is asking, which decides the shape of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A browser navigating: redirects.
    Browser,
    /// A script that wants JSON (`Accept` prefers `application/json`, or
    /// `X-Requested-With: XMLHttpRequest`): status codes and a JSON body.
    Json,
    /// htmx (`HX-Request`): an `HX-Redirect` header.
    Htmx,
}

impl Client {
    /// Classifies a request by its headers.
    pub fn of(headers: &HeaderMap) -> Self {
        if headers.contains_key("hx-request") {
            return Client::Htmx;
        }
        let xhr = headers
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
        if xhr || prefers_json(headers) {
            Client::Json
        } else {
            Client::Browser
        }
    }
}

/// Whether `Accept` ranks `application/json` above `text/html`.
fn prefers_json(headers: &HeaderMap) -> bool {
    let mut json_q = 0.0f32;
    let mut html_q = 0.0f32;
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for range in ranges {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/json" => json_q = json_q.max(q),
            "text/html" => html_q = html_q.max(q),
            _ => {}
        }
    }
    json_q > 0.0 && json_q > html_q
}

/// A refused request, given to the app's
/// [`unauthorized_handler`](LoginManager::unauthorized_handler).
#[derive(Debug)]
#[non_exhaustive]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// The request method.
    pub method: Method,
    /// The request's path and query (never a scheme or host, whatever the request line said).
    pub path_and_query: String,
    /// Where a browser should go: the login (or refresh) view, with a `next` back to this
    /// page for GET and HEAD requests.
    pub redirect_to: String,
    /// Who is asking.
    pub client: Client,
}

impl Rejection {
    /// The library's answer: `303` to [`redirect_to`](Self::redirect_to) for browsers (never
    /// 307, which would re-send a form), `401` JSON for scripts, `HX-Redirect` for htmx,
    /// `403` for a missing permission, `503` when the state could not be determined.
    pub fn into_default_response(self) -> Response {
        let (status, error) = match &self.reason {
            Reason::Unavailable(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service temporarily unavailable.",
                )
                    .into_response()
            }
            Reason::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Reason::LoginRequired => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Reason::FreshLoginRequired { .. } => {
                (StatusCode::UNAUTHORIZED, "reauthentication_required")
            }
        };
        let body = Json(serde_json::json!({ "error": error }));
        match self.client {
            Client::Json => (status, body).into_response(),
            _ if status == StatusCode::FORBIDDEN => (status, "Forbidden.").into_response(),
            Client::Htmx => {
                let location = HeaderValue::from_str(&self.redirect_to)
                    .unwrap_or(HeaderValue::from_static("/"));
                (status, [("hx-redirect", location)], body).into_response()
            }
            Client::Browser => {
                let location = HeaderValue::from_str(&self.redirect_to)
                    .unwrap_or(HeaderValue::from_static("/"));
                (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
            }
        }
    }
}

/// Builds the answer to a refused request, emitting the matching event.
pub(crate) fn rejection_response<L: UserLoader>(
    manager: &LoginManager<L>,
    parts: &Parts,
    reason: Reason,
) -> Response {
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
        .map_or(manager.login_view.as_str(), |view| view.0.as_str());
    let view = match &reason {
        Reason::FreshLoginRequired { .. } => manager.refresh_view.as_deref().unwrap_or(login_view),
        _ => login_view,
    };
    let with_next = matches!(parts.method, Method::GET | Method::HEAD);
    let redirect_to = login_url(view, with_next.then_some(path_and_query.as_str()));
    match &reason {
        Reason::LoginRequired => manager.emit(AuthEvent::Unauthorized {
            path: uri.path().to_owned(),
        }),
        Reason::FreshLoginRequired { user_id } => manager.emit(AuthEvent::NeedsRefresh {
            user_id: user_id.clone(),
            path: uri.path().to_owned(),
        }),
        Reason::Forbidden {
            user_id,
            permission,
        } => manager.emit(AuthEvent::Forbidden {
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
    match &manager.unauthorized_handler {
        Some(handler) => handler(rejection),
        None => rejection.into_default_response(),
    }
}

/// Asks the request's auth context for a user of type `U` meeting `requirement`.
async fn require<U: AuthUser>(parts: &Parts, requirement: Requirement<'_>) -> Result<U, Response> {
    let handle = parts
        .extensions
        .get::<DynAuthHandle>()
        .cloned()
        .ok_or_else(|| Error::MissingLoginManagerLayer.into_response())?;
    let user = handle.0.require(parts, requirement).await?;
    user.downcast::<U>().map(|user| *user).map_err(|_| {
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
/// remember-me cookie, or past [`fresh_max_age`](LoginManager::fresh_max_age)), sending
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
/// [`UserLoader::permissions`]) is required; others get 403,
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
            match handle.0.require(&parts, requirement).await {
                Ok(_) => inner.call(Request::from_parts(parts, body)).await,
                Err(response) => Ok(response),
            }
        })
    }
}
