//! The local cache of loaded records in front of Redis, kept correct by
//! the server (RESP3 client tracking).
//!
//! # How a cached read stays correct
//!
//! The cache is redis-rs' client-side cache (`cache-aio`), on the same
//! connection the storage sends its commands on, with tracking in `OPTIN`
//! mode: a load that may be cached is sent as `CLIENT CACHING YES`, `PTTL`
//! and `HGETALL` in one round trip, and Redis remembers that this
//! connection read the key. When any client changes or deletes the key,
//! Redis pushes an invalidation on that connection, and the entry goes.
//! The push comes on the connection the reply came on, after the reply,
//! so Redis' side is in order. redis-rs' is not quite: its connection
//! applies a push as soon as it reads it, but a reply's entry is put in
//! the cache later, by the task that asked, so a change that lands just
//! after the read can be invalidated before the stale entry exists, and
//! the entry then stays (Redis tracks a key once per read, and hits send
//! nothing; the short soak's shared writers caught this). So no entry
//! lives longer than `max_lag` from when its read was sent: a fill that
//! lost that race is served at most that long. A new connection (after a
//! drop) starts an empty cache (redis-rs moves its epoch), and an entry
//! never outlives the record's TTL on the server.
//!
//! Two cases this does not cover by itself, and the gate here does:
//!
//! - **A connection that lags or is cut without closing**: pushes stop
//!   arriving, and the cache would serve what another instance has since
//!   changed or deleted. A heartbeat `PING` goes out on the connection
//!   every [`RedisCache::with_max_lag`] / 4; since Redis answers in order,
//!   its answer proves every invalidation Redis sent before it has been
//!   applied. A cached read is served only if a `PING` sent at most
//!   `max_lag` ago has been answered; otherwise the load goes to Redis
//!   (and fails with a 503 if Redis cannot be reached), so a stale record
//!   is never served for longer than `max_lag` after it changed.
//! - **This instance's own write**: its invalidation is pushed right after
//!   the write's reply, so a read that follows at once could run before
//!   the push is applied, or find an entry that lost the race above. A key
//!   this instance wrote is read from Redis for `max_lag` after the write
//!   (every entry filled before it has expired by then), and until a
//!   heartbeat sent after that has been answered: an instance always reads
//!   its own writes.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::caching::{CacheConfig, CacheMode};

/// The default number of records the cache holds.
const DEFAULT_CAPACITY: usize = 10_000;

/// The default longest time a changed record may still be served from the
/// cache of an instance whose connection to Redis lags.
const DEFAULT_MAX_LAG: Duration = Duration::from_millis(200);

/// Keys written recently, remembered this many at most before the gate
/// stops serving from the cache until the next heartbeat instead.
const RECENT_WRITES_CAP: usize = 65_536;

/// A local cache of loaded records in front of Redis or Redis Cluster,
/// kept correct by the server: a read of a cached session costs no round
/// trip, and a save, invalidation or revocation on any instance empties
/// every other instance's copy. Give it to
/// [`RedisOptions::with_cache`](super::RedisOptions::with_cache).
///
/// It needs Redis 6 or later (RESP3). It is worth it for read-mostly apps
/// whose store is across a network: a cached read costs no round trip, a
/// read that fills the cache costs one, as without the cache. Writes are
/// not cheaper, and a session written on every request gains nothing.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use typed_sessions::RedisStorage;
/// use typed_sessions::storage::{RedisCache, RedisOptions};
///
/// let storage = RedisStorage::connect(
///     RedisOptions::standalone("redis://127.0.0.1:6379/0")
///         .with_cache(RedisCache::new().with_capacity(100_000)),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RedisCache {
    capacity: usize,
    max_lag: Duration,
}

impl Default for RedisCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisCache {
    /// Up to 10,000 records, served while the connection lags at most
    /// 200 ms.
    pub fn new() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            max_lag: DEFAULT_MAX_LAG,
        }
    }

    /// How many records the cache holds at most; the least recently used
    /// goes first. Each costs about the size of its record in memory. Zero
    /// is taken as one.
    #[must_use]
    pub fn with_capacity(mut self, records: usize) -> Self {
        self.capacity = records;
        self
    }

    /// The longest a record changed elsewhere may still be served from
    /// this instance's cache: when its connection to Redis lags or is cut
    /// (past it, loads go to Redis until a heartbeat answers again), and
    /// as the lifetime of every entry (see the module's documentation), so
    /// the cache serves a session only while it is read more often than
    /// this. A heartbeat `PING` goes out four times in this interval, and
    /// the instance's own write keeps its key out of the cache this long.
    /// Default: 200 ms. Shorter than 20 ms is taken as 20 ms.
    #[must_use]
    pub fn with_max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }

    pub(crate) fn config(&self) -> CacheConfig {
        CacheConfig::new()
            .set_mode(CacheMode::OptIn)
            .set_default_client_ttl(self.max_lag())
            .set_size(NonZeroUsize::new(self.capacity).unwrap_or(NonZeroUsize::MIN))
    }

    fn max_lag(&self) -> Duration {
        self.max_lag.max(Duration::from_millis(20))
    }
}

/// What the cache did since the storage connected, from
/// [`RedisStorage::cache_statistics`](crate::RedisStorage::cache_statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisCacheStatistics {
    /// Loads served from the cache, with no round trip. Counted since the
    /// storage connected; on a cluster or through Sentinel, since its connection was last made
    /// again after a failure.
    pub hits: usize,
    /// Loads that could be cached, sent to Redis and kept (counted over the
    /// same span as `hits`).
    pub misses: usize,
    /// Entries dropped by an invalidation from Redis or to make room
    /// (counted over the same span as `hits`).
    pub invalidations: usize,
    /// Loads sent to Redis without the cache: the connection was not known
    /// to be current, or this instance had just written the key.
    pub bypassed: u64,
}

