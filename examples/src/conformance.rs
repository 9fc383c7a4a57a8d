//! The conformance app: every session operation over JSON, so black-box
//! tests, load tests and benchmarks can drive the library from outside,
//! against any storage. Built with the library's public API only.

use std::collections::HashMap;
use std::env;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
#[cfg(feature = "memcached")]
use typed_sessions::MemcachedStorage;
#[cfg(feature = "mysql")]
use typed_sessions::MySqlStorage;
#[cfg(feature = "postgres")]
use typed_sessions::PostgresStorage;
#[cfg(feature = "redis")]
use typed_sessions::RedisStorage;
#[cfg(feature = "sqlite")]
use typed_sessions::SqliteStorage;
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, Flash, MemoryStorage, SameSite, Session, SessionKind,
    SessionLayer, SessionLayerBuilder, StorageError, Transport, TypedSession, UserSessions,
    clock::{Clock, SystemClock},
    storage::{AnyStorage, SimpleCookieStorage},
};

/// The kind of the app's second, independent session, served under
/// `/admin/session` with its own layer and cookie (the main cookie's name
/// with `_admin` appended).
pub struct Admin;

impl SessionKind for Admin {
    const NAME: &'static str = "admin";
}

/// The typed view of `/typed`: the keys `user` and `visits` of the same
/// session map the dynamic routes change.
#[derive(Session)]
pub struct Profile {
    /// The signed-in user, if any.
    pub user: Option<String>,
    /// How many times `/typed/visit` was called.
    #[session(default)]
    pub visits: u64,
}

/// Where a cookie storage's revocations are kept (`SESSION_REVOCATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// In the app's memory.
    Memory,
    /// In Redis, at `REDIS_URL`.
    Redis,
}

/// Which storage the app runs on (`SESSION_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Plain JSON cookie.
    Simple,
    /// AES-256-GCM cookie.
    Encrypted,
    /// In-process memory.
    Memory,
    /// Redis, standalone (`REDIS_URL`).
    Redis,
    /// Redis Cluster (`REDIS_URL`: comma-separated seed nodes).
    RedisCluster,
    /// Redis found through Sentinel (`REDIS_URL`: the Sentinels,
    /// comma-separated; `REDIS_SENTINEL_MASTER`: the master's name).
    RedisSentinel,
    /// Memcached (`MEMCACHED_URL`: comma-separated servers).
    Memcached,
    /// aiohttp_session's Fernet cookie (`SESSION_SECRET`: its 32 bytes).
    AiohttpEncrypted,
    /// aiohttp_session's NaCl cookie (`SESSION_SECRET`: its 32 bytes).
    AiohttpNacl,
    /// aiohttp_session's Redis records (`REDIS_URL`).
    AiohttpRedis,
    /// aiohttp_session's Memcached records (`MEMCACHED_URL`: one server).
    AiohttpMemcached,
    /// PostgreSQL (`DATABASE_URL`); the app creates its table at start.
    Postgres,
    /// MySQL or MariaDB (`DATABASE_URL`: `mysql://USER@HOST:PORT/DB`); the
    /// app creates its table at start.
    MySql,
    /// SQLite (`DATABASE_URL`: `sqlite://PATH`, created if missing).
    Sqlite,
}

impl Store {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "simple" => Ok(Self::Simple),
            "encrypted" => Ok(Self::Encrypted),
            "memory" => Ok(Self::Memory),
            "redis" => Ok(Self::Redis),
            "redis-cluster" => Ok(Self::RedisCluster),
            "redis-sentinel" => Ok(Self::RedisSentinel),
            "memcached" => Ok(Self::Memcached),
            "aiohttp-encrypted" => Ok(Self::AiohttpEncrypted),
            "aiohttp-nacl" => Ok(Self::AiohttpNacl),
            "aiohttp-redis" => Ok(Self::AiohttpRedis),
            "aiohttp-memcached" => Ok(Self::AiohttpMemcached),
            "postgres" => Ok(Self::Postgres),
            "mysql" => Ok(Self::MySql),
            "sqlite" => Ok(Self::Sqlite),
            other => Err(format!(
                "unknown SESSION_STORE {other:?}: use simple, encrypted, memory, redis, \
                 redis-cluster, redis-sentinel, memcached, postgres, mysql, sqlite, aiohttp-encrypted, \
                 aiohttp-nacl, \
                 aiohttp-redis or aiohttp-memcached"
            )),
        }
    }
}

