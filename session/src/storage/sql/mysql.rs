//! Sessions in MySQL or MariaDB, on a sqlx pool.
//!
//! # Table
//!
//! One row per session, keyed by the url-safe base64 of SHA-256 of its id
//! (a dump of the table hands out no usable cookie):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS typed_sessions (
//!     id VARBINARY(64) NOT NULL PRIMARY KEY,
//!     user_id VARBINARY(1024) NULL,
//!     expires_at BIGINT NOT NULL,
//!     record LONGTEXT CHARACTER SET utf8mb4 NOT NULL,
//!     INDEX typed_sessions_expires_at (expires_at),
//!     INDEX typed_sessions_user (user_id)
//! ) ENGINE = InnoDB;
//! ```
//!
//! `id` and `user_id` are binary strings, so they compare byte for byte:
//! under MySQL's text collations `Ann` would equal `ann`, and `ann` would
//! equal `ann ` (trailing spaces do not count), and one user's listing or
//! revocation would reach another's sessions. `expires_at` is in seconds
//! since the Unix epoch from the database's `UNIX_TIMESTAMP()`, so the
//! database's clock decides when a row is dead.
//!
//! `record` holds the record's JSON with each value of the session map
//! kept as the JSON text of the value, a string
//! (`{"session":{"cart":"{\"items\":[1]}"}}`). That is what lets a save
//! merge in one statement: `JSON_MERGE_PATCH` (RFC 7396) replaces a key
//! whose new value is a string, and removes one whose new value is
//! `null`; on the values themselves it would merge objects, drop the
//! `null`s inside them, and give up past 32 levels of nesting (MariaDB),
//! losing the whole map. As strings, every value is replaced whole,
//! exactly as written, and the database never parses one.
//!
//! A load is one `SELECT` of a live row, a new session one `INSERT`, and a
//! save one `UPDATE … WHERE expires_at > UNIX_TIMESTAMP()` that patches the
//! changed keys into the stored map, so concurrent saves of different keys
//! are both kept and a row that expired or was deleted is never brought
//! back. MariaDB's patch costs grow with the changed keys times the stored
//! ones (a second for 2,000 by 2,000): a save that changes many keys of a
//! wide session reads the row with `SELECT … FOR UPDATE` and writes the
//! merge back in one transaction instead, with the same guarantees.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};

use super::{
    DEFAULT_TABLE, DELETE_BATCH, StatementTimeout, check_identifier, decode, delete_in_batches,
    spawn_expired_deletion, to_i64,
};
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, StoreTimes, create_with_fresh_id, handle,
    timed,
};
use crate::storage::{ActiveSession, Loaded, ServerStorage, StorageContext};

/// The store's name in messages.
const NAME: &str = "MySQL";

/// The connections [`MySqlStorage::connect`] keeps open at most.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The changed keys times the session's keys past which a save merges in
/// a transaction rather than with `JSON_MERGE_PATCH`: about 50 ms of
/// MariaDB's time (0.2 µs a pair, measured on MariaDB 10.11).
const MAX_PATCH_WORK: usize = 250_000;

/// The condition that a row's record is of the session kind given as the
/// next parameter (`NULL` for the main kind, which the record leaves out);
/// compared as bytes, as the ids are. A row whose record is not JSON (MySQL
/// would fail the statement on it, for good) is of no kind.
const SAME_KIND: &str = "CAST(CASE WHEN JSON_VALID(record) \
     THEN JSON_UNQUOTE(JSON_EXTRACT(record, '$.kind')) END AS BINARY) <=> CAST(? AS BINARY)";

