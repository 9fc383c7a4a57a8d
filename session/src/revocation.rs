//! "Log out everywhere" for sessions no store indexes: a cookie storage
//! keeps nothing on the server, so a revocation cannot delete its sessions.
//! Instead it marks: [`Revocations`] keeps, for each user (and session
//! kind) that was ever revoked, a mark that every revocation raises (to one
//! more than it was, and at least to the time in microseconds); a session
//! bound to the user carries the mark of when it was bound
//! ([`SessionRecord::binding`], 0 before any revocation), and a session
//! whose mark is not the user's current one is over. A mark that was lost
//! (a restart of the in-memory state, an evicted or flushed Redis key)
//! reads as 0: the sessions bound after a revocation then count as
//! revoked (their users sign in again), and only sessions bound before the
//! user's first revocation would open again.
//!
//! [`SessionRecord::binding`]: crate::storage::SessionRecord::binding

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StorageError;
#[cfg(any(
    feature = "memcached",
    all(feature = "aiohttp-compat", feature = "redis")
))]
use crate::record::SessionRecord;

/// Where a layer over a cookie storage keeps its users' revocations, so
/// that [`UserSessions::revoke`](crate::UserSessions::revoke) ends every
/// cookie session of a user: a revoked cookie never opens again, on any
/// instance that shares the state, however long its own lifetime.
///
/// Give it to the layer with
/// [`SessionLayerBuilder::with_revocations`](crate::SessionLayerBuilder::with_revocations).
/// A load of a session bound to a user reads the user's count (a session
/// bound to no one costs nothing), and so does the save that binds one:
///
/// - [`Revocations::in_memory`]: this process only (one instance); no
///   round trip. It keeps one entry per user ever revoked.
/// - [`Revocations::redis`] (feature `redis`): shared by every instance on
///   the same Redis; one `GET` per load of a bound session, none when the
///   storage's local cache holds the count (then another instance's
///   revocation reaches this one within the cache's documented lag). One
///   key per user ever revoked, `prefix` + `revoked:` + base64url of
///   SHA-256 of the user (and kind).
///
/// Under `SimpleCookieStorage` (plain JSON, for tests) a client can edit
/// its own mark, as it can edit everything else in that cookie: use the
/// encrypted cookie.
///
/// The count is read in the save that binds a session, so a revocation
/// racing a login is either before it (the login lives) or after it (the
/// new session is over); a renewal, or a save of a session loaded before a
/// revocation, carries the count it was bound with, so it is over too.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

enum Inner {
    Memory(Mutex<HashMap<String, u64>>),
    #[cfg(feature = "redis")]
    Redis(crate::storage::redis::RedisCounts),
}

impl Revocations {
    /// Revocations kept in this process's memory.
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(Inner::Memory(Mutex::default())),
        }
    }

    /// Revocations kept in the Redis (or Redis Cluster) of `storage`, over
    /// its connection, under its key prefix and command timeout, and
    /// through its local cache if it has one. The storage need not be the
    /// layer's: a cookie layer builds one only for this.
    #[cfg(feature = "redis")]
    pub fn redis(storage: &crate::RedisStorage) -> Self {
        Self {
            inner: Arc::new(Inner::Redis(storage.counts())),
        }
    }

    /// The revocation mark of `scope` (a user and kind, see
    /// `kind::user_scope`), 0 if it has none, for a load: from Redis'
    /// local cache when it holds it.
    pub(crate) async fn count(&self, scope: &str) -> Result<u64, StorageError> {
        match &*self.inner {
            Inner::Memory(counts) => Ok(lock(counts).get(scope).copied().unwrap_or(0)),
            #[cfg(feature = "redis")]
            Inner::Redis(counts) => counts.get(scope, true).await,
        }
    }

    /// The mark a session bound now carries: read from the state itself,
    /// never a cache, so a login just after a revocation on another
    /// instance carries the new mark.
    pub(crate) async fn current(&self, scope: &str) -> Result<u64, StorageError> {
        match &*self.inner {
            Inner::Memory(_) => self.count(scope).await,
            #[cfg(feature = "redis")]
            Inner::Redis(counts) => counts.get(scope, false).await,
        }
    }

    /// Revokes every session of `scope` bound before now: raises its mark
    /// to one more than it was and at least to now in microseconds, so a
    /// mark that was lost and is written again is above every mark a
    /// session could carry.
    pub(crate) async fn revoke(&self, scope: &str) -> Result<(), StorageError> {
        match &*self.inner {
            Inner::Memory(counts) => {
                let mut counts = lock(counts);
                let count = counts.entry(scope.to_owned()).or_default();
                *count = count.saturating_add(1).max(micros_now());
                Ok(())
            }
            #[cfg(feature = "redis")]
            Inner::Redis(counts) => counts.raise(scope, micros_now()).await,
        }
    }
}

#[cfg(any(
    feature = "memcached",
    all(feature = "aiohttp-compat", feature = "redis")
))]
/// Revocation marks kept by a server-side store that does not index its
/// records by user (Memcached, aiohttp_session's formats in Redis and
/// Memcached): the same rule as [`Revocations`], inside the storage.
pub(crate) trait Marks: Sync {
    /// The mark of `scope` (a user and kind, see `kind::user_scope`) as
    /// the store holds it now, 0 if it has none.
    fn current(&self, scope: &str) -> impl Future<Output = Result<u64, StorageError>> + Send;

    /// Revokes every session of `scope` bound before now: raises its mark
    /// to one more than it was and at least to now in microseconds.
    fn raise(&self, scope: &str) -> impl Future<Output = Result<(), StorageError>> + Send;
}

#[cfg(any(
    feature = "memcached",
    all(feature = "aiohttp-compat", feature = "redis")
))]
/// Whether `record` was revoked with its user's sessions: it is bound and
/// does not carry its user's current mark. A session bound to no one costs
/// no round trip.
pub(crate) async fn is_revoked(
    marks: &impl Marks,
    record: &mut SessionRecord,
) -> Result<bool, StorageError> {
    let Some(user) = &record.user else {
        return Ok(false);
    };
    let scope = crate::kind::user_scope(record.kind.as_deref(), user);
    let mark = marks.current(&scope).await?;
    Ok(record.is_revoked_at(mark))
}

#[cfg(any(
    feature = "memcached",
    all(feature = "aiohttp-compat", feature = "redis")
))]
/// `record` as a store creates it: a session bound in this request (it
/// carries no mark yet) gets its user's mark now, read before the record
/// exists, so a revocation after this read ends it. Renewals keep the mark
/// they carry.
pub(crate) async fn with_binding<'r>(
    marks: &impl Marks,
    record: &'r SessionRecord,
) -> Result<std::borrow::Cow<'r, SessionRecord>, StorageError> {
    use std::borrow::Cow;

    let (Some(user), None) = (&record.user, record.binding) else {
        return Ok(Cow::Borrowed(record));
    };
    let scope = crate::kind::user_scope(record.kind.as_deref(), user);
    let mut bound = record.clone();
    bound.binding = Some(marks.current(&scope).await?);
    Ok(Cow::Owned(bound))
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

fn lock(counts: &Mutex<HashMap<String, u64>>) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner {
            Inner::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Inner::Redis(_) => "redis",
        };
        f.debug_struct("Revocations")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
