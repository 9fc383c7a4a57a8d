//! Sessions in Redis, standalone or Redis Cluster.
//!
//! # Record layout
//!
//! One Redis hash per session, under `prefix + base64url(SHA-256(id))`:
//!
//! | field | value |
//! |---|---|
//! | `c` | creation time, Unix seconds |
//! | `u` | last write, Unix seconds |
//! | `m` | the max age the session chose: seconds, or `b` for a browser-session cookie (absent: it follows the layer's lifetimes) |
//! | `x` | the time the session chose to end at, Unix seconds (absent: none) |
//! | `k` | the session's kind, for layers of another kind than `Main` (absent: `Main`) |
//! | `w` | the user the session is bound to (absent: none) |
//! | `t` | the TTL the record was given, in seconds |
//! | `d:<key>` | the JSON value of session key `<key>` |
//!
//! Every operation touches one key, so it works the same on a cluster.
//! Loading is one `HGETALL` (or one script with TTL refresh on read);
//! saving is one `EVALSHA` of a script that checks the record exists (or
//! does not, for a new one), sets the changed fields, deletes the removed
//! ones and sets the expiry, atomically.
//!
//! # Writes that time out are not applied later
//!
//! A request whose write timed out answers 503, but the command may still
//! be on its way: in a frozen server's socket, in a slow network, or
//! queued in the cluster client, which sends it again to a new master
//! after a failover. Applied then, it would change a session its client
//! was told was not changed (a "phantom" write), or delete the record a
//! renewal that failed left the client with. So every write script (create,
//! update, delete) carries a deadline in Redis' own clock and checks it
//! against `TIME` before writing anything: past it, the script writes
//! nothing and the request's 503 stays true. The deadline is a quarter of
//! the command timeout before the app gives up, which leaves the answer of
//! a write run just in time that long to arrive.
//!
//! The app learns how far Redis' clock is from its own when it connects
//! (one `TIME`), and again whenever Redis refuses a write as late that was
//! not late by the app's watch, which it then sends once more. Clocks kept
//! by NTP (milliseconds apart) are well within what this needs. One case
//! no client can close remains: a server that applies a write and dies
//! before answering it.

mod cache;
mod connection;

pub use cache::{RedisCache, RedisCacheStatistics};
pub use connection::RedisConnection;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    CommandCacheConfig, FromRedisValue, IntoConnectionInfo, ProtocolVersion, Script,
    ScriptInvocation,
};

use self::cache::CacheGate;
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::lifetime::MaxAge;
use crate::record::{Changes, SessionRecord};
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, StoreTimes,
    create_with_fresh_id, prune_due, store_key, timed, user_key,
};
use crate::storage::{ActiveSession, Loaded, ServerStorage, StorageContext};

const DATA_PREFIX: &str = "d:";

/// The field of a session's own max age ([`MaxAge`]): absent when it
/// follows the layer, [`BROWSER_SESSION`] or the seconds.
const OWN_MAX_AGE: &str = "m";
const BROWSER_SESSION: &str = "b";
/// The field of the time a session chose to end at.
const EXPIRES_AT: &str = "x";
/// The field of a session's kind, absent for the main kind.
const KIND: &str = "k";
/// The field of the user a session is bound to.
const USER: &str = "w";

/// A script with `chunks(command, first, last)`: runs `command` on `KEYS[1]`
/// with `ARGV[first..=last]`, at most 1000 arguments at a time, since Lua's
/// `unpack` fails beyond about 8000 (a session of a few thousand keys).
/// Chunks of 1000 keep field/value pairs whole.
macro_rules! script_with_chunks {
    ($body:literal) => {
        write_script!(concat!(
            r"
local function chunks(command, first, last)
  for i = first, last, 1000 do
    redis.call(command, KEYS[1], unpack(ARGV, i, math.min(i + 999, last)))
  end
end
",
            $body
        ))
    };
}

/// A write script whose `ARGV[1]` is its deadline, in microseconds of
/// Redis' clock: run later (see the module's documentation), it writes
/// nothing and answers Redis' time, negated.
macro_rules! write_script {
    ($body:expr) => {
        concat!(
            r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
if now > tonumber(ARGV[1]) then return -now end
",
            $body
        )
    };
}

