//! The SMART Health Links viewer page: `GET /v1/health-link/viewer.html`, with its script and
//! stylesheet next to it.
//!
//! A link opened here carries its AES key in the page's URL fragment (`#shlink:/...`). Browsers
//! never send the fragment to a server, but any script running in the page can read it, so the
//! page is built to leave nothing else a way in:
//!
//! - The HTML, script and stylesheet are written for this project and compiled into the binary:
//!   no CDN, no third-party script, nothing on disk that could be swapped, and the page works on
//!   networks without internet access.
//! - Every response carries a strict Content-Security-Policy: script and style only from this
//!   origin (so no inline code, which the tests below also check), requests only to this origin,
//!   no framing, no `<base>` and no form submissions.
//! - The script puts health data into the page as text nodes only, never as HTML, so a hostile
//!   display string in a FHIR resource stays text; the resource narrative (`text.div`) is not
//!   used at all.
//! - `Referrer-Policy: no-referrer`, so no request made from the page names it.
//!
//! Decryption happens in the browser with WebCrypto, which browsers only offer in secure contexts:
//! the page works over https (or plain http on localhost), and says so otherwise.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Only this origin's script, style and connections; `data:` images cover the empty favicon the
/// page declares so that browsers do not ask the server for one.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

const PAGE_PATH: &str = "/v1/health-link/viewer.html";
const SCRIPT_PATH: &str = "/v1/health-link/viewer.js";
const STYLE_PATH: &str = "/v1/health-link/viewer.css";

const PAGE: &str = include_str!("viewer/viewer.html");
const SCRIPT: &str = include_str!("viewer/viewer.js");
const STYLE: &str = include_str!("viewer/viewer.css");

