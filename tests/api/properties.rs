//! Property tests (proptest) for the inputs the gateway parses itself: forwarded addresses,
//! passcodes, labels, SHL keys and JWE files, location tickets, FHIR bundles, QR data, the
//! manifest request body over HTTP, and arbitrary requests to `/graphql` (the front door).
//!
//! Each property holds for every input, not just for the examples the other tests pick: parsers
//! never panic on hostile text, accept exactly what their rule says, and round-trip what they
//! produce. Case counts are bounded (256, fewer where a case is expensive) so the suite stays
//! quick; proptest shrinks any failure to a minimal input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aes_gcm::aead::Nonce;
use aes_gcm::{AeadInOut as _, Aes256Gcm, KeyInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use proptest::prelude::*;
use secrecy::SecretBox;
use serde_json::{Value, json};
use shl_gateway::crypto::jwe::{self, ShlKey};
use shl_gateway::crypto::{Keys, PurposeKey};
use shl_gateway::http::client_ip;
use shl_gateway::issuer::ValidatedLabel;
use shl_gateway::issuer::fhir::{ImportError, PatientRecord, Unimportable};
use shl_gateway::issuer::ticket;
use shl_gateway::passcode::{Passcode, PasscodeError};
use shl_gateway::qr::{self, ErrorCorrection, SvgOptions};
use shl_gateway::ratelimit::ip_key;

const CASES: u32 = 256;

fn ticket_key(seed: u8) -> PurposeKey {
    Keys::derive(&SecretBox::new(Box::new(vec![seed; 32]))).location_ticket
}

fn shl_key(bytes: [u8; 32]) -> ShlKey {
    ShlKey::from_base64url(&URL_SAFE_NO_PAD.encode(bytes)).expect("43 base64url characters")
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|octets| IpAddr::V4(Ipv4Addr::from(octets))),
        any::<[u8; 16]>().prop_map(|octets| IpAddr::V6(Ipv6Addr::from(octets))),
        // IPv4-mapped IPv6, which must be treated as the IPv4 address it carries.
        any::<[u8; 4]>().prop_map(|octets| IpAddr::V6(Ipv4Addr::from(octets).to_ipv6_mapped())),
    ]
}

/// What a client or a proxy may write in `X-Forwarded-For`: addresses, addresses with ports,
/// junk, empty entries and stray commas.
fn forwarded_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        any_ip().prop_map(|ip| ip.to_string()),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(octets, port)| format!("{}:{port}", Ipv4Addr::from(octets))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(octets, port)| format!("[{}]:{port}", Ipv6Addr::from(octets))),
        Just("unknown".to_owned()),
        Just(String::new()),
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

fn forwarded_header() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec(forwarded_entry(), 0..5).prop_map(|entries| entries.join(",")),
        0..4,
    )
}

fn trusted_networks() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec(
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(octets, prefix)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(octets)), prefix).expect("prefix <= 32")
            }),
            (any::<[u8; 16]>(), 0u8..=128).prop_map(|(octets, prefix)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(octets)), prefix).expect("prefix <= 128")
            }),
        ],
        0..4,
    )
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        // The strings the importer looks for, so that arbitrary values reach its deeper paths.
        prop::sample::select(vec![
            "Bundle",
            "Patient",
            "Condition",
            "Composition",
            "collection",
            "document",
            "transaction",
            "urn:uuid:1",
            "Patient/p1",
        ])
        .prop_map(|text| Value::String(text.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        let keys = prop::sample::select(vec![
            "resourceType",
            "id",
            "type",
            "entry",
            "resource",
            "fullUrl",
            "reference",
            "subject",
            "patient",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(|key: &str| key.to_owned()), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A Bundle-shaped value with arbitrary entries: the importer's realistic attack surface.
fn bundle_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["collection", "document", "transaction", "searchset", "batch"]),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "Patient",
                    "Condition",
                    "AllergyIntolerance",
                    "Observation",
                    "Composition",
                    "Unknown",
                    "Practitioner",
                    "Medication",
                    "MedicationStatement",
                ]),
                "[A-Za-z0-9.-]{0,70}|.{0,8}",
                any_json(),
            )
                .prop_map(|(resource_type, id, extra)| {
                    json!({
                        "fullUrl": format!("urn:uuid:{id}"),
                        "resource": {"resourceType": resource_type, "id": id, "subject": {"reference": "Patient/p1"}, "extension": extra,
                                     "medicationReference": {"reference": format!("Medication/{id}")}}
                    })
                }),
            0..6,
        ),
    )
        .prop_map(|(bundle_type, entries)| {
            json!({"resourceType": "Bundle", "type": bundle_type, "entry": entries})
        })
}

