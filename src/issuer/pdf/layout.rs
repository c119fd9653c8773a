//! The typesetter both documents share: blocks of text in, pages of placed lines out, then the PDF.
//!
//! - **Page.** A4 (595.28 × 841.89 pt), but the text block sits inside the part that A4 and US
//!   Letter (612 × 792 pt) have in common, with 2 cm margins on each side of it: 481.9 pt wide, and
//!   ending, footer included, 2 cm above the bottom of a Letter sheet. The document prints at
//!   actual size on either paper without losing a line.
//! - **Glyphs.** Each character maps to a glyph through the font's `cmap` and advances by its
//!   `hmtx` width: no shaping, which Latin, Greek and Cyrillic text does not need, and the widths
//!   the lines are broken with are exactly the widths drawn. Each glyph keeps the character it
//!   came from, so the PDF's `ToUnicode` map gives the text back to extractors and screen
//!   readers. A character the font lacks draws as the font's empty box.
//! - **Lines.** Broken at spaces; a word wider than the line is broken between characters. A
//!   block can keep with the next one: a run of such blocks (a heading and the item under it, an
//!   item's lines) moves whole to the next page when it does not fit on this one but fits on a
//!   page; a longer run at least never leaves a kept block last on a page. Each page ends with
//!   its footer: a fixed text on the left, "Page n of m" on the right.
//!
//! The text arrives cleaned ([`clean`]): control and invisible formatting characters dropped,
//! tabs made spaces.

use std::sync::LazyLock;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, MetadataProvider};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::PdfError;

const REGULAR: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("fonts/DejaVuSans-Bold.ttf");

/// A4, in points.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
/// US Letter's height: the text block ends where it would on a Letter sheet.
const LETTER_HEIGHT: f32 = 792.0;
/// 2 cm.
const MARGIN: f32 = 56.69;
const TEXT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
const FOOTER_BASELINE: f32 = LETTER_HEIGHT - MARGIN;
const FOOTER_SIZE: f32 = 8.0;
/// The body ends this far above the footer's baseline.
const BODY_BOTTOM: f32 = FOOTER_BASELINE - 22.0;
/// Line height as a multiple of the font size; the baseline sits at this fraction of it.
const LEADING: f32 = 1.35;
const ASCENT: f32 = 0.95;

/// Which of the two embedded faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Weight {
    Regular,
    Bold,
}

/// How a block of text looks and where it goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    weight: Weight,
    size: f32,
    grey: bool,
    indent: f32,
    /// Space above the block, dropped at the top of a page.
    space_before: f32,
    /// The block's last line stays on the page of the next block's first line.
    keep_with_next: bool,
}

impl Style {
    const fn new(weight: Weight, size: f32) -> Self {
        Self {
            weight,
            size,
            grey: false,
            indent: 0.0,
            space_before: 0.0,
            keep_with_next: false,
        }
    }

    fn line_height(self) -> f32 {
        self.size * LEADING
    }

    /// This style, kept on the page of the block that follows.
    pub(super) const fn kept(self) -> Self {
        Self {
            keep_with_next: true,
            ..self
        }
    }
}

/// The document's title.
pub(super) const TITLE: Style = Style::new(Weight::Bold, 18.0);
/// A line under the title (the link's label).
pub(super) const SUBTITLE: Style = Style {
    space_before: 2.0,
    ..Style::new(Weight::Regular, 12.0)
};
/// Grey small print under the title (when it was shared, what the document is).
pub(super) const META: Style = Style {
    grey: true,
    space_before: 2.0,
    ..Style::new(Weight::Regular, 9.0)
};
/// A section heading.
pub(super) const HEADING: Style = Style {
    space_before: 16.0,
    keep_with_next: true,
    ..Style::new(Weight::Bold, 13.0)
};
/// The first line of an item (a resource's name); kept with its details by the caller.
pub(super) const ITEM: Style = Style {
    space_before: 7.0,
    ..Style::new(Weight::Bold, 10.5)
};
/// An item's details, indented under it.
pub(super) const DETAIL: Style = Style {
    indent: 12.0,
    ..Style::new(Weight::Regular, 9.5)
};
/// Running text (a paragraph of the patient's story).
pub(super) const BODY: Style = Style {
    space_before: 8.0,
    ..Style::new(Weight::Regular, 11.0)
};
/// A sentence standing for an empty section.
pub(super) const NOTE: Style = Style {
    grey: true,
    space_before: 4.0,
    ..Style::new(Weight::Regular, 10.0)
};

