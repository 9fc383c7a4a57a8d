//! A bounded cache of the cookies this process opened lately, so
//! a browser that sends the same cookie again and again (every page, every
//! API call between two writes) costs a lookup instead of base64, AES-GCM
//! and JSON each time.
//!
//! An entry is found only for exactly the same cookie value under the same
//! cookie name, which opens to exactly the same record, so the cache never
//! changes what a cookie means; expiry is still checked on every load.
//!
//! Its memory is bounded as well as its count: a decoded session may take
//! a hundred times the bytes of its JSON (a map of one key is a B-tree node
//! of 640 bytes), so 4096 cookies of 4 KB could hold 1.5 GB. Each entry is
//! charged what it holds, by [`cost`], an upper bound of the heap it takes
//! (checked against a counting allocator in
//! `tests/tests/encrypted_cookie.rs`), and a part of the cache holds at most
//! [`BYTES_PER_COOKIE`] times its count.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::record::SessionRecord;

/// Parts of the cache, each behind its own lock.
const SHARDS: usize = 16;

/// The memory a part may hold for each cookie it may hold: a session of a
/// few hundred bytes costs about 1.5 KiB, the fullest cookie (4 KB) of a
/// 3 KB string about 8 KiB, of small objects up to 380 KiB.
pub(crate) const BYTES_PER_COOKIE: usize = 8 * 1024;

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
    /// What this entry holds, by [`cost`].
    cost: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    /// The sum of the entries' costs.
    bytes: usize,
}

impl Shard {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// One part of the cache, on cache lines of its own, so that two cores
/// locking neighbouring parts never write to the same line.
#[derive(Default)]
#[repr(align(128))]
struct Part(Mutex<Shard>);

pub(crate) struct OpenedCookies {
    shards: Box<[Part]>,
    per_shard: usize,
    bytes_per_shard: usize,
    hasher: RandomState,
}

impl OpenedCookies {
    /// A cache of about `capacity` cookies, holding at most about
    /// `capacity` times [`BYTES_PER_COOKIE`]; `None` for a capacity of zero.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        let per_shard = capacity.div_ceil(SHARDS);
        (capacity > 0).then(|| Self {
            shards: (0..SHARDS).map(|_| Part::default()).collect(),
            per_shard,
            bytes_per_shard: per_shard.saturating_mul(BYTES_PER_COOKIE),
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
        let entry = shard.entries.get(&hash)?;
        (*entry.value == *value && *entry.cookie_name == *cookie_name).then(|| entry.record.clone())
    }

    /// Remembers that `value` opens to `record`. A part that is full, by
    /// count or by bytes, is emptied first: cheap, and the cookies in use
    /// come back at their next request. A record that alone would fill a
    /// part is not kept.
    pub(crate) fn put(&self, cookie_name: &str, value: &str, record: &SessionRecord) {
        let cost = cost(cookie_name, value, record);
        if cost > self.bytes_per_shard {
            return;
        }
        let (hash, mut shard) = self.locate(cookie_name, value);
        if let Some(replaced) = shard.entries.remove(&hash) {
            shard.bytes -= replaced.cost;
        }
        if shard.entries.len() >= self.per_shard || shard.bytes + cost > self.bytes_per_shard {
            shard.clear();
        }
        shard.bytes += cost;
        shard.entries.insert(
            hash,
            Entry {
                cookie_name: cookie_name.into(),
                value: value.into(),
                record: record.clone(),
                cost,
            },
        );
    }

    /// How many cookies are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|part| part.0.lock().map_or(0, |shard| shard.entries.len()))
            .sum()
    }

    /// The bytes cached, by [`cost`].
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|part| part.0.lock().map_or(0, |shard| shard.bytes))
            .sum()
    }
}

