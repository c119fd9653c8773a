//! The file sink: JSON lines, append-only, one writer thread, group commit.
//!
//! The writer is a plain OS thread rather than a tokio task because its job is to block on
//! `write` and `fdatasync`; keeping that off the runtime's workers means a slow disk delays
//! audit waiters, not every request in the process. See the module docs of [`crate::audit`]
//! for the batching, failure, recovery and rotation policies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::chain::{
    Batch, ChainState, Head, Job, LineError, Record, Request, Sealer, log_checkpoints, seal_batch,
};
use super::{AuditAction, AuditError, AuditEvent, AuditSink, validate_chain_name};
use crate::crypto::AuditKey;
use crate::readiness::BoundedProbe;

/// How much of the end of the file is read on open to find the last record. Records are a few
/// kilobytes at most (every field is capped), so this always holds the last two.
const TAIL_WINDOW: u64 = 64 * 1024;

/// Tuning for [`FileAuditSink`].
#[derive(Debug, Clone)]
pub(crate) struct FileSinkOptions {
    /// A `checkpoint` record after this many records (0: only on demand).
    pub(crate) checkpoint_every: u64,
    /// How long `record` waits for durability before failing closed.
    pub(crate) timeout: Duration,
    /// Most records written by one `write` + `fdatasync`.
    pub(crate) max_batch: usize,
    /// Requests that may wait for the writer; beyond this, `record` waits for room (within
    /// `timeout`), which bounds memory under a flood.
    pub(crate) queue: usize,
}

impl Default for FileSinkOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            timeout: Duration::from_secs(5),
            max_batch: 1024,
            queue: 8192,
        }
    }
}

/// Counters of what the writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinkStats {
    /// Records stored, checkpoints included.
    pub(crate) records: u64,
    /// Writes, each of a batch of records.
    pub(crate) batches: u64,
    /// Writes made durable: one `fdatasync` (file) or commit (PostgreSQL) each. A file batch of
    /// attempts alone is written without one (`AuditSink::record_attempt`).
    pub(crate) syncs: u64,
}

/// State the writer publishes for the async side.
#[derive(Debug)]
struct Shared {
    head: Option<Head>,
    /// Set when the file can no longer be trusted; every request fails with this reason.
    poisoned: Option<String>,
    identity: Option<FileId>,
    stats: SinkStats,
    /// The last batch failed and was rolled back: the sink works, the disk did not. Cleared by
    /// the next stored batch; meanwhile readiness probes the directory (see `is_ready`).
    degraded: bool,
    /// Batches failed so far; readiness re-probes when it moves.
    failures: u64,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock cannot leave it inconsistent: every update is a plain
    // assignment.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An audit trail in one append-only JSON-lines file. See [`crate::audit`].
#[derive(Debug)]
pub struct FileAuditSink {
    /// The writer's queue; `None` once closed, so nothing more is queued.
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    shared: SharedState,
    path: PathBuf,
    timeout: Duration,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    probe: BoundedProbe,
    /// `Shared::failures` when readiness last probed.
    probed_failures: AtomicU64,
    #[cfg_attr(not(test), allow(dead_code))]
    hooks: Hooks,
}

impl FileAuditSink {
    /// Opens (or creates) the file and continues its chain. Blocks while it reads the end of
    /// the file; call it at startup.
    pub fn open(path: &Path, key: impl Into<AuditKey>, chain: String) -> Result<Self, AuditError> {
        Self::open_with(path, key, chain, FileSinkOptions::default())
    }

    pub(crate) fn open_with(
        path: &Path,
        key: impl Into<AuditKey>,
        chain: String,
        options: FileSinkOptions,
    ) -> Result<Self, AuditError> {
        Self::open_inner(path, key.into(), chain, options, Hooks::default())
    }

