//! Retrieval (retrieve stage): the manifest protocol for links without `U` (`POST {url}` with
//! the recipient, the passcode and `embeddedLengthMax`, then each file embedded or fetched from
//! its `location`), or one `GET {url}?recipient=` for a `U` link.
//!
//! Every request goes through [`OutboundClient`] and its policy, `location` URLs included: they
//! come from the same stranger as the link. The number of files is capped, so a manifest
//! cannot make the receiver fetch without end.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::link::LinkPayload;
use super::outbound::{Answer, FetchError, OutboundClient};

/// Which request of the protocol failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `POST` of the manifest request.
    Manifest,
    /// `GET` of a `U` link's file.
    DirectFile,
    /// `GET` of a manifest file's `location`.
    Location,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Manifest => "manifest POST",
            Self::DirectFile => "file GET",
            Self::Location => "location GET",
        })
    }
}

/// Why retrieval failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrieveError {
    #[error("the link needs a passcode (flag P) and none was given")]
    PasscodeNeeded,
    #[error("{0}: {1}")]
    Fetch(Request, FetchError),
    #[error("{0} answered 404: the link is not active (unknown, expired, revoked or locked)")]
    NotActive(Request),
    #[error("{}", wrong_passcode(*.remaining_attempts))]
    WrongPasscode { remaining_attempts: Option<u64> },
    /// A 401 to a request that carried no passcode because the link announces none (no `P`):
    /// the server and the link disagree, which is not the reader's mistake.
    #[error("manifest POST answered 401, but the link does not ask for a passcode (no flag P)")]
    UnannouncedPasscode,
    #[error("{request} answered 429: too many requests{}", retry_after.as_ref().map(|after| format!(", retry after {after}")).unwrap_or_default())]
    RateLimited {
        request: Request,
        retry_after: Option<String>,
    },
    #[error("{0} answered HTTP {1}")]
    Status(Request, u16),
    #[error("the manifest is malformed: {0}")]
    Manifest(String),
    #[error("the manifest says the link is no longer valid")]
    NoLongerValid,
    #[error("the manifest lists {0} files, more than the {1} a receiver fetches")]
    TooManyFiles(usize, usize),
    #[error("the link's files together are larger than {0} bytes")]
    TooLarge(usize),
    #[error("retrieval took longer than {0:?}")]
    Deadline(std::time::Duration),
}

fn wrong_passcode(remaining: Option<u64>) -> String {
    match remaining {
        Some(remaining) => {
            format!("manifest POST answered 401: wrong passcode, {remaining} attempts left")
        }
        None => "manifest POST answered 401: wrong passcode".to_owned(),
    }
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSource {
    /// The body of a `U` link's `GET`.
    Direct,
    /// `embedded` in the manifest.
    Embedded,
    /// Fetched from its `location`.
    Location,
}

/// One encrypted file.
pub struct RetrievedFile {
    /// The manifest's `contentType`, or the `GET`'s `Content-Type` for a `U` link.
    pub content_type: Option<String>,
    pub source: FileSource,
    /// The compact JWE, as received (not yet known to be text).
    pub jwe: Vec<u8>,
}

impl std::fmt::Debug for RetrievedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievedFile")
            .field("content_type", &self.content_type)
            .field("source", &self.source)
            .field("jwe_bytes", &self.jwe.len())
            .finish()
    }
}

/// What retrieval brought back.
#[derive(Debug)]
pub struct Retrieved {
    pub files: Vec<RetrievedFile>,
    /// The manifest's `status` (`finalized`, `can-change`); none for a `U` link.
    pub manifest_status: Option<String>,
    /// What is not wrong but worth saying (an unexpected media type, say).
    pub warnings: Vec<String>,
}

/// What a manifest request says of its sender.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ManifestRequest<'a> {
    pub(crate) recipient: &'a str,
    pub(crate) passcode: Option<&'a SecretString>,
    pub(crate) embedded_length_max: Option<u64>,
    pub(crate) max_files: usize,
    /// The most bytes all the files may take together.
    pub(crate) max_total_bytes: usize,
}

/// Retrieves the link's files: one `GET` for a `U` link, the manifest protocol otherwise.
pub(crate) async fn retrieve(
    client: &OutboundClient,
    payload: &LinkPayload,
    request: ManifestRequest<'_>,
) -> Result<Retrieved, RetrieveError> {
    if payload.flags.direct {
        direct(client, &payload.url, request.recipient).await
    } else {
        manifest(client, &payload.url, request).await
    }
}

async fn direct(
    client: &OutboundClient,
    url: &Url,
    recipient: &str,
) -> Result<Retrieved, RetrieveError> {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("recipient", recipient);
    let answer = fetched(Request::DirectFile, client.get(&url, None).await)?;
    let mut warnings = Vec::new();
    expect_media_type(
        &answer,
        "application/jose",
        Request::DirectFile,
        &mut warnings,
    );
    Ok(Retrieved {
        files: vec![RetrievedFile {
            content_type: answer.content_type,
            source: FileSource::Direct,
            jwe: answer.body,
        }],
        manifest_status: None,
        warnings,
    })
}

