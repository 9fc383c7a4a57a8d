//! The session sealed with AES-256-GCM into the cookie.
//!
//! # Envelope (format version 1)
//!
//! ```text
//! base64url-nopad( version:1 | key id:4 | nonce:12 | AES-256-GCM(record JSON) | tag:16 )
//! associated data = version | key id | cookie name
//! ```
//!
//! The version and key id are in clear so a reader can pick the key without
//! trying all of them; they are authenticated with the cookie's name, so a
//! value moved to a cookie of another name does not open. The key id is the
//! key's check value: the first four bytes of AES-256 of a zero block under
//! the key, which identifies a key without revealing it. Every seal draws a
//! fresh 96-bit nonce from the CSPRNG. The record inside carries the creation
//! and last-write times, so the server refuses a replayed cookie once it is
//! past its max age or the absolute timeout.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::aes::cipher::BlockCipherEncrypt;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::opened_cookies::OpenedCookies;
use super::{CookieStorage, StorageContext};
use crate::cookies::MAX_COOKIE_BYTES;
use crate::error::StorageError;
use crate::record::SessionRecord;

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// A key given to [`SessionKey`] was not 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key has the wrong length.
    #[error(
        "a session key must be 32 bytes, got {0}; generate one with `SessionKey::generate()` \
         or `head -c32 /dev/urandom | base64`"
    )]
    WrongLength(usize),
    /// The text is not base64.
    #[error(
        "a session key in text must be base64 (standard or url-safe, padded or not) of 32 bytes"
    )]
    NotBase64,
}

/// A 256-bit key for [`EncryptedCookieStorage`]. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A fresh random key from the CSPRNG.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(key)
    }

    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| KeyError::WrongLength(bytes.len()))
    }

    /// A key from base64 text of 32 bytes: standard or url-safe alphabet,
    /// padded or not. A key from Python's `Fernet.generate_key()` works.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let normalized: String = text
            .trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                other => other,
            })
            .collect();
        let bytes = STANDARD_NO_PAD
            .decode(normalized)
            .map_err(|_| KeyError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// The key as url-safe base64 without padding, for storing it.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl FromStr for SessionKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_base64(text)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

struct SealingKey {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn new(key: &SessionKey) -> Self {
        let mut check = Default::default();
        Aes256::new(&key.0.into()).encrypt_block(&mut check);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&check[..KEY_ID_LEN]);
        Self {
            id,
            cipher: Aes256Gcm::new(&key.0.into()),
        }
    }
}

/// Keeps the whole session in the cookie, sealed with AES-256-GCM: the
/// client can neither read nor change it, and the server refuses it once it
/// has expired.
///
/// Rotation: seal with a new key and keep the old ones for reading with
/// [`EncryptedCookieStorage::with_old_keys`]; a cookie opened with an old
/// key is sealed with the current key at its next write.
///
/// ```
/// use typed_sessions::{EncryptedCookieStorage, SessionKey};
///
/// let current: SessionKey = "rmzHuXeYzDnSg0X8Shdm3Uwe8U6ozQSdnuYuzO-Q2tU=".parse()?;
/// let previous = SessionKey::from_base64("VgxzAfKtRaZ+lNaWQ8qQvO/1shuNmY0co0TL5QSiitI")?;
/// let storage = EncryptedCookieStorage::new(current).with_old_keys([previous]);
/// # Ok::<(), typed_sessions::KeyError>(())
/// ```
#[derive(Clone)]
pub struct EncryptedCookieStorage {
    /// The sealing key first, then the keys accepted for reading.
    keys: Arc<[SealingKey]>,
    /// Cookies opened lately, and what they open to.
    opened: Option<Arc<OpenedCookies>>,
}

/// Cookies remembered by default: about 2 MB for sessions of a few hundred
/// bytes.
const DEFAULT_CACHED_COOKIES: usize = 4096;

