//! aiohttp_session's own formats, so a Rust service can share sessions
//! with a running aiohttp service, in both directions, and take them over
//! as users come back.
//!
//! | Python (`aiohttp_session`) | here |
//! |---|---|
//! | `cookie_storage.EncryptedCookieStorage` (Fernet) | [`FernetCookieStorage`] |
//! | `nacl_storage.NaClCookieStorage` (PyNaCl `SecretBox`) | [`NaClCookieStorage`] |
//! | `redis_storage.RedisStorage` | [`AiohttpRedisStorage`] (feature `redis`) |
//! | `memcached_storage.MemcachedStorage` | [`AiohttpMemcachedStorage`] (feature `memcached`) |
//!
//! [`Upgrade`] reads one of these and writes a native storage instead, for
//! the day the Python service is gone. `MIGRATING.md` walks through a move.
//!
//! # The record
//!
//! aiohttp_session keeps `{"created": T, "session": {...}}` as JSON, where
//! `T` is the time of the session's last write (its `__setitem__` resets
//! it), so its `max_age` is an idle timeout counted from `T`. Here `T` is
//! the record's [`updated`](crate::storage::SessionRecord::updated), and the layer's
//! lifetimes apply to it as to any record, so a session expires on both
//! sides at the same second.
//!
//! What aiohttp_session has no place for, the session's real creation time
//! and the max age it chose for itself ([`MaxAge`]), is written beside, under
//! `"typed_sessions": {"created": ..., "own_max_age": ...}`. Python reads
//! past it, but drops it when it writes the session: after a write by
//! Python, the creation time is that write's (so the layer's absolute
//! timeout counts from there) and the session follows the layer's max age.
//!
//! An empty object `{}`, which aiohttp_session writes for an invalidated
//! server-side session, is no session: it loads as none and a save never
//! brings it back. A record that does not decode (another encoder, `NaN`)
//! is no session either.
//!
//! # Ids
//!
//! The server-side storages here use aiohttp_session's ids, uuid4 in hex
//! (`uuid.uuid4().hex`), parsed as strictly as native ids
//! ([`SessionId::parse_uuid4_hex`]); the native storages never accept them.
//! A custom `key_factory` on the Python side is not supported: its ids are
//! refused here (a new session for that user).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::StorageError;
use crate::lifetime::MaxAge;
use crate::record::SessionRecord;

#[cfg(doc)]
use crate::id::SessionId;

mod fernet;
#[cfg(feature = "memcached")]
mod memcached;
mod nacl;
#[cfg(feature = "redis")]
mod redis;
mod upgrade;

pub use fernet::FernetCookieStorage;
#[cfg(feature = "memcached")]
pub use memcached::AiohttpMemcachedStorage;
pub use nacl::NaClCookieStorage;
#[cfg(feature = "redis")]
pub use redis::AiohttpRedisStorage;
pub use upgrade::Upgrade;

/// aiohttp_session's default cookie name, which its Redis and Memcached
/// keys start with (`AIOHTTP_SESSION_<id>`). Give it to
/// [`SessionLayerBuilder::with_cookie_name`](crate::SessionLayerBuilder::with_cookie_name)
/// to share the Python service's cookie.
pub const DEFAULT_COOKIE_NAME: &str = "AIOHTTP_SESSION";

/// aiohttp_session's key of a server-side record: the cookie name, `_`,
/// the id.
#[cfg(any(feature = "redis", feature = "memcached"))]
fn record_key(cx: &crate::storage::StorageContext<'_>, id: &crate::id::SessionId) -> String {
    format!("{}_{}", cx.cookie_name, id.as_str())
}

/// What this crate keeps beside aiohttp_session's two fields.
#[derive(Serialize, Deserialize)]
struct Ours {
    created: u64,
    #[serde(default, skip_serializing_if = "MaxAge::is_layer")]
    own_max_age: MaxAge,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// [`SessionRecord::binding`]: without it a cookie under
    /// `with_revocations` would read as bound before every revocation.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    binding: Option<u64>,
}

#[derive(Deserialize)]
struct Stored {
    created: u64,
    session: Map<String, Value>,
    #[serde(default)]
    typed_sessions: Option<Ours>,
}

#[derive(Serialize)]
struct Written<'a> {
    created: u64,
    session: &'a Map<String, Value>,
    typed_sessions: Ours,
}

/// The session in aiohttp_session's JSON: `created` is the last write.
pub(crate) fn encode(record: &SessionRecord) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(&Written {
        created: record.updated,
        session: &record.data,
        typed_sessions: Ours {
            created: record.created,
            own_max_age: record.max_age,
            expires_at: record.expires_at,
            kind: record.kind.clone(),
            user: record.user.clone(),
            binding: record.binding,
        },
    })
    .map_err(StorageError::Serialize)
}

/// The session in aiohttp_session's JSON, if `bytes` is one: `{}` (an
/// invalidated session) and anything without an integer `created` and an
/// object `session` is none.
pub(crate) fn decode(bytes: &[u8]) -> Option<SessionRecord> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let mut record = SessionRecord::new(stored.created, MaxAge::Layer);
    record.data = stored.session;
    if let Some(ours) = stored.typed_sessions {
        record.created = ours.created.min(stored.created);
        record.max_age = ours.own_max_age;
        record.expires_at = ours.expires_at;
        record.kind = ours.kind;
        record.user = ours.user;
        record.binding = ours.binding;
    }
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_by_python_reads_with_its_last_write_as_both_times() {
        // `json.dumps` as aiohttp_session calls it: spaces, escapes.
        let python = br#"{"created": 1700000100, "session": {"user": "ann\u00e9", "n": [1, 2.5]}}"#;
        let record = decode(python).unwrap();
        assert_eq!(
            (record.created, record.updated),
            (1_700_000_100, 1_700_000_100)
        );
        assert_eq!(record.max_age, MaxAge::Layer);
        assert_eq!(record.data["user"], "ann\u{e9}");
        assert_eq!(record.data["n"], serde_json::json!([1, 2.5]));
    }

    #[test]
    fn our_times_and_own_max_age_survive_a_round_trip() {
        let mut record = SessionRecord::new(1_000, MaxAge::Seconds(90));
        record.updated = 1_500;
        record.data.insert("a".into(), 1.into());
        let bytes = encode(&record).unwrap();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json["created"], 1_500,
            "aiohttp's created is the last write"
        );
        assert_eq!(json["session"], serde_json::json!({"a": 1}));
        assert_eq!(decode(&bytes), Some(record.clone()));
        record.max_age = MaxAge::Layer;
        assert_eq!(decode(&encode(&record).unwrap()), Some(record.clone()));
        record.expires_at = Some(9_000);
        record.kind = Some("admin".into());
        record.user = Some("ann".into());
        assert_eq!(decode(&encode(&record).unwrap()), Some(record));
    }

    #[test]
    fn invalidated_and_malformed_records_are_no_session() {
        for bad in [
            &b"{}"[..],
            b"",
            b"null",
            br#"{"session": {}}"#,
            br#"{"created": 1.5, "session": {}}"#,
            br#"{"created": -1, "session": {}}"#,
            br#"{"created": 1, "session": []}"#,
            br#"{"created": 1, "session": {"a": NaN}}"#,
        ] {
            assert_eq!(decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
