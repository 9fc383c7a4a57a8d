//! The session sealed with AES-256-GCM into the cookie.
//!
//! # Envelope (format version 2)
//!
//! ```text
//! base64url-nopad( version:1 | key id:4 | nonce:12 | AES-256-GCM(record JSON) | tag:16 )
//! associated data = version | key id | cookie name
//! ```
//!
//! The version and key id are in clear so a reader can pick the key without
//! trying all of them; they are authenticated with the cookie's name, so a
//! value moved to a cookie of another name does not open. The key id and the
//! AES-256 key are derived from the 32-byte secret with HKDF-SHA256 under two
//! distinct labels, so the id identifies a key and reveals nothing of it;
//! both are derived once, when the storage is built. Every seal draws a
//! fresh 96-bit nonce from the CSPRNG. The record inside carries the creation
//! and last-write times, so the server refuses a replayed cookie once it is
//! past its max age or the absolute timeout.
//!
//! # Version 1, still opened
//!
//! Version 1 had the same layout, but used the secret itself as the AES key
//! and, as key id, the first 4 bytes of AES-256 of a zero block under it:
//! that block is GCM's hash subkey H, so each cookie showed 32 bits of it.
//! Cookies of version 1 still open, with the same keys (current or old);
//! every write seals the session again in version 2. Support for version 1
//! can be dropped once the longest max age has passed since the deploy of
//! version 2: no version 1 cookie is valid any more.
//!
//! # Nonce budget
//!
//! With random 96-bit nonces, NIST SP 800-38D allows at most 2^32 seals
//! under one key (for a chance of a repeated nonce below 2^-32). Rotate the
//! key before about 2^32 seals: at 1,000 writes per second over all
//! processes, that is every 49 days; at 100 per second, every 16 months.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::envelope::{self, SealingKey};
use super::opened::OpenedCookies;
use crate::error::StorageError;
use crate::record::SessionRecord;
use crate::storage::{CookieStorage, StorageContext};

/// A key given to [`EncryptionKey`] was not 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key has the wrong length.
    #[error(
        "an encryption key must be 32 bytes, got {0}; generate one with `EncryptionKey::generate()` \
         or `head -c32 /dev/urandom | base64`"
    )]
    WrongLength(usize),
    /// The text is not base64.
    #[error(
        "an encryption key in text must be base64 (standard or url-safe, padded or not) of 32 bytes"
    )]
    NotBase64,
}

/// A 256-bit key for [`EncryptedCookieStorage`]. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
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

    /// The key's 32 bytes, for the storages of other formats that take
    /// the same secret.
    #[cfg(feature = "aiohttp-compat")]
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as url-safe base64 without padding, for storing it.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl FromStr for EncryptionKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_base64(text)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// Keeps the whole session in the cookie, sealed with AES-256-GCM: the
/// client can neither read nor change it, and the server refuses it once it
/// has expired.
///
/// The cookie's value is an envelope of format version 2: the AES key and
/// the key id in clear are derived from the [`EncryptionKey`] with HKDF-SHA256,
/// so the id reveals nothing of the key. Cookies sealed in version 1 (before
/// it) still open, and are sealed in version 2 at their next write.
///
/// Rotation: seal with a new key and keep the old ones for reading with
/// [`EncryptedCookieStorage::with_old_keys`]; a cookie opened with an old
/// key is sealed with the current key at its next write. Rotate before
/// about 2^32 seals with one key (NIST SP 800-38D's limit for random 96-bit
/// nonces): at 1,000 writes per second, every 49 days.
///
/// ```
/// use typed_sessions::{EncryptedCookieStorage, EncryptionKey};
///
/// let current: EncryptionKey = "rmzHuXeYzDnSg0X8Shdm3Uwe8U6ozQSdnuYuzO-Q2tU=".parse()?;
/// let previous = EncryptionKey::from_base64("VgxzAfKtRaZ+lNaWQ8qQvO/1shuNmY0co0TL5QSiitI")?;
/// let storage = EncryptedCookieStorage::new(current).with_old_keys([previous]);
/// # Ok::<(), typed_sessions::KeyError>(())
/// ```
#[derive(Clone)]
pub struct EncryptedCookieStorage {
    /// The sealing key first, then the keys accepted for reading.
    keys: Arc<[SealingKey]>,
    /// Cookies opened lately with these keys, and what they open to. Clones
    /// share it; a storage with other keys has its own.
    opened: Option<Arc<OpenedCookies>>,
    /// The capacity `opened` was made with.
    cache_capacity: usize,
}

/// Cookies remembered by default: at most 32 MiB of decoded sessions (8 KiB
/// per cookie of capacity), whatever their shape.
const DEFAULT_CACHED_COOKIES: usize = 4096;

