//! GraphQL input objects, mirrored from b.well, and their validation into an issuer request.

use async_graphql::{Enum, InputObject};

use crate::error::AppError;
use crate::issuer::{CreateLinkRequest, LinkMode, PatientStory, ResourceType, ValidatedLabel};
use crate::passcode::Passcode;

#[derive(InputObject)]
pub(crate) struct CreateHealthLinkInput {
    /// Shown to the recipient and carried in plaintext inside the QR code: at most 80 characters,
    /// no control characters, and no PHI.
    pub(crate) label: Option<String>,
    /// The resource types to share. Omitted or empty: every type `shareableResourceTypes` lists.
    pub(crate) resources: Option<Vec<ResourceSelectorInput>>,
    pub(crate) security_config: Option<SecurityConfigInput>,
    /// How the link is protected (a gateway field, not sent upstream). `DIRECT` needs embedded
    /// mode, or upstream mode with `--ktc-bridge`.
    #[graphql(default_with = "Some(HealthLinkMode::Passcode)")]
    pub(crate) mode: Option<HealthLinkMode>,
    /// How long the link is valid, in seconds (a gateway field, not sent upstream). Embedded
    /// mode (and DIRECT links with `--ktc-bridge`): at most `--max-link-validity` (PASSCODE) or
    /// `--max-direct-link-validity` (DIRECT), both 48 hours by default. Omitted: 5 minutes (PASSCODE) or 10 minutes (DIRECT).
    pub(crate) expires_in_seconds: Option<i32>,
    /// DIRECT links: add a PDF that renders every shared resource as readable text, for an EHR
    /// that files documents rather than data. Default `true` for DIRECT; PASSCODE links carry an
    /// IPS document and take no PDF (giving it is `BAD_USER_INPUT`).
    pub(crate) rendered_summary: Option<bool>,
    /// DIRECT links: the patient's own story, in their words (priorities, concerns, goals,
    /// corrections), shared as a PDF note. Plain text, at most 10,000 characters, paragraphs kept.
    /// Never logged and never in audit records.
    #[graphql(secret)]
    pub(crate) patient_story: Option<String>,
}

#[derive(Debug, InputObject)]
pub(crate) struct ResourceSelectorInput {
    /// One of `shareableResourceTypes`, case-sensitive.
    pub(crate) resource_type: String,
}

#[derive(InputObject)]
pub(crate) struct SecurityConfigInput {
    /// Exactly 6 ASCII digits. Omit it and the gateway generates one from a CSPRNG.
    #[graphql(secret)]
    pub(crate) passcode: Option<String>,
}

impl std::fmt::Debug for SecurityConfigInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfigInput")
            .field("passcode", &self.passcode.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// How a link is protected.
#[derive(Debug, Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthLinkMode {
    /// SHL flag `P`: a manifest protected by a passcode (b.well's mode).
    Passcode,
    /// SHL flag `U`: a single file fetched directly, no passcode, short-lived (the CMS Kill the
    /// Clipboard profile). Embedded mode, or upstream mode with `--ktc-bridge` (converted from
    /// b.well's link).
    Direct,
}

