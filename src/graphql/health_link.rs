//! The `DocumentReference` object: b.well's fields, relayed, plus what the gateway adds.

use async_graphql::{Context, Enum, ID, InputType, Object, Result, Value as ConstValue};

use super::Services;
use crate::error::AppError;
use crate::issuer::{
    CodeableConcept, DocumentReference, DocumentReferenceContent, DocumentReferenceContext,
    Identifier, Reference,
};
use crate::links::CreatedLink;
use crate::passcode::Passcode;
use crate::qr;

/// Complexity charged for `qrCodeSvg`: encoding costs milliseconds of CPU, so aliasing the
/// field must exhaust the complexity budget long before it exhausts the server.
pub(crate) const QR_CODE_COMPLEXITY: usize = 50;

/// `createHealthLink`'s answer. Named `DocumentReference` in the schema: b.well's fields are
/// served unchanged, and the gateway fields sit beside them.
#[derive(Debug)]
pub(crate) struct CreatedHealthLink {
    pub(crate) document: DocumentReference,
    pub(crate) passcode: Option<Passcode>,
}

impl From<CreatedLink> for CreatedHealthLink {
    fn from(created: CreatedLink) -> Self {
        Self {
            document: created.document,
            passcode: created.passcode,
        }
    }
}

/// QR error correction level (ISO/IEC 18004): the share of the code that may be damaged.
#[derive(Debug, Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QrErrorCorrection {
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
        let options = svg_options(
            error_correction,
            i64::from(module_size),
            &dark_color,
            &light_color,
        )?;
        let Some(url) = self.document.health_link_url() else {
            return Ok(None);
        };
        let renderer = &Services::of(ctx).qr;
        match renderer.render_svg(url.to_owned(), options).await {
            Ok(svg) => Ok(Some(svg)),
            Err(qr::RenderError::Qr(qr::QrError::DataTooLong)) => Err(AppError::new(
                crate::error::ErrorCode::UpstreamError,
                "the link is too long for a QR code",
            )
            .into()),
            Err(qr::RenderError::NotRun(step)) => Err(AppError::internal_at(step).into()),
            Err(qr::RenderError::Qr(_)) => Err(AppError::internal_at("rendering a QR code").into()),
        }
    }

    /// The passcode protecting this link: the one given in `securityConfig.passcode`, or the
    /// one the gateway generated. Only `createHealthLink` returns it; the gateway keeps no copy.
    async fn passcode(&self) -> Option<&str> {
        self.passcode.as_ref().map(Passcode::expose)
    }
}

/// The field's name as the schema spells it (its arguments are checked against the SDL by a
/// test), for the check that runs before execution.
pub(super) const QR_CODE_SVG: &str = "qrCodeSvg";

fn svg_options(
    error_correction: QrErrorCorrection,
    module_size: i64,
    dark_color: &str,
    light_color: &str,
) -> Result<qr::SvgOptions, AppError> {
    Ok(qr::SvgOptions {
        error_correction: error_correction.into(),
        module_size: checked_module_size(module_size)?,
        dark: checked_color("darkColor", dark_color)?,
        light: checked_color("lightColor", light_color)?,
    })
}

/// `i64`: the check before execution sees literals wider than the `Int` the resolver gets.
fn checked_module_size(module_size: i64) -> Result<u32, AppError> {
    u32::try_from(module_size)
        .ok()
        .filter(|size| (qr::MIN_MODULE_SIZE..=qr::MAX_MODULE_SIZE).contains(size))
        .ok_or_else(|| {
            AppError::bad_user_input(format!(
                "qrCodeSvg.moduleSize must be between {} and {}",
                qr::MIN_MODULE_SIZE,
                qr::MAX_MODULE_SIZE
            ))
        })
}

fn checked_color(name: &str, value: &str) -> Result<qr::Color, AppError> {
    value
        .parse::<qr::Color>()
        .map_err(|_| AppError::bad_user_input(format!("qrCodeSvg.{name} must be #rrggbb")))
}

/// Checks one argument of `qrCodeSvg` as the document gives it (a literal, or a variable's
/// value), with the rules the resolver applies, so that an invalid document is refused before
/// anything runs (a link created first would be disclosed for nothing). Values of the wrong
/// type, and unknown arguments, are left to async-graphql's validation.
pub(super) fn check_qr_argument(name: &str, value: &ConstValue) -> Result<(), AppError> {
    match (name, value) {
        ("moduleSize", ConstValue::Number(number)) => match number.as_i64() {
            Some(size) => checked_module_size(size).map(drop),
            // Wider than `i64`: outside the range as well.
            None if number.is_u64() => checked_module_size(i64::MAX).map(drop),
            None => Ok(()),
        },
        ("darkColor" | "lightColor", ConstValue::String(color)) => {
            checked_color(name, color).map(drop)
        }
        ("errorCorrection", ConstValue::Enum(_) | ConstValue::String(_)) => {
            <QrErrorCorrection as InputType>::parse(Some(value.clone()))
                .map(drop)
                .map_err(|_| {
                    AppError::bad_user_input("qrCodeSvg.errorCorrection must be one of L, M, Q, H")
                })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_arguments_are_the_schemas() {
        let sdl = crate::graphql::sdl();
        let start = sdl.find("qrCodeSvg(").expect("qrCodeSvg in the SDL");
        let field = &sdl[start..start + sdl[start..].find("):").expect("arguments end")];
        for argument in [
            "errorCorrection:",
            "moduleSize:",
            "darkColor:",
            "lightColor:",
        ] {
            assert!(field.contains(argument), "{argument} in {field}");
        }
    }

    #[test]
    fn arguments_are_checked_with_the_resolvers_rules() {
        let number = |n: i64| ConstValue::Number(n.into());
        assert!(check_qr_argument("moduleSize", &number(4)).is_ok());
        for bad in [0, 33, -1, 178_117_804_487_664] {
            let error = check_qr_argument("moduleSize", &number(bad)).expect_err("range");
            assert!(error.message().contains("between 1 and 32"));
            assert!(!error.message().contains(&bad.to_string()));
        }
        let wide = ConstValue::Number(u64::MAX.into());
        assert!(check_qr_argument("moduleSize", &wide).is_err());
        let text = |t: &str| ConstValue::String(t.to_owned());
        assert!(check_qr_argument("darkColor", &text("#00ff00")).is_ok());
        let error = check_qr_argument("lightColor", &text("red")).expect_err("colour");
        assert_eq!(error.message(), "qrCodeSvg.lightColor must be #rrggbb");
        let level = |l: &str| ConstValue::Enum(async_graphql::Name::new(l));
        assert!(check_qr_argument("errorCorrection", &level("H")).is_ok());
        assert!(check_qr_argument("errorCorrection", &level("X")).is_err());
        assert!(check_qr_argument("errorCorrection", &text("Q")).is_ok());
        // Wrong types are async-graphql's to report.
        assert!(check_qr_argument("moduleSize", &text("4")).is_ok());
    }
}
