//! Sessions in SQLite, on a sqlx pool.
//!
//! # Table
//!
//! The same row as in PostgreSQL, in SQLite's types:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS typed_sessions (
//!     id TEXT PRIMARY KEY NOT NULL,
//!     user_id TEXT,
//!     expires_at INTEGER NOT NULL,
//!     record TEXT NOT NULL
//! );
//! CREATE INDEX IF NOT EXISTS typed_sessions_expires_at ON typed_sessions (expires_at);
//! CREATE INDEX IF NOT EXISTS typed_sessions_user ON typed_sessions (user_id)
//!     WHERE user_id IS NOT NULL;
//! ```
//!
//! `expires_at` is in seconds since the Unix epoch, from the database's
//! `unixepoch()`. A load is one `SELECT` of a live row, a new session one
//! `INSERT … ON CONFLICT DO NOTHING`. A save that merges reads the row and
//! writes it back inside one `BEGIN IMMEDIATE` transaction, which holds the
//! database's write lock from the read on, so no other save comes between:
//! SQLite runs in the app's process, where the second statement costs no
//! round trip, and a merge in Rust keeps every JSON value exactly as
//! written (SQLite's `json_patch` would merge nested objects and drop their
//! `null`s, and its other JSON functions turn `true` into `1`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{
    DEFAULT_TABLE, DELETE_BATCH, Dialect, Statements, active_sessions, check_identifier, decode,
    delete_in_batches, loaded, spawn_expired_deletion, to_i64,
};

const SQLITE: Dialect = Dialect::SQLITE;

/// A checked table name as SQLite's statements spell it.
fn quoted(table: &str) -> String {
    format!("\"{table}\"")
}
use crate::error::{ConfigError, StorageError};
use crate::id::SessionId;
use crate::record::{Changes, SessionRecord};
use crate::storage::server::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, StoreTimes, create_with_fresh_id, handle,
    timed,
};
use crate::storage::{ActiveSession, Loaded, ServerStorage, StorageContext};

/// The connections [`SqliteStorage::connect`] keeps open at most.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// Keeps sessions in an SQLite database under random ids; the cookie
/// holds only the id. For apps on one machine that already keep their data
/// in SQLite.
///
/// The same guarantees as [`PostgresStorage`](crate::PostgresStorage):
/// saves merge only the keys a request changed, a row invalidated or
/// expired elsewhere is never brought back, and a database that stays
/// locked past the command timeout (one second by default) gives the
/// request a 503.
///
/// Create the table with [`SqliteStorage::migrate`] (or with the SQL of the
/// [crate docs](crate#sessions-in-postgresql)), and delete expired rows
/// with [`SqliteStorage::spawn_expired_deletion`] or by calling
/// [`SqliteStorage::delete_expired`] from a scheduler of your own.
///
/// ```no_run
/// # async fn run() -> Result<(), typed_sessions::StorageError> {
/// use std::time::Duration;
/// use typed_sessions::{SessionLayer, SqliteStorage};
///
/// let storage = SqliteStorage::connect("sqlite://sessions.db").await?;
/// storage.migrate().await?;
/// storage.spawn_expired_deletion(Duration::from_secs(600));
/// let layer = SessionLayer::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    table: String,
    statements: Arc<Statements>,
    times: StoreTimes,
    /// This process's writers to the database, in line: see
    /// [`SqliteStorage::write`].
    writers: Arc<tokio::sync::Mutex<()>>,
    /// Whether the table's name passed the check when it was set;
    /// statements are never run on a name that did not.
    names_ok: bool,
}

/// The line of this process's writers to the database `options` open: one
/// per file, so storages over separate pools of one database (two apps in
/// one process, a test suite) take turns with each other too, where SQLite's
/// busy handler would let one starve the other.
fn writers_of(options: &SqliteConnectOptions) -> Arc<tokio::sync::Mutex<()>> {
    static LINES: Mutex<BTreeMap<PathBuf, Weak<tokio::sync::Mutex<()>>>> =
        Mutex::new(BTreeMap::new());
    let file = options.get_filename();
    // The same file under two names is one database; an in-memory one
    // (sqlx names it uniquely) or a file not made yet keeps its name.
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
    lines.retain(|_, line| line.strong_count() > 0);
    if let Some(line) = lines.get(&file).and_then(Weak::upgrade) {
        return line;
    }
    let line = Arc::default();
    lines.insert(file, Arc::downgrade(&line));
    line
}

