//! What a storage author needs, and the settings of the storages that
//! have more than a constructor: the storage traits, what the layer hands
//! them ([`StorageContext`], [`SessionRecord`], [`Changes`]) and takes back
//! ([`Loaded`], [`ActiveSession`]), the limits every
//! storage keeps, and [`AnyStorage`] to choose one at run time. The
//! storages themselves are at the crate's root.
//!
//! There are two kinds of storage, each with the shape of what it really
//! does:
//!
//! - a [`CookieStorage`] seals the whole session into the cookie's value and
//!   opens it again; it keeps nothing and sees no id;
//! - a [`ServerStorage`] keeps sessions under random ids it makes itself;
//!   the cookie holds only the id.
//!
//! The layer holds either as an [`AnyStorage`]; [`SessionStorage`] is what
//! lets `SessionLayer::new` and `AnyStorage::new` take both.
//!
//! Storages know nothing about HTTP. Expiry by `max_age` and the absolute
//! timeout is checked by the layer on every load, whatever the storage, and
//! a cookie value that is not exactly an id's shape never reaches a server
//! storage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{ConfigError, StorageError};

#[cfg(feature = "aiohttp-compat")]
pub(crate) mod aiohttp;
pub(crate) mod cookie;
#[cfg(feature = "memcached")]
pub(crate) mod memcached;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(
    feature = "memcached",
    all(feature = "aiohttp-compat", feature = "redis")
))]
mod save_queue;
mod server;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) mod sql;

pub use crate::error::BoxError;
pub use crate::id::SessionId;
pub use crate::lifetime::MaxAge;
pub use crate::record::{
    Changes, MAX_CLOCK_SKEW, MAX_RECORD_BYTES, MAX_STORE_TTL, MAX_VALUE_DEPTH, SessionRecord,
};
pub use cookie::SimpleCookieStorage;
#[cfg(feature = "redis")]
pub use redis::{RedisCache, RedisCacheStatistics, RedisConnection, RedisOptions};

/// `url` with its password replaced by `***`, for messages and logs: the
/// URLs of stores often carry one (`redis://app:***@cache:6379/0`). It
/// redacts everything between the userinfo's first `:` and its last `@`
/// (a password may hold `/`, `?`, `#`, `@` or `,`), and the value of every
/// query parameter whose name, percent-decoded, holds `pass`, `secret` or
/// `token`; a comma-separated list of URLs is redacted URL by URL. It errs
/// on hiding too much: an `@` in a query hides what comes before it.
///
/// ```
/// use typed_sessions::storage::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(
///     redact_url("postgres://db/app?user=app&password=s3cret&sslmode=require"),
///     "postgres://db/app?user=app&password=***&sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    // A new URL starts at a `,` followed by a scheme, so a comma in a
    // password does not split its URL.
    let mut urls: Vec<String> = Vec::new();
    for piece in url.split(',') {
        match urls.last_mut() {
            Some(last) if !starts_with_scheme(piece) => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_owned()),
        }
    }
    urls.iter()
        .map(|url| redact_one_url(url))
        .collect::<Vec<_>>()
        .join(",")
}

fn starts_with_scheme(text: &str) -> bool {
    text.trim_start()
        .split_once("://")
        .is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"+-.".contains(&byte))
        })
}

fn redact_one_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    };
    let userinfo = userinfo.map(|userinfo| match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    });
    let after = match after.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => after.to_owned(),
    };
    format!("{scheme}{}{after}", userinfo.unwrap_or_default())
}

fn is_secret_parameter(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|secret| name.contains(secret))
}

/// What a storage is told about the request it serves.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StorageContext<'a> {
    /// The session cookie's name (encrypted cookies are bound to it).
    pub cookie_name: &'a str,
    /// The request's time, in seconds since the Unix epoch.
    pub now: u64,
    /// On [`ServerStorage::update`]: the version the store gave with
    /// [`Loaded`] when this request loaded the session, so it can write in
    /// one round trip if nothing changed in between.
    pub version: Option<u64>,
    /// On [`ServerStorage::create`] and [`ServerStorage::update`]: how many
    /// seconds after the record's `updated` time the layer may still load
    /// it (the session's idle limit, from its own max age or the layer's
    /// configuration); `None` when the session has no idle limit. Stores
    /// read it through [`StorageContext::record_ttl`].
    pub idle_limit: Option<u64>,
    /// On the user calls ([`ServerStorage::sessions_of`],
    /// [`ServerStorage::revoke_session`], [`ServerStorage::revoke_user`]):
    /// the [`SessionKind`](crate::SessionKind) of the layer asking, `None`
    /// for [`Main`](crate::Main). A store lists and revokes only the
    /// records of that kind ([`SessionRecord::kind`]), so one kind's
    /// "log out everywhere" never ends another kind's sessions of a user
    /// with the same id.
    pub kind: Option<&'a str>,
}