/// The statements of one table, made once when it is named (identifiers
/// cannot be parameters; the name is checked before they run). MySQL's
/// parameters are positional: each comment gives the order they are bound
/// in.
struct MySqlStatements {
    /// The table's name as the statements spell it, quoted.
    qualified: String,
    /// The record of the live row: handle.
    load: String,
    /// A new row: handle, user, TTL, record. A handle already there is a
    /// duplicate-key error (read as "taken").
    insert: String,
    /// The whole record of a live row: user, TTL, record, handle.
    write: String,
    /// Patches a request's changes into a live row's map: user, TTL, the
    /// record with an empty map, the patch (set keys as their JSON text,
    /// removed ones `null`), handle. A row whose record is not JSON, which
    /// no load returns, is left alone (the save reads as "ended").
    merge: String,
    /// The record of the live row, locked until the transaction ends:
    /// handle.
    load_for_update: String,
    /// Handle.
    delete: String,
    /// A batch of expired rows: at most this many.
    delete_expired: String,
    /// Handles and records of a user's live rows: user, kind.
    sessions_of: String,
    /// The row if bound to the user and of the kind: handle, user, kind.
    revoke_session: String,
    /// A user's rows of a kind: user, kind.
    revoke_user: String,
}

impl MySqlStatements {
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let live = "expires_at > UNIX_TIMESTAMP()";
        Self {
            load: format!("SELECT record FROM {t} WHERE id = ? AND {live}"),
            load_for_update: format!("SELECT record FROM {t} WHERE id = ? AND {live} FOR UPDATE"),
            insert: format!(
                "INSERT INTO {t} (id, user_id, expires_at, record) \
                 VALUES (?, ?, UNIX_TIMESTAMP() + ?, ?)"
            ),
            write: format!(
                "UPDATE {t} SET user_id = ?, expires_at = UNIX_TIMESTAMP() + ?, record = ? \
                 WHERE id = ? AND {live}"
            ),
            merge: format!(
                "UPDATE {t} SET user_id = ?, expires_at = UNIX_TIMESTAMP() + ?, \
                 record = JSON_SET(?, '$.session', JSON_MERGE_PATCH(\
                   COALESCE(JSON_EXTRACT(record, '$.session'), '{{}}'), ?)) \
                 WHERE id = ? AND {live} AND JSON_VALID(record)"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= UNIX_TIMESTAMP() LIMIT ?"),
            sessions_of: format!(
                "SELECT id, record FROM {t} WHERE user_id = ? AND {live} AND {SAME_KIND}"
            ),
            revoke_session: format!("DELETE FROM {t} WHERE id = ? AND user_id = ? AND {SAME_KIND}"),
            revoke_user: format!("DELETE FROM {t} WHERE user_id = ? AND {SAME_KIND}"),
            qualified: t,
        }
    }

    /// The statement that creates the table and its indexes if it does not
    /// exist (one statement: MySQL has no `CREATE INDEX IF NOT EXISTS`).
    fn create_table(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               id VARBINARY(64) NOT NULL PRIMARY KEY, \
               user_id VARBINARY(1024) NULL, \
               expires_at BIGINT NOT NULL, \
               record LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \
               INDEX `{table}_expires_at` (expires_at), \
               INDEX `{table}_user` (user_id)\
             ) ENGINE = InnoDB",
            self.qualified
        )
    }
}

/// Keeps sessions in a MySQL or MariaDB table under random ids; the cookie
/// holds only the id. For apps that already run MySQL or MariaDB.
///
/// The same guarantees as [`PostgresStorage`](crate::PostgresStorage):
/// each load and save is one statement; saves merge only the keys a
/// request changed, so concurrent requests changing different keys of one
/// session both keep their change; a row invalidated or expired elsewhere
/// is never brought back; a database that is down or slow answers within
/// the command timeout (one second by default) and the request gets a 503.
///
/// Create the table with [`MySqlStorage::migrate`] (or with the SQL the
/// README gives under "Sessions in MySQL and MariaDB"), and delete expired
/// rows
/// with [`MySqlStorage::spawn_expired_deletion`] or by calling
/// [`MySqlStorage::delete_expired`] from a scheduler of your own.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use std::time::Duration;
/// use typed_sessions::{MySqlStorage, SessionLayer};
///
/// let storage = MySqlStorage::connect("mysql://app@localhost/app").await?;
/// storage.migrate().await?;
/// storage.spawn_expired_deletion(Duration::from_secs(600));
/// let layer = SessionLayer::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MySqlStorage {
    pool: MySqlPool,
    table: String,
    statements: Arc<MySqlStatements>,
    times: StoreTimes,
    /// The server-side statement timeout of the pool
    /// [`MySqlStorage::connect`] made, which follows the command timeout;
    /// `None` for a pool the app made.
    statement_timeout: Option<Arc<StatementTimeout>>,
    /// Whether the table's name passed the check when it was set;
    /// statements are never run on a name that did not.
    names_ok: bool,
}

