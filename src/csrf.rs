//! Cross-origin request protection (CSRF) from the `Sec-Fetch-Site` and `Origin` headers:
//! the [`CrossOriginProtection`] layer, which documents the algorithm.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

/// The body of the `403` answer to a refused request.
const REFUSED_BODY: &str = "Cross-origin request refused.";

/// The `Sec-Fetch-Site` header (Fetch Metadata), not among `http`'s constants.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// A [`Layer`] that refuses cross-origin unsafe requests with `403 Forbidden`: protection
/// against cross-site request forgery (CSRF) from the `Sec-Fetch-Site` and `Origin` headers.
///
/// Put it on every router that has state-changing routes (`POST`, `PUT`, `PATCH`, `DELETE`);
/// the cost is a few header comparisons, with no I/O and, for a request that passes, no
/// allocation.
///
/// # Why, and the algorithm
///
/// A session cookie is sent with every request to the site, including a form that another
/// site makes the browser submit: without a check, `<form action="https://app.example/logout"
/// method="post">` on any page logs the visitor out, or worse. `SameSite=Lax` cookies stop
/// most of it, but not requests from a *same-site* origin (another subdomain, possibly
/// user-controlled) nor browsers without `SameSite`. Every browser released since 2023 tells
/// the server where a request comes from, so no token is needed:
///
/// - `Sec-Fetch-Site` (Fetch Metadata) is `same-origin`, `same-site`, `cross-site`, or `none`
///   for a navigation the user started (typed URL, bookmark);
/// - `Origin` carries the origin of the page that sent a non-GET request.
///
/// This layer applies the algorithm of Go 1.25's `http.CrossOriginProtection` (designed by
/// Filippo Valsorda, "Cross-Site Request Forgery", 2025), also the "Fetch Metadata" defence of
/// the OWASP *Cross-Site Request Forgery Prevention Cheat Sheet*:
///
/// 1. Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass: they must not change
///    anything, and checking them would break links from other sites.
/// 2. If `Sec-Fetch-Site` is present: `same-origin` and `none` pass; anything else
///    (`same-site`, `cross-site`, an unknown value) is refused unless `Origin` is a
///    [trusted origin](Self::trusted_origin).
/// 3. Otherwise (older browsers, or not a browser): no `Origin` passes (curl,
///    server-to-server calls: not a forgery, since no browser cookie is involved); an `Origin`
///    whose `host[:port]` equals the request's host (`Host`, or the authority of an
///    absolute-form request target) passes; a trusted origin passes; anything else, including
///    `Origin: null`, is refused.
///
/// A refused request is answered `403 Forbidden` with the body `Cross-origin request refused.`
/// and never reaches the inner service. Refusals are logged with `tracing` at `debug` level.
///
/// The scheme is not compared in step 3: behind a TLS-terminating proxy the application cannot
/// know its own scheme. The resulting gap (an `http://` page posting to `https://` on the same
/// host) only matters for pre-2023 browsers and is closed by HSTS. If a proxy rewrites `Host`,
/// every cross-check in step 3 fails: list the public origin with
/// [`trusted_origin`](Self::trusted_origin). `X-Forwarded-Host` is not used, as in Go: the
/// application cannot tell whether a proxy or the client wrote it.
///
/// # Examples
///
/// ```
/// use axum::{routing::post, Router};
/// use login_manager::CrossOriginProtection;
///
/// async fn logout() -> &'static str {
///     "bye"
/// }
///
/// let app: Router = Router::new()
///     .route("/logout", post(logout))
///     // The public origin, for a proxy that rewrites `Host`.
///     .layer(CrossOriginProtection::new().trusted_origin("https://app.example"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CrossOriginProtection {
    /// Origins allowed in any case, normalised to ASCII lowercase `scheme://host[:port]`.
    /// Shared, so cloning the layer per route costs a reference count.
    trusted_origins: Arc<[String]>,
}

