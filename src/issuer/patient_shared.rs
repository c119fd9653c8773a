//! The PatientSharedBundle that a direct (`U`) link shares: the Bundle the CMS Kill the Clipboard
//! profile asks EHRs to accept (`https://cms.gov/fhir/StructureDefinition/patient-shared-bundle`).
//!
//! A receiver of that profile rejects an IPS `document` Bundle, so direct links carry this one:
//! - `type` `collection` with a `timestamp`; the Patient first, then every stored resource of the
//!   selected types in the record's order. No Composition: nothing here is a document.
//! - Resources are copied as every shared Bundle copies them (`super::entries`): `urn:uuid:`
//!   fullUrls, references rewritten to them, a reference to a withheld resource removed, imported
//!   narrative dropped. A relative reference to something the record does not hold (a
//!   Practitioner, a Medication outside the imported Bundle), or a `urn:` one to an entry the
//!   import skipped, loses its `reference` and keeps its `display` and `identifier`, so every
//!   reference left names an entry or a contained resource (a Medication the import moved into
//!   its statement stays there, named by `#id`).
//! - No `meta.profile`: the profile says resources should not carry one (receivers must not
//!   require it), and a stored profile claim (an IPS one, say) would be wrong here.
//! - Resources marked `entered-in-error` are left out; everything else of a selected type goes in
//!   (unlike the IPS, which has no section for an Observation that is neither a lab result nor a
//!   vital sign).
//! - The profile requires a content entry besides the Patient; [`has_content`] tells whether a
//!   Bundle has one (the issuer adds the PDFs, which count, before it asks).
//!
//! Like the IPS builder, this has no I/O: the same inputs always give the same bytes.

use std::fmt;

use serde_json::{Value, json};

use super::ResourceType;
use super::entries::{
    OutsideReferences, Targets, entered_in_error, entry, entry_uuid, namespace, selection,
    sort_out, urn,
};

/// A relative reference to a resource the record does not hold keeps only its description: the
/// profile has every reference name an entry of the Bundle.
const OUTSIDE: OutsideReferences = OutsideReferences::KeepOnlyTheDescription;
use super::fhir::PatientRecord;

/// What the patient chose and what names this Bundle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedBundleOptions<'a> {
    /// The types to share; empty means every shareable type. The Patient is always included.
    pub(crate) selected: &'a [ResourceType],
    /// A UUID naming the Bundle (`Bundle.identifier` is `urn:uuid:<bundle_id>`); it also seeds
    /// every fullUrl, so a new id gives unlinkable resource ids.
    pub(crate) bundle_id: &'a str,
    /// A FHIR instant, e.g. `2025-12-19T19:42:02.887Z`: `Bundle.timestamp`.
    pub(crate) timestamp: &'a str,
}

/// A PDF the patient shares in the Bundle, as a PatientSharedDocumentReference
/// (`https://cms.gov/fhir/StructureDefinition/patient-shared-document-reference`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedDocument<'a> {
    /// LOINC 60591-5: the FHIR-rendered summary of every other resource in the Bundle.
    RenderedSummary,
    /// LOINC 51855-5: the patient's own story, in their words. The text also goes into the
    /// resource's narrative, so a viewer can show the story without parsing the PDF.
    PatientStory { text: &'a str },
}

impl fmt::Debug for SharedDocument<'_> {
    /// The story's text is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedDocument::RenderedSummary => f.write_str("RenderedSummary"),
            SharedDocument::PatientStory { .. } => f.write_str("PatientStory([REDACTED])"),
        }
    }
}

impl SharedDocument<'_> {
    /// LOINC code and display, and the title the attachment carries.
    fn coding(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SharedDocument::RenderedSummary => {
                ("60591-5", "Patient summary Document", "Patient summary")
            }
            SharedDocument::PatientStory { .. } => ("51855-5", "Patient Note", "My story"),
        }
    }

    /// The resource's narrative (`DomainResource.text`): the story as XHTML paragraphs, status
    /// `additional` because the attachment is opaque to a reader of the structured data. The
    /// rendered summary has none: its content is the Bundle's own resources.
    fn narrative(self) -> Option<Value> {
        match self {
            SharedDocument::RenderedSummary => None,
            SharedDocument::PatientStory { text } => Some(json!({
                "status": "additional",
                "div": story_xhtml(text),
            })),
        }
    }
}

