use std::collections::HashSet;

use serde_json::{Value, json};

use super::*;

const BUNDLE_ID: &str = "6f1c0b5e-3d2a-4c8e-9b7f-2a4d6e8f0a1c";
const TIMESTAMP: &str = "2025-12-19T19:42:02.887Z";

const MANDATORY: [&str; 3] = ["11450-4", "48765-2", "10160-0"];
const SECTION_ORDER: [&str; 8] = [
    "11450-4", "48765-2", "10160-0", "11369-6", "47519-4", "30954-2", "8716-3", "18776-5",
];

fn options(selected: &[ResourceType]) -> IpsOptions<'_> {
    IpsOptions {
        selected,
        bundle_id: BUNDLE_ID,
        timestamp: TIMESTAMP,
        title: "Patient summary",
    }
}

fn resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .expect("entry array")
        .iter()
        .map(|entry| &entry["resource"])
}

fn count_type(bundle: &Value, type_name: &str) -> usize {
    resources(bundle)
        .filter(|resource| resource["resourceType"] == type_name)
        .count()
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

fn section<'b>(bundle: &'b Value, loinc: &str) -> Option<&'b Value> {
    bundle["entry"][0]["resource"]["section"]
        .as_array()
        .expect("sections")
        .iter()
        .find(|section| section["code"]["coding"][0]["code"] == loinc)
}

fn empty_reason(bundle: &Value, loinc: &str) -> Value {
    let section = section(bundle, loinc).expect("mandatory section present");
    section["emptyReason"]["coding"][0]["code"].clone()
}

/// Every structural rule of shl-protocol §5 and the IPS guide that the builder promises.
fn assert_ips_document(bundle: &Value) {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "document");
    assert_eq!(bundle["identifier"]["system"], "urn:ietf:rfc:3986");
    assert!(
        bundle["identifier"]["value"]
            .as_str()
            .expect("identifier")
            .starts_with("urn:uuid:")
    );
    assert!(bundle["timestamp"].is_string());
    let entries = bundle["entry"].as_array().expect("entries");

    let mut full_urls = HashSet::new();
    for entry in entries {
        let full_url = entry["fullUrl"]
            .as_str()
            .expect("every entry has a fullUrl");
        let uuid = full_url
            .strip_prefix("urn:uuid:")
            .expect("urn:uuid fullUrl");
        uuid::Uuid::parse_str(uuid).expect("fullUrl holds a UUID");
        assert_eq!(
            entry["resource"]["id"], uuid,
            "resource id matches its fullUrl"
        );
        assert!(full_urls.insert(full_url), "fullUrl {full_url} repeated");
        assert!(
            entry["resource"].get("text").is_none()
                || entry["resource"]["resourceType"] == "Composition"
        );
    }

    let composition = &entries[0]["resource"];
    assert_eq!(
        composition["resourceType"], "Composition",
        "Composition first"
    );
    assert_eq!(count_type(bundle, "Composition"), 1, "only one Composition");
    assert_eq!(count_type(bundle, "Patient"), 1, "exactly one Patient");
    assert_eq!(composition["status"], "final");
    assert_eq!(
        composition["type"]["coding"][0]["system"],
        "http://loinc.org"
    );
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    assert_eq!(composition["date"], bundle["timestamp"]);
    assert!(composition["title"].is_string());
    assert_xhtml(&composition["text"]);
    let patient_url = entries
        .iter()
        .find(|entry| entry["resource"]["resourceType"] == "Patient")
        .map(|entry| &entry["fullUrl"])
        .expect("Patient entry");
    assert_eq!(&composition["subject"]["reference"], patient_url);
    assert_eq!(&composition["author"][0]["reference"], patient_url);

    let sections = composition["section"].as_array().expect("sections");
    let codes: Vec<&str> = sections
        .iter()
        .map(|section| {
            section["code"]["coding"][0]["code"]
                .as_str()
                .expect("LOINC code")
        })
        .collect();
    for mandatory in MANDATORY {
        assert!(
            codes.contains(&mandatory),
            "mandatory section {mandatory} missing"
        );
    }
    let positions: Vec<usize> = codes
        .iter()
        .map(|code| {
            SECTION_ORDER
                .iter()
                .position(|known| known == code)
                .expect("known section")
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "section order {codes:?}"
    );
    for section in sections {
        assert_section(section, &full_urls);
    }

    let mut references = Vec::new();
    collect_references(bundle, &mut references);
    for reference in references
        .iter()
        .filter(|reference| reference.starts_with("urn:uuid:"))
    {
        assert!(full_urls.contains(reference), "dangling {reference}");
    }
}

