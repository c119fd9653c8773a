//! The GraphiQL playground in a real browser: headless Chromium runs the example operation, and
//! the QR panel must open by itself with a QR code that an independent decoder (rqrr, on
//! Chromium's own rendering of the panel's image) reads as the link the mutation answered,
//! beside the link's payload and passcode, never its key. In demo mode, the run relies on the
//! token the page filled in.
//!
//! Runs when `SHL_GATEWAY_TEST_BROWSER` is set, like `browser.rs` (`.ci/run` sets it after
//! installing Chromium, `tests/browser` and `graphiql`); set but unable to run is a failure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::browser::run_driver;
use crate::demo_mode::{spawn_demo, with_graphiql};
use crate::embedded::shl_payload;
use crate::helpers::*;

/// The smallest side, in CSS pixels, at which the panel may show the code: a version-15 symbol
/// with its quiet zone then gets 3 px a module, which a phone reads off a screen.
const MIN_IMAGE_SIDE: f64 = 256.0;

fn require_browser() {
    assert!(
        std::env::var_os("SHL_GATEWAY_TEST_BROWSER").is_some(),
        "this test needs SHL_GATEWAY_TEST_BROWSER=1, Debian's chromium, npm ci --prefix \
         tests/browser and npm ci --prefix graphiql"
    );
}

/// Opens the app's playground in Chromium, runs the example operation (with `token` typed into
/// the Headers tab, or with what the page filled in there) and returns the driver's summary.
async fn run_example_in_graphiql(app: &TestApp, token: Option<String>, screenshot: &str) -> Value {
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
    let env = token
        .map(|token| ("SHL_TOKEN", token))
        .into_iter()
        .collect();
    run_driver(
        "graphiql.mjs",
        vec![
            format!("{}/graphiql", app.address).into(),
            screenshot.into(),
        ],
        env,
    )
    .await
}

/// The QR code as Chromium showed it, decoded by rqrr.
fn decoded_image(summary: &Value) -> String {
    let png = STANDARD
        .decode(summary["image"]["png"].as_str().expect("png"))
        .expect("base64");
    crate::qr::decode_png(&png)
}

/// Checks everything the panel shows against the link the mutation answered.
fn assert_panel_matches_the_answer(summary: &Value) {
    let link = summary["link"].as_str().expect("the answer's link");
    let payload = shl_payload(link);
    let key = payload["key"].as_str().expect("the payload has a key");
    let manifest_host = payload["url"]
        .as_str()
        .and_then(|url| url.split('/').nth(2))
        .expect("manifest URL");
    let facts = &summary["panel"]["facts"];

    // No message shows the link or the passcode: they are secrets even in a test's output.
    assert!(decoded_image(summary) == link, "the QR code holds the link");
    assert_eq!(summary["image"]["src"], "data:image/svg+xml;base64");
    assert_eq!(
        summary["image"]["uncovered"], true,
        "the panel is open and the code in view"
    );
    for side in ["width", "height"] {
        let shown = summary["image"][side].as_f64().expect("size");
        assert!(shown >= MIN_IMAGE_SIDE, "QR shown {shown} px {side}");
    }
    assert!(
        facts["passcode"] == summary["passcode"],
        "the panel shows the answer's passcode"
    );
    assert_eq!(facts["label"], "Health Records");
    assert!(
        facts["flag"].as_str().expect("flag").starts_with("P:"),
        "{}",
        facts["flag"]
    );
    assert_eq!(facts["manifest-host"], manifest_host);
    let countdown = &summary["countdown"];
    assert!(
        countdown["before"]
            .as_str()
            .expect("countdown")
            .starts_with("in "),
        "{countdown}"
    );
    assert_ne!(
        countdown["before"], countdown["after"],
        "the countdown ticks"
    );
    for shown in [&summary["panel"]["text"], &summary["panel"]["html"]] {
        assert!(
            !shown.as_str().expect("panel").contains(key),
            "the panel shows the link's key"
        );
    }
    assert!(
        summary["opened"]["url"] == link,
        "the viewer button opens the link"
    );
    assert_eq!(summary["opened"]["withoutOpener"], true);
}

#[tokio::test]
#[ignore = "needs Chromium, tests/browser and graphiql installed: set SHL_GATEWAY_TEST_BROWSER=1 and run with `cargo test -- --include-ignored` (CI does)"]
async fn the_qr_panel_shows_a_scannable_code_of_the_link_beside_its_payload_in_chromium() {
    require_browser();
    let app = spawn_embedded(&TestDatabase::Sqlite, with_graphiql).await;

    let summary = run_example_in_graphiql(
        &app,
        Some(format!("Bearer {PATIENT_TOKEN}")),
        "graphiql-qr.png",
    )
    .await;

    assert_eq!(
        summary["headersPrefilled"], false,
        "no token offered with tokens configured"
    );
    assert_panel_matches_the_answer(&summary);
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium, tests/browser and graphiql installed: set SHL_GATEWAY_TEST_BROWSER=1 and run with `cargo test -- --include-ignored` (CI does)"]
async fn in_demo_mode_the_playground_runs_the_example_with_the_token_it_filled_in() {
    require_browser();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_demo(data_dir.path()).await;

    let summary = run_example_in_graphiql(&app, None, "graphiql-demo.png").await;

    assert_eq!(summary["headersPrefilled"], true);
    assert_panel_matches_the_answer(&summary);
    app.stop().await;
}
