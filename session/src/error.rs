//! What can go wrong with a session, one error type per operation.
//!
//! Responses stay opaque (a status and a one-line public message); logs get
//! the whole `source()` chain.

use std::time::Duration;

use http::StatusCode;

/// The error type of a storage's sources (a client's I/O or protocol error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store could not be reached or answered with an error.
    #[error("session store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store did not answer in time.
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
    /// The session is larger than the store accepts; it was not sent.
    #[error("session record is {size} bytes, over the store's limit of {limit} bytes")]
    TooLarge {
        /// The record's size in bytes.
        size: usize,
        /// The largest record the store accepts.
        limit: usize,
    },
    /// The session could not be serialized.
    #[error("session could not be serialized")]
    Serialize(#[source] serde_json::Error),
    /// The session could not be encrypted.
    #[error("session could not be encrypted")]
    Encrypt,
    /// The session holds something this store cannot keep; nothing was
    /// sent. The text says what and what to do instead.
    #[error("session cannot be kept in this store: {0}")]
    Unrepresentable(&'static str),
    /// The storage was given a configuration it cannot work with (from
    /// its constructor, such as a URL that does not parse).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A user id or session handle that names no session any store could
    /// hold (empty, over-long, with a NUL); refused before it reaches the
    /// store. The text says what is wrong with it.
    #[error("invalid {0}")]
    InvalidArgument(&'static str),
    /// The storage cannot do what was asked (a cookie storage listing a
    /// user's sessions, Memcached revoking them).
    #[error("{0} is not something this session storage can do")]
    Unsupported(&'static str),
}

impl StorageError {
    /// Wraps a client error as [`StorageError::Unavailable`].
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable(source.into())
    }

    /// The status a request gets when this error stops it: 503 for a store
    /// that is down or slow (the client may retry), 500 for a session that
    /// can never be stored.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) | Self::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge { .. }
            | Self::Serialize(_)
            | Self::Encrypt
            | Self::Unrepresentable(_)
            | Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Self::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The session could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("could not load the session")]
pub struct LoadError(#[from] pub StorageError);

impl LoadError {
    /// The status the request gets: see [`StorageError::status`].
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }
}

/// The session could not be saved after the handler. Nothing was written
/// half-way and no cookie was set; the client keeps its previous cookie.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The storage failed.
    #[error("could not save the session")]
    Storage(#[from] StorageError),
    /// The `Set-Cookie` header would exceed what browsers keep.
    #[error(
        "the session cookie would be {size} bytes, over the {limit}-byte limit browsers keep; \
         store less in the session or use a server-side storage"
    )]
    CookieTooLarge {
        /// The size of the cookie (name, value and attributes) in bytes.
        size: usize,
        /// The limit, 4096 bytes.
        limit: usize,
    },
    /// A value nests arrays and objects deeper than the session formats
    /// read back; nothing was saved.
    #[error(
        "the session value at {key:?} nests deeper than {limit} levels of arrays and objects, \
         more than a stored session can be read back with; store it flatter"
    )]
    ValueTooDeep {
        /// The key of the value.
        key: String,
        /// The deepest nesting allowed, [`MAX_VALUE_DEPTH`](crate::storage::MAX_VALUE_DEPTH).
        limit: usize,
    },
    /// A value the handler wrote through a typed accessor or
    /// [`Flash::push`](crate::Flash::push) could not be serialized to JSON;
    /// nothing was saved and the cookie was left as it was.
    #[error(
        "the value written to session key {key:?} (a `{type_name}`) cannot be serialized to \
         JSON, so the session was not saved; JSON objects need string keys"
    )]
    Unserializable {
        /// The session key of the write.
        key: String,
        /// The Rust type of the value.
        type_name: &'static str,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The handler bound the session to a user id no store can hold
    /// (empty, over 1024 bytes, with a NUL); nothing was saved.
    #[error("the session was not bound: invalid {0}")]
    InvalidUser(&'static str),
    /// The session is larger than any server-side store is given; nothing
    /// was sent.
    #[error(
        "the session would be {size} bytes as JSON, over the {limit}-byte limit of every \
         server-side store; store less in the session"
    )]
    SessionTooLarge {
        /// The size of the session's record as JSON, in bytes.
        size: usize,
        /// The limit, [`MAX_RECORD_BYTES`](crate::storage::MAX_RECORD_BYTES).
        limit: usize,
    },
}

impl SaveError {
    /// The status the response gets instead of the handler's.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Storage(error) => error.status(),
            Self::CookieTooLarge { .. }
            | Self::ValueTooDeep { .. }
            | Self::Unserializable { .. }
            | Self::InvalidUser(_)
            | Self::SessionTooLarge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Invalid configuration, found when the layer is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or has characters a cookie name cannot have.
    #[error("invalid session cookie name {0:?}: use letters, digits and !#$%&'*+-.^_`|~")]
    CookieName(String),
    /// A cookie attribute has characters a cookie attribute cannot have.
    #[error(
        "invalid session cookie {attribute} {value:?}: control characters and ';' are not allowed"
    )]
    CookieAttribute {
        /// `path` or `domain`.
        attribute: &'static str,
        /// The rejected value.
        value: String,
    },
    /// `SameSite=None` without `Secure` is refused by browsers.
    #[error(
        "SameSite=None requires the Secure attribute: call `.with_secure(true)` or choose Lax or Strict"
    )]
    SameSiteNoneWithoutSecure,
    /// A `__Host-` or `__Secure-` cookie name with attributes the prefix forbids.
    #[error("a cookie named {name:?} requires {requirement}")]
    CookiePrefix {
        /// The cookie name.
        name: String,
        /// What the prefix requires.
        requirement: &'static str,
    },
    /// Header tokens with a cookie storage, whose sealed payload is not a
    /// bearer token.
    #[error(
        "header transport needs a server-side storage (memory, Redis, Memcached): a cookie \
         storage's sealed session is not a token to hand an API client; keep `Transport::Cookie` \
         or change the storage"
    )]
    TokensNeedServerStorage,
    /// A zero duration where a positive one is needed.
    #[error("{0} must be at least one second")]
    ZeroDuration(&'static str),
    /// A storage setting the storage cannot work with.
    #[error("invalid {setting}: {problem}")]
    StorageSetting {
        /// Which setting.
        setting: &'static str,
        /// What is wrong with it, and what to give instead.
        problem: String,
    },
}

/// The one line a client is told when its session could not be loaded or
/// saved; the details go to the logs only.
pub(crate) fn public_message(status: StatusCode) -> &'static str {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        "session storage is unavailable, please try again"
    } else {
        "the session could not be saved"
    }
}

/// `error: source: source…`, for one log line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