/// The app's configuration, read from the environment by
/// [`Settings::from_env`] or built directly by tests. Its `Debug` shows the
/// store URLs with their passwords redacted, and no secret key.
#[derive(Clone)]
pub struct Settings {
    /// `CONFORMANCE_ADDR`.
    pub addr: String,
    /// `SESSION_STORE`.
    pub store: Store,
    /// `SESSION_SECRET`: `None` means a fresh random key.
    pub secret: Option<EncryptionKey>,
    /// `SESSION_SECRET_OLD`.
    pub old_secrets: Vec<EncryptionKey>,
    /// `SESSION_MAX_AGE` in seconds.
    pub max_age: Option<u64>,
    /// `SESSION_COOKIE_NAME`.
    pub cookie_name: Option<String>,
    /// `SESSION_COOKIE_PATH`.
    pub cookie_path: Option<String>,
    /// `SESSION_COOKIE_DOMAIN`.
    pub cookie_domain: Option<String>,
    /// `SESSION_COOKIE_SECURE`.
    pub secure: Option<bool>,
    /// `SESSION_COOKIE_HTTPONLY`.
    pub http_only: Option<bool>,
    /// `SESSION_COOKIE_SAMESITE`.
    pub same_site: Option<SameSite>,
    /// `SESSION_TRANSPORT`.
    pub transport: Transport,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_SENTINEL_MASTER`: the name of the master the Sentinels watch.
    pub sentinel_master: String,
    /// `SESSION_REDIS_CACHE` (`on` or `off`): the local cache of loaded
    /// records in front of Redis. Off by default, as in the library.
    pub redis_cache: bool,
    /// `MEMCACHED_URL`, split at commas.
    pub memcached_servers: Vec<String>,
    /// `DATABASE_URL`, for `postgres`, `mysql` and `sqlite`.
    pub database_url: String,
    /// Not in the environment: the table of the SQL stores, so tests can
    /// find their own rows.
    pub table_name: Option<String>,
    /// Not in the environment: the idle timeout of browser-session
    /// sessions, for tests; `None` keeps the library's default.
    pub idle_timeout: Option<u64>,
    /// Not in the environment: the absolute session lifetime, for tests;
    /// `None` keeps the library's default.
    pub absolute_timeout: Option<u64>,
    /// Not in the environment: when reads write the session's times, for
    /// tests; `None` keeps the library's default.
    pub refresh: Option<typed_sessions::Refresh>,
    /// Not in the environment: the key prefix of server-side records, so
    /// tests can find their own.
    pub key_prefix: Option<String>,
    /// `SESSION_REVOCATION`: where a cookie storage counts revocations.
    pub revocation: Option<Revocation>,
    /// `SESSION_TLS_CA_FILE`: CA certificates trusted beside the system's
    /// for `rediss://`.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The state `revocation` names, made by [`Settings::connect_revocations`]
    /// and shared by every layer the settings build.
    pub revocations: Option<typed_sessions::Revocations>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use typed_sessions::storage::redact_url;
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("store", &self.store)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("old_secrets", &self.old_secrets.len())
            .field("redis_url", &redact_url(&self.redis_url))
            .field("sentinel_master", &self.sentinel_master)
            .field("database_url", &redact_url(&self.database_url))
            .field("memcached_servers", &self.memcached_servers)
            .field("transport", &self.transport)
            .field("revocation", &self.revocation)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The defaults of `examples/CONFORMANCE.md` for `store`.
    pub fn new(store: Store) -> Self {
        Self {
            addr: "127.0.0.1:3000".to_owned(),
            store,
            secret: None,
            old_secrets: Vec::new(),
            max_age: None,
            cookie_name: None,
            cookie_path: None,
            cookie_domain: None,
            secure: None,
            http_only: None,
            same_site: None,
            transport: Transport::Cookie,
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            sentinel_master: "mymaster".to_owned(),
            redis_cache: false,
            memcached_servers: vec!["127.0.0.1:11211".to_owned()],
            database_url: String::new(),
            table_name: None,
            idle_timeout: None,
            absolute_timeout: None,
            refresh: None,
            key_prefix: None,
            revocation: None,
            revocations: None,
            tls_ca_file: None,
        }
    }

