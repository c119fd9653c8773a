//! `Idempotency-Key`: a retried `createHealthLink` returns the first answer instead of making a
//! second link.
//!
//! Every extra link is an extra disclosure, and a mobile client that lost the answer to a
//! timeout will retry. With an `Idempotency-Key` header, the first request with a key reserves
//! it, and a retry from the same caller within `--idempotency-window` gets the stored answer
//! (the same link, passcode and validity); a retry that arrives while the first is still running
//! waits for it. A failed creation releases the key, so a retry can try again.
//!
//! The stored answer holds the link URL and passcode, so it is never stored in the clear: it is
//! encrypted (a JWE, AES-256-GCM, like the shared files, but with `cty: application/json`, for it
//! is not FHIR) under a key derived from the secret key *and the caller's credential*
//! (`Bearer <token>`), and filed under an HMAC of both. A copy of Redis (or of this process's memory) alone opens
//! nothing, and one caller's key cannot reach another caller's answer. Stored through Redis when
//! `--redis-url` is set (so a retry may land on any replica), else in process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::crypto::PurposeKey;
use crate::crypto::jwe::{self, ContentType, ShlKey};
use crate::error::AppError;
use crate::issuer::DocumentReference;

/// Longest accepted key: Stripe's convention, plenty for a UUID.
pub(crate) const MAX_KEY_LEN: usize = 255;
/// Keys held at most in process; beyond, the oldest expire first.
const MAX_IN_PROCESS: usize = 100_000;
const PENDING: &str = "pending";

/// What a reservation found.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// Reserved for this request: create, then `complete` or `release`.
    Reserved,
    /// Another request with the same key is creating the link now.
    Pending,
    /// The first request's answer (encrypted).
    Done(String),
}

#[derive(Debug, thiserror::Error)]
#[error("idempotency store unavailable")]
pub struct StoreUnavailable;

#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    async fn reserve(&self, id: &str, ttl: Duration) -> Result<Slot, StoreUnavailable>;
    async fn complete(&self, id: &str, sealed: &str, ttl: Duration)
    -> Result<(), StoreUnavailable>;
    async fn release(&self, id: &str) -> Result<(), StoreUnavailable>;
}

/// The answer a retry gets back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredAnswer {
    pub(crate) document: DocumentReference,
    pub(crate) passcode: Option<String>,
}

/// Seals, files and finds answers for one gateway.
#[derive(Debug)]
pub struct Idempotency {
    store: Box<dyn IdempotencyStore>,
    key: PurposeKey,
    pub(crate) window: Duration,
    /// How long a retry waits for a first request still running.
    pub(crate) wait: Duration,
}

/// A validated `Idempotency-Key` header value.
pub(crate) fn parse_key(value: &str) -> Result<&str, AppError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(value)
    } else {
        Err(AppError::bad_user_input(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ))
    }
}

impl Idempotency {
    pub fn new(
        store: Box<dyn IdempotencyStore>,
        key: PurposeKey,
        window: Duration,
        wait: Duration,
    ) -> Self {
        Self {
            store,
            key,
            window,
            wait,
        }
    }

    /// The store id of (caller, key): an HMAC, so neither appears in the store.
    fn id(&self, credential: &str, idempotency_key: &str) -> String {
        let mut message = b"id\0".to_vec();
        message.extend_from_slice(credential.as_bytes());
        message.push(0);
        message.extend_from_slice(idempotency_key.as_bytes());
        hex::encode(self.key.mac(&message))
    }

    fn sealing_key(&self, credential: &str, idempotency_key: &str) -> ShlKey {
        let mut message = b"seal\0".to_vec();
        message.extend_from_slice(credential.as_bytes());
        message.push(0);
        message.extend_from_slice(idempotency_key.as_bytes());
        ShlKey::from_bytes(self.key.mac(&message))
    }

    /// Reserves the key, or returns the first answer (waiting for it while it is pending).
    pub(crate) async fn begin(
        &self,
        credential: &str,
        idempotency_key: &str,
    ) -> Result<Option<StoredAnswer>, AppError> {
        let id = self.id(credential, idempotency_key);
        let deadline = Instant::now() + self.wait;
        loop {
            match self
                .store
                .reserve(&id, self.window)
                .await
                .map_err(|_| AppError::overloaded())?
            {
                Slot::Reserved => return Ok(None),
                Slot::Done(sealed) => {
                    return self.open(credential, idempotency_key, &sealed).map(Some);
                }
                Slot::Pending if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Slot::Pending => return Err(AppError::rate_limited(1)),
            }
        }
    }

