//! How deeply a document's brackets nest, measured before any parser sees the text.
//!
//! async-graphql's parser (pest underneath) descends recursively into list and object values
//! and bounds only selection sets (at 64, after pest's own recursive pass), so a 3 KB document
//! of nested `[[[[...]]]]` or `{a:{a:...}}` values overflows a worker's stack and aborts the
//! whole process. This scan is iterative and runs first: it counts `[` and `{` together,
//! selection sets included, skipping string literals, block strings and comments, whose
//! brackets the parser never descends into.
//!
//! Selection sets count because they cost the parser stack the same way, and telling them
//! apart from object values would need a grammar-aware scan that could disagree with the
//! parser. Counting both keeps the rule simple and the bound honest: the deepest legitimate
//! selection nesting is `--max-depth` (15; GraphiQL's introspection query nests 13), far below
//! the default of 64, and fragments start again at depth 0 in the text.

/// The highest `--max-value-depth` accepted. In a debug build on a 2 MiB stack (tokio's worker
/// default) the parser overflowed at about 350 nested lists and survived 128 levels of
/// selection sets and values mixed; release builds use less stack per level.
pub(crate) const MAX_VALUE_DEPTH_CEILING: usize = 128;

/// The deepest bracket nesting of `query`, or the limit crossed: `Err(limit + 1)` as soon as
/// the nesting goes past `limit` (the rest is not scanned).
pub(crate) fn check(query: &str, limit: usize) -> Result<usize, usize> {
    let bytes = query.as_bytes();
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'#' => index = skip_comment(bytes, index),
            b'"' if bytes[index..].starts_with(b"\"\"\"") => {
                index = skip_block_string(bytes, index)
            }
            b'"' => index = skip_string(bytes, index),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(depth);
                }
                deepest = deepest.max(depth);
                index += 1;
            }
            // Unbalanced closers are the parser's to report; they never make the depth negative.
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                index += 1;
            }
            _ => index += 1,
        }
    }
    Ok(deepest)
}

/// A `#` comment runs to the end of the line (`\n` or `\r`, as in the GraphQL grammar).
fn skip_comment(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')
        .map_or(bytes.len(), |at| start + at)
}

/// A block string runs to the next `"""` not escaped as `\"""`. An unterminated one is not a
/// block string at all to the parser: its grammar is an ordered choice, so after the block
/// string fails it reads `""` as an empty plain string and parses on from the third quote. The
/// scan does the same, or a `""""` before a deep nest would hide the nest from it.
fn skip_block_string(bytes: &[u8], start: usize) -> usize {
    let mut index = start + 3;
    while index < bytes.len() {
        if bytes[index..].starts_with(b"\\\"\"\"") {
            index += 4;
        } else if bytes[index..].starts_with(b"\"\"\"") {
            return index + 3;
        } else {
            index += 1;
        }
    }
    start + 2
}

/// A plain string runs to the next unescaped `"`. It cannot span lines: at a line end the
/// parser fails, so the scan goes on counting there rather than skip what follows.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => return index + 1,
            b'\n' | b'\r' => return index,
            // Whatever follows a backslash is part of the escape (`\"`, `\\`, `\u...`).
            b'\\' => index += 2,
            _ => index += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{{ a(x: {}1{}) }}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn lists_objects_and_selection_sets_count_together() {
        assert_eq!(check("{ a { b(x: [{c: [1]}]) } }", 64), Ok(5));
        assert_eq!(check(&nested("[", "]", 63), 64), Ok(64));
        assert_eq!(check(&nested("[", "]", 64), 64), Err(65));
        assert_eq!(check(&nested("{a:", "}", 64), 64), Err(65));
        assert_eq!(check("query($v: [[Int]] = [[[[[1]]]]]) { a }", 4), Err(5));
        assert_eq!(check("{ a @d(x: [[[[1]]]]) }", 4), Err(5));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "[".repeat(1000);
        assert_eq!(check(&format!("{{ a(x: \"{deep}\") }}"), 4), Ok(1));
        assert_eq!(check(&format!("{{ a(x: \"\\\"{deep}\\\\\") }}"), 4), Ok(1));
        assert_eq!(check(&format!("{{ a(x: \"\"\"{deep}\"\"\") }}"), 4), Ok(1));
        assert_eq!(
            check(&format!("{{ a(x: \"\"\"\\\"\"\"{deep}\"\"\") }}"), 4),
            Ok(1)
        );
        assert_eq!(check(&format!("{{ a # {deep}\n }}"), 4), Ok(1));
    }

    #[test]
    fn an_unterminated_block_string_does_not_hide_what_follows_it() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        // The parser reads `""` `""` and then the nest: so must the scan.
        assert_eq!(check(&format!("{{ a(x: [\"\"\"\"{deep}]) }}"), 64), Err(65));
        let parsed = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                async_graphql::parser::parse_query(format!("{{ a(x: [\"\"\"\"{deep}]) }}")).is_ok()
            })
            .expect("thread")
            .join()
            .expect("the parser survives");
        assert!(
            parsed,
            "the parser does read past an unterminated block string"
        );
    }

    #[test]
    fn an_unterminated_string_does_not_hide_what_follows_the_line() {
        let deep = "[".repeat(10);
        assert_eq!(check(&format!("{{ a(x: \"open\n{deep}"), 4), Err(5));
        assert_eq!(check(&format!("{{ a(x: \"open{deep}"), 4), Ok(1));
    }

    #[test]
    fn a_long_flat_document_is_linear_and_within_the_limit() {
        let wide: String = (0..10_000).map(|_| "[1] ").collect();
        assert_eq!(check(&format!("{{ a(x: [{wide}]) }}"), 64), Ok(3));
        assert_eq!(check("}}}]]]{", 1), Ok(1));
    }

    #[test]
    fn the_parser_survives_the_deepest_document_the_ceiling_allows() {
        // Run where the server runs documents: on a 2 MiB stack.
        let half = MAX_VALUE_DEPTH_CEILING / 2;
        let query = format!(
            "{}a(x: {}1{}){}",
            "{a".repeat(half),
            "[".repeat(half),
            "]".repeat(half),
            "}".repeat(half)
        );
        assert!(check(&query, MAX_VALUE_DEPTH_CEILING).is_ok());
        let parsed = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || async_graphql::parser::parse_query(&query).is_ok())
            .expect("thread")
            .join()
            .expect("no panic");
        assert!(parsed);
    }
}
