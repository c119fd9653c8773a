//! The Medications an imported Bundle's statements name, moved into those statements.
//!
//! The record holds the patient's own resources, not the Medications that MedicationStatements and
//! MedicationRequests name by `medicationReference`. Without its Medication, a statement with no
//! `medicationCodeableConcept` no longer says which medicine it is about (the HL7 IPS example's
//! statements are like that). FHIR's way to carry a resource that only makes sense inside another
//! is `contained`: the Medication is copied into the statement and `medicationReference` points at
//! `#id`. The statement then stands alone in the record, in both shared Bundles, in the viewer and
//! in the PDF, and nothing downstream needs to know about Medications.
//!
//! - The copy gets a local id (`medication`, else `medication-2`, ...: one no other contained
//!   resource of the statement has), not the Bundle's: a stored id never leaves the gateway
//!   (`super::super::entries` gives every shared resource a fresh one for the same reason).
//! - FHIR's rules for contained resources hold: no narrative, no `meta.versionId` or
//!   `meta.lastUpdated` (dom-4). A Medication that has contained resources of its own (dom-2) or
//!   security labels (dom-5: they are its own, and would not apply to the statement) is not moved;
//!   its reference stays as it is, like one to a Medication outside the Bundle, and it is skipped.
//! - A Medication named by two statements goes into both; one named by none is skipped.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::ImportReport;
use crate::issuer::ResourceType;

/// The resource type name, as the R4 list spells it.
pub(super) const MEDICATION: &str = "Medication";

/// The Medication entries of a Bundle, by every form a reference may name them with.
#[derive(Debug, Default)]
pub(super) struct Medications {
    entries: Vec<Entry>,
    /// An entry's `fullUrl`, and `Medication/id`, to its position in `entries`.
    by_reference: HashMap<String, usize>,
}

#[derive(Debug)]
struct Entry {
    /// Its index in `Bundle.entry`, for the report.
    index: usize,
    resource: Value,
    /// Whether it went into at least one statement.
    contained: bool,
}

impl Medications {
    /// Keeps a Medication entry whose `id` the importer has checked (and its depth with it).
    pub(super) fn add(&mut self, index: usize, id: &str, full_url: Option<&str>, resource: &Value) {
        let at = self.entries.len();
        self.entries.push(Entry {
            index,
            resource: resource.clone(),
            contained: false,
        });
        // The first entry to claim a name keeps it, as the first of repeated ids does.
        self.by_reference
            .entry(format!("{MEDICATION}/{id}"))
            .or_insert(at);
        if let Some(full_url) = full_url {
            self.by_reference.entry(full_url.to_owned()).or_insert(at);
        }
    }

    /// Moves the Medication that `resource`'s `medicationReference` names, if it is one of the
    /// Bundle's, into `resource.contained`; whether it did. Only MedicationStatement and
    /// MedicationRequest have the element among the shareable types.
    pub(super) fn contain_in(&mut self, resource_type: ResourceType, resource: &mut Value) -> bool {
        if !matches!(
            resource_type,
            ResourceType::MedicationStatement | ResourceType::MedicationRequest
        ) {
            return false;
        }
        let Some(reference) = resource
            .get("medicationReference")
            .and_then(|reference| reference.get("reference"))
            .and_then(Value::as_str)
        else {
            return false;
        };
        // `Medication/id/_history/2` names a version of `Medication/id`.
        let unversioned = reference.split("/_history/").next().unwrap_or(reference);
        let Some(&at) = self.by_reference.get(unversioned) else {
            return false;
        };
        let entry = &mut self.entries[at];
        let Some(mut copy) = containable(&entry.resource) else {
            return false;
        };
        let Some(fields) = resource.as_object_mut() else {
            return false;
        };
        let contained = fields
            .entry("contained")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(contained) = contained else {
            return false; // A malformed `contained`: left alone, as the reference is.
        };
        let id = free_id(contained);
        copy.insert("id".to_owned(), Value::String(id.clone()));
        contained.push(Value::Object(copy));
        if let Some(Value::Object(reference)) = fields.get_mut("medicationReference") {
            reference.insert("reference".to_owned(), Value::String(format!("#{id}")));
        }
        entry.contained = true;
        true
    }

    /// Counts the Medications that went into a statement; the others are skipped.
    pub(super) fn report_to(self, report: &mut ImportReport) {
        for entry in self.entries {
            if entry.contained {
                report.contain_medication();
            } else {
                report.skip(MEDICATION, entry.index);
            }
        }
    }
}

/// The Medication as a contained resource may be, or `None` when it cannot be one.
fn containable(medication: &Value) -> Option<Map<String, Value>> {
    let fields = medication.as_object()?;
    let meta = fields.get("meta");
    let labelled = meta.is_some_and(|meta| meta.get("security").is_some_and(|s| !s.is_null()));
    if fields.contains_key("contained") || labelled {
        return None;
    }
    let mut copy = fields.clone();
    copy.remove("text");
    let meta_left_empty = match copy.get_mut("meta") {
        Some(Value::Object(meta)) => {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            meta.is_empty()
        }
        _ => false,
    };
    if meta_left_empty {
        copy.remove("meta"); // FHIR forbids empty elements.
    }
    Some(copy)
}

/// `medication`, or the first of `medication-2`, `medication-3`, ... that no resource in
/// `contained` has as its id.
fn free_id(contained: &[Value]) -> String {
    let taken: HashSet<&str> = contained
        .iter()
        .filter_map(|resource| resource.get("id")?.as_str())
        .collect();
    let mut n = 1;
    loop {
        let id = match n {
            1 => "medication".to_owned(),
            _ => format!("medication-{n}"),
        };
        // Ends: `taken` is finite.
        if !taken.contains(id.as_str()) {
            return id;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fresh_id_skips_those_taken() {
        assert_eq!(free_id(&[]), "medication");
        let taken = [json!({"id": "medication"}), json!({"id": "medication-2"})];
        assert_eq!(free_id(&taken), "medication-3");
        assert_eq!(free_id(&[json!({"id": "medication-2"})]), "medication");
    }

    #[test]
    fn a_contained_copy_drops_what_fhir_forbids_there() {
        let medication = json!({
            "resourceType": "Medication",
            "id": "m1",
            "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"},
            "text": {"status": "generated", "div": "<div>imported</div>"},
            "code": {"text": "Metformin 500 mg tablet"}
        });
        let copy = containable(&medication).expect("containable");
        assert_eq!(
            Value::Object(copy),
            json!({"resourceType": "Medication", "id": "m1", "code": {"text": "Metformin 500 mg tablet"}})
        );
        let profiled =
            json!({"resourceType": "Medication", "meta": {"profile": ["x"], "versionId": "1"}});
        assert_eq!(
            containable(&profiled).expect("containable")["meta"],
            json!({"profile": ["x"]})
        );
        for refused in [
            json!({"resourceType": "Medication", "contained": [{"resourceType": "Substance", "id": "s"}]}),
            json!({"resourceType": "Medication", "meta": {"security": [{"code": "R"}]}}),
        ] {
            assert!(containable(&refused).is_none(), "{refused}");
        }
    }
}
