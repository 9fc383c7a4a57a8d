//! One part of the memory store: its records by key, and the order in which
//! they expire and are evicted.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::packed::Packed;
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};

/// A record's key: the 64-bit mix of its id (see `key_of`). The full id is
/// kept in the record and checked on every access, so another id of the
/// same key finds nothing; a new session whose key is taken draws another
/// id.
pub(super) type Key = u64;

/// Whether a session was requested again since the request that made it.
///
/// A full part evicts sessions on probation first: a flood of one-shot
/// sessions (a client without cookies, a crawler, an attacker) then only
/// pushes out its own kind, while the sessions of returning users stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Not requested since it was made.
    Probation,
    /// Loaded or updated at least once after it was made.
    Returning,
}

struct Entry {
    packed: Packed,
    expires_at: u64,
    class: Class,
}

/// The records of one part, and the order in which they expire.
#[derive(Default)]
pub(super) struct Records {
    by_key: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    queues: Queues,
}

/// `(expires_at, key)` of every record, soonest first, in one queue per
/// [`Class`]: every record is in the queue of its class.
#[derive(Default)]
struct Queues {
    probation: BTreeSet<(u64, Key)>,
    returning: BTreeSet<(u64, Key)>,
}

impl Queues {
    fn of(&mut self, class: Class) -> &mut BTreeSet<(u64, Key)> {
        match class {
            Class::Probation => &mut self.probation,
            Class::Returning => &mut self.returning,
        }
    }

    /// Files `entry` of `key` as a returning session expiring at
    /// `expires_at`.
    fn requeue(&mut self, key: Key, entry: &mut Entry, expires_at: u64) {
        if entry.class == Class::Returning && entry.expires_at == expires_at {
            return;
        }
        self.of(entry.class).remove(&(entry.expires_at, key));
        self.returning.insert((expires_at, key));
        entry.class = Class::Returning;
        entry.expires_at = expires_at;
    }
}

impl Records {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn contains(&self, key: Key) -> bool {
        self.by_key.contains_key(&key)
    }

    /// Drops every record whose `expires_at` is `now` or earlier.
    pub(super) fn purge_expired(&mut self, now: u64) {
        for queue in [&mut self.queues.probation, &mut self.queues.returning] {
            while let Some(&(expires_at, key)) = queue.first() {
                if expires_at > now {
                    break;
                }
                queue.pop_first();
                self.by_key.remove(&key);
            }
        }
    }

    /// Adds a new session, on probation. `key` must be free.
    pub(super) fn insert(&mut self, key: Key, packed: Packed, expires_at: u64) {
        self.queues.probation.insert((expires_at, key));
        let class = Class::Probation;
        let entry = Entry {
            packed,
            expires_at,
            class,
        };
        self.by_key.insert(key, entry);
    }

    /// The record of `id`, if this part holds it; its session was requested
    /// again, so it leaves probation.
    pub(super) fn load(&mut self, key: Key, id: &SessionId) -> Option<SessionRecord> {
        let entry = self.by_key.get_mut(&key)?;
        let record = entry.packed.unpack(id)?;
        let expires_at = entry.expires_at;
        self.queues.requeue(key, entry, expires_at);
        Some(record)
    }

    /// The record of `id`, if this part holds it, leaving its class as it
    /// is (a listing is not a request of the session).
    pub(super) fn peek(&self, key: Key, id: &SessionId) -> Option<SessionRecord> {
        self.by_key.get(&key)?.packed.unpack(id)
    }

    /// Merges a request's changes into the record of `id` (see
    /// [`Packed::merge`]), which expires at `expires_at` from now on and
    /// leaves probation; `false` if this part does not hold it.
    pub(super) fn update(
        &mut self,
        key: Key,
        id: &SessionId,
        from: &SessionRecord,
        changes: &Changes,
        expires_at: u64,
    ) -> bool {
        let Some(entry) = self.by_key.get_mut(&key) else {
            return false;
        };
        if !entry.packed.merge(id, from, changes) {
            return false;
        }
        self.queues.requeue(key, entry, expires_at);
        true
    }

