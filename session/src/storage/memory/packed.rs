//! A record as the memory store keeps it: one small allocation of bytes.
//!
//! A [`SessionRecord`]'s map is a B-tree, which allocates a node of eleven
//! entries (about 630 bytes) even for a single key, and every key and
//! string separately. Packed, a one-key session is its id and about twenty
//! bytes, in one allocation.
//!
//! The bytes are a binary form of the map rather than its JSON: parsing
//! `{"count":1}` back took 110 ns where the clone of the map it replaces
//! took 40, which made requests 8% (reads) to 16% (writes) slower; this
//! form reads back in about 70 ns, and a write merges its changes into the
//! bytes without decoding the values it does not change (about 45 ns, where
//! merging into the map took 26).

use std::cell::RefCell;

use serde_json::{Map, Number, Value};

use crate::id::SessionId;
use crate::lifetime::MaxAge;
use crate::record::{Changes, SessionRecord};

/// A session's id and record in one allocation: the id's text, `created`
/// and `updated` as 8 bytes each (little-endian, read without a loop: they
/// take 5 bytes as varints, but 3 loops), a byte whose low two bits say
/// what the session's own `max_age` is (0: it follows the layer, 1: seconds,
/// 2: a browser-session cookie), whose bit [`HAS_END`] says it chose an
/// end and whose bit [`HAS_KIND`] says it is of a kind other than the main
/// one; then the seconds of that max age and that end as varints (LEB128),
/// and the kind and the bound user (bit [`HAS_USER`]) as strings, where
/// there are some, then each key of the map (a string: its length
/// as a varint and its UTF-8 bytes) and its value, until the end, in no
/// particular order.
///
/// A value is a tag byte and what the tag says: nothing for null, false and
/// true; a varint for an unsigned integer, and for a negative one (its
/// bitwise complement); 8 bytes for a float; a string for a string (and
/// for a number of another form, as its text); a count and as many values
/// for an array; a count and as many pairs of a string (the key) and a
/// value for an object.
pub(crate) struct Packed(Box<[u8]>);

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UNSIGNED: u8 = 3;
const NEGATIVE: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;
/// A number that is neither a u64, an i64 nor an f64, which only
/// serde_json's `arbitrary_precision` feature makes: kept as its text.
const NUMBER_TEXT: u8 = 9;

/// The bit of the header's lifetime byte that says an end time follows.
const HAS_END: u8 = 4;
/// The bit of the header's lifetime byte that says a kind's name follows.
const HAS_KIND: u8 = 8;
/// The bit of the header's lifetime byte that says a bound user follows.
const HAS_USER: u8 = 16;

/// What precedes the map: the times that decide the record's expiry.
struct Header {
    created: u64,
    updated: u64,
    max_age: MaxAge,
    expires_at: Option<u64>,
    kind: Option<String>,
    user: Option<String>,
}

impl Packed {
    pub(crate) fn new(id: &SessionId, record: &SessionRecord) -> Self {
        with_buffer(|bytes| {
            put_header(bytes, id, Kept::of(record), record);
            put_map(bytes, &record.data);
            Self(Box::from(bytes.as_slice()))
        })
    }

