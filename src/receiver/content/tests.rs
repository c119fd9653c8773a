use base64::Engine as _;
use serde_json::json;

use super::*;

const HL7_IPS: &str = include_str!("../../../tests/fixtures/hl7-ips-bundle-01.json");
const PATIENT: &str = "urn:uuid:b5e506f4-e14c-4e27-9543-4b8d1e1f3e2a";

fn pdf() -> String {
    base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7\n%%EOF\n")
}

fn story() -> Value {
    json!({
        "fullUrl": "urn:uuid:c7a2f8e1-3d4b-5c6a-9e8f-0a1b2c3d4e5f",
        "resource": {
            "resourceType": "DocumentReference",
            "meta": {"security": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "PATAST"
            }]},
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "51855-5"}]},
            "category": [{"coding": [{
                "system": "https://cms.gov/fhir/CodeSystem/patient-shared-category",
                "code": "patient-shared"
            }]}],
            "subject": {"reference": PATIENT},
            "author": [{"reference": PATIENT}],
            "date": "2026-01-30T12:00:00Z",
            "content": [{"attachment": {"contentType": "application/pdf", "data": pdf()}}]
        }
    })
}

fn patient_shared_bundle() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": "2026-01-30T12:00:00Z",
        "entry": [
            {"fullUrl": PATIENT, "resource": {
                "resourceType": "Patient", "name": [{"family": "Argonaut"}],
                "birthDate": "1985-03-15", "gender": "female"}},
            story(),
            {"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000001", "resource": {
                "resourceType": "Condition", "subject": {"reference": PATIENT}}},
        ]
    })
}

fn violations(bundle: &Value, profile: Profile) -> Vec<String> {
    check(bundle, None, profile)
        .expect_err("refused")
        .violations
}

/// The one DocumentReference of [`patient_shared_bundle`], to alter.
fn document(bundle: &mut Value) -> &mut Value {
    &mut bundle["entry"][1]["resource"]
}

#[test]
fn a_patient_shared_bundle_passes_and_is_counted() {
    for profile in [Profile::Ktc, Profile::Shl] {
        let summary = check(
            &patient_shared_bundle(),
            Some("application/fhir+json"),
            profile,
        )
        .expect("valid");
        assert_eq!(summary.kind, ContentKind::PatientSharedBundle);
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.documents, ["51855-5"]);
        assert_eq!(
            summary.resource_types,
            BTreeMap::from([
                ("Condition".to_owned(), 1),
                ("DocumentReference".to_owned(), 1),
                ("Patient".to_owned(), 1),
            ])
        );
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }
}

#[test]
fn kill_the_clipboard_rejects_a_document_and_a_lone_patient() {
    let mut document_type = patient_shared_bundle();
    document_type["type"] = json!("document");
    assert_eq!(
        violations(&document_type, Profile::Ktc),
        ["Bundle.type is document (an IPS document): a PatientSharedBundle is a collection"]
    );

    let mut lone = patient_shared_bundle();
    lone["entry"] = json!([lone["entry"][0].clone()]);
    assert_eq!(
        violations(&lone, Profile::Ktc),
        ["Bundle.entry must hold a Patient and at least one content entry (found 1 entries)"]
    );
}

#[test]
fn the_bundle_rules_of_the_profile() {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut bundle = patient_shared_bundle();
        change(&mut bundle);
        bundle
    };
    for (bundle, expected) in [
        (
            with(&|b| {
                b.as_object_mut().expect("object").remove("timestamp");
            }),
            "Bundle.timestamp is missing",
        ),
        (
            with(&|b| b["timestamp"] = json!("2026-01-30")),
            "Bundle.timestamp is not an instant (RFC 3339 with a time zone)",
        ),
        (
            with(&|b| b["entry"][2]["resource"]["resourceType"] = json!("Patient")),
            "the Bundle must hold exactly one Patient (found 2)",
        ),
        (
            with(&|b| b["entry"][2]["fullUrl"] = json!(PATIENT)),
            "entry[2] repeats another entry's fullUrl",
        ),
        (
            with(&|b| {
                b["entry"][2]
                    .as_object_mut()
                    .expect("object")
                    .remove("fullUrl");
            }),
            "entry[2] (Condition) has no fullUrl",
        ),
        (
            with(&|b| b["entry"][2] = json!({"resource": {}})),
            "entry[2] has no resource with a resourceType",
        ),
        (
            with(&|b| b["type"] = json!("searchset")),
            "Bundle.type must be collection (found searchset)",
        ),
    ] {
        assert_eq!(violations(&bundle, Profile::Ktc), [expected], "{expected}");
    }
}

