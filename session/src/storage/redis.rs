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
//! | `a` | the session's max age in seconds (absent: none) |
//! | `t` | the TTL the record was given, in seconds |
//! | `d:<key>` | the JSON value of session key `<key>` |
//!
//! Every operation touches one key, so it works the same on a cluster.
//! Loading is one `HGETALL` (or one script with TTL refresh on read);
//! saving is one `EVALSHA` of a script that checks the record exists (or
//! does not, for a new one), sets the changed fields, deletes the removed
//! ones and sets the expiry, atomically.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_TTL, check_positive,
    check_timeout, create_with_fresh_id, store_key, timed,
};
use super::{Loaded, ServerStorage, StorageContext};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};

const DATA_PREFIX: &str = "d:";

/// A script with `chunks(command, first, last)`: runs `command` on `KEYS[1]`
/// with `ARGV[first..=last]`, at most 1000 arguments at a time, since Lua's
/// `unpack` fails beyond about 8000 (a session of a few thousand keys).
/// Chunks of 1000 keep field/value pairs whole.
macro_rules! script_with_chunks {
    ($body:literal) => {
        concat!(
            r"
local function chunks(command, first, last)
  for i = first, last, 1000 do
    redis.call(command, KEYS[1], unpack(ARGV, i, math.min(i + 999, last)))
  end
end
",
            $body
        )
    };
}

