//! aiohttp_session's `NaClCookieStorage`: the session in a NaCl secret box.
//!
//! # Value
//!
//! ```text
//! base64( nonce:24 | Poly1305 tag:16 | XSalsa20(record JSON) )
//! ```
//!
//! Standard base64 with padding (PyNaCl's `Base64Encoder`), the nonce
//! random for every seal, the 32-byte secret the `SecretBox` key itself.
//! XSalsa20-Poly1305 is NaCl's `crypto_secretbox`: the first 32 bytes of
//! the XSalsa20 key stream are the Poly1305 key, the rest encrypts; the tag
//! is checked, in constant time, before anything is decrypted. Composed
//! from RustCrypto's `salsa20` and `poly1305` (what its `crypto_secretbox`
//! crate does; that crate's releases pin older or pre-release versions of
//! the traits this crate already uses), and checked against PyNaCl's
//! output in the tests below and in `tests/tests/aiohttp.rs`.
//!
//! A secret box carries no time: the layer's lifetimes apply to the
//! record's own time, as Python's `max_age` does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ctutils::CtEq;
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};

use super::{decode, encode};
use crate::error::StorageError;
use crate::record::MAX_COOKIE_BYTES;
use crate::record::SessionRecord;
use crate::storage::cookie::EncryptionKey;
use crate::storage::{CookieStorage, StorageContext};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Keeps the whole session in the cookie as aiohttp_session's
/// `NaClCookieStorage` does: PyNaCl's `SecretBox` (XSalsa20-Poly1305) of
/// `{"created": ..., "session": {...}}`, in standard base64. Reads what
/// the Python service writes and writes what it reads; it is also simply
/// aiohttp_session's NaCl storage, for those who want it.
///
/// The [`EncryptionKey`] is the 32 bytes the Python side gives
/// `NaClCookieStorage` as `secret_key`.
///
/// ```
/// use typed_sessions::{EncryptionKey, SessionLayer, aiohttp};
///
/// let secret = EncryptionKey::from_bytes(b"a secret of exactly 32 bytes ...")?;
/// let layer = SessionLayer::builder(aiohttp::NaClCookieStorage::new(secret))
///     .with_cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct NaClCookieStorage {
    key: [u8; 32],
}

impl NaClCookieStorage {
    /// A storage that seals and opens with `secret`.
    pub fn new(secret: EncryptionKey) -> Self {
        Self {
            key: *secret.as_bytes(),
        }
    }

    /// The cipher for `nonce`, and the Poly1305 key it starts with.
    fn cipher(&self, nonce: &[u8; NONCE_LEN]) -> (XSalsa20, Poly1305) {
        let mut cipher = XSalsa20::new(&self.key.into(), nonce.into());
        let mut mac_key = [0u8; 32];
        cipher.apply_keystream(&mut mac_key);
        (cipher, Poly1305::new(&mac_key.into()))
    }

    pub(crate) fn seal_bytes(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let (mut cipher, mac) = self.cipher(&nonce);
        let mut sealed = plaintext.to_vec();
        cipher.apply_keystream(&mut sealed);
        let tag = mac.compute_unpadded(&sealed);
        let mut value = Vec::with_capacity(NONCE_LEN + TAG_LEN + sealed.len());
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&tag);
        value.extend_from_slice(&sealed);
        STANDARD.encode(value)
    }

    pub(crate) fn open_bytes(&self, value: &str) -> Option<Vec<u8>> {
        if value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let bytes = STANDARD.decode(value).ok()?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let (tag, sealed) = rest.split_at(TAG_LEN);
        let (mut cipher, mac) = self.cipher(nonce.try_into().ok()?);
        if !mac.compute_unpadded(sealed).as_slice().ct_eq(tag).to_bool() {
            return None;
        }
        let mut plaintext = sealed.to_vec();
        cipher.apply_keystream(&mut plaintext);
        Some(plaintext)
    }
}

impl std::fmt::Debug for NaClCookieStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("aiohttp::NaClCookieStorage")
            .finish_non_exhaustive()
    }
}

impl CookieStorage for NaClCookieStorage {
    fn open(&self, cookie_value: &str, _cx: &StorageContext<'_>) -> Option<SessionRecord> {
        let opened = self.open_bytes(cookie_value).and_then(|json| decode(&json));
        if opened.is_none() {
            crate::throttle::throttled_warn!(
                "aiohttp_session NaCl cookie does not open (tampered, truncated, another key); \
                 starting a new session"
            );
        }
        opened
    }

    fn seal(
        &self,
        record: &SessionRecord,
        _cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        Ok(self.seal_bytes(&encode(record)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes(range(32))`, the secret of the vector below.
    fn storage() -> NaClCookieStorage {
        let secret: Vec<u8> = (0..32).collect();
        NaClCookieStorage::new(EncryptionKey::from_bytes(&secret).unwrap())
    }

    const PLAINTEXT: &[u8] = br#"{"created": 1700000000, "session": {"user": "ann"}}"#;

    /// Made by PyNaCl 1.6.2: `SecretBox(bytes(range(32))).encrypt(PLAINTEXT,
    /// bytes([7]) * 24, encoder=Base64Encoder)`.
    const PYTHON_VALUE: &str = include_str!("nacl_vector.txt");

    #[test]
    fn a_value_made_by_pynacl_opens() {
        assert_eq!(
            storage().open_bytes(PYTHON_VALUE.trim()).unwrap(),
            PLAINTEXT
        );
    }

    #[test]
    fn sealing_matches_pynacl_byte_for_byte() {
        // The same nonce as the vector: the rest must match.
        let value = storage().seal_bytes(PLAINTEXT);
        let ours = STANDARD.decode(value).unwrap();
        let theirs = STANDARD.decode(PYTHON_VALUE.trim()).unwrap();
        let (mut cipher, mac) = storage().cipher(&[7; NONCE_LEN]);
        let mut sealed = PLAINTEXT.to_vec();
        cipher.apply_keystream(&mut sealed);
        assert_eq!(&theirs[NONCE_LEN + TAG_LEN..], &sealed[..]);
        assert_eq!(
            &theirs[NONCE_LEN..NONCE_LEN + TAG_LEN],
            &mac.compute_unpadded(&sealed)[..]
        );
        assert_eq!(ours.len(), theirs.len());
        assert_ne!(ours[..NONCE_LEN], theirs[..NONCE_LEN], "a fresh nonce");
    }

    #[test]
    fn tampered_truncated_and_foreign_values_do_not_open() {
        let value = storage().seal_bytes(PLAINTEXT);
        let bytes = STANDARD.decode(&value).unwrap();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x80;
            assert_eq!(
                storage().open_bytes(&STANDARD.encode(&tampered)),
                None,
                "{i}"
            );
        }
        for len in 0..bytes.len() {
            assert_eq!(storage().open_bytes(&STANDARD.encode(&bytes[..len])), None);
        }
        let other = NaClCookieStorage::new(EncryptionKey::generate());
        assert_eq!(other.open_bytes(&value), None);
    }
}
