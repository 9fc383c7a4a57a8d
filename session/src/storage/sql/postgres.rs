//! Sessions in PostgreSQL, on a sqlx pool.
//!
//! # Table
//!
//! One row per session, keyed by the url-safe base64 of SHA-256 of its id
//! (a dump of the table hands out no usable cookie):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS typed_sessions (
//!     id TEXT PRIMARY KEY,
//!     user_id TEXT,
//!     expires_at TIMESTAMPTZ NOT NULL,
//!     record JSONB NOT NULL
//! );
//! CREATE INDEX IF NOT EXISTS typed_sessions_expires_at ON typed_sessions (expires_at);
//! CREATE INDEX IF NOT EXISTS typed_sessions_user ON typed_sessions (user_id)
//!     WHERE user_id IS NOT NULL;
//! ```
//!
//! `record` holds the record's JSON (`{"created":…,"updated":…,"session":{…}}`);
//! `expires_at` is the database's `now()` plus the record's TTL at its last
//! write, so the database's clock decides when a row is dead, as Redis's
//! does for its keys. Every operation is one statement: a load selects a
//! live row; a new session is inserted with `ON CONFLICT DO NOTHING`; a save
//! is one `UPDATE … WHERE expires_at > now()` that removes the removed keys
//! (`-`) and merges the set ones (`||`) into the stored map, so concurrent
//! saves of different keys are both kept and a row that expired or was
//! deleted is never brought back.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    DEFAULT_TABLE, DELETE_BATCH, Dialect, StatementTimeout, Statements, active_sessions,
    changed_part, check_identifier, delete_in_batches, loaded, spawn_expired_deletion, to_i64,
};

/// The statement that gives a connection its `statement_timeout`.
fn statement_timeout(millis: u64) -> String {
    format!("SET statement_timeout = {millis}")
}

const POSTGRES: Dialect = Dialect::POSTGRES;
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, StoreTimes, create_with_fresh_id, handle,
    timed,
};
use crate::storage::{ActiveSession, Loaded, ServerStorage, StorageContext};

/// The connections [`PostgresStorage::connect`] keeps open at most.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The statements of PostgreSQL's table, the shared ones and its merge.
struct PgStatements {
    shared: Statements,
    /// Merges a request's changes into a live row in one statement:
    /// removes the removed keys (`-`) and sets the set ones (`||`).
    merge: String,
    /// Inserts a new row; one bound to a user first takes the user's
    /// advisory lock, shared (see [`PostgresStorage::revoke_user`]).
    insert: String,
    /// Takes user `1`'s advisory lock, alone, until the transaction ends.
    lock_user: String,
}

impl PgStatements {
    fn new(schema: Option<&str>, table: &str) -> Self {
        let t = match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        let expiry = "now() + $3 * interval '1 second'";
        // The lock of a user: this table's and the user's hashes (a
        // collision only makes two users wait for each other).
        let user_lock =
            |user: &str| format!("hashtext('{}'), hashtext({user})", t.replace('\'', "''"));
        Self {
            insert: format!(
                "INSERT INTO {t} (id, user_id, expires_at, record) \
                 SELECT $1, $2, {expiry}, $4::jsonb \
                 WHERE $2::text IS NULL \
                    OR pg_advisory_xact_lock_shared({})::text = '' \
                 ON CONFLICT (id) DO NOTHING",
                user_lock("$2::text")
            ),
            lock_user: format!("SELECT pg_advisory_xact_lock({})", user_lock("$1::text")),
            merge: format!(
                "UPDATE {t} SET user_id = $2, expires_at = {expiry}, \
                 record = $4::jsonb || jsonb_build_object('session', \
                   (coalesce(record -> 'session', '{{}}') - $5::text[]) || ($4::jsonb -> 'session')) \
                 WHERE id = $1 AND expires_at > now()"
            ),
            shared: Statements::new(&POSTGRES, t),
        }
    }
}

impl std::ops::Deref for PgStatements {
    type Target = Statements;

    fn deref(&self) -> &Statements {
        &self.shared
    }
}

