//! What every fuzz target checks, one function per target, each taking the
//! fuzzer's bytes: decode them as the layer or a storage would, then assert
//! what must hold of whatever came out, not only that nothing panicked.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/`) and by the stable test
//! that replays the corpora (`session/tests/fuzz_corpora.rs`), which
//! includes this file by path: it may use only what both see
//! (`typed_sessions` with its dependencies `base64`, `http`, `serde` and
//! `serde_json`), and `cfg(feature = "redis")` / `"memcached"` mean the
//! same in both crates.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use typed_sessions::__private::decoders::{self, PackedRecord};
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, TypedSession,
    storage::{
        CookieStorage, MAX_STORE_TTL, MaxAge, SessionId, SessionRecord, SimpleCookieStorage,
        StorageContext,
    },
};

/// A target's check of one input.
pub type Check = fn(&[u8]);

/// Every target: its name (the corpus directory under `fuzz/corpus/`, the
/// binary under `fuzz/fuzz_targets/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("cookie_header", cookie_header),
    ("encrypted_cookie", encrypted_cookie),
    ("envelope_mutation", envelope_mutation),
    ("simple_cookie", simple_cookie),
    ("record_json", record_json),
    ("redis_hash", redis_hash),
    ("memory_packed", memory_packed),
    ("session_id", session_id),
    ("typed_read", typed_read),
];

/// The cookie name every target uses.
pub const COOKIE_NAME: &str = "session";
/// The request time every target uses: after the records of the seeds.
pub const NOW: u64 = 1_800_000_000;

/// The secret the envelope's fixed vectors were sealed with: the old key.
pub const OLD_SECRET: &[u8; 32] = b"typed-sessions fixed test key 01";
/// The secret the fuzz targets seal with: the current key.
pub const CURRENT_SECRET: &[u8; 32] = b"typed-sessions fuzz current key!";

/// A session sealed in version 1 under [`OLD_SECRET`] by the version 1 code
/// as released (the vector of `envelope.rs`'s tests).
pub const V1_VECTOR: &str = "AaZU34QM82QZ0yVFJya0ouwB6f-TLbv6GZYYLadTRTfYC1wlnemuxMeuIg_-Qp-Y3PNCqb1__f9VnPg6KiLLQ1BmcME_d29Q2S8ZhoIxzRTJLzmtkgaX3130hRdyv8J5ChaFFIzakYa0RnoepOwOK2RzsAmesfzf5es";
/// The same session sealed in version 2 under [`OLD_SECRET`].
pub const V2_VECTOR: &str = "AocLeUvAu6H4CQsxceR9p9D_KIq4SWSvitmmKWtKfsdOLccCy1sxuQ8Xe1JpFnetSgFNGQgVmCy__XIQXB9lIGedF-FCqWBetpGN1c6q0arp3WNcTi3Tr4GxNoWU471HAjx_p5DcETLX4Ntle54dtWhOxY5xThGAiwI";

/// The record both vectors hold.
pub fn vector_record() -> SessionRecord {
    let mut record = SessionRecord::new(1_700_000_000, MaxAge::Layer);
    record.data.insert("user".into(), "ann".into());
    record.data.insert("n".into(), 1.into());
    record
}

/// Browsers send no cookie longer than this; storages refuse longer values.
const MAX_COOKIE_BYTES: usize = 4096;

fn cx() -> StorageContext<'static> {
    StorageContext::new(COOKIE_NAME, NOW)
}

/// The fuzzer's bytes read as a sequence of small choices; past the end,
/// every read is zero.
struct Choices<'a>(&'a [u8]);

impl<'a> Choices<'a> {
    fn byte(&mut self) -> u8 {
        let (&byte, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        byte
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| value << 8 | u64::from(self.byte()))
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.0.len())
    }
}

// --- the `Cookie` request header -----------------------------------------

/// The session cookie's value among arbitrary header bytes: non-empty
/// ASCII taken from the header, and never able to hide or replace a
/// well-formed session cookie sent before it.
pub fn cookie_header(data: &[u8]) {
    let Ok(header) = HeaderValue::from_bytes(data) else {
        return;
    };
    let headers = HeaderMap::from_iter([(COOKIE, header.clone())]);
    let found = decoders::cookie_value(&headers, COOKIE_NAME);
    if let Some(value) = found {
        assert!(!value.is_empty() && value.is_ascii(), "{value:?}");
        assert!(
            data.windows(value.len())
                .any(|window| window == value.as_bytes()),
            "{value:?} is not in the header"
        );
    }

    let first = [b"session=known; ".as_slice(), data].concat();
    let first = HeaderMap::from_iter([(COOKIE, HeaderValue::from_bytes(&first).unwrap())]);
    assert_eq!(decoders::cookie_value(&first, COOKIE_NAME), Some("known"));

    let mut later = headers.clone();
    later.append(COOKIE, HeaderValue::from_static("session=known"));
    assert_eq!(
        decoders::cookie_value(&later, COOKIE_NAME),
        found.or(Some("known")),
        "a later header counts only if the first has no session cookie"
    );
}

