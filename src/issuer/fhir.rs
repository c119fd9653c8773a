//! A patient's FHIR data as the embedded issuer stores it, and its import from a FHIR Bundle.
//!
//! The IPS builder (`super::ips`) trusts a [`PatientRecord`] to hold one Patient and only resources
//! it knows how to place, each with a usable `id`: checking that once, here, keeps the builder free of
//! error paths.
//!
//! Real Bundles (an IPS document, a transaction from an EHR export, a search result) carry more
//! than the patient's shareable data: Practitioners, Organizations, Encounters, a document's
//! Composition. [`PatientRecord::import`] takes the shareable resources, and either skips the rest
//! and says so in an [`ImportReport`] ([`Unimportable::Skip`]) or refuses the Bundle
//! ([`Unimportable::Refuse`], `import-bundle --strict`). What it takes is checked as strictly as
//! ever: a resource it would import that is malformed refuses the Bundle, because repairing or
//! dropping it would share less than the patient believes they share. A Medication that a
//! MedicationStatement or MedicationRequest names is not lost with the other supporting resources:
//! it travels inside the statement as a contained resource (`medication`).
//!
//! Every [`ImportError`] message, and the report, is safe to log and to show: it names entry
//! indexes, field names and resource type names taken from fixed lists, never a value from the
//! bundle, which is health data.

mod medication;
mod report;

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::issuer::ResourceType;

pub use report::ImportReport;

/// More entries than any one patient's summary needs; the cap bounds the work an import can cause.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// Nesting allowed inside one resource (the resource object is level 1). Real resources stay under
/// 15; the cap keeps the recursive walks here and in the IPS builder far from the stack's limit.
/// It holds after a Medication is put in a resource's `contained` too.
pub(crate) const MAX_DEPTH: usize = 32;

/// One patient's resources, as stored: the Patient plus resources of the shareable types, each a
/// FHIR R4 JSON object with `resourceType` and `id`.
///
/// References between them use the relative form `Type/id`; a Medication a statement names is in
/// that statement's `contained`, referenced as `#id`.
pub struct PatientRecord {
    pub(crate) patient: Value,
    pub(crate) resources: Vec<Value>,
}

/// Counts only: the record is health data and must not reach logs through `{:?}`.
impl fmt::Debug for PatientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientRecord")
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

/// What [`PatientRecord::import`] does with an entry that is not the patient's shareable data: a
/// resource of another type (Practitioner, Encounter, a Medication nothing names) or a
/// transaction's request without a resource (a `DELETE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unimportable {
    /// Leave it out and count it in the [`ImportReport`].
    Skip,
    /// Refuse the Bundle with [`ImportError::NotImportable`], which names what is left over.
    Refuse,
}

/// A record read from a Bundle, and the account of every entry.
#[derive(Debug)]
pub struct Import {
    pub record: PatientRecord,
    pub report: ImportReport,
}