fn assert_section(section: &Value, full_urls: &HashSet<&str>) {
    assert!(section["title"].is_string(), "section title");
    assert_eq!(section["code"]["coding"][0]["system"], "http://loinc.org");
    assert_xhtml(&section["text"]);
    let has_entries = section["entry"]
        .as_array()
        .is_some_and(|entries| !entries.is_empty());
    let has_reason = section.get("emptyReason").is_some();
    assert!(
        has_entries != has_reason,
        "entry xor emptyReason: {section}"
    );
    if has_reason {
        assert_eq!(
            section["emptyReason"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/list-empty-reason"
        );
    }
    for entry in section["entry"].as_array().into_iter().flatten() {
        let reference = entry["reference"]
            .as_str()
            .expect("section entry reference");
        assert!(
            full_urls.contains(reference),
            "section entry {reference} resolves"
        );
    }
}

fn assert_xhtml(narrative: &Value) {
    assert_eq!(narrative["status"], "generated");
    let div = narrative["div"].as_str().expect("narrative div");
    assert!(
        div.starts_with(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#),
        "{div}"
    );
    assert!(div.ends_with("</div>"));
    assert!(!div.contains("<script"));
}

fn section_divs(composition: &Value) -> impl Iterator<Item = &Value> {
    composition["section"]
        .as_array()
        .expect("sections")
        .iter()
        .map(|section| &section["text"]["div"])
}

fn record(resources: Vec<Value>) -> PatientRecord {
    PatientRecord {
        patient: json!({ "resourceType": "Patient", "id": "p1", "name": [{ "text": "Test Person" }] }),
        resources,
    }
}

fn condition(id: &str, name: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "code": { "text": name },
        "subject": { "reference": "Patient/p1" }
    })
}

