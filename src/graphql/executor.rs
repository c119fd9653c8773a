//! Runs one GraphQL request: the parsed document (cached), async-graphql's validation and
//! execution, the codes of request-level errors, and the per-field metrics.
//!
//! The schema has no async-graphql extension on purpose: with any extension installed, every
//! field of every response goes through the extension chain (a boxed future and a registry
//! lookup per field), which cost more than parsing does. What the extension did (stamp codes,
//! count root fields) happens here, once per request.

use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{PathSegment, Response, ServerError};

use super::GatewaySchema;
use super::documents::DocumentCache;
use super::limits::{OperationLimits, code_of, is_request_error};
use super::shape::{root_fields, selected_operation};

/// The schema with its request pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    schema: GatewaySchema,
    limits: Arc<OperationLimits>,
    documents: Arc<DocumentCache>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Executor {
    pub(super) fn new(schema: GatewaySchema, limits: OperationLimits) -> Self {
        Self {
            schema,
            limits: Arc::new(limits),
            documents: Arc::new(DocumentCache::default()),
        }
    }

    pub async fn execute(&self, mut request: async_graphql::Request) -> Response {
        let prepared = match self.documents.prepare(&request.query, &self.limits) {
            Ok(prepared) => prepared,
            Err(error) => return Response::from_errors(vec![error]),
        };
        // async-graphql takes the document by value (it prunes `@skip`ped fields in place), so
        // each request gets its own copy of the cached tree.
        request.set_parsed_query((*prepared.document).clone());
        let operation_name = request.operation_name.clone();
        // With the document handed over, async-graphql no longer reads the text.
        let query = std::mem::take(&mut request.query);

        let mut response = self.schema.execute(request).await;
        self.limits.stamp_request_errors(&mut response.errors);

        let refused = response.errors.iter().any(is_request_error);
        if refused {
            return response;
        }
        record_root_fields(&prepared.document, operation_name.as_deref(), &response);
        if prepared.fresh {
            self.documents.keep(&query, prepared.document);
        }
        response
    }

    /// The type of the operation a request would run, if its document parses within the
    /// limits (`GET` refuses mutations before executing anything).
    pub fn operation_type(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Option<OperationType> {
        let prepared = self.documents.prepare(query, &self.limits).ok()?;
        selected_operation(&prepared.document, operation_name).map(|operation| operation.ty)
    }
}

fn outcome_of(error: &ServerError) -> String {
    code_of(error).unwrap_or("error").to_owned()
}

/// Counts each root field the operation executed, by schema field name and outcome.
fn record_root_fields(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    response: &Response,
) {
    let Some(fields) = selected_operation(document, operation_name)
        .and_then(|operation| root_fields(operation, document))
    else {
        return;
    };
    let data = match &response.data {
        async_graphql::Value::Object(data) => Some(data),
        _ => None,
    };
    for field in fields {
        let key = field.response_key().node.as_str();
        // Not in `data`: skipped by `@skip`/`@include`, so not executed.
        if data.is_some_and(|data| !data.contains_key(key)) {
            continue;
        }
        // The root field's own error, not one of a nested field (a failed `qrCodeSvg` leaves a
        // created link).
        let outcome = response
            .errors
            .iter()
            .find(|error| matches!(error.path.as_slice(), [PathSegment::Field(first)] if first == key))
            .map_or_else(|| "ok".to_owned(), outcome_of);
        metrics::counter!(crate::metrics::GRAPHQL_FIELDS, "field" => field.name.node.to_string(), "outcome" => outcome)
            .increment(1);
    }
}
