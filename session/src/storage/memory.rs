//! Server-side sessions in this process's memory.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::server::{DEFAULT_TTL, check_positive};
use super::{Loaded, ServerStorage, StorageContext};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};

/// Independent parts of the store, each behind its own lock, so requests of
/// different sessions rarely wait for each other and no single map grows
/// (and pauses to rehash) with every session.
const SHARDS: usize = 16;

/// Mixes every byte of an id's text into 64 bits. Ids are 256 random bits
/// drawn by the server, and only server-made ids are ever inserted, so a
/// client cannot aim many keys at one bucket and a keyed hash would only
/// cost time on every request; but no single character carries enough
/// randomness (64 values, which spread unevenly over 16 parts), so all of
/// them go in.
fn mix(bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(0, |hash: u64, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29)
    })
}

/// The hash of the maps: [`mix`] of the id's text (the only thing an id
/// writes into a hasher).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = mix(bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Keeps sessions in this process's memory, under random ids: the embedded
/// default for an app that runs as one process. Sessions are lost on
/// restart and not shared between processes (use Redis or Memcached then).
///
/// Records expire `max_age` after their last write (a session without a max
/// age after the default TTL) and are purged as time passes, so memory does
/// not grow with abandoned sessions. With [`MemoryStorage::with_max_records`],
/// a full store makes room by dropping the records closest to expiry.
/// Clones share one store. The store is split in 16 parts by id, each behind
/// its own lock, taken for a few map operations and never across an
/// `.await`.
#[derive(Clone)]
pub struct MemoryStorage {
    shards: Arc<[Part]>,
    /// The part whose expired records the next new session sweeps, so every
    /// part is purged even when its own sessions are not used.
    sweep: Arc<AtomicUsize>,
    default_ttl: Duration,
    max_records: Option<usize>,
}

/// One part of the store, on cache lines of its own, so that two cores
/// locking neighbouring parts never write to the same line.
#[derive(Default)]
#[repr(align(128))]
struct Part(Mutex<Records>);

#[derive(Default)]
struct Records {
    by_id: HashMap<SessionId, Entry, BuildHasherDefault<IdHasher>>,
    /// `(expires_at, id)` of every record, soonest first.
    by_expiry: BTreeSet<(u64, SessionId)>,
}

struct Entry {
    record: SessionRecord,
    expires_at: u64,
}

impl Records {
    fn purge_expired(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.by_id.remove(&id);
            }
        }
    }

    fn insert(&mut self, id: SessionId, record: SessionRecord, expires_at: u64) {
        self.by_expiry.insert((expires_at, id.clone()));
        self.by_id.insert(id, Entry { record, expires_at });
    }

    /// Removes the record of `id`; whether there was one.
    fn remove(&mut self, id: &SessionId) -> bool {
        let Some(entry) = self.by_id.remove(id) else {
            return false;
        };
        self.by_expiry.remove(&(entry.expires_at, id.clone()));
        true
    }

    fn evict_soonest(&mut self) {
        if let Some((_, id)) = self.by_expiry.pop_first() {
            self.by_id.remove(&id);
        }
    }
}

impl MemoryStorage {
    /// An empty store with the default TTL (one day) and no cap.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Part::default()).collect(),
            sweep: Arc::default(),
            default_ttl: DEFAULT_TTL,
            max_records: None,
        }
    }

    /// How long the record of a session without `max_age` lives after its
    /// last write, in whole seconds. Default: one day. Zero is refused
    /// when the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The most records kept at once, counted per sixteenth of the store
    /// (each part holds at most `max_records / 16`, rounded up); a new
    /// session in a full part drops that part's record closest to expiry.
    /// Default: no cap.
    #[must_use]
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = Some(max_records.max(1));
        self
    }

    /// How many live records the store holds.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|shard| self.lock(shard).by_id.len()).sum()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Records> {
        // Every operation leaves the maps consistent before it can panic.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The part of the store that holds `id`: the top bits of its mix, so
    /// the parts are even and independent of the bucket the map picks.
    fn records(&self, id: &SessionId) -> MutexGuard<'_, Records> {
        self.lock(shard_of(id))
    }

    fn shard_cap(&self) -> Option<usize> {
        self.max_records.map(|max| max.div_ceil(SHARDS))
    }

    fn expires_at(&self, record: &SessionRecord) -> u64 {
        record
            .updated
            .saturating_add(record.ttl(self.default_ttl.as_secs()))
    }

    fn load_now(&self, id: &SessionId, now: u64) -> Option<Loaded> {
        let mut records = self.records(id);
        records.purge_expired(now);
        let entry = records.by_id.get(id)?;
        Some(Loaded::new(entry.record.clone()))
    }

    fn create_now(&self, record: &SessionRecord, now: u64) -> SessionId {
        let expires_at = self.expires_at(record);
        loop {
            let id = SessionId::generate();
            let mut records = self.records(&id);
            if records.by_id.contains_key(&id) {
                continue;
            }
            records.purge_expired(now);
            if let Some(max) = self.shard_cap() {
                while records.by_id.len() >= max {
                    records.evict_soonest();
                }
            }
            records.insert(id.clone(), record.clone(), expires_at);
            drop(records);
            let next = self.sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
            self.lock(next).purge_expired(now);
            return id;
        }
    }

    fn update_now(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        now: u64,
    ) -> bool {
        let expires_at = self.expires_at(record);
        let mut records = self.records(id);
        records.purge_expired(now);
        let Some(entry) = records.by_id.get_mut(id) else {
            return false;
        };
        entry.record.merge(record, changes);
        let previous_expiry = std::mem::replace(&mut entry.expires_at, expires_at);
        if previous_expiry != expires_at {
            records.by_expiry.remove(&(previous_expiry, id.clone()));
            records.by_expiry.insert((expires_at, id.clone()));
        }
        true
    }
}

