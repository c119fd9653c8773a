//! Keeps client-supplied values out of error messages.
//!
//! async-graphql's messages quote offending values ("enumeration type ... does not contain the
//! value "743730"", "Expected input type "Int", found 1.5."), decoded: an escaped literal
//! (`"\u0037\u0034..."`) comes back as plain digits. A client that puts a passcode or token in
//! the wrong place would see it echoed in the error and, worse, in any log of that error. So
//! three independent rules apply to every message async-graphql wrote:
//!
//! 1. every value the request carries is masked where it appears: string and number literals of
//!    the text (raw, so also when the document does not parse), the same literals decoded by the
//!    parser, and every scalar of the variables;
//! 2. every double-quoted segment that is not a schema name (type, field, argument, enum value,
//!    directive), a dotted path of those (`input.mode`), a type reference (`[ID!]!`) or a
//!    variable name (`$input`) is masked, whatever it holds;
//! 3. the unquoted value after "found" in async-graphql's type-mismatch message is masked.
//!
//! Field and type names stay readable, so the message still names the argument and the rule.

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Value as ConstValue, Variables};

/// Values shorter than this are not masked by rule 1: they cannot be secrets worth hiding
/// (passcodes have six digits) and masking them would garble messages ("at most 80
/// characters"). Rule 2 masks short quoted values anyway.
const MIN_MASKED_LEN: usize = 4;
const MASK: &str = "[REDACTED]";

/// Every name the schema defines: the words a message may quote.
#[derive(Debug, Default)]
pub(super) struct SchemaNames(HashSet<String>);

impl SchemaNames {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self(names.into_iter().collect())
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// Whether a quoted segment of a message may stay: a name, a path or a type reference made
    /// of schema names, or a variable name (a `$name` is never a value, and one with a digit is
    /// masked like any word with a digit).
    fn allows(&self, quoted: &str) -> bool {
        if quoted.is_empty() {
            return true;
        }
        if let Some(variable) = quoted.strip_prefix('$') {
            return !variable.is_empty()
                && variable
                    .bytes()
                    .all(|byte| byte.is_ascii_alphabetic() || byte == b'_');
        }
        let type_name = quoted.trim_matches(|c| matches!(c, '[' | ']' | '!'));
        if type_name != quoted {
            return self.contains(type_name);
        }
        let mut parts = quoted.split('.');
        // The first part names an argument or field; later ones may be list indices.
        parts.next().is_some_and(|first| self.contains(first))
            && parts.all(|part| {
                self.contains(part)
                    || (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            })
    }
}

/// The values one request carries, longest first so that a value containing another is masked
/// whole.
#[derive(Default)]
pub(super) struct RequestValues(Vec<String>);

impl std::fmt::Debug for RequestValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestValues({} values)", self.0.len())
    }
}

impl RequestValues {
    /// `document` is the parsed form of `query`, when it parsed: its literals are decoded.
    pub(crate) fn collect(
        query: &str,
        document: Option<&ExecutableDocument>,
        variables: &Variables,
        names: &SchemaNames,
    ) -> Self {
        let mut values = Vec::new();
        collect_query_literals(query, &mut values);
        if let Some(document) = document {
            collect_document_values(document, &mut values);
        }
        collect_values(variables.values(), &mut values);
        // Schema names are no secret, and masking them would make messages unreadable.
        values.retain(|value| value.chars().count() >= MIN_MASKED_LEN && !names.contains(value));
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        Self(values)
    }

    pub(crate) fn redact(&self, message: &str, names: &SchemaNames) -> String {
        let mut redacted = message.to_owned();
        for value in &self.0 {
            if redacted.contains(value.as_str()) {
                redacted = redacted.replace(value.as_str(), MASK);
            }
        }
        mask_quoted(&mask_found_value(&redacted), names)
    }
}

/// Rule 3: async-graphql's `Expected input type "T", found VALUE.`, where VALUE is printed as
/// GraphQL (numbers, enum names and lists unquoted), possibly followed by
/// ` (occurred while parsing "U")` suffixes, which stay.
fn mask_found_value(message: &str) -> String {
    const FOUND: &str = ", found ";
    let Some(at) = message.find(FOUND) else {
        return message.to_owned();
    };
    let start = at + FOUND.len();
    let rest = &message[start..];
    let end = rest
        .find(". (occurred while parsing")
        .unwrap_or_else(|| rest.strip_suffix('.').map_or(rest.len(), str::len));
    format!("{}{MASK}{}", &message[..start], &rest[end..])
}

