//! `shl-gateway inspect`: runs the [receiver](crate::receiver) against a link, stage by stage,
//! and reports what each stage found, so an app team (or its CI) can see exactly why a link
//! fails where a receiver would refuse it. Offline, it judges a decrypted Bundle file, or a
//! JWE file with its key, from the stage where those start.
//!
//! The report never holds the link, its key, its URL path or the passcode, nor anything of the
//! record beyond resource types and codes: it is meant to be pasted into an issue or a CI log.

mod report;

use std::fmt::Write as _;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use crate::crypto::jwe::ShlKey;
use crate::receiver::attestation::{self, AttestationError};
use crate::receiver::content::{self, ContentSummary};
use crate::receiver::decrypt::{self, Opened};
use crate::receiver::link::{self, LinkForm, LinkPayload};
use crate::receiver::outbound::{FetchError, Refusal};
use crate::receiver::retrieve::{FileSource, RetrieveError, Retrieved};
use crate::receiver::{Profile, Receiver, ReceiverSettings, Stage};

pub use self::report::{Report, StageReport};

/// What to inspect.
pub enum InspectInput {
    /// A link, bare or viewer-prefixed: every stage.
    Link(SecretString),
    /// A decrypted Bundle (JSON): the bundle and attestation stages, offline.
    Bundle(Vec<u8>),
    /// A compact JWE and the link's key: from the decrypt stage on, offline.
    Jwe { jwe: Vec<u8>, key: SecretString },
}

impl std::fmt::Debug for InspectInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Link(_) => "InspectInput::Link([REDACTED])",
            Self::Bundle(_) => "InspectInput::Bundle",
            Self::Jwe { .. } => "InspectInput::Jwe([REDACTED])",
        })
    }
}

/// Which rules to hold the input to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileChoice {
    /// Kill the Clipboard for a `U` link (or a `collection` Bundle), plain SHL otherwise.
    Auto,
    Ktc,
    Shl,
}

/// How to inspect.
#[derive(Debug)]
pub struct InspectOptions {
    pub profile: ProfileChoice,
    /// For a `P` link.
    pub passcode: Option<SecretString>,
    pub receiver: ReceiverSettings,
    /// The instant that judges `exp`, in seconds since the epoch; `None`: now. (The IG's test
    /// vectors state their expectations as of the moment they were generated.)
    pub now: Option<i64>,
}

impl InspectOptions {
    pub fn new(recipient: impl Into<String>) -> Self {
        Self {
            profile: ProfileChoice::Auto,
            passcode: None,
            receiver: ReceiverSettings::new(recipient),
            now: None,
        }
    }
}

/// Inspects `input` and reports on every stage that ran.
pub async fn inspect(input: InspectInput, options: &InspectOptions) -> Report {
    // A profile chosen up front is known even if decoding fails.
    let mut report = Report {
        profile: match options.profile {
            ProfileChoice::Ktc => Some(Profile::Ktc),
            ProfileChoice::Shl => Some(Profile::Shl),
            ProfileChoice::Auto => None,
        },
        ..Report::default()
    };
    match input {
        InspectInput::Link(link) => inspect_link(link.expose_secret(), options, &mut report).await,
        InspectInput::Bundle(bytes) => {
            let outcome = serde_json::from_slice::<Value>(&bytes)
                .map_err(|_| "the file is not JSON".to_owned());
            match outcome {
                Ok(bundle) => {
                    let profile = profile_of_bundle(options.profile, &bundle);
                    report.profile = Some(profile);
                    judge(&bundle, None, profile, None, &mut report).await;
                }
                Err(message) => {
                    report.required(Stage::Bundle, Err(message), Vec::new());
                }
            }
        }
        InspectInput::Jwe { jwe, key } => {
            let opened = ShlKey::from_base64url(key.expose_secret().trim())
                .map_err(|error| error.to_string())
                .and_then(|key| decrypt::open(&key, &jwe).map_err(|error| error.to_string()));
            let opened = record_decrypt(&mut report, vec![opened]);
            if let Some(opened) = opened.into_iter().next() {
                let profile = profile_of_bundle(options.profile, &opened.content);
                report.profile = Some(profile);
                judge(&opened.content, None, profile, None, &mut report).await;
            }
        }
    }
    report
}