    /// A record as `bytes`, whatever they hold: only for the fuzz targets,
    /// which hold the readers to never trusting them.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        Self(Box::from(bytes))
    }

    /// The bytes kept.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether this is the record of `id`.
    pub(super) fn is_of(&self, id: &SessionId) -> bool {
        self.0.first_chunk() == Some(id.as_bytes())
    }

    /// The record, if this is the record of `id`.
    pub(crate) fn unpack(&self, id: &SessionId) -> Option<SessionRecord> {
        let (header, mut rest) = self.header(id)?;
        // One entry (the commonest session) goes straight in; several are
        // built into the B-tree in one pass, which costs half as much as
        // inserting them one by one (each insert searches the node).
        let mut data = Map::new();
        if !rest.is_empty() {
            let first = take_entry(&mut rest)?;
            if rest.is_empty() {
                data.insert(first.0, first.1);
            } else {
                let mut entries = vec![first];
                while !rest.is_empty() {
                    entries.push(take_entry(&mut rest)?);
                }
                data = entries.into_iter().collect();
            }
        }
        Some(SessionRecord {
            created: header.created,
            updated: header.updated,
            max_age: header.max_age,
            expires_at: header.expires_at,
            kind: header.kind,
            user: header.user,
            binding: None,
            data,
        })
    }

    /// Merges a request's changes into this record of `id`, as
    /// [`SessionRecord::merge`] does: the keys `changes` set (with their
    /// values in `from`) and removed, or the whole map of `from` after a
    /// full rewrite; `updated` and `max_age` from `from`, `created` kept.
    /// The values of the other keys are copied as bytes, never decoded.
    /// `false`, changing nothing, if this is not the record of `id`.
    pub(crate) fn merge(
        &mut self,
        id: &SessionId,
        from: &SessionRecord,
        changes: &Changes,
    ) -> bool {
        with_buffer(|bytes| {
            let Some((header, stored)) = self.header(id) else {
                return false;
            };
            // What `SessionRecord::merge` keeps of the stored record (its
            // creation and its kind), the rest from `from`: one rule for
            // both, whatever the kind's value.
            let kept = Kept {
                created: header.created,
                kind: header.kind.as_deref(),
            };
            put_header(bytes, id, kept, from);
            if changes.is_full_rewrite() {
                put_map(bytes, &from.data);
            } else if put_merged(bytes, stored, from, changes).is_none() {
                return false;
            }
            // Most writes give a key a value of the same size: the record
            // is rewritten where it is, with no allocation.
            if bytes.len() == self.0.len() {
                self.0.copy_from_slice(bytes);
            } else {
                self.0 = Box::from(bytes.as_slice());
            }
            true
        })
    }

    /// The header of this record of `id`, and the map's bytes after it.
    fn header(&self, id: &SessionId) -> Option<(Header, &[u8])> {
        // Compared as arrays of the id's length: inline, no `memcmp` call.
        let (stored_id, mut rest) = self.0.split_first_chunk()?;
        if stored_id != id.as_bytes() {
            return None;
        }
        let created = take_u64(&mut rest)?;
        let updated = take_u64(&mut rest)?;
        let lifetime = take_byte(&mut rest)?;
        let max_age = match lifetime & 3 {
            0 => MaxAge::Layer,
            1 => MaxAge::Seconds(take_varint(&mut rest)?),
            _ => MaxAge::BrowserSession,
        };
        let expires_at = if lifetime & HAS_END == 0 {
            None
        } else {
            Some(take_varint(&mut rest)?)
        };
        let kind = if lifetime & HAS_KIND == 0 {
            None
        } else {
            Some(take_string(&mut rest)?)
        };
        let user = if lifetime & HAS_USER == 0 {
            None
        } else {
            Some(take_string(&mut rest)?)
        };
        let header = Header {
            created,
            updated,
            max_age,
            expires_at,
            kind,
            user,
        };
        Some((header, rest))
    }

    /// The bytes kept, for measurements.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Runs `write` with the thread's buffer, emptied: records are written
/// there and then copied into an allocation of their exact size, where a
/// `Vec` of their own would be allocated, grown and shrunk every time.
fn with_buffer<T>(write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        let written = write(buffer);
        // A huge record leaves no huge buffer behind.
        buffer.truncate(BUFFER_KEPT);
        buffer.shrink_to(BUFFER_KEPT);
        written
    })
}

/// The bytes of the thread's buffer kept from one record to the next.
const BUFFER_KEPT: usize = 4096;

/// The entries of `stored` that `changes` leave alone, as they are, then
/// the entries `changes` set, from `from`.
fn put_merged(
    bytes: &mut Vec<u8>,
    mut stored: &[u8],
    from: &SessionRecord,
    changes: &Changes,
) -> Option<()> {
    // A key set but missing from `from` keeps its stored value, as in
    // `SessionRecord::merge`.
    let set = changes
        .set_keys()
        .filter_map(|key| Some((key, Some(from.data.get(key)?))));
    let removed = changes.removed_keys().map(|key| (key, None));
    let changed = Changed::new(set.chain(removed));
    while !stored.is_empty() {
        let entry = stored;
        let key = take_bytes(&mut stored)?;
        skip_value(&mut stored)?;
        if !changed.contains(key) {
            bytes.extend_from_slice(&entry[..entry.len() - stored.len()]);
        }
    }
    for (key, value) in changed.entries() {
        if let Some(value) = value {
            put_str(bytes, key);
            put_value(bytes, value);
        }
    }
    Some(())
}

