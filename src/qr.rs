//! QR codes for SMART Health Links, rendered as compact standalone SVG.
//!
//! A SMART Health Link is a long URL (the payload is a base64url-encoded JSON
//! document carrying a decryption key), so its QR code is large: a typical
//! link needs a version-15 symbol (77 × 77 modules). The choices below keep
//! that symbol small on the wire and reliable to scan:
//!
//! * **Compact SVG.** Naively emitting one `<rect>` per dark module costs
//!   ~40 bytes per module and well over 100 KB for such a symbol. Instead, all
//!   dark modules go into a single `<path>`: each horizontal run of dark
//!   modules is one stroked segment (`m dx dy h n`), and every move is written
//!   in whichever of its relative or absolute forms is shorter. The `viewBox`
//!   is in module units so every coordinate is a small integer, which keeps
//!   the document under 10 KB and the renderer a single linear pass.
//! * **Byte mode only.** The encoder's automatic segmentation would split the
//!   URL into numeric, alphanumeric and byte segments. Alphanumeric mode has
//!   no lower-case letters, so a case-sensitive base64url payload would be
//!   chopped into many short segments whose headers eat most of the saving,
//!   and multi-segment symbols are where lenient readers are least reliable.
//!   One byte segment carries the URL verbatim and makes the symbol size
//!   predictable from the URL length alone: the version is the smallest whose
//!   byte capacity fits.
//! * **Level M by default.** Medium (~15 % recovery) survives a smudged
//!   screen or a creased printout, while Q or H would need a symbol three to
//!   five versions larger for the same link; at a given printed size, fewer
//!   modules means larger modules, which phone cameras resolve more easily.
//! * **Four-module quiet zone.** The QR specification requires a light border
//!   of four modules; readers rely on it to find the finder patterns, and the
//!   page around an embedded SVG may well be dark. It is painted with the
//!   light colour rather than left transparent for the same reason.

use std::fmt;
use std::str::FromStr;

use qrcode::bits::Bits;
use qrcode::types::Mode;
use qrcode::{EcLevel, QrCode, Version};

/// Smallest accepted size of one module, in pixels.
pub const MIN_MODULE_SIZE: u32 = 1;

/// Largest accepted size of one module, in pixels.
///
/// Bounds the SVG's declared size (at most 185 × 32 = 5920 px for the largest
/// symbol) so that a request cannot ask clients to allocate huge bitmaps.
pub const MAX_MODULE_SIZE: u32 = 32;

/// Width of the light border around the symbol, in modules, as the QR
/// specification requires.
pub const QUIET_ZONE_MODULES: u32 = 4;

/// How much of the symbol may be damaged and still decode.
///
/// Higher levels need more modules for the same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorCorrection {
    /// Recovers about 7 % of the codewords.
    Low,
    /// Recovers about 15 % of the codewords; the default.
    #[default]
    Medium,
    /// Recovers about 25 % of the codewords.
    Quartile,
    /// Recovers about 30 % of the codewords.
    High,
}

impl ErrorCorrection {
    const fn ec_level(self) -> EcLevel {
        match self {
            Self::Low => EcLevel::L,
            Self::Medium => EcLevel::M,
            Self::Quartile => EcLevel::Q,
            Self::High => EcLevel::H,
        }
    }
}

/// An opaque sRGB colour.
///
/// Parsing accepts exactly `#rrggbb` and nothing else, because the value ends
/// up verbatim in an SVG attribute: a permissive parser (named colours,
/// `rgb()`, short forms) would widen what callers can inject into markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Color {
    /// Red channel.
    pub r: u8,
    /// Green channel.
    pub g: u8,
    /// Blue channel.
    pub b: u8,
}

impl Color {
    /// `#000000`.
    pub const BLACK: Self = Self::new(0, 0, 0);
    /// `#ffffff`.
    pub const WHITE: Self = Self::new(0xff, 0xff, 0xff);

