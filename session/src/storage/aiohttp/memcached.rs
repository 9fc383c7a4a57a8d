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
//! As the native [`AiohttpMemcachedStorage`](crate::MemcachedStorage): new items
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
use crate::storage::memcached::client::MemcachedClient;
use crate::storage::memcached::merge::CasSave;
use crate::storage::memcached::{MARK_KEY_BYTES, MemcachedMarks};
use crate::storage::save_queue::SaveQueue;
use crate::storage::server::{StoreTimes, create_with_fresh_id_from, timed};
use crate::storage::{Loaded, ServerStorage, StorageContext};

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
/// let storage = aiohttp::AiohttpMemcachedStorage::connect("127.0.0.1:11211").await?;
/// let layer = SessionLayer::builder(storage)
///     .with_cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AiohttpMemcachedStorage {
    client: Arc<MemcachedClient>,
    times: StoreTimes,
    saves: Arc<SaveQueue>,
}

impl AiohttpMemcachedStorage {
    /// Connects to the server `HOST:PORT` (the one the Python side uses)
    /// and checks that it answers, as [`crate::MemcachedStorage::connect`]
    /// does.
    pub async fn connect(server: &str) -> Result<Self, StorageError> {
        let native = crate::MemcachedStorage::connect([server]).await?;
        Ok(Self {
            client: native.client().clone(),
            times: StoreTimes::default(),
            saves: Arc::default(),
        })
    }

    /// The TTL of a session without a max age, in whole seconds. Default:
    /// one day. Zero is refused when the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.times.default_ttl = ttl;
        self
    }

    /// How long one command may take before the request gets a 503.
    /// Default: one second. Zero is refused when the layer is built.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.times.command_timeout = timeout;
        // A connection is given up as dead only once a request has waited
        // this long, not the default second.
        self.client.set_io_timeout(timeout);
        self
    }

    /// The item's lifetime in seconds (the client sends it as memcached
    /// reads it).
    fn ttl(&self, cx: &StorageContext<'_>) -> u64 {
        cx.record_ttl(self.times.default_ttl.as_secs())
    }

    /// The revocation marks of [`ServerStorage::revoke_user`] here, beside
    /// the records: `<cookie name>_r:…` (the cookie name is checked with the
    /// record keys, for room for this longer one).
    fn marks(&self, cx: &StorageContext<'_>) -> MemcachedMarks<'_> {
        MemcachedMarks {
            client: &self.client,
            prefix: format!("{}_", cx.cookie_name),
            timeout: self.times.command_timeout,
        }
    }

    /// The stored value and its CAS, or `None` when there is none.
    async fn fetch(&self, key: &str) -> Result<Option<(bytes::Bytes, u64)>, StorageError> {
        timed(self.times.command_timeout, self.client.get(key)).await
    }
}

/// aiohttp_session's key, refused when Memcached would refuse it.
fn key(cx: &StorageContext<'_>, id: &SessionId) -> Result<String, StorageError> {
    let key = super::record_key(cx, id);
    // The longest key is a revocation mark's: the cookie name, `_` and 45.
    let longest = cx.cookie_name.len() + 1 + MARK_KEY_BYTES;
    if longest > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::StorageSetting {
            setting: "the cookie name",
            problem: format!(
                "Memcached keys are the cookie name, `_` and up to 45 characters, at most \
                 {MAX_KEY_BYTES} bytes of printable ASCII; {:?} is too long",
                cx.cookie_name
            ),
        }
        .into());
    }
    Ok(key)
}

impl fmt::Debug for AiohttpMemcachedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aiohttp::AiohttpMemcachedStorage")
            .field("default_ttl", &self.times.default_ttl)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for AiohttpMemcachedStorage {
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
        let Some(mut record) = decode(&value) else {
            if value[..] != b"{}"[..] {
                tracing::warn!(
                    "malformed aiohttp_session record in Memcached; starting a new session"
                );
            }
            return Ok(None);
        };
        if crate::revocation::is_revoked(&self.marks(cx), &mut record).await? {
            return Ok(None);
        }
        Ok(Some(Loaded::new(record).with_version(Some(cas))))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let bound = crate::revocation::with_binding(&self.marks(cx), record).await?;
        let value = encode(&bound)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id_from("Memcached", SessionId::generate_uuid4, |id| {
            let key = key(cx, &id);
            let value = &value;
            async move {
                let key = key?;
                timed(
                    self.times.command_timeout,
                    self.client.add(&key, value, ttl),
                )
                .await
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
                self.times.command_timeout,
                self.merge_save(id, record, changes, cx),
            )
            .await
    }

    /// Deletes the record, and answers `Ok(false)` for one a revocation of
    /// its user ended (see [`ServerStorage::delete`]): it reads the record
    /// before it deletes it, and the mark of its user if it is bound.
    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let key = key(cx, id)?;
        let value = self.fetch(&key).await?;
        let deleted = timed(self.times.command_timeout, self.client.delete(&key)).await?;
        let Some(mut record) = value.and_then(|(value, _)| decode(&value)) else {
            return Ok(false);
        };
        Ok(deleted && !crate::revocation::is_revoked(&self.marks(cx), &mut record).await?)
    }

    /// Marks a revocation of the user (and kind) as
    /// [`MemcachedStorage::revoke_user`](crate::MemcachedStorage) does,
    /// under `<cookie name>_r:` and the base64url of SHA-256 of the user and
    /// kind; a load of a session bound to the user reads it and refuses a
    /// session bound before it. Python never reads the item; a write by
    /// Python drops the binding (see `MIGRATING.md`). `Ok(None)`: the store
    /// cannot count a user's sessions.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        use crate::revocation::Marks as _;

        self.marks(cx)
            .raise(&crate::kind::user_scope(cx.kind, user))
            .await?;
        Ok(None)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.times.validate(
            "the aiohttp Memcached store's default TTL",
            "the aiohttp Memcached command timeout",
        )
    }
}

impl AiohttpMemcachedStorage {
    /// The save [`ServerStorage::update`] makes, in its session's turn.
    async fn merge_save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        let key = key(cx, id)?;
        let save = CasSave {
            client: &self.client,
            key: &key,
            ttl: self.ttl(cx),
            timeout: self.times.command_timeout,
            version: cx.version,
        };
        // `{}` is a session Python invalidated: it stays ended.
        save.merge(record, changes, encode, decode).await
    }
}