async fn inspect_link(link: &str, options: &InspectOptions, report: &mut Report) {
    let decoded = match link::decode(link) {
        Ok(decoded) => decoded,
        Err(error) => {
            report.required(Stage::Decode, Err(error.to_string()), Vec::new());
            return;
        }
    };
    let form = match &decoded.form {
        LinkForm::Bare => "bare shlink:/ URI".to_owned(),
        LinkForm::ViewerPrefixed { viewer } => format!("viewer-prefixed (viewer {viewer})"),
    };
    report.required(
        Stage::Decode,
        Ok(format!(
            "{form}, payload {} characters",
            decoded.encoded_len
        )),
        Vec::new(),
    );

    let profile = match options.profile {
        ProfileChoice::Ktc => Profile::Ktc,
        ProfileChoice::Shl => Profile::Shl,
        ProfileChoice::Auto if decoded.flag().is_some_and(|flag| flag.contains('U')) => {
            Profile::Ktc
        }
        ProfileChoice::Auto => Profile::Shl,
    };
    report.profile = Some(profile);
    let now = options.now.unwrap_or_else(|| crate::clock::now_ms() / 1000);
    let payload = match link::check(decoded, profile, now) {
        Ok(payload) => payload,
        Err(error) => {
            report.required(Stage::Payload, Err(error.to_string()), Vec::new());
            return;
        }
    };
    let mut warnings = payload.warnings.clone();
    if options.passcode.is_some() && !payload.flags.passcode {
        warnings
            .push("a passcode was given, but the link has no flag P: it is not sent".to_owned());
    }
    report.required(
        Stage::Payload,
        Ok(describe_payload(&payload, now)),
        warnings,
    );

    let receiver = match Receiver::new(options.receiver.clone()) {
        Ok(receiver) => receiver,
        Err(error) => {
            report.required(Stage::Retrieve, Err(error.to_string()), Vec::new());
            return;
        }
    };
    let deadline = receiver.deadline();
    let retrieved = match receiver.retrieve(&payload, options.passcode.as_ref()).await {
        Ok(retrieved) => retrieved,
        Err(error) => {
            report.required(Stage::Retrieve, Err(with_hint(&error)), Vec::new());
            return;
        }
    };
    report.required(
        Stage::Retrieve,
        Ok(describe_retrieval(&payload, &retrieved)),
        retrieved.warnings.clone(),
    );

    let opened = retrieved
        .files
        .iter()
        .map(|file| decrypt::open(&payload.key, &file.jwe).map_err(|error| error.to_string()))
        .collect();
    let opened = record_decrypt(report, opened);
    let mut bundles = Vec::new();
    for (file, opened) in retrieved.files.iter().zip(&opened) {
        bundles.push((&opened.content, file.content_type_of_content()));
    }
    judge_all(&bundles, profile, Some((&receiver, deadline)), report).await;
}

/// The decrypt stage of every file; the opened files when all opened.
fn record_decrypt(report: &mut Report, outcomes: Vec<Result<Opened, String>>) -> Vec<Opened> {
    let several = outcomes.len() > 1;
    let mut messages = Vec::new();
    let mut warnings = Vec::new();
    let mut opened = Vec::new();
    let mut failed = false;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let prefix = if several {
            format!("file {}: ", index + 1)
        } else {
            String::new()
        };
        match outcome {
            Ok(file) => {
                let header = &file.header;
                let mut message = format!("{prefix}alg {}, enc {}", header.alg, header.enc);
                if let Some(cty) = &header.cty {
                    let _ = write!(message, ", cty {cty:.40}");
                } else {
                    warnings.push(format!("{prefix}the JWE header has no cty"));
                }
                if header.deflated {
                    message.push_str(", zip DEF (inflated)");
                }
                let _ = write!(message, ": {} bytes of JSON", file.plaintext_len);
                messages.push(message);
                opened.push(file);
            }
            Err(error) => {
                failed = true;
                messages.push(format!("{prefix}{error}"));
            }
        }
    }
    let message = messages.join("; ");
    report.required(
        Stage::Decrypt,
        if failed { Err(message) } else { Ok(message) },
        warnings,
    );
    if failed { Vec::new() } else { opened }
}

/// The bundle and attestation stages of one decrypted file.
async fn judge(
    bundle: &Value,
    content_type: Option<&str>,
    profile: Profile,
    receiver: Option<(&Receiver, Instant)>,
    report: &mut Report,
) {
    judge_all(&[(bundle, content_type)], profile, receiver, report).await;
}

