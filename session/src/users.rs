//! Sessions bound to users: "your active sessions" and "log out
//! everywhere" (OWASP ASVS 4.0.3 V3.3.4).
//!
//! A handler binds the session to a user at login
//! ([`Session::bind_user`]); the [`UserSessions`] extractor then lists that
//! user's live sessions and revokes them, on the server-side storages that
//! index records by user (memory, Redis and Redis Cluster, PostgreSQL,
//! SQLite). Memcached cannot list its items, but revokes by a count per
//! user; a cookie storage keeps nothing, and revokes only under a
//! [`Revocations`](crate::Revocations) state; listing on either answers
//! [`StorageError::Unsupported`].

use std::marker::PhantomData;
use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use http::request::Parts;

use crate::error::StorageError;
use crate::extract::SessionRejection;
use crate::kind::{Main, SessionKind, user_scope};
use crate::layer::config::Shared;
use crate::layer::slot::KindSlot;
use crate::session::Session;
use crate::storage::{ActiveSession, StorageContext, StorageRef};

impl Session {
    /// The session key whose value a listing of a user's sessions shows
    /// beside each one ([`ActiveSession::meta`](crate::ActiveSession::meta)):
    /// small metadata such as the device or user agent it signed in from.
    pub const USER_META_KEY: &'static str = crate::storage::USER_META_KEY;
}

impl<K: SessionKind> Session<K> {
    /// Binds the session to `user` (a user id: any string, kept in the
    /// session's record, never logged), so that [`UserSessions`] can list
    /// and revoke it. Binding is a change of privilege, so it also renews
    /// the session: a new id, the old record deleted (see
    /// [`renew`](Session::renew)).
    ///
    /// A user id no store can hold (empty, over 1024 bytes, with a NUL)
    /// binds nothing: the save after the handler refuses with
    /// [`SaveError::InvalidUser`](crate::SaveError::InvalidUser), so the
    /// request answers with an error rather than a login that did not land.
    pub fn bind_user(&self, user: impl Into<String>) {
        let user = user.into();
        if let Some(problem) = user_problem(&user) {
            self.refuse_save(crate::SaveError::InvalidUser(problem));
            return;
        }
        let mut state = self.lock();
        if state.record.user.as_deref() != Some(user.as_str()) {
            // A new binding; binding the same user again is a renewal and
            // keeps the binding's revocation count (see `Revocations`).
            state.record.binding = None;
            state.record.user = Some(user);
        }
        drop(state);
        self.renew();
    }

    /// The user the session is bound to, if any.
    pub fn user(&self) -> Option<String> {
        self.lock().record.user.clone()
    }

    /// Ends the session's binding to a user: it is no longer listed by
    /// [`UserSessions::of`] nor ended by the user's revocation. A change of
    /// privilege too, so it renews the session; one left with no data is
    /// then not stored. Nothing happens to a session bound to no one.
    pub fn unbind_user(&self) {
        let was_bound = {
            let mut state = self.lock();
            state.record.binding = None;
            state.record.user.take().is_some()
        };
        if was_bound {
            self.renew();
        }
    }
}

/// The longest user id a session can be bound to, in bytes: every store's
/// index holds it (PostgreSQL's and SQLite's `TEXT`, a Redis key, the
/// memory store's map) with room to spare.
pub(crate) const MAX_USER_BYTES: usize = 1024;

/// What keeps a store from holding `user`, if anything: it must not be
/// empty, must be at most [`MAX_USER_BYTES`], and must hold no NUL
/// (PostgreSQL's `text` cannot). Such an id is refused before it reaches
/// the store (where a NUL made PostgreSQL answer 503, which invites
/// retries): a 400 from [`UserSessions`], a refused save from
/// [`Session::bind_user`].
fn user_problem(user: &str) -> Option<&'static str> {
    if user.is_empty() {
        Some("user id: it is empty")
    } else if user.len() > MAX_USER_BYTES {
        Some("user id: it is longer than 1024 bytes")
    } else if user.contains('\0') {
        Some("user id: it holds the character U+0000 (NUL)")
    } else {
        None
    }
}

/// `user`, or the 400 that says why no store can hold it.
fn checked_user(user: &str) -> Result<&str, StorageError> {
    match user_problem(user) {
        Some(problem) => Err(StorageError::InvalidArgument(problem)),
        None => Ok(user),
    }
}