impl EncryptedCookieStorage {
    /// A storage that seals and opens with `key`.
    pub fn new(key: SessionKey) -> Self {
        Self {
            keys: Arc::new([SealingKey::new(&key)]),
            opened: OpenedCookies::new(DEFAULT_CACHED_COOKIES).map(Arc::new),
        }
    }

    /// How many recently opened cookies to remember, so a cookie sent again
    /// (every request between two writes) is not decrypted and parsed
    /// again. Only the exact same value under the same cookie name
    /// is found, and expiry is still checked on every request; the cost is
    /// the decrypted sessions held in memory. Default: 4096; 0 turns it off.
    #[must_use]
    pub fn with_cache_capacity(mut self, cookies: usize) -> Self {
        self.opened = OpenedCookies::new(cookies).map(Arc::new);
        self
    }

    /// Also opens cookies sealed with `old_keys` (never seals with them).
    /// Calls add up: keys given earlier stay.
    #[must_use]
    pub fn with_old_keys(self, old_keys: impl IntoIterator<Item = SessionKey>) -> Self {
        let mut keys: Vec<SealingKey> = self
            .keys
            .iter()
            .map(|key| SealingKey {
                id: key.id,
                cipher: key.cipher.clone(),
            })
            .collect();
        keys.extend(old_keys.into_iter().map(|key| SealingKey::new(&key)));
        Self {
            keys: keys.into(),
            opened: self.opened,
        }
    }

    fn seal_for(&self, record: &SessionRecord, cookie_name: &str) -> Result<String, StorageError> {
        let key = &self.keys[0];
        let mut buffer = Vec::with_capacity(OVERHEAD + 128);
        buffer.push(FORMAT_VERSION);
        buffer.extend_from_slice(&key.id);
        let mut nonce = Nonce::default();
        rand::fill(&mut nonce[..]);
        buffer.extend_from_slice(&nonce);
        serde_json::to_writer(&mut buffer, record).map_err(StorageError::Serialize)?;
        let (header, sealed) = buffer.split_at_mut(HEADER_LEN + NONCE_LEN);
        let tag = with_associated_data(&header[..HEADER_LEN], cookie_name, |aad| {
            key.cipher
                .encrypt_inout_detached(&nonce, aad, sealed.into())
        })
        // AES-GCM refuses only a message longer than 64 GiB.
        .map_err(|_| StorageError::Encrypt)?;
        buffer.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(buffer))
    }

    /// [`Self::open_uncached`], through the cache of opened cookies.
    fn open_cached(&self, value: &str, cookie_name: &str) -> Option<SessionRecord> {
        let Some(opened) = &self.opened else {
            return self.open_uncached(value, cookie_name);
        };
        if let Some(record) = opened.get(cookie_name, value) {
            return Some(record);
        }
        let record = self.open_uncached(value, cookie_name)?;
        opened.put(cookie_name, value, &record);
        Some(record)
    }

    fn open_uncached(&self, value: &str, cookie_name: &str) -> Option<SessionRecord> {
        if value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() < OVERHEAD || bytes[0] != FORMAT_VERSION {
            return None;
        }
        let key = self
            .keys
            .iter()
            .find(|key| key.id == bytes[1..HEADER_LEN])?;
        let nonce = Nonce::try_from(&bytes[HEADER_LEN..HEADER_LEN + NONCE_LEN]).ok()?;
        let tag_start = bytes.len() - TAG_LEN;
        let tag = Tag::try_from(&bytes[tag_start..]).ok()?;
        let (header, rest) = bytes.split_at_mut(HEADER_LEN + NONCE_LEN);
        let sealed = &mut rest[..tag_start - HEADER_LEN - NONCE_LEN];
        with_associated_data(&header[..HEADER_LEN], cookie_name, |aad| {
            key.cipher
                .decrypt_inout_detached(&nonce, aad, (&mut *sealed).into(), &tag)
        })
        .ok()?;
        serde_json::from_slice(sealed).ok()
    }
}

