//! Checks that only the gateway can make, on the whole document, before anything runs.
//!
//! async-graphql validates types before execution but leaves ranges and formats to resolvers,
//! which run in order: an invalid `qrCodeSvg` argument used to fail only after
//! `createHealthLink` had created (and disclosed) a link. Here every `qrCodeSvg` field of the
//! document (in operations, fragments and inline fragments alike) has its arguments checked
//! with the resolver's own rules, literals and variables, and every integer literal must fit
//! GraphQL's 32-bit `Int` (async-graphql's validator accepts any 64-bit integer and only the
//! resolver's coercion refuses it). A refusal names the argument and the rule, never the value.

use std::convert::Infallible;

use async_graphql::parser::types::{
    Directive, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Pos, Positioned, ServerError, Value as ConstValue, Variables};

use super::health_link::{QR_CODE_SVG, check_qr_argument};
use super::limits::set_code;
use crate::error::ErrorCode;

/// A document value (async-graphql does not export its type, so it is converted rather than
/// named) with its variables left out as `null`: the integer check looks at literals only.
macro_rules! literal {
    ($value:expr) => {
        $value
            .node
            .clone()
            .into_const_with(|_| Ok::<_, Infallible>(ConstValue::Null))
            .unwrap_or_default()
    };
}

/// Every check, in document order; the first failure refuses the request.
pub(super) fn check(
    document: &ExecutableDocument,
    operation: Option<&OperationDefinition>,
    variables: &Variables,
) -> Result<(), ServerError> {
    // Variables take the request's value, else the selected operation's default.
    let variable = |name: &str| -> Option<ConstValue> {
        variables.get(name).cloned().or_else(|| {
            operation?
                .variable_definitions
                .iter()
                .find(|definition| definition.node.name.node.as_str() == name)
                .and_then(|definition| definition.node.default_value.as_ref())
                .map(|default| default.node.clone())
        })
    };
    let mut sets: Vec<&SelectionSet> = Vec::new();
    for (_, definition) in document.operations.iter() {
        let definition = &definition.node;
        for variable in &definition.variable_definitions {
            if let Some(default) = &variable.node.default_value {
                check_integers(&default.node, variable.node.name.node.as_str())
                    .map_err(|message| refusal(message, default.pos))?;
            }
        }
        check_directives(&definition.directives)?;
        sets.push(&definition.selection_set.node);
    }
    for fragment in document.fragments.values() {
        check_directives(&fragment.node.directives)?;
        sets.push(&fragment.node.selection_set.node);
    }
    // Each definition is walked once: spreads are not followed (the fragment itself is).
    while let Some(set) = sets.pop() {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field_node = &field.node;
                    let is_qr_code = field_node.name.node.as_str() == QR_CODE_SVG;
                    for (name, value) in &field_node.arguments {
                        let name = name.node.as_str();
                        check_integers(&literal!(value), name)
                            .map_err(|message| refusal(message, value.pos))?;
                        if is_qr_code {
                            // A variable nobody set and without a default is async-graphql's
                            // to report.
                            let Ok(resolved) =
                                value.node.clone().into_const_with(|variable_name| {
                                    variable(&variable_name).ok_or(())
                                })
                            else {
                                continue;
                            };
                            check_qr_argument(name, &resolved)
                                .map_err(|error| refusal(error.message().to_owned(), value.pos))?;
                        }
                    }
                    check_directives(&field_node.directives)?;
                    sets.push(&field_node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => check_directives(&spread.node.directives)?,
                Selection::InlineFragment(inline) => {
                    check_directives(&inline.node.directives)?;
                    sets.push(&inline.node.selection_set.node);
                }
            }
        }
    }
    Ok(())
}

fn check_directives(directives: &[Positioned<Directive>]) -> Result<(), ServerError> {
    for directive in directives {
        for (name, value) in &directive.node.arguments {
            check_integers(&literal!(value), name.node.as_str())
                .map_err(|message| refusal(message, value.pos))?;
        }
    }
    Ok(())
}

/// Integer literals anywhere in a value (lists and objects walked with their own stack).
fn check_integers(value: &ConstValue, argument: &str) -> Result<(), String> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            ConstValue::Number(number) => check_integer(number, argument)?,
            ConstValue::List(items) => stack.extend(items),
            ConstValue::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    Ok(())
}

/// An integer literal outside `Int`'s range. Fractions and exponents are floats, which this
/// schema takes nowhere; validation reports them.
fn check_integer(number: &async_graphql::Number, argument: &str) -> Result<(), String> {
    let is_integer = number.is_i64() || number.is_u64();
    let fits = number.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
    if is_integer && !fits {
        return Err(format!(
            "{argument}: integer literals must fit GraphQL's 32-bit Int ({} to {})",
            i32::MIN,
            i32::MAX
        ));
    }
    Ok(())
}

fn refusal(message: String, pos: Pos) -> ServerError {
    let mut error = ServerError::new(message, Some(pos));
    set_code(&mut error, ErrorCode::GraphqlValidationFailed);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::limits::code_of;
    use crate::graphql::shape::selected_operation;

    fn checked(query: &str, variables: serde_json::Value) -> Result<(), ServerError> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let operation = selected_operation(&document, None);
        check(&document, operation, &Variables::from_json(variables))
    }

    #[test]
    fn qr_arguments_are_checked_wherever_the_field_is() {
        let documents = [
            "mutation { createHealthLink(input: {}) { qrCodeSvg(moduleSize: 0) } }",
            "mutation { createHealthLink(input: {}) { ...F } } fragment F on DocumentReference { qrCodeSvg(darkColor: \"red\") }",
            "mutation { createHealthLink(input: {}) { ... on DocumentReference { q: qrCodeSvg(lightColor: \"#12345\") } } }",
            "mutation { createHealthLink(input: {}) { qrCodeSvg(errorCorrection: X) } }",
        ];
        for query in documents {
            let error = checked(query, serde_json::json!({})).expect_err(query);
            assert_eq!(code_of(&error), Some("GRAPHQL_VALIDATION_FAILED"));
            assert!(error.message.starts_with("qrCodeSvg."), "{}", error.message);
        }
    }

    #[test]
    fn variables_and_their_defaults_are_checked() {
        let query = "mutation($s: Int = 40, $e: QrErrorCorrection) { createHealthLink(input: {}) { qrCodeSvg(moduleSize: $s, errorCorrection: $e) } }";
        assert!(checked(query, serde_json::json!({})).is_err(), "default 40");
        assert!(checked(query, serde_json::json!({"s": 8})).is_ok());
        assert!(checked(query, serde_json::json!({"s": 8, "e": "Z"})).is_err());
        assert!(checked(query, serde_json::json!({"s": 178_117_804_487_664_u64})).is_err());
    }

    #[test]
    fn integer_literals_must_fit_32_bits() {
        for query in [
            "{ a(x: 2147483648) }",
            "{ a(x: [1, {y: -2147483649}]) }",
            "{ a @d(x: 99999999999) }",
            "query($v: Int = 4294967296) { a }",
            "mutation { createHealthLink(input: {}) { qrCodeSvg(moduleSize: 178117804487664) } }",
        ] {
            let error = checked(query, serde_json::json!({})).expect_err(query);
            assert!(error.message.contains("32-bit Int"), "{}", error.message);
            assert!(!error.message.contains("99999999999"), "{}", error.message);
        }
        assert!(
            checked(
                "{ a(x: 2147483647, y: -2147483648, z: 1.5e300) }",
                serde_json::json!({})
            )
            .is_ok()
        );
    }
}
