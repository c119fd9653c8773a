use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;
use crate::audit::chain::{ChainState, GENESIS};
use crate::audit::verify::{FailureKind, VerifyReport};
use crate::audit::{verify_file, verify_file_against_head, verify_files};

const KEY: [u8; 32] = [0x5a; 32];

fn options() -> FileSinkOptions {
    FileSinkOptions {
        checkpoint_every: 0,
        ..FileSinkOptions::default()
    }
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        link_id: Some(format!("link-{i}")),
        recipient: Some(format!("Clinic {i}")),
        client_ip: Some("203.0.113.9".into()),
        ..AuditEvent::new(AuditAction::ManifestRequested, "ok")
    }
}

async fn open(path: &Path) -> FileAuditSink {
    FileAuditSink::open_with(path, KEY, "gw-0".into(), options()).expect("opens")
}

async fn write(path: &Path, count: usize) -> Option<Head> {
    let sink = open(path).await;
    for i in 0..count {
        sink.record(event(i)).await.expect("records");
    }
    let head = sink.head();
    sink.close().await;
    head
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("reads")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("writes");
}

fn record_of(line: &str) -> Record {
    Record::parse_unverified(line).expect("parses").0
}

/// Asserts the report names `line` as the first bad record, for `kind`.
fn assert_fails_at(report: &VerifyReport, line: u64, kind: FailureKind) {
    let failure = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {report}"));
    assert_eq!((failure.line, failure.kind), (Some(line), kind), "{report}");
}

#[tokio::test]
async fn a_chain_of_records_verifies_with_periodic_checkpoints() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = FileAuditSink::open_with(
        &path,
        KEY,
        "gw-0".into(),
        FileSinkOptions {
            checkpoint_every: 5,
            ..FileSinkOptions::default()
        },
    )
    .expect("opens");
    for i in 0..20 {
        sink.record(event(i)).await.expect("records");
    }
    let head = sink.head().expect("a head");
    sink.close().await;

    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.records, report.checkpoints), (24, 4));
    assert_eq!(report.head, Some(head.clone()));
    assert_eq!(head.seq, 23);

    let lines = read_lines(&path);
    let first = record_of(&lines[0]);
    assert_eq!((first.seq, first.prev.as_str()), (0, GENESIS));
    assert_eq!(first.gateway_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(record_of(&lines[5]).action, AuditAction::Checkpoint);
    assert_eq!(record_of(&lines[5]).outcome, "periodic");
}

#[tokio::test]
async fn tampering_is_detected_at_the_first_bad_record() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write(&path, 10).await;
    let good = read_lines(&path);
    let tampered = dir.path().join("tampered.jsonl");
    let check = |lines: Vec<String>| {
        write_lines(&tampered, &lines);
        verify_file(&tampered, &KEY)
    };

    // Edit a field: the MAC no longer matches.
    let mut lines = good.clone();
    lines[4] = lines[4].replace("Clinic 4", "Clinic X");
    assert_fails_at(&check(lines), 5, FailureKind::BadMac);

    // Delete a record: the next one is out of sequence.
    let mut lines = good.clone();
    lines.remove(4);
    let report = check(lines);
    assert_fails_at(&report, 5, FailureKind::SeqGap);
    assert_eq!(report.records, 4);
    assert!(
        report.to_string().contains("expected seq 4, found 5"),
        "{report}"
    );

    // Swap two records.
    let mut lines = good.clone();
    lines.swap(6, 7);
    assert_fails_at(&check(lines), 7, FailureKind::SeqGap);

    // Insert a record forged without the key, correctly linked otherwise.
    let mut state = ChainState::after(&Head {
        seq: 3,
        mac: Record::parse_unverified(&good[3]).expect("parses").1,
    });
    let forger = Sealer::new(&AuditKey::new([1; 32]), "gw-0".into()).expect("sealer");
    let forged = forger
        .seal(&mut state, event(99), None)
        .expect("seals")
        .line;
    let mut lines = good.clone();
    lines.insert(4, forged);
    assert_fails_at(&check(lines), 5, FailureKind::BadMac);

    // Replay a genuine record elsewhere.
    let mut lines = good.clone();
    lines.insert(8, good[2].clone());
    assert_fails_at(&check(lines), 9, FailureKind::SeqGap);

    // A genuine record of another chain (same key), spliced in.
    let other = Sealer::new(&AuditKey::new(KEY), "gw-1".into()).expect("sealer");
    let mut state = ChainState::genesis();
    let foreign = other.seal(&mut state, event(0), None).expect("seals").line;
    let mut lines = good.clone();
    lines.insert(3, foreign);
    assert_fails_at(&check(lines), 4, FailureKind::WrongChain);

    // Delete the first record.
    let mut lines = good.clone();
    lines.remove(0);
    assert_fails_at(&check(lines), 1, FailureKind::MissingStart);

    // Garbage line.
    let mut lines = good.clone();
    lines[2] = "not a record".into();
    assert_fails_at(&check(lines), 3, FailureKind::Unparsable);

    // Another key.
    assert_fails_at(&verify_file(&path, &[9; 32]), 1, FailureKind::BadMac);

    // The untouched file still verifies.
    assert!(verify_file(&path, &KEY).is_ok());
}

