//! What the SQL stores (PostgreSQL, MySQL, SQLite) share, written once: the
//! table and its statements (each database's spelling in a [`Dialect`]),
//! the check of the identifiers spliced into them, the mapping of rows to
//! records and listings, the part of a record a merge sends, and the
//! deletion of expired rows in batches.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "mysql")]
pub use mysql::MySqlStorage;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

use std::future::Future;
use std::time::Duration;

use crate::error::{ConfigError, StorageError};
#[cfg(feature = "postgres")]
use crate::record::Changes;
use crate::record::SessionRecord;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::storage::{ActiveSession, Loaded};

/// How one database spells what the shared statements need (MySQL's
/// positional parameters do not fit them: it has statements of its own).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) struct Dialect {
    /// The database's name in messages.
    pub(crate) name: &'static str,
    /// What starts a numbered parameter: `$1` or `?1`.
    parameter: char,
    /// The condition of a live row, and of an expired one (each as the
    /// index on `expires_at` serves it).
    live: &'static str,
    dead: &'static str,
    /// The expiry of a row written now whose TTL in seconds is the third
    /// parameter (`{p}` stands for the parameter's prefix).
    expiry: &'static str,
    /// The record column read as text.
    record_text: &'static str,
    /// The record parameter (the fourth) as the column's type.
    record_parameter: &'static str,
    /// What locks the batch of expired rows a deletion takes, if anything.
    lock_batch: &'static str,
    /// The condition that a row's record is of the session kind given as
    /// parameter `n` (`{n}`; NULL for the main kind, which the record
    /// leaves out).
    same_kind: &'static str,
    /// The types of the `expires_at` and `record` columns.
    expires_at_type: &'static str,
    record_type: &'static str,
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Dialect {
    #[cfg(feature = "postgres")]
    pub(crate) const POSTGRES: Self = Self {
        name: "PostgreSQL",
        parameter: '$',
        live: "expires_at > now()",
        dead: "expires_at <= now()",
        expiry: "now() + {p}3 * interval '1 second'",
        record_text: "record::text",
        record_parameter: "{p}4::jsonb",
        lock_batch: " FOR UPDATE SKIP LOCKED",
        same_kind: "(record ->> 'kind') IS NOT DISTINCT FROM {p}{n}",
        expires_at_type: "TIMESTAMPTZ",
        record_type: "JSONB",
    };

    #[cfg(feature = "sqlite")]
    pub(crate) const SQLITE: Self = Self {
        name: "SQLite",
        parameter: '?',
        live: "expires_at > unixepoch()",
        dead: "expires_at <= unixepoch()",
        expiry: "unixepoch() + {p}3",
        record_text: "record",
        record_parameter: "{p}4",
        lock_batch: "",
        same_kind: "json_extract(record, '$.kind') IS {p}{n}",
        expires_at_type: "INTEGER",
        record_type: "TEXT",
    };

    /// `template` with `{p}` spelled as this database's parameter prefix.
    fn spell(&self, template: &str) -> String {
        template.replace("{p}", &self.parameter.to_string())
    }

    /// The statements that create the table `qualified` (already quoted)
    /// named `table` and its indexes, if they do not exist.
    pub(crate) fn create_table(&self, qualified: &str, table: &str) -> [String; 3] {
        let index = |suffix: &str| format!("\"{table}_{suffix}\"");
        [
            format!(
                "CREATE TABLE IF NOT EXISTS {qualified} (\
                   id TEXT PRIMARY KEY NOT NULL, \
                   user_id TEXT, \
                   expires_at {} NOT NULL, \
                   record {} NOT NULL)",
                self.expires_at_type, self.record_type
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {qualified} (expires_at)",
                index("expires_at")
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {qualified} (user_id) WHERE user_id IS NOT NULL",
                index("user")
            ),
        ]
    }
}

