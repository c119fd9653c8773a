//! The summary's content: a PatientSharedBundle read into blocks of text.
//!
//! The profile asks the rendered summary to show every resource of the Bundle except the
//! DocumentReferences, so nothing here filters: the first Patient gives the demographics, and
//! every other resource lands in a section by type (the known types in a fixed clinical order,
//! then any other type under its own name, in the order met), as an item titled by what it is
//! (its code's text, or else its codings' display or code) with one line per fact the type
//! carries: statuses, dates, values, reactions, dosage, coverage identifiers. A resource with
//! nothing readable still gets an item, so a receiver can count them.
//!
//! Every read is defensive: a field of the wrong JSON type is treated as absent, and all text
//! is cleaned of control characters before layout.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::layout::{self, Block, DETAIL, HEADING, ITEM, META, NOTE, Page, SUBTITLE, TITLE};
use super::when;

/// Sections of the known types, in the order they print; each lists the types it holds.
const SECTIONS: &[(&str, &[&str])] = &[
    ("Conditions", &["Condition"]),
    ("Allergies", &["AllergyIntolerance"]),
    ("Medications", &["MedicationStatement", "MedicationRequest"]),
    ("Immunizations", &["Immunization"]),
    ("Procedures", &["Procedure"]),
    ("Observations", &["Observation"]),
    ("Care plans", &["CarePlan"]),
    ("Coverage", &["Coverage"]),
];

/// The blocks of the summary of `bundle`.
pub(super) fn summary(bundle: &Value, label: Option<&str>, shared_at: &str) -> Page {
    let resources: Vec<&Map<String, Value>> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("resource").and_then(Value::as_object))
        .collect();
    let by_url: HashMap<&str, &Map<String, Value>> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let url = entry.get("fullUrl").and_then(Value::as_str)?;
            Some((url, entry.get("resource").and_then(Value::as_object)?))
        })
        .collect();
    let reader = Reader { by_url };

    let mut blocks = vec![Block::Text(TITLE, "Patient summary".to_owned())];
    if let Some(label) = label.map(single_line).filter(|label| !label.is_empty()) {
        blocks.push(Block::Text(SUBTITLE, label));
    }
    blocks.push(Block::Text(META, format!("Shared {}", when(shared_at))));
    blocks.push(Block::Text(
        META,
        "Rendered from the FHIR resources shared with this document.".to_owned(),
    ));
    blocks.push(Block::Rule);

    let patient_at = resources.iter().position(|r| type_of(r) == "Patient");
    blocks.push(Block::Text(HEADING, "Patient".to_owned()));
    let footer = match patient_at.map(|at| resources[at]) {
        Some(patient) => {
            let item = demographics(patient);
            let footer = footer(patient);
            item.push_to(&mut blocks);
            footer
        }
        None => {
            blocks.push(Block::Text(
                NOTE,
                "No patient details were shared.".to_owned(),
            ));
            "Patient summary".to_owned()
        }
    };

    // Every other resource, by section.
    let rest: Vec<&Map<String, Value>> = resources
        .iter()
        .enumerate()
        .filter(|(at, r)| Some(*at) != patient_at && type_of(r) != "DocumentReference")
        .map(|(_, r)| *r)
        .collect();
    let mut other_types: Vec<String> = Vec::new();
    for resource in &rest {
        let kind = type_of(resource);
        let known = SECTIONS
            .iter()
            .any(|(_, types)| types.contains(&kind.as_str()));
        if !known && !other_types.contains(&kind) {
            other_types.push(kind);
        }
    }
    let sections = SECTIONS
        .iter()
        .map(|(heading, types)| {
            (
                (*heading).to_owned(),
                types.iter().map(|t| (*t).to_owned()).collect(),
            )
        })
        .chain(
            other_types
                .into_iter()
                .map(|kind| (kind.clone(), vec![kind])),
        );
    let mut any = false;
    for (heading, types) in sections {
        let members: Vec<&&Map<String, Value>> = rest
            .iter()
            .filter(|r| types.contains(&type_of(r)))
            .collect();
        if members.is_empty() {
            continue;
        }
        any = true;
        blocks.push(Block::Text(HEADING, heading));
        for resource in members {
            reader.item(resource).push_to(&mut blocks);
        }
    }
    if !any {
        blocks.push(Block::Text(HEADING, "Records".to_owned()));
        blocks.push(Block::Text(
            NOTE,
            "No other records were shared.".to_owned(),
        ));
    }
    Page {
        title: "Patient summary",
        footer,
        blocks,
    }
}

