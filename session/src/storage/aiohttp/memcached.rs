//! aiohttp_session's `MemcachedStorage` records, read and written from
//! Rust.
//!
//! # Record
//!
//! One item per session under `<cookie name>_<id>`, the value the JSON of
//! `{"created": ..., "session": {...}}` (see the [module](super)), flags 0.
//! The expiry follows aiohttp_session's rule: relative seconds up to 30
//! days, an absolute Unix time beyond (the client converts); where Python,
//! without a max age, writes items that never expire (`exptime` 0), this
//! storage gives them its default TTL.
//!
//! # Guarantees, and their limits
//!
//! As the native [`MemcachedStorage`](crate::MemcachedStorage): new items
//! with `add`; a save writes with the CAS of its load in one round trip
//! when nothing was written since, else merges its changes through a
//! `gets`/`cas` loop; a record deleted or invalidated (`{}`) meanwhile is
//! never written again. Python's saves are plain `set`s of the whole
//! session: an overlapping Python request may undo a Rust request's change,
//! and recreates a record deleted while it ran.
//!
//! aiohttp_session speaks to one server (`aiomcache.Client(host, port)`):
//! give this storage that one server too, since with several the keys
//! would be spread where Python does not look.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{decode, encode};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::memcached_client::MemcachedClient;
use crate::storage::save_queue::SaveQueue;
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_TTL, check_positive, check_timeout, create_with_fresh_id_from,
    timed,
};
use crate::storage::{Loaded, ServerStorage, StorageContext};

/// Merge attempts before a save gives up with a 503.
const CAS_TRIES: u32 = 16;
/// Memcached's longest key.
const MAX_KEY_BYTES: usize = 250;

/// Keeps sessions in Memcached as aiohttp_session's `MemcachedStorage`
/// does, so a Python service and this one share them: the cookie holds a
/// uuid4 hex id, the item is `{"created": ..., "session": {...}}` under
/// `<cookie name>_<id>`.
///
/// Set the layer's cookie name to the Python side's (default
/// [`DEFAULT_COOKIE_NAME`](super::DEFAULT_COOKIE_NAME)).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use typed_sessions::{SessionLayer, aiohttp};
///
/// let storage = aiohttp::MemcachedStorage::connect("127.0.0.1:11211").await?;
/// let layer = SessionLayer::builder(storage)
///     .cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedStorage {
    client: Arc<MemcachedClient>,
    default_ttl: Duration,
    command_timeout: Duration,
    saves: Arc<SaveQueue>,
}

impl MemcachedStorage {
    /// Connects to the server `HOST:PORT` (the one the Python side uses)
    /// and checks that it answers, as [`crate::MemcachedStorage::connect`]
    /// does.
    pub async fn connect(server: &str) -> Result<Self, StorageError> {
        let native = crate::MemcachedStorage::connect([server]).await?;
        Ok(Self {
            client: native.client().clone(),
            default_ttl: DEFAULT_TTL,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            saves: Arc::default(),
        })
    }

    /// The TTL of a session without a max age, in whole seconds. Default:
    /// one day. Zero is refused when the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long one command may take before the request gets a 503.
    /// Default: one second. Zero is refused when the layer is built.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        // A connection is given up as dead only once a request has waited
        // this long, not the default second.
        self.client.set_io_timeout(timeout);
        self
    }

    /// The item's lifetime in seconds (the client sends it as memcached
    /// reads it).
    fn ttl(&self, cx: &StorageContext<'_>) -> u64 {
        cx.record_ttl(self.default_ttl.as_secs())
    }

    /// The stored value and its CAS, or `None` when there is none.
    async fn fetch(&self, key: &str) -> Result<Option<(bytes::Bytes, u64)>, StorageError> {
        timed(self.command_timeout, self.client.get(key)).await
    }
}

/// aiohttp_session's key, refused when Memcached would refuse it.
fn key(cx: &StorageContext<'_>, id: &SessionId) -> Result<String, StorageError> {
    let key = super::record_key(cx, id);
    if key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::StorageSetting {
            setting: "the cookie name",
            problem: format!(
                "Memcached keys are the cookie name, `_` and 32 characters, at most \
                 {MAX_KEY_BYTES} bytes of printable ASCII; {:?} is too long",
                cx.cookie_name
            ),
        }
        .into());
    }
    Ok(key)
}

impl fmt::Debug for MemcachedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aiohttp::MemcachedStorage")
            .field("default_ttl", &self.default_ttl)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for MemcachedStorage {
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId> {
        SessionId::parse_uuid4_hex(cookie_value)
    }

    async fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        let Some((value, cas)) = self.fetch(&key(cx, id)?).await? else {
            return Ok(None);
        };
        let record = decode(&value);
        if record.is_none() && value[..] != b"{}"[..] {
            tracing::warn!("malformed aiohttp_session record in Memcached; starting a new session");
        }
        Ok(record.map(|record| Loaded::new(record).with_version(Some(cas))))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let value = encode(record)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id_from("Memcached", SessionId::generate_uuid4, |id| {
            let key = key(cx, &id);
            let value = &value;
            async move {
                let key = key?;
                timed(self.command_timeout, self.client.add(&key, value, ttl)).await
            }
        })
        .await
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        // One save of a session at a time in this process: its merges by
        // compare-and-swap then meet only other processes' writes.
        self.saves
            .run(
                id,
                self.command_timeout,
                self.merge_save(id, record, changes, cx),
            )
            .await
    }

    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        timed(self.command_timeout, self.client.delete(&key(cx, id)?)).await
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_positive(
            "the aiohttp Memcached store's default TTL",
            self.default_ttl,
        )?;
        check_timeout(
            "the aiohttp Memcached command timeout",
            self.command_timeout,
        )
    }
}

impl MemcachedStorage {
    /// The save [`ServerStorage::update`] makes, in its session's turn.
    async fn merge_save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        let key = key(cx, id)?;
        let ttl = self.ttl(cx);
        // Nothing written since this request loaded the session: its record
        // is the stored one plus this request's changes.
        if let Some(cas) = cx.version {
            let value = encode(record)?;
            let request = self.client.compare_and_set(&key, &value, ttl, cas);
            if let Some(saved) = timed(self.command_timeout, request).await? {
                return Ok(saved);
            }
            tracing::debug!("aiohttp_session record changed since loaded; merging");
        }
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                let pause = rand::random_range(0..=attempt.min(8) * 2);
                tokio::time::sleep(Duration::from_millis(u64::from(pause))).await;
            }
            let Some((stored_value, cas)) = self.fetch(&key).await? else {
                return Ok(false);
            };
            // `{}` is a session Python invalidated: it stays ended.
            let Some(mut stored) = decode(&stored_value) else {
                return Ok(false);
            };
            stored.merge(record, changes);
            let value = encode(&stored)?;
            let request = self.client.compare_and_set(&key, &value, ttl, cas);
            if let Some(saved) = timed(self.command_timeout, request).await? {
                return Ok(saved);
            }
            tracing::debug!("concurrent write to an aiohttp_session record; merging again");
        }
        Err(StorageError::unavailable(format!(
            "session record changed under {CAS_TRIES} merge attempts in a row"
        )))
    }
}