#[test]
fn demo_document_is_a_complete_ips() {
    let bundle = build_ips(&PatientRecord::demo(), &options(&[]));
    assert_ips_document(&bundle);
    for code in SECTION_ORDER {
        let section = section(&bundle, code).expect("every section has demo data");
        assert!(section.get("emptyReason").is_none());
    }
    assert_eq!(
        section(&bundle, "30954-2").expect("results")["entry"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        section(&bundle, "8716-3").expect("vitals")["entry"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Coverage travels as an entry that no section references.
    let coverage = resources(&bundle)
        .position(|resource| resource["resourceType"] == "Coverage")
        .expect("coverage entry");
    let coverage_url = &bundle["entry"][coverage]["fullUrl"];
    let mut references = Vec::new();
    collect_references(&bundle["entry"][0], &mut references);
    assert!(
        !references
            .iter()
            .any(|reference| coverage_url == *reference)
    );
    // A MedicationRequest sits in the medication summary beside the statements.
    assert_eq!(
        section(&bundle, "10160-0").expect("medications")["entry"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // 17 stored resources, plus the Composition.
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(18));
}

#[test]
fn every_reference_to_a_stored_resource_is_rewritten() {
    let bundle = build_ips(&PatientRecord::demo(), &options(&[]));
    let mut references = Vec::new();
    collect_references(&bundle, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        assert!(
            reference.starts_with("urn:uuid:"),
            "not rewritten: {reference}"
        );
    }
    let demo = PatientRecord::demo();
    let stored_ids: Vec<&str> = demo
        .resources
        .iter()
        .map(|resource| resource["id"].as_str().expect("id"))
        .collect();
    let text = bundle.to_string();
    for id in stored_ids.into_iter().chain(["demo-alex"]) {
        assert!(
            !text.contains(&format!("\"{id}\"")),
            "stored id {id} leaked"
        );
    }
}

#[test]
fn deselected_mandatory_sections_are_withheld() {
    let bundle = build_ips(&PatientRecord::demo(), &options(&[ResourceType::Condition]));
    assert_ips_document(&bundle);
    assert!(
        section(&bundle, "11450-4")
            .expect("problems")
            .get("entry")
            .is_some()
    );
    assert_eq!(empty_reason(&bundle, "48765-2"), "withheld");
    assert_eq!(empty_reason(&bundle, "10160-0"), "withheld");
    for optional in &SECTION_ORDER[3..] {
        assert!(
            section(&bundle, optional).is_none(),
            "{optional} without entries"
        );
    }
    assert_eq!(count_type(&bundle, "Patient"), 1);
    assert_eq!(count_type(&bundle, "Coverage"), 0);
    assert_eq!(count_type(&bundle, "Condition"), 2);
}

#[test]
fn selected_but_absent_mandatory_sections_are_unavailable() {
    let bundle = build_ips(&record(vec![condition("c1", "Asthma")]), &options(&[]));
    assert_ips_document(&bundle);
    assert_eq!(empty_reason(&bundle, "48765-2"), "unavailable");
    assert_eq!(empty_reason(&bundle, "10160-0"), "unavailable");
    let only_patient = build_ips(&record(vec![]), &options(&[ResourceType::Patient]));
    assert_ips_document(&only_patient);
    assert_eq!(empty_reason(&only_patient, "11450-4"), "withheld");
    assert_eq!(only_patient["entry"].as_array().map(Vec::len), Some(2));
}

#[test]
fn references_to_left_out_resources_are_removed() {
    let selected = [ResourceType::MedicationStatement, ResourceType::CarePlan];
    let bundle = build_ips(&PatientRecord::demo(), &options(&selected));
    assert_ips_document(&bundle);
    let text = bundle.to_string();
    assert!(
        !text.contains("Condition"),
        "a withheld Condition is still named"
    );
    for statement in
        resources(&bundle).filter(|resource| resource["resourceType"] == "MedicationStatement")
    {
        assert!(statement.get("reasonReference").is_none(), "{statement}");
    }
    let plan = resources(&bundle)
        .find(|resource| resource["resourceType"] == "CarePlan")
        .expect("care plan");
    assert!(plan.get("addresses").is_none());
}

#[test]
fn retracted_and_unplaceable_resources_are_left_out() {
    let mut retracted = condition("c1", "Wrong diagnosis");
    retracted["verificationStatus"] = json!({ "coding": [{ "code": "entered-in-error" }] });
    let survey = json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{ "coding": [{ "code": "survey" }] }],
        "code": { "text": "Questionnaire score" }
    });
    let bundle = build_ips(&record(vec![retracted, survey]), &options(&[]));
    assert_ips_document(&bundle);
    assert_eq!(empty_reason(&bundle, "11450-4"), "unavailable");
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(2));
}

#[test]
fn narrative_is_generated_and_escaped() {
    let mut hostile = condition("c1", "<script>alert(1)</script>");
    hostile["text"] = json!({
        "status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>steal()</script></div>"
    });
    hostile["contained"] = json!([{
        "resourceType": "Observation",
        "id": "inner",
        "text": { "status": "generated", "div": "<div><script>inner()</script></div>" }
    }]);
    let bundle = build_ips(&record(vec![hostile]), &options(&[]));
    assert_ips_document(&bundle);
    let div = section(&bundle, "11450-4").expect("problems")["text"]["div"]
        .as_str()
        .expect("div")
        .to_owned();
    assert!(
        div.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{div}"
    );
    let composition = &bundle["entry"][0]["resource"];
    let mut divs = vec![&composition["text"]["div"]];
    divs.extend(section_divs(composition));
    for div in divs {
        assert!(
            !div.as_str().expect("div").contains("<script"),
            "unescaped markup: {div}"
        );
    }
    let text = bundle.to_string();
    assert!(
        !text.contains("steal()") && !text.contains("inner()"),
        "imported narrative survived"
    );
    let condition = resources(&bundle)
        .find(|resource| resource["resourceType"] == "Condition")
        .expect("condition");
    assert!(condition["contained"][0].get("text").is_none());
    // The structured field itself is data, not markup: it stays as it was.
    assert_eq!(condition["code"]["text"], "<script>alert(1)</script>");
}