/// A resource as printed: a title line and detail lines.
struct Item {
    title: String,
    details: Vec<String>,
}

impl Item {
    fn new(title: Option<String>, fallback: &str) -> Self {
        Self {
            title: title.unwrap_or_else(|| fallback.to_owned()),
            details: Vec::new(),
        }
    }

    /// Adds `label: value` when there is a value.
    fn add(&mut self, label: &str, value: Option<String>) {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            self.details.push(format!("{label}: {value}"));
        }
    }

    /// The item's blocks, kept together on one page when a page can hold them.
    fn push_to(self, blocks: &mut Vec<Block>) {
        let last = self.details.len();
        blocks.push(Block::Text(
            if last == 0 { ITEM } else { ITEM.kept() },
            self.title,
        ));
        blocks.extend(self.details.into_iter().enumerate().map(|(at, detail)| {
            let style = if at + 1 < last { DETAIL.kept() } else { DETAIL };
            Block::Text(style, detail)
        }));
    }
}

/// Reads resources, resolving references to other entries of the Bundle when it must.
struct Reader<'a> {
    by_url: HashMap<&'a str, &'a Map<String, Value>>,
}

impl Reader<'_> {
    fn item(&self, r: &Map<String, Value>) -> Item {
        match type_of(r).as_str() {
            "Condition" => condition(r),
            "AllergyIntolerance" => allergy(r),
            "MedicationStatement" | "MedicationRequest" => self.medication(r),
            "Immunization" => immunization(r),
            "Procedure" => procedure(r),
            "Observation" => observation(r),
            "CarePlan" => care_plan(r),
            "Coverage" => coverage(r),
            _ => other(r),
        }
    }

    /// Named by its medicine: `medicationCodeableConcept`, else the code of the Medication that
    /// `medicationReference` names (contained, as import puts it, or another entry), else the
    /// reference's `display`, which is kept as a line when the code names the item.
    fn medication(&self, r: &Map<String, Value>) -> Item {
        let referenced = r.get("medicationReference");
        let medicine = r.get("medicationCodeableConcept").or_else(|| {
            let target = self.resolve(r, referenced?)?;
            target.get("code")
        });
        let described = text(referenced.and_then(|reference| reference.get("display")));
        let mut item = Item::new(
            concept(medicine).or_else(|| described.clone()),
            "Medication not named",
        );
        codes(&mut item, medicine);
        let described = described.filter(|described| *described != item.title);
        item.add("Described as", described);
        let request = type_of(r) == "MedicationRequest";
        item.add(
            "Status",
            join([text(r.get("status")), text(r.get("intent"))]),
        );
        item.add("Taken", time_of(r, "effective"));
        item.add("Asserted", r.get("dateAsserted").and_then(date));
        item.add("Prescribed", r.get("authoredOn").and_then(date));
        item.add(
            "Prescriber",
            text(r.get("requester").and_then(|who| who.get("display"))),
        );
        item.add("Reason", concepts(r.get("reasonCode")));
        let dosage = if request {
            r.get("dosageInstruction")
        } else {
            r.get("dosage")
        };
        for dose in array(dosage) {
            item.add("Dosage", dosage_text(dose));
        }
        notes(&mut item, r);
        item
    }

    /// The resource `reference` points to: a contained one (`#id`) or another entry.
    fn resolve<'r>(
        &'r self,
        r: &'r Map<String, Value>,
        reference: &Value,
    ) -> Option<&'r Map<String, Value>> {
        let target = reference.get("reference")?.as_str()?;
        match target.strip_prefix('#') {
            Some(id) => array(r.get("contained"))
                .filter_map(Value::as_object)
                .find(|contained| contained.get("id").and_then(Value::as_str) == Some(id)),
            None => self.by_url.get(target).copied(),
        }
    }
}

