//! The `Session` extractor and its rejection.

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::error::LoadError;
use crate::kind::{Main, SessionKind};
use crate::layer::config::ErrorResponder;
use crate::layer::slot::KindSlot;
use crate::session::Session;

/// Why a handler could not get its session.
pub struct SessionRejection {
    kind: RejectionKind,
}

enum RejectionKind {
    /// No layer of this session kind (its name) wraps the route.
    MissingLayer(&'static str),
    Load {
        error: LoadError,
        responder: ErrorResponder,
    },
}

impl SessionRejection {
    /// No layer of kind `K` wraps the route; logged once here.
    pub(crate) fn missing_layer<K: SessionKind>() -> Self {
        tracing::error!("{}", missing_layer(K::NAME));
        Self {
            kind: RejectionKind::MissingLayer(K::NAME),
        }
    }

    /// 500 when the layer is missing (a bug in the app), 503 when the
    /// storage failed.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            RejectionKind::MissingLayer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RejectionKind::Load { error, .. } => error.status(),
        }
    }

    /// The storage error behind a failed load, if that is what happened.
    pub fn load_error(&self) -> Option<&LoadError> {
        match &self.kind {
            RejectionKind::Load { error, .. } => Some(error),
            RejectionKind::MissingLayer(_) => None,
        }
    }
}

/// What a handler's author is told when no layer of the kind `kind` wraps
/// the route.
fn missing_layer(kind: &str) -> String {
    if kind == Main::NAME {
        MISSING_LAYER.to_owned()
    } else {
        format!(
            "session layer of kind `{kind}` not installed: add \
             `SessionLayer::builder(storage).with_kind::<{kind}>().build()` (the kind's marker type) \
             to the router around the routes that extract its session"
        )
    }
}

const MISSING_LAYER: &str = "session layer not installed: add `SessionLayer` to the router \
                             (`Router::layer(SessionLayer::new(storage))`) around the routes \
                             that extract the session";

impl fmt::Debug for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RejectionKind::MissingLayer(kind) => {
                write!(f, "SessionRejection::MissingLayer({kind:?})")
            }
            RejectionKind::Load { error, .. } => f
                .debug_tuple("SessionRejection::Load")
                .field(error)
                .finish(),
        }
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RejectionKind::MissingLayer(kind) => f.write_str(&missing_layer(kind)),
            RejectionKind::Load { error, .. } => fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RejectionKind::MissingLayer(_) => None,
            RejectionKind::Load { error, .. } => Some(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        match self.kind {
            RejectionKind::MissingLayer(kind) => (status, missing_layer(kind)).into_response(),
            RejectionKind::Load { responder, .. } => responder.respond(status),
        }
    }
}

impl<S: Send + Sync, K: SessionKind> FromRequestParts<S> for Session<K> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(KindSlot(slot, _)) = parts.extensions.get::<KindSlot<K>>() else {
            return Err(SessionRejection::missing_layer::<K>());
        };
        slot.session(&parts.headers)
            .await
            .map(Session::into_kind)
            .map_err(|error| SessionRejection {
                kind: RejectionKind::Load {
                    error,
                    responder: slot.shared().error_responder.clone(),
                },
            })
    }
}