/// The bundle stage over every file, then (when all conform) the attestation stage. Without
/// a receiver (offline), an attestation is read but not verified: no JWKS is fetched; with
/// one, every JWKS comes by the link's deadline.
async fn judge_all(
    bundles: &[(&Value, Option<&str>)],
    profile: Profile,
    receiver: Option<(&Receiver, Instant)>,
    report: &mut Report,
) {
    if bundles.is_empty() {
        return;
    }
    let several = bundles.len() > 1;
    let prefix = |index: usize| {
        if several {
            format!("file {}: ", index + 1)
        } else {
            String::new()
        }
    };
    let mut messages = Vec::new();
    let mut warnings = Vec::new();
    let mut failed = false;
    for (index, (bundle, content_type)) in bundles.iter().enumerate() {
        match content::check(bundle, *content_type, profile) {
            Ok(summary) => {
                messages.push(format!("{}{}", prefix(index), describe_content(&summary)));
                warnings.extend(
                    summary
                        .warnings
                        .iter()
                        .map(|w| format!("{}{w}", prefix(index))),
                );
            }
            Err(error) => {
                failed = true;
                messages.push(format!("{}{error}", prefix(index)));
                warnings.extend(
                    error
                        .warnings
                        .iter()
                        .map(|w| format!("{}{w}", prefix(index))),
                );
            }
        }
    }
    let message = messages.join("; ");
    if !report.required(
        Stage::Bundle,
        if failed { Err(message) } else { Ok(message) },
        warnings,
    ) {
        return;
    }

    let mut messages = Vec::new();
    let mut warnings = Vec::new();
    let mut verified = true;
    for (index, (bundle, _)) in bundles.iter().enumerate() {
        let outcome = check_attestation(bundle, receiver).await;
        let (ok, message, found_warnings) = outcome;
        verified &= ok;
        messages.push(format!("{}{message}", prefix(index)));
        warnings.extend(
            found_warnings
                .iter()
                .map(|w| format!("{}{w}", prefix(index))),
        );
    }
    let message = messages.join("; ");
    report.optional(
        Stage::Attestation,
        if verified { Ok(message) } else { Err(message) },
        warnings,
    );
}

/// Whether the attestation passed (or there is none), what to say, and its warnings.
async fn check_attestation(
    bundle: &Value,
    receiver: Option<(&Receiver, Instant)>,
) -> (bool, String, Vec<String>) {
    let found = match attestation::read(bundle) {
        None => return (true, "none in the Bundle (optional)".to_owned(), Vec::new()),
        Some(Err(error)) => return (false, format!("unreadable: {error}"), Vec::new()),
        Some(Ok(found)) => found,
    };
    // The issuer whole (attestation::read bounds it): cut short, a long one could show a
    // trusted-looking start and hide the host its keys come from.
    let who = format!("kid {:.60} of {}", found.kid, found.issuer);
    let Some((receiver, deadline)) = receiver else {
        return (
            false,
            format!("present ({who}), not verified: offline, no JWKS is fetched"),
            found.warnings,
        );
    };
    match receiver.verify_attestation(&found, deadline).await {
        Ok(()) => (true, format!("verified: ES256 by {who}"), found.warnings),
        Err(error) => {
            let hint = match &error {
                AttestationError::Fetch(fetch) => hint(fetch),
                _ => "",
            };
            (
                false,
                format!("not verified ({who}): {error}{hint}"),
                found.warnings,
            )
        }
    }
}

/// For offline input: Kill the Clipboard for a `collection`, plain SHL (an IPS) otherwise.
fn profile_of_bundle(choice: ProfileChoice, bundle: &Value) -> Profile {
    match choice {
        ProfileChoice::Ktc => Profile::Ktc,
        ProfileChoice::Shl => Profile::Shl,
        ProfileChoice::Auto if bundle.get("type").and_then(Value::as_str) == Some("collection") => {
            Profile::Ktc
        }
        ProfileChoice::Auto => Profile::Shl,
    }
}

fn describe_payload(payload: &LinkPayload, now: i64) -> String {
    let mut parts = Vec::new();
    let flags = payload.flags.to_string();
    parts.push(if flags.is_empty() {
        "no flags (manifest)".to_owned()
    } else {
        format!("flag {flags}")
    });
    match payload.exp {
        Some(exp) => {
            let left = u64::try_from(exp - now).unwrap_or_default();
            parts.push(format!(
                "exp {} (in {})",
                crate::receiver::instant(exp),
                humantime::format_duration(Duration::from_secs(left))
            ));
        }
        None => parts.push("no exp".to_owned()),
    }
    parts.push("key: 32 bytes".to_owned());
    parts.push(format!(
        "url {}://{} ({} characters)",
        payload.url.scheme(),
        payload.url.host_str().unwrap_or_default(),
        payload.url.as_str().chars().count()
    ));
    if let Some(chars) = payload.label_chars {
        parts.push(format!("label {chars} characters"));
    }
    if let Some(version) = payload.version {
        parts.push(format!("v {version}"));
    }
    parts.join("; ")
}

