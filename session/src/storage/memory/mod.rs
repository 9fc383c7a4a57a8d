//! Server-side sessions in this process's memory.
//!
//! The store is split in parts by id ([`part`]), each keeping its records
//! packed into a few bytes ([`packed`]).

pub(crate) mod packed;
mod part;

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use self::packed::Packed;
use self::part::{Class, Key, Records};
use super::server::{DEFAULT_TTL, ID_TRIES, check_positive, handle, prune_due};
use super::{ActiveSession, Loaded, ServerStorage, StorageContext};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::kind::user_scope;
use crate::record::{Changes, SessionRecord};
use crate::throttle::throttled_warn;

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

/// The key of `id`'s record in its part: the [`mix`] of its text.
fn key_of(id: &SessionId) -> Key {
    mix(id.as_bytes())
}

/// The part of the store that holds the record of `key`: the top bits of
/// the key, so the parts are even.
fn shard_of(key: Key) -> usize {
    const SHARD_BITS: u32 = SHARDS.trailing_zeros();
    (key >> (u64::BITS - SHARD_BITS)) as usize
}

/// Keeps sessions in this process's memory, under random ids: the embedded
/// default for an app that runs as one process. Sessions are lost on
/// restart and not shared between processes (use Redis or Memcached then).
///
/// Records expire `max_age` after their last write (a session without a max
/// age after the default TTL) and are purged as time passes, so memory does
/// not grow with abandoned sessions.
///
/// The store holds at most [`MemoryStorage::DEFAULT_MAX_RECORDS`] records
/// unless told otherwise ([`MemoryStorage::with_max_records`]). A full
/// store makes room by dropping a session *on probation* (one not requested
/// again since the request that made it) closest to expiry, and a returning
/// session only when none is on probation, so a flood of one-shot sessions
/// cannot push out the users who come back. Records are packed into a few
/// bytes: a session with one small key takes about 180 bytes of memory in
/// all, ten keys about 230 (`BENCHMARKS.md`), so the default cap bounds the
/// store to about 20 MB of such sessions.
///
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
    /// The ids of the sessions bound to each user, for listing and revoking
    /// them.
    users: Arc<Mutex<UserIndex>>,
}

/// The ids of the sessions bound to each user.
///
/// A record's entry is what makes it one of its user's sessions: a
/// revocation takes the entries out, atomically, and a deletion of a bound
/// record answers whether its entry was still there (see
/// [`MemoryStorage::revoke_user_now`]). Entries of records gone (expired,
/// evicted) are dropped when the user's list is read, when it grows past
/// [`USER_INDEX_PRUNE_AT`](super::server::USER_INDEX_PRUNE_AT) (at every multiple), and from the whole index whenever it holds
/// twice as many entries as after its last sweep (and at least
/// [`UserIndex::FIRST_SWEEP`]), so it stays within a small multiple of the
/// live bound sessions, which the store's cap bounds.
#[derive(Default)]
struct UserIndex {
    by_user: HashMap<String, Vec<SessionId>>,
    /// How many ids `by_user` holds in all.
    entries: usize,
    /// How many entries make the next sweep of the whole index.
    sweep_at: usize,
}

impl UserIndex {
    const FIRST_SWEEP: usize = 1024;

    /// Takes `id` out of `user`'s entries; whether it was there.
    fn remove(&mut self, user: &str, id: &SessionId) -> bool {
        let Some(ids) = self.by_user.get_mut(user) else {
            return false;
        };
        let Some(at) = ids.iter().position(|entry| entry == id) else {
            return false;
        };
        ids.swap_remove(at);
        if ids.is_empty() {
            self.by_user.remove(user);
        }
        self.entries -= 1;
        true
    }

    /// Takes every entry of `user` out.
    fn take(&mut self, user: &str) -> Vec<SessionId> {
        let ids = self.by_user.remove(user).unwrap_or_default();
        self.entries -= ids.len();
        ids
    }

    /// Keeps only the entries of `user` for which `live` holds.
    fn retain(&mut self, user: &str, live: impl FnMut(&SessionId) -> bool) {
        let Some(ids) = self.by_user.get_mut(user) else {
            return;
        };
        let before = ids.len();
        ids.retain(live);
        self.entries -= before - ids.len();
        if ids.is_empty() {
            self.by_user.remove(user);
        }
    }

    /// Keeps only the entries of every user for which `live` holds.
    fn retain_all(&mut self, mut live: impl FnMut(&SessionId) -> bool) {
        let mut entries = 0;
        self.by_user.retain(|_, ids| {
            ids.retain(&mut live);
            entries += ids.len();
            !ids.is_empty()
        });
        self.entries = entries;
    }
}