/// What a new connection is set to, each statement with whether a server
/// may not know its variable (MySQL error 1193, then the next one stands
/// in or nothing does); any other error fails the connection:
///
/// - MariaDB's `max_statement_time` (seconds, every statement) stops what
///   the storage gave up on after `millis`; where the server does not know
///   it, MySQL's `max_execution_time` does, for `SELECT`s only;
/// - `innodb_lock_wait_timeout` (whole seconds, at least one) bounds a
///   write waiting for a row lock on MySQL too, which would otherwise
///   apply the write up to 50 s after the request got its 503.
///
/// (`innodb_snapshot_isolation`, on by default since MariaDB 11.6.2, needs
/// nothing: no statement here reads from a snapshot before it locks, and
/// the tests run MariaDB with it on.)
fn connection_settings(millis: u64) -> [(String, Unknown); 3] {
    [
        (
            format!(
                "SET SESSION max_statement_time = {}.{:03}",
                millis / 1000,
                millis % 1000
            ),
            Unknown::TryNext,
        ),
        (
            format!("SET SESSION max_execution_time = {millis}"),
            Unknown::Fail,
        ),
        (
            format!(
                "SET SESSION innodb_lock_wait_timeout = {}",
                millis.div_ceil(1000).max(1)
            ),
            Unknown::Fail,
        ),
    ]
}

/// What a server that does not know a setting's variable means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unknown {
    /// The next setting stands in for it (and is skipped otherwise).
    TryNext,
    /// The connection cannot be used.
    Fail,
}

/// Whether `error` is MySQL's "Unknown system variable" (1193).
fn is_unknown_variable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|error| error.number() == 1193))
}

