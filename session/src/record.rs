//! What a storage keeps of a session, and what changed in it during a request.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lifetime::{MaxAge, Times};

/// The longest TTL given to a stored record: ten years.
pub const MAX_STORE_TTL: u64 = 10 * 365 * 86_400;

/// The deepest nesting of arrays and objects a session value may have.
/// Every record format reads JSON with serde_json's limit of 128 levels
/// for the whole document, of which the record's own envelope takes two;
/// a value the layer accepted and could not read back would be a session
/// lost on the next request, so deeper values are refused when saving.
/// Half the limit leaves room for formats that wrap records further (a
/// store of a later release, aiohttp_session's records) while no real
/// session comes near it.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Browsers keep cookies of up to 4096 bytes (name, value and attributes);
/// a larger one is never sent, and a larger incoming value is never decoded.
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// The largest session a server-side store is given: the size of its
/// record as JSON (`{"created":…,"session":{…}}`), in bytes. Memcached's
/// default item size (1 MiB, with room for its key and header) is the
/// smallest limit among the stores, so every store takes whatever any other
/// takes; the layer checks it before anything is sent, and a larger session
/// fails to save with [`SaveError::SessionTooLarge`](crate::SaveError::SessionTooLarge).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024 - 512;

/// How far ahead of this server's clock a record's times may be: a
/// server whose clock runs fast would otherwise lengthen the sessions it
/// writes everywhere. Clocks kept by NTP agree to milliseconds.
pub const MAX_CLOCK_SKEW: u64 = 60;

/// The persisted state of one session: its data and the times that decide
/// when it expires.
///
/// Cookie storages carry it whole in the cookie; server-side stores keep it
/// under the session's id. Its JSON form is
/// `{"created": 1764000000, "updated": 1764000100, "own_max_age": 3600, "session": {...}}`
/// (`own_max_age` absent when the session follows the layer's lifetimes,
/// `null` for a browser-session cookie the session chose; see [`MaxAge`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// When the session was created, in seconds since the Unix epoch. Writes
    /// never move it.
    pub created: u64,
    /// When the session was last written, in seconds since the Unix epoch.
    /// The idle timeout counts from here.
    #[serde(default)]
    pub updated: u64,
    /// The lifetime the session chose for itself, if any; every other limit
    /// is the layer's, read at each load.
    #[serde(
        rename = "own_max_age",
        default,
        skip_serializing_if = "MaxAge::is_layer"
    )]
    pub max_age: MaxAge,
    /// The time the session chose to end at, in seconds since the Unix
    /// epoch ([`Session::expire_at`](crate::Session::expire_at)), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The [`SessionKind`](crate::SessionKind) whose layer made the
    /// session, `None` for [`Main`](crate::Main): a layer loads only the
    /// records of its own kind, so a client that moves one kind's id into
    /// another kind's cookie gets a new empty session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The user the session is bound to
    /// ([`Session::bind_user`](crate::Session::bind_user)), by which a
    /// server-side store lists and revokes sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Under a [`Revocations`](crate::Revocations) state (cookie storages
    /// and Memcached): how many times the user's sessions had been revoked
    /// when this session was bound to them, `None` until a save sets it. A
    /// session whose count is below the user's current one was revoked,
    /// and never opens again. Renewals carry it; binding another user
    /// clears it.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<u64>,
    /// The session's data: string keys to JSON values.
    #[serde(rename = "session", default)]
    pub data: Map<String, Value>,
}

impl SessionRecord {
    /// An empty session created at `now`.
    pub fn new(now: u64, max_age: MaxAge) -> Self {
        Self {
            created: now,
            updated: now,
            max_age,
            expires_at: None,
            kind: None,
            user: None,
            binding: None,
            data: Map::new(),
        }
    }

    /// Whether a revocation ended this bound session: it does not carry
    /// its user's current revocation `mark` (see
    /// [`Revocations`](crate::Revocations)). A record from before marks
    /// counts as bound at 0, and keeps that from now on, so a save after a
    /// revocation cannot give it the new mark; a mark above the user's can
    /// only come from one that was lost and written again lower.
    pub(crate) fn is_revoked_at(&mut self, mark: u64) -> bool {
        let revoked = *self.binding.get_or_insert(0) != mark;
        if revoked {
            tracing::debug!("session revoked with its user's; starting a new session");
        }
        revoked
    }