    /// A colour from its three channels.
    pub(crate) const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// The `#rrggbb` form, built without the formatting machinery because
    /// it sits on the rendering path.
    fn to_hex(self) -> [u8; 7] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'#'; 7];
        for (i, channel) in [self.r, self.g, self.b].into_iter().enumerate() {
            out[1 + 2 * i] = DIGITS[usize::from(channel >> 4)];
            out[2 + 2 * i] = DIGITS[usize::from(channel & 0x0f)];
        }
        out
    }
}

impl FromStr for Color {
    type Err = QrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Decoding digit by digit rather than with `u8::from_str_radix`,
        // which would also accept a sign such as `#+f0000`.
        fn nibble(digit: u8) -> Option<u8> {
            match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                b'A'..=b'F' => Some(digit - b'A' + 10),
                _ => None,
            }
        }
        fn channel(hi: u8, lo: u8) -> Option<u8> {
            Some(nibble(hi)? << 4 | nibble(lo)?)
        }

        let parsed = match *s.as_bytes() {
            [b'#', r1, r0, g1, g0, b1, b0] => {
                channel(r1, r0).zip(channel(g1, g0)).zip(channel(b1, b0))
            }
            _ => None,
        };
        parsed
            .map(|((r, g), b)| Self::new(r, g, b))
            .ok_or(QrError::InvalidColor)
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

/// How [`to_svg`] draws a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvgOptions {
    /// Error-correction level used when encoding (ignored by [`to_svg`],
    /// which draws an already encoded matrix).
    pub error_correction: ErrorCorrection,
    /// Side of one module in pixels, within
    /// [`MIN_MODULE_SIZE`]`..=`[`MAX_MODULE_SIZE`].
    pub module_size: u32,
    /// Colour of the dark modules.
    pub dark: Color,
    /// Colour of the light modules and the quiet zone.
    pub light: Color,
}

impl Default for SvgOptions {
    /// Level M, 4 px modules, black on white: 4 px keeps a version-15 link
    /// at 340 px, comfortable on screen and on paper.
    fn default() -> Self {
        Self {
            error_correction: ErrorCorrection::default(),
            module_size: 4,
            dark: Color::BLACK,
            light: Color::WHITE,
        }
    }
}

/// Why a QR code could not be produced.
///
/// No message includes the data being encoded: it is a bearer URL that grants
/// access to health records, and error messages end up in logs and responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The data does not fit in the largest symbol (version 40) at the
    /// requested error-correction level.
    #[error("data is too long for a QR code at the requested error-correction level")]
    DataTooLong,
    /// [`SvgOptions::module_size`] is outside the accepted range.
    #[error("module size {size} px is out of range ({min}..={max} px)")]
    ModuleSizeOutOfRange {
        /// The rejected size.
        size: u32,
        /// [`MIN_MODULE_SIZE`].
        min: u32,
        /// [`MAX_MODULE_SIZE`].
        max: u32,
    },
    /// A colour was not written as `#rrggbb`.
    #[error("colour must be written as #rrggbb")]
    InvalidColor,
    /// The encoder rejected its input for a reason other than length; its
    /// messages are fixed strings and never contain the data.
    #[error("QR encoding failed: {0}")]
    Encoding(qrcode::types::QrError),
}

impl From<qrcode::types::QrError> for QrError {
    fn from(err: qrcode::types::QrError) -> Self {
        match err {
            qrcode::types::QrError::DataTooLong => Self::DataTooLong,
            other => Self::Encoding(other),
        }
    }
}

/// An encoded symbol: a square grid of dark and light modules, without the
/// quiet zone.
///
/// Its `Debug` output shows only the dimensions, since the modules encode the
/// (secret) data.
#[derive(Clone, PartialEq, Eq)]
pub struct QrMatrix {
    width: usize,
    version: u8,
    error_correction: ErrorCorrection,
    /// Row-major, `true` for dark.
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Number of modules per side, excluding the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Symbol version, 1 to 40.
    #[cfg(test)]
    pub(crate) fn version(&self) -> u8 {
        self.version
    }