    fn open_inner(
        path: &Path,
        key: AuditKey,
        chain: String,
        options: FileSinkOptions,
        hooks: Hooks,
    ) -> Result<Self, AuditError> {
        validate_chain_name(&chain)?;
        let sealer = Sealer::new(&key, chain.clone())?;
        finish_interrupted_rotation(path)?;

        let existed = path.exists();
        let mut file = private_options().create(true).open(path)?;
        lock_exclusive(&file, path)?;
        if !existed {
            // The file's directory entry must be durable too, or a crash could lose the file
            // with every record in it.
            sync_parent(path)?;
        }

        let tail = scan_tail(&mut file, &sealer)?;
        if let Some((record, _)) = &tail.last
            && record.chain != chain
        {
            return Err(AuditError::ChainMismatch {
                found: record.chain.clone(),
                configured: chain,
            });
        }
        let state = tail
            .last
            .as_ref()
            .map_or_else(ChainState::genesis, |(_, head)| ChainState::after(head));

        let shared = Arc::new(Mutex::new(Shared {
            head: state.head(),
            poisoned: None,
            identity: FileId::of_file(&file),
            stats: SinkStats::default(),
            degraded: false,
            failures: 0,
        }));
        let mut writer = Writer {
            path: path.to_owned(),
            committed_len: tail.good_len,
            unsynced: false,
            identity: FileId::of_file(&file),
            file,
            sealer,
            state,
            since_checkpoint: 0,
            options: options.clone(),
            shared: Arc::clone(&shared),
            hooks: hooks.clone(),
        };
        if let Some(cut) = tail.cut {
            writer.recover(cut)?;
        }
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let path = writer.path.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            shared,
            path,
            timeout: options.timeout,
            thread: Mutex::new(Some(thread)),
            probe: BoundedProbe::default(),
            probed_failures: AtomicU64::new(0),
            hooks,
        })
    }

    /// The last durable record, to export elsewhere (`seq:mac` via `Display`).
    pub fn head(&self) -> Option<Head> {
        lock(&self.shared).head.clone()
    }

    /// Writes a checkpoint record now and returns its head.
    #[cfg(test)]
    pub(crate) async fn checkpoint(&self) -> Result<Head, AuditError> {
        self.submit(Job::Checkpoint, true).await
    }

    /// Renames the current file to `archive_to` (same filesystem, must not exist) and
    /// continues the chain in a new file at the original path, whose first record is a
    /// `rotated` checkpoint linking to the old head. Returns that checkpoint's head.
    #[cfg(test)]
    pub(crate) async fn rotate(&self, archive_to: &Path) -> Result<Head, AuditError> {
        self.submit(Job::Rotate(archive_to.to_owned()), true).await
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> SinkStats {
        lock(&self.shared).stats
    }

    /// The writer's queue, unless the sink is closed. A clone, so a request being queued
    /// keeps the writer running until it is answered even if `close` comes meanwhile.
    fn sender(&self) -> Option<mpsc::Sender<Request>> {
        self.tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn submit(&self, job: Job, durable: bool) -> Result<Head, AuditError> {
        if let Some(reason) = lock(&self.shared).poisoned.clone() {
            return Err(AuditError::Unavailable(reason));
        }
        let tx = self.sender().ok_or(AuditError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            tx.send(Request {
                job,
                reply,
                durable,
            })
            .await
            .map_err(|_| writer_stopped())?;
            answer.await.map_err(|_| writer_stopped())?
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| AuditError::Timeout(self.timeout))?
    }
}

fn writer_stopped() -> AuditError {
    AuditError::Unavailable("the audit writer has stopped".into())
}

#[async_trait::async_trait]
impl AuditSink for FileAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if event.action.is_reserved() {
            return Err(AuditError::ReservedAction(event.action));
        }
        // Scrubbed here, on the caller's task, so the single writer thread only seals and
        // writes.
        self.submit(Job::Event(Box::new(event.sanitized())), true)
            .await
            .map(|_| ())
    }

    async fn record_attempt(&self, event: AuditEvent) -> Result<(), AuditError> {
        if event.action.is_reserved() {
            return Err(AuditError::ReservedAction(event.action));
        }
        self.submit(Job::Event(Box::new(event.sanitized())), false)
            .await
            .map(|_| ())
    }

    /// Ready unless stopped, the path no longer names the file held open, or (after a failed
    /// batch, until one is stored again) the directory cannot take a small file written and
    /// `fdatasync`ed. The last is a probe rather than a wait for the next real record: a load
    /// balancer sends no traffic to an unready gateway, so a real record would never come to
    /// clear it once the disk has room again. Bounded by [`crate::readiness::PROBE_TIMEOUT`].
    async fn is_ready(&self) -> bool {
        let (identity, degraded, failures) = {
            let shared = lock(&self.shared);
            if shared.poisoned.is_some() {
                return false;
            }
            (shared.identity, shared.degraded, shared.failures)
        };
        if self.sender().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        // A batch failed since the last probe: its answer no longer holds.
        if self.probed_failures.swap(failures, Ordering::SeqCst) != failures {
            self.probe.invalidate();
        }
        let path = self.path.clone();
        #[cfg(test)]
        let fail_sync = self.hooks.fail_sync.clone();
        self.probe
            .check(async move {
                let probe = tokio::task::spawn_blocking(move || {
                    let same_file = fs::metadata(&path).is_ok_and(|meta| {
                        identity.is_none() || FileId::of_metadata(&meta) == identity
                    });
                    #[cfg(test)]
                    if fail_sync
                        .as_ref()
                        .is_some_and(|fail| fail.load(Ordering::SeqCst))
                    {
                        return false;
                    }
                    same_file && (!degraded || probe_directory(&path).is_ok())
                });
                probe.await.unwrap_or(false)
            })
            .await
    }

    /// Closes the queue, then waits (within the record timeout) for the writer to store what
    /// was queued, sync any attempt still pending, and exit, which closes the file and its
    /// lock.
    async fn close(&self) {
        drop(super::take(&self.tx));
        let Some(handle) = super::take(&self.thread) else {
            return;
        };
        let joined = tokio::time::timeout(
            self.timeout,
            tokio::task::spawn_blocking(move || handle.join()),
        )
        .await;
        match joined {
            Ok(Ok(Ok(()))) => {
                let head = self.head().map(|head| head.to_string());
                tracing::info!(target: "audit", path = %self.path.display(), head = head.as_deref().unwrap_or("none"), "audit file closed");
            }
            Ok(_) => {
                // Not the panic's message: it could hold whatever the writer was handling.
                tracing::error!(target: "audit", path = %self.path.display(), "audit writer failed before close; records still queued may be lost");
            }
            Err(_) => {
                tracing::error!(target: "audit", path = %self.path.display(), "audit writer still busy at close; records still queued may be lost");
            }
        }
    }
}