fn condition(r: &Map<String, Value>) -> Item {
    let mut item = Item::new(concept(r.get("code")), "Condition not named");
    codes(&mut item, r.get("code"));
    statuses(&mut item, r);
    item.add("Category", concepts(r.get("category")));
    item.add("Severity", concept(r.get("severity")));
    item.add("Body site", concepts(r.get("bodySite")));
    item.add("Onset", time_of(r, "onset"));
    item.add("Resolved", time_of(r, "abatement"));
    item.add("Recorded", r.get("recordedDate").and_then(date));
    notes(&mut item, r);
    item
}

fn allergy(r: &Map<String, Value>) -> Item {
    let mut item = Item::new(concept(r.get("code")), "Allergy or intolerance not named");
    codes(&mut item, r.get("code"));
    statuses(&mut item, r);
    item.add(
        "Type",
        join([text(r.get("type")), strings(r.get("category"))]),
    );
    item.add("Criticality", text(r.get("criticality")));
    item.add("Onset", time_of(r, "onset"));
    item.add("Recorded", r.get("recordedDate").and_then(date));
    item.add("Last occurrence", r.get("lastOccurrence").and_then(date));
    for reaction in array(r.get("reaction")) {
        let described = join([
            concepts(reaction.get("manifestation")),
            text(reaction.get("description")),
        ]);
        let mut line = described.unwrap_or_else(|| "not described".to_owned());
        if let Some(severity) = text(reaction.get("severity")) {
            line.push_str(&format!(" (severity: {severity})"));
        }
        if let Some(substance) = concept(reaction.get("substance")) {
            line.push_str(&format!(", to {substance}"));
        }
        if let Some(onset) = reaction.get("onset").and_then(date) {
            line.push_str(&format!(", {onset}"));
        }
        item.add("Reaction", Some(line));
    }
    notes(&mut item, r);
    item
}

fn immunization(r: &Map<String, Value>) -> Item {
    let mut item = Item::new(concept(r.get("vaccineCode")), "Vaccine not named");
    codes(&mut item, r.get("vaccineCode"));
    item.add(
        "Status",
        join([text(r.get("status")), concept(r.get("statusReason"))]),
    );
    item.add("Given", time_of(r, "occurrence"));
    item.add("Recorded", r.get("recorded").and_then(date));
    item.add("Dose", quantity(r.get("doseQuantity")));
    item.add("Lot", text(r.get("lotNumber")));
    item.add("Site", concept(r.get("site")));
    item.add("Route", concept(r.get("route")));
    for protocol in array(r.get("protocolApplied")) {
        let dose = protocol
            .get("doseNumberPositiveInt")
            .or_else(|| protocol.get("doseNumberString"))
            .and_then(scalar);
        item.add("Dose number", dose);
    }
    notes(&mut item, r);
    item
}

fn procedure(r: &Map<String, Value>) -> Item {
    let mut item = Item::new(concept(r.get("code")), "Procedure not named");
    codes(&mut item, r.get("code"));
    item.add("Status", text(r.get("status")));
    item.add("Performed", time_of(r, "performed"));
    item.add("Body site", concepts(r.get("bodySite")));
    item.add("Reason", concepts(r.get("reasonCode")));
    item.add("Outcome", concept(r.get("outcome")));
    notes(&mut item, r);
    item
}