impl EncryptedCookieStorage {
    /// A storage that seals and opens with `key`.
    pub fn new(key: EncryptionKey) -> Self {
        Self {
            keys: Arc::new([SealingKey::new(&key.0)]),
            opened: OpenedCookies::new(DEFAULT_CACHED_COOKIES).map(Arc::new),
            cache_capacity: DEFAULT_CACHED_COOKIES,
        }
    }

    /// How many recently opened cookies to remember, so a cookie sent again
    /// (every request between two writes) is not decrypted and parsed
    /// again. Only the exact same value under the same cookie name
    /// is found, and expiry is still checked on every request; the cost is
    /// the decrypted sessions held in memory, at most 8 KiB per cookie of
    /// capacity (fewer costly sessions are kept, and none that alone would
    /// take a sixteenth of the whole budget), plus the cache's tables, about
    /// 210 bytes per cookie of capacity once grown. Default: 4096 (32 MiB
    /// and about 840 KiB of tables at most); 0 turns it off.
    #[must_use]
    pub fn with_cache_capacity(mut self, cookies: usize) -> Self {
        self.opened = OpenedCookies::new(cookies).map(Arc::new);
        self.cache_capacity = cookies;
        self
    }

    /// Also opens cookies sealed with `old_keys` (never seals with them).
    /// Calls add up: keys given earlier stay.
    ///
    /// The storage returned starts with an empty cache of opened cookies:
    /// `self` (and its clones) cannot open what the old keys open, so they
    /// must never be answered from what this storage opened.
    #[must_use]
    pub fn with_old_keys(self, old_keys: impl IntoIterator<Item = EncryptionKey>) -> Self {
        let keys: Vec<SealingKey> = self
            .keys
            .iter()
            .cloned()
            .chain(old_keys.into_iter().map(|key| SealingKey::new(&key.0)))
            .collect();
        Self {
            keys: keys.into(),
            opened: OpenedCookies::new(self.cache_capacity).map(Arc::new),
            cache_capacity: self.cache_capacity,
        }
    }

    fn seal_for(&self, record: &SessionRecord, cookie_name: &str) -> Result<String, StorageError> {
        envelope::seal(&self.keys[0], record, cookie_name)
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
        envelope::open(&self.keys, value, cookie_name)
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
            crate::throttle::throttled_warn!(
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
    use crate::lifetime::MaxAge;
    use proptest::prelude::*;

    fn record() -> SessionRecord {
        let mut record = SessionRecord::new(1_000, MaxAge::Seconds(60));
        record.data.insert("user".into(), "ann".into());
        record
    }

    fn version(sealed: &str) -> u8 {
        URL_SAFE_NO_PAD.decode(sealed).unwrap()[0]
    }

    #[test]
    fn a_flood_of_cookies_that_do_not_open_is_not_a_flood_of_warnings() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
        let cx = StorageContext::new("session", 1_000);
        let logs = crate::session::tests::logs_during(|| {
            for i in 0..1_000 {
                assert_eq!(storage.open(&format!("forged-{i}"), &cx), None);
            }
        });
        // One warning a second for this call site (two if the run spans a
        // second boundary), not a thousand.
        assert!(logs.lines().count() <= 2, "{logs}");
    }

    #[test]
    fn seals_and_opens() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
        let sealed = storage.seal_for(&record(), "session").unwrap();
        assert!(!sealed.contains("ann"));
        assert_eq!(version(&sealed), 2);
        assert_eq!(storage.open_uncached(&sealed, "session"), Some(record()));
    }

