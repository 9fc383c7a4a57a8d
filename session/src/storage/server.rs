//! What the shared server-side stores (Redis, Memcached) have in common:
//! the key format and the command timeout.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::{BoxError, StorageError};
use crate::id::SessionId;

/// Runs a client command, failing it with [`StorageError::Timeout`] after
/// `timeout` and with [`StorageError::Unavailable`] on the client's error.
pub(crate) async fn timed<T, E: Into<BoxError>>(
    timeout: Duration,
    command: impl Future<Output = Result<T, E>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(timeout, command)
        .await
        .map_err(|_| StorageError::Timeout(timeout))?
        .map_err(StorageError::unavailable)
}

/// Keys of records: a prefix and a hash of the session id, so a dump of the
/// store does not hand out usable cookies.
///
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
