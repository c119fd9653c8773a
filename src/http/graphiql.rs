//! GraphiQL playground at `GET /graphiql`, served entirely by the gateway.
//!
//! Hospital networks often have no route to the internet, so a playground
//! that pulls GraphiQL and React from a CDN would be a blank page there.
//! Instead their browser builds are installed from the npm registry, pinned by
//! the committed lockfile (`npm ci --prefix graphiql`), and this module serves
//! them from the resulting `node_modules` folder.
//!
//! Only the four files the page needs are reachable, each route bound to one
//! fixed file on disk. No part of a request path is ever joined onto the
//! assets folder, so there is nothing to traverse with, and the rest of
//! `node_modules` (package metadata, sources, whatever a dependency ships)
//! stays private.
//!
//! The page carries no inline script, so it is sent with a Content-Security-
//! Policy that only runs scripts from this origin; the small bootstrap that
//! mounts GraphiQL is compiled into the binary and served as `init.js`, and so
//! is `qr-panel.js`, a GraphiQL plugin that shows the QR code of the latest
//! `createHealthLink` answer beside what the link carries.
//! Tokens go in GraphiQL's header editor, never in the URL, where they would
//! end up in browser history and access logs. In demo mode on a loopback
//! listener the page fills that editor with the development token, which it
//! fetches from `/graphiql/demo-headers` (see [`demo_headers`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, get_service};
use secrecy::{ExposeSecret as _, SecretString};
use tower_http::services::ServeFile;
use tower_http::set_header::SetResponseHeaderLayer;

/// The narrowest policy GraphiQL 3 was seen to run under, without violations,
/// in a browser: scripts and the stylesheet come from this origin, requests go
/// only to `/graphql` on this origin, and its stylesheet embeds fonts and lint
/// icons as `data:` URLs (the QR panel's image is a `data:` URL of the SVG as
/// well, which `img-src data:` already allows). Styles need `'unsafe-inline'` because its dialogs
/// inject a `<style>` element (to lock page scrolling) whose content varies,
/// so no hash fits it; the page's own small `<style>` relies on that too.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const PAGE: &str = include_str!("graphiql/page.html");
const MISSING_ASSETS_PAGE: &str = include_str!("graphiql/missing-assets.html");
const INIT_JS: &str = include_str!("graphiql/init.js");
const QR_PANEL_JS: &str = include_str!("graphiql/qr-panel.js");

/// A file the page loads: the name it is requested by under
/// `/graphiql/assets/`, and where the npm install puts it, relative to the
/// `node_modules` folder.
struct Asset {
    name: &'static str,
    installed_at: &'static str,
}

/// The whole whitelist. React stays on 18: React 19 no longer ships the UMD
/// builds that GraphiQL 3's browser bundle expects as globals.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "react.production.min.js",
        installed_at: "react/umd/react.production.min.js",
    },
    Asset {
        name: "react-dom.production.min.js",
        installed_at: "react-dom/umd/react-dom.production.min.js",
    },
    Asset {
        name: "graphiql.min.js",
        installed_at: "graphiql/graphiql.min.js",
    },
    Asset {
        name: "graphiql.min.css",
        installed_at: "graphiql/graphiql.min.css",
    },
];

/// Routes for the playground. `assets_dir` is the `node_modules` folder that
/// `npm ci --prefix graphiql` creates (config `--graphiql-assets-dir`);
/// `demo_token` is demo mode's `Bearer` token when the page may fill it in.
pub(crate) fn router(assets_dir: PathBuf, demo_token: Option<SecretString>) -> Router {
    let assets = ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            &format!("/graphiql/assets/{}", asset.name),
            get_service(ServeFile::new(assets_dir.join(asset.installed_at))),
        )
    });

    Router::new()
        .route("/graphiql", get(page))
        .route("/graphiql/init.js", get(init_js))
        .route("/graphiql/qr-panel.js", get(qr_panel_js))
        .with_state(Arc::<Path>::from(assets_dir))
        .merge(
            Router::new()
                .route("/graphiql/demo-headers", get(demo_headers))
                .with_state(Arc::new(demo_token)),
        )
        .merge(assets.layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            // The URLs do not change when the pinned versions do, so the
            // browser revalidates (cheaply, by Last-Modified) on each load.
            HeaderValue::from_static("no-cache"),
        )))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

