//! The README's first hour, run as written: every `sh` block between `<!-- first-hour -->` and
//! `<!-- /first-hour -->` in README.md, in order, in a fresh folder, against the real binary.
//!
//! Two substitutions, and only these: `cargo run --release` (with or without a trailing `--`)
//! becomes the binary cargo built for this test, and `127.0.0.1:8080` the test's own listener (a
//! test must not take a fixed port). The first block, `cargo run --release` alone, starts the
//! gateway in the background; the others run one after another in a single `bash -eu -o pipefail`
//! session, so a variable one block sets is there for the next, as in a terminal.
//!
//! Needs curl and jq, which the walkthrough uses: ignored by a plain `cargo test` (CI runs it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BEGIN: &str = "<!-- first-hour -->";
const END: &str = "<!-- /first-hour -->";

/// The `sh` blocks of the README's first-hour section, in order.
fn first_hour_blocks() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme.find(BEGIN).expect("README marks its first hour") + BEGIN.len();
    let end = start + readme[start..].find(END).expect("the first hour ends");
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + "```sh\n".len()..];
        let close = body.find("\n```").expect("a closed block");
        blocks.push(body[..close].to_owned());
        rest = &body[close + "\n```".len()..];
    }
    blocks
}

fn as_run_here(block: &str, binary: &str, address: &str) -> String {
    block
        .replace("cargo run --release --", binary)
        .replace("cargo run --release", binary)
        .replace("127.0.0.1:8080", address)
}

/// The gateway the first block started; killed when the test ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn wait_until_ready(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://{address}/readyz"),
            ])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the walkthrough in `folder`; returns what the script printed.
fn run_first_hour(folder: &Path) -> String {
    let binary = env!("CARGO_BIN_EXE_shl-gateway");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let blocks = first_hour_blocks();
    let (start, steps) = blocks.split_first().expect("the walkthrough has blocks");
    assert_eq!(
        start, "cargo run --release",
        "the first hour starts the gateway"
    );

    let mut command = Command::new(binary);
    command
        .args(["--listen", &address])
        .current_dir(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The reader's shell has none of the gateway's variables set; neither has this one.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SHL_GATEWAY_") {
            command.env_remove(name);
        }
    }
    let _gateway = Gateway(command.spawn().expect("the gateway starts"));
    wait_until_ready(&address);

    let script: Vec<String> = steps
        .iter()
        .map(|block| as_run_here(block, binary, &address))
        .collect();
    let output = Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", &script.join("\n")])
        .current_dir(folder)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{}\n--- stdout\n{stdout}\n--- stderr\n{}",
        script.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
#[ignore = "needs curl and jq (the README's walkthrough uses them): run with `cargo test -- --include-ignored` (CI does)"]
fn the_readmes_first_hour_runs_as_written() {
    assert!(
        has("curl") && has("jq"),
        "this test needs curl and jq on PATH"
    );
    let folder = tempfile::tempdir().expect("tempdir");

    let printed = run_first_hour(folder.path());

    // The link the walkthrough made, its QR code saved as the README says, and what it printed.
    let answer: Value = serde_json::from_slice(
        &std::fs::read(folder.path().join("link.json")).expect("the walkthrough saves link.json"),
    )
    .expect("link.json is JSON");
    let link = &answer["data"]["createHealthLink"];
    let url = link["content"][0]["attachment"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a link: {answer}"));
    let svg = std::fs::read_to_string(folder.path().join("qr.svg")).expect("qr.svg");
    assert_eq!(crate::qr::decode_svg(&svg), url, "qr.svg holds the link");
    let passcode = link["passcode"].as_str().expect("passcode");
    assert!(
        printed.contains(passcode),
        "the passcode is shown: {printed}"
    );
    // The history and the revocation ran.
    assert!(printed.contains("\"healthLinks\""), "{printed}");
    assert!(
        printed.contains("\"DIRECT\""),
        "the direct link is listed: {printed}"
    );
    assert!(!printed.contains("error: "), "no step failed: {printed}");
    assert!(printed.contains("\"REVOKED\""), "the link ends: {printed}");
}
