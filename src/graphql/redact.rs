//! Keeps client-supplied values out of error messages.
//!
//! async-graphql's validator quotes offending values ("enumeration type ... does not contain the
//! value "743730"", unknown field names, ...). A client that puts a passcode or token in the
//! wrong place would see it echoed in the error and, worse, in any log of that error. Rather
//! than chase every message format, the transport collects every literal the request carries
//! (string and number literals of the document, every scalar of the variables) and masks them in
//! all error messages. Field and type names stay readable.

use async_graphql::{Value, Variables};

/// Values shorter than this are not masked: they cannot be secrets worth hiding (passcodes have
/// six digits) and masking them would garble messages ("at most 80 characters").
const MIN_MASKED_LEN: usize = 4;
const MASK: &str = "[REDACTED]";

/// The literal values one request carries, longest first so that a value containing another is
/// masked whole.
#[derive(Default)]
pub struct RequestValues(Vec<String>);

impl std::fmt::Debug for RequestValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestValues({} values)", self.0.len())
    }
}

impl RequestValues {
    pub fn collect(query: &str, variables: &Variables) -> Self {
        let mut values = Vec::new();
        collect_query_literals(query, &mut values);
        for (_, value) in variables.iter() {
            collect_value(value, &mut values);
        }
        values.retain(|value| value.chars().count() >= MIN_MASKED_LEN);
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        Self(values)
    }

    pub fn redact(&self, message: &str) -> String {
        let mut redacted = message.to_owned();
        for value in &self.0 {
            if redacted.contains(value.as_str()) {
                redacted = redacted.replace(value.as_str(), MASK);
            }
        }
        redacted
    }
}

fn collect_value(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(text) => into.push(text.clone()),
        Value::Number(number) => into.push(number.to_string()),
        Value::Enum(name) => into.push(name.to_string()),
        Value::List(items) => items.iter().for_each(|item| collect_value(item, into)),
        // Keys are field names, which messages must keep naming.
        Value::Object(fields) => fields.values().for_each(|item| collect_value(item, into)),
        Value::Binary(_) | Value::Boolean(_) | Value::Null => {}
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.' || byte == b'-'
}

/// A lexical scan, not a parse: it must also work on documents that fail to parse. It yields
/// the contents of string literals (plain and block) and the words that contain a digit.
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
                into.push(query[start..end].to_owned());
                index = (end + 3).min(bytes.len());
            }
            b'"' => {
                let start = index + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' && bytes[end] != b'\n' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                into.push(query[start..end].to_owned());
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

    #[test]
    fn literals_of_the_document_are_masked() {
        let query = r#"mutation { createHealthLink(input: {mode: "743730", label: """block secret"""}) { id } }"#;
        let values = RequestValues::collect(query, &Variables::default());
        let message = r#"enumeration type "HealthLinkMode" does not contain the value "743730" nor "block secret""#;
        let redacted = values.redact(message);
        assert!(!redacted.contains("743730"), "{redacted}");
        assert!(!redacted.contains("block secret"), "{redacted}");
        assert!(redacted.contains("HealthLinkMode"));
    }

    #[test]
    fn numbers_and_variable_values_are_masked() {
        let variables = Variables::from_json(serde_json::json!({
            "input": {"securityConfig": {"passcode": 743730}, "label": "Bearer canary-token"}
        }));
        let values = RequestValues::collect("query { a(x: 123456789, y: A9876543) }", &variables);
        let redacted =
            values.redact("bad 743730, bad Bearer canary-token, bad 123456789, A9876543, limit 80");
        assert_eq!(
            redacted,
            "bad [REDACTED], bad [REDACTED], bad [REDACTED], [REDACTED], limit 80"
        );
    }

    #[test]
    fn an_unterminated_string_is_still_collected() {
        let values = RequestValues::collect("{ a(x: \"unterminated secret", &Variables::default());
        assert_eq!(values.redact("near unterminated secret"), "near [REDACTED]");
    }

    #[test]
    fn multibyte_text_does_not_break_the_scan() {
        let values =
            RequestValues::collect("{ a(x: \"é secret ü\") b(y: 12é) }", &Variables::default());
        assert_eq!(values.redact("é secret ü"), "[REDACTED]");
    }
}
