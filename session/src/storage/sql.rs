//! What the SQL stores (PostgreSQL, SQLite) share: the table's default
//! name, the check of the identifiers spliced into their statements, the
//! part of a record a merge sends, and the batches of expired rows.

use crate::error::ConfigError;
#[cfg(feature = "postgres")]
use crate::record::{Changes, SessionRecord};

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

/// Seconds as a SQL `BIGINT`; times and TTLs of records are far below the
/// limit.
pub(crate) fn to_i64(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