/// Calls `f` with the associated data, `header | cookie name`: on the stack
/// for the usual short names, since this runs on every seal and open.
fn with_associated_data<T>(header: &[u8], cookie_name: &str, f: impl FnOnce(&[u8]) -> T) -> T {
    const STACK: usize = 64;
    let len = header.len() + cookie_name.len();
    if len <= STACK {
        let mut aad = [0u8; STACK];
        aad[..header.len()].copy_from_slice(header);
        aad[header.len()..len].copy_from_slice(cookie_name.as_bytes());
        f(&aad[..len])
    } else {
        let mut aad = Vec::with_capacity(len);
        aad.extend_from_slice(header);
        aad.extend_from_slice(cookie_name.as_bytes());
        f(&aad)
    }
}

impl fmt::Debug for EncryptedCookieStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedCookieStorage")
            .field("keys", &self.keys.len())
            .field(
                "cached_cookies",
                &self.opened.as_ref().map(|opened| opened.len()),
            )
            .finish_non_exhaustive()
    }
}

impl CookieStorage for EncryptedCookieStorage {
    fn open(&self, cookie_value: &str, cx: &StorageContext<'_>) -> Option<SessionRecord> {
        let opened = self.open_cached(cookie_value, cx.cookie_name);
        if opened.is_none() {
            tracing::warn!(
                "session cookie does not open (tampered, truncated, another key or cookie name); \
                 starting a new session"
            );
        }
        opened
    }

    /// Seals the whole record, with the current key.
    fn seal(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        self.seal_for(record, cx.cookie_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> SessionRecord {
        let mut record = SessionRecord::new(1_000, Some(60));
        record.data.insert("user".into(), "ann".into());
        record
    }

    #[test]
    fn seals_and_opens() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        let sealed = storage.seal_for(&record(), "session").unwrap();
        assert!(!sealed.contains("ann"));
        assert_eq!(storage.open_uncached(&sealed, "session"), Some(record()));
    }

    #[test]
    fn long_cookie_names_are_bound_too() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        let long = "n".repeat(100);
        let sealed = storage.seal_for(&record(), &long).unwrap();
        assert_eq!(storage.open_uncached(&sealed, &long), Some(record()));
        assert_eq!(storage.open_uncached(&sealed, &"n".repeat(99)), None);
    }

