//! The PDFs are read back with lopdf, a PDF reader that shares no code with the writer: its
//! text extraction goes through each font's `ToUnicode` map, as a receiver's indexing or a screen
//! reader would.

use serde_json::{Value, json};

use super::*;
use crate::issuer::fhir::PatientRecord;
use crate::issuer::patient_shared::{SharedBundleOptions, build_patient_shared_bundle};

const SHARED_AT: &str = "2026-12-06T10:00:00.000Z";

fn demo_bundle() -> Value {
    build_patient_shared_bundle(
        &PatientRecord::demo(),
        &SharedBundleOptions {
            selected: &[],
            bundle_id: "0b7e3f52-8c1d-4a6e-9f20-5d4c3b2a1908",
            timestamp: SHARED_AT,
        },
    )
}

/// The PDF's text as the independent reader extracts it, a line per line drawn.
fn raw_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF header");
    let document = lopdf::Document::load_mem(pdf).expect("the PDF parses");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    document
        .extract_text(&pages)
        .expect("the PDF's text extracts")
}

/// [`raw_text`] with every run of whitespace made one space (where a line wraps is the layout's
/// business).
fn extracted(pdf: &[u8]) -> String {
    normalized(&raw_text(pdf))
}

fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn page_count(pdf: &[u8]) -> usize {
    lopdf::Document::load_mem(pdf)
        .expect("the PDF parses")
        .get_pages()
        .len()
}

