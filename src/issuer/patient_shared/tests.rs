use serde_json::{Value, json};

use super::*;

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
    PatientRecord::from_bundle(
        &json!({"resourceType": "Bundle", "type": "collection", "entry": entries}),
    )
    .expect("a valid record")
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

    let bundle = build_patient_shared_bundle(&record, &options(&[])).expect("a bundle");

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
    )
    .expect("a bundle");

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

    let bundle = build_patient_shared_bundle(&record, &options(&[])).expect("a bundle");

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

    let bundle = build_patient_shared_bundle(&record, &options(&[])).expect("a bundle");

    assert_eq!(resource_types(&bundle), ["Patient", "Observation"]);
    assert!(!bundle.to_string().contains("Retracted"));
}

#[test]
fn nothing_but_the_patient_is_no_bundle() {
    let record = record(vec![condition("c1")]);

    assert_eq!(
        build_patient_shared_bundle(&record, &options(&[ResourceType::Immunization])),
        Err(NothingToShare)
    );
    assert_eq!(
        build_patient_shared_bundle(&record, &options(&[ResourceType::Patient])),
        Err(NothingToShare)
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_a_new_id_new_resource_ids() {
    let record = record(vec![condition("c1")]);

    let first = build_patient_shared_bundle(&record, &options(&[])).expect("a bundle");
    let again = build_patient_shared_bundle(&record, &options(&[])).expect("a bundle");
    let other = build_patient_shared_bundle(
        &record,
        &SharedBundleOptions {
            bundle_id: "5a0f9e8d-7c6b-4a3e-8d2c-1b0a9f8e7d6c",
            ..options(&[])
        },
    )
    .expect("a bundle");

    assert_eq!(first.to_string(), again.to_string());
    assert_ne!(first["entry"][1]["fullUrl"], other["entry"][1]["fullUrl"]);
    assert!(
        !first.to_string().contains("\"c1\""),
        "the stored id stays home"
    );
}