fn describe_retrieval(payload: &LinkPayload, retrieved: &Retrieved) -> String {
    let files: Vec<String> = retrieved
        .files
        .iter()
        .map(|file| {
            let source = match file.source {
                FileSource::Direct => "",
                FileSource::Embedded => "embedded, ",
                FileSource::Location => "by location, ",
            };
            format!("{source}{} bytes", file.jwe.len())
        })
        .collect();
    if payload.flags.direct {
        format!("file GET ?recipient= answered 200: {}", files.join(", "))
    } else {
        format!(
            "manifest POST answered 200 (status {}): {} file{} ({})",
            retrieved.manifest_status.as_deref().unwrap_or("none"),
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            files.join("; ")
        )
    }
}

fn describe_content(summary: &ContentSummary) -> String {
    let types: Vec<String> = summary
        .resource_types
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    let mut message = format!(
        "{}: {} entries ({})",
        summary.kind,
        summary.entries,
        types.join(", ")
    );
    if !summary.documents.is_empty() {
        let documents: Vec<&str> = summary
            .documents
            .iter()
            .map(|code| match code.as_str() {
                "60591-5" => "60591-5 rendered summary PDF",
                "51855-5" => "51855-5 patient's story PDF",
                _ => "unknown",
            })
            .collect();
        let _ = write!(message, "; documents: {}", documents.join(", "));
    }
    message
}

/// The error, with the flag that lifts it when the outbound policy refused the request.
fn with_hint(error: &RetrieveError) -> String {
    let hint = match error {
        RetrieveError::Fetch(_, fetch) => hint(fetch),
        RetrieveError::PasscodeNeeded => " (--passcode)",
        _ => "",
    };
    format!("{error}{hint}")
}

fn hint(error: &FetchError) -> &'static str {
    match error {
        FetchError::Refused(Refusal::Http | Refusal::Address { .. } | Refusal::Resolved { .. }) => {
            " (--allow-http permits it, for tests and local use)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::crypto::jwe::{self, ContentType};

    const ATTESTED: &str =
        include_str!("../../tests/fixtures/ktc-vectors/bundles/attestation.json");

    #[tokio::test]
    async fn the_report_names_an_attestations_issuer_whole() {
        // Cut short, a long issuer would show a trusted-looking start and hide its real host.
        let iss = format!(
            "https://trusted.example.org.{}.elsewhere.example",
            "a".repeat(100)
        );
        let mut bundle: Value = serde_json::from_str(ATTESTED).expect("JSON");
        bundle["meta"]["extension"][0]["valueString"] = json!(token_of(&iss));

        let (_, message, _) = check_attestation(&bundle, None).await;

        assert!(message.contains(&iss), "{message}");
    }

    fn token_of(iss: &str) -> String {
        [
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "k"}).to_string()),
            URL_SAFE_NO_PAD.encode(
                json!({"iss": iss, "iat": 1, "jti": "6f1f47a3-0d0e-4b3a-9a44-1b2c3d4e5f60"})
                    .to_string(),
            ),
            URL_SAFE_NO_PAD.encode([1u8; 64]),
        ]
        .join(".")
    }

    #[tokio::test]
    async fn attestations_are_verified_within_the_links_deadline() {
        // A manifest on 127.0.0.1 of three files, each attested by an `iss` whose JWKS
        // never comes: one slow issuer must not hold the receiver past the link's deadline.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let key = ShlKey::generate().expect("key");
        let mut bundle: Value = serde_json::from_str(ATTESTED).expect("JSON");
        bundle["meta"]["extension"][0]["valueString"] =
            json!(token_of(&format!("http://{address}/slow")));
        let file = jwe::encrypt(&key, ContentType::FhirJson, bundle.to_string().as_bytes())
            .expect("encrypts");
        let manifest = json!({"files": vec![
            json!({"contentType": "application/fhir+json", "embedded": file}); 3]});
        let router = axum::Router::new()
            .route(
                "/m",
                axum::routing::post(move || {
                    let manifest = manifest.clone();
                    async move { axum::Json(manifest) }
                }),
            )
            .route(
                "/slow/.well-known/jwks.json",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "{}"
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        let payload = json!({"url": format!("http://{address}/m"), "key": key.to_base64url()});
        let link = format!("shlink:/{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
        let mut options = InspectOptions::new("a test");
        options.receiver.outbound.allow_http = true;
        options.receiver.outbound.allow_private_addresses = true;
        options.receiver.outbound.request_timeout = Duration::from_secs(1);
        options.receiver.deadline = Duration::from_millis(1_500);

        let started = std::time::Instant::now();
        let report = inspect(InspectInput::Link(SecretString::from(link)), &options).await;
        let took = started.elapsed();

        assert!(report.ok, "{}", report.to_json());
        let attestation = report.stage(Stage::Attestation).expect("ran");
        assert!(!attestation.ok, "{}", report.to_json());
        assert!(took < Duration::from_millis(2_500), "took {took:?}");
    }
}