/// The statements of one table, made once when it is named (identifiers
/// cannot be parameters; both are checked before they are used).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) struct Statements {
    /// The table's name as the statements spell it, quoted.
    pub(crate) qualified: String,
    /// The record of the live row with handle `1`.
    pub(crate) load: String,
    /// A new row (handle, user, TTL, record), unless the handle exists
    /// (PostgreSQL inserts with its own, which takes the user's lock).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) insert: String,
    /// The whole record of a live row (handle, user, TTL, record): a full
    /// rewrite, or the end of a merge.
    pub(crate) write: String,
    pub(crate) delete: String,
    /// A batch of expired rows, at most `1` of them.
    pub(crate) delete_expired: String,
    /// The handles and records of user `1`'s live rows of kind `2`.
    pub(crate) sessions_of: String,
    /// The row with handle `1` if it is bound to user `2` and of kind `3`.
    pub(crate) revoke_session: String,
    /// The rows of user `1` of kind `2`.
    pub(crate) revoke_user: String,
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Statements {
    /// The statements of the table `qualified` (checked and quoted).
    pub(crate) fn new(dialect: &Dialect, qualified: String) -> Self {
        let t = &qualified;
        let (live, expiry) = (dialect.live, dialect.spell(dialect.expiry));
        let record = dialect.record_text;
        let row = dialect.spell(dialect.record_parameter);
        let s = |template: String| dialect.spell(&template);
        let kind_is = |n: &str| dialect.same_kind.replace("{n}", n);
        Self {
            load: s(format!(
                "SELECT {record} FROM {t} WHERE id = {{p}}1 AND {live}"
            )),
            insert: s(format!(
                "INSERT INTO {t} (id, user_id, expires_at, record) \
                 VALUES ({{p}}1, {{p}}2, {expiry}, {row}) ON CONFLICT (id) DO NOTHING"
            )),
            write: s(format!(
                "UPDATE {t} SET user_id = {{p}}2, expires_at = {expiry}, record = {row} \
                 WHERE id = {{p}}1 AND {live}"
            )),
            delete: s(format!("DELETE FROM {t} WHERE id = {{p}}1")),
            delete_expired: s(format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE {} LIMIT {{p}}1{})",
                dialect.dead, dialect.lock_batch
            )),
            sessions_of: s(format!(
                "SELECT id, {record} FROM {t} WHERE user_id = {{p}}1 AND {live} AND {}",
                kind_is("2")
            )),
            revoke_session: s(format!(
                "DELETE FROM {t} WHERE id = {{p}}1 AND user_id = {{p}}2 AND {}",
                kind_is("3")
            )),
            revoke_user: s(format!(
                "DELETE FROM {t} WHERE user_id = {{p}}1 AND {}",
                kind_is("2")
            )),
            qualified,
        }
    }
}

/// The record a row of the store named `store` holds; `None` (logged)
/// for one that does not decode, which reads as no session.
pub(crate) fn decode(store: &'static str, json: &str) -> Option<SessionRecord> {
    let record = serde_json::from_str(json).ok();
    if record.is_none() {
        tracing::warn!(store, "malformed session record; starting a new session");
    }
    record
}

/// The session a `load` row holds.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn loaded(store: &'static str, row: Option<(String,)>) -> Option<Loaded> {
    row.and_then(|(json,)| decode(store, &json))
        .map(Loaded::new)
}

/// The listing of a user's rows (handle, record).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn active_sessions(
    store: &'static str,
    rows: Vec<(String, String)>,
) -> Vec<ActiveSession> {
    rows.into_iter()
        .filter_map(|(handle, json)| Some(ActiveSession::of(handle, &decode(store, &json)?)))
        .collect()
}

/// Deletes expired rows a batch at a time until a batch comes back short;
/// how many it deleted. `batch` deletes up to [`DELETE_BATCH`] rows.
pub(crate) async fn delete_in_batches<F, Fut>(mut batch: F) -> Result<u64, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StorageError>>,
{
    let mut deleted = 0;
    loop {
        let rows = batch().await?;
        deleted += rows;
        if rows < DELETE_BATCH.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

/// Runs `delete` on a clone of `storage` every `interval` on the tokio
/// runtime, from now until the returned task is aborted; a failed run is
/// logged and tried again at the next tick.
pub(crate) fn spawn_expired_deletion<S, F, Fut>(
    storage: S,
    interval: Duration,
    delete: F,
) -> tokio::task::JoinHandle<()>
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, StorageError>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match delete(storage.clone()).await {
                Ok(deleted) => tracing::debug!(deleted, "expired sessions deleted"),
                Err(error) => tracing::warn!(
                    error = %crate::error::chain(&error),
                    "could not delete expired sessions; trying again at the next interval"
                ),
            }
        }
    })
}

/// The table sessions are kept in, unless configured.
pub(crate) const DEFAULT_TABLE: &str = "typed_sessions";

/// Expired rows deleted by one statement: small enough that no statement
/// holds its locks for long, large enough that a backlog clears quickly.
pub(crate) const DELETE_BATCH: i64 = 1000;