// --- the encrypted cookie ------------------------------------------------

struct Keys {
    /// Seals and opens with the current key only.
    current: EncryptedCookieStorage,
    /// The current key, and the old key for reading, with its cache.
    rotated: EncryptedCookieStorage,
    /// The old key only.
    old: EncryptedCookieStorage,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let current = EncryptionKey::from_bytes(CURRENT_SECRET).unwrap();
    let old = EncryptionKey::from_bytes(OLD_SECRET).unwrap();
    Keys {
        current: EncryptedCookieStorage::new(current.clone()).with_cache_capacity(0),
        rotated: EncryptedCookieStorage::new(current).with_old_keys([old.clone()]),
        old: EncryptedCookieStorage::new(old).with_cache_capacity(0),
    }
});

/// Arbitrary cookie values opened with and without the old key: old keys
/// add what they sealed and change nothing else, the cache answers as the
/// cipher does, a value opens under its cookie name only, and what opens
/// is sealed again with the current key alone.
pub fn encrypted_cookie(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let keys = &*KEYS;
    let current = keys.current.open(value, &cx());
    let old = keys.old.open(value, &cx());
    let rotated = keys.rotated.open(value, &cx());
    match (&current, &old) {
        (Some(_), _) => assert_eq!(rotated, current),
        (None, Some(_)) => assert_eq!(rotated, old),
        (None, None) => assert_eq!(rotated, None),
    }
    assert_eq!(keys.rotated.open(value, &cx()), rotated, "the cache agrees");
    let other_name = StorageContext::new("other", NOW);
    assert_eq!(keys.rotated.open(value, &other_name), None);

    if let Some(record) = rotated {
        let resealed = keys.rotated.seal(&record, &cx()).unwrap();
        if resealed.len() <= MAX_COOKIE_BYTES {
            assert_eq!(keys.current.open(&resealed, &cx()), Some(record));
            assert_eq!(keys.old.open(&resealed, &cx()), None);
        }
    }
}

/// A valid envelope (version 1 or 2) with one thing changed: a bit, a
/// byte, its length, its version, a character of its text, or the cookie
/// name it is opened under. The original opens to its record; no change
/// ever opens.
pub fn envelope_mutation(data: &[u8]) {
    let mut choices = Choices(data);
    let keys = &*KEYS;
    let v1 = choices.byte() & 1 == 1;
    let (record, sealed) = if v1 {
        (vector_record(), V1_VECTOR.to_owned())
    } else {
        let mut record = SessionRecord::new(choices.u64() % NOW, MaxAge::Layer);
        record.updated = choices.u64() % NOW;
        if choices.byte() & 1 == 1 {
            record.max_age = MaxAge::Seconds(choices.u64());
        }
        for _ in 0..choices.byte() % 4 {
            let len = usize::from(choices.byte() % 16);
            let key = String::from_utf8_lossy(choices.bytes(len)).into_owned();
            record.data.insert(key, choices.u64().into());
        }
        let sealed = keys.rotated.seal(&record, &cx()).unwrap();
        (record, sealed)
    };
    // Opened without a cache: a cache that grew at every run would make
    // libFuzzer look for leaks (a scan of the whole heap) at every run.
    let opener = if v1 { &keys.old } else { &keys.current };
    assert_eq!(opener.open(&sealed, &cx()).as_ref(), Some(&record));

    let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
    let mut name = COOKIE_NAME.to_owned();
    let mut text = None;
    let at = usize::from(choices.u16());
    match choices.byte() % 7 {
        0 => {
            let len = bytes.len();
            bytes[at / 8 % len] ^= 1 << (at % 8);
        }
        1 => {
            let replacement = choices.byte();
            let at = at % bytes.len();
            if bytes[at] == replacement {
                return;
            }
            bytes[at] = replacement;
        }
        2 => bytes.truncate(at % bytes.len()),
        3 => {
            let tail = choices.rest();
            if tail.is_empty() {
                return;
            }
            bytes.extend_from_slice(tail);
        }
        4 => bytes[0] = [0, 1, 2, 3, 255][at % 5],
        5 => {
            name = String::from_utf8_lossy(choices.rest()).into_owned();
            if name == COOKIE_NAME || name.is_empty() {
                return;
            }
        }
        _ => {
            let mut changed = sealed.clone().into_bytes();
            let at = at % changed.len();
            changed[at] = choices.byte();
            let Ok(changed) = String::from_utf8(changed) else {
                return;
            };
            text = Some(changed);
        }
    }
    let changed = text.unwrap_or_else(|| URL_SAFE_NO_PAD.encode(&bytes));
    if changed == sealed && name == COOKIE_NAME {
        return;
    }
    let cx = StorageContext::new(&name, NOW);
    assert_eq!(keys.rotated.open(&changed, &cx), None, "{changed} opened");
    assert_eq!(keys.current.open(&changed, &cx), None, "{changed} opened");
}