#[test]
fn the_document_reference_rules_of_the_profile() {
    let at = "entry[1] DocumentReference";
    let with = |change: &dyn Fn(&mut Value)| {
        let mut bundle = patient_shared_bundle();
        change(document(&mut bundle));
        bundle
    };
    for (bundle, expected) in [
        (
            with(&|d| d["status"] = json!("superseded")),
            "status must be current",
        ),
        (
            with(&|d| d["type"]["coding"][0]["code"] = json!("34133-9")),
            "type must be LOINC 60591-5 (rendered summary) or 51855-5 (patient's story)",
        ),
        (
            with(&|d| d["category"] = json!([])),
            "category must include patient-shared",
        ),
        (
            with(&|d| d["subject"]["reference"] = json!("urn:uuid:someone-else")),
            "subject must be the Bundle's Patient",
        ),
        (
            with(&|d| d["author"] = json!([{"reference": "Practitioner/1"}])),
            "author must include the Bundle's Patient",
        ),
        (
            with(&|d| {
                d.as_object_mut().expect("object").remove("date");
            }),
            "date is missing",
        ),
        (
            with(&|d| d["content"][0]["attachment"]["contentType"] = json!("text/plain")),
            "content[0]: contentType must be application/pdf",
        ),
        (
            with(&|d| {
                d["content"][0]["attachment"]["url"] = json!("https://files.example/doc.pdf");
            }),
            "content[0]: the PDF must be inline data, not a url",
        ),
        (
            with(&|d| d["content"][0]["attachment"]["data"] = json!("bm90IGEgcGRm")),
            "content[0]: data is not a PDF",
        ),
        (
            with(&|d| d["content"][0]["attachment"]["data"] = json!("%%%")),
            "content[0]: data is not base64",
        ),
        (with(&|d| d["content"] = json!([])), "content is missing"),
    ] {
        let found = violations(&bundle, Profile::Ktc);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(at), "{found:?}");
        assert!(
            found[0].ends_with(expected),
            "{found:?} should end with {expected}"
        );
    }
}

#[test]
fn shoulds_are_warnings() {
    let mut bundle = patient_shared_bundle();
    document(&mut bundle)
        .as_object_mut()
        .expect("object")
        .remove("meta");
    bundle["entry"][0]["resource"]
        .as_object_mut()
        .expect("object")
        .remove("birthDate");
    bundle["entry"][2]["resource"]["meta"] = json!({"profile": ["http://hl7.org/fhir/us/core/x"]});
    bundle["entry"][2]["resource"]["encounter"] = json!({"reference": "Encounter/gone"});
    bundle["entry"][2]["fullUrl"] = json!("https://fhir.example.org/Condition/1");

    let summary = check(&bundle, None, Profile::Ktc).expect("still valid");

    assert_eq!(
        summary.warnings,
        [
            "the Patient SHOULD carry a birth date for matching (birthDate)",
            "entry[1] DocumentReference: meta.security SHOULD include PATAST",
            "entry[2] fullUrl SHOULD be a urn:uuid",
            "1 resources carry meta.profile, which the profile says SHOULD NOT be sent",
            "1 references resolve to no entry of the Bundle (in Condition)",
        ]
    );
}

#[test]
fn the_hl7_ips_example_is_a_valid_ips_document() {
    let bundle: Value = serde_json::from_str(HL7_IPS).expect("JSON");

    let summary = check(&bundle, None, Profile::Shl).expect("valid IPS");

    assert_eq!(summary.kind, ContentKind::IpsDocument);
    assert_eq!(summary.entries, 20);
    assert_eq!(summary.resource_types["Composition"], 1);
    assert!(
        violations(&bundle, Profile::Ktc)
            .iter()
            .any(|violation| violation.starts_with("Bundle.type is document")),
        "Kill the Clipboard wants a collection"
    );
}

