//! Stored resources copied into a shared Bundle (the IPS document of passcode links, the
//! PatientSharedBundle of direct ones): their new ids, and reference rewriting inside them.
//!
//! - Every included resource gets a new `id`, the UUID of its `urn:uuid:` fullUrl, derived from
//!   the bundle id and the stored `Type/id`. Two links to the same record thus cannot be
//!   correlated by resource ids, and the store's own ids (which can be meaningful) do not leave
//!   the gateway.
//! - A Bundle is read without the server it came from, so a reference is useful only if it names
//!   another entry by its fullUrl. A reference to a stored resource that the Bundle leaves out is
//!   removed, element and all: keeping it would say that a withheld resource exists, and its
//!   `display` could say what it is.
//! - Imported narrative is never trusted: `text` is removed from every copy and its contained
//!   resources.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::issuer::ResourceType;
use crate::issuer::fhir::{MAX_DEPTH, PatientRecord};

/// The namespace of one Bundle's entry UUIDs, from the UUID that names the Bundle.
pub(super) fn namespace(bundle_id: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("urn:uuid:{bundle_id}").as_bytes(),
    )
}

pub(super) fn entry_uuid(namespace: &Uuid, type_name: &str, id: &str) -> Uuid {
    // Ids hold no `/` (checked at import), so `Type/id` names one resource unambiguously.
    Uuid::new_v5(namespace, format!("{type_name}/{id}").as_bytes())
}

pub(super) fn urn(uuid: Uuid) -> String {
    format!("urn:uuid:{uuid}")
}

/// The types a patient shares: `selected`, or every shareable type when it is empty.
pub(super) fn selection(selected: &[ResourceType]) -> HashSet<ResourceType> {
    if selected.is_empty() {
        ResourceType::EMBEDDED.into_iter().collect()
    } else {
        selected.iter().copied().collect()
    }
}

/// Decides every stored resource's fate, in the record's order, before anything is copied, so
/// that a reference to a later resource is rewritten too. `keep` says what the Bundle needs to
/// know of a resource it includes (`None`: withheld). Each resource's fullUrl, or `None`, goes
/// into `targets`; a repeated `Type/id` is skipped (the first stands, as a reference would find
/// it). Returns the included resources with their UUIDs.
pub(super) fn sort_out<'r, T>(
    record: &'r PatientRecord,
    namespace: &Uuid,
    targets: &mut Targets,
    mut keep: impl FnMut(ResourceType, &'r Value) -> Option<T>,
) -> Vec<(Uuid, &'r Value, T)> {
    let mut included = Vec::new();
    for source in &record.resources {
        let Some((resource_type, id)) = identify(source) else {
            continue;
        };
        let key = format!("{}/{id}", resource_type.as_str());
        if targets.contains_key(&key) {
            continue;
        }
        let Some(kept) = keep(resource_type, source) else {
            targets.insert(key, None);
            continue;
        };
        let uuid = entry_uuid(namespace, resource_type.as_str(), id);
        targets.insert(key, Some(urn(uuid)));
        included.push((uuid, source, kept));
    }
    included
}

/// A non-Patient stored resource and its id; anything else in a record is ignored.
pub(super) fn identify(resource: &Value) -> Option<(ResourceType, &str)> {
    let resource_type = ResourceType::parse(resource["resourceType"].as_str()?)?;
    let id = resource["id"].as_str()?;
    (resource_type != ResourceType::Patient).then_some((resource_type, id))
}

/// A Bundle must not repeat what its source has retracted.
pub(super) fn entered_in_error(resource: &Value) -> bool {
    resource["status"] == "entered-in-error"
        || resource["verificationStatus"]["coding"]
            .as_array()
            .is_some_and(|codings| {
                codings
                    .iter()
                    .any(|coding| coding["code"] == "entered-in-error")
            })
}

/// A copy of `source` fit to share: new id, no imported narrative, references rewritten; the
/// entry with its fullUrl.
pub(super) fn entry(
    uuid: Uuid,
    source: &Value,
    targets: &Targets,
    outside: OutsideReferences,
) -> Value {
    let mut resource = source.clone();
    if let Some(fields) = resource.as_object_mut() {
        fields.remove("text");
        fields.insert("id".to_owned(), Value::String(uuid.to_string()));
        if let Some(Value::Array(contained)) = fields.get_mut("contained") {
            contained
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|inner| {
                    inner.remove("text");
                });
        }
    }
    rewrite(&mut resource, targets, outside);
    json!({ "fullUrl": urn(uuid), "resource": resource })
}

/// What becomes of a relative reference (`Type/id`) to a resource the record does not hold (a
/// Practitioner, a Medication, an Organization), or of a `urn:` one (an entry of the Bundle the
/// record was imported from that the import skipped): it can name nothing in the Bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutsideReferences {
    /// Kept as it is (the IPS document, as it always was).
    Keep,
    /// The `reference` goes and the rest stays (`display`, `identifier`, `type`): the
    /// PatientSharedBundle says every reference names an entry, and a receiver that resolves
    /// each one must not meet a dangling one.
    KeepOnlyTheDescription,
}

