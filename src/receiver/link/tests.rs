use serde_json::json;

use super::*;

const NOW: i64 = 1_767_225_600;
const KEY: &str = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";

fn encode(payload: &Value) -> String {
    format!("shlink:/{}", URL_SAFE_NO_PAD.encode(payload.to_string()))
}

fn direct_payload() -> Value {
    json!({
        "url": "https://shl.example.org/v1/health-link/manifests/a8Yl3vFqOKxyz0123456789abcdefghijklmnopqrs",
        "flag": "U",
        "key": KEY,
        "exp": NOW + 600,
        "label": "For my new doctor",
    })
}

fn checked(payload: &Value, profile: Profile) -> Result<LinkPayload, PayloadError> {
    check(decode(&encode(payload)).expect("decodes"), profile, NOW)
}

fn violations(payload: &Value, profile: Profile) -> Vec<String> {
    checked(payload, profile)
        .map(|_| ())
        .expect_err("refused")
        .violations
}

#[test]
fn bare_and_viewer_prefixed_links_decode_to_the_same_payload() {
    let bare = encode(&direct_payload());
    let prefixed = format!("https://viewer.example.org/app/viewer.html#{bare}");

    let from_bare = decode(&bare).expect("bare");
    let from_prefixed = decode(&format!("  {prefixed}\n")).expect("prefixed");

    assert_eq!(from_bare.form, LinkForm::Bare);
    assert_eq!(
        from_prefixed.form,
        LinkForm::ViewerPrefixed {
            viewer: "https://viewer.example.org".to_owned()
        },
        "the viewer's origin only"
    );
    assert_eq!(from_bare.fields, from_prefixed.fields);
    assert_eq!(from_bare.encoded_len, bare.len() - "shlink:/".len());
}

#[test]
fn base64url_with_dash_and_underscore_decodes() {
    // Plain-ASCII JSON never encodes to '-' or '_'; multi-byte characters do, which is where
    // decoders that use standard base64 break.
    const CHARACTERS: [&str; 10] = ["ÿ", "¿", "ï", "ø", "þ", "€", "—", "🧪", "ã", "û"];
    let labels = (0..3).flat_map(|pad| {
        CHARACTERS.iter().flat_map(move |first| {
            CHARACTERS
                .iter()
                .map(move |second| format!("{}{first}{second} notes", "x".repeat(pad)))
        })
    });
    let payload = labels
        .map(|label| {
            let mut payload = direct_payload();
            payload["label"] = json!(label);
            payload
        })
        .find(|payload| {
            let encoded = encode(payload);
            encoded.contains('-') && encoded.contains('_')
        })
        .expect("some label encodes with both");

    let decoded = decode(&encode(&payload)).expect("decodes");

    assert_eq!(Value::Object(decoded.fields), payload);
}

#[test]
fn what_is_not_a_link_fails_to_decode_with_the_reason() {
    let payload = URL_SAFE_NO_PAD.encode(direct_payload().to_string());
    let padded = format!(
        "shlink:/{}",
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"url":"x"}"#)
    );
    // Standard base64's alphabet: '+' and '/' where base64url has '-' and '_'.
    let standard = "shlink:/eyJh+/8";
    for (input, expected) in [
        ("", DecodeError::NoShlink),
        ("hello", DecodeError::NoShlink),
        (
            "https://viewer.example.org/#somethingelse",
            DecodeError::NoShlink,
        ),
        (
            &format!("ftp://viewer.example.org/#shlink:/{payload}") as &str,
            DecodeError::NoShlink,
        ),
        (&padded, DecodeError::NotBase64url),
        (standard, DecodeError::NotBase64url),
        ("shlink:/eyJ1cmwi*", DecodeError::BadBase64url),
        (
            "shlink:/eyJ1cmwiOiJodHRwczovL2V4YW1wbGUuY29t",
            DecodeError::NotJson,
        ),
        (
            &format!("shlink:/{}", URL_SAFE_NO_PAD.encode("[1,2]")),
            DecodeError::NotObject,
        ),
        (
            &format!("shlink:/{}", "A".repeat(MAX_LINK_LEN)),
            DecodeError::TooLong,
        ),
    ] {
        assert_eq!(decode(input).map(|_| ()), Err(expected), "{input:.60}");
    }
}

#[test]
fn a_direct_link_meets_both_profiles() {
    for profile in [Profile::Shl, Profile::Ktc] {
        let payload = checked(&direct_payload(), profile).expect("valid");
        assert_eq!(payload.flags.to_string(), "U");
        assert!(payload.flags.direct);
        assert_eq!(payload.exp, Some(NOW + 600));
        assert_eq!(payload.label_chars, Some(17));
        assert_eq!(payload.url.host_str(), Some("shl.example.org"));
        assert_eq!(payload.key.to_base64url(), KEY);
        assert!(payload.warnings.is_empty());
    }
}

