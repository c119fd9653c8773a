//! Direct links judged as a Kill the Clipboard receiver judges them (CMS "Patient-Shared Health
//! Documents via SMART Health Links"): the payload's rules, retrieval with `?recipient=`,
//! decryption, the PatientSharedBundle's rules, and the app attestation's shape when there is one
//! (`attestation.rs` verifies its signature against the gateway's JWKS).
//!
//! The checks share no code with the gateway: the payload is decoded, the JWE decrypted with the
//! `aes-gcm` crate directly, and the Bundle read as plain JSON, so a mistake in the builder cannot
//! hide in a helper it shares with its test.

use std::collections::HashSet;

use aes_gcm::aead::Nonce;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::embedded::create_link_unreceived;
use crate::helpers::*;

/// Section 1 of the profile: what a receiver checks before it fetches.
fn check_payload(payload: &Value) {
    assert_eq!(payload["flag"], "U", "flag is exactly U: {payload}");
    let exp = payload["exp"].as_i64().expect("exp is required");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(exp > now, "not expired");
    let key = payload["key"].as_str().expect("key");
    assert_eq!(key.len(), 43, "key is 43 base64url characters");
    assert_eq!(URL_SAFE_NO_PAD.decode(key).expect("base64url").len(), 32);
    let url = payload["url"].as_str().expect("url");
    assert!(url.len() <= 128, "url at most 128 characters");
    if let Some(label) = payload.get("label") {
        assert!(label.as_str().expect("label text").chars().count() <= 80);
    }
    assert!(payload.get("passcode").is_none());
}

/// `GET {url}?recipient=`: the compact JWE, as a browser on another origin may fetch it.
pub(crate) async fn fetch(app: &TestApp, payload: &Value) -> String {
    let response = app
        .http
        .get(payload["url"].as_str().expect("url"))
        .query(&[("recipient", CONFORMANCE_RECIPIENT)])
        .header("origin", "https://reader.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jose");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    response.text().await.expect("body")
}

/// `dir` + `A256GCM`, `cty: application/fhir+json`, not compressed; decrypted here by hand.
pub(crate) fn decrypt(payload: &Value, jwe: &str) -> Value {
    let parts: Vec<&str> = jwe.split('.').collect();
    assert_eq!(parts.len(), 5, "compact JWE");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header")).expect("json");
    assert_eq!(header["alg"], "dir");
    assert_eq!(header["enc"], "A256GCM");
    assert_eq!(header["cty"], "application/fhir+json");
    assert!(
        header.get("zip").is_none(),
        "receivers without inflate exist"
    );
    assert!(parts[1].is_empty(), "no encrypted key with dir");
    let key = URL_SAFE_NO_PAD
        .decode(payload["key"].as_str().expect("key"))
        .expect("key");
    let iv: [u8; 12] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("iv")
        .try_into()
        .expect("a 96-bit IV");
    let tag: [u8; 16] = URL_SAFE_NO_PAD
        .decode(parts[4])
        .expect("tag")
        .try_into()
        .expect("a 128-bit tag");
    let mut plaintext = URL_SAFE_NO_PAD.decode(parts[3]).expect("ciphertext");
    Aes256Gcm::new_from_slice(&key)
        .expect("a 256-bit key")
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(iv),
            parts[0].as_bytes(),
            plaintext.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .expect("decrypts");
    serde_json::from_slice(&plaintext).expect("a JSON Bundle")
}

fn collect_references<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
    match value {
        Value::Object(fields) => {
            if let Some(reference) = fields.get("reference").and_then(Value::as_str) {
                found.push(reference);
            }
            fields
                .values()
                .for_each(|child| collect_references(child, found));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|child| collect_references(child, found)),
        _ => {}
    }
}