    /// Reads the variables of `examples/CONFORMANCE.md`; an invalid value is an error
    /// naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| env::var(name).ok().filter(|value| !value.is_empty());
        let store = Store::parse(var("SESSION_STORE").as_deref().unwrap_or("encrypted"))?;
        let mut settings = Self::new(store);
        if let Some(addr) = var("CONFORMANCE_ADDR") {
            settings.addr = addr;
        }
        let key = |name: &str, text: &str| {
            EncryptionKey::from_base64(text).map_err(|error| format!("{name}: {error}"))
        };
        if let Some(secret) = var("SESSION_SECRET") {
            settings.secret = Some(key("SESSION_SECRET", &secret)?);
        }
        if let Some(old) = var("SESSION_SECRET_OLD") {
            settings.old_secrets = old
                .split(',')
                .filter(|text| !text.trim().is_empty())
                .map(|text| key("SESSION_SECRET_OLD", text))
                .collect::<Result<_, _>>()?;
        }
        if let Some(max_age) = var("SESSION_MAX_AGE") {
            settings.max_age = Some(max_age.parse().map_err(|_| {
                format!("SESSION_MAX_AGE must be a whole number of seconds, got {max_age:?}")
            })?);
        }
        if let Some(name) = var("REDIS_SENTINEL_MASTER") {
            settings.sentinel_master = name;
        }
        if let Some(url) = var("REDIS_URL") {
            settings.redis_url = url;
        }
        if let Some(cache) = var("SESSION_REDIS_CACHE") {
            settings.redis_cache = match cache.as_str() {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(format!(
                        "SESSION_REDIS_CACHE must be on or off, got {cache:?}"
                    ));
                }
            };
        }
        if let Some(url) = var("DATABASE_URL") {
            settings.database_url = url;
        }
        if let Some(servers) = var("MEMCACHED_URL") {
            settings.memcached_servers = servers
                .split(',')
                .map(|server| server.trim().to_owned())
                .filter(|server| !server.is_empty())
                .collect();
        }
        settings.cookie_name = var("SESSION_COOKIE_NAME");
        settings.cookie_path = var("SESSION_COOKIE_PATH");
        settings.cookie_domain = var("SESSION_COOKIE_DOMAIN");
        let flag = |name: &str| -> Result<Option<bool>, String> {
            var(name)
                .map(|value| match value.as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(format!("{name} must be true or false, got {value:?}")),
                })
                .transpose()
        };
        settings.secure = flag("SESSION_COOKIE_SECURE")?;
        settings.http_only = flag("SESSION_COOKIE_HTTPONLY")?;
        settings.same_site = var("SESSION_COOKIE_SAMESITE")
            .map(|value| value.parse::<SameSite>())
            .transpose()
            .map_err(|error| format!("SESSION_COOKIE_SAMESITE: {error}"))?;
        settings.tls_ca_file = var("SESSION_TLS_CA_FILE").map(Into::into);
        if let Some(revocation) = var("SESSION_REVOCATION") {
            settings.revocation = Some(match revocation.as_str() {
                "memory" => Revocation::Memory,
                "redis" => Revocation::Redis,
                _ => {
                    return Err(format!(
                        "SESSION_REVOCATION must be memory or redis, got {revocation:?}"
                    ));
                }
            });
        }
        if let Some(transport) = var("SESSION_TRANSPORT") {
            settings.transport = match transport.as_str() {
                "cookie" => Transport::Cookie,
                "header" => Transport::Header,
                "both" => Transport::Both,
                _ => {
                    return Err(format!(
                        "SESSION_TRANSPORT must be cookie, header or both, got {transport:?}"
                    ));
                }
            };
        }
        Ok(settings)
    }

    /// The one line that says Redis at `REDIS_URL` (its password hidden)
    /// refused to connect, and why.
    #[cfg(feature = "redis")]
    fn redis_error(&self, error: &typed_sessions::StorageError) -> String {
        format!(
            "REDIS_URL {}: {}",
            typed_sessions::storage::redact_url(&self.redis_url),
            typed_sessions_error_chain(error)
        )
    }

    /// Makes the revocation state `SESSION_REVOCATION` names (for Redis:
    /// connects to `REDIS_URL`), for every layer these settings build.
    pub async fn connect_revocations(mut self) -> Result<Self, String> {
        self.revocations = match self.revocation {
            None => None,
            Some(Revocation::Memory) => Some(typed_sessions::Revocations::in_memory()),
            Some(Revocation::Redis) => Some(self.redis_revocations().await?),
        };
        Ok(self)
    }

    #[cfg(feature = "redis")]
    async fn redis_revocations(&self) -> Result<typed_sessions::Revocations, String> {
        let mut storage = RedisStorage::connect(self.redis_url.as_str())
            .await
            .map_err(|error| self.redis_error(&error))?;
        if let Some(prefix) = &self.key_prefix {
            storage = storage.with_key_prefix(prefix.clone());
        }
        Ok(typed_sessions::Revocations::redis(&storage))
    }

    #[cfg(not(feature = "redis"))]
    async fn redis_revocations(&self) -> Result<typed_sessions::Revocations, String> {
        Err("SESSION_REVOCATION=redis needs the examples built with the `redis` feature".to_owned())
    }

    /// The storage these settings name, connected; an unreachable server
    /// is an error naming the variable to fix.
    pub async fn storage(&self) -> Result<AnyStorage, String> {
        Ok(match self.store {
            Store::Simple => AnyStorage::new(SimpleCookieStorage::new()),
            Store::Encrypted => {
                let key = self.secret.clone().unwrap_or_else(EncryptionKey::generate);
                AnyStorage::new(
                    EncryptedCookieStorage::new(key).with_old_keys(self.old_secrets.clone()),
                )
            }
            Store::Memory => AnyStorage::new(MemoryStorage::new()),
            Store::Redis | Store::RedisCluster | Store::RedisSentinel => self.redis().await?,
            Store::Memcached => self.memcached().await?,
            Store::AiohttpEncrypted
            | Store::AiohttpNacl
            | Store::AiohttpRedis
            | Store::AiohttpMemcached => self.aiohttp().await?,
            Store::Postgres => self.postgres().await?,
            Store::MySql => self.mysql().await?,
            Store::Sqlite => self.sqlite().await?,
        })
    }

    /// aiohttp_session's formats, with the same secret bytes as the Python
    /// side.
    #[cfg(feature = "aiohttp")]
    async fn aiohttp(&self) -> Result<AnyStorage, String> {
        use typed_sessions::aiohttp;
        let secret = || self.secret.clone().unwrap_or_else(EncryptionKey::generate);
        Ok(match self.store {
            Store::AiohttpEncrypted => AnyStorage::new(aiohttp::FernetCookieStorage::new(secret())),
            Store::AiohttpNacl => AnyStorage::new(aiohttp::NaClCookieStorage::new(secret())),
            Store::AiohttpRedis => self.aiohttp_redis().await?,
            _ => self.aiohttp_memcached().await?,
        })
    }

    #[cfg(not(feature = "aiohttp"))]
    async fn aiohttp(&self) -> Result<AnyStorage, String> {
        Err("the aiohttp-* stores need the examples built with the `aiohttp` feature".to_owned())
    }

    #[cfg(all(feature = "aiohttp", feature = "redis"))]
    async fn aiohttp_redis(&self) -> Result<AnyStorage, String> {
        // Several comma-separated URLs: the seed nodes of a cluster.
        let options = if self.redis_url.contains(',') {
            typed_sessions::storage::RedisOptions::cluster(self.redis_url.split(',').map(str::trim))
        } else {
            typed_sessions::storage::RedisOptions::standalone(&self.redis_url)
        };
        let storage = typed_sessions::aiohttp::AiohttpRedisStorage::connect(options)
            .await
            .map_err(|error| self.redis_error(&error))?;
        Ok(AnyStorage::new(storage))
    }

    #[cfg(all(feature = "aiohttp", not(feature = "redis")))]
    async fn aiohttp_redis(&self) -> Result<AnyStorage, String> {
        Err(
            "SESSION_STORE=aiohttp-redis needs the examples built with the `redis` feature"
                .to_owned(),
        )
    }

    #[cfg(all(feature = "aiohttp", feature = "memcached"))]
    async fn aiohttp_memcached(&self) -> Result<AnyStorage, String> {
        let [server] = self.memcached_servers.as_slice() else {
            return Err(format!(
                "MEMCACHED_URL {}: aiohttp-memcached takes exactly one server, as \
                 aiohttp_session does",
                self.memcached_servers.join(",")
            ));
        };
        let storage = typed_sessions::aiohttp::AiohttpMemcachedStorage::connect(server)
            .await
            .map_err(|error| {
                format!(
                    "MEMCACHED_URL {server}: {}",
                    typed_sessions_error_chain(&error)
                )
            })?;
        Ok(AnyStorage::new(storage))
    }

    #[cfg(all(feature = "aiohttp", not(feature = "memcached")))]
    async fn aiohttp_memcached(&self) -> Result<AnyStorage, String> {
        Err(
            "SESSION_STORE=aiohttp-memcached needs the examples built with the `memcached` feature"
                .to_owned(),
        )
    }

    #[cfg(feature = "redis")]
    async fn redis(&self) -> Result<AnyStorage, String> {
        use typed_sessions::storage::{RedisCache, RedisOptions};
        let nodes = || self.redis_url.split(',').map(str::trim);
        let mut options = match self.store {
            Store::RedisCluster => RedisOptions::cluster(nodes()),
            Store::RedisSentinel => RedisOptions::sentinel(nodes(), &self.sentinel_master),
            _ => RedisOptions::standalone(&self.redis_url),
        };
        if self.redis_cache {
            options = options.with_cache(RedisCache::new());
        }
        options = self.with_tls_ca_file(options)?;
        let storage = RedisStorage::connect(options).await;
        let mut storage = storage.map_err(|error| self.redis_error(&error))?;
        if let Some(prefix) = &self.key_prefix {
            storage = storage.with_key_prefix(prefix.clone());
        }
        Ok(AnyStorage::new(storage))
    }

    #[cfg(all(feature = "redis", feature = "tls"))]
    fn with_tls_ca_file(
        &self,
        options: typed_sessions::storage::RedisOptions,
    ) -> Result<typed_sessions::storage::RedisOptions, String> {
        Ok(match &self.tls_ca_file {
            Some(path) => options.with_ca_file(path),
            None => options,
        })
    }

    #[cfg(all(feature = "redis", not(feature = "tls")))]
    fn with_tls_ca_file(
        &self,
        options: typed_sessions::storage::RedisOptions,
    ) -> Result<typed_sessions::storage::RedisOptions, String> {
        match &self.tls_ca_file {
            Some(_) => Err(
                "SESSION_TLS_CA_FILE needs the examples built with the `tls` feature".to_owned(),
            ),
            None => Ok(options),
        }
    }

    #[cfg(not(feature = "redis"))]
    async fn redis(&self) -> Result<AnyStorage, String> {
        Err("SESSION_STORE=redis needs the examples built with the `redis` feature".to_owned())
    }

    #[cfg(feature = "memcached")]
    async fn memcached(&self) -> Result<AnyStorage, String> {
        let mut storage = MemcachedStorage::connect(&self.memcached_servers)
            .await
            .map_err(|error| {
                format!(
                    "MEMCACHED_URL {}: {}",
                    self.memcached_servers.join(","),
                    typed_sessions_error_chain(&error)
                )
            })?;
        if let Some(prefix) = &self.key_prefix {
            storage = storage.with_key_prefix(prefix.clone());
        }
        Ok(AnyStorage::new(storage))
    }

    #[cfg(not(feature = "memcached"))]
    async fn memcached(&self) -> Result<AnyStorage, String> {
        Err(
            "SESSION_STORE=memcached needs the examples built with the `memcached` feature"
                .to_owned(),
        )
    }

    #[cfg(feature = "postgres")]
    async fn postgres(&self) -> Result<AnyStorage, String> {
        let context = |error: typed_sessions::StorageError| {
            format!("DATABASE_URL: {}", typed_sessions_error_chain(&error))
        };
        let mut storage = PostgresStorage::connect(&self.database_url)
            .await
            .map_err(context)?;
        if let Some(table) = &self.table_name {
            storage = storage.with_table_name(table.clone());
        }
        storage.migrate().await.map_err(context)?;
        Ok(AnyStorage::new(storage))
    }

    #[cfg(not(feature = "postgres"))]
    async fn postgres(&self) -> Result<AnyStorage, String> {
        Err(
            "SESSION_STORE=postgres needs the examples built with the `postgres` feature"
                .to_owned(),
        )
    }

    #[cfg(feature = "mysql")]
    async fn mysql(&self) -> Result<AnyStorage, String> {
        let context = |error: typed_sessions::StorageError| {
            format!("DATABASE_URL: {}", typed_sessions_error_chain(&error))
        };
        let mut storage = MySqlStorage::connect(&self.database_url)
            .await
            .map_err(context)?;
        if let Some(table) = &self.table_name {
            storage = storage.with_table_name(table.clone());
        }
        storage.migrate().await.map_err(context)?;
        Ok(AnyStorage::new(storage))
    }

    #[cfg(not(feature = "mysql"))]
    async fn mysql(&self) -> Result<AnyStorage, String> {
        Err("SESSION_STORE=mysql needs the examples built with the `mysql` feature".to_owned())
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite(&self) -> Result<AnyStorage, String> {
        let context = |error: typed_sessions::StorageError| {
            format!("DATABASE_URL: {}", typed_sessions_error_chain(&error))
        };
        let mut storage = SqliteStorage::connect(&self.database_url)
            .await
            .map_err(context)?;
        if let Some(table) = &self.table_name {
            storage = storage.with_table_name(table.clone());
        }
        storage.migrate().await.map_err(context)?;
        Ok(AnyStorage::new(storage))
    }

    #[cfg(not(feature = "sqlite"))]
    async fn sqlite(&self) -> Result<AnyStorage, String> {
        Err("SESSION_STORE=sqlite needs the examples built with the `sqlite` feature".to_owned())
    }

    /// The session layer over `storage`, reading time from `clock`.
    pub fn layer_with(
        &self,
        storage: AnyStorage,
        clock: impl Clock,
    ) -> Result<SessionLayer, String> {
        let mut builder = self.configure(SessionLayer::builder(storage), clock);
        if let Some(name) = &self.cookie_name {
            builder = builder.with_cookie_name(name.clone());
        }
        builder
            .build()
            .map_err(|error| format!("invalid session configuration: {error}"))
    }

    /// The session layer these settings describe, on the system clock.
    pub async fn layer(&self) -> Result<SessionLayer, String> {
        self.layer_with(self.storage().await?, SystemClock)
    }

    /// The layer of the [`Admin`] sessions over `storage` (the main one's
    /// storage: kinds keep apart on one store), reading time from `clock`:
    /// the same settings, the cookie named after the main one with `_admin`
    /// appended (the library's default name for the kind `admin`).
    pub fn admin_layer_with(
        &self,
        storage: AnyStorage,
        clock: impl Clock,
    ) -> Result<SessionLayer<Admin>, String> {
        let mut builder =
            self.configure(SessionLayer::builder(storage).with_kind::<Admin>(), clock);
        if let Some(name) = &self.cookie_name {
            builder = builder.with_cookie_name(format!("{name}_admin"));
        }
        builder
            .build()
            .map_err(|error| format!("invalid admin session configuration: {error}"))
    }

    /// Every setting but the cookie's name, on a builder of any kind.
    fn configure<K: SessionKind>(
        &self,
        mut builder: SessionLayerBuilder<K>,
        clock: impl Clock,
    ) -> SessionLayerBuilder<K> {
        builder = builder
            .with_max_age(self.max_age.map(Duration::from_secs))
            .with_cookie_domain(self.cookie_domain.clone())
            .with_transport(self.transport)
            .with_clock(clock)
            .with_error_responder(json_error);
        if let Some(idle) = self.idle_timeout {
            builder = builder.with_idle_timeout(Some(Duration::from_secs(idle)));
        }
        if let Some(absolute) = self.absolute_timeout {
            builder = builder.with_absolute_timeout(Some(Duration::from_secs(absolute)));
        }
        if let Some(refresh) = self.refresh {
            builder = builder.with_refresh(refresh);
        }
        if let Some(path) = &self.cookie_path {
            builder = builder.with_cookie_path(path.clone());
        }
        if let Some(secure) = self.secure {
            builder = builder.with_secure(secure);
        }
        if let Some(http_only) = self.http_only {
            builder = builder.with_http_only(http_only);
        }
        if let Some(same_site) = self.same_site {
            builder = builder.with_same_site(same_site);
        }
        if let Some(revocations) = &self.revocations {
            builder = builder.with_revocations(revocations.clone());
        }
        builder
    }
}

