//! The one operation the gateway sends upstream, and how b.well's answer is read.

use serde::{Deserialize, Serialize};

use super::Error;
use crate::issuer::{CreateLinkRequest, DocumentReference};

/// b.well's documented mutation, selecting every field of `DocumentReference`. It is fixed so
/// that a caller cannot make the gateway run anything else upstream with its credentials.
pub(crate) const CREATE_HEALTH_LINK: &str =
    "mutation CreateHealthLink($input: CreateHealthLinkInput!) {
  createHealthLink(input: $input) {
    id
    identifier { system value }
    description
    resourceType
    date
    status
    subject { reference }
    context { period { start end } }
    content { attachment { contentType url title } }
    category { coding { system code } }
  }
}";

pub(crate) const OPERATION_NAME: &str = "CreateHealthLink";

/// The request body: b.well's input shape, without the gateway-only `mode` field. Empty
/// `resources` are left out so that b.well applies its own default (the whole IPS set).
/// Serialized straight from borrowed fields: no intermediate JSON tree per request.
pub(crate) fn request_body(request: &CreateLinkRequest) -> RequestBody<'_> {
    RequestBody {
        query: CREATE_HEALTH_LINK,
        operation_name: OPERATION_NAME,
        variables: Variables {
            input: Input {
                label: request.label.as_ref().map(|label| label.as_str()),
                resources: request
                    .resources
                    .iter()
                    .map(|resource| ResourceRef {
                        resource_type: resource.as_str(),
                    })
                    .collect(),
                security_config: request.passcode.as_ref().map(|passcode| SecurityConfig {
                    passcode: passcode.expose(),
                }),
            },
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestBody<'a> {
    query: &'static str,
    operation_name: &'static str,
    variables: Variables<'a>,
}

#[derive(Serialize)]
struct Variables<'a> {
    input: Input<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Input<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<ResourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_config: Option<SecurityConfig<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceRef {
    resource_type: &'static str,
}

#[derive(Serialize)]
struct SecurityConfig<'a> {
    passcode: &'a str,
}

#[derive(Deserialize)]
struct GraphqlAnswer {
    data: Option<AnswerData>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    create_health_link: Option<DocumentReference>,
}

#[derive(Deserialize)]
struct GraphqlError {
    extensions: Option<ErrorExtensions>,
}

#[derive(Deserialize)]
struct ErrorExtensions {
    code: Option<String>,
}

/// Reads a GraphQL answer body. Errors win over data: b.well's documented answer never mixes
/// them for this mutation, and relaying half a link would be worse than refusing.
pub(crate) fn parse_answer(
    body: &[u8],
    default_retry_after_seconds: u64,
) -> Result<DocumentReference, Error> {
    let answer: GraphqlAnswer = serde_json::from_slice(body)
        .map_err(|_| Error::BadAnswer("body is not a GraphQL answer"))?;
    if let Some(first) = answer.errors.first() {
        let code = first
            .extensions
            .as_ref()
            .and_then(|ext| ext.code.as_deref());
        return Err(error_from_code(code, default_retry_after_seconds));
    }
    answer
        .data
        .and_then(|data| data.create_health_link)
        .ok_or(Error::BadAnswer("answer has no createHealthLink"))
}

/// Maps the upstream's `extensions.code` (Apollo conventions, which b.well follows).
fn error_from_code(code: Option<&str>, default_retry_after_seconds: u64) -> Error {
    match code {
        Some("UNAUTHENTICATED") => Error::Unauthenticated,
        Some("FORBIDDEN") => Error::Forbidden,
        Some("RATE_LIMITED" | "TOO_MANY_REQUESTS") => Error::RateLimited {
            retry_after_seconds: default_retry_after_seconds,
        },
        Some("BAD_USER_INPUT") => Error::RejectedInput,
        _ => Error::BadAnswer("GraphQL error from upstream"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    use crate::issuer::{LinkMode, ResourceType, ValidatedLabel};
    use crate::passcode::Passcode;

    fn request(resources: Vec<ResourceType>) -> CreateLinkRequest {
        CreateLinkRequest {
            label: Some(ValidatedLabel::parse("Health Records").expect("valid")),
            resources,
            passcode: Some(Passcode::parse("743730").expect("valid")),
            mode: LinkMode::Passcode,
            expires_in: None,
            rendered_summary: false,
            story: None,
        }
    }

    fn as_json(request: &CreateLinkRequest) -> Value {
        serde_json::to_value(request_body(request)).expect("serializes")
    }

    #[test]
    fn body_carries_the_seed_variables() {
        let body = as_json(&request(vec![
            ResourceType::Patient,
            ResourceType::Coverage,
        ]));
        assert_eq!(body["operationName"], "CreateHealthLink");
        assert_eq!(
            body["variables"],
            json!({"input": {
                "label": "Health Records",
                "resources": [{"resourceType": "Patient"}, {"resourceType": "Coverage"}],
                "securityConfig": {"passcode": "743730"},
            }})
        );
    }

    #[test]
    fn empty_resources_are_left_to_the_upstream_default() {
        let body = as_json(&request(vec![]));
        assert!(body["variables"]["input"].get("resources").is_none());
    }

    #[test]
    fn error_codes_map_to_stable_errors() {
        let answer = |code: &str| {
            format!(
                r#"{{"data":null,"errors":[{{"message":"secret text","extensions":{{"code":"{code}"}}}}]}}"#
            )
        };
        assert_eq!(
            parse_answer(answer("UNAUTHENTICATED").as_bytes(), 5),
            Err(Error::Unauthenticated)
        );
        assert_eq!(
            parse_answer(answer("FORBIDDEN").as_bytes(), 5),
            Err(Error::Forbidden)
        );
        assert_eq!(
            parse_answer(answer("RATE_LIMITED").as_bytes(), 5),
            Err(Error::RateLimited {
                retry_after_seconds: 5
            })
        );
        assert_eq!(
            parse_answer(answer("BAD_USER_INPUT").as_bytes(), 5),
            Err(Error::RejectedInput)
        );
        assert!(matches!(
            parse_answer(answer("WHATEVER").as_bytes(), 5),
            Err(Error::BadAnswer(_))
        ));
    }

    #[test]
    fn garbage_and_empty_answers_are_bad_answers() {
        for body in [
            "",
            "<html>",
            "{}",
            r#"{"data":{"createHealthLink":null}}"#,
            "[1,2]",
        ] {
            assert!(
                matches!(parse_answer(body.as_bytes(), 5), Err(Error::BadAnswer(_))),
                "{body}"
            );
        }
    }
}
