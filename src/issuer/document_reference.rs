//! The `DocumentReference` answer of `createHealthLink`, mirrored field for field from b.well.
//!
//! These types are the wire contract: the upstream issuer deserializes b.well's answer into them
//! and the GraphQL layer serves them unchanged, so every value a client sees is the value b.well
//! sent. Every field is optional, as in b.well's schema: a missing value is relayed as `null`
//! rather than refused.

use std::fmt;

use async_graphql::{ID, SimpleObject};
use serde::{Deserialize, Serialize};

const REDACTED: &str = "[REDACTED]";

/// The attachment content type that marks the SHL payload among `content[]`.
pub const SHL_CONTENT_TYPE: &str = "application/smart-health-link+json";

/// The GraphQL object is `crate::graphql`'s `CreatedHealthLink`, which serves these fields
/// beside the gateway's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    pub(crate) id: ID,
    pub(crate) identifier: Option<Vec<Identifier>>,
    pub(crate) description: Option<String>,
    pub(crate) resource_type: Option<String>,
    pub(crate) date: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) subject: Option<Reference>,
    pub(crate) context: Option<DocumentReferenceContext>,
    pub(crate) content: Option<Vec<DocumentReferenceContent>>,
    pub(crate) category: Option<Vec<CodeableConcept>>,
}

impl DocumentReference {
    /// The SHL (viewer URL or `shlink:/` URI) to encode in the QR code: the attachment whose
    /// content type is [`SHL_CONTENT_TYPE`].
    pub(crate) fn health_link_url(&self) -> Option<&str> {
        self.content
            .iter()
            .flatten()
            .filter_map(|content| content.attachment.as_ref())
            .find(|attachment| attachment.content_type.as_deref() == Some(SHL_CONTENT_TYPE))
            .and_then(|attachment| attachment.url.as_deref())
    }
}

/// An identifier of the link (b.well: the manifest id, the source id and the UUID).
// `Debug` hides `value`: b.well's first identifier is the manifest id, a capability.
#[derive(Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct Identifier {
    pub(crate) system: Option<String>,
    pub(crate) value: Option<String>,
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identifier")
            .field("system", &self.system)
            .field("value", &self.value.as_ref().map(|_| REDACTED))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct Reference {
    pub(crate) reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct DocumentReferenceContext {
    pub(crate) period: Option<Period>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct Period {
    pub(crate) start: Option<String>,
    pub(crate) end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct DocumentReferenceContent {
    pub(crate) attachment: Option<Attachment>,
}

/// The link itself: `url` is the SHL (here a viewer URL with `#shlink:/...` in its fragment).
// `Debug` hides `url`: it carries the SHL's decryption key.
#[derive(Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub(crate) content_type: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) title: Option<String>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("content_type", &self.content_type)
            .field("url", &self.url.as_ref().map(|_| REDACTED))
            .field("title", &self.title)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct CodeableConcept {
    pub(crate) coding: Option<Vec<Coding>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct Coding {
    pub(crate) system: Option<String>,
    pub(crate) code: Option<String>,
}