/// `error: cause: cause`, on one line: how the app reports a store that
/// would not connect (and what tests read back).
#[cfg(any(
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
))]
pub fn typed_sessions_error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string().replace('\n', " "));
        source = cause.source();
    }
    text
}

/// The app's routes, without the session layer.
pub fn routes() -> Router {
    Router::new()
        .route("/session", get(show).patch(change))
        .route("/session/invalidate", post(invalidate))
        .route("/session/login", post(login))
        .route("/session/max_age", post(set_max_age))
        .route("/session/remember", post(remember))
        .route("/session/bind", post(bind))
        .route("/users/{user}/sessions", get(sessions_of))
        .route("/users/{user}/revoke", post(revoke))
        .route("/users/{user}/sessions/{handle}/revoke", post(revoke_one))
        .route("/flash", get(take_flashes).post(add_flash))
        .route("/admin/session", get(show_admin).patch(change_admin))
        .route("/session/incr", post(increment))
        .route("/untouched", get(untouched))
        .route("/typed", get(typed))
        .route("/typed/visit", post(typed_visit))
}

/// The whole app: routes and both session layers.
pub fn app(layer: SessionLayer, admin: SessionLayer<Admin>) -> Router {
    routes().layer(admin).layer(layer)
}

/// Errors as `{"error": "..."}`, for the layer and the handlers alike.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The session view of `examples/CONFORMANCE.md`, serialized straight into the
/// response (the data map is not copied).
#[derive(serde::Serialize)]
#[serde(bound = "")]
struct View<'a, K: SessionKind> {
    new: bool,
    identity: Option<String>,
    created: u64,
    max_age: Option<u64>,
    empty: bool,
    data: &'a Session<K>,
}

