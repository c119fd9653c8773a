//! The document's human-readable narrative, generated from structured fields.
//!
//! Viewers render `text.div` as HTML, and imported narrative may hold markup, script or statements
//! the structured data does not make. So the builder discards it and writes its own here: a fixed
//! set of XHTML elements (`div`, `p`, `b`, `ul`, `li`, `table` and its parts, all allowed by FHIR's
//! narrative rules) around text that always goes through [`escape`].

use serde_json::{Value, json};

use super::{EmptyReason, Section};

const DIV_OPEN: &str = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;
/// Shown for a field the resource does not have.
const MISSING: &str = "—";

/// A `Narrative` element with `status: generated`.
pub(super) fn generated(div: String) -> Value {
    json!({ "status": "generated", "div": div })
}

/// Escapes `&<>"'` for XHTML text and attributes, and replaces the characters XML 1.0 forbids
/// (most C0 controls, U+FFFE, U+FFFF), which would make the whole `div` unparseable.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => escaped.push('\u{fffd}'),
            _ => escaped.push(character),
        }
    }
    escaped
}

/// One line of the Composition's overview.
pub(super) enum Line {
    Entries(usize),
    Empty(EmptyReason),
}

/// What the Composition's narrative says about the document.
pub(super) struct Summary<'a> {
    pub(super) title: &'a str,
    pub(super) timestamp: &'a str,
    pub(super) patient: &'a Value,
    pub(super) sections: Vec<(&'static str, Line)>,
    /// Coverage entries, which no section lists.
    pub(super) coverage: usize,
}

pub(super) fn composition_div(summary: &Summary<'_>) -> String {
    let patient = summary.patient;
    let facts = [
        ("Patient", human_name(&patient["name"])),
        ("Date of birth", text(&patient["birthDate"])),
        ("Summary date", Some(summary.timestamp.to_owned())),
    ];
    let mut div = format!("{DIV_OPEN}<p><b>{}</b></p><ul>", escape(summary.title));
    for (label, value) in facts {
        div.push_str(&format!("<li>{label}: {}</li>", cell(value)));
    }
    div.push_str("</ul>");
    let mut rows: Vec<Vec<Option<String>>> = summary
        .sections
        .iter()
        .map(|(title, line)| vec![Some((*title).to_owned()), Some(line_text(line))])
        .collect();
    if summary.coverage > 0 {
        rows.push(vec![
            Some("Insurance coverage (outside the IPS sections)".to_owned()),
            Some(count(summary.coverage)),
        ]);
    }
    div.push_str(&table(&["Section", "Content"], rows));
    div.push_str("</div>");
    div
}

fn line_text(line: &Line) -> String {
    match line {
        Line::Entries(entries) => count(*entries),
        Line::Empty(reason) => reason_sentence(*reason).to_owned(),
    }
}

fn count(entries: usize) -> String {
    match entries {
        1 => "1 entry".to_owned(),
        _ => format!("{entries} entries"),
    }
}

fn reason_sentence(reason: EmptyReason) -> &'static str {
    match reason {
        EmptyReason::Withheld => "Not shared: the patient chose to withhold this information.",
        EmptyReason::Unavailable => "No information on file.",
    }
}

/// The narrative of a mandatory section with no entries.
pub(super) fn empty_div(reason: EmptyReason) -> String {
    format!("{DIV_OPEN}<p>{}</p></div>", escape(reason_sentence(reason)))
}

/// The cells of one table row, from one resource.
type RowFn = fn(&Value) -> Vec<Option<String>>;

/// A table with one row per resource, columns chosen for the section.
pub(super) fn section_div(section: Section, resources: &[&Value]) -> String {
    let (headers, row): (&[&str], RowFn) = match section {
        Section::Problems => (&["Problem", "Clinical status", "Onset"], problem),
        Section::Allergies => (
            &["Substance", "Criticality", "Clinical status", "Reactions"],
            allergy,
        ),
        Section::Medications => (&["Medication", "Status", "Dosage", "Since"], medication),
        Section::Immunizations => (&["Vaccine", "Status", "Date"], immunization),
        Section::Procedures => (&["Procedure", "Status", "Date"], procedure),
        Section::Results | Section::VitalSigns => (&["Test", "Result", "Date"], observation),
        Section::PlanOfCare => (&["Plan", "Description", "Status", "Start"], care_plan),
    };
    let rows = resources.iter().map(|resource| row(resource)).collect();
    format!("{DIV_OPEN}{}</div>", table(headers, rows))
}