/// Section 2: the PatientSharedBundle.
fn check_bundle(bundle: &Value) {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection", "a document is rejected");
    assert!(
        bundle["timestamp"].as_str().is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        }),
        "timestamp required"
    );
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(
        entries.len() >= 2,
        "a Patient and at least one content entry"
    );
    let patients: Vec<&Value> = entries
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["resourceType"] == "Patient")
        .collect();
    assert_eq!(patients.len(), 1, "exactly one Patient");
    let patient = patients[0];
    assert!(
        patient["name"]
            .as_array()
            .is_some_and(|names| !names.is_empty())
    );
    assert!(patient["birthDate"].is_string());
    assert!(patient["gender"].is_string());

    let mut full_urls = HashSet::new();
    for entry in entries {
        let full_url = entry["fullUrl"].as_str().expect("fullUrl");
        let uuid = full_url
            .strip_prefix("urn:uuid:")
            .expect("urn:uuid fullUrl");
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{full_url}");
        assert!(full_urls.insert(full_url), "fullUrls are unique");
        let resource = &entry["resource"];
        assert_ne!(resource["resourceType"], "Composition");
        assert!(
            resource["meta"].get("profile").is_none(),
            "no meta.profile: {resource}"
        );
        check_contained_references(resource);
    }
    if let Some(extensions) = bundle["meta"].get("extension") {
        for extension in extensions.as_array().expect("an array of extensions") {
            if extension["url"] == APP_ATTESTATION {
                check_attestation_shape(extension);
            }
        }
    }
    let mut references = Vec::new();
    collect_references(bundle, &mut references);
    // Every reference names an entry, a contained resource or an absolute URL: a relative
    // `Type/id` (or an unknown urn) would point at a server the receiver cannot reach.
    for reference in references {
        let resolvable = full_urls.contains(reference)
            || reference.starts_with('#')
            || reference.starts_with("http://")
            || reference.starts_with("https://");
        assert!(
            resolvable,
            "a reference no receiver can resolve: {reference}"
        );
    }
    let patient_url = entries
        .iter()
        .find(|entry| entry["resource"]["resourceType"] == "Patient")
        .map(|entry| entry["fullUrl"].clone())
        .expect("the Patient");
    for entry in entries {
        if entry["resource"]["resourceType"] == "DocumentReference" {
            check_document(&entry["resource"], &patient_url, bundle);
        }
    }
}

/// A `#id` reference names a resource in the `contained` of the resource it sits in (`#` alone
/// names that resource itself), as FHIR resolves it.
fn check_contained_references(resource: &Value) {
    let mut references = Vec::new();
    collect_references(resource, &mut references);
    for reference in references {
        let Some(id) = reference.strip_prefix('#') else {
            continue;
        };
        let found = id.is_empty()
            || contained(resource)
                .iter()
                .any(|inner| inner["id"].as_str() == Some(id));
        assert!(found, "{reference} names no contained resource: {resource}");
    }
}