/// Writes a block-sized file beside the audit file, `fdatasync`s it and removes it: whether the
/// filesystem can store and sync a record now (room, inodes, a working device). The name is
/// random and the file is created new (`O_CREAT | O_EXCL`, which fails on an existing name,
/// symbolic links included): someone who can write to the directory cannot point the probe at
/// the trail (or any other file) and have it truncated.
fn probe_directory(audit_path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = std::ffi::OsString::from(".");
    name.push(audit_path.file_name().unwrap_or_default());
    name.push(format!(
        ".probe-{:016x}",
        getrandom::u64().unwrap_or_default()
    ));
    let probe = audit_path.with_file_name(name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe);
    let mut file = written?;
    let synced = file.write_all(&[0u8; 4096]).and_then(|()| file.sync_data());
    drop(file);
    let removed = fs::remove_file(&probe);
    synced?;
    match removed {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The owner of the file.
struct Writer {
    path: PathBuf,
    file: File,
    /// Bytes of the records acknowledged so far (synced, or written for an attempt and synced
    /// with the next durable record); a failed batch is cut back to this.
    committed_len: u64,
    /// Attempts were written since the last `fdatasync`.
    unsynced: bool,
    identity: Option<FileId>,
    sealer: Sealer,
    state: ChainState,
    since_checkpoint: u64,
    options: FileSinkOptions,
    shared: SharedState,
    #[cfg_attr(not(test), allow(dead_code))]
    hooks: Hooks,
}

/// Why an append failed, and whether the failing step was the `fdatasync` (which, on Linux,
/// reports a writeback error once and then forgets it).
#[derive(Debug)]
struct AppendError {
    error: io::Error,
    at_sync: bool,
}

/// Fault injection for tests; empty otherwise.
#[derive(Debug, Clone, Default)]
struct Hooks {
    /// Sleep between `write` and `fdatasync`, as a stuck disk would.
    #[cfg(test)]
    stall: Option<Duration>,
    /// While set, every `fdatasync` fails, as on a disk reporting a writeback error (the
    /// readiness probe's too).
    #[cfg(test)]
    fail_sync: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// While set, every `write` fails with ENOSPC, as on a full disk.
    #[cfg(test)]
    fail_write: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.options.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        // Attempts are synced by their outcomes; one written last is synced on the way out.
        if self.unsynced {
            self.sync_pending();
        }
    }

    fn process(&mut self, requests: Vec<Request>) {
        if let Some(reason) = lock(&self.shared).poisoned.clone() {
            for request in requests {
                let _ = request
                    .reply
                    .send(Err(AuditError::Unavailable(reason.clone())));
            }
            return;
        }
        // Rotation splits the batch: what was queued before it belongs to the old file.
        let mut group = Vec::with_capacity(requests.len());
        for request in requests {
            match request.job {
                Job::Rotate(archive_to) => {
                    self.commit(std::mem::take(&mut group));
                    let result = self.rotate(&archive_to);
                    let _ = request.reply.send(result);
                }
                job => group.push(Request {
                    job,
                    reply: request.reply,
                    durable: request.durable,
                }),
            }
        }
        self.commit(group);
    }

    fn commit(&mut self, group: Vec<Request>) {
        if group.is_empty() {
            return;
        }
        let durable = group.iter().any(|request| request.durable);
        let batch = seal_batch(
            &self.sealer,
            &self.state,
            self.since_checkpoint,
            self.options.checkpoint_every,
            group,
        );
        if batch.records.is_empty() {
            batch.succeed();
            return;
        }
        // A checkpoint's head is logged as durable (see `adopt`), so a batch holding one is synced
        // even when it is otherwise attempts only.
        let sync = durable || batch.records.iter().any(|sealed| sealed.is_checkpoint);
        let had_unsynced = self.unsynced;
        let mut bytes = Vec::with_capacity(batch.records.iter().map(|r| r.line.len() + 1).sum());
        for sealed in &batch.records {
            bytes.extend_from_slice(sealed.line.as_bytes());
            bytes.push(b'\n');
        }
        match self.append(&bytes, sync) {
            Ok(()) => self.adopt(batch, sync),
            Err(AppendError { error, at_sync }) => {
                tracing::error!(target: "audit", %error, path = %self.path.display(), "audit write failed");
                let kind = error.kind();
                let message = error.to_string();
                // Published before the waiters hear of the failure, so a readiness check they
                // make next already sees it.
                {
                    let mut shared = lock(&self.shared);
                    shared.degraded = true;
                    shared.failures += 1;
                }
                batch.fail(|| AuditError::Io(io::Error::new(kind, message.clone())));
                // A failed `write` (a full disk) consumed no writeback error: the attempts
                // before it are still in the page cache, and the roll-back's own sync proves
                // them or stops the sink. Only a failed sync loses that proof.
                if had_unsynced && at_sync {
                    // Linux reports a writeback error once: after this failed sync, attempts
                    // acknowledged before it may have been dropped while a retried sync
                    // succeeds. Their durability cannot be proven, so nothing may chain on.
                    let reason = format!(
                        "an audit fdatasync failed with attempt records pending; stopped: {error}"
                    );
                    tracing::error!(target: "audit", path = %self.path.display(), %reason, "audit sink stopped");
                    lock(&self.shared).poisoned = Some(reason);
                    return;
                }
                self.roll_back();
            }
        }
    }

    /// Takes a stored batch as the chain's new end. The head others see (`head()`, checkpoint
    /// logs) moves only with a synced batch: it names the last *durable* record.
    fn adopt(&mut self, batch: Batch, synced: bool) {
        if synced {
            log_checkpoints(self.sealer.chain(), &batch.records);
        }
        self.state = batch.state.clone();
        self.since_checkpoint = batch.since_checkpoint;
        {
            let mut shared = lock(&self.shared);
            if synced {
                shared.head = self.state.head();
            }
            shared.stats.records += batch.records.len() as u64;
            shared.stats.batches += 1;
            shared.degraded = false;
        }
        batch.succeed();
    }

    /// Appends and, with `sync`, makes durable (with every attempt written before), or fails
    /// without advancing `committed_len`.
    fn append(&mut self, bytes: &[u8], sync: bool) -> Result<(), AppendError> {
        let before_sync = |error| AppendError {
            error,
            at_sync: false,
        };
        self.check_identity().map_err(before_sync)?;
        #[cfg(test)]
        if self
            .hooks
            .fail_write
            .as_ref()
            .is_some_and(|fail| fail.load(Ordering::SeqCst))
        {
            return Err(before_sync(io::Error::from_raw_os_error(28)));
        }
        self.file.write_all(bytes).map_err(before_sync)?;
        #[cfg(test)]
        if let Some(stall) = self.hooks.stall {
            std::thread::sleep(stall);
        }
        if sync {
            #[cfg(test)]
            if self
                .hooks
                .fail_sync
                .as_ref()
                .is_some_and(|fail| fail.load(std::sync::atomic::Ordering::SeqCst))
            {
                return Err(AppendError {
                    error: io::Error::other("injected fdatasync failure"),
                    at_sync: true,
                });
            }
            self.file.sync_data().map_err(|error| AppendError {
                error,
                at_sync: true,
            })?;
            lock(&self.shared).stats.syncs += 1;
        }
        self.unsynced = !sync;
        self.committed_len += bytes.len() as u64;
        Ok(())
    }

    /// Syncs attempts written without one, when no outcome will (the writer is stopping).
    fn sync_pending(&mut self) {
        match self.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                // The attempts are durable now, so the head may name them; not on a stopped
                // sink, whose pending attempts cannot be proven by a later sync.
                let mut shared = lock(&self.shared);
                if shared.poisoned.is_none() {
                    shared.head = self.state.head();
                }
            }
            Err(error) => {
                tracing::error!(target: "audit", %error, path = %self.path.display(), "audit sync failed");
            }
        }
    }

    /// Records appended to a file that was deleted or renamed away would be lost at close, and
    /// a file swapped in by someone else is not ours to extend.
    fn check_identity(&self) -> io::Result<()> {
        let Some(identity) = self.identity else {
            return Ok(());
        };
        match fs::metadata(&self.path) {
            Ok(meta) if FileId::of_metadata(&meta) == Some(identity) => Ok(()),
            Ok(_) => Err(io::Error::other(
                "the audit path now names another file (moved or replaced)",
            )),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the audit file was deleted or moved",
            )),
            Err(error) => Err(error),
        }
    }

    /// After a failed batch, cut the file back to what is known durable so the next batch
    /// starts on a clean line. If that fails too, the file is in an unknown state: stop.
    fn roll_back(&mut self) {
        let result = self
            .file
            .set_len(self.committed_len)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = result {
            let reason = format!("audit file in an unknown state after a failed write: {error}");
            tracing::error!(target: "audit", path = %self.path.display(), %reason, "audit sink stopped");
            lock(&self.shared).poisoned = Some(reason);
        }
    }

    /// Cuts a torn tail found on open and records that it did.
    fn recover(&mut self, cut: Cut) -> Result<(), AuditError> {
        self.file.set_len(cut.at)?;
        self.file.sync_data()?;
        self.committed_len = cut.at;
        let after = match self.state.head() {
            Some(head) => format!("after seq {}", head.seq),
            None => "at the start of the file".to_owned(),
        };
        let note = format!(
            "cut {} bytes of a torn record {after} (sha256 {})",
            cut.bytes, cut.sha256
        );
        tracing::warn!(target: "audit", path = %self.path.display(), %note, "audit file recovered");
        let mut state = self.state.clone();
        let sealed =
            self.sealer
                .seal_own(&mut state, AuditAction::Recovered, "tail-cut", Some(note))?;
        let mut line = sealed.line.into_bytes();
        line.push(b'\n');
        self.append(&line, true).map_err(|failed| failed.error)?;
        self.state = state;
        let mut shared = lock(&self.shared);
        shared.head = self.state.head();
        shared.stats.records += 1;
        shared.stats.batches += 1;
        Ok(())
    }

    fn rotate(&mut self, archive_to: &Path) -> Result<Head, AuditError> {
        if fs::symlink_metadata(archive_to).is_ok() {
            return Err(AuditError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", archive_to.display()),
            )));
        }
        self.check_identity()?;
        // The archive must hold every acknowledged record durably before it is renamed away.
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        let staging = rotating_path(&self.path);
        let _ = fs::remove_file(&staging);
        let mut next = private_options().create_new(true).open(&staging)?;
        lock_exclusive(&next, &staging)?;

        let mut state = self.state.clone();
        let archive_name = archive_to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let note = format!(
            "continues the chain from {}",
            super::sanitize(&archive_name, 100)
        );
        let sealed = self.sealer.seal_own(
            &mut state,
            AuditAction::Checkpoint,
            super::chain::ROTATED,
            Some(note),
        )?;
        let mut line = sealed.line.clone().into_bytes();
        line.push(b'\n');
        // The new file is complete and durable before either rename, so whatever point a crash
        // hits, `finish_interrupted_rotation` finds one consistent state.
        let written = next.write_all(&line).and_then(|()| next.sync_data());
        if let Err(error) = written {
            let _ = fs::remove_file(&staging);
            return Err(error.into());
        }
        if let Err(error) = fs::rename(&self.path, archive_to) {
            let _ = fs::remove_file(&staging);
            return Err(error.into());
        }
        if let Err(error) = fs::rename(&staging, &self.path) {
            // The chain is intact (archive + staging file) and reopening completes the
            // rotation, but this process no longer has a current file.
            let reason = format!("rotation interrupted, restart to complete it: {error}");
            lock(&self.shared).poisoned = Some(reason);
            return Err(error.into());
        }
        sync_parent(&self.path)?;

        self.file = next;
        self.committed_len = line.len() as u64;
        self.identity = FileId::of_file(&self.file);
        self.state = state;
        self.since_checkpoint = 0;
        log_checkpoints(self.sealer.chain(), std::slice::from_ref(&sealed));
        let mut shared = lock(&self.shared);
        shared.head = self.state.head();
        shared.identity = self.identity;
        shared.stats.records += 1;
        shared.stats.batches += 1;
        Ok(sealed.head)
    }
}