/// A key a request changed: with its new value, or `None` if removed.
type Change<'a> = (&'a str, Option<&'a Value>);

/// The keys a request changed, looked up for every stored key: kept on the
/// stack when they are few (a request changes one or two keys), sorted for
/// a binary search when they are many.
enum Changed<'a> {
    Few(usize, [Change<'a>; 8]),
    Many(Vec<Change<'a>>),
}

impl<'a> Changed<'a> {
    fn new(mut changes: impl Iterator<Item = Change<'a>>) -> Self {
        let mut few = [("", None); 8];
        let mut len = 0;
        while let Some(change) = changes.next() {
            if len == few.len() {
                let mut many: Vec<_> = few.into_iter().chain([change]).chain(changes).collect();
                many.sort_unstable_by_key(|(key, _)| *key);
                return Self::Many(many);
            }
            few[len] = change;
            len += 1;
        }
        Self::Few(len, few)
    }

    fn entries(&self) -> &[Change<'a>] {
        match self {
            Self::Few(len, few) => &few[..*len],
            Self::Many(many) => many,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::Few(len, few) => few[..*len]
                .iter()
                .any(|(changed, _)| changed.as_bytes() == key),
            Self::Many(many) => many
                .binary_search_by(|(changed, _)| changed.as_bytes().cmp(key))
                .is_ok(),
        }
    }
}

/// What a record keeps of itself through a merge, as
/// [`SessionRecord::merge`] does: when it was created and its kind.
struct Kept<'a> {
    created: u64,
    kind: Option<&'a str>,
}

impl<'a> Kept<'a> {
    fn of(record: &'a SessionRecord) -> Self {
        Self {
            created: record.created,
            kind: record.kind.as_deref(),
        }
    }
}

/// The id, what the record keeps (`created` and its kind), and the times
/// and bound user of `times`.
fn put_header(bytes: &mut Vec<u8>, id: &SessionId, kept: Kept<'_>, times: &SessionRecord) {
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(&kept.created.to_le_bytes());
    bytes.extend_from_slice(&times.updated.to_le_bytes());
    let end = if times.expires_at.is_some() {
        HAS_END
    } else {
        0
    } | if kept.kind.is_some() { HAS_KIND } else { 0 }
        | if times.user.is_some() { HAS_USER } else { 0 };
    match times.max_age {
        MaxAge::Layer => bytes.push(end),
        MaxAge::Seconds(seconds) => {
            bytes.push(1 | end);
            put_varint(bytes, seconds);
        }
        MaxAge::BrowserSession => bytes.push(2 | end),
    }
    if let Some(at) = times.expires_at {
        put_varint(bytes, at);
    }
    if let Some(kind) = kept.kind {
        put_str(bytes, kind);
    }
    if let Some(user) = &times.user {
        put_str(bytes, user);
    }
}

fn put_map(bytes: &mut Vec<u8>, map: &Map<String, Value>) {
    for (key, value) in map {
        put_str(bytes, key);
        put_value(bytes, value);
    }
}

#[inline]
fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push(value as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

#[inline]
fn put_len(bytes: &mut Vec<u8>, len: usize) {
    put_varint(bytes, len as u64);
}

#[inline]
fn put_str(bytes: &mut Vec<u8>, text: &str) {
    put_len(bytes, text.len());
    bytes.extend_from_slice(text.as_bytes());
}

fn put_value(bytes: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => bytes.push(NULL),
        Value::Bool(false) => bytes.push(FALSE),
        Value::Bool(true) => bytes.push(TRUE),
        Value::Number(number) => put_number(bytes, number),
        Value::String(text) => {
            bytes.push(STRING);
            put_str(bytes, text);
        }
        Value::Array(items) => {
            bytes.push(ARRAY);
            put_len(bytes, items.len());
            for item in items {
                put_value(bytes, item);
            }
        }
        Value::Object(map) => {
            bytes.push(OBJECT);
            put_len(bytes, map.len());
            for (key, value) in map {
                put_str(bytes, key);
                put_value(bytes, value);
            }
        }
    }
}

fn put_number(bytes: &mut Vec<u8>, number: &Number) {
    if let Some(unsigned) = number.as_u64() {
        bytes.push(UNSIGNED);
        put_varint(bytes, unsigned);
    } else if let Some(negative) = number.as_i64() {
        bytes.push(NEGATIVE);
        put_varint(bytes, !(negative as u64));
    } else if let Some(float) = number.as_f64().filter(|_| number.is_f64()) {
        bytes.push(FLOAT);
        bytes.extend_from_slice(&float.to_le_bytes());
    } else {
        bytes.push(NUMBER_TEXT);
        put_str(bytes, &number.to_string());
    }
}

#[inline]
fn take_byte(bytes: &mut &[u8]) -> Option<u8> {
    let (byte, rest) = bytes.split_first()?;
    *bytes = rest;
    Some(*byte)
}

#[inline]
fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (value, rest) = bytes.split_first_chunk()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*value))
}