/// The longest identifier: PostgreSQL truncates names past 63 bytes, and
/// the expiry index's name adds `_expires_at` (and the user index `_user`)
/// to the table's.
const MAX_TABLE_NAME: usize = 63 - "_expires_at".len();

/// Checks a table or schema name before it is spliced into a statement
/// (identifiers cannot be bound as parameters): ASCII letters, digits and
/// `_`, not starting with a digit, so quoting it is enough and nothing a
/// configuration holds can change a statement's meaning.
pub(crate) fn check_identifier(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_TABLE_NAME {
        Some(format!("it is longer than {MAX_TABLE_NAME} bytes"))
    } else if name.starts_with(|c: char| c.is_ascii_digit())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Some(format!(
            "{name:?} is not a plain identifier: use ASCII letters, digits and `_`, \
             not starting with a digit"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::StorageSetting { setting, problem }),
        None => Ok(()),
    }
}

/// The record a merge sends: every field of `record` but, of its data,
/// only the keys `changes` set (the store removes the removed ones and
/// keeps the others).
#[cfg(feature = "postgres")]
pub(crate) fn changed_part(record: &SessionRecord, changes: &Changes) -> SessionRecord {
    let mut data = serde_json::Map::new();
    for key in changes.set_keys() {
        if let Some(value) = record.data.get(key) {
            data.insert(key.to_owned(), value.clone());
        }
    }
    let mut part = SessionRecord {
        data: serde_json::Map::new(),
        ..record.clone()
    };
    part.data = data;
    part
}

/// The server-side statement timeout a pool gives its connections
/// (PostgreSQL's `statement_timeout`, MariaDB's `max_statement_time`): set
/// on each new one, and when it changes, the connections made before are
/// closed as they are next taken, so every statement soon runs under the
/// new one.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) struct StatementTimeout {
    millis: std::sync::atomic::AtomicU64,
    changed: std::sync::Mutex<Option<std::time::Instant>>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl StatementTimeout {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            millis: std::sync::atomic::AtomicU64::new(millis(timeout)),
            changed: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn set(&self, timeout: Duration) {
        let mut changed = self
            .changed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.millis
            .store(millis(timeout), std::sync::atomic::Ordering::Relaxed);
        *changed = Some(std::time::Instant::now());
    }

    /// The timeout in milliseconds.
    pub(crate) fn millis(&self) -> u64 {
        self.millis.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a connection `age` old was made under the current timeout.
    pub(crate) fn is_current(&self, age: Duration) -> bool {
        let changed = self
            .changed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        changed.is_none_or(|changed| age < changed.elapsed())
    }
}

/// `timeout` in milliseconds, at most PostgreSQL's largest
/// `statement_timeout` (about 24.8 days), which a longer one would make
/// every new connection fail (and far below MySQL's and MariaDB's).
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .min(i32::MAX.unsigned_abs().into())
}

/// Seconds as a SQL `BIGINT`; times and TTLs of records are far below the
/// limit.
pub(crate) fn to_i64(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[test]
    fn a_statement_timeout_stays_within_what_postgresql_takes() {
        assert_eq!(millis(Duration::from_millis(2500)), 2500);
        assert_eq!(
            millis(Duration::from_secs(30 * 86_400)),
            u64::try_from(i32::MAX).unwrap()
        );
    }

    #[test]
    fn only_plain_identifiers_are_accepted() {
        for good in ["sessions", "typed_sessions", "_s1", "S"] {
            assert!(check_identifier("table", good).is_ok(), "{good}");
        }
        let too_long = "t".repeat(MAX_TABLE_NAME + 1);
        for bad in [
            "",
            "1sessions",
            "sessions; DROP TABLE users",
            "a\"b",
            "a.b",
            "séance",
            too_long.as_str(),
        ] {
            assert!(check_identifier("table", bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_merge_sends_the_set_keys_and_every_time() {
        use crate::lifetime::MaxAge;

        let mut record = SessionRecord::new(10, MaxAge::Seconds(60));
        record.updated = 20;
        record.user = Some("ann".into());
        record.data.insert("a".into(), 1.into());
        record.data.insert("b".into(), 2.into());
        let mut changes = Changes::default();
        changes.record_set("b");
        changes.record_removed("c");
        let part = changed_part(&record, &changes);
        assert_eq!(part.data.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(part.updated, 20);
        assert_eq!(part.max_age, MaxAge::Seconds(60));
        assert_eq!(part.user.as_deref(), Some("ann"));
    }
}