/// One part of the store, on cache lines of its own, so that two cores
/// locking neighbouring parts never write to the same line.
#[derive(Default)]
#[repr(align(128))]
struct Part(Mutex<Records>);

impl MemoryStorage {
    /// The most records a store keeps unless told otherwise: 100,000.
    ///
    /// `BENCHMARKS.md` measures about 180 bytes per one-key session and 230
    /// per ten-key session, everything included, so this is about 20 MB of
    /// small sessions; bigger ones add about the size of their data (as
    /// JSON, or less). Enough live sessions for an app that runs as one
    /// process, few enough that a flood of new sessions cannot exhaust a
    /// small server's memory; an app with more live users raises it with
    /// [`MemoryStorage::with_max_records`].
    pub const DEFAULT_MAX_RECORDS: usize = 100_000;

    /// An empty store with the default TTL (one day) and the default cap
    /// ([`MemoryStorage::DEFAULT_MAX_RECORDS`]).
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Part::default()).collect(),
            sweep: Arc::default(),
            default_ttl: DEFAULT_TTL,
            max_records: Some(Self::DEFAULT_MAX_RECORDS),
            users: Arc::default(),
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
    /// (each part holds at most `max_records / 16`, rounded up). A new
    /// session in a full part drops that part's session on probation
    /// closest to expiry, or its returning session closest to expiry when
    /// none is on probation (a warning is logged then: the cap is too low
    /// for the app's users). Default:
    /// [`MemoryStorage::DEFAULT_MAX_RECORDS`]; at least 1.
    #[must_use]
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = Some(max_records.max(1));
        self
    }

    /// No cap: the store keeps every live session, however many. Memory
    /// then grows with every new session until they expire, so anyone who
    /// can make the app store a session (any route that writes to the
    /// session of a visitor without a cookie) can exhaust it. Prefer a
    /// [`MemoryStorage::with_max_records`] above your number of live
    /// sessions.
    #[must_use]
    pub fn without_max_records(mut self) -> Self {
        self.max_records = None;
        self
    }

    /// How many live records the store holds.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|shard| self.lock(shard).len()).sum()
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

    fn shard_cap(&self) -> Option<usize> {
        self.max_records.map(|max| max.div_ceil(SHARDS))
    }

    fn expires_at(&self, record: &SessionRecord, cx: &StorageContext<'_>) -> u64 {
        record
            .updated
            .saturating_add(cx.record_ttl(self.default_ttl.as_secs()))
    }

    fn load_now(&self, id: &SessionId, now: u64) -> Option<Loaded> {
        let key = key_of(id);
        let mut records = self.lock(shard_of(key));
        records.purge_expired(now);
        records.load(key, id).map(Loaded::new)
    }

    fn create_now(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let (now, expires_at) = (cx.now, self.expires_at(record, cx));
        // A taken key is a collision of 64-bit hashes (about one in 10^9
        // new sessions with 100,000 stored): draw again, but not forever,
        // should the id generator be broken.
        for _ in 0..ID_TRIES {
            let id = SessionId::generate();
            let key = key_of(&id);
            let packed = Packed::new(&id, record);
            let mut records = self.lock(shard_of(key));
            if records.contains(key) {
                continue;
            }
            records.purge_expired(now);
            if let Some(max) = self.shard_cap() {
                while records.len() >= max {
                    if records.evict() == Some(Class::Returning) {
                        throttled_warn!(
                            max_records = ?self.max_records,
                            "the memory store is full of returning sessions and dropped one; \
                             raise `MemoryStorage::with_max_records`"
                        );
                    }
                }
            }
            records.insert(key, packed, expires_at);
            drop(records);
            let next = self.sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
            self.lock(next).purge_expired(now);
            return Ok(id);
        }
        Err(StorageError::unavailable(
            "the memory store drew taken ids again and again: is the random number generator broken?",
        ))
    }

    fn update_now(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> bool {
        let (now, expires_at) = (cx.now, self.expires_at(record, cx));
        let key = key_of(id);
        let mut records = self.lock(shard_of(key));
        records.purge_expired(now);
        records.update(key, id, record, changes, expires_at)
    }

    /// Deletes the record of `id`. For a record bound to a user, whether
    /// its entry was still in the user's index: a record a revocation took
    /// counts as ended already, so a renewal racing the revocation does
    /// not carry it to a new id (see [`MemoryStorage::revoke_user_now`]).
    fn delete_now(&self, id: &SessionId) -> bool {
        let key = key_of(id);
        let scope_of = |records: &Records| {
            let record = records.peek(key, id)?;
            Some(user_scope(record.kind.as_deref(), record.user.as_deref()?))
        };
        {
            let mut records = self.lock(shard_of(key));
            if scope_of(&records).is_none() {
                return records.remove(key, id);
            }
        }
        // Bound: the entry and the record go together, under the index's
        // lock and then the part's (the order `index` takes them), so no
        // pruning sees the record gone while its entry is still there and
        // takes the entry first, which would read as a revocation.
        let mut users = self.users();
        let mut records = self.lock(shard_of(key));
        let Some(scope) = scope_of(&records) else {
            return records.remove(key, id);
        };
        let indexed = users.remove(&scope, id);
        records.remove(key, id) && indexed
    }

    /// Deletes the record of `id`, leaving the user index alone.
    fn remove_record(&self, id: &SessionId) -> bool {
        let key = key_of(id);
        self.lock(shard_of(key)).remove(key, id)
    }

    fn holds(&self, id: &SessionId) -> bool {
        let key = key_of(id);
        self.lock(shard_of(key)).contains(key)
    }

    fn users(&self) -> MutexGuard<'_, UserIndex> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that the new session `id` is bound to the user of `scope`
    /// (its [`user_scope`]).
    fn index(&self, scope: &str, id: &SessionId) {
        let mut users = self.users();
        let ids = users.by_user.entry(scope.to_owned()).or_default();
        ids.push(id.clone());
        let due = prune_due(ids.len());
        users.entries += 1;
        if due {
            users.retain(scope, |id| self.holds(id));
        }
        if users.entries >= users.sweep_at.max(UserIndex::FIRST_SWEEP) {
            users.retain_all(|id| self.holds(id));
            users.sweep_at = users.entries * 2;
        }
    }

    /// The records bound to `user` that the store still holds, without
    /// taking them off probation. The user's entries stay in the index
    /// while it is read, so a revocation meanwhile finds them all.
    fn sessions_of_now(&self, kind: Option<&str>, user: &str, now: u64) -> Vec<ActiveSession> {
        let scope = user_scope(kind, user);
        let ids = self
            .users()
            .by_user
            .get(&scope)
            .cloned()
            .unwrap_or_default();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for id in ids {
            let key = key_of(&id);
            let mut records = self.lock(shard_of(key));
            records.purge_expired(now);
            match records.peek(key, &id) {
                Some(record)
                    if record.user.as_deref() == Some(user) && record.kind.as_deref() == kind =>
                {
                    live.push(ActiveSession::of(handle(&id), &record));
                }
                _ => gone.push(id),
            }
        }
        if !gone.is_empty() {
            self.users().retain(&scope, |id| !gone.contains(id));
        }
        live
    }

    /// Takes the session out of the user's index, then deletes its record.
    fn revoke_session_now(&self, scope: &str, handle_of_one: &str) -> bool {
        let mut users = self.users();
        let Some(id) = users
            .by_user
            .get(scope)
            .and_then(|ids| ids.iter().find(|id| handle(id) == handle_of_one))
            .cloned()
        else {
            return false;
        };
        users.remove(scope, &id);
        drop(users);
        self.remove_record(&id)
    }

    /// Ends every session of `user`: takes all the user's entries out of
    /// the index at once (the instant the revocation takes effect), then
    /// deletes their records.
    ///
    /// Why no session bound before that instant survives: a record is
    /// indexed before its cookie is ever sent (see `create`), so every
    /// record of the user a client holds is among the entries taken. An
    /// update never brings a deleted record back. A renewal copies the
    /// record to a new id and then deletes the old one, and that deletion
    /// answers "ended meanwhile" when the old entry was taken, so the
    /// layer deletes the copy; a renewal that deleted the old record
    /// before the instant had indexed its copy before that too, and the
    /// copy is among the entries taken. A session bound after the instant
    /// lives.
    fn revoke_user_now(&self, scope: &str) -> usize {
        let ids = self.users().take(scope);
        ids.iter().filter(|id| self.remove_record(id)).count()
    }
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
        let created = self.create_now(record, cx);
        if let (Ok(id), Some(user)) = (&created, &record.user) {
            self.index(&user_scope(record.kind.as_deref(), user), id);
        }
        ready(created)
    }

    fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.update_now(id, record, changes, cx)))
    }

    fn delete(
        &self,
        id: &SessionId,
        _cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.delete_now(id)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_positive("the memory store's default TTL", self.default_ttl)
    }

    fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Vec<ActiveSession>, StorageError>> + Send {
        ready(Ok(self.sessions_of_now(cx.kind, user, cx.now)))
    }

    fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<usize>, StorageError>> + Send {
        ready(Ok(Some(self.revoke_user_now(&user_scope(cx.kind, user)))))
    }

    fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(
            self.revoke_session_now(&user_scope(cx.kind, user), handle)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;

    fn record(now: u64, data: serde_json::Value) -> SessionRecord {
        let mut record = SessionRecord::new(now, MaxAge::Layer);
        record.data = data.as_object().cloned().unwrap();
        record
    }

    /// A request at `now` writing a session with this idle limit.
    fn at(now: u64, idle_limit: Option<u64>) -> StorageContext<'static> {
        StorageContext::new("session", now).with_idle_limit(idle_limit)
    }

    /// Binding ever new users to sessions that then expire or are evicted
    /// leaves an index of a few entries per live session, not one per
    /// session ever bound.
    #[test]
    fn the_user_index_stays_within_the_live_sessions() {
        let store = MemoryStorage::new().with_max_records(160);
        for n in 0..20_000u64 {
            let mut bound = record(n, serde_json::json!({"a": 1}));
            bound.user = Some(format!("user-{n}"));
            let cx = at(n, Some(10));
            let id = store.create_now(&bound, &cx).unwrap();
            store.index(&user_scope(None, bound.user.as_deref().unwrap()), &id);
        }
        let entries = store.users().entries;
        assert!(store.len() <= 160);
        assert!(
            entries <= 2 * UserIndex::FIRST_SWEEP,
            "{entries} index entries for {} live sessions",
            store.len()
        );
        assert_eq!(
            entries,
            store.users().by_user.values().map(Vec::len).sum::<usize>()
        );
    }

    #[test]
    fn unknown_ids_load_nothing() {
        let store = MemoryStorage::new();
        assert!(store.load_now(&SessionId::generate(), 0).is_none());
    }

    #[test]
    fn records_expire_and_are_purged() {
        let store = MemoryStorage::new().with_default_ttl(Duration::from_secs(100));
        let short = store
            .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, Some(10)))
            .unwrap();
        let long = store
            .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, None))
            .unwrap();
        // Kept through the second its max age ends in (see `StorageContext::record_ttl`).
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
        let id = store
            .create_now(
                &record(0, serde_json::json!({"a": 1, "b": 1})),
                &at(0, None),
            )
            .unwrap();
        // Two requests loaded {a:1, b:1}; one sets a, the other removes b.
        let mut first = Changes::default();
        first.record_set("a");
        store.update_now(
            &id,
            &record(0, serde_json::json!({"a": 2, "b": 1})),
            &first,
            &at(1, None),
        );
        let mut second = Changes::default();
        second.record_removed("b");
        store.update_now(
            &id,
            &record(0, serde_json::json!({"a": 1})),
            &second,
            &at(1, None),
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
        let id = store
            .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, None))
            .unwrap();
        assert!(store.delete_now(&id));
        assert!(!store.update_now(
            &id,
            &record(0, serde_json::json!({"a": 2})),
            &Changes::default(),
            &at(1, None)
        ));
        assert!(store.is_empty());
    }

    #[test]
    fn a_full_store_drops_the_records_closest_to_expiry() {
        let store = MemoryStorage::new().with_max_records(SHARDS);
        // Far more sessions than the cap, the first ones expiring soonest.
        let values: Vec<SessionId> = (0..200)
            .map(|i| {
                store
                    .create_now(
                        &record(0, serde_json::json!({"a": 1})),
                        &at(0, Some(10 + i)),
                    )
                    .unwrap()
            })
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

    fn class_of(store: &MemoryStorage, id: &SessionId) -> Option<Class> {
        let key = key_of(id);
        store.lock(shard_of(key)).class_of(key)
    }

    #[test]
    fn a_session_leaves_probation_on_its_next_load_or_update() {
        let store = MemoryStorage::new();
        let loaded = store
            .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, None))
            .unwrap();
        let updated = store
            .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, None))
            .unwrap();
        assert_eq!(class_of(&store, &loaded), Some(Class::Probation));
        assert_eq!(class_of(&store, &updated), Some(Class::Probation));
        store.load_now(&loaded, 1);
        assert_eq!(class_of(&store, &loaded), Some(Class::Returning));
        let mut changes = Changes::default();
        changes.record_set("a");
        let record = record(0, serde_json::json!({"a": 2}));
        assert!(store.update_now(&updated, &record, &changes, &at(1, None)));
        assert_eq!(class_of(&store, &updated), Some(Class::Returning));
    }

    #[test]
    fn ids_spread_evenly_over_the_parts_of_the_store() {
        let ids = 64_000;
        let mut counts = [0usize; SHARDS];
        for _ in 0..ids {
            counts[shard_of(key_of(&SessionId::generate()))] += 1;
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
            store
                .create_now(&record(0, serde_json::json!({"a": 1})), &at(0, None))
                .unwrap();
        }
        for shard in 0..SHARDS {
            assert!(
                store.lock(shard).len() > 0,
                "part {shard} got none of 400 sessions"
            );
        }
    }
}