fn contained(resource: &Value) -> &[Value] {
    resource["contained"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) const PATIENT_SUMMARY: &str = "60591-5";
const PATIENT_NOTE: &str = "51855-5";

/// Section 3: a PatientSharedDocumentReference, and its PDF read back by an independent reader.
fn check_document(document: &Value, patient_url: &Value, bundle: &Value) {
    assert_eq!(document["status"], "current");
    let security = document["meta"]["security"]
        .as_array()
        .expect("meta.security");
    assert!(security.iter().any(|coding| coding["code"] == "PATAST"
        && coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"));
    let code = document["type"]["coding"]
        .as_array()
        .expect("type")
        .iter()
        .find(|coding| coding["system"] == "http://loinc.org")
        .and_then(|coding| coding["code"].as_str())
        .expect("a LOINC type");
    assert!([PATIENT_SUMMARY, PATIENT_NOTE].contains(&code), "{code}");
    assert!(
        document["category"]
            .as_array()
            .expect("category")
            .iter()
            .any(|category| {
                category["coding"].as_array().is_some_and(|codings| {
                    codings.iter().any(|coding| {
                        coding["system"]
                            == "https://cms.gov/fhir/CodeSystem/patient-shared-category"
                            && coding["code"] == "patient-shared"
                    })
                })
            }),
        "category patient-shared"
    );
    assert_eq!(document["subject"]["reference"], *patient_url);
    assert_eq!(document["author"][0]["reference"], *patient_url);
    assert!(document["date"].is_string());
    let attachment = &document["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "application/pdf");
    assert!(attachment.get("url").is_none(), "inline data, never a url");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(attachment["data"].as_str().expect("data"))
        .expect("standard base64");
    let text = pdf_text(&pdf);
    if let Some(narrative) = document.get("text") {
        // FHIR's narrative rules: a known status and one XHTML div; and for the story, the same
        // words as the PDF (markup and line breaks aside).
        assert!(
            ["generated", "extensions", "additional", "empty"]
                .contains(&narrative["status"].as_str().expect("status"))
        );
        let div = narrative["div"].as_str().expect("div");
        assert!(div.starts_with(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#));
        assert!(div.ends_with("</div>"));
        let words = div
            .replace("<br/>", " ")
            .replace("</p>", " ")
            .replace(['<', '>'], " ");
        for word in words
            .split_whitespace()
            .filter(|w| !w.contains(['=', '/', '&']))
        {
            if word != "div" && word != "p" && code == PATIENT_NOTE {
                assert!(
                    text.contains(word),
                    "{word:?} of the narrative is not in the PDF"
                );
            }
        }
    }
    if code == PATIENT_SUMMARY {
        // Every resource but DocumentReferences, in words an EHR can file.
        for entry in bundle["entry"].as_array().expect("entries") {
            let resource = &entry["resource"];
            if resource["resourceType"] == "DocumentReference" {
                continue;
            }
            let names = names_of(resource);
            assert!(!names.is_empty(), "nothing to look for: {resource}");
            for name in names {
                assert!(
                    text.contains(&name),
                    "{name:?} missing from the summary PDF"
                );
            }
        }
    }
}

/// The PDF's text as `lopdf` extracts it, whitespace runs made one space.
pub(crate) fn pdf_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"));
    let document = lopdf::Document::load_mem(pdf).expect("the PDF parses");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    let text = document.extract_text(&pages).expect("its text extracts");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a reader of the summary must find for a resource: the patient's name, or the words of
/// its main concept; for a statement that names its medicine by a contained Medication, that
/// Medication's.
fn names_of(resource: &Value) -> Vec<String> {
    if resource["resourceType"] == "Patient" {
        return resource["name"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(human_name)
            .collect();
    }
    for field in ["code", "vaccineCode", "medicationCodeableConcept", "type"] {
        let names = concept_names(&resource[field]);
        if !names.is_empty() {
            return names;
        }
    }
    if let Some(id) = resource["medicationReference"]["reference"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
        && let Some(medication) = contained(resource).iter().find(|inner| inner["id"] == id)
    {
        return concept_names(&medication["code"]);
    }
    resource["title"].as_str().map(words).into_iter().collect()
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A HumanName as written (`text`), else its given names and family name.
fn human_name(name: &Value) -> Option<String> {
    if let Some(text) = name["text"].as_str() {
        return Some(words(text));
    }
    let parts: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&name["family"]))
        .filter_map(Value::as_str)
        .collect();
    (!parts.is_empty()).then(|| words(&parts.join(" ")))
}

/// A CodeableConcept's `text`, else every coding's display, else (no display at all) their codes.
fn concept_names(concept: &Value) -> Vec<String> {
    if let Some(text) = concept["text"].as_str() {
        return vec![words(text)];
    }
    let codings: Vec<&Value> = concept["coding"].as_array().into_iter().flatten().collect();
    let displays: Vec<String> = codings
        .iter()
        .filter_map(|coding| coding["display"].as_str())
        .map(words)
        .collect();
    if !displays.is_empty() {
        return displays;
    }
    codings
        .iter()
        .filter_map(|coding| coding["code"].as_str())
        .map(words)
        .collect()
}

/// `Bundle.meta.extension[].url` of the app attestation.
pub(crate) const APP_ATTESTATION: &str = "https://cms.gov/fhir/StructureDefinition/app-attestation";

/// Section 4: a compact JWS, `alg` ES256 with a `kid`, claims exactly `iss` (https, or http on
/// loopback in these tests), `iat` in seconds and `jti` a UUID; no PHI, no `exp`.
fn check_attestation_shape(extension: &Value) {
    let fields = extension.as_object().expect("an extension object");
    assert_eq!(fields.len(), 2, "url and valueString: {extension}");
    let jwt = extension["valueString"].as_str().expect("valueString");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let part = |index: usize| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[index]).expect("base64url"))
            .expect("JSON")
    };
    let header = part(0);
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    let claims = part(1);
    let mut names: Vec<&str> = claims
        .as_object()
        .expect("claims")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["iat", "iss", "jti"], "exactly these claims");
    let iss = claims["iss"].as_str().expect("iss");
    assert!(
        iss.starts_with("https://") || iss.starts_with("http://127.0.0.1:"),
        "{iss}"
    );
    let iat = claims["iat"].as_i64().expect("iat in seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - 300..=now + 5).contains(&iat), "iat {iat}, now {now}");
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().expect("jti")).is_ok());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).expect("signature").len(),
        64,
        "ES256 is r || s"
    );
}

/// The recipient a conformance fetch names, so a test can tell its access from its own.
pub(crate) const CONFORMANCE_RECIPIENT: &str = "Springfield Clinic";

/// Everything a receiver checks on a direct link, end to end; returns the Bundle.
pub(crate) async fn receive_direct_link(app: &TestApp, payload: &Value) -> Value {
    check_payload(payload);
    let jwe = fetch(app, payload).await;
    let bundle = decrypt(payload, &jwe);
    check_bundle(&bundle);
    bundle
}

/// Creates a direct link from `input` and receives it; returns the Bundle.
pub(crate) async fn receive(app: &TestApp, input: Value) -> Value {
    let (_, payload) = create_link_unreceived(app, input).await;
    receive_direct_link(app, &payload).await
}

