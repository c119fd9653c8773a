//! The Kill the Clipboard PatientSharedBundle (ktc.md sections 2 and 3): a `collection` with a
//! timestamp, one Patient and at least one content entry, and DocumentReferences that carry
//! the rendered summary (LOINC 60591-5) or the patient's own story (51855-5) as inline PDFs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::{
    Entry, Findings, LOINC, Tally, check_references, check_timestamp, coded, entries, reference_of,
    refers_to, the_patient,
};

const PATIENT_SUMMARY: &str = "60591-5";
const PATIENT_NOTE: &str = "51855-5";
const CATEGORY_SYSTEM: &str = "https://cms.gov/fhir/CodeSystem/patient-shared-category";
const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

pub(crate) fn check(bundle: &Map<String, Value>, findings: &mut Findings) -> Tally {
    let mut tally = Tally::default();
    match bundle.get("type").and_then(Value::as_str) {
        Some("collection") => {}
        Some("document") => findings.violation(
            "Bundle.type is document (an IPS document): a PatientSharedBundle is a collection",
        ),
        other => findings.violation(format!(
            "Bundle.type must be collection (found {})",
            other.map_or_else(|| "none".to_owned(), |found| format!("{found:.30}"))
        )),
    }
    check_timestamp(bundle, findings);
    let entries = entries(bundle, findings, &mut tally);
    if tally.entries < 2 {
        findings.violation(format!(
            "Bundle.entry must hold a Patient and at least one content entry (found {} entries)",
            tally.entries
        ));
    }
    let patient = the_patient(&entries, findings);
    if let Some(patient) = &patient {
        for (field, what) in [
            ("name", "a name"),
            ("birthDate", "a birth date"),
            ("gender", "a gender"),
        ] {
            if !patient.resource.contains_key(field) {
                findings.warning(format!(
                    "the Patient SHOULD carry {what} for matching ({field})"
                ));
            }
        }
    }
    let mut profiled = 0;
    for entry in &entries {
        if entry
            .full_url
            .is_some_and(|full_url| !full_url.starts_with("urn:uuid:"))
        {
            findings.warning(format!(
                "entry[{}] fullUrl SHOULD be a urn:uuid",
                entry.index
            ));
        }
        if entry
            .resource
            .get("meta")
            .is_some_and(|meta| meta.get("profile").is_some())
        {
            profiled += 1;
        }
        if entry.resource_type == "DocumentReference" {
            let code = check_document(entry, patient.as_ref(), findings);
            tally.documents.push(code.unwrap_or("unknown").to_owned());
        }
    }
    if profiled > 0 {
        findings.warning(format!(
            "{profiled} resources carry meta.profile, which the profile says SHOULD NOT be sent"
        ));
    }
    check_references(&entries, findings);
    tally
}

/// A PatientSharedDocumentReference (section 3); returns its LOINC type when it has one of
/// the two.
fn check_document<'e>(
    entry: &Entry<'e>,
    patient: Option<&Entry<'_>>,
    findings: &mut Findings,
) -> Option<&'e str> {
    let document = entry.resource;
    let at = format!("entry[{}] DocumentReference", entry.index);
    if document.get("status").and_then(Value::as_str) != Some("current") {
        findings.violation(format!("{at}: status must be current"));
    }
    let code = coded(
        document.get("type"),
        LOINC,
        &[PATIENT_SUMMARY, PATIENT_NOTE],
    );
    if code.is_none() {
        findings.violation(format!(
            "{at}: type must be LOINC {PATIENT_SUMMARY} (rendered summary) or {PATIENT_NOTE} (patient's story)"
        ));
    }
    let shared = document
        .get("category")
        .and_then(Value::as_array)
        .is_some_and(|categories| {
            categories.iter().any(|category| {
                coded(Some(category), CATEGORY_SYSTEM, &["patient-shared"]).is_some()
            })
        });
    if !shared {
        findings.violation(format!("{at}: category must include patient-shared"));
    }
    if let Some(patient) = patient {
        if !refers_to(reference_of(document.get("subject")), patient) {
            findings.violation(format!("{at}: subject must be the Bundle's Patient"));
        }
        let authored = document
            .get("author")
            .and_then(Value::as_array)
            .is_some_and(|authors| {
                authors
                    .iter()
                    .any(|author| refers_to(reference_of(Some(author)), patient))
            });
        if !authored {
            findings.violation(format!("{at}: author must include the Bundle's Patient"));
        }
    }
    if !document.get("date").is_some_and(Value::is_string) {
        findings.violation(format!("{at}: date is missing"));
    }
    let patient_asserted = document
        .get("meta")
        .and_then(|meta| meta.get("security"))
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|coding| {
                coding.get("system").and_then(Value::as_str) == Some(OBSERVATION_VALUE)
                    && coding.get("code").and_then(Value::as_str) == Some("PATAST")
            })
        });
    if !patient_asserted {
        findings.warning(format!("{at}: meta.security SHOULD include PATAST"));
    }
    check_attachments(document, &at, findings);
    code
}

/// `content[].attachment`: a PDF, inline (`data`, standard base64), never a `url`.
fn check_attachments(document: &Map<String, Value>, at: &str, findings: &mut Findings) {
    let contents = document
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if contents.is_empty() {
        findings.violation(format!("{at}: content is missing"));
    }
    for (index, content) in contents.iter().enumerate() {
        let at = format!("{at} content[{index}]");
        let Some(attachment) = content.get("attachment").and_then(Value::as_object) else {
            findings.violation(format!("{at}: attachment is missing"));
            continue;
        };
        if attachment.get("contentType").and_then(Value::as_str) != Some("application/pdf") {
            findings.violation(format!("{at}: contentType must be application/pdf"));
        }
        if attachment.contains_key("url") {
            findings.violation(format!("{at}: the PDF must be inline data, not a url"));
        }
        match attachment.get("data").and_then(Value::as_str) {
            None | Some("") => {
                findings.violation(format!("{at}: data (the PDF, inline) is missing"))
            }
            Some(data) => match STANDARD.decode(data) {
                Ok(pdf) if pdf.starts_with(b"%PDF-") => {}
                Ok(_) => findings.violation(format!("{at}: data is not a PDF")),
                Err(_) => findings.violation(format!("{at}: data is not base64")),
            },
        }
    }
}