/// Whether `handle` has the shape of a session handle (the url-safe base64
/// of a SHA-256, 43 characters): another names no session, and never
/// reaches the store.
fn is_handle(handle: &str) -> bool {
    handle.len() == 43
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The storage's view of every user's sessions, for the layer of kind `K`:
/// an extractor.
///
/// ```
/// use axum::extract::Path;
/// use typed_sessions::{Session, UserSessions};
///
/// async fn login(session: Session, Path(user): Path<String>) {
///     // ...after checking the password:
///     session.bind_user(user);
/// }
///
/// async fn log_out_everywhere(sessions: UserSessions, session: Session) -> String {
///     let Some(user) = session.user() else {
///         return "not signed in".into();
///     };
///     match sessions.revoke(&user).await {
///         Ok(Some(n)) => format!("{n} sessions ended"),
///         Ok(None) => "every session ended".into(),
///         Err(error) => format!("could not end them: {error}"),
///     }
/// }
/// ```
pub struct UserSessions<K: SessionKind = Main> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> UserSessions<K> {
    /// The live sessions bound to `user`, oldest first. Sessions whose
    /// lifetimes ended are left out, whatever the store still holds.
    pub async fn of(&self, user: &str) -> Result<Vec<ActiveSession>, StorageError> {
        let user = checked_user(user)?;
        let now = self.shared.clock.now();
        let config = &self.shared.config;
        let cx = StorageContext::new(&config.cookie_name, now).with_kind(config.kind);
        let StorageRef::Server(storage) = self.shared.storage.kind() else {
            return Err(StorageError::Unsupported("listing a user's sessions"));
        };
        let mut live: Vec<ActiveSession> = storage
            .sessions_of(user, &cx)
            .await?
            .into_iter()
            .filter(|stored| !config.lifetimes.has_ended(stored.times(), now))
            .collect();
        live.sort_by_key(|session| session.created);
        Ok(live)
    }

    /// Ends the one session of `user` with this
    /// [`handle`](ActiveSession::handle) ("sign out that device"); whether
    /// there was one. A handle of another user's session ends nothing.
    pub async fn revoke_one(&self, user: &str, handle: &str) -> Result<bool, StorageError> {
        let user = checked_user(user)?;
        if !is_handle(handle) {
            return Ok(false);
        }
        let now = self.shared.clock.now();
        let config = &self.shared.config;
        let cx = StorageContext::new(&config.cookie_name, now).with_kind(config.kind);
        let StorageRef::Server(storage) = self.shared.storage.kind() else {
            return Err(StorageError::Unsupported(
                "revoking a session by its handle",
            ));
        };
        storage.revoke_session(user, handle, &cx).await
    }

    /// Ends every session bound to `user`, at once (the next request of
    /// each is a new empty session); how many there were, when the store
    /// knows: `None` where sessions are ended by a count every load checks
    /// (cookie sessions under [`Revocations`](crate::Revocations), and
    /// Memcached). The current request's own session, if it is one of
    /// them, is not brought back by the save after the handler: a store
    /// that deletes does not recreate it, and under marks it is written but
    /// never opens again.
    ///
    /// A layer over a cookie storage without
    /// [`with_revocations`](crate::SessionLayerBuilder::with_revocations)
    /// answers [`StorageError::Unsupported`]: it keeps nothing to revoke.
    pub async fn revoke(&self, user: &str) -> Result<Option<usize>, StorageError> {
        let user = checked_user(user)?;
        let now = self.shared.clock.now();
        let config = &self.shared.config;
        let cx = StorageContext::new(&config.cookie_name, now).with_kind(config.kind);
        match (self.shared.storage.kind(), &config.revocations) {
            (StorageRef::Server(storage), _) => storage.revoke_user(user, &cx).await,
            (StorageRef::Cookie(_), Some(revocations)) => {
                revocations.revoke(&user_scope(config.kind, user)).await?;
                Ok(None)
            }
            (StorageRef::Cookie(_), None) => Err(StorageError::Unsupported(
                "revoking a user's cookie sessions without a revocation state \
                 (SessionLayerBuilder::with_revocations)",
            )),
        }
    }
}

impl<K: SessionKind> Clone for UserSessions<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: SessionKind> std::fmt::Debug for UserSessions<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSessions")
            .field("kind", &K::NAME)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, K: SessionKind> FromRequestParts<S> for UserSessions<K> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(KindSlot(slot, _)) = parts.extensions.get::<KindSlot<K>>() else {
            return Err(SessionRejection::missing_layer::<K>());
        };
        Ok(Self {
            shared: slot.shared().clone(),
            kind: PhantomData,
        })
    }
}
