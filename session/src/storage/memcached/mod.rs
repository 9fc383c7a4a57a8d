//! Sessions in Memcached, over one or several servers.
//!
//! Spoken to by a multiplexed meta-protocol client of this crate's own
//! ([`memcached_client`](super::memcached_client)): non-blocking on tokio,
//! every request to a server down one connection, keys spread over the
//! servers by the `memcache` crate's rendezvous hashing (a consistent
//! hashing: adding or removing a server moves only that server's share of
//! the keys), and one deadline per exchange.
//!
//! # Record layout
//!
//! One item per session under `prefix + base64url(SHA-256(id))`, holding
//! the record as JSON: `{"created":…,"updated":…,"own_max_age":…,"session":{…}}`.
//! New records are written with `add` (insert-if-absent). A load keeps the
//! item's CAS; a save then writes with that CAS in one round trip when
//! nothing was written since the load (the usual case), and otherwise
//! merges the request's changes into the stored record through a
//! `gets`/`cas` loop (at most sixteen tries, with a short random pause
//! between them), so concurrent changes to different keys are both kept
//! and a deleted record is never written again.

pub(crate) mod client;
pub(crate) mod merge;

use self::merge::CasSave;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use self::client::MemcachedClient;
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::save_queue::SaveQueue;
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, ID_TRIES, StoreTimes,
    create_with_fresh_id, store_key, timed,
};
use crate::storage::{Loaded, ServerStorage, StorageContext};

/// The longest key prefix: the key adds 43 characters, and Memcached keys
/// are at most 250 bytes.
const MAX_PREFIX_BYTES: usize = 200;
/// Memcached's default item size limit (`-I 1m`), less room for the item
/// header: the layer's limit on every server-side store.
const DEFAULT_MAX_ITEM_BYTES: usize = crate::record::MAX_RECORD_BYTES;

/// Keeps sessions in Memcached under random ids; the cookie holds only the
/// id. Several servers share the keys by consistent hashing.
///
/// Memcached may evict items under memory pressure: a session can end
/// early when the servers are full. Size them for your sessions, or use
/// Redis where sessions must not be lost.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use typed_sessions::{MemcachedStorage, SessionLayer};
///
/// let storage = MemcachedStorage::connect(["10.0.0.1:11211", "10.0.0.2:11211"]).await?;
/// let layer = SessionLayer::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedStorage {
    client: Arc<MemcachedClient>,
    prefix: String,
    times: StoreTimes,
    max_item_bytes: usize,
    saves: Arc<SaveQueue>,
}

impl MemcachedStorage {
    /// Connects to the servers `HOST:PORT` and checks that each answers,
    /// within two seconds; commands time out after one second. Every
    /// request to a server goes down one connection, redialed when it
    /// fails; each connection is driven by tasks on the tokio runtime that
    /// dialed it, so connect on the runtime that serves the app.
    pub async fn connect<A: AsRef<str>>(
        servers: impl IntoIterator<Item = A>,
    ) -> Result<Self, StorageError> {
        let servers: Vec<String> = servers.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if servers.is_empty() {
            return Err(ConfigError::StorageSetting {
                setting: "the Memcached servers",
                problem: "no server given; pass at least one HOST:PORT".into(),
            }
            .into());
        }
        let client =
            MemcachedClient::new(&servers, DEFAULT_CONNECT_TIMEOUT, DEFAULT_COMMAND_TIMEOUT);
        // Ask every server once so an unreachable one fails here, at start-up.
        timed(DEFAULT_CONNECT_TIMEOUT * 2, client.check()).await?;
        Ok(Self {
            client: Arc::new(client),
            prefix: DEFAULT_PREFIX.to_owned(),
            times: StoreTimes::default(),
            max_item_bytes: DEFAULT_MAX_ITEM_BYTES,
            saves: Arc::default(),
        })
    }

