//! The workflow's ordering rules, without GraphQL or HTTP: a fake issuer that sees what the
//! trail holds when it is called, a real embedded issuer on SQLite for the data plane, and an
//! in-memory trail that can be made to fail at any step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::audit::{AuditAction, AuditEvent, MemoryAuditSink};
use crate::crypto::Keys;
use crate::error::{AppError, ErrorCode};
use crate::idempotency::InProcessStore;
use crate::issuer::embedded::{EmbeddedIssuer, EmbeddedSettings, ManifestAnswer, ManifestRequest};
use crate::issuer::fhir::PatientRecord;
use crate::issuer::store::{LinkStore, SqlStore};
use crate::issuer::{
    BearerToken, Caller, CreateLinkRequest, IssuerMode, LinkMode, LinkSummary, ResourceType,
    TraceContext,
};
use crate::passcode::{Passcode, PasscodeHasher};
use crate::ratelimit::{InProcessQuotas, QuotaSpec, QuotaSpecs};

const SEED_RESPONSE: &str = include_str!("../../tests/fixtures/seed-response.json");
const TOKEN: &str = "token-of-the-caller";

fn keys() -> Keys {
    Keys::derive(&secrecy::SecretBox::new(Box::new(vec![7u8; 32])))
}

fn seed_document() -> DocumentReference {
    let answer: serde_json::Value = serde_json::from_str(SEED_RESPONSE).expect("seed json");
    serde_json::from_value(answer["data"]["createHealthLink"].clone()).expect("seed answer")
}

fn caller(authorization: Option<&str>) -> Caller {
    Caller {
        bearer: authorization.and_then(BearerToken::from_authorization),
        request_id: "request-1".to_owned(),
        trace: TraceContext::default(),
        client_ip: Some("192.0.2.7".parse().expect("ip")),
        idempotency_key: None,
    }
}

fn bearer_caller() -> Caller {
    caller(Some(&format!("Bearer {TOKEN}")))
}

fn passcode_request() -> CreateLinkRequest {
    CreateLinkRequest {
        label: None,
        resources: Vec::new(),
        passcode: Some(Passcode::parse("123456").expect("passcode")),
        mode: LinkMode::Passcode,
        expires_in: None,
        rendered_summary: false,
        story: None,
    }
}

fn policy(links_per_caller: u32) -> RatePolicy {
    let generous = QuotaSpec {
        burst: 1_000_000,
        period: Duration::from_secs(3600),
    };
    RatePolicy::new(
        Arc::new(InProcessQuotas::new(1_000)),
        keys().rate_limit,
        QuotaSpecs {
            links_per_caller: QuotaSpec {
                burst: links_per_caller,
                period: Duration::from_secs(3600),
            },
            links_per_ip: generous,
            http_per_ip: generous,
            shl_per_ip: generous,
            shl_per_link: generous,
        },
    )
}

fn idempotency() -> Arc<Idempotency> {
    Arc::new(Idempotency::new(
        Box::new(InProcessStore::default()),
        keys().idempotency,
        Duration::from_secs(60),
        Duration::from_secs(1),
    ))
}

fn trail(sink: &Arc<MemoryAuditSink>) -> AuditTrail {
    AuditTrail::new(Arc::clone(sink) as _, keys().audit_actor)
}

/// Answers every creation with b.well's example, or with an error; notes how many records the
/// trail held at each call, and can break the trail while it works.
#[derive(Debug)]
struct FakeIssuer {
    sink: Arc<MemoryAuditSink>,
    answer: Result<DocumentReference, ErrorCode>,
    /// What `check_request` answers.
    request_rule: Result<(), ErrorCode>,
    break_trail_when_called: bool,
    records_seen_at_calls: Mutex<Vec<Vec<AuditAction>>>,
}