/// Read and append; a file it creates is `0600` whatever the umask: records name recipients,
/// addresses and user agents.
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

fn rotating_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rotating");
    PathBuf::from(name)
}

/// Completes or discards a rotation that a crash interrupted. The staging file is renamed into
/// place only after the current file was archived, so: staging without a current file means
/// the second rename is missing; both present means the first rename never happened and the
/// staged record was never part of the chain.
fn finish_interrupted_rotation(path: &Path) -> Result<(), AuditError> {
    let staging = rotating_path(path);
    if !staging.exists() {
        return Ok(());
    }
    // A writer still holding the staging file is mid-rotation, not crashed.
    lock_exclusive(&File::open(&staging)?, &staging)?;
    if path.exists() {
        fs::remove_file(&staging)?;
    } else {
        fs::rename(&staging, path)?;
        sync_parent(path)?;
    }
    Ok(())
}

/// One sink per file: a second writer (another replica on a shared volume, a second process)
/// would fork the chain.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), AuditError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(AuditError::Locked(path.display().to_string())),
        Err(fs::TryLockError::Error(error)) => Err(error.into()),
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Device and inode: what "the same file" means across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of_file(file: &File) -> Option<Self> {
        file.metadata().ok().and_then(|m| Self::of_metadata(&m))
    }

    #[cfg(unix)]
    fn of_metadata(meta: &fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self(meta.dev(), meta.ino()))
    }

    #[cfg(not(unix))]
    fn of_metadata(_meta: &fs::Metadata) -> Option<Self> {
        None
    }
}

