//! The operation limits, and the stable error codes of the phases async-graphql runs before any
//! resolver.
//!
//! async-graphql reports parse and validation failures as bare messages. Clients (and Apollo
//! tooling) branch on `extensions.code`, so every request-level error leaves the gateway with
//! `GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED` or `OPERATION_LIMIT_EXCEEDED`. The gateway
//! parses documents itself (see `documents`), so it stamps parse errors and shape limits where
//! they happen; depth and complexity are computed by async-graphql's validator, and
//! [`stamp_request_errors`] names them after execution (see docs/decisions.md: an extension
//! would have done it in place, at the price of a slow path for every field of every request).

use async_graphql::{ErrorExtensionValues, ServerError};

use super::shape::DocumentShape;
use crate::error::ErrorCode;

/// Limits on the shape of a GraphQL operation. Each has a flag (see `Config`) and a test that
/// crosses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OperationLimits {
    /// Deepest field nesting. GraphiQL's introspection query nests 13 deep.
    pub(crate) max_depth: usize,
    /// Sum of field costs (1 per field, `qrCodeSvg` costs extra).
    pub(crate) max_complexity: usize,
    /// Longest query text, in bytes (checked before parsing).
    pub(crate) max_query_bytes: usize,
    pub(crate) max_aliases: usize,
    pub(crate) max_root_fields: usize,
    pub(crate) max_directives: usize,
    /// `createHealthLink` executions per request (aliases count).
    pub(crate) max_link_creations: usize,
    /// Deepest nesting of `[` and `{` in the text, selection sets included (checked before
    /// parsing: see `value_depth`).
    pub(crate) max_value_depth: usize,
}

impl Default for OperationLimits {
    fn default() -> Self {
        Self {
            max_depth: 15,
            max_complexity: 250,
            max_query_bytes: 16 * 1024,
            max_aliases: 30,
            max_root_fields: 10,
            max_directives: 20,
            max_link_creations: 1,
            max_value_depth: 64,
        }
    }
}

/// async-graphql's own messages for the two limits its validator enforces
/// (`Schema::limit_complexity`, `Schema::limit_depth`) and for its parser's recursion bound.
/// A test crosses each limit and checks the code, so a new wording cannot slip through.
const COMPLEXITY_MESSAGE: &str = "Query is too complex.";
const DEPTH_MESSAGE: &str = "Query is nested too deep.";
const RECURSION_MESSAGE_PREFIX: &str = "The recursion depth of the query";

impl OperationLimits {
    pub(super) fn check_query_size(&self, query: &str) -> Result<(), ServerError> {
        if query.len() > self.max_query_bytes {
            return Err(limit_error(format!(
                "the query has {} bytes; the limit is {}",
                query.len(),
                self.max_query_bytes
            )));
        }
        Ok(())
    }

    /// Runs before the parser, which recurses on nested values without a bound.
    pub(super) fn check_value_depth(&self, query: &str) -> Result<(), ServerError> {
        super::value_depth::check(query, self.max_value_depth)
            .map(drop)
            .map_err(|_| {
                limit_error(format!(
                    "the document nests `[` and `{{` deeper than the limit of {}",
                    self.max_value_depth
                ))
            })
    }

    pub(super) fn check_shape(&self, shape: &DocumentShape) -> Result<(), ServerError> {
        let checks = [
            ("aliases", shape.aliases, self.max_aliases),
            ("root fields", shape.root_fields, self.max_root_fields),
            ("directives", shape.directives, self.max_directives),
            (
                "createHealthLink fields",
                shape.link_creations,
                self.max_link_creations,
            ),
        ];
        for (what, count, limit) in checks {
            if count > limit {
                // `usize::MAX`: too many to count (see `shape::root_fields`).
                let count = if count == usize::MAX {
                    "too many".to_owned()
                } else {
                    count.to_string()
                };
                return Err(limit_error(format!(
                    "the operation has {count} {what}; the limit is {limit}"
                )));
            }
        }
        Ok(())
    }

    /// Gives every error async-graphql raised before execution (validation, depth, complexity,
    /// operation selection) its code. Those are the errors without a code and without a path:
    /// resolver errors always carry a path, and the gateway's own errors a code.
    pub(super) fn stamp_request_errors(&self, errors: &mut [ServerError]) {
        for error in errors {
            if !error.path.is_empty() || code_of(error).is_some() {
                continue;
            }
            let message = error.message.as_str();
            let code = if message == COMPLEXITY_MESSAGE {
                error.message = format!(
                    "the operation's complexity exceeds the limit of {}",
                    self.max_complexity
                );
                ErrorCode::OperationLimitExceeded
            } else if message == DEPTH_MESSAGE {
                error.message = format!(
                    "the operation's depth exceeds the limit of {}",
                    self.max_depth
                );
                ErrorCode::OperationLimitExceeded
            } else if message.starts_with(RECURSION_MESSAGE_PREFIX) {
                ErrorCode::OperationLimitExceeded
            } else {
                ErrorCode::GraphqlValidationFailed
            };
            set_code(error, code);
        }
    }
}

