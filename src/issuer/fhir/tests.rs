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

/// The error, the same whether unimportable entries are skipped or refused: what is imported is
/// checked as strictly either way.
fn import_error(bundle: &Value) -> ImportError {
    let error =
        PatientRecord::import(bundle, Unimportable::Skip).expect_err("the bundle must be refused");
    let strict = PatientRecord::import(bundle, Unimportable::Refuse)
        .expect_err("the bundle must be refused with --strict too");
    assert_eq!(error, strict);
    assert_quotes_no_content(&error);
    error
}

fn assert_quotes_no_content(error: &ImportError) {
    let message = error.to_string();
    assert!(
        !message.contains("Jane"),
        "message quotes content: {message}"
    );
    assert!(
        !message.contains("HIV"),
        "message quotes content: {message}"
    );
}

fn imported(bundle: &Value) -> Import {
    PatientRecord::import(bundle, Unimportable::Skip).expect("the bundle imports")
}

#[test]
fn demo_record_has_every_shareable_type() {
    let bundle: Value = serde_json::from_str(DEMO_BUNDLE).expect("demo JSON parses");
    let import = PatientRecord::import(&bundle, Unimportable::Refuse).expect("demo bundle imports");
    assert!(import.report.skipped().is_empty());
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
        let record = imported(&bundle(bundle_type, vec![patient("p1"), condition("c1")])).record;
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

fn practitioner(id: &str) -> Value {
    json!({ "resourceType": "Practitioner", "id": id, "name": [{ "text": PHI }] })
}

#[test]
fn skips_other_types_and_counts_them() {
    let bundle = bundle(
        "searchset",
        vec![
            practitioner("d1"),
            patient("p1"),
            json!({ "resourceType": "Organization", "id": "o1", "name": PHI }),
            condition("c1"),
            practitioner("d2"),
        ],
    );

    let import = imported(&bundle);

    assert_eq!(import.record.patient_id(), "p1");
    assert_eq!(import.record.resources, vec![condition("c1")]);
    assert_eq!(import.report.imported(), [("Patient", 1), ("Condition", 1)]);
    assert_eq!(
        import.report.skipped(),
        [("Practitioner", 2), ("Organization", 1)]
    );
    assert_eq!(
        import.report.to_string(),
        "imported: 1 Patient, 1 Condition; skipped: 2 Practitioner, 1 Organization"
    );
}

#[test]
fn a_skipped_resource_is_not_validated_or_walked() {
    // Nothing of it is imported, so its id and nesting are not the record's concern.
    let mut deep = json!(PHI);
    for _ in 0..MAX_DEPTH * 2 {
        deep = json!([deep]);
    }
    let odd = json!({ "resourceType": "Encounter", "id": PHI, "extension": deep });
    let import = imported(&bundle("collection", vec![patient("p1"), odd]));
    assert_eq!(import.report.skipped(), [("Encounter", 1)]);
}

#[test]
fn strict_refuses_naming_what_would_be_skipped() {
    let bundle = bundle(
        "collection",
        vec![
            patient("p1"),
            condition("c1"),
            practitioner("d1"),
            json!({ "resourceType": "Encounter", "id": "e1" }),
            practitioner("d2"),
        ],
    );

    let error = PatientRecord::import(&bundle, Unimportable::Refuse).expect_err("strict refuses");

    assert_eq!(
        error,
        ImportError::NotImportable {
            first: 2,
            left_over: vec![("Practitioner", 2), ("Encounter", 1)],
        }
    );
    assert_quotes_no_content(&error);
    let message = error.to_string();
    assert!(
        message.contains("2 Practitioner, 1 Encounter (the first is entry 2)"),
        "{message}"
    );
    assert!(message.contains("MedicationRequest"), "{message}");
}

#[test]
fn an_unknown_resource_type_is_refused_even_when_skipping() {
    // A misspelt `Condition` skipped as "another type" would silently drop a diagnosis.
    for name in ["Conditon", PHI] {
        let crafted = json!({ "resourceType": name, "id": "x", "code": { "text": PHI } });
        assert_eq!(
            import_error(&bundle("collection", vec![patient("p1"), crafted])),
            ImportError::UnknownResourceType { index: 1 }
        );
    }
}

#[test]
fn a_documents_composition_is_skipped_even_when_strict() {
    let composition = json!({ "resourceType": "Composition", "id": "doc", "title": PHI });
    let document = bundle("document", vec![composition.clone(), patient("p1")]);
    let import = PatientRecord::import(&document, Unimportable::Refuse).expect("document imports");
    assert!(import.record.resources.is_empty());
    assert_eq!(import.report.skipped(), [("Composition", 1)]);

    // Anywhere else a Composition is content the record does not hold.
    let collection = bundle("collection", vec![composition.clone(), patient("p1")]);
    assert_eq!(imported(&collection).report.skipped(), [("Composition", 1)]);
    assert!(matches!(
        PatientRecord::import(&collection, Unimportable::Refuse),
        Err(ImportError::NotImportable { first: 0, .. })
    ));
    let second = bundle("document", vec![patient("p1"), composition]);
    assert!(PatientRecord::import(&second, Unimportable::Refuse).is_err());
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
fn a_request_without_a_resource_is_skipped_and_a_bare_entry_refused() {
    let mut transaction = bundle("transaction", vec![patient("p1")]);
    transaction["entry"]
        .as_array_mut()
        .expect("array")
        .push(json!({ "request": { "method": "DELETE", "url": "Condition/c1" } }));
    assert_eq!(
        imported(&transaction).report.skipped(),
        [("request without a resource", 1)]
    );
    assert!(matches!(
        PatientRecord::import(&transaction, Unimportable::Refuse),
        Err(ImportError::NotImportable { first: 1, .. })
    ));

    let mut bare = bundle("collection", vec![patient("p1")]);
    bare["entry"]
        .as_array_mut()
        .expect("array")
        .push(json!({ "fullUrl": "urn:uuid:0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908" }));
    assert_eq!(
        import_error(&bare),
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
    imported(&bundle("collection", vec![patient("p1"), shallow]));
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
    let record = imported(&transaction).record;
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

fn medication(id: &str, name: &str) -> Value {
    json!({
        "resourceType": "Medication",
        "id": id,
        "meta": { "versionId": "2", "lastUpdated": "2024-05-01T10:00:00Z" },
        "code": { "coding": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975", "display": name }] },
        "manufacturer": { "reference": "urn:uuid:5f6b4c4e-0a0e-4a57-9a38-0e7e5d0a6a01" }
    })
}

fn statement(resource_type: &str, id: &str, medication_reference: &str) -> Value {
    json!({
        "resourceType": resource_type,
        "id": id,
        "status": "active",
        "medicationReference": { "reference": medication_reference, "display": "as prescribed" },
        "subject": { "reference": "Patient/p1" }
    })
}

fn with_full_urls(entries: Vec<(&str, Value)>) -> Value {
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|(full_url, resource)| json!({ "fullUrl": full_url, "resource": resource }))
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry })
}

const MED_URL: &str = "urn:uuid:7c0f3a4e-2b1d-4c5e-8f6a-9b0c1d2e3f40";
const ORG_URL: &str = "urn:uuid:5f6b4c4e-0a0e-4a57-9a38-0e7e5d0a6a01";

#[test]
fn a_named_medication_goes_into_each_statement_that_names_it() {
    let bundle = with_full_urls(vec![
        (
            "urn:uuid:0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908",
            patient("p1"),
        ),
        (
            "urn:uuid:3d6b1c1a-4b8e-4f0e-9d7c-2a1b0c9d8e7f",
            statement("MedicationRequest", "by-url", MED_URL),
        ),
        (
            "urn:uuid:8e2f6a3b-5c4d-4e1f-a0b9-c8d7e6f5a4b3",
            statement("MedicationStatement", "by-id", "Medication/m1/_history/2"),
        ),
        (MED_URL, medication("m1", "Metformin 500 MG Oral Tablet")),
        (
            ORG_URL,
            json!({ "resourceType": "Organization", "id": "o1" }),
        ),
    ]);

    let import = imported(&bundle);

    for resource in &import.record.resources {
        assert_eq!(
            resource["medicationReference"],
            json!({ "reference": "#medication", "display": "as prescribed" }),
            "{resource}"
        );
        let contained = resource["contained"].as_array().expect("contained");
        assert_eq!(contained.len(), 1);
        let inside = &contained[0];
        assert_eq!(inside["id"], "medication", "a local id, not the Bundle's");
        assert_eq!(inside["resourceType"], "Medication");
        assert_eq!(
            inside["code"]["coding"][0]["display"],
            "Metformin 500 MG Oral Tablet"
        );
        assert!(
            inside.get("meta").is_none(),
            "no versionId or lastUpdated when contained"
        );
        // References inside stay as they were: the Organization is not imported.
        assert_eq!(inside["manufacturer"]["reference"], ORG_URL);
        assert_eq!(resource["subject"]["reference"], "Patient/p1");
    }
    assert_eq!(import.report.contained_medications(), 1);
    assert_eq!(import.report.skipped(), [("Organization", 1)]);
    assert_eq!(
        import.report.to_string(),
        "imported: 1 Patient, 1 MedicationStatement, 1 MedicationRequest, \
         1 Medication (contained in the statements that name them); skipped: 1 Organization"
    );
    // A Medication that goes into a statement is imported: strict has nothing to refuse for it.
    let mut no_organization = bundle.clone();
    no_organization["entry"]
        .as_array_mut()
        .expect("array")
        .pop();
    PatientRecord::import(&no_organization, Unimportable::Refuse).expect("strict accepts");
}

#[test]
fn a_fragment_full_url_does_not_capture_a_contained_reference() {
    // `#medication` is no URL; as an alias it would rewrite the statement's reference.
    let bundle = with_full_urls(vec![
        (
            "urn:uuid:0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908",
            patient("p1"),
        ),
        ("#medication", condition("c1")),
        (
            "urn:uuid:3d6b1c1a-4b8e-4f0e-9d7c-2a1b0c9d8e7f",
            statement("MedicationRequest", "r1", MED_URL),
        ),
        (MED_URL, medication("m1", "Metformin")),
    ]);
    let import = imported(&bundle);
    let request = import
        .record
        .resources
        .iter()
        .find(|resource| resource["resourceType"] == "MedicationRequest")
        .expect("the request");
    assert_eq!(request["medicationReference"]["reference"], "#medication");
}

#[test]
fn a_medication_outside_the_bundle_or_unnamed_keeps_todays_behaviour() {
    let bundle = with_full_urls(vec![
        (
            "urn:uuid:0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908",
            patient("p1"),
        ),
        (
            "urn:uuid:3d6b1c1a-4b8e-4f0e-9d7c-2a1b0c9d8e7f",
            statement("MedicationRequest", "r1", "Medication/elsewhere"),
        ),
        (MED_URL, medication("m1", "Metformin 500 MG Oral Tablet")),
    ]);

    let import = imported(&bundle);

    let request = &import.record.resources[0];
    assert_eq!(
        request["medicationReference"]["reference"],
        "Medication/elsewhere"
    );
    assert!(request.get("contained").is_none());
    assert_eq!(import.report.contained_medications(), 0);
    assert_eq!(import.report.skipped(), [("Medication", 1)]);
    assert_eq!(
        PatientRecord::import(&bundle, Unimportable::Refuse).expect_err("left over"),
        ImportError::NotImportable {
            first: 2,
            left_over: vec![("Medication", 1)],
        }
    );
}

#[test]
fn a_contained_medication_takes_an_id_the_statement_does_not_use() {
    let mut request = statement("MedicationRequest", "r1", "Medication/m1");
    request["contained"] = json!([{ "resourceType": "Provenance", "id": "medication" }]);
    let import = imported(&bundle(
        "collection",
        vec![patient("p1"), request, medication("m1", "Metformin")],
    ));
    let request = &import.record.resources[0];
    assert_eq!(request["medicationReference"]["reference"], "#medication-2");
    assert_eq!(request["contained"][0]["id"], "medication");
    assert_eq!(request["contained"][1]["id"], "medication-2");
    assert_eq!(request["contained"][1]["resourceType"], "Medication");
}

#[test]
fn a_medication_fhir_does_not_let_be_contained_stays_outside() {
    let mut nested = medication("m1", "Metformin");
    nested["contained"] = json!([{ "resourceType": "Substance", "id": "s1" }]);
    let import = imported(&bundle(
        "collection",
        vec![
            patient("p1"),
            statement("MedicationStatement", "s1", "Medication/m1"),
            nested,
        ],
    ));
    assert_eq!(
        import.record.resources[0]["medicationReference"]["reference"],
        "Medication/m1"
    );
    assert_eq!(import.report.skipped(), [("Medication", 1)]);
}

#[test]
fn a_medication_is_checked_like_an_imported_resource() {
    let statement = statement("MedicationStatement", "s1", "Medication/m1");
    let mut no_id = medication("m1", PHI);
    no_id.as_object_mut().expect("object").remove("id");
    assert_eq!(
        import_error(&bundle(
            "collection",
            vec![patient("p1"), statement.clone(), no_id]
        )),
        ImportError::MissingId {
            index: 2,
            resource_type: "Medication"
        }
    );
    let twice = bundle(
        "collection",
        vec![
            patient("p1"),
            statement.clone(),
            medication("m1", PHI),
            medication("m1", PHI),
        ],
    );
    assert_eq!(
        import_error(&twice),
        ImportError::DuplicateId {
            index: 3,
            first: 2,
            resource_type: "Medication"
        }
    );

    // Each fits within the depth limit, the statement holding the Medication does not.
    let mut deep = medication("m1", PHI);
    let mut nested = json!(PHI);
    for _ in 0..MAX_DEPTH - 2 {
        nested = json!([nested]);
    }
    deep["code"]["extension"] = nested;
    assert!(!nests_deeper_than(&deep, MAX_DEPTH));
    assert_eq!(
        import_error(&bundle("collection", vec![patient("p1"), statement, deep])),
        ImportError::TooDeep {
            index: 1,
            resource_type: "MedicationStatement",
            max: MAX_DEPTH
        }
    );
}

/// The HL7 SMART Health Links IG's example: an IPS document with Practitioner, Organizations and
/// Medications beside the patient's data (tests/fixtures/README.md).
const HL7_IPS_BUNDLE: &str = include_str!("../../../tests/fixtures/hl7-ips-bundle-01.json");

#[test]
fn the_hl7_ips_example_imports_with_its_medications() {
    let bundle: Value = serde_json::from_str(HL7_IPS_BUNDLE).expect("JSON");

    let import = imported(&bundle);

    assert_eq!(
        import.report.to_string(),
        "imported: 1 Patient, 2 Condition, 2 AllergyIntolerance, 2 MedicationStatement, \
         7 Observation, 2 Medication (contained in the statements that name them); \
         skipped: 2 Organization, 1 Composition, 1 Practitioner"
    );
    let names: Vec<&Value> = import
        .record
        .resources
        .iter()
        .filter(|resource| resource["resourceType"] == "MedicationStatement")
        .map(|statement| {
            assert_eq!(statement["medicationReference"]["reference"], "#medication");
            &statement["contained"][0]["code"]["coding"][0]["display"]
        })
        .collect();
    assert_eq!(
        names,
        [
            "Product containing anastrozole (medicinal product)",
            "Cimicifuga racemosa extract (substance)"
        ]
    );
    let strict = PatientRecord::import(&bundle, Unimportable::Refuse).expect_err("strict");
    assert_eq!(
        strict.to_string().split(" (the first").next(),
        Some("the Bundle holds what cannot be imported: 2 Organization, 1 Practitioner")
    );
}