/// A torn tail to cut: where, how long, and a digest kept as evidence in the `recovered`
/// record.
#[derive(Debug)]
struct Cut {
    at: u64,
    bytes: u64,
    sha256: String,
}

#[derive(Debug)]
struct Tail {
    last: Option<(Record, Head)>,
    /// Length of the file up to the end of the last good line.
    good_len: u64,
    cut: Option<Cut>,
}

/// Finds the last good record, checking its MAC and its link to the one before, and what
/// (if anything) follows it that must be cut.
fn scan_tail(file: &mut File, sealer: &Sealer) -> Result<Tail, AuditError> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut window = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.take(len - start).read_to_end(&mut window)?;

    // Complete lines end with `\n`. The first one is partial when the window starts mid-file.
    let mut lines: Vec<(u64, &[u8])> = Vec::new();
    let mut offset = 0usize;
    for chunk in window.split_inclusive(|b| *b == b'\n') {
        let at = start + offset as u64;
        offset += chunk.len();
        if let Some(line) = chunk.strip_suffix(b"\n") {
            lines.push((at, line));
        }
    }
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    if start > 0 && lines.is_empty() {
        return Err(AuditError::Corrupt {
            location: format!("byte {start}"),
            reason: "no complete record in the last 64 KiB".into(),
        });
    }
    let complete_end = lines
        .last()
        .map_or(start, |(at, line)| at + line.len() as u64 + 1);

    // The last complete line, unless it is itself the torn write.
    let mut good_end = complete_end;
    let mut last = None;
    while let Some((at, line)) = lines.pop() {
        let parsed = std::str::from_utf8(line)
            .map_err(|_| LineError::Unparsable("not UTF-8".into()))
            .and_then(|text| sealer.open_line(text));
        match parsed {
            Ok((record, head)) => {
                last = Some((record, head));
                break;
            }
            Err(LineError::Unparsable(_)) if good_end == complete_end => {
                // Only the very last line may be torn: a crash tears at most what it was
                // writing.
                good_end = at;
            }
            Err(error) => {
                let reason = match error {
                    LineError::BadMac => {
                        "its MAC does not match: wrong key, or the file was edited".to_owned()
                    }
                    LineError::Unparsable(why) => why,
                };
                return Err(AuditError::Corrupt {
                    location: format!("byte {at}"),
                    reason: format!("last record unusable: {reason}"),
                });
            }
        }
    }
    // A crash tears a line short; it does not write a whole line of something else. With no
    // valid record before it, an unparsable complete line means this is not an audit file,
    // and it is not ours to cut.
    if good_end != complete_end && last.is_none() {
        return Err(AuditError::Corrupt {
            location: format!("byte {good_end}"),
            reason: "no valid record before an unparsable line: not an audit file?".into(),
        });
    }

    if let Some((record, _)) = &last {
        // Check the link to the record before, when it is in the window.
        if let Some((at, line)) = lines.last() {
            let before = std::str::from_utf8(line)
                .map_err(|_| LineError::Unparsable("not UTF-8".into()))
                .and_then(|text| sealer.open_line(text));
            let linked = matches!(&before, Ok((_, head))
                if head.seq + 1 == record.seq && head.mac == record.prev);
            if !linked {
                return Err(AuditError::Corrupt {
                    location: format!("byte {at}"),
                    reason: "the last two records are not linked".into(),
                });
            }
        }
    }

    let cut = if good_end < len {
        file.seek(SeekFrom::Start(good_end))?;
        let mut torn = Vec::new();
        file.take(len - good_end).read_to_end(&mut torn)?;
        Some(Cut {
            at: good_end,
            bytes: len - good_end,
            sha256: hex::encode(Sha256::digest(&torn)),
        })
    } else {
        None
    };
    Ok(Tail {
        last,
        good_len: good_end,
        cut,
    })
}

#[cfg(test)]
mod tests;
