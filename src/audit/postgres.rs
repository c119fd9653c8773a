//! The PostgreSQL sink: the same chain, one per replica, in `audit_records`.
//!
//! Replicas cannot share a chain without coordinating every append, so each replica writes its
//! own (name it after the pod or host); within a replica a single task owns the chain, which is
//! the "one writer per chain" the seq counter needs, and it group-commits like the file sink:
//! everything queued goes into one multi-row `INSERT`, committed before any waiter is answered.
//! A failed transaction changes nothing, and the task re-reads the head from the table, so an
//! ambiguous commit (connection lost during `COMMIT`) or a second writer misconfigured onto the
//! same chain shows up as a primary-key conflict, never as a fork.
//!
//! The gateway's database role needs only `INSERT` and `SELECT` on `audit_records` (after the
//! table exists); granting no `UPDATE` or `DELETE` makes tampering need another account.

use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

use super::chain::{
    Batch, ChainState, Head, Job, LineError, Request, Sealer, log_checkpoints, seal_batch,
};
use super::file::SinkStats;
use super::verify::{Location, Verifier, VerifyReport};
use super::{AuditError, AuditEvent, AuditSink, validate_chain_name};
use crate::crypto::AuditKey;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS audit_records (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 0),
    record TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
)";

/// Tuning for [`PostgresAuditSink`].
#[derive(Debug, Clone)]
pub(crate) struct PostgresSinkOptions {
    /// A `checkpoint` record after this many records (0: only on demand).
    pub(crate) checkpoint_every: u64,
    /// How long `record` waits for the commit before failing closed; also the server-side
    /// `statement_timeout` and the pool's acquire timeout, so a stalled database cannot pin
    /// the writer for longer.
    pub(crate) timeout: Duration,
    /// Most records in one `INSERT`.
    pub(crate) max_batch: usize,
    /// Requests that may wait for the writer.
    pub(crate) queue: usize,
}

impl Default for PostgresSinkOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            timeout: Duration::from_secs(5),
            max_batch: 1024,
            queue: 8192,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    head: Option<Head>,
    stats: SinkStats,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An audit trail in PostgreSQL, one chain per replica. See [`crate::audit`].
#[derive(Debug)]
pub(crate) struct PostgresAuditSink {
    /// The writer's queue; `None` once closed, so nothing more is queued.
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: SharedState,
    pool: PgPool,
    chain: String,
    timeout: Duration,
    probe: crate::readiness::BoundedProbe,
}

impl PostgresAuditSink {
    /// Connects, creates `audit_records` if needed, and continues the chain from its last row.
    pub(crate) async fn connect(
        url: &str,
        key: impl Into<AuditKey>,
        chain: String,
    ) -> Result<Self, AuditError> {
        Self::connect_with(url, key, chain, PostgresSinkOptions::default()).await
    }

