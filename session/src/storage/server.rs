//! What the server storages (memory, Redis, Memcached, SQL) have in common: the
//! defaults, the key format, the command timeout and drawing a fresh id.

use std::time::Duration;

use crate::error::ConfigError;
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
use {crate::error::StorageError, crate::id::SessionId, std::future::Future};

/// How long the record of a session without `max_age` lives after its last
/// write, unless configured: one day. No record lives forever.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The prefix of record keys in a shared store.
#[cfg(any(feature = "redis", feature = "memcached"))]
pub(crate) const DEFAULT_PREFIX: &str = "session:";

/// How long connecting to a shared store may take.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command to a shared store may take before the request gets
/// a 503.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Fresh ids drawn before `create` gives up: a collision of 256-bit ids does
/// not happen, so the bound only keeps a misbehaving store (or a broken
/// random number generator) from looping us forever.
pub(crate) const ID_TRIES: u32 = 3;

/// Stores a new record under a fresh id: `insert` writes it under the id it
/// is given if no record has that id, and says whether it did.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub(crate) async fn create_with_fresh_id<F, Fut>(
    store: &'static str,
    insert: F,
) -> Result<SessionId, StorageError>
where
    F: FnMut(SessionId) -> Fut,
    Fut: Future<Output = Result<bool, StorageError>>,
{
    create_with_fresh_id_from(store, SessionId::generate, insert).await
}

/// [`create_with_fresh_id`] with ids from `generate`: the storages that
/// share records with aiohttp_session draw its uuid4 ids.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub(crate) async fn create_with_fresh_id_from<F, Fut>(
    store: &'static str,
    generate: fn() -> SessionId,
    mut insert: F,
) -> Result<SessionId, StorageError>
where
    F: FnMut(SessionId) -> Fut,
    Fut: Future<Output = Result<bool, StorageError>>,
{
    for _ in 0..ID_TRIES {
        let id = generate();
        if insert(id.clone()).await? {
            return Ok(id);
        }
        tracing::warn!(store, "session id collision; drawing another id");
    }
    Err(StorageError::unavailable(format!(
        "{store} refused {ID_TRIES} new session ids as existing"
    )))
}

/// The two settings of every store that talks to a server: how long the
/// record of a session without an idle limit lives, and how long one
/// command may take; with their defaults and their one check.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreTimes {
    /// The TTL of a session without an idle limit: [`DEFAULT_TTL`].
    pub(crate) default_ttl: Duration,
    /// How long one command may take: [`DEFAULT_COMMAND_TIMEOUT`].
    pub(crate) command_timeout: Duration,
}

#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
impl Default for StoreTimes {
    fn default() -> Self {
        Self {
            default_ttl: DEFAULT_TTL,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
impl StoreTimes {
    /// Refuses a TTL under a second and a zero timeout when the layer is
    /// built; `ttl` and `timeout` name the two settings in the error (`the
    /// Redis store's default TTL`).
    pub(crate) fn validate(
        &self,
        ttl: &'static str,
        timeout: &'static str,
    ) -> Result<(), ConfigError> {
        check_positive(ttl, self.default_ttl)?;
        check_timeout(timeout, self.command_timeout)
    }
}

/// A TTL setting in whole seconds, refused at build time when it is zero.
pub(crate) fn check_positive(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.as_secs() == 0 {
        return Err(ConfigError::ZeroDuration(setting));
    }
    Ok(())
}

/// A command timeout, refused at build time when it is zero (every command
/// would fail).
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
fn check_timeout(setting: &'static str, timeout: Duration) -> Result<(), ConfigError> {
    if timeout.is_zero() {
        return Err(ConfigError::StorageSetting {
            setting,
            problem: "it must be greater than zero".into(),
        });
    }
    Ok(())
}

/// Runs a client command, failing it with [`StorageError::Timeout`] after
/// `timeout` and with [`StorageError::Unavailable`] on the client's error.
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub(crate) async fn timed<T, E: Into<crate::error::BoxError>>(
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
#[cfg(any(feature = "redis", feature = "memcached"))]
pub(crate) fn store_key(prefix: &str, id: &crate::id::SessionId) -> String {
    let mut key = String::with_capacity(prefix.len() + 43);
    key.push_str(prefix);
    push_handle(&mut key, id);
    key
}

/// The handle of the session `id` in a user's listing: the url-safe base64
/// of SHA-256 of the id, which names the session without letting anyone
/// use it (the end of its store key, in Redis).
pub(crate) fn handle(id: &crate::id::SessionId) -> String {
    let mut handle = String::with_capacity(43);
    push_handle(&mut handle, id);
    handle
}

fn push_handle(out: &mut String, id: &crate::id::SessionId) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};

    URL_SAFE_NO_PAD.encode_string(Sha256::digest(id.as_str().as_bytes()), out);
}

/// How often a user's index of sessions drops the entries of records gone
/// (expired, evicted): whenever a new entry makes its size a multiple of
/// this. A user who signs in again and again never grows it more than this
/// past their live sessions, and a login costs the check of every entry
/// only once in this many, so its cost stays flat however many sessions
/// the user keeps.
pub(crate) const USER_INDEX_PRUNE_AT: usize = 64;

/// Whether an index that just grew to `size` entries is due for pruning.
pub(crate) fn prune_due(size: usize) -> bool {
    size.is_multiple_of(USER_INDEX_PRUNE_AT)
}

/// The key of the set of the record keys of `user`'s sessions of `kind`:
/// `prefix`, `u:` and the url-safe base64 of SHA-256 of its
/// [`user_scope`](crate::kind::user_scope) (so any user id makes a short, safe key, and a dump of
/// the store names no user).
#[cfg(feature = "redis")]
pub(crate) fn user_key(prefix: &str, kind: Option<&str>, user: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};

    let digest = Sha256::digest(crate::kind::user_scope(kind, user).as_bytes());
    let mut key = String::with_capacity(prefix.len() + 45);
    key.push_str(prefix);
    key.push_str("u:");
    URL_SAFE_NO_PAD.encode_string(digest, &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_and_not_zero() {
        assert!(check_positive("ttl", Duration::ZERO).is_err());
        assert!(check_positive("ttl", Duration::from_millis(999)).is_err());
        assert!(check_positive("ttl", Duration::from_secs(1)).is_ok());
    }

    #[cfg(any(feature = "redis", feature = "memcached"))]
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

    #[cfg(any(
        feature = "redis",
        feature = "memcached",
        feature = "postgres",
        feature = "mysql",
        feature = "sqlite"
    ))]
    #[test]
    fn a_store_that_always_collides_fails_after_three_ids() {
        let mut tries = 0;
        let outcome = poll_once(create_with_fresh_id("test store", |_| {
            tries += 1;
            std::future::ready(Ok(false))
        }));
        assert!(matches!(outcome, Err(StorageError::Unavailable(_))));
        assert_eq!(tries, ID_TRIES);
    }

    /// Polls a future that is ready at once.
    #[cfg(any(
        feature = "redis",
        feature = "memcached",
        feature = "postgres",
        feature = "mysql",
        feature = "sqlite"
    ))]
    fn poll_once<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the future was not ready"),
        }
    }
}