/// Routes for the viewer. They need no state: the three files are constants.
pub(crate) fn router() -> Router {
    Router::new()
        .route(PAGE_PATH, get(page))
        .route(SCRIPT_PATH, get(script))
        .route(STYLE_PATH, get(style))
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The same headers on all three files keeps them impossible to get out of step. The policy only
/// takes effect on the page, but costs nothing on the others.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            // A browser must never guess that the script or stylesheet is something else.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The paths stay the same from one release to the next: always revalidate, so a
            // browser never runs an old script against a newer server.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::{Body, to_bytes};
    use axum::http::{HeaderName, Request, StatusCode};
    use tower::ServiceExt;

    async fn fetch(uri: &str) -> Response {
        router()
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

    fn header_value(response: &Response, name: HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("{name} header is set"))
            .to_str()
            .expect("header is ASCII")
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_type_and_the_security_headers() {
        for (path, content_type, body) in [
            (PAGE_PATH, "text/html; charset=utf-8", PAGE),
            (SCRIPT_PATH, "text/javascript; charset=utf-8", SCRIPT),
            (STYLE_PATH, "text/css; charset=utf-8", STYLE),
        ] {
            let response = fetch(path).await;

            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_value(&response, header::CONTENT_TYPE),
                content_type,
                "{path}"
            );
            assert_eq!(
                header_value(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(
                header_value(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(
                header_value(&response, header::REFERRER_POLICY),
                "no-referrer"
            );
            assert_eq!(header_value(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(body_text(response).await, body, "{path}");
        }
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_nothing_from_elsewhere() {
        let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split("; ").collect();
        for expected in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(directives.contains(&expected), "missing {expected}");
        }
        for loophole in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:"] {
            assert!(
                !CONTENT_SECURITY_POLICY.contains(loophole),
                "policy allows {loophole}"
            );
        }
    }

    #[tokio::test]
    async fn other_paths_are_not_served() {
        for uri in [
            "/v1/health-link/viewer",
            "/v1/health-link/viewer.html/",
            "/v1/health-link/viewer/viewer.js",
            "/v1/health-link/../health-link/viewer.rs",
        ] {
            assert_eq!(fetch(uri).await.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    /// One start tag as written: its lowercased name and attributes (name, value).
    #[derive(Debug)]
    struct Tag {
        name: String,
        attributes: Vec<(String, String)>,
        /// Where the tag ends in the document, to look at what follows it.
        end: usize,
    }

    /// A small scanner for the start tags of our own page, enough to check it: quoted and
    /// unquoted attribute values, comments skipped. Not a general HTML parser.
    fn start_tags(html: &str) -> Vec<Tag> {
        let bytes = html.as_bytes();
        let mut tags = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if html[i..].starts_with("<!--") {
                i += html[i..].find("-->").expect("comment is closed") + 3;
                continue;
            }
            if bytes[i] != b'<' || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
                i += 1;
                continue;
            }
            i += 1;
            let name_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let name = html[name_start..i].to_ascii_lowercase();
            let mut attributes = Vec::new();
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                    i += 1;
                }
                assert!(i < bytes.len(), "<{name}> is not closed");
                if bytes[i] == b'>' {
                    break;
                }
                let attribute_start = i;
                while i < bytes.len() && !b" \t\r\n=>/".contains(&bytes[i]) {
                    i += 1;
                }
                let attribute = html[attribute_start..i].to_ascii_lowercase();
                let mut value = String::new();
                if bytes.get(i) == Some(&b'=') {
                    i += 1;
                    match bytes.get(i) {
                        Some(&quote @ (b'"' | b'\'')) => {
                            let close = html[i + 1..]
                                .find(char::from(quote))
                                .expect("attribute value is closed");
                            value = html[i + 1..i + 1 + close].to_owned();
                            i += close + 2;
                        }
                        _ => {
                            let value_start = i;
                            while i < bytes.len() && !b" \t\r\n>".contains(&bytes[i]) {
                                i += 1;
                            }
                            value = html[value_start..i].to_owned();
                        }
                    }
                }
                attributes.push((attribute, value));
            }
            tags.push(Tag {
                name,
                attributes,
                end: i + 1,
            });
            i += 1;
        }
        tags
    }

    fn attribute<'a>(tag: &'a Tag, name: &str) -> Option<&'a str> {
        tag.attributes
            .iter()
            .find(|(attribute, _)| attribute == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let tags = start_tags(PAGE);
        assert!(tags.len() > 10, "the scanner found the page's tags");

        let scripts: Vec<&Tag> = tags.iter().filter(|tag| tag.name == "script").collect();
        assert_eq!(scripts.len(), 1, "one script, the viewer's own");
        for script in scripts {
            assert_eq!(attribute(script, "src"), Some("viewer.js"));
            assert!(
                PAGE[script.end..].starts_with("</script>"),
                "the script element has no inline code"
            );
        }
        for tag in &tags {
            assert_ne!(tag.name, "style", "no <style> element");
            for (name, _) in &tag.attributes {
                assert_ne!(name, "style", "style attribute on <{}>", tag.name);
                assert!(
                    !name.starts_with("on"),
                    "event handler attribute {name} on <{}>",
                    tag.name
                );
            }
            for (name, value) in &tag.attributes {
                assert!(
                    !value
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("javascript:"),
                    "javascript: URL in {name} on <{}>",
                    tag.name
                );
            }
        }

        let stylesheets: Vec<&str> = tags
            .iter()
            .filter(|tag| tag.name == "link" && attribute(tag, "rel") == Some("stylesheet"))
            .filter_map(|tag| attribute(tag, "href"))
            .collect();
        assert_eq!(stylesheets, ["viewer.css"]);
    }

    #[test]
    fn the_scanner_sees_what_the_checks_look_for() {
        let tags = start_tags(
            r#"<p style="x" onclick='y'>a</p><!-- <script> --><script src=a.js></script>"#,
        );
        let names: Vec<&str> = tags.iter().map(|tag| tag.name.as_str()).collect();
        assert_eq!(names, ["p", "script"]);
        assert_eq!(attribute(&tags[0], "style"), Some("x"));
        assert_eq!(attribute(&tags[0], "onclick"), Some("y"));
        assert_eq!(attribute(&tags[1], "src"), Some("a.js"));
    }

    #[test]
    fn the_page_loads_its_files_from_the_routes_served_here() {
        // The page names them relative to itself, so it also works behind a path prefix.
        let folder = PAGE_PATH
            .rsplit_once('/')
            .map(|(folder, _)| folder)
            .expect("page path has a folder");
        assert_eq!(SCRIPT_PATH, format!("{folder}/viewer.js"));
        assert_eq!(STYLE_PATH, format!("{folder}/viewer.css"));
    }

    #[test]
    fn the_script_never_builds_html_from_strings_nor_logs() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "DOMParser",
            "console.",
        ] {
            assert!(!SCRIPT.contains(sink), "viewer.js uses {sink}");
        }
        // Requests name neither the page (whose fragment holds the key) nor the user's cookies.
        assert!(SCRIPT.contains("referrerPolicy: 'no-referrer'"));
        assert!(SCRIPT.contains("credentials: 'omit'"));
    }
}
