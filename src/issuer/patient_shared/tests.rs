use serde_json::{Value, json};

use super::*;
use crate::issuer::fhir::Unimportable;

const BUNDLE_ID: &str = "0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908";
const TIMESTAMP: &str = "2026-12-06T10:00:00.000Z";

fn options(selected: &[ResourceType]) -> SharedBundleOptions<'_> {
    SharedBundleOptions {
        selected,
        bundle_id: BUNDLE_ID,
        timestamp: TIMESTAMP,
    }
}

fn record(resources: Vec<Value>) -> PatientRecord {
    let mut entries = vec![json!({"resource": {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"profile": ["http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">imported</div>"},
        "name": [{"family": "Παπαδοπούλου", "given": ["Ελένη"]}],
        "gender": "female",
        "birthDate": "1980-02-29"
    }})];
    entries.extend(
        resources
            .into_iter()
            .map(|resource| json!({ "resource": resource })),
    );
    PatientRecord::import(
        &json!({"resourceType": "Bundle", "type": "collection", "entry": entries}),
        Unimportable::Refuse,
    )
    .expect("a valid record")
    .record
}

fn condition(id: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns"], "lastUpdated": "2026-01-01T00:00:00Z"},
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Asthma"}
    })
}

fn resource_types(bundle: &Value) -> Vec<&str> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["resource"]["resourceType"].as_str().expect("type"))
        .collect()
}

#[test]
fn a_collection_with_the_patient_first_and_no_composition() {
    let record = record(vec![
        condition("c1"),
        json!({"resourceType": "Immunization", "id": "i1", "status": "completed",
               "patient": {"reference": "Patient/p1"}, "vaccineCode": {"text": "Influenza"},
               "occurrenceDateTime": "2025-10-01"}),
    ]);

    let bundle = build_patient_shared_bundle(&record, &options(&[]));

    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle["timestamp"], TIMESTAMP);
    assert_eq!(
        bundle["identifier"]["value"],
        format!("urn:uuid:{BUNDLE_ID}")
    );
    assert_eq!(
        resource_types(&bundle),
        ["Patient", "Condition", "Immunization"]
    );
    for entry in bundle["entry"].as_array().expect("entries") {
        let full_url = entry["fullUrl"].as_str().expect("fullUrl");
        let id = entry["resource"]["id"].as_str().expect("id");
        assert_eq!(full_url, format!("urn:uuid:{id}"));
    }
}

#[test]
fn references_point_at_full_urls_and_withheld_ones_are_removed() {
    let record = record(vec![
        condition("c1"),
        json!({"resourceType": "Procedure", "id": "pr1", "status": "completed",
               "subject": {"reference": "Patient/p1"}, "code": {"text": "Spirometry"},
               "reasonReference": [{"reference": "Condition/c1", "display": "Asthma"}]}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "subject": {"reference": "Patient/p1"}, "code": {"text": "Peak flow"},
               "partOf": [{"reference": "Procedure/pr1"}]}),
    ]);

    let bundle = build_patient_shared_bundle(
        &record,
        &options(&[ResourceType::Procedure, ResourceType::Observation]),
    );

    assert_eq!(
        resource_types(&bundle),
        ["Patient", "Procedure", "Observation"]
    );
    let patient_url = &bundle["entry"][0]["fullUrl"];
    let procedure = &bundle["entry"][1];
    assert_eq!(procedure["resource"]["subject"]["reference"], *patient_url);
    assert!(
        procedure["resource"].get("reasonReference").is_none(),
        "the withheld Condition is not named: {procedure}"
    );
    assert_eq!(
        bundle["entry"][2]["resource"]["partOf"][0]["reference"],
        procedure["fullUrl"]
    );
    assert!(!bundle.to_string().contains("Asthma"));
}

#[test]
fn no_resource_keeps_a_profile_or_imported_narrative() {
    let mut with_contained = condition("c1");
    with_contained["contained"] = json!([{"resourceType": "Practitioner", "id": "dr",
        "meta": {"profile": ["http://example.org/p"]}, "text": {"status": "generated", "div": "<div/>"}}]);
    let record = record(vec![with_contained]);

    let bundle = build_patient_shared_bundle(&record, &options(&[]));

    let text = bundle.to_string();
    assert!(!text.contains("\"profile\""), "{text}");
    assert!(!text.contains("imported"), "{text}");
    assert!(
        bundle["entry"][0]["resource"].get("meta").is_none(),
        "a meta left empty is removed"
    );
    assert_eq!(
        bundle["entry"][1]["resource"]["meta"]["lastUpdated"], "2026-01-01T00:00:00Z",
        "the rest of meta stays"
    );
    assert!(
        bundle["entry"][1]["resource"]["contained"][0]
            .get("text")
            .is_none()
    );
}

#[test]
fn every_observation_is_shared_but_retracted_resources_are_not() {
    let record = record(vec![
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "category": [{"coding": [{"code": "social-history"}]}],
               "code": {"text": "Tobacco use"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "entered-in-error",
               "code": {"text": "Retracted"}}),
        json!({"resourceType": "Condition", "id": "c2",
               "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
               "code": {"text": "Retracted too"}}),
    ]);

    let bundle = build_patient_shared_bundle(&record, &options(&[]));

    assert_eq!(resource_types(&bundle), ["Patient", "Observation"]);
    assert!(!bundle.to_string().contains("Retracted"));
}

