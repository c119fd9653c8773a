//! A patient's FHIR data as the embedded issuer stores it, and its import from a FHIR Bundle.
//!
//! The IPS builder (`super::ips`) trusts a [`PatientRecord`] to hold one Patient and only resources
//! it knows how to place, each with a usable `id`: checking that once, here, keeps the builder free of
//! error paths. Import refuses rather than repairs, because silently dropping part of a patient's
//! record would share less than the patient believes they share.
//!
//! Every [`ImportError`] message is safe to log and to show: it names entry indexes, field names and
//! resource type names taken from fixed lists, never a value from the bundle, which is health data.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::issuer::ResourceType;

/// More entries than any one patient's summary needs; the cap bounds the work an import can cause.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// Nesting allowed inside one resource (the resource object is level 1). Real resources stay under
/// 15; the cap keeps the recursive walks here and in the IPS builder far from the stack's limit.
pub(crate) const MAX_DEPTH: usize = 32;

/// One patient's resources, as stored: the Patient plus resources of the shareable types, each a
/// FHIR R4 JSON object with `resourceType` and `id`.
///
/// References between them use the relative form `Type/id`.
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
    #[error("entry {index} has no `resource` object")]
    MissingResource { index: usize },
    #[error("entry {index}: `resourceType` is missing or not a string")]
    MissingResourceType { index: usize },
    #[error("entry {index}: {} is not a shareable resource type", resource_type_label(.resource_type))]
    UnsupportedType {
        index: usize,
        /// `None` when the name is not a FHIR R4 resource type (and so is not repeated here).
        resource_type: Option<&'static str>,
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

fn bundle_type_label(bundle_type: &Option<&'static str>) -> &'static str {
    bundle_type.unwrap_or("(missing or unknown)")
}

fn resource_type_label(resource_type: &Option<&'static str>) -> &'static str {
    resource_type.unwrap_or("a resourceType that is not a FHIR R4 resource type")
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

impl PatientRecord {
    /// From a FHIR Bundle of type collection, transaction, searchset or document: exactly one
    /// Patient, every other entry of a shareable type (a document's Composition is skipped: the IPS
    /// builder writes its own), each resource with a valid FHIR `id`.
    ///
    /// References that name another entry by its `fullUrl` (as transaction bundles do with
    /// `urn:uuid:` URLs) are rewritten to `Type/id`, the one form the record uses.
    pub fn from_bundle(bundle: &Value) -> Result<Self, ImportError> {
        let (entries, is_document) = bundle_entries(bundle)?;
        let mut importer = Importer::default();
        for (index, entry) in entries.iter().enumerate() {
            importer.add(index, entry, is_document)?;
        }
        importer.finish()
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
        Self::from_bundle(&bundle).expect("the demo patient bundle imports")
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
    patient: Option<(usize, Value)>,
    resources: Vec<Value>,
    /// `(resourceType, id)` to the first entry index that used it.
    seen: HashMap<(&'static str, String), usize>,
    /// An entry's `fullUrl` to the `Type/id` that replaces it in references.
    aliases: HashMap<String, String>,
}

impl Importer {
    fn add(&mut self, index: usize, entry: &Value, is_document: bool) -> Result<(), ImportError> {
        let resource = entry
            .get("resource")
            .filter(|resource| resource.is_object())
            .ok_or(ImportError::MissingResource { index })?;
        let type_name = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(ImportError::MissingResourceType { index })?;
        if is_document && type_name == "Composition" {
            return Ok(());
        }
        let resource_type = ResourceType::parse(type_name).ok_or_else(|| {
            let resource_type = known_name(R4_RESOURCE_TYPES.split_ascii_whitespace(), type_name);
            ImportError::UnsupportedType {
                index,
                resource_type,
            }
        })?;
        let id = checked_id(index, resource_type, resource)?;
        if let (ResourceType::Patient, Some((first, _))) = (resource_type, &self.patient) {
            return Err(ImportError::MultiplePatients {
                first: *first,
                second: index,
            });
        }
        self.remember(index, resource_type, id, entry)?;
        if resource_type == ResourceType::Patient {
            self.patient = Some((index, resource.clone()));
        } else {
            self.resources.push(resource.clone());
        }
        Ok(())
    }

    fn remember(
        &mut self,
        index: usize,
        resource_type: ResourceType,
        id: &str,
        entry: &Value,
    ) -> Result<(), ImportError> {
        let type_name = resource_type.as_str();
        if let Some(first) = self.seen.get(&(type_name, id.to_owned())) {
            return Err(ImportError::DuplicateId {
                index,
                first: *first,
                resource_type: type_name,
            });
        }
        self.seen.insert((type_name, id.to_owned()), index);
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
            self.aliases
                .insert(full_url.to_owned(), format!("{type_name}/{id}"));
        }
        Ok(())
    }

    fn finish(self) -> Result<PatientRecord, ImportError> {
        let (_, mut patient) = self.patient.ok_or(ImportError::NoPatient)?;
        let mut resources = self.resources;
        if !self.aliases.is_empty() {
            relativize_references(&mut patient, &self.aliases);
            for resource in &mut resources {
                relativize_references(resource, &self.aliases);
            }
        }
        Ok(PatientRecord { patient, resources })
    }
}

/// The resource's `id`, after the depth check that every later walk over the resource relies on.
fn checked_id(
    index: usize,
    resource_type: ResourceType,
    resource: &Value,
) -> Result<&str, ImportError> {
    let type_name = resource_type.as_str();
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