fn observation(r: &Map<String, Value>) -> Item {
    let mut item = Item::new(concept(r.get("code")), "Observation not named");
    codes(&mut item, r.get("code"));
    item.add("Value", value(r));
    item.add("Not available", concept(r.get("dataAbsentReason")));
    for component in array(r.get("component")) {
        let name = concept(component.get("code")).unwrap_or_else(|| "Component".to_owned());
        let shown = component.as_object().and_then(value).or_else(|| {
            concept(component.get("dataAbsentReason")).map(|why| format!("not available ({why})"))
        });
        item.add(&name, Some(shown.unwrap_or_else(|| "no value".to_owned())));
    }
    item.add("Interpretation", concepts(r.get("interpretation")));
    for range in array(r.get("referenceRange")) {
        let bounds = match (quantity(range.get("low")), quantity(range.get("high"))) {
            (Some(low), Some(high)) => Some(format!("{low} to {high}")),
            (Some(low), None) => Some(format!("at least {low}")),
            (None, Some(high)) => Some(format!("up to {high}")),
            (None, None) => None,
        };
        item.add("Reference range", join([bounds, text(range.get("text"))]));
    }
    item.add("Status", text(r.get("status")));
    item.add("Category", concepts(r.get("category")));
    item.add("Taken", time_of(r, "effective"));
    item.add("Issued", r.get("issued").and_then(date));
    notes(&mut item, r);
    item
}

fn care_plan(r: &Map<String, Value>) -> Item {
    let title = text(r.get("title"));
    let has_title = title.is_some();
    let mut item = Item::new(
        title
            .or_else(|| concepts(r.get("category")))
            .or_else(|| text(r.get("description"))),
        "Care plan",
    );
    item.add(
        "Status",
        join([text(r.get("status")), text(r.get("intent"))]),
    );
    if has_title {
        item.add("Category", concepts(r.get("category")));
    }
    item.add("Description", text(r.get("description")));
    item.add("Period", period(r.get("period")));
    for activity in array(r.get("activity")) {
        let detail = activity.get("detail");
        let what = join([
            concept(detail.and_then(|d| d.get("code"))),
            text(detail.and_then(|d| d.get("description"))),
        ])
        .or_else(|| text(activity.get("reference").and_then(|r| r.get("display"))));
        let status = text(detail.and_then(|d| d.get("status")));
        let line = match (what, status) {
            (Some(what), Some(status)) => Some(format!("{what} ({status})")),
            (what, status) => what.or(status),
        };
        item.add("Activity", line);
    }
    notes(&mut item, r);
    item
}

fn coverage(r: &Map<String, Value>) -> Item {
    let payors = join(array(r.get("payor")).map(|payor| text(payor.get("display"))));
    let has_payor = payors.is_some();
    let mut item = Item::new(payors.or_else(|| concept(r.get("type"))), "Coverage");
    if has_payor {
        item.add("Type", concept(r.get("type")));
    }
    item.add("Status", text(r.get("status")));
    item.add("Subscriber ID", text(r.get("subscriberId")));
    item.add(
        "Subscriber",
        text(r.get("subscriber").and_then(|who| who.get("display"))),
    );
    item.add("Dependent", text(r.get("dependent")));
    item.add("Relationship", concept(r.get("relationship")));
    item.add("Period", period(r.get("period")));
    for class in array(r.get("class")) {
        let label = concept(class.get("type")).unwrap_or_else(|| "Class".to_owned());
        item.add(
            &label,
            join([text(class.get("value")), text(class.get("name"))]),
        );
    }
    item.add("Network", text(r.get("network")));
    item
}

/// A resource of a type without its own layout: the fields most types share.
fn other(r: &Map<String, Value>) -> Item {
    let named = ["code", "vaccineCode", "medicationCodeableConcept", "type"]
        .into_iter()
        .find_map(|field| concept(r.get(field)))
        .or_else(|| text(r.get("title")))
        .or_else(|| r.get("name").and_then(name))
        .or_else(|| text(r.get("description")))
        .or_else(|| concept(r.get("description")));
    let kind = type_of(r);
    let mut item = Item::new(named, &format!("{kind} not named"));
    item.add("Status", text(r.get("status")));
    statuses(&mut item, r);
    item.add("Category", concepts(r.get("category")));
    item.add("Value", value(r));
    for prefix in ["effective", "onset", "occurrence", "performed"] {
        item.add("Date", time_of(r, prefix));
    }
    for field in ["date", "recordedDate", "authoredOn", "issued"] {
        item.add("Date", r.get(field).and_then(date));
    }
    item.add("Period", period(r.get("period")));
    if kind == "Patient" {
        item.add("Birth date", r.get("birthDate").and_then(date));
    }
    notes(&mut item, r);
    item
}