/// `KEYS[1]` the record; `ARGV[1]` the deadline, `ARGV[2]` the TTL, then
/// field/value pairs.
const CREATE: &str = script_with_chunks!(
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
chunks('HSET', 3, #ARGV)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"
);

/// `KEYS[1]` the record; `ARGV[1]` the deadline, `ARGV[2]` the TTL,
/// `ARGV[3]` '1' to replace the whole record, `ARGV[4]` how many
/// field/value arguments follow, then those, then the fields to delete.
/// For a merge, `EXPIRE` both checks that the record exists (it answers 0
/// otherwise) and sets the new TTL, which `HSET` keeps.
const UPDATE: &str = script_with_chunks!(
    r"
local n = tonumber(ARGV[4])
if ARGV[3] == '1' then
  if redis.call('DEL', KEYS[1]) == 0 then return 0 end
  chunks('HSET', 5, 4 + n)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('EXPIRE', KEYS[1], ARGV[2]) == 0 then return 0 end
chunks('HSET', 5, 4 + n)
if #ARGV > 4 + n then chunks('HDEL', 5 + n, #ARGV) end
return 1
"
);

/// `KEYS[1]` the record; `ARGV[1]` the deadline, `ARGV[2]` `1` to delete a
/// record bound to a user too. Answers how many records it deleted, and,
/// for a bound record it left alone, its user and kind (empty: the main
/// one), so the caller can first take it out of its user's index.
const DELETE: &str = write_script!(
    r"
local bound = redis.call('HMGET', KEYS[1], 'w', 'k')
if bound[1] and ARGV[2] ~= '1' then return {0, bound[1], bound[2] or ''} end
return {redis.call('DEL', KEYS[1]), '', ''}
"
);

/// `KEYS[1]` a user's index, `KEYS[2]` its deletions under way, `KEYS[3]`
/// its revocation set (one slot, see [`UserSets`]); `ARGV[1]` the
/// revocation set's TTL. Moves every record key of the first two into the
/// revocation set, atomically, and answers the set's members: from this
/// instant no deletion can take one of them out of the index (see
/// [`RedisStorage::revoke_user`]). The revocation set keeps the keys until
/// their records are surely deleted, so a revocation that failed half-way
/// is finished by the next.
const REVOKE: &str = r"
redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[1], KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
return redis.call('SMEMBERS', KEYS[3])
";

/// `KEYS[1]` the record; `ARGV[1]` now. Reads the record and, if it
/// exists, counts the read as activity: `u` becomes now and the TTL starts
/// again.
const LOAD_AND_REFRESH: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
local ttl = redis.call('HGET', KEYS[1], 't')
redis.call('HSET', KEYS[1], 'u', ARGV[1])
if ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return fields
";

/// `KEYS[1]` a record, `ARGV[1]` a user: deletes the record if it is bound
/// to that user, atomically, so no one ends another user's session.
const DELETE_IF_BOUND: &str = r"
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

struct Scripts {
    create: Script,
    update: Script,
    delete: Script,
    load_and_refresh: Script,
    delete_if_bound: Script,
    revoke: Script,
}

/// How far Redis' clock is ahead of the app's, in microseconds (negative
/// when behind): what turns the app's deadline for a write into Redis'
/// time. Zero until read, which suits clocks kept by NTP.
#[derive(Debug, Default)]
struct RedisClock {
    offset: AtomicI64,
}

impl RedisClock {
    /// Redis said `redis` (its time, in microseconds) while a command went
    /// out at `sent` and its answer came at `received` (the app's times):
    /// its clock read `redis` half-way, within half the round trip.
    fn learn(&self, redis: i64, sent: i64, received: i64) {
        let midpoint = sent + (received - sent) / 2;
        self.offset.store(redis - midpoint, Ordering::Relaxed);
    }

    /// Moves the offset by `micros` (see `__private::step_redis_clock`).
    fn step(&self, micros: i64) {
        self.offset.fetch_add(micros, Ordering::Relaxed);
    }

    /// The deadline, in Redis' clock, of a write the app started at
    /// `started` and may let run for `budget` (microseconds).
    fn deadline(&self, started: i64, budget: i64) -> i64 {
        started
            .saturating_add(budget)
            .saturating_add(self.offset.load(Ordering::Relaxed))
    }
}

/// The app's clock, in microseconds since the Unix epoch.
fn micros_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Keeps sessions in Redis (standalone or Redis Cluster) under random ids;
/// the cookie holds only the id. For apps that run on several processes or
/// machines.
///
/// Saves write only what a request changed, merged into the stored record,
/// so concurrent requests changing different keys of one session both keep
/// their change; a record invalidated elsewhere is never brought back.
/// Every save sets the record's expiry from the session's `max_age` (the
/// default TTL, one day, for a session without one), so no record lives
/// forever. A store that is down or slow answers within the command timeout
/// (one second by default), and the request gets a 503.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use std::time::Duration;
/// use typed_sessions::{RedisStorage, SessionLayer};
///
/// let storage = RedisStorage::connect("redis://127.0.0.1:6379/0")
///     .await?
///     .with_key_prefix("myapp:session:")
///     .with_default_ttl(Duration::from_secs(12 * 3600));
/// let layer = SessionLayer::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStorage {
    connection: RedisConnection,
    scripts: Arc<Scripts>,
    prefix: String,
    times: StoreTimes,
    refresh_ttl_on_read: bool,
    /// How far Redis' clock is ahead of the app's, for write deadlines.
    clock: Arc<RedisClock>,
    /// With a local cache: when it may be used.
    cache: Option<Arc<CacheGate>>,
}

/// Where [`RedisStorage::connect`] finds Redis, and how it talks to it: a
/// standalone server (a URL converts into these options) or a Redis
/// Cluster, with or without the local cache.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use typed_sessions::RedisStorage;
/// use typed_sessions::storage::{RedisCache, RedisOptions};
///
/// let standalone = RedisStorage::connect("redis://127.0.0.1:6379/0").await?;
/// let cluster = RedisStorage::connect(
///     RedisOptions::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///         .with_cache(RedisCache::new()),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisOptions {
    target: Target,
    pub(crate) cache: Option<RedisCache>,
    username: Option<String>,
    password: Option<String>,
    /// A PEM file of CA certificates trusted beside the system's.
    ca_file: Option<std::path::PathBuf>,
    /// PEM files of the client's certificate chain and private key.
    client_certificate: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl fmt::Debug for RedisOptions {
    // URLs and passwords are secrets: neither is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("target", &self.target)
            .field("cache", &self.cache)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_certificate", &self.client_certificate.is_some())
            .finish()
    }
}

#[derive(Clone)]
enum Target {
    Standalone(String),
    Cluster(Vec<String>),
    /// The Sentinels' URLs and the name of the master they watch.
    Sentinel(Vec<String>, String),
}

impl fmt::Debug for Target {
    // URLs may carry a password: only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standalone(_) => f.write_str("Standalone"),
            Self::Cluster(nodes) => write!(f, "Cluster({} seed nodes)", nodes.len()),
            Self::Sentinel(sentinels, master) => {
                write!(
                    f,
                    "Sentinel({} sentinels, master {master:?})",
                    sentinels.len()
                )
            }
        }
    }
}

impl RedisOptions {
    /// A standalone server at `url` (`redis://HOST:PORT/DB`).
    pub fn standalone(url: impl Into<String>) -> Self {
        Self {
            target: Target::Standalone(url.into()),
            cache: None,
            username: None,
            password: None,
            ca_file: None,
            client_certificate: None,
        }
    }

    /// A Redis Cluster through `nodes` (`redis://HOST:PORT` seed nodes; the
    /// others are discovered). The storage follows a failover by itself.
    pub fn cluster<N: Into<String>>(nodes: impl IntoIterator<Item = N>) -> Self {
        Self {
            target: Target::Cluster(nodes.into_iter().map(Into::into).collect()),
            cache: None,
            username: None,
            password: None,
            ca_file: None,
            client_certificate: None,
        }
    }

    /// The master named `master` (as in `sentinel monitor`) of a
    /// Sentinel-managed group, found through the Sentinels at `sentinels`
    /// (`redis://HOST:PORT`, usually three or more). The storage asks them
    /// for the master, checks that it is one (`ROLE`), and asks again after
    /// a failed command, so it follows a failover by itself; while there
    /// is no master, requests get a 503.
    ///
    /// A password (and user) in a Sentinel's URL is the Sentinels' own;
    /// the master's comes from [`RedisOptions::with_password`] and
    /// [`RedisOptions::with_username`]. With `rediss://` URLs (the `tls`
    /// feature), the Sentinels and the master are reached over TLS, both
    /// verified against the same roots. The master's database is 0.
    pub fn sentinel<N: Into<String>>(
        sentinels: impl IntoIterator<Item = N>,
        master: impl Into<String>,
    ) -> Self {
        Self {
            target: Target::Sentinel(
                sentinels.into_iter().map(Into::into).collect(),
                master.into(),
            ),
            cache: None,
            username: None,
            password: None,
            ca_file: None,
            client_certificate: None,
        }
    }