    pub(crate) async fn connect_with(
        url: &str,
        key: impl Into<AuditKey>,
        chain: String,
        options: PostgresSinkOptions,
    ) -> Result<Self, AuditError> {
        validate_chain_name(&chain)?;
        let sealer = Sealer::new(&key.into(), chain.clone())?;
        let pool = pool(url, 2, options.timeout).await?;
        create_table(&pool).await?;
        let state = load_head(&pool, &sealer).await?;
        let shared = Arc::new(Mutex::new(Shared {
            head: state.head(),
            stats: SinkStats::default(),
        }));
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let writer = Writer {
            pool: pool.clone(),
            sealer,
            state,
            since_checkpoint: 0,
            options: options.clone(),
            shared: Arc::clone(&shared),
        };
        let writer = tokio::spawn(writer.run(rx));
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            shared,
            pool,
            chain,
            timeout: options.timeout,
            probe: crate::readiness::BoundedProbe::default(),
        })
    }

    /// The last committed record, to export elsewhere (`seq:mac` via `Display`).
    pub(crate) fn head(&self) -> Option<Head> {
        lock(&self.shared).head.clone()
    }

    /// Writes a checkpoint record now and returns its head.
    #[cfg(test)]
    pub(crate) async fn checkpoint(&self) -> Result<Head, AuditError> {
        self.submit(Job::Checkpoint).await
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> SinkStats {
        lock(&self.shared).stats
    }

    /// The writer's queue, unless the sink is closed (a clone: see the file sink's).
    fn sender(&self) -> Option<mpsc::Sender<Request>> {
        self.tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn submit(&self, job: Job) -> Result<Head, AuditError> {
        let tx = self.sender().ok_or(AuditError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let stopped = || AuditError::Unavailable("the audit writer has stopped".into());
        let exchange = async {
            tx.send(Request {
                job,
                reply,
                // Every batch is one committed transaction: attempts are durable too.
                durable: true,
            })
            .await
            .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| AuditError::Timeout(self.timeout))?
    }
}

#[async_trait::async_trait]
impl AuditSink for PostgresAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if event.action.is_reserved() {
            return Err(AuditError::ReservedAction(event.action));
        }
        self.submit(Job::Event(Box::new(event.sanitized())))
            .await
            .map(|_| ())
    }

    /// Ready while the writer runs and the table answers a query on this chain's head: a lost
    /// connection, a dropped table or a revoked grant all fail it, which `SELECT 1` would not
    /// notice for the last two. Bounded by [`crate::readiness::PROBE_TIMEOUT`].
    async fn is_ready(&self) -> bool {
        if self.sender().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        let pool = self.pool.clone();
        let chain = self.chain.clone();
        self.probe
            .check(async move {
                sqlx::query(
                    "SELECT seq FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(chain)
                .fetch_optional(&pool)
                .await
                .is_ok()
            })
            .await
    }

    /// Closes the queue, waits (within the record timeout) for the writer to commit what was
    /// queued, then closes the pool.
    async fn close(&self) {
        drop(super::take(&self.tx));
        let Some(writer) = super::take(&self.writer) else {
            return;
        };
        match tokio::time::timeout(self.timeout, writer).await {
            Ok(Ok(())) => {}
            // Not the panic's message: it could hold whatever the writer was handling.
            Ok(Err(_)) => {
                tracing::error!(target: "audit", chain = %self.chain, "audit writer failed before close; records still queued may be lost");
            }
            Err(_) => {
                tracing::error!(target: "audit", chain = %self.chain, "audit writer still busy at close; records still queued may be lost");
            }
        }
        // Each connection is returned within the statement timeout, so this is bounded too.
        self.pool.close().await;
        let head = self.head().map(|head| head.to_string());
        tracing::info!(target: "audit", chain = %self.chain, head = head.as_deref().unwrap_or("none"), "audit chain closed");
    }
}

async fn pool(url: &str, connections: u32, timeout: Duration) -> Result<PgPool, AuditError> {
    let statement_timeout = format!("{}ms", timeout.as_millis());
    let options = PgConnectOptions::from_str(url)?
        .options([("statement_timeout", statement_timeout.as_str())]);
    // Said at once and in words (connection refused, ...) rather than by the pool's "timed out"
    // after its retries.
    crate::database::check_connection(url, crate::database::CONNECT_TIMEOUT).await?;
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await?)
}

/// `CREATE TABLE IF NOT EXISTS` is not safe against itself: two replicas starting together can
/// both try to create the table's type. An advisory lock serializes them.
async fn create_table(pool: &PgPool) -> Result<(), AuditError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('shl-gateway/audit_records'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(CREATE_TABLE).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Where the chain continues: after its last row, whose MAC and link to the row before are
/// checked, so a wrong key or a tampered tail stops startup instead of being built upon.
async fn load_head(pool: &PgPool, sealer: &Sealer) -> Result<ChainState, AuditError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, record FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 2",
    )
    .bind(sealer.chain())
    .fetch_all(pool)
    .await?;
    let Some((seq, line)) = rows.first() else {
        return Ok(ChainState::genesis());
    };
    let corrupt = |seq: i64, reason: String| AuditError::Corrupt {
        location: format!("chain {:?} seq {seq}", sealer.chain()),
        reason,
    };
    let open = |seq: i64, line: &str| match sealer.open_line(line) {
        Ok((record, head))
            if i64::try_from(record.seq) == Ok(seq) && record.chain == sealer.chain() =>
        {
            Ok((record, head))
        }
        Ok(_) => Err(corrupt(
            seq,
            "the row's seq or chain differs from its record".into(),
        )),
        Err(LineError::BadMac) => Err(corrupt(
            seq,
            "its MAC does not match: wrong key, or the row was edited".into(),
        )),
        Err(LineError::Unparsable(why)) => Err(corrupt(seq, why)),
    };
    let (last, head) = open(*seq, line)?;
    if let Some((before_seq, before_line)) = rows.get(1) {
        let (_, before) = open(*before_seq, before_line)?;
        if before.seq + 1 != last.seq || before.mac != last.prev {
            return Err(corrupt(*seq, "the last two rows are not linked".into()));
        }
    }
    Ok(ChainState::after(&head))
}