fn table(headers: &[&str], rows: Vec<Vec<Option<String>>>) -> String {
    let mut html = String::from("<table><thead><tr>");
    for header in headers {
        html.push_str(&format!("<th>{}</th>", escape(header)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for value in row {
            html.push_str(&format!("<td>{}</td>", cell(value)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

fn cell(value: Option<String>) -> String {
    value.map_or_else(|| MISSING.to_owned(), |value| escape(&value))
}

fn problem(condition: &Value) -> Vec<Option<String>> {
    vec![
        concept(&condition["code"]),
        concept(&condition["clinicalStatus"]),
        when(condition, "onset").or_else(|| quantity(&condition["onsetAge"])),
    ]
}

fn allergy(allergy: &Value) -> Vec<Option<String>> {
    let reactions = joined(
        items(&allergy["reaction"])
            .flat_map(|reaction| items(&reaction["manifestation"]))
            .filter_map(concept),
        ", ",
    );
    vec![
        concept(&allergy["code"]),
        text(&allergy["criticality"]),
        concept(&allergy["clinicalStatus"]),
        reactions,
    ]
}

/// A MedicationStatement, or a MedicationRequest (`dosageInstruction`, and `authoredOn` for
/// "Since"). The medicine is its `medicationCodeableConcept`, else the reference's `display`, else
/// the code of the contained Medication the reference names (import puts it there).
fn medication(medication: &Value) -> Vec<Option<String>> {
    let dosage = joined(
        items(&medication["dosage"])
            .chain(items(&medication["dosageInstruction"]))
            .filter_map(|dosage| text(&dosage["text"])),
        "; ",
    );
    vec![
        concept(&medication["medicationCodeableConcept"])
            .or_else(|| text(&medication["medicationReference"]["display"]))
            .or_else(|| {
                concept(&contained(medication, &medication["medicationReference"])?["code"])
            }),
        text(&medication["status"]),
        dosage,
        when(medication, "effective").or_else(|| text(&medication["authoredOn"])),
    ]
}

/// The resource in `resource.contained` that a `#id` reference names.
fn contained<'r>(resource: &'r Value, reference: &Value) -> Option<&'r Value> {
    let id = reference["reference"].as_str()?.strip_prefix('#')?;
    items(&resource["contained"]).find(|inner| inner["id"] == id)
}

fn immunization(immunization: &Value) -> Vec<Option<String>> {
    vec![
        concept(&immunization["vaccineCode"]),
        text(&immunization["status"]),
        when(immunization, "occurrence"),
    ]
}

fn procedure(procedure: &Value) -> Vec<Option<String>> {
    vec![
        concept(&procedure["code"]),
        text(&procedure["status"]),
        when(procedure, "performed"),
    ]
}

fn observation(observation: &Value) -> Vec<Option<String>> {
    let components = items(&observation["component"]).filter_map(|component| {
        let value = observed_value(component)?;
        Some(match concept(&component["code"]) {
            Some(name) => format!("{name}: {value}"),
            None => value,
        })
    });
    let result = joined(
        observed_value(observation).into_iter().chain(components),
        "; ",
    );
    vec![
        concept(&observation["code"]),
        result,
        when(observation, "effective").or_else(|| text(&observation["issued"])),
    ]
}

fn care_plan(plan: &Value) -> Vec<Option<String>> {
    vec![
        text(&plan["title"]).or_else(|| items(&plan["category"]).find_map(concept)),
        text(&plan["description"]),
        text(&plan["status"]),
        text(&plan["period"]["start"]),
    ]
}

/// `value[x]` of an Observation or one of its components, in the types a summary shows.
fn observed_value(observation: &Value) -> Option<String> {
    quantity(&observation["valueQuantity"])
        .or_else(|| concept(&observation["valueCodeableConcept"]))
        .or_else(|| text(&observation["valueString"]))
        .or_else(|| number(&observation["valueInteger"]))
        .or_else(|| {
            observation["valueBoolean"]
                .as_bool()
                .map(|value| if value { "yes" } else { "no" }.to_owned())
        })
}

/// `<field>DateTime`, `<field>Period.start`, `<field>String` or `<field>Instant`, as written.
fn when(resource: &Value, field: &str) -> Option<String> {
    text(&resource[format!("{field}DateTime").as_str()])
        .or_else(|| text(&resource[format!("{field}Period").as_str()]["start"]))
        .or_else(|| text(&resource[format!("{field}String").as_str()]))
        .or_else(|| text(&resource[format!("{field}Instant").as_str()]))
}

/// A CodeableConcept's `text`, else its first coding's display, else that coding's code.
fn concept(concept: &Value) -> Option<String> {
    text(&concept["text"])
        .or_else(|| items(&concept["coding"]).find_map(|coding| text(&coding["display"])))
        .or_else(|| items(&concept["coding"]).find_map(|coding| text(&coding["code"])))
}

fn quantity(quantity: &Value) -> Option<String> {
    let value = number(&quantity["value"])?;
    let comparator = text(&quantity["comparator"]).unwrap_or_default();
    Some(
        match text(&quantity["unit"]).or_else(|| text(&quantity["code"])) {
            Some(unit) => format!("{comparator}{value} {unit}"),
            None => format!("{comparator}{value}"),
        },
    )
}

/// A HumanName list's preferred name: the first `official` or `usual` one, else the first.
fn human_name(names: &Value) -> Option<String> {
    let preferred = items(names)
        .find(|name| name["use"] == "official" || name["use"] == "usual")
        .or_else(|| items(names).next())?;
    text(&preferred["text"]).or_else(|| {
        let parts = items(&preferred["given"]).chain(std::iter::once(&preferred["family"]));
        joined(parts.filter_map(text), " ")
    })
}

fn number(value: &Value) -> Option<String> {
    value.as_number().map(ToString::to_string)
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

fn items(value: &Value) -> std::slice::Iter<'_, Value> {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
}

fn joined(parts: impl Iterator<Item = String>, separator: &str) -> Option<String> {
    let parts: Vec<String> = parts.collect();
    (!parts.is_empty()).then(|| parts.join(separator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_xml_forbidden_characters() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(
            escape("a\u{0}b\u{1b}c\td\u{ffff}"),
            "a\u{fffd}b\u{fffd}c\td\u{fffd}"
        );
        assert_eq!(escape("Zoë 120/80"), "Zoë 120/80");
    }

    #[test]
    fn observation_shows_value_and_components() {
        let panel = json!({
            "code": { "coding": [{ "code": "85354-9" }] },
            "component": [
                { "code": { "text": "Systolic" }, "valueQuantity": { "value": 120, "unit": "mmHg" } },
                { "code": { "text": "Diastolic" }, "valueQuantity": { "value": 80.5, "code": "mm[Hg]" } }
            ],
            "effectivePeriod": { "start": "2025-01-01" }
        });
        assert_eq!(
            observation(&panel),
            vec![
                Some("85354-9".to_owned()),
                Some("Systolic: 120 mmHg; Diastolic: 80.5 mm[Hg]".to_owned()),
                Some("2025-01-01".to_owned()),
            ]
        );
        let flag = json!({ "valueBoolean": false, "valueQuantity": { "unit": "no value" } });
        assert_eq!(observation(&flag)[1], Some("no".to_owned()));
    }

    #[test]
    fn missing_fields_show_a_dash() {
        let html = section_div(
            Section::Procedures,
            &[&json!({ "resourceType": "Procedure" })],
        );
        assert_eq!(html.matches(MISSING).count(), 3, "{html}");
        assert!(html.starts_with(DIV_OPEN) && html.ends_with("</div>"));
    }

    #[test]
    fn a_medication_is_named_by_its_contained_medication() {
        let statement = json!({
            "contained": [
                { "resourceType": "Provenance", "id": "other" },
                { "resourceType": "Medication", "id": "medication", "code": { "coding": [{ "display": "Anastrozole 1 mg" }] } }
            ],
            "medicationReference": { "reference": "#medication" },
            "status": "active"
        });
        assert_eq!(
            medication(&statement)[0],
            Some("Anastrozole 1 mg".to_owned())
        );
        let mut elsewhere = statement.clone();
        elsewhere["medicationReference"]["reference"] = json!("Medication/medication");
        assert_eq!(
            medication(&elsewhere)[0],
            None,
            "only a contained one is read"
        );
        let mut described = statement;
        described["medicationReference"]["display"] = json!("Arimidex");
        assert_eq!(medication(&described)[0], Some("Arimidex".to_owned()));
    }

    #[test]
    fn preferred_name() {
        let names = json!([
            { "use": "nickname", "text": "Al" },
            { "use": "official", "given": ["Alex", "Demo"], "family": "Example" }
        ]);
        assert_eq!(human_name(&names), Some("Alex Demo Example".to_owned()));
        assert_eq!(human_name(&json!([])), None);
    }
}