    /// The password to authenticate with (`AUTH`), over any in the URL:
    /// a secret read from its own setting need not live in a URL. Never
    /// shown in `Debug` or in an error.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The ACL user to authenticate as, over any in the URL (Redis 6 or
    /// later; without one, `default`).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// A PEM file of CA certificates that `rediss://` connections trust
    /// beside the system's roots (a private CA, a managed service's own),
    /// read at connect. Needs `rediss://` URLs and the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The client certificate (a PEM chain) and its private key (PEM)
    /// that `rediss://` connections present, for servers that require one
    /// (`tls-auth-clients yes`, mutual TLS); read at connect. Needs the
    /// `tls` feature.
    #[cfg(feature = "tls")]
    pub fn with_client_certificate(
        mut self,
        certificate: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// Whether any URL asks for TLS.
    fn wants_tls(&self) -> bool {
        match &self.target {
            Target::Standalone(url) => url.starts_with("rediss://"),
            Target::Cluster(nodes) | Target::Sentinel(nodes, _) => {
                nodes.iter().any(|node| node.starts_with("rediss://"))
            }
        }
    }

    /// Refuses what cannot be honoured: TLS settings without a `rediss://`
    /// URL, or a `rediss://` URL in a build without TLS.
    fn check_tls(&self) -> Result<(), StorageError> {
        let settings = self.ca_file.is_some() || self.client_certificate.is_some();
        if settings && !self.wants_tls() {
            return Err(StorageError::Config(ConfigError::StorageSetting {
                setting: "Redis TLS",
                problem: "a CA file or client certificate needs `rediss://` URLs".to_owned(),
            }));
        }
        if cfg!(not(feature = "tls")) && self.wants_tls() {
            return Err(StorageError::Config(ConfigError::StorageSetting {
                setting: "Redis URL",
                problem: "`rediss://` (TLS) needs typed-sessions' `tls` feature".to_owned(),
            }));
        }
        Ok(())
    }

    /// The certificates `rediss://` connections use: the system's roots
    /// plus the CA file, and the client certificate, read now.
    #[cfg(feature = "tls")]
    fn certificates(&self) -> Result<redis::TlsCertificates, StorageError> {
        // One provider for the process, if the app has not chosen one
        // (rustls panics when it finds several and none chosen). `ring`
        // lacks post-quantum key exchange, which rustls flags; it builds
        // without a C toolchain beyond a compiler.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|error| {
                StorageError::unavailable(format!("{what} {}: {error}", path.display()))
            })
        };
        let root_cert = match &self.ca_file {
            None => None,
            Some(path) => {
                let mut bundle = read(path, "Redis CA file")?;
                bundle.push(b'\n');
                for certificate in rustls_native_certs::load_native_certs().certs {
                    bundle.extend_from_slice(pem_certificate(&certificate).as_bytes());
                }
                Some(bundle)
            }
        };
        let client_tls = match &self.client_certificate {
            None => None,
            Some((certificate, key)) => Some(redis::ClientTlsConfig {
                client_cert: read(certificate, "Redis client certificate")?,
                client_key: read(key, "Redis client key")?,
            }),
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// A certificate in PEM.
#[cfg(feature = "tls")]
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

impl RedisOptions {
    /// Talks RESP3 and keeps a local cache of loaded records that Redis
    /// (every master of a cluster) keeps correct: a read of a cached
    /// session costs no round trip. See [`RedisCache`]; needs Redis 6 or
    /// later. Default: no cache.
    pub fn with_cache(mut self, cache: RedisCache) -> Self {
        self.cache = Some(cache);
        self
    }
}

impl From<&str> for RedisOptions {
    fn from(url: &str) -> Self {
        Self::standalone(url)
    }
}

impl From<String> for RedisOptions {
    fn from(url: String) -> Self {
        Self::standalone(url)
    }
}

impl From<&String> for RedisOptions {
    fn from(url: &String) -> Self {
        Self::standalone(url.as_str())
    }
}

impl RedisStorage {
    /// Connects to Redis as `options` say (a URL for a standalone server,
    /// or [`RedisOptions`] for a cluster or the local cache), within two
    /// seconds, with a one-second command timeout.
    pub async fn connect(options: impl Into<RedisOptions>) -> Result<Self, StorageError> {
        let options = options.into();
        options.check_tls()?;
        match &options.target {
            Target::Standalone(url) => Self::connect_standalone(url, &options).await,
            Target::Cluster(nodes) => Self::connect_to_cluster(nodes.clone(), &options).await,
            // Boxed: the `redis` crate's Sentinel lookup is a deep future,
            // which would otherwise sit inside every caller's.
            Target::Sentinel(sentinels, master) => {
                Box::pin(Self::connect_through_sentinels(sentinels, master, &options)).await
            }
        }
    }

    async fn connect_through_sentinels(
        sentinels: &[String],
        master: &str,
        options: &RedisOptions,
    ) -> Result<Self, StorageError> {
        let cache = options.cache;
        let mut addresses = Vec::new();
        let mut sentinel_settings = None;
        for url in sentinels {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(StorageError::unavailable)?;
            let settings = info.redis_settings();
            if sentinel_settings.is_none()
                && (settings.username().is_some() || settings.password().is_some())
            {
                sentinel_settings = Some(settings.clone());
            }
            addresses.push(info.addr().clone());
        }
        let mut builder = SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)
            .map_err(StorageError::unavailable)?;
        if let Some(settings) = &sentinel_settings {
            if let Some(username) = settings.username() {
                builder = builder.set_client_to_sentinel_username(username);
            }
            if let Some(password) = settings.password() {
                builder = builder.set_client_to_sentinel_password(password);
            }
        }
        if let Some(username) = &options.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &options.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if cache.is_some() {
            builder = builder.set_client_to_redis_protocol(ProtocolVersion::RESP3);
        }
        #[cfg(feature = "tls")]
        if options.wants_tls() {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_certificates(options.certificates()?)
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_certificates(options.certificates()?);
        }
        let client = builder.build().map_err(StorageError::unavailable)?;
        let mut config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_COMMAND_TIMEOUT));
        if let Some(cache) = &cache {
            config = config.set_cache_config(cache.config());
        }
        let connection = tokio::time::timeout(
            DEFAULT_CONNECT_TIMEOUT,
            RedisConnection::through_sentinels(client, config, DEFAULT_CONNECT_TIMEOUT),
        )
        .await
        .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
        .map_err(StorageError::unavailable)?;
        let mut storage = Self::from_connection(connection);
        storage.read_clock().await?;
        if let Some(cache) = cache {
            storage.start_cache(&cache);
        }
        Ok(storage)
    }

    async fn connect_standalone(url: &str, options: &RedisOptions) -> Result<Self, StorageError> {
        let cache = options.cache;
        let mut info = url
            .into_connection_info()
            .map_err(StorageError::unavailable)?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &options.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
        }
        if cache.is_some() {
            settings = settings.set_protocol(ProtocolVersion::RESP3);
        }
        info = info.set_redis_settings(settings);
        #[cfg(feature = "tls")]
        let client = if options.wants_tls() {
            redis::Client::build_with_tls(info, options.certificates()?)
        } else {
            redis::Client::open(info)
        };
        #[cfg(not(feature = "tls"))]
        let client = redis::Client::open(info);
        let client = client.map_err(StorageError::unavailable)?;
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        if let Some(cache) = &cache {
            config = config.set_cache_config(cache.config());
        }
        let manager = tokio::time::timeout(
            DEFAULT_CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
        .map_err(StorageError::unavailable)?;
        let mut storage = Self::from_connection(manager);
        storage.read_clock().await?;
        if let Some(cache) = cache {
            storage.start_cache(&cache);
        }
        Ok(storage)
    }

    async fn connect_to_cluster(
        nodes: Vec<String>,
        options: &RedisOptions,
    ) -> Result<Self, StorageError> {
        let cache = options.cache;
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(DEFAULT_CONNECT_TIMEOUT)
            .response_timeout(DEFAULT_COMMAND_TIMEOUT)
            .retries(1);
        if let Some(username) = &options.username {
            builder = builder.username(username);
        }
        if let Some(password) = &options.password {
            builder = builder.password(password);
        }
        #[cfg(feature = "tls")]
        if options.wants_tls() {
            builder = builder.certs(options.certificates()?);
        }
        if let Some(cache) = &cache {
            builder = builder
                .use_protocol(ProtocolVersion::RESP3)
                .cache_config(cache.config());
        }
        let client = builder.build().map_err(StorageError::unavailable)?;
        let connection =
            tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
                .map_err(StorageError::unavailable)?;
        let mut storage = Self::from_connection(RedisConnection::recovering(
            client,
            connection,
            DEFAULT_CONNECT_TIMEOUT,
        ));
        storage.read_clock().await?;
        if let Some(cache) = cache {
            storage.start_cache(&cache);
        }
        Ok(storage)
    }

    /// A storage over a connection the app already has: a
    /// [`ConnectionManager`] or a
    /// [`ClusterConnection`](redis::cluster_async::ClusterConnection) (built
    /// through [`typed_sessions::redis`](crate::redis), so the versions
    /// match). A cluster connection made this way is followed as the
    /// `redis` crate follows it; [`RedisStorage::connect`] makes one that
    /// also follows a failover.
    pub fn from_connection(connection: impl Into<RedisConnection>) -> Self {
        Self {
            connection: connection.into(),
            scripts: Arc::new(Scripts {
                create: Script::new(CREATE),
                update: Script::new(UPDATE),
                delete: Script::new(DELETE),
                load_and_refresh: Script::new(LOAD_AND_REFRESH),
                delete_if_bound: Script::new(DELETE_IF_BOUND),
                revoke: Script::new(REVOKE),
            }),
            prefix: DEFAULT_PREFIX.to_owned(),
            times: StoreTimes::default(),
            refresh_ttl_on_read: false,
            clock: Arc::new(RedisClock::default()),
            cache: None,
        }
    }

    /// Puts the cache's gate in front of loads and starts its heartbeat,
    /// which ends when the last clone of the storage is dropped.
    fn start_cache(&mut self, cache: &RedisCache) {
        let gate = Arc::new(CacheGate::new(cache));
        let weak = Arc::downgrade(&gate);
        self.cache = Some(gate);
        let connection = self.connection.clone();
        tokio::spawn(async move {
            loop {
                let Some(gate) = weak.upgrade() else { return };
                let (sent, interval, max_lag) =
                    (gate.now(), gate.heartbeat_interval(), gate.max_lag());
                drop(gate);
                // The connection loads use (for a cluster, the one made
                // again after a failover).
                let mut connection = connection.clone();
                if let Ok(Ok(())) =
                    tokio::time::timeout(max_lag, connection.ping_every_node()).await
                {
                    let Some(gate) = weak.upgrade() else { return };
                    gate.confirm(sent);
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// What the local cache did (see [`RedisOptions::with_cache`]);
    /// `None` without one.
    pub fn cache_statistics(&self) -> Option<RedisCacheStatistics> {
        let gate = self.cache.as_ref()?;
        let statistics = self.connection.cache_statistics().unwrap_or_default();
        Some(RedisCacheStatistics {
            hits: statistics.hit,
            misses: statistics.miss,
            invalidations: statistics.invalidate,
            bypassed: gate.bypassed(),
        })
    }

    /// The prefix of record keys. Default: `session:`.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of the record of a session without `max_age`, in whole
    /// seconds. Default: one day. Zero is refused when the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.times.default_ttl = ttl;
        self
    }

    /// Whether a read counts as activity: the record's TTL starts again and
    /// its last-activity time moves, without rewriting the data, for sliding
    /// expiry in read-mostly apps; a session with a max age also gets its
    /// cookie again, with the new `Max-Age` and `Expires`. Costs a script
    /// instead of a plain `HGETALL` on each load. Default: `false`.
    #[must_use]
    pub fn with_ttl_refresh_on_read(mut self, refresh: bool) -> Self {
        self.refresh_ttl_on_read = refresh;
        self
    }

    /// How long one command may take before the request gets a 503.
    /// Default: one second. Zero is refused when the layer is built.
    ///
    /// The connections [`RedisStorage::connect`] makes also give up on a
    /// reply after one second, so this can only shorten the wait on them; to wait
    /// longer, make the connection with a longer response timeout and pass
    /// it to [`RedisStorage::from_connection`].
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.times.command_timeout = timeout;
        self
    }

    async fn load_record(&self, id: &SessionId, now: u64) -> Result<Option<Loaded>, StorageError> {
        let key = store_key(&self.prefix, id);
        let mut connection = self.connection.clone();
        let fields: Vec<(String, String)> = if self.refresh_ttl_on_read {
            let mut invocation = self.scripts.load_and_refresh.key(&key);
            invocation.arg(now);
            timed(
                self.times.command_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?
        } else {
            let mut command = redis::cmd("HGETALL");
            command.arg(&key);
            if self.cache.as_ref().is_some_and(|gate| gate.may_cache(&key)) {
                command.set_cache_config(CommandCacheConfig::new().set_enable_cache(true));
            }
            timed(
                self.times.command_timeout,
                command.query_async(&mut connection),
            )
            .await?
        };
        #[cfg(feature = "metrics")]
        if let Some(statistics) = self.cache_statistics() {
            crate::metrics::cache_counts(&statistics);
        }
        if fields.is_empty() {
            return Ok(None);
        }
        let Some(mut record) = decode(fields) else {
            tracing::warn!("malformed session record in Redis; starting a new session");
            return Ok(None);
        };
        let loaded = if self.refresh_ttl_on_read {
            record.updated = now;
            Loaded::new(record).extended()
        } else {
            Loaded::new(record)
        };
        Ok(Some(loaded))
    }

    fn ttl(&self, cx: &StorageContext<'_>) -> u64 {
        cx.record_ttl(self.times.default_ttl.as_secs())
    }

    /// Adds the record `key` to the set of `user`'s sessions. The set lives
    /// as long as the longest record may; keys of records gone are dropped
    /// from it whenever it grows to a multiple of [`USER_INDEX_PRUNE_AT`](crate::storage::server::USER_INDEX_PRUNE_AT),
    /// so a login costs a fixed number of round trips whatever the user's
    /// history.
    async fn index(&self, kind: Option<&str>, user: &str, key: &str) -> Result<(), StorageError> {
        let index = user_key(&self.prefix, kind, user);
        let mut connection = self.connection.clone();
        let (size,): (usize,) = timed(
            self.times.command_timeout,
            redis::pipe()
                .cmd("SADD")
                .arg(&index)
                .arg(key)
                .ignore()
                .cmd("EXPIRE")
                .arg(&index)
                .arg(crate::record::MAX_STORE_TTL)
                .ignore()
                .cmd("SCARD")
                .arg(&index)
                .query_async(&mut connection),
        )
        .await?;
        if prune_due(size) {
            let members = self.members(&index).await?;
            let exists: Vec<bool> = self
                .each(&members, |key| {
                    let mut command = redis::cmd("EXISTS");
                    command.arg(key);
                    command
                })
                .await?;
            let gone = members.iter().zip(exists).filter(|(_, exists)| !exists);
            self.unindex(&index, gone.map(|(key, _)| key)).await?;
        }
        Ok(())
    }

    /// Takes the record keys `keys` out of the set `index`; how many were
    /// in it.
    async fn unindex<'k>(
        &self,
        index: &str,
        keys: impl IntoIterator<Item = &'k String>,
    ) -> Result<usize, StorageError> {
        let mut command = redis::cmd("SREM");
        command.arg(index);
        let mut any = false;
        for key in keys {
            command.arg(key);
            any = true;
        }
        if !any {
            return Ok(0);
        }
        let mut connection = self.connection.clone();
        timed(
            self.times.command_timeout,
            command.query_async(&mut connection),
        )
        .await
    }

    /// Moves the record key `key` from the set `from` to the set `to` (of
    /// one user, so in one slot), atomically; whether it was in `from`.
    async fn moved(&self, from: &str, to: &str, key: &str) -> Result<bool, StorageError> {
        let mut connection = self.connection.clone();
        timed(
            self.times.command_timeout,
            redis::cmd("SMOVE")
                .arg(from)
                .arg(to)
                .arg(key)
                .query_async(&mut connection),
        )
        .await
    }

    /// The answers to one single-key command per key, all sent at once: a
    /// bounded wait however many keys, on a cluster too, where the keys
    /// live in different slots and one pipeline cannot reach them.
    async fn each<T: FromRedisValue>(
        &self,
        keys: &[String],
        command: impl Fn(&str) -> redis::Cmd,
    ) -> Result<Vec<T>, StorageError> {
        let commands = keys.iter().map(|key| {
            let command = command(key);
            let mut connection = self.connection.clone();
            async move { command.query_async::<T>(&mut connection).await }
        });
        timed(
            self.times.command_timeout,
            futures_util::future::try_join_all(commands),
        )
        .await
    }

    /// The record keys in the set `index`.
    async fn members(&self, index: &str) -> Result<Vec<String>, StorageError> {
        let mut connection = self.connection.clone();
        timed(
            self.times.command_timeout,
            redis::cmd("SMEMBERS")
                .arg(index)
                .query_async(&mut connection),
        )
        .await
    }

    /// Learns how far Redis' clock is from the app's, with one `TIME`.
    async fn read_clock(&self) -> Result<(), StorageError> {
        let mut connection = self.connection.clone();
        let sent = micros_since_epoch();
        let (seconds, micros): (i64, i64) = timed(
            self.times.command_timeout,
            redis::cmd("TIME").query_async(&mut connection),
        )
        .await?;
        let received = micros_since_epoch();
        self.clock
            .learn(seconds * 1_000_000 + micros, sent, received);
        Ok(())
    }

    pub(crate) fn step_clock(&self, micros: i64) {
        self.clock.step(micros);
    }

    /// Runs the write script `script` on `key` with the arguments `args`
    /// puts after its deadline, and returns its answer. Redis refuses it
    /// once it is too late for the request to hear the answer (see the
    /// module's documentation): a timeout, like no answer at all.
    async fn write<T: FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<T, StorageError> {
        let timeout = self.times.command_timeout;
        let budget = i64::try_from((timeout - timeout / 4).as_micros()).unwrap_or(i64::MAX);
        let started = micros_since_epoch();
        let attempts = async {
            let mut corrected = false;
            loop {
                let mut invocation = script.key(key);
                invocation.arg(self.clock.deadline(started, budget));
                args(&mut invocation);
                let sent = micros_since_epoch();
                let mut connection = self.connection.clone();
                let answer: redis::Value = invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(StorageError::unavailable)?;
                let redis::Value::Int(late) = answer else {
                    return T::from_redis_value(answer).map_err(StorageError::unavailable);
                };
                if late >= 0 {
                    return T::from_redis_value(answer).map_err(StorageError::unavailable);
                }
                let received = micros_since_epoch();
                if corrected || received - started >= budget {
                    return Err(StorageError::Timeout(timeout));
                }
                // Refused as late when it was not, by the app's watch: its
                // picture of Redis' clock is off (a clock stepped since it
                // was read). Read it from the answer, and send again.
                tracing::warn!("Redis' clock moved against the app's; write deadlines follow it");
                self.clock.learn(-late, sent, received);
                corrected = true;
            }
        };
        let answer = tokio::time::timeout(timeout, attempts)
            .await
            .map_err(|_| StorageError::Timeout(timeout));
        self.wrote(key);
        answer?
    }

    /// Keeps this instance's cache from serving `key` until its own write's
    /// invalidation is surely applied.
    fn wrote(&self, key: &str) {
        if let Some(gate) = &self.cache {
            gate.wrote(key);
        }
    }

    /// The connection, to share with another storage (such as
    /// `aiohttp::AiohttpRedisStorage::from_connection`, with the `aiohttp-compat`
    /// feature).
    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }
}

/// The three sets that make the sessions of one user (and kind), in one
/// cluster slot: the index's own hash tag when it has one (from the key
/// prefix), else the whole index key as the tag of the other two.
///
/// - `index`: the record keys of the user's sessions;
/// - `pending`: keys a deletion has taken out of the index and whose
///   records it is deleting;
/// - `revoking`: keys a revocation has taken out of both and whose records
///   it is deleting.
///
/// A key moves from one to the next in one `SMOVE` or script, so it is in
/// exactly one of them while its record may live, and which one says who
/// ended it; no pruning ever takes a key out of `pending` or `revoking`
/// while its record lives.
struct UserSets {
    index: String,
    pending: String,
    revoking: String,
}

impl UserSets {
    fn new(prefix: &str, kind: Option<&str>, user: &str) -> Self {
        let index = user_key(prefix, kind, user);
        let beside = |suffix: &str| {
            if hash_tag(&index).is_some() {
                format!("{index}{suffix}")
            } else {
                format!("{{{index}}}{suffix}")
            }
        };
        Self {
            pending: beside(":p"),
            revoking: beside(":r"),
            index,
        }
    }
}

/// The hash tag Redis Cluster places `key` by, if it has one: what lies
/// between its first `{` and the first `}` after it, when not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// `KEYS[1]` a revocation mark, `ARGV[1]` now in microseconds: raises the
/// mark to one more than it was and at least to now (integers up to 2^53
/// are exact in Lua's numbers; microseconds reach that in 2255).
const RAISE_MARK: &str = r"
local mark = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local raised = math.max(mark + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', raised))
return raised
";

/// The revocation counts of [`Revocations::redis`](crate::Revocations::redis):
/// one integer per revoked user (and kind) under `prefix` + `revoked:` +
/// base64url of SHA-256 of its [`user_scope`](crate::kind::user_scope).
pub(crate) struct RedisCounts {
    connection: RedisConnection,
    prefix: String,
    timeout: Duration,
    cache: Option<Arc<CacheGate>>,
}

impl RedisCounts {
    fn key(&self, scope: &str) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use sha2::{Digest, Sha256};

        let mut key = format!("{}revoked:", self.prefix);
        URL_SAFE_NO_PAD.encode_string(Sha256::digest(scope.as_bytes()), &mut key);
        key
    }

    /// The mark of `scope`, 0 if it has none: one `GET`, or none when
    /// `cached` and the local cache holds it.
    pub(crate) async fn get(&self, scope: &str, cached: bool) -> Result<u64, StorageError> {
        let key = self.key(scope);
        let mut command = redis::cmd("GET");
        command.arg(&key);
        if cached && self.cache.as_ref().is_some_and(|gate| gate.may_cache(&key)) {
            command.set_cache_config(CommandCacheConfig::new().set_enable_cache(true));
        }
        let mut connection = self.connection.clone();
        let count: Option<u64> = timed(self.timeout, command.query_async(&mut connection)).await?;
        Ok(count.unwrap_or(0))
    }

    /// Raises the mark of `scope` to one more than it was and at least to
    /// `now` (microseconds), atomically. The key never expires.
    pub(crate) async fn raise(&self, scope: &str, now: u64) -> Result<(), StorageError> {
        let key = self.key(scope);
        let mut connection = self.connection.clone();
        let incremented = timed(
            self.timeout,
            redis::Script::new(RAISE_MARK)
                .key(&key)
                .arg(now)
                .invoke_async::<u64>(&mut connection),
        )
        .await;
        if let Some(gate) = &self.cache {
            gate.wrote(&key);
        }
        incremented.map(drop)
    }
}

impl RedisCounts {
    /// Marks under `prefix` over `connection`, without a cache.
    #[cfg(feature = "aiohttp-compat")]
    pub(crate) fn uncached(connection: RedisConnection, prefix: String, timeout: Duration) -> Self {
        Self {
            connection,
            prefix,
            timeout,
            cache: None,
        }
    }
}

impl RedisStorage {
    /// Revocation counts over this storage's connection, prefix, timeout
    /// and cache.
    pub(crate) fn counts(&self) -> RedisCounts {
        RedisCounts {
            connection: self.connection.clone(),
            prefix: self.prefix.clone(),
            timeout: self.times.command_timeout,
            cache: self.cache.clone(),
        }
    }
}

/// The hash fields of a record, for `HSET`, with the data keys in `keys`
/// (all of them when `keys` is `None`).
pub(crate) fn encode<'a>(
    record: &SessionRecord,
    ttl: u64,
    keys: Option<impl Iterator<Item = &'a str>>,
) -> Result<Vec<String>, StorageError> {
    let mut args = vec![
        "c".to_owned(),
        record.created.to_string(),
        "u".to_owned(),
        record.updated.to_string(),
        "t".to_owned(),
        ttl.to_string(),
    ];
    match record.max_age {
        MaxAge::Layer => {}
        MaxAge::BrowserSession => {
            args.push(OWN_MAX_AGE.to_owned());
            args.push(BROWSER_SESSION.to_owned());
        }
        MaxAge::Seconds(seconds) => {
            args.push(OWN_MAX_AGE.to_owned());
            args.push(seconds.to_string());
        }
    }
    if let Some(at) = record.expires_at {
        args.push(EXPIRES_AT.to_owned());
        args.push(at.to_string());
    }
    if let Some(kind) = &record.kind {
        args.push(KIND.to_owned());
        args.push(kind.clone());
    }
    if let Some(user) = &record.user {
        args.push(USER.to_owned());
        args.push(user.clone());
    }
    let mut push = |key: &str, value: &serde_json::Value| -> Result<(), StorageError> {
        args.push(format!("{DATA_PREFIX}{key}"));
        args.push(serde_json::to_string(value).map_err(StorageError::Serialize)?);
        Ok(())
    };
    match keys {
        Some(keys) => {
            for key in keys {
                if let Some(value) = record.data.get(key) {
                    push(key, value)?;
                }
            }
        }
        None => {
            for (key, value) in &record.data {
                push(key, value)?;
            }
        }
    }
    Ok(args)
}