/// The owner of one chain.
struct Writer {
    pool: PgPool,
    sealer: Sealer,
    state: ChainState,
    since_checkpoint: u64,
    options: PostgresSinkOptions,
    shared: SharedState,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut requests = vec![first];
            while requests.len() < self.options.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            let batch = seal_batch(
                &self.sealer,
                &self.state,
                self.since_checkpoint,
                self.options.checkpoint_every,
                requests,
            );
            if batch.records.is_empty() {
                batch.succeed();
                continue;
            }
            match self.insert(&batch).await {
                Ok(()) => self.adopt(batch),
                Err(error) => {
                    tracing::error!(target: "audit", chain = self.sealer.chain(), %error, "audit insert failed");
                    let message = error.to_string();
                    batch.fail(|| AuditError::Unavailable(message.clone()));
                    self.resync().await;
                }
            }
        }
    }

    async fn insert(&self, batch: &Batch) -> Result<(), AuditError> {
        let mut seqs = Vec::with_capacity(batch.records.len());
        let mut lines = Vec::with_capacity(batch.records.len());
        for sealed in &batch.records {
            seqs.push(
                i64::try_from(sealed.head.seq)
                    .map_err(|_| AuditError::Unavailable("audit seq out of range".into()))?,
            );
            lines.push(sealed.line.clone());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO audit_records (chain, seq, record) \
             SELECT $1, s, r FROM UNNEST($2::bigint[], $3::text[]) AS t(s, r)",
        )
        .bind(self.sealer.chain())
        .bind(&seqs)
        .bind(&lines)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn adopt(&mut self, batch: Batch) {
        log_checkpoints(self.sealer.chain(), &batch.records);
        self.state = batch.state.clone();
        self.since_checkpoint = batch.since_checkpoint;
        {
            let mut shared = lock(&self.shared);
            shared.head = self.state.head();
            shared.stats.records += batch.records.len() as u64;
            shared.stats.batches += 1;
            shared.stats.syncs += 1;
        }
        batch.succeed();
    }

    /// After a failure the table is the truth: a commit whose answer was lost, or another
    /// writer on this chain, moved its head.
    async fn resync(&mut self) {
        match load_head(&self.pool, &self.sealer).await {
            Ok(state) if state != self.state => {
                tracing::warn!(
                    target: "audit",
                    chain = self.sealer.chain(),
                    "audit chain head moved under this writer; continuing from the table"
                );
                self.state = state;
                lock(&self.shared).head = self.state.head();
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(target: "audit", chain = self.sealer.chain(), %error, "audit head not reloaded");
            }
        }
    }
}

/// Verifies one chain in the table, in seq order.
pub async fn verify_postgres(
    url: &str,
    key: &[u8],
    chain: &str,
) -> Result<VerifyReport, AuditError> {
    verify_postgres_inner(url, key, chain, None).await
}

/// Verifies one chain and that it reaches an exported head (see
/// [`crate::audit::verify_file_against_head`]).
#[cfg(test)]
pub(crate) async fn verify_postgres_against_head(
    url: &str,
    key: &[u8],
    chain: &str,
    expected_head: &str,
) -> Result<VerifyReport, AuditError> {
    verify_postgres_inner(url, key, chain, Some(expected_head)).await
}

async fn verify_postgres_inner(
    url: &str,
    key: &[u8],
    chain: &str,
    expected_head: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    let mut verifier = match Verifier::new(key, expected_head) {
        Ok(verifier) => verifier,
        Err(failure) => return Ok(VerifyReport::failed(failure)),
    };
    let pool = pool(url, 1, Duration::from_secs(30)).await?;
    // Keyset pages keep memory flat however long the chain.
    let mut after = -1i64;
    loop {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, record FROM audit_records WHERE chain = $1 AND seq > $2 \
             ORDER BY seq LIMIT 1000",
        )
        .bind(chain)
        .bind(after)
        .fetch_all(&pool)
        .await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = *last;
        for (seq, line) in &rows {
            let at = Location::row(u64::try_from(*seq).unwrap_or(u64::MAX));
            if let Err(failure) = verifier.check(&at, Ok(line)) {
                pool.close().await;
                return Ok(verifier.report(Some(failure)));
            }
        }
    }
    pool.close().await;
    Ok(verifier.finish(None))
}

#[cfg(test)]
mod tests;
