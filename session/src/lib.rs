//! Sessions for [axum]: user-specific data kept across requests in a
//! dict-like map of JSON values, behind a tower layer, in the storage of your
//! choice. A Rust re-imagining of Python's `aiohttp_session`.
//!
//! ```
//! use axum::{Router, routing::get};
//! use typed_sessions::{MemoryStorage, Session, SessionLayer};
//!
//! async fn visit(session: Session) -> String {
//!     let last: Option<u64> = session.get("last_visit");
//!     session.insert("last_visit", 1_764_000_000u64).expect("a number serializes");
//!     format!("Last visited: {last:?}")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(visit))
//!     .layer(SessionLayer::new(MemoryStorage::new()));
//! ```
//!
//! # The life of a session
//!
//! 1. [`SessionLayer`] puts a lazy handle into every request. Nothing is
//!    read yet: a handler that never asks for the session costs no storage
//!    I/O and gets no `Set-Cookie`.
//! 2. The first [`Session`](struct@Session) extractor of the request reads the cookie and
//!    loads the session from the storage, once; further extractors in the
//!    same request share it. A missing, tampered, malformed, oversized or
//!    expired cookie gives a new empty session, never an error.
//! 3. The handler reads and writes the map with plain synchronous calls
//!    ([`Session::get`], [`Session::insert`], [`Session::remove`], …). Each
//!    write records which key changed.
//! 4. After the handler, a session that changed is saved and the response
//!    carries exactly one `Set-Cookie` (and `Vary: Cookie`). An unchanged
//!    session writes nothing. An empty session is not stored (unless it is
//!    bound to a user: the binding is data): its cookie is removed and its
//!    server-side record deleted. Sessions are saved on 2xx,
//!    3xx and 4xx answers, not on 5xx.
//!
//! # Typed sessions
//!
//! Declare the shape of some session keys once, as a struct, and get typed,
//! change-tracked accessors over the same map:
//!
//! ```
//! use typed_sessions::{Session, TypedSession};
//!
//! #[derive(Session)]
//! #[session(max_age = 1800)]
//! struct Visit {
//!     last_visit: Option<f64>,
//!     #[session(rename = "n", default)]
//!     count: u64,
//! }
//!
//! async fn handler(visit: TypedSession<Visit>) -> String {
//!     let last = visit.last_visit();               // Option<f64>
//!     visit.set_last_visit(Some(1_764_000_000.0)); // marks only "last_visit" changed
//!     *visit.count_mut() += 1;                     // marks only "n" changed
//!     format!("Last visited: {last:?}")
//! }
//! ```
//!
//! Each named field is one key of the session map. For a field `name` the
//! derive generates, on `TypedSession<T>`:
//!
//! | accessor | what it does |
//! |---|---|
//! | `name()` | reads the field; marks nothing |
//! | `set_name(value)` | stores it, marking only its key changed (`None` removes the key) |
//! | `name_mut()` | a guard to change it in place, stored back (marking only its key) when dropped |
//!
//! Each accessor is as visible as its field: a private field's accessors
//! are usable only in the struct's module, a `pub(crate)` field's in the
//! crate.
//!
//! [`TypedSession::get`] reads the whole struct, [`TypedSession::set`]
//! writes it back marking only the keys whose values differ, and
//! [`TypedSession::session`] is the dynamic map underneath.
//!
//! Missing keys: a field with `#[session(default)]` (or
//! `#[session(default = "path::to::fn")]`) reads as that default, and an
//! `Option<T>` field as `None`; the getter of any other field returns
//! `Result<T, MissingField>` (and its `_mut` accessor a `Result` too). A
//! stored value that no longer deserializes into the field's type (data
//! from an older deploy) reads as missing and logs a warning; it never fails
//! the request.
//!
//! Attributes:
//!
//! | attribute | on | meaning |
//! |---|---|---|
//! | `#[session(rename = "key")]` | field | the session key (default: the field's name) |
//! | `#[session(default)]`, `#[session(default = "path")]` | field | the value of a missing key: `Default::default()` or `path()` |
//! | `#[session(max_age = 1800)]`, `#[session(max_age = "30m")]` | struct | seconds, or a duration in `s`, `m`, `h`, `d` (`"1h30m"`): when a typed accessor writes, the session's max age becomes this; if several typed structs write in one request, the smallest wins. Exposed as [`SessionData::MAX_AGE`](typed::SessionData::MAX_AGE) |
//! | `#[session(crate = "path")]` | struct | where this crate is, if you renamed it |
//!
//! Structs must have named fields and no generic parameters; field types
//! must be `Serialize + DeserializeOwned`. Mistakes are compile errors that
//! point at the token to fix. A field may not be named like a method of
//! `TypedSession` (`get`, `set`, `session`, `invalidate`, `renew`,
//! `start_new`, `bind_user`, `from_session`): rename it and keep the key with `rename`.
//!
//! # Expiry
//!
//! Every session ends, enforced by the server: the creation and last-write
//! times travel with the session (sealed inside an encrypted cookie, or in
//! the server-side record), so a replayed old cookie opens as a new empty
//! session whatever the browser does. A session ends after its idle limit
//! without a write, or its absolute limit after its creation:
//!
//! - the idle limit is the max age the session chose
//!   ([`Session::set_max_age`], a typed struct's `max_age`), else the
//!   layer's [`max_age`](SessionLayerBuilder::with_max_age) (a persistent cookie
//!   with `Max-Age` and `Expires`), else, for a browser-session cookie, the
//!   layer's [`idle_timeout`](SessionLayerBuilder::with_idle_timeout): 30 minutes
//!   by default;
//! - the absolute limit is the layer's
//!   [`absolute_timeout`](SessionLayerBuilder::with_absolute_timeout), 12 hours by
//!   default, but never shorter than the session's max age.
//!
//! A record keeps only what the session chose ([`MaxAge`](storage::MaxAge)), so a deploy
//! that changes the layer's lifetimes binds sessions issued before it. A
//! read after more than half of the idle limit writes the session's times
//! again, so an active user is not logged out by the idle limit.
//!
//! # Storages
//!
//! | storage | where the data is | use it for |
//! |---|---|---|
//! | [`EncryptedCookieStorage`] | in the cookie, sealed with AES-256-GCM | small sessions (the cookie is limited to 4096 bytes), no server state |
//! | [`MemoryStorage`] | in this process, the cookie holds a random id; at most 100,000 records by default, one-shot sessions evicted first | one process; lost on restart |
//! | `RedisStorage` (feature `redis`) | Redis, Redis Cluster or Redis behind Sentinel, under a hash of a random id | several processes or machines |
//! | `MemcachedStorage` (feature `memcached`) | one or several Memcached servers, under a hash of a random id | several processes or machines; sessions may be evicted |
//! | `PostgresStorage` (feature `postgres`) | a PostgreSQL table, under a hash of a random id | several processes or machines, on the database the app already runs |
//! | `MySqlStorage` (feature `mysql`) | a MySQL or MariaDB table, under a hash of a random id | several processes or machines, on the database the app already runs |
//! | `SqliteStorage` (feature `sqlite`) | an SQLite database file, under a hash of a random id | one machine |
//! | [`SimpleCookieStorage`](storage::SimpleCookieStorage) | in the cookie, plain JSON | tests only: the client can read and forge it |
//! | `aiohttp::*` (feature `aiohttp-compat`) | aiohttp_session's own formats: Fernet or NaCl cookies, Redis or Memcached records | sharing sessions with an aiohttp service, and moving off it (`MIGRATING.md`) |
//!
//! For a storage of your own, implement [`CookieStorage`](storage::CookieStorage) (the session
//! sealed into the cookie) or [`ServerStorage`](storage::ServerStorage) (records kept under ids the
//! store makes), from the [`storage`] module; [`AnyStorage`](storage::AnyStorage)
//! picks one at run time.
//!
//! # Sessions in PostgreSQL
//!
//! `PostgresStorage` keeps one row per session, keyed by the hash of its
//! id, with the record as `jsonb` and an indexed `expires_at` set from the
//! database's clock. `migrate()` creates the table (the README shows its
//! SQL, for apps that run their own migrations); every operation is one
//! statement, and a save merges only the changed keys into the stored map,
//! never reviving a row that expired or was deleted. Expired rows are
//! deleted in batches by `spawn_expired_deletion(interval)` or by calls to
//! `delete_expired()`. `SqliteStorage` is the same on an SQLite file, and
//! `MySqlStorage` on MySQL or MariaDB.
//!
//! # Security
//!
//! - Server-side ids are 256 bits from a CSPRNG. A cookie value that is not
//!   an id's shape never reaches the store, and an unknown id is never
//!   adopted: the session is new and gets a new id when saved.
//! - Call [`Session::renew`] on login and every change of privilege (or
//!   [`Session::start_new`] to drop the old data too): the old id becomes
//!   worthless, which defeats session fixation.
//! - Cookies default to `HttpOnly`, `Secure` and `SameSite=Lax`, and to the
//!   name `__Host-session`, which no other site of the domain can set.
//! - Ids and keys never appear in `Debug` output or logs.
//!
//! # Concurrency
//!
//! Two concurrent requests of one session each load it and save their own
//! changes. Server-side stores merge only the keys a request set or removed,
//! so changes to different keys are both kept; for the same key the last
//! save wins. Cookie storages cannot merge: the last response's cookie wins.
//!
//! [axum]: https://docs.rs/axum

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs (see `[package.metadata.docs.rs]`) marks what each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derive names this crate `::typed_sessions`; this lets its own tests
// use the derive too.
extern crate self as typed_sessions;