#[tokio::test]
async fn truncation_is_detected_against_an_exported_head() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let head = write(&path, 10).await.expect("a head");
    let exported = head.to_string();
    assert!(verify_file_against_head(&path, &KEY, &exported).is_ok());

    let lines = read_lines(&path);
    write_lines(&path, &lines[..7]);
    // On its own the shorter chain is valid: that is why heads are exported.
    assert!(verify_file(&path, &KEY).is_ok());
    let report = verify_file_against_head(&path, &KEY, &exported);
    let failure = report.failure.as_ref().expect("truncation found");
    assert_eq!(failure.kind, FailureKind::Truncated);
    assert_eq!(failure.seq, Some(9));
    assert!(failure.detail.contains("ends at seq 6"), "{report}");

    // An older head is still reached; a head with another MAC means a rewritten chain.
    let older = format!("6:{}", record_mac(&lines[6]));
    assert!(verify_file_against_head(&path, &KEY, &older).is_ok());
    let rewritten = format!("6:{}", "ab".repeat(32));
    let report = verify_file_against_head(&path, &KEY, &rewritten);
    assert_fails_at(&report, 7, FailureKind::HeadMismatch);
    let report = verify_file_against_head(&path, &KEY, "nonsense");
    assert_eq!(
        report.failure.map(|f| f.kind),
        Some(FailureKind::InvalidHead)
    );
}

fn record_mac(line: &str) -> String {
    Record::parse_unverified(line).expect("parses").1
}

#[tokio::test]
async fn a_torn_last_line_is_cut_and_a_recovered_record_follows() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write(&path, 5).await;
    let lines = read_lines(&path);
    let torn = &lines[4][..40];
    let mut file = OpenOptions::new().append(true).open(&path).expect("opens");
    file.write_all(torn.as_bytes()).expect("writes");
    drop(file);
    assert_fails_at(&verify_file(&path, &KEY), 6, FailureKind::Torn);

    let sink = open(&path).await;
    assert_eq!(sink.head().map(|h| h.seq), Some(5));
    sink.record(event(5)).await.expect("records");
    sink.close().await;

    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 7);
    let recovered = record_of(&read_lines(&path)[5]);
    assert_eq!(recovered.action, AuditAction::Recovered);
    let note = recovered.note.expect("a note");
    assert!(
        note.starts_with("cut 40 bytes of a torn record after seq 4 (sha256 "),
        "{note}"
    );
}

#[tokio::test]
async fn an_unparsable_last_line_is_cut_too() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write(&path, 3).await;
    let mut lines = read_lines(&path);
    lines.push("\0\0\0\0garbage".into());
    write_lines(&path, &lines);

    let sink = open(&path).await;
    assert_eq!(sink.head().map(|h| h.seq), Some(3));
    sink.close().await;
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        record_of(&read_lines(&path)[3]).action,
        AuditAction::Recovered
    );

    // A torn first write leaves a file whose chain starts over at seq 0.
    let fresh = dir.path().join("fresh.jsonl");
    fs::write(&fresh, b"{\"seq\":0,\"ti").expect("writes");
    let sink = open(&fresh).await;
    assert_eq!(sink.head().map(|h| h.seq), Some(0));
    sink.close().await;
    let report = verify_file(&fresh, &KEY);
    assert!(report.is_ok(), "{report}");

    // A file of something else entirely is refused, not cut.
    let foreign = dir.path().join("foreign.log");
    fs::write(&foreign, b"2025-12-19 started\n").expect("writes");
    let refused = FileAuditSink::open_with(&foreign, KEY, "gw-0".into(), options());
    assert!(
        matches!(refused, Err(AuditError::Corrupt { .. })),
        "{refused:?}"
    );
    assert_eq!(fs::read(&foreign).expect("reads"), b"2025-12-19 started\n");
}