    /// Removes the record of `id`; whether there was one.
    pub(super) fn remove(&mut self, key: Key, id: &SessionId) -> bool {
        if !self
            .by_key
            .get(&key)
            .is_some_and(|entry| entry.packed.is_of(id))
        {
            return false;
        }
        if let Some(entry) = self.by_key.remove(&key) {
            self.queues.of(entry.class).remove(&(entry.expires_at, key));
        }
        true
    }

    /// Drops one record to make room: the session on probation closest to
    /// expiry or, when none is on probation, the returning one closest to
    /// expiry. Which class it was, if the part held any record.
    pub(super) fn evict(&mut self) -> Option<Class> {
        let (class, (_, key)) = match self.queues.probation.pop_first() {
            Some(first) => (Class::Probation, first),
            None => (Class::Returning, self.queues.returning.pop_first()?),
        };
        self.by_key.remove(&key);
        Some(class)
    }

    /// The class of the record of `key`, for tests.
    #[cfg(test)]
    pub(super) fn class_of(&self, key: Key) -> Option<Class> {
        self.by_key.get(&key).map(|entry| entry.class)
    }
}

/// The hash of a [`Key`], which is already a mix of 256 random bits: the
/// key itself, turned by half a word, because the map picks a bucket by the
/// low bits of the hash and tags it with the top seven, and the top four
/// bits of a key choose its part, the same for every key of this map.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only `Key`s, which write a u64, are hashed");
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.rotate_left(32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;

    fn packed() -> Packed {
        Packed::new(
            &SessionId::generate(),
            &SessionRecord::new(0, MaxAge::Layer),
        )
    }

    #[test]
    fn sessions_on_probation_are_evicted_first_each_class_soonest_first() {
        let mut records = Records::default();
        // A returning session that expires first, then three new ones.
        let id = SessionId::generate();
        records.insert(
            1,
            Packed::new(&id, &SessionRecord::new(0, MaxAge::Layer)),
            10,
        );
        assert!(records.load(1, &id).is_some());
        records.insert(2, packed(), 3_000);
        records.insert(3, packed(), 1_000);
        let id = SessionId::generate();
        let record = SessionRecord::new(0, MaxAge::Layer);
        records.insert(4, Packed::new(&id, &record), 2_000);
        assert!(records.update(4, &id, &record, &Changes::default(), 5_000));
        assert_eq!(records.class_of(4), Some(Class::Returning), "written again");

        assert_eq!(records.evict(), Some(Class::Probation));
        assert!(!records.contains(3), "the probationer closest to expiry");
        assert_eq!(records.evict(), Some(Class::Probation));
        assert!(!records.contains(2));
        assert_eq!(records.evict(), Some(Class::Returning));
        assert!(
            !records.contains(1),
            "then the returning one closest to expiry"
        );
        assert!(records.contains(4));
        assert_eq!(records.evict(), Some(Class::Returning));
        assert_eq!(records.evict(), None);
        assert_eq!(records.len(), 0);
    }

    #[test]
    fn expired_records_of_both_classes_are_purged() {
        let mut records = Records::default();
        let (two, four) = (SessionId::generate(), SessionId::generate());
        let record = SessionRecord::new(0, MaxAge::Layer);
        records.insert(1, packed(), 10);
        records.insert(2, Packed::new(&two, &record), 20);
        assert!(records.load(2, &two).is_some());
        records.insert(3, packed(), 21);
        records.insert(4, Packed::new(&four, &record), 30);
        assert!(records.load(4, &four).is_some());
        records.purge_expired(20);
        assert!(!records.contains(1) && !records.contains(2));
        assert!(records.contains(3) && records.contains(4));
        let queues = &records.queues;
        assert_eq!(queues.probation.len() + queues.returning.len(), 2);
    }
}