impl FakeIssuer {
    fn new(sink: &Arc<MemoryAuditSink>) -> Self {
        Self {
            sink: Arc::clone(sink),
            answer: Ok(seed_document()),
            request_rule: Ok(()),
            break_trail_when_called: false,
            records_seen_at_calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<Vec<AuditAction>> {
        self.records_seen_at_calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Issuer for FakeIssuer {
    fn mode(&self) -> IssuerMode {
        IssuerMode::Upstream
    }

    fn shareable_resource_types(&self) -> &'static [ResourceType] {
        &ResourceType::UPSTREAM
    }

    fn check_request(&self, _request: &CreateLinkRequest) -> Result<(), AppError> {
        self.request_rule
            .map_err(|code| AppError::new(code, "the fake issuer's rule"))
    }

    async fn create_health_link(
        &self,
        _caller: &Caller,
        _request: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        let seen = actions(&self.sink);
        self.records_seen_at_calls.lock().expect("lock").push(seen);
        if self.break_trail_when_called {
            self.sink.set_failing(true);
        }
        self.answer
            .clone()
            .map_err(|code| AppError::new(code, "the fake issuer refused"))
    }

    async fn revoke_health_link(&self, _caller: &Caller, _link_id: &str) -> Result<(), AppError> {
        self.records_seen_at_calls
            .lock()
            .expect("lock")
            .push(actions(&self.sink));
        Ok(())
    }

    /// Fails when `answer` is an error, as a store that cannot read the link back.
    async fn health_link(&self, _caller: &Caller, link_id: &str) -> Result<LinkSummary, AppError> {
        self.records_seen_at_calls
            .lock()
            .expect("lock")
            .push(actions(&self.sink));
        if let Err(code) = &self.answer {
            return Err(AppError::new(*code, "the fake issuer cannot read the link"));
        }
        Ok(LinkSummary {
            id: link_id.to_owned(),
            label: None,
            mode: LinkMode::Passcode,
            state: crate::issuer::store::LinkState::Revoked,
            created_at: String::new(),
            expires_at: None,
            accesses: Vec::new(),
        })
    }
}

fn actions(sink: &MemoryAuditSink) -> Vec<AuditAction> {
    sink.events().iter().map(|event| event.action).collect()
}

fn outcomes(sink: &MemoryAuditSink) -> Vec<(AuditAction, String)> {
    sink.events()
        .into_iter()
        .map(|event| (event.action, event.outcome))
        .collect()
}

struct Fixture {
    sink: Arc<MemoryAuditSink>,
    issuer: Arc<FakeIssuer>,
    service: LinkService,
}

fn fixture_with(configure: impl FnOnce(&mut FakeIssuer), links_per_caller: u32) -> Fixture {
    let sink = Arc::new(MemoryAuditSink::new());
    let mut issuer = FakeIssuer::new(&sink);
    configure(&mut issuer);
    let issuer = Arc::new(issuer);
    let service = LinkService::new(
        Arc::clone(&issuer) as _,
        policy(links_per_caller),
        trail(&sink),
        idempotency(),
    );
    Fixture {
        sink,
        issuer,
        service,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {}, 100)
}

#[tokio::test]
async fn a_creation_records_its_attempt_before_the_issuer_and_its_outcome_after() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();

    let created = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect("created");

    assert_eq!(created.document.id, seed_document().id);
    assert_eq!(
        created.passcode.as_ref().map(Passcode::expose),
        Some("123456")
    );
    assert_eq!(issuer.calls(), vec![vec![AuditAction::CreationAttempt]]);
    assert_eq!(
        outcomes(&sink),
        vec![
            (AuditAction::CreationAttempt, "attempt".to_owned()),
            (AuditAction::LinkCreated, "ok".to_owned()),
        ]
    );
    let created_event = &sink.events()[1];
    assert_eq!(
        created_event.link_id.as_deref(),
        Some(seed_document().id.as_str())
    );
    assert_eq!(created_event.upstream_status, Some(200));
}

#[tokio::test]
async fn no_link_leaves_without_its_outcome_record() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture_with(|issuer| issuer.break_trail_when_called = true, 100);

    let error = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("the link must not leave without its record");

    assert_eq!(error.code(), ErrorCode::AuditUnavailable);
    assert_eq!(issuer.calls().len(), 1, "the issuer made the link");
    assert_eq!(actions(&sink), vec![AuditAction::CreationAttempt]);
}

#[tokio::test]
async fn a_failing_trail_stops_a_creation_before_the_issuer_is_called() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();
    sink.set_failing(true);

