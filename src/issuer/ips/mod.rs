//! The International Patient Summary (IPS) document that a health link shares.
//!
//! A receiver (a clinician's viewer, the CMS reader) expects a FHIR `document` Bundle shaped by the
//! IPS implementation guide: one Composition first, one Patient, sections with fixed LOINC codes.
//! This module turns a [`PatientRecord`] and the patient's choice of resource types into exactly
//! that, with no I/O and no error path: the same inputs always give the same bytes, so a document
//! can be rebuilt and compared.
//!
//! Choices the guide leaves open, made here:
//! - Resources are copied as `super::entries` copies them for any shared Bundle: new ids,
//!   references rewritten to fullUrls (a reference to a stored resource this document leaves out,
//!   such as a type the patient did not select or one that fits no section, is removed with its
//!   `display`), imported narrative dropped. References to anything else the record does not hold
//!   (a Practitioner, a Medication) are kept as they are.
//! - Coverage has no IPS section: it is an entry that no section references.
//! - Resources marked `entered-in-error` are left out, and so are Observations that are neither
//!   `laboratory` nor `vital-signs` (the two sections Observations can go to).
//! - The Composition and section narratives are generated from structured fields (see
//!   `narrative`).

mod narrative;

use std::collections::HashSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::issuer::ResourceType;
use crate::issuer::fhir::PatientRecord;

use super::entries::{
    OutsideReferences, Targets, entered_in_error, entry, entry_uuid, namespace, selection,
    sort_out, urn,
};

/// What the patient chose and what names this document.
#[derive(Debug, Clone, Copy)]
pub struct IpsOptions<'a> {
    /// The types to share; empty means every shareable type. The Patient is always included.
    pub selected: &'a [ResourceType],
    /// A UUID naming the document (`Bundle.identifier` is `urn:uuid:<bundle_id>`); it also seeds
    /// every fullUrl, so a new id gives unlinkable resource ids.
    pub bundle_id: &'a str,
    /// A FHIR instant, e.g. `2025-12-19T19:42:02.887Z`: `Bundle.timestamp` and `Composition.date`.
    pub timestamp: &'a str,
    pub title: &'a str,
}

const LOINC: &str = "http://loinc.org";
const EMPTY_REASON: &str = "http://terminology.hl7.org/CodeSystem/list-empty-reason";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The IPS sections this gateway fills, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Problems,
    Allergies,
    Medications,
    Immunizations,
    Procedures,
    Results,
    VitalSigns,
    PlanOfCare,
}

impl Section {
    const ORDER: [Section; 8] = [
        Section::Problems,
        Section::Allergies,
        Section::Medications,
        Section::Immunizations,
        Section::Procedures,
        Section::Results,
        Section::VitalSigns,
        Section::PlanOfCare,
    ];

    /// Title, LOINC code and the code's display.
    fn heading(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Section::Problems => ("Problems", "11450-4", "Problem list - Reported"),
            Section::Allergies => (
                "Allergies and intolerances",
                "48765-2",
                "Allergies and adverse reactions Document",
            ),
            Section::Medications => (
                "Medication summary",
                "10160-0",
                "History of Medication use Narrative",
            ),
            Section::Immunizations => (
                "Immunizations",
                "11369-6",
                "History of Immunization Narrative",
            ),
            Section::Procedures => (
                "History of procedures",
                "47519-4",
                "History of Procedures Document",
            ),
            Section::Results => (
                "Results",
                "30954-2",
                "Relevant diagnostic tests/laboratory data Narrative",
            ),
            Section::VitalSigns => ("Vital signs", "8716-3", "Vital signs"),
            Section::PlanOfCare => ("Plan of care", "18776-5", "Plan of care note"),
        }
    }

    fn title(self) -> &'static str {
        self.heading().0
    }

    /// The IPS requires these three even when empty (with an `emptyReason`).
    fn is_mandatory(self) -> bool {
        matches!(
            self,
            Section::Problems | Section::Allergies | Section::Medications
        )
    }

    /// The types whose resources the section holds.
    fn resource_types(self) -> &'static [ResourceType] {
        match self {
            Section::Problems => &[ResourceType::Condition],
            Section::Allergies => &[ResourceType::AllergyIntolerance],
            Section::Medications => &[
                ResourceType::MedicationStatement,
                ResourceType::MedicationRequest,
            ],
            Section::Immunizations => &[ResourceType::Immunization],
            Section::Procedures => &[ResourceType::Procedure],
            Section::Results | Section::VitalSigns => &[ResourceType::Observation],
            Section::PlanOfCare => &[ResourceType::CarePlan],
        }
    }
}