/// Every stored resource by `Type/id`: its fullUrl in the document, or `None` when left out.
pub(super) type Targets = HashMap<String, Option<String>>;

/// Rewrites `Type/id` (and `Type/id/_history/n`) references in `resource` to fullUrls and removes
/// references to left-out resources, then any object or array that the removal left empty (FHIR
/// forbids empty elements). Other references (absolute, contained `#id`, or to resources the record
/// does not hold) stay as they are, unless `outside` says otherwise.
pub(super) fn rewrite(resource: &mut Value, targets: &Targets, outside: OutsideReferences) {
    // The resource itself never carries a `reference`, so it is never removed.
    keep(resource, targets, outside, MAX_DEPTH);
}

/// Whether `value` stays in its parent after rewriting. `levels` bounds the recursion; a record
/// imported through `PatientRecord::import` is never deeper than this.
fn keep(value: &mut Value, targets: &Targets, outside: OutsideReferences, levels: usize) -> bool {
    match value {
        Value::Object(fields) => {
            let mut dangling = false;
            if let Some(Value::String(reference)) = fields.get_mut("reference") {
                match target(reference, targets) {
                    Some(Some(full_url)) => full_url.clone_into(reference),
                    Some(None) => return false,
                    None => dangling = names_no_entry(reference),
                }
            }
            let before = fields.len();
            if dangling && outside == OutsideReferences::KeepOnlyTheDescription {
                fields.remove("reference");
            }
            if levels == 0 {
                return before == 0 || !fields.is_empty();
            }
            fields.retain(|_, child| keep(child, targets, outside, levels - 1));
            before == 0 || !fields.is_empty()
        }
        Value::Array(items) => {
            if levels == 0 {
                return true;
            }
            let before = items.len();
            items.retain_mut(|item| keep(item, targets, outside, levels - 1));
            before == 0 || !items.is_empty()
        }
        _ => true,
    }
}

/// Whether a reference that is no target names nothing a shared Bundle holds: a relative `Type/id`
/// (a resource on the server the record came from) or a `urn:` (an entry of the Bundle it was
/// imported from: a shared Bundle's fullUrls are all fresh). An absolute URL may still be
/// fetched, and a contained `#id` is inside the resource itself.
fn names_no_entry(reference: &str) -> bool {
    reference.starts_with("urn:") || is_relative(reference)
}

/// Whether `reference` has the relative form `Type/id` (or `Type/id/_history/n`) that names a
/// resource on the server the record came from, as opposed to an absolute URL, a `urn:`, or a
/// contained `#id`.
fn is_relative(reference: &str) -> bool {
    let mut parts = reference.split('/');
    let (Some(type_name), Some(id)) = (parts.next(), parts.next()) else {
        return false;
    };
    let tail = [parts.next(), parts.next(), parts.next()];
    type_name.starts_with(|c: char| c.is_ascii_uppercase())
        && type_name.chars().all(|c| c.is_ascii_alphabetic())
        && !id.is_empty()
        && matches!(tail, [None, _, _] | [Some("_history"), Some(_), None])
}