    let error = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("no attempt record, no creation");

    assert_eq!(error.code(), ErrorCode::AuditUnavailable);
    assert!(issuer.calls().is_empty());
}

#[tokio::test]
async fn refusals_before_the_attempt_are_recorded_with_their_code() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();

    let anonymous = service
        .create(&caller(None), Ok(passcode_request()))
        .await
        .expect_err("no credentials");
    let basic = service
        .create(&caller(Some("Basic dXNlcjpwYXNz")), Ok(passcode_request()))
        .await
        .expect_err("not a bearer token");
    let bad_input = service
        .create(
            &bearer_caller(),
            Err(AppError::bad_user_input(
                "label must be at most 80 characters",
            )),
        )
        .await
        .expect_err("bad input");

    assert_eq!(anonymous.code(), ErrorCode::Unauthenticated);
    assert_eq!(basic.code(), ErrorCode::Unauthenticated);
    assert_eq!(bad_input.code(), ErrorCode::BadUserInput);
    assert!(issuer.calls().is_empty());
    assert_eq!(
        outcomes(&sink),
        vec![
            (AuditAction::CreationRefused, "UNAUTHENTICATED".to_owned()),
            (AuditAction::CreationRefused, "UNAUTHENTICATED".to_owned()),
            (AuditAction::CreationRefused, "BAD_USER_INPUT".to_owned()),
        ]
    );
}