pub(crate) fn decode(fields: Vec<(String, String)>) -> Option<SessionRecord> {
    let mut record = SessionRecord::new(0, MaxAge::Layer);
    let mut has_created = false;
    for (field, value) in fields {
        if let Some(key) = field.strip_prefix(DATA_PREFIX) {
            record
                .data
                .insert(key.to_owned(), serde_json::from_str(&value).ok()?);
        } else {
            match field.as_str() {
                "c" => {
                    record.created = value.parse().ok()?;
                    has_created = true;
                }
                "u" => record.updated = value.parse().ok()?,
                // Records of earlier releases keep the layer's max age of
                // the time in `a`: the current setting replaces it.
                OWN_MAX_AGE if value == BROWSER_SESSION => {
                    record.max_age = MaxAge::BrowserSession;
                }
                OWN_MAX_AGE => record.max_age = MaxAge::Seconds(value.parse().ok()?),
                EXPIRES_AT => record.expires_at = Some(value.parse().ok()?),
                KIND => record.kind = Some(value),
                USER => record.user = Some(value),
                _ => {}
            }
        }
    }
    has_created.then_some(record)
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("connection", &self.connection)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.times.default_ttl)
            .field("refresh_ttl_on_read", &self.refresh_ttl_on_read)
            .field("command_timeout", &self.times.command_timeout)
            .field("cache", &self.cache.is_some())
            .finish()
    }
}