/// What names each resource: its main concept's text and every display of its codings, a care
/// plan's title, a coverage's payors.
fn display_texts(resource: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for field in ["code", "vaccineCode", "medicationCodeableConcept"] {
        let Some(concept) = resource.get(field) else {
            continue;
        };
        texts.extend(
            concept
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        for coding in concept["coding"].as_array().into_iter().flatten() {
            texts.extend(
                coding
                    .get("display")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
    }
    texts.extend(
        resource
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    for payor in resource["payor"].as_array().into_iter().flatten() {
        texts.extend(
            payor
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
    }
    texts
}

#[test]
fn the_demo_summary_shows_the_patient_and_every_resource() {
    let bundle = demo_bundle();
    let pdf = render_summary(&bundle, Some("For Dr. Rivera"), SHARED_AT).expect("renders");
    let text = extracted(&pdf);

    for expected in [
        "Patient summary",
        "For Dr. Rivera",
        "Shared 2026-12-06 10:00 UTC",
        "Alex Demo Example",
        "Birth date: 1984-03-15",
        "Gender: Other",
        "DEMO-0001",
        "1 Example Street, Anytown, 00000, ZZ (home)",
        "Email: alex.demo@example.org (home)",
        "Page 1 of",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    let mut resources = 0;
    for entry in bundle["entry"].as_array().expect("entries") {
        let resource = &entry["resource"];
        if resource["resourceType"] == "Patient" {
            continue;
        }
        resources += 1;
        let names = display_texts(resource);
        assert!(!names.is_empty(), "the test knows how {resource} is named");
        for name in names {
            assert!(text.contains(&normalized(&name)), "missing {name:?}");
        }
    }
    assert!(resources >= 10, "the demo patient shares its records");
    // A heading per type, in the clinical order.
    let headings = [
        "Conditions",
        "Allergies",
        "Medications",
        "Immunizations",
        "Procedures",
        "Observations",
        "Care plans",
        "Coverage",
    ];
    let at: Vec<usize> = headings
        .iter()
        .map(|heading| text.find(heading).expect("a heading per type"))
        .collect();
    assert!(at.windows(2).all(|pair| pair[0] < pair[1]), "{at:?}");
}

#[test]
fn the_demo_summary_shows_statuses_dates_values_reactions_dosage_and_coverage() {
    let text = extracted(&render_summary(&demo_bundle(), None, SHARED_AT).expect("renders"));
    for expected in [
        // Condition: statuses, onset, recorded date, code.
        "Status: Active, Confirmed",
        "Onset: 2019-06-10",
        "Recorded: 2002-01-14",
        "SNOMED CT 38341003 Hypertensive disorder, systemic arterial (disorder)",
        // AllergyIntolerance: criticality and reaction.
        "Criticality: high",
        "Reaction: Hives (severity: moderate)",
        // MedicationStatement: period and dosage.
        "Taken: from 2019-06-10",
        "Dosage: Take 1 tablet by mouth once daily (route: Oral route (qualifier value))",
        // Immunization.
        "Given: 2024-10-15",
        // Procedure.
        "Performed: 2008-07-22",
        // Observations: quantities, components, reference range, effective time.
        "Value: 5.6 %",
        "Value: 182 mg/dL",
        "Systolic blood pressure: 128 mmHg",
        "Diastolic blood pressure: 82 mmHg",
        "Reference range: up to 5.7 %",
        "Taken: 2025-01-06 09:30 UTC",
        // CarePlan.
        "Period: from 2019-06-10",
        "Activity: Exercise therapy (regime/therapy), Walk briskly for 30 minutes on five days a week (in-progress)",
        // Coverage.
        "Type: extended healthcare",
        "Subscriber ID: DEMO-SUB-0001",
        "Relationship: Self",
        "Period: 2025-01-01 to 2025-12-31",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    // No label given: nothing stands in for one.
    assert!(!text.contains("None"));
}

#[test]
fn the_demo_summary_is_small_and_parses() {
    let pdf = render_summary(&demo_bundle(), Some("Demo"), SHARED_AT).expect("renders");
    assert!(pdf.len() < 150 * 1024, "{} bytes", pdf.len());
    assert!(page_count(&pdf) >= 1);
}

#[test]
fn renders_are_deterministic() {
    let bundle = demo_bundle();
    assert_eq!(
        render_summary(&bundle, Some("x"), SHARED_AT),
        render_summary(&bundle, Some("x"), SHARED_AT)
    );
    assert_eq!(
        render_story("A story.", SHARED_AT),
        render_story("A story.", SHARED_AT)
    );
}

#[test]
fn a_medication_is_named_by_the_medication_its_statement_contains() {
    // As import stores the HL7 IPS example's statements: the Medication inside, named by `#id`.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "name": [{"text": "Martha DeLarosa"}]}},
            {"fullUrl": "urn:uuid:2", "resource": {
                "resourceType": "MedicationStatement",
                "contained": [{"resourceType": "Medication", "id": "medication", "code": {"coding": [
                    {"system": "http://snomed.info/sct", "code": "108774000", "display": "Product containing anastrozole (medicinal product)"},
                    {"system": "http://www.whocc.no/atc", "code": "L02BG03", "display": "anastrozole"}
                ]}}],
                "medicationReference": {"reference": "#medication", "display": "Arimidex"},
                "status": "active"
            }},
            {"fullUrl": "urn:uuid:3", "resource": {
                "resourceType": "MedicationRequest",
                "medicationReference": {"reference": "#missing", "display": "Black cohosh"},
                "status": "active"
            }},
        ]
    });
    let text = extracted(&render_summary(&bundle, None, SHARED_AT).expect("renders"));
    for expected in [
        "Product containing anastrozole (medicinal product)",
        "Code: SNOMED CT 108774000; http://www.whocc.no/atc L02BG03 anastrozole",
        "Described as: Arimidex",
        // Nothing to resolve: the reference's description names it.
        "Black cohosh",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    assert!(!text.contains("Medication not named"), "{text}");
}

#[test]
fn greek_and_cyrillic_names_round_trip() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {
                "resourceType": "Patient",
                "name": [{"family": "Παπαδοπούλου", "given": ["Ελένη"]}, {"text": "Жанна Иванова"}],
                "birthDate": "1980-02-29"
            }},
            {"fullUrl": "urn:uuid:2", "resource": {
                "resourceType": "Condition",
                "code": {"text": "Гипертония (αρτηριακή υπέρταση) — ≥ 140/90 mmHg, 5 µg, 10 €"}
            }},
        ]
    });
    let pdf =
        render_summary(&bundle, Some("Για τον γιατρό · Для врача"), SHARED_AT).expect("renders");
    let text = extracted(&pdf);
    for expected in [
        "Ελένη Παπαδοπούλου",
        "Also known as: Жанна Иванова",
        "Гипертония (αρτηριακή υπέρταση) — ≥ 140/90 mmHg, 5 µg, 10 €",
        "Για τον γιατρό · Для врача",
        "Ελένη Παπαδοπούλου · born 1980-02-29",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
}

#[test]
fn odd_data_renders_without_panicking() {
    let long_word = "x".repeat(700);
    let cases = [
        json!(null),
        json!("a string"),
        json!({}),
        json!({"entry": "not an array"}),
        json!({"entry": [1, "two", null, {"resource": 3}, {"resource": {}}]}),
        json!({"entry": [
            {"resource": {"resourceType": 7, "code": 12, "status": ["active"]}},
            {"resource": {"resourceType": "Patient", "name": "plain", "birthDate": 1984, "identifier": [{"value": 5}], "address": [{"line": [1, "Main\tStreet\u{0007}"]}]}},
            {"resource": {"resourceType": "Observation", "code": {"coding": [{"code": "1234-5"}]}, "valueQuantity": {"value": "high"}, "component": [{}, {"code": {"text": "part"}, "valueString": 3}]}},
            {"resource": {"resourceType": "MedicationRequest", "medicationReference": {"reference": "urn:uuid:med"}, "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg"}}]}]}},
            {"fullUrl": "urn:uuid:med", "resource": {"resourceType": "Medication", "code": {"text": "Amoxicillin 500 mg"}}},
            {"resource": {"resourceType": "AllergyIntolerance", "reaction": [{}, {"manifestation": "rash"}]}},
            {"resource": {"resourceType": "Condition", "code": {"text": long_word.clone()}, "onsetDateTime": "2020-01-0\u{1b}[31m1", "note": [{"text": "line one\nline two\r\u{202e}reversed"}]}},
            {"resource": {"resourceType": "DocumentReference", "description": "never shown"}},
            {"resource": {"resourceType": "Goal", "description": {"text": "Walk more"}}},
            {"resource": {"resourceType": "Goal"}},
        ]}),
    ];
    for bundle in &cases {
        let pdf = render_summary(bundle, Some("\u{0}\u{1b}label"), "not a date").expect("renders");
        let text = extracted(&pdf);
        assert!(text.contains("Patient summary"));
        assert!(
            !text.chars().any(|c| c.is_control()),
            "a control character leaked"
        );
    }
    let text = extracted(&render_summary(&cases[5], None, SHARED_AT).expect("renders"));
    for expected in [
        "Name not given",
        "1234-5",
        "Value: high",
        "part: no value",
        "Amoxicillin 500 mg",
        "Dosage: 5 mg, 2 time(s) every 1 day(s)",
        "Main Street",
        "line one line two reversed",
        "Goal not named",
        "Walk more",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    assert!(
        !text.contains("never shown"),
        "DocumentReferences are not summarised"
    );
    // The long word is broken across lines, none of it lost.
    let letters: String = text.chars().filter(|c| *c == 'x').collect();
    assert!(letters.len() >= 700);
    // An empty Bundle still says what it is.
    let text = extracted(&render_summary(&json!({}), None, SHARED_AT).expect("renders"));
    assert!(text.contains("No patient details were shared."));
    assert!(text.contains("No other records were shared."));
}