/// `KEYS[1]` the record; `ARGV[1]` the TTL, then field/value pairs.
const CREATE: &str = script_with_chunks!(
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
chunks('HSET', 2, #ARGV)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"
);

/// `KEYS[1]` the record; `ARGV[1]` the TTL, `ARGV[2]` '1' to replace the
/// whole record, `ARGV[3]` how many field/value arguments follow, then
/// those, then the fields to delete. For a merge, `EXPIRE` both checks that
/// the record exists (it answers 0 otherwise) and sets the new TTL, which
/// `HSET` keeps.
const UPDATE: &str = script_with_chunks!(
    r"
local n = tonumber(ARGV[3])
if ARGV[2] == '1' then
  if redis.call('DEL', KEYS[1]) == 0 then return 0 end
  chunks('HSET', 4, 3 + n)
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
chunks('HSET', 4, 3 + n)
if #ARGV > 3 + n then chunks('HDEL', 4 + n, #ARGV) end
return 1
"
);

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

/// A connection to Redis: a standalone server or a cluster. Both reconnect
/// by themselves after a failure.
#[derive(Clone)]
pub enum RedisConnection {
    /// A standalone server, through a [`ConnectionManager`].
    Standalone(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        Self::Standalone(connection)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        Self::Cluster(connection)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

struct Scripts {
    create: Script,
    update: Script,
    load_and_refresh: Script,
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
    default_ttl: Duration,
    refresh_ttl_on_read: bool,
    command_timeout: Duration,
}

impl RedisStorage {
    /// Connects to a standalone server at `url` (`redis://HOST:PORT/DB`),
    /// within two seconds, with a one-second command timeout.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let client = redis::Client::open(url).map_err(StorageError::unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let manager = tokio::time::timeout(
            DEFAULT_CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
        .map_err(StorageError::unavailable)?;
        Ok(Self::from_connection(manager))
    }

    /// Connects to a Redis Cluster through `nodes` (`redis://HOST:PORT`
    /// seed nodes; the others are discovered).
    pub async fn connect_cluster<N: AsRef<str>>(
        nodes: impl IntoIterator<Item = N>,
    ) -> Result<Self, StorageError> {
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(DEFAULT_CONNECT_TIMEOUT)
            .response_timeout(DEFAULT_COMMAND_TIMEOUT)
            .retries(1)
            .build()
            .map_err(StorageError::unavailable)?;
        let connection =
            tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
                .map_err(StorageError::unavailable)?;
        Ok(Self::from_connection(connection))
    }

    /// A storage over a connection the app already has: a
    /// [`ConnectionManager`] or a [`ClusterConnection`].
    pub fn from_connection(connection: impl Into<RedisConnection>) -> Self {
        Self {
            connection: connection.into(),
            scripts: Arc::new(Scripts {
                create: Script::new(CREATE),
                update: Script::new(UPDATE),
                load_and_refresh: Script::new(LOAD_AND_REFRESH),
            }),
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: DEFAULT_TTL,
            refresh_ttl_on_read: false,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
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
        self.default_ttl = ttl;
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
    /// The connections [`RedisStorage::connect`] and
    /// [`RedisStorage::connect_cluster`] make also give up on a reply after
    /// one second, so this can only shorten the wait on them; to wait
    /// longer, make the connection with a longer response timeout and pass
    /// it to [`RedisStorage::from_connection`].
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    async fn load_record(&self, id: &SessionId, now: u64) -> Result<Option<Loaded>, StorageError> {
        let key = store_key(&self.prefix, id);
        let mut connection = self.connection.clone();
        let fields: Vec<(String, String)> = if self.refresh_ttl_on_read {
            let mut invocation = self.scripts.load_and_refresh.key(&key);
            invocation.arg(now);
            timed(
                self.command_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?
        } else {
            timed(
                self.command_timeout,
                redis::cmd("HGETALL").arg(&key).query_async(&mut connection),
            )
            .await?
        };
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

    fn ttl(&self, record: &SessionRecord) -> u64 {
        record.ttl(self.default_ttl.as_secs())
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
    if let Some(max_age) = record.max_age {
        args.push("a".to_owned());
        args.push(max_age.to_string());
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
    let mut record = SessionRecord::new(0, None);
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
                "a" => record.max_age = Some(value.parse().ok()?),
                _ => {}
            }
        }
    }
    has_created.then_some(record)
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            RedisConnection::Standalone(_) => "standalone",
            RedisConnection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStorage")
            .field("connection", &kind)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("refresh_ttl_on_read", &self.refresh_ttl_on_read)
            .field("command_timeout", &self.command_timeout)
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
        _cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        let ttl = self.ttl(record);
        let fields = encode(record, ttl, None::<std::iter::Empty<&str>>)?;
        create_with_fresh_id("Redis", |id| {
            let mut invocation = self.scripts.create.key(store_key(&self.prefix, &id));
            invocation.arg(ttl).arg(&fields);
            let mut connection = self.connection.clone();
            async move {
                let created: i64 = timed(
                    self.command_timeout,
                    invocation.invoke_async(&mut connection),
                )
                .await?;
                Ok(created == 1)
            }
        })
        .await
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        _cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        let ttl = self.ttl(record);
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
        if record.max_age.is_none() && !full {
            removed.push("a".to_owned());
        }
        let mut invocation = self.scripts.update.key(store_key(&self.prefix, id));
        invocation
            .arg(ttl)
            .arg(if full { "1" } else { "0" })
            .arg(fields.len())
            .arg(&fields)
            .arg(&removed);
        let mut connection = self.connection.clone();
        let updated: i64 = timed(
            self.command_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(updated == 1)
    }

    async fn delete(&self, id: &SessionId, _cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        let mut connection = self.connection.clone();
        let deleted: i64 = timed(
            self.command_timeout,
            redis::cmd("DEL")
                .arg(store_key(&self.prefix, id))
                .query_async(&mut connection),
        )
        .await?;
        Ok(deleted > 0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_positive("the Redis store's default TTL", self.default_ttl)?;
        check_timeout("the Redis command timeout", self.command_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_hash_fields() {
        let mut record = SessionRecord::new(10, Some(60));
        record.updated = 20;
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
        assert_eq!(decode(pairs), Some(record));
    }

    #[test]
    fn partial_encoding_writes_only_the_changed_keys() {
        let mut record = SessionRecord::new(10, None);
        record.data.insert("a".into(), 1.into());
        record.data.insert("b".into(), 2.into());
        let fields = encode(&record, 5, Some(["b"].into_iter())).unwrap();
        assert!(fields.contains(&"d:b".to_owned()));
        assert!(!fields.contains(&"d:a".to_owned()));
        assert!(!fields.contains(&"a".to_owned()), "no max age field");
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