    /// Error-correction level the symbol was encoded with.
    #[cfg(test)]
    pub(crate) fn error_correction(&self) -> ErrorCorrection {
        self.error_correction
    }

    /// Whether the module at column `x`, row `y` is dark. Coordinates outside
    /// the symbol are in the quiet zone, hence light.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    fn rows(&self) -> impl Iterator<Item = &[bool]> {
        // `max(1)` only guards `chunks_exact` against a zero width, which
        // the encoder never produces.
        self.dark.chunks_exact(self.width.max(1))
    }
}

impl fmt::Debug for QrMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QrMatrix")
            .field("width", &self.width)
            .field("version", &self.version)
            .field("error_correction", &self.error_correction)
            .finish_non_exhaustive()
    }
}

/// Encodes `data` as a single byte-mode segment in the smallest symbol that
/// holds it at level `ec`.
///
/// # Errors
///
/// [`QrError::DataTooLong`] if even a version-40 symbol is too small.
pub fn encode(data: &str, ec: ErrorCorrection) -> Result<QrMatrix, QrError> {
    let bytes = data.as_bytes();
    let level = ec.ec_level();
    let version = smallest_byte_mode_version(bytes.len(), level).ok_or(QrError::DataTooLong)?;

    let mut bits = Bits::new(Version::Normal(i16::from(version)));
    bits.push_byte_data(bytes)?;
    bits.push_terminator(level)?;
    let code = QrCode::with_bits(bits, level)?;

    let width = code.width();
    let dark = code
        .into_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    Ok(QrMatrix {
        width,
        version,
        error_correction: ec,
        dark,
    })
}

/// The encoder's own version search sizes mixed-mode segmentations, so the
/// byte-mode size is computed here: mode indicator, length field (whose width
/// depends on the version) and eight bits per byte.
fn smallest_byte_mode_version(len: usize, level: EcLevel) -> Option<u8> {
    let data_bits = Mode::Byte.data_bits_count(len);
    (1..=40_u8).find(|&number| {
        let version = Version::Normal(i16::from(number));
        let needed = 4 + Mode::Byte.length_bits_count(version) + data_bits;
        let length_fits = len < 1 << Mode::Byte.length_bits_count(version);
        length_fits
            && Bits::new(version)
                .max_len(level)
                .is_ok_and(|capacity| needed <= capacity)
    })
}

