//! Stable error codes for the phases async-graphql runs before any resolver, and the operation
//! limits checked between validation and execution.
//!
//! async-graphql reports parse and validation failures as bare messages. Clients (and Apollo
//! tooling) branch on `extensions.code`, so this extension stamps `GRAPHQL_PARSE_FAILED`,
//! `GRAPHQL_VALIDATION_FAILED` and `OPERATION_LIMIT_EXCEEDED` on them. Depth and complexity are
//! computed by async-graphql's validator in any case; checking them here (instead of with
//! `limit_depth`/`limit_complexity`) is what lets the refusal carry its own code.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, NextValidation,
    ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Value, Variables};

use super::shape::DocumentShape;
use crate::error::ErrorCode;

/// Limits on the shape of a GraphQL operation. Each has a flag (see `Config`) and a test that
/// crosses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationLimits {
    /// Deepest field nesting. GraphiQL's introspection query nests 13 deep.
    pub max_depth: usize,
    /// Sum of field costs (1 per field, `qrCodeSvg` costs extra).
    pub max_complexity: usize,
    /// Longest query text, in bytes (checked before parsing).
    pub max_query_bytes: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_directives: usize,
    /// `createHealthLink` executions per request (aliases count).
    pub max_link_creations: usize,
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
        }
    }
}

pub(super) struct ErrorCodes {
    limits: Arc<OperationLimits>,
}

impl ErrorCodes {
    pub(super) fn new(limits: OperationLimits) -> Self {
        Self {
            limits: Arc::new(limits),
        }
    }
}

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension {
            limits: Arc::clone(&self.limits),
        })
    }
}

/// Created per request.
struct ErrorCodesExtension {
    limits: Arc<OperationLimits>,
}

impl ErrorCodesExtension {
    fn check_shape(&self, shape: &DocumentShape) -> Result<(), ServerError> {
        let limits = &self.limits;
        let checks = [
            ("aliases", shape.aliases, limits.max_aliases),
            ("root fields", shape.root_fields, limits.max_root_fields),
            ("directives", shape.directives, limits.max_directives),
            (
                "createHealthLink fields",
                shape.link_creations,
                limits.max_link_creations,
            ),
        ];
        for (what, count, limit) in checks {
            if count > limit {
                return Err(limit_error(format!(
                    "the operation has {count} {what}; the limit is {limit}"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > self.limits.max_query_bytes {
            return Err(limit_error(format!(
                "the query has {} bytes; the limit is {}",
                query.len(),
                self.limits.max_query_bytes
            )));
        }
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|error| with_code(error, ErrorCode::GraphqlParseFailed))?;
        self.check_shape(&DocumentShape::measure(&document))?;
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| with_code(error, ErrorCode::GraphqlValidationFailed))
                .collect::<Vec<_>>()
        })?;
        if result.depth > self.limits.max_depth {
            return Err(vec![limit_error(format!(
                "operation depth {} exceeds the limit of {}",
                result.depth, self.limits.max_depth
            ))]);
        }
        if result.complexity > self.limits.max_complexity {
            return Err(vec![limit_error(format!(
                "operation complexity {} exceeds the limit of {}",
                result.complexity, self.limits.max_complexity
            ))]);
        }
        Ok(result)
    }

    /// Counts root field executions by schema field name (aliases counted one by one).
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let is_root = info.path_node.parent.is_none();
        let field = is_root.then(|| info.name.to_owned());
        let result = next.run(ctx, info).await;
        if let Some(field) = field {
            let outcome = match &result {
                Ok(_) => "ok".to_owned(),
                Err(error) => error
                    .extensions
                    .as_ref()
                    .and_then(|extensions| extensions.get("code"))
                    .map_or_else(
                        || "error".to_owned(),
                        |code| code.to_string().trim_matches('"').to_owned(),
                    ),
            };
            metrics::counter!(crate::metrics::GRAPHQL_FIELDS, "field" => field, "outcome" => outcome)
                .increment(1);
        }
        result
    }
}

fn limit_error(message: String) -> ServerError {
    with_code(
        ServerError::new(message, None),
        ErrorCode::OperationLimitExceeded,
    )
}

fn with_code(mut error: ServerError, code: ErrorCode) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
    error
}

/// Whether an error refuses the request as a whole (nothing was executed), which the
/// GraphQL-over-HTTP spec answers with a 4xx status and no `data`.
pub fn is_request_error(error: &ServerError) -> bool {
    let code = error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"));
    [
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
        ErrorCode::OperationLimitExceeded,
    ]
    .iter()
    .any(|request_code| code == Some(&async_graphql::Value::from(request_code.as_str())))
}
