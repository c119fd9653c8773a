//! The root `Query` and `Mutation` types: adapters from the schema to the link service.

use async_graphql::{Context, ID, Object, Result};

use super::Services;
use super::health_link::CreatedHealthLink;
use super::health_links::HealthLink;
use super::inputs::CreateHealthLinkInput;
use crate::issuer::Caller;

#[derive(Debug, Default)]
pub(crate) struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The resource types a patient may choose from, for step 2 of the workflow: b.well's IPS
    /// set in upstream mode, and `MedicationRequest` too in embedded mode. Omitting `resources`
    /// shares all of them.
    async fn shareable_resource_types(&self, ctx: &Context<'_>) -> Vec<&'static str> {
        Services::of(ctx)
            .links
            .shareable_resource_types()
            .iter()
            .map(|resource_type| resource_type.as_str())
            .collect()
    }

    /// The caller's links, newest first, with who opened them. Embedded mode, or the bridged
    /// DIRECT links of upstream mode with `--ktc-bridge`.
    async fn health_links(&self, ctx: &Context<'_>) -> Result<Vec<HealthLink>> {
        let links = Services::of(ctx).links.list(ctx.data::<Caller>()?).await?;
        Ok(links.into_iter().map(HealthLink).collect())
    }
}

#[derive(Debug, Default)]
pub(crate) struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a SMART Health Link, exactly as b.well's `createHealthLink`, and answers with the
    /// gateway fields `passcode` and `qrCodeSvg` so the app needs no second round trip.
    /// Requires `Authorization: Bearer <token>`.
    async fn create_health_link(
        &self,
        ctx: &Context<'_>,
        input: CreateHealthLinkInput,
    ) -> Result<CreatedHealthLink> {
        let caller = ctx.data::<Caller>()?;
        let created = Services::of(ctx)
            .links
            .create(caller, input.validate())
            .await?;
        Ok(created.into())
    }

    /// Revokes one of the caller's links at once: its encrypted file is deleted and every later
    /// access answers 404, including file tickets already handed out. Embedded mode, or bridged
    /// DIRECT links with `--ktc-bridge`.
    async fn revoke_health_link(&self, ctx: &Context<'_>, id: ID) -> Result<HealthLink> {
        let caller = ctx.data::<Caller>()?;
        let revoked = Services::of(ctx).links.revoke(caller, id.as_str()).await?;
        Ok(HealthLink(revoked))
    }
}
