//! The `Session` extractor and its rejection.

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::config::ErrorResponder;
use crate::error::LoadError;
use crate::session::Session;
use crate::slot::SessionSlot;

/// Why a handler could not get its session.
pub struct SessionRejection {
    kind: RejectionKind,
}

enum RejectionKind {
    MissingLayer,
    Load {
        error: LoadError,
        responder: ErrorResponder,
    },
}

impl SessionRejection {
    /// 500 when the layer is missing (a bug in the app), 503 when the
    /// storage failed.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            RejectionKind::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            RejectionKind::Load { error, .. } => error.status(),
        }
    }

    /// The storage error behind a failed load, if that is what happened.
    pub fn load_error(&self) -> Option<&LoadError> {
        match &self.kind {
            RejectionKind::Load { error, .. } => Some(error),
            RejectionKind::MissingLayer => None,
        }
    }
}

const MISSING_LAYER: &str = "session layer not installed: add `SessionLayer` to the router \
                             (`Router::layer(SessionLayer::new(storage))`) around the routes \
                             that extract the session";

impl fmt::Debug for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RejectionKind::MissingLayer => f.write_str("SessionRejection::MissingLayer"),
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
            RejectionKind::MissingLayer => f.write_str(MISSING_LAYER),
            RejectionKind::Load { error, .. } => fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RejectionKind::MissingLayer => None,
            RejectionKind::Load { error, .. } => Some(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        match self.kind {
            RejectionKind::MissingLayer => (status, MISSING_LAYER).into_response(),
            RejectionKind::Load { responder, .. } => responder.respond(status),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(slot) = parts.extensions.get::<SessionSlot>() else {
            tracing::error!("{MISSING_LAYER}");
            return Err(SessionRejection {
                kind: RejectionKind::MissingLayer,
            });
        };
        slot.session(&parts.headers)
            .await
            .map_err(|error| SessionRejection {
                kind: RejectionKind::Load {
                    error,
                    responder: slot.shared().error_responder.clone(),
                },
            })
    }
}
