//! Runs one GraphQL request: the parsed document (cached), the gateway's own checks of the
//! whole document, async-graphql's validation and execution, the codes of request-level
//! errors, the masking of values in messages, and the per-field metrics.
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
use super::limits::{OperationLimits, code_of, is_request_error, stamp_field_errors};
use super::redact::{RequestValues, SchemaNames};
use super::shape::{CREATE_HEALTH_LINK, root_fields, selected_operation};
use crate::issuer::Caller;
use crate::links::LinkService;

/// The schema with its request pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    schema: GatewaySchema,
    limits: Arc<OperationLimits>,
    documents: Arc<DocumentCache>,
    /// The names messages may quote (see `redact`).
    names: Arc<SchemaNames>,
    /// Refusals of a whole document that would have created a link are recorded by the link
    /// service, as the resolver's own are (see `preflight`).
    links: LinkService,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Executor {
    pub(super) fn new(schema: GatewaySchema, limits: OperationLimits, links: LinkService) -> Self {
        let names = Arc::new(SchemaNames::new(schema.names()));
        Self {
            schema,
            limits: Arc::new(limits),
            documents: Arc::new(DocumentCache::default()),
            names,
            links,
        }
    }

    /// Runs `request` for `caller`. Messages async-graphql wrote have the request's values
    /// masked (see `redact`).
    pub async fn execute(&self, mut request: async_graphql::Request, caller: Caller) -> Response {
        let prepared = match self.documents.prepare(&request.query, &self.limits) {
            Ok(prepared) => prepared,
            Err(error) => {
                let mut response = Response::from_errors(vec![error]);
                self.redact(&mut response, &request.query, None, &request.variables);
                return response;
            }
        };
        let operation_name = request.operation_name.clone();
        let operation = selected_operation(&prepared.document, operation_name.as_deref());
        if let Err(error) =
            super::preflight::check(&prepared.document, operation, &request.variables)
        {
            let creates = operation.is_some_and(|operation| {
                operation.ty == OperationType::Mutation
                    && root_fields(operation, &prepared.document).is_some_and(|fields| {
                        fields
                            .iter()
                            .any(|field| field.name.node.as_str() == CREATE_HEALTH_LINK)
                    })
            });
            if creates {
                self.links.record_refused_document(&caller).await;
            }
            let mut response = Response::from_errors(vec![error]);
            let document = Some(&*prepared.document);
            self.redact(&mut response, &request.query, document, &request.variables);
            return response;
        }
        // async-graphql takes the document by value (it prunes `@skip`ped fields in place), so
        // each request gets its own copy of the cached tree.
        request.set_parsed_query((*prepared.document).clone());
        // With the document handed over, async-graphql no longer reads the text.
        let query = std::mem::take(&mut request.query);
        // Kept for masking messages: the request itself goes to async-graphql.
        let variables = request.variables.clone();

        let mut response = self.schema.execute(request.data(caller)).await;
        self.limits.stamp_request_errors(&mut response.errors);
        self.redact(&mut response, &query, Some(&prepared.document), &variables);
        stamp_field_errors(&mut response.errors);

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

    /// Masks values in the messages async-graphql wrote: request errors, and errors without a
    /// code (input coercion). Messages the gateway wrote carry a code and are safe by
    /// construction. The values are collected only when some message needs them.
    fn redact(
        &self,
        response: &mut Response,
        query: &str,
        document: Option<&ExecutableDocument>,
        variables: &async_graphql::Variables,
    ) {
        let needs = |error: &ServerError| code_of(error).is_none() || is_request_error(error);
        if !response.errors.iter().any(needs) {
            return;
        }
        let values = RequestValues::collect(query, document, variables, &self.names);
        for error in response.errors.iter_mut().filter(|error| needs(error)) {
            error.message = values.redact(&error.message, &self.names);
        }
    }

    /// The type of the operation a request would run, if its document parses within the
    /// limits (`GET` refuses mutations before executing anything).
    pub(crate) fn operation_type(
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