/// Gives a code to the errors async-graphql raised while resolving, which carry a path but no
/// code: coercing an argument (`Failed to parse "Int": ...`) is the client's input; anything
/// else without a code is a wiring bug, answered as one. Runs after the messages are masked.
pub(super) fn stamp_field_errors(errors: &mut [ServerError]) {
    for error in errors
        .iter_mut()
        .filter(|error| !error.path.is_empty() && code_of(error).is_none())
    {
        let coercion = COERCION_MESSAGE_PREFIXES
            .iter()
            .any(|prefix| error.message.starts_with(prefix));
        let code = if coercion {
            ErrorCode::BadUserInput
        } else {
            // The message is not logged: it may hold input.
            tracing::error!(path = ?error.path, "a field error without a code");
            error.message = "internal error".to_owned();
            ErrorCode::InternalServerError
        };
        set_code(error, code);
    }
}

/// async-graphql's messages when an argument does not coerce to its type (`InputValueError`):
/// a value out of the type's rules, or of another type, or a variable without a value
/// (variables are not checked against their declared types before execution).
const COERCION_MESSAGE_PREFIXES: [&str; 3] =
    ["Failed to parse \"", "Expected input type \"", "Variable "];

pub(super) fn limit_error(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    set_code(&mut error, ErrorCode::OperationLimitExceeded);
    error
}

pub(super) fn set_code(error: &mut ServerError, code: ErrorCode) {
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("code", code.as_str());
}

/// The `extensions.code` of an error, if it has one.
pub(super) fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

/// Whether an error refuses the request as a whole (nothing was executed), which the
/// GraphQL-over-HTTP spec answers with a 4xx status and no `data`.
pub(crate) fn is_request_error(error: &ServerError) -> bool {
    let code = code_of(error);
    [
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
        ErrorCode::OperationLimitExceeded,
    ]
    .iter()
    .any(|request_code| code == Some(request_code.as_str()))
}

#[cfg(test)]
mod tests {
    use async_graphql::{ErrorExtensionValues, PathSegment, ServerError};

    use super::*;

    fn error(message: &str) -> ServerError {
        ServerError::new(message, None)
    }

    #[test]
    fn pre_execution_errors_get_their_codes() {
        let limits = OperationLimits::default();
        let mut errors = vec![
            error(COMPLEXITY_MESSAGE),
            error(DEPTH_MESSAGE),
            error("Unknown field \"x\" on type \"Query\"."),
        ];
        limits.stamp_request_errors(&mut errors);
        let codes: Vec<_> = errors.iter().map(code_of).collect();
        assert_eq!(
            codes,
            [
                Some("OPERATION_LIMIT_EXCEEDED"),
                Some("OPERATION_LIMIT_EXCEEDED"),
                Some("GRAPHQL_VALIDATION_FAILED"),
            ]
        );
        assert!(errors[0].message.contains("complexity") && errors[0].message.contains("250"));
        assert!(errors[1].message.contains("depth") && errors[1].message.contains("15"));
        assert!(errors.iter().all(is_request_error));
    }

    #[test]
    fn field_errors_without_a_code_get_one() {
        let at = |message: &str| {
            let mut error = error(message);
            error.path = vec![PathSegment::Field("qrCodeSvg".into())];
            error
        };
        let mut errors = vec![
            at(
                "Failed to parse \"Int\": Only integers from -2147483648 to 2147483647 are accepted.",
            ),
            at("Data `Caller` does not exist."),
            at("Expected input type \"CreateHealthLinkInput\", found [REDACTED]."),
            error("no path: a request error, stamped elsewhere"),
        ];
        stamp_field_errors(&mut errors);
        assert_eq!(code_of(&errors[0]), Some("BAD_USER_INPUT"));
        assert_eq!(code_of(&errors[1]), Some("INTERNAL_SERVER_ERROR"));
        assert_eq!(errors[1].message, "internal error");
        assert_eq!(code_of(&errors[2]), Some("BAD_USER_INPUT"));
        assert_eq!(code_of(&errors[3]), None);
    }

    #[test]
    fn resolver_errors_and_coded_errors_are_left_alone() {
        let limits = OperationLimits::default();
        let mut with_path = error("upstream failed");
        with_path.path = vec![PathSegment::Field("createHealthLink".into())];
        let mut with_code = error(COMPLEXITY_MESSAGE);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "RATE_LIMITED");
        with_code.extensions = Some(extensions);
        let mut errors = vec![with_path, with_code];
        limits.stamp_request_errors(&mut errors);
        assert_eq!(code_of(&errors[0]), None);
        assert_eq!(code_of(&errors[1]), Some("RATE_LIMITED"));
        assert_eq!(errors[1].message, COMPLEXITY_MESSAGE);
        assert!(!errors.iter().any(is_request_error));
    }
}
