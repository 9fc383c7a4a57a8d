//! The builder of the layer: every setting with its documented default,
//! checked when the layer is built.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum_core::response::Response;
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderName};

use super::config::{
    Config, DEFAULT_COOKIE_NAME, DEFAULT_TOKEN_RESPONSE_HEADER, ErrorResponder, SameSite, Shared,
};
use super::service::SessionLayer;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::kind::{self, Main, SessionKind};
use crate::storage::{AnyStorage, SessionStorage};
use crate::transport::Transport;

impl SessionLayer {
    /// A layer over `storage` with the default configuration (see
    /// [`SessionLayerBuilder`]).
    ///
    /// # Panics
    ///
    /// If the storage's own settings are invalid (for example a zero TTL);
    /// [`SessionLayer::builder`] and [`SessionLayerBuilder::build`] return
    /// that as a [`ConfigError`](crate::ConfigError) instead.
    pub fn new<Kind>(storage: impl SessionStorage<Kind>) -> Self {
        Self::builder(storage)
            .build()
            .unwrap_or_else(|error| panic!("invalid session configuration: {error}"))
    }

    /// Starts configuring a layer over `storage` (of another
    /// [`SessionKind`] with [`SessionLayerBuilder::with_kind`]).
    pub fn builder<Kind>(storage: impl SessionStorage<Kind>) -> SessionLayerBuilder {
        SessionLayerBuilder::new(storage)
    }
}

/// Builds a [`SessionLayer`]; start with [`SessionLayer::builder`].
///
/// Every setting has a default, following the OWASP session management
/// cheat sheet: the cookie is `HttpOnly`, `SameSite=Lax` and `Secure`, and
/// named `__Host-session`. Chrome and Firefox keep `Secure` (and `__Host-`)
/// cookies on `http://localhost`; for plain HTTP on any other host (or in
/// Safari) call `.with_secure(false)` (development only), which also names the
/// cookie `session`. No session lives forever by default: a browser-session
/// cookie, ended by the server after 30 minutes without a request or 12
/// hours after it began ([`idle_timeout`](Self::with_idle_timeout),
/// [`absolute_timeout`](Self::with_absolute_timeout)).
///
/// An app that keeps users signed in for two weeks of inactivity, and at
/// most a month:
///
/// ```
/// use std::time::Duration;
/// use typed_sessions::{MemoryStorage, SameSite, SessionLayer};
///
/// let layer = SessionLayer::builder(MemoryStorage::new())
///     .with_cookie_name("id")
///     .with_max_age(Some(Duration::from_secs(14 * 86_400)))
///     .with_absolute_timeout(Some(Duration::from_secs(30 * 86_400)))
///     .with_same_site(SameSite::Strict)
///     .build()
///     .expect("valid session configuration");
/// ```
#[must_use = "call `.build()` to get the layer"]
pub struct SessionLayerBuilder<K: SessionKind = Main> {
    /// Whether `cookie_name` was called; otherwise the name is chosen by
    /// the other attributes at build.
    named: bool,
    storage: AnyStorage,
    config: Config,
    clock: Arc<dyn Clock>,
    error_responder: ErrorResponder,
    token_header: Option<HeaderName>,
    token_response_header: Option<HeaderName>,
    kind: PhantomData<fn() -> K>,
}

impl SessionLayerBuilder {
    /// The cookie's name unless one is given, with the default attributes
    /// (`Secure`, `Path=/`, no `Domain`): the `__Host-` prefix makes
    /// browsers refuse a cookie of this name that lacks them, so no other
    /// site of the domain (a sibling subdomain) can set or overwrite it
    /// (OWASP ASVS 4.0.3, V3.4.4).
    pub const DEFAULT_COOKIE_NAME: &'static str = DEFAULT_COOKIE_NAME;

    /// The default [`idle_timeout`](Self::with_idle_timeout): 30 minutes,
    /// OWASP's upper bound for low-risk applications and ASVS 4.0.3's level
    /// 2 re-authentication rule (V3.3.2), the same as Java servlets' and
    /// Spring's default; PHP (24 min) and ASP.NET Core (20 min) are close.
    pub const DEFAULT_IDLE_TIMEOUT: Duration =
        Duration::from_secs(crate::lifetime::DEFAULT_IDLE_TIMEOUT);

    /// The default [`absolute_timeout`](Self::with_absolute_timeout): 12 hours
    /// from a session's creation, however active it is (ASVS 4.0.3 V3.3.2,
    /// level 2). Django keeps a session two weeks from its last change and
    /// Rails' cookie store until the browser closes, with no bound on the
    /// server: both let a stolen cookie live on, which this default stops.
    pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration =
        Duration::from_secs(crate::lifetime::DEFAULT_ABSOLUTE_TIMEOUT);