/// A piece of the document, in reading order.
#[derive(Debug)]
pub(super) enum Block {
    /// Text in a style; a `\n` inside is a line break.
    Text(Style, String),
    /// A thin horizontal rule across the text block.
    Rule,
}

/// What to typeset: the blocks, the document's title (metadata) and the footer's left text.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) title: &'static str,
    pub(super) footer: String,
    pub(super) blocks: Vec<Block>,
}

/// One face: krilla's handle to embed it, and skrifa's tables to map and measure text with.
struct Face {
    font: Font,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
}

impl Face {
    fn load(data: &'static [u8]) -> Option<Self> {
        let font = Font::new(data.into(), 0)?;
        let font_ref = FontRef::new(data).ok()?;
        let location = LocationRef::default();
        let units_per_em = f32::from(font_ref.metrics(Size::unscaled(), location).units_per_em);
        let metrics = font_ref.glyph_metrics(Size::unscaled(), location);
        (units_per_em > 0.0).then_some(Self {
            font,
            charmap: font_ref.charmap(),
            metrics,
            units_per_em,
        })
    }

    /// The glyph of `c` and its advance in ems.
    fn glyph(&self, c: char) -> (GlyphId, f32) {
        let glyph = self.charmap.map(c).unwrap_or_default();
        let advance = self.metrics.advance_width(glyph).unwrap_or(0.0) / self.units_per_em;
        (GlyphId::new(glyph.to_u32()), advance)
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.glyph(c).1).sum::<f32>() * size
    }
}

struct Faces {
    regular: Face,
    bold: Face,
}

impl Faces {
    fn get(&self, weight: Weight) -> &Face {
        match weight {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        }
    }
}

/// Parsed once: the fonts are part of the binary, so they either always load or never do.
static FACES: LazyLock<Option<Faces>> = LazyLock::new(|| {
    Some(Faces {
        regular: Face::load(REGULAR)?,
        bold: Face::load(BOLD)?,
    })
});

/// `text` without control characters (line breaks included: callers split lines first) and
/// invisible formatting characters (Cf: bidirectional overrides, zero-width joiners), with tabs
/// as spaces.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() || c.general_category() == GeneralCategory::Format => None,
            c => Some(c),
        })
        .collect()
}

/// What a page shows, placed; `y` values from the top of the page.
enum Placed {
    /// A line of text on its baseline.
    Line {
        style: Style,
        baseline: f32,
        text: String,
    },
    /// A rule whose top edge is at `top`.
    Rule { top: f32 },
}

/// Typesets `page` into a PDF.
pub(super) fn render(page: &Page) -> Result<Vec<u8>, PdfError> {
    let faces = FACES.as_ref().ok_or(PdfError::Font)?;
    let pages = paginate(faces, &page.blocks);
    // Checked before the costly part, writing: a record this large is better shared as data.
    if pages.len() > MAX_PAGES {
        return Err(PdfError::TooLarge);
    }
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(page.title.to_owned())
            .creator("shl-gateway".to_owned()),
    );
    let total = pages.len();
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).ok_or(PdfError::Write)?;
    for (index, lines) in pages.iter().enumerate() {
        let mut pdf_page = document.start_page_with(settings.clone());
        let mut surface = pdf_page.surface();
        for placed in lines {
            draw_placed(&mut surface, faces, placed);
        }
        draw_footer(&mut surface, faces, &page.footer, index + 1, total);
        surface.finish();
        pdf_page.finish();
    }
    document.finish().map_err(|_| PdfError::Write)
}

