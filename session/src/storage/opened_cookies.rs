//! A bounded cache of the cookies this process opened lately, so
//! a browser that sends the same cookie again and again (every page, every
//! API call between two writes) costs a lookup instead of base64, AES-GCM
//! and JSON each time.
//!
//! An entry is found only for exactly the same cookie value under the same
//! cookie name, which opens to exactly the same record, so the cache never
//! changes what a cookie means; expiry is still checked on every load.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use crate::record::SessionRecord;

/// Parts of the cache, each behind its own lock.
const SHARDS: usize = 16;

/// How many of a value's last bytes are hashed: 24 base64 characters are
/// 18 bytes, more than the 16-byte authentication tag.
const HASHED_TAIL: usize = 24;

/// Passes a precomputed hash through: the maps are keyed by a hash made
/// with a random key, so a client cannot aim values at one bucket.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry {
    cookie_name: Box<str>,
    value: Box<str>,
    record: SessionRecord,
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// One part of the cache, on cache lines of its own, so that two cores
/// locking neighbouring parts never write to the same line.
#[derive(Default)]
#[repr(align(128))]
struct Part(Mutex<Shard>);

pub(crate) struct OpenedCookies {
    shards: Box<[Part]>,
    per_shard: usize,
    hasher: RandomState,
}

impl OpenedCookies {
    /// A cache of about `capacity` cookies; `None` for a capacity of zero.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            shards: (0..SHARDS).map(|_| Part::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        })
    }

    fn locate(&self, cookie_name: &str, value: &str) -> (u64, MutexGuard<'_, Shard>) {
        // A sealed value ends with its authentication tag, bytes nobody
        // without the key can choose: its last characters tell cookies
        // apart as well as the whole value would, and hash in a fraction of
        // the time. Lookups still compare the whole value.
        let tail = &value.as_bytes()[value.len().saturating_sub(HASHED_TAIL)..];
        let hash = self.hasher.hash_one((cookie_name, tail));
        let shard = self.shards[(hash % SHARDS as u64) as usize]
            .0
            .lock()
            // A panic cannot leave a shard half-written: inserts are whole.
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (hash, shard)
    }

    /// The record `value` opened to, if it is cached.
    pub(crate) fn get(&self, cookie_name: &str, value: &str) -> Option<SessionRecord> {
        let (hash, shard) = self.locate(cookie_name, value);
        let entry = shard.get(&hash)?;
        (*entry.value == *value && *entry.cookie_name == *cookie_name).then(|| entry.record.clone())
    }

    /// Remembers that `value` opens to `record`. A full part is emptied
    /// first: cheap, and the cookies in use come back at their next request.
    pub(crate) fn put(&self, cookie_name: &str, value: &str, record: &SessionRecord) {
        let (hash, mut shard) = self.locate(cookie_name, value);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(
            hash,
            Entry {
                cookie_name: cookie_name.into(),
                value: value.into(),
                record: record.clone(),
            },
        );
    }

    /// How many cookies are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|part| part.0.lock().map_or(0, |shard| shard.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> SessionRecord {
        let mut record = SessionRecord::new(n, None);
        record.data.insert("n".into(), n.into());
        record
    }

    #[test]
    fn finds_only_the_same_value_under_the_same_name() {
        let cache = OpenedCookies::new(64).unwrap();
        cache.put("session", "value-1", &record(1));
        assert_eq!(cache.get("session", "value-1"), Some(record(1)));
        assert_eq!(cache.get("session", "value-2"), None);
        assert_eq!(
            cache.get("other", "value-1"),
            None,
            "bound to the cookie name"
        );
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = OpenedCookies::new(32).unwrap();
        for n in 0..1_000 {
            cache.put("session", &format!("value-{n}"), &record(n));
        }
        assert!(cache.len() <= 32, "{} cached", cache.len());
        assert_eq!(
            cache.get("session", "value-999"),
            Some(record(999)),
            "the newest stays"
        );
    }

    #[test]
    fn values_with_the_same_tail_are_told_apart() {
        let cache = OpenedCookies::new(64).unwrap();
        let tail = "T".repeat(HASHED_TAIL);
        cache.put("session", &format!("a{tail}"), &record(1));
        cache.put("session", &format!("b{tail}"), &record(2));
        assert_eq!(cache.get("session", &format!("b{tail}")), Some(record(2)));
        assert_eq!(
            cache.get("session", &format!("a{tail}")),
            None,
            "same slot: the newer value replaced the older, never answers for it"
        );
        assert_eq!(cache.get("session", &format!("c{tail}")), None);
    }

    #[test]
    fn zero_capacity_means_no_cache() {
        assert!(OpenedCookies::new(0).is_none());
    }
}
