//! The envelope: a session record sealed with AES-256-GCM into a cookie
//! value, in format version 2 (every seal) or 1 (opened only, until the
//! cookies sealed before version 2 have expired).
//!
//! ```text
//! base64url-nopad( version:1 | key id:4 | nonce:12 | AES-256-GCM(record JSON) | tag:16 )
//! associated data = version | key id | cookie name
//! ```
//!
//! The two versions differ only in where the key id and the AES key come
//! from:
//!
//! - **2**: both are derived from the 32-byte secret with HKDF-SHA256
//!   (RFC 5869, no salt) under distinct labels, [`KEY_ID_LABEL`] (4 bytes)
//!   and [`CIPHER_KEY_LABEL`] (32 bytes). The key id is a pseudorandom value
//!   that says nothing about the AES key.
//! - **1**: the secret itself is the AES key, and the key id is its check
//!   value, the first 4 bytes of AES-256 of a zero block. That block is
//!   GCM's hash subkey H, so every version 1 cookie showed 32 bits of it;
//!   version 2 replaced it.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::aes::cipher::BlockCipherEncrypt;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::error::StorageError;
use crate::record::MAX_COOKIE_BYTES;
use crate::record::SessionRecord;

/// The version every seal writes.
const VERSION: u8 = 2;
/// The version before [`VERSION`]: still opened, never written.
const VERSION_1: u8 = 1;
/// The HKDF label of the version 2 key id.
pub(super) const KEY_ID_LABEL: &[u8] = b"typed-sessions cookie v2 key id";
/// The HKDF label of the version 2 AES-256-GCM key.
pub(super) const CIPHER_KEY_LABEL: &[u8] = b"typed-sessions cookie v2 AES-256-GCM key";

const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

type KeyId = [u8; KEY_ID_LEN];

/// A key id and the cipher it names, for one envelope version.
#[derive(Clone)]
struct VersionKey {
    id: KeyId,
    cipher: Aes256Gcm,
}

/// What one secret opens and seals with, in every version it is read in.
/// Made once per key, when the storage is built: sealing and opening
/// derive nothing.
#[derive(Clone)]
pub(super) struct SealingKey {
    v2: VersionKey,
    v1: VersionKey,
}