/// A compact JWE under `key` with an arbitrary protected header and plaintext, encrypted
/// correctly: only `decrypt`'s header checks and inflation stand between it and the caller.
fn jwe_with_header(key: &[u8; 32], header: &str, plaintext: &[u8], iv: [u8; 12]) -> String {
    let encoded_header = URL_SAFE_NO_PAD.encode(header);
    let mut ciphertext = plaintext.to_vec();
    let tag = Aes256Gcm::new(key.into())
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(iv),
            encoded_header.as_bytes(),
            ciphertext.as_mut_slice().into(),
        )
        .expect("small plaintexts encrypt");
    format!(
        "{encoded_header}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&ciphertext),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn client_ip_never_panics_and_names_the_peer_or_a_forwarded_address(
        peer in any_ip(),
        header in forwarded_header(),
        trusted in trusted_networks(),
    ) {
        let values: Vec<&str> = header.iter().map(String::as_str).collect();
        let client = client_ip(peer, &values, &trusted);
        let canonical_peer = peer.to_canonical();
        // Always canonical: an IPv4-mapped address never becomes a key of its own.
        prop_assert_eq!(client, client.to_canonical());
        if !trusted.iter().any(|net| net.contains(&canonical_peer)) {
            // From an untrusted peer the header changes nothing.
            prop_assert_eq!(client, canonical_peer);
        } else if client != canonical_peer {
            // Otherwise the answer is an address that really was in the header.
            let written = values
                .iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter_map(|entry| {
                    entry
                        .parse::<IpAddr>()
                        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|socket| socket.ip()))
                        .ok()
                })
                .any(|ip| ip.to_canonical() == client);
            prop_assert!(written, "{client} is neither the peer nor in the header");
        }
    }

    #[test]
    fn without_trusted_proxies_forwarded_headers_are_ignored(
        peer in any_ip(),
        header in forwarded_header(),
    ) {
        let values: Vec<&str> = header.iter().map(String::as_str).collect();
        prop_assert_eq!(client_ip(peer, &values, &[]), peer.to_canonical());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop(
        client in any::<[u8; 4]>(),
        proxies in prop::collection::vec(any::<u8>(), 0..4),
        spoofed in prop::collection::vec(forwarded_entry(), 0..3),
    ) {
        // Proxies in 10.0.0.0/8 (trusted); the client outside it; anything the client wrote
        // before (spoofed entries) must not matter.
        let client = Ipv4Addr::from(client);
        prop_assume!(client.octets()[0] != 10);
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("network")];
        let mut chain: Vec<String> = spoofed;
        chain.push(client.to_string());
        chain.extend(proxies.iter().map(|last| format!("10.0.0.{last}")));
        let header = chain.join(", ");
        let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        prop_assert_eq!(client_ip(peer, &[header.as_str()], &trusted), IpAddr::V4(client));
    }

    #[test]
    fn ip_keys_group_ipv6_by_64_and_mapped_ipv4_as_ipv4(
        octets in any::<[u8; 16]>(),
        low in any::<u64>(),
        v4 in any::<[u8; 4]>(),
    ) {
        let v6 = Ipv6Addr::from(octets);
        let same_64 = Ipv6Addr::from((u128::from(v6) & (u128::MAX << 64)) | u128::from(low));
        if v6.to_ipv4_mapped().is_none() && same_64.to_ipv4_mapped().is_none() {
            let key = ip_key(IpAddr::V6(v6));
            prop_assert!(key.ends_with("/64"), "{key}");
            prop_assert_eq!(&key, &ip_key(IpAddr::V6(same_64)));
        }
        let v4 = Ipv4Addr::from(v4);
        prop_assert_eq!(ip_key(IpAddr::V4(v4)), v4.to_string());
        prop_assert_eq!(ip_key(IpAddr::V6(v4.to_ipv6_mapped())), v4.to_string());
    }

    #[test]
    fn passcodes_are_exactly_six_ascii_digits(candidate in prop_oneof![
        "[0-9]{6}",
        "[0-9]{0,8}",
        "[0-9٠-٩０-９ ]{6}",
        any::<String>(),
    ]) {
        let expected = candidate.len() == 6 && candidate.bytes().all(|byte| byte.is_ascii_digit());
        match Passcode::parse(&candidate) {
            Ok(passcode) => {
                prop_assert!(expected, "accepted {candidate:?}");
                prop_assert_eq!(passcode.expose(), candidate.as_str());
                let printed = format!("{passcode:?}");
                prop_assert!(!printed.contains(&candidate), "Debug shows the passcode");
            }
            Err(error) => {
                prop_assert!(!expected, "refused {candidate:?}");
                // One fixed error: the message cannot repeat the candidate, a secret even when
                // malformed.
                prop_assert_eq!(error, PasscodeError::Malformed);
            }
        }
    }

    #[test]
    fn labels_are_short_and_free_of_control_and_formatting_characters(label in prop_oneof![
        ".{0,100}",
        "[a-zA-Zé🙂 ]{75,85}",
        "[a-z\u{202A}-\u{202E}\u{2066}-\u{2069}\u{200B}\u{FEFF}]{0,20}",
        any::<String>(),
    ]) {
        let expected = label.chars().count() <= 80
            && !label.chars().any(char::is_control)
            && !label.chars().any(shl_gateway::text::is_invisible_format_char);
        match ValidatedLabel::parse(&label) {
            Ok(parsed) => {
                prop_assert!(expected, "accepted {label:?}");
                prop_assert_eq!(parsed.as_str(), label.as_str());
                // Labels may name a condition: Debug never prints them.
                let printed = format!("{parsed:?}");
                prop_assert_eq!(printed.as_str(), "ValidatedLabel([REDACTED])");
            }
            Err(message) => {
                prop_assert!(!expected, "refused {label:?}");
                // Fixed messages (`&'static str`): they cannot repeat the label.
                prop_assert!(message.starts_with("label must"), "{message}");
            }
        }
    }

    #[test]
    fn shl_keys_parse_exactly_43_base64url_characters(text in prop_oneof![
        "[A-Za-z0-9_-]{43}",
        "[A-Za-z0-9_=+/-]{40,46}",
        any::<String>(),
    ]) {
        if let Ok(key) = ShlKey::from_base64url(&text) {
            prop_assert_eq!(text.len(), 43);
            prop_assert_eq!(key.to_base64url(), text);
        }
    }

    #[test]
    fn decrypt_never_panics_on_arbitrary_text(key in any::<[u8; 32]>(), compact in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.-]{0,200}",
        // Five parts, each plausible base64url: reaches the header and length checks.
        prop::collection::vec("[A-Za-z0-9_-]{0,40}", 5).prop_map(|parts| parts.join(".")),
    ]) {
        let _ = jwe::decrypt(&shl_key(key), &compact);
    }

    #[test]
    fn decrypt_never_panics_on_authentic_files_with_arbitrary_headers_and_payloads(
        key in any::<[u8; 32]>(),
        iv in any::<[u8; 12]>(),
        header in prop_oneof![
            Just(r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#.to_owned()),
            Just(r#"{"alg":"dir","enc":"A256GCM"}"#.to_owned()),
            Just(r#"{"alg":"dir","enc":"A128GCM"}"#.to_owned()),
            Just(r#"{"alg":"dir","enc":"A256GCM","crit":["x"]}"#.to_owned()),
            Just("[1,2]".to_owned()),
            any::<String>(),
        ],
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        // Authentic (the tag verifies), so arbitrary bytes reach inflation when zip is DEF.
        let compact = jwe_with_header(&key, &header, &payload, iv);
        let _ = jwe::decrypt(&shl_key(key), &compact);
    }

    #[test]
    fn decrypt_inverts_encrypt(key in any::<[u8; 32]>(), other in any::<[u8; 32]>(), plaintext in prop::collection::vec(any::<u8>(), 0..2048)) {
        let key = shl_key(key);
        let compact = jwe::encrypt(&key, jwe::ContentType::FhirJson, &plaintext).expect("encrypts");
        prop_assert_eq!(jwe::decrypt(&key, &compact).expect("decrypts"), plaintext);
        if other != *key.as_bytes() {
            prop_assert_eq!(jwe::decrypt(&shl_key(other), &compact), Err(jwe::JweError::Decryption));
        }
    }

    #[test]
    fn tickets_verify_only_when_issued_with_the_key_and_unexpired(
        text in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{50,56}"],
        link in any::<u128>(),
        expires_at in any::<i64>(),
        now in any::<i64>(),
    ) {
        // Arbitrary text never opens a link (a forged 128-bit tag is beyond any test's luck).
        prop_assert_eq!(ticket::verify(&ticket_key(7), &text, now), None);
        let link = uuid::Uuid::from_u128(link);
        let issued = ticket::issue(&ticket_key(7), link, expires_at);
        let expected = (now < expires_at).then_some(link);
        prop_assert_eq!(ticket::verify(&ticket_key(7), &issued, now), expected);
        prop_assert_eq!(ticket::verify(&ticket_key(8), &issued, now), None);
    }

    #[test]
    fn bundle_import_never_panics_on_arbitrary_json(value in prop_oneof![any_json(), bundle_like()]) {
        let lenient = PatientRecord::import(&value, Unimportable::Skip);
        let strict = PatientRecord::import(&value, Unimportable::Refuse);
        match (lenient, strict) {
            (Ok(import), Ok(strict)) => {
                // Strict accepts only what it can take whole (a document's Composition aside).
                prop_assert_eq!(&import.report, &strict.report);
                let skipped = import.report.skipped();
                prop_assert!(skipped.is_empty() || skipped == [("Composition", 1)], "{:?}", skipped);
            }
            (Ok(import), Err(error)) => {
                prop_assert!(matches!(error, ImportError::NotImportable { .. }), "{}", error);
                prop_assert!(!import.report.skipped().is_empty());
            }
            (Err(error), strict) => {
                // Messages are safe to show: they never quote a value from the bundle. What is
                // checked fails the same way whether the rest is skipped or refused.
                prop_assert!(!error.to_string().is_empty());
                prop_assert_eq!(strict.err(), Some(error));
            }
        }
    }

    #[test]
    fn qr_rendering_never_panics_and_draws_an_svg(
        data in prop_oneof![".{0,64}", "[ -~]{0,400}"],
        level in prop::sample::select(vec![
            ErrorCorrection::Low,
            ErrorCorrection::Medium,
            ErrorCorrection::Quartile,
            ErrorCorrection::High,
        ]),
        module_size in 0u32..40,
    ) {
        let options = SvgOptions {
            error_correction: level,
            module_size,
            ..SvgOptions::default()
        };
        let in_range = (qr::MIN_MODULE_SIZE..=qr::MAX_MODULE_SIZE).contains(&module_size);
        match qr::render_svg(&data, &options) {
            Ok(svg) => {
                prop_assert!(in_range);
                prop_assert!(svg.starts_with("<svg"), "{svg}");
                prop_assert!(svg.ends_with("</svg>"));
            }
            // A size out of range, or (not at these lengths) data too long for version 40.
            Err(_) => prop_assert!(!in_range),
        }
    }
}

proptest! {
    // Rasterizing and decoding an SVG is slow in a debug build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn qr_codes_decode_back_to_their_data(data in "[ -~]{1,120}") {
        let svg = qr::render_svg(&data, &SvgOptions::default()).expect("fits");
        prop_assert_eq!(crate::qr::decode_svg(&svg), data);
    }
}

/// One embedded gateway with one passcode link, shared by every case of the HTTP property.
struct ManifestTarget {
    runtime: tokio::runtime::Runtime,
    app: crate::helpers::TestApp,
    manifest_url: String,
    passcode: String,
}

fn manifest_target() -> ManifestTarget {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (app, manifest_url, passcode) = runtime.block_on(async {
        // The largest budget, so wrong guesses among the cases do not lock the link early.
        let app = crate::helpers::spawn_embedded(&crate::helpers::TestDatabase::Sqlite, |config| {
            shl_gateway::config::Config {
                embedded: shl_gateway::config::EmbeddedConfig {
                    passcode_attempts: 100,
                    ..config.embedded
                },
                ..config
            }
        })
        .await;
        let (link, payload) = crate::embedded::create_link(&app, json!({})).await;
        let url = payload["url"].as_str().expect("manifest url").to_owned();
        let passcode = link["passcode"].as_str().expect("passcode").to_owned();
        (app, url, passcode)
    });
    ManifestTarget {
        runtime,
        app,
        manifest_url,
        passcode,
    }
}

/// Manifest bodies: arbitrary bytes, arbitrary JSON, objects with the protocol's fields holding
/// values of every type, and (most often, so the passcode path is reached) well-formed requests
/// with a right or wrong passcode.
fn manifest_body(right_passcode: String) -> impl Strategy<Value = Vec<u8>> {
    let well_formed = (
        "[ -~]{1,40}",
        prop_oneof![Just(right_passcode), "[0-9]{6}", ".{0,8}"],
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(recipient, passcode, max)| {
            json!({"recipient": recipient, "passcode": passcode, "embeddedLengthMax": max})
                .to_string()
                .into_bytes()
        });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..6000),
        1 => any_json().prop_map(|value| value.to_string().into_bytes()),
        1 => (any_json(), any_json(), any_json()).prop_map(|(recipient, passcode, embedded)| {
            json!({"recipient": recipient, "passcode": passcode, "embeddedLengthMax": embedded})
                .to_string()
                .into_bytes()
        }),
        4 => well_formed,
    ]
}

