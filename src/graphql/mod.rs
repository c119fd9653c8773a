//! The GraphQL schema: types, resolvers and request-level rules. Nothing here knows about HTTP;
//! the transport (`crate::http::graphql`) hands in a [`crate::issuer::Caller`] per request.

mod documents;
mod executor;
mod health_link;
mod health_links;
mod inputs;
mod limits;
mod preflight;
mod redact;
mod resolvers;
mod shape;
mod value_depth;

use std::sync::Arc;

use async_graphql::{EmptySubscription, Schema};

pub use executor::Executor;
pub use health_link::QR_CODE_COMPLEXITY;
pub use limits::{OperationLimits, is_request_error};
pub use resolvers::{MutationRoot, QueryRoot};
pub use value_depth::MAX_VALUE_DEPTH_CEILING;

use crate::audit::AuditTrail;
use crate::idempotency::Idempotency;
use crate::issuer::Issuer;
use crate::ratelimit::RatePolicy;

pub type GatewaySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Options that shape the schema itself (as opposed to per-request data).
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    pub limits: OperationLimits,
    /// Introspection and "did you mean" suggestions help attackers map the API: both follow
    /// this switch, which production settings turn off.
    pub introspection: bool,
    /// QR codes encoded at once (see `--max-concurrent-qr-renders`).
    pub max_concurrent_qr_renders: usize,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            limits: OperationLimits::default(),
            introspection: true,
            max_concurrent_qr_renders: crate::qr::default_concurrent_renders(),
        }
    }
}

/// The schema and its request pipeline.
pub fn build_executor(
    issuer: Arc<dyn Issuer>,
    rate_policy: RatePolicy,
    audit: AuditTrail,
    idempotency: Arc<Idempotency>,
    options: &SchemaOptions,
) -> Executor {
    let limits = &options.limits;
    let mut builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(issuer)
        .data(rate_policy)
        .data(audit.clone())
        .data(idempotency)
        .data(health_link::QrRenderSlots::new(
            options.max_concurrent_qr_renders,
        ))
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !options.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    Executor::new(builder.finish(), limits.clone(), audit)
}

/// The schema's SDL, as `shl-gateway schema` prints it and `schema/schema.graphql` holds it.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .finish()
        .sdl()
}