    /// The max age [`Session::remember`](crate::Session::remember) gives a
    /// session on a layer of browser-session cookies (no `max_age`): two
    /// weeks, Devise's `remember_for` and Django's session age.
    pub const DEFAULT_REMEMBER_MAX_AGE: Duration =
        Duration::from_secs(crate::lifetime::DEFAULT_REMEMBER_MAX_AGE);

    pub(crate) fn new<Kind>(storage: impl SessionStorage<Kind>) -> Self {
        Self {
            named: false,
            storage: AnyStorage::new(storage),
            config: Config::default(),
            clock: Arc::new(SystemClock),
            error_responder: ErrorResponder::default(),
            token_header: None,
            token_response_header: None,
            kind: PhantomData,
        }
    }
}

impl<K: SessionKind> SessionLayerBuilder<K> {
    /// Makes the layer one of kind `L`: its sessions are extracted as
    /// `Session<L>` (and typed structs of `#[session(kind = L)]`), apart from
    /// every other kind's, and its cookie is by default the main one's name
    /// with `_` and `L::NAME` appended. See [`SessionKind`].
    pub fn with_kind<L: SessionKind>(self) -> SessionLayerBuilder<L> {
        SessionLayerBuilder {
            named: self.named,
            storage: self.storage,
            config: self.config,
            clock: self.clock,
            error_responder: self.error_responder,
            token_header: self.token_header,
            token_response_header: self.token_response_header,
            kind: PhantomData,
        }
    }