/// Runs [`connection_settings`] on a new connection.
async fn apply_settings(
    connection: &mut sqlx::MySqlConnection,
    millis: u64,
) -> Result<(), sqlx::Error> {
    let mut skip_next = false;
    for (statement, unknown) in connection_settings(millis) {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match sqlx::query(&statement).execute(&mut *connection).await {
            Ok(_) => skip_next = unknown == Unknown::TryNext,
            Err(error) if is_unknown_variable(&error) && unknown != Unknown::Fail => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl MySqlStorage {
    /// Connects to the database at `url` (`mysql://USER:PASSWORD@HOST/DB`,
    /// with `?ssl-mode=…&ssl-ca=…` for TLS) within two seconds, with a pool
    /// of up to 16 connections whose statements the server stops after one
    /// second, the default command timeout.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_with(MySqlConnectOptions::from_str(url).map_err(StorageError::unavailable)?)
            .await
    }

    /// Connects as [`MySqlStorage::connect`] does, with `options` built in
    /// code: credentials from their own settings rather than a URL
    /// (`url.parse::<MySqlConnectOptions>()?.password(&secret)`), TLS, a
    /// socket.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use typed_sessions::MySqlStorage;
    /// use typed_sessions::sqlx::mysql::MySqlConnectOptions;
    ///
    /// let secret = std::env::var("DATABASE_PASSWORD")?;
    /// let options = "mysql://app@db/app".parse::<MySqlConnectOptions>()?.password(&secret);
    /// let storage = MySqlStorage::connect_with(options).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// TLS needs the `tls` feature. MySQL's `ssl-mode=REQUIRED` encrypts
    /// without checking the server's certificate; this storage never talks
    /// TLS it has not verified, so `REQUIRED` checks the chain as
    /// `VERIFY_CA` does. `VERIFY_IDENTITY` checks the host name too.
    /// `PREFERRED`, sqlx's default, stays as MySQL defines it: TLS if the
    /// server offers it, unverified, and plaintext if not; name a mode.
    pub async fn connect_with(options: MySqlConnectOptions) -> Result<Self, StorageError> {
        let options = match options.get_ssl_mode() {
            MySqlSslMode::Required => options.ssl_mode(MySqlSslMode::VerifyCa),
            _ => options,
        };
        let timeout = Arc::new(StatementTimeout::new(DEFAULT_COMMAND_TIMEOUT));
        let (on_connect, on_acquire) = (timeout.clone(), timeout.clone());
        let pool = MySqlPoolOptions::new()
            .after_connect(move |connection, _| {
                let millis = on_connect.millis();
                Box::pin(async move { apply_settings(connection, millis).await })
            })
            .before_acquire(move |_, connection| {
                let current = on_acquire.is_current(connection.age);
                Box::pin(async move { Ok(current) })
            })
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(DEFAULT_CONNECT_TIMEOUT)
            // sqlx already checks every connection when it is given back;
            // checking it again when it is taken would cost a round trip
            // per request.
            .test_before_acquire(false)
            .connect_with(options);
        let pool = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, pool)
            .await
            .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
            .map_err(StorageError::unavailable)?;
        let mut storage = Self::from_pool(pool);
        storage.statement_timeout = Some(timeout);
        Ok(storage)
    }

    /// A storage over a pool the app already has. Its statements are bound
    /// only by the command timeout: give its connections a server-side
    /// limit too (MariaDB's `max_statement_time`), so a slow statement the
    /// app gave up on does not keep a connection busy.
    pub fn from_pool(pool: MySqlPool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            statements: Arc::new(MySqlStatements::new(DEFAULT_TABLE)),
            times: StoreTimes::default(),
            statement_timeout: None,
            names_ok: true,
        }
    }

    /// The table sessions are kept in, in the connection's database: ASCII
    /// letters, digits and `_`, at most 52 bytes. Default:
    /// `typed_sessions`. Any other name is refused when the layer is built
    /// (or by [`MySqlStorage::migrate`]).
    #[must_use]
    pub fn with_table_name(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self.statements = Arc::new(MySqlStatements::new(&self.table));
        self.names_ok = self.check_names().is_ok();
        self
    }

    /// How long the row of a session without an idle limit lives after its
    /// last write, in whole seconds. Default: one day. Zero is refused when
    /// the layer is built.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.times.default_ttl = ttl;
        self
    }

    /// How long one statement (with the wait for a pooled connection) may
    /// take before the request gets a 503. Default: one second. Zero is
    /// refused when the layer is built. On the pool
    /// [`MySqlStorage::connect`] makes, the server stops a statement after
    /// it too (on MySQL, only a `SELECT`), so one the app gave up on does
    /// not keep a connection busy.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.times.command_timeout = timeout;
        if let Some(statement_timeout) = &self.statement_timeout {
            statement_timeout.set(timeout);
        }
        self
    }

    /// The pool the storage runs its statements on.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Refuses a name that is not a plain identifier (see
    /// `sql::check_identifier`).
    fn check_names(&self) -> Result<(), ConfigError> {
        check_identifier("the MySQL session table", &self.table)
    }

    /// Refuses to run a statement on a name that did not pass the check
    /// when it was set, whether or not a layer was built over the storage.
    fn names_checked(&self) -> Result<(), StorageError> {
        if self.names_ok {
            return Ok(());
        }
        self.check_names().map_err(StorageError::Config)
    }

    /// Creates the table and its indexes if they do not exist; does
    /// nothing to a table already there. Safe to run from several
    /// processes at once.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        ServerStorage::validate(self)?;
        sqlx::query(&self.statements.create_table(&self.table))
            .execute(&self.pool)
            .await
            .map_err(StorageError::unavailable)?;
        Ok(())
    }

    /// Deletes the rows whose sessions expired, a thousand per statement so
    /// no statement locks many rows for long, until none is left; how many
    /// it deleted. Call it from a scheduler of your own, or let
    /// [`MySqlStorage::spawn_expired_deletion`] do it.
    pub async fn delete_expired(&self) -> Result<u64, StorageError> {
        self.names_checked()?;
        delete_in_batches(|| async {
            let deleted = sqlx::query(&self.statements.delete_expired)
                .bind(DELETE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(StorageError::unavailable)?;
            Ok(deleted.rows_affected())
        })
        .await
    }

    /// Runs [`MySqlStorage::delete_expired`] every `interval` on the tokio
    /// runtime, from now until the returned task is aborted; a failed run
    /// is logged and tried again at the next tick.
    pub fn spawn_expired_deletion(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        spawn_expired_deletion(self.clone(), interval, |storage| async move {
            storage.delete_expired().await
        })
    }

    /// Seconds until a written row expires: the one place a record's TTL
    /// is decided.
    fn ttl(&self, cx: &StorageContext<'_>) -> i64 {
        to_i64(cx.record_ttl(self.times.default_ttl.as_secs()))
    }

    /// A merge of many keys: the live row read and locked, merged here,
    /// and written back in one transaction (the lock keeps every other
    /// save of the row waiting until it commits). `false` when the row is
    /// gone or expired.
    async fn merge_in_transaction(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        ttl: i64,
    ) -> Result<bool, StorageError> {
        let key = handle(id);
        let merge = async {
            let mut transaction = self.pool.begin().await?;
            let row: Option<(String,)> = sqlx::query_as(&self.statements.load_for_update)
                .bind(&key)
                .fetch_optional(&mut *transaction)
                .await?;
            // Gone, or a row no load would return: nothing to merge into
            // (dropping the transaction rolls it back).
            let Some(mut stored) = row.and_then(|(json,)| decode_row(&json)) else {
                return Ok(None);
            };
            stored.merge(record, changes);
            let json = match encode(&stored) {
                Ok(json) => json,
                Err(error) => return Ok(Some(Err(error))),
            };
            let written = sqlx::query(&self.statements.write)
                .bind(record.user.as_deref())
                .bind(ttl)
                .bind(json)
                .bind(&key)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(Some(Ok(written.rows_affected() == 1)))
        };
        match timed(self.times.command_timeout, merge).await? {
            None => Ok(false),
            Some(written) => written,
        }
    }
}

