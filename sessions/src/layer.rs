//! [`SessionLayer`] and [`SessionService`]: one layer type for store and cookie sessions.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::service::SessionManager;
#[cfg(feature = "cookie")]
use tower_sessions::Expiry;
use tower_sessions::SessionManagerLayer;

#[cfg(feature = "cookie")]
use crate::cookie::{CookieKey, SaveFirst};
use crate::DynStore;
#[cfg(doc)]
use crate::SessionBackend;

/// The session layer of any backend; see [`SessionBackend::into_layer`].
#[derive(Clone)]
pub struct SessionLayer(pub(crate) LayerKind);

#[derive(Clone)]
pub(crate) enum LayerKind {
    Store(SessionManagerLayer<DynStore>),
    #[cfg(feature = "cookie")]
    Cookie {
        layer: tower_sessions_cookie_store::CookieSessionManagerLayer<CookieKey>,
        expiry: Expiry,
    },
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            LayerKind::Store(_) => "store",
            #[cfg(feature = "cookie")]
            LayerKind::Cookie { .. } => "cookie",
        };
        f.debug_tuple("SessionLayer").field(&kind).finish()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService(match &self.0 {
            LayerKind::Store(layer) => ServiceKind::Store(layer.layer(inner)),
            #[cfg(feature = "cookie")]
            LayerKind::Cookie { layer, expiry } => ServiceKind::Cookie(layer.layer(SaveFirst {
                inner,
                expiry: *expiry,
            })),
        })
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S>(ServiceKind<S>);

type StoreService<S> = tower_cookies::CookieManager<SessionManager<S, DynStore>>;
#[cfg(feature = "cookie")]
type CookieService<S> = tower_cookies::CookieManager<
    tower_sessions_cookie_store::layer::CookieSessionManager<SaveFirst<S>, CookieKey>,
>;

#[derive(Clone)]
enum ServiceKind<S> {
    Store(StoreService<S>),
    #[cfg(feature = "cookie")]
    Cookie(CookieService<S>),
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    // `From<String>`: the cookie backend's "session too large" answer has a body.
    ResBody: Default + From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        match &mut self.0 {
            ServiceKind::Store(service) => service.poll_ready(cx),
            #[cfg(feature = "cookie")]
            ServiceKind::Cookie(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match &mut self.0 {
            ServiceKind::Store(service) => Box::pin(service.call(request)),
            #[cfg(feature = "cookie")]
            ServiceKind::Cookie(service) => Box::pin(service.call(request)),
        }
    }
}