impl<'a> StorageContext<'a> {
    /// A context for a request at `now` with the given cookie name.
    pub fn new(cookie_name: &'a str, now: u64) -> Self {
        Self {
            cookie_name,
            now,
            version: None,
            idle_limit: None,
            kind: None,
        }
    }

    /// The same context, for the user calls of the layer of this kind.
    #[must_use]
    pub fn with_kind(mut self, kind: Option<&'a str>) -> Self {
        self.kind = kind;
        self
    }

    /// The same context, for writing a session with this idle limit.
    #[must_use]
    pub fn with_idle_limit(mut self, idle_limit: Option<u64>) -> Self {
        self.idle_limit = idle_limit;
        self
    }

    /// Seconds from the record's `updated` time until a store may drop it:
    /// the session's idle limit, or `default_ttl` (the store's own setting)
    /// for a session without one; at least one second and at most
    /// [`MAX_STORE_TTL`] (the longest expiry every
    /// store accepts; Memcached's absolute times end in 2106); plus the
    /// second by which the layer's check may outlast the limit (a store's
    /// clock ticking in whole seconds, like Memcached's, could otherwise
    /// drop the record early).
    pub fn record_ttl(&self, default_ttl: u64) -> u64 {
        self.idle_limit
            .unwrap_or(default_ttl)
            .clamp(1, crate::record::MAX_STORE_TTL)
            + 1
    }

    /// The same context, carrying the version the session was loaded at.
    #[must_use]
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }
}