/// Rule 2. An unpaired quote masks the rest of the message.
fn mask_quoted(message: &str, names: &SchemaNames) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else {
            out.push_str(MASK);
            return out;
        };
        let quoted = &after[..close];
        out.push_str(if names.allows(quoted) { quoted } else { MASK });
        out.push('"');
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every string, number and enum value, without recursion: the walk holds its own stack, so
/// nesting depth costs heap, not the worker's stack.
fn collect_values<'a>(roots: impl Iterator<Item = &'a ConstValue>, into: &mut Vec<String>) {
    let mut stack: Vec<&'a ConstValue> = roots.collect();
    while let Some(value) = stack.pop() {
        match value {
            ConstValue::String(text) => into.push(text.clone()),
            ConstValue::Number(number) => into.push(number.to_string()),
            ConstValue::Enum(name) => into.push(name.to_string()),
            ConstValue::List(items) => stack.extend(items),
            // Keys are field names, which messages must keep naming.
            ConstValue::Object(fields) => stack.extend(fields.values()),
            ConstValue::Binary(_) | ConstValue::Boolean(_) | ConstValue::Null => {}
        }
    }
}

/// A document value as a constant (async-graphql does not export the document's value type,
/// so it is converted rather than named), variables left out as `null`.
macro_rules! literal {
    ($value:expr) => {
        $value
            .node
            .clone()
            .into_const_with(|_| Ok::<_, std::convert::Infallible>(ConstValue::Null))
            .unwrap_or_default()
    };
}

/// The values of a parsed document, decoded: arguments of fields and directives, and variable
/// defaults, in every operation and fragment (each definition once). Their nesting is bounded
/// by `--max-value-depth`, checked before parsing, so converting them may recurse.
fn collect_document_values(document: &ExecutableDocument, into: &mut Vec<String>) {
    let mut values: Vec<ConstValue> = Vec::new();
    let mut sets: Vec<&SelectionSet> = Vec::new();
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        for definition in &operation.variable_definitions {
            if let Some(default) = &definition.node.default_value {
                collect_values(std::iter::once(&default.node), into);
            }
        }
        push_directive_values(&operation.directives, &mut values);
        sets.push(&operation.selection_set.node);
    }
    for fragment in document.fragments.values() {
        push_directive_values(&fragment.node.directives, &mut values);
        sets.push(&fragment.node.selection_set.node);
    }
    while let Some(set) = sets.pop() {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    values.extend(field.arguments.iter().map(|(_, value)| literal!(value)));
                    push_directive_values(&field.directives, &mut values);
                    sets.push(&field.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    push_directive_values(&spread.node.directives, &mut values);
                }
                Selection::InlineFragment(inline) => {
                    push_directive_values(&inline.node.directives, &mut values);
                    sets.push(&inline.node.selection_set.node);
                }
            }
        }
    }
    collect_values(values.iter(), into);
}