/// Why a bundle cannot become a [`PatientRecord`]. Indexes count from 0 in `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not a FHIR Bundle: `resourceType` must be \"Bundle\"")]
    NotABundle,
    #[error("a Bundle of type {} cannot be imported: use collection, transaction, searchset or document", bundle_type_label(.bundle_type))]
    UnsupportedBundleType { bundle_type: Option<&'static str> },
    #[error("the Bundle's `entry` must be an array")]
    EntriesNotAnArray,
    #[error("the Bundle has {count} entries; at most {max} are accepted")]
    TooManyEntries { count: usize, max: usize },
    #[error("entry {index} has no `resource` object (and no `request`)")]
    MissingResource { index: usize },
    #[error("entry {index}: `resourceType` is missing or not a string")]
    MissingResourceType { index: usize },
    /// Refused even when skipping: a misspelt `Condition` must not be skipped as "another type".
    #[error("entry {index}: `resourceType` is not a FHIR R4 resource type")]
    UnknownResourceType { index: usize },
    #[error(
        "the Bundle holds what cannot be imported: {} (the first is entry {first}); \
         the shareable types are {}, and Medications that they name",
        report::counts(.left_over),
        shareable_types()
    )]
    NotImportable {
        first: usize,
        /// What is left over and how many of each, as the report counts them.
        left_over: Vec<(&'static str, usize)>,
    },
    #[error("entry {index} ({resource_type}): `id` is missing or not a string")]
    MissingId {
        index: usize,
        resource_type: &'static str,
    },
    #[error("entry {index} ({resource_type}): `id` is not a FHIR id (1 to 64 of A-Z a-z 0-9 - .)")]
    InvalidId {
        index: usize,
        resource_type: &'static str,
    },
    #[error("entry {index} ({resource_type}) has the same `id` as entry {first}")]
    DuplicateId {
        index: usize,
        first: usize,
        resource_type: &'static str,
    },
    #[error("entry {index} ({resource_type}) nests deeper than {max} levels")]
    TooDeep {
        index: usize,
        resource_type: &'static str,
        max: usize,
    },
    #[error("the Bundle has no Patient")]
    NoPatient,
    #[error("the Bundle has more than one Patient (entries {first} and {second})")]
    MultiplePatients { first: usize, second: usize },
}

fn shareable_types() -> String {
    let names: Vec<&str> = ResourceType::EMBEDDED
        .iter()
        .map(|resource_type| resource_type.as_str())
        .collect();
    names.join(", ")
}

