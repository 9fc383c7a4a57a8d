//! The per-request handle: the layer puts one in every request, the first
//! extractor loads the session through it, and the layer reads it back
//! after the handler to save what changed.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use tracing::Instrument as _;

use super::config::{Config, Shared};
use super::cookies::{self, MAX_COOKIE_BYTES};
use crate::error::LoadError;
use crate::session::{Found, RequestFacts, Session};
use crate::storage::{StorageContext, StorageRef};
use crate::transport::{self, Via};

#[derive(Clone)]
pub(crate) struct SessionSlot(Arc<SlotInner>);

/// The slot of the layer of kind `K`, as the request's extensions hold it:
/// one per kind, so each kind's extractor finds its own layer's.
pub(crate) struct KindSlot<K>(pub(crate) SessionSlot, pub(crate) PhantomData<fn() -> K>);

impl<K> Clone for KindSlot<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

struct SlotInner {
    shared: Arc<Shared>,
    session: OnceLock<Session>,
    /// The span of this request's session work, made at the first load so
    /// that requests which never touch the session pay nothing for it.
    span: OnceLock<tracing::Span>,
}

impl SessionSlot {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self(Arc::new(SlotInner {
            shared,
            session: OnceLock::new(),
            span: OnceLock::new(),
        }))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0.shared
    }

    /// The span the load ran in, for the save to run in too.
    pub(crate) fn span(&self) -> tracing::Span {
        self.0
            .span
            .get()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
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
        let span = self.0.span.get_or_init(|| {
            tracing::debug_span!(
                "session",
                id = tracing::field::Empty,
                new = tracing::field::Empty
            )
        });
        let session = load(&self.0.shared, headers).instrument(span.clone()).await;
        let labels = self.0.shared.labels();
        let session = match session {
            Ok(session) => {
                let outcome = if session.is_new() { "new" } else { "found" };
                crate::metrics::loaded(labels, outcome);
                session
            }
            Err(error) => {
                crate::metrics::loaded(labels, "error");
                return Err(error);
            }
        };
        if !span.is_disabled() {
            if let Some(id) = session.identity() {
                span.record("id", id.fingerprint());
            }
            span.record("new", session.is_new());
        }
        Ok(self.0.session.get_or_init(|| session).clone())
    }

    /// The session, if a handler loaded it.
    pub(crate) fn loaded(&self) -> Option<&Session> {
        self.0.session.get()
    }
}

/// Reads the cookie and loads what it names; anything that does not open,
/// names nothing live or has expired gives a new empty session.
async fn load(shared: &Shared, headers: &HeaderMap) -> Result<Session, LoadError> {
    let config = &shared.config;
    let now = shared.clock.now();
    let credential = credential(config, headers);
    let cookie = credential.map(|(_, value)| value);
    let facts = RequestFacts {
        now,
        lifetimes: config.lifetimes,
        kind: config.kind,
        came_via: credential.map(|(via, _)| via),
    };
    let found = match cookie {
        Some(value) if value.len() > MAX_COOKIE_BYTES => {
            crate::throttle::throttled_warn!(
                bytes = value.len(),
                "session cookie over 4096 bytes ignored; starting a new session"
            );
            None
        }
        Some(value) if !value.is_empty() => {
            let cx = StorageContext::new(&config.cookie_name, now);
            find(shared, value, &cx).await.inspect_err(|error| {
                tracing::error!(error = %crate::error::chain(error), "session load failed");
            })?
        }
        _ => None,
    };
    let found = found.filter(|found| {
        if found.record.kind.as_deref() != config.kind {
            crate::throttle::throttled_warn!(
                "session cookie names a session of another kind; starting a new session"
            );
            return false;
        }
        if found.record.is_from_the_future(now) {
            crate::throttle::throttled_warn!(
                ahead = found.record.updated.max(found.record.created) - now,
                "session written in the future (seconds ahead of this server's clock): \
                 refused; check the servers' clocks"
            );
            return false;
        }
        let record = &found.record;
        let ended = config.lifetimes.has_ended(record.times(), now);
        if ended {
            tracing::debug!("session expired; starting a new session");
        }
        !ended
    });
    let found = match (found, &config.revocations) {
        (Some(found), Some(revocations)) => not_revoked(found, revocations, config).await?,
        (found, _) => found,
    };
    Ok(match found {
        Some(found) => {
            tracing::debug!(keys = found.record.data.len(), "session loaded");
            Session::found(found, facts)
        }
        None => Session::new_empty(facts),
    })
}

/// The session, unless it is bound to a user whose sessions were revoked
/// after it was bound (see [`Revocations`](crate::Revocations)): its mark
/// is not the user's. A session bound before the layer kept marks counts
/// as bound at 0, and keeps that from now on, so a save after a revocation
/// cannot give it the new mark.
async fn not_revoked(
    mut found: Found,
    revocations: &crate::Revocations,
    config: &Config,
) -> Result<Option<Found>, LoadError> {
    let Some(user) = &found.record.user else {
        return Ok(Some(found));
    };
    let mark = revocations
        .count(&crate::kind::user_scope(config.kind, user))
        .await?;
    Ok((!found.record.is_revoked_at(mark)).then_some(found))
}

/// The request's session id (or sealed session) and how it came: a token
/// header first, where the transport reads them, then the cookie.
fn credential<'h>(config: &Config, headers: &'h HeaderMap) -> Option<(Via, &'h str)> {
    if config.transport.reads_headers()
        && let Some(token) = transport::token(headers, &config.token_header)
    {
        return Some((Via::Header, token));
    }
    if config.transport.reads_cookies() {
        return cookies::find(headers, &config.cookie_name).map(|value| (Via::Cookie, value));
    }
    None
}

/// What the storage holds for a non-empty cookie value.
async fn find(
    shared: &Shared,
    value: &str,
    cx: &StorageContext<'_>,
) -> Result<Option<Found>, LoadError> {
    Ok(match shared.storage.kind() {
        StorageRef::Cookie(storage) => storage.open(value, cx).map(|record| Found {
            record,
            identity: None,
            version: None,
            extended: false,
            renew: false,
        }),
        StorageRef::Server(storage) => {
            let Some(id) = storage.parse_id(value) else {
                tracing::debug!("session cookie is not an id; starting a new session");
                return Ok(None);
            };
            let started = crate::metrics::Started::now();
            let loaded = storage.load(&id, cx).await;
            crate::metrics::store_call(shared.labels(), "load", started, &loaded);
            loaded?.map(|loaded| Found {
                record: loaded.record,
                identity: Some(id),
                version: loaded.version,
                extended: loaded.extended,
                renew: loaded.renew,
            })
        }
    })
}