#[test]
fn the_story_keeps_its_paragraphs_in_order() {
    let story = "I manage my asthma well.\r\n\r\nMy main worry is my blood pressure:\nit rose last winter.\n\n\n  \nΘέλω να μιλήσουμε για τη διατροφή. Я хочу обсудить питание.";
    let pdf = render_story(story, SHARED_AT).expect("renders");
    let raw = raw_text(&pdf);
    let text = normalized(&raw);
    assert!(text.contains("My story"));
    assert!(text.contains("shared 2026-12-06 10:00 UTC"));
    let at: Vec<usize> = [
        "I manage my asthma well.",
        "My main worry is my blood pressure:",
        "it rose last winter.",
        "Θέλω να μιλήσουμε για τη διατροφή. Я хочу обсудить питание.",
    ]
    .iter()
    .map(|paragraph| text.find(paragraph).expect("every paragraph is there"))
    .collect();
    assert!(at.windows(2).all(|pair| pair[0] < pair[1]), "{at:?}");
    // The line break inside the second paragraph is kept: the line ends there, short as it is.
    assert!(
        raw.lines()
            .any(|line| line.trim() == "My main worry is my blood pressure:")
    );
    assert_eq!(page_count(&pdf), 1);
}

#[test]
fn a_long_story_paginates() {
    let sentence = "Every word of this story matters to me and to my doctors. ";
    let mut story = String::new();
    while story.chars().count() + sentence.len() <= MAX_STORY_CHARS {
        story.push_str(sentence);
        if story.len().is_multiple_of(7) {
            story.push_str("\n\n");
        }
    }
    let story = format!(
        "{story}{}",
        "y".repeat(MAX_STORY_CHARS - story.chars().count())
    );
    assert_eq!(story.chars().count(), MAX_STORY_CHARS);
    let pdf = render_story(&story, SHARED_AT).expect("renders");
    let pages = page_count(&pdf);
    assert!(pages > 1, "{pages} page(s)");
    let text = extracted(&pdf);
    assert!(text.contains(&format!("Page 1 of {pages}")));
    assert!(text.contains(&format!("Page {pages} of {pages}")));
    assert_eq!(
        text.matches("Every word of this story").count(),
        story.matches("Every word of this story").count()
    );

    let too_long = "z".repeat(MAX_STORY_CHARS + 1);
    assert_eq!(
        render_story(&too_long, SHARED_AT),
        Err(PdfError::StoryTooLong)
    );
    // Counted in Unicode scalar values, not bytes.
    assert!(render_story(&"ж".repeat(MAX_STORY_CHARS), SHARED_AT).is_ok());
}