async fn page(State(assets_dir): State<Arc<Path>>) -> Response {
    let body = if assets_installed(&assets_dir).await {
        PAGE
    } else {
        tracing::warn!(
            assets_dir = %assets_dir.display(),
            "GraphiQL assets are not installed; run `npm ci --prefix graphiql`"
        );
        MISSING_ASSETS_PAGE
    };
    (
        [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(body),
    )
        .into_response()
}

/// Checked on every page load rather than at startup, so installing the assets
/// into a running gateway takes effect without a restart.
async fn assets_installed(assets_dir: &Path) -> bool {
    for asset in &ASSETS {
        match tokio::fs::metadata(assets_dir.join(asset.installed_at)).await {
            Ok(metadata) if metadata.is_file() => {}
            _ => return false,
        }
    }
    true
}

async fn init_js() -> impl IntoResponse {
    script(INIT_JS)
}

async fn qr_panel_js() -> impl IntoResponse {
    script(QR_PANEL_JS)
}

fn script(source: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        source,
    )
}

/// Demo mode's token as the Headers tab's JSON, `{"Authorization": "Bearer
/// dev-..."}`, or `204 No Content` when there is none to give.
///
/// Who can read it: the router gets a token only in demo mode on a loopback
/// listener with no configured tokens (`demo::playground_may_show_token`), so
/// only programs on this machine reach this route, and they could read the
/// token file in the data directory as well, or its line on the gateway's
/// stdout. Web pages are the other readers to think of: another origin cannot
/// read the answer (no CORS headers here, and `nosniff` JSON will not load as a
/// script), and a foreign site that rebinds its own name to 127.0.0.1 is
/// refused by the Host check, as are requests the browser marks cross-site.
/// `no-store` keeps it out of caches; it never appears in a URL or the page.
async fn demo_headers(
    State(token): State<Arc<Option<SecretString>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    match token.as_ref() {
        Some(token) if addressed_to_loopback(&uri, &headers) && same_origin(&headers) => (
            no_store,
            axum::Json(serde_json::json!({ "Authorization": token.expose_secret() })),
        )
            .into_response(),
        _ => (StatusCode::NO_CONTENT, no_store).into_response(),
    }
}