/// The label, the passcode and the story are the patient's: `Debug` says only whether they came.
impl std::fmt::Debug for CreateHealthLinkInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateHealthLinkInput")
            .field("label", &self.label.as_ref().map(|_| "[REDACTED]"))
            .field("resources", &self.resources)
            .field(
                "passcode",
                &self
                    .security_config
                    .as_ref()
                    .and_then(|config| config.passcode.as_ref())
                    .map(|_| "[REDACTED]"),
            )
            .field("mode", &self.mode)
            .field("expires_in_seconds", &self.expires_in_seconds)
            .field("rendered_summary", &self.rendered_summary)
            .field(
                "patient_story",
                &self.patient_story.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl CreateHealthLinkInput {
    /// Checks every field and settles the passcode (generated when omitted in `PASSCODE` mode).
    /// Messages name the bad field and the rule, never the value.
    pub(crate) fn validate(self) -> Result<CreateLinkRequest, AppError> {
        let label = self
            .label
            .as_deref()
            .map(ValidatedLabel::parse)
            .transpose()
            .map_err(AppError::bad_user_input)?;

        let mut resources: Vec<ResourceType> = Vec::new();
        for (index, selector) in self.resources.unwrap_or_default().iter().enumerate() {
            // The value is not repeated: it could be a token pasted in the wrong field.
            let resource_type = ResourceType::parse(&selector.resource_type).ok_or_else(|| {
                AppError::bad_user_input(format!(
                    "resources[{index}].resourceType is not a shareable resource type (see shareableResourceTypes, case-sensitive)"
                ))
            })?;
            if !resources.contains(&resource_type) {
                resources.push(resource_type);
            }
        }

        let supplied = self.security_config.and_then(|config| config.passcode);
        // An explicit `null` means the default, as the SDL's nullable `mode` promises.
        let (mode, passcode) = match self.mode.unwrap_or(HealthLinkMode::Passcode) {
            HealthLinkMode::Passcode => {
                let passcode = match supplied.as_deref() {
                    Some(candidate) => Passcode::parse(candidate).map_err(|error| {
                        AppError::bad_user_input(format!("securityConfig.{error}"))
                    })?,
                    None => Passcode::generate().map_err(|_| {
                        AppError::internal_at(
                            "drawing a passcode from the OS random number generator",
                        )
                    })?,
                };
                (LinkMode::Passcode, Some(passcode))
            }
            HealthLinkMode::Direct if supplied.is_some() => {
                return Err(AppError::bad_user_input(
                    "securityConfig.passcode must be omitted with mode DIRECT (SHL flag U forbids a passcode)",
                ));
            }
            HealthLinkMode::Direct => (LinkMode::Direct, None),
        };

        let expires_in = match self.expires_in_seconds {
            None => None,
            Some(seconds) => match u64::try_from(seconds) {
                Ok(seconds) if seconds > 0 => Some(std::time::Duration::from_secs(seconds)),
                _ => {
                    return Err(AppError::bad_user_input(
                        "expiresInSeconds must be a positive number of seconds",
                    ));
                }
            },
        };

        let direct_only = |field: &str| {
            AppError::bad_user_input(format!(
                "{field} applies to mode DIRECT only (a PASSCODE link carries an IPS document)"
            ))
        };
        let rendered_summary = match (mode, self.rendered_summary) {
            (LinkMode::Direct, choice) => choice.unwrap_or(true),
            (LinkMode::Passcode, None) => false,
            (LinkMode::Passcode, Some(_)) => return Err(direct_only("renderedSummary")),
        };
        let story = match (mode, self.patient_story.as_deref()) {
            (_, None) => None,
            (LinkMode::Passcode, Some(_)) => return Err(direct_only("patientStory")),
            (LinkMode::Direct, Some(story)) => {
                Some(PatientStory::parse(story).map_err(AppError::bad_user_input)?)
            }
        };

        Ok(CreateLinkRequest {
            label,
            resources,
            passcode,
            mode,
            expires_in,
            rendered_summary,
            story,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn input(label: Option<&str>, types: &[&str], passcode: Option<&str>) -> CreateHealthLinkInput {
        CreateHealthLinkInput {
            label: label.map(str::to_owned),
            resources: Some(
                types
                    .iter()
                    .map(|t| ResourceSelectorInput {
                        resource_type: (*t).to_owned(),
                    })
                    .collect(),
            ),
            security_config: Some(SecurityConfigInput {
                passcode: passcode.map(str::to_owned),
            }),
            mode: None,
            expires_in_seconds: None,
            rendered_summary: None,
            patient_story: None,
        }
    }

    #[test]
    fn labels_are_counted_in_unicode_scalar_values() {
        let eighty = "é".repeat(80);
        assert!(input(Some(&eighty), &[], None).validate().is_ok());
        let error = input(Some(&"é".repeat(81)), &[], None)
            .validate()
            .expect_err("too long");
        assert_eq!(error.code(), ErrorCode::BadUserInput);
        assert!(error.message().contains("80"));
    }

    #[test]
    fn a_validity_is_a_positive_number_of_seconds() {
        let with = |seconds: Option<i32>| CreateHealthLinkInput {
            expires_in_seconds: seconds,
            ..input(None, &[], None)
        };
        assert_eq!(with(None).validate().expect("default").expires_in, None);
        assert_eq!(
            with(Some(3600)).validate().expect("an hour").expires_in,
            Some(std::time::Duration::from_secs(3600))
        );
        for refused in [0, -1, i32::MIN] {
            let error = with(Some(refused)).validate().expect_err("not positive");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
            assert!(error.message().contains("expiresInSeconds"));
        }
    }

    fn direct(story: Option<&str>, rendered: Option<bool>) -> CreateHealthLinkInput {
        CreateHealthLinkInput {
            mode: Some(HealthLinkMode::Direct),
            security_config: None,
            patient_story: story.map(str::to_owned),
            rendered_summary: rendered,
            ..input(None, &[], None)
        }
    }

    #[test]
    fn direct_links_render_a_summary_unless_told_not_to() {
        assert!(
            direct(None, None)
                .validate()
                .expect("valid")
                .rendered_summary
        );
        assert!(
            !direct(None, Some(false))
                .validate()
                .expect("valid")
                .rendered_summary
        );
        assert!(
            !input(None, &[], None)
                .validate()
                .expect("valid")
                .rendered_summary
        );
    }

    #[test]
    fn the_story_and_the_summary_are_for_direct_links_only() {
        for passcode_link in [
            CreateHealthLinkInput {
                patient_story: Some("My story".to_owned()),
                ..input(None, &[], None)
            },
            CreateHealthLinkInput {
                rendered_summary: Some(true),
                ..input(None, &[], None)
            },
        ] {
            let error = passcode_link.validate().expect_err("PASSCODE");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
            assert!(error.message().contains("DIRECT"), "{}", error.message());
        }
    }

    #[test]
    fn a_story_keeps_its_paragraphs_and_is_never_repeated_in_an_error() {
        let story = "I ran a marathon in May.\r\n\r\nMy knee still hurts when I climb stairs.";
        let parsed = direct(Some(story), None).validate().expect("valid");
        assert_eq!(
            parsed.story.as_ref().map(PatientStory::as_str),
            Some("I ran a marathon in May.\n\nMy knee still hurts when I climb stairs.")
        );
        assert_eq!(
            format!("{:?}", parsed.story),
            "Some(PatientStory([REDACTED]))"
        );
        let pasted = direct(Some("\u{FEFF}I can\u{00AD}not kneel."), None)
            .validate()
            .expect("a BOM and a soft hyphen are dropped, not refused");
        assert_eq!(
            pasted.story.as_ref().map(PatientStory::as_str),
            Some("I cannot kneel.")
        );
        let secret = "knee-secret ";
        for bad in [
            secret.repeat(1000),
            format!("{secret}\u{7}"),
            format!("{secret}\u{202E}"),
            "   \n ".to_owned(),
            format!("{secret}\u{200B}"),
        ] {
            let error = direct(Some(&bad), None).validate().expect_err("refused");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
            assert!(!error.message().contains("knee"), "{}", error.message());
        }
        let longest = "é".repeat(10_000);
        assert!(direct(Some(&longest), None).validate().is_ok());
    }

    #[test]
    fn labels_with_control_characters_are_refused() {
        for label in ["a\nb", "tab\there", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
            let error = input(Some(label), &[], None)
                .validate()
                .expect_err("control");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
            assert!(!error.message().contains(label));
        }
    }

    #[test]
    fn labels_with_invisible_formatting_characters_are_refused() {
        for label in [
            "Dr. \u{202E}nosaJ",
            "zero\u{200B}width",
            "\u{2066}isolate\u{2069}",
            "\u{FEFF}bom",
            "soft\u{AD}hyphen",
        ] {
            let error = input(Some(label), &[], None).validate().expect_err("Cf");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
            assert!(error.message().starts_with("label "), "{}", error.message());
            assert!(error.message().contains("Cf"), "{}", error.message());
        }
        assert!(
            input(Some("Née à Zürich, 中文 😀"), &[], None)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn unknown_resource_types_are_named_in_the_error() {
        let error = input(None, &["Patient", "patient"], None)
            .validate()
            .expect_err("case");
        assert!(
            error.message().contains("resources[1]"),
            "{}",
            error.message()
        );
        assert!(
            !error.message().contains("patient\""),
            "{}",
            error.message()
        );
        let pasted = input(None, &["Bearer abc-123"], None)
            .validate()
            .expect_err("not a name");
        assert!(
            !pasted.message().contains("abc-123"),
            "{}",
            pasted.message()
        );
    }

    #[test]
    fn duplicate_resource_types_are_merged_in_order() {
        let request = input(None, &["Coverage", "Patient", "Coverage"], None)
            .validate()
            .expect("valid");
        assert_eq!(
            request.resources,
            vec![ResourceType::Coverage, ResourceType::Patient]
        );
    }

    #[test]
    fn an_omitted_passcode_is_generated_and_a_given_one_kept() {
        let generated = input(None, &[], None).validate().expect("valid");
        assert_eq!(generated.passcode.expect("generated").expose().len(), 6);
        let given = input(None, &[], Some("012345")).validate().expect("valid");
        assert_eq!(given.passcode.expect("kept").expose(), "012345");
    }

    #[test]
    fn a_malformed_passcode_is_refused_without_echo() {
        let error = input(None, &[], Some("74373"))
            .validate()
            .expect_err("short");
        assert_eq!(error.code(), ErrorCode::BadUserInput);
        assert!(!error.message().contains("74373"));
    }

    #[test]
    fn direct_mode_refuses_a_passcode() {
        let mut direct = input(None, &[], Some("123456"));
        direct.mode = Some(HealthLinkMode::Direct);
        assert_eq!(
            direct.validate().expect_err("passcode").code(),
            ErrorCode::BadUserInput
        );
    }
}