#[test]
fn arbitrary_manifest_requests_never_get_a_5xx() {
    let target = manifest_target();
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (
        manifest_body(target.passcode.clone()),
        prop::option::of(prop::sample::select(vec![
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ])),
        // Sometimes an arbitrary id in the URL: it is client input as well.
        prop_oneof![
            3 => Just(None),
            1 => "[A-Za-z0-9_%.~-]{0,200}".prop_map(Some),
        ],
    );
    let outcome = runner.run(&strategy, |(body, content_type, id)| {
        let url = match &id {
            Some(id) => {
                let base = target
                    .manifest_url
                    .rsplit_once('/')
                    .map_or(target.manifest_url.as_str(), |(base, _)| base);
                format!("{base}/{id}")
            }
            None => target.manifest_url.clone(),
        };
        let status = target.runtime.block_on(async {
            let mut request = target.app.http.post(&url).body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            request.send().await.expect("the gateway answers").status()
        });
        prop_assert!(!status.is_server_error(), "{status} for a manifest request");
        prop_assert!(
            [200, 400, 401, 404, 405, 413, 429].contains(&status.as_u16()),
            "unexpected {status}"
        );
        Ok(())
    });
    let ManifestTarget { runtime, app, .. } = target;
    runtime.block_on(app.stop());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Fragments of hostile GraphQL text: escapes valid and not, surrogates, quotes, brackets in
/// strings, comments, and numbers no 32- or 64-bit type holds.
const TEXT_PIECES: [&str; 24] = [
    "\\u0041",
    "\\u00e9",
    "\\uD83D\\uDE00",
    "\\uD800",
    "\\uZZZZ",
    "\\u{1F600}",
    "\\u",
    "\\\"",
    "\\\\",
    "\\q",
    "\\n",
    "[",
    "{",
    "]",
    "}",
    "#",
    "\"",
    "é",
    "\u{202E}",
    "\u{0}",
    "\u{FFFF}",
    "$",
    "...",
    " ",
];
const NUMBERS: [&str; 12] = [
    "1e400",
    "-1e400",
    "99999999999999999999999999999",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "-0",
    "0.0000001e-400",
    "4",
    "1.5",
    "0x10",
    "1_000",
];

/// Documents: deep nesting (lists, objects, selection sets, mixed), long lists, escaped and
/// block strings, huge numbers, all in real argument positions, and arbitrary text.
fn front_door_document() -> impl Strategy<Value = String> {
    let nesting = (0usize..300, 0u8..4).prop_map(|(depth, kind)| match kind {
        0 => format!(
            "{{ shareableResourceTypes(x: {}1{}) }}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        1 => format!(
            "mutation {{ createHealthLink(input: {}{}) {{ id }} }}",
            "{label: "
                .repeat(depth)
                .replacen("{label: ", "{resources: ", 1),
            "}".repeat(depth)
        ),
        2 => format!("{}__typename{}", "{ a ".repeat(depth), "}".repeat(depth)),
        _ => format!(
            "query($v: [Int] = {}) {{ __typename @skip(if: {}) }}",
            "[{a:[".repeat(depth / 2),
            "]}]".repeat(depth / 2)
        ),
    });
    let long_list = (0usize..3000).prop_map(|length| {
        format!(
            "{{ shareableResourceTypes(x: [{}]) }}",
            vec!["1"; length].join(",")
        )
    });
    let text = prop::collection::vec(prop::sample::select(TEXT_PIECES.to_vec()), 0..40)
        .prop_map(|pieces| pieces.concat());
    let strings = (text.clone(), 0u8..3).prop_map(|(text, kind)| match kind {
        0 => format!("mutation {{ createHealthLink(input: {{label: \"{text}\"}}) {{ id }} }}"),
        1 => format!("{{ shareableResourceTypes(x: \"\"\"{text}\"\"\") }}"),
        _ => format!(
            "mutation {{ createHealthLink(input: {{mode: \"{text}\"}}) {{ id qrCodeSvg(darkColor: \"{text}\") }} }}"
        ),
    });
    let numbers = prop::sample::select(NUMBERS.to_vec()).prop_map(|number| {
        format!(
            "mutation {{ createHealthLink(input: {{}}) {{ id qrCodeSvg(moduleSize: {number}) }} }}"
        )
    });
    prop_oneof![
        2 => nesting,
        1 => long_list,
        2 => strings,
        1 => numbers,
        1 => text,
        1 => ".{0,300}",
        2 => Just(crate::helpers::MUTATION_WITH_GATEWAY_FIELDS.to_owned()),
        1 => Just(crate::helpers::SEED_MUTATION.to_owned()),
    ]
}

/// Variables: arbitrary JSON, JSON nested deeper than any parser should follow, and values of
/// every type where the seed mutation's input goes.
fn front_door_variables() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any_json().prop_map(|value| value.to_string()),
        1 => (0usize..5000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        3 => any_json().prop_map(|value| json!({"input": value, "s": value}).to_string()),
        // Valid, so that some cases run to the end and answer data.
        2 => Just(crate::helpers::SEED_VARIABLES.to_owned()),
        1 => "[ -~]{0,60}",
    ]
}