/// An upper bound of the memory an entry takes: its slot in the table (a
/// table is at most half full, so twice the slot), the two strings and the
/// record's heap, each block as the allocator takes it.
fn cost(cookie_name: &str, value: &str, record: &SessionRecord) -> usize {
    2 * (size_of::<u64>() + size_of::<Entry>() + 1)
        + block(cookie_name.len())
        + block(value.len())
        + map_heap(&record.data)
}

/// A heap block of `len` bytes as malloc takes it: with an 8-byte header,
/// rounded up to 16, at least 32; nothing for an empty string or vector.
fn block(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        ((len + 8 + 15) & !15).max(32)
    }
}

/// The heap a JSON value holds, bounded from above.
fn heap(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => block(text.len()),
        Value::Array(items) => {
            block(items.len() * size_of::<Value>()) + items.iter().map(heap).sum::<usize>()
        }
        Value::Object(map) => map_heap(map),
    }
}

/// A map is a B-tree of nodes of up to 11 entries, every node but the root
/// holding at least 5 (what insertions and removals keep), so at most
/// `1 + len / 5` nodes; each is counted at the size of an inner node, the
/// larger kind (11 keys, 11 values, 12 child pointers, parent and lengths).
fn map_heap(map: &serde_json::Map<String, Value>) -> usize {
    const NODE: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 12 * 8 + 16;
    let nodes = if map.is_empty() { 0 } else { 1 + map.len() / 5 };
    nodes * block(NODE)
        + map
            .iter()
            .map(|(key, value)| block(key.len()) + heap(value))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;

    fn record(n: u64) -> SessionRecord {
        let mut record = SessionRecord::new(n, MaxAge::Layer);
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

    /// A record of `objects` maps of one key, each a B-tree node.
    fn costly(n: u64, objects: usize) -> SessionRecord {
        let mut record = record(n);
        let list = vec![serde_json::json!({"": 0}); objects];
        record.data.insert("list".into(), list.into());
        record
    }

    #[test]
    fn stays_within_its_bytes() {
        let cache = OpenedCookies::new(64).unwrap();
        let budget = 64 * BYTES_PER_COOKIE;
        for n in 0..1_000 {
            cache.put("session", &format!("value-{n}"), &costly(n, 20));
            assert!(cache.bytes() <= budget, "{} bytes cached", cache.bytes());
        }
        assert!(
            cache.len() < 64,
            "fewer costly cookies fit: {}",
            cache.len()
        );
        assert_eq!(cache.get("session", "value-999"), Some(costly(999, 20)));
    }

    #[test]
    fn a_record_that_alone_fills_a_part_is_not_kept() {
        let cache = OpenedCookies::new(64).unwrap();
        cache.put("session", "big", &costly(1, 20));
        cache.put("session", "huge", &costly(2, 1_000));
        assert_eq!(cache.get("session", "big"), Some(costly(1, 20)));
        assert_eq!(cache.get("session", "huge"), None);
    }

    #[test]
    fn the_cost_of_a_replaced_entry_is_given_back() {
        let cache = OpenedCookies::new(64).unwrap();
        let tail = "T".repeat(HASHED_TAIL);
        cache.put("session", &format!("a{tail}"), &costly(1, 10));
        let one = cache.bytes();
        cache.put("session", &format!("b{tail}"), &costly(1, 10));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), one);
    }

    #[test]
    fn costs_grow_with_what_a_record_holds() {
        let small = cost("session", "v", &record(1));
        assert!(small < 2_000, "{small}");
        let string = cost("session", "v", &{
            let mut record = record(1);
            record.data.insert("s".into(), "x".repeat(3_000).into());
            record
        });
        assert!(string > small + 3_000, "{string}");
        // Each map of one key is a node of 11 entries.
        let maps = cost("session", "v", &costly(1, 100));
        assert!(maps > small + 100 * 640, "{maps}");
    }

    #[test]
    fn zero_capacity_means_no_cache() {
        assert!(OpenedCookies::new(0).is_none());
    }
}
