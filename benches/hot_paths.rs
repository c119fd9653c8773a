//! The gateway's hot paths besides QR rendering: passcodes, the IPS document, JWE, and a whole
//! GraphQL request (parse, validate, execute) against an in-process issuer, so the gateway's own
//! cost is measured without a network hop.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use shl_gateway::audit::{AuditTrail, MemoryAuditSink};
use shl_gateway::crypto::Keys;
use shl_gateway::crypto::jwe::{self, ShlKey};
use shl_gateway::error::AppError;
use shl_gateway::graphql::{SchemaOptions, build_executor};
use shl_gateway::idempotency::{Idempotency, InProcessStore};
use shl_gateway::issuer::fhir::PatientRecord;
use shl_gateway::issuer::ips::{IpsOptions, build_ips};
use shl_gateway::issuer::{
    BearerToken, Caller, CreateLinkRequest, DocumentReference, Issuer, IssuerMode, ResourceType,
    TraceContext,
};
use shl_gateway::links::LinkService;
use shl_gateway::passcode::{Passcode, PasscodeHasher};
use shl_gateway::ratelimit::{InProcessQuotas, Quota, QuotaSpec, QuotaSpecs, RatePolicy};

const SEED_RESPONSE: &str = include_str!("../tests/fixtures/seed-response.json");
const SEED_MUTATION: &str = include_str!("../tests/fixtures/seed-mutation.graphql");
const SEED_VARIABLES: &str = include_str!("../tests/fixtures/seed-variables.json");

/// Answers every creation with b.well's example, at once.
#[derive(Debug)]
struct InstantIssuer(DocumentReference);

#[async_trait]
impl Issuer for InstantIssuer {
    fn mode(&self) -> IssuerMode {
        IssuerMode::Upstream
    }

    fn shareable_resource_types(&self) -> &'static [ResourceType] {
        &ResourceType::UPSTREAM
    }

    async fn create_health_link(
        &self,
        _: &Caller,
        _: &CreateLinkRequest,
    ) -> Result<DocumentReference, AppError> {
        Ok(self.0.clone())
    }
}

fn bench_passcodes(c: &mut Criterion) {
    let mut group = c.benchmark_group("passcode");
    group.bench_function("generate", |b| b.iter(Passcode::generate));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let keys = Keys::derive(&secrecy::SecretBox::new(Box::new(vec![7u8; 32])));
    let hasher = PasscodeHasher::new(keys.passcode_pepper, 1);
    let passcode = Passcode::parse("743730").expect("valid");
    // argon2id at 19 MiB takes tens of milliseconds on purpose: few samples suffice.
    group.sample_size(10);
    group.bench_function("hash_argon2id_19MiB_t2", |b| {
        b.iter(|| runtime.block_on(hasher.hash(black_box(&passcode))))
    });
    group.finish();
}

fn bench_documents(c: &mut Criterion) {
    let record = PatientRecord::demo();
    let options = IpsOptions {
        selected: &[],
        bundle_id: "6f1c3b1e-2d4a-4c55-9a43-6d1c1a1c0e00",
        timestamp: "2025-12-19T19:42:02.887Z",
        title: "Patient summary",
    };
    let bundle = build_ips(&record, &options).to_string();
    let key = ShlKey::generate().expect("rng");
    let encrypted =
        jwe::encrypt(&key, jwe::ContentType::FhirJson, bundle.as_bytes()).expect("encrypts");

    let mut group = c.benchmark_group("document");
    group.bench_function("ips_build_demo_patient", |b| {
        b.iter(|| build_ips(black_box(&record), black_box(&options)))
    });
    group.bench_function("jwe_encrypt_demo_ips", |b| {
        b.iter(|| {
            jwe::encrypt(
                black_box(&key),
                jwe::ContentType::FhirJson,
                black_box(bundle.as_bytes()),
            )
        })
    });
    group.bench_function("jwe_decrypt_demo_ips", |b| {
        b.iter(|| jwe::decrypt(black_box(&key), black_box(&encrypted)))
    });
    group.finish();
}