/// One request to `/graphql`.
#[derive(Debug, Clone)]
enum FrontDoorRequest {
    Post {
        body: Vec<u8>,
        json_accept: bool,
    },
    Get {
        query: String,
        variables: Option<String>,
    },
}

fn front_door_request() -> impl Strategy<Value = FrontDoorRequest> {
    let json_body =
        (front_door_document(), front_door_variables()).prop_map(|(query, variables)| {
            format!(
                r#"{{"query": {}, "variables": {variables}}}"#,
                Value::String(query)
            )
            .into_bytes()
        });
    // Bytes that are not UTF-8, spliced into an otherwise valid body.
    let invalid_utf8 = (
        front_door_document(),
        prop::collection::vec(0x80u8..=0xff, 1..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(query, bytes, at)| {
            let mut body = json!({ "query": query }).to_string().into_bytes();
            let at = at.index(body.len());
            body.splice(at..at, bytes);
            body
        });
    let body = prop_oneof![
        4 => json_body,
        1 => invalid_utf8,
        1 => prop::collection::vec(any::<u8>(), 0..400),
    ];
    prop_oneof![
        3 => (body, any::<bool>())
            .prop_map(|(body, json_accept)| FrontDoorRequest::Post { body, json_accept }),
        1 => (front_door_document(), prop::option::of(front_door_variables()))
            .prop_map(|(query, variables)| FrontDoorRequest::Get { query, variables }),
    ]
}

/// Every answer of `/graphql` to arbitrary requests is a JSON body with data or coded errors
/// (codes from the closed list), with no status but the documented ones, and the gateway keeps
/// answering. `SHL_GATEWAY_FRONT_DOOR_CASES` raises the case count (default 256); a time budget
/// keeps a slow machine from running past about 40 seconds.
#[test]
fn arbitrary_graphql_requests_get_well_formed_coded_answers() {
    let cases = std::env::var("SHL_GATEWAY_FRONT_DOOR_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    let budget = std::time::Duration::from_secs(if cases > 256 { 3600 } else { 40 });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = runtime.block_on(async {
        let app = crate::helpers::spawn_app().await;
        app.upstream_answers_seed().await;
        app
    });
    let codes: Vec<&str> = shl_gateway::error::ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .collect();
    let config = ProptestConfig {
        cases,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let started = std::time::Instant::now();
    let sent = std::cell::Cell::new(0u32);
    let outcome = runner.run(&front_door_request(), |request| {
        if started.elapsed() > budget {
            return Ok(());
        }
        sent.set(sent.get() + 1);
        let url = format!("{}/graphql", app.address);
        let (status, body) = runtime.block_on(async {
            let request = match &request {
                FrontDoorRequest::Post { body, json_accept } => app
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(
                        "accept",
                        if *json_accept {
                            "application/json"
                        } else {
                            "application/graphql-response+json"
                        },
                    )
                    .header("authorization", crate::helpers::TOKEN)
                    .body(body.clone()),
                FrontDoorRequest::Get { query, variables } => {
                    let mut params = vec![("query", query.as_str())];
                    if let Some(variables) = variables {
                        params.push(("variables", variables.as_str()));
                    }
                    app.http.get(&url).query(&params)
                }
            };
            let response = request.send().await.expect("the gateway answers");
            let status = response.status();
            (status, response.bytes().await.expect("a whole body"))
        });
        prop_assert!(
            [200, 400, 405, 413, 502, 503, 504].contains(&status.as_u16()),
            "unexpected {status}"
        );
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| TestCaseError::fail(format!("{status}: not JSON: {body:?}")))?;
        let errors = answer.get("errors").and_then(Value::as_array);
        prop_assert!(
            errors.is_some() || answer.get("data").is_some(),
            "neither data nor errors: {answer}"
        );
        for error in errors.into_iter().flatten() {
            let code = error["extensions"]["code"].as_str().unwrap_or_default();
            prop_assert!(codes.contains(&code), "uncoded error: {error}");
            prop_assert!(code != "INTERNAL_SERVER_ERROR", "a bug: {error}");
            prop_assert!(error["message"].is_string(), "{error}");
        }
        Ok(())
    });
    let healthz = runtime.block_on(async {
        app.http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .expect("the gateway still answers")
            .status()
    });
    runtime.block_on(app.stop());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(healthz, 200);
    let sent = sent.get();
    assert!(
        sent >= cases.min(32),
        "only {sent} cases ran within the budget"
    );
}