/// Why a mandatory section has no entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyReason {
    /// The patient did not select the section's resource type.
    Withheld,
    /// Selected, but nothing is on file.
    Unavailable,
}

impl EmptyReason {
    /// Code and display in the `list-empty-reason` code system.
    fn coding(self) -> (&'static str, &'static str) {
        match self {
            EmptyReason::Withheld => ("withheld", "Information Withheld"),
            EmptyReason::Unavailable => ("unavailable", "Unavailable"),
        }
    }
}

/// Where an included resource goes; `None` from [`placement`] means it is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    In(Section),
    /// Coverage: carried in the document, summarised by no section.
    Unsectioned,
}

impl Placement {
    fn rank(self) -> usize {
        match self {
            // Declaration order is document order.
            Placement::In(section) => section as usize,
            Placement::Unsectioned => Section::ORDER.len(),
        }
    }
}

/// One resource of the record chosen for the document.
struct Included<'r> {
    source: &'r Value,
    placement: Placement,
    uuid: Uuid,
}

/// Builds the IPS `document` Bundle for `record`, sharing only the types in `options.selected`.
pub fn build_ips(record: &PatientRecord, options: &IpsOptions<'_>) -> Value {
    let namespace = namespace(options.bundle_id);
    let selected = selection(options.selected);
    let patient_uuid = entry_uuid(&namespace, "Patient", record.patient_id());
    let mut targets = Targets::new();
    targets.insert(
        format!("Patient/{}", record.patient_id()),
        Some(urn(patient_uuid)),
    );
    let included = choose(record, &selected, &namespace, &mut targets);

    let sections = sections(&included, &selected);
    let composition = composition(
        options,
        Uuid::new_v5(&namespace, b"Composition"),
        record,
        patient_uuid,
        &included,
        &sections,
    );
    let mut entries = vec![
        composition,
        entry(
            patient_uuid,
            &record.patient,
            &targets,
            OutsideReferences::Keep,
        ),
    ];
    entries.extend(included.iter().map(|chosen| {
        entry(
            chosen.uuid,
            chosen.source,
            &targets,
            OutsideReferences::Keep,
        )
    }));
    json!({
        "resourceType": "Bundle",
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", options.bundle_id) },
        "type": "document",
        "timestamp": options.timestamp,
        "entry": entries,
    })
}

/// The record's resources that go into the document, in document order, and every stored
/// resource's fate in `targets` (its fullUrl, or `None` when left out).
fn choose<'r>(
    record: &'r PatientRecord,
    selected: &HashSet<ResourceType>,
    namespace: &Uuid,
    targets: &mut Targets,
) -> Vec<Included<'r>> {
    let mut included: Vec<Included<'r>> =
        sort_out(record, namespace, targets, |resource_type, source| {
            selected
                .contains(&resource_type)
                .then(|| placement(resource_type, source))
                .flatten()
        })
        .into_iter()
        .map(|(uuid, source, placement)| Included {
            source,
            placement,
            uuid,
        })
        .collect();
    // Stable: within a section, the record's order is kept.
    included.sort_by_key(|chosen| chosen.placement.rank());
    included
}

fn placement(resource_type: ResourceType, resource: &Value) -> Option<Placement> {
    if entered_in_error(resource) {
        return None;
    }
    let section = match resource_type {
        ResourceType::Patient => return None,
        ResourceType::Coverage => return Some(Placement::Unsectioned),
        ResourceType::Observation => observation_section(resource)?,
        ResourceType::Condition => Section::Problems,
        ResourceType::AllergyIntolerance => Section::Allergies,
        ResourceType::MedicationStatement | ResourceType::MedicationRequest => Section::Medications,
        ResourceType::Immunization => Section::Immunizations,
        ResourceType::Procedure => Section::Procedures,
        ResourceType::CarePlan => Section::PlanOfCare,
    };
    Some(Placement::In(section))
}