    /// The cookie's name. Default: [`DEFAULT_COOKIE_NAME`](Self::DEFAULT_COOKIE_NAME), `__Host-session`,
    /// which browsers accept only with `Secure`, `Path=/` and no `Domain`
    /// and which no other site of the domain can set; with other attributes
    /// the default is `__Secure-session` (`Secure` with a `Path` or
    /// `Domain`) or `session` (without `Secure`).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie_name = name.into();
        self.named = true;
        self
    }

    /// The cookie's `Path`. Default: `/`.
    pub fn with_cookie_path(mut self, path: impl Into<String>) -> Self {
        self.config.cookie_path = path.into();
        self
    }

    /// The cookie's `Domain`. Default: none (the cookie goes back only to
    /// the host that set it).
    pub fn with_cookie_domain(mut self, domain: Option<String>) -> Self {
        self.config.cookie_domain = domain;
        self
    }

    /// The cookie's `Secure` flag. Default: `true`.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.config.secure = secure;
        self
    }

    /// The cookie's `HttpOnly` flag. Default: `true`.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.config.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` attribute. Default: [`SameSite::Lax`].
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.config.same_site = same_site;
        self
    }

    /// The cookie's lifetime: with `Some`, sessions get a persistent cookie
    /// (`Max-Age` and `Expires`) and end this long after their last write,
    /// enforced by the server; with `None` (the default), a browser-session
    /// cookie, which the browser drops when it closes and the server ends
    /// after [`idle_timeout`](Self::with_idle_timeout). Whole seconds.
    ///
    /// It binds every session that did not choose its own max age, also the
    /// ones issued before a deploy that changed it; a handler can choose one
    /// per session with [`Session::set_max_age`](crate::Session::set_max_age)
    /// (a "remember me"), which is kept across deploys. The
    /// [`absolute_timeout`](Self::with_absolute_timeout) still ends a session, but
    /// never before its max age.
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.config.lifetimes.max_age = max_age.map(|age| age.as_secs());
        self
    }

    /// How long a browser-session session may go unused before the server
    /// ends it. Default: 30 minutes ([`DEFAULT_IDLE_TIMEOUT`](SessionLayerBuilder::DEFAULT_IDLE_TIMEOUT)), OWASP's bound
    /// for low-risk applications and ASVS 4.0.3's level 2 (V3.3.2). A
    /// session read after more than half of it is written again (its times
    /// only), so it ends only after this long without a request, and each
    /// costs at most one write per half of it. `None` keeps idle sessions
    /// until the absolute timeout (server-side stores still drop records
    /// after their own default TTL).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.lifetimes.idle_timeout = timeout.map(|timeout| timeout.as_secs());
        self
    }

    /// A limit on a session's whole life, counted from its creation, however
    /// active it is; a session that chose a longer max age of its own lives
    /// that long. Default: 12 hours ([`DEFAULT_ABSOLUTE_TIMEOUT`](SessionLayerBuilder::DEFAULT_ABSOLUTE_TIMEOUT), ASVS 4.0.3
    /// V3.3.2 level 2). `None` lets an active session live forever: an
    /// explicit choice, since a stolen cookie would too.
    pub fn with_absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.lifetimes.absolute_timeout = timeout.map(|timeout| timeout.as_secs());
        self
    }

    /// When a read counts as activity and writes the session's times: past
    /// half of its idle limit (the default), on every request, or never
    /// (only changes write). See [`Refresh`](crate::Refresh) for what each
    /// costs.
    pub fn with_refresh(mut self, refresh: crate::Refresh) -> Self {
        self.config.lifetimes.refresh = refresh;
        self
    }

    /// How the session's id travels: a cookie (the default), a request and
    /// response header for API and mobile clients, or both (see
    /// [`Transport`]). With headers, a request sends its token as
    /// `Authorization: Bearer <token>` (kinds other than the main one:
    /// `Session-Token-<name>: <token>`), and a new or renewed session's
    /// token comes back in `Session-Token` (`Session-Token-<name>`), an
    /// ended one's empty; `Vary` names the header. Header tokens are the
    /// same ids as cookies (256 bits from a CSPRNG, never adopted from a
    /// client), so only server-side storages take them: with a cookie
    /// storage, [`build`](Self::build) fails.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The request header tokens come in. Default: `Authorization` (a
    /// `Bearer` token) for the main kind, `Session-Token-<name>` for
    /// others. Any other header carries the token as its whole value.
    pub fn with_token_header(mut self, name: HeaderName) -> Self {
        self.token_header = Some(name);
        self
    }

    /// The response header a new, renewed or ended session's token goes
    /// out in. Default: `Session-Token` (`Session-Token-<name>` for kinds
    /// other than the main one).
    pub fn with_token_response_header(mut self, name: HeaderName) -> Self {
        self.token_response_header = Some(name);
        self
    }

    /// Whether a changed session is saved when the handler answers 5xx.
    /// Default: `false` (a failed request does not half-apply its changes).
    /// Sessions are always saved on 2xx, 3xx and 4xx.
    pub fn with_save_on_server_error(mut self, save: bool) -> Self {
        self.config.save_on_server_error = save;
        self
    }

    /// Whether a response that sets the session cookie is marked
    /// `Cache-Control: private`, so that no shared cache (a CDN, a proxy)
    /// stores one visitor's `Set-Cookie` and replays it to the next. A
    /// `no-store` or `private` the handler set is kept as it is; `public`
    /// and `s-maxage` are dropped from such a response. Default: `true`;
    /// turn it off only if you set `Cache-Control` on those responses
    /// yourself.
    pub fn with_private_responses(mut self, private: bool) -> Self {
        self.config.private_responses = private;
        self
    }

    /// Lets a layer over a cookie storage end a user's sessions:
    /// [`UserSessions::revoke`](crate::UserSessions::revoke) counts a
    /// revocation of the user in `revocations`, and a cookie bound to the
    /// user before it never opens again (see [`Revocations`](crate::Revocations)).
    /// Without it a cookie layer's `revoke` answers
    /// [`StorageError::Unsupported`](crate::StorageError::Unsupported).
    /// Server-side storages end sessions by their own index instead (or,
    /// on Memcached, by their own counts): building a layer over one with
    /// this refuses.
    pub fn with_revocations(mut self, revocations: crate::Revocations) -> Self {
        self.config.revocations = Some(revocations);
        self
    }

    /// The clock that expiry reads. Default: [`SystemClock`]; tests use a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How a failed load or save is answered: a function or closure given
    /// the status (503 or 500) and a public one-line message. Default: a
    /// `text/plain` body with the message.
    ///
    /// ```
    /// use axum::response::IntoResponse;
    /// use typed_sessions::{MemoryStorage, SessionLayer};
    ///
    /// let support = "https://status.example.com";
    /// let layer = SessionLayer::builder(MemoryStorage::new())
    ///     .with_error_responder(move |status, message| {
    ///         (status, format!("{message} (see {support})")).into_response()
    ///     })
    ///     .build()
    ///     .expect("valid session configuration");
    /// ```
    pub fn with_error_responder(
        mut self,
        respond: impl Fn(StatusCode, &str) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.error_responder = ErrorResponder::new(respond);
        self
    }

    /// Checks the configuration, the storage's included, and builds the
    /// layer.
    pub fn build(mut self) -> Result<SessionLayer<K>, ConfigError> {
        let main = kind::is_main::<K>();
        self.config.kind = (!main).then_some(K::NAME);
        if !self.named {
            let name = self.config.default_cookie_name();
            self.config.cookie_name = if main {
                name.to_owned()
            } else {
                format!("{name}_{}", K::NAME)
            };
        }
        let kind_header = || {
            HeaderName::try_from(format!("{DEFAULT_TOKEN_RESPONSE_HEADER}-{}", K::NAME))
                .map_err(|_| ConfigError::CookieName(K::NAME.to_owned()))
        };
        self.config.token_header = match self.token_header {
            Some(name) => name,
            None if main => AUTHORIZATION,
            None => kind_header()?,
        };
        self.config.token_response_header = match self.token_response_header {
            Some(name) => name,
            None if main => HeaderName::from_static(DEFAULT_TOKEN_RESPONSE_HEADER),
            None => kind_header()?,
        };
        if self.config.transport != Transport::Cookie && !self.storage.is_server_side() {
            return Err(ConfigError::TokensNeedServerStorage);
        }
        if self.config.revocations.is_some() && self.storage.is_server_side() {
            return Err(ConfigError::StorageSetting {
                setting: "revocations",
                problem: "a server-side storage ends a user's sessions by its own index (or, on \
                          Memcached, its own counts); `with_revocations` is for cookie storages"
                    .to_owned(),
            });
        }
        self.config.validate()?;
        self.storage.validate()?;
        Ok(SessionLayer::from_shared(Shared {
            storage: self.storage,
            config: self.config,
            clock: self.clock,
            error_responder: self.error_responder,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut config = Config::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn defaults_are_valid_and_follow_owasp() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert!(config.secure && config.http_only);
        assert_eq!(config.same_site, SameSite::Lax);
        assert_eq!(config.cookie_name, "__Host-session");
    }

    #[test]
    fn the_default_name_takes_the_strongest_prefix_the_attributes_allow() {
        let name = |builder: SessionLayerBuilder| builder.build().unwrap().cookie_name().to_owned();
        let builder = || SessionLayer::builder(crate::MemoryStorage::new());
        assert_eq!(name(builder()), "__Host-session");
        assert_eq!(name(builder().with_cookie_path("/app")), "__Secure-session");
        assert_eq!(
            name(builder().with_cookie_domain(Some("example.com".into()))),
            "__Secure-session"
        );
        assert_eq!(name(builder().with_secure(false)), "session");
        assert_eq!(
            name(builder().with_secure(false).with_cookie_name("id")),
            "id"
        );
        assert!(
            builder()
                .with_cookie_name("__Host-id")
                .with_cookie_path("/app")
                .build()
                .is_err(),
            "a name given is kept, and checked"
        );
    }

    #[test]
    fn invalid_configurations_are_refused() {
        assert_eq!(
            check(|c| {
                c.same_site = SameSite::None;
                c.secure = false;
            }),
            Err(ConfigError::SameSiteNoneWithoutSecure)
        );
        assert!(matches!(
            check(|c| {
                c.cookie_name = "__Host-id".into();
                c.cookie_domain = Some("example.com".into());
            }),
            Err(ConfigError::CookiePrefix { .. })
        ));
        assert!(matches!(
            check(|c| {
                c.cookie_name = "__Secure-id".into();
                c.secure = false;
            }),
            Err(ConfigError::CookiePrefix { .. })
        ));
        for name in ["", "a b", "a;b", "a=b", "é"] {
            assert!(
                matches!(
                    check(|c| c.cookie_name = name.into()),
                    Err(ConfigError::CookieName(_))
                ),
                "{name:?}"
            );
        }
        assert!(check(|c| c.cookie_path = "/a;b".into()).is_err());
        assert!(check(|c| c.lifetimes.max_age = Some(0)).is_err());
        assert!(check(|c| c.lifetimes.idle_timeout = Some(0)).is_err());
        assert!(check(|c| c.lifetimes.absolute_timeout = Some(0)).is_err());
        assert!(check(|c| c.cookie_name = "__Host-id".into()).is_ok());
        assert!(
            matches!(
                check(|c| {
                    c.cookie_name = "__host-id".into();
                    c.cookie_path = "/app".into();
                }),
                Err(ConfigError::CookiePrefix { .. })
            ),
            "browsers read prefixes in any case"
        );
    }

    #[test]
    fn storage_settings_are_checked_when_the_layer_is_built() {
        let storage = crate::MemoryStorage::new().with_default_ttl(Duration::ZERO);
        assert_eq!(
            SessionLayer::builder(storage).build().err(),
            Some(ConfigError::ZeroDuration("the memory store's default TTL"))
        );
        let storage = crate::MemoryStorage::new().with_default_ttl(Duration::from_secs(1));
        assert!(SessionLayer::builder(storage).build().is_ok());
    }

    #[test]
    fn same_site_parses_any_case() {
        assert_eq!("strict".parse(), Ok(SameSite::Strict));
        assert_eq!("None".parse(), Ok(SameSite::None));
        assert!("sometimes".parse::<SameSite>().is_err());
    }
}
