//! The root `Query` and `Mutation` types.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use secrecy::ExposeSecret;

use super::health_link::CreatedHealthLink;
use super::health_links::HealthLink;
use super::inputs::CreateHealthLinkInput;
use crate::error::{AppError, ErrorCode};
use crate::issuer::{Caller, Issuer, ResourceType};
use crate::ratelimit::RatePolicy;

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The resource types a patient may choose from (the IPS set in b.well's workflow), for
    /// step 2 of the workflow. Omitting `resources` shares all of them.
    async fn shareable_resource_types(&self) -> Vec<&'static str> {
        ResourceType::SHAREABLE
            .iter()
            .map(|resource_type| resource_type.as_str())
            .collect()
    }

    /// The caller's links, newest first, with who opened them. Embedded mode only.
    async fn health_links(&self, ctx: &Context<'_>) -> Result<Vec<HealthLink>> {
        let caller = ctx.data::<Caller>()?;
        require_bearer(caller)?;
        let issuer = ctx.data::<Arc<dyn Issuer>>()?;
        let links = issuer.health_links(caller).await?;
        Ok(links.into_iter().map(HealthLink).collect())
    }
}

#[derive(Debug, Default)]
pub struct MutationRoot;

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
        require_bearer(caller)?;
        let request = input.validate()?;
        // Charged per execution: aliases each pay (and the document limits allow one by default).
        let token = caller
            .authorization
            .as_ref()
            .map(|value| value.expose_secret().to_owned())
            .unwrap_or_default();
        ctx.data::<RatePolicy>()?
            .charge_link_creation(&token, caller.client_ip)
            .await?;
        let issuer = ctx.data::<Arc<dyn Issuer>>()?;
        let document = issuer.create_health_link(caller, &request).await?;
        let link_mode = match request.mode {
            crate::issuer::LinkMode::Passcode => "PASSCODE",
            crate::issuer::LinkMode::Direct => "DIRECT",
        };
        metrics::counter!(crate::metrics::LINKS_CREATED, "issuer" => issuer.mode().as_str(), "mode" => link_mode)
            .increment(1);
        Ok(CreatedHealthLink {
            document,
            passcode: request.passcode,
        })
    }

    /// Revokes one of the caller's links at once: its encrypted file is deleted and every later
    /// access answers 404, including file tickets already handed out. Embedded mode only.
    async fn revoke_health_link(&self, ctx: &Context<'_>, id: ID) -> Result<HealthLink> {
        let caller = ctx.data::<Caller>()?;
        require_bearer(caller)?;
        let issuer = ctx.data::<Arc<dyn Issuer>>()?;
        Ok(HealthLink(
            issuer.revoke_health_link(caller, id.as_str()).await?,
        ))
    }
}

/// Refuses a request without a bearer credential before anything is sent anywhere.
fn require_bearer(caller: &Caller) -> Result<(), AppError> {
    let has_bearer = caller.authorization.as_ref().is_some_and(|value| {
        let value = value.expose_secret();
        value.split_once(' ').is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        })
    });
    if has_bearer {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Unauthenticated,
            "an Authorization: Bearer <token> header is required",
        ))
    }
}