pub mod clock;
mod decoders;
mod error;
mod extract;
mod flash;
mod id;
mod kind;
mod layer;
mod lifetime;
mod metrics;
#[cfg(all(doctest, feature = "aiohttp-compat", feature = "redis"))]
mod migrating;
#[cfg(all(
    doctest,
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
mod readme;
mod record;
mod revocation;
mod session;
pub mod storage;
mod throttle;
mod transport;
pub mod typed;
mod users;

pub use error::{ConfigError, LoadError, SaveError, StorageError};
pub use extract::SessionRejection;
pub use flash::Flash;
pub use kind::{Main, SessionKind};
pub use layer::{SameSite, SessionLayer, SessionLayerBuilder};
pub use lifetime::Refresh;
pub use revocation::Revocations;
pub use session::Session;
#[doc(inline)]
pub use storage::ActiveSession;
pub use storage::cookie::{EncryptedCookieStorage, EncryptionKey, KeyError};
#[cfg(feature = "memcached")]
pub use storage::memcached::MemcachedStorage;
pub use storage::memory::MemoryStorage;
#[cfg(feature = "redis")]
pub use storage::redis::RedisStorage;
#[cfg(feature = "mysql")]
pub use storage::sql::MySqlStorage;
#[cfg(feature = "postgres")]
pub use storage::sql::PostgresStorage;
#[cfg(feature = "sqlite")]
pub use storage::sql::SqliteStorage;
pub use transport::Transport;
#[doc(inline)]
pub use typed::{MissingField, TypedSession};
/// Derives typed, change-tracked access to keys of the session map; see
/// [`TypedSession`] and the crate documentation.
pub use typed_sessions_derive::Session;
pub use users::UserSessions;

