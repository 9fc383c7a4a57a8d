//! Session ids of server-side storages.
//!
//! An id is 256 bits from the thread-local CSPRNG (ChaCha12, seeded and
//! reseeded from the operating system), written as 43 characters of url-safe
//! base64. Only the server makes ids: a cookie value that is not exactly of
//! that shape is never looked up, and an unknown id is replaced by a fresh one.

use std::fmt;

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
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::fill(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts `text` as an id only if it has exactly the shape of one this
    /// crate generates; anything else is `None` and must never reach a store.
    pub fn parse(text: &str) -> Option<Self> {
        let well_formed = text.len() == ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The id's text, as sent in the cookie. Keep it out of logs.
    pub fn as_str(&self) -> &str {
        &self.0
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
    fn debug_does_not_show_the_id() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