impl CrossOriginProtection {
    /// A layer with no trusted origins: only same-origin requests (and requests without
    /// browser headers) may use unsafe methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows unsafe requests whose `Origin` header is exactly `origin` (compared ASCII
    /// case-insensitively), whatever `Sec-Fetch-Site` and `Host` say.
    ///
    /// Use it for the application's public origin when a proxy rewrites `Host`, or for another
    /// origin (a separate front end) that is meant to submit to this one.
    ///
    /// # Panics
    ///
    /// If `origin` is not of the form `scheme://host[:port]` (no path, not even `/`, no query,
    /// no fragment, no user info): such a value can never equal an `Origin` header, so it is a
    /// configuration mistake, reported when the application builds its router.
    ///
    /// # Examples
    ///
    /// ```
    /// use login_manager::CrossOriginProtection;
    ///
    /// let layer = CrossOriginProtection::new()
    ///     .trusted_origin("https://app.example")
    ///     .trusted_origin("https://admin.example:8443");
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn trusted_origin(self, origin: impl AsRef<str>) -> Self {
        let origin = origin.as_ref();
        assert!(
            origin_authority(origin).is_some(),
            "CrossOriginProtection::trusted_origin: {origin:?} is not an origin of the form \
             `scheme://host[:port]` (no trailing slash, path, query or fragment)"
        );
        let mut origins = self.trusted_origins.to_vec();
        origins.push(origin.to_ascii_lowercase());
        Self {
            trusted_origins: origins.into(),
        }
    }

    /// `true` if this request may reach the inner service.
    fn allows<B>(&self, request: &Request<B>) -> bool {
        if is_safe_method(request.method()) {
            return true;
        }
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN);
        match headers.get(SEC_FETCH_SITE) {
            Some(site) if site == "same-origin" || site == "none" => true,
            Some(_) => self.is_trusted(origin),
            None => match origin {
                None => true,
                Some(origin) => same_host(origin, request) || self.is_trusted(Some(origin)),
            },
        }
    }

    fn is_trusted(&self, origin: Option<&HeaderValue>) -> bool {
        origin
            .and_then(|origin| origin.to_str().ok())
            .is_some_and(|origin| {
                self.trusted_origins
                    .iter()
                    .any(|trusted| trusted.eq_ignore_ascii_case(origin))
            })
    }
}

impl<S> Layer<S> for CrossOriginProtection {
    type Service = CrossOriginProtectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOriginProtectionService {
            inner,
            config: self.clone(),
        }
    }
}

/// The [`Service`] made by [`CrossOriginProtection`]: refuses cross-origin unsafe requests,
/// passes the others to `S`.
///
/// It works with any request body, and with any response body that can be made from a
/// `&'static str` (for the `403` body), such as `axum::body::Body`.
#[derive(Clone, Debug)]
pub struct CrossOriginProtectionService<S> {
    inner: S,
    config: CrossOriginProtection,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CrossOriginProtectionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The check is synchronous, so the inner service that `poll_ready` just readied is
        // called right here: no clone-and-`mem::replace` is needed, as it would be if the
        // service had to move into a future. A refused request leaves `inner` readied but
        // uncalled, which tower allows (a held permit is released when `inner` is next called
        // or dropped).
        if self.config.allows(&request) {
            return ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            };
        }
        let headers = request.headers();
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            sec_fetch_site = ?headers.get(SEC_FETCH_SITE),
            origin = ?headers.get(header::ORIGIN),
            host = ?request_host(&request),
            "cross-origin request refused"
        );
        let mut response = Response::new(ResBody::from(REFUSED_BODY));
        *response.status_mut() = StatusCode::FORBIDDEN;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`CrossOriginProtectionService`]: the inner service's response, or the
    /// `403` for a refused request.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project_lite::pin_project! {
    // Private, so that its variants stay an implementation detail.
    #[project = KindProj]
    enum Kind<F, B> {
        // The request passed: the inner service's future.
        Inner {
            #[pin]
            future: F,
        },
        // The request was refused: the ready `403`, taken on the first poll.
        Refused {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> std::future::Future for ResponseFuture<F, B>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// Safe methods (RFC 9110 §9.2.1) are not checked: they must not change state.
fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The `host[:port]` of an origin `scheme://host[:port]`, or `None` if the value is not one
/// (including the opaque origin `null`).
fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority_ok = !authority.is_empty()
        && !authority
            .chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '@' | '\\') || !c.is_ascii_graphic());
    (scheme_ok && authority_ok).then_some(authority)
}

/// The host the request was sent to: the authority of an absolute-form target (HTTP/2's
/// `:authority`, or an HTTP/1 proxy-style request line, which RFC 9112 §3.2.2 says takes
/// precedence), else the `Host` header. This is what Go's `Request.Host` holds.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(header::HOST)?.to_str().ok(),
    }
}

/// `true` if the `Origin` header names the host (and port) the request was sent to. Host names
/// are case-insensitive; the scheme is not compared (see the module documentation).
fn same_host<B>(origin: &HeaderValue, request: &Request<B>) -> bool {
    let Some(origin_host) = origin.to_str().ok().and_then(origin_authority) else {
        return false;
    };
    request_host(request).is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}