    #[test]
    fn the_cache_answers_only_for_the_exact_cookie() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        let sealed = storage.seal_for(&record(), "session").unwrap();
        assert_eq!(storage.open_cached(&sealed, "session"), Some(record()));
        assert_eq!(
            storage.open_cached(&sealed, "other"),
            None,
            "bound to the name"
        );
        let mut tampered = sealed.clone();
        tampered.replace_range(20..21, if &sealed[20..21] == "A" { "B" } else { "A" });
        assert_eq!(storage.open_cached(&tampered, "session"), None);
        let uncached = storage.clone().with_cache_capacity(0);
        assert_eq!(uncached.open_cached(&sealed, "session"), Some(record()));
    }

    #[test]
    fn every_seal_uses_a_new_nonce() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        assert_ne!(
            storage.seal_for(&record(), "session").unwrap(),
            storage.seal_for(&record(), "session").unwrap()
        );
    }

    #[test]
    fn a_value_moved_to_another_cookie_name_does_not_open() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        let sealed = storage.seal_for(&record(), "session").unwrap();
        assert_eq!(storage.open_uncached(&sealed, "other"), None);
    }

    #[test]
    fn old_keys_open_but_never_seal() {
        let old = SessionKey::generate();
        let sealed_with_old = EncryptedCookieStorage::new(old.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let rotated =
            EncryptedCookieStorage::new(SessionKey::generate()).with_old_keys([old.clone()]);
        assert_eq!(
            rotated.open_uncached(&sealed_with_old, "session"),
            Some(record())
        );
        let resealed = rotated.seal_for(&record(), "session").unwrap();
        assert_eq!(
            EncryptedCookieStorage::new(old).open_uncached(&resealed, "session"),
            None
        );
        assert_eq!(
            EncryptedCookieStorage::new(SessionKey::generate())
                .open_uncached(&sealed_with_old, "session"),
            None
        );
    }

    #[test]
    fn old_keys_given_in_several_calls_all_stay() {
        let (k1, k2) = (SessionKey::generate(), SessionKey::generate());
        let by_k2 = EncryptedCookieStorage::new(k2.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let by_k1 = EncryptedCookieStorage::new(k1.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let storage = EncryptedCookieStorage::new(SessionKey::generate())
            .with_old_keys([k2])
            .with_old_keys([k1]);
        assert_eq!(storage.open_uncached(&by_k2, "session"), Some(record()));
        assert_eq!(storage.open_uncached(&by_k1, "session"), Some(record()));
    }

    #[test]
    fn keys_parse_from_every_base64_flavour() {
        let key = SessionKey::generate();
        let bytes = key.0;
        let flavours = [
            base64::engine::general_purpose::STANDARD.encode(bytes),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            base64::engine::general_purpose::URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
        ];
        for text in flavours {
            assert_eq!(SessionKey::from_base64(&text).as_ref(), Ok(&key), "{text}");
        }
        // A Fernet key as Python's `Fernet.generate_key()` writes it.
        assert!(SessionKey::from_base64("rmzHuXeYzDnSg0X8Shdm3Uwe8U6ozQSdnuYuzO-Q2tU=").is_ok());
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        assert_eq!(
            SessionKey::from_bytes(&[0; 16]),
            Err(KeyError::WrongLength(16))
        );
        assert_eq!(
            SessionKey::from_base64("c2hvcnQ="),
            Err(KeyError::WrongLength(5))
        );
        assert_eq!(
            SessionKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
        assert!(!format!("{:?}", SessionKey::generate()).contains('='));
    }

    #[test]
    fn old_format_versions_are_refused() {
        let storage = EncryptedCookieStorage::new(SessionKey::generate());
        let mut bytes = URL_SAFE_NO_PAD
            .decode(storage.seal_for(&record(), "session").unwrap())
            .unwrap();
        bytes[0] = 0;
        assert_eq!(
            storage.open_uncached(&URL_SAFE_NO_PAD.encode(&bytes), "session"),
            None
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let storage = EncryptedCookieStorage::new(SessionKey::generate());
            prop_assert_eq!(storage.open_uncached(&URL_SAFE_NO_PAD.encode(&bytes), "session"), None);
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(storage.open_uncached(&text, "session"), None);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_open(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let storage = EncryptedCookieStorage::new(SessionKey::generate());
            let mut bytes = vec![FORMAT_VERSION];
            bytes.extend_from_slice(&storage.keys[0].id);
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(storage.open_uncached(&URL_SAFE_NO_PAD.encode(&bytes), "session"), None);
        }

        #[test]
        fn flipping_any_bit_of_a_sealed_value_breaks_it(bit in 0usize..4096) {
            let storage = EncryptedCookieStorage::new(SessionKey::generate());
            let mut bytes = URL_SAFE_NO_PAD.decode(storage.seal_for(&record(), "session").unwrap()).unwrap();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(storage.open_uncached(&URL_SAFE_NO_PAD.encode(&bytes), "session"), None);
        }

        #[test]
        fn flipping_any_character_of_a_sealed_value_breaks_it(index in 0usize..4096, replacement in "[A-Za-z0-9_=+/.-]") {
            let storage = EncryptedCookieStorage::new(SessionKey::generate());
            let sealed = storage.seal_for(&record(), "session").unwrap();
            let index = index % sealed.len();
            let mut text = sealed.clone();
            text.replace_range(index..=index, &replacement);
            prop_assume!(text != sealed);
            prop_assert_eq!(storage.open_uncached(&text, "session"), None);
        }
    }
}