#[tokio::test]
async fn reopening_continues_seq_and_prev() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let first = write(&path, 3).await.expect("a head");
    let second = write(&path, 3).await.expect("a head");
    assert_eq!((first.seq, second.seq), (2, 5));
    let lines = read_lines(&path);
    assert_eq!(record_of(&lines[3]).prev, first.mac);
    assert_eq!(record_of(&lines[3]).seq, 3);
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 6);
}

#[tokio::test]
async fn a_file_that_fails_its_mac_or_belongs_elsewhere_is_not_continued() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write(&path, 3).await;

    let wrong_key = FileAuditSink::open_with(&path, [1; 32], "gw-0".into(), options());
    assert!(
        matches!(wrong_key, Err(AuditError::Corrupt { .. })),
        "{wrong_key:?}"
    );
    let other_chain = FileAuditSink::open_with(&path, KEY, "gw-1".into(), options());
    assert!(
        matches!(other_chain, Err(AuditError::ChainMismatch { .. })),
        "{other_chain:?}"
    );

    let mut lines = read_lines(&path);
    lines[2] = lines[2].replace("Clinic 2", "Clinic Z");
    write_lines(&path, &lines);
    let edited = FileAuditSink::open_with(&path, KEY, "gw-0".into(), options());
    assert!(
        matches!(edited, Err(AuditError::Corrupt { .. })),
        "{edited:?}"
    );
}

#[tokio::test]
async fn a_second_writer_is_locked_out() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = open(&path).await;
    let second = FileAuditSink::open_with(&path, KEY, "gw-0".into(), options());
    assert!(matches!(second, Err(AuditError::Locked(_))), "{second:?}");
    sink.close().await;
    open(&path).await.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_are_group_committed() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    // A disk whose fsync takes at least 2 ms (a fast SSD takes about that; tmpfs nothing), so
    // the batching shows whatever filesystem the test runs on.
    let hooks = Hooks {
        stall: Some(Duration::from_millis(2)),
        ..Hooks::default()
    };
    let sink = FileAuditSink::open_inner(&path, KEY.into(), "gw-0".into(), options(), hooks)
        .expect("opens");
    let sink = Arc::new(sink);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let sink = Arc::clone(&sink);
        tasks.spawn(async move { sink.record(event(i)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task completes").expect("record is durable");
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 200);
    assert!(
        stats.batches < 200,
        "expected fewer fsyncs than records, got {stats:?}"
    );

    let mut seqs: Vec<u64> = read_lines(&path).iter().map(|l| record_of(l).seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    let mut links: Vec<String> = read_lines(&path)
        .iter()
        .map(|l| record_of(l).link_id.unwrap_or_default())
        .collect();
    links.sort();
    links.dedup();
    assert_eq!(links.len(), 200, "every event written once");
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
}

#[tokio::test]
async fn an_attempt_is_written_at_once_and_synced_by_its_outcome() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = open(&path).await;
    for i in 0..3 {
        sink.record_attempt(event(2 * i)).await.expect("written");
        // On its own line in the file before the outcome is asked for.
        assert_eq!(read_lines(&path).len(), 2 * i + 1);
        sink.record(event(2 * i + 1)).await.expect("durable");
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 6);
    assert_eq!(stats.batches, 6);
    assert_eq!(
        stats.syncs, 3,
        "one fdatasync per outcome, none per attempt: {stats:?}"
    );
    // An attempt written last is synced when the writer stops; the chain is whole.
    sink.record_attempt(event(6)).await.expect("written");
    sink.close().await;
    assert_eq!(read_lines(&path).len(), 7);
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
}

#[tokio::test]
async fn closing_makes_everything_durable_releases_the_file_and_refuses_later_records() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = open(&path).await;
    sink.record(event(0)).await.expect("durable");
    let synced = sink.head().expect("a head");
    // Written but not synced, as a request's last attempt may be when shutdown comes.
    sink.record_attempt(event(1)).await.expect("written");
    assert_eq!(sink.head(), Some(synced.clone()), "not durable yet");

    let trail: &dyn AuditSink = &sink;
    trail.close().await;
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    let head = sink.head().expect("a head");
    assert_eq!(head.seq, 1, "the attempt was synced at close: {head}");
    let report = verify_file_against_head(&path, &KEY, &head.to_string());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 2);

    // Closed: every later record fails at once, and the sink is not ready.
    assert!(matches!(
        sink.record(event(2)).await,
        Err(AuditError::Closed)
    ));
    assert!(matches!(
        sink.record_attempt(event(2)).await,
        Err(AuditError::Closed)
    ));
    assert!(matches!(sink.checkpoint().await, Err(AuditError::Closed)));
    assert!(!sink.is_ready().await);
    assert_eq!(read_lines(&path), lines, "nothing written after close");
    trail.close().await;

    // The writer has exited and released its lock while the closed sink still exists: a new
    // one opens the file at once and continues the chain.
    let reopened = open(&path).await;
    reopened.record(event(3)).await.expect("durable");
    assert_eq!(reopened.head().expect("a head").seq, 2);
    reopened.close().await;
    drop(sink);
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 3);
}

