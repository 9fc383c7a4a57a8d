//! Saving a session after the handler: what to write, in which order, and
//! the `Set-Cookie` (or token header) it produces.

use std::sync::Arc;

use super::config::{Config, Shared};
use super::cookies::{self, MAX_COOKIE_BYTES};
use crate::error::SaveError;
use crate::record::{MAX_RECORD_BYTES, MAX_VALUE_DEPTH};
use crate::session::{Session, State};
use crate::storage::{DynServerStorage, StorageContext, StorageRef};
use crate::transport::{Transport, Via};

/// What the response carries of a saved session.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The `Set-Cookie` value.
    pub(crate) set_cookie: Option<String>,
    /// The token header's value: the session's id, or empty for a session
    /// that ended.
    pub(crate) token: Option<String>,
}

impl Delivery {
    fn is_empty(&self) -> bool {
        self.set_cookie.is_none() && self.token.is_none()
    }
}

/// Writes what changed in `session` and returns what the response carries
/// of it, if anything.
///
/// The order keeps every failure whole: a new record is created before the
/// old one is deleted, and the cookie is only sent once everything is
/// written; on an error no cookie is sent and the client's previous cookie
/// still names a complete record.
pub(crate) async fn save(
    shared: Arc<Shared>,
    session: Session,
) -> Result<Option<Delivery>, SaveError> {
    let labels = shared.labels();
    let saved = write(shared, session).await;
    if saved.is_err() {
        crate::metrics::saved(labels, "error");
    }
    saved
}

/// What [`save`] does, but for counting its failures.
async fn write(shared: Arc<Shared>, session: Session) -> Result<Option<Delivery>, SaveError> {
    let labels = shared.labels();
    let config = &shared.config;
    let now = shared.clock.now();
    let mut state = session.take_for_save();
    if let Some(refused) = state.refused.take() {
        return Err(refused);
    }
    let max_age = state.cookie_max_age();
    let cx = StorageContext::new(&config.cookie_name, now)
        .with_idle_limit(config.lifetimes.store_limit_at(state.record.times(), now));
    if !state.is_changed() && !state.refresh {
        // Only the cookie's expiry moved (the store extended the session on
        // this read): send it again, write nothing.
        return match &state.identity {
            Some(id) => deliver(config, &state, id.as_str(), max_age, now).map(Some),
            None => Ok(None),
        };
    }
    state.record.updated = now;
    // Only values set in this request: loaded ones have read back already,
    // and refusing them would lock a session out of renew() for good.
    if let Some(key) = state.record.too_deep(state.changes.set_keys()) {
        return Err(SaveError::ValueTooDeep {
            key: key.to_owned(),
            limit: MAX_VALUE_DEPTH,
        });
    }
    if let (Some(revocations), Some(user), None) = (
        &config.revocations,
        &state.record.user,
        state.record.binding,
    ) {
        // Bound in this request (only cookie layers count revocations):
        // the count now, read before the cookie exists, so a revocation
        // that lands after this read ends it.
        let scope = crate::kind::user_scope(config.kind, user);
        state.record.binding = Some(revocations.current(&scope).await?);
    }
    let header = |value: &str| deliver(config, &state, value, max_age, now);
    match shared.storage.kind() {
        StorageRef::Cookie(storage) => {
            if state.record.holds_nothing() {
                crate::metrics::saved(labels, "removed");
                return Ok(removal(config, &state));
            }
            let header = header(&storage.seal(&state.record, &cx)?)?;
            tracing::debug!(keys = state.record.data.len(), "session saved");
            crate::metrics::saved(labels, "written");
            Ok(Some(header))
        }
        StorageRef::Server(storage) => {
            let store = Timed { storage, labels };
            save_on_server(store, config, &state, &cx, header).await
        }
    }
}

