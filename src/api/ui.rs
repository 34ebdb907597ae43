//! The status page: static files compiled into the binary, so the page works offline and
//! fetches nothing from outside (a Content-Security-Policy of `'self'` makes the browser
//! refuse anything else). The page itself polls `/status` and calls `/explain` and the admin
//! endpoint with `fetch`; see `ui/app.js`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");
/// Natural Earth 1:110m land; see tools/world-map/README.md.
const WORLD: &str = include_str!("ui/world.svg");
const ICON: &str = include_str!("ui/icon.svg");

const CSP: &str = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The files change only with the binary; a restart after an upgrade must not show old ones.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /`: the page.
pub(crate) async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

/// `GET /ui/{file}`: its script, style sheet, map and icon.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file(APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => file(STYLE, "text/css; charset=utf-8"),
        "world.svg" => file(WORLD, "image/svg+xml"),
        "icon.svg" => file(ICON, "image/svg+xml"),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such file" })),
        )
            .into_response(),
    }
}