#[test]
fn the_ips_rules() {
    let base: Value = serde_json::from_str(HL7_IPS).expect("JSON");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut bundle = base.clone();
        change(&mut bundle);
        bundle
    };
    for (bundle, expected) in [
        (
            with(&|b| {
                b.as_object_mut().expect("object").remove("identifier");
            }),
            "Bundle.identifier is missing",
        ),
        (
            with(&|b| {
                let entries = b["entry"].as_array_mut().expect("entries");
                entries.swap(0, 1);
            }),
            "the first entry must be the Composition",
        ),
        (
            with(&|b| b["entry"][0]["resource"]["subject"]["reference"] = json!("Patient/other")),
            "Composition.subject must be the Bundle's Patient",
        ),
        (
            with(&|b| b["entry"][0]["resource"]["type"]["coding"][0]["code"] = json!("11503-0")),
            "Composition.type must be LOINC 60591-5 (Patient summary Document)",
        ),
        (
            with(&|b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .expect("object")
                    .remove("title");
            }),
            "Composition.title is missing",
        ),
        (
            with(&|b| {
                let sections = b["entry"][0]["resource"]["section"]
                    .as_array_mut()
                    .expect("sections");
                sections.retain(|section| section["code"]["coding"][0]["code"] != "48765-2");
            }),
            "the mandatory section Allergies and intolerances (LOINC 48765-2) is missing",
        ),
        (
            with(&|b| {
                b["entry"][0]["resource"]["section"][0]
                    .as_object_mut()
                    .expect("object")
                    .remove("text");
            }),
            "Composition.section[0] has no narrative (text.div)",
        ),
        (
            with(&|b| {
                b["entry"][0]["resource"]["section"][0]["emptyReason"] =
                    json!({"coding": [{"code": "unavailable"}]});
            }),
            "Composition.section[0] has entries and an emptyReason",
        ),
    ] {
        assert_eq!(violations(&bundle, Profile::Shl), [expected], "{expected}");
    }
}

#[test]
fn what_is_neither_profile_is_refused_for_what_it_is() {
    for (content, content_type, expected) in [
        (json!([]), None, "the content is not a JSON object"),
        (
            json!({"resourceType": "Patient"}),
            None,
            "the content is not a FHIR Bundle",
        ),
        (
            json!({"resourceType": "Bundle", "type": "searchset"}),
            None,
            "Bundle.type searchset is neither document (IPS) nor collection (PatientSharedBundle)",
        ),
        (
            patient_shared_bundle(),
            Some("application/smart-health-card"),
            "content type application/smart-health-card is not one inspected here (application/fhir+json)",
        ),
    ] {
        let error = check(&content, content_type, Profile::Shl).expect_err("refused");
        assert_eq!(error.kind, None);
        assert_eq!(error.violations, [expected]);
    }
}

#[test]
fn a_hostile_bundle_makes_a_bounded_report() {
    let mut bundle = patient_shared_bundle();
    let entries = bundle["entry"].as_array_mut().expect("entries");
    for _ in 0..1_000 {
        entries.push(json!({"resource": {}}));
    }

    let error = check(&bundle, None, Profile::Ktc).expect_err("refused");

    assert_eq!(error.violations.len(), MAX_MESSAGES + 1);
    assert_eq!(error.violations[MAX_MESSAGES], "and 980 more violations");
}

#[test]
fn deeply_nested_resources_are_walked_without_recursion() {
    // Nearly as deep as serde_json parses (128 levels), a dangling reference at the bottom.
    let mut nested = json!({"reference": "Observation/deep"});
    for _ in 0..60 {
        nested = json!({"item": [nested]});
    }
    let mut bundle = patient_shared_bundle();
    bundle["entry"][2]["resource"]["extension"] = nested;
    let text = bundle.to_string();
    let reparsed: Value = serde_json::from_str(&text).expect("within the parser's limit");

    let summary = check(&reparsed, None, Profile::Ktc).expect("valid");

    assert_eq!(
        summary.warnings,
        ["1 references resolve to no entry of the Bundle (in Condition)"]
    );
}