/// A storage that keeps the whole session in the cookie.
///
/// It seals a record into a cookie value and opens such a value again; it
/// keeps nothing, so it can neither list nor revoke the sessions it issued.
/// Both calls are synchronous: they are pure computation.
pub trait CookieStorage: Send + Sync + 'static {
    /// The record sealed in `cookie_value`, or `None` for a value that does
    /// not open (tampered, truncated, another key or cookie name, not this
    /// storage's format): the request then gets a new empty session.
    fn open(&self, cookie_value: &str, cx: &StorageContext<'_>) -> Option<SessionRecord>;

    /// The cookie value that carries `record`.
    fn seal(&self, record: &SessionRecord, cx: &StorageContext<'_>)
    -> Result<String, StorageError>;

    /// Checks the storage's configuration; called when the layer is built,
    /// so a mistake stops the app at start-up. Default: nothing to check.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A session found by [`ServerStorage::load`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded {
    /// The session's state.
    pub record: SessionRecord,
    /// An opaque version of the stored record (Memcached's CAS), handed
    /// back in [`StorageContext::version`] when the session is updated.
    pub version: Option<u64>,
    /// The store extended the record's life on this read (Redis with TTL
    /// refresh on read): the layer sends the cookie again with its new
    /// expiry, without writing the session.
    pub extended: bool,
    /// The store asks for the session to move to a fresh id at this
    /// request, as [`Session::renew`](crate::Session::renew) does: the layer
    /// writes it whole through [`ServerStorage::create`], deletes the record
    /// under the old id and sends the new cookie. Storages that upgrade
    /// records of another format (aiohttp_session's) use it.
    pub renew: bool,
}

impl Loaded {
    /// A session found in the store.
    pub fn new(record: SessionRecord) -> Self {
        Self {
            record,
            version: None,
            extended: false,
            renew: false,
        }
    }

    /// The same session, to be moved to a fresh id at this request.
    #[must_use]
    pub fn renewed(mut self) -> Self {
        self.renew = true;
        self
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

/// A store that keeps sessions on the server, under ids it makes itself.
///
/// The layer calls it at most once to load a request's session and, after
/// the handler, only for what the session's changes need. It only ever
/// hands the store ids its [`ServerStorage::parse_id`] accepted or its
/// [`ServerStorage::create`] made.
pub trait ServerStorage: Send + Sync + 'static {
    /// The id a cookie value names, if it has exactly the shape of the ids
    /// this store makes; anything else never reaches the store. Default:
    /// [`SessionId::parse`], this crate's ids. Storages that share records
    /// with aiohttp_session accept its uuid4 ids instead.
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId> {
        SessionId::parse(cookie_value)
    }

    /// The live session stored under `id`, or `Ok(None)` when there is none
    /// (never stored, expired, deleted, or a record that no longer decodes).
    /// Errors are for a store that failed.
    fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<Loaded>, StorageError>> + Send;

    /// Stores a new session (or a renewed one) under a fresh id from
    /// [`SessionId::generate`] and returns that id. Never overwrites an
    /// existing record: on the (astronomically unlikely) collision, draw
    /// another id.
    fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<SessionId, StorageError>> + Send;

    /// Merges `changes` (and the record's `updated` and `max_age`) into the
    /// record stored under `id`, only if it still exists. `Ok(false)` when
    /// the record is gone (invalidated or expired elsewhere): it is not
    /// brought back.
    fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// Deletes the record stored under `id`; `Ok(true)` if there was one.
    ///
    /// A store that indexes records by user answers `Ok(false)` for a
    /// record a revocation of its user ([`ServerStorage::revoke_user`]) has
    /// already taken, even if the record itself is not deleted yet: a
    /// renewal deletes the old record after writing the new one, and this
    /// answer is what tells the layer the session was ended meanwhile, so
    /// that it deletes the new copy instead of handing out its cookie. So
    /// nothing else (such as the pruning of index entries whose records
    /// are gone) may take a record's entry out while the record lives: the
    /// deletion would read that as a revocation and sign its user out.
    fn delete(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// Checks the storage's configuration; called when the layer is built,
    /// so a mistake stops the app at start-up. Default: nothing to check.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The stored sessions bound to `user` ([`SessionRecord::user`]), as
    /// the store holds them (the layer drops those whose lifetimes ended).
    /// Default: [`StorageError::Unsupported`], for a store that cannot
    /// index its records by user.
    fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Vec<ActiveSession>, StorageError>> + Send {
        let _ = (user, cx);
        std::future::ready(Err(StorageError::Unsupported("listing a user's sessions")))
    }

    /// Deletes the record of the session with this
    /// [`handle`](ActiveSession::handle) if it is bound to `user` (a user
    /// ends only their own sessions); whether there was one. Default:
    /// [`StorageError::Unsupported`].
    fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        let _ = (user, handle, cx);
        std::future::ready(Err(StorageError::Unsupported(
            "revoking a session by its handle",
        )))
    }

    /// Ends every session bound to `user`; how many there were, when the
    /// store knows (`None` for one that ends them by a count every load
    /// checks, as Memcached does). Default: [`StorageError::Unsupported`].
    ///
    /// A revocation must be total and final whatever runs meanwhile: it
    /// takes effect at one instant between its call and its answer, ending
    /// every record bound to `user` that was created before that instant,
    /// and no renewal racing it may carry one to a new id (see
    /// [`ServerStorage::delete`]). Records created after the instant live.
    /// The crate's stores each say in their documentation why theirs
    /// holds.
    fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> impl Future<Output = Result<Option<usize>, StorageError>> + Send {
        let _ = (user, cx);
        std::future::ready(Err(StorageError::Unsupported("revoking a user's sessions")))
    }
}

/// The session key whose value a user's listing of sessions shows beside
/// each one's times ([`ActiveSession::meta`]): small metadata the app keeps,
/// such as the device or user agent it signed in from. Public as
/// [`Session::USER_META_KEY`](crate::Session::USER_META_KEY).
pub(crate) const USER_META_KEY: &str = "_meta";

/// One stored session of a user: what [`UserSessions::of`](crate::UserSessions::of)
/// lists (its times, never its id or data), and what a storage's
/// [`ServerStorage::sessions_of`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveSession {
    /// A name for the session that cannot be used as it (the url-safe
    /// base64 of SHA-256 of its id), for
    /// [`UserSessions::revoke_one`](crate::UserSessions::revoke_one).
    pub handle: String,
    /// What the app keeps under
    /// [`Session::USER_META_KEY`](crate::Session::USER_META_KEY) in the
    /// session (a device name, a user agent), if anything.
    pub meta: Option<serde_json::Value>,
    /// When it began, in seconds since the Unix epoch.
    pub created: u64,
    /// When it was last written, in seconds since the Unix epoch (a read
    /// past half of its idle limit counts, see the crate's lifetimes).
    pub last_seen: u64,
    /// The max age it chose.
    pub max_age: MaxAge,
    /// The end it chose, if any.
    pub expires_at: Option<u64>,
}

impl ActiveSession {
    /// The listing of `record`, stored under the session id whose
    /// [`handle`](ActiveSession::handle) is `handle`.
    pub fn of(handle: String, record: &SessionRecord) -> Self {
        Self {
            handle,
            meta: record.data.get(USER_META_KEY).cloned(),
            created: record.created,
            last_seen: record.updated,
            max_age: record.max_age,
            expires_at: record.expires_at,
        }
    }

    /// The times that decide when it ends.
    pub(crate) fn times(&self) -> crate::lifetime::Times {
        crate::lifetime::Times {
            created: self.created,
            updated: self.last_seen,
            max_age: self.max_age,
            expires_at: self.expires_at,
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`ServerStorage`] in a form that can be boxed (`dyn`): what the layer
/// calls.
pub(crate) trait DynServerStorage: Send + Sync + 'static {
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId>;

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Loaded>, StorageError>>;

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<SessionId, StorageError>>;

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a SessionRecord,
        changes: &'a Changes,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;

    fn delete<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;

    fn validate(&self) -> Result<(), ConfigError>;

    fn sessions_of<'a>(
        &'a self,
        user: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<ActiveSession>, StorageError>>;

    fn revoke_user<'a>(
        &'a self,
        user: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<usize>, StorageError>>;

    fn revoke_session<'a>(
        &'a self,
        user: &'a str,
        handle: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;
}

impl<S: ServerStorage> DynServerStorage for S {
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId> {
        ServerStorage::parse_id(self, cookie_value)
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Loaded>, StorageError>> {
        Box::pin(ServerStorage::load(self, id, cx))
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<SessionId, StorageError>> {
        Box::pin(ServerStorage::create(self, record, cx))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a SessionRecord,
        changes: &'a Changes,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(ServerStorage::update(self, id, record, changes, cx))
    }

    fn delete<'a>(
        &'a self,
        id: &'a SessionId,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(ServerStorage::delete(self, id, cx))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ServerStorage::validate(self)
    }

    fn sessions_of<'a>(
        &'a self,
        user: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<ActiveSession>, StorageError>> {
        Box::pin(ServerStorage::sessions_of(self, user, cx))
    }

    fn revoke_user<'a>(
        &'a self,
        user: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<Option<usize>, StorageError>> {
        Box::pin(ServerStorage::revoke_user(self, user, cx))
    }

    fn revoke_session<'a>(
        &'a self,
        user: &'a str,
        handle: &'a str,
        cx: &'a StorageContext<'a>,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(ServerStorage::revoke_session(self, user, handle, cx))
    }
}

/// Any storage, chosen at run time: what the layer holds.
///
/// ```
/// use typed_sessions::storage::AnyStorage;
/// use typed_sessions::{EncryptedCookieStorage, EncryptionKey, MemoryStorage};
///
/// let storage = if std::env::var("SESSION_STORE").as_deref() == Ok("memory") {
///     AnyStorage::new(MemoryStorage::new())
/// } else {
///     AnyStorage::new(EncryptedCookieStorage::new(EncryptionKey::generate()))
/// };
/// ```
#[derive(Clone)]
pub struct AnyStorage(Erased, &'static str);

#[derive(Clone)]
enum Erased {
    Cookie(Arc<dyn CookieStorage>),
    Server(Arc<dyn DynServerStorage>),
}

/// The storage of the request's session, as the layer works with it.
pub(crate) enum StorageRef<'a> {
    Cookie(&'a dyn CookieStorage),
    Server(&'a dyn DynServerStorage),
}

impl AnyStorage {
    /// Erases the type of `storage`: a [`CookieStorage`], a
    /// [`ServerStorage`], or an `AnyStorage` (kept as it is, not wrapped
    /// again).
    pub fn new<Kind>(storage: impl SessionStorage<Kind>) -> Self {
        storage.into_any()
    }

    /// Whether sessions live on the server (the cookie holds an id) rather
    /// than in the cookie.
    pub fn is_server_side(&self) -> bool {
        matches!(self.0, Erased::Server(_))
    }

    /// The storage's type name without its path (`RedisStorage`), for
    /// metrics and logs.
    pub(crate) fn name(&self) -> &'static str {
        self.1
    }

    pub(crate) fn kind(&self) -> StorageRef<'_> {
        match &self.0 {
            Erased::Cookie(storage) => StorageRef::Cookie(storage.as_ref()),
            Erased::Server(storage) => StorageRef::Server(storage.as_ref()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match &self.0 {
            Erased::Cookie(storage) => storage.validate(),
            Erased::Server(storage) => storage.validate(),
        }
    }
}

impl std::fmt::Debug for AnyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Erased::Cookie(_) => "cookie",
            Erased::Server(_) => "server",
        };
        f.debug_tuple("AnyStorage").field(&kind).finish()
    }
}

/// Marks which kind of storage a type is, so one generic parameter can take
/// both kinds; callers never name it.
#[doc(hidden)]
pub mod kind {
    /// A [`CookieStorage`](super::CookieStorage).
    #[derive(Debug)]
    pub enum Cookie {}
    /// A [`ServerStorage`](super::ServerStorage).
    #[derive(Debug)]
    pub enum Server {}
    /// An [`AnyStorage`](super::AnyStorage).
    #[derive(Debug)]
    pub enum Any {}
}

mod sealed {
    pub trait Sealed<Kind> {}
}

/// Anything the layer can keep sessions in: every [`CookieStorage`], every
/// [`ServerStorage`] and [`AnyStorage`]. Implement one of the first two for
/// a storage of your own; this trait comes with it.
pub trait SessionStorage<Kind>: sealed::Sealed<Kind> + Sized {
    /// The storage, with its type erased.
    fn into_any(self) -> AnyStorage;
}

impl<S: CookieStorage> sealed::Sealed<kind::Cookie> for S {}
impl<S: CookieStorage> SessionStorage<kind::Cookie> for S {
    fn into_any(self) -> AnyStorage {
        AnyStorage(Erased::Cookie(Arc::new(self)), short_type_name::<S>())
    }
}

impl<S: ServerStorage> sealed::Sealed<kind::Server> for S {}
impl<S: ServerStorage> SessionStorage<kind::Server> for S {
    fn into_any(self) -> AnyStorage {
        AnyStorage(Erased::Server(Arc::new(self)), short_type_name::<S>())
    }
}

/// `S`'s type name without its path or type parameters: `Upgrade` for
/// `typed_sessions::aiohttp::Upgrade<…>`.
fn short_type_name<S>() -> &'static str {
    let full = std::any::type_name::<S>();
    let bare = full.split('<').next().unwrap_or(full);
    bare.rsplit("::").next().unwrap_or(bare)
}

