//! aiohttp_session's `RedisStorage` records, read and written from Rust.
//!
//! # Record
//!
//! One Redis string per session under `<cookie name>_<id>` (so
//! `AIOHTTP_SESSION_<uuid4 hex>` with aiohttp_session's default name), the
//! value the JSON of `{"created": ..., "session": {...}}` (see the
//! [module](super)). Every save sets the key's expiry from the session's
//! idle limit (the layer's max age or the session's own), as Python's
//! `SET ... EX max_age` does; where Python, without a max age, writes keys
//! that never expire, this storage gives them its default TTL.
//!
//! # Guarantees, and their limits
//!
//! - New sessions are written with `SET NX`: never over an existing record.
//! - A save merges only the keys the request changed into the stored
//!   record: it reads the value, merges in Rust, and writes it with a script
//!   that checks the value is still the one read (else it reads again, at
//!   most sixteen times). So two Rust requests changing different keys both
//!   keep their change, and a record deleted or invalidated meanwhile (by
//!   Rust or by Python, whose `invalidate()` leaves `{}`) is never brought
//!   back.
//! - Python's saves are not merges: `save_session` writes the whole session
//!   it loaded plus its changes, so a Python request that overlaps a Rust
//!   one on the same session may undo the Rust request's change (as two
//!   overlapping Python requests already do to each other). Python also
//!   recreates a record that was deleted while its request ran.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{decode, encode};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::save_queue::SaveQueue;
use crate::storage::server::{StoreTimes, create_with_fresh_id_from, timed};
use crate::storage::{Loaded, RedisConnection, ServerStorage, StorageContext};

/// Merge attempts before a save gives up with a 503.
const CAS_TRIES: u32 = 16;

/// `KEYS[1]` the record; `ARGV[1]` the value read, `ARGV[2]` the value to
/// write, `ARGV[3]` the TTL. 1: written; 0: no record; 2: changed since read.
const COMPARE_AND_SET: &str = r"
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
if stored ~= ARGV[1] then return 2 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

/// Keeps sessions in Redis as aiohttp_session's `RedisStorage` does, so a
/// Python service and this one share them: the cookie holds a uuid4 hex id,
/// the record is `{"created": ..., "session": {...}}` under
/// `<cookie name>_<id>`.
///
/// Set the layer's cookie name to the Python side's (default
/// [`DEFAULT_COOKIE_NAME`](super::DEFAULT_COOKIE_NAME)): it is both the
/// cookie and the start of every key. Works on a standalone server and on a
/// cluster (every command touches one key).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use typed_sessions::{SessionLayer, aiohttp};
///
/// let storage = aiohttp::AiohttpRedisStorage::connect("redis://127.0.0.1:6379/0").await?;
/// let layer = SessionLayer::builder(storage)
///     .with_cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AiohttpRedisStorage {
    connection: RedisConnection,
    compare_and_set: Arc<Script>,
    times: StoreTimes,
    saves: Arc<SaveQueue>,
}

impl AiohttpRedisStorage {
    /// Connects to Redis as [`crate::RedisStorage::connect`] does: a URL
    /// for a standalone server, or
    /// [`RedisOptions::cluster`](crate::storage::RedisOptions::cluster) for a
    /// cluster, whose failovers it follows. The local cache is not for
    /// aiohttp_session's records: options with one are refused.
    pub async fn connect(
        options: impl Into<crate::storage::RedisOptions>,
    ) -> Result<Self, StorageError> {
        let options = options.into();
        if options.cache.is_some() {
            return Err(StorageError::Config(ConfigError::StorageSetting {
                setting: "cache",
                problem: "aiohttp::AiohttpRedisStorage keeps no local cache; connect without one"
                    .to_owned(),
            }));
        }
        let native = crate::RedisStorage::connect(options).await?;
        Ok(Self::from_connection(native.connection().clone()))
    }

    /// A storage over a connection the app already has, which it may share
    /// with a native [`crate::RedisStorage`].
    pub fn from_connection(connection: impl Into<RedisConnection>) -> Self {
        Self {
            connection: connection.into(),
            compare_and_set: Arc::new(Script::new(COMPARE_AND_SET)),
            times: StoreTimes::default(),
            saves: Arc::default(),
        }
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
        self
    }

    /// The revocation marks of [`ServerStorage::revoke_user`] here, beside
    /// the records: `<cookie name>_revoked:…`.
    fn marks(&self, cx: &StorageContext<'_>) -> crate::storage::redis::RedisCounts {
        crate::storage::redis::RedisCounts::uncached(
            self.connection.clone(),
            format!("{}_", cx.cookie_name),
            self.times.command_timeout,
        )
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let mut connection = self.connection.clone();
        timed(
            self.times.command_timeout,
            redis::cmd("GET").arg(key).query_async(&mut connection),
        )
        .await
    }
}

