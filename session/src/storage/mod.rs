//! Where sessions are kept: one trait for cookie storages (the whole session
//! in the cookie) and server-side stores (an id in the cookie).
//!
//! Storages know nothing about HTTP: the layer hands them the cookie's value
//! and takes back the value to set. Expiry by `max_age` and the absolute
//! timeout is checked by the layer on every load, whatever the storage.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::StorageError;
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};

mod encrypted_cookie;
#[cfg(feature = "memcached")]
mod memcached;
mod memory;
mod opened_cookies;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "redis", feature = "memcached"))]
mod server;
mod simple_cookie;

pub use encrypted_cookie::{EncryptedCookieStorage, KeyError, SessionKey};
#[cfg(feature = "memcached")]
pub use memcached::MemcachedStorage;
pub use memory::MemoryStorage;
#[cfg(feature = "redis")]
pub use redis::{RedisConnection, RedisStorage};
pub use simple_cookie::SimpleCookieStorage;

/// What a storage is told about the request it serves.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StorageContext<'a> {
    /// The session cookie's name (encrypted cookies are bound to it).
    pub cookie_name: &'a str,
    /// The request's time, in seconds since the Unix epoch.
    pub now: u64,
    /// On `update`: the version the store gave with [`Loaded`] when this
    /// request loaded the session, so it can write in one round trip if
    /// nothing changed in between.
    pub version: Option<u64>,
}

impl<'a> StorageContext<'a> {
    /// A context for a request at `now` with the given cookie name.
    pub fn new(cookie_name: &'a str, now: u64) -> Self {
        Self {
            cookie_name,
            now,
            version: None,
        }
    }

    /// The same context, carrying the version the session was loaded at.
    #[must_use]
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }
}

/// A session found by [`SessionStorage::load`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded {
    /// The session's state.
    pub record: SessionRecord,
    /// Its server-side id; `None` for cookie storages.
    pub identity: Option<SessionId>,
    /// An opaque version of the stored record (Memcached's CAS), handed
    /// back in [`StorageContext::version`] when the session is updated.
    pub version: Option<u64>,
    /// The store extended the record's life on this read (Redis with TTL
    /// refresh on read): the layer sends the cookie again with its new
    /// expiry, without writing the session.
    pub extended: bool,
}

impl Loaded {
    /// A session found under `identity` (`None` for cookie storages).
    pub fn new(record: SessionRecord, identity: Option<SessionId>) -> Self {
        Self {
            record,
            identity,
            version: None,
            extended: false,
        }
    }

    /// The same session, marked as extended by this read.
    #[must_use]
    pub fn extended(mut self) -> Self {
        self.extended = true;
        self
    }

    /// The same session, with the store's version of its record.
    #[must_use]
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }
}

/// A place to keep sessions.
///
/// The layer calls it at most once to load a request's session and, after
/// the handler, only for what the session's changes need. Every method gets
/// the request's [`StorageContext`].
///
/// - Cookie storages encode the whole record into the cookie value and never
///   see an id: `update` and `delete` are not called for them.
/// - Server-side stores return a fresh [`SessionId`] from `create` and never
///   adopt an id a client sent that they do not hold.
pub trait SessionStorage: Send + Sync + 'static {
    /// The session a cookie value refers to, or `Ok(None)` for a value that
    /// does not open, is malformed, or names no live record: the request
    /// then gets a new empty session. Errors are for a store that failed.
    fn load(
        &self,
        cookie_value: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<Loaded>, StorageError>> + Send;

    /// Stores a new session (or a renewed one, under a new identity) and
    /// returns the cookie value to send. A server-side store never overwrites
    /// an existing record here.
    fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<String, StorageError>> + Send;

    /// Merges `changes` (and the record's `updated` and `max_age`) into the
    /// record stored under `id`, only if it still exists. Returns the cookie
    /// value to send, or `None` when the record is gone (invalidated or
    /// expired elsewhere): it is not brought back.
    fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<String>, StorageError>> + Send;

    /// Deletes the record stored under `id`, if any.
    fn delete(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`SessionStorage`] in a form that can be boxed (`dyn`).
trait DynStorage: Send + Sync + 'static {
    fn load<'a>(
        &'a self,
        cookie_value: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Loaded>, StorageError>>;

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<String, StorageError>>;

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a SessionRecord,
        changes: &'a Changes,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>>;

    fn delete<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
}

impl<S: SessionStorage> DynStorage for S {
    fn load<'a>(
        &'a self,
        cookie_value: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Loaded>, StorageError>> {
        Box::pin(SessionStorage::load(self, cookie_value, cx))
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<String, StorageError>> {
        Box::pin(SessionStorage::create(self, record, cx))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a SessionRecord,
        changes: &'a Changes,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>> {
        Box::pin(SessionStorage::update(self, id, record, changes, cx))
    }

    fn delete<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(SessionStorage::delete(self, id, cx))
    }
}

/// Any storage, chosen at run time.
///
/// ```
/// use typed_sessions::{AnyStorage, MemoryStorage, SessionKey, EncryptedCookieStorage};
///
/// let storage = if std::env::var("SESSION_STORE").as_deref() == Ok("memory") {
///     AnyStorage::new(MemoryStorage::new())
/// } else {
///     AnyStorage::new(EncryptedCookieStorage::new(SessionKey::generate()))
/// };
/// ```
#[derive(Clone)]
pub struct AnyStorage(Arc<dyn DynStorage>);

impl AnyStorage {
    /// Erases the type of `storage`. An `AnyStorage` passed in is kept as it
    /// is, not wrapped again.
    pub fn new<S: SessionStorage>(storage: S) -> Self {
        match (&storage as &dyn Any).downcast_ref::<AnyStorage>() {
            Some(any) => any.clone(),
            None => Self(Arc::new(storage)),
        }
    }
}

impl std::fmt::Debug for AnyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyStorage")
    }
}

impl SessionStorage for AnyStorage {
    // `async fn` names every lifetime of the call, which the boxed future's
    // single lifetime cannot.
    async fn load(
        &self,
        cookie_value: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        self.0.load(cookie_value, cx).await
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        self.0.create(record, cx).await
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<Option<String>, StorageError> {
        self.0.update(id, record, changes, cx).await
    }

    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<(), StorageError> {
        self.0.delete(id, cx).await
    }
}
