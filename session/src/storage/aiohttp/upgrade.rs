//! Reading aiohttp_session's formats while writing ours: the last step of a
//! move, once no Python service writes sessions any more.

use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::{ActiveSession, CookieStorage, Loaded, ServerStorage, StorageContext};

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
/// - **Users** ([`UserSessions`](crate::UserSessions)): a revocation ends
///   the user's sessions in both stores (so `old` must be able to revoke,
///   as aiohttp_session's formats here can), whatever moves meanwhile;
///   listings and revocations by handle see the sessions in `new`, which a
///   session joins when its user comes back.
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
            return Ok(self.old.load(id, cx).await?.map(|mut loaded| {
                // Bound again in `new` as at a login: a mark of `old`'s
                // means nothing to `new`'s revocations.
                loaded.record.binding = None;
                loaded.renewed()
            }));
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

    /// The user's sessions in `new`: a session still in `old` is listed
    /// once its user comes back and it moves (`old`, aiohttp_session's
    /// format, keeps no index of users).
    async fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Vec<ActiveSession>, StorageError> {
        self.new.sessions_of(user, cx).await
    }

    /// A session of the listing, which are all in `new`.
    async fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.new.revoke_session(user, handle, cx).await
    }

    /// Ends the user's sessions in both stores: first in `old` (a mark
    /// that its loads and its deletions read), then in `new`. A session
    /// moving from `old` while this runs is either written to `new` before
    /// `new`'s revocation, which ends it there, or after it: then its
    /// move's deletion in `old` comes after `old`'s mark and answers that
    /// the session was ended, and the layer deletes the copy in `new`
    /// instead of sending its cookie. The count is `new`'s plus `old`'s,
    /// and unknown (`None`) when either cannot count, as aiohttp_session's
    /// stores cannot. An `old` that cannot revoke at all fails the call:
    /// its sessions would open again.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        let old = self.old.revoke_user(user, cx).await?;
        let new = self.new.revoke_user(user, cx).await?;
        Ok(old.zip(new).map(|(old, new)| old + new))
    }
}
