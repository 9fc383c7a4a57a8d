//! Reading aiohttp_session's formats while writing ours: the last step of a
//! move, once no Python service writes sessions any more.

use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::{CookieStorage, Loaded, ServerStorage, StorageContext};

/// Reads sessions from a `new` storage and an `old` one, and writes them
/// only to `new`: sessions move from `old` (aiohttp_session's format) to
/// `new` (this crate's) as their users come back, and nobody is logged out.
///
/// - **Cookies** (`new` and `old` both [`CookieStorage`]s): a cookie that
///   `new` does not open is opened by `old`; every write seals with `new`.
///   A session read and not written keeps its old cookie until its next
///   write, so keep `old` until the longest max age has passed since the
///   switch.
/// - **Server-side** (both [`ServerStorage`]s): a cookie is an id of either
///   store. A session found in `old` is moved at once, whether or not the
///   request changes it: the layer writes it to `new` under a fresh id,
///   deletes the `old` record and sends the new cookie, as
///   [`Session::renew`](crate::Session::renew) does (if the `old` record
///   was ended meanwhile, nothing is carried). Once no live session is left
///   in `old` (its records' TTL), drop it.
///
/// Do not run it while a Python service still writes the old format: a
/// session it moved is gone for Python (a new, empty session there).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use typed_sessions::{RedisStorage, SessionLayer, aiohttp};
///
/// let native = RedisStorage::connect("redis://127.0.0.1:6379/0").await?;
/// let old = aiohttp::AiohttpRedisStorage::from_connection(native.connection().clone());
/// let layer = SessionLayer::builder(aiohttp::Upgrade::new(native, old))
///     .with_cookie_name(aiohttp::DEFAULT_COOKIE_NAME)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Upgrade<New, Old> {
    new: New,
    old: Old,
}

impl<New, Old> Upgrade<New, Old> {
    /// Reads `new` and `old`, writes `new`.
    pub fn new(new: New, old: Old) -> Self {
        Self { new, old }
    }
}

impl<New: CookieStorage, Old: CookieStorage> CookieStorage for Upgrade<New, Old> {
    fn open(&self, cookie_value: &str, cx: &StorageContext<'_>) -> Option<SessionRecord> {
        self.new
            .open(cookie_value, cx)
            .or_else(|| self.old.open(cookie_value, cx))
    }

    fn seal(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<String, StorageError> {
        self.new.seal(record, cx)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.new.validate()?;
        self.old.validate()
    }
}

impl<New: ServerStorage, Old: ServerStorage> Upgrade<New, Old> {
    fn is_new(&self, id: &SessionId) -> bool {
        self.new.parse_id(id.as_str()).is_some()
    }

    fn is_old(&self, id: &SessionId) -> bool {
        self.old.parse_id(id.as_str()).is_some()
    }
}

impl<New: ServerStorage, Old: ServerStorage> ServerStorage for Upgrade<New, Old> {
    fn parse_id(&self, cookie_value: &str) -> Option<SessionId> {
        self.new
            .parse_id(cookie_value)
            .or_else(|| self.old.parse_id(cookie_value))
    }

    async fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        if self.is_new(id)
            && let Some(loaded) = self.new.load(id, cx).await?
        {
            return Ok(Some(loaded));
        }
        if self.is_old(id) {
            return Ok(self.old.load(id, cx).await?.map(Loaded::renewed));
        }
        Ok(None)
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        self.new.create(record, cx).await
    }

    /// Every session this storage saves lives in `new` (those loaded from
    /// `old` are moved before their first save), so an id of `old` only
    /// comes here from a store that ids of both shapes parse in.
    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        if self.is_new(id) {
            self.new.update(id, record, changes, cx).await
        } else {
            self.old.update(id, record, changes, cx).await
        }
    }

    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let mut deleted = false;
        if self.is_new(id) {
            deleted |= self.new.delete(id, cx).await?;
        }
        if self.is_old(id) {
            deleted |= self.old.delete(id, cx).await?;
        }
        Ok(deleted)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.new.validate()?;
        self.old.validate()
    }
}