impl ServerStorage for RedisStorage {
    async fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        self.load_record(id, cx.now).await
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let ttl = self.ttl(cx);
        let fields = encode(record, ttl, None::<std::iter::Empty<&str>>)?;
        let id = create_with_fresh_id("Redis", |id| {
            let key = store_key(&self.prefix, &id);
            let fields = &fields;
            async move {
                let created: i64 = self
                    .write(&self.scripts.create, &key, |invocation| {
                        invocation.arg(ttl).arg(fields);
                    })
                    .await?;
                Ok(created == 1)
            }
        })
        .await?;
        if let Some(user) = &record.user
            && let Err(error) = self
                .index(record.kind.as_deref(), user, &store_key(&self.prefix, &id))
                .await
        {
            // No cookie goes out: take the record back rather than leave a
            // session its user's list would not show.
            let _ = ServerStorage::delete(self, &id, cx).await;
            return Err(error);
        }
        Ok(id)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // A `}` outside a hash tag would give a user's index and its
        // revocation set different slots on a cluster.
        if hash_tag(&self.prefix).is_none() && self.prefix.contains('}') {
            return Err(ConfigError::StorageSetting {
                setting: "Redis key prefix",
                problem: format!(
                    "{:?} has a `}}` that closes no hash tag; use a prefix without braces, \
                     or with one whole tag such as `{{sessions}}:`",
                    self.prefix
                ),
            });
        }
        self.times
            .validate("the Redis store's default TTL", "the Redis command timeout")
    }

    async fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Vec<ActiveSession>, StorageError> {
        let sets = UserSets::new(&self.prefix, cx.kind, user);
        // The index, and the keys whose deletion or revocation is under
        // way: a session is listed until its record is surely gone.
        let mut connection = self.connection.clone();
        let keys: Vec<String> = timed(
            self.times.command_timeout,
            redis::cmd("SUNION")
                .arg(&sets.index)
                .arg(&sets.pending)
                .arg(&sets.revoking)
                .query_async(&mut connection),
        )
        .await?;
        let records: Vec<Vec<(String, String)>> = self
            .each(&keys, |key| {
                let mut command = redis::cmd("HGETALL");
                command.arg(key);
                command
            })
            .await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (key, fields) in keys.iter().zip(records) {
            match decode(fields) {
                Some(record)
                    if record.user.as_deref() == Some(user)
                        && record.kind.as_deref() == cx.kind =>
                {
                    let handle = key.strip_prefix(&self.prefix).unwrap_or(key).to_owned();
                    live.push(ActiveSession::of(handle, &record));
                }
                // Expired, deleted or replaced: no longer the user's.
                _ => gone.push(key),
            }
        }
        self.unindex(&sets.index, gone.iter().copied()).await?;
        self.unindex(&sets.pending, gone.iter().copied()).await?;
        self.unindex(&sets.revoking, gone).await?;
        Ok(live)
    }

    /// Moves the record's key from the user's index to its revocation set,
    /// deletes the record, then lets go of the key: once out of the index,
    /// a renewal of the record no longer carries its data to a new id (see
    /// [`ServerStorage::delete`] here), exactly as after a revocation of
    /// the whole user; if the deletion fails, the key stays in the
    /// revocation set, listed, and the user's next revocation deletes it.
    ///
    /// Against a renewal of the same session running at once it is
    /// best-effort: if the renewal took the key out of the index first,
    /// the session lives on under its new id and this answers `false`
    /// (list again and revoke the new handle).
    async fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        // A handle is what `sessions_of` listed: the key's base64, nothing
        // that could reach another key.
        if handle.len() != 43
            || !handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(false);
        }
        let key = format!("{}{handle}", self.prefix);
        let sets = UserSets::new(&self.prefix, cx.kind, user);
        if !self.moved(&sets.index, &sets.revoking, &key).await? {
            // Not the user's, or being ended already.
            return Ok(false);
        }
        let mut connection = self.connection.clone();
        let deleted = timed(
            self.times.command_timeout,
            self.scripts
                .delete_if_bound
                .key(&key)
                .arg(user)
                .invoke_async(&mut connection),
        )
        .await;
        self.wrote(&key);
        let deleted: i64 = deleted?;
        self.unindex(&sets.revoking, [&key]).await?;
        Ok(deleted > 0)
    }

    /// Ends every session of `user`, in three steps of one round trip each:
    ///
    /// 1. one script moves the keys of the user's index, and of the
    ///    deletions under way, into its revocation set, atomically (the
    ///    instant the revocation takes effect);
    /// 2. every record named there is deleted, all at once;
    /// 3. the revocation set lets go of the keys whose records are deleted.
    ///
    /// Why no session bound before step 1 survives, whatever runs
    /// meanwhile: a record is indexed before its cookie is ever sent (see
    /// `create`), and its key stays in one of the user's sets (see
    /// `UserSets`) until its record is deleted, so every record of the
    /// user a client holds is taken at step 1 and deleted at step 2. An
    /// update never brings a deleted record back (the update script needs
    /// it to exist). What could escape is a renewal, which copies the
    /// record to a new id: but a renewal deletes the old record after
    /// creating the new one, and that deletion answers "ended meanwhile"
    /// unless it moved the old key out of the index itself; the layer then
    /// deletes the new record, which no cookie ever named. So either the
    /// renewal moved the old key before step 1, and its new record, indexed
    /// before that, is taken at step 1; or it comes after step 1 and ends
    /// its own copy. A session bound after step 1 lives, in an index the
    /// revocation no longer reads. If step 2 fails for some records, their
    /// keys stay in the revocation set, still listed, and the next
    /// revocation of the user deletes them.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        let sets = UserSets::new(&self.prefix, cx.kind, user);
        let mut connection = self.connection.clone();
        let keys: Vec<String> = timed(
            self.times.command_timeout,
            self.scripts
                .revoke
                .key(&sets.index)
                .key(&sets.pending)
                .key(&sets.revoking)
                .arg(crate::record::MAX_STORE_TTL)
                .invoke_async(&mut connection),
        )
        .await?;
        let deletions = keys.iter().map(|key| {
            let mut connection = self.connection.clone();
            async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<usize>(&mut connection)
                    .await
            }
        });
        // Every deletion is sent and heard, even after one fails: a
        // failure leaves only its own key behind.
        let outcomes = tokio::time::timeout(
            self.times.command_timeout,
            futures_util::future::join_all(deletions),
        )
        .await;
        for key in &keys {
            self.wrote(key);
        }
        let outcomes = outcomes.map_err(|_| StorageError::Timeout(self.times.command_timeout))?;
        let mut revoked = 0;
        let mut done = Vec::new();
        let mut failure = None;
        for (key, outcome) in keys.iter().zip(outcomes) {
            match outcome {
                Ok(deleted) => {
                    revoked += deleted;
                    done.push(key);
                }
                Err(error) => failure = Some(error),
            }
        }
        self.unindex(&sets.revoking, done).await?;
        match failure {
            Some(error) => Err(StorageError::unavailable(error)),
            None => Ok(Some(revoked)),
        }
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        let ttl = self.ttl(cx);
        let full = changes.is_full_rewrite();
        let fields = if full {
            encode(record, ttl, None::<std::iter::Empty<&str>>)?
        } else {
            encode(record, ttl, Some(changes.set_keys()))?
        };
        let mut removed: Vec<String> = if full {
            Vec::new()
        } else {
            changes
                .removed_keys()
                .map(|key| format!("{DATA_PREFIX}{key}"))
                .collect()
        };
        if record.max_age.is_layer() && !full {
            removed.push(OWN_MAX_AGE.to_owned());
        }
        if record.expires_at.is_none() && !full {
            removed.push(EXPIRES_AT.to_owned());
        }
        let key = store_key(&self.prefix, id);
        let updated: i64 = self
            .write(&self.scripts.update, &key, |invocation| {
                invocation
                    .arg(ttl)
                    .arg(if full { "1" } else { "0" })
                    .arg(fields.len())
                    .arg(&fields)
                    .arg(&removed);
            })
            .await?;
        Ok(updated == 1)
    }

    /// Deletes the record. A record bound to a user is first moved from
    /// its user's index to the user's deletions under way (see
    /// `UserSets`) and let go of once deleted; the answer is then whether
    /// that move found it in the index: a record a revocation took (see
    /// [`ServerStorage::revoke_user`] here) counts as ended already, so a
    /// renewal that raced the revocation does not carry it to a new id.
    /// An unbound record is deleted in one round trip; a bound one in
    /// four: the first answers its user, then its key moves, the record is
    /// deleted, and the key is let go of.
    async fn delete(&self, id: &SessionId, _cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let key = store_key(&self.prefix, id);
        let (deleted, user, kind): (i64, String, String) = self
            .write(&self.scripts.delete, &key, |invocation| {
                invocation.arg("0");
            })
            .await?;
        if user.is_empty() {
            return Ok(deleted > 0);
        }
        let kind = (!kind.is_empty()).then_some(kind.as_str());
        let sets = UserSets::new(&self.prefix, kind, &user);
        let indexed = self.moved(&sets.index, &sets.pending, &key).await?;
        let (deleted, _, _): (i64, String, String) = self
            .write(&self.scripts.delete, &key, |invocation| {
                invocation.arg("1");
            })
            .await?;
        self.unindex(&sets.pending, [&key]).await?;
        Ok(indexed && deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_hash_fields() {
        let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
        record.updated = 20;
        record.expires_at = Some(1_000);
        record.kind = Some("admin".into());
        record.data.insert("user".into(), "ann".into());
        record
            .data
            .insert("d:odd".into(), serde_json::json!({"nested": [1, 2]}));
        let fields = encode(&record, 60, None::<std::iter::Empty<&str>>).unwrap();
        let pairs: Vec<(String, String)> = fields
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        assert!(pairs.contains(&("t".to_owned(), "60".to_owned())));
        assert_eq!(decode(pairs), Some(record.clone()));
        record.max_age = MaxAge::BrowserSession;
        let fields = encode(&record, 60, None::<std::iter::Empty<&str>>).unwrap();
        let pairs = fields
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        assert_eq!(decode(pairs), Some(record));
    }

    #[test]
    fn a_max_age_of_an_earlier_release_follows_the_layer() {
        let fields = vec![
            ("c".to_owned(), "10".to_owned()),
            ("u".to_owned(), "20".to_owned()),
            ("a".to_owned(), "3600".to_owned()),
        ];
        let record = decode(fields).expect("an old record still loads");
        assert_eq!(record.max_age, MaxAge::Layer);
    }

    #[test]
    fn partial_encoding_writes_only_the_changed_keys() {
        let mut record = SessionRecord::new(10, MaxAge::Layer);
        record.data.insert("a".into(), 1.into());
        record.data.insert("b".into(), 2.into());
        let fields = encode(&record, 5, Some(["b"].into_iter())).unwrap();
        assert!(fields.contains(&"d:b".to_owned()));
        assert!(!fields.contains(&"d:a".to_owned()));
        assert!(!fields.contains(&"m".to_owned()), "no max age field");
    }

    #[test]
    fn malformed_records_are_refused() {
        assert_eq!(
            decode(vec![("d:a".into(), "1".into())]),
            None,
            "no creation time"
        );
        assert_eq!(decode(vec![("c".into(), "x".into())]), None);
        assert_eq!(
            decode(vec![("c".into(), "1".into()), ("d:a".into(), "{".into())]),
            None
        );
    }
}