/// Keeps sessions in a PostgreSQL table under random ids; the cookie holds
/// only the id. For apps that already run PostgreSQL and would rather not
/// run Redis for sessions.
///
/// It gives what [`RedisStorage`](crate::RedisStorage) gives: each
/// operation is one statement; saves merge only the keys a request changed,
/// so concurrent requests changing different keys of one session both keep
/// their change; a row invalidated or expired elsewhere is never brought
/// back; a database that is down or slow answers within the command timeout
/// (one second by default) and the request gets a 503, and the pool
/// reconnects by itself when the database is back.
///
/// Create the table with [`PostgresStorage::migrate`] (or with the SQL of
/// the [crate docs](crate#sessions-in-postgresql)), and delete expired rows
/// with [`PostgresStorage::spawn_expired_deletion`] or by calling
/// [`PostgresStorage::delete_expired`] from a scheduler of your own: loads
/// never return them, but nothing else removes them.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use std::time::Duration;
/// use typed_sessions::{PostgresStorage, SessionLayer};
///
/// let storage = PostgresStorage::connect("postgres://app@localhost/app")
///     .await?
///     .with_table_name("sessions");
/// storage.migrate().await?;
/// storage.spawn_expired_deletion(Duration::from_secs(600));
/// let layer = SessionLayer::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStorage {
    pool: PgPool,
    schema: Option<String>,
    table: String,
    statements: Arc<PgStatements>,
    times: StoreTimes,
    /// The `statement_timeout` of the pool [`PostgresStorage::connect`]
    /// made, which follows the command timeout; `None` for a pool the app
    /// made.
    statement_timeout: Option<Arc<StatementTimeout>>,
    /// Whether the table's (and schema's) names passed the check when they
    /// were set; statements are never run on names that did not.
    names_ok: bool,
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST/DB`)
    /// within two seconds, with a pool of up to 16 connections whose
    /// statements the server stops after one second (`statement_timeout`),
    /// the default command timeout.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_with(PgConnectOptions::from_str(url).map_err(StorageError::unavailable)?)
            .await
    }

    /// Connects as [`PostgresStorage::connect`] does, with `options` built
    /// in code: credentials from their own settings rather than a URL
    /// (`url.parse::<PgConnectOptions>()?.password(&secret)`), TLS, a
    /// socket.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use typed_sessions::PostgresStorage;
    /// use typed_sessions::sqlx::postgres::PgConnectOptions;
    ///
    /// let secret = std::env::var("DATABASE_PASSWORD")?;
    /// let options = "postgres://app@db/app".parse::<PgConnectOptions>()?.password(&secret);
    /// let storage = PostgresStorage::connect_with(options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StorageError> {
        // PostgreSQL's own `require` encrypts without checking the
        // server's certificate; this storage never talks TLS it has not
        // verified, so `require` checks the chain as `verify-ca` does (as
        // libpq's `require` does when given a root certificate).
        let options = match options.get_ssl_mode() {
            sqlx::postgres::PgSslMode::Require => {
                options.ssl_mode(sqlx::postgres::PgSslMode::VerifyCa)
            }
            _ => options,
        };
        let timeout = Arc::new(StatementTimeout::new(DEFAULT_COMMAND_TIMEOUT));
        let (on_connect, on_acquire) = (timeout.clone(), timeout.clone());
        let pool = PgPoolOptions::new()
            .after_connect(move |connection, _| {
                let statement = statement_timeout(on_connect.millis());
                Box::pin(async move {
                    sqlx::query(&statement).execute(connection).await?;
                    Ok(())
                })
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
    /// only by the command timeout: give its connections a
    /// `statement_timeout` too, so a slow statement the app gave up on does
    /// not keep a connection busy.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            schema: None,
            table: DEFAULT_TABLE.to_owned(),
            statements: Arc::new(PgStatements::new(None, DEFAULT_TABLE)),
            times: StoreTimes::default(),
            statement_timeout: None,
            names_ok: true,
        }
    }

    /// The table sessions are kept in: ASCII letters, digits and `_`, at
    /// most 52 bytes. Default: `typed_sessions`. Any other name is refused
    /// when the layer is built (or by [`PostgresStorage::migrate`]).
    #[must_use]
    pub fn with_table_name(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self.statements = Arc::new(PgStatements::new(self.schema.as_deref(), &self.table));
        self.names_ok = self.check_names().is_ok();
        self
    }

    /// The schema of the table, under the same rules as its name. Default:
    /// none, so the connection's `search_path` decides (`public`, unless
    /// configured).
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self.statements = Arc::new(PgStatements::new(self.schema.as_deref(), &self.table));
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
    /// [`PostgresStorage::connect`] makes, the server stops a statement
    /// after it too (`statement_timeout`), so one the app gave up on does
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Refuses names that are not plain identifiers (see
    /// `sql::check_identifier`).
    fn check_names(&self) -> Result<(), ConfigError> {
        check_identifier("the PostgreSQL session table", &self.table)?;
        if let Some(schema) = &self.schema {
            check_identifier("the PostgreSQL session schema", schema)?;
        }
        Ok(())
    }

    /// Refuses to run a statement on names that did not pass the check
    /// when they were set, whether or not a layer was built over the
    /// storage.
    fn names_checked(&self) -> Result<(), StorageError> {
        if self.names_ok {
            return Ok(());
        }
        self.check_names().map_err(StorageError::Config)
    }

    /// Creates the table and its indexes if they do not exist (and the
    /// schema, if one is configured); does nothing to a table already
    /// there. Safe to run from several processes at once: they take turns
    /// on an advisory lock.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        ServerStorage::validate(self)?;
        let mut statements = Vec::new();
        if let Some(schema) = &self.schema {
            statements.push(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""));
        }
        let t = &self.statements.qualified;
        statements.extend(POSTGRES.create_table(t, &self.table));
        let mut transaction = self.pool.begin().await.map_err(StorageError::unavailable)?;
        // Concurrent `CREATE … IF NOT EXISTS` of one name can still fail
        // on the catalog's unique index; one lock per table name makes
        // them wait for each other instead.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(t)
            .execute(&mut *transaction)
            .await
            .map_err(StorageError::unavailable)?;
        for statement in statements {
            sqlx::query(&statement)
                .execute(&mut *transaction)
                .await
                .map_err(StorageError::unavailable)?;
        }
        transaction
            .commit()
            .await
            .map_err(StorageError::unavailable)
    }

    /// Deletes the rows whose sessions expired, a thousand per statement so
    /// no statement locks many rows for long, until none is left; how many
    /// it deleted. Call it from a scheduler of your own, or let
    /// [`PostgresStorage::spawn_expired_deletion`] do it.
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

    /// Runs [`PostgresStorage::delete_expired`] every `interval` on the
    /// tokio runtime, from now until the returned task is aborted; a failed
    /// run is logged and tried again at the next tick.
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
}

/// What a request is told when its session holds a NUL character.
const NUL: &str = "PostgreSQL's jsonb cannot hold the character U+0000 (NUL) in a string or \
                   a key; strip it from the value before storing it, or use another storage";

fn encode(record: &SessionRecord) -> Result<String, StorageError> {
    let json = serde_json::to_string(record).map_err(StorageError::Serialize)?;
    if escapes_nul(&json) {
        // PostgreSQL would refuse the statement; refusing here says why
        // (a 500 for a session that can never be stored, not a 503 that
        // invites a retry).
        return Err(StorageError::Unrepresentable(NUL));
    }
    Ok(json)
}

/// Whether JSON text holds the escape `\u0000`: a `u0000` after an odd
/// run of backslashes (an even run is escaped backslashes and then text).
fn escapes_nul(json: &str) -> bool {
    json.match_indices("u0000").any(|(at, _)| {
        let backslashes = json.as_bytes()[..at]
            .iter()
            .rev()
            .take_while(|&&byte| byte == b'\\')
            .count();
        backslashes % 2 == 1
    })
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("table", &self.statements.qualified)
            .field("connections", &self.pool.size())
            .field("default_ttl", &self.times.default_ttl)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for PostgresStorage {
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
        Ok(loaded(POSTGRES.name, row))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        self.names_checked()?;
        let json = encode(record)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id(POSTGRES.name, |id| {
            let insert = sqlx::query(&self.statements.insert)
                .bind(handle(&id))
                .bind(record.user.as_deref())
                .bind(ttl)
                .bind(&json)
                .execute(&self.pool);
            async move {
                let inserted = timed(self.times.command_timeout, insert).await?;
                Ok(inserted.rows_affected() == 1)
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
        let query = if changes.is_full_rewrite() {
            sqlx::query(&self.statements.write).bind(handle(id))
        } else {
            sqlx::query(&self.statements.merge).bind(handle(id))
        };
        let query = query.bind(record.user.as_deref()).bind(ttl);
        let query = if changes.is_full_rewrite() {
            query.bind(encode(record)?)
        } else {
            // A key with a NUL was never stored (see `encode`), and
            // PostgreSQL's `text` would refuse it: nothing to remove.
            let removed: Vec<&str> = changes
                .removed_keys()
                .filter(|key| !key.contains('\0'))
                .collect();
            query
                .bind(encode(&changed_part(record, changes))?)
                .bind(removed)
        };
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
        self.times.validate(
            "the PostgreSQL store's default TTL",
            "the PostgreSQL command timeout",
        )?;
        self.check_names()
    }

    async fn sessions_of(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Vec<ActiveSession>, StorageError> {
        self.names_checked()?;
        let kind = cx.kind;
        let rows: Vec<(String, String)> = timed(
            self.times.command_timeout,
            sqlx::query_as(&self.statements.sessions_of)
                .bind(user)
                .bind(kind)
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(active_sessions(POSTGRES.name, rows))
    }

    async fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.names_checked()?;
        let kind = cx.kind;
        let deleted = timed(
            self.times.command_timeout,
            sqlx::query(&self.statements.revoke_session)
                .bind(handle)
                .bind(user)
                .bind(kind)
                .execute(&self.pool),
        )
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Deletes the user's rows in a transaction that first takes the
    /// user's advisory lock alone: it waits for the inserts of the user's
    /// rows under way (each holds the lock shared until it commits), and
    /// later ones wait for it. The `DELETE` that follows sees every row
    /// inserted before the lock was granted, the instant the revocation
    /// takes effect; a row inserted after it lives. (A `DELETE` alone
    /// would not do: under `READ COMMITTED` it sees the rows committed
    /// when it starts, so a renewal's new row committed just after that,
    /// whose old row the renewal then deleted before the `DELETE` reached
    /// it, would survive.) A renewal racing the revocation ends its own
    /// copy: its deletion of the old row finds nothing once the
    /// revocation deleted it (see `layer/commit.rs`). An update never
    /// brings a deleted row back.
    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        self.names_checked()?;
        let kind = cx.kind;
        let revoke = async {
            let mut transaction = self.pool.begin().await?;
            sqlx::query(&self.statements.lock_user)
                .bind(user)
                .execute(&mut *transaction)
                .await?;
            let deleted = sqlx::query(&self.statements.revoke_user)
                .bind(user)
                .bind(kind)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(deleted.rows_affected())
        };
        let deleted = timed(self.times.command_timeout, revoke).await?;
        Ok(Some(usize::try_from(deleted).unwrap_or(usize::MAX)))
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn the_statement_timeout_is_spelled_as_postgresql_takes_it() {
        assert_eq!(
            statement_timeout(StatementTimeout::new(Duration::MAX).millis()),
            "SET statement_timeout = 2147483647"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::escapes_nul;

    #[test]
    fn a_nul_escape_is_found_and_escaped_backslashes_are_not() {
        assert!(escapes_nul(r#"{"a":"x\u0000"}"#));
        assert!(
            escapes_nul(r#"{"a":"\\\u0000"}"#),
            "a backslash, then a NUL"
        );
        assert!(!escapes_nul(r#"{"a":"\\u0000"}"#), "a backslash, then text");
        assert!(!escapes_nul(r#"{"a":"\\\\u0000"}"#));
        assert!(!escapes_nul(r#"{"a":"u0000"}"#));
    }
}