    #[test]
    fn a_version_1_cookie_opens_and_is_sealed_again_in_version_2() {
        // Sealed by the version 1 code as released; see `envelope`'s tests.
        let v1 = "AaZU34QM82QZ0yVFJya0ouwB6f-TLbv6GZYYLadTRTfYC1wlnemuxMeuIg_-Qp-Y3PNCqb1__f9VnPg6KiLLQ1BmcME_d29Q2S8ZhoIxzRTJLzmtkgaX3130hRdyv8J5ChaFFIzakYa0RnoepOwOK2RzsAmesfzf5es";
        let key = EncryptionKey::from_bytes(b"typed-sessions fixed test key 01").unwrap();
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate()).with_old_keys([key]);
        let cx = StorageContext::new("session", 1_700_000_000);
        let mut opened = storage.open(v1, &cx).expect("a version 1 cookie opens");
        assert_eq!(opened.data["user"], "ann");
        opened.data.insert("n".into(), 2.into());
        let resealed = storage.seal(&opened, &cx).unwrap();
        assert_eq!(version(&resealed), 2);
        assert_eq!(storage.open(&resealed, &cx), Some(opened));
    }

    #[test]
    fn the_cache_answers_only_for_the_exact_cookie() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
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
    fn a_storage_given_old_keys_caches_apart_from_the_one_it_came_from() {
        let old = EncryptionKey::generate();
        let sealed_with_old = EncryptedCookieStorage::new(old.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let current = EncryptedCookieStorage::new(EncryptionKey::generate());
        let rotated = current.clone().with_old_keys([old]);
        assert_eq!(
            rotated.open_cached(&sealed_with_old, "session"),
            Some(record())
        );
        assert_eq!(
            current.open_cached(&sealed_with_old, "session"),
            None,
            "the storage without the old key does not open it, cached or not"
        );
        let sealed = current.seal_for(&record(), "session").unwrap();
        assert_eq!(current.open_cached(&sealed, "session"), Some(record()));
        assert_eq!(rotated.open_cached(&sealed, "session"), Some(record()));
    }

    #[test]
    fn old_keys_keep_the_cache_capacity() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate())
            .with_cache_capacity(0)
            .with_old_keys([EncryptionKey::generate()]);
        assert!(storage.opened.is_none());
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate())
            .with_old_keys([EncryptionKey::generate()]);
        let sealed = storage.seal_for(&record(), "session").unwrap();
        storage.open_cached(&sealed, "session");
        assert_eq!(storage.opened.as_ref().map(|opened| opened.len()), Some(1));
    }

    #[test]
    fn every_seal_uses_a_new_nonce() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
        assert_ne!(
            storage.seal_for(&record(), "session").unwrap(),
            storage.seal_for(&record(), "session").unwrap()
        );
    }

    #[test]
    fn a_value_moved_to_another_cookie_name_does_not_open() {
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
        let sealed = storage.seal_for(&record(), "session").unwrap();
        assert_eq!(storage.open_uncached(&sealed, "other"), None);
    }

    #[test]
    fn old_keys_open_but_never_seal() {
        let old = EncryptionKey::generate();
        let sealed_with_old = EncryptedCookieStorage::new(old.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let rotated =
            EncryptedCookieStorage::new(EncryptionKey::generate()).with_old_keys([old.clone()]);
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
            EncryptedCookieStorage::new(EncryptionKey::generate())
                .open_uncached(&sealed_with_old, "session"),
            None
        );
    }

    #[test]
    fn old_keys_given_in_several_calls_all_stay() {
        let (k1, k2) = (EncryptionKey::generate(), EncryptionKey::generate());
        let by_k2 = EncryptedCookieStorage::new(k2.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let by_k1 = EncryptedCookieStorage::new(k1.clone())
            .seal_for(&record(), "session")
            .unwrap();
        let storage = EncryptedCookieStorage::new(EncryptionKey::generate())
            .with_old_keys([k2])
            .with_old_keys([k1]);
        assert_eq!(storage.open_uncached(&by_k2, "session"), Some(record()));
        assert_eq!(storage.open_uncached(&by_k1, "session"), Some(record()));
    }

    #[test]
    fn keys_parse_from_every_base64_flavour() {
        let key = EncryptionKey::generate();
        let bytes = key.0;
        let flavours = [
            base64::engine::general_purpose::STANDARD.encode(bytes),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            base64::engine::general_purpose::URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
        ];
        for text in flavours {
            assert_eq!(
                EncryptionKey::from_base64(&text).as_ref(),
                Ok(&key),
                "{text}"
            );
        }
        // A Fernet key as Python's `Fernet.generate_key()` writes it.
        assert!(EncryptionKey::from_base64("rmzHuXeYzDnSg0X8Shdm3Uwe8U6ozQSdnuYuzO-Q2tU=").is_ok());
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        assert_eq!(
            EncryptionKey::from_bytes(&[0; 16]),
            Err(KeyError::WrongLength(16))
        );
        assert_eq!(
            EncryptionKey::from_base64("c2hvcnQ="),
            Err(KeyError::WrongLength(5))
        );
        assert_eq!(
            EncryptionKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
        assert!(!format!("{:?}", EncryptionKey::generate()).contains('='));
    }

    proptest! {
        // The envelope's own tests hold every decoding path to this; here
        // the storage's entry, through the cache, is held to it too.
        #[test]
        fn arbitrary_text_never_opens(text in ".{0,600}") {
            let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
            let cx = StorageContext::new("session", 1_000);
            prop_assert_eq!(storage.open(&text, &cx), None);
            prop_assert_eq!(storage.open(&text, &cx), None);
        }
    }
}