/// The Patient: name, birth date, gender, identifiers, addresses, contacts.
fn demographics(patient: &Map<String, Value>) -> Item {
    let names: Vec<String> = array(patient.get("name")).filter_map(name).collect();
    let mut item = Item::new(names.first().cloned(), "Name not given");
    if names.len() > 1 {
        item.add("Also known as", Some(names[1..].join("; ")));
    }
    item.add("Birth date", patient.get("birthDate").and_then(date));
    item.add("Gender", text(patient.get("gender")).map(capitalized));
    match patient
        .get("deceasedBoolean")
        .or_else(|| patient.get("deceasedDateTime"))
    {
        Some(Value::Bool(true)) => item.add("Deceased", Some("yes".to_owned())),
        Some(Value::String(day)) => item.add("Deceased", Some(when(day))),
        _ => {}
    }
    for identifier in array(patient.get("identifier")) {
        let Some(id) = text(identifier.get("value")) else {
            continue;
        };
        let scope = concept(identifier.get("type")).or_else(|| text(identifier.get("system")));
        item.add(
            "Identifier",
            Some(match scope {
                Some(scope) => format!("{id} ({scope})"),
                None => id,
            }),
        );
    }
    for address in array(patient.get("address")) {
        let written = text(address.get("text")).or_else(|| {
            let mut parts: Vec<String> =
                array(address.get("line")).filter_map(text_value).collect();
            for field in ["city", "district", "state", "postalCode", "country"] {
                parts.extend(text(address.get(field)));
            }
            (!parts.is_empty()).then(|| parts.join(", "))
        });
        item.add("Address", with_use(written, address));
    }
    for telecom in array(patient.get("telecom")) {
        let label = match telecom.get("system").and_then(Value::as_str) {
            Some("phone") => "Phone",
            Some("email") => "Email",
            Some("fax") => "Fax",
            Some("sms") => "Text messages",
            Some("url") => "Web",
            Some("pager") => "Pager",
            _ => "Contact",
        };
        item.add(label, with_use(text(telecom.get("value")), telecom));
    }
    item.add(
        "Language",
        join(array(patient.get("communication")).map(|c| concept(c.get("language")))),
    );
    item.add("Marital status", concept(patient.get("maritalStatus")));
    item
}

/// The footer's patient line: the name and birth date, on every page.
fn footer(patient: &Map<String, Value>) -> String {
    let name = array(patient.get("name"))
        .find_map(name)
        .unwrap_or_else(|| "Patient summary".to_owned());
    match patient.get("birthDate").and_then(date) {
        Some(born) => format!("{name} · born {born}"),
        None => name,
    }
}

fn type_of(r: &Map<String, Value>) -> String {
    text(r.get("resourceType")).unwrap_or_else(|| "Other".to_owned())
}

/// Clinical and verification status (Condition, AllergyIntolerance).
fn statuses(item: &mut Item, r: &Map<String, Value>) {
    item.add(
        "Status",
        join([
            concept(r.get("clinicalStatus")),
            concept(r.get("verificationStatus")),
        ]),
    );
}

/// The codings behind a concept, when they say more than its title: "SNOMED CT 38341003
/// Hypertensive disorder".
fn codes(item: &mut Item, code: Option<&Value>) {
    let title = concept(code);
    let codings = array(code.and_then(|c| c.get("coding"))).map(|coding| {
        let code = text(coding.get("code"));
        let display = text(coding.get("display")).filter(|display| Some(display) != title.as_ref());
        let system = coding
            .get("system")
            .and_then(Value::as_str)
            .map(system_name);
        let identified = match (system, code) {
            (Some(system), Some(code)) => Some(format!("{system} {code}")),
            (None, code) => code,
            (Some(_), None) => None,
        };
        match (identified, display) {
            (Some(identified), Some(display)) => Some(format!("{identified} {display}")),
            (identified, display) => identified.or(display),
        }
    });
    let codings: Vec<String> = codings.flatten().collect();
    item.add("Code", (!codings.is_empty()).then(|| codings.join("; ")));
}

