//! Keys of server-side records in shared stores: a prefix and a hash of the
//! session id, so a dump of the store does not hand out usable cookies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::id::SessionId;

/// `prefix` followed by the url-safe base64 of SHA-256 of the id
/// (43 characters).
pub(crate) fn store_key(prefix: &str, id: &SessionId) -> String {
    let digest = Sha256::digest(id.as_str().as_bytes());
    let mut key = String::with_capacity(prefix.len() + 43);
    key.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(digest, &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hide_the_id_and_are_stable() {
        let id = SessionId::generate();
        let key = store_key("session:", &id);
        assert!(key.starts_with("session:"));
        assert_eq!(key.len(), "session:".len() + 43);
        assert!(!key.contains(id.as_str()));
        assert_eq!(key, store_key("session:", &id));
        assert_ne!(key, store_key("session:", &SessionId::generate()));
    }
}
