//! They need PostgreSQL: `#[ignore]`d with that reason, so a plain `cargo test` reports them as
//! ignored; run (`--include-ignored`) without `SHL_GATEWAY_TEST_DATABASE_URL`, or with an
//! unreachable database, they fail. Each test writes its own random chain and deletes it
//! afterwards.

use std::sync::Arc;

use super::*;
use crate::audit::AuditAction;
use crate::audit::verify::FailureKind;

const KEY: [u8; 32] = [0x3c; 32];

fn database_url() -> String {
    std::env::var("SHL_GATEWAY_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("this test needs SHL_GATEWAY_TEST_DATABASE_URL")
}

fn chain() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

fn options() -> PostgresSinkOptions {
    PostgresSinkOptions {
        checkpoint_every: 0,
        ..PostgresSinkOptions::default()
    }
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        link_id: Some(format!("link-{i}")),
        recipient: Some(format!("Clinic {i}")),
        ..AuditEvent::new(AuditAction::FileFetched, "ok")
    }
}

async fn connect(url: &str, chain: &str) -> PostgresAuditSink {
    PostgresAuditSink::connect_with(url, KEY, chain.to_owned(), options())
        .await
        .expect("the test database is reachable")
}

async fn admin(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("the test database is reachable")
}

async fn execute(url: &str, sql: &str, chain: &str) {
    let pool = admin(url).await;
    sqlx::query(sql)
        .bind(chain)
        .execute(&pool)
        .await
        .expect("statement runs");
    pool.close().await;
}

async fn cleanup(url: &str, chain: &str) {
    execute(url, "DELETE FROM audit_records WHERE chain = $1", chain).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn a_chain_verifies_and_reconnecting_continues_it() {
    let url = database_url();
    let chain = chain();
    let sink = connect(&url, &chain).await;
    assert!(sink.is_ready().await);
    for i in 0..5 {
        sink.record(event(i)).await.expect("records");
    }
    let first_head = sink.head().expect("a head");
    drop(sink);

    let sink = connect(&url, &chain).await;
    assert_eq!(sink.head(), Some(first_head.clone()));
    for i in 5..8 {
        sink.record(event(i)).await.expect("records");
    }
    let head = sink.checkpoint().await.expect("checkpoint");
    assert_eq!(head.seq, 8);

    let report = verify_postgres(&url, &KEY, &chain).await.expect("verifies");
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.records, report.checkpoints), (9, 1));
    let report = verify_postgres_against_head(&url, &KEY, &chain, &head.to_string())
        .await
        .expect("verifies");
    assert!(report.is_ok(), "{report}");
    let report = verify_postgres(&url, &[0; 32], &chain).await.expect("runs");
    assert_eq!(
        report.failure.map(|f| (f.seq, f.kind)),
        Some((Some(0), FailureKind::BadMac))
    );
    cleanup(&url, &chain).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn closing_commits_what_was_queued_closes_the_pool_and_refuses_later_records() {
    let url = database_url();
    let chain = chain();
    let sink = Arc::new(connect(&url, &chain).await);
    // Queued while close comes: each is committed before the pool closes, or fails closed.
    let queued: Vec<_> = (0..4)
        .map(|i| {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move { sink.record(event(i)).await })
        })
        .collect();
    tokio::task::yield_now().await;
    sink.close().await;
    let mut recorded = 0;
    for record in queued {
        match record.await.expect("task") {
            Ok(()) => recorded += 1,
            Err(error) => assert!(matches!(error, AuditError::Closed), "{error}"),
        }
    }
    assert!(sink.pool.is_closed());
    assert!(!sink.is_ready().await);
    assert!(matches!(
        sink.record(event(9)).await,
        Err(AuditError::Closed)
    ));

    let report = verify_postgres(&url, &KEY, &chain).await.expect("verifies");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, recorded);
    cleanup(&url, &chain).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn edited_deleted_and_truncated_rows_are_detected() {
    let url = database_url();
    let chain = chain();
    let sink = connect(&url, &chain).await;
    for i in 0..6 {
        sink.record(event(i)).await.expect("records");
    }
    let head = sink.head().expect("a head").to_string();
    drop(sink);

    execute(
        &url,
        "UPDATE audit_records SET record = replace(record, 'Clinic 2', 'Clinic X') \
         WHERE chain = $1 AND seq = 2",
        &chain,
    )
    .await;
    let report = verify_postgres(&url, &KEY, &chain).await.expect("runs");
    let failure = report.failure.expect("edit found");
    assert_eq!((failure.seq, failure.kind), (Some(2), FailureKind::BadMac));

    execute(
        &url,
        "DELETE FROM audit_records WHERE chain = $1 AND seq = 2",
        &chain,
    )
    .await;
    let report = verify_postgres(&url, &KEY, &chain).await.expect("runs");
    let failure = report.failure.expect("gap found");
    assert_eq!((failure.seq, failure.kind), (Some(3), FailureKind::SeqGap));

    execute(
        &url,
        "DELETE FROM audit_records WHERE chain = $1 AND seq >= 2",
        &chain,
    )
    .await;
    let report = verify_postgres(&url, &KEY, &chain).await.expect("runs");
    assert!(report.is_ok(), "{report}");
    let report = verify_postgres_against_head(&url, &KEY, &chain, &head)
        .await
        .expect("runs");
    assert_eq!(report.failure.map(|f| f.kind), Some(FailureKind::Truncated));

    execute(
        &url,
        "UPDATE audit_records SET record = replace(record, 'Clinic 1', 'Clinic Y') \
         WHERE chain = $1 AND seq = 1",
        &chain,
    )
    .await;
    // Startup checks only the tail it builds on; this edit is now the tail.
    let reopened = PostgresAuditSink::connect_with(&url, KEY, chain.clone(), options()).await;
    assert!(
        matches!(reopened, Err(AuditError::Corrupt { .. })),
        "{reopened:?}"
    );
    cleanup(&url, &chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn concurrent_records_are_group_committed() {
    let url = database_url();
    let chain = chain();
    let sink = Arc::new(connect(&url, &chain).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let sink = Arc::clone(&sink);
        tasks.spawn(async move { sink.record(event(i)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .expect("task completes")
            .expect("record is committed");
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 200);
    assert!(stats.batches < 200, "{stats:?}");
    let report = verify_postgres(&url, &KEY, &chain).await.expect("verifies");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 200);
    cleanup(&url, &chain).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn a_conflicting_writer_fails_closed_then_resyncs() {
    let url = database_url();
    let chain = chain();
    let first = connect(&url, &chain).await;
    let second = connect(&url, &chain).await;
    first.record(event(0)).await.expect("records");
    // The second writer still believes seq 0 is free: its insert conflicts, fails closed,
    // and it continues from the table's head.
    assert!(second.record(event(1)).await.is_err());
    second.record(event(2)).await.expect("records after resync");
    assert_eq!(second.head().map(|h| h.seq), Some(1));
    let report = verify_postgres(&url, &KEY, &chain).await.expect("verifies");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 2);
    cleanup(&url, &chain).await;
}

// Needs no PostgreSQL at all: it always runs.
#[tokio::test]
async fn an_unreachable_database_fails_to_connect_promptly() {
    let options = PostgresSinkOptions {
        timeout: std::time::Duration::from_millis(500),
        ..options()
    };
    // Port 9 (discard) on loopback: nothing listens there.
    let result = PostgresAuditSink::connect_with(
        "postgres://postgres@127.0.0.1:9/test",
        KEY,
        chain(),
        options,
    )
    .await;
    assert!(result.is_err());
}
