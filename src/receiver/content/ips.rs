//! The International Patient Summary document (shl-protocol.md section 5, the IPS IG): a
//! `document` Bundle with an identifier and a timestamp whose first entry is its only
//! Composition, exactly one Patient, and sections with a title, a code and narrative.

use serde_json::{Map, Value};

use super::{
    Entry, Findings, LOINC, Tally, check_references, check_timestamp, coded, entries, reference_of,
    refers_to, the_patient,
};

/// Composition.type of a patient summary.
const PATIENT_SUMMARY: &str = "60591-5";
/// The sections the IPS requires, by LOINC code: problems, allergies, medications.
const MANDATORY_SECTIONS: [(&str, &str); 3] = [
    ("11450-4", "Problems"),
    ("48765-2", "Allergies and intolerances"),
    ("10160-0", "Medication summary"),
];

pub(crate) fn check(bundle: &Map<String, Value>, findings: &mut Findings) -> Tally {
    let mut tally = Tally::default();
    if bundle.get("type").and_then(Value::as_str) != Some("document") {
        findings.violation("Bundle.type must be document");
    }
    if !bundle.get("identifier").is_some_and(Value::is_object) {
        findings.violation("Bundle.identifier is missing");
    }
    check_timestamp(bundle, findings);
    let entries = entries(bundle, findings, &mut tally);
    let compositions = entries
        .iter()
        .filter(|entry| entry.resource_type == "Composition")
        .count();
    match entries.first() {
        Some(first) if first.index == 0 && first.resource_type == "Composition" => {}
        _ => findings.violation("the first entry must be the Composition"),
    }
    if compositions > 1 {
        findings.violation(format!(
            "a document has one Composition (found {compositions})"
        ));
    }
    let patient = the_patient(&entries, findings);
    if let Some(composition) = entries
        .first()
        .filter(|first| first.resource_type == "Composition")
    {
        check_composition(composition, patient.as_ref(), findings);
    }
    check_references(&entries, findings);
    tally
}

fn check_composition(
    composition: &Entry<'_>,
    patient: Option<&Entry<'_>>,
    findings: &mut Findings,
) {
    let resource = composition.resource;
    for field in ["status", "date", "title"] {
        if !resource.get(field).is_some_and(Value::is_string) {
            findings.violation(format!("Composition.{field} is missing"));
        }
    }
    if coded(resource.get("type"), LOINC, &[PATIENT_SUMMARY]).is_none() {
        findings.violation(format!(
            "Composition.type must be LOINC {PATIENT_SUMMARY} (Patient summary Document)"
        ));
    }
    if resource
        .get("author")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        findings.violation("Composition.author is missing");
    }
    if let Some(patient) = patient
        && !refers_to(reference_of(resource.get("subject")), patient)
    {
        findings.violation("Composition.subject must be the Bundle's Patient");
    }
    let sections = resource
        .get("section")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, section) in sections.iter().enumerate() {
        check_section(index, section, findings);
    }
    for (code, title) in MANDATORY_SECTIONS {
        let present = sections
            .iter()
            .any(|section| coded(section.get("code"), LOINC, &[code]).is_some());
        if !present {
            findings.violation(format!(
                "the mandatory section {title} (LOINC {code}) is missing"
            ));
        }
    }
}

/// A section: title, code and narrative; entries, or the reason there are none.
fn check_section(index: usize, section: &Value, findings: &mut Findings) {
    let at = format!("Composition.section[{index}]");
    if !section.get("title").is_some_and(Value::is_string) {
        findings.violation(format!("{at} has no title"));
    }
    if !section.get("code").is_some_and(Value::is_object) {
        findings.violation(format!("{at} has no code"));
    }
    if !section
        .get("text")
        .and_then(|text| text.get("div"))
        .is_some_and(Value::is_string)
    {
        findings.violation(format!("{at} has no narrative (text.div)"));
    }
    let has_entries = section
        .get("entry")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty());
    let has_reason = section.get("emptyReason").is_some();
    if has_entries && has_reason {
        // FHIR's cmp-2: a reason for emptiness only in an empty section.
        findings.violation(format!("{at} has entries and an emptyReason"));
    } else if !has_entries && !has_reason {
        findings.warning(format!(
            "{at} has neither entries nor an emptyReason saying why"
        ));
    }
}