#[test]
fn nothing_but_the_patient_has_no_content_until_a_document_is_added() {
    let record = record(vec![condition("c1")]);

    for selected in [[ResourceType::Immunization], [ResourceType::Patient]] {
        let mut bundle = build_patient_shared_bundle(&record, &options(&selected));
        assert_eq!(resource_types(&bundle), ["Patient"]);
        assert!(!has_content(&bundle));
        add_document(
            &mut bundle,
            SharedDocument::PatientStory { text: "Hi" },
            b"%PDF-1.7",
            TIMESTAMP,
        );
        assert!(has_content(&bundle));
    }
    assert!(has_content(&build_patient_shared_bundle(
        &record,
        &options(&[])
    )));
}

#[test]
fn a_shared_pdf_is_a_patient_shared_document_reference() {
    let record = record(vec![condition("c1")]);
    let mut bundle = build_patient_shared_bundle(&record, &options(&[]));

    add_document(
        &mut bundle,
        SharedDocument::RenderedSummary,
        b"%PDF-summary",
        TIMESTAMP,
    );
    add_document(
        &mut bundle,
        SharedDocument::PatientStory { text: "Hi" },
        b"%PDF-story",
        TIMESTAMP,
    );

    let patient_url = bundle["entry"][0]["fullUrl"].clone();
    let documents: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["resource"]["resourceType"] == "DocumentReference")
        .collect();
    assert_eq!(documents.len(), 2);
    for (entry, (code, pdf)) in documents
        .iter()
        .zip([("60591-5", "%PDF-summary"), ("51855-5", "%PDF-story")])
    {
        let document = &entry["resource"];
        assert_eq!(
            entry["fullUrl"],
            format!("urn:uuid:{}", document["id"].as_str().expect("id"))
        );
        assert_eq!(document["status"], "current");
        assert_eq!(document["type"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(document["type"]["coding"][0]["code"], code);
        assert_eq!(document["meta"]["security"][0]["code"], "PATAST");
        assert_eq!(
            document["category"][0]["coding"][0],
            json!({"system": "https://cms.gov/fhir/CodeSystem/patient-shared-category",
                   "code": "patient-shared", "display": "Patient Shared"})
        );
        assert_eq!(document["subject"]["reference"], patient_url);
        assert_eq!(document["author"][0]["reference"], patient_url);
        assert_eq!(document["date"], TIMESTAMP);
        let attachment = &document["content"][0]["attachment"];
        assert_eq!(attachment["contentType"], "application/pdf");
        assert!(attachment.get("url").is_none(), "inline, never a url");
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .decode(attachment["data"].as_str().expect("data"))
            .expect("standard base64");
        assert_eq!(data, pdf.as_bytes());
    }
    assert_ne!(documents[0]["fullUrl"], documents[1]["fullUrl"]);
    assert!(
        documents[0]["resource"].get("text").is_none(),
        "the summary has no narrative"
    );
}

#[test]
fn the_story_is_also_the_document_references_narrative_escaped_paragraph_by_paragraph() {
    let record = record(vec![condition("c1")]);
    let mut bundle = build_patient_shared_bundle(&record, &options(&[]));
    let text = "I run <5 km & feel \"fine\".\nMostly.\n\n\n\u{FFFF}Второй абзац.\n";

    add_document(
        &mut bundle,
        SharedDocument::PatientStory { text },
        b"%PDF",
        TIMESTAMP,
    );

    let narrative = &bundle["entry"][2]["resource"]["text"];
    assert_eq!(narrative["status"], "additional");
    assert_eq!(
        narrative["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>I run &lt;5 km &amp; feel \"fine\".<br/>\
         Mostly.</p><p>Второй абзац.</p></div>"
    );
    assert_eq!(
        format!("{:?}", SharedDocument::PatientStory { text }),
        "PatientStory([REDACTED])"
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_a_new_id_new_resource_ids() {
    let record = record(vec![condition("c1")]);

    let first = build_patient_shared_bundle(&record, &options(&[]));
    let again = build_patient_shared_bundle(&record, &options(&[]));
    let other = build_patient_shared_bundle(
        &record,
        &SharedBundleOptions {
            bundle_id: "5a0f9e8d-7c6b-4a3e-8d2c-1b0a9f8e7d6c",
            ..options(&[])
        },
    );

    assert_eq!(first.to_string(), again.to_string());
    assert_ne!(first["entry"][1]["fullUrl"], other["entry"][1]["fullUrl"]);
    assert!(
        !first.to_string().contains("\"c1\""),
        "the stored id stays home"
    );
}

#[test]
fn a_reference_to_what_the_record_does_not_hold_keeps_only_its_description() {
    let mut request = json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1", "display": "Lisinopril 10 mg"},
        "requester": {"reference": "Practitioner/dr"}});
    request["note"] = json!([{"text": "Take with water"}]);
    let record = record(vec![request]);

    let bundle = build_patient_shared_bundle(&record, &options(&[]));

    let shared = &bundle["entry"][1]["resource"];
    assert_eq!(
        shared["medicationReference"],
        json!({"display": "Lisinopril 10 mg"})
    );
    assert!(shared.get("requester").is_none());
    assert_eq!(
        shared["subject"]["reference"],
        bundle["entry"][0]["fullUrl"]
    );
}