/// Vital signs first: an Observation tagged with both categories is a vital sign measured by a lab.
fn observation_section(observation: &Value) -> Option<Section> {
    let categories = observation["category"].as_array()?;
    let has = |wanted: &str| {
        categories
            .iter()
            .filter_map(|category| category["coding"].as_array())
            .flatten()
            .any(|coding| {
                // Some sources omit the system; the code is unambiguous for placing a section.
                let system_ok =
                    coding["system"].is_null() || coding["system"] == OBSERVATION_CATEGORY;
                system_ok && coding["code"] == wanted
            })
    };
    if has("vital-signs") {
        Some(Section::VitalSigns)
    } else if has("laboratory") {
        Some(Section::Results)
    } else {
        None
    }
}

/// What a section holds: its entries, or why it is empty.
enum Content<'a, 'r> {
    Entries(Vec<&'a Included<'r>>),
    Empty(EmptyReason),
}

/// The sections that appear, in order: mandatory ones always, the others only with entries.
fn sections<'a, 'r>(
    included: &'a [Included<'r>],
    selected: &HashSet<ResourceType>,
) -> Vec<(Section, Content<'a, 'r>)> {
    let mut sections = Vec::new();
    for section in Section::ORDER {
        let members: Vec<&Included<'r>> = included
            .iter()
            .filter(|chosen| chosen.placement == Placement::In(section))
            .collect();
        let content = if !members.is_empty() {
            Content::Entries(members)
        } else if !section.is_mandatory() {
            continue;
        } else if section
            .resource_types()
            .iter()
            .all(|resource_type| selected.contains(resource_type))
        {
            // Everything the section could hold was asked for, and nothing is on file.
            Content::Empty(EmptyReason::Unavailable)
        } else {
            Content::Empty(EmptyReason::Withheld)
        };
        sections.push((section, content));
    }
    sections
}

fn section_json(section: Section, content: &Content<'_, '_>) -> Value {
    let (title, code, display) = section.heading();
    let mut json = json!({
        "title": title,
        "code": { "coding": [{ "system": LOINC, "code": code, "display": display }] },
    });
    match content {
        Content::Entries(members) => {
            let sources: Vec<&Value> = members.iter().map(|chosen| chosen.source).collect();
            json["text"] = narrative::generated(narrative::section_div(section, &sources));
            json["entry"] = members
                .iter()
                .map(|chosen| json!({ "reference": urn(chosen.uuid) }))
                .collect();
        }
        Content::Empty(reason) => {
            let (code, display) = reason.coding();
            json["text"] = narrative::generated(narrative::empty_div(*reason));
            json["emptyReason"] =
                json!({ "coding": [{ "system": EMPTY_REASON, "code": code, "display": display }] });
        }
    }
    json
}

fn composition(
    options: &IpsOptions<'_>,
    uuid: Uuid,
    record: &PatientRecord,
    patient_uuid: Uuid,
    included: &[Included<'_>],
    sections: &[(Section, Content<'_, '_>)],
) -> Value {
    let coverage = included
        .iter()
        .filter(|chosen| chosen.placement == Placement::Unsectioned)
        .count();
    let summary = narrative::Summary {
        title: options.title,
        timestamp: options.timestamp,
        patient: &record.patient,
        sections: sections
            .iter()
            .map(|(section, content)| (section.title(), summary_line(content)))
            .collect(),
        coverage,
    };
    let patient = json!({ "reference": urn(patient_uuid) });
    let resource = json!({
        "resourceType": "Composition",
        "id": uuid.to_string(),
        "text": narrative::generated(narrative::composition_div(&summary)),
        "status": "final",
        "type": { "coding": [{ "system": LOINC, "code": "60591-5", "display": "Patient summary Document" }] },
        "subject": patient,
        "date": options.timestamp,
        // The patient shares their own summary, so they are its author.
        "author": [patient],
        "title": options.title,
        "section": sections.iter().map(|(section, content)| section_json(*section, content)).collect::<Vec<_>>(),
    });
    json!({ "fullUrl": urn(uuid), "resource": resource })
}

fn summary_line(content: &Content<'_, '_>) -> narrative::Line {
    match content {
        Content::Entries(members) => narrative::Line::Entries(members.len()),
        Content::Empty(reason) => narrative::Line::Empty(*reason),
    }
}

#[cfg(test)]
mod tests;