    /// The prefix of item keys, at most 200 bytes of printable ASCII so keys
    /// stay within Memcached's 250-byte limit. Default: `session:`. Any other
    /// prefix is refused when the layer is built.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long the item of a session without `max_age` lives after its
    /// last write, in whole seconds. Default: one day. Zero is refused when
    /// the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.times.default_ttl = ttl;
        self
    }

    /// The largest record sent to the servers, in bytes; a larger session
    /// fails to save with a clear error before anything is sent. Default:
    /// just under 1 MiB, Memcached's default item size (`-I`), which is
    /// also the layer's limit on every store
    /// ([`MAX_RECORD_BYTES`](crate::storage::MAX_RECORD_BYTES)): set it only to
    /// match servers started with a smaller `-I`.
    #[must_use]
    pub fn with_max_item_bytes(mut self, bytes: usize) -> Self {
        self.max_item_bytes = bytes;
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

    /// The client, for a storage of another format sharing it.
    #[cfg(feature = "aiohttp-compat")]
    pub(crate) fn client(&self) -> &Arc<MemcachedClient> {
        &self.client
    }

    /// The item's lifetime in seconds; the client sends it as memcached
    /// reads it (relative up to 30 days, an absolute time beyond, never 0).
    fn ttl(&self, cx: &StorageContext<'_>) -> u64 {
        cx.record_ttl(self.times.default_ttl.as_secs())
    }

    fn encode(&self, record: &SessionRecord) -> Result<Vec<u8>, StorageError> {
        let bytes = serde_json::to_vec(record).map_err(StorageError::Serialize)?;
        if bytes.len() > self.max_item_bytes {
            return Err(StorageError::TooLarge {
                size: bytes.len(),
                limit: self.max_item_bytes,
            });
        }
        Ok(bytes)
    }

    /// The revocation marks of [`MemcachedStorage::revoke_user`] here.
    fn marks(&self) -> MemcachedMarks<'_> {
        MemcachedMarks {
            client: &self.client,
            prefix: self.prefix.clone(),
            timeout: self.times.command_timeout,
        }
    }

    /// The stored record and its CAS, or `None` when there is none.
    async fn fetch(&self, key: &str) -> Result<Option<(Option<SessionRecord>, u64)>, StorageError> {
        let item = timed(self.times.command_timeout, self.client.get(key)).await?;
        Ok(item.map(|(value, cas)| (decode(&value), cas)))
    }
}

/// Revocation marks in Memcached (see [`crate::revocation::Marks`]): one
/// item per user (and kind) ever revoked, under `prefix`, `r:` and the
/// url-safe base64 of SHA-256 of the user and kind, kept as long as
/// Memcached keeps anything.
pub(crate) struct MemcachedMarks<'a> {
    pub(crate) client: &'a MemcachedClient,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
}

/// How many bytes a mark's key adds to its prefix: `r:` and 43.
#[cfg(feature = "aiohttp-compat")]
pub(crate) const MARK_KEY_BYTES: usize = 45;

impl MemcachedMarks<'_> {
    fn key(&self, scope: &str) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use sha2::{Digest, Sha256};

        let mut key = format!("{}r:", self.prefix);
        URL_SAFE_NO_PAD.encode_string(Sha256::digest(scope.as_bytes()), &mut key);
        key
    }

    /// The mark under `key` and its CAS, if Memcached holds one; a value
    /// that is not a number reads as 0 (the next revocation writes over
    /// it).
    async fn get(&self, key: &str) -> Result<Option<(u64, u64)>, StorageError> {
        let item = timed(self.timeout, self.client.get(key)).await?;
        Ok(item.map(|(value, cas)| {
            let mark = std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            (mark, cas)
        }))
    }
}