/// The story as the XHTML a FHIR narrative holds: a paragraph per blank-line-separated block,
/// `<br/>` for a line break inside one, text escaped. Characters XML cannot carry (U+FFFE,
/// U+FFFF; the input is already free of control characters) are left out.
fn story_xhtml(text: &str) -> String {
    let mut div = String::from(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#);
    let paragraphs = text
        .split("\n\n")
        .map(|paragraph| paragraph.trim_matches('\n'))
        .filter(|paragraph| !paragraph.trim().is_empty());
    for paragraph in paragraphs {
        div.push_str("<p>");
        for (index, line) in paragraph.split('\n').enumerate() {
            if index > 0 {
                div.push_str("<br/>");
            }
            for c in line.chars() {
                match c {
                    '&' => div.push_str("&amp;"),
                    '<' => div.push_str("&lt;"),
                    '>' => div.push_str("&gt;"),
                    '\u{FFFE}' | '\u{FFFF}' => {}
                    c => div.push(c),
                }
            }
        }
        div.push_str("</p>");
    }
    div.push_str("</div>");
    div
}

/// The profile's category of what a patient shares.
const PATIENT_SHARED_CATEGORY: &str = "https://cms.gov/fhir/CodeSystem/patient-shared-category";
/// `PATAST`, "patient asserted": the patient, not a clinician, stands behind the document.
const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Appends `pdf` to a Bundle made by [`build_patient_shared_bundle`] as a
/// PatientSharedDocumentReference: subject and author the Bundle's Patient, dated `date`, the PDF
/// inline (base64 `data`, never a `url`: the Bundle must stand alone).
pub(crate) fn add_document(bundle: &mut Value, document: SharedDocument, pdf: &[u8], date: &str) {
    use base64::Engine as _;
    let bundle_id = bundle["identifier"]["value"]
        .as_str()
        .and_then(|value| value.strip_prefix("urn:uuid:"))
        .unwrap_or_default()
        .to_owned();
    let patient = bundle["entry"][0]["fullUrl"].clone();
    let (code, display, title) = document.coding();
    let uuid = entry_uuid(&namespace(&bundle_id), "DocumentReference", code);
    let mut resource = json!({
        "resourceType": "DocumentReference",
        "id": uuid.to_string(),
        "meta": { "security": [{ "system": OBSERVATION_VALUE, "code": "PATAST", "display": "patient asserted" }] },
        "status": "current",
        "type": { "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] },
        "category": [{ "coding": [{ "system": PATIENT_SHARED_CATEGORY, "code": "patient-shared", "display": "Patient Shared" }] }],
        "subject": { "reference": patient },
        "author": [{ "reference": patient }],
        "date": date,
        "description": title,
        "content": [{ "attachment": {
            "contentType": "application/pdf",
            "data": base64::engine::general_purpose::STANDARD.encode(pdf),
            "title": title,
            "creation": date,
        } }],
    });
    if let Some(narrative) = document.narrative() {
        resource["text"] = narrative;
    }
    if let Some(entries) = bundle["entry"].as_array_mut() {
        entries.push(json!({ "fullUrl": urn(uuid), "resource": resource }));
    }
}

/// Builds the PatientSharedBundle of `record`, sharing only the types in `options.selected`.
pub(crate) fn build_patient_shared_bundle(
    record: &PatientRecord,
    options: &SharedBundleOptions<'_>,
) -> Value {
    let namespace = namespace(options.bundle_id);
    let selected = selection(options.selected);
    let patient_uuid = entry_uuid(&namespace, "Patient", record.patient_id());
    let mut targets = Targets::new();
    targets.insert(
        format!("Patient/{}", record.patient_id()),
        Some(urn(patient_uuid)),
    );
    let included = sort_out(record, &namespace, &mut targets, |resource_type, source| {
        (selected.contains(&resource_type) && !entered_in_error(source)).then_some(())
    });
    let mut entries = Vec::with_capacity(included.len() + 1);
    entries.push(without_profiles(entry(
        patient_uuid,
        &record.patient,
        &targets,
        OUTSIDE,
    )));
    entries.extend(
        included
            .into_iter()
            .map(|(uuid, source, ())| without_profiles(entry(uuid, source, &targets, OUTSIDE))),
    );
    json!({
        "resourceType": "Bundle",
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", options.bundle_id) },
        "type": "collection",
        "timestamp": options.timestamp,
        "entry": entries,
    })
}

/// Whether the Bundle has an entry besides the Patient, as the profile requires.
pub(crate) fn has_content(bundle: &Value) -> bool {
    bundle["entry"]
        .as_array()
        .is_some_and(|entries| entries.len() > 1)
}

/// The entry with `meta.profile` removed from its resource and the resources it contains, and a
/// `meta` left empty by that removed too (FHIR forbids empty elements).
fn without_profiles(mut entry: Value) -> Value {
    let resource = &mut entry["resource"];
    drop_profile(resource);
    if let Some(Value::Array(contained)) = resource.get_mut("contained") {
        contained.iter_mut().for_each(drop_profile);
    }
    entry
}

fn drop_profile(resource: &mut Value) {
    let Some(fields) = resource.as_object_mut() else {
        return;
    };
    let now_empty = match fields.get_mut("meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.remove("profile");
            meta.is_empty()
        }
        None => false,
    };
    if now_empty {
        fields.remove("meta");
    }
}

#[cfg(test)]
mod tests;