#[tokio::test]
async fn the_head_moves_only_with_a_sync_and_a_checkpoint_is_always_synced() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let options = FileSinkOptions {
        checkpoint_every: 2,
        ..FileSinkOptions::default()
    };
    let sink = FileAuditSink::open_with(&path, KEY, "gw-0".into(), options).expect("opens");
    sink.record_attempt(event(0)).await.expect("written");
    assert_eq!(
        sink.head(),
        None,
        "an unsynced attempt is not the durable head"
    );
    assert_eq!(sink.stats().syncs, 0);
    // The second event brings a periodic checkpoint into an attempts-only batch: the checkpoint
    // is logged as durable, so that batch is synced and the head moves to it.
    sink.record_attempt(event(1)).await.expect("written");
    let stats = sink.stats();
    assert_eq!(stats.records, 3, "two attempts and a checkpoint: {stats:?}");
    assert_eq!(stats.syncs, 1);
    let head = sink.head().expect("a durable head");
    assert_eq!(head.seq, 2);
    sink.close().await;
    let report = verify_file_against_head(&path, &KEY, &head.to_string());
    assert!(report.is_ok(), "{report}");
}

/// A sink whose every `fdatasync` fails while the returned switch is on.
fn open_with_failing_sync(path: &Path) -> (FileAuditSink, Arc<std::sync::atomic::AtomicBool>) {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hooks = Hooks {
        fail_sync: Some(Arc::clone(&fail)),
        ..Hooks::default()
    };
    let sink = FileAuditSink::open_inner(path, KEY.into(), "gw-0".into(), options(), hooks)
        .expect("opens");
    (sink, fail)
}

#[tokio::test]
async fn a_failed_sync_with_attempts_pending_stops_the_sink() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (sink, fail) = open_with_failing_sync(&path);
    sink.record(event(0)).await.expect("durable");
    sink.record_attempt(event(1)).await.expect("written");
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        sink.record(event(2)).await.is_err(),
        "the outcome's sync failed"
    );
    // The attempt's durability can no longer be proven: nothing more is accepted, even once
    // the disk answers again.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        sink.record(event(3)).await,
        Err(AuditError::Unavailable(_))
    ));
    assert!(!sink.is_ready().await);
}

#[tokio::test]
async fn a_failed_sync_without_pending_attempts_is_rolled_back_and_recovers() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (sink, fail) = open_with_failing_sync(&path);
    sink.record(event(0)).await.expect("durable");
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sink.record(event(1)).await.is_err());
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    sink.record(event(2)).await.expect("the sink goes on");
    sink.close().await;
    assert_eq!(read_lines(&path).len(), 2, "the failed record was cut back");
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
}

