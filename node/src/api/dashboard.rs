//! `GET /`: the dashboard, one page compiled into the binary (no build
//! step, nothing from elsewhere). It reads the API from the browser and
//! draws the node's identity and reachability, peers, its worker, recent
//! jobs with their receipts, and the work ledger over time; it refreshes
//! itself every five seconds.
//!
//! The page holds no data of the node's, so it is served without the
//! token on TCP; every API call it makes sends the token (taken from the
//! address's `#token=` fragment, which browsers never send, or a form).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// Only this page's own inline script and style, and requests to this
/// origin; never framed.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'";

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// `router` with the dashboard at `/`, outside whatever layers it has.
pub(super) fn with_dashboard(router: Router) -> Router {
    Router::new().route("/", get(page)).merge(router)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_reads_only_documented_routes() {
        // The only absolute address is the SVG namespace's name.
        assert!(
            PAGE.match_indices("http")
                .all(|(i, _)| PAGE[i..].starts_with("http://www.w3.org/2000/svg")),
            "the page names an address"
        );
        for tag in ["<script src", "<link", "@import", "<img src"] {
            assert!(!PAGE.contains(tag), "the page loads {tag}");
        }
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (i, _) in PAGE.match_indices("api(\"") {
            let rest = &PAGE[i + 5..];
            let route = &rest[..rest.find('"').unwrap()];
            let route = route.split('?').next().unwrap();
            assert!(
                paths.contains_key(route),
                "the page reads {route}, which openapi.json lacks"
            );
        }
        assert!(PAGE.matches("api(\"").count() >= 6);
    }
}