// --- the plain cookie ----------------------------------------------------

/// Arbitrary plain cookie values: what opens is sealed again into a value a
/// cookie can carry, which opens to the same record.
pub fn simple_cookie(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let storage = SimpleCookieStorage::new();
    let Some(record) = storage.open(value, &cx()) else {
        return;
    };
    let sealed = storage.seal(&record, &cx()).unwrap();
    assert!(
        sealed
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b",;\"\\".contains(&byte)),
        "{sealed:?} is not a cookie value"
    );
    assert_eq!(storage.open(&sealed, &cx()), Some(record));
}

// --- stored records ------------------------------------------------------

/// A record as Memcached's value holds it (and the JSON of every cookie and
/// store): what reads writes back to itself, and its times give a TTL every
/// store accepts, whatever they are.
pub fn record_json(data: &[u8]) {
    #[cfg(feature = "memcached")]
    let record = decoders::memcached_record(data);
    #[cfg(not(feature = "memcached"))]
    let record: Option<SessionRecord> = serde_json::from_slice(data).ok();
    let Some(record) = record else {
        return;
    };
    let written = serde_json::to_vec(&record).unwrap();
    assert_eq!(
        serde_json::from_slice::<SessionRecord>(&written).ok(),
        Some(record.clone())
    );
    let choices = &mut Choices(data);
    let idle_limit = (choices.byte() & 1 == 1).then(|| choices.u64());
    let ttl = cx().with_idle_limit(idle_limit).record_ttl(choices.u64());
    assert!((2..=MAX_STORE_TTL + 1).contains(&ttl), "{ttl}");
    let _ = record.is_from_the_future(choices.u64());
}

/// The hash fields of the Redis store, one `field<TAB>value` a line: a hash
/// without `c` is no record, and what reads is written to fields that read
/// back to it.
pub fn redis_hash(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<(String, String)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (field, value) = line.split_once('\t').unwrap_or((line, ""));
            (field.to_owned(), value.to_owned())
        })
        .collect();
    let has_created = fields.iter().any(|(field, _)| field == "c");
    #[cfg(feature = "redis")]
    {
        let Some(record) = decoders::redis_record(fields) else {
            return;
        };
        assert!(has_created, "a record without its creation time");
        let written = decoders::redis_fields(&record, 60);
        let pairs = written
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        assert_eq!(decoders::redis_record(pairs), Some(record));
    }
    #[cfg(not(feature = "redis"))]
    let _ = has_created;
}

/// The id every packed record of the fuzz targets belongs to.
static PACKED_ID: LazyLock<SessionId> =
    LazyLock::new(|| SessionId::parse(&"A".repeat(43)).unwrap());

/// A request's changes, as the memory store merges them: a few keys, many
/// (past the store's short list), and a full rewrite.
static MERGES: LazyLock<Vec<(SessionRecord, typed_sessions::storage::Changes)>> =
    LazyLock::new(|| {
        let mut from = SessionRecord::new(5, MaxAge::Seconds(60));
        from.updated = 7;
        for (key, value) in [
            ("a", serde_json::json!(1)),
            ("n", serde_json::json!({"deep": [1.5, -2, null]})),
            ("user", serde_json::json!("bob")),
        ] {
            from.data.insert(key.into(), value);
        }
        let many: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
        vec![
            (
                from.clone(),
                decoders::changes(["a", "gone"], ["user", "b"], false),
            ),
            (
                from.clone(),
                decoders::changes(
                    many.iter().map(String::as_str).chain(["n", "a"]),
                    ["user", ""],
                    false,
                ),
            ),
            (from, decoders::changes([], [], true)),
        ]
    });