/// Writes the session to the store: the new or updated record first, then
/// the deletion of a discarded one, so a failure part-way leaves the
/// client's cookie naming a whole record.
async fn save_on_server(
    storage: Timed<'_>,
    config: &Config,
    state: &State,
    cx: &StorageContext<'_>,
    header: impl Fn(&str) -> Result<Delivery, SaveError>,
) -> Result<Option<Delivery>, SaveError> {
    if state.record.holds_nothing() {
        for id in state.identity.iter().chain(&state.discard) {
            storage.delete(id, cx).await?;
        }
        crate::metrics::saved(storage.labels, "removed");
        return Ok(removal(config, state));
    }
    // Only a save that sets values can grow the session.
    if state.changes.set_keys().next().is_some() || state.changes.is_full_rewrite() {
        let size = state.record.json_size();
        if size > MAX_RECORD_BYTES {
            return Err(SaveError::SessionTooLarge {
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
    }
    let id = match &state.identity {
        Some(id) => {
            let cx = cx.with_version(state.version);
            if !storage
                .update(id, &state.record, &state.changes, &cx)
                .await?
            {
                // The cookie names a dead id, which never loads again;
                // removing it could race a response of the same client that
                // just set a new one (a login in another tab), so it is left
                // alone.
                tracing::debug!(
                    "session record gone (invalidated or expired elsewhere); not recreated"
                );
                crate::metrics::saved(storage.labels, "gone");
                return Ok(None);
            }
            id.clone()
        }
        None => storage.create(&state.record, cx).await?,
    };
    let header = header(id.as_str())?;
    if let Some(old) = &state.discard {
        let existed = match storage.delete(old, cx).await {
            Ok(existed) => existed,
            Err(error) => {
                // No cookie goes out, so the new record would be an orphan:
                // take it back if the store lets us.
                let _ = storage.delete(&id, cx).await;
                return Err(error.into());
            }
        };
        if !existed && state.carries_stored_data {
            // The renewed session was ended elsewhere while this request
            // ran: its data must not live on under the new id.
            storage.delete(&id, cx).await?;
            tracing::info!("renewed session was ended meanwhile; not carried to a new id");
            crate::metrics::saved(storage.labels, "gone");
            return Ok(None);
        }
    }
    tracing::debug!(keys = state.record.data.len(), "session saved");
    crate::metrics::saved(storage.labels, "written");
    Ok(Some(header))
}

/// A server storage whose calls are timed and counted.
#[derive(Clone, Copy)]
struct Timed<'a> {
    storage: &'a dyn DynServerStorage,
    labels: crate::metrics::Labels,
}

impl Timed<'_> {
    async fn create(
        &self,
        record: &crate::record::SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<crate::id::SessionId, crate::error::StorageError> {
        let started = crate::metrics::Started::now();
        let created = self.storage.create(record, cx).await;
        crate::metrics::store_call(self.labels, "create", started, &created);
        created
    }

    async fn update(
        &self,
        id: &crate::id::SessionId,
        record: &crate::record::SessionRecord,
        changes: &crate::record::Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, crate::error::StorageError> {
        let started = crate::metrics::Started::now();
        let updated = self.storage.update(id, record, changes, cx).await;
        crate::metrics::store_call(self.labels, "update", started, &updated);
        updated
    }

    async fn delete(
        &self,
        id: &crate::id::SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<bool, crate::error::StorageError> {
        let started = crate::metrics::Started::now();
        let deleted = self.storage.delete(id, cx).await;
        crate::metrics::store_call(self.labels, "delete", started, &deleted);
        deleted
    }
}

/// The removal of the cookie an empty session came with, or the empty
/// token that says its token ended.
fn removal(config: &Config, state: &State) -> Option<Delivery> {
    tracing::debug!("empty session: record deleted, cookie removed");
    match state.facts.came_via? {
        Via::Cookie => Some(Delivery {
            set_cookie: Some(cookies::removal(config)),
            token: None,
        }),
        Via::Header => Some(Delivery {
            set_cookie: None,
            token: Some(String::new()),
        }),
    }
}

/// A saved session's `value` (its id, or the sealed session) the way the
/// transport sends it: the way the request's session came, and both ways
/// for a new session under [`Transport::Both`].
fn deliver(
    config: &Config,
    state: &State,
    value: &str,
    max_age: Option<u64>,
    now: u64,
) -> Result<Delivery, SaveError> {
    let came_via = state.facts.came_via;
    let (cookie, token) = match config.transport {
        Transport::Cookie => (true, false),
        Transport::Header => (false, true),
        Transport::Both => (came_via != Some(Via::Header), came_via != Some(Via::Cookie)),
    };
    let delivery = Delivery {
        set_cookie: cookie
            .then(|| checked_set_cookie(config, value, max_age, now))
            .transpose()?,
        token: token.then(|| value.to_owned()),
    };
    debug_assert!(!delivery.is_empty(), "every transport sends something");
    Ok(delivery)
}

/// The `Set-Cookie` for a saved session, refused when browsers would drop it.
fn checked_set_cookie(
    config: &Config,
    value: &str,
    max_age: Option<u64>,
    now: u64,
) -> Result<String, SaveError> {
    let header = cookies::set_cookie(config, value, max_age, now);
    if header.len() > MAX_COOKIE_BYTES {
        return Err(SaveError::CookieTooLarge {
            size: header.len(),
            limit: MAX_COOKIE_BYTES,
        });
    }
    Ok(header)
}
