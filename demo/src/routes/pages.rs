//! Public pages and fallbacks.

use axum::response::{Html, IntoResponse, Response};
use http::{header, StatusCode};
use minijinja::context;

use crate::{
    app::Auth,
    db::SEED_ACCOUNTS,
    web::{error_page, page, AppError},
};

/// `GET /`: public, but says who is signed in.
pub async fn home(auth: Auth) -> Result<Html<String>, AppError> {
    let accounts: Vec<_> = SEED_ACCOUNTS
        .iter()
        .map(|(username, password, permissions)| context! { username, password, permissions })
        .collect();
    page(&auth, "home.html", context! { accounts }).await
}

/// `GET /static/style.css`. It does not depend on the login state, so it may be cached.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no page at this address.")
}

pub async fn method_not_allowed() -> Response {
    error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "This address does not accept that method (logging out, for one, is a POST: use the button).",
    )
}
