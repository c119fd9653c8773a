//! The GraphQL schema: types, resolvers and request-level rules. Nothing here knows about HTTP;
//! the transport (`crate::http::graphql`) hands in a [`crate::issuer::Caller`] per request.
//! Resolvers are adapters: the link service (`crate::links`) runs every operation on links,
//! and the schema holds it, with the QR renderer, as one [`Services`] value.

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

use async_graphql::{EmptySubscription, Schema};

pub(crate) use executor::Executor;
pub(crate) use limits::{OperationLimits, is_request_error};
pub(crate) use resolvers::{MutationRoot, QueryRoot};
pub(crate) use value_depth::MAX_VALUE_DEPTH_CEILING;

use crate::links::LinkService;

pub(crate) type GatewaySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Options that shape the schema itself (as opposed to per-request data).
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    pub(crate) limits: OperationLimits,
    /// Introspection and "did you mean" suggestions help attackers map the API: both follow
    /// this switch, which production settings turn off.
    pub(crate) introspection: bool,
    /// QR codes encoded at once (see `--max-concurrent-qr-renders`).
    pub(crate) max_concurrent_qr_renders: usize,
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

/// What resolvers use, as the schema's one data item. [`build_executor`] is the only way to a
/// schema that runs requests and always puts it there, so resolvers take it unchecked.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub(crate) links: LinkService,
    pub(crate) qr: crate::qr::Renderer,
}

impl Services {
    fn of<'a>(ctx: &async_graphql::Context<'a>) -> &'a Self {
        ctx.data_unchecked::<Self>()
    }
}

/// The schema and its request pipeline.
pub fn build_executor(links: LinkService, options: &SchemaOptions) -> Executor {
    let limits = &options.limits;
    let services = Services {
        links,
        qr: crate::qr::Renderer::new(options.max_concurrent_qr_renders),
    };
    let mut builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(services.clone())
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !options.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    Executor::new(builder.finish(), limits.clone(), services.links)
}

/// The schema's SDL, as `shl-gateway schema` prints it and `schema/schema.graphql` holds it.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .finish()
        .sdl()
}
