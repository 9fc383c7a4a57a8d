//! The configuration the layer runs with, checked when it is built rather
//! than at the first request, and what every request's handle shares.

use std::str::FromStr;
use std::sync::Arc;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderName};

use crate::clock::Clock;
use crate::error::ConfigError;
use crate::lifetime::Lifetimes;
use crate::storage::AnyStorage;
use crate::transport::Transport;

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only with requests from the same site.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    Lax,
    /// Sent with every request; requires `Secure`.
    None,
}

impl FromStr for SameSite {
    type Err = String;

    /// Parses `Strict`, `Lax` or `None`, ignoring case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "invalid SameSite value {text:?}: use Strict, Lax or None"
            )),
        }
    }
}

/// Builds the response a request gets when its session cannot be loaded or
/// saved, from the status (503 or 500) and a public one-line message. The
/// details go to the logs, never to the client.
///
/// Made from any `Fn(StatusCode, &str) -> Response` (a function or a
/// closure that carries state) by [`SessionLayerBuilder::with_error_responder`].
#[derive(Clone)]
pub(crate) struct ErrorResponder(Arc<Respond>);

type Respond = dyn Fn(StatusCode, &str) -> Response + Send + Sync;

impl ErrorResponder {
    /// A responder from a function or closure.
    pub(crate) fn new(
        respond: impl Fn(StatusCode, &str) -> Response + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(respond))
    }

    /// The response for a failure with `status`, and the one public line
    /// that goes with it.
    pub(crate) fn respond(&self, status: StatusCode) -> Response {
        (self.0)(status, crate::error::public_message(status))
    }
}

impl Default for ErrorResponder {
    /// A `text/plain` body with the public message.
    fn default() -> Self {
        Self::new(|status, message| (status, message.to_owned()).into_response())
    }
}

impl std::fmt::Debug for ErrorResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorResponder")
    }
}

/// What every request's session handle shares: the storage and the
/// configuration the layer was built with.
///
/// Aligned so that it starts on a cache line after the `Arc`'s counts,
/// which every request changes from whichever core it runs on: reading the
/// configuration never touches their line.
#[repr(align(128))]
pub(crate) struct Shared {
    pub(crate) storage: AnyStorage,
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) error_responder: ErrorResponder,
}

impl Shared {
    /// The labels of this layer's metrics.
    pub(crate) fn labels(&self) -> crate::metrics::Labels {
        crate::metrics::Labels {
            storage: self.storage.name(),
            kind: self
                .config
                .kind
                .unwrap_or(<crate::kind::Main as crate::kind::SessionKind>::NAME),
        }
    }
}

/// The cookie's name unless one is given, with the defaults' attributes
/// (`Secure`, `Path=/`, no `Domain`): the `__Host-` prefix makes browsers
/// refuse a cookie of this name that lacks them, so no other site of the
/// domain (a sibling subdomain) can set or overwrite it (OWASP ASVS 4.0.3,
/// V3.4.4).
pub(crate) const DEFAULT_COOKIE_NAME: &str = "__Host-session";

impl Config {
    /// The name a layer with these attributes gets when none is given: the
    /// strongest prefix they allow.
    pub(crate) fn default_cookie_name(&self) -> &'static str {
        match (
            self.secure,
            self.cookie_path == "/" && self.cookie_domain.is_none(),
        ) {
            (true, true) => DEFAULT_COOKIE_NAME,
            (true, false) => "__Secure-session",
            (false, _) => "session",
        }
    }
}

/// The validated configuration the layer runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cookie_name: String,
    pub(crate) cookie_path: String,
    pub(crate) cookie_domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) lifetimes: Lifetimes,
    /// The layer's session kind, `None` for [`Main`].
    pub(crate) kind: Option<&'static str>,
    pub(crate) transport: Transport,
    /// The request header a token comes in (`Authorization`: a bearer
    /// token).
    pub(crate) token_header: HeaderName,
    /// The response header a new or ended session's token goes out in.
    pub(crate) token_response_header: HeaderName,
    pub(crate) save_on_server_error: bool,
    pub(crate) private_responses: bool,
    /// Where a cookie layer counts its users' revocations, if anywhere.
    pub(crate) revocations: Option<crate::Revocations>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            cookie_path: "/".to_owned(),
            cookie_domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            lifetimes: Lifetimes::default(),
            kind: None,
            transport: Transport::Cookie,
            token_header: AUTHORIZATION,
            token_response_header: HeaderName::from_static(DEFAULT_TOKEN_RESPONSE_HEADER),
            save_on_server_error: false,
            private_responses: true,
            revocations: None,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cookie_name;
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token_char) {
            return Err(ConfigError::CookieName(name.clone()));
        }
        let attribute_ok = |value: &str| !value.bytes().any(|b| b.is_ascii_control() || b == b';');
        if !attribute_ok(&self.cookie_path) {
            return Err(ConfigError::CookieAttribute {
                attribute: "path",
                value: self.cookie_path.clone(),
            });
        }
        if let Some(domain) = self.cookie_domain.as_deref().filter(|d| !attribute_ok(d)) {
            return Err(ConfigError::CookieAttribute {
                attribute: "domain",
                value: domain.to_owned(),
            });
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        // Browsers read the prefixes without regard to case.
        let prefixed = |prefix: &str| {
            name.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Secure-") && !self.secure {
            return Err(ConfigError::CookiePrefix {
                name: name.clone(),
                requirement: "Secure",
            });
        }
        if prefixed("__Host-")
            && (!self.secure || self.cookie_path != "/" || self.cookie_domain.is_some())
        {
            return Err(ConfigError::CookiePrefix {
                name: name.clone(),
                requirement: "Secure, Path=/ and no Domain",
            });
        }
        let Lifetimes {
            max_age,
            idle_timeout,
            absolute_timeout,
            refresh: _,
        } = self.lifetimes;
        for (setting, value) in [
            ("max_age", max_age),
            ("idle_timeout", idle_timeout),
            ("absolute_timeout", absolute_timeout),
        ] {
            if value == Some(0) {
                return Err(ConfigError::ZeroDuration(setting));
            }
        }
        Ok(())
    }
}

/// The response header of tokens, by default: `Session-Token`, with the
/// kind's name appended (`Session-Token-admin`) for kinds other than the
/// main one.
pub(crate) const DEFAULT_TOKEN_RESPONSE_HEADER: &str = "session-token";