fn bench_graphql(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let answer: serde_json::Value = serde_json::from_str(SEED_RESPONSE).expect("json");
    let document: DocumentReference =
        serde_json::from_value(answer["data"]["createHealthLink"].clone()).expect("seed answer");
    let links = LinkService::new(
        Arc::new(InstantIssuer(document)),
        generous_policy(),
        // In memory: the benchmark measures the gateway, not a disk's fsync.
        AuditTrail::new(Arc::new(MemoryAuditSink::new()), keys().audit_actor),
        Arc::new(Idempotency::new(
            Box::new(InProcessStore::default()),
            keys().idempotency,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(1),
        )),
    );
    let executor = build_executor(links, &SchemaOptions::default());
    let variables: serde_json::Value = serde_json::from_str(SEED_VARIABLES).expect("json");
    let caller = Caller {
        bearer: BearerToken::from_authorization("Bearer bench"),
        request_id: "bench".to_owned(),
        trace: TraceContext::default(),
        client_ip: Some("192.0.2.1".parse().expect("ip")),
        idempotency_key: None,
    };

    // The benchmark must measure a created link, not a refusal.
    let check = runtime.block_on(
        executor.execute(
            async_graphql::Request::new(SEED_MUTATION)
                .variables(async_graphql::Variables::from_json(variables.clone())),
            caller.clone(),
        ),
    );
    assert!(check.errors.is_empty(), "{:?}", check.errors);
    let mut group = c.benchmark_group("graphql");
    // The executor keeps parsed documents, so after the first iteration this is validation and
    // execution; parsing alone is measured next.
    group.bench_function("seed_mutation_cached_document_validate_execute", |b| {
        b.iter(|| {
            let request = async_graphql::Request::new(SEED_MUTATION)
                .variables(async_graphql::Variables::from_json(variables.clone()));
            runtime.block_on(executor.execute(request, caller.clone()))
        })
    });
    group.bench_function("seed_mutation_parse_only", |b| {
        b.iter(|| async_graphql::parser::parse_query(black_box(SEED_MUTATION)))
    });
    group.bench_function("shareable_resource_types", |b| {
        b.iter(|| {
            runtime.block_on(executor.execute(
                async_graphql::Request::new("{ shareableResourceTypes }"),
                caller.clone(),
            ))
        })
    });
    group.finish();
}

fn keys() -> Keys {
    Keys::derive(&secrecy::SecretBox::new(Box::new(vec![7u8; 32])))
}

/// Quotas so large that the benchmark measures the check, never a refusal.
fn generous_policy() -> RatePolicy {
    let keys = Keys::derive(&secrecy::SecretBox::new(Box::new(vec![7u8; 32])));
    // A rate the stores accept (at most one request per microsecond) that no run can spend.
    let spec = QuotaSpec {
        burst: 1_000_000_000,
        period: std::time::Duration::from_secs(3600),
    };
    RatePolicy::new(
        Arc::new(InProcessQuotas::new(100_000)),
        keys.rate_limit,
        QuotaSpecs {
            links_per_caller: spec,
            links_per_ip: spec,
            http_per_ip: spec,
            shl_per_ip: spec,
            shl_per_link: spec,
        },
    )
}

fn bench_rate_limit(c: &mut Criterion) {
    let quotas = InProcessQuotas::new(100_000);
    let quota = Quota::new("bench", 1_000_000_000, std::time::Duration::from_secs(3600));
    assert!(
        quotas
            .check_now(&quota, "warm-up", 1)
            .expect("a valid quota")
            .is_allowed()
    );
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("in_process_check_one_key", |b| {
        b.iter(|| quotas.check_now(&quota, black_box("192.0.2.1"), 1))
    });
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let mut next = 0usize;
    group.bench_function("in_process_check_10k_keys", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            quotas.check_now(&quota, black_box(&keys[next]), 1)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_passcodes,
    bench_documents,
    bench_graphql,
    bench_rate_limit
);
criterion_main!(benches);