#[test]
fn output_is_deterministic_and_keyed_by_bundle_id() {
    let record = PatientRecord::demo();
    let first = build_ips(&record, &options(&[]));
    let second = build_ips(&record, &options(&[]));
    assert_eq!(first, second);
    let other_id = IpsOptions {
        bundle_id: "0b9e7f2c-1a3d-4e5f-8a6b-7c8d9e0f1a2b",
        ..options(&[])
    };
    let other = build_ips(&record, &other_id);
    assert_ips_document(&other);
    let urls = |bundle: &Value| -> HashSet<String> {
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["fullUrl"].to_string())
            .collect()
    };
    assert!(
        urls(&first).is_disjoint(&urls(&other)),
        "a new bundle id gives new fullUrls"
    );
}

#[test]
fn entries_follow_section_order() {
    let bundle = build_ips(&PatientRecord::demo(), &options(&[]));
    let types: Vec<&str> = resources(&bundle)
        .map(|resource| resource["resourceType"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "Composition",
            "Patient",
            "Condition",
            "Condition",
            "AllergyIntolerance",
            "AllergyIntolerance",
            "MedicationStatement",
            "MedicationStatement",
            "MedicationRequest",
            "Immunization",
            "Immunization",
            "Procedure",
            "Observation",
            "Observation",
            "Observation",
            "Observation",
            "CarePlan",
            "Coverage",
        ]
    );
}

#[test]
fn the_medication_summary_counts_requests_and_statements_alike() {
    let request = json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Lisinopril"}});
    let only_a_request = record(vec![request]);
    let nothing = record(vec![]);

    let shared = build_ips(&only_a_request, &options(&[]));
    let statements_only = build_ips(
        &only_a_request,
        &options(&[ResourceType::MedicationStatement]),
    );
    let both_none_on_file = build_ips(
        &nothing,
        &options(&[
            ResourceType::MedicationStatement,
            ResourceType::MedicationRequest,
        ]),
    );

    assert_eq!(
        section(&shared, "10160-0").expect("medications")["entry"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        empty_reason(&statements_only, "10160-0"),
        "withheld",
        "a request is on file and was not selected"
    );
    assert_eq!(empty_reason(&both_none_on_file, "10160-0"), "unavailable");
}

#[test]
fn the_hl7_example_keeps_its_medications_inside_the_statements() {
    // The IG's IPS document, imported: its two MedicationStatements name Medication entries,
    // which import moves into them.
    let bundle: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/hl7-ips-bundle-01.json"
    ))
    .expect("JSON");
    let record = PatientRecord::import(&bundle, crate::issuer::fhir::Unimportable::Skip)
        .expect("imports")
        .record;

    let document = build_ips(&record, &options(&[]));

    assert_ips_document(&document);
    let statements: Vec<&Value> = resources(&document)
        .filter(|resource| resource["resourceType"] == "MedicationStatement")
        .collect();
    assert_eq!(statements.len(), 2);
    for statement in statements {
        let id = statement["medicationReference"]["reference"]
            .as_str()
            .and_then(|reference| reference.strip_prefix('#'))
            .expect("a contained reference");
        let medication = statement["contained"]
            .as_array()
            .expect("contained")
            .iter()
            .find(|inner| inner["id"] == id)
            .expect("the reference resolves inside the statement");
        assert_eq!(medication["resourceType"], "Medication");
    }
    let medications = section(&document, "10160-0").expect("the medication summary");
    let div = medications["text"]["div"].as_str().expect("narrative");
    for name in [
        "Product containing anastrozole (medicinal product)",
        "Black Cohosh Extract herbal supplement",
    ] {
        assert!(div.contains(name), "{name} in {div}");
    }
}