/// A short name for the code systems people know by name; the URL for others.
fn system_name(system: &str) -> String {
    match system {
        "http://snomed.info/sct" => "SNOMED CT".to_owned(),
        "http://loinc.org" => "LOINC".to_owned(),
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm".to_owned(),
        "http://hl7.org/fhir/sid/cvx" => "CVX".to_owned(),
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM".to_owned(),
        "http://hl7.org/fhir/sid/icd-10" => "ICD-10".to_owned(),
        "http://hl7.org/fhir/sid/ndc" => "NDC".to_owned(),
        "http://unitsofmeasure.org" => "UCUM".to_owned(),
        other => single_line(other),
    }
}

/// A CodeableConcept in words: its text, or its first coding's display, or its first code.
fn concept(value: Option<&Value>) -> Option<String> {
    let value = value?;
    text(value.get("text")).or_else(|| {
        let codings: Vec<&Value> = array(value.get("coding")).collect();
        codings
            .iter()
            .find_map(|coding| text(coding.get("display")))
            .or_else(|| codings.iter().find_map(|coding| text(coding.get("code"))))
    })
}

/// One or many CodeableConcepts, joined.
fn concepts(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Array(items) => join(items.iter().map(|item| concept(Some(item)))),
        single => concept(Some(single)),
    }
}

/// An array's items; nothing for anything else.
fn array(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

/// A string field, cleaned and on one line; nothing when absent, empty or not a string.
fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(text_value)
}

fn text_value(value: &Value) -> Option<String> {
    let text = single_line(value.as_str()?);
    (!text.is_empty()).then_some(text)
}

/// A string, number or boolean, in words.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(_) => text_value(value),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(true) => Some("yes".to_owned()),
        Value::Bool(false) => Some("no".to_owned()),
        _ => None,
    }
}

/// An array of strings, joined (AllergyIntolerance.category).
fn strings(value: Option<&Value>) -> Option<String> {
    join(array(value).map(text_value))
}

/// The present parts, joined with commas.
fn join(parts: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn single_line(text: &str) -> String {
    let text = layout::clean(&text.replace(['\r', '\n'], " "));
    text.trim().to_owned()
}

fn capitalized(word: String) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => word,
    }
}

/// A date or date-time field in words.
fn date(value: &Value) -> Option<String> {
    let raw = value.as_str()?;
    let shown = when(raw);
    (!shown.is_empty()).then_some(shown)
}

/// A Period: "2019-06-10 to 2020-01-01", "from 2019-06-10", "until 2020-01-01".
fn period(value: Option<&Value>) -> Option<String> {
    let value = value?;
    match (
        value.get("start").and_then(date),
        value.get("end").and_then(date),
    ) {
        (Some(start), Some(end)) => Some(format!("{start} to {end}")),
        (Some(start), None) => Some(format!("from {start}")),
        (None, Some(end)) => Some(format!("until {end}")),
        (None, None) => None,
    }
}

/// A choice-type time (`onset[x]`, `effective[x]`, ...) in words, whichever form it takes.
fn time_of(r: &Map<String, Value>, prefix: &str) -> Option<String> {
    let field = |suffix: &str| r.get(&format!("{prefix}{suffix}"));
    field("DateTime")
        .or_else(|| field("Instant"))
        .and_then(date)
        .or_else(|| period(field("Period")))
        .or_else(|| text(field("String")))
        .or_else(|| quantity(field("Age")).map(|age| format!("age {age}")))
        .or_else(|| range(field("Range")))
        .or_else(|| match field("Boolean") {
            Some(Value::Bool(true)) => Some("yes".to_owned()),
            _ => None,
        })
}

