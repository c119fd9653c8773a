//! Text rules shared by the inputs the gateway stores and later shows to a person.
//!
//! A name a receiver declares (a manifest's `recipient`) is shown to the patient in the list of
//! who opened their records. Characters that render as nothing, or reorder what follows them
//! (bidi overrides and isolates), would let that name read as something it is not ("Dr. Ana"
//! followed by U+202E and a reversed tail), so such inputs are refused rather than cleaned. Link
//! labels, which the receiver sees, follow the same rule.

/// Whether `c` would let a name display as something it is not: Unicode General Category `Cf`
/// (format: bidi controls U+202A..U+202E and U+2066..U+2069, zero-width space U+200B, U+FEFF,
/// the soft hyphen, tags, ...), the line and paragraph separators (Zl, Zp), and the letters
/// that render as blank (the Hangul fillers, U+2800). The category comes from
/// `unicode-properties`, which follows the Unicode Character Database.
///
/// Two `Cf` characters are allowed: ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER (U+200C,
/// U+200D) are part of how Persian, Indic and other scripts write names, and they reorder
/// nothing.
pub fn is_invisible_format_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
    const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];
    const BLANK_LETTERS: [char; 5] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];
    match c.general_category() {
        GeneralCategory::Format => !JOINERS.contains(&c),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => true,
        _ => BLANK_LETTERS.contains(&c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_zero_width_and_other_format_characters_are_invisible() {
        for c in [
            '\u{00AD}', // soft hyphen
            '\u{061C}', // Arabic letter mark
            '\u{180E}', // Mongolian vowel separator
            '\u{200B}', // zero width space
            '\u{200E}', // left-to-right mark
            '\u{200F}', // right-to-left mark
            '\u{202A}', // left-to-right embedding
            '\u{202E}', // right-to-left override
            '\u{2060}', // word joiner
            '\u{2066}', // left-to-right isolate
            '\u{2069}', // pop directional isolate
            '\u{206F}', // nominal digit shapes
            '\u{FEFF}', // byte order mark
            '\u{FFFB}', // interlinear annotation terminator
            '\u{110BD}',
            '\u{13430}',
            '\u{1343F}',
            '\u{1D173}',
            '\u{1D17A}',
            '\u{E0001}', // language tag
            '\u{E0020}', // tag space
            '\u{E007F}', // cancel tag
        ] {
            assert!(is_invisible_format_char(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn letters_marks_spaces_and_neighbours_of_the_ranges_are_not() {
        for c in [
            'a',
            'Z',
            ' ',
            '.',
            'é',
            'ß',
            'ا',        // Arabic alef
            '\u{0301}', // combining acute accent (Mn)
            '\u{00A0}', // no-break space (Zs)
            '\u{00AC}', // just below the soft hyphen
            '\u{00AE}', // just above it
            '\u{0606}', // after U+0600..0605
            '\u{200A}', // hair space, before U+200B
            '\u{2010}', // hyphen, after U+200F
            '\u{2065}', // unassigned, between the two U+206x ranges
            '\u{2070}', // superscript zero
            '\u{FEFE}',
            '\u{FFFC}', // object replacement character (So)
            '\u{E0000}',
            '\u{E0002}',
            '\u{E0080}',
            '\u{1F600}', // an emoji
            '\u{10FFFF}',
        ] {
            assert!(!is_invisible_format_char(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn every_range_is_matched_at_both_ends_and_not_just_outside() {
        // The same table read back through the function: sorted, disjoint, ends inclusive.
        let ranges = [
            (0x00ADu32, 0x00ADu32),
            (0x0600, 0x0605),
            (0x0890, 0x0891),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFFF9, 0xFFFB),
            (0x1BCA0, 0x1BCA3),
            (0xE0020, 0xE007F),
        ];
        let char_of = |code: u32| char::from_u32(code).expect("a scalar value");
        for (start, end) in ranges {
            assert!(is_invisible_format_char(char_of(start)), "{start:X}");
            assert!(is_invisible_format_char(char_of(end)), "{end:X}");
            // U+2029, before U+202A, is the paragraph separator: refused on its own account.
            if start != 0x202A {
                assert!(!is_invisible_format_char(char_of(start - 1)), "{start:X}-1");
            }
            assert!(!is_invisible_format_char(char_of(end + 1)), "{end:X}+1");
        }
    }

    #[test]
    fn joiners_that_names_need_pass_and_blank_separators_and_letters_do_not() {
        // "Mahsa" in Persian writing uses ZWNJ between letters.
        assert!(!"مه\u{200C}سا".chars().any(is_invisible_format_char));
        assert!(!is_invisible_format_char('\u{200D}'));
        for c in [
            '\u{2028}', '\u{2029}', '\u{3164}', '\u{115F}', '\u{FFA0}', '\u{2800}',
        ] {
            assert!(is_invisible_format_char(c), "U+{:04X}", u32::from(c));
        }
    }
}