#[tokio::test]
async fn credentials_are_checked_before_the_input() {
    let Fixture { service, .. } = fixture();

    let error = service
        .create(&caller(None), Err(AppError::bad_user_input("bad label")))
        .await
        .expect_err("refused");

    assert_eq!(error.code(), ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn a_refusal_whose_record_fails_keeps_its_own_code() {
    let Fixture { sink, service, .. } = fixture();
    sink.set_failing(true);

    let error = service
        .create(&caller(None), Ok(passcode_request()))
        .await
        .expect_err("refused");

    // Nothing was disclosed: the refusal's answer does not depend on its record.
    assert_eq!(error.code(), ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn an_issuer_failure_is_recorded_after_the_attempt_with_its_code() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture_with(
        |issuer| issuer.answer = Err(ErrorCode::UpstreamTimeout),
        100,
    );

    let error = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("upstream timeout");

    assert_eq!(error.code(), ErrorCode::UpstreamTimeout);
    assert_eq!(issuer.calls().len(), 1);
    assert_eq!(
        outcomes(&sink),
        vec![
            (AuditAction::CreationAttempt, "attempt".to_owned()),
            (AuditAction::CreationRefused, "UPSTREAM_TIMEOUT".to_owned()),
        ]
    );
    assert!(sink.events()[1].upstream_latency_ms.is_some());
}

#[tokio::test]
async fn the_modes_rules_refuse_before_the_quota_and_the_attempt() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture_with(
        |issuer| issuer.request_rule = Err(ErrorCode::NotSupportedInMode),
        1,
    );
    let not_shared_upstream = CreateLinkRequest {
        resources: vec![ResourceType::MedicationRequest],
        ..passcode_request()
    };

    let by_type = service
        .create(&bearer_caller(), Ok(not_shared_upstream))
        .await
        .expect_err("not a type this mode shares");
    let by_rule = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("the issuer's own rule");
    let again = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("the same rule, and still no quota spent");

    assert_eq!(by_type.code(), ErrorCode::BadUserInput);
    assert!(by_type.message().contains("MedicationRequest"));
    assert_eq!(by_rule.code(), ErrorCode::NotSupportedInMode);
    assert_eq!(
        again.code(),
        ErrorCode::NotSupportedInMode,
        "not RATE_LIMITED"
    );
    assert!(issuer.calls().is_empty());
    assert_eq!(
        actions(&sink),
        vec![AuditAction::CreationRefused; 3],
        "refused before any attempt"
    );
}

#[tokio::test]
async fn a_spent_quota_refuses_before_the_attempt() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture_with(|_| {}, 1);

    service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect("the first fits the quota");
    let error = service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect_err("the second does not");

    assert_eq!(error.code(), ErrorCode::RateLimited);
    assert_eq!(issuer.calls().len(), 1);
    assert_eq!(
        outcomes(&sink),
        vec![
            (AuditAction::CreationAttempt, "attempt".to_owned()),
            (AuditAction::LinkCreated, "ok".to_owned()),
            (AuditAction::CreationRefused, "RATE_LIMITED".to_owned()),
        ]
    );
}

#[tokio::test]
async fn the_caller_quota_is_keyed_by_the_token_not_the_header_spelling() {
    let Fixture { service, .. } = fixture_with(|_| {}, 1);

    service
        .create(
            &caller(Some(&format!("Bearer {TOKEN}"))),
            Ok(passcode_request()),
        )
        .await
        .expect("the first fits the quota");
    let error = service
        .create(
            &caller(Some(&format!("bearer   {TOKEN}"))),
            Ok(passcode_request()),
        )
        .await
        .expect_err("the same token, spelled otherwise");

    assert_eq!(error.code(), ErrorCode::RateLimited);
}

#[tokio::test]
async fn a_retry_with_its_idempotency_key_replays_the_first_answer_and_is_recorded() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();
    let retrying = Caller {
        idempotency_key: Some("retry-1".to_owned()),
        ..bearer_caller()
    };

    let first = service
        .create(&retrying, Ok(passcode_request()))
        .await
        .expect("created");
    let again = service
        .create(&retrying, Ok(passcode_request()))
        .await
        .expect("replayed");

    assert_eq!(issuer.calls().len(), 1, "one link, not two");
    assert_eq!(again.document.id, first.document.id);
    assert_eq!(
        again.passcode.as_ref().map(Passcode::expose),
        first.passcode.as_ref().map(Passcode::expose)
    );
    assert_eq!(
        outcomes(&sink),
        vec![
            (AuditAction::CreationAttempt, "attempt".to_owned()),
            (AuditAction::LinkCreated, "ok".to_owned()),
            (AuditAction::LinkCreated, "replayed".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused_before_the_attempt() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();
    let retrying = Caller {
        idempotency_key: Some("\n".to_owned()),
        ..bearer_caller()
    };

    let error = service
        .create(&retrying, Ok(passcode_request()))
        .await
        .expect_err("refused");

    assert_eq!(error.code(), ErrorCode::BadUserInput);
    assert!(issuer.calls().is_empty());
    assert_eq!(actions(&sink), vec![AuditAction::CreationRefused]);
}

#[tokio::test]
async fn events_carry_the_mode_address_and_actor_but_never_the_token() {
    let Fixture { sink, service, .. } = fixture();

    service
        .create(&bearer_caller(), Ok(passcode_request()))
        .await
        .expect("created");
    service
        .create(
            &caller(Some(&format!("BEARER {TOKEN}"))),
            Ok(passcode_request()),
        )
        .await
        .expect("created");

    let events = sink.events();
    let actor = events[0].actor.clone().expect("actor");
    assert_eq!(actor.len(), 32, "a keyed hash, in hex");
    for event in &events {
        assert_eq!(event.mode.as_deref(), Some("upstream"));
        assert_eq!(event.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(event.request_id.as_deref(), Some("request-1"));
        assert_eq!(
            event.actor.as_deref(),
            Some(actor.as_str()),
            "one actor per token"
        );
        let text = serde_json::to_string(event).expect("json");
        assert!(!text.contains(TOKEN), "{text}");
    }
}

#[tokio::test]
async fn a_refused_document_is_recorded_as_a_refused_creation() {
    let Fixture { sink, service, .. } = fixture();

    service.record_refused_document(&bearer_caller()).await;

    assert_eq!(
        outcomes(&sink),
        vec![(
            AuditAction::CreationRefused,
            "GRAPHQL_VALIDATION_FAILED".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_revocation_is_recorded_after_the_issuer_revokes() {
    let Fixture {
        sink,
        issuer,
        service,
    } = fixture();

    let revoked = service
        .revoke(&bearer_caller(), "link-1")
        .await
        .expect("revoked");

    assert_eq!(revoked.id, "link-1");
    assert_eq!(
        issuer.calls(),
        vec![vec![], vec![AuditAction::LinkRevoked]],
        "revoked with nothing recorded yet, read back once recorded"
    );
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::LinkRevoked);
    assert_eq!(events[0].link_id.as_deref(), Some("link-1"));
}

#[tokio::test]
async fn a_revocation_is_recorded_even_when_the_link_cannot_be_read_back() {
    let Fixture { sink, service, .. } = fixture_with(
        |issuer| issuer.answer = Err(ErrorCode::InternalServerError),
        100,
    );

    let error = service
        .revoke(&bearer_caller(), "link-1")
        .await
        .expect_err("the read back fails");

    assert_eq!(error.code(), ErrorCode::InternalServerError);
    assert_eq!(actions(&sink), vec![AuditAction::LinkRevoked]);
}

#[tokio::test]
async fn a_revocation_without_its_record_answers_audit_unavailable() {
    let Fixture { sink, service, .. } = fixture();
    sink.set_failing(true);

    let error = service
        .revoke(&bearer_caller(), "link-1")
        .await
        .expect_err("no record");

    assert_eq!(error.code(), ErrorCode::AuditUnavailable);
}

#[tokio::test]
async fn listing_and_revoking_need_a_bearer_token() {
    let Fixture {
        issuer, service, ..
    } = fixture();

    let listed = service.list(&caller(None)).await.expect_err("anonymous");
    let revoked = service
        .revoke(&caller(None), "link-1")
        .await
        .expect_err("anonymous");

    assert_eq!(listed.code(), ErrorCode::Unauthenticated);
    assert_eq!(revoked.code(), ErrorCode::Unauthenticated);
    assert!(issuer.calls().is_empty());
}

/// A real embedded issuer on SQLite, with the demo patient behind [`TOKEN`].
struct DataPlane {
    sink: Arc<MemoryAuditSink>,
    issuer: Arc<EmbeddedIssuer>,
    accesses: LinkAccesses,
    _dir: tempfile::TempDir,
}

async fn data_plane() -> DataPlane {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("links.db").display()
    );
    let store = SqlStore::connect(&url).await.expect("store");
    let patient = PatientRecord::demo();
    store.put_patient(&patient, 0).await.expect("patient");
    store
        .replace_tokens(
            "config",
            &[(keys().token_hmac(TOKEN), patient.patient_id().to_owned())],
            0,
        )
        .await
        .expect("token");
    let settings = EmbeddedSettings {
        public_url: "http://127.0.0.1:9".parse().expect("url"),
        identifier_system: "urn:test".to_owned(),
        passcode_link_validity: Duration::from_secs(300),
        direct_link_validity: Duration::from_secs(600),
        max_passcode_link_validity: Duration::from_secs(3600),
        max_direct_link_validity: Duration::from_secs(3600),
        max_concurrent_pdf_renders: 1,
        passcode_attempts: 5,
        location_ticket_lifetime: Duration::from_secs(60),
    };
    let issuer = Arc::new(EmbeddedIssuer::new(
        Arc::new(store),
        keys(),
        PasscodeHasher::new(keys().passcode_pepper, 1),
        settings,
    ));
    let sink = Arc::new(MemoryAuditSink::new());
    let accesses = LinkAccesses::new(Arc::clone(&issuer), trail(&sink));
    DataPlane {
        sink,
        issuer,
        accesses,
        _dir: dir,
    }
}

/// The manifest id of a link the embedded issuer made: the last segment of the payload's URL.
fn manifest_id(document: &DocumentReference) -> String {
    let url = document.health_link_url().expect("viewer url");
    let payload = url.split("shlink:/").nth(1).expect("shlink");
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("payload json");
    let manifest_url = payload["url"].as_str().expect("url");
    manifest_url.rsplit('/').next().expect("id").to_owned()
}

async fn direct_link(plane: &DataPlane) -> String {
    let request = CreateLinkRequest {
        label: None,
        resources: Vec::new(),
        passcode: None,
        mode: LinkMode::Direct,
        expires_in: None,
        rendered_summary: false,
        story: None,
    };
    let document = plane
        .issuer
        .create_health_link(&bearer_caller(), &request)
        .await
        .expect("direct link");
    manifest_id(&document)
}

fn context() -> AccessContext {
    AccessContext {
        request_id: Some("viewer-request".to_owned()),
        client_ip: Some("198.51.100.4".to_owned()),
        user_agent: Some("a viewer".to_owned()),
    }
}

async fn history(plane: &DataPlane) -> Vec<(String, String)> {
    let links = plane
        .issuer
        .health_links(&bearer_caller())
        .await
        .expect("links");
    links
        .iter()
        .flat_map(|link| &link.accesses)
        .map(|access| {
            (
                access.action.as_str().to_owned(),
                access.outcome.as_str().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_direct_file_is_given_only_after_its_audit_record_and_history() {
    let plane = data_plane().await;
    let manifest_id = direct_link(&plane).await;

    let file = plane
        .accesses
        .open_direct(&manifest_id, "Front desk", &context())
        .await
        .expect("answered");

    assert!(file.is_some_and(|jwe| jwe.split('.').count() == 5));
    let events = plane.sink.events();
    assert_eq!(events.len(), 1);
    let event: &AuditEvent = &events[0];
    assert_eq!(event.action, AuditAction::DirectFetched);
    assert_eq!(event.outcome, "ok");
    assert_eq!(event.recipient.as_deref(), Some("Front desk"));
    assert_eq!(event.user_agent.as_deref(), Some("a viewer"));
    assert_eq!(event.mode.as_deref(), Some("embedded"));
    assert_eq!(
        history(&plane).await,
        vec![("direct".to_owned(), "ok".to_owned())]
    );
}

#[tokio::test]
async fn a_failing_trail_withholds_the_file_and_leaves_no_history() {
    let plane = data_plane().await;
    let manifest_id = direct_link(&plane).await;
    plane.sink.set_failing(true);

    let error = plane
        .accesses
        .open_direct(&manifest_id, "Front desk", &context())
        .await
        .expect_err("no record, no file");

    assert_eq!(error.code(), ErrorCode::AuditUnavailable);
    assert!(history(&plane).await.is_empty());
}

#[tokio::test]
async fn a_manifest_request_for_a_direct_link_is_recorded_as_inactive() {
    let plane = data_plane().await;
    let manifest_id = direct_link(&plane).await;

    let answer = plane
        .accesses
        .open_manifest(
            &manifest_id,
            ManifestRequest {
                recipient: "Front desk".to_owned(),
                passcode: None,
                embedded_length_max: None,
            },
            &context(),
        )
        .await
        .expect("answered");

    assert_eq!(answer, ManifestAnswer::NotActive);
    assert_eq!(
        outcomes(&plane.sink),
        vec![(AuditAction::ManifestRequested, "inactive".to_owned())]
    );
    assert_eq!(
        history(&plane).await,
        vec![("manifest".to_owned(), "inactive".to_owned())]
    );
}

#[tokio::test]
async fn an_unknown_link_or_ticket_leaves_nothing_to_record() {
    let plane = data_plane().await;
    let unknown = "A".repeat(43);

    let direct = plane
        .accesses
        .open_direct(&unknown, "Front desk", &context())
        .await
        .expect("answered");
    let file = plane
        .accesses
        .open_file("not-a-ticket", &context())
        .await
        .expect("answered");

    assert_eq!(direct, None);
    assert_eq!(file, None);
    assert!(plane.sink.events().is_empty());
}