impl SealingKey {
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        let mut id = KeyId::default();
        let mut cipher_key = [0u8; 32];
        // Both lengths are far below HKDF-SHA256's limit of 8160 bytes.
        hkdf.expand(KEY_ID_LABEL, &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 length");
        hkdf.expand(CIPHER_KEY_LABEL, &mut cipher_key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let v2 = VersionKey {
            id,
            cipher: Aes256Gcm::new(&cipher_key.into()),
        };

        let mut check = Default::default();
        Aes256::new(secret.into()).encrypt_block(&mut check);
        let mut id = KeyId::default();
        id.copy_from_slice(&check[..KEY_ID_LEN]);
        let v1 = VersionKey {
            id,
            cipher: Aes256Gcm::new(secret.into()),
        };
        Self { v2, v1 }
    }

    fn for_version(&self, version: u8) -> Option<&VersionKey> {
        match version {
            VERSION => Some(&self.v2),
            VERSION_1 => Some(&self.v1),
            _ => None,
        }
    }
}

/// Seals `record` in the current version with `key`, bound to `cookie_name`,
/// under a fresh random 96-bit nonce.
pub(super) fn seal(
    key: &SealingKey,
    record: &SessionRecord,
    cookie_name: &str,
) -> Result<String, StorageError> {
    let key = &key.v2;
    let mut buffer = Vec::with_capacity(OVERHEAD + 128);
    buffer.push(VERSION);
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

/// The record sealed in `value` for `cookie_name` by one of `keys`, in any
/// version still read; `None` for anything else, whatever its bytes.
pub(super) fn open(keys: &[SealingKey], value: &str, cookie_name: &str) -> Option<SessionRecord> {
    if value.len() > MAX_COOKIE_BYTES {
        return None;
    }
    let mut bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    if bytes.len() < OVERHEAD {
        return None;
    }
    let nonce = Nonce::try_from(&bytes[HEADER_LEN..HEADER_LEN + NONCE_LEN]).ok()?;
    let tag_start = bytes.len() - TAG_LEN;
    let tag = Tag::try_from(&bytes[tag_start..]).ok()?;
    let (header, rest) = bytes.split_at_mut(HEADER_LEN + NONCE_LEN);
    let header = &header[..HEADER_LEN];
    let sealed = &mut rest[..tag_start - HEADER_LEN - NONCE_LEN];
    // Two keys may share an id (one chance in 2^32 per pair): each is tried.
    // A failed decryption leaves the buffer as it was.
    let opened = keys
        .iter()
        .filter_map(|key| key.for_version(header[0]))
        .filter(|key| key.id == header[1..])
        .any(|key| {
            with_associated_data(header, cookie_name, |aad| {
                key.cipher
                    .decrypt_inout_detached(&nonce, aad, (&mut *sealed).into(), &tag)
            })
            .is_ok()
        });
    opened.then(|| serde_json::from_slice(sealed).ok())?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;
    use proptest::prelude::*;

    /// The secret of the fixed vectors below.
    const SECRET: &[u8; 32] = b"typed-sessions fixed test key 01";

    /// The record of the fixed vectors, as `{"created":1700000000,
    /// "updated":1700000000,"max_age":3600,"session":{"n":1,"user":"ann"}}`:
    /// its `max_age`, the layer's setting when it was sealed, now reads as
    /// following the layer's current one.
    fn vector_record() -> SessionRecord {
        let mut record = SessionRecord::new(1_700_000_000, MaxAge::Layer);
        record.data.insert("user".into(), "ann".into());
        record.data.insert("n".into(), 1.into());
        record
    }

    /// [`vector_record`] sealed for the cookie `session` under [`SECRET`] by
    /// the version 1 code as released (commit 32d2b0e), and checked apart
    /// with Python's `cryptography` (AES-GCM with the secret as key).
    const V1_VECTOR: &str = "AaZU34QM82QZ0yVFJya0ouwB6f-TLbv6GZYYLadTRTfYC1wlnemuxMeuIg_-Qp-Y3PNCqb1__f9VnPg6KiLLQ1BmcME_d29Q2S8ZhoIxzRTJLzmtkgaX3130hRdyv8J5ChaFFIzakYa0RnoepOwOK2RzsAmesfzf5es";

    /// The same record sealed in version 2; opened apart with Python's
    /// `cryptography` (HKDF-SHA256 with the labels, then AES-GCM), so the
    /// derivation is the documented one, not only self-consistent.
    const V2_VECTOR: &str = "AocLeUvAu6H4CQsxceR9p9D_KIq4SWSvitmmKWtKfsdOLccCy1sxuQ8Xe1JpFnetSgFNGQgVmCy__XIQXB9lIGedF-FCqWBetpGN1c6q0arp3WNcTi3Tr4GxNoWU471HAjx_p5DcETLX4Ntle54dtWhOxY5xThGAiwI";

    /// The version 2 key id of [`SECRET`]: HKDF-SHA256(no salt, SECRET,
    /// [`KEY_ID_LABEL`], 4), computed with Python's `cryptography`.
    const V2_KEY_ID: KeyId = [0x87, 0x0b, 0x79, 0x4b];

    /// GCM's hash subkey H for [`SECRET`] (AES-256 of a zero block), first
    /// 4 bytes: what version 1 used as the key id.
    const H_PREFIX: KeyId = [0xa6, 0x54, 0xdf, 0x84];

    fn key() -> SealingKey {
        SealingKey::new(SECRET)
    }

    fn decoded(value: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(value).unwrap()
    }

    fn encoded(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn seals_in_version_2_under_the_derived_key_id() {
        let sealed = decoded(&seal(&key(), &vector_record(), "session").unwrap());
        assert_eq!(sealed[0], 2);
        assert_eq!(sealed[1..HEADER_LEN], V2_KEY_ID);
    }

    #[test]
    fn the_key_id_shows_nothing_of_the_hash_subkey() {
        let key = key();
        assert_eq!(key.v1.id, H_PREFIX, "the version 1 id is H's prefix");
        let sealed = decoded(&seal(&key, &vector_record(), "session").unwrap());
        assert_ne!(sealed[1..HEADER_LEN], H_PREFIX);
    }

    #[test]
    fn a_version_2_vector_opens() {
        assert_eq!(open(&[key()], V2_VECTOR, "session"), Some(vector_record()));
    }

    #[test]
    fn a_version_1_cookie_as_released_still_opens() {
        assert_eq!(decoded(V1_VECTOR)[0], 1);
        assert_eq!(open(&[key()], V1_VECTOR, "session"), Some(vector_record()));
    }

    #[test]
    fn a_version_1_cookie_opens_with_an_old_key_too() {
        let keys = [SealingKey::new(&[9; 32]), key()];
        assert_eq!(open(&keys, V1_VECTOR, "session"), Some(vector_record()));
        assert_eq!(open(&keys[..1], V1_VECTOR, "session"), None);
    }

    #[test]
    fn a_version_1_cookie_is_still_bound_to_its_name() {
        assert_eq!(open(&[key()], V1_VECTOR, "other"), None);
    }

    #[test]
    fn a_version_byte_changed_does_not_open() {
        for (vector, other) in [
            (V1_VECTOR, 2),
            (V2_VECTOR, 1),
            (V2_VECTOR, 0),
            (V2_VECTOR, 3),
        ] {
            let mut bytes = decoded(vector);
            bytes[0] = other;
            assert_eq!(open(&[key()], &encoded(&bytes), "session"), None, "{other}");
        }
    }

    #[test]
    fn a_version_1_header_with_the_key_id_of_version_2_does_not_open() {
        let mut bytes = decoded(V2_VECTOR);
        bytes[0] = 1;
        assert_eq!(open(&[key()], &encoded(&bytes), "session"), None);
        let mut bytes = decoded(V1_VECTOR);
        bytes[0] = 2;
        assert_eq!(open(&[key()], &encoded(&bytes), "session"), None);
    }

    #[test]
    fn an_authentic_envelope_of_another_version_does_not_open() {
        // Sealed exactly as version 2 is, associated data included, but
        // under another version number: what a later version or an older
        // one means is not ours to guess.
        let key = key();
        let sealed_as = |version: u8| {
            let header = [&[version][..], &key.v2.id].concat();
            let nonce = Nonce::default();
            let mut sealed = serde_json::to_vec(&vector_record()).unwrap();
            let tag = with_associated_data(&header, "session", |aad| {
                key.v2
                    .cipher
                    .encrypt_inout_detached(&nonce, aad, sealed.as_mut_slice().into())
            })
            .unwrap();
            encoded(&[&header[..], &nonce, &sealed, &tag].concat())
        };
        let keys = [key.clone()];
        assert_eq!(open(&keys, &sealed_as(2), "session"), Some(vector_record()));
        for version in [0, 3, 255] {
            assert_eq!(
                open(&keys, &sealed_as(version), "session"),
                None,
                "{version}"
            );
        }
    }

    #[test]
    fn keys_sharing_an_id_are_each_tried() {
        let mut twin = SealingKey::new(&[9; 32]);
        twin.v2.id = key().v2.id;
        twin.v1.id = key().v1.id;
        let keys = [twin, key()];
        assert_eq!(open(&keys, V2_VECTOR, "session"), Some(vector_record()));
        assert_eq!(open(&keys, V1_VECTOR, "session"), Some(vector_record()));
    }

    #[test]
    fn long_cookie_names_are_bound_too() {
        let long = "n".repeat(100);
        let sealed = seal(&key(), &vector_record(), &long).unwrap();
        assert_eq!(open(&[key()], &sealed, &long), Some(vector_record()));
        assert_eq!(open(&[key()], &sealed, &"n".repeat(99)), None);
    }

    #[test]
    fn values_longer_than_a_cookie_are_refused_before_decoding() {
        let mut record = vector_record();
        record.data.insert("blob".into(), "x".repeat(4000).into());
        let sealed = seal(&key(), &record, "session").unwrap();
        assert!(sealed.len() > MAX_COOKIE_BYTES);
        assert_eq!(open(&[key()], &sealed, "session"), None);
    }

    fn vector(v1: bool) -> &'static str {
        if v1 { V1_VECTOR } else { V2_VECTOR }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(open(&[key()], &encoded(&bytes), "session"), None);
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(open(&[key()], &text, "session"), None);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_open(
            v1 in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let key = key();
            let (version, id) = if v1 { (VERSION_1, key.v1.id) } else { (VERSION, key.v2.id) };
            let mut bytes = vec![version];
            bytes.extend_from_slice(&id);
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(open(&[key], &encoded(&bytes), "session"), None);
        }

        #[test]
        fn flipping_any_bit_of_a_sealed_value_breaks_it(v1 in any::<bool>(), bit in 0usize..4096) {
            let mut bytes = decoded(vector(v1));
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(&[key()], &encoded(&bytes), "session"), None);
        }

        #[test]
        fn flipping_any_character_of_a_sealed_value_breaks_it(
            v1 in any::<bool>(),
            index in 0usize..4096,
            replacement in "[A-Za-z0-9_=+/.-]",
        ) {
            let sealed = vector(v1);
            let index = index % sealed.len();
            let mut text = sealed.to_owned();
            text.replace_range(index..=index, &replacement);
            prop_assume!(text != sealed);
            prop_assert_eq!(open(&[key()], &text, "session"), None);
        }

        #[test]
        fn truncating_a_sealed_value_breaks_it(v1 in any::<bool>(), len in 0usize..4096) {
            let sealed = vector(v1);
            let len = len % sealed.len();
            prop_assert_eq!(open(&[key()], &sealed[..len], "session"), None);
        }

        #[test]
        fn every_seal_opens_to_its_record(n in any::<i64>(), name in "[a-zA-Z0-9_-]{1,80}") {
            let mut record = vector_record();
            record.data.insert("n".into(), n.into());
            let sealed = seal(&key(), &record, &name).unwrap();
            prop_assert_eq!(open(&[key()], &sealed, &name), Some(record));
        }
    }
}