#[test]
fn a_passcode_link_without_exp_is_plain_shl_but_not_kill_the_clipboard() {
    let passcode_link = json!({"url": "https://shl.example.org/m/abc", "flag": "LP", "key": KEY});
    let payload = checked(&passcode_link, Profile::Shl).expect("valid SHL");
    assert!(payload.flags.passcode && payload.flags.long_term && !payload.flags.direct);
    assert_eq!(
        payload.warnings,
        [
            "a Kill the Clipboard receiver would refuse this link: Kill the Clipboard requires \
             flag exactly \"U\" (found \"LP\"); Kill the Clipboard requires exp"
        ],
        "what an EHR will say is worth knowing"
    );

    assert_eq!(
        violations(&passcode_link, Profile::Ktc),
        [
            r#"Kill the Clipboard requires flag exactly "U" (found "LP")"#,
            "Kill the Clipboard requires exp",
        ],
        "every broken rule at once"
    );
}

#[test]
fn kill_the_clipboard_refuses_an_empty_or_missing_flag() {
    let mut empty = direct_payload();
    empty["flag"] = json!("");
    assert_eq!(
        violations(&empty, Profile::Ktc),
        [r#"Kill the Clipboard requires flag exactly "U" (found "")"#]
    );
    let mut missing = direct_payload();
    missing.as_object_mut().expect("object").remove("flag");
    assert_eq!(
        violations(&missing, Profile::Ktc),
        [r#"Kill the Clipboard requires flag exactly "U" (found none)"#]
    );
    assert!(checked(&missing, Profile::Shl).is_ok(), "a manifest link");
}

#[test]
fn the_base_rules_hold_for_every_profile() {
    let with = |field: &str, value: Value| {
        let mut payload = direct_payload();
        payload[field] = value;
        payload
    };
    let long_url = format!("https://shl.example.org/{}", "a".repeat(110));
    for (payload, expected) in [
        (
            with("flag", json!("PU")),
            "flags U and P cannot go together",
        ),
        (
            with("flag", json!("PL")),
            r#"flag "PL" must list distinct letters in alphabetical order"#,
        ),
        (
            with("flag", json!("UU")),
            r#"flag "UU" must list distinct letters in alphabetical order"#,
        ),
        (with("flag", json!(1)), "flag must be a string"),
        (
            with("url", json!(long_url)),
            "url is 134 characters, more than 128",
        ),
        (
            with("url", json!("ftp://shl.example.org/x")),
            "url must be an https URL",
        ),
        (
            with("url", json!("/relative")),
            "url is not an absolute URL",
        ),
        (with("url", json!(null)), "url must be a string"),
        (
            with("key", json!(&KEY[1..])),
            "key must be 43 base64url characters (32 bytes)",
        ),
        (with("key", json!(7)), "key must be a string"),
        (
            with("label", json!("é".repeat(81))),
            "label is 81 characters, more than 80",
        ),
        (with("label", json!(["x"])), "label must be a string"),
        (
            with("exp", json!((NOW + 600) * 1000)),
            "exp 1767226200000 looks like milliseconds: SHL exp is in seconds",
        ),
        (
            with("exp", json!(NOW)),
            "the link expired at 2026-01-01T00:00:00Z",
        ),
        (
            with("exp", json!(1.5e9)),
            "exp must be whole seconds since the epoch",
        ),
        (
            with("v", json!(2)),
            "v 2 is not a version this receiver knows (1)",
        ),
        (with("v", json!("1")), "v must be an integer"),
    ] {
        assert_eq!(violations(&payload, Profile::Shl), [expected], "{payload}");
        // Kill the Clipboard adds its own rules (flag exactly U) to the base ones.
        assert!(
            violations(&payload, Profile::Ktc).contains(&expected.to_owned()),
            "{payload}"
        );
    }
    let mut keyless = direct_payload();
    keyless.as_object_mut().expect("object").remove("key");
    assert_eq!(violations(&keyless, Profile::Shl), ["key is missing"]);
}

#[test]
fn limits_count_characters_not_bytes() {
    let mut payload = direct_payload();
    payload["label"] = json!("é".repeat(80));
    assert_eq!(
        checked(&payload, Profile::Ktc).expect("valid").label_chars,
        Some(80)
    );
}

#[test]
fn what_is_unusual_but_allowed_is_a_warning() {
    let mut payload = direct_payload();
    payload["flag"] = json!("LUX");
    payload["url"] = json!("http://127.0.0.1:8080/m/abc");
    payload["_extension"] = json!({"anything": true});
    payload["v"] = json!(1);

    let payload = checked(&payload, Profile::Shl).expect("valid");

    assert_eq!(
        payload.warnings,
        [
            "url is plain http: receivers fetch over https only",
            "unknown flag letter 'X' ignored",
            r#"a Kill the Clipboard receiver would refuse this link: Kill the Clipboard requires flag exactly "U" (found "LUX")"#,
        ]
    );
    assert_eq!(payload.version, Some(1));
}

#[test]
fn debug_output_holds_neither_key_nor_url_path_nor_label() {
    let link = encode(&direct_payload());
    let decoded = decode(&link).expect("decodes");
    let decoded_debug = format!("{decoded:?}");
    let payload = check(decoded, Profile::Ktc, NOW).expect("valid");
    for debug in [decoded_debug, format!("{payload:?}")] {
        assert!(!debug.contains(KEY), "{debug}");
        assert!(!debug.contains("a8Yl3vFqOKxyz"), "{debug}");
        assert!(!debug.contains("new doctor"), "{debug}");
    }
}