impl sealed::Sealed<kind::Any> for AnyStorage {}
impl SessionStorage<kind::Any> for AnyStorage {
    fn into_any(self) -> AnyStorage {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_wherever_a_url_carries_one() {
        for (url, redacted) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://app@cache/0", "redis://app@cache/0"),
            ("redis://:pw@cache", "redis://:***@cache"),
            (
                "rediss://app:p@ss:word@cache:6380",
                "rediss://app:***@cache:6380",
            ),
            (
                "redis://a:x@n1:7000,redis://b:y@n2:7000",
                "redis://a:***@n1:7000,redis://b:***@n2:7000",
            ),
            ("postgres://u:pw@db/app#x", "postgres://u:***@db/app#x"),
            (
                "postgres://db/app?PASSWORD=pw",
                "postgres://db/app?PASSWORD=***",
            ),
            ("not a url", "not a url"),
            ("redis://app:p/ss@h:6379/0", "redis://app:***@h:6379/0"),
            ("redis://app:p?s#s@h", "redis://app:***@h"),
            (
                "redis://a:p,w@h,redis://b:x@i",
                "redis://a:***@h,redis://b:***@i",
            ),
            (
                "redis+unix:///run/redis.sock?db=0&pass=pw",
                "redis+unix:///run/redis.sock?db=0&pass=***",
            ),
            (
                "postgres://db/app?pass%77ord=pw&sslpassword=k",
                "postgres://db/app?pass%77ord=***&sslpassword=***",
            ),
            (
                "10.0.0.1:11211,10.0.0.2:11211",
                "10.0.0.1:11211,10.0.0.2:11211",
            ),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }
}