    /// Stores the answer of a reserved key.
    pub(crate) async fn complete(
        &self,
        credential: &str,
        idempotency_key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), AppError> {
        let sealed = self.seal(credential, idempotency_key, answer)?;
        let id = self.id(credential, idempotency_key);
        self.store
            .complete(&id, &sealed, self.window)
            .await
            .map_err(|_| AppError::overloaded())
    }

    /// Frees a reserved key after a failed creation, so a retry can create.
    pub(crate) async fn release(&self, credential: &str, idempotency_key: &str) {
        let id = self.id(credential, idempotency_key);
        if self.store.release(&id).await.is_err() {
            tracing::warn!("idempotency key could not be released; it expires with the window");
        }
    }

    fn seal(
        &self,
        credential: &str,
        idempotency_key: &str,
        answer: &StoredAnswer,
    ) -> Result<String, AppError> {
        let plaintext = serde_json::to_vec(answer)
            .map_err(|_| AppError::internal_at("serializing an idempotent answer"))?;
        jwe::encrypt(
            &self.sealing_key(credential, idempotency_key),
            ContentType::Json,
            &plaintext,
        )
        .map_err(|_| AppError::internal_at("sealing an idempotent answer"))
    }

    /// Opens a sealed answer whatever its `cty`: answers sealed before they were labelled
    /// `application/json` said `application/fhir+json`, and live as long as the window (in
    /// Redis, across a rolling upgrade).
    fn open(
        &self,
        credential: &str,
        idempotency_key: &str,
        sealed: &str,
    ) -> Result<StoredAnswer, AppError> {
        let plaintext = jwe::decrypt(&self.sealing_key(credential, idempotency_key), sealed)
            .map_err(|_| AppError::internal_at("opening a sealed idempotent answer"))?;
        serde_json::from_slice(&plaintext)
            .map_err(|_| AppError::internal_at("reading an opened idempotent answer"))
    }
}

/// One replica's memory.
#[derive(Debug, Default)]
pub struct InProcessStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl InProcessStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl IdempotencyStore for InProcessStore {
    async fn reserve(&self, id: &str, ttl: Duration) -> Result<Slot, StoreUnavailable> {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= MAX_IN_PROCESS {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        match entries.get(id) {
            Some((value, expires)) if *expires > now => Ok(if value == PENDING {
                Slot::Pending
            } else {
                Slot::Done(value.clone())
            }),
            _ if entries.len() >= MAX_IN_PROCESS => Err(StoreUnavailable),
            _ => {
                entries.insert(id.to_owned(), (PENDING.to_owned(), now + ttl));
                Ok(Slot::Reserved)
            }
        }
    }

    async fn complete(
        &self,
        id: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreUnavailable> {
        self.entries()
            .insert(id.to_owned(), (sealed.to_owned(), Instant::now() + ttl));
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<(), StoreUnavailable> {
        self.entries().remove(id);
        Ok(())
    }
}

/// Shared by every replica through Redis: `SET NX` reserves atomically.
#[derive(Debug)]
pub(crate) struct RedisStore {
    client: redis::Client,
    /// Connected on first use, so the gateway starts (and recovers) while Redis restarts.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    /// Only a malformed URL is an error here; reachability is checked on use.
    pub(crate) fn new(
        url: &str,
        prefix: String,
        timeout: Duration,
    ) -> Result<Self, StoreUnavailable> {
        Ok(Self {
            client: redis::Client::open(url).map_err(|_| StoreUnavailable)?,
            connection: tokio::sync::OnceCell::new(),
            prefix: format!("{prefix}idempotency:"),
            timeout,
        })
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        command: redis::Cmd,
    ) -> Result<T, StoreUnavailable> {
        let connect = || async {
            tokio::time::timeout(self.timeout, self.client.get_connection_manager())
                .await
                .map_err(|_| StoreUnavailable)?
                .map_err(|_| StoreUnavailable)
        };
        let mut connection = self.connection.get_or_try_init(connect).await?.clone();
        tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection))
            .await
            .map_err(|_| StoreUnavailable)?
            .map_err(|_| StoreUnavailable)
    }
}

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn reserve(&self, id: &str, ttl: Duration) -> Result<Slot, StoreUnavailable> {
        let key = format!("{}{id}", self.prefix);
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(PENDING)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        let reserved: Option<String> = self.run(set).await?;
        if reserved.is_some() {
            return Ok(Slot::Reserved);
        }
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let value: Option<String> = self.run(get).await?;
        Ok(match value {
            Some(value) if value == PENDING => Slot::Pending,
            Some(value) => Slot::Done(value),
            // Expired between the two calls: the caller asks again.
            None => Slot::Pending,
        })
    }