fn view<K: SessionKind>(session: &Session<K>) -> Json<View<'_, K>> {
    Json(View {
        new: session.is_new(),
        identity: session.identity().map(|id| id.as_str().to_owned()),
        created: session.created(),
        max_age: session.max_age().map(|age| age.as_secs()),
        empty: session.is_empty(),
        data: session,
    })
}

/// A request the app refuses with 400 and `{"error": ...}`.
struct BadRequest(&'static str);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        json_error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(BadRequest("the body must be a JSON object")),
    }
}

async fn show(session: Session) -> Response {
    view(&session).into_response()
}

async fn change(
    session: Session,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let status = match query.get("status") {
        None => StatusCode::OK,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(BadRequest("status must be an HTTP status code"))?,
    };
    let changes = json_object(&body)?;
    for (key, value) in changes {
        if value.is_null() {
            session.remove(&key);
        } else {
            session.insert_value(&key, value);
        }
    }
    let mut response = (status, view(&session)).into_response();
    if status == StatusCode::FOUND {
        response.headers_mut().insert(
            header::LOCATION,
            header::HeaderValue::from_static("/session"),
        );
    }
    Ok(response)
}

async fn invalidate(session: Session) -> Response {
    session.invalidate();
    view(&session).into_response()
}

async fn login(session: Session, body: Bytes) -> Result<Response, BadRequest> {
    let data = json_object(&body)?;
    session.start_new();
    for (key, value) in data {
        session.insert_value(&key, value);
    }
    Ok(view(&session).into_response())
}