fn key(cx: &StorageContext<'_>, id: &SessionId) -> String {
    super::record_key(cx, id)
}

impl fmt::Debug for AiohttpRedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aiohttp::AiohttpRedisStorage")
            .field("default_ttl", &self.times.default_ttl)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for AiohttpRedisStorage {
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId> {
        SessionId::parse_uuid4_hex(cookie_value)
    }

    async fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        let Some(value) = self.get(&key(cx, id)).await? else {
            return Ok(None);
        };
        let Some(mut record) = decode(&value) else {
            if value != b"{}" {
                tracing::warn!("malformed aiohttp_session record in Redis; starting a new session");
            }
            return Ok(None);
        };
        if crate::revocation::is_revoked(&self.marks(cx), &mut record).await? {
            return Ok(None);
        }
        Ok(Some(Loaded::new(record)))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let bound = crate::revocation::with_binding(&self.marks(cx), record).await?;
        let value = encode(&bound)?;
        let ttl = cx.record_ttl(self.times.default_ttl.as_secs());
        create_with_fresh_id_from("Redis", SessionId::generate_uuid4, |id| {
            let key = key(cx, &id);
            let value = &value;
            let mut connection = self.connection.clone();
            async move {
                let set: Option<String> = timed(
                    self.times.command_timeout,
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl)
                        .query_async(&mut connection),
                )
                .await?;
                Ok(set.is_some())
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
    /// as it deletes it (`GET` and `DEL` in one transaction), and the mark
    /// of its user if it is bound.
    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let key = key(cx, id);
        let mut connection = self.connection.clone();
        let (value, _): (Option<Vec<u8>>, i64) = timed(
            self.times.command_timeout,
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&key)
                .cmd("DEL")
                .arg(&key)
                .query_async(&mut connection),
        )
        .await?;
        let Some(mut record) = value.as_deref().and_then(decode) else {
            return Ok(false);
        };
        Ok(!crate::revocation::is_revoked(&self.marks(cx), &mut record).await?)
    }

    /// Marks a revocation of the user (and kind), as
    /// [`MemcachedStorage::revoke_user`](crate::MemcachedStorage) does:
    /// a key per user ever revoked, `<cookie name>_revoked:` and the
    /// base64url of SHA-256 of the user and kind, raised to one more than
    /// it was and at least to now in microseconds. A load of a session
    /// bound to the user reads it (one more round trip than a session bound
    /// to no one) and refuses a session bound before it. Python never reads
    /// the key; a write by Python drops the binding (see `MIGRATING.md`).
    /// The store cannot list a user's sessions, so it cannot count them:
    /// `Ok(None)`.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        let scope = crate::kind::user_scope(cx.kind, user);
        crate::revocation::Marks::raise(&self.marks(cx), &scope).await?;
        Ok(None)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.times.validate(
            "the aiohttp Redis store's default TTL",
            "the aiohttp Redis command timeout",
        )
    }
}

impl AiohttpRedisStorage {
    /// The save [`ServerStorage::update`] makes, in its session's turn.
    async fn merge_save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        let key = key(cx, id);
        let ttl = cx.record_ttl(self.times.default_ttl.as_secs());
        for _ in 0..CAS_TRIES {
            let Some(stored_value) = self.get(&key).await? else {
                return Ok(false);
            };
            // `{}` is a session Python invalidated: it stays ended.
            let Some(mut stored) = decode(&stored_value) else {
                return Ok(false);
            };
            stored.merge(record, changes);
            let mut invocation = self.compare_and_set.key(&key);
            invocation.arg(&stored_value).arg(encode(&stored)?).arg(ttl);
            let mut connection = self.connection.clone();
            let outcome: i64 = timed(
                self.times.command_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?;
            match outcome {
                1 => return Ok(true),
                0 => return Ok(false),
                _ => tracing::debug!("aiohttp_session record changed since read; merging again"),
            }
        }
        Err(StorageError::unavailable(format!(
            "session record changed under {CAS_TRIES} merge attempts in a row"
        )))
    }
}

/// aiohttp_session's records in Redis end by marks of the same shape as
/// the native cookie layers' (under `<cookie name>_`, not shared with
/// them), always read from Redis itself.
impl crate::revocation::Marks for crate::storage::redis::RedisCounts {
    async fn current(&self, scope: &str) -> Result<u64, StorageError> {
        self.get(scope, false).await
    }

    async fn raise(&self, scope: &str) -> Result<(), StorageError> {
        crate::storage::redis::RedisCounts::raise(self, scope, crate::revocation::micros_now())
            .await
    }
}