async fn manifest(
    client: &OutboundClient,
    url: &Url,
    request: ManifestRequest<'_>,
) -> Result<Retrieved, RetrieveError> {
    let passcode = request.passcode;
    let mut body = json!({ "recipient": request.recipient });
    if let Some(passcode) = passcode {
        body["passcode"] = Value::from(passcode.expose_secret());
    }
    if let Some(max) = request.embedded_length_max {
        body["embeddedLengthMax"] = Value::from(max);
    }
    let answer = client.post_json(url, &body).await;
    // The body held the passcode: it goes no further than the request.
    drop(body);
    let answer = fetched(Request::Manifest, answer)?;
    if answer.status == 401 && passcode.is_none() {
        return Err(RetrieveError::UnannouncedPasscode);
    }
    if answer.status == 401 {
        let remaining_attempts = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|body| body.get("remainingAttempts").and_then(Value::as_u64));
        return Err(RetrieveError::WrongPasscode { remaining_attempts });
    }
    let mut warnings = Vec::new();
    expect_media_type(
        &answer,
        "application/json",
        Request::Manifest,
        &mut warnings,
    );
    let manifest: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| RetrieveError::Manifest("not JSON".to_owned()))?;
    let status = match manifest.get("status") {
        None => None,
        Some(Value::String(status)) => Some(status.clone()),
        Some(_) => return Err(RetrieveError::Manifest("status is not a string".to_owned())),
    };
    match status.as_deref() {
        Some("no-longer-valid") => return Err(RetrieveError::NoLongerValid),
        None | Some("finalized" | "can-change") => {}
        Some(_) => warnings.push("the manifest's status is not one the spec defines".to_owned()),
    }
    let entries = manifest
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| RetrieveError::Manifest("no files list".to_owned()))?;
    if entries.is_empty() {
        return Err(RetrieveError::Manifest(
            "the files list is empty".to_owned(),
        ));
    }
    if entries.len() > request.max_files {
        return Err(RetrieveError::TooManyFiles(
            entries.len(),
            request.max_files,
        ));
    }
    let mut files = Vec::with_capacity(entries.len());
    // What is left of the link's budget: each location is fetched with it as its cap.
    let mut budget = request.max_total_bytes;
    for (index, entry) in entries.iter().enumerate() {
        let file = manifest_file(client, index, entry, budget, &mut warnings).await?;
        budget = budget
            .checked_sub(file.jwe.len())
            .ok_or(RetrieveError::TooLarge(request.max_total_bytes))?;
        files.push(file);
    }
    Ok(Retrieved {
        files,
        manifest_status: status,
        warnings,
    })
}

/// One entry of `files`: `{contentType, embedded}` or `{contentType, location}`, exactly one.
async fn manifest_file(
    client: &OutboundClient,
    index: usize,
    entry: &Value,
    budget: usize,
    warnings: &mut Vec<String>,
) -> Result<RetrievedFile, RetrieveError> {
    let malformed = |what: &str| RetrieveError::Manifest(format!("files[{index}] {what}"));
    let content_type = entry
        .get("contentType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("has no contentType"))?
        .to_owned();
    let embedded = entry.get("embedded");
    let location = entry.get("location");
    match (embedded, location) {
        (Some(Value::String(jwe)), None) => Ok(RetrievedFile {
            content_type: Some(content_type),
            source: FileSource::Embedded,
            jwe: jwe.clone().into_bytes(),
        }),
        (None, Some(Value::String(location))) => {
            let url =
                Url::parse(location).map_err(|_| malformed("location is not an absolute URL"))?;
            let answer = fetched(Request::Location, client.get(&url, Some(budget)).await)?;
            expect_media_type(&answer, "application/jose", Request::Location, warnings);
            Ok(RetrievedFile {
                content_type: Some(content_type),
                source: FileSource::Location,
                jwe: answer.body,
            })
        }
        (Some(_), Some(_)) => Err(malformed("has both embedded and location")),
        (None, None) => Err(malformed("has neither embedded nor location")),
        _ => Err(malformed("embedded or location is not a string")),
    }
}

/// The answer when its status is 200 (or 401 for the manifest, which the caller reads), the
/// protocol's error otherwise.
fn fetched(request: Request, answer: Result<Answer, FetchError>) -> Result<Answer, RetrieveError> {
    let answer = answer.map_err(|error| RetrieveError::Fetch(request, error))?;
    match answer.status {
        200 => Ok(answer),
        401 if request == Request::Manifest => Ok(answer),
        404 => Err(RetrieveError::NotActive(request)),
        429 => Err(RetrieveError::RateLimited {
            request,
            retry_after: answer.retry_after.filter(|after| {
                after.len() <= 64 && after.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            }),
        }),
        status => Err(RetrieveError::Status(request, status)),
    }
}

/// Warns when the answer's media type (parameters aside) is not `expected`.
fn expect_media_type(
    answer: &Answer,
    expected: &str,
    request: Request,
    warnings: &mut Vec<String>,
) {
    let media_type = answer
        .content_type
        .as_deref()
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|media_type| media_type.eq_ignore_ascii_case(expected)) {
        warnings.push(format!(
            "{request} answered Content-Type {}, not {expected}",
            media_type.map_or_else(|| "none".to_owned(), |found| format!("{found:.40}"))
        ));
    }
}