#[inline]
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    match bytes.split_first() {
        Some((&byte, rest)) if byte < 0x80 => {
            *bytes = rest;
            Some(byte.into())
        }
        _ => take_long_varint(bytes),
    }
}

#[cold]
fn take_long_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0;
    let mut shift = 0;
    loop {
        let byte = take_byte(bytes)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift >= u64::BITS {
            return None;
        }
    }
}

#[inline]
fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    usize::try_from(take_varint(bytes)?).ok()
}

/// A string's bytes, not checked as UTF-8.
#[inline]
fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_len(bytes)?;
    let (text, rest) = bytes.split_at_checked(len)?;
    *bytes = rest;
    Some(text)
}

#[inline]
fn take_str<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(take_bytes(bytes)?).ok()
}

#[inline]
fn take_string(bytes: &mut &[u8]) -> Option<String> {
    take_str(bytes).map(str::to_owned)
}

#[inline]
fn take_entry(bytes: &mut &[u8]) -> Option<(String, Value)> {
    Some((take_string(bytes)?, take_value(bytes)?))
}

fn take_value(bytes: &mut &[u8]) -> Option<Value> {
    Some(match take_byte(bytes)? {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        UNSIGNED => Value::Number(take_varint(bytes)?.into()),
        NEGATIVE => Value::Number((!take_varint(bytes)? as i64).into()),
        FLOAT => {
            let (float, rest) = bytes.split_first_chunk::<8>()?;
            *bytes = rest;
            Value::Number(Number::from_f64(f64::from_le_bytes(*float))?)
        }
        STRING => Value::String(take_string(bytes)?),
        ARRAY => {
            let len = take_len(bytes)?;
            // Each item takes a byte at least: a corrupt count cannot make
            // a huge allocation.
            let mut items = Vec::with_capacity(len.min(bytes.len()));
            for _ in 0..len {
                items.push(take_value(bytes)?);
            }
            Value::Array(items)
        }
        OBJECT => {
            let len = take_len(bytes)?;
            Value::Object((0..len).map(|_| take_entry(bytes)).collect::<Option<_>>()?)
        }
        NUMBER_TEXT => Value::Number(take_str(bytes)?.parse().ok()?),
        _ => return None,
    })
}

