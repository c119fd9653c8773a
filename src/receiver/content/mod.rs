//! The content (bundle stage): what a decrypted file must be. Two profiles:
//!
//! - [`ips`]: an International Patient Summary document (`Bundle.type` `document`), what
//!   passcode links carry (b.well's and the gateway's);
//! - [`patient_shared`]: the Kill the Clipboard PatientSharedBundle (`collection`), what
//!   direct (`U`) links carry, with the rules of its DocumentReferences (PDFs).
//!
//! Rules a sender SHALL meet are violations; SHOULDs are warnings. The checks read the JSON
//! along fixed paths and walk references with an explicit stack (never recursion on depth the
//! sender controls), and they share no code with the gateway's own builders, so a mistake in a
//! builder cannot hide in a helper its check shares. Messages name resource types, entry
//! indexes and codes, never the record's content (names, dates of birth, notes).

pub mod ips;
pub mod patient_shared;

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Profile;

/// The most violations (and warnings) kept: a hostile Bundle with a million bad entries
/// makes a report of this many lines and a count of the rest, not a million lines.
const MAX_MESSAGES: usize = 20;

pub(crate) const LOINC: &str = "http://loinc.org";

/// Which profile the content was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    IpsDocument,
    PatientSharedBundle,
}

impl std::fmt::Display for ContentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IpsDocument => "IPS document",
            Self::PatientSharedBundle => "PatientSharedBundle",
        })
    }
}

/// What a conforming content holds, in numbers (no record content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentSummary {
    pub kind: ContentKind,
    pub entries: usize,
    /// How many resources of each type, by name.
    pub resource_types: BTreeMap<String, usize>,
    /// The LOINC type of each DocumentReference (a PatientSharedBundle's PDFs).
    pub documents: Vec<String>,
    pub warnings: Vec<String>,
}

/// Why the content does not conform, or could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", kind.map(|kind| format!("not a valid {kind}: ")).unwrap_or_default(), violations.join("; "))]
pub struct ContentError {
    /// The profile it was judged by, when one applied.
    pub kind: Option<ContentKind>,
    pub violations: Vec<String>,
    pub warnings: Vec<String>,
}

/// Judges `content` (a decrypted file) by `profile`: for Kill the Clipboard, a
/// PatientSharedBundle; for plain SHL, whichever of the two its `Bundle.type` claims.
/// `content_type` is the file's declared media type, when known.
pub fn check(
    content: &Value,
    content_type: Option<&str>,
    profile: Profile,
) -> Result<ContentSummary, ContentError> {
    let refuse = |message: String| ContentError {
        kind: None,
        violations: vec![message],
        warnings: Vec::new(),
    };
    if let Some(content_type) = content_type
        && !content_type.eq_ignore_ascii_case("application/fhir+json")
    {
        return Err(refuse(format!(
            "content type {content_type:.60} is not one inspected here (application/fhir+json)"
        )));
    }
    let Some(bundle) = content.as_object() else {
        return Err(refuse("the content is not a JSON object".to_owned()));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(refuse("the content is not a FHIR Bundle".to_owned()));
    }
    let kind = match (profile, bundle.get("type").and_then(Value::as_str)) {
        (Profile::Ktc, _) | (Profile::Shl, Some("collection")) => ContentKind::PatientSharedBundle,
        (Profile::Shl, Some("document")) => ContentKind::IpsDocument,
        (Profile::Shl, other) => {
            return Err(refuse(format!(
                "Bundle.type {} is neither document (IPS) nor collection (PatientSharedBundle)",
                other.map_or_else(
                    || "is missing and".to_owned(),
                    |found| format!("{found:.30}")
                )
            )));
        }
    };
    let mut findings = Findings::default();
    let summary = match kind {
        ContentKind::IpsDocument => ips::check(bundle, &mut findings),
        ContentKind::PatientSharedBundle => patient_shared::check(bundle, &mut findings),
    };
    findings.into_result(kind, summary)
}

/// Violations and warnings as they are found, each list capped at [`MAX_MESSAGES`].
#[derive(Debug, Default)]
pub(crate) struct Findings {
    violations: Vec<String>,
    warnings: Vec<String>,
    dropped_violations: usize,
    dropped_warnings: usize,
}

impl Findings {
    pub(crate) fn violation(&mut self, message: impl Into<String>) {
        if self.violations.len() < MAX_MESSAGES {
            self.violations.push(message.into());
        } else {
            self.dropped_violations += 1;
        }
    }

    pub(crate) fn warning(&mut self, message: impl Into<String>) {
        if self.warnings.len() < MAX_MESSAGES {
            self.warnings.push(message.into());
        } else {
            self.dropped_warnings += 1;
        }
    }

    fn into_result(
        mut self,
        kind: ContentKind,
        summary: Tally,
    ) -> Result<ContentSummary, ContentError> {
        if self.dropped_violations > 0 {
            self.violations
                .push(format!("and {} more violations", self.dropped_violations));
        }
        if self.dropped_warnings > 0 {
            self.warnings
                .push(format!("and {} more warnings", self.dropped_warnings));
        }
        if self.violations.is_empty() {
            Ok(ContentSummary {
                kind,
                entries: summary.entries,
                resource_types: summary.resource_types,
                documents: summary.documents,
                warnings: self.warnings,
            })
        } else {
            Err(ContentError {
                kind: Some(kind),
                violations: self.violations,
                warnings: self.warnings,
            })
        }
    }
}

/// What a profile's check counted on the way.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    entries: usize,
    resource_types: BTreeMap<String, usize>,
    documents: Vec<String>,
}

