//! The account of an import: what the record holds and what the Bundle had besides, counted by
//! type, in one line a person reads (`import-bundle` prints it on stderr).
//!
//! Like every [`super::ImportError`], it names only resource types from fixed lists and counts:
//! nothing from the Bundle's content.

use std::collections::BTreeMap;
use std::fmt;

use super::ImportError;
use crate::issuer::ResourceType;

/// What an import took and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Imported resources per type, at the type's position in [`ResourceType::EMBEDDED`].
    imported: [usize; ResourceType::EMBEDDED.len()],
    /// Medications that went into the `contained` of the statements naming them.
    contained_medications: usize,
    /// Entries left out, by resource type (or [`super::REQUEST_WITHOUT_RESOURCE`]): how many,
    /// and the index of the first. `--strict` refuses a Bundle with any.
    left_over: BTreeMap<&'static str, (usize, usize)>,
    /// Whether the Bundle was a document whose Composition was skipped. That is no loss, so it
    /// is not left over: the Composition indexes the document's entries, which are imported,
    /// and each shared Bundle is built without it (the IPS writes its own).
    document_composition: bool,
}

impl ImportReport {
    pub(super) fn import(&mut self, resource_type: ResourceType) {
        if let Some(at) = ResourceType::EMBEDDED
            .iter()
            .position(|known| *known == resource_type)
        {
            self.imported[at] += 1;
        }
    }

    pub(super) fn contain_medication(&mut self) {
        self.contained_medications += 1;
    }

    pub(super) fn skip(&mut self, what: &'static str, index: usize) {
        self.left_over
            .entry(what)
            .and_modify(|(count, _)| *count += 1)
            .or_insert((1, index));
    }

    pub(super) fn skip_document_composition(&mut self) {
        self.document_composition = true;
    }

    /// The refusal of `--strict`, when anything is left over.
    pub(super) fn not_importable(&self) -> Option<ImportError> {
        let first = self.left_over.values().map(|(_, first)| *first).min()?;
        let left_over = most_first(
            self.left_over
                .iter()
                .map(|(what, (count, _))| (*what, *count))
                .collect(),
        );
        Some(ImportError::NotImportable { first, left_over })
    }

    /// Imported resources per type, the Patient first; types with none are left out.
    pub fn imported(&self) -> Vec<(&'static str, usize)> {
        ResourceType::EMBEDDED
            .iter()
            .zip(self.imported)
            .filter(|(_, count)| *count > 0)
            .map(|(resource_type, count)| (resource_type.as_str(), count))
            .collect()
    }

    /// How many of the Bundle's Medications went into the statements that name them.
    pub fn contained_medications(&self) -> usize {
        self.contained_medications
    }

    /// What the record leaves out, most first (then by name): resource type names, or "request
    /// without a resource", with their counts. A document's Composition is among them.
    pub fn skipped(&self) -> Vec<(&'static str, usize)> {
        let mut skipped: BTreeMap<&'static str, usize> = self
            .left_over
            .iter()
            .map(|(what, (count, _))| (*what, *count))
            .collect();
        if self.document_composition {
            *skipped.entry("Composition").or_default() += 1;
        }
        most_first(skipped.into_iter().collect())
    }
}

/// `imported: 1 Patient, 2 Condition, 2 MedicationStatement, 2 Medication (contained in the
/// statements that name them); skipped: 2 Organization, 1 Composition, 1 Practitioner`.
impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "imported: {}", counts(&self.imported()))?;
        if self.contained_medications > 0 {
            write!(f, ", {} {MEDICATION_CONTAINED}", self.contained_medications)?;
        }
        match self.skipped().as_slice() {
            [] => write!(f, "; skipped: nothing"),
            skipped => write!(f, "; skipped: {}", counts(skipped)),
        }
    }
}

const MEDICATION_CONTAINED: &str = "Medication (contained in the statements that name them)";

/// Sorted by count, largest first, then by name.
fn most_first(mut counted: Vec<(&'static str, usize)>) -> Vec<(&'static str, usize)> {
    counted.sort_by(|(a, a_count), (b, b_count)| b_count.cmp(a_count).then(a.cmp(b)));
    counted
}

/// `2 Organization, 1 Practitioner`.
pub(super) fn counts(counted: &[(&'static str, usize)]) -> String {
    let parts: Vec<String> = counted
        .iter()
        .map(|(what, count)| format!("{count} {what}"))
        .collect();
    parts.join(", ")
}