/// What each page shows, in order.
fn paginate(faces: &Faces, blocks: &[Block]) -> Vec<Vec<Placed>> {
    // Wrapped once: the lines decide both what is drawn and what stays together.
    let wrapped: Vec<Wrapped> = blocks
        .iter()
        .filter_map(|block| match block {
            Block::Rule => Some(Wrapped::Rule),
            Block::Text(style, text) => {
                let lines = wrap(
                    faces.get(style.weight),
                    text,
                    style.size,
                    TEXT_WIDTH - style.indent,
                );
                (!lines.is_empty()).then_some(Wrapped::Text(*style, lines))
            }
        })
        .collect();
    let runs = run_heights(&wrapped);
    let mut pages: Vec<Vec<Placed>> = vec![Vec::new()];
    let mut y = MARGIN;
    for (index, block) in wrapped.iter().enumerate() {
        let at_top = y <= MARGIN;
        // A block that keeps with the next starts a run of blocks that go on one page: moved
        // whole to the next page when the rest of this one is too short and a page is not.
        // Longer runs only keep this block's last line with the next block's first.
        let run = runs[index];
        let first = match block {
            Wrapped::Text(style, _) if style.keep_with_next => {
                block.height() + wrapped.get(index + 1).map_or(0.0, Wrapped::first_line)
            }
            _ => block.first_line(),
        };
        let needed = if run <= BODY_BOTTOM - MARGIN {
            run
        } else {
            first
        };
        if !at_top && y + needed > BODY_BOTTOM {
            pages.push(Vec::new());
            y = MARGIN;
        }
        match block {
            Wrapped::Rule => {
                push(
                    &mut pages,
                    Placed::Rule {
                        top: y + RULE_SPACE / 2.0,
                    },
                );
                y += RULE_SPACE;
            }
            Wrapped::Text(style, lines) => {
                if y > MARGIN {
                    y += style.space_before;
                }
                let line_height = style.line_height();
                for line in lines {
                    if y + line_height > BODY_BOTTOM && y > MARGIN {
                        pages.push(Vec::new());
                        y = MARGIN;
                    }
                    push(
                        &mut pages,
                        Placed::Line {
                            style: *style,
                            baseline: y + style.size * ASCENT,
                            text: line.clone(),
                        },
                    );
                    y += line_height;
                }
            }
        }
    }
    pages
}

/// A block broken into lines.
enum Wrapped {
    Text(Style, Vec<String>),
    Rule,
}

impl Wrapped {
    /// Its height below what precedes it, space above included.
    fn height(&self) -> f32 {
        match self {
            Self::Text(style, lines) => {
                style.space_before + style.line_height() * lines.len() as f32
            }
            Self::Rule => RULE_SPACE,
        }
    }

    /// The height of its first line, space above included.
    fn first_line(&self) -> f32 {
        match self {
            Self::Text(style, _) => style.space_before + style.line_height(),
            Self::Rule => RULE_SPACE,
        }
    }

    fn keeps_with_next(&self) -> bool {
        matches!(self, Self::Text(style, _) if style.keep_with_next)
    }
}

/// The height of the run of blocks starting at `blocks[0]` that keep together: every block
/// that keeps with the next, and the block after the last of them.
/// For each block, the height of the run that starts with it: the block and every block after
/// it up to the first that does not keep with the next. One pass from the end, so an item with
/// many details costs linear time, not quadratic.
fn run_heights(blocks: &[Wrapped]) -> Vec<f32> {
    let mut runs = vec![0.0; blocks.len()];
    let mut following = 0.0;
    for (index, block) in blocks.iter().enumerate().rev() {
        let run = block.height()
            + if block.keeps_with_next() {
                following
            } else {
                0.0
            };
        runs[index] = run;
        following = run;
    }
    runs
}

/// The most pages one PDF may have: a summary longer than this is refused (`TooLarge`).
pub(super) const MAX_PAGES: usize = 300;

/// Vertical room a rule takes.
const RULE_SPACE: f32 = 10.0;

fn push(pages: &mut [Vec<Placed>], line: Placed) {
    if let Some(page) = pages.last_mut() {
        page.push(line);
    }
}