/// A Quantity: comparator, value and unit ("< 5.6 %", "128 mmHg").
fn quantity(value: Option<&Value>) -> Option<String> {
    let value = value?;
    let number = value.get("value").and_then(scalar)?;
    let unit = text(value.get("unit")).or_else(|| text(value.get("code")));
    let comparator = text(value.get("comparator"));
    Some(
        [comparator, Some(number), unit]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn range(value: Option<&Value>) -> Option<String> {
    let value = value?;
    match (quantity(value.get("low")), quantity(value.get("high"))) {
        (Some(low), Some(high)) => Some(format!("{low} to {high}")),
        (Some(low), None) => Some(format!("at least {low}")),
        (None, Some(high)) => Some(format!("up to {high}")),
        (None, None) => None,
    }
}

/// `value[x]` in words, whichever type it has.
fn value(r: &Map<String, Value>) -> Option<String> {
    quantity(r.get("valueQuantity"))
        .or_else(|| concept(r.get("valueCodeableConcept")))
        .or_else(|| text(r.get("valueString")))
        .or_else(|| r.get("valueBoolean").and_then(scalar))
        .or_else(|| r.get("valueInteger").and_then(scalar))
        .or_else(|| range(r.get("valueRange")))
        .or_else(|| {
            let ratio = r.get("valueRatio")?;
            Some(format!(
                "{} / {}",
                quantity(ratio.get("numerator"))?,
                quantity(ratio.get("denominator"))?
            ))
        })
        .or_else(|| r.get("valueDateTime").and_then(date))
        .or_else(|| period(r.get("valuePeriod")))
        .or_else(|| text(r.get("valueTime")))
}

/// A Dosage in words: its text, or else what its dose, timing and route say.
fn dosage_text(dosage: &Value) -> Option<String> {
    let as_needed = match dosage.get("asNeededBoolean") {
        Some(Value::Bool(true)) => Some("as needed".to_owned()),
        _ => {
            concept(dosage.get("asNeededCodeableConcept")).map(|why| format!("as needed for {why}"))
        }
    };
    let route = concept(dosage.get("route")).map(|route| format!("route: {route}"));
    if let Some(written) = text(dosage.get("text")) {
        return Some(match route {
            Some(route) => format!("{written} ({route})"),
            None => written,
        });
    }
    let dose = array(dosage.get("doseAndRate")).find_map(|rate| {
        quantity(rate.get("doseQuantity")).or_else(|| range(rate.get("doseRange")))
    });
    let timing = dosage.get("timing");
    let schedule = concept(timing.and_then(|t| t.get("code"))).or_else(|| {
        let repeat = timing?.get("repeat")?;
        let frequency = repeat.get("frequency").and_then(scalar);
        let period = repeat.get("period").and_then(scalar);
        let unit = repeat
            .get("periodUnit")
            .and_then(Value::as_str)
            .map(|unit| match unit {
                "s" => "second(s)",
                "min" => "minute(s)",
                "h" => "hour(s)",
                "d" => "day(s)",
                "wk" => "week(s)",
                "mo" => "month(s)",
                "a" => "year(s)",
                _ => "period(s)",
            });
        Some(format!(
            "{} time(s) every {} {}",
            frequency.unwrap_or_else(|| "1".to_owned()),
            period?,
            unit.unwrap_or("period(s)")
        ))
    });
    join([
        dose,
        schedule,
        route,
        as_needed,
        text(dosage.get("patientInstruction")),
    ])
}

/// `value (use)` for an address or contact point with a `use`.
fn with_use(value: Option<String>, element: &Value) -> Option<String> {
    let value = value?;
    Some(match text(element.get("use")) {
        Some(use_) => format!("{value} ({use_})"),
        None => value,
    })
}

/// A HumanName: its text, or its parts in order.
fn name(value: &Value) -> Option<String> {
    if let Some(written) = text(value.get("text")) {
        return Some(written);
    }
    if let Some(plain) = text_value(value) {
        return Some(plain); // `name` is a plain string on some resource types.
    }
    let mut parts: Vec<String> = array(value.get("prefix")).filter_map(text_value).collect();
    parts.extend(array(value.get("given")).filter_map(text_value));
    parts.extend(text(value.get("family")));
    parts.extend(array(value.get("suffix")).filter_map(text_value));
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn notes(item: &mut Item, r: &Map<String, Value>) {
    for note in array(r.get("note")) {
        item.add("Note", text(note.get("text")));
    }
}