/// Draws `matrix` as a standalone SVG document.
///
/// The document is `(width + 8) × module_size` pixels square, has a
/// light-coloured background covering the quiet zone, and draws every dark
/// module in one `<path>`. `options.error_correction` is not used here.
///
/// # Errors
///
/// [`QrError::ModuleSizeOutOfRange`] if `options.module_size` is outside
/// [`MIN_MODULE_SIZE`]`..=`[`MAX_MODULE_SIZE`].
pub fn to_svg(matrix: &QrMatrix, options: &SvgOptions) -> Result<String, QrError> {
    let module_size = options.module_size;
    if !(MIN_MODULE_SIZE..=MAX_MODULE_SIZE).contains(&module_size) {
        return Err(QrError::ModuleSizeOutOfRange {
            size: module_size,
            min: MIN_MODULE_SIZE,
            max: MAX_MODULE_SIZE,
        });
    }

    let quiet = u64::from(QUIET_ZONE_MODULES);
    let side_modules = matrix.width as u64 + 2 * quiet;
    let side_px = side_modules * u64::from(module_size);

    // Real symbols need about 1.6 bytes of path data per module, plus the
    // fixed markup; reserving a little more avoids regrowing the buffer.
    let mut svg = String::with_capacity(400 + matrix.dark.len() * 7 / 4);
    svg.push_str(r#"<svg xmlns="http://www.w3.org/2000/svg" width=""#);
    push_int(&mut svg, side_px as i64);
    svg.push_str(r#"" height=""#);
    push_int(&mut svg, side_px as i64);
    // The viewBox starts half a module higher than the quiet zone so that a
    // path y coordinate of `r` is the centre line of module row `r`: a
    // 1-unit stroke along it covers exactly that row, and every coordinate
    // in the path stays an integer.
    svg.push_str(r#"" viewBox="-"#);
    push_int(&mut svg, quiet as i64);
    svg.push_str(" -");
    push_int(&mut svg, quiet as i64);
    svg.push_str(".5 ");
    push_int(&mut svg, side_modules as i64);
    svg.push(' ');
    push_int(&mut svg, side_modules as i64);
    // Whole-pixel module edges must not be anti-aliased into grey seams.
    svg.push_str(r#"" shape-rendering="crispEdges"><rect x="-"#);
    push_int(&mut svg, quiet as i64);
    svg.push_str(r#"" y="-"#);
    push_int(&mut svg, quiet as i64);
    svg.push_str(r#".5" width=""#);
    push_int(&mut svg, side_modules as i64);
    svg.push_str(r#"" height=""#);
    push_int(&mut svg, side_modules as i64);
    svg.push_str(r#"" fill=""#);
    push_color(&mut svg, options.light);
    svg.push_str(r#""/><path fill="none" stroke=""#);
    push_color(&mut svg, options.dark);
    svg.push_str(r#"" stroke-width="1" d=""#);
    push_runs(&mut svg, matrix);
    svg.push_str(r#""/></svg>"#);
    Ok(svg)
}

/// How many QR codes to encode at once by default: one fewer than the cores the process may
/// use, at least one.
pub(crate) fn default_concurrent_renders() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get().saturating_sub(1))
        .max(1)
}

/// Renders QR codes off the async workers, a bounded number at once: encoding a version-15
/// symbol takes milliseconds of CPU, and requests without one must keep a core.
#[derive(Debug, Clone)]
pub(crate) struct Renderer {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Why [`Renderer::render_svg`] gave no SVG.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error(transparent)]
    Qr(#[from] QrError),
    /// The render could not run: its slots are closed, or it panicked.
    #[error("the QR render could not run: {0}")]
    NotRun(&'static str),
}

impl Renderer {
    /// At most `max_concurrent` renders at once (at least one).
    pub(crate) fn new(max_concurrent: usize) -> Self {
        Self {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// [`render_svg`] on the blocking pool, once a slot is free; its time goes to the
    /// `QR_RENDER_DURATION` histogram.
    pub(crate) async fn render_svg(
        &self,
        data: String,
        options: SvgOptions,
    ) -> Result<String, RenderError> {
        let slot = std::sync::Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| RenderError::NotRun("the QR render slots are closed"))?;
        let rendered = tokio::task::spawn_blocking(move || {
            // Held by the work itself: a cancelled request does not free the slot early.
            let _slot = slot;
            let started = std::time::Instant::now();
            let rendered = render_svg(&data, &options);
            metrics::histogram!(crate::metrics::QR_RENDER_DURATION)
                .record(started.elapsed().as_secs_f64());
            rendered
        })
        .await
        .map_err(|_| RenderError::NotRun("a QR render panicked"))?;
        Ok(rendered?)
    }
}

/// Encodes `data` at `options.error_correction` and draws it; see [`encode`]
/// and [`to_svg`].
///
/// # Errors
///
/// Those of [`encode`] and [`to_svg`]. The module size is checked first, so
/// an invalid request fails without paying for the encoding.
pub fn render_svg(data: &str, options: &SvgOptions) -> Result<String, QrError> {
    if !(MIN_MODULE_SIZE..=MAX_MODULE_SIZE).contains(&options.module_size) {
        return Err(QrError::ModuleSizeOutOfRange {
            size: options.module_size,
            min: MIN_MODULE_SIZE,
            max: MAX_MODULE_SIZE,
        });
    }
    let matrix = encode(data, options.error_correction)?;
    to_svg(&matrix, options)
}

/// Appends the path data: one `h` segment per horizontal run of dark modules,
/// each preceded by a move from the end of the previous run.
fn push_runs(out: &mut String, matrix: &QrMatrix) {
    // A path starts at the origin, so the first move may be written either
    // way too.
    let (mut pen_x, mut pen_y) = (0_i64, 0_i64);
    for (y, row) in matrix.rows().enumerate() {
        let y = y as i64;
        let mut x = 0;
        while x < row.len() {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < row.len() && row[x] {
                x += 1;
            }
            let (start, end) = (start as i64, x as i64);
            push_move(out, (pen_x, pen_y), (start, y));
            out.push('h');
            push_int(out, end - start);
            (pen_x, pen_y) = (end, y);
        }
    }
}

/// Appends a move to `to`, relative (`m`) or absolute (`M`), whichever is
/// shorter. Within a row the relative form wins (`m3 0`); across rows the
/// absolute one usually does, since the relative one needs a long negative x.
fn push_move(out: &mut String, from: (i64, i64), to: (i64, i64)) {
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    // A minus sign separates two numbers by itself; otherwise a space does.
    let relative_len = int_len(dx) + int_len(dy) + usize::from(dy >= 0);
    let absolute_len = int_len(to.0) + int_len(to.1) + 1;
    let (command, x, y) = if relative_len <= absolute_len {
        ('m', dx, dy)
    } else {
        ('M', to.0, to.1)
    };
    out.push(command);
    push_int(out, x);
    if y >= 0 {
        out.push(' ');
    }
    push_int(out, y);
}

/// Number of characters `push_int` writes for `n`.
fn int_len(n: i64) -> usize {
    let sign = usize::from(n < 0);
    let mut magnitude = n.unsigned_abs();
    let mut digits = 1;
    while magnitude >= 10 {
        magnitude /= 10;
        digits += 1;
    }
    sign + digits
}

/// Appends `n` in decimal. Hand-rolled because it runs once or twice per
/// module run, where `write!` costs more than everything else combined.
fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut magnitude = n.unsigned_abs();
    let mut buf = [0_u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    for &digit in &buf[start..] {
        out.push(char::from(digit));
    }
}

fn push_color(out: &mut String, color: Color) {
    for byte in color.to_hex() {
        out.push(char::from(byte));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_URL: &str = "https://api-gateway.client-sandbox.icanbwell.com/v1/health-link/viewer.html#shlink:/eyJ1cmwiOiJodHRwczovL2FwaS1nYXRld2F5LmRldi5pY2FuYndlbGwuY29tL3YxL2hlYWx0aC1saW5rL21hbmlmZXN0cy9pck9hSG4wUTV3Rlg5TEU3VnUwcWk2TTROOTIzQUxMUDhuS1BxVGNkOHBrIiwia2V5IjoiVThnY3BpWW9zb3pNanEtcVB0anh2Y3Q1YlhqeUNwSlpRTmdpd0VMMnhiVSIsImV4cCI6MTc2NjE3MzYyMiwiZmxhZyI6IlAiLCJsYWJlbCI6IkhlYWx0aCBSZWNvcmRzIn0";

    fn options(module_size: u32) -> SvgOptions {
        SvgOptions {
            module_size,
            ..SvgOptions::default()
        }
    }

    /// Replays the path data of an SVG produced by `to_svg` and returns the
    /// set of dark modules it paints, as (x, y) pairs.
    fn painted_modules(svg: &str) -> Vec<(i64, i64)> {
        let start = svg.find(" d=\"").expect("path data") + 4;
        let len = svg[start..].find('"').expect("end of path data");
        let data = &svg[start..start + len];

        let mut painted = Vec::new();
        let (mut x, mut y) = (0_i64, 0_i64);
        let mut rest = data;
        while let Some(command) = rest.chars().next() {
            rest = &rest[1..];
            let mut number = || {
                let rest_trim = rest.trim_start_matches(' ');
                let end = rest_trim
                    .char_indices()
                    .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
                    .map_or(rest_trim.len(), |(i, _)| i);
                let n: i64 = rest_trim[..end].parse().expect("integer coordinate");
                rest = &rest_trim[end..];
                n
            };
            match command {
                'm' => {
                    let (dx, dy) = (number(), number());
                    (x, y) = (x + dx, y + dy);
                }
                'M' => (x, y) = (number(), number()),
                'h' => {
                    let n = number();
                    assert!(n > 0, "runs go left to right");
                    painted.extend((x..x + n).map(|px| (px, y)));
                    x += n;
                }
                other => panic!("unexpected path command {other:?}"),
            }
        }
        painted
    }

    #[test]
    fn color_accepts_six_hex_digits_in_either_case() {
        assert_eq!("#000000".parse(), Ok(Color::BLACK));
        assert_eq!("#ffffff".parse(), Ok(Color::WHITE));
        assert_eq!("#FFFFFF".parse(), Ok(Color::WHITE));
        assert_eq!("#1a2B3c".parse(), Ok(Color::new(0x1a, 0x2b, 0x3c)));
    }

    #[test]
    fn color_rejects_anything_else() {
        for input in [
            "",
            "#",
            "#fff",
            "#ffff",
            "red",
            "000000",
            "#12345g",
            "#0000000",
            " #000000",
            "#000000 ",
            "#+12345",
            "#-12345",
            "#00000\u{e9}",
            "\u{ff03}000000",
            "rgb(0,0,0)",
            "#000000\"/><script>alert(1)</script>",
        ] {
            assert_eq!(
                input.parse::<Color>(),
                Err(QrError::InvalidColor),
                "{input:?}"
            );
        }
    }

    #[test]
    fn color_displays_lowercase_and_round_trips() {
        let color: Color = "#AbCdEf".parse().expect("valid colour");
        assert_eq!(color.to_string(), "#abcdef");
        assert_eq!(color.to_string().parse(), Ok(color));
        assert_eq!(String::from_utf8_lossy(&color.to_hex()), "#abcdef");
    }

    #[test]
    fn defaults_are_medium_four_pixels_black_on_white() {
        let defaults = SvgOptions::default();
        assert_eq!(defaults.error_correction, ErrorCorrection::Medium);
        assert_eq!(defaults.module_size, 4);
        assert_eq!(defaults.dark, Color::BLACK);
        assert_eq!(defaults.light, Color::WHITE);
    }

    #[test]
    fn module_size_bounds_are_enforced() {
        let matrix = encode("https://example.org", ErrorCorrection::Medium).expect("encodes");
        for size in [MIN_MODULE_SIZE, 4, MAX_MODULE_SIZE] {
            assert!(to_svg(&matrix, &options(size)).is_ok(), "size {size}");
        }
        for size in [0, MAX_MODULE_SIZE + 1, u32::MAX] {
            let expected = QrError::ModuleSizeOutOfRange {
                size,
                min: MIN_MODULE_SIZE,
                max: MAX_MODULE_SIZE,
            };
            assert_eq!(to_svg(&matrix, &options(size)), Err(expected.clone()));
            assert_eq!(render_svg("x", &options(size)), Err(expected));
        }
    }

    #[test]
    fn seed_url_is_version_15_at_medium() {
        assert_eq!(SEED_URL.len(), 379);
        let matrix = encode(SEED_URL, ErrorCorrection::Medium).expect("encodes");
        assert_eq!(matrix.version(), 15);
        assert_eq!(matrix.width(), 77);
        assert_eq!(matrix.error_correction(), ErrorCorrection::Medium);
    }

    #[test]
    fn seed_url_svg_is_compact_and_well_formed() {
        let svg = render_svg(SEED_URL, &SvgOptions::default()).expect("renders");
        assert!(svg.len() < 10_000, "SVG is {} bytes", svg.len());
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="340" height="340" viewBox="-4 -4.5 85 85""#));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(svg.matches("<rect").count(), 1);
        assert_eq!(svg.matches('<').count(), 4, "svg, rect, path, /svg only");
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("<title"));
        assert!(!svg.contains("shlink"));
    }

    #[test]
    fn path_paints_exactly_the_dark_modules() {
        for (data, ec) in [
            (SEED_URL, ErrorCorrection::Medium),
            (SEED_URL, ErrorCorrection::High),
            ("https://example.org/", ErrorCorrection::Low),
        ] {
            let matrix = encode(data, ec).expect("encodes");
            let svg = to_svg(&matrix, &SvgOptions::default()).expect("renders");
            let painted = painted_modules(&svg);
            let width = matrix.width() as i64;
            let expected: Vec<(i64, i64)> = (0..width)
                .flat_map(|y| (0..width).map(move |x| (x, y)))
                .filter(|&(x, y)| matrix.is_dark(x as usize, y as usize))
                .collect();
            assert_eq!(painted, expected);
        }
    }

    #[test]
    fn colours_and_size_reach_the_document() {
        let matrix = encode("https://example.org/", ErrorCorrection::Medium).expect("encodes");
        let opts = SvgOptions {
            error_correction: ErrorCorrection::Medium,
            module_size: 3,
            dark: "#1A237E".parse().expect("valid colour"),
            light: "#fff8e1".parse().expect("valid colour"),
        };
        let svg = to_svg(&matrix, &opts).expect("renders");
        let side = (matrix.width() + 8) * 3;
        assert!(svg.contains(&format!(r#"width="{side}" height="{side}""#)));
        assert!(svg.contains(r##"fill="#fff8e1""##));
        assert!(svg.contains(r##"stroke="#1a237e""##));
    }

    #[test]
    fn data_is_always_byte_mode() {
        // 40 digits fit a version-2 symbol in numeric mode but need
        // version 3 as bytes; upper-case text likewise for alphanumeric.
        let digits = "0".repeat(40);
        assert_eq!(
            encode(&digits, ErrorCorrection::Medium).map(|m| m.version()),
            Ok(3)
        );
        let upper = "A".repeat(40);
        assert_eq!(
            encode(&upper, ErrorCorrection::Medium).map(|m| m.version()),
            Ok(3)
        );
    }

    #[test]
    fn too_long_input_is_rejected() {
        // Version-40 byte capacities: 2953 (L), 2331 (M), 1663 (Q), 1273 (H).
        for (ec, capacity) in [
            (ErrorCorrection::Low, 2953),
            (ErrorCorrection::Medium, 2331),
            (ErrorCorrection::Quartile, 1663),
            (ErrorCorrection::High, 1273),
        ] {
            let fits = encode(&"a".repeat(capacity), ec).expect("fits version 40");
            assert_eq!((fits.version(), fits.width()), (40, 177));
            let secret = "s".repeat(capacity + 1);
            let err = encode(&secret, ec).expect_err("too long");
            assert_eq!(err, QrError::DataTooLong);
            assert!(!err.to_string().contains("sss"));
        }
        assert_eq!(
            render_svg(&"a".repeat(5000), &SvgOptions::default()),
            Err(QrError::DataTooLong)
        );
    }

    #[test]
    fn debug_output_hides_the_modules() {
        let matrix = encode(SEED_URL, ErrorCorrection::Medium).expect("encodes");
        let debug = format!("{matrix:?}");
        assert!(debug.contains("width: 77"), "{debug}");
        assert!(
            !debug.contains("true") && !debug.contains("false"),
            "{debug}"
        );
    }

    #[test]
    fn empty_data_still_encodes() {
        let matrix = encode("", ErrorCorrection::High).expect("encodes");
        assert_eq!(matrix.version(), 1);
        assert_eq!(matrix.width(), 21);
        assert!(!matrix.is_dark(21, 0) && !matrix.is_dark(0, 21));
    }

    #[test]
    fn int_len_matches_push_int() {
        for n in [
            -1000,
            -99,
            -10,
            -9,
            -1,
            0,
            1,
            9,
            10,
            99,
            100,
            5920,
            i64::MIN,
            i64::MAX,
        ] {
            let mut s = String::new();
            push_int(&mut s, n);
            assert_eq!(s, n.to_string());
            assert_eq!(int_len(n), s.len(), "{n}");
        }
    }
}
