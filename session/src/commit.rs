//! Saving a session after the handler: what to write, in which order, and
//! the `Set-Cookie` it produces.

use std::sync::Arc;

use crate::cookies::{self, MAX_COOKIE_BYTES};
use crate::error::SaveError;
use crate::middleware::Shared;
use crate::session::Session;
use crate::storage::{SessionStorage, StorageContext};

/// Writes what changed in `session` and returns the `Set-Cookie` value to
/// send, if any.
///
/// The order keeps every failure whole: a new record is created before the
/// old one is deleted, and the cookie is only sent once everything is
/// written; on an error no cookie is sent and the client's previous cookie
/// still names a complete record.
pub(crate) async fn save(
    shared: Arc<Shared>,
    session: Session,
) -> Result<Option<String>, SaveError> {
    let config = &shared.config;
    let storage = &shared.storage;
    let now = shared.clock.now();
    let cx = StorageContext::new(&config.cookie_name, now);
    let mut pending = session.take_for_save();
    if !pending.changed {
        // Only the cookie's expiry moved (the store extended the session on
        // this read): send it again, write nothing.
        return Ok(pending
            .identity
            .map(|id| cookies::set_cookie(config, id.as_str(), pending.record.max_age, now)));
    }
    pending.record.updated = now;

    if pending.record.data.is_empty() {
        for id in pending.identity.iter().chain(&pending.discard) {
            storage.delete(id, &cx).await?;
        }
        tracing::debug!("empty session: record deleted, cookie removed");
        return Ok(pending.had_cookie.then(|| cookies::removal(config)));
    }

    let value = match &pending.identity {
        Some(id) => match storage
            .update(
                id,
                &pending.record,
                &pending.changes,
                &cx.with_version(pending.version),
            )
            .await?
        {
            Some(value) => value,
            None => {
                // The cookie names a dead id, which never loads again; removing
                // it could race a response of the same client that just set a
                // new one (a login in another tab), so it is left alone.
                tracing::debug!(
                    "session record gone (invalidated or expired elsewhere); not recreated"
                );
                return Ok(None);
            }
        },
        None => storage.create(&pending.record, &cx).await?,
    };
    let header = cookies::set_cookie(config, &value, pending.record.max_age, now);
    if header.len() > MAX_COOKIE_BYTES {
        return Err(SaveError::CookieTooLarge {
            size: header.len(),
            limit: MAX_COOKIE_BYTES,
        });
    }
    if let Some(old) = &pending.discard {
        storage.delete(old, &cx).await?;
    }
    tracing::debug!(keys = pending.record.data.len(), "session saved");
    Ok(Some(header))
}
