//! The page: HTML, CSS and plain JavaScript compiled into the binary (no CDN, no network at run
//! time, no build step).

use axum::http::header;
use axum::response::IntoResponse;

/// `index.html`.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// `app.js`.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// `app.css`.
pub const APP_CSS: &str = include_str!("../assets/app.css");

const NO_CACHE: &str = "no-cache";

pub(crate) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        INDEX_HTML,
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        APP_JS,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        APP_CSS,
    )
}