#[test]
fn errors_are_fixed_words() {
    for error in [
        PdfError::Font,
        PdfError::Write,
        PdfError::StoryTooLong,
        PdfError::NotRun("a PDF render panicked"),
    ] {
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn times_read_as_people_read_them() {
    assert_eq!(when("2025-01-06T09:30:00Z"), "2025-01-06 09:30 UTC");
    assert_eq!(when("2025-12-19T19:42:02.887Z"), "2025-12-19 19:42 UTC");
    assert_eq!(
        when("2025-01-06T09:30:00+02:00"),
        "2025-01-06 09:30 (UTC+02:00)"
    );
    assert_eq!(when("2025-01-06T09:30"), "2025-01-06 09:30");
    assert_eq!(when("2025-01-06"), "2025-01-06");
    assert_eq!(when("2025"), "2025");
    assert_eq!(when("ΔΔΔΔΔΔΔΔΔΔΔΔΔΔ"), "ΔΔΔΔΔΔΔΔΔΔΔΔΔΔ");
    assert_eq!(when(" 2025-01-06\n"), "2025-01-06");
}

#[tokio::test]
async fn the_renderer_runs_renders_and_reports_a_panic() {
    let renderer = PdfRenderer::new(0);
    let pdf = renderer
        .summary(Arc::new(demo_bundle()), None, SHARED_AT.to_owned())
        .await
        .expect("renders");
    assert!(extracted(&pdf).contains("Alex Demo Example"));
    let pdf = renderer
        .story("Hello.".to_owned(), SHARED_AT.to_owned())
        .await
        .expect("renders");
    assert!(extracted(&pdf).contains("Hello."));
    let panicked = renderer.run("test", || panic!("a broken render")).await;
    assert_eq!(panicked, Err(PdfError::NotRun("a PDF render panicked")));
    // The slot came back.
    assert_eq!(renderer.slots.available_permits(), 1);
}

/// Size and time of the demo patient's summary. `cargo test --release -- --ignored
/// --nocapture measure_demo_summary`.
#[test]
#[ignore = "a measurement, not a check: run it in a release build"]
fn measure_demo_summary() {
    let bundle = demo_bundle();
    let pdf = render_summary(&bundle, Some("Demo"), SHARED_AT).expect("renders");
    const RUNS: u32 = 50;
    let started = std::time::Instant::now();
    for _ in 0..RUNS {
        std::hint::black_box(render_summary(&bundle, Some("Demo"), SHARED_AT).expect("renders"));
    }
    let each = started.elapsed() / RUNS;
    eprintln!(
        "demo summary: {} bytes, {} page(s), {:.2} ms per render",
        pdf.len(),
        page_count(&pdf),
        each.as_secs_f64() * 1e3
    );
}

/// A Bundle whose one Observation has `components` components, each a detail line.
fn observation_with_components(components: usize) -> Value {
    let component =
        json!({"code": {"text": "Reading"}, "valueQuantity": {"value": 1, "unit": "mm"}});
    json!({"resourceType": "Bundle", "type": "collection", "timestamp": SHARED_AT, "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "name": [{"text": "Pat"}]}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "A long series"}, "component": vec![component; components]}}
    ]})
}

#[test]
fn one_item_with_many_details_lays_out_in_linear_time_and_long_documents_are_refused() {
    // Laid out quadratically, 60,000 kept-together lines would take minutes in a debug build.
    assert_eq!(
        render_summary(&observation_with_components(60_000), None, SHARED_AT),
        Err(PdfError::TooLarge)
    );
    let pdf = render_summary(&observation_with_components(500), None, SHARED_AT).expect("renders");
    let pages = page_count(&pdf);
    assert!((2..=layout::MAX_PAGES).contains(&pages), "{pages} pages");
}

#[tokio::test]
async fn a_render_waits_for_a_slot_only_so_long() {
    tokio::time::pause();
    let renderer = PdfRenderer::new(1);
    let _taken = Arc::clone(&renderer.slots)
        .acquire_owned()
        .await
        .expect("a slot");
    let waiting = renderer.story("Hello.".to_owned(), SHARED_AT.to_owned());
    assert_eq!(waiting.await, Err(PdfError::Busy));
}