/// A value of the session map as the table keeps it: its JSON text.
fn stored(value: &Value) -> Result<Value, StorageError> {
    serde_json::to_string(value)
        .map(Value::String)
        .map_err(StorageError::Serialize)
}

/// `record` with an empty map (its map is not copied).
fn without_data(record: &SessionRecord) -> SessionRecord {
    let SessionRecord {
        created,
        updated,
        max_age,
        expires_at,
        ref kind,
        ref user,
        binding,
        data: _,
    } = *record;
    SessionRecord {
        created,
        updated,
        max_age,
        expires_at,
        kind: kind.clone(),
        user: user.clone(),
        binding,
        data: Map::new(),
    }
}

/// The JSON of `record` with every value of its map as its JSON text.
fn encode(record: &SessionRecord) -> Result<String, StorageError> {
    let data = record
        .data
        .iter()
        .map(|(key, value)| Ok((key.clone(), stored(value)?)))
        .collect::<Result<Map<String, Value>, StorageError>>()?;
    let stored = SessionRecord {
        data,
        ..without_data(record)
    };
    serde_json::to_string(&stored).map_err(StorageError::Serialize)
}

/// What a merge sends: the JSON of `record` with an empty map, and the
/// patch of its map (each set key as its JSON text, each removed one
/// `null`).
fn encode_merge(
    record: &SessionRecord,
    changes: &Changes,
) -> Result<(String, String), StorageError> {
    let mut patch = Map::new();
    for key in changes.removed_keys() {
        patch.insert(key.to_owned(), Value::Null);
    }
    for key in changes.set_keys() {
        if let Some(value) = record.data.get(key) {
            patch.insert(key.to_owned(), stored(value)?);
        }
    }
    let part = serde_json::to_string(&without_data(record)).map_err(StorageError::Serialize)?;
    let patch = serde_json::to_string(&patch).map_err(StorageError::Serialize)?;
    Ok((part, patch))
}

