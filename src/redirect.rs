//! Redirects: building the login URL with `next` ([`login_url`]), validating `next`
//! ([`safe_next`], which documents the rules), and the per-router login view ([`LoginView`]).

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

pub(crate) mod next;

pub use next::{login_url, next_from_query, safe_next};

/// The login view chosen by the innermost [`LoginView`] layer.
#[derive(Debug, Clone)]
pub(crate) struct LoginViewOverride(pub String);

/// A layer that overrides the login view for the routes it wraps (Flask-Login's
/// `blueprint_login_views`).
///
/// ```
/// use axum::{routing::get, Router};
/// use login_manager::{login_required, LoginView};
///
/// let admin: Router = Router::new()
///     .route("/admin", get(|| async { "admin" }))
///     .route_layer(login_required())
///     // Anonymous visitors of /admin go to /admin/login?next=%2Fadmin.
///     .layer(LoginView::new("/admin/login"));
/// ```
#[derive(Debug, Clone)]
pub struct LoginView {
    path: String,
}

impl LoginView {
    /// Sends the wrapped routes' anonymous visitors to `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self { path: path.into() }
    }
}

impl<S> Layer<S> for LoginView {
    type Service = LoginViewService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginViewService {
            inner,
            view: LoginViewOverride(self.path.clone()),
        }
    }
}

/// The service made by [`LoginView`].
#[derive(Debug, Clone)]
pub struct LoginViewService<S> {
    inner: S,
    view: LoginViewOverride,
}

impl<S, B> Service<Request<B>> for LoginViewService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.view.clone());
        self.inner.call(req)
    }
}