/// The lines of `text` at `size`, none wider than `width` unless a single character is.
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let space = face.width(" ", size);
    let mut lines = Vec::new();
    for hard_line in text.split('\n') {
        let mut line = String::new();
        let mut line_width = 0.0;
        for word in hard_line.split(' ').filter(|word| !word.is_empty()) {
            let word_width = face.width(word, size);
            if line.is_empty() && word_width <= width {
                line.push_str(word);
                line_width = word_width;
            } else if !line.is_empty() && line_width + space + word_width <= width {
                line.push(' ');
                line.push_str(word);
                line_width += space + word_width;
            } else if word_width <= width {
                lines.push(std::mem::take(&mut line));
                line.push_str(word);
                line_width = word_width;
            } else {
                // Too wide for any line: break it between characters, starting on the current
                // line when a few characters still fit there.
                if !line.is_empty() {
                    line.push(' ');
                    line_width += space;
                }
                for c in word.chars() {
                    let advance = face.glyph(c).1 * size;
                    if line_width + advance > width && !line.trim_end().is_empty() {
                        lines.push(std::mem::take(&mut line).trim_end().to_owned());
                        line_width = 0.0;
                    }
                    line.push(c);
                    line_width += advance;
                }
            }
        }
        lines.push(line);
    }
    // A text of spaces and line breaks only has nothing to show.
    if lines.iter().all(|line| line.is_empty()) {
        lines.clear();
    }
    lines
}

fn fill(grey: bool) -> Fill {
    let color = if grey {
        rgb::Color::new(0x59, 0x59, 0x59)
    } else {
        rgb::Color::new(0, 0, 0)
    };
    Fill {
        paint: color.into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::default(),
    }
}

fn draw_placed(surface: &mut Surface<'_>, faces: &Faces, placed: &Placed) {
    match placed {
        Placed::Rule { top } => {
            let mut path = PathBuilder::new();
            if let Some(rect) = Rect::from_xywh(MARGIN, *top, TEXT_WIDTH, 0.6) {
                path.push_rect(rect);
            }
            if let Some(path) = path.finish() {
                surface.set_fill(Some(fill(true)));
                surface.draw_path(&path);
            }
        }
        Placed::Line {
            style,
            baseline,
            text,
        } => draw_text(
            surface,
            faces.get(style.weight),
            Point::from_xy(MARGIN + style.indent, *baseline),
            style.size,
            style.grey,
            text,
        ),
    }
}

fn draw_text(
    surface: &mut Surface<'_>,
    face: &Face,
    start: Point,
    size: f32,
    grey: bool,
    text: &str,
) {
    if text.is_empty() {
        return;
    }
    let glyphs: Vec<KrillaGlyph> = text
        .char_indices()
        .map(|(at, c)| {
            let (glyph, advance) = face.glyph(c);
            KrillaGlyph::new(glyph, advance, 0.0, 0.0, 0.0, at..at + c.len_utf8(), None)
        })
        .collect();
    surface.set_fill(Some(fill(grey)));
    surface.draw_glyphs(start, &glyphs, face.font.clone(), text, size, false);
}

fn draw_footer(surface: &mut Surface<'_>, faces: &Faces, left: &str, number: usize, total: usize) {
    let face = &faces.regular;
    let right = format!("Page {number} of {total}");
    let right_width = face.width(&right, FOOTER_SIZE);
    let left = truncate(face, left, FOOTER_SIZE, TEXT_WIDTH - right_width - 24.0);
    draw_text(
        surface,
        face,
        Point::from_xy(MARGIN, FOOTER_BASELINE),
        FOOTER_SIZE,
        true,
        &left,
    );
    draw_text(
        surface,
        face,
        Point::from_xy(MARGIN + TEXT_WIDTH - right_width, FOOTER_BASELINE),
        FOOTER_SIZE,
        true,
        &right,
    );
}

/// `text` cut to `width`, with an ellipsis when cut.
fn truncate(face: &Face, text: &str, size: f32, width: f32) -> String {
    let text = text.replace('\n', " ");
    if face.width(&text, size) <= width {
        return text;
    }
    let budget = width - face.width("…", size);
    let mut out = String::new();
    let mut used = 0.0;
    for c in text.chars() {
        let advance = face.glyph(c).1 * size;
        if used + advance > budget {
            break;
        }
        out.push(c);
        used += advance;
    }
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}
