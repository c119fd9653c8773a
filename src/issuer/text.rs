//! Rules for short human-readable text the gateway accepts and shows to someone else (link
//! labels, recipient names).
//!
//! Invisible formatting characters (Unicode General_Category Cf: bidi controls such as U+202E
//! RIGHT-TO-LEFT OVERRIDE and the isolates U+2066..U+2069, zero-width U+200B..U+200D, U+FEFF,
//! tag characters) display nothing themselves but change how the rest is shown: a label can
//! read as another name, or hide text. The category comes from `unicode-properties`, which
//! follows the Unicode Character Database.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// Whether `c` is an invisible formatting character (General_Category Cf).
pub fn is_format_character(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_zero_width_characters_are_formatting() {
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{200B}',
            '\u{200E}',
            '\u{2066}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{E0001}',
            '\u{E007F}',
            '\u{110BD}',
        ] {
            assert!(is_format_character(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn visible_text_and_ordinary_spaces_are_not() {
        for c in [
            'a', 'é', 'ß', ' ', '\u{00A0}', '中', 'ا', '😀', '-', '\u{0301}',
        ] {
            assert!(!is_format_character(c), "U+{:04X}", u32::from(c));
        }
    }
}
