//! [`LinkStore`] over SQLite or PostgreSQL, through sqlx's `Any` driver.
//!
//! Queries use `$n` placeholders in order of first use, which both SQLite and PostgreSQL accept,
//! and only types both map the same way (TEXT, BIGINT). Each backend has its own migration
//! folder, since DDL differs (identity columns).

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row as _};

use super::{
    AccessAction, AccessOutcome, AccessRecord, AttemptReservation, AttemptVerdict, LinkRecord,
    LinkStore, StoreError,
};
use crate::database::{CONNECT_TIMEOUT, DatabaseKind, check_connection};
use crate::issuer::LinkMode;
use crate::issuer::fhir::PatientRecord;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    /// A SQLite file's readiness is probed on a connection of its own (see [`PING`]).
    sqlite_probe: Option<sqlx::sqlite::SqliteConnectOptions>,
    probe: std::sync::Arc<crate::readiness::BoundedProbe>,
}

/// The readiness probe: one row (or none) from every table and the indexes the hot paths use.
/// Reading a table's pages is what notices a damaged file ("database disk image is malformed");
/// `SELECT 1` reads nothing and answers on a store that every request would fail on.
const PING: &str = "SELECT 1 FROM patients LIMIT 1; \
    SELECT 1 FROM patient_resources LIMIT 1; \
    SELECT 1 FROM api_tokens LIMIT 1; \
    SELECT 1 FROM health_links LIMIT 1; \
    SELECT 1 FROM health_links WHERE patient_id = '' LIMIT 1; \
    SELECT 1 FROM health_links WHERE expires_at < 0 LIMIT 1; \
    SELECT 1 FROM link_accesses WHERE link_id = '' LIMIT 1";

const LINK_COLUMNS: &str = "id, patient_id, label, mode, flag, resource_types, passcode_hash, \
     attempts_remaining, attempts_in_flight, attempt_lease_until, created_at, expires_at, \
     revoked_at, jwe";

impl SqlStore {
    /// Connects (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://...`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let backend = match DatabaseKind::of(url).map_err(StoreError::UnsupportedUrl)? {
            DatabaseKind::Postgres => Backend::Postgres,
            DatabaseKind::Sqlite => Backend::Sqlite,
        };
        // Said at once and in words (connection refused, ...) rather than by the pool's
        // "timed out" after its retries.
        check_connection(url, CONNECT_TIMEOUT).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; foreign keys are off by
                        // default in SQLite. sqlx already sets a 5 s busy timeout.
                        connection
                            .execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        // A pooled SQLite connection keeps the pages it read cached, and in WAL mode nothing
        // tells it that the file under it changed: the probe opens the file afresh, and never
        // creates it (a deleted store must not come back empty). In-memory databases exist
        // only inside the pool.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let sqlite_probe = if backend == Backend::Sqlite && !in_memory {
            use std::str::FromStr as _;
            Some(sqlx::sqlite::SqliteConnectOptions::from_str(url)?.create_if_missing(false))
        } else {
            None
        };
        Ok(Self {
            pool,
            sqlite_probe,
            probe: std::sync::Arc::default(),
        })
    }
}

async fn probe_sqlite_file(options: sqlx::sqlite::SqliteConnectOptions) -> bool {
    use sqlx::{ConnectOptions as _, Connection as _};
    let Ok(mut connection) = options.connect().await else {
        return false;
    };
    let answered = connection.execute(sqlx::raw_sql(PING)).await.is_ok();
    let _ = connection.close().await;
    answered
}

async fn probe_pool(pool: AnyPool) -> bool {
    pool.execute(sqlx::raw_sql(PING)).await.is_ok()
}

fn link_from_row(row: &AnyRow) -> Result<LinkRecord, StoreError> {
    let resource_types: String = row.try_get("resource_types")?;
    Ok(LinkRecord {
        id: row.try_get("id")?,
        patient_id: row.try_get("patient_id")?,
        label: row.try_get("label")?,
        mode: {
            let word: String = row.try_get("mode")?;
            LinkMode::parse(&word).ok_or(StoreError::Corrupt("unknown link mode"))?
        },
        resource_types: resource_types
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        passcode_hash: row.try_get("passcode_hash")?,
        attempts_remaining: row.try_get("attempts_remaining")?,
        attempts_in_flight: row.try_get("attempts_in_flight")?,
        attempt_lease_until: row.try_get("attempt_lease_until")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        jwe: row.try_get("jwe")?,
    })
}

fn parse_json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt("stored FHIR resource is not JSON"))
}