/// Moves past one value without building it.
fn skip_value(bytes: &mut &[u8]) -> Option<()> {
    match take_byte(bytes)? {
        NULL | FALSE | TRUE => {}
        UNSIGNED | NEGATIVE => {
            take_varint(bytes)?;
        }
        FLOAT => *bytes = bytes.get(8..)?,
        STRING | NUMBER_TEXT => {
            take_bytes(bytes)?;
        }
        ARRAY => {
            for _ in 0..take_len(bytes)? {
                skip_value(bytes)?;
            }
        }
        OBJECT => {
            for _ in 0..take_len(bytes)? {
                take_bytes(bytes)?;
                skip_value(bytes)?;
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every [`MaxAge`], from what proptest draws.
    fn own(choice: Option<Option<u64>>) -> MaxAge {
        match choice {
            None => MaxAge::Layer,
            Some(None) => MaxAge::BrowserSession,
            Some(Some(seconds)) => MaxAge::Seconds(seconds),
        }
    }

    fn record(created: u64, updated: u64, max_age: Option<u64>, data: Value) -> SessionRecord {
        SessionRecord {
            created,
            updated,
            max_age: max_age.map_or(MaxAge::Layer, MaxAge::Seconds),
            expires_at: None,
            kind: None,
            user: None,
            binding: None,
            data: data.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn records_read_back_as_they_were_written() {
        let id = SessionId::generate();
        for record in [
            record(0, 0, None, serde_json::json!({})),
            record(
                1_764_000_000,
                1_764_000_100,
                Some(3600),
                serde_json::json!({"n": 1}),
            ),
            record(
                u64::MAX,
                u64::MAX,
                Some(u64::MAX),
                serde_json::json!({"": ""}),
            ),
            record(
                127,
                128,
                Some(0),
                serde_json::json!({
                    "user": "ann", "é": "\u{0}\"", "null": null, "yes": true, "no": false,
                    "big": u64::MAX, "least": i64::MIN, "neg": -1, "zero": 0, "float": 2.5,
                    "tiny": -1e-300, "list": [1, [], {}, [[null]]],
                    "nested": {"b": {"a": [1, "x"]}, "a": 0}
                }),
            ),
        ] {
            let packed = Packed::new(&id, &record);
            assert!(packed.is_of(&id));
            assert_eq!(packed.unpack(&id).as_ref(), Some(&record));
        }
    }

    #[test]
    fn another_id_reads_nothing() {
        let id = SessionId::generate();
        let packed = Packed::new(&id, &record(1, 2, None, serde_json::json!({"n": 1})));
        let other = SessionId::generate();
        assert!(!packed.is_of(&other));
        assert!(packed.unpack(&other).is_none());
    }

    #[test]
    fn a_one_key_session_is_its_id_and_a_few_bytes() {
        let id = SessionId::generate();
        let packed = Packed::new(
            &id,
            &record(
                1_764_000_000,
                1_764_000_100,
                Some(86_400),
                serde_json::json!({"n": 1}),
            ),
        );
        // 43 of id, 8 + 8 of times, 1 + 3 of max age; 2 of key, 2 of value.
        assert_eq!(packed.len(), 67);
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |float| float.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_record_reads_back_as_it_was_written(
            created: u64,
            updated: u64,
            max_age: Option<Option<u64>>,
            expires_at: Option<u64>,
            kind: bool,
            user: Option<String>,
            data in prop::collection::btree_map(".*", value(), 0..8),
        ) {
            let id = SessionId::generate();
            let record = SessionRecord {
                created, updated, max_age: own(max_age), expires_at,
                kind: kind.then(|| "admin".to_owned()), user, binding: None, data: data.into_iter().collect(),
            };
            let packed = Packed::new(&id, &record);
            prop_assert_eq!(packed.unpack(&id), Some(record));
        }

        #[test]
        fn merging_into_the_bytes_is_merging_into_the_record(
            stored in prop::collection::btree_map("[a-e]", value(), 0..5),
            from in prop::collection::btree_map("[a-e]", value(), 0..5),
            set in prop::collection::vec("[a-e]", 0..4),
            removed in prop::collection::vec("[a-e]", 0..4),
            full_rewrite in prop::bool::weighted(0.2),
            max_age: Option<Option<u64>>,
            expires_at: Option<u64>,
        ) {
            let id = SessionId::generate();
            let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
            record.data = stored.into_iter().collect();
            let mut newer = SessionRecord::new(20, own(max_age));
            newer.expires_at = expires_at;
            newer.updated = 30;
            newer.data = from.into_iter().collect();
            let mut changes = Changes::default();
            for key in &set {
                changes.record_set(key);
            }
            for key in &removed {
                changes.record_removed(key);
            }
            if full_rewrite {
                changes.rewrite_all();
            }

            let mut packed = Packed::new(&id, &record);
            prop_assert!(packed.merge(&id, &newer, &changes));
            record.merge(&newer, &changes);
            prop_assert_eq!(packed.unpack(&id), Some(record));
        }
    }
}