    /// The first key, among `keys`, whose value nests deeper than
    /// [`MAX_VALUE_DEPTH`].
    pub(crate) fn too_deep<'k>(&self, mut keys: impl Iterator<Item = &'k str>) -> Option<&'k str> {
        keys.find(|key| {
            self.data
                .get(*key)
                .is_some_and(|value| depth(value) > MAX_VALUE_DEPTH)
        })
    }

    /// An empty session of `kind` (`None` for the main kind) created at
    /// `now`, following the layer's lifetimes.
    pub(crate) fn of_kind(now: u64, kind: Option<&str>) -> Self {
        Self {
            kind: kind.map(str::to_owned),
            ..Self::new(now, MaxAge::Layer)
        }
    }

    /// The times that decide when the session ends.
    pub(crate) fn times(&self) -> Times {
        Times {
            created: self.created,
            updated: self.updated,
            max_age: self.max_age,
            expires_at: self.expires_at,
        }
    }

    /// The size of the record's JSON, in bytes, counted without building it.
    pub(crate) fn json_size(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        // A map of JSON values with string keys always serializes.
        let _ = serde_json::to_writer(&mut count, self);
        count.0
    }

    /// Whether the record claims to be created or written more than
    /// [`MAX_CLOCK_SKEW`] after `now`: a server with a fast clock wrote it,
    /// or someone forged it. Such a record is not trusted.
    pub fn is_from_the_future(&self, now: u64) -> bool {
        let limit = now.saturating_add(MAX_CLOCK_SKEW);
        self.created > limit || self.updated > limit
    }

    /// Whether there is nothing to store: no data and no bound user (a
    /// binding is data: a signed-in session with an empty map is kept).
    pub(crate) fn holds_nothing(&self) -> bool {
        self.data.is_empty() && self.user.is_none()
    }

    /// Merges a request's changes into this stored record: the keys it set
    /// (with their values in `from`) and removed, or the whole map after a
    /// full rewrite; `updated` and `max_age` come from `from`, `created`
    /// stays.
    pub fn merge(&mut self, from: &SessionRecord, changes: &Changes) {
        if changes.is_full_rewrite() {
            self.data.clone_from(&from.data);
        } else {
            for key in changes.set_keys() {
                if let Some(value) = from.data.get(key) {
                    self.data.insert(key.to_owned(), value.clone());
                }
            }
            for key in changes.removed_keys() {
                self.data.remove(key);
            }
        }
        self.updated = from.updated;
        self.max_age = from.max_age;
        self.expires_at = from.expires_at;
        self.user.clone_from(&from.user);
    }
}

/// How deeply arrays and objects nest in `value` (a scalar is 0), found
/// without recursion, so no value is too deep to measure.
fn depth(value: &Value) -> usize {
    fn containers(value: &Value) -> Option<Box<dyn Iterator<Item = &Value> + '_>> {
        match value {
            Value::Array(items) => Some(Box::new(items.iter())),
            Value::Object(map) => Some(Box::new(map.values())),
            _ => None,
        }
    }
    // Every save measures the values it sets, most of them scalars: those
    // cost nothing, and only nested containers are ever queued.
    let Some(children) = containers(value) else {
        return 0;
    };
    let mut deepest = 1;
    let mut pending = vec![(children, 1)];
    while let Some((mut children, level)) = pending.pop() {
        if let Some(child) = children.next() {
            pending.push((children, level));
            if let Some(grandchildren) = containers(child) {
                deepest = deepest.max(level + 1);
                pending.push((grandchildren, level + 1));
            }
        }
    }
    deepest
}

/// Shows the times and the keys, never the values (tokens, secrets), so a
/// storage that logs what it loaded leaks nothing.
impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("created", &self.created)
            .field("updated", &self.updated)
            .field("max_age", &self.max_age)
            .field("expires_at", &self.expires_at)
            .field("kind", &self.kind)
            .field("user", &self.user.as_ref().map(|_| "<bound>"))
            .field("binding", &self.binding)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Which keys of the session map a request set and removed.
///
/// Server-side stores merge only these into the stored record, so two
/// concurrent requests that change different keys of one session both keep
/// their change. After [`Session::mark_changed`](crate::Session::mark_changed),
/// `renew` or `invalidate` the whole map is written
/// ([`Changes::is_full_rewrite`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    set: BTreeSet<String>,
    removed: BTreeSet<String>,
    full_rewrite: bool,
}

impl Changes {
    /// Keys given a value in this request (present in the record's data).
    pub fn set_keys(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(String::as_str)
    }

