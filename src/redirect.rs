//! Redirects: building the login URL with `next`, validating `next` ([`safe_next`]), and the
//! per-router login view ([`LoginView`]).
//!
//! Safe `next` redirects: the return address after a login.
//!
//! A login page that redirects to a `next` taken from the query string or a form field is an
//! open redirect unless `next` is checked: `/login?next=//evil.example` would send a freshly
//! logged-in user to a phishing copy of the site (OWASP, *Unvalidated Redirects and Forwards
//! Cheat Sheet*; CWE-601). Blocklists of "bad hosts" do not work, because browsers accept many
//! spellings of an absolute URL: `//host`, `/\host`, `\\host`, `https:host`, `http:/\host`,
//! tabs and newlines inside the scheme (`java%0Ascript:`), and so on. So this module accepts
//! exactly one shape, a *same-origin relative path*, and refuses everything else.
//!
//! [`safe_next`] accepts a candidate only when all of these hold:
//!
//! - it is not empty and at most [`MAX_NEXT_LEN`] bytes long;
//! - it starts with exactly one `/`: the second character is neither `/` nor `\`, so the
//!   browser cannot read it as a scheme-relative URL (`//host`); and since the first character
//!   is `/`, it cannot carry a scheme (`https:`, `javascript:`) either;
//! - it contains no backslash anywhere (browsers treat `\` as `/` in http(s) URLs);
//! - it contains no control character (C0, DEL, C1) and no whitespace at all, raw;
//! - it contains none of the Unicode slash look-alikes (`／`, `＼`, `﹨`, `∕`, `⁄`, `⧸`, `⧹`),
//!   which NFKC-normalising back ends turn into `/` or `\`;
//! - no `.` or `..` path segment, because removing dot segments can turn `/a/..//host` into
//!   `//host` in whatever normalises the path next;
//! - the same checks hold after each round of percent-decoding (up to
//!   [`MAX_DECODE_ROUNDS`] rounds, until the value is stable), so that `/%2F/evil.example`,
//!   `/%252F%252Fevil`, `/%5Cevil` and `/%09/evil` are refused even if some proxy or framework
//!   decodes the value again. One exception: a percent-encoded space (`%20`) is fine, since
//!   it cannot change how a URL is parsed; raw whitespace is never accepted.
//!
//! The accepted value is returned unchanged when it is visible ASCII; other characters
//! (`/café`) are percent-encoded, so the result is always a valid [`http::HeaderValue`]
//! and can never inject a header line into a `Location` (axum's `Redirect::to` panics on an
//! invalid header value).

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

mod next;

pub use next::{
    login_url, next_from_query, safe_next, safe_next_or, MAX_DECODE_ROUNDS, MAX_NEXT_LEN,
};

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
