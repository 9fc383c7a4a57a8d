//! The private code that reads bytes a client or a store sent, reachable
//! from outside the crate only as `__private::decoders`: the fuzz targets
//! in `fuzz/` and the test that replays their corpora call it. Not part of
//! the API; it may change in any release.
//!
//! Each function is a thin door onto the code the layer and the storages
//! run, never a copy of it, so what the fuzzer proves holds for them.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::id::SessionId;
use crate::lifetime::{Lifetimes, MaxAge};
use crate::record::{Changes, SessionRecord};
use crate::session::{Found, RequestFacts, Session};
use crate::storage::memory::packed::Packed;
use crate::transport::Via;

/// The session cookie's value among the request's `Cookie` headers, as the
/// layer reads it.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    crate::layer::cookies::find(headers, name)
}

/// The changes of a request that set `set`, removed `removed`, and, with
/// `full_rewrite`, rewrote the whole map (in that order, as a handler
/// would).
pub fn changes<'k>(
    set: impl IntoIterator<Item = &'k str>,
    removed: impl IntoIterator<Item = &'k str>,
    full_rewrite: bool,
) -> Changes {
    let mut changes = Changes::default();
    for key in set {
        changes.record_set(key);
    }
    for key in removed {
        changes.record_removed(key);
    }
    if full_rewrite {
        changes.rewrite_all();
    }
    changes
}

/// A session loaded from a storage with `data` and no max age, as the
/// `Session` and `TypedSession` extractors hand it to a handler.
pub fn loaded_session(data: Map<String, Value>) -> Session {
    let mut record = SessionRecord::new(1_000, MaxAge::Layer);
    record.data = data;
    let found = Found {
        record,
        identity: None,
        version: None,
        extended: false,
        renew: false,
    };
    let facts = RequestFacts {
        now: 1_000,
        lifetimes: Lifetimes::default(),
        kind: None,
        came_via: Some(Via::Cookie),
    };
    Session::found(found, facts)
}

/// A record of the memory store, as it keeps it: see `storage::memory::packed`.
pub struct PackedRecord(Packed);

impl PackedRecord {
    /// `record` of `id`, packed as the store packs it.
    pub fn pack(id: &SessionId, record: &SessionRecord) -> Self {
        Self(Packed::new(id, record))
    }

    /// A packed record of these bytes, whatever they hold.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Packed::from_bytes(bytes))
    }

    /// The packed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The record, if this is the record of `id` and it reads.
    pub fn unpack(&self, id: &SessionId) -> Option<SessionRecord> {
        self.0.unpack(id)
    }

    /// Merges a request's changes, as an update of the store does; `false`
    /// if nothing was merged.
    pub fn merge(&mut self, id: &SessionId, from: &SessionRecord, changes: &Changes) -> bool {
        self.0.merge(id, from, changes)
    }
}

/// The hash fields `HSET` writes for `record` (every key), in pairs.
#[cfg(feature = "redis")]
pub fn redis_fields(record: &SessionRecord, ttl: u64) -> Vec<String> {
    crate::storage::redis::encode(record, ttl, None::<std::iter::Empty<&str>>)
        .expect("a record of JSON values serializes")
}

/// The record in a hash `HGETALL` returned, as the Redis store reads it.
#[cfg(feature = "redis")]
pub fn redis_record(fields: Vec<(String, String)>) -> Option<SessionRecord> {
    crate::storage::redis::decode(fields)
}

/// The record in a value Memcached returned, as the Memcached store reads it.
#[cfg(feature = "memcached")]
pub fn memcached_record(bytes: &[u8]) -> Option<SessionRecord> {
    crate::storage::memcached::decode(bytes)
}