/// The memory store's packed bytes after a record's id, whatever they
/// hold: another id reads nothing, what reads packs back to itself, and a
/// merge into the bytes is the merge into the record they hold.
pub fn memory_packed(data: &[u8]) {
    let id = &*PACKED_ID;
    let bytes = [id.as_str().as_bytes(), data].concat();
    let packed = PackedRecord::from_bytes(&bytes);
    let other = SessionId::parse(&"B".repeat(43)).unwrap();
    assert_eq!(packed.unpack(&other), None);
    let record = packed.unpack(id);
    if let Some(record) = &record {
        assert_eq!(
            PackedRecord::pack(id, record).unpack(id).as_ref(),
            Some(record)
        );
    }
    for (from, changes) in MERGES.iter() {
        let mut merged = PackedRecord::from_bytes(&bytes);
        assert!(!merged.merge(&other, from, changes));
        let done = merged.merge(id, from, changes);
        if let Some(record) = &record {
            assert!(done, "a record that reads merges");
            let mut expected = record.clone();
            expected.merge(from, changes);
            assert_eq!(merged.unpack(id), Some(expected));
        }
        if !done {
            assert_eq!(merged.as_bytes(), bytes, "a failed merge changes nothing");
        }
    }
}

// --- session ids ---------------------------------------------------------

/// Arbitrary text as a session id: exactly the 43 url-safe base64
/// characters parse, to an id that prints as the text, parses back to
/// itself and never shows in `Debug`.
pub fn session_id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let shape = text.len() == 43
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    let id = SessionId::parse(&text);
    assert_eq!(id.is_some(), shape, "{text:?}");
    if let Some(id) = id {
        assert_eq!(id.as_str(), text);
        assert_eq!(SessionId::parse(id.as_str()).as_ref(), Some(&id));
        assert!(!format!("{id:?}").contains(&*text));
    }
}

// --- typed reads ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Guest,
    Member { since: u64 },
    Admin(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scores: BTreeMap<String, i64>,
}

fn one() -> u64 {
    1
}

/// A typed session with every kind of field: optional, defaulted (by
/// `Default` and by a function), renamed, required, nested.
#[derive(typed_sessions::Session, Debug, Clone, PartialEq)]
#[session(max_age = "1h")]
pub struct Shop {
    #[session(rename = "u")]
    pub user: Option<User>,
    #[session(default)]
    pub cart: Vec<Item>,
    #[session(rename = "n", default = "one")]
    pub visits: u64,
    pub token: String,
    pub ratio: Option<f64>,
    #[session(default)]
    pub seen: HashMap<String, (bool, Option<i8>)>,
}

/// The value at `key` as a `T`, if it is one: what a typed read must give.
fn stored<T: serde::de::DeserializeOwned>(map: &Map<String, Value>, key: &str) -> Option<T> {
    serde_json::from_value(map.get(key)?.clone()).ok()
}

/// A session map of arbitrary JSON read through `#[derive(Session)]`: each
/// field is its key's value when that is of the field's type, else its
/// default (or `MissingField`); reading changes nothing; and the struct
/// read, written back and read again is the same, with nothing left to
/// write.
pub fn typed_read(data: &[u8]) {
    let Ok(map) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let shop = TypedSession::<Shop>::from_session(decoders::loaded_session(map.clone()));
    assert_eq!(shop.user(), stored::<Option<User>>(&map, "u").flatten());
    assert_eq!(
        shop.cart(),
        stored::<Vec<Item>>(&map, "cart").unwrap_or_default()
    );
    assert_eq!(shop.visits(), stored(&map, "n").unwrap_or(1));
    let token = stored::<String>(&map, "token");
    assert_eq!(shop.token().ok(), token);
    assert_eq!(shop.ratio(), stored::<Option<f64>>(&map, "ratio").flatten());
    assert_eq!(
        shop.seen(),
        stored::<HashMap<String, (bool, Option<i8>)>>(&map, "seen").unwrap_or_default()
    );
    let whole = shop.get();
    assert_eq!(whole.is_ok(), token.is_some());
    assert!(!shop.session().is_changed(), "a read wrote");
    assert_eq!(shop.session().to_map(), map, "a read changed the map");

    let Ok(whole) = whole else {
        return;
    };
    shop.set(&whole);
    assert_eq!(shop.get().as_ref(), Ok(&whole));
    let again =
        TypedSession::<Shop>::from_session(decoders::loaded_session(shop.session().to_map()));
    assert_eq!(again.get().as_ref(), Ok(&whole));
    again.set(&whole);
    assert!(
        !again.session().is_changed(),
        "writing back what was written wrote"
    );
}
