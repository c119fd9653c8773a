//! The `DocumentReference` object: b.well's fields, relayed, plus what the gateway adds.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Result};
use tokio::sync::Semaphore;

use crate::error::AppError;
use crate::issuer::{
    CodeableConcept, DocumentReference, DocumentReferenceContent, DocumentReferenceContext,
    Identifier, Reference,
};
use crate::passcode::Passcode;
use crate::qr;

/// Complexity charged for `qrCodeSvg`: encoding costs milliseconds of CPU, so aliasing the
/// field must exhaust the complexity budget long before it exhausts the server.
pub const QR_CODE_COMPLEXITY: usize = 50;

/// `createHealthLink`'s answer. Named `DocumentReference` in the schema: b.well's fields are
/// served unchanged, and the gateway fields sit beside them.
#[derive(Debug)]
pub struct CreatedHealthLink {
    pub document: DocumentReference,
    pub passcode: Option<Passcode>,
}

/// QR error correction level (ISO/IEC 18004): the share of the code that may be damaged.
#[derive(Debug, Enum, Clone, Copy, PartialEq, Eq)]
pub enum QrErrorCorrection {
    /// About 7 %.
    L,
    /// About 15 %: the SMART Health Links recommendation.
    M,
    /// About 25 %.
    Q,
    /// About 30 %.
    H,
}

impl From<QrErrorCorrection> for qr::ErrorCorrection {
    fn from(level: QrErrorCorrection) -> Self {
        match level {
            QrErrorCorrection::L => qr::ErrorCorrection::Low,
            QrErrorCorrection::M => qr::ErrorCorrection::Medium,
            QrErrorCorrection::Q => qr::ErrorCorrection::Quartile,
            QrErrorCorrection::H => qr::ErrorCorrection::High,
        }
    }
}

/// A FHIR R4 DocumentReference describing the link, as b.well returns it.
#[Object(name = "DocumentReference")]
impl CreatedHealthLink {
    async fn id(&self) -> &ID {
        &self.document.id
    }

    async fn identifier(&self) -> Option<&[Identifier]> {
        self.document.identifier.as_deref()
    }

    async fn description(&self) -> Option<&str> {
        self.document.description.as_deref()
    }

    async fn resource_type(&self) -> Option<&str> {
        self.document.resource_type.as_deref()
    }

    async fn date(&self) -> Option<&str> {
        self.document.date.as_deref()
    }

    async fn status(&self) -> Option<&str> {
        self.document.status.as_deref()
    }

    async fn subject(&self) -> Option<&Reference> {
        self.document.subject.as_ref()
    }

    /// `period` is the link's validity.
    async fn context(&self) -> Option<&DocumentReferenceContext> {
        self.document.context.as_ref()
    }

    /// The attachment of type `application/smart-health-link+json` holds the link.
    async fn content(&self) -> Option<&[DocumentReferenceContent]> {
        self.document.content.as_deref()
    }

    async fn category(&self) -> Option<&[CodeableConcept]> {
        self.document.category.as_deref()
    }

    /// The QR code of the link (the `content[]` attachment of type
    /// `application/smart-health-link+json`) as a standalone SVG document, with a quiet zone of
    /// 4 modules. `null` when the answer has no such attachment.
    #[graphql(complexity = "QR_CODE_COMPLEXITY + child_complexity")]
    async fn qr_code_svg(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default_with = "QrErrorCorrection::M",
            desc = "Error correction level; M is the SHL recommendation."
        )]
        error_correction: QrErrorCorrection,
        #[graphql(default = 4, desc = "Pixels per module, 1 to 32.")] module_size: i32,
        #[graphql(default = "#000000", desc = "Colour of dark modules, `#rrggbb`.")]
        dark_color: String,
        #[graphql(
            default = "#ffffff",
            desc = "Colour of light modules and the quiet zone, `#rrggbb`."
        )]
        light_color: String,
    ) -> Result<Option<String>> {
        let options = svg_options(error_correction, module_size, &dark_color, &light_color)?;
        let Some(url) = self.document.health_link_url() else {
            return Ok(None);
        };
        let url = url.to_owned();
        // Encoding a version-15 code takes milliseconds: keep it off the async workers, and
        // bound how many run at once so that requests without one keep a core.
        let slot = Arc::clone(&ctx.data::<QrRenderSlots>()?.0)
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal())?;
        let rendered = tokio::task::spawn_blocking(move || {
            // Held by the work itself: a cancelled request does not free the slot early.
            let _slot = slot;
            let started = std::time::Instant::now();
            let rendered = qr::render_svg(&url, &options);
            metrics::histogram!(crate::metrics::QR_RENDER_DURATION)
                .record(started.elapsed().as_secs_f64());
            rendered
        })
        .await
        .map_err(|_| AppError::internal())?;
        match rendered {
            Ok(svg) => Ok(Some(svg)),
            Err(qr::QrError::DataTooLong) => Err(AppError::new(
                crate::error::ErrorCode::UpstreamError,
                "the link is too long for a QR code",
            )
            .into()),
            Err(_) => Err(AppError::internal().into()),
        }
    }

    /// The passcode protecting this link: the one given in `securityConfig.passcode`, or the
    /// one the gateway generated. Only `createHealthLink` returns it; the gateway keeps no copy.
    async fn passcode(&self) -> Option<&str> {
        self.passcode.as_ref().map(Passcode::expose)
    }
}

/// Permits to encode a QR code.
#[derive(Debug, Clone)]
pub(super) struct QrRenderSlots(Arc<Semaphore>);

impl QrRenderSlots {
    pub(super) fn new(permits: usize) -> Self {
        Self(Arc::new(Semaphore::new(permits.max(1))))
    }
}

fn svg_options(
    error_correction: QrErrorCorrection,
    module_size: i32,
    dark_color: &str,
    light_color: &str,
) -> Result<qr::SvgOptions, AppError> {
    let module_size = u32::try_from(module_size)
        .ok()
        .filter(|size| (qr::MIN_MODULE_SIZE..=qr::MAX_MODULE_SIZE).contains(size))
        .ok_or_else(|| {
            AppError::bad_user_input(format!(
                "qrCodeSvg.moduleSize must be between {} and {}",
                qr::MIN_MODULE_SIZE,
                qr::MAX_MODULE_SIZE
            ))
        })?;
    let color = |name: &str, value: &str| {
        value
            .parse::<qr::Color>()
            .map_err(|_| AppError::bad_user_input(format!("qrCodeSvg.{name} must be #rrggbb")))
    };
    Ok(qr::SvgOptions {
        error_correction: error_correction.into(),
        module_size,
        dark: color("darkColor", dark_color)?,
        light: color("lightColor", light_color)?,
    })
}