#[tokio::test]
async fn a_failed_write_with_attempts_pending_is_rolled_back_and_keeps_them() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hooks = Hooks {
        fail_write: Some(Arc::clone(&fail)),
        ..Hooks::default()
    };
    let sink = FileAuditSink::open_inner(&path, KEY.into(), "gw-0".into(), options(), hooks)
        .expect("opens");
    sink.record_attempt(event(0)).await.expect("written");
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    // ENOSPC at `write` consumed no writeback error: the roll-back's sync proves the attempt.
    assert!(matches!(
        sink.record(event(1)).await,
        Err(AuditError::Io(_))
    ));
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    sink.record(event(2)).await.expect("the sink goes on");
    sink.close().await;
    let links: Vec<_> = read_lines(&path)
        .iter()
        .map(|line| record_of(line).link_id)
        .collect();
    assert_eq!(
        links,
        [Some("link-0".to_owned()), Some("link-2".to_owned())]
    );
    let report = verify_file(&path, &KEY);
    assert!(report.is_ok(), "{report}");
}

#[tokio::test]
async fn after_a_failed_batch_readiness_probes_the_disk_and_recovers_without_traffic() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (sink, fail) = open_with_failing_sync(&path);
    sink.record(event(0)).await.expect("durable");
    assert!(sink.is_ready().await);

    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sink.record(event(1)).await.is_err());
    assert!(!sink.is_ready().await, "the failed batch is seen at once");

    // The disk recovers; no record is written, and readiness still turns back on by itself.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sink.is_ready().await {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["audit.jsonl"], "the probe file is removed");
    sink.record(event(2)).await.expect("records again");
    sink.close().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_unwritable_file_fails_promptly_and_stays_failed() {
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    let sink = FileAuditSink::open_with(Path::new("/dev/full"), KEY, "gw-0".into(), options())
        .expect("opens");
    let started = Instant::now();
    let result = sink.record(event(0)).await;
    assert!(matches!(result, Err(AuditError::Io(_))), "{result:?}");
    // The file cannot be cut back either, so the sink stops taking records.
    let result = sink.record(event(1)).await;
    assert!(
        matches!(result, Err(AuditError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!sink.is_ready().await);
    sink.close().await;
}

#[tokio::test]
async fn a_deleted_directory_fails_promptly() {
    let dir = TempDir::new().expect("tempdir");
    let sub = dir.path().join("audit");
    fs::create_dir(&sub).expect("mkdir");
    let path = sub.join("audit.jsonl");
    let sink = open(&path).await;
    sink.record(event(0)).await.expect("records");
    assert!(sink.is_ready().await);

    fs::remove_dir_all(&sub).expect("rm -r");
    let started = Instant::now();
    let result = sink.record(event(1)).await;
    assert!(matches!(result, Err(AuditError::Io(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!sink.is_ready().await);
    sink.close().await;

    let missing = FileAuditSink::open_with(&path, KEY, "gw-0".into(), options());
    assert!(matches!(missing, Err(AuditError::Io(_))), "{missing:?}");
}

#[tokio::test]
async fn a_stalled_disk_times_out_instead_of_hanging() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let options = FileSinkOptions {
        timeout: Duration::from_millis(200),
        ..options()
    };
    let hooks = Hooks {
        stall: Some(Duration::from_secs(1)),
        ..Hooks::default()
    };
    let sink =
        FileAuditSink::open_inner(&path, KEY.into(), "gw-0".into(), options, hooks).expect("opens");
    let started = Instant::now();
    let result = sink.record(event(0)).await;
    assert!(matches!(result, Err(AuditError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(900));
    sink.close().await;
}

#[tokio::test]
async fn reserved_actions_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let sink = open(&dir.path().join("audit.jsonl")).await;
    for action in [AuditAction::Checkpoint, AuditAction::Recovered] {
        let result = sink.record(AuditEvent::new(action, "ok")).await;
        assert!(matches!(result, Err(AuditError::ReservedAction(_))));
    }
    sink.close().await;
}

#[tokio::test]
async fn a_hostile_recipient_is_capped_and_escaped() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = open(&path).await;
    let hostile = format!(
        "Evil\n{{\"seq\":1}}\x1b[2J\x1b[31m\u{202e}{}",
        "A".repeat(10_000)
    );
    sink.record(AuditEvent {
        recipient: Some(hostile.clone()),
        user_agent: Some(hostile),
        link_id: Some("L\r\n".into()),
        ..AuditEvent::new(AuditAction::DirectFetched, "ok")
    })
    .await
    .expect("records");
    sink.close().await;

    let text = fs::read_to_string(&path).expect("reads");
    assert_eq!(text.matches('\n').count(), 1, "one record, one line");
    assert!(!text.contains('\x1b'));
    let record = record_of(text.trim_end());
    for value in [&record.recipient, &record.user_agent] {
        let value = value.as_deref().expect("kept");
        assert!(value.chars().count() <= 100, "{}", value.chars().count());
        assert!(value.starts_with("Evil\\u{a}{\"seq\":1}\\u{1b}[2J\\u{1b}[31m\\u{202e}AAA"));
        assert!(value.ends_with('…'));
        assert!(!value.chars().any(char::is_control));
    }
    assert_eq!(record.link_id.as_deref(), Some("L\\u{d}\\u{a}"));
    assert!(verify_file(&path, &KEY).is_ok());
}

#[tokio::test]
async fn an_on_demand_checkpoint_is_the_head() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = open(&path).await;
    sink.record(event(0)).await.expect("records");
    let checkpoint = sink.checkpoint().await.expect("checkpoint");
    assert_eq!(sink.head(), Some(checkpoint.clone()));
    assert_eq!(checkpoint.seq, 1);
    sink.close().await;
    let last = record_of(&read_lines(&path)[1]);
    assert_eq!(
        (last.action, last.outcome.as_str()),
        (AuditAction::Checkpoint, "on-demand")
    );
    assert!(verify_file_against_head(&path, &KEY, &checkpoint.to_string()).is_ok());
}

#[tokio::test]
async fn rotation_continues_the_chain_in_a_new_file() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let archive = dir.path().join("audit-1.jsonl");
    let sink = open(&path).await;
    for i in 0..5 {
        sink.record(event(i)).await.expect("records");
    }
    let old_head = sink.head().expect("a head");
    let rotated = sink.rotate(&archive).await.expect("rotates");
    assert_eq!(rotated.seq, 5);
    for i in 5..8 {
        sink.record(event(i)).await.expect("records");
    }
    let head = sink.head().expect("a head");
    assert!(sink.is_ready().await, "the new file is the sink's file");
    assert!(
        sink.rotate(&archive).await.is_err(),
        "never overwrites an archive"
    );
    sink.close().await;

    let first = record_of(&read_lines(&path)[0]);
    assert!(first.is_rotation_start());
    assert_eq!((first.seq, first.prev.as_str()), (5, old_head.mac.as_str()));
    assert!(first.note.expect("note").contains("audit-1.jsonl"));

    let report = verify_files(&[&archive, &path], &KEY, Some(&head.to_string()));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 9);
    assert!(verify_file(&archive, &KEY).is_ok());
    assert!(
        verify_file(&path, &KEY).is_ok(),
        "a rotated file starts at its checkpoint"
    );
    let report = verify_files(&[&path, &archive], &KEY, None);
    assert_fails_at(&report, 1, FailureKind::SeqGap);

    // Without its rotation checkpoint the new file is missing its start.
    let lines = read_lines(&path);
    write_lines(&path, &lines[1..]);
    assert_fails_at(&verify_file(&path, &KEY), 1, FailureKind::MissingStart);
}

#[tokio::test]
async fn an_interrupted_rotation_is_completed_or_discarded_on_open() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let archive = dir.path().join("audit-1.jsonl");
    let staging = rotating_path(&path);
    let sink = open(&path).await;
    sink.record(event(0)).await.expect("records");
    sink.rotate(&archive).await.expect("rotates");
    sink.close().await;

    // Crash between the two renames: the staged file is the current one.
    fs::rename(&path, &staging).expect("mv");
    let sink = open(&path).await;
    assert_eq!(sink.head().map(|h| h.seq), Some(1));
    sink.record(event(1)).await.expect("records");
    sink.close().await;
    assert!(!staging.exists());
    assert!(verify_files(&[&archive, &path], &KEY, None).is_ok());

    // Crash before the first rename: the staged record never joined the chain.
    fs::write(&staging, b"{\"partial\":").expect("writes");
    let sink = open(&path).await;
    assert_eq!(sink.head().map(|h| h.seq), Some(2));
    sink.close().await;
    assert!(!staging.exists());
}
