//! End-to-end checks of `shl_gateway::qr`: the SVG is rasterized the way a
//! browser would draw it and read back with an independent QR decoder, so the
//! tests catch geometry mistakes (half-module offsets, a missing quiet zone,
//! wrong colours) that string assertions cannot.

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{Options, Tree};
use shl_gateway::qr::{self, Color, ErrorCorrection, SvgOptions};

/// A 379-character link, which needs a version-15 symbol at level M.
const SEED_URL: &str = "https://api-gateway.client-sandbox.icanbwell.com/v1/health-link/viewer.html#shlink:/eyJ1cmwiOiJodHRwczovL2FwaS1nYXRld2F5LmRldi5pY2FuYndlbGwuY29tL3YxL2hlYWx0aC1saW5rL21hbmlmZXN0cy9pck9hSG4wUTV3Rlg5TEU3VnUwcWk2TTROOTIzQUxMUDhuS1BxVGNkOHBrIiwia2V5IjoiVThnY3BpWW9zb3pNanEtcVB0anh2Y3Q1YlhqeUNwSlpRTmdpd0VMMnhiVSIsImV4cCI6MTc2NjE3MzYyMiwiZmxhZyI6IlAiLCJsYWJlbCI6IkhlYWx0aCBSZWNvcmRzIn0";

const LEVELS: [ErrorCorrection; 4] = [
    ErrorCorrection::Low,
    ErrorCorrection::Medium,
    ErrorCorrection::Quartile,
    ErrorCorrection::High,
];

/// Side of the raster the SVG is drawn into. The largest symbol is 185
/// modules wide with its quiet zone, so every module gets at least 4 pixels
/// whatever the version and declared size, and the raster stays small
/// enough to decode quickly.
const RASTER_SIDE: f32 = 800.0;

