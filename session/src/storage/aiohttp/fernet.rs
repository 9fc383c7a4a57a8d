//! aiohttp_session's `EncryptedCookieStorage`: the session in a Fernet
//! token.
//!
//! # Token (the Fernet specification)
//!
//! ```text
//! base64url-padded( 0x80 | timestamp:8 (big-endian Unix seconds) | IV:16
//!                   | AES-128-CBC(record JSON, PKCS#7) | HMAC-SHA256:32 )
//! ```
//!
//! The 32-byte secret is the Fernet key's raw bytes (Python:
//! `Fernet(base64.urlsafe_b64encode(secret))`): its first half signs, its
//! second half encrypts. The HMAC covers everything before it and is
//! checked, in constant time, before anything is decrypted.
//!
//! Python opens a token with `ttl=max_age`: one older than `max_age` does
//! not open, and neither does one more than 60 seconds in the future. Here
//! the token's time bounds the record's last write, so the layer's expiry
//! check (the same `now > time + max_age`) covers Fernet's TTL; the future
//! check is made on opening.

use aes_gcm::aes::Aes128;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{decode, encode};
use crate::error::StorageError;
use crate::record::MAX_COOKIE_BYTES;
use crate::record::{MAX_CLOCK_SKEW, SessionRecord};
use crate::storage::cookie::EncryptionKey;
use crate::storage::{CookieStorage, StorageContext};

const VERSION: u8 = 0x80;
const HEADER_LEN: usize = 1 + 8 + 16;
const MAC_LEN: usize = 32;
const BLOCK: usize = 16;

/// Keeps the whole session in the cookie as aiohttp_session's
/// `EncryptedCookieStorage` does: a Fernet token (AES-128-CBC and
/// HMAC-SHA256) of `{"created": ..., "session": {...}}`. Reads what the
/// Python service writes and writes what it reads.
///
/// The [`EncryptionKey`] is the 32 bytes the Python side gives as
/// `secret_key` (or the Fernet key it was made from:
/// [`EncryptionKey::from_base64`] takes `Fernet.generate_key()`'s text).
///
/// For a new service prefer the native
/// [`EncryptedCookieStorage`](crate::EncryptedCookieStorage): Fernet tokens
/// are not bound to the cookie's name and carry no key id for rotation.
///
/// ```
/// use typed_sessions::{EncryptionKey, SessionLayer, aiohttp};
///
/// // Python: EncryptedCookieStorage(base64.urlsafe_b64decode(FERNET_KEY))
/// let secret: EncryptionKey = "rmzHuXeYzDnSg0X8Shdm3Uwe8U6ozQSdnuYuzO-Q2tU=".parse()?;
/// let layer = SessionLayer::builder(aiohttp::FernetCookieStorage::new(secret))
///     .with_cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FernetCookieStorage {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl FernetCookieStorage {
    /// A storage that seals and opens with `secret`.
    pub fn new(secret: EncryptionKey) -> Self {
        let bytes = secret.as_bytes();
        let mut signing = [0u8; 16];
        let mut encryption = [0u8; 16];
        signing.copy_from_slice(&bytes[..16]);
        encryption.copy_from_slice(&bytes[16..]);
        Self {
            signing,
            encryption,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.signing)
            .expect("HMAC takes a key of any length")
    }

    /// The token of `plaintext` at `now`.
    pub(crate) fn seal_bytes(&self, plaintext: &[u8], now: u64) -> String {
        let mut iv = [0u8; BLOCK];
        rand::fill(&mut iv);
        let mut token = Vec::with_capacity(HEADER_LEN + plaintext.len() + BLOCK + MAC_LEN);
        token.push(VERSION);
        token.extend_from_slice(&now.to_be_bytes());
        token.extend_from_slice(&iv);
        token.extend_from_slice(
            &cbc::Encryptor::<Aes128>::new(&self.encryption.into(), &iv.into())
                .encrypt_padded_vec::<Pkcs7>(plaintext),
        );
        let tag = self.mac().chain_update(&token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        URL_SAFE.encode(token)
    }

    /// The plaintext of `token` and its time, if it is authentic and not
    /// from more than a minute ahead of `now`.
    pub(crate) fn open_bytes(&self, token: &str, now: u64) -> Option<(Vec<u8>, u64)> {
        if token.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let bytes = URL_SAFE.decode(token).ok()?;
        if bytes.len() < HEADER_LEN + BLOCK + MAC_LEN
            || !(bytes.len() - HEADER_LEN - MAC_LEN).is_multiple_of(BLOCK)
            || bytes[0] != VERSION
        {
            return None;
        }
        let time = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        if time > now.saturating_add(MAX_CLOCK_SKEW) {
            return None;
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        self.mac().chain_update(signed).verify_slice(tag).ok()?;
        let iv: [u8; BLOCK] = signed[9..HEADER_LEN].try_into().ok()?;
        let plaintext = cbc::Decryptor::<Aes128>::new(&self.encryption.into(), &iv.into())
            .decrypt_padded_vec::<Pkcs7>(&signed[HEADER_LEN..])
            .ok()?;
        Some((plaintext, time))
    }
}

impl std::fmt::Debug for FernetCookieStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("aiohttp::FernetCookieStorage")
            .finish_non_exhaustive()
    }
}

