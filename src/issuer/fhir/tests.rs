use serde_json::json;

use super::*;

/// Stands for health data: no error message may contain it.
const PHI: &str = "Jane Q Sensitive 1961-07-04 HIV";

fn patient(id: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "name": [{ "text": PHI }] })
}

fn condition(id: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "code": { "text": PHI },
        "subject": { "reference": "Patient/p1" }
    })
}

fn bundle(bundle_type: &str, resources: Vec<Value>) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|resource| json!({ "resource": resource }))
        .collect();
    json!({ "resourceType": "Bundle", "type": bundle_type, "entry": entry })
}

fn import_error(bundle: &Value) -> ImportError {
    let error = PatientRecord::from_bundle(bundle).expect_err("the bundle must be refused");
    let message = error.to_string();
    assert!(
        !message.contains("Jane"),
        "message quotes content: {message}"
    );
    assert!(
        !message.contains("HIV"),
        "message quotes content: {message}"
    );
    error
}

#[test]
fn demo_record_has_every_shareable_type() {
    let bundle: Value = serde_json::from_str(DEMO_BUNDLE).expect("demo JSON parses");
    PatientRecord::from_bundle(&bundle).expect("demo bundle imports");
    let record = PatientRecord::demo();
    assert_eq!(record.patient_id(), "demo-alex");
    for resource_type in ResourceType::EMBEDDED {
        if resource_type == ResourceType::Patient {
            continue;
        }
        let count = record
            .resources
            .iter()
            .filter(|resource| resource["resourceType"] == resource_type.as_str())
            .count();
        assert!(count >= 1, "demo has no {}", resource_type.as_str());
    }
    let categories: Vec<&Value> = record
        .resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Observation")
        .map(|observation| &observation["category"][0]["coding"][0]["code"])
        .collect();
    assert_eq!(
        categories
            .iter()
            .filter(|code| **code == "laboratory")
            .count(),
        2
    );
    assert_eq!(
        categories
            .iter()
            .filter(|code| **code == "vital-signs")
            .count(),
        2
    );
}

#[test]
fn debug_shows_no_content() {
    let shown = format!("{:?}", PatientRecord::demo());
    assert!(!shown.contains("Alex"), "{shown}");
}

#[test]
fn accepts_each_listed_bundle_type() {
    for bundle_type in ACCEPTED_BUNDLE_TYPES {
        let record =
            PatientRecord::from_bundle(&bundle(bundle_type, vec![patient("p1"), condition("c1")]))
                .expect("accepted bundle type");
        assert_eq!(record.patient_id(), "p1");
        assert_eq!(record.resources.len(), 1);
    }
}

#[test]
fn refuses_what_is_not_a_bundle() {
    assert_eq!(import_error(&patient("p1")), ImportError::NotABundle);
    assert_eq!(import_error(&json!([PHI])), ImportError::NotABundle);
    let history = bundle("history", vec![patient("p1")]);
    assert_eq!(
        import_error(&history),
        ImportError::UnsupportedBundleType {
            bundle_type: Some("history")
        }
    );
    let odd = bundle(PHI, vec![patient("p1")]);
    assert_eq!(
        import_error(&odd),
        ImportError::UnsupportedBundleType { bundle_type: None }
    );
    let mut not_array = bundle("collection", vec![]);
    not_array["entry"] = json!({ "resource": patient("p1") });
    assert_eq!(import_error(&not_array), ImportError::EntriesNotAnArray);
}

#[test]
fn refuses_zero_or_two_patients() {
    let none = bundle("collection", vec![condition("c1")]);
    assert_eq!(import_error(&none), ImportError::NoPatient);
    let two = bundle(
        "collection",
        vec![patient("p1"), condition("c1"), patient("p1")],
    );
    let error = import_error(&two);
    assert_eq!(
        error,
        ImportError::MultiplePatients {
            first: 0,
            second: 2
        }
    );
    assert!(error.to_string().contains("entries 0 and 2"));
}

#[test]
fn names_an_unsupported_type_and_its_index_only() {
    let practitioner =
        json!({ "resourceType": "Practitioner", "id": "x", "name": [{ "text": PHI }] });
    let error = import_error(&bundle("collection", vec![patient("p1"), practitioner]));
    let message = error.to_string();
    assert!(
        message.contains("entry 1") && message.contains("Practitioner"),
        "{message}"
    );

    let crafted = json!({ "resourceType": PHI, "id": "x" });
    let error = import_error(&bundle("collection", vec![patient("p1"), crafted]));
    assert_eq!(
        error,
        ImportError::UnsupportedType {
            index: 1,
            resource_type: None
        }
    );
}

