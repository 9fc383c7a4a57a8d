//! The per-request handle: the layer puts one in every request, the first
//! extractor loads the session through it, and the layer reads it back
//! after the handler to save what changed.

use std::sync::{Arc, OnceLock};

use http::HeaderMap;

use crate::cookies::{self, MAX_COOKIE_BYTES};
use crate::error::LoadError;
use crate::middleware::Shared;
use crate::record::{Changes, SessionRecord};
use crate::session::{Session, State};
use crate::storage::{SessionStorage, StorageContext};

#[derive(Clone)]
pub(crate) struct SessionSlot(Arc<SlotInner>);

struct SlotInner {
    shared: Arc<Shared>,
    session: OnceLock<Session>,
}

impl SessionSlot {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self(Arc::new(SlotInner {
            shared,
            session: OnceLock::new(),
        }))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0.shared
    }

    /// The request's session, loaded on first use. A failed load is not
    /// kept, so a later extraction in the same request tries again.
    /// Extractors of one request run one after another, so a second load
    /// racing the first cannot happen in practice; if it did, the first
    /// session stored wins and both extractors share it.
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Result<Session, LoadError> {
        if let Some(session) = self.0.session.get() {
            return Ok(session.clone());
        }
        let session = load(&self.0.shared, headers).await?;
        Ok(self.0.session.get_or_init(|| session).clone())
    }

    /// The session, if a handler loaded it.
    pub(crate) fn loaded(&self) -> Option<&Session> {
        self.0.session.get()
    }
}

async fn load(shared: &Shared, headers: &HeaderMap) -> Result<Session, LoadError> {
    let config = &shared.config;
    let now = shared.clock.now();
    let cookie = cookies::find(headers, &config.cookie_name);
    let loaded = match cookie {
        Some(value) if value.len() > MAX_COOKIE_BYTES => {
            tracing::warn!(
                bytes = value.len(),
                "session cookie over 4096 bytes ignored; starting a new session"
            );
            None
        }
        Some(value) if !value.is_empty() => {
            let cx = StorageContext::new(&config.cookie_name, now);
            shared.storage.load(value, &cx).await.inspect_err(|error| {
                tracing::error!(error = %crate::error::chain(error), "session load failed");
            })?
        }
        _ => None,
    };
    let loaded = loaded.filter(|loaded| {
        let expired = loaded.record.is_expired(now, config.absolute_timeout);
        if expired {
            tracing::debug!("session expired; starting a new session");
        }
        !expired
    });
    let state = match loaded {
        Some(loaded) => {
            tracing::debug!(keys = loaded.record.data.len(), "session loaded");
            let resend_cookie = loaded.extended && loaded.record.max_age.is_some();
            State {
                resend_cookie,
                record: loaded.record,
                identity: loaded.identity,
                version: loaded.version,
                is_new: false,
                ..State::new(now, config.max_age, cookie.is_some())
            }
        }
        None => State::new(now, config.max_age, cookie.is_some()),
    };
    Ok(Session::from_state(state))
}

impl State {
    /// A new empty session at `now`.
    fn new(now: u64, default_max_age: Option<u64>, had_cookie: bool) -> Self {
        Self {
            record: SessionRecord::new(now, default_max_age),
            identity: None,
            version: None,
            is_new: true,
            changes: Changes::default(),
            must_save: false,
            discard: None,
            had_cookie,
            resend_cookie: false,
            now,
            default_max_age,
            typed_max_age: None,
        }
    }
}