/// One entry of `Bundle.entry` that has a resource with a type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub(crate) index: usize,
    pub(crate) full_url: Option<&'a str>,
    pub(crate) resource_type: &'a str,
    pub(crate) resource: &'a Map<String, Value>,
}

impl Entry<'_> {
    fn id(&self) -> Option<&str> {
        self.resource.get("id").and_then(Value::as_str)
    }
}

/// The Bundle's entries that have a typed resource, counted into `tally`; the others, and
/// duplicate or missing `fullUrl`s, are violations.
pub(crate) fn entries<'a>(
    bundle: &'a Map<String, Value>,
    findings: &mut Findings,
    tally: &mut Tally,
) -> Vec<Entry<'a>> {
    let Some(list) = bundle.get("entry").and_then(Value::as_array) else {
        findings.violation("Bundle.entry is missing");
        return Vec::new();
    };
    tally.entries = list.len();
    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let resource = entry.get("resource").and_then(Value::as_object);
        let resource_type = resource
            .and_then(|resource| resource.get("resourceType"))
            .and_then(Value::as_str);
        let (Some(resource), Some(resource_type)) = (resource, resource_type) else {
            findings.violation(format!(
                "entry[{index}] has no resource with a resourceType"
            ));
            continue;
        };
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        match full_url {
            None => findings.violation(format!("entry[{index}] ({resource_type}) has no fullUrl")),
            Some(full_url) if !seen.insert(full_url) => {
                findings.violation(format!("entry[{index}] repeats another entry's fullUrl"));
            }
            Some(_) => {}
        }
        let name = resource_type.chars().take(64).collect::<String>();
        *tally.resource_types.entry(name).or_default() += 1;
        entries.push(Entry {
            index,
            full_url,
            resource_type,
            resource,
        });
    }
    entries
}

/// Checks `Bundle.timestamp` is a FHIR instant (RFC 3339 with a zone).
pub(crate) fn check_timestamp(bundle: &Map<String, Value>, findings: &mut Findings) {
    match bundle.get("timestamp").and_then(Value::as_str) {
        None => findings.violation("Bundle.timestamp is missing"),
        Some(text) if OffsetDateTime::parse(text, &Rfc3339).is_err() => {
            findings.violation("Bundle.timestamp is not an instant (RFC 3339 with a time zone)");
        }
        Some(_) => {}
    }
}

/// The one Patient entry, or a violation naming how many there are.
pub(crate) fn the_patient<'a>(entries: &[Entry<'a>], findings: &mut Findings) -> Option<Entry<'a>> {
    let patients: Vec<&Entry<'a>> = entries
        .iter()
        .filter(|entry| entry.resource_type == "Patient")
        .collect();
    match patients.as_slice() {
        [patient] => Some(**patient),
        found => {
            findings.violation(format!(
                "the Bundle must hold exactly one Patient (found {})",
                found.len()
            ));
            None
        }
    }
}

/// Whether `reference` names `target`: its `fullUrl`, or `Type/id` of its resource.
pub(crate) fn refers_to(reference: Option<&str>, target: &Entry<'_>) -> bool {
    let Some(reference) = reference else {
        return false;
    };
    if target.full_url == Some(reference) {
        return true;
    }
    reference
        .split_once('/')
        .is_some_and(|(resource_type, id)| {
            resource_type == target.resource_type && Some(id) == target.id()
        })
}

/// The `reference` of a Reference object at `value`.
pub(crate) fn reference_of(value: Option<&Value>) -> Option<&str> {
    value?.get("reference")?.as_str()
}

/// Whether `concept` (a CodeableConcept) has a coding of `system` with one of `codes`; the
/// first such code.
pub(crate) fn coded<'v>(
    concept: Option<&'v Value>,
    system: &str,
    codes: &[&str],
) -> Option<&'v str> {
    concept?
        .get("coding")?
        .as_array()?
        .iter()
        .filter(|coding| coding.get("system").and_then(Value::as_str) == Some(system))
        .filter_map(|coding| coding.get("code").and_then(Value::as_str))
        .find(|code| codes.contains(code))
}

/// Warns about references no entry of the Bundle answers (relative `Type/id` or `urn:`
/// references to resources the sender left out), which a receiver cannot follow. Walks every
/// resource with an explicit stack: JSON depth is the sender's choice.
pub(crate) fn check_references(entries: &[Entry<'_>], findings: &mut Findings) {
    // Every name an entry answers to, once: a lookup per reference, not a scan of the entries.
    let known: HashSet<String> = entries
        .iter()
        .flat_map(|entry| {
            let typed = entry.id().map(|id| format!("{}/{id}", entry.resource_type));
            entry.full_url.map(str::to_owned).into_iter().chain(typed)
        })
        .collect();
    let mut dangling = 0usize;
    let mut where_found = Vec::new();
    for entry in entries {
        let mut stack: Vec<&Value> = entry.resource.values().collect();
        let mut found_here = false;
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(fields) => {
                    if let Some(reference) = fields.get("reference").and_then(Value::as_str)
                        && !resolvable(reference, &known)
                    {
                        dangling += 1;
                        found_here = true;
                    }
                    stack.extend(fields.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        if found_here && where_found.len() < 5 && !where_found.contains(&entry.resource_type) {
            where_found.push(entry.resource_type);
        }
    }
    if dangling > 0 {
        findings.warning(format!(
            "{dangling} references resolve to no entry of the Bundle (in {})",
            where_found.join(", ")
        ));
    }
}

/// A reference a receiver can follow: to an entry, to a contained resource, or absolute.
fn resolvable(reference: &str, known: &HashSet<String>) -> bool {
    reference.starts_with('#')
        || reference.starts_with("https://")
        || reference.starts_with("http://")
        || known.contains(reference)
}

#[cfg(test)]
mod tests;