fn bundle_type_label(bundle_type: &Option<&'static str>) -> &'static str {
    bundle_type.unwrap_or("(missing or unknown)")
}

const ACCEPTED_BUNDLE_TYPES: [&str; 4] = ["collection", "transaction", "searchset", "document"];

const BUNDLE_TYPES: [&str; 9] = [
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

/// The FHIR R4 resource type names. Errors quote a refused type only from this list, so a crafted
/// `resourceType` cannot carry text from the bundle into a log line.
const R4_RESOURCE_TYPES: &str = "Account ActivityDefinition AdverseEvent AllergyIntolerance \
    Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure \
    Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim \
    ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest \
    CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage \
    CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition \
    DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest \
    DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest \
    EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario \
    ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse \
    HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation \
    ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport \
    Media Medication MedicationAdministration MedicationDispense MedicationKnowledge \
    MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization \
    MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient \
    MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged \
    MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition \
    MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition \
    OperationDefinition OperationOutcome Organization OrganizationAffiliation Parameters Patient \
    PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole \
    Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup \
    ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment \
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition \
    StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer \
    SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification \
    SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet \
    VerificationResult VisionPrescription";

/// The list's own `&'static str` for `name`, so that an error never holds a string from the input.
fn known_name(mut names: impl Iterator<Item = &'static str>, name: &str) -> Option<&'static str> {
    names.find(|known| *known == name)
}

const DEMO_BUNDLE: &str = include_str!("demo_patient.json");

/// What an entry without a resource but with a `request` is called in the report: a transaction's
/// or batch's `DELETE` or `GET`, which has nothing to import (an import replaces the record).
const REQUEST_WITHOUT_RESOURCE: &str = "request without a resource";

impl PatientRecord {
    /// From a FHIR R4 Bundle of type collection, transaction, searchset or document: exactly one
    /// Patient, the resources of the shareable types (each with a valid FHIR `id`), and the
    /// Medications that their `medicationReference` names, moved into their `contained`.
    /// Everything else is skipped or refused, as `unimportable` says; a document's Composition
    /// (entry 0) is skipped either way, since the shared Bundles are built without it.
    ///
    /// References that name another imported entry by its `fullUrl` (as transaction bundles do
    /// with `urn:uuid:` URLs) are rewritten to `Type/id`, the one form the record uses.
    pub fn import(bundle: &Value, unimportable: Unimportable) -> Result<Import, ImportError> {
        let (entries, is_document) = bundle_entries(bundle)?;
        let mut importer = Importer {
            is_document,
            ..Importer::default()
        };
        for (index, entry) in entries.iter().enumerate() {
            importer.add(index, entry)?;
        }
        importer.finish(unimportable)
    }

    pub fn patient_id(&self) -> &str {
        self.patient
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The synthetic demo patient shipped with the gateway ("Alex Demo Example", a fictional person).
    pub fn demo() -> Self {
        // Both steps are proven by the unit test `demo_record_has_every_shareable_type`.
        let bundle: Value =
            serde_json::from_str(DEMO_BUNDLE).expect("the demo patient bundle is valid JSON");
        Self::import(&bundle, Unimportable::Refuse)
            .expect("the demo patient bundle imports")
            .record
    }
}

fn bundle_entries(bundle: &Value) -> Result<(&[Value], bool), ImportError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ImportError::NotABundle);
    }
    let bundle_type = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ACCEPTED_BUNDLE_TYPES.contains(&bundle_type) {
        let bundle_type = known_name(BUNDLE_TYPES.into_iter(), bundle_type);
        return Err(ImportError::UnsupportedBundleType { bundle_type });
    }
    let entries = match bundle.get("entry") {
        // FHIR omits empty arrays, so a bundle without `entry` is an empty one.
        None => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => return Err(ImportError::EntriesNotAnArray),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(ImportError::TooManyEntries {
            count: entries.len(),
            max: MAX_ENTRIES,
        });
    }
    Ok((entries, bundle_type == "document"))
}

#[derive(Default)]
struct Importer {
    is_document: bool,
    patient: Option<(usize, Value)>,
    /// The imported resources but the Patient, each with its entry index and type.
    resources: Vec<(usize, ResourceType, Value)>,
    /// `(resourceType, id)` to the first entry index that used it.
    seen: HashMap<(&'static str, String), usize>,
    /// An imported entry's `fullUrl` to the `Type/id` that replaces it in references.
    aliases: HashMap<String, String>,
    medications: medication::Medications,
    report: ImportReport,
}

impl Importer {
    fn add(&mut self, index: usize, entry: &Value) -> Result<(), ImportError> {
        let Some(resource) = entry.get("resource") else {
            // FHIR allows an entry without a resource only when it carries a request (bdl-5).
            if entry.get("request").is_some_and(Value::is_object) {
                self.report.skip(REQUEST_WITHOUT_RESOURCE, index);
                return Ok(());
            }
            return Err(ImportError::MissingResource { index });
        };
        if !resource.is_object() {
            return Err(ImportError::MissingResource { index });
        }
        let type_name = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(ImportError::MissingResourceType { index })?;
        let Some(resource_type) = ResourceType::parse(type_name) else {
            return self.add_unshareable(index, entry, resource, type_name);
        };
        let id = checked_id(index, resource_type.as_str(), resource)?;
        if let (ResourceType::Patient, Some((first, _))) = (resource_type, &self.patient) {
            return Err(ImportError::MultiplePatients {
                first: *first,
                second: index,
            });
        }
        self.remember(index, resource_type.as_str(), id)?;
        // A `#` fullUrl is no URL (bdl-7 wants an absolute one), and as an alias it would rewrite
        // references to contained resources.
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str)
            && !full_url.starts_with('#')
        {
            self.aliases.insert(
                full_url.to_owned(),
                format!("{}/{id}", resource_type.as_str()),
            );
        }
        self.report.import(resource_type);
        if resource_type == ResourceType::Patient {
            self.patient = Some((index, resource.clone()));
        } else {
            self.resources
                .push((index, resource_type, resource.clone()));
        }
        Ok(())
    }

    /// A resource of a type the record does not hold: kept aside when it is a Medication (a
    /// statement may name it), else counted as skipped. Nothing in it is read beyond its type,
    /// so a skipped resource is never walked.
    fn add_unshareable(
        &mut self,
        index: usize,
        entry: &Value,
        resource: &Value,
        type_name: &str,
    ) -> Result<(), ImportError> {
        let type_name = known_name(R4_RESOURCE_TYPES.split_ascii_whitespace(), type_name)
            .ok_or(ImportError::UnknownResourceType { index })?;
        if self.is_document && index == 0 && type_name == "Composition" {
            self.report.skip_document_composition();
            return Ok(());
        }
        if type_name == medication::MEDICATION {
            let id = checked_id(index, type_name, resource)?;
            self.remember(index, type_name, id)?;
            let full_url = entry.get("fullUrl").and_then(Value::as_str);
            self.medications.add(index, id, full_url, resource);
            return Ok(());
        }
        self.report.skip(type_name, index);
        Ok(())
    }

    fn remember(
        &mut self,
        index: usize,
        type_name: &'static str,
        id: &str,
    ) -> Result<(), ImportError> {
        if let Some(first) = self.seen.get(&(type_name, id.to_owned())) {
            return Err(ImportError::DuplicateId {
                index,
                first: *first,
                resource_type: type_name,
            });
        }
        self.seen.insert((type_name, id.to_owned()), index);
        Ok(())
    }

    fn finish(self, unimportable: Unimportable) -> Result<Import, ImportError> {
        let Importer {
            patient,
            mut resources,
            aliases,
            mut medications,
            mut report,
            ..
        } = self;
        let (_, mut patient) = patient.ok_or(ImportError::NoPatient)?;
        // Before references are rewritten: a statement names its Medication by the forms the
        // Bundle uses (a fullUrl, `Medication/id`), which `medications` knows.
        for (index, resource_type, resource) in &mut resources {
            if medications.contain_in(*resource_type, resource)
                && nests_deeper_than(resource, MAX_DEPTH)
            {
                return Err(ImportError::TooDeep {
                    index: *index,
                    resource_type: resource_type.as_str(),
                    max: MAX_DEPTH,
                });
            }
        }
        medications.report_to(&mut report);
        if unimportable == Unimportable::Refuse
            && let Some(error) = report.not_importable()
        {
            return Err(error);
        }
        let mut resources: Vec<Value> = resources
            .into_iter()
            .map(|(_, _, resource)| resource)
            .collect();
        if !aliases.is_empty() {
            relativize_references(&mut patient, &aliases);
            for resource in &mut resources {
                relativize_references(resource, &aliases);
            }
        }
        Ok(Import {
            record: PatientRecord { patient, resources },
            report,
        })
    }
}

/// The resource's `id`, after the depth check that every later walk over the resource relies on.
fn checked_id<'r>(
    index: usize,
    type_name: &'static str,
    resource: &'r Value,
) -> Result<&'r str, ImportError> {
    if nests_deeper_than(resource, MAX_DEPTH) {
        return Err(ImportError::TooDeep {
            index,
            resource_type: type_name,
            max: MAX_DEPTH,
        });
    }
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ImportError::MissingId {
            index,
            resource_type: type_name,
        })?;
    if !is_fhir_id(id) {
        return Err(ImportError::InvalidId {
            index,
            resource_type: type_name,
        });
    }
    Ok(id)
}

/// FHIR's `id` type: `[A-Za-z0-9\-\.]{1,64}`. Holding ids to it keeps `Type/id` references
/// unambiguous (no `/` inside an id) for the IPS builder.
pub(crate) fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// Whether `value` holds more than `levels` nested arrays and objects. Stops descending as soon as
/// the answer is known, so the recursion itself never goes deeper than `levels + 1`.
fn nests_deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => {
            levels == 0 || items.iter().any(|item| nests_deeper_than(item, levels - 1))
        }
        Value::Object(fields) => {
            levels == 0
                || fields
                    .values()
                    .any(|field| nests_deeper_than(field, levels - 1))
        }
        _ => false,
    }
}

fn relativize_references(value: &mut Value, aliases: &HashMap<String, String>) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(reference)) = fields.get_mut("reference")
                && let Some(relative) = aliases.get(reference.as_str())
            {
                reference.clone_from(relative);
            }
            fields
                .values_mut()
                .for_each(|child| relativize_references(child, aliases));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|child| relativize_references(child, aliases)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