/// The old name of [`EncryptionKey`]: every other "key" of this crate is a
/// key of the session map.
#[deprecated(since = "0.1.0", note = "renamed to `EncryptionKey`")]
#[doc(hidden)]
pub type SessionKey = EncryptionKey;

/// aiohttp_session's storages, to share sessions with a Python service
/// (feature `aiohttp-compat`); see `MIGRATING.md`.
#[cfg(feature = "aiohttp-compat")]
pub mod aiohttp {
    pub use crate::storage::aiohttp::*;
}

/// The tower plumbing of [`SessionLayer`]: the service it wraps a router
/// in and that service's response future, for code that names them.
pub mod service {
    pub use crate::layer::{ResponseFuture, SessionService};
}

/// The `redis` crate `RedisStorage` is built on, at exactly the version it
/// uses: name a `redis::aio::ConnectionManager` or `redis::Client` as
/// `typed_sessions::redis::…` and the types always match, whatever version
/// of `redis` your own `Cargo.toml` names (or none).
#[cfg(feature = "redis")]
pub use redis;
/// The `sqlx` crate the SQL storages are built on, at exactly the version
/// they use: build a pool for `PostgresStorage::from_pool`,
/// `MySqlStorage::from_pool` or `SqliteStorage::from_pool` as
/// `typed_sessions::sqlx::…` and the types always match.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub use sqlx;

/// What the code of `#[derive(Session)]` names and users do not: public
/// only so that the generated code reaches it. Not part of the API; it may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::kind::Main;
    pub use crate::typed::{FieldKey, FieldMut, Fields, MissingField, SessionData, SessionField};

    /// The private decoders of bytes from clients and stores, for the fuzz
    /// targets in `fuzz/` and the test that replays their corpora.
    pub mod decoders {
        pub use crate::decoders::*;
    }

    /// Moves what `storage` believes Redis' clock reads by `micros`, as a
    /// clock step on either side would: for the test that a step costs a
    /// write one more round trip, not a 503.
    #[cfg(feature = "redis")]
    pub fn step_redis_clock(storage: &crate::RedisStorage, micros: i64) {
        storage.step_clock(micros);
    }
}