#[test]
fn skips_composition_only_in_documents() {
    let composition = json!({ "resourceType": "Composition", "id": "doc", "title": PHI });
    let document = bundle("document", vec![composition.clone(), patient("p1")]);
    let record = PatientRecord::from_bundle(&document).expect("document imports");
    assert!(record.resources.is_empty());
    let collection = bundle("collection", vec![composition, patient("p1")]);
    assert_eq!(
        import_error(&collection),
        ImportError::UnsupportedType {
            index: 0,
            resource_type: Some("Composition")
        }
    );
}

#[test]
fn refuses_missing_invalid_or_repeated_ids() {
    let mut no_id = condition("c1");
    no_id.as_object_mut().expect("object").remove("id");
    let error = import_error(&bundle("collection", vec![patient("p1"), no_id]));
    assert_eq!(
        error,
        ImportError::MissingId {
            index: 1,
            resource_type: "Condition"
        }
    );
    assert!(error.to_string().contains("entry 1 (Condition)"));

    let numeric = json!({ "resourceType": "Patient", "id": 7 });
    let error = import_error(&bundle("collection", vec![numeric]));
    assert_eq!(
        error,
        ImportError::MissingId {
            index: 0,
            resource_type: "Patient"
        }
    );

    let invalid = condition(PHI);
    let error = import_error(&bundle("collection", vec![patient("p1"), invalid]));
    assert_eq!(
        error,
        ImportError::InvalidId {
            index: 1,
            resource_type: "Condition"
        }
    );

    let repeated = bundle(
        "collection",
        vec![patient("p1"), condition("c1"), condition("c1")],
    );
    assert_eq!(
        import_error(&repeated),
        ImportError::DuplicateId {
            index: 2,
            first: 1,
            resource_type: "Condition"
        }
    );
}

#[test]
fn refuses_entries_without_a_resource() {
    let mut entries = bundle("transaction", vec![patient("p1")]);
    entries["entry"]
        .as_array_mut()
        .expect("array")
        .push(json!({ "request": { "method": "DELETE", "url": "Condition/c1" } }));
    assert_eq!(
        import_error(&entries),
        ImportError::MissingResource { index: 1 }
    );
    let untyped = bundle("collection", vec![json!({ "id": "x", "note": PHI })]);
    assert_eq!(
        import_error(&untyped),
        ImportError::MissingResourceType { index: 0 }
    );
}

#[test]
fn enforces_the_limits() {
    let many = bundle("collection", vec![patient("p1"); MAX_ENTRIES + 1]);
    assert_eq!(
        import_error(&many),
        ImportError::TooManyEntries {
            count: MAX_ENTRIES + 1,
            max: MAX_ENTRIES
        }
    );
    let mut deep = condition("c1");
    let mut nested = json!(PHI);
    for _ in 0..MAX_DEPTH {
        nested = json!([nested]);
    }
    deep["note"] = nested;
    let error = import_error(&bundle("collection", vec![patient("p1"), deep]));
    assert_eq!(
        error,
        ImportError::TooDeep {
            index: 1,
            resource_type: "Condition",
            max: MAX_DEPTH
        }
    );
    let mut shallow = condition("c1");
    let mut nested = json!(PHI);
    for _ in 0..MAX_DEPTH - 1 {
        nested = json!([nested]);
    }
    shallow["note"] = nested;
    PatientRecord::from_bundle(&bundle("collection", vec![patient("p1"), shallow]))
        .expect("a resource exactly at the depth limit imports");
}

#[test]
fn rewrites_full_url_references_to_relative_ones() {
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:6b1f0e43-3c2e-4b49-9d0e-5d0c1a5e2f10", "resource": patient("p1") },
            {
                "fullUrl": "urn:uuid:2a7c4c51-91f3-4f0e-8a4b-7d65d4b1e0aa",
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "subject": { "reference": "urn:uuid:6b1f0e43-3c2e-4b49-9d0e-5d0c1a5e2f10" },
                    "evidence": [{ "detail": [{ "reference": "Practitioner/elsewhere" }] }]
                }
            }
        ]
    });
    let record = PatientRecord::from_bundle(&transaction).expect("transaction imports");
    assert_eq!(record.resources[0]["subject"]["reference"], "Patient/p1");
    assert_eq!(
        record.resources[0]["evidence"][0]["detail"][0]["reference"],
        "Practitioner/elsewhere"
    );
}

#[test]
fn fhir_id_grammar() {
    assert!(is_fhir_id("a-B.9"));
    assert!(is_fhir_id(&"x".repeat(64)));
    assert!(!is_fhir_id(&"x".repeat(65)));
    for bad in ["", "a/b", "a b", "é", "a_b"] {
        assert!(!is_fhir_id(bad), "{bad:?}");
    }
}