/// The stored resource a relative reference names, if the record holds it.
fn target<'t>(reference: &str, targets: &'t Targets) -> Option<&'t Option<String>> {
    let mut parts = reference.split('/');
    let (type_name, id) = (parts.next()?, parts.next()?);
    let tail = [parts.next(), parts.next(), parts.next()];
    if !matches!(tail, [None, _, _] | [Some("_history"), Some(_), None]) {
        return None;
    }
    targets.get(&reference[..type_name.len() + 1 + id.len()])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn targets() -> Targets {
        Targets::from([
            ("Patient/p".to_owned(), Some("urn:uuid:p".to_owned())),
            ("Condition/kept".to_owned(), Some("urn:uuid:c".to_owned())),
            ("Condition/withheld".to_owned(), None),
        ])
    }

    #[test]
    fn rewrites_known_removes_left_out_keeps_unknown() {
        let mut resource = json!({
            "resourceType": "MedicationStatement",
            "subject": { "reference": "Patient/p", "display": "someone" },
            "reasonReference": [
                { "reference": "Condition/kept/_history/3" },
                { "reference": "Condition/withheld", "display": "secret diagnosis" }
            ],
            "basedOn": [{ "reference": "Condition/withheld" }],
            "informationSource": { "reference": "Practitioner/elsewhere" },
            "derivedFrom": [{ "reference": "https://example.org/fhir/Condition/withheld" }],
            "medicationReference": { "reference": "#med" },
            "extension": [{ "url": "https://example.org/x", "extension": [] }]
        });
        rewrite(&mut resource, &targets(), OutsideReferences::Keep);
        assert_eq!(
            resource["subject"],
            json!({ "reference": "urn:uuid:p", "display": "someone" })
        );
        assert_eq!(
            resource["reasonReference"],
            json!([{ "reference": "urn:uuid:c" }])
        );
        assert!(
            resource.get("basedOn").is_none(),
            "emptied array stays: {resource}"
        );
        assert_eq!(
            resource["informationSource"]["reference"],
            "Practitioner/elsewhere"
        );
        assert_eq!(
            resource["derivedFrom"][0]["reference"],
            "https://example.org/fhir/Condition/withheld"
        );
        assert_eq!(resource["medicationReference"]["reference"], "#med");
        // Emptiness that was not caused by a removal is not this function's business.
        assert_eq!(resource["extension"][0]["extension"], json!([]));
        assert!(!resource.to_string().contains("secret"));
    }

    #[test]
    fn removes_a_wrapper_left_empty() {
        let mut care_plan = json!({
            "resourceType": "CarePlan",
            "activity": [
                { "reference": { "reference": "Condition/withheld" } },
                { "detail": { "status": "in-progress" } }
            ]
        });
        rewrite(&mut care_plan, &targets(), OutsideReferences::Keep);
        assert_eq!(
            care_plan["activity"],
            json!([{ "detail": { "status": "in-progress" } }])
        );
    }

    #[test]
    fn only_relative_forms_are_targets() {
        let targets = targets();
        for unknown in [
            "Condition",
            "Condition/",
            "Condition/kept/x",
            "Condition/kept/_history",
            "urn:uuid:c",
            "#kept",
        ] {
            assert!(target(unknown, &targets).is_none(), "{unknown}");
        }
        assert!(target("Condition/kept/_history/1", &targets).is_some());
    }

    #[test]
    fn outside_references_keep_only_their_description_when_asked() {
        let mut resource = json!({
            "resourceType": "MedicationRequest",
            "subject": { "reference": "Patient/p" },
            "medicationReference": { "reference": "Medication/m1", "display": "Lisinopril 10 mg" },
            "requester": { "reference": "Practitioner/dr/_history/2" },
            "performer": { "reference": "https://example.org/fhir/Practitioner/dr" },
            "recorder": { "reference": "#contained" },
            "insurance": [{ "reference": "Coverage/elsewhere", "identifier": { "value": "X1" } }],
            "supportingInformation": [{ "reference": "urn:uuid:9a8b7c6d-0000-4000-8000-000000000001", "display": "skipped at import" }]
        });

        rewrite(
            &mut resource,
            &targets(),
            OutsideReferences::KeepOnlyTheDescription,
        );

        assert_eq!(resource["subject"]["reference"], "urn:uuid:p");
        assert_eq!(
            resource["medicationReference"],
            json!({ "display": "Lisinopril 10 mg" })
        );
        assert!(
            resource.get("requester").is_none(),
            "nothing left to say: removed"
        );
        assert_eq!(
            resource["performer"]["reference"],
            "https://example.org/fhir/Practitioner/dr"
        );
        assert_eq!(resource["recorder"]["reference"], "#contained");
        assert_eq!(
            resource["insurance"],
            json!([{ "identifier": { "value": "X1" } }])
        );
        assert_eq!(
            resource["supportingInformation"],
            json!([{ "display": "skipped at import" }])
        );
    }

    #[test]
    fn a_contained_resource_is_copied_and_its_local_reference_kept() {
        // What import makes of a MedicationStatement that names a Medication of its Bundle.
        let statement = json!({
            "resourceType": "MedicationStatement",
            "id": "s1",
            "contained": [{
                "resourceType": "Medication",
                "id": "medication",
                "text": { "status": "generated", "div": "<div>imported</div>" },
                "code": { "text": "Anastrozole 1 mg tablet" },
                "manufacturer": { "reference": "Organization/o1", "display": "Maker" }
            }],
            "medicationReference": { "reference": "#medication" },
            "subject": { "reference": "Patient/p" }
        });
        for outside in [
            OutsideReferences::Keep,
            OutsideReferences::KeepOnlyTheDescription,
        ] {
            let copied = entry(Uuid::nil(), &statement, &targets(), outside);
            let resource = &copied["resource"];
            assert_eq!(resource["medicationReference"]["reference"], "#medication");
            let contained = &resource["contained"][0];
            assert_eq!(contained["id"], "medication", "a local id is not rewritten");
            assert_eq!(contained["code"]["text"], "Anastrozole 1 mg tablet");
            assert!(
                contained.get("text").is_none(),
                "imported narrative dropped"
            );
            let maker = &contained["manufacturer"];
            match outside {
                OutsideReferences::Keep => assert_eq!(maker["reference"], "Organization/o1"),
                OutsideReferences::KeepOnlyTheDescription => {
                    assert_eq!(*maker, json!({ "display": "Maker" }));
                }
            }
        }
    }
}
