//! The session as plain JSON in the cookie: readable and forgeable by the
//! client, for tests and debugging only.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::StorageError;
use crate::record::SessionRecord;
use crate::storage::{CookieStorage, StorageContext};

/// Characters JSON needs that a cookie value cannot carry (quotes, commas,
/// spaces, backslashes, semicolons) are percent-encoded; the rest stay as
/// they are, so the cookie still reads as JSON.
const COOKIE_UNSAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b':')
    .remove(b'{')
    .remove(b'}')
    .remove(b'[')
    .remove(b']');

/// Keeps the whole session as JSON in the cookie, in clear:
/// `{"created":…,"updated":…,"max_age":…,"session":{…}}`, percent-encoded
/// where a cookie needs it.
///
/// **Insecure**: the client can read and rewrite every value, including the
/// times that decide expiry. Use it in tests; in production use
/// [`EncryptedCookieStorage`](crate::EncryptedCookieStorage) or a
/// server-side store.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleCookieStorage;

impl SimpleCookieStorage {
    /// The storage (it has no settings).
    pub fn new() -> Self {
        Self
    }

    fn encode(record: &SessionRecord) -> Result<String, StorageError> {
        let json = serde_json::to_string(record).map_err(StorageError::Serialize)?;
        Ok(utf8_percent_encode(&json, COOKIE_UNSAFE).to_string())
    }

    fn decode(value: &str) -> Option<SessionRecord> {
        let json = percent_decode_str(value).decode_utf8().ok()?;
        serde_json::from_str(&json).ok()
    }
}

impl CookieStorage for SimpleCookieStorage {
    fn open(&self, cookie_value: &str, _cx: &StorageContext<'_>) -> Option<SessionRecord> {
        let record = Self::decode(cookie_value);
        if record.is_none() {
            tracing::debug!("simple session cookie is not valid JSON; starting a new session");
        }
        record
    }

    fn seal(
        &self,
        record: &SessionRecord,
        _cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        Self::encode(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_stays_readable() {
        let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
        record
            .data
            .insert("greeting".into(), "hello, world; \"x\"".into());
        let value = SimpleCookieStorage::encode(&record).unwrap();
        assert!(value.starts_with("{%22created%22:10"), "{value}");
        assert!(!value.contains([' ', ',', ';', '"', '\\']));
        assert_eq!(SimpleCookieStorage::decode(&value), Some(record));
    }

    /// Any text, or text made of what the encoding must get right: `%`
    /// before hex digits (which must not decode as an escape), and the
    /// characters a cookie cannot carry.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".*", r#"[%0-9A-Fa-f",; \\{}\[\]:é]{0,12}"#]
    }

    /// Any JSON value but floats (whose text form need not read back to
    /// the same bits), nested a few levels, with strings as [`text`].
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn session_record() -> impl Strategy<Value = SessionRecord> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<Option<Option<u64>>>(),
            any::<Option<u64>>(),
            prop::collection::btree_map(text(), json_value(), 0..6),
        )
            .prop_map(
                |(created, updated, max_age, expires_at, data)| SessionRecord {
                    created,
                    updated,
                    max_age: match max_age {
                        None => MaxAge::Layer,
                        Some(None) => MaxAge::BrowserSession,
                        Some(Some(seconds)) => MaxAge::Seconds(seconds),
                    },
                    expires_at,
                    kind: None,
                    user: None,
                    binding: None,
                    data: data.into_iter().collect(),
                },
            )
    }

    /// RFC 6265's `cookie-octet`: printable ASCII but space, `"`, `,`, `;`
    /// and `\`.
    fn is_cookie_octet(byte: u8) -> bool {
        matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
    }

    proptest! {
        #[test]
        fn any_cookie_value_decodes_or_is_refused_without_panic(value in ".*") {
            let _ = SimpleCookieStorage::decode(&value);
        }

        #[test]
        fn any_record_round_trips_through_a_valid_cookie_value(record in session_record()) {
            let value = SimpleCookieStorage::encode(&record).unwrap();
            prop_assert!(value.bytes().all(is_cookie_octet), "not a cookie value: {}", value);
            prop_assert_eq!(SimpleCookieStorage::decode(&value), Some(record));
        }
    }
}