/// Whether the request names this machine: `localhost` (browsers resolve it
/// and its subdomains to loopback themselves) or a loopback address. A page of
/// a rebound foreign name sends that name, whatever address it reached.
/// HTTP/2 carries the name in the URI's authority, HTTP/1.1 in `Host`.
fn addressed_to_loopback(uri: &Uri, headers: &HeaderMap) -> bool {
    let authority = match uri.authority() {
        Some(authority) => authority.clone(),
        None => match headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        {
            Some(authority) => authority,
            None => return false,
        },
    };
    let host = authority.host();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Browsers say where a request comes from in `Sec-Fetch-Site`: the
/// playground's own fetch is `same-origin`, and `none` is the user opening the
/// URL. Clients that do not send it (curl) run on this machine anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site") {
        None => true,
        Some(site) => site == "same-origin" || site == "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn fetch(assets_dir: &Path, uri: &str) -> Response {
        router(assets_dir.to_path_buf(), None)
            .oneshot(
                Request::get(uri)
                    .body(Body::empty())
                    .expect("request builds"),
            )
            .await
            .expect("router is infallible")
    }

    async fn body_text(response: Response) -> String {
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body is readable");
        String::from_utf8(bytes.to_vec()).expect("body is UTF-8")
    }

    fn header_value(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("{name} header is set"))
            .to_str()
            .expect("header is ASCII")
    }

    /// A fake install: every whitelisted file, plus files that must stay
    /// unreachable next to them.
    fn installed_assets() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for asset in &ASSETS {
            let path = dir.path().join(asset.installed_at);
            std::fs::create_dir_all(path.parent().expect("asset has a folder"))
                .expect("asset folder");
            std::fs::write(&path, format!("/* {} */", asset.name)).expect("asset file");
        }
        std::fs::write(dir.path().join("graphiql/package.json"), "{}").expect("package.json");
        dir
    }

    #[tokio::test]
    async fn page_is_served_with_a_strict_policy() {
        let assets = installed_assets();
        let response = fetch(assets.path(), "/graphiql").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_value(&response, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert_eq!(
            header_value(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        assert_eq!(
            header_value(&response, header::REFERRER_POLICY),
            "no-referrer"
        );
        assert_eq!(header_value(&response, header::CACHE_CONTROL), "no-store");
        assert!(header_value(&response, header::CONTENT_TYPE).starts_with("text/html"));

        let body = body_text(response).await;
        assert!(body.contains(r#"src="/graphiql/init.js""#));
        assert!(body.contains(r#"src="/graphiql/qr-panel.js""#));
        assert!(
            !body.contains("<script>"),
            "inline script would be blocked by the policy"
        );
        for asset in &ASSETS {
            assert!(body.contains(&format!("/graphiql/assets/{}", asset.name)));
        }
    }

    #[tokio::test]
    async fn whitelisted_assets_are_served_from_the_install() {
        let assets = installed_assets();
        for asset in &ASSETS {
            let response = fetch(assets.path(), &format!("/graphiql/assets/{}", asset.name)).await;

            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(
                header_value(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(header_value(&response, header::CACHE_CONTROL), "no-cache");
            let expected_type = if asset.name.ends_with(".css") {
                "text/css"
            } else {
                "javascript"
            };
            assert!(header_value(&response, header::CONTENT_TYPE).contains(expected_type));
            assert_eq!(body_text(response).await, format!("/* {} */", asset.name));
        }
    }

    #[tokio::test]
    async fn nothing_outside_the_whitelist_is_reachable() {
        let assets = installed_assets();
        for uri in [
            "/graphiql/assets/../../Cargo.toml",
            "/graphiql/assets/..%2F..%2FCargo.toml",
            "/graphiql/assets/graphiql/package.json",
            "/graphiql/assets/graphiql/graphiql.min.js",
            "/graphiql/assets/react/umd/react.production.min.js",
            "/graphiql/assets/",
            "/graphiql/assets",
        ] {
            let response = fetch(assets.path(), uri).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    #[tokio::test]
    async fn init_script_is_served_as_javascript() {
        let assets = installed_assets();
        let response = fetch(assets.path(), "/graphiql/init.js").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert!(header_value(&response, header::CONTENT_TYPE).starts_with("text/javascript"));
        assert_eq!(
            header_value(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let body = body_text(response).await;
        assert!(body.contains("'/graphql'"));
        assert!(body.contains("mutation CreateHealthLink"));
    }

    #[tokio::test]
    async fn qr_panel_script_is_served_as_javascript() {
        let assets = installed_assets();
        let response = fetch(assets.path(), "/graphiql/qr-panel.js").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert!(header_value(&response, header::CONTENT_TYPE).starts_with("text/javascript"));
        let body = body_text(response).await;
        assert!(body.contains("shlGatewayQrPanel"));
    }

    #[test]
    fn the_qr_code_is_shown_as_an_image_never_parsed_into_the_page() {
        for parser in [
            "innerHTML",
            "outerHTML",
            "dangerouslySetInnerHTML",
            "DOMParser",
        ] {
            assert!(!QR_PANEL_JS.contains(parser), "qr-panel.js uses {parser}");
        }
        assert!(QR_PANEL_JS.contains("data:image/svg+xml;base64,"));
        assert!(CONTENT_SECURITY_POLICY.contains("img-src 'self' data:;"));
    }

    async fn demo_headers_answer(
        token: Option<&str>,
        request: Request<Body>,
    ) -> (StatusCode, String, String) {
        let assets = installed_assets();
        let response = router(
            assets.path().to_path_buf(),
            token.map(|token| SecretString::from(token.to_owned())),
        )
        .oneshot(request)
        .await
        .expect("router is infallible");
        let status = response.status();
        let cache = header_value(&response, header::CACHE_CONTROL).to_owned();
        (status, cache, body_text(response).await)
    }

    fn demo_headers_request(host: &str, fetch_site: Option<&str>) -> Request<Body> {
        let mut request = Request::get("/graphiql/demo-headers").header(header::HOST, host);
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        request.body(Body::empty()).expect("request builds")
    }

    #[tokio::test]
    async fn demo_headers_give_the_token_to_the_playground_on_loopback() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST",
            "app.localhost:1",
        ] {
            let (status, cache, body) = demo_headers_answer(
                Some("Bearer dev-token"),
                demo_headers_request(host, Some("same-origin")),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{host}");
            assert_eq!(cache, "no-store");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
                serde_json::json!({"Authorization": "Bearer dev-token"})
            );
        }
    }

    #[tokio::test]
    async fn demo_headers_are_empty_without_a_token() {
        let (status, cache, body) =
            demo_headers_answer(None, demo_headers_request("127.0.0.1:8080", None)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(cache, "no-store");
        assert_eq!(body, "");
    }

    #[tokio::test]
    async fn demo_headers_are_refused_to_other_names_and_other_sites() {
        for (host, site) in [
            // A foreign name rebound to 127.0.0.1 by its DNS.
            ("attacker.example:8080", None),
            ("127.0.0.1.attacker.example", None),
            ("localhost.attacker.example", None),
            ("10.0.0.8:8080", None),
            // The right name, asked by another site's page.
            ("127.0.0.1:8080", Some("cross-site")),
            ("localhost:8080", Some("same-site")),
        ] {
            let (status, _, body) =
                demo_headers_answer(Some("Bearer dev-token"), demo_headers_request(host, site))
                    .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{host} {site:?}");
            assert!(!body.contains("dev-token"));
        }
    }

    #[tokio::test]
    async fn tokens_are_never_taken_from_the_url() {
        let assets = installed_assets();
        let response = fetch(assets.path(), "/graphiql?token=s3cr3t").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!body_text(response).await.contains("s3cr3t"));
        for url_reader in ["location", "URLSearchParams"] {
            assert!(!INIT_JS.contains(url_reader), "init.js reads {url_reader}");
            assert!(
                !QR_PANEL_JS.contains(url_reader),
                "qr-panel.js reads {url_reader}"
            );
        }
    }

    #[tokio::test]
    async fn missing_assets_give_install_instructions() {
        let empty = tempfile::tempdir().expect("tempdir");
        let response = fetch(empty.path(), "/graphiql").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_value(&response, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        let body = body_text(response).await;
        assert!(body.contains("npm ci --prefix graphiql"));
        assert!(
            !body.contains(&empty.path().display().to_string()),
            "server paths stay in the log"
        );

        let response = fetch(empty.path(), "/graphiql/assets/graphiql.min.js").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_partial_install_counts_as_missing() {
        let assets = installed_assets();
        std::fs::remove_file(assets.path().join("graphiql/graphiql.min.css")).expect("remove");
        let body = body_text(fetch(assets.path(), "/graphiql").await).await;
        assert!(body.contains("npm ci --prefix graphiql"));
    }

    #[tokio::test]
    async fn installing_takes_effect_without_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = router(dir.path().to_path_buf(), None);
        let request = || {
            Request::get("/graphiql")
                .body(Body::empty())
                .expect("request builds")
        };

        let before = app.clone().oneshot(request()).await.expect("infallible");
        assert!(body_text(before).await.contains("npm ci --prefix graphiql"));

        for asset in &ASSETS {
            let path = dir.path().join(asset.installed_at);
            std::fs::create_dir_all(path.parent().expect("asset has a folder"))
                .expect("asset folder");
            std::fs::write(&path, "").expect("asset file");
        }
        let after = app.oneshot(request()).await.expect("infallible");
        assert!(body_text(after).await.contains("/graphiql/init.js"));
    }
}