async fn set_max_age(session: Session, body: Bytes) -> Result<Response, BadRequest> {
    let object = json_object(&body)?;
    let max_age = match object.get("max_age") {
        Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|age| *age > 0)
                .ok_or(BadRequest("max_age must be a positive integer or null"))?,
        ),
        None => return Err(BadRequest("max_age is required")),
    };
    session.set_max_age(max_age.map(Duration::from_secs));
    Ok(view(&session).into_response())
}

async fn show_admin(session: Session<Admin>) -> Response {
    view(&session).into_response()
}

async fn change_admin(session: Session<Admin>, body: Bytes) -> Result<Response, BadRequest> {
    for (key, value) in json_object(&body)? {
        if value.is_null() {
            session.remove(&key);
        } else {
            session.insert_value(&key, value);
        }
    }
    Ok(view(&session).into_response())
}

async fn bind(session: Session, body: Bytes) -> Result<Response, BadRequest> {
    let mut body = json_object(&body)?;
    let Some(Value::String(user)) = body.remove("user") else {
        return Err(BadRequest("user must be a string"));
    };
    // Optional: what the user's listing shows beside this session.
    if let Some(meta) = body.remove("meta") {
        session.insert_value(Session::USER_META_KEY, meta);
    }
    session.bind_user(user);
    Ok(view(&session).into_response())
}