/// When the cache may be used: the heartbeat's and the own writes' times.
pub(crate) struct CacheGate {
    max_lag: Duration,
    /// Times are microseconds since this.
    start: Instant,
    /// When the newest answered heartbeat was sent (0: none yet).
    confirmed: AtomicI64,
    /// Keys this instance wrote, and when the write ended; dropped once a
    /// heartbeat sent after it has been answered.
    recent_writes: Mutex<HashMap<String, i64>>,
    /// No key may be served from the cache until a heartbeat sent after
    /// this time is answered (set when too many writes are remembered).
    all_written: AtomicI64,
    bypassed: AtomicU64,
}

impl CacheGate {
    pub(crate) fn new(cache: &RedisCache) -> Self {
        Self {
            max_lag: cache.max_lag(),
            start: Instant::now(),
            confirmed: AtomicI64::new(0),
            recent_writes: Mutex::new(HashMap::new()),
            all_written: AtomicI64::new(0),
            bypassed: AtomicU64::new(0),
        }
    }

    /// Now, in the gate's microseconds: what a heartbeat sent now reports
    /// to [`CacheGate::confirm`].
    pub(crate) fn now(&self) -> i64 {
        // At least 1, so that 0 stays "never".
        i64::try_from(self.start.elapsed().as_micros())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    fn micros(duration: Duration) -> i64 {
        i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
    }

    /// Whether a load of `key` may be served from (and fill) the cache now.
    pub(crate) fn may_cache(&self, key: &str) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        let current = confirmed != 0
            && self.now() - confirmed <= Self::micros(self.max_lag)
            && self.all_written.load(Ordering::Acquire) < confirmed;
        let settled = current
            && self
                .recent_writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key)
                .is_none_or(|&written| written < confirmed);
        if !settled {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
        }
        settled
    }

    /// This instance wrote (or tried to write) `key`, just now: held back
    /// until every entry filled before has expired.
    pub(crate) fn wrote(&self, key: &str) {
        let now = self.now().saturating_add(Self::micros(self.max_lag));
        let mut recent = self
            .recent_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= RECENT_WRITES_CAP {
            let confirmed = self.confirmed.load(Ordering::Acquire);
            recent.retain(|_, &mut written| written >= confirmed);
            if recent.len() >= RECENT_WRITES_CAP {
                // Heartbeats lag behind the writes: wait for the next one
                // for every key rather than remember more.
                recent.clear();
                self.all_written.store(now, Ordering::Release);
                return;
            }
        }
        recent.insert(key.to_owned(), now);
    }

    pub(crate) fn bypassed(&self) -> u64 {
        self.bypassed.load(Ordering::Relaxed)
    }

    /// How often the heartbeat goes out.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.max_lag / 4
    }

    /// The heartbeat's own timeout: an answer later than this proves
    /// nothing the gate would still use.
    pub(crate) fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// A heartbeat sent at `sent` has been answered: every invalidation
    /// Redis pushed before it has been applied.
    pub(crate) fn confirm(&self, sent: i64) {
        let confirmed = self.confirmed.fetch_max(sent, Ordering::AcqRel).max(sent);
        let mut recent = self
            .recent_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !recent.is_empty() {
            recent.retain(|_, &mut written| written >= confirmed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_lag: Duration) -> CacheGate {
        CacheGate::new(&RedisCache::new().with_max_lag(max_lag))
    }

    #[test]
    fn nothing_is_served_from_the_cache_before_a_heartbeat_answers() {
        let gate = gate(Duration::from_secs(60));
        assert!(!gate.may_cache("session:a"));
        gate.confirm(gate.now());
        assert!(gate.may_cache("session:a"));
        assert_eq!(gate.bypassed(), 1);
    }

    #[test]
    fn an_own_write_keeps_its_key_from_the_cache_for_the_lag_and_a_later_heartbeat() {
        let gate = gate(Duration::from_millis(20));
        let before_the_write = gate.now();
        gate.confirm(before_the_write);
        gate.wrote("session:a");
        assert!(
            !gate.may_cache("session:a"),
            "its invalidation may be on its way"
        );
        assert!(gate.may_cache("session:b"), "other keys are not held back");
        // A heartbeat right after the write is not enough: an entry filled
        // before it may have lost the race with its invalidation.
        std::thread::sleep(Duration::from_millis(1));
        gate.confirm(gate.now());
        assert!(!gate.may_cache("session:a"));
        std::thread::sleep(Duration::from_millis(25));
        assert!(!gate.may_cache("session:a"), "no heartbeat since");
        gate.confirm(gate.now());
        assert!(gate.may_cache("session:a"));
    }

    #[test]
    fn a_heartbeat_older_than_the_largest_lag_serves_nothing() {
        let gate = gate(Duration::from_millis(20));
        gate.confirm(gate.now());
        assert!(gate.may_cache("session:a"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!gate.may_cache("session:a"), "the connection may lag");
    }

    #[test]
    fn too_many_recent_writes_hold_back_every_key_until_the_next_heartbeat() {
        let gate = gate(Duration::from_millis(20));
        gate.confirm(gate.now());
        for i in 0..=RECENT_WRITES_CAP {
            gate.wrote(&format!("session:{i}"));
        }
        assert!(gate.recent_writes.lock().unwrap().len() < RECENT_WRITES_CAP);
        assert!(!gate.may_cache("session:never-written"));
        std::thread::sleep(Duration::from_millis(25));
        gate.confirm(gate.now());
        assert!(gate.may_cache("session:never-written"));
        assert!(gate.may_cache("session:1"));
    }
}