impl CookieStorage for FernetCookieStorage {
    fn open(&self, cookie_value: &str, cx: &StorageContext<'_>) -> Option<SessionRecord> {
        let opened = self
            .open_bytes(cookie_value, cx.now)
            .and_then(|(plaintext, time)| {
                let mut record = decode(&plaintext)?;
                // Fernet's TTL counts from the token's time.
                record.updated = record.updated.min(time);
                record.created = record.created.min(record.updated);
                Some(record)
            });
        if opened.is_none() {
            crate::throttle::throttled_warn!(
                "aiohttp_session Fernet cookie does not open (tampered, truncated, another key, \
                 from the future); starting a new session"
            );
        }
        opened
    }

    fn seal(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        Ok(self.seal_bytes(&encode(record)?, cx.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;

    /// `bytes(range(32))`, the secret of the vector below.
    fn storage() -> FernetCookieStorage {
        let secret: Vec<u8> = (0..32).collect();
        FernetCookieStorage::new(EncryptionKey::from_bytes(&secret).unwrap())
    }

    /// Made by Python's `cryptography` 50.0.2:
    /// `Fernet(base64.urlsafe_b64encode(bytes(range(32))))
    ///     .encrypt_at_time(b'{"created": 1700000000, "session": {"user": "ann"}}', 1700000000)`.
    const PYTHON_TOKEN: &str = include_str!("fernet_vector.txt");

    #[test]
    fn a_token_made_by_python_opens() {
        let cx = StorageContext::new("AIOHTTP_SESSION", 1_700_000_010);
        let record = storage().open(PYTHON_TOKEN.trim(), &cx).unwrap();
        assert_eq!(record.data["user"], "ann");
        assert_eq!(
            (record.created, record.updated),
            (1_700_000_000, 1_700_000_000)
        );
    }

    #[test]
    fn seals_and_opens_with_the_token_time() {
        let mut record = SessionRecord::new(1_000, MaxAge::Layer);
        record.updated = 2_000;
        record.data.insert("a".into(), 1.into());
        let cx = StorageContext::new("AIOHTTP_SESSION", 2_000);
        let token = storage().seal(&record, &cx).unwrap();
        assert!(token.starts_with("gAAAAA"), "{token}");
        assert_eq!(storage().open(&token, &cx), Some(record));
    }

    #[test]
    fn the_token_time_bounds_the_last_write_as_fernets_ttl_does() {
        // A record claiming a later write than its token was sealed at:
        // Python's `decrypt(ttl=max_age)` counts from the token's time.
        let json = br#"{"created": 5000, "session": {"a": 1}}"#;
        let token = storage().seal_bytes(json, 4_000);
        let cx = StorageContext::new("AIOHTTP_SESSION", 4_100);
        let record = storage().open(&token, &cx).unwrap();
        assert_eq!((record.created, record.updated), (4_000, 4_000));
    }

    #[test]
    fn a_token_from_more_than_a_minute_ahead_does_not_open() {
        let token = storage().seal_bytes(b"{}", 1_000 + MAX_CLOCK_SKEW + 1);
        assert_eq!(storage().open_bytes(&token, 1_000), None);
        let token = storage().seal_bytes(b"{}", 1_000 + MAX_CLOCK_SKEW);
        assert!(storage().open_bytes(&token, 1_000).is_some());
    }

    #[test]
    fn tampered_truncated_and_foreign_tokens_do_not_open() {
        let token = storage().seal_bytes(b"{\"created\": 1, \"session\": {}}", 1_000);
        let bytes = URL_SAFE.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 1;
            assert_eq!(
                storage().open_bytes(&URL_SAFE.encode(&tampered), 1_000),
                None,
                "{i}"
            );
        }
        for len in 0..bytes.len() {
            assert_eq!(
                storage().open_bytes(&URL_SAFE.encode(&bytes[..len]), 1_000),
                None
            );
        }
        let other = FernetCookieStorage::new(EncryptionKey::generate());
        assert_eq!(other.open_bytes(&token, 1_000), None);
        assert_eq!(
            storage().open_bytes(token.trim_end_matches('='), 1_000),
            None
        );
    }
}
