//! Why a request was refused, who asked, and the library's default answer: facts the
//! guards render and an app's `unauthorized_handler` receives.

use axum::{
    response::{IntoResponse, Response},
    Json,
};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use crate::Error;

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
/// [`unauthorized_handler`](crate::LoginManager::unauthorized_handler).
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