/// Rasterizes `svg` and decodes the one QR code it must contain.
///
/// # Panics
///
/// If the SVG does not parse, or if the image does not hold exactly one QR
/// code that decodes.
pub(crate) fn decode_svg(svg: &str) -> String {
    let tree = Tree::from_str(svg, &Options::default()).expect("SVG should parse");
    let size = tree.size();
    let scale = RASTER_SIDE / size.width().max(size.height());
    let (width, height) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = Pixmap::new(width, height).expect("raster should have a non-zero size");
    resvg::render(
        &tree,
        Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    decode_pixmap(&pixmap, "the rasterized SVG")
}

/// Decodes the one QR code in a PNG: a browser's screenshot of a QR code as it shows it.
///
/// # Panics
///
/// If the PNG does not decode, or does not hold exactly one QR code that decodes.
pub(crate) fn decode_png(png: &[u8]) -> String {
    let pixmap = Pixmap::decode_png(png).expect("PNG should decode");
    decode_pixmap(&pixmap, "the PNG")
}

/// Reads the one QR code in `pixmap` (`what` names the image in panics).
fn decode_pixmap(pixmap: &Pixmap, what: &str) -> String {
    let (width, height) = (pixmap.width(), pixmap.height());
    let pixels = pixmap.pixels();
    let row = width as usize;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(row, height as usize, |x, y| {
        // Composite the premultiplied pixel over white, so anything the SVG
        // leaves transparent reads as light like on a typical page.
        let pixel = pixels[y * row + x];
        let blank = 255 - u32::from(pixel.alpha());
        let [r, g, b] = [pixel.red(), pixel.green(), pixel.blue()].map(|c| u32::from(c) + blank);
        ((r * 299 + g * 587 + b * 114) / 1000) as u8
    });

    let grids = image.detect_grids();
    assert_eq!(
        grids.len(),
        1,
        "expected exactly one QR code in {what}, found {}",
        grids.len()
    );
    match grids[0].decode() {
        Ok((_meta, content)) => content,
        Err(err) => panic!("the QR code in {what} does not decode: {err}"),
    }
}

fn color(hex: &str) -> Color {
    hex.parse().expect("test colours are valid")
}

#[test]
fn seed_url_round_trips_at_every_level_and_style() {
    let styles = [
        (4, Color::BLACK, Color::WHITE),
        (1, color("#1a237e"), color("#fff8e1")),
        (7, color("#2E3440"), color("#ECEFF4")),
        (qr::MAX_MODULE_SIZE, color("#004d40"), color("#ffffff")),
    ];
    for ec in LEVELS {
        for (module_size, dark, light) in styles {
            let options = SvgOptions {
                error_correction: ec,
                module_size,
                dark,
                light,
            };
            let svg = qr::render_svg(SEED_URL, &options).expect("seed URL renders");
            assert_eq!(
                decode_svg(&svg),
                SEED_URL,
                "level {ec:?}, {module_size} px, {dark} on {light}"
            );
        }
    }
}

#[test]
fn short_url_round_trips() {
    let url = "https://example.org/shl#shlink:/eyJ1cmwiOiJodHRwczovL2V4YW1wbGUub3JnIn0";
    for ec in LEVELS {
        let options = SvgOptions {
            error_correction: ec,
            ..SvgOptions::default()
        };
        let svg = qr::render_svg(url, &options).expect("short URL renders");
        assert_eq!(decode_svg(&svg), url, "level {ec:?}");
    }
}

#[test]
fn case_and_digits_survive_byte_mode() {
    // Inputs the encoder's own segmentation would put in numeric or
    // alphanumeric segments.
    for data in [
        "HTTPS://EXAMPLE.ORG/ABC123",
        "0123456789012345678901234567890123456789",
        "aB9-_zZ0",
    ] {
        let svg = qr::render_svg(data, &SvgOptions::default()).expect("renders");
        assert_eq!(decode_svg(&svg), data);
    }
}

#[test]
fn declared_size_includes_the_quiet_zone() {
    let matrix = qr::encode(SEED_URL, ErrorCorrection::Medium).expect("encodes");
    let options = SvgOptions {
        module_size: 5,
        ..SvgOptions::default()
    };
    let svg = qr::to_svg(&matrix, &options).expect("renders");
    let tree = Tree::from_str(&svg, &Options::default()).expect("SVG should parse");
    let expected = ((matrix.width() as u32 + 2 * qr::QUIET_ZONE_MODULES) * 5) as f32;
    assert_eq!(tree.size().width(), expected);
    assert_eq!(tree.size().height(), expected);
}

#[test]
fn encode_then_to_svg_matches_render_svg() {
    let options = SvgOptions {
        error_correction: ErrorCorrection::Quartile,
        module_size: 3,
        dark: color("#333333"),
        light: color("#fafafa"),
    };
    let matrix = qr::encode(SEED_URL, options.error_correction).expect("encodes");
    assert_eq!(
        qr::to_svg(&matrix, &options),
        qr::render_svg(SEED_URL, &options)
    );
}

#[test]
fn native_raster_is_pixel_exact() {
    // Drawn at its declared size, every pixel must be exactly the light or
    // dark colour of the module under it: no anti-aliased seams between
    // rows, no half-module offset, and a light quiet zone all around.
    let options = SvgOptions {
        module_size: 3,
        dark: color("#102030"),
        light: color("#f0e0d0"),
        ..SvgOptions::default()
    };
    let matrix = qr::encode(SEED_URL, ErrorCorrection::Medium).expect("encodes");
    let svg = qr::to_svg(&matrix, &options).expect("renders");
    let tree = Tree::from_str(&svg, &Options::default()).expect("SVG should parse");
    let side = (matrix.width() + 2 * qr::QUIET_ZONE_MODULES as usize) * 3;
    let mut pixmap = Pixmap::new(side as u32, side as u32).expect("non-zero size");
    resvg::render(&tree, Transform::identity(), &mut pixmap.as_mut());

    let quiet = qr::QUIET_ZONE_MODULES as usize;
    for (i, pixel) in pixmap.pixels().iter().enumerate() {
        let (x, y) = (i % side / 3, i / side / 3);
        let dark = x >= quiet && y >= quiet && matrix.is_dark(x - quiet, y - quiet);
        let expected = if dark { options.dark } else { options.light };
        let actual = (pixel.red(), pixel.green(), pixel.blue(), pixel.alpha());
        assert_eq!(
            actual,
            (expected.r, expected.g, expected.b, 255),
            "pixel ({}, {}) of module ({x}, {y})",
            i % side,
            i / side
        );
    }
}
