//! Session ids of server-side storages.
//!
//! An id is 256 bits from the thread-local CSPRNG (ChaCha12, seeded and
//! reseeded from the operating system), written as 43 characters of url-safe
//! base64. Only the server makes ids: a cookie value that is not exactly of
//! that shape is never looked up, and an unknown id is replaced by a fresh one.

use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ID_BYTES: usize = 32;
/// The length of an id's text: 32 bytes in unpadded base64.
const ID_LEN: usize = 43;

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

    /// The id's text, as sent in the cookie. Keep it out of logs.
    pub fn as_str(&self) -> &str {
        // Only `parse` (after checking every byte) and `generate` (base64url
        // output) make ids; an empty fallback would give every broken id one
        // shared store key, so a broken invariant stops here instead.
        std::str::from_utf8(&self.0).expect("an id is base64url text")
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
/// has the same length), so a hasher sees the whole id at once.
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

    #[test]
    fn debug_does_not_show_the_id() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