impl SqliteStorage {
    /// Opens the database at `url` (`sqlite://PATH`), creating the file if
    /// it does not exist, in write-ahead-log mode (readers never wait for
    /// the writer); a statement waits at most one second, the default
    /// command timeout, for another connection's write lock.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StorageError::unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(DEFAULT_COMMAND_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(DEFAULT_CONNECT_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options);
        let pool = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, pool)
            .await
            .map_err(|_| StorageError::Timeout(DEFAULT_CONNECT_TIMEOUT))?
            .map_err(StorageError::unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// A storage over a pool the app already has.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            statements: Arc::new(Statements::new(&SQLITE, quoted(DEFAULT_TABLE))),
            times: StoreTimes::default(),
            writers: writers_of(&pool.connect_options()),
            names_ok: true,
            pool,
        }
    }

    /// Runs the writing statement (or transaction) `statement` makes once
    /// this process's writes before it are done; the request waits for it
    /// within the command timeout.
    ///
    /// SQLite has one write lock per database, and its busy handler is not
    /// fair: a writer waiting for the lock polls it with growing sleeps, so
    /// under steady writes (a hot session's parallel requests) an unlucky
    /// one is overtaken again and again until its timeout, a 503, while the
    /// others go on. Queued here first (tokio's mutex serves in order),
    /// the process's writers take SQLite's lock one after another without
    /// a wait there; the database could not run two writes at once anyway.
    /// The line is one per database file in the process, shared by every
    /// storage and pool over it. Writers in other processes still meet at
    /// the busy handler.
    ///
    /// The turn and the statement run in a task of their own, to the
    /// statement's end: SQLite cannot stop a statement half-way, so a
    /// request that gives up (its timeout, or its client gone) must not
    /// hand the turn on while its statement still holds the lock. Handed
    /// on early, the next writer met the lock at the busy handler, timed
    /// out too, and so on: under load, a stall of a second turned into
    /// seconds of 503s. A write whose turn comes after three quarters of
    /// the timeout is not started at all, so the request's 503 stays true
    /// unless the statement itself outlasts the rest (a lock held by
    /// another process, or a disk that stalls).
    async fn write<T, F, Fut>(&self, statement: F) -> Result<T, StorageError>
    where
        F: FnOnce(SqlitePool, Arc<Statements>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let timeout = self.times.command_timeout;
        let start_by = tokio::time::Instant::now() + (timeout - timeout / 4);
        let writers = self.writers.clone();
        let (pool, statements) = (self.pool.clone(), self.statements.clone());
        let task = tokio::spawn(async move {
            let turn = tokio::time::timeout_at(start_by, writers.lock_owned()).await;
            let Ok(_turn) = turn else {
                return None;
            };
            Some(statement(pool, statements).await)
        });
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Some(written))) => written.map_err(StorageError::unavailable),
            Ok(Err(failed)) => Err(StorageError::unavailable(failed)),
            Ok(Ok(None)) | Err(_) => Err(StorageError::Timeout(timeout)),
        }
    }

    /// The table sessions are kept in: ASCII letters, digits and `_`, at
    /// most 52 bytes. Default: `typed_sessions`. Any other name is refused
    /// when the layer is built (or by [`SqliteStorage::migrate`]).
    #[must_use]
    pub fn with_table_name(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self.statements = Arc::new(Statements::new(&SQLITE, quoted(&self.table)));
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

    /// How long one statement (with the waits for a pooled connection and
    /// for the database's write lock) may take before the request gets a 503. Default: one second. Zero is
    /// refused when the layer is built.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.times.command_timeout = timeout;
        self
    }

    /// The pool the storage runs its statements on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Refuses a name that is not a plain identifier (see
    /// `sql::check_identifier`).
    fn check_names(&self) -> Result<(), ConfigError> {
        check_identifier("the SQLite session table", &self.table)
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

    /// Creates the table and its indexes if they do not exist; does
    /// nothing to a table already there.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        ServerStorage::validate(self)?;
        let statements = SQLITE.create_table(&self.statements.qualified, &self.table);
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
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
    /// no statement holds the write lock for long, until none is left; how many
    /// it deleted. Call it from a scheduler of your own, or let
    /// [`SqliteStorage::spawn_expired_deletion`] do it.
    pub async fn delete_expired(&self) -> Result<u64, StorageError> {
        self.names_checked()?;
        delete_in_batches(|| async {
            // In line with the requests' writes, a batch at a time.
            let _turn = self.writers.lock().await;
            let deleted = sqlx::query(&self.statements.delete_expired)
                .bind(DELETE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(StorageError::unavailable)?;
            Ok(deleted.rows_affected())
        })
        .await
    }

    /// Runs [`SqliteStorage::delete_expired`] every `interval` on the
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

/// `statement` (`insert` or `write`) with a row's four parameters bound:
/// its handle, user, TTL in seconds and record.
fn bind_row(
    statement: &str,
    key: String,
    user: Option<String>,
    ttl: i64,
    json: String,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    sqlx::query(statement)
        .bind(key)
        .bind(user)
        .bind(ttl)
        .bind(json)
}

fn encode(record: &SessionRecord) -> Result<String, StorageError> {
    serde_json::to_string(record).map_err(StorageError::Serialize)
}

impl fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("table", &self.statements.qualified)
            .field("connections", &self.pool.size())
            .field("default_ttl", &self.times.default_ttl)
            .field("command_timeout", &self.times.command_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerStorage for SqliteStorage {
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
        Ok(loaded(SQLITE.name, row))
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        self.names_checked()?;
        let json = encode(record)?;
        let ttl = self.ttl(cx);
        create_with_fresh_id(SQLITE.name, |id| {
            let (key, user, json) = (handle(&id), record.user.clone(), json.clone());
            async move {
                let inserted = self
                    .write(move |pool, statements| async move {
                        bind_row(&statements.insert, key, user, ttl, json)
                            .execute(&pool)
                            .await
                    })
                    .await?;
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
        let key = handle(id);
        let user = record.user.clone();
        if changes.is_full_rewrite() {
            let json = encode(record)?;
            let written = self
                .write(move |pool, statements| async move {
                    bind_row(&statements.write, key, user, ttl, json)
                        .execute(&pool)
                        .await
                })
                .await?;
            return Ok(written.rows_affected() == 1);
        }
        let (record, changes) = (record.clone(), changes.clone());
        let merge = move |pool: SqlitePool, statements: Arc<Statements>| async move {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            let row: Option<(String,)> = sqlx::query_as(&statements.load)
                .bind(&key)
                .fetch_optional(&mut *transaction)
                .await?;
            // Gone, or a row no load would return: nothing to merge into
            // (dropping the transaction rolls it back).
            let Some(mut stored) = row.and_then(|(json,)| decode(SQLITE.name, &json)) else {
                return Ok(None);
            };
            stored.merge(&record, &changes);
            let json = match encode(&stored) {
                Ok(json) => json,
                Err(error) => return Ok(Some(Err(error))),
            };
            let written = bind_row(&statements.write, key, user, ttl, json)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(Some(Ok(written.rows_affected() == 1)))
        };
        match self.write(merge).await? {
            None => Ok(false),
            Some(written) => written,
        }
    }

    async fn delete(&self, id: &SessionId, _cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        self.names_checked()?;
        let key = handle(id);
        let deleted = self
            .write(move |pool, statements| async move {
                sqlx::query(&statements.delete)
                    .bind(key)
                    .execute(&pool)
                    .await
            })
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.times.validate(
            "the SQLite store's default TTL",
            "the SQLite command timeout",
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
        Ok(active_sessions(SQLITE.name, rows))
    }

    async fn revoke_session(
        &self,
        user: &str,
        handle: &str,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.names_checked()?;
        let kind = cx.kind;
        let deleted = self
            .write({
                let (handle, user) = (handle.to_owned(), user.to_owned());
                let kind = kind.map(str::to_owned);
                move |pool, statements| async move {
                    sqlx::query(&statements.revoke_session)
                        .bind(handle)
                        .bind(user)
                        .bind(kind)
                        .execute(&pool)
                        .await
                }
            })
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn revoke_user(
        &self,
        user: &str,
        cx: &StorageContext<'_>,
    ) -> Result<Option<usize>, StorageError> {
        self.names_checked()?;
        let kind = cx.kind;
        let deleted = self
            .write({
                let user = user.to_owned();
                let kind = kind.map(str::to_owned);
                move |pool, statements| async move {
                    sqlx::query(&statements.revoke_user)
                        .bind(user)
                        .bind(kind)
                        .execute(&pool)
                        .await
                }
            })
            .await?;
        Ok(Some(
            usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_to_one_file_share_one_line_and_other_files_do_not() {
        let dir = std::env::temp_dir().join(format!("writers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.db"), b"").unwrap();
        let options = |name: &str| SqliteConnectOptions::new().filename(dir.join(name));
        let first = writers_of(&options("a.db"));
        // The same file by another name, and a file not made yet.
        let roundabout = dir.join("..").join(dir.file_name().unwrap()).join("a.db");
        let same = writers_of(&SqliteConnectOptions::new().filename(roundabout));
        let other = writers_of(&options("b.db"));
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other));
        // A line nobody holds any more is not kept.
        drop((first, same));
        let again = writers_of(&options("a.db"));
        assert_eq!(Arc::strong_count(&again), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