fn shard_of(id: &SessionId) -> usize {
    const SHARD_BITS: u32 = SHARDS.trailing_zeros();
    (mix(id.as_bytes()) >> (u64::BITS - SHARD_BITS)) as usize
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("records", &self.len())
            .field("default_ttl", &self.default_ttl)
            .field("max_records", &self.max_records)
            .finish()
    }
}

impl ServerStorage for MemoryStorage {
    fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<Loaded>, StorageError>> + Send {
        ready(Ok(self.load_now(id, cx.now)))
    }

    fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<SessionId, StorageError>> + Send {
        ready(Ok(self.create_now(record, cx.now)))
    }

    fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.update_now(id, record, changes, cx.now)))
    }

    fn delete(
        &self,
        id: &SessionId,
        _cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.records(id).remove(id)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_positive("the memory store's default TTL", self.default_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: u64, max_age: Option<u64>, data: serde_json::Value) -> SessionRecord {
        let mut record = SessionRecord::new(now, max_age);
        record.data = data.as_object().cloned().unwrap();
        record
    }

    #[test]
    fn unknown_ids_load_nothing() {
        let store = MemoryStorage::new();
        assert!(store.load_now(&SessionId::generate(), 0).is_none());
    }

    #[test]
    fn records_expire_and_are_purged() {
        let store = MemoryStorage::new().with_default_ttl(Duration::from_secs(100));
        let short = store.create_now(&record(0, Some(10), serde_json::json!({"a": 1})), 0);
        let long = store.create_now(&record(0, None, serde_json::json!({"a": 1})), 0);
        // Kept through the second its max age ends in (see `ttl`).
        assert!(store.load_now(&short, 10).is_some());
        assert!(store.load_now(&short, 11).is_none());
        assert_eq!(
            store.len(),
            1,
            "the expired record is gone, not just hidden"
        );
        assert!(store.load_now(&long, 100).is_some());
        assert!(store.load_now(&long, 101).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn updates_merge_only_changed_keys() {
        let store = MemoryStorage::new();
        let id = store.create_now(&record(0, None, serde_json::json!({"a": 1, "b": 1})), 0);
        // Two requests loaded {a:1, b:1}; one sets a, the other removes b.
        let mut first = Changes::default();
        first.record_set("a");
        store.update_now(
            &id,
            &record(0, None, serde_json::json!({"a": 2, "b": 1})),
            &first,
            1,
        );
        let mut second = Changes::default();
        second.record_removed("b");
        store.update_now(
            &id,
            &record(0, None, serde_json::json!({"a": 1})),
            &second,
            1,
        );
        let loaded = store.load_now(&id, 2).unwrap();
        assert_eq!(
            serde_json::Value::Object(loaded.record.data),
            serde_json::json!({"a": 2})
        );
    }

    #[test]
    fn a_deleted_record_is_not_brought_back_by_an_update() {
        let store = MemoryStorage::new();
        let id = store.create_now(&record(0, None, serde_json::json!({"a": 1})), 0);
        assert!(store.records(&id).remove(&id));
        assert!(!store.update_now(
            &id,
            &record(0, None, serde_json::json!({"a": 2})),
            &Changes::default(),
            1
        ));
        assert!(store.is_empty());
    }

    #[test]
    fn a_full_store_drops_the_records_closest_to_expiry() {
        let store = MemoryStorage::new().with_max_records(SHARDS);
        // Far more sessions than the cap, the first ones expiring soonest.
        let values: Vec<SessionId> = (0..200)
            .map(|i| store.create_now(&record(0, Some(10 + i), serde_json::json!({"a": 1})), 0))
            .collect();
        assert!(store.len() <= SHARDS, "{} records kept", store.len());
        let newest = values.last().unwrap();
        assert!(
            store.load_now(newest, 1).is_some(),
            "the newest session is kept"
        );
        assert!(
            store.load_now(&values[0], 1).is_none(),
            "the soonest to expire went first"
        );
    }

    #[test]
    fn ids_spread_evenly_over_the_parts_of_the_store() {
        let ids = 64_000;
        let mut counts = [0usize; SHARDS];
        for _ in 0..ids {
            counts[shard_of(&SessionId::generate())] += 1;
        }
        let expected = ids / SHARDS;
        for (shard, count) in counts.iter().enumerate() {
            // Binomial spread: one standard deviation is about 61 here.
            assert!(
                count.abs_diff(expected) < expected / 10,
                "part {shard} got {count} of {ids} ids, expected about {expected}: {counts:?}"
            );
        }
    }

    #[test]
    fn ids_spread_over_every_part_of_the_store() {
        let store = MemoryStorage::new();
        for _ in 0..400 {
            store.create_now(&record(0, None, serde_json::json!({"a": 1})), 0);
        }
        for shard in 0..SHARDS {
            assert!(
                !store.lock(shard).by_id.is_empty(),
                "part {shard} got none of 400 sessions"
            );
        }
    }
}