fn push_directive_values(
    directives: &[async_graphql::Positioned<async_graphql::parser::types::Directive>],
    into: &mut Vec<ConstValue>,
) {
    for directive in directives {
        into.extend(
            directive
                .node
                .arguments
                .iter()
                .map(|(_, value)| literal!(value)),
        );
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.' || byte == b'-'
}

/// A lexical scan, not a parse: it must also work on documents that fail to parse. It yields
/// the raw contents of string literals (plain and block) and the words that contain a digit.
fn collect_query_literals(query: &str, into: &mut Vec<String>) {
    let bytes = query.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' if query[index..].starts_with("\"\"\"") => {
                let start = index + 3;
                let end = query[start..]
                    .find("\"\"\"")
                    .map_or(query.len(), |at| start + at);
                let raw = &query[start..end];
                into.push(raw.to_owned());
                // A block string's value has its indentation removed: each line is a value
                // of its own too.
                into.extend(raw.lines().map(|line| line.trim().to_owned()));
                index = (end + 3).min(bytes.len());
            }
            b'"' => {
                let start = index + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' && bytes[end] != b'\n' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                // `end` may sit inside a multibyte character after an escape backslash.
                let raw = String::from_utf8_lossy(&bytes[start..end]);
                into.push(raw.into_owned());
                index = end + 1;
            }
            byte if is_word_byte(byte) => {
                let start = index;
                while index < bytes.len() && is_word_byte(bytes[index]) {
                    index += 1;
                }
                let word = &query[start..index];
                // Names without digits are field, type and enum names; a word with a digit may
                // be a number or a secret typed where a name goes (`mode: A743730`).
                if word.bytes().any(|byte| byte.is_ascii_digit()) {
                    into.push(word.to_owned());
                }
            }
            _ => index += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> SchemaNames {
        SchemaNames::new(
            [
                "HealthLinkMode",
                "CreateHealthLinkInput",
                "input",
                "mode",
                "label",
                "securityConfig",
                "passcode",
                "Int",
                "PASSCODE",
            ]
            .map(str::to_owned),
        )
    }

    fn redact(query: &str, variables: serde_json::Value, message: &str) -> String {
        let names = names();
        let document = async_graphql::parser::parse_query(query).ok();
        RequestValues::collect(
            query,
            document.as_ref(),
            &Variables::from_json(variables),
            &names,
        )
        .redact(message, &names)
    }

    #[test]
    fn literals_of_the_document_are_masked() {
        let query = r#"mutation { createHealthLink(input: {mode: "743730", label: """block secret"""}) { id } }"#;
        let message = r#"enumeration type "HealthLinkMode" does not contain the value "743730" nor block secret"#;
        let redacted = redact(query, serde_json::json!({}), message);
        assert!(!redacted.contains("743730"), "{redacted}");
        assert!(!redacted.contains("block secret"), "{redacted}");
        assert!(redacted.contains("HealthLinkMode"));
    }

    #[test]
    fn escaped_literals_are_masked_decoded() {
        let query = r#"mutation { createHealthLink(input: {mode: "\u0037\u0033\u0034\u0035\u0031\u0039", label: "Bearer\u0020tok"}) { id } }"#;
        let redacted = redact(
            query,
            serde_json::json!({}),
            "the value 734519 and Bearer tok, unquoted",
        );
        assert_eq!(redacted, "the value [REDACTED] and [REDACTED], unquoted");
    }

    #[test]
    fn numbers_and_variable_values_are_masked() {
        let variables = serde_json::json!({
            "input": {"securityConfig": {"passcode": 743730}, "label": "Bearer canary-token"}
        });
        let redacted = redact(
            "query { a(x: 123456789, y: A9876543) }",
            variables,
            "bad 743730, bad Bearer canary-token, bad 123456789, A9876543, limit 80",
        );
        assert_eq!(
            redacted,
            "bad [REDACTED], bad [REDACTED], bad [REDACTED], [REDACTED], limit 80"
        );
    }

    #[test]
    fn quoted_segments_that_are_not_schema_names_are_masked() {
        let redacted = redact(
            "{ a }",
            serde_json::json!({}),
            r#""input.mode", enumeration type "HealthLinkMode" does not contain the value "SECRET" nor "$input" of "[CreateHealthLinkInput!]!" in "input.0.label" or "0.label" or "x"#,
        );
        assert_eq!(
            redacted,
            r#""input.mode", enumeration type "HealthLinkMode" does not contain the value "[REDACTED]" nor "$input" of "[CreateHealthLinkInput!]!" in "input.0.label" or "[REDACTED]" or "[REDACTED]"#
        );
    }

    #[test]
    fn the_value_after_found_is_masked() {
        let names = names();
        let values = RequestValues::default();
        assert_eq!(
            values.redact(r#"Expected input type "Int", found 1.5."#, &names),
            r#"Expected input type "Int", found [REDACTED]."#
        );
        assert_eq!(
            values.redact(
                r#"Expected input type "Int", found [SECRET, 2]. (occurred while parsing "CreateHealthLinkInput")"#,
                &names
            ),
            r#"Expected input type "Int", found [REDACTED]. (occurred while parsing "CreateHealthLinkInput")"#
        );
    }

    #[test]
    fn schema_names_in_literals_stay_readable() {
        let redacted = redact(
            "{ a(mode: PASSCODE, b: \"passcode\") }",
            serde_json::json!({}),
            "PASSCODE and passcode",
        );
        assert_eq!(redacted, "PASSCODE and passcode");
    }

    #[test]
    fn an_unterminated_string_is_still_collected() {
        let redacted = redact(
            "{ a(x: \"unterminated secret",
            serde_json::json!({}),
            "near unterminated secret",
        );
        assert_eq!(redacted, "near [REDACTED]");
    }

    #[test]
    fn multibyte_text_does_not_break_the_scan() {
        let redacted = redact(
            "{ a(x: \"é secret ü\") b(y: 12é) c(z: \"\\é\") }",
            serde_json::json!({}),
            "é secret ü",
        );
        assert_eq!(redacted, "[REDACTED]");
    }

    #[test]
    fn deeply_nested_variables_are_walked_without_recursion() {
        // Built in a loop: converting or dropping a value this deep would itself recurse.
        let mut value = ConstValue::String("deep-secret".to_owned());
        for _ in 0..100_000 {
            value = ConstValue::List(vec![value]);
        }
        let mut map = async_graphql::indexmap::IndexMap::new();
        map.insert(async_graphql::Name::new("v"), value);
        let variables = Variables::from_value(ConstValue::Object(map));
        let names = names();
        let values = RequestValues::collect("{ a }", None, &variables, &names);
        assert_eq!(values.redact("deep-secret", &names), "[REDACTED]");
        // Dropping it would recurse 100,000 deep: this test's copy is leaked instead.
        std::mem::forget(variables);
    }
}