#[async_trait]
impl LinkStore for SqlStore {
    async fn close(&self) {
        self.pool.close().await;
    }

    /// Bounded by [`crate::readiness::PROBE_TIMEOUT`], one probe at a time.
    #[tracing::instrument(level = "debug", name = "store.ping", skip_all)]
    async fn ping(&self) -> bool {
        let pool = self.pool.clone();
        let sqlite = self.sqlite_probe.clone();
        self.probe
            .check(async move {
                match sqlite {
                    Some(options) => probe_sqlite_file(options).await,
                    None => probe_pool(pool).await,
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "store.put_patient", skip_all)]
    async fn put_patient(&self, record: &PatientRecord, now_ms: i64) -> Result<(), StoreError> {
        let patient_id = record.patient_id().to_owned();
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO patients (id, resource, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET resource = excluded.resource, updated_at = excluded.updated_at",
        )
        .bind(&patient_id)
        .bind(record.patient.to_string())
        .bind(now_ms)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM patient_resources WHERE patient_id = $1")
            .bind(&patient_id)
            .execute(&mut *transaction)
            .await?;
        for resource in &record.resources {
            let resource_type = resource["resourceType"].as_str().unwrap_or_default();
            let resource_id = resource["id"].as_str().unwrap_or_default();
            sqlx::query(
                "INSERT INTO patient_resources (patient_id, resource_type, resource_id, resource) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&patient_id)
            .bind(resource_type)
            .bind(resource_id)
            .bind(resource.to_string())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.patient", skip_all)]
    async fn patient(&self, patient_id: &str) -> Result<Option<PatientRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT resource FROM patients WHERE id = $1")
            .bind(patient_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let patient = parse_json(&row.try_get::<String, _>("resource")?)?;
        let rows = sqlx::query(
            "SELECT resource FROM patient_resources WHERE patient_id = $1 \
             ORDER BY resource_type, resource_id",
        )
        .bind(patient_id)
        .fetch_all(&self.pool)
        .await?;
        let resources = rows
            .iter()
            .map(|row| parse_json(&row.try_get::<String, _>("resource")?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(PatientRecord { patient, resources }))
    }

    #[tracing::instrument(level = "debug", name = "store.replace_tokens", skip_all)]
    async fn replace_tokens(
        &self,
        source: &str,
        tokens: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM api_tokens WHERE source = $1")
            .bind(source)
            .execute(&mut *transaction)
            .await?;
        for (token_hmac, patient_id) in tokens {
            sqlx::query(
                "INSERT INTO api_tokens (token_hmac, patient_id, source, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (token_hmac) DO UPDATE SET patient_id = excluded.patient_id, source = excluded.source",
            )
            .bind(token_hmac)
            .bind(patient_id)
            .bind(source)
            .bind(now_ms)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.patient_for_token", skip_all)]
    async fn patient_for_token(&self, token_hmac: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT patient_id FROM api_tokens WHERE token_hmac = $1")
            .bind(token_hmac)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("patient_id")).transpose()?)
    }

    #[tracing::instrument(level = "debug", name = "store.insert_link", skip_all)]
    async fn insert_link(
        &self,
        link: &LinkRecord,
        manifest_id_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO health_links (id, manifest_id_hash, patient_id, label, mode, flag, \
             resource_types, passcode_hash, attempts_remaining, created_at, expires_at, revoked_at, jwe) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&link.id)
        .bind(manifest_id_hash)
        .bind(&link.patient_id)
        .bind(&link.label)
        .bind(link.mode.as_str())
        .bind(link.mode.flag())
        .bind(link.resource_types.join(","))
        .bind(&link.passcode_hash)
        .bind(link.attempts_remaining)
        .bind(link.created_at)
        .bind(link.expires_at)
        .bind(link.revoked_at)
        .bind(&link.jwe)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.link_by_manifest", skip_all)]
    async fn link_by_manifest(
        &self,
        manifest_id_hash: &str,
    ) -> Result<Option<LinkRecord>, StoreError> {
        let query = format!("SELECT {LINK_COLUMNS} FROM health_links WHERE manifest_id_hash = $1");
        let row = sqlx::query(&query)
            .bind(manifest_id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", name = "store.link_by_id", skip_all)]
    async fn link_by_id(&self, link_id: &str) -> Result<Option<LinkRecord>, StoreError> {
        let query = format!("SELECT {LINK_COLUMNS} FROM health_links WHERE id = $1");
        let row = sqlx::query(&query)
            .bind(link_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", name = "store.links_of_patient", skip_all)]
    async fn links_of_patient(&self, patient_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        let query = format!(
            "SELECT {LINK_COLUMNS} FROM health_links WHERE patient_id = $1 ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&query)
            .bind(patient_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    #[tracing::instrument(level = "debug", name = "store.reserve_attempt", skip_all)]
    async fn reserve_attempt(
        &self,
        link_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<AttemptReservation, StoreError> {
        // Reservations whose lease has passed were lost with their process: they count as
        // spent, so the in-flight count starts again from this one. A lease is only ever
        // lengthened: a replica whose clock is behind must not cut another's short.
        let row = sqlx::query(
            "UPDATE health_links SET attempts_remaining = attempts_remaining - 1, \
             attempts_in_flight = CASE WHEN attempt_lease_until > $2 \
                 THEN attempts_in_flight + 1 ELSE 1 END, \
             attempt_lease_until = CASE WHEN attempt_lease_until > $3 \
                 THEN attempt_lease_until ELSE $3 END \
             WHERE id = $1 AND attempts_remaining > 0 AND revoked_at IS NULL \
             AND expires_at > $2 AND jwe IS NOT NULL \
             RETURNING attempts_remaining",
        )
        .bind(link_id)
        .bind(now_ms)
        .bind(lease_until_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(AttemptReservation::Reserved {
                remaining_after: row.try_get("attempts_remaining")?,
            });
        }
        // No attempt was free: pending verdicts may still give one back, or one came back
        // between the two statements (then the next try takes it).
        let pending = sqlx::query(
            "SELECT 1 AS pending FROM health_links WHERE id = $1 \
             AND (attempts_remaining > 0 \
                  OR (attempts_in_flight > 0 AND attempt_lease_until > $2)) \
             AND revoked_at IS NULL AND expires_at > $2 AND jwe IS NOT NULL",
        )
        .bind(link_id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(if pending.is_some() {
            AttemptReservation::Pending
        } else {
            AttemptReservation::Refused
        })
    }

    #[tracing::instrument(level = "debug", name = "store.settle_attempt", skip_all)]
    async fn settle_attempt(
        &self,
        link_id: &str,
        verdict: AttemptVerdict,
    ) -> Result<(), StoreError> {
        let given_back: i64 = match verdict {
            AttemptVerdict::Right => 1,
            AttemptVerdict::Wrong => 0,
        };
        sqlx::query(
            "UPDATE health_links SET attempts_remaining = attempts_remaining + $2, \
             attempts_in_flight = CASE WHEN attempts_in_flight > 0 \
                 THEN attempts_in_flight - 1 ELSE 0 END \
             WHERE id = $1",
        )
        .bind(link_id)
        .bind(given_back)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.revoke_link", skip_all)]
    async fn revoke_link(&self, link_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE health_links SET revoked_at = $1, jwe = NULL WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(link_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", name = "store.record_access", skip_all)]
    async fn record_access(&self, access: &AccessRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO link_accesses (link_id, at, recipient, action, outcome) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&access.link_id)
        .bind(access.at)
        .bind(&access.recipient)
        .bind(access.action.as_str())
        .bind(access.outcome.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.accesses_of_link", skip_all)]
    async fn accesses_of_link(&self, link_id: &str) -> Result<Vec<AccessRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT link_id, at, recipient, action, outcome FROM link_accesses WHERE link_id = $1 ORDER BY at, id",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AccessRecord {
                    link_id: row.try_get("link_id")?,
                    at: row.try_get("at")?,
                    recipient: row.try_get("recipient")?,
                    action: {
                        let word: String = row.try_get("action")?;
                        AccessAction::parse(&word)
                            .ok_or(StoreError::Corrupt("unknown access action"))?
                    },
                    outcome: {
                        let word: String = row.try_get("outcome")?;
                        AccessOutcome::parse(&word)
                            .ok_or(StoreError::Corrupt("unknown access outcome"))?
                    },
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", name = "store.purge", skip_all)]
    async fn purge(&self, now_ms: i64, retain_after_ms: i64) -> Result<(u64, u64), StoreError> {
        let files = sqlx::query(
            "UPDATE health_links SET jwe = NULL WHERE jwe IS NOT NULL AND (expires_at <= $1 OR revoked_at IS NOT NULL)",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM link_accesses WHERE link_id IN \
             (SELECT id FROM health_links WHERE expires_at < $1 OR revoked_at < $1)",
        )
        .bind(retain_after_ms)
        .execute(&mut *transaction)
        .await?;
        let links =
            sqlx::query("DELETE FROM health_links WHERE expires_at < $1 OR revoked_at < $1")
                .bind(retain_after_ms)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
        transaction.commit().await?;
        Ok((files, links))
    }
}

#[cfg(test)]
mod tests {
    use super::super::LinkState;
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const LEASE: i64 = 10_000;

    async fn store_with_link(attempts: i64) -> (SqlStore, tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = SqlStore::connect(&url).await.expect("store");
        let link = LinkRecord {
            id: "link".to_owned(),
            patient_id: "patient".to_owned(),
            label: None,
            mode: LinkMode::Passcode,
            resource_types: Vec::new(),
            passcode_hash: Some("hash".to_owned()),
            attempts_remaining: attempts,
            attempts_in_flight: 0,
            attempt_lease_until: 0,
            created_at: NOW,
            expires_at: NOW + 3_600_000,
            revoked_at: None,
            jwe: Some("jwe".to_owned()),
        };
        store.insert_link(&link, "manifest").await.expect("insert");
        (store, dir, link.id)
    }

    async fn state(store: &SqlStore, link_id: &str, now: i64) -> LinkState {
        let link = store
            .link_by_id(link_id)
            .await
            .expect("read")
            .expect("link");
        link.state(now)
    }

    #[tokio::test]
    async fn a_spent_budget_with_attempts_in_flight_is_pending_not_locked() {
        let (store, _dir, link) = store_with_link(1).await;
        let reserve = || store.reserve_attempt(&link, NOW, NOW + LEASE);
        assert_eq!(
            reserve().await.expect("reserve"),
            AttemptReservation::Reserved { remaining_after: 0 }
        );
        assert_eq!(
            reserve().await.expect("reserve"),
            AttemptReservation::Pending
        );
        assert_eq!(state(&store, &link, NOW).await, LinkState::Active);

        store
            .settle_attempt(&link, AttemptVerdict::Right)
            .await
            .expect("settle");
        assert_eq!(
            reserve().await.expect("reserve"),
            AttemptReservation::Reserved { remaining_after: 0 }
        );
        store
            .settle_attempt(&link, AttemptVerdict::Wrong)
            .await
            .expect("settle");
        assert_eq!(
            reserve().await.expect("reserve"),
            AttemptReservation::Refused
        );
        assert_eq!(state(&store, &link, NOW).await, LinkState::Locked);
    }

    #[tokio::test]
    async fn a_lost_reservation_counts_as_spent_once_its_lease_has_passed() {
        let (store, _dir, link) = store_with_link(2).await;
        // Reserved, and its process died: no verdict ever comes.
        store
            .reserve_attempt(&link, NOW, NOW + LEASE)
            .await
            .expect("reserve");
        let later = NOW + 2 * LEASE;
        // The next reservation starts the in-flight count afresh.
        assert_eq!(
            store
                .reserve_attempt(&link, later, later + LEASE)
                .await
                .expect("reserve"),
            AttemptReservation::Reserved { remaining_after: 0 }
        );
        store
            .settle_attempt(&link, AttemptVerdict::Wrong)
            .await
            .expect("settle");
        assert_eq!(
            store
                .reserve_attempt(&link, later, later + LEASE)
                .await
                .expect("reserve"),
            AttemptReservation::Refused,
            "nothing is in flight: the budget is spent"
        );
        assert_eq!(state(&store, &link, later).await, LinkState::Locked);
    }

    #[tokio::test]
    async fn a_reservation_whose_lease_passed_no_longer_holds_the_link_open() {
        let (store, _dir, link) = store_with_link(1).await;
        store
            .reserve_attempt(&link, NOW, NOW + LEASE)
            .await
            .expect("reserve");
        assert_eq!(
            state(&store, &link, NOW + LEASE - 1).await,
            LinkState::Active
        );
        assert_eq!(state(&store, &link, NOW + LEASE).await, LinkState::Locked);
        assert_eq!(
            store
                .reserve_attempt(&link, NOW + LEASE, NOW + 2 * LEASE)
                .await
                .expect("reserve"),
            AttemptReservation::Refused
        );
    }

    #[tokio::test]
    async fn a_lease_is_only_ever_lengthened() {
        let (store, _dir, link) = store_with_link(3).await;
        store
            .reserve_attempt(&link, NOW, NOW + LEASE)
            .await
            .expect("reserve");
        // A replica whose clock is behind reserves with an earlier lease end.
        store
            .reserve_attempt(&link, NOW - 5_000, NOW - 5_000 + LEASE)
            .await
            .expect("reserve");
        let record = store.link_by_id(&link).await.expect("read").expect("link");
        assert_eq!(record.attempt_lease_until, NOW + LEASE);
        assert_eq!(record.attempts_in_flight, 2);
    }
}