#[tokio::test]
async fn direct_links_pass_a_kill_the_clipboard_receivers_checks() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let everything = receive(&app, json!({"mode": "DIRECT"})).await;
    let labelled = receive(
        &app,
        json!({"mode": "DIRECT", "label": "For my new doctor",
               "resources": [{"resourceType": "Immunization"}]}),
    )
    .await;

    let types = |bundle: &Value| -> HashSet<String> {
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| {
                entry["resource"]["resourceType"]
                    .as_str()
                    .expect("type")
                    .to_owned()
            })
            .collect()
    };
    // The demo Coverage carries what the CARIN Digital Insurance Card profile must support.
    let coverage = everything["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|entry| entry["resource"]["resourceType"] == "Coverage")
        .map(|entry| &entry["resource"])
        .expect("a Coverage");
    assert_eq!(
        coverage["beneficiary"]["reference"], everything["entry"][0]["fullUrl"],
        "the card's beneficiary is the Bundle's Patient"
    );
    assert!(
        coverage["identifier"].as_array().is_some_and(|ids| ids
            .iter()
            .any(|id| { id["type"]["coding"][0]["code"] == "MB" && id["value"].is_string() })),
        "a member id: {coverage}"
    );
    for field in [
        "status",
        "type",
        "subscriberId",
        "relationship",
        "period",
        "payor",
    ] {
        assert!(!coverage[field].is_null(), "{field}: {coverage}");
    }
    let classes: Vec<&str> = coverage["class"]
        .as_array()
        .expect("class")
        .iter()
        .filter_map(|class| class["type"]["coding"][0]["code"].as_str())
        .collect();
    assert_eq!(classes, ["group", "plan"]);
    let shared = types(&everything);
    // The profile's persistence core, and the rest of the demo record.
    for expected in [
        "Patient",
        "Condition",
        "AllergyIntolerance",
        "Immunization",
        "MedicationRequest",
        "MedicationStatement",
        "Coverage",
    ] {
        assert!(shared.contains(expected), "{expected} in {shared:?}");
    }
    assert_eq!(
        types(&labelled),
        HashSet::from([
            "Patient".to_owned(),
            "Immunization".to_owned(),
            "DocumentReference".to_owned()
        ]),
        "the selected type and the rendered summary"
    );
}

pub(crate) fn documents(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["resourceType"] == "DocumentReference")
        .collect()
}

pub(crate) fn loinc(document: &Value) -> &str {
    document["type"]["coding"][0]["code"]
        .as_str()
        .expect("a code")
}

/// The LOINC codes of the Bundle's documents, in order.
pub(crate) fn document_codes(bundle: &Value) -> Vec<&str> {
    documents(bundle).into_iter().map(loinc).collect()
}

#[tokio::test]
async fn the_rendered_summary_and_the_story_travel_as_pdfs() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let story = "Πρώτα: I run marathons, and my knee has hurt since May.\n\n\
                 Я хочу вернуться к бегу. Please ask me before changing my inhaler.";

    let with_both = receive(&app, json!({"mode": "DIRECT", "patientStory": story})).await;
    let summary_only = receive(&app, json!({"mode": "DIRECT"})).await;
    let data_only = receive(&app, json!({"mode": "DIRECT", "renderedSummary": false})).await;
    let just_the_summary = receive(
        &app,
        json!({"mode": "DIRECT", "resources": [{"resourceType": "Patient"}]}),
    )
    .await;

    assert_eq!(document_codes(&with_both), [PATIENT_SUMMARY, PATIENT_NOTE]);
    assert_eq!(document_codes(&summary_only), [PATIENT_SUMMARY]);
    assert!(document_codes(&data_only).is_empty());
    assert_eq!(
        document_codes(&just_the_summary),
        [PATIENT_SUMMARY],
        "the summary is the content entry"
    );
    let note = documents(&with_both)
        .into_iter()
        .find(|document| loinc(document) == PATIENT_NOTE)
        .expect("the story");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(
            note["content"][0]["attachment"]["data"]
                .as_str()
                .expect("data"),
        )
        .expect("base64");
    let text = pdf_text(&pdf);
    for paragraph in [
        "Πρώτα: I run marathons, and my knee has hurt since May.",
        "Я хочу вернуться к бегу. Please ask me before changing my inhaler.",
    ] {
        assert!(text.contains(paragraph), "{paragraph:?} in {text:?}");
    }
}

#[tokio::test]
async fn a_direct_link_with_nothing_to_share_is_refused_before_it_exists() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;

    let (status, body) = app
        .graphql(
            "mutation($input: CreateHealthLinkInput!) { createHealthLink(input: $input) { id } }",
            json!({"input": {"mode": "DIRECT", "renderedSummary": false,
                             "resources": [{"resourceType": "Patient"}]}}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;

    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert!(body["data"].is_null() || body["data"]["createHealthLink"].is_null());
}