impl crate::revocation::Marks for MemcachedMarks<'_> {
    async fn current(&self, scope: &str) -> Result<u64, StorageError> {
        Ok(self
            .get(&self.key(scope))
            .await?
            .map_or(0, |(mark, _)| mark))
    }

    /// Raises the mark by `add` where there is none, else by
    /// compare-and-swap, trying again while other revocations of the same
    /// user change it.
    async fn raise(&self, scope: &str) -> Result<(), StorageError> {
        let key = self.key(scope);
        for _ in 0..ID_TRIES {
            let now = crate::revocation::micros_now();
            let ttl = crate::record::MAX_STORE_TTL;
            let raised = match self.get(&key).await? {
                None => {
                    timed(
                        self.timeout,
                        self.client.add(&key, now.to_string().as_bytes(), ttl),
                    )
                    .await?
                }
                Some((mark, cas)) => {
                    let raised = mark.saturating_add(1).max(now);
                    timed(
                        self.timeout,
                        self.client
                            .compare_and_set(&key, raised.to_string().as_bytes(), ttl, cas),
                    )
                    .await?
                        == Some(true)
                }
            };
            if raised {
                return Ok(());
            }
        }
        Err(StorageError::unavailable(
            "a Memcached revocation mark kept changing while it was raised",
        ))
    }
}

/// The record in a stored value; `None` for a value that is not one.
pub(crate) fn decode(bytes: &[u8]) -> Option<SessionRecord> {
    serde_json::from_slice(bytes).ok()
}

impl fmt::Debug for MemcachedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStorage")
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.times.default_ttl)
            .field("max_item_bytes", &self.max_item_bytes)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for MemcachedStorage {
    async fn load(
        &self,
        id: &SessionId,
        _cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        let key = store_key(&self.prefix, id);
        let Some((record, cas)) = self.fetch(&key).await? else {
            return Ok(None);
        };
        let Some(mut record) = record else {
            tracing::warn!("malformed session record in Memcached; starting a new session");
            return Ok(None);
        };
        if crate::revocation::is_revoked(&self.marks(), &mut record).await? {
            return Ok(None);
        }
        Ok(Some(Loaded::new(record).with_version(Some(cas))))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let bound = crate::revocation::with_binding(&self.marks(), record).await?;
        let bytes = self.encode(&bound)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id("Memcached", |id| {
            let key = store_key(&self.prefix, &id);
            let bytes = &bytes;
            async move {
                timed(
                    self.times.command_timeout,
                    self.client.add(&key, bytes, ttl),
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

    async fn delete(&self, id: &SessionId, _cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let key = store_key(&self.prefix, id);
        timed(self.times.command_timeout, self.client.delete(&key)).await
    }

    /// Marks a revocation of the user (and kind): raises the user's mark
    /// to one more than it was, and at least to now in microseconds (so a
    /// mark Memcached evicted and this one writes again is above every
    /// mark a session could carry). A session carries the mark of when it
    /// was bound (0 before any revocation), and a load of a session bound
    /// to the user reads the mark (one more round trip than a session bound
    /// to no one) and refuses one that carries another: a revoked one, or,
    /// after an eviction, one bound after a revocation (its user signs in
    /// again). Only sessions bound before the user's first revocation would
    /// open again if the mark were evicted. The mark is read in the save
    /// that binds a session, so a revocation racing a login is either
    /// before it (the login lives) or after it (the new session is over); a
    /// renewal, and a save of a session loaded before the revocation, carry
    /// the mark it was bound with. Memcached cannot list a user's sessions,
    /// so it cannot count them either: `Ok(None)`.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        use crate::revocation::Marks as _;

        self.marks()
            .raise(&crate::kind::user_scope(cx.kind, user))
            .await?;
        Ok(None)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix.len() > MAX_PREFIX_BYTES
            || !self.prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::StorageSetting {
                setting: "the Memcached key prefix",
                problem: format!(
                    "{:?} must be at most {MAX_PREFIX_BYTES} bytes of printable ASCII without spaces",
                    self.prefix
                ),
            });
        }
        self.times.validate(
            "the Memcached store's default TTL",
            "the Memcached command timeout",
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
        let key = store_key(&self.prefix, id);
        let save = CasSave {
            client: &self.client,
            key: &key,
            ttl: self.ttl(cx),
            timeout: self.times.command_timeout,
            version: cx.version,
        };
        // A stored record that no longer decodes is replaced whole.
        let base = |stored: &[u8]| Some(decode(stored).unwrap_or_else(|| record.clone()));
        save.merge(record, changes, |record| self.encode(record), base)
            .await
    }
}