/// The record a row holds, its values read from their JSON text; `None`
/// (logged) for a row that does not decode or holds a value not in the
/// table's format, which reads as no session.
fn decode_row(json: &str) -> Option<SessionRecord> {
    let mut record = decode(NAME, json)?;
    let mut data = Map::new();
    for (key, value) in std::mem::take(&mut record.data) {
        let value = match value {
            Value::String(text) => serde_json::from_str(&text).ok(),
            _ => None,
        };
        match value {
            Some(value) => {
                data.insert(key, value);
            }
            None => {
                tracing::warn!(
                    store = NAME,
                    "session record with a value not in the table's format; \
                     starting a new session"
                );
                return None;
            }
        }
    }
    record.data = data;
    Some(record)
}

/// Whether a transaction was rolled back as the victim of a deadlock
/// (MySQL error 1213, SQLSTATE 40001).
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some("40001"))
}

/// Whether a failed statement was an `INSERT` meeting a row with its key.
fn is_duplicate(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.is_unique_violation())
}

impl fmt::Debug for MySqlStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStorage")
            .field("table", &self.statements.qualified)
            .field("connections", &self.pool.size())
            .field("default_ttl", &self.times.default_ttl)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for MySqlStorage {
    async fn load(
        &self,
        id: &SessionId,
        _cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        self.names_checked()?;
        let row: Option<(String,)> = timed(
            self.times.command_timeout,
            sqlx::query_as(&self.statements.load)
                .bind(handle(id))
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.and_then(|(json,)| decode_row(&json)).map(Loaded::new))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        self.names_checked()?;
        let json = encode(record)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id(NAME, |id| {
            let insert = sqlx::query(&self.statements.insert)
                .bind(handle(&id))
                .bind(record.user.as_deref())
                .bind(ttl)
                .bind(&json)
                .execute(&self.pool);
            async move {
                let inserted = timed(self.times.command_timeout, async {
                    match insert.await {
                        Ok(_) => Ok(true),
                        Err(error) if is_duplicate(&error) => Ok(false),
                        Err(error) => Err(error),
                    }
                })
                .await?;
                Ok(inserted)
            }
        })
        .await
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.names_checked()?;
        let ttl = self.ttl(cx);
        let user = record.user.as_deref();
        // The connection reports the rows a statement matched, not only
        // those it changed (sqlx asks for `CLIENT_FOUND_ROWS`), so a save
        // that writes what is already there still reads as done.
        let changed = changes.set_keys().count() + changes.removed_keys().count();
        if !changes.is_full_rewrite()
            && changed.saturating_mul(record.data.len().max(changed)) > MAX_PATCH_WORK
        {
            return self.merge_in_transaction(id, record, changes, ttl).await;
        }
        let query = if changes.is_full_rewrite() {
            sqlx::query(&self.statements.write)
                .bind(user)
                .bind(ttl)
                .bind(encode(record)?)
        } else {
            let (part, patch) = encode_merge(record, changes)?;
            sqlx::query(&self.statements.merge)
                .bind(user)
                .bind(ttl)
                .bind(part)
                .bind(patch)
        };
        let query = query.bind(handle(id));
        let updated = timed(self.times.command_timeout, query.execute(&self.pool)).await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn delete(&self, id: &SessionId, _cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        self.names_checked()?;
        let deleted = timed(
            self.times.command_timeout,
            sqlx::query(&self.statements.delete)
                .bind(handle(id))
                .execute(&self.pool),
        )
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.times
            .validate("the MySQL store's default TTL", "the MySQL command timeout")?;
        self.check_names()
    }

    async fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Vec<ActiveSession>, StorageError> {
        self.names_checked()?;
        let rows: Vec<(Vec<u8>, String)> = timed(
            self.times.command_timeout,
            sqlx::query_as(&self.statements.sessions_of)
                .bind(user)
                .bind(cx.kind)
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(handle, json)| {
                let handle = String::from_utf8(handle).ok()?;
                Some(ActiveSession::of(handle, &decode_row(&json)?))
            })
            .collect())
    }

    async fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.names_checked()?;
        let deleted = timed(
            self.times.command_timeout,
            sqlx::query(&self.statements.revoke_session)
                .bind(handle)
                .bind(user)
                .bind(cx.kind)
                .execute(&self.pool),
        )
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Deletes the user's rows in one `DELETE` under `REPEATABLE READ`,
    /// set for its transaction whatever the server's default. InnoDB runs
    /// a `DELETE` as a locking read of the newest rows, not of a snapshot:
    /// it waits for the inserts of the user's rows under way and deletes
    /// them once committed, and the next-key locks it takes on the user's
    /// range of the index make later inserts of the user wait until it
    /// commits, the instant the revocation takes effect; a row inserted
    /// after it lives. (Under `READ COMMITTED` there are no gap locks, and
    /// a renewal's new row inserted behind the scan would survive.) A
    /// renewal racing the revocation ends its own copy: its deletion of
    /// the old row finds nothing once the revocation deleted it (see
    /// `layer/commit.rs`). An update never brings a deleted row back.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        self.names_checked()?;
        let once = || async {
            let mut connection = self.pool.acquire().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *connection)
                .await?;
            let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
            let deleted = sqlx::query(&self.statements.revoke_user)
                .bind(user)
                .bind(cx.kind)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(deleted.rows_affected())
        };
        // InnoDB may pick the revocation as the victim of a deadlock with
        // a login changing a row's user (its locks on the index taken in
        // the other order); nothing was deleted then, and once more
        // finishes it.
        let revoke = async {
            match once().await {
                Err(error) if is_deadlock(&error) => once().await,
                done => done,
            }
        };
        let deleted = timed(self.times.command_timeout, revoke).await?;
        Ok(Some(usize::try_from(deleted).unwrap_or(usize::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifetime::MaxAge;

    #[test]
    fn values_travel_as_their_text_and_come_back_as_they_were() {
        let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
        record.user = Some("ann".into());
        record
            .data
            .insert("cart".into(), serde_json::json!({"a": null, "b": [1, {}]}));
        record.data.insert("n".into(), Value::Null);
        let json = encode(&record).unwrap();
        assert!(json.contains(r#""n":"null""#), "{json}");
        assert_eq!(decode_row(&json), Some(record));
        // A value not kept as text is no session of this table.
        assert_eq!(decode_row(r#"{"created":1,"session":{"a":1}}"#), None);
        assert_eq!(decode_row(r#"{"created":1,"session":{"a":"{"}}"#), None);
    }

    #[test]
    fn a_merge_patches_the_set_keys_and_removes_the_removed_ones() {
        let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
        record.data.insert("a".into(), 1.into());
        record
            .data
            .insert("b".into(), serde_json::json!({"x": null}));
        let mut changes = Changes::default();
        changes.record_set("b");
        changes.record_removed("c");
        let (part, patch) = encode_merge(&record, &changes).unwrap();
        assert!(part.contains(r#""session":{}"#), "{part}");
        assert_eq!(patch, r#"{"b":"{\"x\":null}","c":null}"#);
    }

    #[test]
    fn the_statement_timeout_is_spelled_as_each_server_takes_it() {
        let statements = connection_settings(2500).map(|(statement, _)| statement);
        assert_eq!(
            statements,
            [
                "SET SESSION max_statement_time = 2.500",
                "SET SESSION max_execution_time = 2500",
                "SET SESSION innodb_lock_wait_timeout = 3",
            ]
        );
        assert_eq!(
            connection_settings(10)[2].0,
            "SET SESSION innodb_lock_wait_timeout = 1"
        );
    }
}