    async fn complete(
        &self,
        id: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreUnavailable> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{}{id}", self.prefix))
            .arg(sealed)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.run::<()>(set).await
    }

    async fn release(&self, id: &str) -> Result<(), StoreUnavailable> {
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}{id}", self.prefix));
        self.run::<()>(del).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idempotency() -> Idempotency {
        let keys = crate::crypto::Keys::derive(&secrecy::SecretBox::new(Box::new(vec![3u8; 32])));
        Idempotency::new(
            Box::new(InProcessStore::default()),
            keys.idempotency,
            Duration::from_secs(60),
            Duration::from_millis(200),
        )
    }

    fn answer() -> StoredAnswer {
        StoredAnswer {
            document: serde_json::from_value(serde_json::json!({"id": "link-1"}))
                .expect("document"),
            passcode: Some("743730".to_owned()),
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_only_from_the_same_caller() {
        let idempotency = idempotency();
        assert!(
            idempotency
                .begin("token-a", "k1")
                .await
                .expect("reserve")
                .is_none()
        );
        idempotency
            .complete("token-a", "k1", &answer())
            .await
            .expect("complete");

        let replayed = idempotency
            .begin("token-a", "k1")
            .await
            .expect("replay")
            .expect("stored");
        assert_eq!(replayed.passcode.as_deref(), Some("743730"));
        assert!(
            idempotency
                .begin("token-b", "k1")
                .await
                .expect("other caller")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_pending_key_makes_a_retry_wait_then_give_up() {
        let idempotency = idempotency();
        assert!(
            idempotency
                .begin("t", "k")
                .await
                .expect("reserve")
                .is_none()
        );
        let started = Instant::now();
        let error = idempotency
            .begin("t", "k")
            .await
            .expect_err("still pending");
        assert_eq!(error.code(), crate::error::ErrorCode::RateLimited);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_released_key_can_be_reserved_again() {
        let idempotency = idempotency();
        assert!(
            idempotency
                .begin("t", "k")
                .await
                .expect("reserve")
                .is_none()
        );
        idempotency.release("t", "k").await;
        assert!(idempotency.begin("t", "k").await.expect("again").is_none());
    }

    #[test]
    fn sealed_answers_hold_no_plaintext_and_open_only_for_their_caller() {
        let idempotency = idempotency();
        let sealed = idempotency.seal("t", "k", &answer()).expect("seal");
        assert!(!sealed.contains("743730") && !sealed.contains("link-1"));
        assert!(idempotency.open("t", "k", &sealed).is_ok());
        assert!(idempotency.open("u", "k", &sealed).is_err());
    }

    #[test]
    fn sealed_answers_are_labelled_json() {
        use base64::Engine as _;
        let sealed = idempotency().seal("t", "k", &answer()).expect("seal");
        let header = sealed.split('.').next().expect("a header");
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .expect("base64url"),
            br#"{"alg":"dir","enc":"A256GCM","cty":"application/json"}"#
        );
    }

    /// Sealed by the gateway before answers had their own `cty` (same secret, caller and key
    /// as [`idempotency`] and this test): stored answers outlive an upgrade by up to the window.
    const SEALED_WITH_FHIR_CTY: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwiY3R5IjoiYXBwbGljYXRpb24vZmhpcitqc29uIn0..PHHCzYsxowV65dot.Xr1jx-P12SUW9RuUSBMsRCSeLKsJS1XSaW8Z_eqJBPU76_ORthfrWdE6rplslXQVOJsLbZc4I_vYH4T5a6v--jHPDeDhzuONCvCMq_DfrOUP6aJcXvw7HCQfAPxlcU2BSqFGq2nHXJglL8X9MecqottwlICTSGyue4yOH_3w7D_yYkqrleHSsMhulQ8NBQYZtt-mg5YT-rIpJfbl2n-FAEh_Dw3eO6bK0vHhpWdm4ZH2jUM9dA5PqoZegx8QEO8K.MEu_dfbs_2MdFp-Qjf9dAw";

    #[test]
    fn answers_sealed_with_the_old_fhir_cty_still_open() {
        let opened = idempotency()
            .open("t", "k", SEALED_WITH_FHIR_CTY)
            .expect("opens");
        assert_eq!(opened.passcode.as_deref(), Some("743730"));
        assert_eq!(opened.document.id.as_str(), "link-1");
    }

    #[test]
    fn keys_are_bounded_printable_ascii() {
        assert!(parse_key("8b0e7c1a-5d2f-4c1e-9a7b-1f2e3d4c5b6a").is_ok());
        for bad in ["", "with space", "tab\t", "é", &"x".repeat(256)] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }
}