/// A storage error of a listing or revocation as `{"error": ...}`: 501 for
/// a storage that cannot do it, 503 for one that failed.
fn storage_error(error: &StorageError) -> Response {
    json_error(error.status(), &error.to_string())
}

async fn sessions_of(sessions: UserSessions, Path(user): Path<String>) -> Response {
    match sessions.of(&user).await {
        Ok(live) => {
            let live: Vec<Value> = live
                .iter()
                .map(|session| {
                    json!({
                        "created": session.created,
                        "last_seen": session.last_seen,
                        "handle": session.handle,
                        "meta": session.meta,
                    })
                })
                .collect();
            Json(json!({ "sessions": live })).into_response()
        }
        Err(error) => storage_error(&error),
    }
}

async fn revoke_one(
    sessions: UserSessions,
    Path((user, handle)): Path<(String, String)>,
) -> Response {
    match sessions.revoke_one(&user, &handle).await {
        Ok(revoked) => Json(json!({ "revoked": usize::from(revoked) })).into_response(),
        Err(error) => storage_error(&error),
    }
}

async fn revoke(sessions: UserSessions, Path(user): Path<String>) -> Response {
    match sessions.revoke(&user).await {
        Ok(revoked) => Json(json!({ "revoked": revoked })).into_response(),
        Err(error) => storage_error(&error),
    }
}

