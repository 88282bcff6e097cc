//! Cookie sessions (feature `cookie`): the session inside a signed or encrypted cookie
//! (`tower-sessions-cookie-store` 0.5), and the service that answers a session too large for
//! its cookie with a `500` that says so.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use tower_sessions::Expiry;

use crate::{Error, Result};

use crate::layer::{BoxFuture, LayerKind};
use crate::{Key, SessionConfig, SessionLayer};

/// How a cookie session is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieProtection {
    /// Encrypted and authenticated (AES-256-GCM): the client can neither read nor change the
    /// session. The default.
    #[default]
    Private,
    /// Authenticated only (HMAC-SHA256), like Flask's session cookie: the client can read the
    /// session (user id, login times, a digest of the auth hash) but not change it.
    Signed,
}

/// One key, two cookie formats: so that both are one layer type.
#[derive(Clone)]
pub(crate) struct CookieKey {
    key: Key,
    protection: CookieProtection,
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKey")
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

impl tower_sessions_cookie_store::CookieController for CookieKey {
    fn get(
        &self,
        cookies: &tower_cookies::Cookies,
        name: &str,
    ) -> Option<tower_cookies::Cookie<'static>> {
        let cookie = match self.protection {
            CookieProtection::Private => cookies.private(&self.key).get(name),
            CookieProtection::Signed => cookies.signed(&self.key).get(name),
        };
        cookie.map(tower_cookies::Cookie::into_owned)
    }

    fn add(&self, cookies: &tower_cookies::Cookies, cookie: tower_cookies::Cookie<'static>) {
        match self.protection {
            CookieProtection::Private => cookies.private(&self.key).add(cookie),
            CookieProtection::Signed => cookies.signed(&self.key).add(cookie),
        }
    }

    fn remove(&self, cookies: &tower_cookies::Cookies, cookie: tower_cookies::Cookie<'static>) {
        match self.protection {
            CookieProtection::Private => cookies.private(&self.key).remove(cookie),
            CookieProtection::Signed => cookies.signed(&self.key).remove(cookie),
        }
    }
}

pub(crate) fn cookie_layer(
    protection: CookieProtection,
    config: SessionConfig,
) -> Result<SessionLayer> {
    use tower_sessions_cookie_store::{CookieSessionConfig, CookieSessionManagerLayer};

    let Some(key) = config.key.clone() else {
        return Err(Error::Config(
            "cookie sessions need a secret key: SessionConfig::secret_key(..)".to_owned(),
        ));
    };
    let cookie = config.attributes();
    let mut settings = CookieSessionConfig::default()
        .with_name(cookie.name)
        .with_http_only(true)
        .with_same_site(cookie.same_site)
        .with_secure(cookie.secure)
        .with_path(cookie.path)
        .with_expiry(config.expiry())
        .with_max_cookie_bytes(config.max_cookie_bytes);
    if let Some(domain) = cookie.domain {
        settings = settings.with_domain(domain);
    }
    let layer = CookieSessionManagerLayer::signed(key.clone())
        .with_controller(CookieKey { key, protection })
        .with_config(settings);
    Ok(SessionLayer(LayerKind::Cookie {
        layer,
        expiry: config.expiry(),
    }))
}

/// Saves a modified cookie session right after the handler, inside the cookie layer, so that
/// a session too large for its cookie becomes a `500` that says so. (The cookie layer alone
/// answers an empty `500`; it then sees this 5xx and leaves the response alone, and after a
/// successful save it sees the cookie written and does not write it again.)
#[derive(Clone)]
pub(crate) struct SaveFirst<S> {
    pub(crate) inner: S,
    /// The layer's expiry. A session whose handler changed its expiry is left to the cookie
    /// layer, which alone can pass that expiry on to the cookie.
    pub(crate) expiry: Expiry,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SaveFirst<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let session = request
            .extensions()
            .get::<tower_sessions::Session>()
            .cloned();
        let expiry = self.expiry;
        // The service that was polled ready is the one to call; keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let Some(session) = session else {
                return Ok(response);
            };
            let save = session.is_modified()
                && !response.status().is_server_error()
                && session.expiry() == Some(expiry)
                // An emptied session is the cookie layer's: it removes the cookie.
                && !session.is_empty().await;
            if !save {
                return Ok(response);
            }
            match session.save().await {
                Ok(()) => Ok(response),
                Err(error) => {
                    tracing::error!(%error, "cookie session not saved");
                    let mut response = Response::new(ResBody::from(
                        "Internal Server Error: the session does not fit in its cookie \
                         (see the server log)\n"
                            .to_owned(),
                    ));
                    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Ok(response)
                }
            }
        })
    }
}