    /// Keys removed in this request (absent from the record's data).
    pub fn removed_keys(&self) -> impl Iterator<Item = &str> {
        self.removed.iter().map(String::as_str)
    }

    /// Whether the whole map must replace the stored one.
    pub fn is_full_rewrite(&self) -> bool {
        self.full_rewrite
    }

    /// Whether nothing in the map changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty() && !self.full_rewrite
    }

    pub(crate) fn record_set(&mut self, key: &str) {
        self.removed.remove(key);
        if !self.set.contains(key) {
            self.set.insert(key.to_owned());
        }
    }

    pub(crate) fn record_removed(&mut self, key: &str) {
        self.set.remove(key);
        if !self.removed.contains(key) {
            self.removed.insert(key.to_owned());
        }
    }

    pub(crate) fn rewrite_all(&mut self) {
        self.full_rewrite = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_size_is_the_length_of_the_json() {
        let mut record = SessionRecord::new(1_000, MaxAge::Seconds(60));
        record.data.insert("user".into(), "ann\u{e9}\"".into());
        record
            .data
            .insert("n".into(), serde_json::json!([1, {"a": null}]));
        assert_eq!(
            record.json_size(),
            serde_json::to_vec(&record).unwrap().len()
        );
    }

    #[test]
    fn debug_shows_keys_but_never_values() {
        let mut record = SessionRecord::new(1_000, MaxAge::Seconds(60));
        record.data.insert("csrf".into(), "s3cret".into());
        let debug = format!("{record:?}");
        assert!(debug.contains("csrf") && debug.contains("1000"), "{debug}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn depth_counts_nested_arrays_and_objects() {
        assert_eq!(depth(&serde_json::json!(1)), 0);
        assert_eq!(depth(&serde_json::json!([])), 1);
        assert_eq!(
            depth(&serde_json::json!({"a": [1, {"b": [[]]}], "c": 2})),
            5
        );
        let mut deep = serde_json::json!(0);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 10_000);
        // serde_json drops a value recursively: unwind it by hand.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or_default();
        }
    }

    #[test]
    fn times_more_than_the_skew_ahead_are_from_the_future() {
        let mut record = SessionRecord::new(1_000, MaxAge::Seconds(60));
        assert!(!record.is_from_the_future(1_000 - MAX_CLOCK_SKEW));
        assert!(record.is_from_the_future(1_000 - MAX_CLOCK_SKEW - 1));
        record.created = 0;
        assert!(
            record.is_from_the_future(1_000 - MAX_CLOCK_SKEW - 1),
            "updated counts too"
        );
    }

    #[test]
    fn a_key_is_either_set_or_removed() {
        let mut changes = Changes::default();
        changes.record_set("a");
        changes.record_removed("a");
        changes.record_set("b");
        assert_eq!(changes.set_keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(changes.removed_keys().collect::<Vec<_>>(), ["a"]);
        changes.record_set("a");
        assert_eq!(changes.removed_keys().count(), 0);
    }

    #[test]
    fn record_json_keeps_the_documented_shape() {
        let json = r#"{"created":10,"updated":20,"own_max_age":30,"session":{"a":1}}"#;
        let record: SessionRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.max_age, MaxAge::Seconds(30));
        assert_eq!(serde_json::to_string(&record).unwrap(), json);
        let browser = r#"{"created":10,"updated":20,"own_max_age":null,"session":{}}"#;
        let record: SessionRecord = serde_json::from_str(browser).unwrap();
        assert_eq!(record.max_age, MaxAge::BrowserSession);
        assert_eq!(serde_json::to_string(&record).unwrap(), browser);
        let layer = r#"{"created":10,"updated":20,"session":{}}"#;
        let record: SessionRecord = serde_json::from_str(layer).unwrap();
        assert_eq!(record.max_age, MaxAge::Layer);
        assert_eq!(serde_json::to_string(&record).unwrap(), layer);
        // aiohttp_session's simple-cookie shape still reads.
        let old: SessionRecord =
            serde_json::from_str(r#"{"created":10,"session":{"a":1}}"#).unwrap();
        assert_eq!(old.data["a"], 1);
    }

    #[test]
    fn a_max_age_written_before_own_lifetimes_follows_the_layer() {
        // Records of earlier releases copied the layer's max age of the
        // time: the layer's current setting replaces it.
        let json = r#"{"created":10,"updated":20,"max_age":3600,"session":{"a":1}}"#;
        let record: SessionRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.max_age, MaxAge::Layer);
    }
}
