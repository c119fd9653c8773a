//! The PDF documents a direct link carries for the CMS Kill the Clipboard profile (issue 13):
//! the FHIR-rendered summary of the PatientSharedBundle ([`render_summary`], LOINC `60591-5`)
//! and the patient's own story ([`render_story`], LOINC `51855-5` "Patient Note").
//!
//! An EHR that cannot take in discrete FHIR data can still file a PDF to the chart, so the
//! summary shows every resource of the Bundle except DocumentReferences, in words, with real
//! (extractable) text in an embedded font that covers Latin, Greek and Cyrillic. How the Bundle
//! is read is `summary`'s; how text becomes pages is `layout`'s.
//!
//! Both renders are pure: no I/O, and the same inputs give the same bytes. They are CPU work of
//! a few milliseconds, so the service runs them through [`PdfRenderer`], on the blocking pool
//! with a bound on how many run at once, as it does QR codes.
//!
//! Nothing from the Bundle or the story reaches an error: [`PdfError`]s are fixed words.

mod layout;
mod summary;

use std::sync::Arc;

use serde_json::Value;

use layout::{BODY, Block, META, Page, TITLE};

// The longest story accepted, in Unicode scalar values: the input's own limit, checked again.
use super::request::STORY_MAX_CHARS as MAX_STORY_CHARS;

/// Why no PDF came out. The messages are fixed: they never quote the record or the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PdfError {
    /// The embedded fonts could not be read (a broken build).
    #[error("the embedded PDF font could not be read")]
    Font,
    /// The PDF writer refused the document.
    #[error("the PDF could not be written")]
    Write,
    /// The story is longer than [`MAX_STORY_CHARS`].
    #[error("the story is longer than 10000 characters")]
    StoryTooLong,
    /// The document would have more than `layout::MAX_PAGES` pages.
    #[error("the PDF would be too long")]
    TooLarge,
    /// Every render slot stayed taken for `SLOT_WAIT`: the gateway is busy.
    #[error("no PDF render slot came free in time")]
    Busy,
    /// The render could not run: its slots are closed, or it panicked.
    #[error("the PDF render could not run: {0}")]
    NotRun(&'static str),
}

/// The FHIR-rendered summary PDF of a PatientSharedBundle: the Patient's demographics, then every
/// other resource but DocumentReferences, by type; titled "Patient summary", with the link's
/// `label` when there is one and `shared_at` (a FHIR instant, shown to the minute).
pub(crate) fn render_summary(
    bundle: &Value,
    label: Option<&str>,
    shared_at: &str,
) -> Result<Vec<u8>, PdfError> {
    layout::render(&summary::summary(bundle, label, shared_at))
}

/// The PDF of the patient's own story, titled "My story" and dated `shared_at`: paragraphs
/// (separated by blank lines) and the line breaks inside them kept as written.
pub(crate) fn render_story(story: &str, shared_at: &str) -> Result<Vec<u8>, PdfError> {
    if story.chars().count() > MAX_STORY_CHARS {
        return Err(PdfError::StoryTooLong);
    }
    let mut blocks = vec![
        Block::Text(TITLE, "My story".to_owned()),
        Block::Text(
            META,
            format!("In the patient's own words · shared {}", when(shared_at)),
        ),
        Block::Rule,
    ];
    let normalized = story.replace("\r\n", "\n").replace('\r', "\n");
    let mut paragraph: Vec<String> = Vec::new();
    for line in normalized.split('\n') {
        let line = layout::clean(line);
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                blocks.push(Block::Text(BODY, paragraph.join("\n")));
                paragraph.clear();
            }
        } else {
            paragraph.push(line.trim_end().to_owned());
        }
    }
    if !paragraph.is_empty() {
        blocks.push(Block::Text(BODY, paragraph.join("\n")));
    }
    layout::render(&Page {
        title: "My story",
        footer: "My story (patient note)".to_owned(),
        blocks,
    })
}

/// A FHIR date or date-time as people read it: a date-time to the minute with its zone
/// (`2025-01-06T09:30:00Z` is "2025-01-06 09:30 UTC"); anything else (a date, a partial date,
/// something unexpected) as written, cleaned.
fn when(raw: &str) -> String {
    let cleaned = layout::clean(&raw.replace(['\r', '\n'], " "));
    let raw = cleaned.trim();
    let (Some(day), Some("T"), Some(clock), Some(rest)) = (
        raw.get(..10),
        raw.get(10..11),
        raw.get(11..16),
        raw.get(16..),
    ) else {
        return raw.to_owned();
    };
    // Seconds and fractions are dropped; what follows them is the zone.
    let zone = rest.trim_start_matches(|c: char| c == ':' || c == '.' || c.is_ascii_digit());
    match zone {
        "Z" | "+00:00" => format!("{day} {clock} UTC"),
        "" => format!("{day} {clock}"),
        offset => format!("{day} {clock} (UTC{offset})"),
    }
}

/// The longest a render waits for a slot before the creation is answered `OVERLOADED`.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Renders PDFs on the blocking pool, at most `max_concurrent` at once.
#[derive(Debug, Clone)]
pub(crate) struct PdfRenderer {
    slots: Arc<tokio::sync::Semaphore>,
}

impl PdfRenderer {
    /// At most `max_concurrent` renders at once (at least one).
    pub(crate) fn new(max_concurrent: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// [`render_summary`] on the blocking pool, once a slot is free.
    pub(crate) async fn summary(
        &self,
        bundle: Arc<Value>,
        label: Option<String>,
        shared_at: String,
    ) -> Result<Vec<u8>, PdfError> {
        self.run("summary", move || {
            render_summary(&bundle, label.as_deref(), &shared_at)
        })
        .await
    }

    /// [`render_story`] on the blocking pool, once a slot is free.
    pub(crate) async fn story(
        &self,
        story: String,
        shared_at: String,
    ) -> Result<Vec<u8>, PdfError> {
        self.run("story", move || render_story(&story, &shared_at))
            .await
    }

    async fn run(
        &self,
        document: &'static str,
        render: impl FnOnce() -> Result<Vec<u8>, PdfError> + Send + 'static,
    ) -> Result<Vec<u8>, PdfError> {
        // A creation waiting for a slot holds its request's work slot: the wait is bounded.
        let slot = tokio::time::timeout(SLOT_WAIT, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| PdfError::Busy)?
            .map_err(|_| PdfError::NotRun("the PDF render slots are closed"))?;
        tokio::task::spawn_blocking(move || {
            // Held by the work itself: a cancelled request does not free the slot early.
            let _slot = slot;
            let started = std::time::Instant::now();
            let rendered = render();
            metrics::histogram!(crate::metrics::PDF_RENDER_DURATION, "document" => document)
                .record(started.elapsed().as_secs_f64());
            rendered
        })
        .await
        .map_err(|_| PdfError::NotRun("a PDF render panicked"))?
    }
}

#[cfg(test)]
mod tests;
