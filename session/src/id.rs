//! Session ids of server-side storages.
//!
//! An id is 256 bits from the thread-local CSPRNG (ChaCha12, seeded and
//! reseeded from the operating system), written as 43 characters of url-safe
//! base64. Only the server makes ids: a cookie value that is not exactly of
//! that shape is never looked up, and an unknown id is replaced by a fresh one.
//!
//! With the `aiohttp-compat` feature, an id may also have aiohttp_session's
//! shape, a uuid4 in 32 lowercase hex digits (122 random bits), for the
//! storages that share records with it: only those storages accept it (see
//! [`ServerStorage::parse_id`](crate::storage::ServerStorage::parse_id)), so a
//! native store never sees one, and the text is checked as strictly
//! (length, alphabet, version and variant).

use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ID_BYTES: usize = 32;
/// The length of an id's text: 32 bytes in unpadded base64.
const ID_LEN: usize = 43;
/// The length of an aiohttp_session id: a uuid4 in hex.
const UUID_HEX_LEN: usize = 32;
/// What follows an aiohttp_session id in the inline text: a byte no native
/// id contains, so the two shapes never compare equal, and the memory
/// store's fixed-size layout still holds.
const UUID_PAD: u8 = b'.';

/// The server-side identity of a session, as carried in the cookie.
///
/// `Debug` never shows the id: an id is a bearer credential. Use
/// [`SessionId::as_str`] where the raw text is really needed (the cookie,
/// a store key).
///
/// The text is kept inline (43 ASCII bytes), so making, parsing and
/// cloning an id never allocates.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::fill(&mut bytes);
        let mut text = [0u8; ID_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut text)
            .expect("32 bytes are 43 characters of unpadded base64");
        debug_assert_eq!(written, ID_LEN);
        Self(text)
    }

    /// Accepts `text` as an id only if it has exactly the shape of one this
    /// crate generates; anything else is `None` and must never reach a store.
    pub fn parse(text: &str) -> Option<Self> {
        let text: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        text.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Self(text))
    }

    /// A fresh id of aiohttp_session's shape: a random uuid4 in 32
    /// lowercase hex digits, as Python's `uuid.uuid4().hex`.
    #[cfg(feature = "aiohttp-compat")]
    pub fn generate_uuid4() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        let mut text = [UUID_PAD; ID_LEN];
        for (i, byte) in bytes.iter().enumerate() {
            text[2 * i] = HEX[usize::from(byte >> 4)];
            text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(text)
    }

    /// Accepts `text` only if it is exactly what
    /// [`SessionId::generate_uuid4`] (and Python's `uuid.uuid4().hex`)
    /// makes: 32 lowercase hex digits, version 4, RFC 4122 variant. For the
    /// storages that share records with aiohttp_session, and only them.
    #[cfg(feature = "aiohttp-compat")]
    pub fn parse_uuid4_hex(text: &str) -> Option<Self> {
        let bytes: &[u8; UUID_HEX_LEN] = text.as_bytes().try_into().ok()?;
        let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if !bytes.iter().all(hex) || bytes[12] != b'4' || !b"89ab".contains(&bytes[16]) {
            return None;
        }
        let mut text = [UUID_PAD; ID_LEN];
        text[..UUID_HEX_LEN].copy_from_slice(bytes);
        Some(Self(text))
    }

    /// Whether the id has aiohttp_session's shape (a uuid4 in hex) rather
    /// than this crate's own.
    pub fn is_uuid4_hex(&self) -> bool {
        self.0[UUID_HEX_LEN] == UUID_PAD
    }

    /// The id's text, as sent in the cookie. Keep it out of logs.
    pub fn as_str(&self) -> &str {
        let len = if self.is_uuid4_hex() {
            UUID_HEX_LEN
        } else {
            ID_LEN
        };
        // Only `parse` (after checking every byte) and `generate` (base64url
        // output) make ids, and the uuid4 constructors (hex); an empty
        // fallback would give every broken id one shared store key, so a
        // broken invariant stops here instead.
        std::str::from_utf8(&self.0[..len]).expect("an id is base64url or hex text")
    }

    /// A short tag of the id for logs: the same id always gives the same
    /// tag, on every server and build, so one session's requests can be
    /// followed; 32 bits of SHA-256 say nothing usable about the 256-bit id.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.0);
        format!(
            "{:08x}",
            u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
        )
    }

    /// The id's text as bytes, without the UTF-8 check of `as_str`.
    pub(crate) fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

/// Hashes the id's text alone, in one `write` (no length prefix: every id
/// has the same length; an aiohttp_session id with its padding), so a
/// hasher sees the whole id at once.
impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = SessionId::generate();
        for bad in [
            "",
            "short",
            &good.as_str()[1..],
            &format!("{}A", good.as_str()),
            &format!("{}=", &good.as_str()[1..]),
            &format!("{}/", &good.as_str()[1..]),
            &format!("{}é", &good.as_str()[2..]),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hashing_feeds_the_text_alone() {
        #[derive(Default)]
        struct Recorder(Vec<u8>);
        impl Hasher for Recorder {
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let id = SessionId::generate();
        let mut recorder = Recorder::default();
        id.hash(&mut recorder);
        assert_eq!(
            recorder.0,
            id.as_str().as_bytes(),
            "one write of the whole id, as the memory store's hasher expects"
        );
    }

    #[cfg(feature = "aiohttp-compat")]
    #[test]
    fn uuid4_ids_round_trip_and_never_pass_as_native() {
        let id = SessionId::generate_uuid4();
        assert!(id.is_uuid4_hex());
        assert_eq!(id.as_str().len(), UUID_HEX_LEN);
        assert_eq!(id.as_str().as_bytes()[12], b'4');
        assert!(b"89ab".contains(&id.as_str().as_bytes()[16]));
        assert_eq!(SessionId::parse_uuid4_hex(id.as_str()), Some(id.clone()));
        assert_eq!(SessionId::parse(id.as_str()), None);
        assert_ne!(SessionId::generate_uuid4(), id);
        let native = SessionId::generate();
        assert!(!native.is_uuid4_hex());
        assert_eq!(SessionId::parse_uuid4_hex(native.as_str()), None);
        // Python's `uuid.uuid4().hex`.
        let python = "3f2b8c1e9a4d4e7f8b6c5d4e3f2a1b0c";
        assert_eq!(SessionId::parse_uuid4_hex(python).unwrap().as_str(), python);
    }

    #[cfg(feature = "aiohttp-compat")]
    #[test]
    fn malformed_uuid4_ids_are_refused() {
        let good = "3f2b8c1e9a4d4e7f8b6c5d4e3f2a1b0c";
        for bad in [
            "",
            &good[1..],
            &format!("{good}0"),
            &good.to_uppercase(),
            "3f2b8c1e-9a4d-4e7f-8b6c-5d4e3f2a1b0c",
            "3f2b8c1e9a4d1e7f8b6c5d4e3f2a1b0c", // version 1
            "3f2b8c1e9a4d4e7f7b6c5d4e3f2a1b0c", // NCS variant
            "3f2b8c1e9a4d4e7fcb6c5d4e3f2a1b0c", // Microsoft variant
            "3f2b8c1e9a4d4e7f8b6c5d4e3f2a1b0g",
            "3f2b8c1e9a4d4e7f8b6c5d4e3f2a1b.c",
        ] {
            assert_eq!(SessionId::parse_uuid4_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_does_not_show_the_id() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