async fn remember(session: Session, body: Bytes) -> Result<Response, BadRequest> {
    let remember = json_object(&body)?
        .get("remember")
        .and_then(Value::as_bool)
        .ok_or(BadRequest("remember must be true or false"))?;
    session.remember(remember);
    Ok(view(&session).into_response())
}

async fn add_flash(flash: Flash<String>, body: Bytes) -> Result<Response, BadRequest> {
    let Some(Value::String(message)) = json_object(&body)?.remove("message") else {
        return Err(BadRequest("message must be a string"));
    };
    flash.push(message);
    Ok(view(flash.session()).into_response())
}

async fn take_flashes(flash: Flash<String>) -> Json<Value> {
    Json(json!({ "messages": flash.take() }))
}

async fn increment(
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, BadRequest> {
    let key = query
        .get("key")
        .ok_or(BadRequest("the key query parameter is required"))?;
    let value = session.get::<i64>(key).unwrap_or(0).saturating_add(1);
    session.insert_value(key, Value::from(value));
    Ok(Json(json!({ "value": value })))
}

fn profile_view(profile: &TypedSession<Profile>) -> Json<Value> {
    Json(json!({ "user": profile.user(), "visits": profile.visits() }))
}

async fn typed(profile: TypedSession<Profile>) -> Json<Value> {
    profile_view(&profile)
}

async fn typed_visit(profile: TypedSession<Profile>) -> Json<Value> {
    *profile.visits_mut() += 1;
    profile_view(&profile)
}

async fn untouched() -> &'static str {
    "ok"
}
